//! Outputs on object stores: the local commit protocol ([`super::staging`]), run against a
//! local copy of the output and mirrored to the store step by step, in the same order.
//!
//! A store has no rename and no flock, but it has atomic single PUTs, create-only and
//! conditional PUTs, and multipart uploads that appear only when completed. For
//! `--out s3://B/DIR/OUT.parquet`:
//!
//! 1. **Lock**: the lease object `DIR/.OUT.parquet.lock`, created with `PutMode::Create` and
//!    renewed conditionally ([`crate::remote::lease`]). A second writer exits 75.
//! 2. **State**: the local copy (`CACHE/outputs/HASH/`) is made afresh from the store:
//!    `DIR/OUT.parquet.parts/*` and, if there is one, `DIR/OUT.parquet`. The store is the
//!    truth; any machine can resume.
//! 3. **Run**: the local protocol runs as on a disk. Each durable local step is mirrored
//!    before the next: `run.json` and each finished part are one PUT each (so any prefix of
//!    the store's state is a state the local protocol knows), the parts folder on the store
//!    is made equal to the local one once the earlier attempt has been read.
//! 4. **Commit**: the commit record is PUT create-only (an earlier attempt's stale record,
//!    whose merge never reached the store, is replaced by a conditional PUT on its version);
//!    the merged file is uploaded as one multipart upload, which becomes visible only when
//!    it completes and is aborted on failure. Its completion is the commit point: the file
//!    carries the merge id and the parts id, exactly as on a disk.
//! 5. **Clean-up**: the feature statistics are PUT, the parts deleted, the lock deleted.
//!
//! A `kill -9` at any point leaves the store in a state the next run (`--resume`) reads as
//! the local protocol reads a disk: nothing merged twice, nothing lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::mirror::Mirror;
use super::{ClassifySettings, Outcome, OutputMode, Summary};
use crate::error::{Error, Result};
use crate::remote::{self, ObjectUrl};

/// Runs classify: into the file or dataset folder `s.out`, or into `s.remote_out` on an
/// object store through a local copy. The one entry point of every front end.
pub fn run(s: &ClassifySettings, cancel: Arc<AtomicBool>) -> Result<Outcome> {
    match (s.mode, &s.remote_out) {
        (OutputMode::File, None) => super::pipeline::run(s, cancel, None).map(Outcome::Ran),
        (OutputMode::File, Some(url)) => run_remote(s, url, cancel).map(Outcome::Ran),
        (OutputMode::Dataset, None) => run_local_dataset(s, cancel),
        (OutputMode::Dataset, Some(url)) => run_remote_dataset(s, url, cancel),
    }
}

/// A dataset folder on a disk, created if needed; a run that fails (a missing input, a bad
/// model) leaves no empty folder behind.
fn run_local_dataset(s: &ClassifySettings, cancel: Arc<AtomicBool>) -> Result<Outcome> {
    let dir = &s.out;
    let existed = dir.is_dir();
    fs_err::create_dir_all(dir)?;
    let outcome = super::dataset::run(s, dir, cancel, None);
    if outcome.is_err() && !existed {
        let _ = std::fs::remove_dir(dir);
    }
    outcome
}

fn run_remote_dataset(
    s: &ClassifySettings,
    url: &ObjectUrl,
    cancel: Arc<AtomicBool>,
) -> Result<Outcome> {
    let shard = s.shard.unwrap_or(super::shard::Shard::ALL);
    let tag = shard.tag();
    let lost = Arc::new(AtomicBool::new(false));
    let part = url.with_key(format!("{}part-{tag}.parquet", url.key));
    let lease = remote::lease::Lease::acquire(
        &lock_url(&part),
        &part,
        s.lock_lease,
        lost.clone(),
        cancel.clone(),
    )?;
    // One local copy per shard: shards of one dataset may run on one machine at once.
    let dir = local_copy_dir(&part);
    let mirror = Mirror::new(dir.clone(), url.clone(), lost);
    let result = (|| {
        mirror.fetch_shard(url, &tag)?;
        let mut local = s.clone();
        local.remote_out = None;
        local.out = dir.clone();
        let at = |p: PathBuf| -> PathBuf {
            match mirror.url_of(&p) {
                Ok(u) => PathBuf::from(u.to_string()),
                Err(_) => p,
            }
        };
        Ok(
            match super::dataset::run(&local, &dir, cancel, Some(&mirror))? {
                Outcome::AlreadyComplete { marker, counts } => Outcome::AlreadyComplete {
                    marker: at(marker),
                    counts,
                },
                Outcome::Completed { marker, counts } => Outcome::Completed {
                    marker: at(marker),
                    counts,
                },
                Outcome::Ran(mut summary) => {
                    summary.out = at(summary.out);
                    Outcome::Ran(summary)
                }
            },
        )
    })();
    drop(mirror);
    if result.is_ok() {
        let _ = fs_err::remove_dir_all(&dir);
    }
    drop(lease);
    result
}

/// The local folder that holds a remote output's copy while a run writes it.
pub fn local_copy_dir(url: &ObjectUrl) -> PathBuf {
    let id = crate::fsutil::sha256_hex(url.to_string().as_bytes());
    crate::store::cache_dir().join("outputs").join(&id[..16])
}

fn run_remote(s: &ClassifySettings, url: &ObjectUrl, cancel: Arc<AtomicBool>) -> Result<Summary> {
    let name = url.file_name().to_string();
    let lost = Arc::new(AtomicBool::new(false));
    let lock = lock_url(url);
    // A lost lease stops intake as an interrupt would; the commit then refuses.
    let lease =
        remote::lease::Lease::acquire(&lock, url, s.lock_lease, lost.clone(), cancel.clone())?;
    let dir = local_copy_dir(url);
    let mirror = Mirror::new(dir.clone(), url.sibling(""), lost.clone());
    let result = (|| {
        mirror.fetch_state(url, &name)?;
        let mut local = s.clone();
        local.out = dir.join(&name);
        local.remote_out = None;
        let mut summary = super::pipeline::run(&local, cancel, Some(&mirror))?;
        summary.out = PathBuf::from(url.to_string());
        Ok(summary)
    })();
    drop(mirror);
    if result.is_ok() {
        let _ = fs_err::remove_dir_all(&dir);
    }
    drop(lease);
    result
}

/// The lock object of an output on a store.
pub fn lock_url(url: &ObjectUrl) -> ObjectUrl {
    url.sibling(&format!(".{}.lock", url.file_name()))
}

/// Refuses what object-store outputs do not do yet.
pub fn check_supported(url: &ObjectUrl, dataset: bool) -> Result<()> {
    if url.scheme == remote::Scheme::Http {
        return Err(Error::InvalidOption(format!(
            "--out {url}: HTTP URLs are read-only; write to s3://, gs:// or az://"
        )));
    }
    if dataset {
        return Ok(());
    }
    if !url
        .file_name()
        .rsplit('.')
        .next()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        return Err(Error::InvalidOption(format!(
            "--out {url}: classify writes Parquet: name the object .parquet"
        )));
    }
    Ok(())
}
