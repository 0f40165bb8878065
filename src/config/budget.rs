//! `budget`: what evaluation may cost (SPEC §1, issue 18). A run whose estimate would
//! go over a limit does not start until an approver confirms it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// One run's estimated cost, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_run_usd: Option<f64>,
    /// Everything one PR's runs spend, this run's estimate included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_pr_usd: Option<f64>,
    /// The repository's spend this calendar month (UTC), this run's estimate included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_month_usd: Option<f64>,
}

/// What was spent before this run, as the bot's store knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spent {
    pub pr_usd: f64,
    pub month_usd: f64,
}

impl BudgetConfig {
    /// The first limit `estimate_usd` would break, as (setting, allowed, would be).
    pub fn exceeded(&self, estimate_usd: f64, spent: Spent) -> Option<(&'static str, f64, f64)> {
        let checks = [
            ("per_run_usd", self.per_run_usd, estimate_usd),
            ("per_pr_usd", self.per_pr_usd, spent.pr_usd + estimate_usd),
            (
                "per_month_usd",
                self.per_month_usd,
                spent.month_usd + estimate_usd,
            ),
        ];
        checks.into_iter().find_map(|(name, limit, would)| {
            limit
                .filter(|l| would > *l + 1e-12)
                .map(|l| (name, l, would))
        })
    }

    /// Negative or non-finite limits, by setting name.
    pub fn invalid(&self) -> Vec<&'static str> {
        [
            ("per_run_usd", self.per_run_usd),
            ("per_pr_usd", self.per_pr_usd),
            ("per_month_usd", self.per_month_usd),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some_and(|v| !v.is_finite() || v < 0.0))
        .map(|(n, _)| n)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_broken_limit_is_named() {
        let b = BudgetConfig {
            per_run_usd: Some(5.0),
            per_pr_usd: Some(20.0),
            per_month_usd: Some(500.0),
        };
        let spent = Spent {
            pr_usd: 18.0,
            month_usd: 100.0,
        };
        assert_eq!(b.exceeded(1.0, spent), None);
        assert_eq!(b.exceeded(6.0, spent), Some(("per_run_usd", 5.0, 6.0)));
        assert_eq!(b.exceeded(3.0, spent), Some(("per_pr_usd", 20.0, 21.0)));
        let month = Spent {
            pr_usd: 0.0,
            month_usd: 499.0,
        };
        assert_eq!(
            b.exceeded(2.0, month),
            Some(("per_month_usd", 500.0, 501.0))
        );
        assert_eq!(BudgetConfig::default().exceeded(1e9, month), None);
    }
}
