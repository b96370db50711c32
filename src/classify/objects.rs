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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

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
    let mirror = Mirror {
        local: dir.clone(),
        remote: url.clone(),
        lost,
    };
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
    let mirror = Mirror {
        local: dir.clone(),
        remote: url.sibling(""),
        lost: lost.clone(),
    };
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

/// Mirrors the local copy's durable steps to the store.
#[derive(Clone)]
pub struct Mirror {
    local: PathBuf,
    /// The output's folder on the store (a prefix).
    remote: ObjectUrl,
    lost: Arc<AtomicBool>,
}

impl Mirror {
    pub fn url_of(&self, local: &Path) -> Result<ObjectUrl> {
        let rel = local.strip_prefix(&self.local).map_err(|_| {
            Error::Internal(format!(
                "{} is not in the output's local copy",
                local.display()
            ))
        })?;
        let rel = rel
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        Ok(self.remote.with_key(format!("{}{rel}", self.remote.key)))
    }

    /// The local copy made equal to what the store holds of this output.
    fn fetch_state(&self, url: &ObjectUrl, name: &str) -> Result<()> {
        if self.local.exists() {
            fs_err::remove_dir_all(&self.local)?;
        }
        fs_err::create_dir_all(&self.local)?;
        let parts = url.sibling(&format!("{name}.parts/"));
        let mut n = 0;
        for meta in remote::list(&parts)? {
            let meta = meta?;
            let object = url.with_key(meta.location.to_string());
            let rel = meta
                .location
                .as_ref()
                .strip_prefix(url.sibling("").key.as_str())
                .unwrap_or(meta.location.as_ref())
                .to_string();
            remote::download(&object, &self.local.join(rel))?;
            n += 1;
        }
        let out = remote::download(url, &self.local.join(name))?;
        tracing::info!(output = %url, parts = n, earlier_output = out, "read the output's state from the store");
        Ok(())
    }

    /// The local copy of a dataset prefix for shard `tag`: this shard's files (marker, part,
    /// features, staging), and the other shards' part and marker names as empty files, for
    /// the shard-count check only (nothing else reads them).
    fn fetch_shard(&self, url: &ObjectUrl, tag: &str) -> Result<()> {
        if self.local.exists() {
            fs_err::remove_dir_all(&self.local)?;
        }
        fs_err::create_dir_all(&self.local)?;
        let ours = [
            format!("part-{tag}.parquet"),
            format!("_SUCCESS-{tag}.json"),
            format!("_features-{tag}.json"),
        ];
        let staged = format!("_staging/part-{tag}.parquet");
        let mut n = 0;
        for meta in remote::list(url)? {
            let key = meta?.location.to_string();
            let rel = key
                .strip_prefix(url.key.as_str())
                .unwrap_or(&key)
                .to_string();
            let local = self.local.join(&rel);
            if ours.contains(&rel) || rel.starts_with(&staged) {
                remote::download(&url.with_key(key), &local)?;
                n += 1;
            } else if !rel.contains('/')
                && (rel.starts_with("part-") || rel.starts_with("_SUCCESS-"))
            {
                fs_err::write(&local, b"")?;
            }
        }
        tracing::info!(dataset = %url, shard = tag, files = n, "read the shard's state from the store");
        Ok(())
    }

    /// One PUT of a finished local file (`run.json`, a part): atomic on the store.
    pub fn put(&self, local: &Path) -> Result<()> {
        let bytes = fs_err::read(local)?;
        remote::put(&self.url_of(local)?, Bytes::from(bytes), false)?;
        Ok(())
    }

    /// The commit record, create-only. A record already there is an earlier attempt's
    /// whose merge never reached the store (the local protocol read the state and decided
    /// to merge again); it is replaced conditionally on the version read.
    pub fn put_commit(&self, local: &Path) -> Result<()> {
        let url = self.url_of(local)?;
        let bytes = Bytes::from(fs_err::read(local)?);
        if !remote::put(&url, bytes.clone(), true)? {
            tracing::debug!(record = %url, "replacing an earlier attempt's commit record");
            remote::put(&url, bytes, false)?;
        }
        Ok(())
    }

    /// The merged output: one multipart upload, visible only once complete. Refused when
    /// this run no longer holds the lock.
    pub fn publish(&self, local: &Path) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Busy {
                out: self.url_of(local)?.to_string().into(),
                holder: "another facebatch run (it took over this run's lock)".into(),
            });
        }
        crate::failpoint::hit("upload")?;
        let url = self.url_of(local)?;
        let bytes = remote::upload(local, &url)?;
        tracing::info!(output = %url, bytes, "published");
        Ok(())
    }

    /// The store's parts folder made equal to the local one: objects the local protocol
    /// removed are deleted, local files missing on the store are put.
    pub fn sync_folder(&self, local_dir: &Path) -> Result<()> {
        let url = self.url_of(local_dir)?;
        let prefix = ObjectUrl::with_key(&url, format!("{}/", url.key.trim_end_matches('/')));
        let mut there = std::collections::HashSet::new();
        for meta in remote::list(&prefix)? {
            let meta = meta?;
            let key = meta.location.to_string();
            let name = key.rsplit('/').next().unwrap_or_default().to_string();
            if local_dir.join(&name).is_file() {
                there.insert(name);
            } else {
                remote::delete(&url.with_key(key))?;
            }
        }
        if let Ok(entries) = std::fs::read_dir(local_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_file() && !name.starts_with('.') && !there.contains(&name) {
                    self.put(&e.path())?;
                }
            }
        }
        Ok(())
    }

    /// A local file that exists is put; one that does not is deleted on the store.
    pub fn put_or_delete(&self, local: &Path) -> Result<()> {
        if local.is_file() {
            self.put(local)
        } else {
            remote::delete(&self.url_of(local)?)
        }
    }
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
