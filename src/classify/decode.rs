//! Decode stage: reads and decodes files in parallel on the rayon pool, EXIF orientation
//! applied, within the pixel limit. JPEGs are decoded at the smallest DCT scale (1/1, 1/2,
//! 1/4 or 1/8) that still meets `target`. Output order equals input order.

use tokio::sync::mpsc::{Receiver, Sender};

use super::{Decoded, FileRef, StageStats};
use crate::preprocess::{DecodeLimits, DecodeTarget, decode_path_for};

fn decode_one(file: FileRef, limits: DecodeLimits, target: DecodeTarget) -> Decoded {
    if let Some(problem) = file.problem.clone() {
        return Decoded::Failed {
            file,
            error: problem,
        };
    }
    match decode_path_for(&file.abs, limits, target) {
        Ok(d) => Decoded::Image {
            image: d.image.to_rgb8(),
            original: d.original,
            file,
        },
        Err(e) => {
            let error = match e {
                crate::Error::Image { reason, .. } => reason,
                other => other.to_string(),
            };
            Decoded::Failed { file, error }
        }
    }
}

/// Runs the stage until its input closes.
pub fn run(
    rx: Receiver<FileRef>,
    tx: Sender<Decoded>,
    limits: DecodeLimits,
    target: DecodeTarget,
    chunk: usize,
    pool: &rayon::ThreadPool,
) -> StageStats {
    super::stage::parallel_map("decode", rx, tx, chunk, pool, |f| {
        decode_one(f, limits, target)
    })
}
