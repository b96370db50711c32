//! Batch stage: groups prepared faces into batches of up to `batch_size` tensors. Failed
//! and faceless images ride along in order so that rows keep the walk order.

use std::time::Instant;

use tokio::sync::mpsc::{Receiver, Sender};

use super::{Prepared, StageStats};

/// A batch: entries in walk order; the tensors of the `Tensor` entries are run together.
pub struct Batch {
    pub entries: Vec<Prepared>,
    pub tensors: usize,
}

/// Runs the stage until its input closes.
pub fn run(mut rx: Receiver<Vec<Prepared>>, tx: Sender<Batch>, batch_size: usize) -> StageStats {
    let mut stats = StageStats {
        name: "batch",
        ..Default::default()
    };
    let new = || Batch {
        entries: Vec::with_capacity(batch_size),
        tensors: 0,
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
                    .blocking_send(std::mem::replace(&mut current, new()))
                    .is_err()
            {
                return stats;
            }
        }
    }
    if !current.entries.is_empty() {
        let _ = tx.blocking_send(current);
    }
    stats
}
