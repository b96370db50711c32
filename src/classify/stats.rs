//! Run-level feature statistics (count, and per dimension mean, std, min, max), written
//! next to the output so scheduled runs can be compared for drift.

use serde::{Deserialize, Serialize};

/// Streaming per-dimension statistics (Welford's algorithm; constant memory).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FeatureStats {
    pub count: u64,
    pub mean: Vec<f64>,
    /// Sum of squared deviations from the mean (Welford's M2).
    #[serde(default)]
    m2: Vec<f64>,
    pub std: Vec<f64>,
    pub min: Vec<f32>,
    pub max: Vec<f32>,
}

impl FeatureStats {
    /// Adds one vector.
    pub fn push(&mut self, v: &[f32]) {
        if self.count == 0 {
            self.mean = vec![0.0; v.len()];
            self.m2 = vec![0.0; v.len()];
            self.min = vec![f32::INFINITY; v.len()];
            self.max = vec![f32::NEG_INFINITY; v.len()];
        }
        if v.len() != self.mean.len() {
            return;
        }
        self.count += 1;
        let n = self.count as f64;
        for (i, &x) in v.iter().enumerate() {
            let x64 = x as f64;
            let d = x64 - self.mean[i];
            self.mean[i] += d / n;
            self.m2[i] += d * (x64 - self.mean[i]);
            self.min[i] = self.min[i].min(x);
            self.max[i] = self.max[i].max(x);
        }
    }

    /// Merges statistics of another set (Chan et al.), for resumed runs.
    pub fn merge(&mut self, other: &FeatureStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        for i in 0..self.mean.len().min(other.mean.len()) {
            let d = other.mean[i] - self.mean[i];
            self.m2[i] += other.m2[i] + d * d * na * nb / n;
            self.mean[i] += d * nb / n;
            self.min[i] = self.min[i].min(other.min[i]);
            self.max[i] = self.max[i].max(other.max[i]);
        }
        self.count += other.count;
    }

    /// Fills `std` (population standard deviation) from the running sums.
    pub fn finish(&mut self) {
        let n = self.count.max(1) as f64;
        self.std = self.m2.iter().map(|m| (m / n).sqrt()).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_computation_and_merges() {
        let data = [[1.0f32, 10.0], [2.0, 20.0], [4.0, 40.0], [7.0, 0.0]];
        let mut all = FeatureStats::default();
        data.iter().for_each(|v| all.push(v));
        all.finish();
        assert_eq!(all.count, 4);
        assert!((all.mean[0] - 3.5).abs() < 1e-12);
        let var0 = [1.0f64, 2.0, 4.0, 7.0]
            .iter()
            .map(|x| (x - 3.5).powi(2))
            .sum::<f64>()
            / 4.0;
        assert!((all.std[0] - var0.sqrt()).abs() < 1e-12);
        assert_eq!(all.min, vec![1.0, 0.0]);
        assert_eq!(all.max, vec![7.0, 40.0]);
        let (mut a, mut b) = (FeatureStats::default(), FeatureStats::default());
        data[..1].iter().for_each(|v| a.push(v));
        data[1..].iter().for_each(|v| b.push(v));
        a.merge(&b);
        a.finish();
        assert!((a.mean[1] - all.mean[1]).abs() < 1e-12);
        assert!((a.std[1] - all.std[1]).abs() < 1e-12);
    }
}
