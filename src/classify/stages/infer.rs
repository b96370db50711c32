//! Infer stage: N workers take numbered batches from one multi-consumer channel, run them
//! through the classifier's session pool, and the rows go on in batch order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use tokio::sync::mpsc::Sender;

use super::batch::Batch;
use crate::classify::{FileRef, Prepared, Row, StageStats, Status};
use crate::error::Result;
use crate::error::{ImageErrorKind, ImageFailure};
use crate::model::classifier::{BatchOutput, Classifier};

/// What a row carries beyond the prediction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// The pooled features (`--features`).
    pub features: bool,
    /// Each member's probabilities (`--member-probs`).
    pub member_probs: bool,
}

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
        member_probs: Vec::new(),
    }
}

/// The row of the `k`th face of a batch, from the batch's result.
fn face_row(
    result: &Result<Option<BatchOutput>>,
    k: usize,
    labels: &[String],
    want: Extras,
    file: FileRef,
    (width, height): (Option<u32>, Option<u32>),
) -> Row {
    let classes = labels.len();
    let failed = |message: String| {
        let error = ImageFailure::new(ImageErrorKind::Inference, message);
        empty_row(file.clone(), Status::Error, width, height, Some(error))
    };
    match result {
        Ok(Some(out)) => {
            let probs = out.probs[k * classes..(k + 1) * classes].to_vec();
            let best = out.argmax(k, classes);
            let pooled_dim = out.pooled.len() / out.n.max(1);
            Row {
                label: Some(labels[best].clone()),
                confidence: Some(probs[best]),
                probs,
                features: want
                    .features
                    .then(|| out.pooled[k * pooled_dim..(k + 1) * pooled_dim].to_vec()),
                member_probs: if want.member_probs {
                    out.members
                        .iter()
                        .map(|m| m[k * classes..(k + 1) * classes].to_vec())
                        .collect()
                } else {
                    Vec::new()
                },
                ..empty_row(file, Status::Ok, width, height, None)
            }
        }
        Err(e) => failed(format!("inference failed: {e}")),
        Ok(None) => failed("internal: no model output".into()),
    }
}

/// Runs one batch through the model. A failure of the model on a batch becomes error rows
/// for that batch's faces (the run goes on).
fn rows_for(classifier: &Classifier, batch: Batch, want: Extras) -> Vec<Row> {
    let labels = classifier.card.labels.clone();
    let mut input = Vec::with_capacity(batch.tensors * classifier.input_len());
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
                let size = (Some(width), Some(height));
                let mut row = face_row(&result, k, &labels, want, file, size);
                row.last_of_file = face.index + 1 == face.count;
                row.face = Some(face);
                rows.push(row);
                k += 1;
            }
        }
    }
    rows
}

/// Runs the stage until its input closes, with `workers` threads sharing `classifier`
/// (whose pool holds a session for each).
///
/// One session per worker (one intra-op thread each by default): on a shared CPU,
/// independent sessions classify more faces per second than one session with as many
/// intra-op threads, because no operator waits for its slowest thread
/// (docs/benchmarks.md). Rows are passed on in batch order, so the output order and the
/// checkpoint boundaries do not depend on the number of workers.
pub fn run(
    rx: Receiver<Batch>,
    tx: Sender<Vec<Row>>,
    classifier: &Classifier,
    workers: usize,
    want: Extras,
) -> StageStats {
    let (items, busy) = in_order(
        rx,
        tx,
        workers,
        |b: &Batch| (b.seq, b.entries.len() as u64),
        |batch| rows_for(classifier, batch, want),
    );
    StageStats {
        name: "infer",
        items,
        busy,
    }
}

/// Maps every item of `rx` through `work` on `workers` threads, which take items as they
/// become free, and sends the results on in the items' numbers' order (`number` gives an
/// item's number, 0, 1, 2, … as its producer sent them, and how many things it counts
/// as). Returns the items counted and the busy time summed over the workers.
fn in_order<I: Send, O: Send>(
    rx: Receiver<I>,
    tx: Sender<O>,
    workers: usize,
    number: impl Fn(&I) -> (u64, u64) + Sync,
    work: impl Fn(I) -> O + Sync,
) -> (u64, Duration) {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(u64, O)>();
    let per_worker: Vec<(u64, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|i| {
                let (rx, done_tx, number, work) = (rx.clone(), done_tx.clone(), &number, &work);
                std::thread::Builder::new()
                    .name(format!("facebatch-infer-{i}"))
                    .spawn_scoped(scope, move || {
                        let (mut items, mut busy) = (0u64, Duration::ZERO);
                        while let Ok(item) = rx.recv_blocking() {
                            let t = Instant::now();
                            let (seq, count) = number(&item);
                            items += count;
                            let out = work(item);
                            busy += t.elapsed();
                            if done_tx.send((seq, out)).is_err() {
                                break;
                            }
                        }
                        (items, busy)
                    })
            })
            .collect();
        drop((done_tx, rx));
        // Reorder: pass results on in number order.
        let mut waiting = BTreeMap::new();
        let mut next = 0u64;
        'out: for (seq, out) in done_rx {
            waiting.insert(seq, out);
            while let Some(out) = waiting.remove(&next) {
                next += 1;
                if tx.blocking_send(out).is_err() {
                    break 'out;
                }
            }
        }
        handles
            .into_iter()
            .filter_map(|h| h.ok().and_then(|h| h.join().ok()))
            .collect()
    });
    per_worker
        .into_iter()
        .fold((0, Duration::ZERO), |(n, b), (i, d)| (n + i, b + d))
}

#[cfg(test)]
mod tests {
    //! The reordering of parallel inference, in-process: no ONNX Runtime.
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Items finish in a random order (random per-item work times over four workers), and
    /// still leave in the order they were numbered.
    #[test]
    fn results_leave_in_number_order_whatever_order_the_workers_finish_in() {
        let (in_tx, in_rx) = async_channel::bounded(2);
        let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let delays: Vec<u64> = (0..200).map(|_| rng.random_range(0..3)).collect();
        let feeder = std::thread::spawn(move || {
            for (seq, d) in delays.into_iter().enumerate() {
                in_tx.send_blocking((seq as u64, d)).unwrap();
            }
        });
        let collector = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(x) = out_rx.blocking_recv() {
                got.push(x);
            }
            got
        });
        let (items, _) = in_order(
            in_rx,
            out_tx,
            4,
            |&(seq, _): &(u64, u64)| (seq, 1),
            |(seq, d)| {
                std::thread::sleep(Duration::from_millis(d));
                seq
            },
        );
        feeder.join().unwrap();
        assert_eq!(items, 200);
        assert_eq!(collector.join().unwrap(), (0..200).collect::<Vec<u64>>());
    }

    /// When the consumer goes away, the workers stop instead of blocking.
    #[test]
    fn a_closed_output_stops_the_workers() {
        let (in_tx, in_rx) = async_channel::bounded(1000);
        for seq in 0..1000u64 {
            in_tx.send_blocking(seq).unwrap();
        }
        drop(in_tx);
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(1);
        drop(out_rx);
        let (items, _) = in_order(
            in_rx,
            out_tx,
            3,
            |&s: &u64| (s, 1),
            |s| {
                std::thread::sleep(Duration::from_millis(1));
                s
            },
        );
        assert!(items < 1000, "stopped early: {items}");
    }
}
