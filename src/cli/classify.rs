//! `facebatch classify`: its options, their validation into [`ClassifySettings`], the run
//! (into a file or a dataset folder, stopped gracefully by signals) and its summary.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use facebatch::classify::shard::ShardSpec;
use facebatch::classify::{ClassifySettings, Input, OutputMode};
use facebatch::model::card::Precision;
use facebatch::onnx::{ExecDevice, SessionOptions};
use facebatch::vision::decode::DecodeLimits;

use super::log::log_json_record;
use super::{
    EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, FaceArgs, GlobalArgs, LogFormat, ModelArg,
    progress_mode,
};

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Folders (walked recursively, in sorted order), single image files, object-store
    /// prefixes or objects (`s3://BUCKET/PREFIX/`, `gs://`, `az://`), `http(s)://` URLs, or
    /// `.txt`/`.csv` manifests listing URLs or paths.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The Parquet file to write (`.parquet`; atomically: a temporary name, then a rename),
    /// on a local disk or an object store (`s3://BUCKET/KEY.parquet`, `gs://`, `az://`).
    /// A local path ending in `/` is a dataset folder (created if needed): the run writes
    /// `part-KKKKK-of-NNNNN.parquet` and a `_SUCCESS-KKKKK-of-NNNNN.json` marker there.
    #[arg(long, help_heading = "Output")]
    pub out: PathBuf,
    /// Complete an interrupted or crashed run: skip what OUT (and OUT.parts/) already holds.
    #[arg(long, help_heading = "Output")]
    pub resume: bool,
    #[command(flatten)]
    pub model: ModelArg,
    /// Classify only shard K of N (0 <= K < N) of the inputs, split by a stable hash of
    /// each file's path relative to its input; `auto` reads JOB_COMPLETION_INDEX and
    /// JOB_COMPLETIONS (Kubernetes) or SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and
    /// SLURM_ARRAY_TASK_COUNT (Slurm).
    #[arg(long, value_name = "K/N|auto", help_heading = "Input")]
    pub shard: Option<ShardSpec>,
    #[command(flatten)]
    pub options: ClassifyOptions,
}

/// The options of a classify run that a job file's `[classify]` table may set too: the
/// same struct, filled by clap from the command line or by serde from the table (keys are
/// the flags' names without the dashes), with the same defaults.
#[derive(Args, Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifyOptions {
    /// Add each face's pooled feature vector, and write run-level feature statistics to
    /// OUT.features.json.
    #[arg(long, help_heading = "Output")]
    pub features: bool,
    /// With an ensemble model: add each member's calibrated probabilities as
    /// member_<name>_p_<label> columns, to see where the members disagree.
    #[arg(long, help_heading = "Output")]
    pub member_probs: bool,
    /// Write every classified crop (the model's exact input) as DIR/<path>.face<k>.png.
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub save_crops: Option<PathBuf>,
    /// Exit 0 when at most this fraction of the images had an error (their rows say why);
    /// above it, exit 1. 0 means any error exits 1.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.0,
        help_heading = "Output"
    )]
    pub max_error_rate: f64,
    /// Rows per durable checkpoint part (the most a crash can lose).
    #[arg(long, default_value_t = 1000, help_heading = "Output")]
    pub checkpoint_rows: usize,
    /// Follow symbolic links while walking.
    #[arg(long, help_heading = "Input")]
    pub follow_symlinks: bool,
    /// Objects read at once from object stores and HTTP, ahead of decoding.
    #[arg(long, default_value_t = 16, value_name = "N", help_heading = "Input")]
    pub read_concurrency: usize,
    /// Seconds an object-store output's lock lasts without renewal: a crashed run's lock
    /// is taken over after this (the holder renews it every third of it).
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECS",
        help_heading = "Output"
    )]
    pub lock_lease: u64,
    /// Images with more pixels than this are refused (decompression-bomb guard).
    #[arg(long, default_value_t = facebatch::vision::decode::DEFAULT_MAX_PIXELS, help_heading = "Input")]
    pub max_pixels: u64,
    /// Files larger than this many bytes get an error row without being read.
    #[arg(long, default_value_t = facebatch::vision::decode::DEFAULT_MAX_FILE_BYTES, help_heading = "Input")]
    pub max_file_bytes: u64,
    /// How faces are found. In a job file these keys sit in `[classify]` itself
    /// (`faces = "detect"`); serde fills them in a second pass, see [`super::job`].
    #[command(flatten)]
    #[serde(skip)]
    pub face: FaceArgs,
    /// Faces per inference batch.
    #[arg(long, default_value_t = 32, help_heading = "Performance")]
    pub batch_size: usize,
    /// Where inference runs.
    #[arg(long, value_parser = super::choice::device_parser(), default_value = "cpu", help_heading = "Performance")]
    pub device: ExecDevice,
    /// Which of the model's networks runs: float32, or the int8 copy its card lists.
    #[arg(long, value_parser = super::choice::precision_parser(), default_value = "float32", help_heading = "Performance")]
    pub precision: Precision,
    /// Decode/preprocess threads [default: all cores].
    #[arg(long, help_heading = "Performance")]
    pub threads: Option<usize>,
    /// ONNX Runtime intra-op threads of each inference worker [default: --threads divided
    /// by --infer-workers, at least 1].
    #[arg(long, help_heading = "Performance")]
    pub intra_threads: Option<usize>,
    /// Inference workers, each with its own ONNX Runtime session [default: on the CPU,
    /// --threads divided by --intra-threads; with CUDA, 1]. Measured on 2 cores: two
    /// one-thread sessions classify 1.4x as many faces per second as one two-thread
    /// session (docs/benchmarks.md).
    #[arg(long, help_heading = "Performance")]
    pub infer_workers: Option<usize>,
    /// MiB that decoded images in flight may hold at once, whatever --threads is (one
    /// image larger than this is decoded alone).
    #[arg(
        long,
        default_value_t = 1024,
        value_name = "MIB",
        help_heading = "Performance"
    )]
    pub decode_memory: u64,
    /// Decode every JPEG pixel. By default a JPEG is decoded at the smallest DCT scale (1/2,
    /// 1/4, 1/8) that still covers the detector's input (`--det-size`) or, with
    /// `--faces whole`, the model input.
    #[arg(long, help_heading = "Performance")]
    pub full_decode: bool,
}

/// clap's defaults, so that a job file's missing keys mean what missing flags mean.
impl Default for ClassifyOptions {
    fn default() -> Self {
        use clap::FromArgMatches;
        let cmd = <ClassifyOptions as Args>::augment_args(clap::Command::new("classify"));
        let matches = cmd
            .try_get_matches_from(["classify"])
            .expect("every classify option has a default");
        ClassifyOptions::from_arg_matches(&matches).expect("the defaults parse")
    }
}

impl ClassifyArgs {
    /// Checks the options and turns them into the library's settings.
    pub fn settings(&self, g: &GlobalArgs) -> anyhow::Result<ClassifySettings> {
        let o = &self.options;
        anyhow::ensure!(
            (0.0..=1.0).contains(&o.max_error_rate),
            "--max-error-rate must be within 0..=1, got {}",
            o.max_error_rate
        );
        anyhow::ensure!(o.max_pixels > 0, "--max-pixels must be at least 1");
        anyhow::ensure!(
            o.max_file_bytes > 0 && o.decode_memory > 0,
            "--max-file-bytes and --decode-memory must be at least 1"
        );
        let threads = o
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        super::check_thread_count("--threads", threads)?;
        for (flag, n) in [
            ("--intra-threads", o.intra_threads),
            ("--infer-workers", o.infer_workers),
        ] {
            if let Some(n) = n {
                super::check_thread_count(flag, n)?;
            }
        }
        let infer_workers = o.infer_workers.unwrap_or(match o.device {
            ExecDevice::Cuda => 1,
            ExecDevice::Cpu => (threads / o.intra_threads.unwrap_or(1)).max(1),
        });
        let intra_threads = o.intra_threads.unwrap_or((threads / infer_workers).max(1));
        anyhow::ensure!(
            o.read_concurrency > 0 && o.lock_lease > 0,
            "--read-concurrency and --lock-lease must be at least 1"
        );
        let inputs = self
            .inputs
            .iter()
            .map(|p| Input::parse(p.as_os_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let (out, mode, remote_out) = output_place(&self.out)?;
        Ok(ClassifySettings {
            inputs,
            out,
            mode,
            remote_out,
            read_concurrency: o.read_concurrency,
            lock_lease: std::time::Duration::from_secs(o.lock_lease),
            model: self.model.path()?,
            precision: o.precision,
            batch_size: o.batch_size,
            session: SessionOptions {
                ort_lib: g.ort_lib.clone(),
                intra_threads,
                device: o.device,
            },
            infer_workers,
            shard: self
                .shard
                .map(|spec| spec.resolve(|k| std::env::var(k).ok()))
                .transpose()?,
            seen: None,
            features: o.features,
            member_probs: o.member_probs,
            resume: self.resume,
            limits: DecodeLimits {
                max_pixels: o.max_pixels,
                max_file_bytes: o.max_file_bytes,
            },
            decode_memory: o.decode_memory.saturating_mul(1024 * 1024),
            threads,
            checkpoint_rows: o.checkpoint_rows,
            follow_symlinks: o.follow_symlinks,
            progress: progress_mode(g),
            faces: o.face.options(g),
            save_crops: o.save_crops.clone(),
            full_decode: o.full_decode,
        })
    }
}

/// What `--out` names, decided here once: a file or (ending with `/`) a dataset folder, on
/// a disk or an object store (then with the local copy a run writes).
pub fn output_place(
    out: &std::path::Path,
) -> anyhow::Result<(PathBuf, OutputMode, Option<facebatch::remote::ObjectUrl>)> {
    use facebatch::classify::objects;
    let text = out.to_string_lossy();
    match facebatch::remote::ObjectUrl::parse(&text) {
        None => {
            let mode = match facebatch::classify::dataset::is_dataset_dir(out) {
                true => OutputMode::Dataset,
                false => OutputMode::File,
            };
            Ok((out.to_path_buf(), mode, None))
        }
        Some(url) => {
            let url = url?;
            objects::check_supported(&url, url.is_prefix())?;
            Ok(if url.is_prefix() {
                (
                    objects::local_copy_dir(&url),
                    OutputMode::Dataset,
                    Some(url),
                )
            } else {
                let local = objects::local_copy_dir(&url).join(url.file_name());
                (local, OutputMode::File, Some(url))
            })
        }
    }
}

/// `facebatch classify`.
pub fn run(args: &ClassifyArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    classify(args.settings(g)?, g, args.options.max_error_rate)
}

/// Runs classify into a file or, when `--out` is a folder, into a dataset folder.
pub fn classify(
    settings: ClassifySettings,
    g: &GlobalArgs,
    max_error_rate: f64,
) -> anyhow::Result<u8> {
    use facebatch::classify::Outcome;
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_signals(cancel.clone())?;
    let shard = settings
        .shard
        .unwrap_or(facebatch::classify::shard::Shard::ALL);
    let summary = match facebatch::classify::run(&settings, cancel)? {
        Outcome::AlreadyComplete { marker, counts } => {
            println!(
                "shard {shard} already complete ({}): nothing to do",
                marker.display()
            );
            return Ok(exit_for_errors(&counts, max_error_rate));
        }
        Outcome::Completed { marker, counts } => {
            println!(
                "shard {shard}: an earlier attempt had published its part; marker written ({})",
                marker.display()
            );
            return Ok(exit_for_errors(&counts, max_error_rate));
        }
        Outcome::Ran(summary) => summary,
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
        // Exit 1 says why, on stderr (stdout may be --json).
        eprintln!(
            "facebatch: exit 1: {} in {} images ({:.1}%) > --max-error-rate {max_error_rate}",
            plural(counts.errors, "error row", "error rows"),
            counts.files,
            100.0 * rate
        );
        EXIT_PARTIAL
    }
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

/// The summary as one JSON object: `--json` prints it on stdout, and JSON logs end with it.
pub fn summary_json(
    s: &facebatch::classify::Summary,
    exit: u8,
) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(s).context("writing the summary as JSON")?;
    if let Some(o) = v.as_object_mut() {
        o.insert("exit_status".into(), exit.into());
    }
    Ok(v)
}

pub fn print_summary(
    s: &facebatch::classify::Summary,
    g: &GlobalArgs,
    exit: u8,
) -> anyhow::Result<()> {
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
        println!("  error: {}: {}", printable(&f.path), printable(&f.error));
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

/// `text` with every control character (newlines, ANSI escapes) written `\xNN`, as the
/// output's path keys write bytes that are not UTF-8: a file name cannot forge or recolour
/// summary lines. (`--json` escapes them as JSON does.)
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// `1 error`, `2 errors`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

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
