//! Infer stage: owns the one ONNX Runtime session and turns batches into rows.

use std::time::Instant;

use tokio::sync::mpsc::{Receiver, Sender};

use super::batch::Batch;
use crate::classify::{FileRef, Prepared, Row, StageStats, Status};
use crate::error::Result;
use crate::error::{ImageErrorKind, ImageFailure};
use crate::onnx::{BatchOutput, Classifier};

/// A row without a classification: an error, or an image without a face.
fn empty_row(
    file: FileRef,
    status: Status,
    width: Option<u32>,
    height: Option<u32>,
    error: Option<ImageFailure>,
) -> Row {
    Row {
        root: file.root,
        path: file.rel,
        status,
        face: None,
        last_of_file: true,
        error_kind: error.as_ref().map(|e| e.kind),
        error: error.map(|e| e.message),
        label: None,
        confidence: None,
        probs: Vec::new(),
        width,
        height,
        bytes: file.bytes,
        modified: file.modified,
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
                        Some(ImageFailure::new(
                            ImageErrorKind::Inference,
                            format!("inference failed: {e}"),
                        )),
                    ),
                    Ok(None) => empty_row(
                        file,
                        Status::Error,
                        Some(width),
                        Some(height),
                        Some(ImageFailure::new(
                            ImageErrorKind::Inference,
                            "internal: no model output",
                        )),
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

/// Runs the stage until its input closes, with one worker per classifier.
///
/// Each worker owns a session (one intra-op thread each by default): on a shared CPU,
/// independent sessions classify more faces per second than one session with as many
/// intra-op threads, because no operator waits for its slowest thread
/// (docs/benchmarks.md). Batches are numbered as they are taken and their rows are
/// passed on in that order, so the output order and the checkpoint boundaries do not
/// depend on the number of workers.
pub fn run(
    rx: Receiver<Batch>,
    tx: Sender<Vec<Row>>,
    classifiers: Vec<Classifier>,
    features: bool,
) -> StageStats {
    let mut stats = StageStats {
        name: "infer",
        ..Default::default()
    };
    let intake = std::sync::Mutex::new((rx, 0u64));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(u64, Vec<Row>)>();
    let busy: Vec<(u64, std::time::Duration)> = std::thread::scope(|scope| {
        let workers: Vec<_> = classifiers
            .into_iter()
            .enumerate()
            .map(|(i, mut classifier)| {
                let (intake, done_tx) = (&intake, done_tx.clone());
                std::thread::Builder::new()
                    .name(format!("facebatch-infer-{i}"))
                    .spawn_scoped(scope, move || {
                        let (mut items, mut busy) = (0u64, std::time::Duration::ZERO);
                        loop {
                            // Take the next batch and its number together.
                            let next = {
                                let Ok(mut guard) = intake.lock() else { break };
                                let (rx, seq) = &mut *guard;
                                rx.blocking_recv().map(|b| {
                                    *seq += 1;
                                    (*seq - 1, b)
                                })
                            };
                            let Some((seq, batch)) = next else { break };
                            let t = Instant::now();
                            items += batch.entries.len() as u64;
                            let rows = rows_for(&mut classifier, batch, features);
                            busy += t.elapsed();
                            if done_tx.send((seq, rows)).is_err() {
                                break;
                            }
                        }
                        (items, busy)
                    })
            })
            .collect();
        drop(done_tx);
        // Reorder: pass rows on in batch order.
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u64;
        'out: for (seq, rows) in done_rx {
            waiting.insert(seq, rows);
            while let Some(rows) = waiting.remove(&next) {
                next += 1;
                if tx.blocking_send(rows).is_err() {
                    break 'out;
                }
            }
        }
        workers
            .into_iter()
            .filter_map(|w| w.ok().and_then(|h| h.join().ok()))
            .collect()
    });
    for (items, b) in busy {
        stats.items += items;
        stats.busy += b;
    }
    stats
}
