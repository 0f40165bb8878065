//! Small statistics over per-case values.

pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        None
    } else {
        Some(values.iter().sum::<f64>() / values.len() as f64)
    }
}

/// The p-th percentile (0..=100) by the nearest-rank method, which never invents a
/// value that was not observed.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Agreement of a grader with human labels on one yes/no question.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// Share of items where they agree.
    pub accuracy: f64,
    /// Cohen's kappa: agreement beyond what chance alone would give (1 = perfect,
    /// 0 = chance). When both always say the same single answer, chance agreement is
    /// total and kappa is 1 if they agree and 0 if not.
    pub kappa: f64,
}

/// Accuracy and Cohen's kappa of `(label, predicted)` pairs; `None` when empty.
pub fn agreement(pairs: &[(bool, bool)]) -> Option<Agreement> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let agree = pairs.iter().filter(|(l, p)| l == p).count() as f64 / n;
    let yes_label = pairs.iter().filter(|(l, _)| *l).count() as f64 / n;
    let yes_pred = pairs.iter().filter(|(_, p)| *p).count() as f64 / n;
    let chance = yes_label * yes_pred + (1.0 - yes_label) * (1.0 - yes_pred);
    let kappa = if (1.0 - chance).abs() < 1e-12 {
        if agree >= 1.0 - 1e-12 {
            1.0
        } else {
            0.0
        }
    } else {
        (agree - chance) / (1.0 - chance)
    };
    Some(Agreement {
        accuracy: agree,
        kappa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohens_kappa() {
        let perfect = [(true, true), (false, false), (true, true)];
        assert_eq!(agreement(&perfect).unwrap().kappa, 1.0);
        // Always answering "yes" on balanced labels: half right, no better than chance.
        let lazy = [(true, true), (false, true), (true, true), (false, true)];
        let a = agreement(&lazy).unwrap();
        assert_eq!(a.accuracy, 0.5);
        assert!(a.kappa.abs() < 1e-12);
        // 3 of 4 right on balanced labels: kappa 0.5.
        let good = [(true, true), (false, false), (true, true), (false, true)];
        assert!((agreement(&good).unwrap().kappa - 0.5).abs() < 1e-12);
        assert_eq!(agreement(&[]), None);
    }

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 100.0), Some(20.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        assert_eq!(percentile(&[], 95.0), None);
        assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
        assert_eq!(mean(&[]), None);
    }
}
