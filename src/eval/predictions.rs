//! `eval --predictions FILE.parquet`: one row per evaluated image, so anyone can ask which
//! images were wrong (by source, age, or any other manifest column).
//!
//! Columns: `path`, `label` (true), `predicted`, `correct`, `status` (`ok`, `no_face`,
//! `error`), `error`, `confidence`, `p_<label>` (the reported, calibrated probabilities),
//! the face fields of classify's output (`crop`, `det_score`, `box_*`, `landmarks`), then
//! every manifest column as text (`source`, `age`, ...).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, ListBuilder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{Outcome, Prediction};
use crate::error::{Error, Result};
use crate::labelled::Sample;
use crate::model::classifier::Classifier;

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
    "det_score",
    "box_x1",
    "box_y1",
    "box_x2",
    "box_y2",
    "landmarks",
    "source",
];

/// Writes `predictions` of `samples` to `path` (atomically: a temporary file beside it,
/// then a rename).
pub fn write(
    path: &Path,
    samples: &[Sample],
    predictions: &[Prediction],
    classifier: &Classifier,
) -> Result<()> {
    let labels = &classifier.card.labels;
    let extra: BTreeSet<&str> = samples
        .iter()
        .flat_map(|s| s.extra.keys().map(String::as_str))
        .filter(|k| !FIXED.contains(k) && !k.starts_with("p_"))
        .collect();
    let n = predictions.len();
    let text = || StringBuilder::with_capacity(n, n * 16);
    let (mut c_path, mut c_label, mut c_pred, mut c_status, mut c_error, mut c_crop) =
        (text(), text(), text(), text(), text(), text());
    let mut c_correct = BooleanBuilder::with_capacity(n);
    let mut c_conf = Float32Builder::with_capacity(n);
    let mut c_probs: Vec<Float32Builder> = labels
        .iter()
        .map(|_| Float32Builder::with_capacity(n))
        .collect();
    let mut c_det = Float32Builder::with_capacity(n);
    let mut c_box: Vec<Float32Builder> = (0..4).map(|_| Float32Builder::with_capacity(n)).collect();
    let mut c_marks = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Float32,
        false,
    )));
    let mut c_source = text();
    let mut c_extra: Vec<StringBuilder> = extra.iter().map(|_| text()).collect();

    for p in predictions {
        let s = &samples[p.sample];
        c_path.append_value(s.path.to_string_lossy());
        c_label.append_value(&labels[p.truth]);
        c_source.append_value(&s.source);
        for (b, k) in c_extra.iter_mut().zip(&extra) {
            b.append_option(s.extra.get(*k));
        }
        match &p.outcome {
            Outcome::Classified {
                predicted,
                probs,
                crop,
                face,
            } => {
                c_pred.append_value(&labels[*predicted]);
                c_correct.append_value(*predicted == p.truth);
                c_status.append_value("ok");
                c_error.append_null();
                c_conf.append_value(probs[*predicted]);
                for (b, v) in c_probs.iter_mut().zip(probs) {
                    b.append_value(*v);
                }
                c_crop.append_value(crop.as_str());
                match face {
                    Some(f) => {
                        c_det.append_value(f.score);
                        for (b, v) in c_box.iter_mut().zip(f.bbox) {
                            b.append_value(v);
                        }
                        c_marks.values().append_slice(f.landmarks.as_flattened());
                        c_marks.append(true);
                    }
                    None => {
                        c_det.append_null();
                        c_box.iter_mut().for_each(|b| b.append_null());
                        c_marks.append(false);
                    }
                }
            }
            other => {
                c_pred.append_null();
                // A missed face counts as a wrong answer, as in end_to_end_accuracy.
                c_correct.append_value(false);
                match other {
                    Outcome::NoFace => {
                        c_status.append_value("no_face");
                        c_error.append_null();
                    }
                    Outcome::Error(e) => {
                        c_status.append_value("error");
                        c_error.append_value(e);
                    }
                    Outcome::Classified { .. } => unreachable!("matched above"),
                }
                c_conf.append_null();
                c_probs.iter_mut().for_each(|b| b.append_null());
                c_crop.append_null();
                c_det.append_null();
                c_box.iter_mut().for_each(|b| b.append_null());
                c_marks.append(false);
            }
        }
    }

    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let f32f = |name: String| Field::new(name, DataType::Float32, true);
    let mut fields = vec![
        utf8("path", false),
        utf8("label", false),
        utf8("predicted", true),
        Field::new("correct", DataType::Boolean, false),
        utf8("status", false),
        utf8("error", true),
        f32f("confidence".into()),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(c_path.finish()),
        Arc::new(c_label.finish()),
        Arc::new(c_pred.finish()),
        Arc::new(c_correct.finish()),
        Arc::new(c_status.finish()),
        Arc::new(c_error.finish()),
        Arc::new(c_conf.finish()),
    ];
    for (l, mut b) in labels.iter().zip(c_probs) {
        fields.push(f32f(format!("p_{l}")));
        columns.push(Arc::new(b.finish()));
    }
    fields.push(utf8("crop", true));
    columns.push(Arc::new(c_crop.finish()));
    fields.push(f32f("det_score".into()));
    columns.push(Arc::new(c_det.finish()));
    for (name, mut b) in ["box_x1", "box_y1", "box_x2", "box_y2"]
        .into_iter()
        .zip(c_box)
    {
        fields.push(f32f(name.into()));
        columns.push(Arc::new(b.finish()));
    }
    fields.push(Field::new(
        "landmarks",
        DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
        true,
    ));
    columns.push(Arc::new(c_marks.finish()));
    fields.push(utf8("source", false));
    columns.push(Arc::new(c_source.finish()));
    for (k, mut b) in extra.iter().zip(c_extra) {
        fields.push(utf8(k, true));
        columns.push(Arc::new(b.finish()));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::Output(format!("building the predictions table: {e}")))?;

    let card = &classifier.card;
    let mut meta = vec![
        KeyValue::new(
            "facebatch.version".into(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        KeyValue::new("facebatch.model_name".into(), card.name.clone()),
        KeyValue::new(
            "facebatch.model_sha256".into(),
            classifier.onnx_sha256.clone(),
        ),
        KeyValue::new(
            "facebatch.model_path".into(),
            classifier.onnx_path.display().to_string(),
        ),
    ];
    if let Some(c) = &card.calibration {
        meta.push(KeyValue::new(
            "facebatch.temperature".into(),
            c.temperature.to_string(),
        ));
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(meta))
        .build();
    // One row per evaluated image: small enough to build in memory and write atomically.
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(props))
        .map_err(|e| Error::Output(format!("writing {}: {e}", path.display())))?;
    writer
        .write(&batch)
        .and_then(|_| writer.close().map(|_| ()))
        .map_err(|e| Error::Output(format!("writing {}: {e}", path.display())))?;
    crate::fsutil::write_atomic(path, &bytes)
}
