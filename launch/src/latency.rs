//! The latency summary both load generators report (echo's and kv's): samples go into an
//! HDR histogram while the run lasts; [`Latency::finish`] turns them into the percentiles
//! that the reports print and serialise (as `p50_us`, `p99_us`, `p999_us`, `mean_us`).

use hdrhistogram::Histogram;

/// Highest latency recorded, nanoseconds (100 s); a longer sample is not counted.
const MAX_NS: u64 = 100_000_000_000;

/// Latency of one load run, or of several merged.
///
/// Drive it: [`record`](Self::record) each transaction's latency, [`merge`](Self::merge)
/// the summaries of other cores, then [`finish`](Self::finish) before reading the fields
/// (they are zero until then).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p999_us: f64,
    /// Mean, microseconds.
    pub mean_us: f64,
    #[serde(skip)]
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        // 1 ns .. 100 s at 3 significant digits: valid bounds, so neither constructor fails.
        let hist = Histogram::new_with_bounds(1, MAX_NS, 3).unwrap_or_else(|_| {
            Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
        });
        Self {
            p50_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            mean_us: 0.0,
            hist,
        }
    }
}

impl Latency {
    /// Records one sample of `ns` nanoseconds (at least 1).
    pub fn record(&mut self, ns: u64) {
        let _ = self.hist.record(ns.max(1));
    }

    /// Adds the samples of `other`.
    pub fn merge(&mut self, other: &Self) {
        let _ = self.hist.add(&other.hist);
    }

    /// Computes the percentiles from the samples so far.
    pub fn finish(&mut self) {
        let us = |v: u64| v as f64 / 1000.0;
        self.p50_us = us(self.hist.value_at_quantile(0.50));
        self.p99_us = us(self.hist.value_at_quantile(0.99));
        self.p999_us = us(self.hist.value_at_quantile(0.999));
        self.mean_us = self.hist.mean() / 1000.0;
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "latency (us): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  mean {:.1}",
            self.p50_us, self.p99_us, self.p999_us, self.mean_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_merged_samples() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for i in 1..=50 {
            a.record(i * 1000);
            b.record((i + 50) * 1000);
        }
        a.merge(&b);
        a.finish();
        assert!((a.p50_us - 50.0).abs() < 0.1, "{a}");
        assert!((a.p99_us - 99.0).abs() < 0.1, "{a}");
        assert!((a.mean_us - 50.5).abs() < 0.1, "{a}");
        let json = serde_json::to_value(&a).unwrap_or_default();
        assert_eq!(json["p999_us"].as_f64(), Some(a.p999_us), "{json}");
        assert!((a.p999_us - 100.0).abs() < 0.1, "{a}");
        assert!(json.get("hist").is_none());
    }
}
