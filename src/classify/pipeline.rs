//! The topology: every stage and channel of `classify` is wired here, and only here.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parquet::file::metadata::KeyValue;
use tokio::sync::mpsc::channel;

use super::budget::MemoryBudget;
use super::mirror::Mirror;
use super::output::{self, meta};
use super::preflight::preflight;
use super::resume::{Earlier, earlier, feature_dim, input_keys, member_columns, normalised};
use super::stages::walk::SourceConfig;
use super::stages::{batch, decode, fetch, infer, locate, sink, tensorize, walk};
use super::staging::{self, OutputLock, RunInfo};
use super::{ClassifySettings, Summary};
use crate::error::{Error, Result};
use crate::model::classifier::Classifier;
use crate::vision::decode::DecodeTarget;
use crate::vision::faces::{FaceFinder, FaceMode};

/// Runs `classify` end to end. `cancel` is set by Ctrl-C (or a caller) to stop intake;
/// finished rows are still written and the output is left valid.
/// With `mirror`, every durable step is mirrored to an object store ([`super::objects`]).
pub fn run(
    s: &ClassifySettings,
    cancel: Arc<AtomicBool>,
    mirror: Option<&Mirror>,
) -> Result<Summary> {
    let started = Instant::now();
    let s = &normalised(s);
    preflight(s)?;
    // One process per output, for the whole run (see `staging`).
    let _lock = OutputLock::acquire(&s.out)?;
    let (mut opened, parts, finder) = open(s)?;
    if let Some(m) = mirror {
        // The store's parts folder now holds what the local one does: what this run
        // continues from, and its run record.
        m.sync_folder(&opened.parts_dir)?;
    }
    let parts = parts.mirrored(mirror.cloned());
    // The files already done move into the walk's skip set (no copy: a resumed run of a
    // million files holds them once).
    let done = std::mem::take(&mut opened.earlier.done);
    let streamed = stream(s, &opened, parts, finder, done, cancel.clone())?;
    let interrupted = cancel.load(Ordering::SeqCst);
    publish(s, opened, streamed, interrupted, started, mirror)
}

/// What a run knows before its first image: the model, the output's schema, and what an
/// earlier attempt left.
struct Opened {
    classifier: Arc<Classifier>,
    model_version: String,
    model_path: String,
    faces_json: String,
    feature_dim: Option<usize>,
    columns: output::Columns,
    schema: arrow::datatypes::SchemaRef,
    parts_dir: PathBuf,
    earlier: Earlier,
}

/// Loads the model (a session per inference worker) and the face finder, and reads what an
/// earlier attempt of this output left; records the run in `OUT.parts/run.json` and opens
/// the part writer.
fn open(s: &ClassifySettings) -> Result<(Opened, output::PartWriter, FaceFinder)> {
    let classifier = Classifier::load_pooled(&s.model, s.precision, &s.session, s.infer_workers)?;
    let card = &classifier.card;
    let model_version = crate::model::card::model_version(&classifier.onnx_path);
    let model_path = classifier.onnx_path.display().to_string();
    tracing::info!(model = %card.name, version = %model_version, precision = %classifier.precision, path = %model_path, "model");
    let detector_session = crate::onnx::SessionOptions {
        intra_threads: 1,
        ..s.session.clone()
    };
    // One detector session per core at most: the locate threads share them (more would only
    // add each session's working memory, docs/operations.md).
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let detectors = s.threads.clamp(1, cores);
    let finder = FaceFinder::for_model(card.faces(), &s.faces, &detector_session, detectors)?;
    let faces_json = finder.identity();
    tracing::info!(mode = %finder.mode, detector = finder.detector.as_ref().map(|d| d.info.name.as_str()).unwrap_or("none"), "faces");
    let labels = card.labels.clone();
    let feature_dim = feature_dim(s, card)?;
    let columns = output::Columns {
        labels: labels.clone(),
        feature_dim,
        members: member_columns(s, card)?,
        model: format!("{}/{model_version}", card.name),
    };
    let schema = output::schema(&columns);
    let parts_dir = output::parts_dir(&s.out);
    let info = RunInfo {
        run_id: uuid::Uuid::new_v4().to_string(),
        started_at: crate::fsutil::now_rfc3339(),
        model_sha256: classifier.onnx_sha256.clone(),
        labels: labels.clone(),
        feature_dim,
        members: columns.members.clone(),
        faces: faces_json.clone(),
        inputs: input_keys(&s.inputs),
        parts_id: String::new(),
    };
    let mut earlier = earlier(s, info)?;
    if earlier.info.parts_id.is_empty() {
        // A new parts folder (a resumed one keeps its id).
        earlier.info.parts_id = uuid::Uuid::new_v4().to_string();
    }
    fs_err::create_dir_all(&parts_dir)?;
    staging::write_json(&staging::run_json(&parts_dir), &earlier.info)?;
    let parts =
        output::PartWriter::open(parts_dir.clone(), columns.clone(), &earlier.info.parts_id)?;
    let opened = Opened {
        classifier: Arc::new(classifier),
        model_version,
        model_path,
        faces_json,
        feature_dim,
        columns,
        schema,
        parts_dir,
        earlier,
    };
    Ok((opened, parts, finder))
}

/// What the stages did.
struct Streamed {
    skipped: walk::Skipped,
    files: u64,
    sink: sink::SinkResult,
    stages: Vec<super::StageStats>,
}

/// The topology: every stage on its own thread, joined by bounded channels. This is the
/// one place where stages meet; each knows only its input and output channel.
// Long on purpose: the channels, the stages and the joins read best as one picture.
fn stream(
    s: &ClassifySettings,
    o: &Opened,
    parts: output::PartWriter,
    finder: FaceFinder,
    done: std::collections::HashMap<(String, String), Option<output::Fingerprint>>,
    cancel: Arc<AtomicBool>,
) -> Result<Streamed> {
    let threads = s.threads.max(1);
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
        .map_err(|source| Error::Threads {
            what: format!("{threads} decode threads"),
            source,
        })?;
    let pool = Arc::new(pool);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    let skip = Arc::new(walk::Skip {
        done,
        shard: s.shard,
    });
    // An incremental job run: the merge join with what earlier runs classified, which
    // writes this run's fingerprint index beside its output.
    let join = s.seen.as_ref().map(|seen| {
        super::seen::Join::new(
            seen.clone(),
            super::seen::staged(&s.out),
            &o.earlier.info.run_id,
        )
    });
    let specs = o.classifier.card.inputs();
    let target = decode_target(s, &finder, &specs);
    let chunk = threads * 2;
    let result = runtime.block_on(async {
        // Bounded channels: memory is set by these capacities, not by the number of images.
        let (file_tx, file_rx) = channel(256);
        let (fetched_tx, fetched_rx) = channel(s.read_concurrency.max(1));
        let (decoded_tx, decoded_rx) = channel(chunk);
        let (located_tx, located_rx) = channel(chunk);
        let (prepared_tx, prepared_rx) = channel(s.batch_size * 2);
        // Many inference workers take from this one: a multi-consumer channel.
        let (batch_tx, batch_rx) = async_channel::bounded(2);
        let (rows_tx, rows_rx) = channel(4);
        if progress.is_shown() {
            count_for_progress(
                s,
                &source_config,
                skip.done.len() as u64,
                &progress,
                &cancel,
            );
        }
        let src = tokio::task::spawn_blocking({
            let (skip, cancel) = (skip.clone(), cancel.clone());
            move || walk::run(source_config, skip, join, cancel, file_tx)
        });
        let fet = tokio::task::spawn_blocking({
            let (n, max) = (s.read_concurrency, s.limits.max_file_bytes);
            move || fetch::run(file_rx, fetched_tx, n, max)
        });
        let dec = tokio::task::spawn_blocking({
            let (pool, limits, cancel) = (pool.clone(), s.limits, cancel.clone());
            let budget = MemoryBudget::new(s.decode_memory);
            move || {
                decode::run(
                    fetched_rx, decoded_tx, limits, target, chunk, &pool, budget, cancel,
                )
            }
        });
        let det = tokio::task::spawn_blocking({
            let (pool, save, cancel) = (pool.clone(), crop_dir, cancel.clone());
            move || locate::run(decoded_rx, located_tx, &finder, save, chunk, &pool, &cancel)
        });
        let pre = tokio::task::spawn_blocking({
            let pool = pool.clone();
            move || tensorize::run(located_rx, prepared_tx, specs, chunk, &pool)
        });
        let bat = tokio::task::spawn_blocking({
            let n = s.batch_size;
            move || batch::run(prepared_rx, batch_tx, n)
        });
        let inf = tokio::task::spawn_blocking({
            let (classifier, workers) = (o.classifier.clone(), s.infer_workers);
            let want = infer::Extras {
                features: s.features,
                member_probs: !o.columns.members.is_empty(),
            };
            move || infer::run(batch_rx, rows_tx, &classifier, workers, want)
        });
        let snk = tokio::task::spawn_blocking({
            let (rows, bar) = (s.checkpoint_rows, progress.clone());
            move || sink::run(rows_rx, parts, rows, bar)
        });
        (
            src.await,
            fet.await,
            dec.await,
            det.await,
            pre.await,
            bat.await,
            inf.await,
            snk.await,
        )
    });
    progress.finish_and_clear();
    let join = Error::Stage;
    let (walked, fet, dec, det, pre, bat, inf, snk) = (
        result.0.map_err(join)?,
        result.1.map_err(join)?,
        result.2.map_err(join)?,
        result.3.map_err(join)?,
        result.4.map_err(join)?,
        result.5.map_err(join)?,
        result.6.map_err(join)?,
        result.7.map_err(join)?,
    );
    let sink = snk?;
    // A listing that failed part-way is fatal; the rows finished so far stay in the parts,
    // and `--resume` continues from them.
    let (src_stats, skipped) = walked?;
    // The files the sink wrote: the decode stage also counts files that an interrupt
    // dropped before they reached the sink.
    let files = sink.files;
    let stages = vec![src_stats, fet, dec, det, pre, bat, inf, sink.stats.clone()];
    Ok(Streamed {
        skipped,
        files,
        sink,
        stages,
    })
}

/// The resolution the next step needs: the detector's input, or the model input of a
/// whole-image crop. JPEGs are decoded at the smallest DCT scale that still gives it.
fn decode_target(
    s: &ClassifySettings,
    finder: &FaceFinder,
    specs: &[crate::vision::decode::InputSpec],
) -> DecodeTarget {
    let target = if s.full_decode {
        DecodeTarget::Full
    } else if finder.mode == FaceMode::Whole {
        // Enough pixels for the largest member input.
        let w = specs.iter().map(|s| s.width).max().unwrap_or(1);
        let h = specs.iter().map(|s| s.height).max().unwrap_or(1);
        DecodeTarget::Cover((w, h))
    } else {
        DecodeTarget::LongSide(finder.settings.max_side)
    };
    tracing::debug!(?target, "decode target");
    target
}

/// A second, counting walk only for the progress's length and ETA (with `--no-progress`,
/// the tree is walked once).
fn count_for_progress(
    s: &ClassifySettings,
    config: &SourceConfig,
    already: u64,
    bar: &crate::progress::Progress,
    cancel: &Arc<AtomicBool>,
) {
    let (config, cancel, bar, shard) = (config.clone(), cancel.clone(), bar.clone(), s.shard);
    std::thread::spawn(move || {
        if let Some(n) = walk::count(&config, shard, &cancel) {
            bar.set_length(n.saturating_sub(already));
        }
    });
}

/// Publishes the run: the earlier output and the parts become `OUT` with the run's metadata,
/// atomically (the commit record first, so an interrupted merge is finished by the next
/// run), then the parts are removed.
fn publish(
    s: &ClassifySettings,
    o: Opened,
    r: Streamed,
    interrupted: bool,
    started: Instant,
    mirror: Option<&Mirror>,
) -> Result<Summary> {
    let mut sources = Vec::new();
    if o.earlier.out {
        sources.push(s.out.clone());
    }
    sources.extend(output::list_parts(&o.parts_dir)?);
    let merge_id = uuid::Uuid::new_v4().to_string();
    let (metadata, feature_stats) = metadata(s, &o, &r.sink, interrupted, &merge_id)?;
    // The commit record first: once OUT carries this merge id, it holds every part.
    crate::failpoint::hit("commit")?;
    let record = staging::commit_json(&o.parts_dir);
    staging::write_json(&record, &staging::Commit { merge_id })?;
    if let Some(m) = mirror {
        m.put_commit(&record)?;
    }
    let totals = output::merge(&sources, &s.out, &o.schema, metadata)?;
    if let Some(m) = mirror {
        // The store's commit point: the merged file appears whole or not at all.
        m.publish(&s.out)?;
    }
    staging::clean_up(&s.out, feature_stats.as_deref())?;
    if let Some(m) = mirror {
        m.put_or_delete(&output::stats_path(&s.out))?;
        m.sync_folder(&o.parts_dir)?;
    }

    let elapsed = started.elapsed();
    let sink = r.sink;
    let rows = sink.ok + sink.errors + sink.no_face;
    Ok(Summary {
        out: s.out.clone(),
        rows,
        files: r.files,
        ok: sink.ok,
        errors: sink.errors,
        model_errors: sink.model_errors,
        failed: sink.failed,
        no_face: sink.no_face,
        already_done: r.skipped.done,
        output: totals,
        unchanged: r.skipped.unchanged,
        links_skipped: r.skipped.links,
        interrupted,
        elapsed,
        images_per_second: r.files as f64 / elapsed.as_secs_f64().max(1e-9),
        stages: r.stages,
    })
}

/// The output's key-value metadata (docs/output-schema.md), and the run's feature
/// statistics as JSON when `--features` is on.
fn metadata(
    s: &ClassifySettings,
    o: &Opened,
    sink: &sink::SinkResult,
    interrupted: bool,
    merge_id: &str,
) -> Result<(Vec<KeyValue>, Option<String>)> {
    let card = &o.classifier.card;
    let info = &o.earlier.info;
    let json = |context: &str, v: Result<String, serde_json::Error>| {
        v.map_err(|e| Error::Json {
            context: context.into(),
            source: e,
        })
    };
    let card_json = json("encoding the model card", serde_json::to_string(card))?;
    let inputs_json = json("encoding the inputs", serde_json::to_string(&info.inputs))?;
    let kv = |k: &str, v: String| KeyValue::new(k.to_string(), v);
    let shard = s.shard.unwrap_or(crate::classify::shard::Shard::ALL);
    let status = if interrupted {
        "interrupted"
    } else {
        "complete"
    };
    let mut metadata = vec![
        kv(meta::VERSION, env!("CARGO_PKG_VERSION").to_string()),
        kv(meta::RUN_ID, info.run_id.clone()),
        kv(meta::STARTED, info.started_at.clone()),
        kv(meta::FINISHED, crate::fsutil::now_rfc3339()),
        kv(meta::MODEL_SHA256, info.model_sha256.clone()),
        kv(meta::MODEL_NAME, card.name.clone()),
        kv(meta::MODEL_VERSION, o.model_version.clone()),
        kv(meta::MODEL_PATH, o.model_path.clone()),
        kv(meta::MODEL_PRECISION, o.classifier.precision.to_string()),
        kv(meta::SHARD, shard.to_string()),
        kv(meta::MODEL_CARD, card_json),
        kv(meta::FACES, o.faces_json.clone()),
        kv(meta::INPUTS, inputs_json),
        kv(meta::STATUS, status.to_string()),
        kv(meta::MERGE_ID, merge_id.to_string()),
        kv(meta::MERGED_PARTS, info.parts_id.clone()),
        kv(meta::BASE, crate::fsutil::working_dir_key()),
    ];
    let mut feature_stats = None;
    if !o.columns.members.is_empty() {
        metadata.push(kv(
            meta::MEMBERS,
            json(
                "encoding the member names",
                serde_json::to_string(&o.columns.members),
            )?,
        ));
    }
    if let Some(dim) = o.feature_dim {
        metadata.push(kv(meta::FEATURE_DIM, dim.to_string()));
        let mut all = o.earlier.features.clone();
        all.merge(&sink.features);
        all.finish();
        let text = json(
            "encoding the feature statistics",
            serde_json::to_string_pretty(&all),
        )?;
        metadata.push(kv(meta::FEATURE_STATS, text.clone()));
        feature_stats = Some(text);
    }
    Ok((metadata, feature_stats))
}
