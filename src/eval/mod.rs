//! Evaluating an exported model on labeled data, through ONNX Runtime and the shared
//! preprocessing path.

use std::path::Path;
use std::str::FromStr;

use rayon::prelude::*;

pub mod predictions;

use crate::error::{Error, Result};
use crate::labelled::Sample;
use crate::model::classifier::{BatchOutput, Classifier};
use crate::model::metrics::{FaceCoverage, Report};
use crate::vision::decode::{DecodeLimits, load_rgb, views_tensor};
use crate::vision::detect::Face;
use crate::vision::faces::{CropKind, FaceFinder, FaceMode};

/// A `--group-by` request: a column, optionally binned at numeric edges (`age:15,30,60`).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupBy {
    pub column: String,
    pub edges: Vec<f64>,
}

impl FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (column, edges) = match s.split_once(':') {
            Some((c, e)) => {
                let mut edges = e
                    .split(',')
                    .map(|v| {
                        v.trim()
                            .parse::<f64>()
                            .map_err(|_| format!("bad bin edge {v:?} in {s:?}"))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                edges.sort_by(f64::total_cmp);
                (c, edges)
            }
            None => (s, Vec::new()),
        };
        if column.is_empty() {
            return Err(format!("empty column in --group-by {s:?}"));
        }
        Ok(GroupBy {
            column: column.to_string(),
            edges,
        })
    }
}

/// Refuses a `--group-by` column that the data does not have, listing those it has (a
/// misspelt column used to give one unnamed group and exit 0).
pub fn check_group_columns(group_by: &[GroupBy], samples: &[Sample]) -> Result<()> {
    let mut have: std::collections::BTreeSet<&str> = ["label", "source"].into();
    for s in samples {
        have.extend(s.extra.keys().map(String::as_str));
    }
    match group_by.iter().find(|g| !have.contains(g.column.as_str())) {
        None => Ok(()),
        Some(g) => Err(Error::InvalidOption(format!(
            "--group-by {}: the data has no such column; it has: {}",
            g.column,
            have.into_iter().collect::<Vec<_>>().join(", ")
        ))),
    }
}

impl GroupBy {
    /// The report key of this grouping (`age:15` stays `age:15`).
    pub fn name(&self) -> String {
        if self.edges.is_empty() {
            self.column.clone()
        } else {
            let e: Vec<String> = self.edges.iter().map(|v| v.to_string()).collect();
            format!("{}:{}", self.column, e.join(","))
        }
    }

    /// The group a sample belongs to.
    pub fn key(&self, s: &Sample) -> String {
        // A manifest column wins; `source` and `label` fall back to the sample's own.
        let raw = match (s.extra.get(&self.column), self.column.as_str()) {
            (Some(v), _) => v.clone(),
            (None, "source") => s.source.clone(),
            (None, "label") => s.label.clone(),
            (None, _) => String::new(),
        };
        self.bin(&raw)
    }

    /// The group of a raw value: itself without edges; else its bin (`<15`, `15-60`,
    /// `>=60`), or `unknown` for what is not a number or a band inside one bin.
    pub fn bin(&self, raw: &str) -> String {
        if self.edges.is_empty() {
            return raw.to_string();
        }
        // A number, or a band such as FairFace's "20-29" / "more than 70": a band goes to
        // the bin that holds all of it, and one that straddles an edge is "unknown".
        let raw = raw.trim();
        let (lo, hi) = if let Ok(v) = raw.parse::<f64>() {
            (v, v)
        } else if let Some(v) = raw
            .strip_prefix("more than ")
            .or_else(|| raw.strip_suffix('+'))
            .and_then(|v| v.trim().parse::<f64>().ok())
        {
            (v, f64::INFINITY)
        } else if let Some((a, b)) = raw
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
        {
            (a, b)
        } else {
            return "unknown".into();
        };
        let bin = |v: f64| self.edges.iter().position(|e| v < *e);
        let idx = bin(lo);
        if bin(hi) != idx {
            return "unknown".into();
        }
        self.bin_name(idx)
    }

    /// The name of bin `idx` (the position of its upper edge; `None`: above the last).
    fn bin_name(&self, idx: Option<usize>) -> String {
        match idx {
            Some(0) => format!("<{}", self.edges[0]),
            Some(i) => format!("{}-{}", self.edges[i - 1], self.edges[i]),
            None => format!(">={}", self.edges.last().unwrap_or(&0.0)),
        }
    }

    /// Where a group [`bin`](Self::bin) names sorts: the bins from the lowest, then
    /// `unknown` (and anything else) last.
    pub fn bin_order(&self, group: &str) -> usize {
        let n = self.edges.len();
        if n == 0 {
            return 1;
        }
        (0..n)
            .map(Some)
            .chain([None])
            .position(|i| self.bin_name(i) == group)
            .unwrap_or(n + 1)
    }
}

/// How an image's subject was cropped, its detection and its input tensor.
type Subject = (CropKind, Option<Face>, Vec<f32>);

/// The outcome of evaluating a labeled set.
pub struct Evaluation {
    pub report: Report,
    /// Files that could not be decoded: (path, reason).
    pub skipped: Vec<(String, String)>,
    /// One entry per sample, in input order.
    pub predictions: Vec<Prediction>,
}

/// What evaluation found for one labeled image.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Index of the sample in the evaluated list.
    pub sample: usize,
    /// True label index.
    pub truth: usize,
    pub outcome: Outcome,
}

/// A classified face, no face, or an unreadable file.
#[derive(Clone, Debug)]
pub enum Outcome {
    Classified {
        predicted: usize,
        /// The reported (calibrated) probabilities, in label order.
        probs: Vec<f32>,
        /// An ensemble's members' calibrated probabilities, in member then label order
        /// (empty for a single network).
        member_probs: Vec<Vec<f32>>,
        crop: CropKind,
        face: Option<Face>,
    },
    NoFace,
    Error(String),
}

/// Runs `classifier` over `samples` and builds the report, with per-group accuracy.
pub fn evaluate(
    classifier: &Classifier,
    samples: &[Sample],
    batch_size: usize,
    group_by: &[GroupBy],
    limits: DecodeLimits,
    faces: Option<&FaceFinder>,
    progress: &crate::progress::Progress,
) -> Result<Evaluation> {
    check_group_columns(group_by, samples)?;
    let labels = classifier.card.labels.clone();
    check_labels(samples, &labels)?;
    let specs = classifier.card.inputs();
    let per = classifier.input_len();
    let mut tally = Tally::new(samples.len(), faces);
    for (c, chunk) in samples.chunks(batch_size.max(1)).enumerate() {
        let first = c * batch_size.max(1);
        // The subject's crop (the face nearest the centre), or the whole image.
        let decoded: Vec<Result<Option<Subject>>> = chunk
            .par_iter()
            .map(|s| {
                let img = load_rgb(&s.path, limits)?;
                Ok(match faces {
                    Some(f) => f
                        .subject(&img)?
                        .map(|c| (c.kind, c.face, views_tensor(&specs, &c.images))),
                    None => {
                        let whole = vec![img; specs.len()];
                        Some((CropKind::Whole, None, views_tensor(&specs, &whole)))
                    }
                })
            })
            .collect();
        let (batch, members) = tally.record_decoded(chunk, first, decoded, &labels, per);
        progress.inc(chunk.len() as u64);
        if members.is_empty() {
            continue;
        }
        let out = classifier.run(&batch, members.len())?;
        tally.classified(&out, members, labels.len());
    }
    tally.finish(&labels, group_by, faces)
}

/// Refuses a sample whose label the model does not know.
fn check_labels(samples: &[Sample], labels: &[String]) -> Result<()> {
    match samples.iter().find(|s| !labels.contains(&s.label)) {
        None => Ok(()),
        Some(s) => Err(Error::Dataset(format!(
            "label {:?} of {} is not one the model knows ({labels:?})",
            s.label,
            s.path.display()
        ))),
    }
}

/// A sample of a batch waiting for the model: (sample index, true label index, sample,
/// crop kind, detection).
type Member<'a> = (usize, usize, &'a Sample, CropKind, Option<Face>);

/// What evaluation has found so far, batch by batch.
struct Tally<'a> {
    /// True and predicted label indices and the confidence of the classified images.
    truth: Vec<usize>,
    pred: Vec<usize>,
    confidence: Vec<f64>,
    predictions: Vec<Prediction>,
    /// The classified samples, in the order of `truth`.
    kept: Vec<&'a Sample>,
    skipped: Vec<(String, String)>,
    coverage: FaceCoverage,
}

impl<'a> Tally<'a> {
    fn new(samples: usize, faces: Option<&FaceFinder>) -> Tally<'a> {
        Tally {
            truth: Vec::new(),
            pred: Vec::new(),
            confidence: Vec::new(),
            predictions: Vec::with_capacity(samples),
            kept: Vec::new(),
            skipped: Vec::new(),
            coverage: FaceCoverage {
                mode: faces.map_or(FaceMode::Whole, |f| f.mode).to_string(),
                ..Default::default()
            },
        }
    }

    /// Records the images of `chunk` (starting at sample `first`) without a face or
    /// unreadable, and returns the input batch and members of the others.
    fn record_decoded(
        &mut self,
        chunk: &'a [Sample],
        first: usize,
        decoded: Vec<Result<Option<Subject>>>,
        labels: &[String],
        per: usize,
    ) -> (Vec<f32>, Vec<Member<'a>>) {
        let mut batch = Vec::with_capacity(chunk.len() * per);
        let mut members = Vec::new();
        for (k, (s, d)) in chunk.iter().zip(decoded).enumerate() {
            let t = labels.iter().position(|x| *x == s.label).unwrap_or(0);
            match d {
                Ok(Some((kind, face, tensor))) => {
                    match kind {
                        CropKind::Aligned => self.coverage.aligned += 1,
                        CropKind::Whole => self.coverage.whole += 1,
                    }
                    batch.extend_from_slice(&tensor);
                    members.push((first + k, t, s, kind, face));
                }
                Ok(None) => {
                    self.coverage.no_face += 1;
                    self.predictions.push(Prediction {
                        sample: first + k,
                        truth: t,
                        outcome: Outcome::NoFace,
                    });
                }
                Err(e) => {
                    self.skipped
                        .push((s.path.display().to_string(), e.to_string()));
                    self.predictions.push(Prediction {
                        sample: first + k,
                        truth: t,
                        outcome: Outcome::Error(e.to_string()),
                    });
                }
            }
        }
        (batch, members)
    }

    /// Records the model's answers `out` for `members`.
    fn classified(&mut self, out: &BatchOutput, members: Vec<Member<'a>>, classes: usize) {
        for (i, (at, t, s, kind, face)) in members.into_iter().enumerate() {
            let p = out.argmax(i, classes);
            let probs = out.probs[i * classes..(i + 1) * classes].to_vec();
            self.truth.push(t);
            self.pred.push(p);
            self.confidence.push(probs[p] as f64);
            self.predictions.push(Prediction {
                sample: at,
                truth: t,
                outcome: Outcome::Classified {
                    predicted: p,
                    probs,
                    member_probs: out
                        .members
                        .iter()
                        .map(|m| m[i * classes..(i + 1) * classes].to_vec())
                        .collect(),
                    crop: kind,
                    face,
                },
            });
            self.kept.push(s);
        }
    }

    /// The report over everything classified: overall, calibration, per group, and the
    /// face coverage when faces were detected.
    fn finish(
        mut self,
        labels: &[String],
        group_by: &[GroupBy],
        faces: Option<&FaceFinder>,
    ) -> Result<Evaluation> {
        if self.kept.is_empty() {
            return Err(Error::Dataset(if self.coverage.no_face > 0 {
                format!(
                    "no face found in any of the {} readable images (try --faces whole for face crops)",
                    self.coverage.no_face
                )
            } else {
                "no readable images to evaluate".into()
            }));
        }
        if !self.skipped.is_empty() {
            tracing::warn!(
                skipped = self.skipped.len(),
                first = %self.skipped.iter().take(3).map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", "),
                "unreadable images skipped"
            );
        }
        let (truth, pred) = (&self.truth, &self.pred);
        let mut report = Report::new(labels, truth, pred);
        let correct: Vec<bool> = truth.iter().zip(pred).map(|(t, p)| t == p).collect();
        report.calibration = Some(crate::model::calibration::reliability(
            &self.confidence,
            &correct,
        ));
        self.predictions.sort_by_key(|p| p.sample);
        for g in group_by {
            let keys: Vec<String> = self.kept.iter().map(|s| g.key(s)).collect();
            report.add_groups(&g.name(), &keys, truth, pred);
        }
        if faces.is_some_and(|f| f.mode != FaceMode::Whole) {
            let mut coverage = self.coverage;
            let correct = truth.iter().zip(pred).filter(|(t, p)| t == p).count();
            coverage.end_to_end_accuracy = correct as f64 / (truth.len() + coverage.no_face) as f64;
            if coverage.no_face > 0 {
                tracing::warn!(
                    no_face = coverage.no_face,
                    "images without a detected face count as errors in end_to_end_accuracy"
                );
            }
            report.faces = Some(coverage);
        }
        Ok(Evaluation {
            report,
            skipped: self.skipped,
            predictions: self.predictions,
        })
    }
}

/// Convenience for the CLI: the report as pretty JSON.
pub fn report_json(report: &Report) -> Result<String> {
    serde_json::to_string_pretty(report).map_err(|e| Error::Json {
        context: "serialising the report".into(),
        source: e,
    })
}

/// Writes the text and JSON report into `dir` with the given file stem.
pub fn write_report(dir: &Path, stem: &str, report: &Report) -> Result<()> {
    crate::fsutil::write_atomic(
        &dir.join(format!("{stem}.txt")),
        report.to_text().as_bytes(),
    )?;
    crate::fsutil::write_atomic(
        &dir.join(format!("{stem}.json")),
        report_json(report)?.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample(age: &str) -> Sample {
        Sample {
            path: "x.jpg".into(),
            label: "a".into(),
            source: "s".into(),
            extra: BTreeMap::from([("age".to_string(), age.to_string())]),
        }
    }

    #[test]
    fn bins_sort_in_their_natural_order() {
        let g: GroupBy = "age:15,60".parse().unwrap();
        let mut names = vec!["unknown", ">=60", "15-60", "<15"];
        names.sort_by_key(|n| g.bin_order(n));
        assert_eq!(names, ["<15", "15-60", ">=60", "unknown"]);
    }

    #[test]
    fn numeric_bins() {
        let g: GroupBy = "age:15,60".parse().unwrap();
        assert_eq!(g.key(&sample("3")), "<15");
        assert_eq!(g.key(&sample("15")), "15-60");
        assert_eq!(g.key(&sample("80")), ">=60");
        assert_eq!(g.key(&sample("n/a")), "unknown");
        // Age bands: inside one bin, or straddling an edge.
        assert_eq!(g.key(&sample("3-9")), "<15");
        assert_eq!(g.key(&sample("20-29")), "15-60");
        assert_eq!(g.key(&sample("more than 70")), ">=60");
        assert_eq!(g.key(&sample("70+")), ">=60");
        assert_eq!(g.key(&sample("10-19")), "unknown");
        let plain: GroupBy = "source".parse().unwrap();
        assert_eq!(plain.key(&sample("1")), "s");
        assert!("age:x".parse::<GroupBy>().is_err());
    }
}
