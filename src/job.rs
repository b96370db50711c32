//! Job files (`facebatch run JOB.toml`): a scheduled, incremental classify run into a
//! dataset with Hive-style partitions.
//!
//! ```toml
//! name = "nightly"
//! inputs = ["/srv/photos"]              # relative paths are relative to this file
//! output = "/srv/datasets/face-labels"  # dataset root
//! partition = "dt={date}"               # default; {date} is the run date, UTC, YYYY-MM-DD
//! model = "../models/facebatch-gender"  # a model name folder (versions inside), a version,
//!                                       # or "builtin" (the default: the binary's own model)
//! model_version = "latest"              # or a version folder name such as "v3"
//! # shard = "auto"                      # or "K/N"; --shard on the command line wins
//!
//! [classify]                            # any `facebatch classify` option, without the dashes
//!                                       # (`batch_size` or `batch-size`)
//! faces = "auto"
//! features = true
//! ```
//!
//! Each run classifies only the files that are new, or whose size or modification time
//! changed, since the runs that completed before it (their part files with a success
//! marker anywhere under `output`, read through the shard's fingerprint index in
//! `output/_index/`), and writes them in dataset mode into `output/<partition>/`. Running
//! again with the same date is a no-op once it completed.

use std::path::{Path, PathBuf};

use crate::classify::seen::{Retry, Seen};
use crate::classify::shard::{Shard, ShardSpec};
use crate::error::{Error, Result};

/// Options the job sets itself; `[classify]` may not set them.
const RESERVED: &[&str] = &["out", "model", "resume", "shard", "inputs"];
/// Logging options: they apply to the whole `facebatch run` process, so they are given on
/// its command line, not in `[classify]`.
const PROCESS_WIDE: &[&str] = &[
    "quiet",
    "verbose",
    "log-format",
    "no-progress",
    "progress-interval",
    "json",
];

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    name: String,
    inputs: Vec<PathBuf>,
    output: PathBuf,
    #[serde(default = "default_partition")]
    partition: String,
    #[serde(default)]
    model: Option<PathBuf>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    shard: Option<String>,
    #[serde(default)]
    classify: toml::Table,
}

fn default_partition() -> String {
    "dt={date}".into()
}

/// A job file, read and checked; its paths resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct Job {
    pub file: PathBuf,
    pub name: String,
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    pub partition: String,
    /// The model version folder this run uses (a pinned version, or the latest).
    pub model_dir: PathBuf,
    pub shard: Option<ShardSpec>,
    /// The `[classify]` table, its keys spelt as the options' names with `_` (`batch_size`),
    /// without the keys the job sets itself or that apply to the whole process. The binary
    /// deserialises it into the same options struct that `facebatch classify` fills.
    pub classify: toml::Table,
    /// The job file's folder, absolute: what relative paths in the file are relative to.
    pub base: PathBuf,
}

impl Job {
    /// A path from the job file (`[classify]`'s `save_crops`, `detector`, `ort_lib`, ...)
    /// resolved as `inputs` and `output` are: relative to the job file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        crate::fsutil::lexically_normal(&self.base.join(p))
    }

    pub fn load(file: &Path) -> Result<Job> {
        let invalid = |reason: String| Error::JobFile {
            path: file.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::io(format!("reading job file {}", file.display()), e))?;
        let raw: JobFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        // Paths become absolute, so the (root, path) keys that incremental runs compare do
        // not depend on the folder cron or systemd starts in.
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = fs_err::canonicalize(base)?;
        let at = |p: &Path| crate::fsutil::lexically_normal(&base.join(p));
        if raw.name.is_empty() || raw.inputs.is_empty() {
            return Err(invalid(
                "`name` and at least one of `inputs` are required".into(),
            ));
        }
        if !raw.partition.contains("{date}") {
            return Err(invalid(format!(
                "partition {:?} must contain {{date}} so each run writes its own partition",
                raw.partition
            )));
        }
        let shard = raw
            .shard
            .as_deref()
            .map(|s| {
                s.parse::<ShardSpec>()
                    .map_err(|e| invalid(format!("shard: {e}")))
            })
            .transpose()?;
        check_classify_keys(&raw.classify).map_err(invalid)?;
        if raw
            .output
            .to_str()
            .and_then(crate::remote::ObjectUrl::parse)
            .is_some()
        {
            return Err(invalid(format!(
                "output {}: a job's output on an object store is not supported yet (its \
                 fingerprint index is read from every earlier partition); write to a local or \
                 shared folder, or run `classify --out s3://.../` per shard",
                crate::remote::redact(&raw.output.to_string_lossy())
            )));
        }
        let model_dir = model_dir(&raw, at, &invalid)?;
        Ok(Job {
            file: file.to_path_buf(),
            name: raw.name,
            // URLs (s3://, https://) are inputs as they are; paths are made absolute.
            inputs: raw
                .inputs
                .iter()
                .map(
                    |p| match p.to_str().and_then(crate::remote::ObjectUrl::parse) {
                        Some(_) => p.clone(),
                        None => at(p),
                    },
                )
                .collect(),
            output: at(&raw.output),
            partition: raw.partition,
            model_dir,
            shard,
            classify: raw
                .classify
                .into_iter()
                .map(|(k, v)| (k.replace('-', "_"), v))
                .collect(),
            base,
        })
    }

    /// The partition folder of a run on `date` (YYYY-MM-DD).
    pub fn partition_dir(&self, date: &str) -> Result<PathBuf> {
        let ok = date.len() == 10
            && time::Date::parse(
                date,
                &time::macros::format_description!("[year]-[month]-[day]"),
            )
            .is_ok();
        if !ok {
            return Err(Error::InvalidOption(format!(
                "--date {date:?}: expected YYYY-MM-DD"
            )));
        }
        let rel = self
            .partition
            .replace("{date}", date)
            .replace("{name}", &self.name);
        if Path::new(&rel)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::JobFile {
                path: self.file.clone(),
                reason: format!(
                    "partition {:?} must be a relative path inside output",
                    self.partition
                ),
            });
        }
        Ok(self.output.join(rel))
    }
}

/// Refuses `[classify]` keys that the job sets itself or that apply to the whole process.
fn check_classify_keys(classify: &toml::Table) -> std::result::Result<(), String> {
    for key in classify.keys() {
        let flag = key.replace('_', "-");
        if PROCESS_WIDE.contains(&flag.as_str()) {
            return Err(format!(
                "[classify] may not set {key:?}: it applies to the whole process; pass \
                 --{flag} to `facebatch run` instead"
            ));
        }
        if RESERVED.contains(&flag.as_str()) {
            return Err(format!(
                "[classify] may not set {key:?}: the job sets it (use the top-level \
                 inputs, output, model, model_version and shard)"
            ));
        }
    }
    Ok(())
}

/// The model version folder a job uses: its `model` (a name folder, at `model_version` or
/// the latest), or the model built into the binary.
fn model_dir(
    raw: &JobFile,
    at: impl Fn(&Path) -> PathBuf,
    invalid: &impl Fn(String) -> Error,
) -> Result<PathBuf> {
    let version = raw.model_version.as_deref().filter(|v| *v != "latest");
    match raw.model.as_deref() {
        Some(m) if m != Path::new(crate::model::builtin::KEYWORD) => {
            crate::model::card::resolve_version(&at(m), version)
        }
        // No model (or "builtin"): the model built into the binary.
        _ => {
            if let Some(v) = version.filter(|v| *v != crate::model::builtin::VERSION) {
                return Err(invalid(format!(
                    "model_version {v:?} needs `model`: the built-in model is {} {}",
                    crate::model::builtin::NAME,
                    crate::model::builtin::VERSION
                )));
            }
            crate::model::builtin::install(&crate::store::Store::current())
        }
    }
}

/// What the earlier successful runs of this shard of the job classified, for a run that
/// writes the partition folder `partition`: the shard's fingerprint index, and the part
/// files with a success marker that it does not cover ([`crate::classify::seen`]).
pub fn seen(job: &Job, partition: &Path, shard: Option<Shard>, retry: Retry) -> Result<Seen> {
    let shard = shard.unwrap_or(Shard::ALL);
    let part = crate::classify::dataset::DatasetPaths::new(partition, shard).part;
    Seen::open(&job.output, shard, &part, retry)
}

/// Today's date, UTC, YYYY-MM-DD.
pub fn today() -> String {
    crate::fsutil::now_rfc3339().chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &Path, text: &str) -> Result<Job> {
        let file = dir.join("job.toml");
        std::fs::write(&file, text).unwrap();
        Job::load(&file)
    }

    #[test]
    fn a_job_is_read_with_its_paths_resolved_and_its_keys_spelt_one_way() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("models/m/v7")).unwrap();
        let model = tmp.path().canonicalize().unwrap().join("models/m/v7");
        std::fs::write(model.join("model.onnx"), b"x").unwrap();
        assert_eq!(
            crate::fsutil::lexically_normal(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
        let j = job(
            tmp.path(),
            r#"
            name = "nightly"
            inputs = ["photos", "/abs/more"]
            output = "out"
            model = "models/m"
            [classify]
            faces = "detect"
            batch-size = 16
            features = true
            full_decode = false
            det_threshold = 0.7
            "#,
        )
        .unwrap();
        let tmp_path = tmp.path().canonicalize().unwrap();
        let tmp = &tmp_path;
        assert_eq!(j.model_dir, tmp.join("models/m/v7"));
        let dir = j.partition_dir("2026-11-28").unwrap();
        assert_eq!(dir, tmp.join("out/dt=2026-11-28"));
        assert_eq!(
            j.inputs,
            [tmp.join("photos"), PathBuf::from("/abs/more")].to_vec()
        );
        // Keys are spelt with `_` whichever way the file spells them.
        let keys: Vec<&str> = j.classify.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "batch_size",
                "det_threshold",
                "faces",
                "features",
                "full_decode"
            ]
        );
        assert!(j.partition_dir("2026-13-01").is_err());
        assert!(j.partition_dir("yesterday").is_err());
    }

    #[test]
    fn bad_job_files_are_refused_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let base = "name = \"n\"\ninputs = [\"p\"]\noutput = \"o\"\nmodel = \".\"\n";
        std::fs::write(tmp.path().join("model.onnx"), b"x").unwrap();
        for (extra, needle) in [
            ("colour = 1\n", "unknown field"),
            ("partition = \"static\"\n", "{date}"),
            ("partition = \"../dt={date}\"\n", "inside output"),
            ("[classify]\nout = \"x\"\n", "may not set"),
            ("model_version = \"v9\"\n", "not found"),
            ("shard = \"3/2\"\n", "shard: expected K/N"),
            ("[classify]\njson = true\n", "--json to `facebatch run`"),
        ] {
            let e = job(tmp.path(), &format!("{base}{extra}"))
                .and_then(|j| j.partition_dir("2026-01-01").map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }
}
