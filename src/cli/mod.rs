//! The `facebatch` command line: clap's view of the options ([`Cli`], one `*Args` struct per
//! subcommand, in that subcommand's file), their validation into the library's typed
//! settings, and how each command prints its result. Only this folder and `main.rs` know
//! clap; the library takes settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use facebatch::model::builtin::ModelRef;
use facebatch::onnx::SessionOptions;
use facebatch::progress::ProgressMode;
use facebatch::vision::faces::{FaceMode, FaceOptions};

pub mod choice;
pub mod classify;
pub mod ensemble;
pub mod eval;
pub mod job;
pub mod log;
pub mod report;
pub mod samples;
pub mod setup;
#[cfg(feature = "train")]
pub mod train;
pub mod visualize;

use classify::ClassifyArgs;
use ensemble::EnsembleArgs;
use eval::EvalArgs;
use job::RunArgs;
use report::ReportArgs;
use samples::SamplesArgs;
use setup::SetupArgs;
#[cfg(feature = "train")]
use train::TrainArgs;
use visualize::VisualizeArgs;

/// What `facebatch train` takes in a build without the `train` feature: anything, to answer
/// with how to get a build that trains instead of clap's "unrecognized subcommand".
#[cfg(not(feature = "train"))]
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _rest: Vec<std::ffi::OsString>,
}

/// Exit status: everything succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit status: finished, but some inputs had per-item errors.
pub const EXIT_PARTIAL: u8 = 1;
/// Exit status: fatal error (bad options, input, model or runtime); nothing useful done.
pub const EXIT_FATAL: u8 = 2;
/// Exit status: interrupted (SIGINT, SIGTERM, SIGHUP); the output holds the rows finished
/// so far.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status: another run is writing the same output; nothing was done, and trying again
/// later will work (EX_TEMPFAIL, as `flock -E 75` in the systemd unit).
pub const EXIT_BUSY: u8 = 75;

/// The most threads (or workers) per core a thread-count option accepts: past it, more
/// threads only add memory (each holds buffers and, with detection, a detector session).
pub const MAX_THREADS_PER_CORE: usize = 8;

/// Refuses a thread count of 0 or above [`MAX_THREADS_PER_CORE`] per core of this machine.
pub fn check_thread_count(flag: &str, n: usize) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let max = MAX_THREADS_PER_CORE * cores;
    anyhow::ensure!(n > 0, "{flag} must be at least 1");
    anyhow::ensure!(
        n <= max,
        "{flag} {n} is more than {MAX_THREADS_PER_CORE} per core ({max} on this machine, {cores} cores); more threads only use memory"
    );
    Ok(())
}

const AFTER_HELP: &str = "\
Examples:
  facebatch classify photos/ --out results.parquet     one row per face found
  facebatch report results.parquet --out review/       least confident faces first
  facebatch train faces/ review/corrections.csv --init models/mine/v1 --out models/mine/v2
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
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Print the result as one JSON object on stdout instead of text (classify, run, eval,
    /// train, report, setup, visualize).
    #[arg(long, global = true)]
    pub json: bool,
    /// ONNX Runtime library to load [default: the pinned 1.31.1 from the bundle or the
    /// cache, downloaded and verified on first use].
    #[arg(long, global = true, env = "FACEBATCH_ORT_LIB", value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// Log format on stderr (json: one object per line, the final summary included).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logging (-v info is the default; -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// No progress bar, and no progress records in the log.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Without a terminal (cron, Kubernetes, Slurm), log a progress record (done, rate,
    /// ETA) every this many seconds (0: after every item).
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub progress_interval: u64,
    /// Face detector ONNX file [default: the pinned RetinaFace from the bundle or the
    /// cache, downloaded and verified on first use].
    #[arg(long, global = true, env = "FACEBATCH_DETECTOR", value_name = "FILE")]
    pub detector: Option<PathBuf>,
}

/// The model every subcommand that classifies takes, with the same default.

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Model")]
pub struct ModelArg {
    /// The model: `builtin` (the facebatch-gender model built into this binary), a version
    /// folder (models/NAME/VERSION), its model.onnx, or a model name folder (its latest
    /// version).
    #[arg(long = "model", env = "FACEBATCH_MODEL", default_value = facebatch::model::builtin::KEYWORD)]
    pub model: ModelRef,
}

impl ModelArg {
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(self.model.resolve()?)
    }
}

/// How a labelled manifest names its columns (eval, ensemble).
#[derive(Args, Debug, Clone)]
pub struct ManifestColumns {
    /// Manifest column holding the label.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Manifest column holding the image path (relative to the manifest).
    #[arg(long, default_value = "path")]
    pub path_column: String,
}

impl ManifestColumns {
    /// The labelled images of `data`: a folder per class, or a CSV manifest.
    pub fn read(
        &self,
        data: &std::path::Path,
    ) -> facebatch::Result<Vec<facebatch::labelled::Sample>> {
        let source =
            facebatch::labelled::Source::from_path(data, &self.label_column, &self.path_column);
        facebatch::labelled::read_sources(&[source])
    }
}

/// How faces are found (classify, eval).

#[derive(Args, Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(next_help_heading = "Faces")]
pub struct FaceArgs {
    /// auto: detect and align every face, but use small images (long side <= 320 px) whole
    /// when no face is found; detect: detect only; whole: every image is one face crop.
    /// [default: auto for models trained on aligned faces, whole otherwise]
    #[arg(long, value_parser = choice::faces_parser())]
    pub faces: Option<FaceMode>,
    /// Minimum detection score, 0..1 [default: 0.6].
    #[arg(long)]
    pub det_threshold: Option<f32>,
    /// Photos are downscaled to this long side before detection [default: 960].
    #[arg(long)]
    pub det_size: Option<u32>,
    /// Ignore faces smaller than this many pixels (the box's shorter side) [default: 16].
    #[arg(long)]
    pub min_face_size: Option<f32>,
    /// At most this many faces per image, highest scores first [default: 64].
    #[arg(long)]
    pub max_faces: Option<usize>,
}

impl FaceArgs {
    pub fn options(&self, g: &GlobalArgs) -> FaceOptions {
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
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Combine exported networks into one model: fit the weights, a threshold that balances
    /// the labels' recalls and a temperature on one labelled split, score it on another.
    #[command(after_help = "\
Examples:
  facebatch ensemble --member v4=models/facebatch-gender/v4 --member dlib=models/dlib-gender/v1 \\
      --fit-on models/facebatch-gender/v4/splits/val.csv \\
      --test models/facebatch-gender/v4/splits/test.csv --group-by source --out models/mine/v5

Exit status: 0 written, 2 fatal (see facebatch --help).")]
    Ensemble(EnsembleArgs),
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
  facebatch report dataset/dt=2026-06-01/ --out review/ --limit 50000
  facebatch eval faces/ --predictions p.parquet && facebatch report p.parquet --out review/
  facebatch report --import ~/Downloads/corrections.csv --out review/
  facebatch train faces/ review/corrections.csv --init models/mine/v1 --out models/mine/v2

The page saves corrections.csv (crops by absolute path) where the browser saves downloads;
--import keeps them with the report as review/corrections.csv, and the page shows them again.
Report runs no model: --ort-lib, --detector, --no-progress and --progress-interval do
nothing here.

Exit status: 0 written, 2 fatal.")]
    Report(ReportArgs),
    /// Write the sample data built into the binary (face crops per class, group photos, a
    /// broken file, a labelled manifest and a job file), so the README's tour runs anywhere.
    #[command(after_help = "\
Example:
  facebatch samples --out samples && facebatch classify samples --out results.parquet

Exit status: 0 written, 2 fatal.")]
    Samples(SamplesArgs),
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
        /// Print this command's page (`classify`, `run`, ...) instead of `facebatch`'s; only
        /// without --out.
        #[arg(value_name = "COMMAND")]
        page: Option<String>,
        /// The folder to write every page into (created); without it one page goes to
        /// standard output, so `facebatch man | man -l -` reads it.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

pub const CLASSIFY_AFTER_HELP: &str = "\
Examples:
  facebatch classify photos/ --out results.parquet
  facebatch classify photos/ --out results.parquet --resume        complete an interrupted run
  facebatch classify /mnt/photos --out dataset/ --shard auto       one shard of a Kubernetes or Slurm array
  facebatch classify crops/ --out crops.parquet --faces whole      images that are already face crops

Read the output with DuckDB: SELECT label, count(*) FROM 'results.parquet' GROUP BY label
Exit status: 0 done, 1 more per-image errors than --max-error-rate, 2 fatal, 75 busy,
130 interrupted (see facebatch --help).";

pub fn session_options(g: &GlobalArgs) -> SessionOptions {
    SessionOptions {
        ort_lib: g.ort_lib.clone(),
        ..SessionOptions::default()
    }
}

pub fn progress_mode(g: &GlobalArgs) -> ProgressMode {
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

/// `--version` also names the build: whether it trains, whether it has CUDA, and the JPEG
/// decoder (a build without nasm silently decodes JPEGs without SIMD).
pub fn long_version() -> String {
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

/// The command line, with the long version.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command().long_version(long_version());
    // Global options reach every subcommand when the command is built; hide from `report
    // --help` those it accepts and ignores (it runs no model and shows no progress).
    cmd.build();
    cmd.mut_subcommand("report", |report| {
        report.mut_args(|a| {
            let ignored = ["ort_lib", "detector", "no_progress", "progress_interval"];
            if ignored.contains(&a.get_id().as_str()) {
                a.hide(true)
            } else {
                a
            }
        })
    })
}

/// Parses the process's arguments; exits with clap's message when they do not parse.
pub fn parse_cli() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the parsed command; the exit status on success.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    match &cli.command {
        Command::Classify(args) => classify::run(args, g),
        Command::Run(args) => job::run(args, g),
        Command::Train(args) => train_command(args, g),
        Command::Eval(args) => eval::run(args, g),
        Command::Ensemble(args) => ensemble::run(args, g),
        Command::Visualize(args) => visualize::run(args, g),
        Command::Report(args) => report::run(args, g),
        Command::Setup(args) => setup::run(args, g),
        Command::Samples(args) => samples::run(args, g),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut command(), "facebatch", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::Man { page, out } => setup::man(page.as_deref(), out.as_deref(), g),
    }
}

#[cfg(feature = "train")]
fn train_command(args: &TrainArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    train::run(args, g)
}

#[cfg(not(feature = "train"))]
fn train_command(_: &TrainArgs, _: &GlobalArgs) -> anyhow::Result<u8> {
    anyhow::bail!(
        "this facebatch was built without training (the `train` cargo feature): install \
         the full build with `cargo install --path . --locked` (or `--features train`)"
    )
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
}
