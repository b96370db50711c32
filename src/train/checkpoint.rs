//! Checkpoints: what `--resume` continues from, and `--init`'s earlier weights.

use std::path::Path;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::{AlignChoice, TrainSettings};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::model::card::{CARD_FILE, ModelCard};
use crate::report::plot::{EpochRecord, StepRecord};
use crate::train::net::{Arch, Net};
use crate::vision::decode::InputSpec;

/// Checkpointed training state, for `--resume`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct State {
    pub fingerprint: String,
    pub epochs_done: usize,
    pub global_step: usize,
    pub best_val_accuracy: f64,
    pub best_epoch: usize,
    pub stale_epochs: usize,
    pub steps: Vec<StepRecord>,
    pub epochs: Vec<EpochRecord>,
}

pub(super) fn fingerprint(s: &TrainSettings, labels: &[String], n: usize) -> String {
    // Only what changes the data or the step sequence; a run resumed with other
    // augmentation strengths is allowed.
    let mut fp = format!(
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
    );
    // Added later: absent from the fingerprints of runs that did not use them.
    if let Some(p) = &s.pin_splits {
        fp.push_str(&format!("|pin={}", p.display()));
    }
    if let Some((h, w)) = s.input.filter(|i| *i != s.arch.input_size()) {
        fp.push_str(&format!("|input={h}x{w}"));
    }
    if s.sampling != super::Sampling::Uniform {
        fp.push_str(&format!("|sampling={:?}", s.sampling));
    }
    fp
}

/// The input and alignment of the `--init` model's (primary) network, which a fine-tune
/// keeps; the input is renamed `input`, as the export names it.
pub(super) fn init_geometry(
    dir: Option<&Path>,
) -> Result<Option<(InputSpec, Option<crate::vision::align::AlignSpec>)>> {
    let Some(dir) = dir else { return Ok(None) };
    let card = ModelCard::load(&dir.join(CARD_FILE))?;
    let m = card.primary();
    let mut input = m.input.clone();
    input.name = "input".into();
    Ok(Some((input, m.alignment.clone())))
}

/// Loads the best weights of the earlier model in `dir` into `net`, after checking that its
/// card matches this run. Returns the network and what to record about its origin.
pub(super) fn init_weights(
    net: Net,
    dir: &Path,
    arch: Arch,
    labels: &[String],
    spec: &InputSpec,
    load: bool,
    device: &burn::tensor::Device,
) -> Result<(Net, serde_json::Value)> {
    let card = ModelCard::load(&dir.join(CARD_FILE))?;
    let mismatch = |what: &str, theirs: String, ours: String| {
        Error::InvalidOption(format!(
            "--init {}: its {what} ({theirs}) differs from this run's ({ours})",
            dir.display()
        ))
    };
    if card.primary().architecture.name != arch.name() {
        return Err(mismatch(
            "architecture",
            card.primary().architecture.name.clone(),
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
    if card.primary().input.width != spec.width || card.primary().input.height != spec.height {
        return Err(mismatch(
            "input size",
            format!(
                "{}x{}",
                card.primary().input.width,
                card.primary().input.height
            ),
            format!("{}x{}", spec.width, spec.height),
        ));
    }
    let weights = dir.join("checkpoints").join("best.bpk");
    let net = if !load {
        net
    } else if arch == Arch::Dlib && !weights.exists() {
        // dlib's network as published: its weights come from its ONNX file.
        let checked = crate::model::classifier::CheckedModel::read(dir)?;
        crate::train::import::dlib_from_onnx(&checked.files[0].bytes, labels.len(), device)?
    } else {
        net.try_load_file(&weights)
            .map_err(|e| Error::Training(format!("--init: loading {}: {e:?}", weights.display())))?
    };
    tracing::info!(model = %card.name, onnx_sha256 = %card.primary().onnx.sha256, "fine-tuning from an earlier model");
    Ok((
        net,
        serde_json::json!({
            "name": card.name,
            "onnx_sha256": card.primary().onnx.sha256,
            "created": card.created,
        }),
    ))
}

pub(super) fn save_module(net: &Net, path: &Path) -> Result<()> {
    let tmp = path.with_extension("bpk.tmp");
    net.clone()
        .save_file(&tmp)
        .map_err(|e| Error::Training(format!("saving {}: {e:?}", path.display())))?;
    Ok(fs_err::rename(&tmp, path)?)
}

/// Saves the end of an epoch: model, optimizer, then the state last, so the state names
/// only what is on disk.
pub(super) fn save_epoch(
    dir: &Path,
    net: &Net,
    optim: &ModuleOptimizer,
    state: &State,
) -> Result<()> {
    save_module(net, &dir.join("last.bpk"))?;
    let tmp = dir.join("last-optim.bpk.tmp");
    optim
        .save(&tmp)
        .map_err(|e| Error::Training(format!("saving optimizer state: {e:?}")))?;
    fs_err::rename(&tmp, dir.join("last-optim.bpk"))?;
    let text = serde_json::to_string(state).map_err(|e| Error::Json {
        context: "checkpoint state".into(),
        source: e,
    })?;
    write_atomic(&dir.join("state.json"), text.as_bytes())
}

/// The saved state in `dir` when `--resume` finds one, with the network and optimizer
/// loaded from it. A state made with other data or settings is refused.
pub(super) fn resume(
    dir: &Path,
    fingerprint: &str,
    net: Net,
    optim: ModuleOptimizer,
) -> Result<(Option<State>, Net, ModuleOptimizer)> {
    let state_path = dir.join("state.json");
    if !state_path.is_file() {
        tracing::warn!(dir = %dir.display(), "--resume: no checkpoint yet, starting fresh");
        return Ok((None, net, optim));
    }
    let text = fs_err::read_to_string(&state_path)?;
    let saved: State = serde_json::from_str(&text).map_err(|e| Error::Json {
        context: format!("reading {}", state_path.display()),
        source: e,
    })?;
    if saved.fingerprint != fingerprint {
        return Err(Error::OtherRun(format!(
            "--resume: the checkpoint in {} was made with different data or settings ({} vs {fingerprint})",
            dir.display(),
            saved.fingerprint
        )));
    }
    let net = net
        .try_load_file(dir.join("last.bpk"))
        .map_err(|e| Error::Training(format!("loading checkpoint: {e:?}")))?;
    let optim = optim
        .load(dir.join("last-optim.bpk"))
        .map_err(|e| Error::Training(format!("loading optimizer state: {e:?}")))?;
    tracing::info!(
        epochs_done = saved.epochs_done,
        step = saved.global_step,
        "resumed from checkpoint"
    );
    Ok((Some(saved), net, optim))
}
