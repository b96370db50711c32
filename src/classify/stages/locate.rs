//! Detect stage: finds the faces of each decoded image and aligns them to the model input
//! (or takes the image whole, per `--faces`), in parallel; optionally saves every crop.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc::{Receiver, Sender};

use crate::classify::{Decoded, FileRef, Located, StageStats};
use crate::error::{ImageErrorKind, ImageFailure};
use crate::vision::faces::{Crop, FaceFinder};

fn locate(d: Decoded, finder: &FaceFinder, save: Option<&CropDir>) -> Located {
    match d {
        Decoded::Image {
            file,
            image,
            original: (width, height),
            permit: _permit, // held until the crops are cut
        } => {
            let scale = width as f32 / image.width().max(1) as f32;
            match finder.crops_scaled(&image, scale) {
                Ok(crops) => {
                    if let Some(dir) = save
                        && let Err(error) = dir.save(&file, &crops)
                    {
                        return Located::Failed {
                            file,
                            error: ImageFailure::new(ImageErrorKind::SaveCrops, error),
                        };
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
                    error: ImageFailure::new(
                        ImageErrorKind::Detection,
                        format!("face detection failed: {e}"),
                    ),
                },
            }
        }
        Decoded::Failed { file, error } => Located::Failed { file, error },
    }
}

/// Where crops are saved: `DIR/<path relative to its input>.face<k>.png`, or with several
/// inputs `DIR/<input number>/<path relative to it>.face<k>.png` (numbered from 1 in command
/// line order), so two inputs holding the same relative name never share a crop.
#[derive(Clone, Debug)]
pub struct CropDir {
    /// The folder as given.
    pub dir: PathBuf,
    /// The folder resolved: every crop must land inside it.
    resolved: PathBuf,
    numbered: bool,
}

impl CropDir {
    /// Creates (if needed) and resolves the crops folder.
    pub fn new(dir: &Path, inputs: usize) -> Result<CropDir, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--save-crops: creating {}: {e}", dir.display()))?;
        let resolved = std::fs::canonicalize(dir)
            .map_err(|e| format!("--save-crops: resolving {}: {e}", dir.display()))?;
        Ok(CropDir {
            dir: dir.to_path_buf(),
            resolved,
            numbered: inputs > 1,
        })
    }

    /// The crop file of face `index` of `file`.
    pub fn path(&self, file: &FileRef, index: usize) -> PathBuf {
        let rel: String = file
            .rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".." && *c != ".")
            .collect::<Vec<_>>()
            .join("/");
        let base = if self.numbered {
            self.dir.join((file.input + 1).to_string())
        } else {
            self.dir.clone()
        };
        base.join(format!("{rel}.face{index}.png"))
    }

    /// Writes every crop of `file` atomically (a temporary file, then a rename, which
    /// replaces rather than follows a symbolic link at the crop's name). A folder on the way
    /// that leads outside the crops folder (a symbolic link) is refused.
    fn save(&self, file: &FileRef, crops: &[Crop]) -> Result<(), String> {
        for (k, c) in crops.iter().enumerate() {
            let path = self.path(file, k);
            let parent = path.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("--save-crops: creating {}: {e}", parent.display()))?;
            let inside = std::fs::canonicalize(parent).is_ok_and(|p| p.starts_with(&self.resolved));
            if !inside {
                return Err(format!(
                    "--save-crops: {} leads outside {} (a symbolic link); crop not written",
                    parent.display(),
                    self.dir.display()
                ));
            }
            let mut png = Vec::new();
            c.image()
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| format!("--save-crops: encoding {}: {e}", path.display()))?;
            write_new(parent, &path, &png)
                .map_err(|e| format!("--save-crops: writing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Writes `bytes` to a temporary file in `dir` and renames it to `path`; every write error
/// (a full disk included) is returned, and no partial crop is left under the crop's name.
fn write_new(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = tempfile::Builder::new()
        .prefix(".crop-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.flush()?;
    crate::fsutil::set_readable(tmp.as_file())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Runs the stage until its input closes.
pub fn run(
    rx: Receiver<Decoded>,
    tx: Sender<Located>,
    finder: &FaceFinder,
    save: Option<CropDir>,
    chunk: usize,
    pool: &rayon::ThreadPool,
    cancel: &std::sync::atomic::AtomicBool,
) -> StageStats {
    super::parallel_map("locate", rx, tx, chunk, pool, Some(cancel), |d| {
        locate(d, finder, save.as_ref())
    })
}
