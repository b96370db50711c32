//! Typed errors for the facebatch library. The binary maps them to exit codes.

use std::path::PathBuf;

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can fail with, one variant per cause a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ONNX Runtime could not be loaded from {path}: {reason}. {fix}")]
    RuntimeLoad {
        path: PathBuf,
        reason: String,
        fix: &'static str,
    },
    #[error("could not provision ONNX Runtime {version}: {reason}. {fix}")]
    RuntimeProvision {
        version: &'static str,
        reason: String,
        fix: &'static str,
    },
    #[error("{0}")]
    RuntimeUnavailable(String),
    #[error("ONNX Runtime error while {context}: {message}")]
    Ort { context: String, message: String },
    #[error(
        "--device cuda is unavailable: {reason}. Run with --device cpu, or see docs/operations.md for the GPU runtime"
    )]
    CudaUnavailable { reason: String },
    #[error("{0}")]
    DetectorUnavailable(String),
    #[error(
        "the bundle {root} (FACEBATCH_BUNDLE) has no verified {what}: prepare it with \
         `facebatch setup --bundle {root}`, or unset FACEBATCH_BUNDLE to use the cache"
    )]
    BundleIncomplete { root: PathBuf, what: String },
    #[error("invalid model {path}: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    #[error("model card {path}: {reason}")]
    InvalidCard { path: PathBuf, reason: String },
    #[error("dataset: {0}")]
    Dataset(String),
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("training failed: {0}")]
    Training(String),
    #[error("ONNX export failed: {0}")]
    Export(String),
    #[error("could not decode image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("output: {0}")]
    Output(String),
    #[error(
        "{holder} is writing {out}; wait for it to finish, or stop it and run again with --resume"
    )]
    Busy { out: PathBuf, holder: String },
    #[error("plotting failed: {0}")]
    Plot(String),
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("CSV {path}: {reason}")]
    Csv { path: PathBuf, reason: String },
}

impl Error {
    /// Wraps an I/O error with what was being done, so the message names the file.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an ONNX Runtime error with what was being done.
    pub fn ort(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Ort {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

/// Extension trait that attaches a context message to I/O results.
pub trait IoContext<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
