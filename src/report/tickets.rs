//! The tickets of a run (SPEC §5 `tickets`): one per finding of a kind `tickets.on`
//! lists, whatever the verdict. The check finds them; only the bot files them.

use serde::{Deserialize, Serialize};

use crate::config::tickets::Finding;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub suite: String,
    pub case: String,
    pub finding: Finding,
    /// SHA-256 of (suite, case, finding, output key): the ticket's identity within the
    /// repository, also written as a hidden marker into the issue.
    pub key: String,
    /// The issue's address, once the bot filed it (the CLI opens nothing).
    pub issue: Option<String>,
    /// This run opened the issue (false: it commented on one, or nothing was filed).
    pub new: bool,
    /// What the bot did with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TicketStatus>,
    /// The redacted input excerpt the finding came from.
    #[serde(default)]
    pub input: String,
    /// The redacted output excerpt.
    #[serde(default)]
    pub output: String,
    /// The judge's reason, the attack's evidence, or what regressed.
    #[serde(default)]
    pub reason: String,
    /// The suite's prompt templates and model manifest at head.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// The outcome of filing one ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    /// A new issue was opened.
    Opened,
    /// An open issue for the same finding got a "seen again" comment.
    Updated,
    /// The issue for this finding was closed by a person: it stays closed.
    Closed,
    /// Over the per-run cap of new issues: summarised in one issue instead.
    Capped,
    /// The forge refused or failed; the run's notes say why.
    Failed,
}

/// The tickets as the comment shows them: counts by outcome, and the first few.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TicketsView {
    pub total: usize,
    pub opened: usize,
    pub updated: usize,
    pub closed: usize,
    pub capped: usize,
    pub failed: usize,
    /// Listed but not filed (the CLI, or a fork PR).
    pub unfiled: usize,
    pub items: Vec<TicketItem>,
    pub more: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TicketItem {
    pub suite: String,
    pub case: String,
    pub finding: &'static str,
    pub issue: Option<String>,
    pub status: &'static str,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Opened => "opened",
            TicketStatus::Updated => "updated",
            TicketStatus::Closed => "closed (left closed)",
            TicketStatus::Capped => "summarised",
            TicketStatus::Failed => "failed",
        }
    }
}

impl TicketsView {
    pub fn build(tickets: &[Ticket], max_items: usize) -> Self {
        let count = |s: TicketStatus| tickets.iter().filter(|t| t.status == Some(s)).count();
        let items: Vec<TicketItem> = tickets
            .iter()
            .take(max_items)
            .map(|t| TicketItem {
                suite: t.suite.clone(),
                case: t.case.clone(),
                finding: t.finding.as_str(),
                issue: t.issue.clone(),
                status: t.status.map_or("listed", TicketStatus::as_str),
            })
            .collect();
        TicketsView {
            total: tickets.len(),
            opened: count(TicketStatus::Opened),
            updated: count(TicketStatus::Updated),
            closed: count(TicketStatus::Closed),
            capped: count(TicketStatus::Capped),
            failed: count(TicketStatus::Failed),
            unfiled: tickets.iter().filter(|t| t.status.is_none()).count(),
            more: tickets.len() - items.len(),
            items,
        }
    }
}
