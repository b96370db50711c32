//! Batch stage: groups prepared faces into batches of up to `batch_size` tensors. Failed
//! and faceless images ride along in order so that rows keep the walk order. Batches are
//! numbered here, so the inference workers, which take them from one multi-consumer
//! channel in any order, can put their rows back in this order.

use std::time::Instant;

use async_channel::Sender;
use tokio::sync::mpsc::Receiver;

use crate::classify::{Prepared, StageStats};

/// A batch: entries in walk order; the tensors of the `Tensor` entries are run together.
pub struct Batch {
    /// 0, 1, 2, … in the order the stage sent the batches.
    pub seq: u64,
    pub entries: Vec<Prepared>,
    pub tensors: usize,
}

/// Runs the stage until its input closes.
pub fn run(mut rx: Receiver<Vec<Prepared>>, tx: Sender<Batch>, batch_size: usize) -> StageStats {
    let mut stats = StageStats {
        name: "batch",
        ..Default::default()
    };
    let mut sent = 0u64;
    let mut new = || {
        sent += 1;
        Batch {
            seq: sent - 1,
            entries: Vec::with_capacity(batch_size),
            tensors: 0,
        }
    };
    let mut current = new();
    while let Some(items) = rx.blocking_recv() {
        for item in items {
            let t = Instant::now();
            stats.items += 1;
            if matches!(item, Prepared::Tensor { .. }) {
                current.tensors += 1;
            }
            current.entries.push(item);
            // Flush when the batch holds enough tensors (or a long run of failed files).
            let full = current.tensors >= batch_size || current.entries.len() >= batch_size * 4;
            stats.busy += t.elapsed();
            if full
                && tx
                    .send_blocking(std::mem::replace(&mut current, new()))
                    .is_err()
            {
                return stats;
            }
        }
    }
    if !current.entries.is_empty() {
        let _ = tx.send_blocking(current);
    }
    stats
}

#[cfg(test)]
mod tests {
    //! The batch stage in-process, on its own channels: flush rules and order.
    use std::sync::Arc;

    use tokio::sync::mpsc::channel;

    use super::*;
    use crate::classify::{FaceMeta, FileRef};
    use crate::vision::faces::CropKind;

    fn file(seq: u64) -> FileRef {
        FileRef {
            seq,
            root: Arc::from("r"),
            input: 0,
            rel: format!("{seq}.jpg"),
            abs: format!("r/{seq}.jpg").into(),
            bytes: None,
            modified: None,
            problem: None,
            object: None,
            fetched: None,
        }
    }

    fn tensor(seq: u64) -> Prepared {
        Prepared::Tensor {
            file: file(seq),
            width: 1,
            height: 1,
            face: FaceMeta {
                index: 0,
                count: 1,
                kind: CropKind::Whole,
                face: None,
            },
            data: vec![0.0; 3],
        }
    }

    fn failed(seq: u64) -> Prepared {
        Prepared::Failed {
            file: file(seq),
            width: None,
            height: None,
            error: crate::error::ImageFailure::new(crate::error::ImageErrorKind::Decode, "broken"),
        }
    }

    fn seq(p: &Prepared) -> u64 {
        match p {
            Prepared::Tensor { file, .. }
            | Prepared::NoFace { file, .. }
            | Prepared::Failed { file, .. } => file.seq,
        }
    }

    /// Feeds `input` (as the preprocess stage sends it: a Vec per file) through the stage.
    fn batches(input: Vec<Vec<Prepared>>, batch_size: usize) -> Vec<Batch> {
        let (in_tx, in_rx) = channel(4);
        let (out_tx, out_rx) = async_channel::bounded(1024);
        let stage = std::thread::spawn(move || run(in_rx, out_tx, batch_size));
        for items in input {
            in_tx.blocking_send(items).unwrap();
        }
        drop(in_tx);
        let stats = stage.join().unwrap();
        let mut out = Vec::new();
        while let Ok(b) = out_rx.try_recv() {
            out.push(b);
        }
        assert_eq!(
            stats.items,
            out.iter().map(|b| b.entries.len() as u64).sum::<u64>()
        );
        let numbers: Vec<u64> = out.iter().map(|b| b.seq).collect();
        assert_eq!(numbers, (0..out.len() as u64).collect::<Vec<_>>());
        out
    }

    #[test]
    fn a_batch_is_flushed_when_it_holds_batch_size_tensors_and_at_the_end() {
        let input: Vec<Vec<Prepared>> = (0..7).map(|i| vec![tensor(i)]).collect();
        let b = batches(input, 3);
        assert_eq!(
            b.iter().map(|b| b.tensors).collect::<Vec<_>>(),
            [3, 3, 1],
            "full batches, then the rest when the input closes"
        );
    }

    #[test]
    fn failed_files_ride_along_in_order_and_a_long_run_of_them_is_flushed() {
        // Two tensors, then 20 failed files: with batch size 4, a batch is also flushed at
        // 16 entries, so errors never wait for tensors that may not come.
        let mut input = vec![vec![tensor(0)], vec![tensor(1)]];
        input.extend((2..22).map(|i| vec![failed(i)]));
        let b = batches(input, 4);
        assert_eq!(b[0].entries.len(), 16);
        assert_eq!(b[0].tensors, 2);
        let order: Vec<u64> = b.iter().flat_map(|b| b.entries.iter().map(seq)).collect();
        assert_eq!(order, (0..22).collect::<Vec<_>>(), "walk order kept");
    }

    #[test]
    fn several_faces_of_one_photo_may_span_two_batches() {
        let photo: Vec<Prepared> = (0..5).map(|_| tensor(0)).collect();
        let b = batches(vec![photo, vec![tensor(1)]], 4);
        assert_eq!(b.iter().map(|b| b.tensors).collect::<Vec<_>>(), [4, 2]);
    }
}
