//! Fitting an ensemble's combining step on a labelled split: the members' weights, the
//! decision threshold that balances the two labels' recalls, and the temperature of the
//! combined probabilities, in the order the classifier applies them
//! ([`Classifier::run`](crate::model::classifier::Classifier::run)): weighted mean of the
//! members' calibrated probabilities, then the threshold's shift of the log-odds, then the
//! temperature.

use std::collections::BTreeMap;

use crate::model::calibration::{self, Calibration};
use crate::model::card::{Combine, CombineRule, Threshold};

/// One labelled face as the members saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// Each member's calibrated probabilities, in member then label order.
    pub members: Vec<Vec<f32>>,
    /// The true label's index.
    pub truth: usize,
}

/// What to fit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitOptions {
    /// `Mean` keeps equal weights; `Weighted` searches the simplex for the weights with the
    /// lowest negative log-likelihood.
    pub rule: CombineRule,
    /// Grid step of the weight search (0.05: 21 candidates for two members).
    pub weight_step: f64,
    /// Choose a threshold for a two-label model so that the labels' recalls are as equal
    /// as they can be.
    pub balance_recall: bool,
    /// Fit a temperature to the combined (and thresholded) probabilities.
    pub calibrate: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            rule: CombineRule::Weighted,
            weight_step: 0.05,
            balance_recall: true,
            calibrate: true,
        }
    }
}

/// The combined probabilities of every face with `weights`, in face then label order.
pub fn combine(scored: &[Scored], weights: &[f64], classes: usize) -> Vec<f32> {
    let mut out = vec![0f32; scored.len() * classes];
    for (row, s) in out.chunks_mut(classes).zip(scored) {
        for (w, m) in weights.iter().zip(&s.members) {
            for (acc, p) in row.iter_mut().zip(m) {
                *acc += (*w * *p as f64) as f32;
            }
        }
    }
    out
}

/// Accuracy of `probs` (argmax) against `truth`.
pub fn accuracy(probs: &[f32], truth: &[usize], classes: usize) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let right = probs
        .chunks(classes)
        .zip(truth)
        .filter(|(row, y)| argmax(row) == **y)
        .count();
    right as f64 / truth.len() as f64
}

/// Recall of each label of `probs` (argmax) against `truth` (0 for a label with no faces).
pub fn recalls(probs: &[f32], truth: &[usize], classes: usize) -> Vec<f64> {
    let mut hit = vec![0usize; classes];
    let mut all = vec![0usize; classes];
    for (row, &y) in probs.chunks(classes).zip(truth) {
        all[y] += 1;
        if argmax(row) == y {
            hit[y] += 1;
        }
    }
    hit.iter()
        .zip(&all)
        .map(|(&h, &a)| if a == 0 { 0.0 } else { h as f64 / a as f64 })
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, p) in row.iter().enumerate() {
        if *p > row[best] {
            best = i;
        }
    }
    best
}

/// Every weight vector of `n` members on the simplex grid of `step` (each weight a multiple
/// of `step`, summing to 1).
fn simplex(n: usize, step: f64) -> Vec<Vec<f64>> {
    let parts = (1.0 / step).round().max(1.0) as usize;
    let mut out = Vec::new();
    let mut current = Vec::with_capacity(n);
    fn go(left: usize, slots: usize, parts: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<f64>>) {
        if slots == 1 {
            cur.push(left);
            out.push(cur.iter().map(|&k| k as f64 / parts as f64).collect());
            cur.pop();
            return;
        }
        for k in 0..=left {
            cur.push(k);
            go(left - k, slots - 1, parts, cur, out);
            cur.pop();
        }
    }
    if n > 0 {
        go(parts, n, parts, &mut current, &mut out);
    }
    out
}

/// The weights with the lowest NLL on `scored` (ties: the one nearest equal weights).
pub fn fit_weights(scored: &[Scored], members: usize, classes: usize, step: f64) -> Vec<f64> {
    let truth: Vec<usize> = scored.iter().map(|s| s.truth).collect();
    let equal = 1.0 / members.max(1) as f64;
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    for w in simplex(members, step) {
        let probs = combine(scored, &w, classes);
        let loss = calibration::nll(&probs, &truth, classes, 1.0);
        let spread: f64 = w.iter().map(|x| (x - equal).abs()).sum();
        let better = match &best {
            None => true,
            Some((l, s, _)) => loss < l - 1e-12 || ((loss - l).abs() <= 1e-12 && spread < *s),
        };
        if better {
            best = Some((loss, spread, w));
        }
    }
    best.map(|b| b.2).unwrap_or_default()
}

/// The threshold on label 0's probability (0.3 to 0.7, in steps of 0.001) at which the
/// two labels' recalls are closest (ties: the value nearest 0.5), and those recalls.
pub fn balanced_threshold(probs: &[f32], truth: &[usize]) -> (f64, [f64; 2]) {
    let mut best = (0.5, f64::INFINITY, [0.0, 0.0]);
    for i in 300..=700 {
        let t = i as f64 / 1000.0;
        let mut shifted = probs.to_vec();
        calibration::shift_threshold(&mut shifted, 2, 0, t);
        let r = recalls(&shifted, truth, 2);
        let gap = (r[0] - r[1]).abs();
        if gap < best.1 - 1e-12
            || ((gap - best.1).abs() <= 1e-12 && (t - 0.5).abs() < (best.0 - 0.5f64).abs())
        {
            best = (t, gap, [r[0], r[1]]);
        }
    }
    (best.0, best.2)
}

/// Fits the combining step on `scored` (the split named `split`) for `labels`.
pub fn fit(scored: &[Scored], labels: &[String], split: &str, opts: FitOptions) -> Combine {
    let classes = labels.len();
    let members = scored.first().map_or(0, |s| s.members.len());
    let truth: Vec<usize> = scored.iter().map(|s| s.truth).collect();
    let equal = vec![1.0 / members.max(1) as f64; members];
    let mean_acc = accuracy(&combine(scored, &equal, classes), &truth, classes);
    let weights = match opts.rule {
        CombineRule::Mean => equal.clone(),
        CombineRule::Weighted => fit_weights(scored, members, classes, opts.weight_step),
    };
    let mut probs = combine(scored, &weights, classes);
    let weighted_acc = accuracy(&probs, &truth, classes);
    let mut words = vec![format!(
        "on the {split} split ({} faces): mean of the members {:.2}%",
        truth.len(),
        100.0 * mean_acc
    )];
    if opts.rule == CombineRule::Weighted {
        let shown: Vec<String> = weights.iter().map(|w| format!("{w:.2}")).collect();
        words.push(format!(
            "weights [{}] with the lowest NLL (grid step {}) {:.2}%",
            shown.join(", "),
            opts.weight_step,
            100.0 * weighted_acc
        ));
    }
    let threshold = if opts.balance_recall && classes == 2 {
        let (value, r) = balanced_threshold(&probs, &truth);
        calibration::shift_threshold(&mut probs, 2, 0, value);
        words.push(format!(
            "{} when p({}) >= {value:.3}, recalls {:.2}% and {:.2}%, accuracy {:.2}%",
            labels[0],
            labels[0],
            100.0 * r[0],
            100.0 * r[1],
            100.0 * accuracy(&probs, &truth, 2)
        ));
        Some(Threshold {
            label: labels[0].clone(),
            value,
            fitted_on: split.into(),
            rule: "closest female and male recall (every 0.001 from 0.3 to 0.7; ties nearest 0.5)"
                .replace(
                    "female and male",
                    &format!("{} and {}", labels[0], labels[1]),
                ),
            recall: labels.iter().cloned().zip(r).collect::<BTreeMap<_, _>>(),
        })
    } else {
        None
    };
    let calibration: Option<Calibration> = opts
        .calibrate
        .then(|| calibration::calibrate(&probs, &truth, classes, split));
    if let Some(c) = &calibration {
        words.push(format!(
            "temperature {:.3} (ECE {:.4} -> {:.4})",
            c.temperature, c.ece_before, c.ece_after
        ));
    }
    Combine {
        rule: opts.rule,
        weights: if opts.rule == CombineRule::Weighted {
            weights
        } else {
            Vec::new()
        },
        threshold,
        calibration,
        description: words.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["female".into(), "male".into()]
    }

    /// Member 0 is always right and confident; member 1 is a coin toss.
    fn one_good_one_noise() -> Vec<Scored> {
        (0..200)
            .map(|i| {
                let truth = i % 2;
                let good = if truth == 0 {
                    vec![0.8, 0.2]
                } else {
                    vec![0.2, 0.8]
                };
                let noise = if (i / 2) % 2 == 0 {
                    vec![0.9, 0.1]
                } else {
                    vec![0.1, 0.9]
                };
                Scored {
                    members: vec![good, noise],
                    truth,
                }
            })
            .collect()
    }

    #[test]
    fn simplex_grid_sums_to_one() {
        let g = simplex(3, 0.25);
        assert_eq!(g.len(), 15);
        assert!(g.iter().all(|w| (w.iter().sum::<f64>() - 1.0).abs() < 1e-9));
    }

    #[test]
    fn fitted_weights_favour_the_member_that_is_right() {
        let s = one_good_one_noise();
        let w = fit_weights(&s, 2, 2, 0.05);
        assert!(w[0] > 0.9, "{w:?}");
        let c = fit(&s, &labels(), "val", FitOptions::default());
        assert_eq!(c.weights.len(), 2);
        assert!(c.description.contains("weights"), "{}", c.description);
    }

    #[test]
    fn the_mean_rule_keeps_equal_weights() {
        let s = one_good_one_noise();
        let opts = FitOptions {
            rule: CombineRule::Mean,
            ..FitOptions::default()
        };
        let c = fit(&s, &labels(), "val", opts);
        assert!(c.weights.is_empty());
        assert_eq!(c.rule, CombineRule::Mean);
    }

    #[test]
    fn the_threshold_balances_recalls() {
        // Label 0 is under-called: its faces score p0 in 0.40..0.60, label 1's 0.10..0.45.
        let s: Vec<Scored> = (0..400)
            .map(|i| {
                let truth = i % 2;
                let x = (i / 2) as f32 / 200.0;
                let p0 = if truth == 0 {
                    0.40 + 0.2 * x
                } else {
                    0.10 + 0.35 * x
                };
                Scored {
                    members: vec![vec![p0, 1.0 - p0]],
                    truth,
                }
            })
            .collect();
        let probs = combine(&s, &[1.0], 2);
        let truth: Vec<usize> = s.iter().map(|s| s.truth).collect();
        let before = recalls(&probs, &truth, 2);
        assert!(before[0] < 0.6 && before[1] > 0.99, "{before:?}");
        let (t, r) = balanced_threshold(&probs, &truth);
        assert!(t < 0.5, "{t}");
        assert!((r[0] - r[1]).abs() < 0.02, "{r:?}");
        let c = fit(&s, &labels(), "val", FitOptions::default());
        let th = c.threshold.expect("a threshold");
        assert_eq!(th.label, "female");
        assert!((th.value - t).abs() < 1e-12);
    }
}
