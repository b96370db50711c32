//! The store side of an output on an object store: each durable step of the local copy
//! is put on the store in the same order (docs/reliability.md, "On an object store").
//! `pipeline.rs`, `dataset.rs` and the part writer call it at those steps; `objects.rs`
//! makes one per run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::remote::{self, ObjectUrl};

/// Mirrors the local copy's durable steps to the store.
#[derive(Clone)]
pub struct Mirror {
    /// The local copy's folder.
    local: PathBuf,
    /// The output's folder on the store (a prefix).
    remote: ObjectUrl,
    lost: Arc<AtomicBool>,
}

impl Mirror {
    /// Mirrors the files under `local` to the prefix `remote`; refuses to publish once
    /// `lost` (the lease) is set.
    pub fn new(local: PathBuf, remote: ObjectUrl, lost: Arc<AtomicBool>) -> Mirror {
        Mirror {
            local,
            remote,
            lost,
        }
    }

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
    pub fn fetch_state(&self, url: &ObjectUrl, name: &str) -> Result<()> {
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
    pub fn fetch_shard(&self, url: &ObjectUrl, tag: &str) -> Result<()> {
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
        let prefix = url.with_key(format!("{}/", url.key.trim_end_matches('/')));
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
