//! The topology: every stage and channel of `classify` is wired here, and only here.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parquet::file::metadata::KeyValue;
use tokio::sync::mpsc::channel;

use super::output::{self, RunInfo, meta};
use super::source::SourceConfig;
use super::stats::FeatureStats;
use super::{ClassifySettings, Summary, batch, decode, detect, infer, preprocess, sink, source};
use crate::error::{Error, Result};
use crate::faces::{FaceFinder, FaceMode};
use crate::infer::Classifier;
use crate::preprocess::DecodeTarget;

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
    Ok(())
}

/// Runs `classify` end to end. `cancel` is set by Ctrl-C (or a caller) to stop intake;
/// finished rows are still written and the output is left valid.
pub fn run(s: &ClassifySettings, cancel: Arc<AtomicBool>) -> Result<Summary> {
    let started = Instant::now();
    preflight(s)?;
    // One session per inference worker.
    let classifiers = Classifier::load_many(&s.model, &s.session, s.infer_workers)?;
    let classifier = &classifiers[0];
    let card = classifier.card.clone();
    let model_version = crate::card::model_version(&classifier.onnx_path);
    let model_path = classifier.onnx_path.display().to_string();
    tracing::info!(model = %card.name, version = %model_version, path = %model_path, "model");
    let threads = s.threads.max(1);
    let detector_session = crate::infer::SessionOptions {
        intra_threads: 1,
        ..s.session.clone()
    };
    let finder = FaceFinder::for_model(&card, &s.faces, &detector_session, threads)?;
    let faces_json = serde_json::json!({
        "mode": finder.mode,
        "detector": finder.detector.as_ref().map(|d| &d.info),
        "detection": finder.detector.as_ref().map(|_| &finder.settings),
        "alignment": finder.detector.as_ref().map(|_| &finder.align),
    })
    .to_string();
    tracing::info!(mode = %finder.mode, detector = finder.detector.as_ref().map(|d| d.info.name.as_str()).unwrap_or("none"), "faces");
    let labels = card.labels.clone();
    let feature_dim = if s.features {
        let dim = classifier
            .card
            .outputs
            .iter()
            .find(|o| o.name == "pooled")
            .and_then(|o| o.shape.get(1))
            .and_then(|d| d.as_u64())
            .ok_or_else(|| Error::InvalidCard {
                path: s.model.clone(),
                reason: "the card does not give the pooled feature size".into(),
            })?;
        Some(dim as usize)
    } else {
        None
    };
    let schema = output::schema(&labels, feature_dim);
    let parts_dir = output::parts_dir(&s.out);
    let run_json = parts_dir.join("run.json");

    // Resume bookkeeping: what is already written, by which run, with which model.
    let mut done: HashSet<(String, String)> = HashSet::new();
    let mut earlier_features = FeatureStats::default();
    let mut info = RunInfo {
        run_id: uuid::Uuid::new_v4().to_string(),
        started_at: crate::fsutil::now_rfc3339(),
        model_sha256: classifier.onnx_sha256.clone(),
        labels: labels.clone(),
        feature_dim,
        faces: faces_json.clone(),
    };
    let earlier_out = s.resume && s.out.is_file();
    if parts_dir.exists() && !s.resume {
        return Err(Error::InvalidOption(format!(
            "{} holds an unfinished run: pass --resume to complete it, or delete that folder to start over",
            parts_dir.display()
        )));
    }
    if s.resume {
        if run_json.is_file() {
            let saved: RunInfo = serde_json::from_str(
                &std::fs::read_to_string(&run_json)
                    .map_err(|e| Error::io(format!("reading {}", run_json.display()), e))?,
            )
            .map_err(|e| Error::Json {
                context: format!("reading {}", run_json.display()),
                source: e,
            })?;
            check_same_run(&saved.model_sha256, saved.feature_dim, &info)?;
            if !saved.faces.is_empty() && saved.faces != info.faces {
                return Err(Error::InvalidOption(format!(
                    "--resume: the earlier run found faces differently ({}); use the same --faces and detection options",
                    saved.faces
                )));
            }
            info.run_id = saved.run_id;
            info.started_at = saved.started_at;
        }
        if earlier_out {
            let md = output::read_metadata(&s.out)?;
            let sha = md.get(meta::MODEL_SHA256).cloned().unwrap_or_default();
            // Same model (checked by sha256), so the earlier feature size is the card's.
            let earlier_dim = schema_has_features(&s.out)?
                .then(|| md.get(meta::FEATURE_DIM).and_then(|d| d.parse().ok()))
                .flatten();
            check_same_run(&sha, earlier_dim, &info)?;
            if let Some(id) = md.get(meta::RUN_ID) {
                info.run_id = id.clone();
            }
            if let Some(t) = md.get(meta::STARTED) {
                info.started_at = t.clone();
            }
            output::done_keys(&s.out, &mut done)?;
            if let Some(st) = std::fs::read_to_string(output::stats_path(&s.out))
                .ok()
                .and_then(|text| serde_json::from_str::<FeatureStats>(&text).ok())
            {
                earlier_features.merge(&st);
            }
        }
        for part in output::list_parts(&parts_dir)? {
            output::done_keys(&part, &mut done)?;
            if let Some(st) = output::read_metadata(&part)?
                .get("facebatch.part_feature_stats")
                .and_then(|t| serde_json::from_str::<FeatureStats>(t).ok())
            {
                earlier_features.merge(&st);
            }
        }
        tracing::info!(already_done = done.len(), "resuming");
    }
    std::fs::create_dir_all(&parts_dir)
        .map_err(|e| Error::io(format!("creating {}", parts_dir.display()), e))?;
    crate::fsutil::write_atomic(
        &run_json,
        serde_json::to_string(&info).unwrap_or_default().as_bytes(),
    )?;
    let parts = output::PartWriter::open(
        parts_dir.clone(),
        schema.clone(),
        labels.clone(),
        feature_dim,
    )?;

    let source_config = SourceConfig {
        inputs: s.inputs.clone(),
        follow_symlinks: s.follow_symlinks,
    };
    let progress = crate::fsutil::progress_bar(s.progress, 0, "images");

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

    let skip = Arc::new(source::Skip {
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

        let ctrl_c = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    tracing::warn!(
                        "interrupted: finishing the images in flight, then writing the output"
                    );
                    cancel.store(true, Ordering::SeqCst);
                }
            })
        };
        if s.progress {
            // A second, counting walk only for the progress bar's length and ETA; scheduled
            // (non-terminal) runs skip it and walk the tree once.
            let (config, cancel, bar) = (source_config.clone(), cancel.clone(), progress.clone());
            let already = skip.done.len() as u64;
            let shard = s.shard;
            std::thread::spawn(move || {
                if let Some(n) = source::count(&config, shard, &cancel) {
                    bar.set_length(n.saturating_sub(already));
                }
            });
        }
        let src = tokio::task::spawn_blocking({
            let (skip, cancel) = (skip.clone(), cancel.clone());
            move || source::run(source_config, skip, cancel, file_tx)
        });
        let dec = tokio::task::spawn_blocking({
            let (pool, limits) = (pool.clone(), s.limits);
            move || decode::run(file_rx, decoded_tx, limits, target, chunk, &pool)
        });
        let det = tokio::task::spawn_blocking({
            let (pool, save) = (pool.clone(), s.save_crops.clone());
            move || detect::run(decoded_rx, located_tx, &finder, save, chunk, &pool)
        });
        let pre = tokio::task::spawn_blocking({
            let pool = pool.clone();
            move || preprocess::run(located_rx, prepared_tx, spec, chunk, &pool)
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
        let joined = (
            src.await,
            dec.await,
            det.await,
            pre.await,
            bat.await,
            inf.await,
            snk.await,
        );
        ctrl_c.abort();
        joined
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
    let card_json = serde_json::to_string(&card).unwrap_or_default();
    let metadata = vec![
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
            s.shard.unwrap_or(crate::shard::Shard::ALL).to_string(),
        ),
        KeyValue::new(meta::MODEL_CARD.to_string(), card_json),
        KeyValue::new(meta::FACES.to_string(), faces_json),
        KeyValue::new(
            meta::INPUTS.to_string(),
            serde_json::to_string(
                &s.inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        ),
        KeyValue::new(
            meta::STATUS.to_string(),
            if interrupted {
                "interrupted"
            } else {
                "complete"
            }
            .to_string(),
        ),
    ];
    let mut metadata = metadata;
    if let Some(dim) = feature_dim {
        metadata.push(KeyValue::new(
            meta::FEATURE_DIM.to_string(),
            dim.to_string(),
        ));
    }
    output::merge(&sources, &s.out, &schema, metadata)?;
    if s.features {
        let mut all = earlier_features;
        all.merge(&sink_result.features);
        all.finish();
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        crate::fsutil::write_atomic(&output::stats_path(&s.out), text.as_bytes())?;
    }
    std::fs::remove_dir_all(&parts_dir)
        .map_err(|e| Error::io(format!("removing {}", parts_dir.display()), e))?;

    let elapsed = started.elapsed();
    let rows = sink_result.ok + sink_result.errors + sink_result.no_face;
    Ok(Summary {
        out: s.out.clone(),
        rows,
        files: dec.items,
        ok: sink_result.ok,
        errors: sink_result.errors,
        no_face: sink_result.no_face,
        already_done: skipped.done,
        unchanged: skipped.unchanged,
        interrupted,
        elapsed,
        images_per_second: dec.items as f64 / elapsed.as_secs_f64().max(1e-9),
        stages: vec![src_stats, dec, det, pre, bat, inf, sink_result.stats],
    })
}

fn check_same_run(sha: &str, feature_dim: Option<usize>, now: &RunInfo) -> Result<()> {
    if sha != now.model_sha256 {
        return Err(Error::InvalidOption(format!(
            "--resume: the earlier run used model sha256 {sha}, this one {}; use the same model or start a new output",
            now.model_sha256
        )));
    }
    if feature_dim != now.feature_dim {
        return Err(Error::InvalidOption(
            "--resume: the earlier run had a different --features setting; use the same options"
                .into(),
        ));
    }
    Ok(())
}

fn schema_has_features(path: &Path) -> Result<bool> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::Output(format!("reading {}: {e}", path.display())))?;
    Ok(builder.schema().field_with_name("features").is_ok())
}
