//! Decode stage: reads and decodes files in parallel on the rayon pool, EXIF orientation
//! applied, within the pixel and file-size limits. JPEGs are decoded at the smallest DCT
//! scale (1/1, 1/2, 1/4 or 1/8) that still meets `target`. Output order equals input order.
//!
//! Memory stays within the [`MemoryBudget`] whatever the thread count: a chunk's files are
//! read in parallel, then each one's decode is reserved on this stage's own thread (never
//! on a pool thread, which the detect stage needs to free reservations), and the reserved
//! files are decoded in parallel. When the budget is short, what is already reserved is
//! decoded and sent on first, so the stage never waits on reservations it holds itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::mpsc::{Receiver, Sender};

use crate::classify::budget::{MemoryBudget, Permit};
use crate::classify::{Decoded, FileRef, StageStats};
use crate::error::{ImageErrorKind, ImageFailure};
use crate::vision::decode::{DecodeLimits, DecodeTarget, decode_bytes_for, read_image_file};

/// A file read into memory (or why not), with the memory its decode needs.
struct Read {
    file: FileRef,
    bytes: Result<Vec<u8>, ImageFailure>,
    need: u64,
}

fn read_one(mut file: FileRef, limits: DecodeLimits) -> Read {
    if let Some(problem) = file.problem.clone() {
        return Read {
            file,
            bytes: Err(problem),
            need: 0,
        };
    }
    // An object's bytes were read by the fetch stage.
    let read = match file.fetched.take() {
        Some(Ok(bytes)) => Ok(Vec::from(bytes)),
        Some(Err(failure)) => {
            return Read {
                file,
                bytes: Err(failure),
                need: 0,
            };
        }
        None => read_image_file(&file.abs, limits.max_file_bytes),
    };
    match read {
        Ok(bytes) => {
            let need =
                bytes.len() as u64 + crate::vision::decode::decode_memory(&bytes).unwrap_or(0);
            Read {
                file,
                bytes: Ok(bytes),
                need,
            }
        }
        Err(e) => Read {
            file,
            bytes: Err(reason(e)),
            need: 0,
        },
    }
}

fn reason(e: crate::Error) -> ImageFailure {
    match e {
        crate::Error::Image { kind, reason, .. } => ImageFailure::new(kind, reason),
        crate::Error::Io { .. } => ImageFailure::new(ImageErrorKind::Io, e.to_string()),
        other => ImageFailure::new(ImageErrorKind::Decode, other.to_string()),
    }
}

fn decode_one(
    r: Read,
    permit: Option<Permit>,
    limits: DecodeLimits,
    target: DecodeTarget,
) -> Decoded {
    let Read { file, bytes, .. } = r;
    let bytes = match bytes {
        Ok(b) => b,
        Err(error) => return Decoded::Failed { file, error },
    };
    match decode_bytes_for(&bytes, &file.abs, limits, target) {
        Ok(d) => {
            drop(bytes);
            Decoded::Image {
                image: d.image.to_rgb8(),
                original: d.original,
                file,
                permit,
            }
        }
        Err(e) => Decoded::Failed {
            file,
            error: reason(e),
        },
    }
}

/// Runs the stage until its input closes or `cancel` is set.
#[allow(clippy::too_many_arguments)]
pub fn run(
    mut rx: Receiver<FileRef>,
    tx: Sender<Decoded>,
    limits: DecodeLimits,
    target: DecodeTarget,
    chunk: usize,
    pool: &rayon::ThreadPool,
    budget: Arc<MemoryBudget>,
    cancel: Arc<AtomicBool>,
) -> StageStats {
    let mut stats = StageStats {
        name: "decode",
        ..Default::default()
    };
    let work = AtomicU64::new(0);
    // Decodes the reserved files in parallel and sends them on; false when downstream stopped.
    let flush = |ready: &mut Vec<(Read, Option<Permit>)>, stats: &mut StageStats| -> bool {
        let items = std::mem::take(ready);
        let out: Vec<Decoded> = pool.install(|| {
            items
                .into_par_iter()
                .map(|(r, p)| {
                    let t = Instant::now();
                    let d = decode_one(r, p, limits, target);
                    work.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    d
                })
                .collect()
        });
        stats.items += out.len() as u64;
        out.into_iter().all(|d| tx.blocking_send(d).is_ok())
    };
    while let Some(files) = super::recv_chunk(&mut rx, chunk) {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let reads: Vec<Read> = pool.install(|| {
            files
                .into_par_iter()
                .map(|f| {
                    let t = Instant::now();
                    let r = read_one(f, limits);
                    work.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    r
                })
                .collect()
        });
        let mut ready: Vec<(Read, Option<Permit>)> = Vec::with_capacity(reads.len());
        for r in reads {
            let permit = if r.need == 0 {
                None
            } else if let Some(p) = budget.try_reserve(r.need) {
                Some(p)
            } else {
                if !ready.is_empty() && !flush(&mut ready, &mut stats) {
                    return finish(stats, &work);
                }
                Some(budget.reserve(r.need))
            };
            ready.push((r, permit));
        }
        if !flush(&mut ready, &mut stats) {
            break;
        }
    }
    finish(stats, &work)
}

fn finish(mut stats: StageStats, work: &AtomicU64) -> StageStats {
    stats.busy = Duration::from_nanos(work.load(Ordering::Relaxed));
    stats
}
