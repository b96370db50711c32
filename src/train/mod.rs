//! `facebatch train`: data preparation, the training loop with checkpoints and resume, and
//! the export of model, calibration, card and reports.
//!
//! - [`prepare`]: read, deduplicate, detect and align, split;
//! - [`sampler`]: which images each epoch draws;
//! - [`step`]: one optimisation step, batches, validation;
//! - [`checkpoint`]: resume and fine-tuning state;
//! - [`report`]: the exported model, its calibration, card and reports.

pub mod augment;
mod checkpoint;
pub mod export;
pub mod import;
pub mod net;
mod prepare;
mod report;
mod sampler;
mod step;

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;

pub use sampler::Sampling;
pub use step::Stepper;

use crate::error::{Error, Result};
use crate::eval::GroupBy;
use crate::labelled::{self, Sample, Source, Split, SplitSpec};
use crate::onnx::SessionOptions;
use crate::report::plot::{EpochRecord, StepRecord};
use crate::train::augment::Augment;
use crate::train::net::{Arch, Net};
use crate::vision::decode::InputSpec;
use crate::vision::detect::DetectSettings;
use checkpoint::State;
use prepare::Prepared;

/// Validated settings for one training run.
#[derive(Clone, Debug)]
pub struct TrainSettings {
    pub sources: Vec<Source>,
    pub out_dir: PathBuf,
    pub name: String,
    pub arch: Arch,
    /// Input (height, width); `None`: the architecture's default.
    pub input: Option<(u32, u32)>,
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
    pub progress: crate::progress::ProgressMode,
    /// Detect and align every training image (the `auto` face rule).
    pub align: AlignChoice,
    /// Zoom of the alignment template (see [`crate::vision::align::DEFAULT_ZOOM`]).
    pub align_zoom: f32,
    /// Explicit detector ONNX file (else the verified cache / download).
    pub detector: Option<PathBuf>,
    pub detect: DetectSettings,
    /// Record test-time flip averaging in the card (the card's `test_time_flip`).
    pub test_time_flip: bool,
    /// Keep the split of every image an earlier run's `splits/` lists (so a new model is
    /// tested on the same images as the one before it).
    pub pin_splits: Option<PathBuf>,
    /// How each epoch's images are drawn.
    pub sampling: Sampling,
    /// Fit a temperature on the validation split and record it in the card.
    pub calibrate: bool,
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

/// What a training run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The model directory (model.onnx, card.json, reports/, splits/).
    pub dir: PathBuf,
    /// The exported model's report on the test split, when there is one.
    pub test_report: Option<crate::model::metrics::Report>,
}

/// The folders of a run's output.
struct Dirs {
    out: PathBuf,
    ckpt: PathBuf,
    reports: PathBuf,
    splits: PathBuf,
}

impl Dirs {
    fn create(out: &std::path::Path) -> Result<Dirs> {
        let d = Dirs {
            out: out.to_path_buf(),
            ckpt: out.join("checkpoints"),
            reports: out.join("reports"),
            splits: out.join("splits"),
        };
        for p in [&d.out, &d.ckpt, &d.reports, &d.splits] {
            std::fs::create_dir_all(p)
                .map_err(|e| Error::io(format!("creating {}", p.display()), e))?;
        }
        Ok(d)
    }
}

/// True when `dir` is a training run that `--resume` may continue: it holds only what
/// train writes (`checkpoints/`, `reports/`, `splits/`, `model.onnx`, `card.json`, and
/// temporary files), and either a checkpoint (`checkpoints/state.json`) or no exported model
/// yet (a run stopped before its first checkpoint). A model folder with other files (an
/// int8 copy beside `model.onnx`, say) is not: continuing would leave them stale.
pub fn is_resumable_run(dir: &std::path::Path) -> bool {
    use crate::model::card::{CARD_FILE, MODEL_FILE};
    const OWN: [&str; 5] = ["checkpoints", "reports", "splits", MODEL_FILE, CARD_FILE];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let only_own = entries.into_iter().all(|e| {
        e.is_ok_and(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            OWN.contains(&name.as_str()) || name.starts_with(".tmp")
        })
    });
    let checkpointed = dir.join("checkpoints").join("state.json").is_file();
    let exported = dir.join(MODEL_FILE).exists() || dir.join(CARD_FILE).exists();
    only_own && (checkpointed || !exported)
}

/// The item indices of each split.
struct SplitIndex {
    train: Vec<usize>,
    val: Vec<usize>,
    test: Vec<usize>,
}

/// What the training loop left behind for the export.
struct Fitted {
    state: State,
    params: usize,
    warmup: usize,
    total_steps: usize,
    init_from: Option<serde_json::Value>,
    shares: std::collections::BTreeMap<String, f64>,
}

/// Runs a full training and exports the best checkpoint.
pub fn train(settings: &TrainSettings) -> Result<TrainOutcome> {
    settings.split.validate()?;
    let (h, w) = settings.input.unwrap_or(settings.arch.input_size());
    // A fine-tune keeps the input and alignment its network was trained with (dlib's
    // network its own normalisation and chip frame; a facebatch model the standard ones).
    let init = checkpoint::init_geometry(settings.init.as_deref())?;
    let spec = match &init {
        Some((input, _)) => input.clone(),
        None => InputSpec::standard(h, w),
    };
    // The labels and --group-by columns are checked before anything is created, fetched
    // or decoded: a one-class folder is refused at once, not after the detector ran.
    let (samples, origin) = prepare::read(settings)?;
    let dirs = Dirs::create(&settings.out_dir)?;
    let t0 = Instant::now();
    let finder = prepare::face_finder(settings, &spec, init.and_then(|(_, a)| a))?;
    let prepared = prepare::prepare(settings, &spec, finder.as_ref(), samples, origin)?;
    let split = write_splits(&prepared, &dirs)?;
    tracing::info!(
        train = split.train.len(),
        val = split.val.len(),
        test = split.test.len(),
        pinned = prepared.pinned,
        labels = ?prepared.labels,
        seconds = format!("{:.1}", t0.elapsed().as_secs_f64()),
        "data ready"
    );
    let fitted = fit(settings, &prepared, &spec, &split, &dirs)?;
    let outcome = report::export(
        settings,
        &prepared,
        &spec,
        finder.as_ref(),
        &split,
        &fitted,
        &dirs,
    )?;
    tracing::info!(dir = %dirs.out.display(), seconds = format!("{:.0}", t0.elapsed().as_secs_f64()), "model exported");
    Ok(outcome)
}

/// Writes splits/{train,val,test}.csv and returns the indices of each split.
fn write_splits(prepared: &Prepared, dirs: &Dirs) -> Result<SplitIndex> {
    let split = SplitIndex {
        train: prepared.indices(Split::Train),
        val: prepared.indices(Split::Val),
        test: prepared.indices(Split::Test),
    };
    if split.train.is_empty() {
        return Err(Error::Dataset(
            "no images left for training after the split".into(),
        ));
    }
    for (name, idx) in [
        ("train", &split.train),
        ("val", &split.val),
        ("test", &split.test),
    ] {
        let rows: Vec<(&Sample, &str)> = idx
            .iter()
            .map(|&i| (&prepared.items[i].sample, prepared.items[i].sha256.as_str()))
            .collect();
        labelled::write_manifest(&dirs.splits.join(format!("{name}.csv")), &rows)?;
    }
    Ok(split)
}

/// The learning-rate schedule's step counts.
#[derive(Clone, Copy)]
struct Schedule {
    steps_per_epoch: usize,
    total_steps: usize,
    warmup: usize,
}

/// The training loop: epochs of sampled, augmented batches, validation, checkpoints.
fn fit(
    settings: &TrainSettings,
    prepared: &Prepared,
    spec: &InputSpec,
    split: &SplitIndex,
    dirs: &Dirs,
) -> Result<Fitted> {
    let classes = prepared.labels.len();
    let device = Device::default().autodiff();
    device.seed(settings.seed);
    let sched = schedule(settings, split.train.len());
    let (mut net, mut stepper, mut state, init_from) =
        start(settings, prepared, spec, dirs, &device)?;
    let sampler = epoch_sampler(settings, prepared, split);
    let params = net.num_params();
    log_start(settings, params, &sched, &sampler);
    let progress =
        crate::progress::Progress::new(settings.progress, sched.total_steps as u64, "steps");
    progress.set_position(state.global_step as u64);

    while state.epochs_done < settings.epochs
        && (state.stale_epochs < settings.patience || state.epochs_done == 0)
    {
        let epoch = state.epochs_done + 1;
        let started = Instant::now();
        let order = sampler.epoch(settings.seed.wrapping_add(epoch as u64 * 7919));
        let run = Epoch {
            settings,
            prepared,
            spec,
            sched,
            device: &device,
            progress: &progress,
            epoch,
        };
        let (next, train_loss, train_accuracy, lr) =
            run.train(net, &mut stepper, &mut state, &order)?;
        net = next;
        let val = step::validate(&net, prepared, &split.val, spec, classes);
        let record = EpochRecord {
            epoch,
            train_loss,
            train_accuracy,
            val_loss: val.loss,
            val_accuracy: val.accuracy,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        log_epoch(&progress, &record, &val);
        end_epoch(&mut state, record, &val, &net, &stepper, dirs)?;
    }
    progress.finish_and_clear();
    if state.stale_epochs >= settings.patience && state.epochs_done < settings.epochs {
        tracing::info!(
            epoch = state.epochs_done,
            best_epoch = state.best_epoch,
            "early stopping"
        );
    }
    Ok(Fitted {
        state,
        params,
        warmup: sched.warmup,
        total_steps: sched.total_steps,
        init_from,
        shares: sampler.shares,
    })
}

/// The learning-rate schedule of a run over `train` training images.
fn schedule(settings: &TrainSettings, train: usize) -> Schedule {
    let full = train.div_ceil(settings.batch_size);
    let steps_per_epoch = settings.max_steps_per_epoch.map_or(full, |m| m.min(full));
    Schedule {
        steps_per_epoch,
        total_steps: steps_per_epoch * settings.epochs,
        warmup: steps_per_epoch.clamp(1, 300),
    }
}

/// The line that opens training, and each group's share of an epoch (debug).
fn log_start(
    settings: &TrainSettings,
    params: usize,
    sched: &Schedule,
    sampler: &sampler::Sampler,
) {
    tracing::info!(
        arch = settings.arch.name(),
        params,
        steps_per_epoch = sched.steps_per_epoch,
        epochs = settings.epochs,
        sampling = ?settings.sampling,
        "training"
    );
    for (group, share) in &sampler.shares {
        tracing::debug!(group = %group, share = format!("{share:.4}"), "share of each epoch");
    }
}

/// The sampler that draws each epoch's training images by source and label.
fn epoch_sampler(
    settings: &TrainSettings,
    prepared: &Prepared,
    split: &SplitIndex,
) -> sampler::Sampler {
    let groups: Vec<(String, String)> = prepared
        .items
        .iter()
        .map(|i| (i.sample.source.clone(), i.sample.label.clone()))
        .collect();
    sampler::Sampler::new(settings.sampling, &split.train, &groups)
}

/// Records a finished epoch in `state`, keeps the network as the best checkpoint when its
/// validation is the best so far, and saves the epoch's checkpoint and logs.
fn end_epoch(
    state: &mut State,
    record: EpochRecord,
    val: &step::Validation,
    net: &Net,
    stepper: &Stepper,
    dirs: &Dirs,
) -> Result<()> {
    let epoch = record.epoch;
    state.epochs.push(record);
    state.epochs_done = epoch;
    if val.selection() > state.best_val_accuracy {
        state.best_val_accuracy = val.selection();
        state.best_epoch = epoch;
        state.stale_epochs = 0;
        checkpoint::save_module(net, &dirs.ckpt.join("best.bpk"))?;
    } else {
        state.stale_epochs += 1;
    }
    checkpoint::save_epoch(&dirs.ckpt, net, &stepper.optim, state)?;
    report::write_logs(&dirs.reports, state)
}

/// The network, optimiser and state a run starts from: fresh, resumed from its own last
/// checkpoint (`--resume`), or initialised from an earlier model (`--init`).
fn start(
    settings: &TrainSettings,
    prepared: &Prepared,
    spec: &InputSpec,
    dirs: &Dirs,
    device: &Device,
) -> Result<(Net, Stepper, State, Option<serde_json::Value>)> {
    let mut net = Net::new(settings.arch, prepared.labels.len(), device);
    let mut stepper = Stepper::new(settings.weight_decay, settings.label_smoothing, device);
    let fp = checkpoint::fingerprint(settings, &prepared.labels, prepared.items.len());
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
        let (saved, n, o) = checkpoint::resume(&dirs.ckpt, &fp, net, stepper.optim)?;
        (net, stepper.optim) = (n, o);
        if let Some(saved) = saved {
            state = saved;
            resumed = true;
        }
    }
    let init_from = match &settings.init {
        Some(dir) => {
            // A resumed run already holds its own later weights: check and record only.
            let (loaded, from) = checkpoint::init_weights(
                net,
                dir,
                settings.arch,
                &prepared.labels,
                spec,
                !resumed,
                device,
            )?;
            net = loaded;
            Some(from)
        }
        None => None,
    };
    Ok((net, stepper, state, init_from))
}

/// One epoch's fixed context.
struct Epoch<'a> {
    settings: &'a TrainSettings,
    prepared: &'a Prepared,
    spec: &'a InputSpec,
    sched: Schedule,
    device: &'a Device,
    progress: &'a crate::progress::Progress,
    epoch: usize,
}

impl Epoch<'_> {
    /// Trains on `order` (cut to the epoch's steps). Returns the network, the mean loss and
    /// accuracy over the epoch's images, and the last learning rate.
    fn train(
        &self,
        mut net: Net,
        stepper: &mut Stepper,
        state: &mut State,
        order: &[usize],
    ) -> Result<(Net, f64, f64, f64)> {
        let (s, epoch) = (self.settings, self.epoch);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = s.lr;
        for (b, chunk) in order
            .chunks(s.batch_size)
            .take(self.sched.steps_per_epoch)
            .enumerate()
        {
            lr = step::lr_at(
                state.global_step,
                self.sched.warmup,
                self.sched.total_steps,
                s.lr,
            );
            let seed = s.seed ^ ((epoch as u64) << 32) ^ b as u64;
            let (x, labels) = step::batch_tensor(
                self.prepared,
                chunk,
                self.spec,
                Some((&s.augment, seed)),
                self.device,
            );
            let (next, loss_value, batch_correct) = stepper.step(net, x, &labels, lr, self.device);
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
            state.steps.push(StepRecord {
                step: state.global_step,
                epoch,
                loss: loss_value,
                accuracy: batch_correct as f32 / chunk.len() as f32,
                lr,
            });
            self.progress.inc(1);
            self.progress.set_message(format!(
                "epoch {epoch}/{} loss {:.4} acc {:.3}",
                s.epochs,
                loss_sum / seen as f64,
                correct as f64 / seen as f64
            ));
        }
        let seen = seen.max(1) as f64;
        Ok((net, loss_sum / seen, correct as f64 / seen, lr))
    }
}

/// The end-of-epoch line on the terminal and in the log.
fn log_epoch(progress: &crate::progress::Progress, record: &EpochRecord, val: &step::Validation) {
    progress.println(format!(
        "epoch {}: train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} (mean over sources {:.4}) | {:.0}s",
        record.epoch,
        record.train_loss,
        record.train_accuracy,
        val.loss,
        val.accuracy,
        val.selection(),
        record.seconds
    ));
    let per_source: Vec<String> = val
        .per_source
        .iter()
        .map(|(s, a)| format!("{s}={a:.4}"))
        .collect();
    tracing::info!(
        epoch = record.epoch,
        train_loss = format!("{:.4}", record.train_loss),
        train_accuracy = format!("{:.4}", record.train_accuracy),
        val_loss = format!("{:.4}", val.loss),
        val_accuracy = format!("{:.4}", val.accuracy),
        val_per_source = %per_source.join(" "),
        seconds = format!("{:.0}", record.seconds),
        "epoch done"
    );
}
