//! Filing the run's tickets (SPEC §1 `tickets`): one forge issue per finding, found
//! again by its identity key (the store first, then the hidden marker in the issue
//! body, so a lost database does not duplicate issues). An open issue gets a "seen
//! again" comment; a closed one stays closed; past the per-run cap the rest share one
//! summary issue. Filing never changes the verdict; a forge failure becomes a note.

use std::sync::Arc;

use anyhow::Context;
use minijinja::context;

use super::{short_sha, Bot};
use crate::forge::{Forge, IssueRef, PullRequestInfo, RepoId};
use crate::report::markdown::environment;
use crate::report::{Report, Ticket, TicketStatus};
use crate::store::tickets::{StoredTicket, Tickets};

/// Issues scanned (newest first) for a marker when the store does not know the key.
const MARKER_SCAN_LIMIT: usize = 500;

const TICKET_TEMPLATE: &str = include_str!("../../comment-templates/ticket.md.j2");
const SEEN_TEMPLATE: &str = include_str!("../../comment-templates/ticket-seen.md.j2");
const SUMMARY_TEMPLATE: &str = include_str!("../../comment-templates/ticket-summary.md.j2");

/// The hidden marker that carries a ticket's identity in its issue body.
pub fn ticket_marker(key: &str) -> String {
    format!("<!-- promptgate:ticket:{key} -->")
}

/// Where a ticket's text points.
struct Filing<'a> {
    forge: &'a Arc<dyn Forge>,
    repo: &'a RepoId,
    pr: &'a PullRequestInfo,
    run_url: &'a str,
    base: &'a str,
}

impl Filing<'_> {
    /// `#12` on GitHub, `!12` on GitLab.
    fn pr_ref(&self) -> String {
        match self.forge.kind() {
            crate::event::ForgeKind::Github => format!("#{}", self.pr.number),
            crate::event::ForgeKind::Gitlab => format!("!{}", self.pr.number),
        }
    }

    fn render(&self, template: &str, extra: minijinja::Value) -> anyhow::Result<String> {
        let env = environment(None);
        let base = context! {
            forge_pr => self.pr_ref(),
            base => short_sha(self.base),
            head => short_sha(&self.pr.head_sha),
            run_url => self.run_url,
        };
        env.render_str(template, context! { ..base, ..extra })
            .context("a ticket template does not render")
    }
}

impl Bot {
    /// Files `report.tickets` on the forge and records what happened in each.
    pub(super) async fn file_tickets(
        &self,
        forge: &Arc<dyn Forge>,
        repo: &RepoId,
        pr: &PullRequestInfo,
        run_url: &str,
        report: &mut Report,
    ) {
        let Some(policy) = report.ticket_policy.clone() else {
            return;
        };
        if report.tickets.is_empty() {
            return;
        }
        let cx = Filing {
            forge,
            repo,
            pr,
            run_url,
            base: &report.base.clone(),
        };
        let store = &self.tickets;
        let mut opened = 0usize;
        let mut capped = Vec::new();
        let mut notes = Vec::new();
        for t in report.tickets.iter_mut() {
            match file_one(&cx, store, &policy, t, &mut opened).await {
                Ok(()) => {
                    if t.status == Some(TicketStatus::Capped) {
                        capped.push(t.clone());
                    }
                }
                Err(e) => {
                    t.status = Some(TicketStatus::Failed);
                    tracing::warn!(repo = %repo.full_name, key = %t.key, error = %format!("{e:#}"), "could not file a ticket");
                    notes.push(format!(
                        "the ticket for {} in `{}` / `{}` could not be filed: {e:#}",
                        t.finding, t.suite, t.case
                    ));
                }
            }
        }
        if !capped.is_empty() {
            match file_summary(&cx, &policy, &capped).await {
                Ok(issue) => {
                    for t in report.tickets.iter_mut() {
                        if t.status == Some(TicketStatus::Capped) {
                            t.issue = Some(issue.url.clone());
                        }
                    }
                }
                Err(e) => notes.push(format!(
                    "the summary issue for {} findings over the cap could not be filed: {e:#}",
                    capped.len()
                )),
            }
        }
        report.notes.extend(notes);
    }
}

async fn file_one(
    cx: &Filing<'_>,
    store: &Tickets,
    policy: &crate::config::tickets::TicketsConfig,
    t: &mut Ticket,
    opened: &mut usize,
) -> anyhow::Result<()> {
    let kind = cx.forge.kind();
    let marker = ticket_marker(&t.key);
    let known = store.get(kind, &cx.repo.full_name, &t.key).await?;
    let mut issue = match &known {
        Some(k) => cx.forge.issue(cx.repo, k.number as u64).await?,
        None => None,
    };
    if issue.is_none() {
        issue = cx
            .forge
            .find_issue(cx.repo, &marker, &[], MARKER_SCAN_LIMIT)
            .await?;
    }
    let record = |i: &IssueRef| StoredTicket {
        number: i.number as i64,
        url: i.url.clone(),
        last_sha: cx.pr.head_sha.clone(),
    };
    match issue {
        Some(i) if i.open => {
            // A retried run of the same head has said it already.
            let told = known
                .as_ref()
                .is_some_and(|k| k.number as u64 == i.number && k.last_sha == cx.pr.head_sha);
            if !told {
                let body = cx.render(SEEN_TEMPLATE, context! {})?;
                cx.forge.comment_on_issue(cx.repo, i.number, &body).await?;
            }
            store
                .put(kind, &cx.repo.full_name, &t.key, &record(&i))
                .await?;
            t.status = Some(TicketStatus::Updated);
            t.issue = Some(i.url);
        }
        Some(i) => {
            store
                .put(kind, &cx.repo.full_name, &t.key, &record(&i))
                .await?;
            t.status = Some(TicketStatus::Closed);
            t.issue = Some(i.url);
        }
        None if *opened >= policy.max_per_run() => {
            t.status = Some(TicketStatus::Capped);
        }
        None => {
            let title = format!("promptgate: {} in {} / {}", t.finding, t.suite, t.case);
            let body = cx.render(
                TICKET_TEMPLATE,
                context! { marker => &marker, ticket => &*t },
            )?;
            let i = cx
                .forge
                .open_issue(cx.repo, &title, &body, &policy.labels, &marker)
                .await?;
            store
                .put(kind, &cx.repo.full_name, &t.key, &record(&i))
                .await?;
            *opened += 1;
            t.status = Some(TicketStatus::Opened);
            t.new = true;
            t.issue = Some(i.url);
        }
    }
    Ok(())
}

/// One issue for the findings over the cap, once per head (found again by its marker).
async fn file_summary(
    cx: &Filing<'_>,
    policy: &crate::config::tickets::TicketsConfig,
    capped: &[Ticket],
) -> anyhow::Result<IssueRef> {
    let marker = format!(
        "<!-- promptgate:ticket-summary:{}:{} -->",
        cx.pr.number, cx.pr.head_sha
    );
    if let Some(i) = cx
        .forge
        .find_issue(cx.repo, &marker, &[], MARKER_SCAN_LIMIT)
        .await?
    {
        return Ok(i);
    }
    let body = cx.render(
        SUMMARY_TEMPLATE,
        context! { marker => &marker, tickets => capped, cap => policy.max_per_run() },
    )?;
    let title = format!(
        "promptgate: {} more findings on {} at {}",
        capped.len(),
        cx.pr_ref(),
        short_sha(&cx.pr.head_sha)
    );
    Ok(cx
        .forge
        .open_issue(cx.repo, &title, &body, &policy.labels, &marker)
        .await?)
}
