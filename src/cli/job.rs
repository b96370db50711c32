//! `facebatch run JOB.toml`: a job file's classify run. The job's `[classify]` table is
//! deserialised into the same [`ClassifyOptions`] that `facebatch classify` fills from its
//! flags, so both take the same options with the same defaults and checks, and a mistake
//! in the file names its TOML key.

use std::path::{Path, PathBuf};

use clap::Args;

use facebatch::classify::shard::ShardSpec;
use facebatch::job::Job;
use facebatch::model::builtin::ModelRef;

use super::classify::{ClassifyArgs, ClassifyOptions, classify};
use super::{FaceArgs, GlobalArgs, ModelArg};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The job file (TOML; see pipelines/nightly.toml and docs/operations.md).
    pub job: PathBuf,
    /// Run one shard of the job: K/N, or `auto` (Kubernetes Indexed Job / Slurm array
    /// environment). Overrides the job file's `shard`.
    #[arg(long)]
    pub shard: Option<ShardSpec>,
    /// The run date, YYYY-MM-DD [default: today, UTC]; names the partition.
    #[arg(long)]
    pub date: Option<String>,
    /// As classify's: exit 0 when at most this fraction of the images had an error.
    /// Overrides the job file's `max_error_rate` [default: the job's, else 0].
    #[arg(long, value_name = "FRACTION")]
    pub max_error_rate: Option<f64>,
    /// Classify again the files whose newest row is an error row, even when unchanged (a
    /// file that failed for a cause since fixed: a read error, a model or limit changed).
    /// Reads every earlier part once.
    #[arg(long)]
    pub retry_errors: bool,
}

/// The global options that `[classify]` may set for the job's run (the job's value wins).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct JobGlobals {
    ort_lib: Option<PathBuf>,
    detector: Option<PathBuf>,
}

/// A job's `[classify]` table, typed.
#[derive(Debug)]
struct JobClassify {
    options: ClassifyOptions,
    globals: JobGlobals,
}

impl JobClassify {
    /// Deserialises the table. Its keys are checked first against the options' names, so an
    /// unknown key is named with the closest known one; then each value is read into its
    /// field's type, and a wrong type names its key. The face options sit in the same table
    /// but in their own struct (eval and visualize share it), so the table is split by name.
    fn from_table(file: &Path, table: &toml::Table) -> anyhow::Result<JobClassify> {
        let names = |cmd: clap::Command| -> Vec<String> {
            cmd.get_arguments()
                .map(|a| a.get_id().to_string())
                .collect()
        };
        let face_keys = names(<FaceArgs as Args>::augment_args(clap::Command::new("f")));
        let global_keys = ["ort_lib", "detector"];
        let mut known = names(<ClassifyOptions as Args>::augment_args(clap::Command::new(
            "c",
        )));
        known.extend(global_keys.iter().map(|k| k.to_string()));
        let (mut face, mut globals, mut rest) =
            (toml::Table::new(), toml::Table::new(), toml::Table::new());
        for (key, value) in table {
            let part = if face_keys.contains(key) {
                &mut face
            } else if global_keys.contains(&key.as_str()) {
                &mut globals
            } else if known.contains(key) {
                &mut rest
            } else {
                anyhow::bail!(
                    "{}: [classify] {key}: not a classify option{}",
                    file.display(),
                    suggestion(key, &known)
                );
            };
            part.insert(key.clone(), value.clone());
        }
        let typed = |e: toml::de::Error| {
            anyhow::anyhow!(
                "{}: [classify] {}",
                file.display(),
                e.to_string().trim().replace('\n', " ")
            )
        };
        let mut options: ClassifyOptions = toml::Value::Table(rest).try_into().map_err(typed)?;
        options.face = toml::Value::Table(face).try_into().map_err(typed)?;
        let globals = toml::Value::Table(globals).try_into().map_err(typed)?;
        Ok(JobClassify { options, globals })
    }
}

/// `; did you mean `batch_size`?` when a known key is close to `key` (clap's measure).
fn suggestion(key: &str, known: &[String]) -> String {
    known
        .iter()
        .map(|k| (strsim::jaro(key, k), k))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

/// `facebatch run`.
pub fn run(args: &RunArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    let job = Job::load(&args.job)?;
    let date = args.date.clone().unwrap_or_else(facebatch::job::today);
    let dir = job.partition_dir(&date)?;
    let JobClassify {
        mut options,
        globals,
    } = JobClassify::from_table(&job.file, &job.classify)?;
    // Paths in the file are relative to the file, as `inputs` and `output` are.
    options.save_crops = options.save_crops.map(|p| job.resolve(&p));
    let mut jg = g.clone();
    jg.ort_lib = globals.ort_lib.map(|p| job.resolve(&p)).or(jg.ort_lib);
    jg.detector = globals.detector.map(|p| job.resolve(&p)).or(jg.detector);
    let max_error_rate = args.max_error_rate.unwrap_or(options.max_error_rate);
    let cargs = ClassifyArgs {
        inputs: job.inputs.clone(),
        out: dir.clone(),
        resume: false,
        model: ModelArg {
            model: ModelRef::Path(job.model_dir.clone()),
        },
        shard: args.shard.or(job.shard),
        options,
    };
    let mut settings = cargs.settings(&jg)?;
    // A job adds its shard to the date's partition: a dataset folder.
    settings.mode = facebatch::classify::OutputMode::Dataset;
    tracing::info!(
        job = %job.name,
        partition = %dir.display(),
        model = %job.model_dir.display(),
        "job"
    );
    let retry = match args.retry_errors {
        true => facebatch::classify::seen::Retry::Errors,
        false => facebatch::classify::seen::Retry::None,
    };
    let seen = facebatch::job::seen(&job, &dir, settings.shard, retry)?;
    settings.seen = Some(std::sync::Arc::new(seen));
    if !g.json {
        println!(
            "job {}: {} -> {} (model {})",
            job.name,
            date,
            dir.display(),
            job.model_dir.display()
        );
    }
    classify(settings, &jg, max_error_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    fn err(text: &str) -> String {
        JobClassify::from_table(Path::new("job.toml"), &table(text))
            .unwrap_err()
            .to_string()
    }

    /// The table fills the same struct as the flags, with the flags' defaults for what it
    /// leaves out.
    #[test]
    fn a_classify_table_fills_the_options_the_flags_fill() {
        let t = table(
            "faces = \"detect\"\nbatch_size = 16\nfeatures = true\ndet_threshold = 0.7\n\
             device = \"cpu\"\ndetector = \"/d.onnx\"\n",
        );
        let j = JobClassify::from_table(Path::new("job.toml"), &t).unwrap();
        let flags = <ClassifyOptions as clap::FromArgMatches>::from_arg_matches(
            &<ClassifyOptions as Args>::augment_args(clap::Command::new("c"))
                .try_get_matches_from([
                    "c",
                    "--faces",
                    "detect",
                    "--batch-size",
                    "16",
                    "--features",
                    "--det-threshold",
                    "0.7",
                ])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(format!("{:?}", j.options), format!("{flags:?}"));
        assert_eq!(j.globals.detector, Some(PathBuf::from("/d.onnx")));
        assert_eq!(j.options.checkpoint_rows, 1000, "clap's default");
        assert_eq!(j.options.max_pixels, ClassifyOptions::default().max_pixels);
    }

    #[test]
    fn a_wrong_key_or_value_names_the_key() {
        let e = err("batch_sise = 4\n");
        assert!(e.contains("[classify] batch_sise"), "{e}");
        assert!(e.contains("did you mean `batch_size`?"), "{e}");
        let e = err("det_size = \"big\"\n");
        assert!(e.contains("det_size") && e.contains("expected u32"), "{e}");
        let e = err("batch_size = \"many\"\n");
        assert!(
            e.contains("batch_size") && e.contains("expected usize"),
            "{e}"
        );
        let e = err("faces = \"all\"\n");
        assert!(e.contains("faces") && e.contains("auto"), "{e}");
        let e = err("colour = 1\n");
        assert!(e.ends_with("not a classify option"), "{e}");
    }
}
