//! Detect stage: finds the faces of each decoded image and aligns them to the model input
//! (or takes the image whole, per `--faces`), in parallel; optionally saves every crop.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::{Receiver, Sender};

use super::{Decoded, FileRef, Located, StageStats};
use crate::faces::{Crop, FaceFinder};

fn locate(d: Decoded, finder: &FaceFinder, save: Option<&Path>) -> Located {
    match d {
        Decoded::Image {
            file,
            image,
            original: (width, height),
        } => {
            let scale = width as f32 / image.width().max(1) as f32;
            match finder.crops_scaled(&image, scale) {
                Ok(crops) => {
                    if let Some(dir) = save
                        && let Err(error) = save_crops(dir, &file, &crops)
                    {
                        return Located::Failed { file, error };
                    }
                    Located::Crops {
                        file,
                        width,
                        height,
                        crops,
                    }
                }
                Err(e) => Located::Failed {
                    file,
                    error: format!("face detection failed: {e}"),
                },
            }
        }
        Decoded::Failed { file, error } => Located::Failed { file, error },
    }
}

/// `DIR/<path relative to its input>.face<k>.png`.
pub fn crop_path(dir: &Path, file: &FileRef, index: usize) -> PathBuf {
    let rel: String = file
        .rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".." && *c != ".")
        .collect::<Vec<_>>()
        .join("/");
    dir.join(format!("{rel}.face{index}.png"))
}

fn save_crops(dir: &Path, file: &FileRef, crops: &[Crop]) -> Result<(), String> {
    for (k, c) in crops.iter().enumerate() {
        let path = crop_path(dir, file, k);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("--save-crops: creating {}: {e}", parent.display()))?;
        }
        c.image
            .save(&path)
            .map_err(|e| format!("--save-crops: writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Runs the stage until its input closes.
pub fn run(
    rx: Receiver<Decoded>,
    tx: Sender<Located>,
    finder: &FaceFinder,
    save: Option<PathBuf>,
    chunk: usize,
    pool: &rayon::ThreadPool,
) -> StageStats {
    super::stage::parallel_map("detect", rx, tx, chunk, pool, |d| {
        locate(d, finder, save.as_deref())
    })
}
