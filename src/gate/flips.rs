//! Which cases changed outcome between base and head (SPEC §5 `flips`).

use std::collections::HashMap;

use crate::report::Flips;

/// A case's outcome at one side: its assertions and per-case thresholds held, or not,
/// or it has no honest score (an error is neither a pass nor a fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseOutcome {
    Pass,
    Fail,
    Error,
}

/// Compares outcomes by case id; head order is kept. A case erroring at either side is
/// counted unchanged: nothing can be said about it, and its error is reported already.
pub fn flips(base: &[(&str, CaseOutcome)], head: &[(&str, CaseOutcome)]) -> Flips {
    let base_by_id: HashMap<&str, CaseOutcome> = base.iter().copied().collect();
    let mut out = Flips::default();
    for (id, h) in head {
        match (base_by_id.get(id), h) {
            (None, _) => out.new += 1,
            (Some(CaseOutcome::Pass), CaseOutcome::Fail) => out.regressed.push(id.to_string()),
            (Some(CaseOutcome::Fail), CaseOutcome::Pass) => out.fixed.push(id.to_string()),
            (Some(_), _) => out.unchanged += 1,
        }
    }
    let head_ids: std::collections::HashSet<&str> = head.iter().map(|(id, _)| *id).collect();
    out.removed = base.iter().filter(|(id, _)| !head_ids.contains(id)).count();
    out
}

#[cfg(test)]
mod tests {
    use super::CaseOutcome::*;
    use super::*;

    #[test]
    fn regressed_fixed_new_removed() {
        let base = [
            ("a", Pass),
            ("b", Fail),
            ("c", Pass),
            ("d", Pass),
            ("e", Error),
        ];
        let head = [
            ("a", Fail),
            ("b", Pass),
            ("c", Pass),
            ("x", Fail),
            ("e", Fail),
        ];
        let f = flips(&base, &head);
        assert_eq!(f.regressed, vec!["a"]);
        assert_eq!(f.fixed, vec!["b"]);
        assert_eq!((f.unchanged, f.new, f.removed), (2, 1, 1));
    }
}
