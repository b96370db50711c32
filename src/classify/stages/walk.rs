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
use crate::classify::{FileRef, Input, ObjectRef, StageStats};
use crate::error::ImageErrorKind::{Io, NotAFile};
use crate::error::ImageFailure;
use crate::error::{Error, Result};

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
    pub inputs: Vec<Input>,
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
    /// The object to read instead of a local file.
    pub object: Option<ObjectRef>,
}

/// The walk itself, input by input: local folders in file-name order, object-store
/// prefixes in key order (page by page), manifests in their lines' order. An error is fatal
/// to the run (a listing that fails, a manifest that cannot be read).
pub fn walk(config: &SourceConfig) -> impl Iterator<Item = Result<Walked>> + '_ {
    config.inputs.iter().enumerate().flat_map(
        move |(k, input)| -> Box<dyn Iterator<Item = Result<Walked>> + '_> {
            match input {
                Input::Path(p) => Box::new(walk_path(config, k, p).map(Ok)),
                Input::Object(url) => walk_objects(k, url),
                Input::Manifest(p) => walk_manifest(k, p),
            }
        },
    )
}

fn object_walked(
    k: usize,
    root: &Arc<str>,
    rel: String,
    url: crate::remote::ObjectUrl,
    meta: &object_store::ObjectMeta,
) -> Walked {
    Walked {
        input: k,
        root: root.clone(),
        rel: PathBuf::from(rel),
        abs: PathBuf::from(url.to_string()),
        error: None,
        link: false,
        object: Some(ObjectRef {
            url,
            size: Some(meta.size),
            modified: Some(meta.last_modified.timestamp_micros()),
        }),
    }
}

/// An object-store input: a prefix's listing (image keys only, as a local walk takes image
/// files only), or the one object named.
fn walk_objects(
    k: usize,
    url: &crate::remote::ObjectUrl,
) -> Box<dyn Iterator<Item = Result<Walked>> + '_> {
    let root: Arc<str> = Arc::from(url.to_string().as_str());
    if !url.is_prefix() || !url.scheme.lists() {
        return Box::new(std::iter::once_with(move || {
            let meta = crate::remote::head(url)?.ok_or_else(|| Error::Store {
                url: url.to_string(),
                reason: "no such object".into(),
            })?;
            Ok(object_walked(
                k,
                &root,
                url.file_name().to_string(),
                url.clone(),
                &meta,
            ))
        }));
    }
    let list = match crate::remote::list(url) {
        Ok(l) => l,
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    let prefix = url.path().to_string();
    Box::new(list.filter_map(move |item| {
        let meta = match item {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        let key = meta.location.to_string();
        let rel = if prefix.is_empty() {
            key.clone()
        } else {
            key.strip_prefix(&prefix)?
                .trim_start_matches('/')
                .to_string()
        };
        if rel.is_empty() || !is_candidate(Path::new(&rel)) {
            return None;
        }
        Some(Ok(object_walked(k, &root, rel, url.with_key(key), &meta)))
    }))
}

/// A manifest: one image per line (`.txt`; `#` starts a comment) or per row (`.csv`: the
/// `url` or `path` column, else the first). URLs are read from their store; other entries
/// are paths relative to the manifest's folder. Entries are taken whatever their extension
/// (a URL often has none); a prefix URL is an error row, not a listing.
fn walk_manifest(k: usize, manifest: &Path) -> Box<dyn Iterator<Item = Result<Walked>> + '_> {
    let root: Arc<str> = Arc::from(crate::fsutil::path_key(manifest).as_str());
    let entries = match read_manifest(manifest) {
        Ok(e) => e,
        Err(e) => return Box::new(std::iter::once(Err(e))),
    };
    let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    Box::new(entries.into_iter().map(move |entry| {
        let failed = |abs: PathBuf, rel: String, why: String| Walked {
            input: k,
            root: root.clone(),
            rel: PathBuf::from(rel),
            abs,
            error: Some(ImageFailure::new(Io, why)),
            link: false,
            object: None,
        };
        match crate::remote::ObjectUrl::parse(&entry) {
            Some(Ok(url)) if url.is_prefix() && url.scheme.lists() => Ok(failed(
                PathBuf::from(url.to_string()),
                url.to_string(),
                "a manifest names objects, not prefixes: give the prefix as an input to list it"
                    .into(),
            )),
            // Not asked before it is read: a manifest of a million URLs walks at once.
            Some(Ok(url)) => Ok(Walked {
                input: k,
                root: root.clone(),
                rel: PathBuf::from(url.to_string()),
                abs: PathBuf::from(url.to_string()),
                error: None,
                link: false,
                object: Some(ObjectRef {
                    url,
                    size: None,
                    modified: None,
                }),
            }),
            Some(Err(e)) => Ok(failed(
                PathBuf::from(crate::remote::redact(&entry)),
                crate::remote::redact(&entry),
                e.to_string(),
            )),
            None => {
                let abs = dir.join(&entry);
                Ok(Walked {
                    input: k,
                    root: root.clone(),
                    rel: PathBuf::from(&entry),
                    abs,
                    error: None,
                    link: false,
                    object: None,
                })
            }
        }
    }))
}

fn read_manifest(path: &Path) -> Result<Vec<String>> {
    let text = fs_err::read_to_string(path)?;
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !csv {
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect());
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let column = headers
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case("url"))
        .or_else(|| {
            headers
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case("path"))
        })
        .unwrap_or(0);
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Error::Csv {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if let Some(v) = record.get(column).map(str::trim).filter(|v| !v.is_empty()) {
            out.push(v.to_string());
        }
    }
    Ok(out)
}

/// A local input's walk, in file-name order.
fn walk_path<'a>(
    config: &'a SourceConfig,
    k: usize,
    input: &'a Path,
) -> impl Iterator<Item = Walked> + 'a {
    {
        {
            let root: Arc<str> = Arc::from(crate::fsutil::path_key(input).as_str());
            let base = if input.is_dir() {
                input.to_path_buf()
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
                            object: None,
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
                            object: None,
                        })
                    }
                })
        }
    }
}

/// Inspects one walked file: size and regular-file check.
fn inspect(seq: u64, w: Walked, rel_str: String) -> FileRef {
    let Walked {
        input,
        root,
        abs,
        error: walk_error,
        object,
        ..
    } = w;
    let mut problem = walk_error;
    let (mut bytes, mut modified) = (None, None);
    if let Some(o) = &object {
        bytes = o.size;
        modified = o.modified;
    } else if problem.is_none() {
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
        object: object.map(Arc::new),
        fetched: None,
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
) -> Result<(StageStats, Skipped)> {
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
        let w = w?;
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
    Ok((stats, skipped))
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
        let w = w.ok()?;
        if !w.link && shard.is_none_or(|s| s.takes(&crate::fsutil::path_key(&w.rel))) {
            n += 1;
        }
    }
    Some(n)
}
