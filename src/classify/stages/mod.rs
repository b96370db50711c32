//! The classify stages, one file each, in the order the data flows:
//!
//! | stage | file | in → out | runs on |
//! |---|---|---|---|
//! | walk | [`walk`] | input paths → [`FileRef`](super::FileRef) | one blocking thread (walkdir) |
//! | decode | [`decode`] | `FileRef` → [`Decoded`](super::Decoded) | rayon, under the memory budget |
//! | locate | [`locate`] | `Decoded` → [`Located`](super::Located) (faces found and aligned) | rayon (detector sessions) |
//! | tensorize | [`tensorize`] | `Located` → [`Prepared`](super::Prepared) (input tensors) | rayon |
//! | batch | [`batch`] | `Prepared` → [`Batch`](batch::Batch) | one blocking thread |
//! | infer | [`infer`] | `Batch` → [`Row`](super::Row)s | ONNX Runtime worker threads |
//! | sink | [`sink`] | `Row` → Parquet parts | one blocking thread |
//!
//! Each stage knows only its input and output channels; [`pipeline`](super::pipeline)
//! wires them. This file holds the plumbing shared by the stages that work in parallel
//! on the rayon pool.

pub mod batch;
pub mod decode;
pub mod fetch;
pub mod infer;
pub mod locate;
pub mod sink;
pub mod tensorize;
pub mod walk;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::mpsc::{Receiver, Sender};

use super::StageStats;

/// Receives up to `max` items: blocks for the first, then takes what is already queued.
pub(crate) fn recv_chunk<T>(rx: &mut Receiver<T>, max: usize) -> Option<Vec<T>> {
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

#[cfg(test)]
mod tests {
    //! `parallel_map` in-process, on its own channels: order under random delays, and
    //! backpressure from a slow consumer.
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::mpsc::channel;

    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// A cheap deterministic "random" delay of 0-499 µs for item `i`.
    fn delay(i: u64) -> Duration {
        Duration::from_micros(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 55)
    }

    #[test]
    fn parallel_map_keeps_the_input_order_whatever_finishes_first() {
        let (in_tx, in_rx) = channel(8);
        let (out_tx, mut out_rx) = channel(8);
        let feeder = std::thread::spawn(move || {
            for i in 0..300u64 {
                in_tx.blocking_send(i).unwrap();
            }
        });
        let consumer = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(x) = out_rx.blocking_recv() {
                got.push(x);
            }
            got
        });
        let stats = parallel_map("t", in_rx, out_tx, 16, &pool(4), None, |i| {
            std::thread::sleep(delay(i));
            i * 2
        });
        feeder.join().unwrap();
        assert_eq!(
            consumer.join().unwrap(),
            (0..300).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert_eq!(stats.items, 300);
    }

    #[test]
    fn a_slow_consumer_bounds_the_items_in_flight() {
        const CHUNK: usize = 8;
        const OUT_CAPACITY: usize = 4;
        let mapped = Arc::new(AtomicUsize::new(0));
        let (in_tx, in_rx) = channel(4);
        let (out_tx, mut out_rx) = channel(OUT_CAPACITY);
        let feeder = std::thread::spawn(move || {
            for i in 0..200u64 {
                in_tx.blocking_send(i).unwrap();
            }
        });
        let seen = mapped.clone();
        let consumer = std::thread::spawn(move || {
            let (mut consumed, mut most) = (0usize, 0usize);
            while out_rx.blocking_recv().is_some() {
                consumed += 1;
                most = most.max(seen.load(Ordering::SeqCst) - consumed);
                std::thread::sleep(Duration::from_micros(300));
            }
            (consumed, most)
        });
        let counter = mapped.clone();
        parallel_map("t", in_rx, out_tx, CHUNK, &pool(4), None, |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            i
        });
        feeder.join().unwrap();
        let (consumed, most) = consumer.join().unwrap();
        assert_eq!(consumed, 200);
        // Mapped but not consumed: at most one chunk being sent plus what the output
        // channel holds, whatever the input's length.
        assert!(
            most <= CHUNK + OUT_CAPACITY,
            "{most} items were mapped ahead of a slow consumer"
        );
    }

    #[test]
    fn cancel_stops_at_the_next_chunk() {
        let (in_tx, in_rx) = channel(64);
        let (out_tx, mut out_rx) = channel(64);
        for i in 0..40u64 {
            in_tx.blocking_send(i).unwrap();
        }
        drop(in_tx);
        let cancel = AtomicBool::new(true);
        let stats = parallel_map("t", in_rx, out_tx, 8, &pool(2), Some(&cancel), |i| i);
        assert_eq!(stats.items, 0);
        assert!(out_rx.try_recv().is_err());
    }
}
