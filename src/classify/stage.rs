//! Plumbing shared by the stages that do their work in parallel on the rayon pool.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::mpsc::{Receiver, Sender};

use super::StageStats;

/// Receives up to `max` items: blocks for the first, then takes what is already queued.
pub(super) fn recv_chunk<T>(rx: &mut Receiver<T>, max: usize) -> Option<Vec<T>> {
    let first = rx.blocking_recv()?;
    let mut chunk = Vec::with_capacity(max);
    chunk.push(first);
    while chunk.len() < max {
        match rx.try_recv() {
            Ok(item) => chunk.push(item),
            Err(_) => break,
        }
    }
    Some(chunk)
}

/// Maps every item through `f`, a chunk at a time, in parallel on `pool`, keeping the
/// order. The loop runs on the calling thread; only the parallel work runs on the pool, so
/// no pool thread ever waits on a channel. The stage's busy time is the sum of the time
/// spent in `f` (thread-seconds; not the time queued behind other stages on the pool).
/// Once `cancel` is set, the stage stops at the next chunk and drops what is queued for
/// it (those files were never written, so `--resume` takes them again).
pub fn parallel_map<I: Send, O: Send>(
    name: &'static str,
    mut rx: Receiver<I>,
    tx: Sender<O>,
    chunk: usize,
    pool: &rayon::ThreadPool,
    cancel: Option<&AtomicBool>,
    f: impl Fn(I) -> O + Sync,
) -> StageStats {
    let mut stats = StageStats {
        name,
        ..Default::default()
    };
    while let Some(items) = recv_chunk(&mut rx, chunk) {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            break;
        }
        let work = AtomicU64::new(0);
        let out: Vec<O> = pool.install(|| {
            items
                .into_par_iter()
                .map(|item| {
                    let t = Instant::now();
                    let o = f(item);
                    work.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    o
                })
                .collect()
        });
        stats.items += out.len() as u64;
        stats.busy += Duration::from_nanos(work.into_inner());
        for o in out {
            if tx.blocking_send(o).is_err() {
                return stats;
            }
        }
    }
    stats
}
