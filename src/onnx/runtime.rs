//! Locating, provisioning and loading ONNX Runtime.
//!
//! facebatch loads ONNX Runtime dynamically so that it builds anywhere. At run time the
//! library is found in this order:
//!
//! 1. an explicit path (`--ort-lib` or `FACEBATCH_ORT_LIB`; `ORT_DYLIB_PATH` is honoured too);
//! 2. the store ([`crate::store`]): a bundle (`FACEBATCH_BUNDLE`, only read), else the cache
//!    (`FACEBATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/facebatch`, else `~/.cache/facebatch`);
//! 3. a download of the pinned PyPI wheel `onnxruntime==1.31.1`, sha256-verified, whose
//!    `libonnxruntime.so` is extracted into the cache. `FACEBATCH_ORT_WHEEL` points at an
//!    already-downloaded copy of that wheel for offline machines.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::sha256_hex;
use crate::store::Store;
use crate::store::pinned::PinnedDownload;

/// The ONNX Runtime version facebatch is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// The pinned wheel: CPython-independent native library inside a manylinux_2_28 x86_64 wheel.
pub const ORT_WHEEL_URL: &str = "https://files.pythonhosted.org/packages/b4/1d/0f85ee31a3d93f2243a5cc29252becf858f53ac5cfa6c9c15d9ffe107eea/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl";
/// sha256 of the wheel above, as published by PyPI.
pub const ORT_WHEEL_SHA256: &str =
    "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f";
/// sha256 of `libonnxruntime.so.1.31.1` inside that wheel.
pub const ORT_LIB_SHA256: &str = "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3";
const LIB_NAME: &str = "libonnxruntime.so.1.31.1";
const WHEEL_MEMBERS: [&str; 2] = [
    "onnxruntime/capi/libonnxruntime.so.1.31.1",
    "onnxruntime/capi/libonnxruntime_providers_shared.so",
];
const FIX: &str = "Set FACEBATCH_ORT_LIB (or --ort-lib) to a libonnxruntime.so of version 1.31.x, \
or FACEBATCH_ORT_WHEEL to a downloaded onnxruntime-1.31.1 manylinux_2_28_x86_64 wheel";

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

/// The directory facebatch caches downloads in (see [`crate::store`]).
pub use crate::store::cache_dir;

fn explicit_lib(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    ["FACEBATCH_ORT_LIB", "ORT_DYLIB_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Returns the path of a usable ONNX Runtime library, downloading and verifying it if needed.
pub fn locate_library(flag: Option<&Path>) -> Result<PathBuf> {
    locate_library_in(flag, &Store::current())
}

/// [`locate_library`] with the store given: `facebatch setup --bundle` provisions a bundle.
pub fn locate_library_in(flag: Option<&Path>, store: &Store) -> Result<PathBuf> {
    if let Some(path) = explicit_lib(flag) {
        if !path.is_file() {
            return Err(Error::RuntimeLoad {
                path,
                reason: "no such file".into(),
                fix: FIX,
            });
        }
        // Read before the loader sees it: a damaged file can kill the process inside
        // dlopen with no message at all (the pinned library below is checked by sha256).
        #[cfg(target_os = "linux")]
        if let Err(reason) = super::elf::check_library(&path) {
            return Err(Error::RuntimeLoad {
                path,
                reason,
                fix: FIX,
            });
        }
        return Ok(path);
    }
    let dir = store.root.join(format!("onnxruntime-{ORT_VERSION}"));
    let lib = dir.join(LIB_NAME);
    if !store.may_fetch {
        // A bundle is only read: verified in place, never repaired or downloaded into.
        return match std::fs::read(&lib) {
            Ok(bytes) if sha256_hex(&bytes) == ORT_LIB_SHA256 => Ok(lib),
            _ => Err(store.incomplete(&format!("ONNX Runtime {ORT_VERSION}"))),
        };
    }
    if lib.is_file() && dir.join(".verified").is_file() {
        // Checked before every load (about 50 ms): a damaged library would kill the process
        // inside the loader with no message at all.
        match std::fs::read(&lib) {
            Ok(bytes) if sha256_hex(&bytes) == ORT_LIB_SHA256 => return Ok(lib),
            _ => {
                tracing::warn!(path = %lib.display(), "the cached ONNX Runtime library is damaged (sha256 mismatch): fetching it again");
                std::fs::remove_file(dir.join(".verified"))
                    .io_context(|| format!("removing {}", dir.join(".verified").display()))?;
            }
        }
    }
    provision(&dir)?;
    Ok(lib)
}

/// The pinned wheel that ONNX Runtime is fetched from.
pub const WHEEL: PinnedDownload = PinnedDownload {
    what: "ONNX Runtime wheel",
    url: ORT_WHEEL_URL,
    sha256: ORT_WHEEL_SHA256,
    local_copy_env: "FACEBATCH_ORT_WHEEL",
};

fn provision(dir: &Path) -> Result<()> {
    let members = WHEEL.members(&WHEEL_MEMBERS).map_err(provision_err)?;
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).io_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile_dir(parent)?;
    for (member, bytes) in WHEEL_MEMBERS.iter().zip(members) {
        let name = member.rsplit('/').next().unwrap_or(member);
        if name == LIB_NAME && sha256_hex(&bytes) != ORT_LIB_SHA256 {
            return Err(provision_err(format!("{name} sha256 mismatch")));
        }
        std::fs::write(staging.join(name), &bytes)
            .io_context(|| format!("writing {}", staging.join(name).display()))?;
    }
    std::fs::write(staging.join(".verified"), ORT_WHEEL_SHA256)
        .io_context(|| "writing verification marker".into())?;
    if dir.join(".verified").is_file() {
        // Another process provisioned it meanwhile (and may be loading it): keep theirs.
        let _ = std::fs::remove_dir_all(&staging);
        return Ok(());
    }
    if dir.exists() {
        // A leftover without the verification marker: never trusted, replaced.
        let _ = std::fs::remove_dir_all(dir);
    }
    match std::fs::rename(&staging, dir) {
        Ok(()) => {}
        // Another process provisioned it concurrently: theirs is as good as ours.
        Err(_) if dir.join(".verified").is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => return Err(Error::io(format!("installing into {}", dir.display()), e)),
    }
    tracing::info!(dir = %dir.display(), version = ORT_VERSION, "provisioned ONNX Runtime");
    Ok(())
}

fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    let path = parent.join(format!(".onnxruntime-staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).io_context(|| format!("creating {}", path.display()))?;
    Ok(path)
}

fn provision_err(reason: String) -> Error {
    Error::RuntimeProvision {
        version: ORT_VERSION,
        reason,
        fix: FIX,
    }
}

/// Loads ONNX Runtime once per process and returns the shared environment.
pub fn environment(flag: Option<&Path>) -> Result<&'static ort::environment::Environment> {
    let slot = ENVIRONMENT.get_or_init(|| {
        let path = locate_library(flag).map_err(|e| e.to_string())?;
        let builder = ort::init_from(&path).map_err(|e| {
            Error::RuntimeLoad {
                path: path.clone(),
                reason: e.to_string(),
                fix: FIX,
            }
            .to_string()
        })?;
        builder
            .with_name("facebatch")
            .build()
            .map_err(|e| Error::ort("creating the ONNX Runtime environment", e).to_string())
    });
    match slot {
        Ok(env) => Ok(env),
        Err(msg) => Err(Error::RuntimeUnavailable(msg.clone())),
    }
}
