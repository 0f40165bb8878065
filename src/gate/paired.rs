//! Paired base/head comparison of a 0..1 metric: how sure the suite delta is.
//!
//! Every case present at both sides gives one paired difference (head − base, each
//! side the mean over its samples, so the samples of a case are clustered, never
//! counted as independent). An unaffected case has the same keys at both sides and
//! contributes exactly 0. The interval is the clustered standard error of the mean
//! difference, `delta ± 1.96·sd/√n`: deterministic (a re-run gives the same interval),
//! always contains the point estimate, and needs no resampling of 100,000 cases.

/// The paired differences of one metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    /// Cases with a value at both sides.
    pub n: usize,
    /// Sample standard deviation of the differences (0 with fewer than two).
    pub sd: f64,
}

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

impl Paired {
    /// `None` when no case has a value at both sides.
    pub fn of(diffs: &[f64]) -> Option<Self> {
        let n = diffs.len();
        if n == 0 {
            return None;
        }
        let mean = diffs.iter().sum::<f64>() / n as f64;
        let sd = if n < 2 {
            0.0
        } else {
            let ss: f64 = diffs.iter().map(|d| (d - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        };
        Some(Self { n, sd })
    }

    /// Half the width of the 95 % interval.
    pub fn half_width(&self) -> f64 {
        Z95 * self.sd / (self.n as f64).sqrt()
    }

    /// The 95 % interval around `delta`.
    pub fn ci95(&self, delta: f64) -> [f64; 2] {
        let h = self.half_width();
        [delta - h, delta + h]
    }

    /// Whether the interval around `delta` has `limit` strictly inside it.
    pub fn straddles(&self, delta: f64, limit: f64) -> bool {
        let [low, high] = self.ci95(delta);
        low < limit && limit < high
    }

    /// A power estimate: samples per case that would bring the interval clear of
    /// `limit`, assuming the observed spread shrinks with the square root of the data
    /// (more samples per case average the noise of each case down). `None` when the
    /// estimate sits on the limit, which no amount of data separates.
    pub fn samples_to_settle(&self, delta: f64, limit: f64, samples: u32) -> Option<u32> {
        let gap = (delta - limit).abs();
        if gap < 1e-12 {
            return None;
        }
        let factor = (self.half_width() / gap).powi(2);
        let needed = (f64::from(samples.max(1)) * factor).ceil();
        (needed.is_finite() && needed < f64::from(u32::MAX)).then(|| (needed as u32).max(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaffected_cases_narrow_the_interval_and_it_holds_the_estimate() {
        // One case of 100 dropped by 0.5; 99 unaffected cases contribute 0.
        let mut diffs = vec![0.0; 99];
        diffs.push(-0.5);
        let p = Paired::of(&diffs).unwrap();
        let delta = -0.005;
        let [low, high] = p.ci95(delta);
        assert!(low < delta && delta < high);
        assert!((high - low) < 0.03, "{low} {high}");
        assert!(!p.straddles(delta, -0.05));
    }

    #[test]
    fn identical_sides_give_a_point_interval() {
        let p = Paired::of(&[0.0, 0.0, 0.0]).unwrap();
        assert_eq!(p.ci95(0.0), [0.0, 0.0]);
        assert_eq!(Paired::of(&[]), None);
    }

    #[test]
    fn a_straddled_limit_asks_for_more_samples() {
        // Half the cases up, half down: a mean of -0.04 with a wide spread.
        let diffs: Vec<f64> = (0..10)
            .map(|i| if i % 2 == 0 { 0.2 } else { -0.28 })
            .collect();
        let p = Paired::of(&diffs).unwrap();
        let delta = diffs.iter().sum::<f64>() / 10.0;
        assert!(p.straddles(delta, -0.05));
        let n = p.samples_to_settle(delta, -0.05, 1).unwrap();
        assert!(n > 10, "{n}");
        // With that many, the interval would clear the limit.
        let shrunk = p.half_width() / (f64::from(n)).sqrt();
        assert!(shrunk <= (delta + 0.05).abs() + 1e-12);
        assert_eq!(p.samples_to_settle(-0.05, -0.05, 1), None);
    }
}
