//! `facebatch train`: data loading, the training loop with checkpoints and resume, and the
//! export of model, card and reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::align::AlignSpec;
use crate::augment::Augment;
use crate::card::{
    ArchitectureInfo, CARD_FILE, CARD_FORMAT, DataSourceInfo, MODEL_FILE, ModelCard, OnnxInfo,
    OutputSpec, TrainingInfo,
};
use crate::data::{self, Sample, Source, Split, SplitSpec};
use crate::detect::{DetectSettings, Detector};
use crate::error::{Error, Result};
use crate::eval::{GroupBy, evaluate, write_report};
use crate::faces::{CropKind, FaceFinder, FaceMode};
use crate::fsutil::write_atomic;
use crate::infer::{Classifier, SessionOptions};
use crate::model::{Arch, Net};
use crate::plot::{EpochRecord, StepRecord, training_curves};
use crate::preprocess::{DecodeLimits, InputSpec, load_rgb};

/// Validated settings for one training run.
#[derive(Clone, Debug)]
pub struct TrainSettings {
    pub sources: Vec<Source>,
    pub out_dir: PathBuf,
    pub name: String,
    pub arch: Arch,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f32,
    pub label_smoothing: f32,
    pub patience: usize,
    pub split: SplitSpec,
    pub seed: u64,
    pub augment: Augment,
    /// Use at most this many images (seeded, stratified by label); for quick runs.
    pub max_images: Option<usize>,
    /// Stop each epoch after this many steps; for quick runs.
    pub max_steps_per_epoch: Option<usize>,
    pub resume: bool,
    /// Start from this earlier model's best weights (fine-tuning).
    pub init: Option<PathBuf>,
    pub licence_notes: Vec<String>,
    pub group_by: Vec<GroupBy>,
    pub session: SessionOptions,
    pub progress: bool,
    /// Detect and align every training image (the `auto` face rule).
    pub align: AlignChoice,
    /// Zoom of the alignment template (see [`crate::align::DEFAULT_ZOOM`]).
    pub align_zoom: f32,
    /// Explicit detector ONNX file (else the verified cache / download).
    pub detector: Option<PathBuf>,
    pub detect: DetectSettings,
    /// Record test-time flip averaging in the card (the card's `test_time_flip`).
    pub test_time_flip: bool,
}

/// Whether training aligns faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignChoice {
    /// Align when the detector can be loaded; otherwise warn and train on whole crops.
    Auto,
    /// Align; fail if the detector is unavailable.
    On,
    Off,
}

/// A decoded, fitted image held in memory for training.
struct Item {
    sample: Sample,
    sha256: String,
    label: usize,
}

/// How an image's subject face was cropped, its pixels (HxWx3) and, for aligned crops,
/// its photo coverage (HxW).
type SubjectPixels = (CropKind, Vec<u8>, Option<Vec<u8>>);

/// The whole dataset in memory: items plus their fitted pixels, HxWx3 each.
struct Prepared {
    labels: Vec<String>,
    items: Vec<Item>,
    pixels: Vec<u8>,
    /// How much of each pixel came from the photo, HxW each (255 for whole crops).
    coverage: Vec<u8>,
    splits: Vec<Split>,
    sources: Vec<DataSourceInfo>,
}

/// Loads the detector and builds the face finder training uses, per `settings.align`.
fn face_finder(settings: &TrainSettings, spec: &InputSpec) -> Result<Option<FaceFinder>> {
    if settings.align == AlignChoice::Off {
        return Ok(None);
    }
    let workers = rayon::current_num_threads();
    let detector = match Detector::load(settings.detector.as_deref(), &settings.session, workers) {
        Ok(d) => d,
        Err(e) if settings.align == AlignChoice::Auto => {
            tracing::warn!(error = %e, "face detector unavailable: training on whole crops without alignment (pass --align to require it)");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let align = AlignSpec::standard(
        spec.height,
        spec.width,
        settings.align_zoom,
        detector.info.clone(),
        settings.detect.threshold,
        settings.detect.max_side,
    );
    Ok(Some(FaceFinder {
        mode: FaceMode::Auto,
        detector: Some(detector),
        settings: settings.detect.clone(),
        align,
        input: spec.clone(),
    }))
}

fn prepare(
    settings: &TrainSettings,
    spec: &InputSpec,
    finder: Option<&FaceFinder>,
) -> Result<Prepared> {
    let samples = data::read_sources(&settings.sources)?;
    let listed = samples.len();
    let (mut unique, dedup) = data::dedup(samples);
    tracing::info!(
        listed,
        unique = unique.len(),
        duplicates_removed = dedup.duplicates_removed,
        conflicting_removed = dedup.conflicting_removed,
        "deduplicated by content hash"
    );
    if let Some(max) = settings.max_images.filter(|m| *m < unique.len()) {
        // Seeded, label-stratified subsample for quick runs.
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x5EED);
        unique.shuffle(&mut rng);
        let mut by_label: BTreeMap<String, Vec<(Sample, String)>> = BTreeMap::new();
        for u in unique {
            by_label.entry(u.0.label.clone()).or_default().push(u);
        }
        let total: usize = by_label.values().map(Vec::len).sum();
        unique = by_label
            .into_values()
            .flat_map(|v| {
                let take = ((v.len() * max) as f64 / total as f64).ceil() as usize;
                v.into_iter().take(take.max(1))
            })
            .collect();
        unique.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    }
    let (w, h) = (spec.width as usize, spec.height as usize);
    let limits = DecodeLimits::default();
    let t = Instant::now();
    // Each image's subject face, aligned (or the whole crop, per the `auto` rule).
    let decoded: Vec<Result<Option<SubjectPixels>>> = unique
        .par_iter()
        .map(|(s, _)| {
            let img = load_rgb(&s.path, limits)?;
            Ok(match finder {
                Some(f) => f
                    .subject(&img)?
                    .map(|c| (c.kind, c.image.into_raw(), c.coverage.map(|g| g.into_raw()))),
                None => Some((CropKind::Whole, spec.fit(&img).into_raw(), None)),
            })
        })
        .collect();
    if finder.is_some() {
        tracing::info!(
            images = unique.len(),
            seconds = t.elapsed().as_secs_f64(),
            "faces detected and aligned"
        );
    }
    let mut unreadable: Vec<String> = dedup.unreadable.clone();
    let mut removals = dedup.by_source.clone();
    let mut face_counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut pixels = Vec::with_capacity(unique.len() * w * h * 3);
    let mut coverage = Vec::with_capacity(unique.len() * w * h);
    let mut partial = 0usize;
    for ((s, hash), d) in unique.into_iter().zip(decoded) {
        let counts = face_counts.entry(s.source.clone()).or_default();
        match d {
            Ok(None) => counts[2] += 1,
            Ok(Some((kind, px, cov))) => {
                counts[usize::from(kind == CropKind::Whole)] += 1;
                pixels.extend_from_slice(&px);
                match cov {
                    Some(c) => {
                        partial += usize::from(c.iter().any(|&v| v < 255));
                        coverage.extend_from_slice(&c);
                    }
                    None => coverage.resize(coverage.len() + w * h, 255),
                }
                kept.push((s, hash));
            }
            Err(e) => {
                removals.entry(s.source.clone()).or_default().unreadable += 1;
                unreadable.push(e.to_string());
            }
        }
    }
    if finder.is_some() {
        let out_of_photo =
            coverage.iter().filter(|&&v| v < 128).count() as f64 / coverage.len().max(1) as f64;
        tracing::info!(
            crops_reaching_past_the_photo = partial,
            share_of_pixels_outside = out_of_photo,
            "aligned crops that reach past their source image"
        );
    }
    if !unreadable.is_empty() {
        tracing::warn!(
            count = unreadable.len(),
            first = %unreadable.iter().take(5).cloned().collect::<Vec<_>>().join(" | "),
            "skipped unreadable images"
        );
    }
    let all: Vec<Sample> = kept.iter().map(|(s, _)| s.clone()).collect();
    let labels = data::label_set(&all)?;
    let items: Vec<Item> = kept
        .into_iter()
        .map(|(sample, sha256)| {
            let label = labels.iter().position(|l| *l == sample.label).unwrap_or(0);
            Item {
                sample,
                sha256,
                label,
            }
        })
        .collect();
    let label_idx: Vec<usize> = items.iter().map(|i| i.label).collect();
    let splits = data::stratified_split(&label_idx, settings.split);
    let mut sources: BTreeMap<String, DataSourceInfo> = BTreeMap::new();
    for src in &settings.sources {
        let (kind, location) = match src {
            Source::Folder(p) => ("folder", p.display().to_string()),
            Source::Csv { path, .. } => ("csv", path.display().to_string()),
        };
        sources.insert(
            src.name(),
            DataSourceInfo {
                name: src.name(),
                kind: kind.into(),
                location,
                per_class: BTreeMap::new(),
                duplicates_removed: 0,
                conflicting_labels_removed: 0,
                unreadable_skipped: 0,
                aligned: None,
                whole_fallback: None,
                no_face_skipped: None,
            },
        );
    }
    for it in &items {
        if let Some(info) = sources.get_mut(&it.sample.source) {
            *info.per_class.entry(it.sample.label.clone()).or_default() += 1;
        }
    }
    for (name, info) in sources.iter_mut() {
        let r = removals.get(name).cloned().unwrap_or_default();
        info.duplicates_removed = r.duplicates;
        info.conflicting_labels_removed = r.conflicting;
        info.unreadable_skipped = r.unreadable;
        if finder.is_some() {
            let c = face_counts.get(name).copied().unwrap_or_default();
            (info.aligned, info.whole_fallback, info.no_face_skipped) =
                (Some(c[0]), Some(c[1]), Some(c[2]));
            if c[2] > 0 {
                tracing::warn!(source = %name, images = c[2], "no face found; left out of training");
            }
        }
    }
    Ok(Prepared {
        labels,
        items,
        pixels,
        coverage,
        splits,
        sources: sources.into_values().collect(),
    })
}

/// Checkpointed training state, for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    fingerprint: String,
    epochs_done: usize,
    global_step: usize,
    best_val_accuracy: f64,
    best_epoch: usize,
    stale_epochs: usize,
    steps: Vec<StepRecord>,
    epochs: Vec<EpochRecord>,
}

fn fingerprint(s: &TrainSettings, labels: &[String], n: usize) -> String {
    format!(
        "{}|{:?}|{}|{}|{}|{:?}|{}|align={:?}/{}|init={:?}",
        s.arch.name(),
        labels,
        n,
        s.batch_size,
        s.seed,
        s.max_images,
        s.split.seed,
        s.align != AlignChoice::Off,
        s.align_zoom,
        s.init
    )
}

/// Loads the best weights of the earlier model in `dir` into `net`, after checking that its
/// card matches this run. Returns the network and what to record about its origin.
fn init_weights(
    net: Net,
    dir: &Path,
    arch: Arch,
    labels: &[String],
    spec: &InputSpec,
    load: bool,
) -> Result<(Net, serde_json::Value)> {
    let card = ModelCard::load(&dir.join(CARD_FILE))?;
    let mismatch = |what: &str, theirs: String, ours: String| {
        Error::InvalidOption(format!(
            "--init {}: its {what} ({theirs}) differs from this run's ({ours})",
            dir.display()
        ))
    };
    if card.architecture.name != arch.name() {
        return Err(mismatch(
            "architecture",
            card.architecture.name,
            arch.name().into(),
        ));
    }
    if card.labels != labels {
        return Err(mismatch(
            "labels",
            format!("{:?}", card.labels),
            format!("{labels:?}"),
        ));
    }
    if card.input.width != spec.width || card.input.height != spec.height {
        return Err(mismatch(
            "input size",
            format!("{}x{}", card.input.width, card.input.height),
            format!("{}x{}", spec.width, spec.height),
        ));
    }
    let weights = dir.join("checkpoints").join("best.bpk");
    let net = if load {
        net.try_load_file(&weights)
            .map_err(|e| Error::Training(format!("--init: loading {}: {e:?}", weights.display())))?
    } else {
        net
    };
    tracing::info!(model = %card.name, onnx_sha256 = %card.onnx.sha256, "fine-tuning from an earlier model");
    Ok((
        net,
        serde_json::json!({
            "name": card.name,
            "onnx_sha256": card.onnx.sha256,
            "created": card.created,
        }),
    ))
}

/// Learning rate: linear warm-up, then cosine decay to 2% of the peak.
fn lr_at(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    let floor = 0.02 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

fn batch_tensor(
    prepared: &Prepared,
    idx: &[usize],
    spec: &InputSpec,
    augment: Option<(&Augment, u64)>,
    device: &Device,
) -> (Tensor<4>, Vec<usize>) {
    let per = spec.len();
    let frame = (spec.width * spec.height * 3) as usize;
    let mut buf = vec![0f32; idx.len() * per];
    buf.par_chunks_mut(per)
        .zip(idx.par_iter())
        .for_each(|(out, &i)| {
            let px = &prepared.pixels[i * frame..(i + 1) * frame];
            match augment {
                Some((aug, seed)) => {
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        seed ^ (i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D),
                    );
                    let plane = frame / 3;
                    let coverage = &prepared.coverage[i * plane..(i + 1) * plane];
                    let d = rng.random_range(0..prepared.items.len());
                    let donor = &prepared.pixels[d * frame..(d + 1) * frame];
                    aug.apply(px, Some(coverage), Some(donor), spec, &mut rng, out);
                }
                None => {
                    let img = image::RgbImage::from_raw(spec.width, spec.height, px.to_vec())
                        .expect("frame size matches the spec");
                    spec.write_tensor(&img, out);
                }
            }
        });
    let shape = [idx.len(), 3, spec.height as usize, spec.width as usize];
    let labels = idx.iter().map(|&i| prepared.items[i].label).collect();
    (
        Tensor::<4>::from_data(TensorData::new(buf, shape), device),
        labels,
    )
}

/// One optimisation step's machinery: Adam and the cross-entropy loss.
pub struct Stepper {
    pub optim: ModuleOptimizer,
    loss: CrossEntropyLoss,
}

impl Stepper {
    /// Adam with optional L2 weight decay, and cross-entropy with optional label smoothing.
    pub fn new(weight_decay: f32, label_smoothing: f32, device: &Device) -> Self {
        Stepper {
            optim: AdamConfig::new()
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)),
                )
                .init(),
            loss: CrossEntropyLossConfig::new()
                .with_smoothing((label_smoothing > 0.0).then_some(label_smoothing))
                .init(device),
        }
    }

    /// Forward, backward and update on one batch. Returns the updated network, the batch
    /// loss and the number of correct predictions.
    pub fn step(
        &mut self,
        net: Net,
        x: Tensor<4>,
        labels: &[usize],
        lr: f64,
        device: &Device,
    ) -> (Net, f32, usize) {
        let targets = Tensor::<1, Int>::from_data(
            TensorData::new(
                labels.iter().map(|&l| l as i64).collect::<Vec<_>>(),
                [labels.len()],
            ),
            device,
        );
        let outputs = net.forward(x);
        let classes = outputs.logits.dims()[1];
        let loss = self.loss.forward(outputs.logits.clone(), targets);
        let loss_value = loss.clone().into_scalar::<f32>();
        let logits = outputs
            .logits
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        let correct = argmax_rows(&logits, classes)
            .iter()
            .zip(labels)
            .filter(|(p, t)| p == t)
            .count();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        (self.optim.step(lr, net, grads), loss_value, correct)
    }
}

fn argmax_rows(values: &[f32], classes: usize) -> Vec<usize> {
    values
        .chunks(classes)
        .map(|row| {
            let mut best = 0;
            for (k, v) in row.iter().enumerate() {
                if *v > row[best] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

/// Loss and accuracy of the eval-mode network over `idx`.
fn validate(
    net: &Net,
    prepared: &Prepared,
    idx: &[usize],
    spec: &InputSpec,
    classes: usize,
) -> (f64, f64) {
    if idx.is_empty() {
        return (0.0, 0.0);
    }
    let model = net.valid();
    let device = Device::default();
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    for chunk in idx.chunks(128) {
        let (x, labels) = batch_tensor(prepared, chunk, spec, None, &device);
        let probs = model
            .forward(x)
            .probs
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default();
        for (row, &t) in probs.chunks(classes).zip(&labels) {
            loss_sum -= (row[t].max(1e-7) as f64).ln();
        }
        correct += argmax_rows(&probs, classes)
            .iter()
            .zip(&labels)
            .filter(|(p, t)| p == t)
            .count();
    }
    (
        loss_sum / idx.len() as f64,
        correct as f64 / idx.len() as f64,
    )
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

/// What a training run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The model directory (model.onnx, card.json, reports/, splits/).
    pub dir: PathBuf,
    /// The exported model's report on the test split, when there is one.
    pub test_report: Option<crate::metrics::Report>,
}

/// Runs a full training and exports the best checkpoint.
pub fn train(settings: &TrainSettings) -> Result<TrainOutcome> {
    settings.split.validate()?;
    let (h, w) = settings.arch.input_size();
    let spec = InputSpec::standard(h, w);
    let out = &settings.out_dir;
    let ckpt = out.join("checkpoints");
    let reports = out.join("reports");
    let splits_dir = out.join("splits");
    for d in [out, &ckpt, &reports, &splits_dir] {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }

    let t0 = Instant::now();
    let finder = face_finder(settings, &spec)?;
    let prepared = prepare(settings, &spec, finder.as_ref())?;
    let classes = prepared.labels.len();
    let idx_of = |s: Split| -> Vec<usize> {
        prepared
            .splits
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == s)
            .map(|(i, _)| i)
            .collect()
    };
    let (train_idx, val_idx, test_idx) = (
        idx_of(Split::Train),
        idx_of(Split::Val),
        idx_of(Split::Test),
    );
    if train_idx.is_empty() {
        return Err(Error::Dataset(
            "no images left for training after the split".into(),
        ));
    }
    for (name, idx) in [
        ("train", &train_idx),
        ("val", &val_idx),
        ("test", &test_idx),
    ] {
        let rows: Vec<(&Sample, &str)> = idx
            .iter()
            .map(|&i| (&prepared.items[i].sample, prepared.items[i].sha256.as_str()))
            .collect();
        data::write_manifest(&splits_dir.join(format!("{name}.csv")), &rows)?;
    }
    tracing::info!(
        train = train_idx.len(),
        val = val_idx.len(),
        test = test_idx.len(),
        labels = ?prepared.labels,
        seconds = t0.elapsed().as_secs_f64(),
        "data ready"
    );

    let device = Device::default().autodiff();
    device.seed(settings.seed);
    let mut net = Net::new(settings.arch, classes, &device);
    let mut stepper = Stepper::new(settings.weight_decay, settings.label_smoothing, &device);

    let steps_per_epoch = {
        let full = train_idx.len().div_ceil(settings.batch_size);
        settings.max_steps_per_epoch.map_or(full, |m| m.min(full))
    };
    let total_steps = steps_per_epoch * settings.epochs;
    let warmup = steps_per_epoch.clamp(1, 300);
    let fp = fingerprint(settings, &prepared.labels, prepared.items.len());
    let state_path = ckpt.join("state.json");
    let mut state = State {
        fingerprint: fp.clone(),
        epochs_done: 0,
        global_step: 0,
        best_val_accuracy: -1.0,
        best_epoch: 0,
        stale_epochs: 0,
        steps: Vec::new(),
        epochs: Vec::new(),
    };
    let mut resumed = false;
    if settings.resume {
        if state_path.is_file() {
            resumed = true;
            let text = std::fs::read_to_string(&state_path)
                .map_err(io(format!("reading {}", state_path.display())))?;
            let saved: State = serde_json::from_str(&text).map_err(|e| Error::Json {
                context: format!("reading {}", state_path.display()),
                source: e,
            })?;
            if saved.fingerprint != fp {
                return Err(Error::InvalidOption(format!(
                    "--resume: the checkpoint in {} was made with different data or settings ({} vs {fp})",
                    ckpt.display(),
                    saved.fingerprint
                )));
            }
            net = net
                .try_load_file(ckpt.join("last.bpk"))
                .map_err(|e| Error::Training(format!("loading checkpoint: {e:?}")))?;
            stepper.optim = stepper
                .optim
                .load(ckpt.join("last-optim.bpk"))
                .map_err(|e| Error::Training(format!("loading optimizer state: {e:?}")))?;
            tracing::info!(
                epochs_done = saved.epochs_done,
                step = saved.global_step,
                "resumed from checkpoint"
            );
            state = saved;
        } else {
            tracing::warn!(dir = %ckpt.display(), "--resume: no checkpoint yet, starting fresh");
        }
    }

    let init_from = match &settings.init {
        Some(dir) => {
            // A resumed run already holds its own later weights: check and record only.
            let (loaded, from) =
                init_weights(net, dir, settings.arch, &prepared.labels, &spec, !resumed)?;
            net = loaded;
            Some(from)
        }
        None => None,
    };

    let params = net.num_params();
    tracing::info!(
        arch = settings.arch.name(),
        params,
        steps_per_epoch,
        epochs = settings.epochs,
        "training"
    );
    let progress = if settings.progress {
        indicatif::ProgressBar::new(total_steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_position(state.global_step as u64);

    while state.epochs_done < settings.epochs
        && (state.stale_epochs < settings.patience || state.epochs_done == 0)
    {
        let epoch = state.epochs_done + 1;
        let started = Instant::now();
        let mut order = train_idx.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            settings.seed.wrapping_add(epoch as u64 * 7919),
        ));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = settings.lr;
        for (b, chunk) in order
            .chunks(settings.batch_size)
            .take(steps_per_epoch)
            .enumerate()
        {
            lr = lr_at(state.global_step, warmup, total_steps, settings.lr);
            let seed = settings.seed ^ ((epoch as u64) << 32) ^ b as u64;
            let (x, labels) = batch_tensor(
                &prepared,
                chunk,
                &spec,
                Some((&settings.augment, seed)),
                &device,
            );
            let (next, loss_value, batch_correct) = stepper.step(net, x, &labels, lr, &device);
            net = next;
            if !loss_value.is_finite() {
                return Err(Error::Training(format!(
                    "loss became {loss_value} at step {}; lower --lr",
                    state.global_step
                )));
            }

            state.global_step += 1;
            loss_sum += loss_value as f64 * chunk.len() as f64;
            correct += batch_correct;
            seen += chunk.len();
            let acc = batch_correct as f32 / chunk.len() as f32;
            state.steps.push(StepRecord {
                step: state.global_step,
                epoch,
                loss: loss_value,
                accuracy: acc,
                lr,
            });
            progress.inc(1);
            progress.set_message(format!(
                "epoch {epoch}/{} loss {:.4} acc {:.3}",
                settings.epochs,
                loss_sum / seen as f64,
                correct as f64 / seen as f64
            ));
        }
        let (val_loss, val_acc) = validate(&net, &prepared, &val_idx, &spec, classes);
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_accuracy: val_acc,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress.println(format!(
            "epoch {epoch}: train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} | {:.0}s",
            record.train_loss, record.train_accuracy, val_loss, val_acc, record.seconds
        ));
        tracing::info!(
            epoch,
            train_loss = record.train_loss,
            train_accuracy = record.train_accuracy,
            val_loss,
            val_accuracy = val_acc,
            seconds = record.seconds,
            "epoch done"
        );
        state.epochs.push(record);
        state.epochs_done = epoch;
        if val_acc > state.best_val_accuracy {
            state.best_val_accuracy = val_acc;
            state.best_epoch = epoch;
            state.stale_epochs = 0;
            save_module(&net, &ckpt.join("best.bpk"))?;
        } else {
            state.stale_epochs += 1;
        }
        // Model, optimizer, then state last: the state names only what is on disk.
        save_module(&net, &ckpt.join("last.bpk"))?;
        let tmp = ckpt.join("last-optim.bpk.tmp");
        stepper
            .optim
            .save(&tmp)
            .map_err(|e| Error::Training(format!("saving optimizer state: {e:?}")))?;
        std::fs::rename(&tmp, ckpt.join("last-optim.bpk"))
            .map_err(io("saving optimizer state".into()))?;
        let text = serde_json::to_string(&state).map_err(|e| Error::Json {
            context: "checkpoint state".into(),
            source: e,
        })?;
        write_atomic(&state_path, text.as_bytes())?;
        write_logs(&reports, &state)?;
    }
    progress.finish_and_clear();
    if state.stale_epochs >= settings.patience && state.epochs_done < settings.epochs {
        tracing::info!(
            epoch = state.epochs_done,
            best_epoch = state.best_epoch,
            "early stopping"
        );
    }

    // Export the best checkpoint.
    let best = Net::new(settings.arch, classes, &Device::default())
        .try_load_file(ckpt.join("best.bpk"))
        .map_err(|e| Error::Training(format!("loading the best checkpoint: {e:?}")))?;
    let onnx = crate::export::export_onnx(&best, h as usize, w as usize, &prepared.labels)?;
    let onnx_path = out.join(MODEL_FILE);
    write_atomic(&onnx_path, &onnx)?;
    let sha = crate::fsutil::sha256_hex(&onnx);

    let mut split_counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (it, s) in prepared.items.iter().zip(&prepared.splits) {
        let key = match s {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        };
        *split_counts
            .entry(key.into())
            .or_default()
            .entry(it.sample.label.clone())
            .or_default() += 1;
    }
    let mut card = ModelCard {
        format: CARD_FORMAT.into(),
        name: settings.name.clone(),
        task: "face gender classification from a face crop".into(),
        labels: prepared.labels.clone(),
        input: spec.clone(),
        alignment: finder.as_ref().map(|f| f.align.clone()),
        test_time_flip: settings.test_time_flip,
        outputs: vec![
            OutputSpec {
                name: "probs".into(),
                shape: vec!["batch".into(), classes.into()],
                description: "class probabilities (softmax), in label order".into(),
            },
            OutputSpec {
                name: "embedding".into(),
                shape: vec!["batch".into(), 128.into()],
                description: "penultimate dense layer (ReLU), the face embedding".into(),
            },
            OutputSpec {
                name: "pooled".into(),
                shape: vec!["batch".into(), pooled_dim(settings.arch).into()],
                description: "global average pool of the last convolution's activations".into(),
            },
        ],
        architecture: ArchitectureInfo {
            name: settings.arch.name().into(),
            description: settings.arch.describe().into(),
            parameters: params,
            onnx_opset: crate::export::OPSET,
        },
        onnx: OnnxInfo {
            file: MODEL_FILE.into(),
            sha256: sha,
            bytes: onnx.len() as u64,
        },
        training: TrainingInfo {
            sources: prepared.sources.clone(),
            licence_notes: settings.licence_notes.clone(),
            split_counts,
            split_seed: settings.split.seed,
            val_fraction: settings.split.val,
            test_fraction: settings.split.test,
            seed: settings.seed,
            epochs_run: state.epochs_done,
            best_epoch: state.best_epoch,
            best_val_accuracy: state.best_val_accuracy,
            hyperparameters: serde_json::json!({
                "optimizer": "adam",
                "peak_lr": settings.lr,
                "schedule": format!("linear warm-up over {warmup} steps, cosine decay to 2% of peak over {total_steps} steps"),
                "weight_decay": settings.weight_decay,
                "label_smoothing": settings.label_smoothing,
                "batch_size": settings.batch_size,
                "epochs_max": settings.epochs,
                "early_stopping_patience": settings.patience,
                "max_images": settings.max_images,
                "max_steps_per_epoch": settings.max_steps_per_epoch,
                "initialised_from": init_from,
            }),
            augmentation: serde_json::to_value(&settings.augment).unwrap_or_default(),
        },
        metrics: BTreeMap::new(),
        intended_use: "Bulk labeling of perceived binary gender on face crops for research and \
                       analytics; not for decisions about individuals."
            .into(),
        limitations: vec![
            "Binary labels as annotated in the training data; they describe perceived \
             presentation, not identity."
                .into(),
            "Accuracy is lower on children; see the age groups in the metrics.".into(),
            if finder.is_some() {
                "Trained on detected, aligned faces (see `alignment`); classify and eval \
                 detect and align the same way. Faces the detector misses (profile views, \
                 heavy occlusion, very small faces) are not classified."
                    .into()
            } else {
                "Trained on whole face crops without alignment; expects tight face crops.".into()
            },
        ],
        facebatch_version: env!("CARGO_PKG_VERSION").into(),
        created: now_rfc3339(),
    };
    card.save(&out.join(CARD_FILE))?;

    // Test metrics through ONNX Runtime and the shared preprocessing: what users will get.
    let test_samples: Vec<Sample> = test_idx
        .iter()
        .map(|&i| prepared.items[i].sample.clone())
        .collect();
    if !test_samples.is_empty() {
        let mut classifier = Classifier::load(out, &settings.session)?;
        let eval = evaluate(
            &mut classifier,
            &test_samples,
            64,
            &settings.group_by,
            DecodeLimits::default(),
            finder.as_ref(),
        )?;
        write_report(&reports, "test_report", &eval.report)?;
        card.metrics.insert("test".into(), eval.report);
        card.save(&out.join(CARD_FILE))?;
    }
    tracing::info!(dir = %out.display(), seconds = t0.elapsed().as_secs_f64(), "model exported");
    Ok(TrainOutcome {
        dir: out.clone(),
        test_report: card.metrics.get("test").cloned(),
    })
}

fn pooled_dim(arch: Arch) -> usize {
    match arch {
        Arch::Seed => 64,
        Arch::Compact => 256,
    }
}

fn save_module(net: &Net, path: &Path) -> Result<()> {
    let tmp = path.with_extension("bpk.tmp");
    net.clone()
        .save_file(&tmp)
        .map_err(|e| Error::Training(format!("saving {}: {e:?}", path.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("saving {}", path.display())))
}

fn write_logs(reports: &Path, state: &State) -> Result<()> {
    let mut steps = String::from("step,epoch,loss,accuracy,lr\n");
    for s in &state.steps {
        steps.push_str(&format!(
            "{},{},{:.6},{:.4},{:.6e}\n",
            s.step, s.epoch, s.loss, s.accuracy, s.lr
        ));
    }
    write_atomic(&reports.join("train_log.csv"), steps.as_bytes())?;
    let mut epochs =
        String::from("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n");
    for e in &state.epochs {
        epochs.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.1}\n",
            e.epoch, e.train_loss, e.train_accuracy, e.val_loss, e.val_accuracy, e.lr, e.seconds
        ));
    }
    write_atomic(&reports.join("epochs.csv"), epochs.as_bytes())?;
    training_curves(reports, &state.steps, &state.epochs)
}

/// Current UTC time as RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_warms_up_then_decays() {
        assert!((lr_at(0, 10, 100, 1.0) - 0.1).abs() < 1e-9);
        assert!((lr_at(9, 10, 100, 1.0) - 1.0).abs() < 1e-9);
        assert!(lr_at(50, 10, 100, 1.0) < 1.0);
        assert!((lr_at(100, 10, 100, 1.0) - 0.02).abs() < 1e-9);
    }
}
