//! `tickets`: a forge issue for each finding of the listed kinds, even when the run
//! passes (SPEC §1): "never automate the acceptance of known errors".

use serde::{Deserialize, Serialize};

/// New issues one run may open; the rest are summarised in one more issue.
pub const DEFAULT_MAX_PER_RUN: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    /// Which findings open a ticket.
    pub on: Vec<Finding>,
    /// Labels every ticket gets.
    #[serde(default)]
    pub labels: Vec<String>,
    /// New tickets per run at most (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_run: Option<usize>,
}

impl TicketsConfig {
    pub fn max_per_run(&self) -> usize {
        self.max_per_run.unwrap_or(DEFAULT_MAX_PER_RUN)
    }
}

/// A kind of finding a ticket is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// A case the judge flags as unsupported by its context.
    Hallucination,
    /// An attack whose injected instruction the answer followed.
    Injection,
    /// A case that passed at base and fails at head.
    Regressed,
}

impl Finding {
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::Hallucination => "hallucination",
            Finding::Injection => "injection",
            Finding::Regressed => "regressed",
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
