//! The output's life cycle around the pipeline: the exclusive lock, the run identity kept
//! beside the durable parts, and the commit point that makes publishing idempotent.
//!
//! A run of `classify --out OUT` goes through these states, each recognisable on disk:
//!
//! 1. **running**: `OUT.parts/run.json` names the run; `OUT.parts/part-*.parquet` hold its
//!    finished rows. `OUT`, if present, is an earlier output: replaced by this run, or, when
//!    it carries this run's id, the rows of an earlier interrupted attempt of it.
//! 2. **merging**: `OUT.parts/commit.json` names a merge id, then `OUT` is written to a
//!    temporary name and renamed into place carrying that id in its metadata. The rename
//!    is the **commit point**: from then on `OUT` holds every part's rows.
//! 3. **cleaning up**: the feature statistics file is written from `OUT`'s metadata and
//!    `OUT.parts/` is removed. Both steps are idempotent.
//!
//! `--resume` reads the state first: a committed merge is finished (step 3 again) and never
//! merged twice; an unrelated earlier `OUT` is never taken for this run's rows.
//!
//! One process at a time: [`OutputLock`] holds an exclusive `flock` on `.OUT.lock` for the
//! whole run, so a second run into the same output fails at once and names the holder.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::output::{self, meta};
use crate::error::{Error, IoContext, Result};

/// An exclusive lock on one output, held until dropped. The lock file is removed when the
/// lock is released; a run that finds the file replaced after locking it locks again, so
/// two runs never both believe they hold it.
#[derive(Debug)]
pub struct OutputLock {
    file: File,
    path: PathBuf,
}

/// The lock file of `out`: hidden, beside it.
pub fn lock_path(out: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(out.file_name().unwrap_or_default());
    name.push(".lock");
    out.with_file_name(name)
}

impl OutputLock {
    /// Takes the lock on `out` or fails at once with [`Error::Busy`] naming the holder.
    pub fn acquire(out: &Path) -> Result<OutputLock> {
        let path = lock_path(out);
        for _ in 0..16 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .io_context(|| format!("creating the lock file {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    return Err(Error::Busy {
                        out: out.to_path_buf(),
                        holder: match pid.trim() {
                            "" => "another facebatch run".to_string(),
                            p => format!("another facebatch run (pid {p})"),
                        },
                    });
                }
                Err(std::fs::TryLockError::Error(e)) if lock_unsupported(&e) => {
                    // Some FUSE and network filesystems have no flock: go on, unprotected.
                    tracing::warn!(lock = %path.display(), error = %e, "this filesystem cannot lock the output; make sure no other run writes it");
                    return Ok(OutputLock { file, path });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
            // The holder before us may have removed the file between our open and lock:
            // then we hold a lock on a name nobody else sees. Lock the current file instead.
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| write!(file, "{}", std::process::id()))
                .and_then(|_| file.flush())
                .io_context(|| format!("writing {}", path.display()))?;
            return Ok(OutputLock { file, path });
        }
        Err(Error::Output(format!(
            "could not lock {}: the lock file keeps being replaced",
            path.display()
        )))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Remove the name while still holding the lock; the lock goes with the handle.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

fn lock_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOLCK) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
        )
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

/// Run identity stored beside the parts, checked on `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub run_id: String,
    pub started_at: String,
    pub model_sha256: String,
    pub labels: Vec<String>,
    pub feature_dim: Option<usize>,
    /// The members whose probabilities the rows carry (`--member-probs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The face settings (mode, detector, thresholds): a resumed run must use the same.
    #[serde(default)]
    pub faces: String,
    /// The inputs, normalised: a resumed run must read the same.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The id of this parts folder: every part records it, and so does the `OUT` they are
    /// merged into (`facebatch.merged_parts`), so parts beside an `OUT` that already holds
    /// them are recognised whatever else was lost. Not a setting: never compared.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parts_id: String,
}

/// The commit record written before the merge: the merged output carries the same id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Commit {
    pub merge_id: String,
}

/// `OUT.parts/run.json`.
pub fn run_json(parts_dir: &Path) -> PathBuf {
    parts_dir.join("run.json")
}

/// `OUT.parts/commit.json`.
pub fn commit_json(parts_dir: &Path) -> PathBuf {
    parts_dir.join("commit.json")
}

/// Reads a small JSON file, `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Json {
            context: format!("reading {}", path.display()),
            source: e,
        })
}

/// Writes a small JSON file atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        context: format!("encoding {}", path.display()),
        source: e,
    })?;
    crate::fsutil::write_atomic(path, text.as_bytes())
}

/// What is on disk for an output before a run starts.
#[derive(Debug)]
pub struct Found {
    /// The parts folder's run, when one is unfinished.
    pub run: Option<RunInfo>,
    /// `OUT`'s metadata, when it exists and is a facebatch output.
    pub out_meta: Option<std::collections::BTreeMap<String, String>>,
    /// The merge of the parts was committed (`OUT` holds their rows) but not cleaned up.
    pub committed: bool,
}

/// Reads the state of `out` and its parts folder.
pub fn inspect(out: &Path) -> Result<Found> {
    let parts_dir = output::parts_dir(out);
    let run = read_json::<RunInfo>(&run_json(&parts_dir))?;
    let out_meta = if out.is_file() {
        Some(output::read_metadata(out)?)
    } else {
        None
    };
    // Committed when the commit record names OUT's merge, or when OUT says it merged this
    // parts folder: either survives the loss of the other (the clean-up removes the commit
    // record last, but a crash or a person may remove files in any order).
    let by_record = match (read_json::<Commit>(&commit_json(&parts_dir))?, &out_meta) {
        (Some(c), Some(md)) => md.get(meta::MERGE_ID) == Some(&c.merge_id),
        _ => false,
    };
    let by_out = match (&run, &out_meta) {
        (Some(r), Some(md)) => holds_parts(md, &r.parts_id),
        _ => false,
    };
    let committed = by_record || by_out;
    Ok(Found {
        run,
        out_meta,
        committed,
    })
}

/// True when `OUT`'s metadata says it merged the parts folder `parts_id`.
pub fn holds_parts(out_meta: &std::collections::BTreeMap<String, String>, parts_id: &str) -> bool {
    !parts_id.is_empty() && out_meta.get(meta::MERGED_PARTS).map(String::as_str) == Some(parts_id)
}

/// Step 3, idempotent: writes the feature statistics that `out` records (its
/// `facebatch.feature_stats`, if any) and removes the parts folder in an order that never
/// loses the commit: the parts and anything else first, then `run.json`, then the commit
/// record, then the empty folder. A crash at any point leaves the commit record (or, after
/// it, nothing that can be taken for rows) for the next run to finish from.
pub fn clean_up(out: &Path, feature_stats: Option<&str>) -> Result<()> {
    crate::failpoint::hit("cleanup-stats")?;
    if let Some(stats) = feature_stats {
        crate::fsutil::write_atomic(&output::stats_path(out), stats.as_bytes())?;
    }
    crate::failpoint::hit("cleanup-parts")?;
    let parts_dir = output::parts_dir(out);
    let (record, run) = (commit_json(&parts_dir), run_json(&parts_dir));
    let entries = match std::fs::read_dir(&parts_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", parts_dir.display()), e)),
    };
    let mut rest: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| *p != record && *p != run)
        .collect();
    rest.sort();
    for path in rest {
        crate::failpoint::hit("cleanup-part")?;
        remove_any(&path)?;
    }
    crate::failpoint::hit("cleanup-run")?;
    remove_any(&run)?;
    crate::failpoint::hit("cleanup-commit")?;
    remove_any(&record)?;
    crate::failpoint::hit("cleanup-dir")?;
    match fs_err::remove_dir(&parts_dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes a file or a folder; one that is already gone is fine.
fn remove_any(path: &Path) -> Result<()> {
    let gone = if path.is_dir() {
        fs_err::remove_dir_all(path)
    } else {
        fs_err::remove_file(path)
    };
    match gone {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_output_is_refused_and_names_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o.parquet");
        let first = OutputLock::acquire(&out).unwrap();
        let err = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(!lock_path(&out).exists(), "the lock file is removed");
        let _again = OutputLock::acquire(&out).unwrap();
    }
}
