//! The topology: every stage and channel of `classify` is wired here, and only here.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parquet::file::metadata::KeyValue;
use tokio::sync::mpsc::channel;

use super::budget::MemoryBudget;
use super::output::{self, meta};
use super::stages::walk::SourceConfig;
use super::stages::{batch, decode, infer, locate, sink, tensorize, walk};
use super::staging::{self, OutputLock, RunInfo};
use super::stats::FeatureStats;
use super::{ClassifySettings, Summary};
use crate::error::{Error, Result};
use crate::onnx::Classifier;
use crate::vision::decode::DecodeTarget;
use crate::vision::faces::{FaceFinder, FaceMode};

/// Checks everything that can be checked before any work starts.
fn preflight(s: &ClassifySettings) -> Result<()> {
    if s.inputs.is_empty() {
        return Err(Error::InvalidOption(
            "no input: pass one or more folders or image files".into(),
        ));
    }
    for input in &s.inputs {
        if !input.exists() {
            return Err(Error::InvalidOption(format!(
                "input {} does not exist",
                input.display()
            )));
        }
    }
    if s.batch_size == 0 || s.checkpoint_rows == 0 {
        return Err(Error::InvalidOption(
            "--batch-size and --checkpoint-rows must be at least 1".into(),
        ));
    }
    if s.out.is_dir() {
        return Err(Error::InvalidOption(format!(
            "--out {} is a directory; name a .parquet file, or end it with / to write a dataset folder",
            s.out.display()
        )));
    }
    let dir = s
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::InvalidOption(format!(
            "cannot write {}: folder {} does not exist",
            s.out.display(),
            dir.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(".facebatch-write-check")
        .tempfile_in(dir)
        .map_err(|e| Error::InvalidOption(format!("cannot write {}: {e}", s.out.display())))?;
    check_out_is_safe(s, dir)?;
    // Last, so that the checks above name the more specific reason first.
    if !s
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        return Err(Error::InvalidOption(format!(
            "--out {}: classify writes Parquet: name the file .parquet, or end the path with / \
             for a dataset folder",
            s.out.display()
        )));
    }
    Ok(())
}

/// `--out` never replaces an input, an image inside an input folder, or any file that is
/// not an earlier facebatch output.
fn check_out_is_safe(s: &ClassifySettings, dir: &Path) -> Result<()> {
    let out = std::fs::canonicalize(dir)
        .map(|d| d.join(s.out.file_name().unwrap_or_default()))
        .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
    for input in &s.inputs {
        let Ok(input_abs) = std::fs::canonicalize(input) else {
            continue;
        };
        if input_abs == out || std::fs::canonicalize(&s.out).is_ok_and(|o| o == input_abs) {
            return Err(Error::InvalidOption(format!(
                "--out {} is one of the inputs; name a new .parquet file",
                s.out.display()
            )));
        }
        if input_abs.is_dir() && out.starts_with(&input_abs) && walk::is_candidate(&out) {
            return Err(Error::InvalidOption(format!(
                "--out {} lies inside the input folder {} and has an image extension; name a .parquet file",
                s.out.display(),
                input.display()
            )));
        }
    }
    if s.out.exists() {
        let ours = output::read_metadata(&s.out)
            .is_ok_and(|md| md.contains_key(meta::VERSION) || md.contains_key(meta::RUN_ID));
        if !ours {
            return Err(Error::InvalidOption(format!(
                "--out {} exists and is not a facebatch output; refusing to replace it (move it away or name another file)",
                s.out.display()
            )));
        }
    }
    Ok(())
}

/// Runs `classify` end to end. `cancel` is set by Ctrl-C (or a caller) to stop intake;
/// finished rows are still written and the output is left valid.
pub fn run(s: &ClassifySettings, cancel: Arc<AtomicBool>) -> Result<Summary> {
    let started = Instant::now();
    let s = &normalised(s);
    preflight(s)?;
    // One process per output, for the whole run (see `staging`).
    let _lock = OutputLock::acquire(&s.out)?;
    // One session per inference worker.
    let classifiers = Classifier::load_many(&s.model, &s.session, s.infer_workers)?;
    let classifier = &classifiers[0];
    let card = classifier.card.clone();
    let model_version = crate::model::card::model_version(&classifier.onnx_path);
    let model_path = classifier.onnx_path.display().to_string();
    tracing::info!(model = %card.name, version = %model_version, path = %model_path, "model");
    let threads = s.threads.max(1);
    let detector_session = crate::onnx::SessionOptions {
        intra_threads: 1,
        ..s.session.clone()
    };
    let finder = FaceFinder::for_model(&card, &s.faces, &detector_session, threads)?;
    let faces_json = faces_identity(&finder);
    tracing::info!(mode = %finder.mode, detector = finder.detector.as_ref().map(|d| d.info.name.as_str()).unwrap_or("none"), "faces");
    let labels = card.labels.clone();
    let feature_dim = feature_dim(s, &card)?;
    let schema = output::schema(&labels, feature_dim);
    let parts_dir = output::parts_dir(&s.out);

    let info = RunInfo {
        run_id: uuid::Uuid::new_v4().to_string(),
        started_at: crate::fsutil::now_rfc3339(),
        model_sha256: classifier.onnx_sha256.clone(),
        labels: labels.clone(),
        feature_dim,
        faces: faces_json.clone(),
        inputs: input_keys(&s.inputs),
    };
    let Earlier {
        info,
        done,
        features: earlier_features,
        out: earlier_out,
    } = earlier(s, info)?;
    std::fs::create_dir_all(&parts_dir)
        .map_err(|e| Error::io(format!("creating {}", parts_dir.display()), e))?;
    staging::write_json(&staging::run_json(&parts_dir), &info)?;
    let parts = output::PartWriter::open(
        parts_dir.clone(),
        schema.clone(),
        labels.clone(),
        feature_dim,
    )?;

    let crop_dir = s
        .save_crops
        .as_deref()
        .map(|d| locate::CropDir::new(d, s.inputs.len()))
        .transpose()
        .map_err(Error::InvalidOption)?;
    let source_config = SourceConfig {
        inputs: s.inputs.clone(),
        follow_symlinks: s.follow_symlinks,
    };
    let progress = crate::progress::Progress::new(s.progress, 0, "images");

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("facebatch-decode-{i}"))
        .build()
        .map_err(|e| Error::InvalidOption(format!("cannot start {threads} decode threads: {e}")))?;
    let pool = Arc::new(pool);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;

    let skip = Arc::new(walk::Skip {
        done,
        shard: s.shard,
        seen: s.seen.clone(),
    });
    let spec = classifier.card.input.clone();
    // The resolution the next step needs: the detector's input, or the model input of a
    // whole-image crop. JPEGs are decoded at the smallest DCT scale that still gives it.
    let target = if s.full_decode {
        DecodeTarget::Full
    } else if finder.mode == FaceMode::Whole {
        DecodeTarget::Cover((spec.width, spec.height))
    } else {
        DecodeTarget::LongSide(finder.settings.max_side)
    };
    tracing::debug!(?target, "decode target");
    let chunk = threads * 2;
    let result = runtime.block_on(async {
        // Bounded channels: memory is set by these capacities, not by the number of images.
        let (file_tx, file_rx) = channel(256);
        let (decoded_tx, decoded_rx) = channel(chunk);
        let (located_tx, located_rx) = channel(chunk);
        let (prepared_tx, prepared_rx) = channel(s.batch_size * 2);
        let (batch_tx, batch_rx) = channel(2);
        let (rows_tx, rows_rx) = channel(4);

        if progress.is_shown() {
            // A second, counting walk only for the progress's length and ETA (with
            // `--no-progress`, the tree is walked once).
            let (config, cancel, bar) = (source_config.clone(), cancel.clone(), progress.clone());
            let already = skip.done.len() as u64;
            let shard = s.shard;
            std::thread::spawn(move || {
                if let Some(n) = walk::count(&config, shard, &cancel) {
                    bar.set_length(n.saturating_sub(already));
                }
            });
        }
        let src = tokio::task::spawn_blocking({
            let (skip, cancel) = (skip.clone(), cancel.clone());
            move || walk::run(source_config, skip, cancel, file_tx)
        });
        let dec = tokio::task::spawn_blocking({
            let (pool, limits, cancel) = (pool.clone(), s.limits, cancel.clone());
            let budget = MemoryBudget::new(s.decode_memory);
            move || {
                decode::run(
                    file_rx, decoded_tx, limits, target, chunk, &pool, budget, cancel,
                )
            }
        });
        let det = tokio::task::spawn_blocking({
            let (pool, save, cancel) = (pool.clone(), crop_dir, cancel.clone());
            move || locate::run(decoded_rx, located_tx, &finder, save, chunk, &pool, &cancel)
        });
        let pre = tokio::task::spawn_blocking({
            let pool = pool.clone();
            move || tensorize::run(located_rx, prepared_tx, spec, chunk, &pool)
        });
        let bat = tokio::task::spawn_blocking({
            let n = s.batch_size;
            move || batch::run(prepared_rx, batch_tx, n)
        });
        let inf = tokio::task::spawn_blocking({
            let features = s.features;
            move || infer::run(batch_rx, rows_tx, classifiers, features)
        });
        let snk = tokio::task::spawn_blocking({
            let (rows, bar) = (s.checkpoint_rows, progress.clone());
            move || sink::run(rows_rx, parts, rows, bar)
        });
        (
            src.await,
            dec.await,
            det.await,
            pre.await,
            bat.await,
            inf.await,
            snk.await,
        )
    });
    progress.finish_and_clear();
    let join = |e: tokio::task::JoinError| Error::Output(format!("a pipeline stage failed: {e}"));
    let ((src_stats, skipped), dec, det, pre, bat, inf, snk) = (
        result.0.map_err(join)?,
        result.1.map_err(join)?,
        result.2.map_err(join)?,
        result.3.map_err(join)?,
        result.4.map_err(join)?,
        result.5.map_err(join)?,
        result.6.map_err(join)?,
    );
    let sink_result = snk?;
    let interrupted = cancel.load(Ordering::SeqCst);

    // Finalise: earlier output + parts -> OUT, atomically; then drop the parts.
    let mut sources = Vec::new();
    if earlier_out {
        sources.push(s.out.clone());
    }
    sources.extend(output::list_parts(&parts_dir)?);
    let finished_at = crate::fsutil::now_rfc3339();
    let card_json = serde_json::to_string(&card).map_err(|e| Error::Json {
        context: "encoding the model card".into(),
        source: e,
    })?;
    let inputs_json = serde_json::to_string(&info.inputs).map_err(|e| Error::Json {
        context: "encoding the inputs".into(),
        source: e,
    })?;
    let merge_id = uuid::Uuid::new_v4().to_string();
    let mut metadata = vec![
        KeyValue::new(
            meta::VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        KeyValue::new(meta::RUN_ID.to_string(), info.run_id.clone()),
        KeyValue::new(meta::STARTED.to_string(), info.started_at.clone()),
        KeyValue::new(meta::FINISHED.to_string(), finished_at),
        KeyValue::new(meta::MODEL_SHA256.to_string(), info.model_sha256.clone()),
        KeyValue::new(meta::MODEL_NAME.to_string(), card.name.clone()),
        KeyValue::new(meta::MODEL_VERSION.to_string(), model_version.clone()),
        KeyValue::new(meta::MODEL_PATH.to_string(), model_path.clone()),
        KeyValue::new(
            meta::SHARD.to_string(),
            s.shard
                .unwrap_or(crate::classify::shard::Shard::ALL)
                .to_string(),
        ),
        KeyValue::new(meta::MODEL_CARD.to_string(), card_json),
        KeyValue::new(meta::FACES.to_string(), faces_json),
        KeyValue::new(meta::INPUTS.to_string(), inputs_json),
        KeyValue::new(
            meta::STATUS.to_string(),
            if interrupted {
                "interrupted"
            } else {
                "complete"
            }
            .to_string(),
        ),
        KeyValue::new(meta::MERGE_ID.to_string(), merge_id.clone()),
    ];
    let mut feature_stats = None;
    if let Some(dim) = feature_dim {
        metadata.push(KeyValue::new(
            meta::FEATURE_DIM.to_string(),
            dim.to_string(),
        ));
        let mut all = earlier_features;
        all.merge(&sink_result.features);
        all.finish();
        let text = serde_json::to_string_pretty(&all).map_err(|e| Error::Json {
            context: "encoding the feature statistics".into(),
            source: e,
        })?;
        metadata.push(KeyValue::new(meta::FEATURE_STATS.to_string(), text.clone()));
        feature_stats = Some(text);
    }
    // The commit record first: once OUT carries this merge id, it holds every part.
    crate::failpoint::hit("commit")?;
    staging::write_json(
        &staging::commit_json(&parts_dir),
        &staging::Commit { merge_id },
    )?;
    let totals = output::merge(&sources, &s.out, &schema, metadata)?;
    staging::clean_up(&s.out, feature_stats.as_deref())?;

    let elapsed = started.elapsed();
    let rows = sink_result.ok + sink_result.errors + sink_result.no_face;
    Ok(Summary {
        out: s.out.clone(),
        rows,
        files: dec.items,
        ok: sink_result.ok,
        errors: sink_result.errors,
        failed: sink_result.failed,
        no_face: sink_result.no_face,
        already_done: skipped.done,
        output: totals,
        unchanged: skipped.unchanged,
        links_skipped: skipped.links,
        interrupted,
        elapsed,
        images_per_second: dec.items as f64 / elapsed.as_secs_f64().max(1e-9),
        stages: vec![src_stats, dec, det, pre, bat, inf, sink_result.stats],
    })
}

/// The face settings a run records (mode, detector, thresholds, alignment): runs that
/// continue or repeat it must find faces the same way.
fn faces_identity(finder: &FaceFinder) -> String {
    serde_json::json!({
        "mode": finder.mode,
        "detector": finder.detector.as_ref().map(|d| &d.info),
        "detection": finder.detector.as_ref().map(|_| &finder.settings),
        "alignment": finder.detector.as_ref().map(|_| &finder.align),
    })
    .to_string()
}

/// The pooled feature size written with `--features`, from the card; `None` without it.
fn feature_dim(
    s: &ClassifySettings,
    card: &crate::model::card::ModelCard,
) -> Result<Option<usize>> {
    if !s.features {
        return Ok(None);
    }
    let dim = card
        .outputs
        .iter()
        .find(|o| o.name == "pooled")
        .and_then(|o| o.shape.get(1))
        .and_then(|d| d.as_u64())
        .ok_or_else(|| Error::InvalidCard {
            path: s.model.clone(),
            reason: "the card does not give the pooled feature size".into(),
        })?;
    Ok(Some(dim as usize))
}

/// What makes a run the same run: the model, `--features`, face finding and the inputs,
/// as a run of `s` records them. Reads the model's files and loads the detector (if `s`
/// uses one), without running anything.
pub(crate) fn identity(s: &ClassifySettings) -> Result<RunInfo> {
    let s = &normalised(s);
    let model = crate::onnx::CheckedModel::read(&s.model)?;
    let detector_session = crate::onnx::SessionOptions {
        intra_threads: 1,
        ..s.session.clone()
    };
    let finder = FaceFinder::for_model(&model.card, &s.faces, &detector_session, 1)?;
    Ok(RunInfo {
        run_id: String::new(),
        started_at: String::new(),
        model_sha256: model.sha256.clone(),
        labels: model.card.labels.clone(),
        feature_dim: feature_dim(s, &model.card)?,
        faces: faces_identity(&finder),
        inputs: input_keys(&s.inputs),
    })
}

/// The run an output's Parquet metadata records (`labels` are taken as given).
pub(crate) fn recorded_identity(
    md: &std::collections::BTreeMap<String, String>,
    labels: &[String],
) -> RunInfo {
    RunInfo {
        run_id: md.get(meta::RUN_ID).cloned().unwrap_or_default(),
        started_at: md.get(meta::STARTED).cloned().unwrap_or_default(),
        model_sha256: md.get(meta::MODEL_SHA256).cloned().unwrap_or_default(),
        labels: labels.to_vec(),
        feature_dim: md.get(meta::FEATURE_DIM).and_then(|d| d.parse().ok()),
        faces: md.get(meta::FACES).cloned().unwrap_or_default(),
        inputs: md
            .get(meta::INPUTS)
            .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
            .map(|v| input_keys(&v.iter().map(PathBuf::from).collect::<Vec<_>>()))
            .unwrap_or_default(),
    }
}

/// What an earlier attempt left that this run continues.
struct Earlier {
    /// This run's identity: a new one, or the resumed run's.
    info: RunInfo,
    /// (root, path) of every file already written.
    done: HashSet<(String, String)>,
    features: FeatureStats,
    /// `OUT` holds rows of this run and is merged into the new `OUT`.
    out: bool,
}

/// Reads what is on disk for `s.out` (its lock held) and decides what this run continues:
/// a committed merge is finished first; an unrelated earlier `OUT` is replaced, never
/// continued; `--resume` checks that model, features, faces and inputs are unchanged.
fn earlier(s: &ClassifySettings, mut info: RunInfo) -> Result<Earlier> {
    let parts_dir = output::parts_dir(&s.out);
    output::remove_stale_merges(&s.out)?;
    let mut found = staging::inspect(&s.out)?;
    if found.committed {
        // A run published OUT but stopped before its clean-up: finish that first.
        tracing::info!(out = %s.out.display(), "finishing the clean-up of an earlier published run");
        if let Some(md) = &found.out_meta {
            staging::clean_up(&s.out, md.get(meta::FEATURE_STATS).map(String::as_str))?;
        }
        found.run = None;
    }
    if parts_dir.exists() && !s.resume {
        return Err(Error::InvalidOption(format!(
            "{} holds an unfinished run: pass --resume to complete it, or delete that folder to start over",
            parts_dir.display()
        )));
    }
    let mut out = Earlier {
        info: info.clone(),
        done: HashSet::new(),
        features: FeatureStats::default(),
        out: false,
    };
    if !s.resume {
        return Ok(out);
    }
    let out_md = found.out_meta.as_ref();
    match &found.run {
        Some(saved) => {
            check_same_run(saved, &info)?;
            info.run_id = saved.run_id.clone();
            info.started_at = saved.started_at.clone();
            // OUT belongs to this run only when it carries the run's id (an earlier
            // interrupted attempt); anything else is an older output this run replaces.
            out.out = out_md.is_some_and(|md| md.get(meta::RUN_ID) == Some(&saved.run_id));
        }
        None => {
            if let Some(md) = out_md {
                let earlier = recorded_identity(md, &info.labels);
                check_same_run(&earlier, &info)?;
                info.run_id = earlier.run_id;
                info.started_at = earlier.started_at;
                out.out = true;
            }
        }
    }
    if out.out {
        output::done_keys(&s.out, &mut out.done)?;
        let stats = out_md
            .and_then(|md| md.get(meta::FEATURE_STATS).cloned())
            .or_else(|| std::fs::read_to_string(output::stats_path(&s.out)).ok());
        if let Some(st) = stats.and_then(|t| serde_json::from_str::<FeatureStats>(&t).ok()) {
            out.features.merge(&st);
        }
    }
    if found.run.is_some() {
        for part in output::list_parts(&parts_dir)? {
            output::done_keys(&part, &mut out.done)?;
            if let Some(st) = output::read_metadata(&part)?
                .get("facebatch.part_feature_stats")
                .and_then(|t| serde_json::from_str::<FeatureStats>(t).ok())
            {
                out.features.merge(&st);
            }
        }
    } else if parts_dir.exists() {
        // A parts folder without its run.json: the run stopped before writing any part.
        std::fs::remove_dir_all(&parts_dir)
            .map_err(|e| Error::io(format!("removing {}", parts_dir.display()), e))?;
    }
    tracing::info!(already_done = out.done.len(), "resuming");
    out.info = info;
    Ok(out)
}

/// Refuses a `--resume` whose model, features, face finding or inputs differ.
fn check_same_run(saved: &RunInfo, now: &RunInfo) -> Result<()> {
    match differing_setting(saved, now) {
        None => Ok(()),
        Some(what) => Err(Error::InvalidOption(format!(
            "--resume: the earlier run {what}; use the same settings, or start a new output"
        ))),
    }
}

/// The first setting in which `now` differs from the recorded run `saved`, said as "the
/// earlier run ..." continues: `None` when they are the same run. A setting the record
/// lacks (older outputs) is not compared.
pub(crate) fn differing_setting(saved: &RunInfo, now: &RunInfo) -> Option<String> {
    if saved.model_sha256 != now.model_sha256 {
        return Some(format!(
            "used another model (--model: sha256 {}, this run {})",
            saved.model_sha256, now.model_sha256
        ));
    }
    if saved.feature_dim != now.feature_dim {
        let on = |d: Option<usize>| if d.is_some() { "on" } else { "off" };
        return Some(format!(
            "had a different --features setting ({}, this run {})",
            on(saved.feature_dim),
            on(now.feature_dim)
        ));
    }
    if !saved.faces.is_empty() && saved.faces != now.faces {
        return Some(format!(
            "found faces differently (--faces and detection options: {}; this run {})",
            saved.faces, now.faces
        ));
    }
    if !saved.inputs.is_empty() && sorted(&saved.inputs) != sorted(&now.inputs) {
        return Some(format!(
            "read other inputs ({}; this run {})",
            saved.inputs.join(", "),
            now.inputs.join(", ")
        ));
    }
    None
}

fn sorted(v: &[String]) -> Vec<&String> {
    let mut v: Vec<&String> = v.iter().collect();
    v.sort();
    v
}

/// An input path as the key it becomes in `root`: `IN`, `IN/`, `./IN` and `IN/.` are one
/// input ([`crate::fsutil::without_cur_dirs`]).
pub fn normalise_input(p: &Path) -> PathBuf {
    crate::fsutil::without_cur_dirs(p)
}

fn input_keys(inputs: &[PathBuf]) -> Vec<String> {
    inputs
        .iter()
        .map(|p| normalise_input(p).to_string_lossy().into_owned())
        .collect()
}

/// The settings with every input normalised ([`normalise_input`]).
fn normalised(s: &ClassifySettings) -> ClassifySettings {
    let mut s = s.clone();
    s.inputs = s.inputs.iter().map(|p| normalise_input(p)).collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_input_normalise_to_one_key() {
        for spelling in ["IN", "IN/", "./IN", "IN/.", "./IN/./"] {
            assert_eq!(normalise_input(Path::new(spelling)), PathBuf::from("IN"));
        }
        assert_eq!(normalise_input(Path::new("./")), PathBuf::from("."));
        assert_eq!(normalise_input(Path::new("/a/b/")), PathBuf::from("/a/b"));
        assert_eq!(
            normalise_input(Path::new("a/../b")),
            PathBuf::from("a/../b")
        );
    }
}
