//! Infer stage: owns the one ONNX Runtime session and turns batches into rows.

use std::time::Instant;

use tokio::sync::mpsc::{Receiver, Sender};

use super::batch::Batch;
use super::{FileRef, Prepared, Row, StageStats, Status};
use crate::error::Result;
use crate::infer::{BatchOutput, Classifier};

/// A row without a classification: an error, or an image without a face.
fn empty_row(
    file: FileRef,
    status: Status,
    width: Option<u32>,
    height: Option<u32>,
    error: Option<String>,
) -> Row {
    Row {
        root: file.root,
        path: file.rel,
        status,
        face: None,
        last_of_file: true,
        error,
        label: None,
        confidence: None,
        probs: Vec::new(),
        width,
        height,
        bytes: file.bytes,
        features: None,
    }
}

/// Runs one batch through the model. A failure of the model on a batch becomes error rows
/// for that batch's faces (the run goes on).
fn rows_for(classifier: &mut Classifier, batch: Batch, features: bool) -> Vec<Row> {
    let labels = classifier.card.labels.clone();
    let classes = labels.len();
    let mut input = Vec::with_capacity(batch.tensors * classifier.card.input.len());
    for e in &batch.entries {
        if let Prepared::Tensor { data, .. } = e {
            input.extend_from_slice(data);
        }
    }
    let result: Result<Option<BatchOutput>> = if batch.tensors > 0 {
        classifier.run(&input, batch.tensors).map(Some)
    } else {
        Ok(None)
    };
    let mut k = 0;
    let mut rows = Vec::with_capacity(batch.entries.len());
    for e in batch.entries {
        match e {
            Prepared::Failed {
                file,
                width,
                height,
                error,
            } => rows.push(empty_row(file, Status::Error, width, height, Some(error))),
            Prepared::NoFace {
                file,
                width,
                height,
            } => rows.push(empty_row(
                file,
                Status::NoFace,
                Some(width),
                Some(height),
                None,
            )),
            Prepared::Tensor {
                file,
                width,
                height,
                face,
                ..
            } => {
                let last_of_file = face.index + 1 == face.count;
                let mut row = match &result {
                    Ok(Some(out)) => {
                        let probs = out.probs[k * classes..(k + 1) * classes].to_vec();
                        let best = out.argmax(k, classes);
                        let pooled_dim = out.pooled.len() / out.n.max(1);
                        Row {
                            label: Some(labels[best].clone()),
                            confidence: Some(probs[best]),
                            probs,
                            features: features
                                .then(|| out.pooled[k * pooled_dim..(k + 1) * pooled_dim].to_vec()),
                            ..empty_row(file, Status::Ok, Some(width), Some(height), None)
                        }
                    }
                    Err(e) => empty_row(
                        file,
                        Status::Error,
                        Some(width),
                        Some(height),
                        Some(format!("inference failed: {e}")),
                    ),
                    Ok(None) => empty_row(
                        file,
                        Status::Error,
                        Some(width),
                        Some(height),
                        Some("internal: no model output".into()),
                    ),
                };
                row.face = Some(face);
                row.last_of_file = last_of_file;
                rows.push(row);
                k += 1;
            }
        }
    }
    rows
}

/// Runs the stage until its input closes.
pub fn run(
    mut rx: Receiver<Batch>,
    tx: Sender<Vec<Row>>,
    mut classifier: Classifier,
    features: bool,
) -> StageStats {
    let mut stats = StageStats {
        name: "infer",
        ..Default::default()
    };
    while let Some(batch) = rx.blocking_recv() {
        let t = Instant::now();
        stats.items += batch.entries.len() as u64;
        let rows = rows_for(&mut classifier, batch, features);
        stats.busy += t.elapsed();
        if tx.blocking_send(rows).is_err() {
            break;
        }
    }
    stats
}
