//! Probability calibration: temperature scaling fitted on the validation split, and the
//! expected calibration error (ECE) with its reliability bins.
//!
//! The model outputs softmax probabilities (averaged with the mirror image's when the card
//! asks for test-time flips). Temperature scaling divides the log-probabilities by `T` and
//! renormalises: `p_i^(1/T) / sum_j p_j^(1/T)`. That equals `softmax(logits / T)` for a
//! single pass and applies the same correction to flip-averaged outputs, so the fitted `T`
//! is the one for exactly what facebatch reports. The predicted class never changes.

use serde::{Deserialize, Serialize};

/// The calibration recorded in a model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// `temperature`.
    pub method: String,
    pub temperature: f64,
    /// The split it was fitted on, and how many faces.
    pub fitted_on: String,
    pub n: usize,
    /// Mean negative log-likelihood on that split, before and after.
    pub nll_before: f64,
    pub nll_after: f64,
    /// Expected calibration error (15 equal-width confidence bins) before and after.
    pub ece_before: f64,
    pub ece_after: f64,
}

/// Number of equal-width confidence bins for ECE and reliability diagrams.
pub const BINS: usize = 15;

/// Rescales each row of `probs` (`[n, classes]`) with temperature `t`, in place.
pub fn apply_temperature(probs: &mut [f32], classes: usize, t: f64) {
    if classes == 0 || !t.is_finite() || t <= 0.0 || (t - 1.0).abs() < 1e-12 {
        return;
    }
    for row in probs.chunks_mut(classes) {
        let logs: Vec<f64> = row
            .iter()
            .map(|&p| (p.max(1e-12) as f64).ln() / t)
            .collect();
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = logs.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        for (p, e) in row.iter_mut().zip(exps) {
            *p = (e / sum) as f32;
        }
    }
}

/// Moves the decision boundary of class `k` to probability `t`: each row's odds of `k` are
/// multiplied by `(1 - t) / t` and the row renormalised, so that with two classes `k` is the
/// most probable class exactly when its probability was at least `t`.
pub fn shift_threshold(probs: &mut [f32], classes: usize, k: usize, t: f64) {
    if classes == 0 || k >= classes || !(t > 0.0 && t < 1.0) {
        return;
    }
    let factor = (1.0 - t) / t;
    for row in probs.chunks_mut(classes) {
        let pk = row[k] as f64 * factor;
        let rest: f64 = row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, p)| *p as f64)
            .sum();
        let sum = (pk + rest).max(1e-30);
        for (j, p) in row.iter_mut().enumerate() {
            let v = if j == k { pk } else { *p as f64 };
            *p = (v / sum) as f32;
        }
    }
}

/// Mean negative log-likelihood of the true classes under temperature `t`.
pub fn nll(probs: &[f32], truth: &[usize], classes: usize, t: f64) -> f64 {
    let mut scaled = probs.to_vec();
    apply_temperature(&mut scaled, classes, t);
    let sum: f64 = scaled
        .chunks(classes)
        .zip(truth)
        .map(|(row, &y)| -(row[y].max(1e-12) as f64).ln())
        .sum();
    sum / truth.len().max(1) as f64
}

/// The temperature that minimises the NLL of `truth` (golden-section search over log T in
/// [1/20, 20]; the NLL is unimodal in T).
pub fn fit_temperature(probs: &[f32], truth: &[usize], classes: usize) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| nll(probs, truth, classes, log_t.exp());
    let (mut a, mut b) = ((0.05f64).ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// One confidence bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    /// Mean confidence and accuracy of the faces in the bin (0 when empty).
    pub confidence: f64,
    pub accuracy: f64,
}

/// Calibration of a set of predictions: ECE and the bins it is computed from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reliability {
    /// Expected calibration error: sum over bins of (n_bin / n) |accuracy - confidence|.
    pub ece: f64,
    pub bins: Vec<Bin>,
}

/// ECE and reliability bins of predictions with confidence `conf` (the top probability)
/// and outcome `correct`, over [`BINS`] equal-width bins of [0, 1].
pub fn reliability(conf: &[f64], correct: &[bool]) -> Reliability {
    let mut bins: Vec<Bin> = (0..BINS)
        .map(|k| Bin {
            lo: k as f64 / BINS as f64,
            hi: (k + 1) as f64 / BINS as f64,
            n: 0,
            confidence: 0.0,
            accuracy: 0.0,
        })
        .collect();
    for (&c, &ok) in conf.iter().zip(correct) {
        let k = ((c * BINS as f64) as usize).min(BINS - 1);
        bins[k].n += 1;
        bins[k].confidence += c;
        bins[k].accuracy += f64::from(u8::from(ok));
    }
    let n = conf.len().max(1) as f64;
    let mut ece = 0.0;
    for b in &mut bins {
        if b.n > 0 {
            b.confidence /= b.n as f64;
            b.accuracy /= b.n as f64;
            ece += b.n as f64 / n * (b.accuracy - b.confidence).abs();
        }
    }
    Reliability { ece, bins }
}

/// Top-class confidence and correctness of each row of `probs` against `truth`.
pub fn confidences(probs: &[f32], truth: &[usize], classes: usize) -> (Vec<f64>, Vec<bool>) {
    probs
        .chunks(classes)
        .zip(truth)
        .map(|(row, &y)| {
            let mut best = 0;
            for (k, p) in row.iter().enumerate() {
                if *p > row[best] {
                    best = k;
                }
            }
            (row[best] as f64, best == y)
        })
        .unzip()
}

/// Fits a temperature to `probs` against `truth` and describes the result.
pub fn calibrate(probs: &[f32], truth: &[usize], classes: usize, split: &str) -> Calibration {
    let t = fit_temperature(probs, truth, classes);
    let ece_at = |t: f64| {
        let mut p = probs.to_vec();
        apply_temperature(&mut p, classes, t);
        let (c, ok) = confidences(&p, truth, classes);
        reliability(&c, &ok).ece
    };
    Calibration {
        method: "temperature".into(),
        temperature: t,
        fitted_on: split.into(),
        n: truth.len(),
        nll_before: nll(probs, truth, classes, 1.0),
        nll_after: nll(probs, truth, classes, t),
        ece_before: ece_at(1.0),
        ece_after: ece_at(t),
    }
}

/// Wilson score interval (95%) of `k` successes in `n` trials.
pub fn wilson(k: usize, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_shifted_threshold_decides_at_its_value() {
        // Threshold 0.6 on class 1: 0.59 now loses, 0.61 wins, rows still sum to one.
        let mut p = vec![0.41f32, 0.59, 0.39, 0.61];
        shift_threshold(&mut p, 2, 1, 0.6);
        assert!(p[1] < 0.5 && p[3] > 0.5, "{p:?}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6 && (p[2] + p[3] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn temperature_keeps_the_argmax_and_sums_to_one() {
        let mut p = vec![0.7f32, 0.3, 0.2, 0.8];
        apply_temperature(&mut p, 2, 2.0);
        assert!(p[0] > p[1] && p[3] > p[2]);
        assert!(p[0] < 0.7, "a temperature above 1 softens");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6);
        let mut q = vec![0.7f32, 0.3];
        apply_temperature(&mut q, 2, 1.0);
        assert_eq!(q, vec![0.7, 0.3]);
    }

    #[test]
    fn fitting_recovers_a_known_temperature() {
        // Logits drawn so that softmax(z) is calibrated, then sharpened by 1/2.5: the fit
        // should find T close to 2.5 and bring the ECE down.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (mut probs, mut truth) = (Vec::new(), Vec::new());
        for _ in 0..20_000 {
            let z: f64 = rng.random_range(-3.0..3.0);
            let p1 = 1.0 / (1.0 + (-z).exp());
            let y = usize::from(rng.random::<f64>() < p1);
            let sharp = 1.0 / (1.0 + (-z * 2.5).exp());
            probs.extend([(1.0 - sharp) as f32, sharp as f32]);
            truth.push(y);
        }
        let c = calibrate(&probs, &truth, 2, "val");
        assert!((c.temperature - 2.5).abs() < 0.15, "T = {}", c.temperature);
        assert!(c.nll_after < c.nll_before);
        assert!(c.ece_after < 0.02 && c.ece_before > 0.05, "{c:?}");
    }

    #[test]
    fn ece_of_hand_made_bins() {
        // Two faces at 0.95 confidence, one right; two at 0.55, both right.
        let r = reliability(&[0.95, 0.95, 0.55, 0.55], &[true, false, true, true]);
        // |0.5 - 0.95| * 2/4 + |1.0 - 0.55| * 2/4
        assert!((r.ece - (0.225 + 0.225)).abs() < 1e-9, "{}", r.ece);
        assert_eq!(r.bins.iter().map(|b| b.n).sum::<usize>(), 4);
    }

    #[test]
    fn wilson_interval_matches_the_textbook() {
        // 8 of 10: Wilson 95% interval is about [0.490, 0.943].
        let [lo, hi] = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), [0.0, 1.0]);
        let [lo, hi] = wilson(10, 10);
        assert!((hi - 1.0).abs() < 1e-12 && lo > 0.69, "{lo} {hi}");
    }
}
