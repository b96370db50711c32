//! Source stage: walks the inputs in a deterministic order and emits every file that looks
//! like an image (by extension), including ones that will fail later, so each gets a row.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Sender;

use crate::classify::output::Fingerprint;
use crate::classify::seen::Join;
use crate::classify::{FileRef, StageStats};
use crate::error::ImageErrorKind::{Io, NotAFile};
use crate::error::ImageFailure;

/// Extensions of image formats facebatch decodes, plus common ones it does not (HEIC,
/// AVIF, JPEG XL, RAW), which are listed so they get an "unsupported" row rather than
/// vanishing silently.
pub const WALK_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "bmp", "webp", "tif", "tiff", "pgm", "ppm", "pbm", "pnm",
    "gif", "heic", "heif", "avif", "jxl", "dng", "cr2", "nef", "arw",
];

/// True when the path's extension marks it as a (possibly unsupported) image.
pub fn is_candidate(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| WALK_EXTENSIONS.contains(&e.as_str()))
}

/// Which walked files this run leaves out.
#[derive(Debug, Default)]
pub struct Skip {
    /// (root, path) already written by the run being resumed, with the fingerprint its
    /// rows record.
    pub done: HashMap<(String, String), Option<Fingerprint>>,
    /// Only this shard's files are taken.
    pub shard: Option<crate::classify::shard::Shard>,
}

/// A file's modification time in microseconds since the Unix epoch.
pub fn modified_micros(m: &std::fs::Metadata) -> Option<i64> {
    let t = m.modified().ok()?;
    Some(match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_micros()).ok()?,
    })
}

/// How the walk behaves.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub inputs: Vec<PathBuf>,
    pub follow_symlinks: bool,
}

/// One walked entry.
pub struct Walked {
    /// The input's position on the command line.
    pub input: usize,
    pub root: Arc<str>,
    /// The path relative to the input.
    pub rel: PathBuf,
    pub abs: PathBuf,
    /// Why the walk could not read it.
    pub error: Option<ImageFailure>,
    /// A symbolic link met in a folder without `--follow-symlinks`: not read.
    pub link: bool,
}

/// The walk itself, input by input, in file-name order.
pub fn walk(config: &SourceConfig) -> impl Iterator<Item = Walked> + '_ {
    config
        .inputs
        .iter()
        .enumerate()
        .flat_map(move |(k, input)| {
            let root: Arc<str> = Arc::from(crate::fsutil::path_key(input).as_str());
            let base = if input.is_dir() {
                input.clone()
            } else {
                input.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            walkdir::WalkDir::new(input)
                .follow_links(config.follow_symlinks)
                .sort_by_file_name()
                .into_iter()
                .filter_map(move |entry| match entry {
                    Ok(e) => {
                        if e.file_type().is_dir() || !is_candidate(e.path()) {
                            return None;
                        }
                        // Inputs named on the command line are read even when they are links.
                        let link = e.depth() > 0 && e.path_is_symlink() && !config.follow_symlinks;
                        let rel = e
                            .path()
                            .strip_prefix(&base)
                            .unwrap_or(e.path())
                            .to_path_buf();
                        Some(Walked {
                            input: k,
                            root: root.clone(),
                            rel,
                            abs: e.into_path(),
                            error: None,
                            link,
                        })
                    }
                    Err(err) => {
                        // A broken symlink (when following links) or an unreadable directory.
                        let path = err.path().map(Path::to_path_buf)?;
                        if err.depth() > 0 && path.is_dir() {
                            // An unreadable directory: report it under its own name.
                        } else if !is_candidate(&path) {
                            return None;
                        }
                        let rel = path.strip_prefix(&base).unwrap_or(&path).to_path_buf();
                        let msg = err
                            .io_error()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|| err.to_string());
                        let failure = if std::fs::symlink_metadata(&path)
                            .is_ok_and(|m| m.file_type().is_symlink())
                            && std::fs::metadata(&path).is_err()
                        {
                            ImageFailure::new(NotAFile, format!("broken symbolic link: {msg}"))
                        } else {
                            ImageFailure::new(Io, msg)
                        };
                        Some(Walked {
                            input: k,
                            root: root.clone(),
                            rel,
                            abs: path,
                            error: Some(failure),
                            link: false,
                        })
                    }
                })
        })
}

/// Inspects one walked file: size and regular-file check.
fn inspect(seq: u64, w: Walked, rel_str: String) -> FileRef {
    let Walked {
        input,
        root,
        abs,
        error: walk_error,
        ..
    } = w;
    let mut problem = walk_error;
    let (mut bytes, mut modified) = (None, None);
    if problem.is_none() {
        match std::fs::metadata(&abs) {
            Ok(m) if m.is_file() => {
                bytes = Some(m.len());
                modified = modified_micros(&m);
            }
            Ok(_) => problem = Some(ImageFailure::new(NotAFile, "not a regular file")),
            Err(e) if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_symlink()) => {
                problem = Some(ImageFailure::new(
                    NotAFile,
                    format!("broken symbolic link: {e}"),
                ))
            }
            Err(e) => problem = Some(ImageFailure::new(Io, e.to_string())),
        }
    }
    FileRef {
        seq,
        root,
        input,
        rel: rel_str,
        abs,
        bytes,
        modified,
        problem,
    }
}

/// What the source stage skipped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Skipped {
    /// Already written by the run being resumed.
    pub done: u64,
    /// Unchanged since an earlier successful job run.
    pub unchanged: u64,
    /// Symbolic links not followed (no `--follow-symlinks`).
    pub links: u64,
}

/// Runs the stage: emits this shard's files that `skip` does not leave out, until the walk
/// ends or `cancel` is set. In an incremental job run, `join` holds what earlier runs
/// classified: a file whose fingerprint they recorded is skipped while unchanged, and the
/// new fingerprint index is written as the walk goes (finished only when the walk is).
/// Returns its stats and what it skipped.
pub fn run(
    config: SourceConfig,
    skip: Arc<Skip>,
    mut join: Option<Join>,
    cancel: Arc<AtomicBool>,
    tx: Sender<FileRef>,
) -> (StageStats, Skipped) {
    let mut stats = StageStats {
        name: "walk",
        ..Default::default()
    };
    let mut skipped = Skipped::default();
    let mut seq = 0;
    let mut busy = Duration::ZERO;
    let mut t = Instant::now();
    let mut walked_all = true;
    for w in walk(&config) {
        if cancel.load(Ordering::Relaxed) {
            walked_all = false;
            break;
        }
        if w.link {
            tracing::debug!(path = %w.abs.display(), "symbolic link not followed");
            skipped.links += 1;
            continue;
        }
        let key = (w.root.to_string(), crate::fsutil::path_key(&w.rel));
        if skip.shard.is_some_and(|s| !s.takes(&key.1)) {
            continue;
        }
        // What earlier job runs recorded; then what the new index keeps: the fingerprint
        // of the row this run has (or gives) the file, else the earlier one.
        let earlier = join.as_mut().and_then(|j| j.find(w.input, &w.root, &key.1));
        let mut keep = |fingerprint: Option<Fingerprint>| {
            if let Some(j) = join.as_mut() {
                j.keep(fingerprint.or(earlier));
            }
        };
        if let Some(done) = skip.done.get(&key) {
            keep(*done);
            skipped.done += 1;
            continue;
        }
        let file = inspect(seq, w, key.1.clone());
        let fingerprint = file.bytes.zip(file.modified);
        if earlier.is_some() && fingerprint == earlier {
            keep(fingerprint);
            skipped.unchanged += 1;
            continue;
        }
        keep(fingerprint);
        seq += 1;
        stats.items += 1;
        busy += t.elapsed();
        if tx.blocking_send(file).is_err() {
            walked_all = false;
            break; // downstream stopped
        }
        t = Instant::now();
    }
    if walked_all && let Some(Err(e)) = join.map(Join::finish) {
        tracing::warn!(error = %e, "the new fingerprint index could not be written: the next run reads this run's part instead");
    }
    busy += t.elapsed();
    stats.busy = busy;
    (stats, skipped)
}

/// Counts candidate files (for the progress bar's length), stopping early on cancel.
pub fn count(
    config: &SourceConfig,
    shard: Option<crate::classify::shard::Shard>,
    cancel: &AtomicBool,
) -> Option<u64> {
    let mut n = 0;
    for w in walk(config) {
        if cancel.load(Ordering::Relaxed) {
            return None;
        }
        if !w.link && shard.is_none_or(|s| s.takes(&crate::fsutil::path_key(&w.rel))) {
            n += 1;
        }
    }
    Some(n)
}
