//! `eval --predictions FILE.parquet`: one row per evaluated image, so anyone can ask which
//! images were wrong (by source, age, or any other manifest column).
//!
//! Columns: `path`, `label` (true), `predicted`, `correct`, `status` (`ok`, `no_face`,
//! `error`), `error`, `confidence`, `p_<label>` (the reported, calibrated probabilities),
//! the face fields of classify's output (`crop`, `det_score`, `box_*`, `landmarks`), then
//! every manifest column as text (`source`, `age`, ...). An ensemble adds each member's
//! calibrated probabilities, `member_<name>_p_<label>`, after the `p_<label>` columns.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float32Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{Outcome, Prediction};
use crate::error::{Error, Result};
use crate::labelled::Sample;
use crate::model::classifier::Classifier;
use crate::model::columns::{self, FaceColumns, face_fields};
use crate::vision::faces::FaceFinder;

/// Columns every predictions file has before the manifest's own.
const FIXED: [&str; 15] = [
    "path",
    "label",
    "predicted",
    "correct",
    "status",
    "error",
    "confidence",
    "crop",
    columns::DET_SCORE,
    columns::BOX[0],
    columns::BOX[1],
    columns::BOX[2],
    columns::BOX[3],
    columns::LANDMARKS,
    "source",
];

/// Writes `predictions` of `samples` to `path` (atomically: a temporary file beside it,
/// then a rename).
pub fn write(
    path: &Path,
    samples: &[Sample],
    predictions: &[Prediction],
    classifier: &Classifier,
    faces: Option<&FaceFinder>,
) -> Result<()> {
    let labels = &classifier.card.labels;
    let members = member_names(classifier);
    let extra = extra_columns(samples);
    let mut columns = Columns::new(predictions.len(), labels.len(), members.len(), extra.len());
    for p in predictions {
        columns.push(&samples[p.sample], p, labels, &extra);
    }
    let (fields, arrays) = columns.finish(labels, &members, &extra);
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays)
        .map_err(|e| Error::arrow("building the predictions table", e))?;
    let bytes = encode(path, schema, &batch, metadata(classifier, faces)?)?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// The members whose probabilities get columns of their own: an ensemble's, none for a
/// single network.
fn member_names(classifier: &Classifier) -> Vec<String> {
    let card = &classifier.card;
    match card.is_ensemble() {
        true => card.members.iter().map(|m| m.name.clone()).collect(),
        false => Vec::new(),
    }
}

/// The manifest's own columns, in name order: those not already among the fixed ones nor
/// named like a probability column.
fn extra_columns(samples: &[Sample]) -> BTreeSet<&str> {
    samples
        .iter()
        .flat_map(|s| s.extra.keys().map(String::as_str))
        .filter(|k| !FIXED.contains(k) && !k.starts_with("p_") && !k.starts_with("member_"))
        .collect()
}

/// The column builders of the predictions table, filled one prediction at a time.
struct Columns {
    path: StringBuilder,
    label: StringBuilder,
    predicted: StringBuilder,
    correct: BooleanBuilder,
    status: StringBuilder,
    error: StringBuilder,
    confidence: Float32Builder,
    /// One per label, in label order.
    probs: Vec<Float32Builder>,
    /// Per member, one per label.
    members: Vec<Vec<Float32Builder>>,
    crop: StringBuilder,
    /// The detection's score, box and landmarks, as classify's output has them.
    face: FaceColumns,
    source: StringBuilder,
    /// One per manifest column, in [`extra_columns`] order.
    extra: Vec<StringBuilder>,
}

impl Columns {
    /// Empty builders for `n` rows.
    fn new(n: usize, labels: usize, members: usize, extra: usize) -> Columns {
        let text = || StringBuilder::with_capacity(n, n * 16);
        let floats = |k: usize| (0..k).map(|_| Float32Builder::with_capacity(n)).collect();
        Columns {
            path: text(),
            label: text(),
            predicted: text(),
            correct: BooleanBuilder::with_capacity(n),
            status: text(),
            error: text(),
            confidence: Float32Builder::with_capacity(n),
            probs: floats(labels),
            members: (0..members).map(|_| floats(labels)).collect(),
            crop: text(),
            face: FaceColumns::with_capacity(n),
            source: text(),
            extra: (0..extra).map(|_| text()).collect(),
        }
    }

    /// Appends the row of prediction `p` of sample `s`.
    fn push(&mut self, s: &Sample, p: &Prediction, labels: &[String], extra: &BTreeSet<&str>) {
        // Absolute and without `.`/`..`, so the file resolves from wherever it is read.
        self.path
            .append_value(crate::fsutil::absolute_normal(&s.path).to_string_lossy());
        self.label.append_value(&labels[p.truth]);
        self.source.append_value(&s.source);
        for (b, k) in self.extra.iter_mut().zip(extra) {
            b.append_option(s.extra.get(*k));
        }
        match &p.outcome {
            Outcome::Classified {
                predicted,
                probs,
                member_probs,
                crop,
                face,
            } => {
                for (cols, mp) in self.members.iter_mut().zip(member_probs) {
                    for (b, v) in cols.iter_mut().zip(mp) {
                        b.append_value(*v);
                    }
                }
                self.predicted.append_value(&labels[*predicted]);
                self.correct.append_value(*predicted == p.truth);
                self.status.append_value("ok");
                self.error.append_null();
                self.confidence.append_value(probs[*predicted]);
                for (b, v) in self.probs.iter_mut().zip(probs) {
                    b.append_value(*v);
                }
                self.crop.append_value(crop.as_str());
                self.face.push(face.as_ref());
            }
            Outcome::NoFace => self.push_unclassified("no_face", None),
            Outcome::Error(e) => self.push_unclassified("error", Some(e.as_str())),
        }
    }

    /// The columns of an image that was not classified (no face, or an error).
    fn push_unclassified(&mut self, status: &str, error: Option<&str>) {
        self.predicted.append_null();
        // A missed face counts as a wrong answer, as in end_to_end_accuracy.
        self.correct.append_value(false);
        self.status.append_value(status);
        self.error.append_option(error);
        self.confidence.append_null();
        self.probs.iter_mut().for_each(|b| b.append_null());
        self.members
            .iter_mut()
            .flatten()
            .for_each(|b| b.append_null());
        self.crop.append_null();
        self.face.push(None);
    }

    /// The schema's fields and the finished arrays, in column order.
    fn finish(
        mut self,
        labels: &[String],
        members: &[String],
        extra: &BTreeSet<&str>,
    ) -> (Vec<Field>, Vec<ArrayRef>) {
        let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        let f32f = |name: String| Field::new(name, DataType::Float32, true);
        let mut table: Vec<(Field, ArrayRef)> = vec![
            (utf8("path", false), Arc::new(self.path.finish())),
            (utf8("label", false), Arc::new(self.label.finish())),
            (utf8("predicted", true), Arc::new(self.predicted.finish())),
            (
                Field::new("correct", DataType::Boolean, false),
                Arc::new(self.correct.finish()),
            ),
            (utf8("status", false), Arc::new(self.status.finish())),
            (utf8("error", true), Arc::new(self.error.finish())),
            (
                f32f("confidence".into()),
                Arc::new(self.confidence.finish()),
            ),
        ];
        for (l, mut b) in labels.iter().zip(self.probs) {
            table.push((f32f(format!("p_{l}")), Arc::new(b.finish())));
        }
        for (m, cols) in members.iter().zip(self.members) {
            for (l, mut b) in labels.iter().zip(cols) {
                table.push((
                    f32f(crate::model::card::member_column(m, l)),
                    Arc::new(b.finish()),
                ));
            }
        }
        table.push((utf8("crop", true), Arc::new(self.crop.finish())));
        table.extend(face_fields().into_iter().zip(self.face.finish()));
        table.push((utf8("source", false), Arc::new(self.source.finish())));
        for (k, mut b) in extra.iter().zip(self.extra) {
            table.push((utf8(k, true), Arc::new(b.finish())));
        }
        table.into_iter().unzip()
    }
}

/// True when `path` is a predictions file this module wrote (`eval --predictions`, a
/// training run's `reports/test_predictions.parquet`): Parquet whose metadata names the
/// facebatch version but no classify run. What `eval --predictions` may replace.
pub fn is_predictions_file(path: &Path) -> bool {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(reader) = SerializedFileReader::new(file) else {
        return false;
    };
    let keys: Vec<&str> = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| kv.iter().map(|k| k.key.as_str()).collect())
        .unwrap_or_default();
    keys.contains(&"facebatch.version") && !keys.contains(&"facebatch.run_id")
}

/// The file's key-value metadata: what classify's output records of the model and the
/// faces (docs/output-schema.md), without a run id (which marks a classify output).
fn metadata(classifier: &Classifier, faces: Option<&FaceFinder>) -> Result<Vec<KeyValue>> {
    use crate::model::meta;
    let card = &classifier.card;
    let kv = |k: &str, v: String| KeyValue::new(k.to_string(), v);
    let card_json = serde_json::to_string(card).map_err(|e| Error::Json {
        context: "encoding the model card".into(),
        source: e,
    })?;
    let mut out = vec![
        kv(meta::VERSION, env!("CARGO_PKG_VERSION").to_string()),
        kv(meta::FINISHED, crate::fsutil::now_rfc3339()),
        kv(meta::MODEL_NAME, card.name.clone()),
        kv(
            meta::MODEL_VERSION,
            crate::model::card::model_version(&classifier.onnx_path),
        ),
        kv(meta::MODEL_SHA256, classifier.onnx_sha256.clone()),
        kv(meta::MODEL_PATH, classifier.onnx_path.display().to_string()),
        kv(meta::MODEL_PRECISION, classifier.precision.to_string()),
        kv(meta::MODEL_CARD, card_json),
        kv(meta::BASE, crate::fsutil::working_dir_key()),
    ];
    if let Some(f) = faces {
        out.push(kv(meta::FACES, f.identity()));
    }
    if let Some(c) = &card.primary().calibration
        && !card.is_ensemble()
    {
        out.push(kv("facebatch.temperature", c.temperature.to_string()));
    }
    Ok(out)
}

/// The Parquet bytes of `batch` (ZSTD, with `meta`); `path` only names the file in errors.
fn encode(
    path: &Path,
    schema: Arc<Schema>,
    batch: &RecordBatch,
    meta: Vec<KeyValue>,
) -> Result<Vec<u8>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(meta))
        .build();
    // One row per evaluated image: small enough to build in memory and write atomically.
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props))
        .map_err(|e| Error::parquet(format!("writing {}", path.display()), e))?;
    writer
        .write(batch)
        .and_then(|_| writer.close().map(|_| ()))
        .map_err(|e| Error::parquet(format!("writing {}", path.display()), e))?;
    Ok(bytes)
}
