//! Infer stage: owns the one ONNX Runtime session and turns batches into rows.

use std::time::Instant;

use tokio::sync::mpsc::{Receiver, Sender};

use super::batch::Batch;
use super::{Prepared, Row, StageStats};
use crate::error::Result;
use crate::infer::Classifier;

fn error_row(file: super::FileRef, width: Option<u32>, height: Option<u32>, error: String) -> Row {
    Row {
        root: file.root,
        path: file.rel,
        error: Some(error),
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
/// for that batch's images (the run goes on).
fn rows_for(classifier: &mut Classifier, batch: Batch, features: bool) -> Vec<Row> {
    let labels = classifier.card.labels.clone();
    let classes = labels.len();
    let mut input = Vec::with_capacity(batch.tensors * classifier.card.input.len());
    for e in &batch.entries {
        if let Prepared::Tensor { data, .. } = e {
            input.extend_from_slice(data);
        }
    }
    let result: Result<_> = if batch.tensors > 0 {
        classifier.run(&input, batch.tensors).map(Some)
    } else {
        Ok(None)
    };
    let mut k = 0;
    let mut rows = Vec::with_capacity(batch.entries.len());
    for e in batch.entries {
        match (e, &result) {
            (
                Prepared::Failed {
                    file,
                    width,
                    height,
                    error,
                },
                _,
            ) => rows.push(error_row(file, width, height, error)),
            (
                Prepared::Tensor {
                    file,
                    width,
                    height,
                    ..
                },
                Ok(Some(out)),
            ) => {
                let probs = out.probs[k * classes..(k + 1) * classes].to_vec();
                let best = out.argmax(k, classes);
                let pooled_dim = out.pooled.len() / out.n.max(1);
                rows.push(Row {
                    root: file.root,
                    path: file.rel,
                    error: None,
                    label: Some(labels[best].clone()),
                    confidence: Some(probs[best]),
                    probs,
                    width: Some(width),
                    height: Some(height),
                    bytes: file.bytes,
                    features: features
                        .then(|| out.pooled[k * pooled_dim..(k + 1) * pooled_dim].to_vec()),
                });
                k += 1;
            }
            (
                Prepared::Tensor {
                    file,
                    width,
                    height,
                    ..
                },
                Err(e),
            ) => rows.push(error_row(
                file,
                Some(width),
                Some(height),
                format!("inference failed: {e}"),
            )),
            (
                Prepared::Tensor {
                    file,
                    width,
                    height,
                    ..
                },
                Ok(None),
            ) => rows.push(error_row(
                file,
                Some(width),
                Some(height),
                "internal: no model output".into(),
            )),
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
