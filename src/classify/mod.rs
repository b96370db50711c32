//! `facebatch classify`: a streaming pipeline from photo folders to one Parquet row per image.
//!
//! ```text
//! walk ──▶ decode ──▶ locate ──▶ tensorize ──▶ batch ──▶ infer ──▶ sink
//! (walkdir) (rayon)    (rayon,    (rayon)                (ORT)     (arrow/parquet parts)
//!                       ORT, align)
//! ```
//!
//! Each stage is a module of [`stages`] that knows only its input and output channels; [`pipeline`]
//! wires them together with bounded channels, so memory stays flat however many images
//! there are. With face detection each face becomes a row; a photo without a face becomes
//! one `no_face` row; per-image problems become one row with `status = "error"`; the run
//! goes on.

pub mod budget;
pub mod dataset;
pub mod mirror;
pub mod objects;
pub mod output;
pub mod pipeline;
pub mod preflight;
pub mod resume;
pub mod seen;
pub mod shard;
pub mod stages;
pub mod staging;
pub mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;

use crate::error::{ImageErrorKind, ImageFailure};
use crate::onnx::SessionOptions;
use crate::vision::decode::DecodeLimits;
use crate::vision::detect::Face;
use crate::vision::faces::{Crop, CropKind, FaceOptions};

pub use dataset::Outcome;
pub use objects::run;

/// What `out` is: one Parquet file, or a dataset folder this run adds its shard to. Decided
/// once, where the command line or job file is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    File,
    Dataset,
}

/// One input of a run, typed once where the command line or job file is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A local folder (walked recursively) or image file.
    Path(PathBuf),
    /// An object-store prefix (`s3://bucket/photos/`, listed) or one object or URL.
    Object(crate::remote::ObjectUrl),
    /// A local `.txt` or `.csv` file listing images: URLs, or paths relative to the file.
    Manifest(PathBuf),
}

impl Input {
    /// A URL becomes an object, a `.txt` or `.csv` file a manifest, anything else a path.
    pub fn parse(text: &std::ffi::OsStr) -> crate::Result<Input> {
        if let Some(url) = text.to_str().and_then(crate::remote::ObjectUrl::parse) {
            return url.map(Input::Object);
        }
        let path = PathBuf::from(text);
        let manifest = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .is_some_and(|e| e == "txt" || e == "csv");
        Ok(if manifest && !path.is_dir() {
            Input::Manifest(path)
        } else {
            Input::Path(path)
        })
    }

    /// The input as its rows' `root` records it: a normalised path, or the URL without
    /// credentials or query.
    pub fn key(&self) -> String {
        match self {
            Input::Path(p) | Input::Manifest(p) => crate::fsutil::without_cur_dirs(p)
                .to_string_lossy()
                .into_owned(),
            Input::Object(u) => u.to_string(),
        }
    }

    /// The local file or folder, if the input is one.
    pub fn local(&self) -> Option<&std::path::Path> {
        match self {
            Input::Path(p) | Input::Manifest(p) => Some(p),
            Input::Object(_) => None,
        }
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Path(p) | Input::Manifest(p) => write!(f, "{}", p.display()),
            Input::Object(u) => write!(f, "{u}"),
        }
    }
}

/// One object an input named or listed: where it is and what the listing said of it.
#[derive(Clone, Debug)]
pub struct ObjectRef {
    pub url: crate::remote::ObjectUrl,
    /// The size the listing gave (a manifest's URLs are not asked before they are read).
    pub size: Option<u64>,
    /// Last modified, microseconds since the Unix epoch, as the listing gave it.
    pub modified: Option<i64>,
}

/// Validated settings for one classify run.
#[derive(Clone, Debug)]
pub struct ClassifySettings {
    /// Folders (walked recursively), single image files, object-store prefixes or URLs,
    /// manifests.
    pub inputs: Vec<Input>,
    /// The Parquet file to write. With `remote_out`, the local copy of the output that the
    /// run writes and mirrors to the store ([`objects`]).
    pub out: PathBuf,
    /// A file, or a dataset folder.
    pub mode: OutputMode,
    /// The output on an object store, when it is one.
    pub remote_out: Option<crate::remote::ObjectUrl>,
    /// Objects read at once from object stores and HTTP (`--read-concurrency`).
    pub read_concurrency: usize,
    /// How long an object-store output's lock lasts without renewal (`--lock-lease`).
    pub lock_lease: Duration,
    /// Model directory or its model.onnx.
    pub model: PathBuf,
    /// Which copy of the network runs (`--precision`).
    pub precision: crate::model::card::Precision,
    pub batch_size: usize,
    pub session: SessionOptions,
    /// Inference workers, each with its own ONNX Runtime session.
    pub infer_workers: usize,
    /// Only this shard of the inputs (`--shard`).
    pub shard: Option<crate::classify::shard::Shard>,
    /// Incremental job runs (`facebatch run`): what earlier successful runs of this shard
    /// classified. Those files are skipped while unchanged, and the run writes the shard's
    /// new fingerprint index ([`seen`]). `None` outside jobs.
    pub seen: Option<Arc<seen::Seen>>,
    /// Add each image's pooled feature vector and write run-level feature statistics.
    pub features: bool,
    /// Add each ensemble member's calibrated probabilities (`member_<name>_p_<label>`).
    pub member_probs: bool,
    /// Continue an interrupted or crashed run into the same output.
    pub resume: bool,
    pub limits: DecodeLimits,
    /// Bytes that decoded images in flight may hold at once (`--decode-memory`).
    pub decode_memory: u64,
    /// Rayon threads for decoding and preprocessing.
    pub threads: usize,
    /// Rows per durable part file (how much work a crash can lose at most).
    pub checkpoint_rows: usize,
    pub follow_symlinks: bool,
    pub progress: crate::progress::ProgressMode,
    /// How faces are found (`--faces`, detection options).
    pub faces: FaceOptions,
    /// Write every classified crop (exactly the model's input) under this folder.
    pub save_crops: Option<PathBuf>,
    /// Decode every pixel even where a JPEG could be decoded at a reduced DCT scale
    /// (`--full-decode`).
    pub full_decode: bool,
}

/// One file found by the source stage.
#[derive(Clone, Debug)]
pub struct FileRef {
    /// Position in the walk: rows come out in this order.
    pub seq: u64,
    /// The input root as given on the command line (normalised).
    pub root: Arc<str>,
    /// Which input (its position on the command line, from 0).
    pub input: usize,
    /// Path relative to the root, escaped losslessly ([`crate::fsutil::path_key`]).
    pub rel: String,
    pub abs: PathBuf,
    /// File size, when it could be read.
    pub bytes: Option<u64>,
    /// Last modification time, microseconds since the Unix epoch, when it could be read.
    pub modified: Option<i64>,
    /// A problem found before decoding (broken symlink, not a regular file).
    pub problem: Option<ImageFailure>,
    /// The object to read, for an input on an object store or HTTP.
    pub object: Option<Arc<ObjectRef>>,
    /// The object's bytes, once the fetch stage read them (or why it could not).
    pub fetched: Option<Result<bytes::Bytes, ImageFailure>>,
}

/// A decoded image, or why not.
pub enum Decoded {
    Image {
        file: FileRef,
        image: RgbImage,
        /// The full-resolution (oriented) size; `image` may be a DCT-scaled decode.
        original: (u32, u32),
        /// The image's share of the decode memory budget, returned when it is dropped.
        permit: Option<budget::Permit>,
    },
    Failed {
        file: FileRef,
        error: ImageFailure,
    },
}

/// The crops found in an image (none: no face), or why not.
pub enum Located {
    Crops {
        file: FileRef,
        width: u32,
        height: u32,
        crops: Vec<Crop>,
    },
    Failed {
        file: FileRef,
        error: ImageFailure,
    },
}

/// Which face of its image a row describes.
#[derive(Clone, Debug)]
pub struct FaceMeta {
    pub index: u32,
    pub count: u32,
    pub kind: CropKind,
    pub face: Option<Face>,
}

/// A model-ready tensor (one per face), an image without a face, or why not.
pub enum Prepared {
    Tensor {
        file: FileRef,
        width: u32,
        height: u32,
        face: FaceMeta,
        data: Vec<f32>,
    },
    NoFace {
        file: FileRef,
        width: u32,
        height: u32,
    },
    Failed {
        file: FileRef,
        width: Option<u32>,
        height: Option<u32>,
        error: ImageFailure,
    },
}

/// Row status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    NoFace,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NoFace => "no_face",
            Status::Error => "error",
        }
    }
}

/// One output row.
#[derive(Clone, Debug)]
pub struct Row {
    pub root: Arc<str>,
    pub path: String,
    pub status: Status,
    /// The face this row describes (absent on `no_face` and `error` rows).
    pub face: Option<FaceMeta>,
    /// True on the last row of its file: part files end only at file boundaries, so
    /// `--resume` never sees half a photo.
    pub last_of_file: bool,
    pub error: Option<String>,
    /// What kind of failure `error` is (`error_kind` in the output).
    pub error_kind: Option<ImageErrorKind>,
    pub label: Option<String>,
    pub confidence: Option<f32>,
    /// Probabilities in label order (empty on error).
    pub probs: Vec<f32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: Option<u64>,
    pub modified: Option<i64>,
    pub features: Option<Vec<f32>>,
    /// Each member's calibrated probabilities, with `--member-probs` (empty otherwise).
    pub member_probs: Vec<Vec<f32>>,
}

/// What a stage did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageStats {
    pub name: &'static str,
    pub items: u64,
    /// Time spent working, not waiting on its channels.
    #[serde(serialize_with = "secs")]
    pub busy: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// How many failing files a summary names.
pub const FAILED_SHOWN: usize = 5;

/// A file that became an error row: where, and why.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FailedFile {
    /// The input and the path below it, as given.
    pub path: String,
    pub error: String,
}

/// The result of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    pub out: PathBuf,
    /// The first few files of this invocation that failed (`errors` counts them all).
    pub failed: Vec<FailedFile>,
    /// Rows written by this invocation.
    pub rows: u64,
    /// Files read by this invocation (a photo gives one row per face).
    pub files: u64,
    pub ok: u64,
    pub errors: u64,
    /// Error rows of this invocation whose cause is the model (inference failed), not the
    /// image: a run in which every row is one did not classify anything.
    #[serde(skip)]
    pub model_errors: u64,
    /// Rows for images in which no face was found.
    pub no_face: u64,
    /// Files skipped because an earlier run already wrote them (`--resume`).
    pub already_done: u64,
    /// What the whole output holds, earlier attempts' rows included: the exit status
    /// reflects these.
    pub output: output::StatusCounts,
    /// Files skipped because an earlier successful job run classified them and they have
    /// not changed since (incremental runs, `facebatch run`).
    pub unchanged: u64,
    /// Symbolic links met while walking and not followed (no `--follow-symlinks`).
    pub links_skipped: u64,
    pub interrupted: bool,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    pub images_per_second: f64,
    pub stages: Vec<StageStats>,
}
