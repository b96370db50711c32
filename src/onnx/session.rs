//! ONNX Runtime sessions: the options every model is run with (threads, CPU or CUDA), and
//! the one function that builds a session from ONNX bytes, for the classifier and the face
//! detector alike.

use std::path::{Path, PathBuf};

use ort::session::Session;

use crate::error::{Error, Result};

/// Where inference runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecDevice {
    #[default]
    Cpu,
    Cuda,
}

/// How to build an ONNX Runtime session.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Explicit ONNX Runtime library (else the cache / download).
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads; 0 lets ONNX Runtime decide.
    pub intra_threads: usize,
    pub device: ExecDevice,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ort_lib: None,
            intra_threads: 1,
            device: ExecDevice::Cpu,
        }
    }
}

/// Builds a session from ONNX bytes.
pub fn build_session(bytes: &[u8], opts: &SessionOptions, what: &Path) -> Result<Session> {
    let env = super::runtime::environment(opts.ort_lib.as_deref())?;
    let ctx = |step: &str| format!("{step} for {}", what.display());
    let mut builder =
        Session::builder(env).map_err(|e| Error::ort(ctx("creating a session"), e))?;
    if opts.intra_threads > 0 {
        builder = builder
            .with_intra_threads(opts.intra_threads)
            .map_err(|e| Error::ort(ctx("setting threads"), e))?;
    }
    builder = builder
        .with_intra_op_spinning(false)
        .map_err(|e| Error::ort(ctx("disabling spinning"), e))?;
    if opts.device == ExecDevice::Cuda {
        builder = with_cuda(builder, what)?;
    }
    builder
        .commit_from_memory(bytes)
        .map_err(|e| Error::InvalidModel {
            path: what.to_path_buf(),
            reason: format!("ONNX Runtime rejected it: {e}"),
        })
}

/// Registers the CUDA execution provider strictly: if it cannot be registered the session
/// fails, rather than silently running on the CPU.
#[cfg(feature = "cuda")]
fn with_cuda(
    builder: ort::session::builder::SessionBuilder,
    what: &Path,
) -> Result<ort::session::builder::SessionBuilder> {
    let ep = ort::ep::CUDA::default().build().error_on_failure();
    builder
        .with_execution_providers([ep])
        .map_err(|e| Error::CudaUnavailable {
            reason: format!("{} (model {})", e.to_string().trim_end(), what.display()),
        })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(
    _: ort::session::builder::SessionBuilder,
    _: &Path,
) -> Result<ort::session::builder::SessionBuilder> {
    Err(Error::CudaUnavailable {
        reason: "this facebatch was built without the `cuda` feature (cargo build --release --features cuda)".into(),
    })
}
