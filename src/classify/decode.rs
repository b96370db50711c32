//! Decode stage: reads and decodes files in parallel on the rayon pool, EXIF orientation
//! applied, within the pixel limit. Output order equals input order.

use tokio::sync::mpsc::{Receiver, Sender};

use super::{Decoded, FileRef, StageStats};
use crate::preprocess::{DecodeLimits, decode_path};

fn decode_one(file: FileRef, limits: DecodeLimits) -> Decoded {
    if let Some(problem) = file.problem.clone() {
        return Decoded::Failed {
            file,
            error: problem,
        };
    }
    match decode_path(&file.abs, limits) {
        Ok(img) => Decoded::Image {
            image: img.to_rgb8(),
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
    chunk: usize,
    pool: &rayon::ThreadPool,
) -> StageStats {
    super::stage::parallel_map("decode", rx, tx, chunk, pool, |f| decode_one(f, limits))
}
