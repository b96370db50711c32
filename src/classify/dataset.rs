//! Dataset mode: `--out DIR/` writes one shard's part file into a dataset folder, with a
//! success marker, so shards of one run (Ray tasks, Indexed Job pods, Slurm array tasks,
//! scheduled job runs) can be retried and gathered safely.
//!
//! Layout, for shard K of N:
//! - `DIR/_staging/part-KKKKK-of-NNNNN.parquet(.parts/)`: the run in progress. Folders
//!   starting with `_` are ignored by Spark and pyarrow datasets, and `DIR/*.parquet` does
//!   not reach into them.
//! - `DIR/part-KKKKK-of-NNNNN.parquet`: renamed into place once complete.
//! - `DIR/_SUCCESS-KKKKK-of-NNNNN.json`: written after that rename; a shard with a marker is
//!   done, and running it again does nothing.
//! - In a job run, `OUTPUT/_index/seen-KKKKK-of-NNNNN.index`: the shard's fingerprint
//!   index ([`super::seen`]), written beside the staged part as the run walks and renamed
//!   into place after the marker. A crash between the two leaves the old index, which does
//!   not cover the new part: the next run reads that part instead.
//!
//! An unfinished staging of the same shard can only be an earlier attempt of this shard
//! (the name is fixed by the shard), so it is resumed automatically: a retried shard
//! neither loses nor repeats a row.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::mirror::Mirror;
use super::{ClassifySettings, Summary, output};
use crate::classify::shard::Shard;
use crate::error::{Error, Result};

/// Where a shard's files go in a dataset folder.
#[derive(Clone, Debug)]
pub struct DatasetPaths {
    pub part: PathBuf,
    pub marker: PathBuf,
    pub staged: PathBuf,
    pub features: PathBuf,
}

impl DatasetPaths {
    pub fn new(dir: &Path, shard: Shard) -> DatasetPaths {
        let tag = shard.tag();
        DatasetPaths {
            part: dir.join(format!("part-{tag}.parquet")),
            marker: dir.join(format!("_SUCCESS-{tag}.json")),
            staged: dir.join("_staging").join(format!("part-{tag}.parquet")),
            features: dir.join(format!("_features-{tag}.json")),
        }
    }
}

/// The success marker's content.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    pub shard: String,
    pub file: String,
    pub rows: u64,
    pub files: u64,
    pub ok: u64,
    pub errors: u64,
    pub no_face: u64,
    pub unchanged: u64,
    pub run_id: String,
    pub model_name: String,
    pub model_version: String,
    pub model_sha256: String,
    pub finished_at: String,
}

/// What a dataset-mode run did.
pub enum Outcome {
    /// The marker was already there: nothing to do. `counts` are the marker's, so that a
    /// rerun exits as the run did.
    AlreadyComplete {
        marker: PathBuf,
        counts: super::output::StatusCounts,
    },
    /// An earlier attempt published the part but stopped before its marker: the marker
    /// was written now, from the part.
    Completed {
        marker: PathBuf,
        counts: super::output::StatusCounts,
    },
    /// The shard ran; when it was not interrupted, its part and marker are in place.
    Ran(Summary),
}

/// The publish record: written before the part is renamed into place, naming the run
/// whose part it is. A part carrying that run id was published; only its marker may be
/// missing.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Publish {
    run_id: String,
}

/// Is `out` a dataset folder? Only when it says so by ending with a separator: an existing
/// folder named without one is refused as before (`--out` pointing at the photos by
/// mistake must not write into them).
pub fn is_dataset_dir(out: &Path) -> bool {
    out.as_os_str()
        .to_string_lossy()
        .ends_with(['/', std::path::MAIN_SEPARATOR])
}

/// Refuses a shard count other than that of the parts and markers already in `dir`: shards
/// of different counts split the files differently, so their parts overlap (`--shard 1/2`
/// into a folder of `-of-00004` parts once gave 24 rows for 13 files).
fn check_shard_count(dir: &Path, shard: Shard) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // a new folder
    };
    let ours = format!("-of-{:05}", shard.count);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_shard_file = (name.starts_with("part-") && name.ends_with(".parquet"))
            || (name.starts_with("_SUCCESS-") && name.ends_with(".json"));
        let Some(of) = name.find("-of-").filter(|_| is_shard_file) else {
            continue;
        };
        if !name[of..].starts_with(&ours) {
            return Err(Error::OtherRun(format!(
                "{} already holds {name}, from a run with another shard count; --shard {shard} \
                 would overlap it: use the same count, or a new folder",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// A finished shard is not run again; a rerun with other settings (model, `--features`,
/// face finding, inputs) is refused rather than answered "already complete", as `--resume`
/// refuses them (the settings are those its part records).
fn check_same_settings(
    s: &ClassifySettings,
    dir: &Path,
    shard: Shard,
    paths: &DatasetPaths,
) -> Result<()> {
    if !paths.part.is_file() {
        return Ok(()); // nothing recorded to compare with
    }
    let now = super::resume::identity(s)?;
    let md = output::read_metadata(&paths.part)?;
    let saved = super::resume::recorded_identity(&md, &now.labels);
    match super::resume::differing_setting(&saved, &now) {
        None => Ok(()),
        Some(what) => Err(Error::OtherRun(format!(
            "shard {shard} in {} is already complete, and the run that finished it {what}; \
             a finished shard is not redone: use the same settings, or a new folder",
            dir.display()
        ))),
    }
}

/// Runs one shard into the dataset folder `dir` (`s.out`, or its local copy). With `mirror`, `dir`
/// is the local copy of a dataset on an object store, and every durable step is mirrored
/// there ([`super::objects`]).
pub fn run(
    s: &ClassifySettings,
    dir: &Path,
    cancel: Arc<AtomicBool>,
    mirror: Option<&Mirror>,
) -> Result<Outcome> {
    let shard = s.shard.unwrap_or(Shard::ALL);
    check_shard_count(dir, shard)?;
    let paths = DatasetPaths::new(dir, shard);
    // One process per shard, for the whole run, marker check included.
    let _lock = super::staging::OutputLock::acquire(&paths.part)?;
    if paths.marker.is_file() {
        check_same_settings(s, dir, shard, &paths)?;
        // An index staged by the attempt that wrote the marker, which stopped before
        // publishing it: the next run reads this part instead.
        remove_staged_index(&paths)?;
        let _ = std::fs::remove_dir(paths.staged.parent().unwrap_or(dir));
        tracing::info!(shard = %shard, marker = %paths.marker.display(), "shard already complete");
        let m: Marker = super::staging::read_json(&paths.marker)?.ok_or_else(|| {
            Error::Output(format!(
                "{} vanished while reading it",
                paths.marker.display()
            ))
        })?;
        return Ok(Outcome::AlreadyComplete {
            counts: super::output::StatusCounts {
                rows: m.rows,
                files: m.files,
                ok: m.ok,
                errors: m.errors,
                no_face: m.no_face,
            },
            marker: paths.marker,
        });
    }
    let staging = paths.staged.parent().unwrap_or(dir);
    let record = publish_record(&paths);
    if let Some(p) = super::staging::read_json::<Publish>(&record)?
        && paths.part.is_file()
        && output::read_metadata(&paths.part)?.get(output::meta::RUN_ID) == Some(&p.run_id)
    {
        tracing::info!(shard = %shard, "an earlier attempt published this shard's part: writing its marker");
        let counts = finish(&paths, shard, 0, s.seen.as_deref(), mirror)?;
        let _ = std::fs::remove_dir(staging);
        return Ok(Outcome::Completed {
            marker: paths.marker,
            counts,
        });
    }
    fs_err::create_dir_all(staging)?;
    let mut settings = s.clone();
    settings.out = paths.staged.clone();
    settings.resume = paths.staged.is_file() || output::parts_dir(&paths.staged).exists();
    if settings.resume {
        tracing::info!(shard = %shard, "resuming this shard's unfinished earlier attempt");
    }
    let mut summary = match super::pipeline::run(&settings, cancel, mirror) {
        Ok(summary) => summary,
        Err(e) => {
            // Left only when it holds something to resume.
            let _ = std::fs::remove_dir(staging);
            return Err(e);
        }
    };
    if summary.interrupted {
        return Ok(Outcome::Ran(summary));
    }
    if summary.model_errors > 0 && summary.model_errors == summary.output.rows {
        // Every row failed from the model, not the images: publishing would mark every
        // file as done, and a later run with a working model would skip them.
        let first = summary
            .failed
            .first()
            .map(|f| f.error.clone())
            .unwrap_or_default();
        discard_staged(&paths)?;
        if let Some(m) = mirror {
            m.put_or_delete(&paths.staged)?;
            m.put_or_delete(&output::stats_path(&paths.staged))?;
        }
        return Err(Error::InvalidModel {
            path: s.model.clone(),
            reason: format!(
                "inference failed on every one of the {} images ({first}); nothing was published, so the next run classifies them again",
                summary.files
            ),
        });
    }
    let run_id = output::read_metadata(&paths.staged)?
        .get(output::meta::RUN_ID)
        .cloned()
        .unwrap_or_default();
    // The commit point of a shard: the publish record, then the rename of the part.
    crate::failpoint::hit("dataset-record")?;
    super::staging::write_json(&record, &Publish { run_id })?;
    if let Some(m) = mirror {
        m.put(&record)?;
    }
    crate::failpoint::hit("dataset-publish")?;
    publish(&paths.staged, &paths.part)?;
    if let Some(m) = mirror {
        // The shard's commit point on the store: its part appears whole.
        m.publish(&paths.part)?;
        m.put_or_delete(&paths.staged)?;
    }
    finish(&paths, shard, summary.unchanged, s.seen.as_deref(), mirror)?;
    // The staging folder is left only when another shard still uses it.
    let _ = std::fs::remove_dir(staging);
    summary.out = paths.part;
    Ok(Outcome::Ran(summary))
}

/// Removes what this shard's attempts staged (the staged output, its parts, statistics and
/// index), so the next run starts afresh.
fn discard_staged(paths: &DatasetPaths) -> Result<()> {
    let parts = output::parts_dir(&paths.staged);
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::from(e)),
        _ => Ok(()),
    };
    gone(fs_err::remove_dir_all(&parts))?;
    gone(fs_err::remove_file(&paths.staged))?;
    gone(fs_err::remove_file(output::stats_path(&paths.staged)))?;
    remove_staged_index(paths)?;
    let _ = std::fs::remove_dir(paths.staged.parent().unwrap_or(Path::new(".")));
    Ok(())
}

fn publish_record(paths: &DatasetPaths) -> PathBuf {
    let mut name = paths.staged.file_name().unwrap_or_default().to_os_string();
    name.push(".publish.json");
    paths.staged.with_file_name(name)
}

/// After the part is in place, idempotent: its feature statistics, its marker (counted
/// from the part itself), the publish record is dropped, then the job's fingerprint index
/// is renamed into place.
fn finish(
    paths: &DatasetPaths,
    shard: Shard,
    unchanged: u64,
    seen: Option<&super::seen::Seen>,
    mirror: Option<&Mirror>,
) -> Result<output::StatusCounts> {
    crate::failpoint::hit("dataset-features")?;
    let stats = output::stats_path(&paths.staged);
    if stats.is_file() {
        publish(&stats, &paths.features)?;
    }
    if let Some(m) = mirror {
        m.put_or_delete(&paths.features)?;
        m.put_or_delete(&stats)?;
    }
    let md = output::read_metadata(&paths.part)?;
    let get = |k: &str| md.get(k).cloned().unwrap_or_default();
    let counts = output::count(&paths.part)?;
    let marker = Marker {
        shard: shard.to_string(),
        file: paths
            .part
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        rows: counts.rows,
        files: counts.files,
        ok: counts.ok,
        errors: counts.errors,
        no_face: counts.no_face,
        unchanged,
        run_id: get(output::meta::RUN_ID),
        model_name: get(output::meta::MODEL_NAME),
        model_version: get(output::meta::MODEL_VERSION),
        model_sha256: get(output::meta::MODEL_SHA256),
        finished_at: get(output::meta::FINISHED),
    };
    crate::failpoint::hit("dataset-marker")?;
    super::staging::write_json(&paths.marker, &marker)?;
    if let Some(m) = mirror {
        m.put(&paths.marker)?;
    }
    let record = publish_record(paths);
    match fs_err::remove_file(&record) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(m) = mirror {
        m.put_or_delete(&record)?;
    }
    match seen {
        Some(seen) => publish_index(paths, seen),
        None => remove_staged_index(paths)?,
    }
    Ok(counts)
}

/// Renames the index this run staged (if it wrote one) into place. Never fatal: the part
/// and its marker are published, and without the new index the next run reads this part.
fn publish_index(paths: &DatasetPaths, seen: &super::seen::Seen) {
    let staged = super::seen::staged(&paths.staged);
    if !staged.is_file() {
        return;
    }
    let to = seen.index_path();
    let published = crate::failpoint::hit("dataset-index")
        .and_then(|()| {
            fs_err::create_dir_all(to.parent().unwrap_or(Path::new("."))).map_err(Error::from)
        })
        .and_then(|()| publish(&staged, &to));
    match published {
        Err(e) => {
            tracing::warn!(index = %to.display(), error = %e, "the new fingerprint index could not be published: the next run reads this run's part instead");
            let _ = std::fs::remove_file(&staged);
        }
        // An older version's index, named `.parquet`, broke `OUTPUT/*/*.parquet` globs.
        Ok(()) => {
            let legacy = seen.legacy_index_path();
            match std::fs::remove_file(&legacy) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(index = %legacy.display(), error = %e, "an older version's index could not be removed")
                }
                _ => {}
            }
        }
    }
}

fn remove_staged_index(paths: &DatasetPaths) -> Result<()> {
    match fs_err::remove_file(super::seen::staged(&paths.staged)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Renames a finished file into place and syncs its folder, so the rename survives a crash.
fn publish(from: &Path, to: &Path) -> Result<()> {
    fs_err::rename(from, to)?;
    crate::fsutil::sync_parent(to);
    Ok(())
}
