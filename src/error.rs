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
    #[error("ONNX Runtime error while {context}: {source}")]
    Ort {
        context: String,
        #[source]
        source: ort::Error,
    },
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
    #[error("job file {path}: {reason}")]
    JobFile { path: PathBuf, reason: String },
    /// What is on disk belongs to another run: an unfinished run without `--resume`, a
    /// `--resume` or a finished shard with other settings, another shard count.
    #[error("{0}")]
    OtherRun(String),
    /// A caller broke a contract of the library (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(String),
    #[error("cannot start {what}: {source}")]
    Threads {
        what: String,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    #[error("a pipeline stage failed: {0}")]
    Stage(#[source] tokio::task::JoinError),
    #[error("training failed: {0}")]
    Training(String),
    #[error("ONNX export failed: {0}")]
    Export(String),
    #[error("could not decode image {path}: {reason}")]
    Image {
        path: PathBuf,
        kind: ImageErrorKind,
        reason: String,
    },
    /// A file-system call through `fs_err`, whose message names the operation and the path.
    #[error(transparent)]
    Fs(#[from] std::io::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("output: {0}")]
    Output(String),
    /// An object store refused or could not be reached as a whole: no credentials, no such
    /// bucket, an endpoint that does not answer, a listing that failed (exit 2). A single
    /// object's failure is an error row instead.
    #[error("{url}: {reason}")]
    Store { url: String, reason: String },
    /// A report's input lacks a column the report reads, or holds one of a type it cannot
    /// read: `problems` names each such column and what it must hold.
    #[error(
        "{} cannot be reported: {problems}. The columns `facebatch report` reads: docs/output-schema.md",
        .path.display()
    )]
    ReportColumns { path: PathBuf, problems: String },
    #[error("{context}: {source}")]
    Parquet {
        context: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error(
        "{holder} is writing {out}; wait for it to finish, or stop it and run again with --resume"
    )]
    Busy { out: PathBuf, holder: String },
    #[error("plotting failed: {0}")]
    Plot(String),
    /// `visualize --replot` was pointed at a folder without a training history or a test
    /// report.
    #[error(
        "{} holds nothing to redraw: no train_log.csv, epochs.csv or test_report.json (a model's reports folder holds them)",
        .dir.display()
    )]
    NothingToReplot { dir: PathBuf },
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
    /// Wraps an I/O error with what was being done, so the message names the file. Plain
    /// file-system calls use `fs_err` instead (its errors name the path themselves); this is
    /// for I/O whose context needs more words (locking an output, installing the runtime).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an ONNX Runtime error with what was being done. (A builder's error, which
    /// carries the builder for recovery, becomes the plain error.)
    pub fn ort(context: impl Into<String>, err: impl Into<ort::Error>) -> Self {
        Error::Ort {
            context: context.into(),
            source: err.into(),
        }
    }

    /// Wraps a Parquet error with what was being done (and to which file).
    pub fn parquet(context: impl Into<String>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            context: context.into(),
            source,
        }
    }

    /// Wraps an Arrow error with what was being done.
    pub fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
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

/// Why one image could not be read: the `error_kind` column of classify's output
/// (docs/output-schema.md). The message beside it says more; the kind is what to group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageErrorKind {
    /// The file could not be opened or read (permissions, I/O error, vanished).
    Io,
    /// Not a regular file, or a symbolic link that leads nowhere.
    NotAFile,
    /// Over `--max-file-bytes`, or over the pixel limit (decompression bomb guard).
    TooLarge,
    /// An empty file.
    Empty,
    /// A JPEG cut short (no end-of-image marker).
    Truncated,
    /// Not an image format facebatch reads.
    UnknownFormat,
    /// A known format whose data the decoder rejected.
    Decode,
    /// Face detection failed on the decoded image.
    Detection,
    /// `--save-crops` could not write the face crops.
    SaveCrops,
    /// The model failed on the batch that held this face.
    Inference,
}

impl ImageErrorKind {
    /// The value in the `error_kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageErrorKind::Io => "io",
            ImageErrorKind::NotAFile => "not_a_file",
            ImageErrorKind::TooLarge => "too_large",
            ImageErrorKind::Empty => "empty",
            ImageErrorKind::Truncated => "truncated",
            ImageErrorKind::UnknownFormat => "unknown_format",
            ImageErrorKind::Decode => "decode",
            ImageErrorKind::Detection => "detection",
            ImageErrorKind::SaveCrops => "save_crops",
            ImageErrorKind::Inference => "inference",
        }
    }

    /// Every kind, in the order of the docs.
    pub const ALL: [ImageErrorKind; 10] = [
        ImageErrorKind::Io,
        ImageErrorKind::NotAFile,
        ImageErrorKind::TooLarge,
        ImageErrorKind::Empty,
        ImageErrorKind::Truncated,
        ImageErrorKind::UnknownFormat,
        ImageErrorKind::Decode,
        ImageErrorKind::Detection,
        ImageErrorKind::SaveCrops,
        ImageErrorKind::Inference,
    ];
}

/// One image's failure: its kind and the message, as a per-image error row carries them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFailure {
    pub kind: ImageErrorKind,
    pub message: String,
}

impl ImageFailure {
    pub fn new(kind: ImageErrorKind, message: impl Into<String>) -> Self {
        ImageFailure {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ImageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
