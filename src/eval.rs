//! Evaluating an exported model on labeled data, through ONNX Runtime and the shared
//! preprocessing path.

use std::path::Path;
use std::str::FromStr;

use rayon::prelude::*;

use crate::data::Sample;
use crate::error::{Error, Result};
use crate::faces::{CropKind, FaceFinder, FaceMode};
use crate::infer::Classifier;
use crate::metrics::{FaceCoverage, Report};
use crate::preprocess::{DecodeLimits, load_rgb};

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
        if self.edges.is_empty() {
            return raw;
        }
        let Ok(v) = raw.trim().parse::<f64>() else {
            return "unknown".into();
        };
        let fmt = |x: f64| x.to_string();
        let idx = self.edges.iter().position(|e| v < *e);
        match idx {
            Some(0) => format!("<{}", fmt(self.edges[0])),
            Some(i) => format!("{}-{}", fmt(self.edges[i - 1]), fmt(self.edges[i])),
            None => format!(">={}", fmt(*self.edges.last().unwrap_or(&0.0))),
        }
    }
}

/// How an image's subject was cropped, and its pixels or tensor.
type Subject<T> = (CropKind, Vec<T>);

/// The outcome of evaluating a labeled set.
pub struct Evaluation {
    pub report: Report,
    /// Files that could not be decoded: (path, reason).
    pub skipped: Vec<(String, String)>,
}

/// Runs `classifier` over `samples` and builds the report, with per-group accuracy.
pub fn evaluate(
    classifier: &mut Classifier,
    samples: &[Sample],
    batch_size: usize,
    group_by: &[GroupBy],
    limits: DecodeLimits,
    faces: Option<&FaceFinder>,
) -> Result<Evaluation> {
    let labels = classifier.card.labels.clone();
    let index = |l: &str| labels.iter().position(|x| x == l);
    if let Some(s) = samples.iter().find(|s| index(&s.label).is_none()) {
        return Err(Error::Dataset(format!(
            "label {:?} of {} is not one the model knows ({labels:?})",
            s.label,
            s.path.display()
        )));
    }
    let spec = classifier.card.input.clone();
    let per = spec.len();
    let classes = labels.len();
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    let mut kept: Vec<&Sample> = Vec::new();
    let mut skipped = Vec::new();
    let mut coverage = FaceCoverage {
        mode: faces.map_or(FaceMode::Whole, |f| f.mode).to_string(),
        ..Default::default()
    };
    for chunk in samples.chunks(batch_size.max(1)) {
        // The subject's crop (the face nearest the centre), or the whole image.
        let decoded: Vec<Result<Option<Subject<f32>>>> = chunk
            .par_iter()
            .map(|s| {
                let img = load_rgb(&s.path, limits)?;
                Ok(match faces {
                    Some(f) => f
                        .subject(&img)?
                        .map(|c| (c.kind, spec.tensor_from_rgb(&c.image))),
                    None => Some((CropKind::Whole, spec.tensor_from_rgb(&img))),
                })
            })
            .collect();
        let mut batch = Vec::with_capacity(chunk.len() * per);
        let mut members = Vec::new();
        for (s, d) in chunk.iter().zip(decoded) {
            match d {
                Ok(Some((kind, t))) => {
                    match kind {
                        CropKind::Aligned => coverage.aligned += 1,
                        CropKind::Whole => coverage.whole += 1,
                    }
                    batch.extend_from_slice(&t);
                    members.push(s);
                }
                Ok(None) => coverage.no_face += 1,
                Err(e) => skipped.push((s.path.display().to_string(), e.to_string())),
            }
        }
        if members.is_empty() {
            continue;
        }
        let out = classifier.run(&batch, members.len())?;
        for (i, s) in members.iter().enumerate() {
            truth.push(index(&s.label).unwrap_or(0));
            pred.push(out.argmax(i, classes));
        }
        kept.extend(members);
    }
    if kept.is_empty() {
        return Err(Error::Dataset(if coverage.no_face > 0 {
            format!(
                "no face found in any of the {} readable images (try --faces whole for face crops)",
                coverage.no_face
            )
        } else {
            "no readable images to evaluate".into()
        }));
    }
    if !skipped.is_empty() {
        tracing::warn!(
            skipped = skipped.len(),
            first = %skipped.iter().take(3).map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", "),
            "unreadable images skipped"
        );
    }
    let mut report = Report::new(&labels, &truth, &pred);
    for g in group_by {
        let keys: Vec<String> = kept.iter().map(|s| g.key(s)).collect();
        report.add_groups(&g.name(), &keys, &truth, &pred);
    }
    if faces.is_some_and(|f| f.mode != FaceMode::Whole) {
        let correct = truth.iter().zip(&pred).filter(|(t, p)| t == p).count();
        coverage.end_to_end_accuracy = correct as f64 / (truth.len() + coverage.no_face) as f64;
        if coverage.no_face > 0 {
            tracing::warn!(
                no_face = coverage.no_face,
                "images without a detected face count as errors in end_to_end_accuracy"
            );
        }
        report.faces = Some(coverage);
    }
    Ok(Evaluation { report, skipped })
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
    fn numeric_bins() {
        let g: GroupBy = "age:15,60".parse().unwrap();
        assert_eq!(g.key(&sample("3")), "<15");
        assert_eq!(g.key(&sample("15")), "15-60");
        assert_eq!(g.key(&sample("80")), ">=60");
        assert_eq!(g.key(&sample("n/a")), "unknown");
        let plain: GroupBy = "source".parse().unwrap();
        assert_eq!(plain.key(&sample("1")), "s");
        assert!("age:x".parse::<GroupBy>().is_err());
    }
}
