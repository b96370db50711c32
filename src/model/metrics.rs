//! Classification report and confusion matrix, as text and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::calibration::wilson;

/// Precision, recall, F1 and support of one class (or an average).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Groups smaller than this are flagged: their accuracy is too uncertain to read as a
/// figure (a 95% interval wider than about 30 points).
pub const SMALL_GROUP: usize = 30;

/// Accuracy of one group of a `--group-by` column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// 95% Wilson interval of the accuracy.
    #[serde(default)]
    pub accuracy_ci: [f64; 2],
    /// Recall per true label inside the group.
    pub recall: BTreeMap<String, f64>,
    /// 95% Wilson interval of each recall, and its support.
    #[serde(default)]
    pub recall_ci: BTreeMap<String, [f64; 2]>,
    #[serde(default)]
    pub support: BTreeMap<String, usize>,
    /// Fewer than [`SMALL_GROUP`] images.
    #[serde(default)]
    pub small: bool,
}

/// A scikit-learn style classification report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub labels: Vec<String>,
    pub n: usize,
    pub accuracy: f64,
    pub per_class: BTreeMap<String, ClassStats>,
    pub macro_avg: ClassStats,
    pub weighted_avg: ClassStats,
    /// `confusion[true][predicted]`, in label order.
    pub confusion: Vec<Vec<usize>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, BTreeMap<String, GroupStats>>,
    /// How the faces were found, when a face mode other than `whole` was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faces: Option<FaceCoverage>,
    /// Expected calibration error and reliability bins of the reported probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::model::calibration::Reliability>,
}

/// Face detection outcome of an evaluation (`eval --faces auto|detect`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaceCoverage {
    pub mode: String,
    /// Images classified from a detected, aligned face.
    pub aligned: usize,
    /// Images classified whole (the `auto` fallback for small crops).
    pub whole: usize,
    /// Images where no face was found: not in `n`, counted as errors below.
    pub no_face: usize,
    /// Correct / (n + no_face): accuracy with a missed face counted as a wrong answer.
    pub end_to_end_accuracy: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Report {
    /// Builds a report from true and predicted label indices.
    pub fn new(labels: &[String], truth: &[usize], pred: &[usize]) -> Report {
        assert_eq!(truth.len(), pred.len());
        let c = labels.len();
        let mut confusion = vec![vec![0usize; c]; c];
        for (&t, &p) in truth.iter().zip(pred) {
            confusion[t][p] += 1;
        }
        let n = truth.len();
        let correct: usize = (0..c).map(|i| confusion[i][i]).sum();
        let mut per_class = BTreeMap::new();
        let (mut macro_p, mut macro_r, mut macro_f) = (0.0, 0.0, 0.0);
        let (mut w_p, mut w_r, mut w_f) = (0.0, 0.0, 0.0);
        for (i, label) in labels.iter().enumerate() {
            let tp = confusion[i][i];
            let support: usize = confusion[i].iter().sum();
            let predicted: usize = (0..c).map(|t| confusion[t][i]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            macro_p += precision / c as f64;
            macro_r += recall / c as f64;
            macro_f += f1 / c as f64;
            let w = ratio(support, n);
            w_p += precision * w;
            w_r += recall * w;
            w_f += f1 * w;
            per_class.insert(
                label.clone(),
                ClassStats {
                    precision,
                    recall,
                    f1,
                    support,
                },
            );
        }
        Report {
            labels: labels.to_vec(),
            n,
            accuracy: ratio(correct, n),
            per_class,
            macro_avg: ClassStats {
                precision: macro_p,
                recall: macro_r,
                f1: macro_f,
                support: n,
            },
            weighted_avg: ClassStats {
                precision: w_p,
                recall: w_r,
                f1: w_f,
                support: n,
            },
            confusion,
            groups: BTreeMap::new(),
            faces: None,
            calibration: None,
        }
    }

    /// Adds accuracy per value of a grouping column.
    pub fn add_groups(&mut self, column: &str, keys: &[String], truth: &[usize], pred: &[usize]) {
        // Per group: (images, correct, per true label (support, correct)).
        type Tally = (usize, usize, Vec<(usize, usize)>);
        let mut acc: BTreeMap<String, Tally> = BTreeMap::new();
        for ((k, &t), &p) in keys.iter().zip(truth).zip(pred) {
            let e = acc
                .entry(k.clone())
                .or_insert_with(|| (0, 0, vec![(0, 0); self.labels.len()]));
            e.0 += 1;
            e.1 += usize::from(t == p);
            e.2[t].0 += 1;
            e.2[t].1 += usize::from(t == p);
        }
        let groups = acc
            .into_iter()
            .map(|(k, (n, correct, per))| {
                let present: Vec<(&String, (usize, usize))> = self
                    .labels
                    .iter()
                    .zip(per)
                    .filter(|(_, (s, _))| *s > 0)
                    .collect();
                let stats = GroupStats {
                    n,
                    correct,
                    accuracy: ratio(correct, n),
                    accuracy_ci: wilson(correct, n),
                    recall: present
                        .iter()
                        .map(|(l, (s, c))| ((*l).clone(), ratio(*c, *s)))
                        .collect(),
                    recall_ci: present
                        .iter()
                        .map(|(l, (s, c))| ((*l).clone(), wilson(*c, *s)))
                        .collect(),
                    support: present
                        .iter()
                        .map(|(l, (s, _))| ((*l).clone(), *s))
                        .collect(),
                    small: n < SMALL_GROUP,
                };
                (k, stats)
            })
            .collect();
        self.groups.insert(column.to_string(), groups);
    }

    /// The report as aligned text, like scikit-learn's `classification_report`.
    pub fn to_text(&self) -> String {
        let width = self
            .labels
            .iter()
            .map(String::len)
            .chain(["weighted avg".len()])
            .max()
            .unwrap_or(12);
        let mut s = String::new();
        self.write_classes(&mut s, width);
        if let Some(f) = &self.faces {
            let _ = writeln!(
                s,
                "\nfaces ({}): {} aligned, {} whole, {} without a face; end-to-end accuracy {:.4}",
                f.mode, f.aligned, f.whole, f.no_face, f.end_to_end_accuracy
            );
        }
        self.write_confusion(&mut s, width);
        if let Some(c) = &self.calibration {
            let _ = writeln!(
                s,
                "\nexpected calibration error {:.4} ({} confidence bins)",
                c.ece,
                c.bins.len()
            );
        }
        self.write_groups(&mut s);
        s
    }

    /// The per-class table, then accuracy and the averages, labels right-aligned to `width`.
    fn write_classes(&self, s: &mut String, width: usize) {
        let _ = writeln!(
            s,
            "{:>width$}  precision    recall  f1-score   support\n",
            ""
        );
        for label in &self.labels {
            let c = &self.per_class[label];
            let _ = writeln!(
                s,
                "{label:>width$}     {:>6.4}    {:>6.4}    {:>6.4}   {:>7}",
                c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:>width$}                         {:>6.4}   {:>7}",
            "accuracy", self.accuracy, self.n
        );
        for (name, c) in [
            ("macro avg", &self.macro_avg),
            ("weighted avg", &self.weighted_avg),
        ] {
            let _ = writeln!(
                s,
                "{name:>width$}     {:>6.4}    {:>6.4}    {:>6.4}   {:>7}",
                c.precision, c.recall, c.f1, c.support
            );
        }
    }

    /// The confusion matrix, row labels right-aligned to `width`.
    fn write_confusion(&self, s: &mut String, width: usize) {
        let _ = writeln!(s, "\nconfusion matrix (rows: true, columns: predicted)");
        let cw = self
            .labels
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(6)
            .max(7);
        let _ = write!(s, "{:>width$}", "");
        for l in &self.labels {
            let _ = write!(s, " {l:>cw$}");
        }
        let _ = writeln!(s);
        for (l, row) in self.labels.iter().zip(&self.confusion) {
            let _ = write!(s, "{l:>width$}");
            for v in row {
                let _ = write!(s, " {v:>cw$}");
            }
            let _ = writeln!(s);
        }
    }

    /// Accuracy and recalls per group, with their 95% intervals, for every group column.
    fn write_groups(&self, s: &mut String) {
        for (column, groups) in &self.groups {
            let _ = writeln!(
                s,
                "\naccuracy by {column} (95% Wilson intervals; * fewer than {SMALL_GROUP} images, too few to read as a figure)"
            );
            for (k, g) in groups {
                let pct = |v: f64| format!("{:.1}", 100.0 * v);
                let recalls: Vec<String> = g
                    .recall
                    .iter()
                    .map(|(l, r)| match g.recall_ci.get(l) {
                        Some([lo, hi]) => {
                            format!("recall[{l}] {}% [{}, {}]", pct(*r), pct(*lo), pct(*hi))
                        }
                        None => format!("recall[{l}] {}%", pct(*r)),
                    })
                    .collect();
                let [lo, hi] = g.accuracy_ci;
                let _ = writeln!(
                    s,
                    "  {k:>14}{} n={:<6} accuracy {}% [{}, {}]  {}",
                    if g.small { "*" } else { " " },
                    g.n,
                    pct(g.accuracy),
                    pct(lo),
                    pct(hi),
                    recalls.join("  ")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_values() {
        let labels = vec!["female".to_string(), "male".to_string()];
        // truth: 3 female, 2 male. predictions: one female called male.
        let truth = [0, 0, 0, 1, 1];
        let pred = [0, 0, 1, 1, 1];
        let r = Report::new(&labels, &truth, &pred);
        assert_eq!(r.confusion, vec![vec![2, 1], vec![0, 2]]);
        assert!((r.accuracy - 0.8).abs() < 1e-12);
        let f = &r.per_class["female"];
        assert!((f.precision - 1.0).abs() < 1e-12);
        assert!((f.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((f.f1 - 0.8).abs() < 1e-12);
        let m = &r.per_class["male"];
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((r.macro_avg.f1 - 0.8).abs() < 1e-12);
        assert!(r.to_text().contains("weighted avg"));
    }

    #[test]
    fn groups_split_accuracy() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let mut r = Report::new(&labels, &[0, 1, 1], &[0, 0, 1]);
        r.add_groups(
            "age",
            &["kid".into(), "kid".into(), "adult".into()],
            &[0, 1, 1],
            &[0, 0, 1],
        );
        let g = &r.groups["age"];
        assert_eq!(g["kid"].n, 2);
        assert!((g["kid"].accuracy - 0.5).abs() < 1e-12);
        assert!((g["adult"].accuracy - 1.0).abs() < 1e-12);
        assert!(g["kid"].small);
        assert_eq!(g["kid"].accuracy_ci, wilson(1, 2));
        assert_eq!(g["kid"].support["b"], 1);
        let text = r.to_text();
        assert!(text.contains("kid* n=2"), "{text}");
        assert!(text.contains("accuracy 50.0% ["), "{text}");
    }
}
