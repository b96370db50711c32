//! The end of a run: the best checkpoint exported to ONNX, its temperature fitted on the
//! validation split, the model card, the test report through ONNX Runtime, and the logs and
//! curves written after every epoch.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use super::checkpoint::State;
use super::prepare::Prepared;
use super::{Dirs, Fitted, SplitIndex, TrainOutcome, TrainSettings};
use crate::error::{Error, Result};
use crate::eval::{evaluate, write_report};
use crate::fsutil::{now_rfc3339, write_atomic};
use crate::labelled::{Sample, Split};
use crate::model::calibration::{Calibration, calibrate};
use crate::model::card::{
    ArchitectureInfo, CARD_FILE, CARD_FORMAT, Combine, MODEL_FILE, Member, ModelCard, OnnxInfo,
    OutputSpec, TrainingInfo,
};
use crate::model::classifier::Classifier;
use crate::report::plot::training_curves;
use crate::train::net::Net;
use crate::vision::decode::{DecodeLimits, InputSpec};
use crate::vision::faces::FaceFinder;

/// Exports the best checkpoint with its card and reports.
pub(super) fn export(
    settings: &TrainSettings,
    prepared: &Prepared,
    spec: &InputSpec,
    finder: Option<&FaceFinder>,
    split: &SplitIndex,
    fitted: &Fitted,
    dirs: &Dirs,
) -> Result<TrainOutcome> {
    let onnx = export_best(settings, prepared, spec, dirs)?;
    let mut card = model_card(settings, prepared, spec, finder, fitted, &onnx)?;
    card.save(&dirs.out.join(CARD_FILE))?;
    // One ONNX Runtime session of the exported model serves the calibration and the test.
    let mut classifier = Classifier::load(&dirs.out, &settings.session)?;
    if settings.calibrate && !split.val.is_empty() {
        let c = calibrate_on(&classifier, prepared, spec, &split.val)?;
        tracing::info!(
            temperature = format!("{:.3}", c.temperature),
            ece_before = format!("{:.4}", c.ece_before),
            ece_after = format!("{:.4}", c.ece_after),
            "temperature fitted on the validation split"
        );
        card.primary_mut().calibration = Some(c);
        classifier.card.primary_mut().calibration = card.primary().calibration.clone();
        card.save(&dirs.out.join(CARD_FILE))?;
    }
    test_report(
        settings,
        prepared,
        finder,
        split,
        dirs,
        &classifier,
        &mut card,
    )?;
    Ok(TrainOutcome {
        dir: dirs.out.clone(),
        test_report: card.metrics.get("test").cloned(),
    })
}

/// Loads the best checkpoint, exports it to `model.onnx` and returns the ONNX bytes.
fn export_best(
    settings: &TrainSettings,
    prepared: &Prepared,
    spec: &InputSpec,
    dirs: &Dirs,
) -> Result<Vec<u8>> {
    let best = Net::new(settings.arch, prepared.labels.len(), &Device::default())
        .try_load_file(dirs.ckpt.join("best.bpk"))
        .map_err(|e| Error::Training(format!("loading the best checkpoint: {e:?}")))?;
    let (h, w) = (spec.height as usize, spec.width as usize);
    let onnx = crate::train::export::export_onnx(&best, h, w, &prepared.labels)?;
    write_atomic(&dirs.out.join(MODEL_FILE), &onnx)?;
    Ok(onnx)
}

/// Images per split and label, as the card records them.
fn split_counts(prepared: &Prepared) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (it, s) in prepared.items.iter().zip(&prepared.splits) {
        let key = match s {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        };
        *counts
            .entry(key.into())
            .or_default()
            .entry(it.sample.label.clone())
            .or_default() += 1;
    }
    counts
}

/// The model card of the exported model `onnx`, before calibration and test metrics.
fn model_card(
    settings: &TrainSettings,
    prepared: &Prepared,
    spec: &InputSpec,
    finder: Option<&FaceFinder>,
    fitted: &Fitted,
    onnx: &[u8],
) -> Result<ModelCard> {
    let classes = prepared.labels.len();
    let sha = crate::fsutil::sha256_hex(onnx);
    let split_counts = split_counts(prepared);
    Ok(ModelCard {
        format: CARD_FORMAT.into(),
        name: settings.name.clone(),
        task: "face gender classification from a face crop".into(),
        labels: prepared.labels.clone(),
        members: vec![Member {
            name: settings.name.clone(),
            labels: prepared.labels.clone(),
            input: spec.clone(),
            alignment: finder.map(|f| f.align().clone()),
            calibration: None,
            test_time_flip: settings.test_time_flip,
            outputs: outputs(settings, classes),
            architecture: ArchitectureInfo {
                name: settings.arch.name().into(),
                description: settings.arch.describe().into(),
                parameters: fitted.params,
                mflops_per_pass: Some(
                    2.0 * settings.arch.macs(spec.height, spec.width) as f64 / 1e6,
                ),
                onnx_opset: crate::train::export::OPSET,
            },
            onnx: OnnxInfo {
                file: MODEL_FILE.into(),
                sha256: sha,
                bytes: onnx.len() as u64,
            },
            // Quantisation is a separate, evaluated step (scripts/int8-eval.sh).
            int8: None,
            origin: None,
            training: None,
        }],
        combine: Combine::default(),
        training: Some(training_info(settings, prepared, fitted, split_counts)?),
        metrics: BTreeMap::new(),
        intended_use: "Bulk labeling of perceived binary gender on face crops for research and \
                       analytics; not for decisions about individuals."
            .into(),
        limitations: limitations(finder.is_some()),
        facebatch_version: env!("CARGO_PKG_VERSION").into(),
        created: now_rfc3339(),
    })
}

/// The card's description of the model's three outputs.
fn outputs(settings: &TrainSettings, classes: usize) -> Vec<OutputSpec> {
    vec![
        OutputSpec {
            name: "probs".into(),
            shape: vec!["batch".into(), classes.into()],
            description: "class probabilities (softmax), in label order".into(),
            role: None,
        },
        OutputSpec {
            name: "embedding".into(),
            shape: vec!["batch".into(), 128.into()],
            description: "penultimate dense layer (ReLU), the face embedding".into(),
            role: None,
        },
        OutputSpec {
            name: "pooled".into(),
            shape: vec!["batch".into(), settings.arch.pooled_dim().into()],
            description: "global average pool of the last convolution's activations".into(),
            role: None,
        },
    ]
}

/// The card's record of the data and the run that trained the model.
fn training_info(
    settings: &TrainSettings,
    prepared: &Prepared,
    fitted: &Fitted,
    split_counts: BTreeMap<String, BTreeMap<String, usize>>,
) -> Result<TrainingInfo> {
    Ok(TrainingInfo {
        sources: prepared.sources.clone(),
        licence_notes: settings.licence_notes.clone(),
        split_counts,
        split_seed: settings.split.seed,
        val_fraction: settings.split.val,
        test_fraction: settings.split.test,
        seed: settings.seed,
        epochs_run: fitted.state.epochs_done,
        best_epoch: fitted.state.best_epoch,
        best_val_accuracy: fitted.state.best_val_accuracy,
        hyperparameters: serde_json::json!({
            "optimizer": "adam",
            "peak_lr": settings.lr,
            "schedule": format!("linear warm-up over {} steps, cosine decay to 2% of peak over {} steps", fitted.warmup, fitted.total_steps),
            "weight_decay": settings.weight_decay,
            "label_smoothing": settings.label_smoothing,
            "batch_size": settings.batch_size,
            "epochs_max": settings.epochs,
            "early_stopping_patience": settings.patience,
            "max_images": settings.max_images,
            "max_steps_per_epoch": settings.max_steps_per_epoch,
            "initialised_from": fitted.init_from,
            "sampling": settings.sampling,
            "epoch_shares": fitted.shares,
            "model_selection": format!("best mean of the per-source validation accuracies over sources with at least {} validation images", super::step::SELECTION_MIN_IMAGES),
            "pinned_splits_from": settings.pin_splits.as_ref().map(|p| p.display().to_string()),
        }),
        augmentation: serde_json::to_value(&settings.augment).map_err(|e| Error::Json {
            context: "recording the augmentation".into(),
            source: e,
        })?,
    })
}

/// The card's limitations; the last depends on whether the model was trained on aligned
/// faces.
fn limitations(aligned: bool) -> Vec<String> {
    vec![
        "Binary labels as annotated in the training data; they describe perceived \
         presentation, not identity."
            .into(),
        "Accuracy is lower on children; see the age groups in the metrics.".into(),
        if aligned {
            "Trained on detected, aligned faces (see `alignment`); classify and eval \
             detect and align the same way. Faces the detector misses (profile views, \
             heavy occlusion, very small faces) are not classified."
                .into()
        } else {
            "Trained on whole face crops without alignment; expects tight face crops.".into()
        },
    ]
}

/// Test metrics through ONNX Runtime and the shared preprocessing (what users will get):
/// the test report, its figures and predictions in `reports/`, and the metrics in the card.
fn test_report(
    settings: &TrainSettings,
    prepared: &Prepared,
    finder: Option<&FaceFinder>,
    split: &SplitIndex,
    dirs: &Dirs,
    classifier: &Classifier,
    card: &mut ModelCard,
) -> Result<()> {
    let test_samples: Vec<Sample> = split
        .test
        .iter()
        .map(|&i| prepared.items[i].sample.clone())
        .collect();
    if test_samples.is_empty() {
        return Ok(());
    }
    let eval = evaluate(
        classifier,
        &test_samples,
        64,
        &group_by(settings, prepared),
        DecodeLimits::default(),
        finder,
        &crate::progress::Progress::new(settings.progress, test_samples.len() as u64, "images"),
    )?;
    write_report(&dirs.reports, "test_report", &eval.report)?;
    crate::report::plot::report_figures(&dirs.reports, &eval.report)?;
    crate::eval::predictions::write(
        &dirs.reports.join("test_predictions.parquet"),
        &test_samples,
        &eval.predictions,
        classifier,
        finder,
    )?;
    card.metrics.insert("test".into(), eval.report);
    card.save(&dirs.out.join(CARD_FILE))
}

/// The test report's groups: those asked for, plus `source` whenever the data holds more
/// than one source, so every metric is reported per source.
fn group_by(settings: &TrainSettings, prepared: &Prepared) -> Vec<crate::eval::GroupBy> {
    let mut groups = settings.group_by.clone();
    if prepared.sources.len() > 1
        && !groups
            .iter()
            .any(|g| g.column == "source" && g.edges.is_empty())
    {
        groups.push(crate::eval::GroupBy {
            column: "source".into(),
            edges: Vec::new(),
        });
    }
    groups
}

/// Fits the temperature of the exported model on the validation crops, run exactly as
/// classify runs them (ONNX Runtime, the card's flip averaging).
fn calibrate_on(
    classifier: &Classifier,
    prepared: &Prepared,
    spec: &InputSpec,
    val: &[usize],
) -> Result<Calibration> {
    let frame = (spec.width * spec.height * 3) as usize;
    let (mut probs, mut truth) = (Vec::new(), Vec::new());
    for chunk in val.chunks(128) {
        let mut batch = vec![0f32; chunk.len() * spec.len()];
        for (out, &i) in batch.chunks_mut(spec.len()).zip(chunk) {
            let px = prepared.pixels[i * frame..(i + 1) * frame].to_vec();
            let img = image::RgbImage::from_raw(spec.width, spec.height, px)
                .ok_or_else(|| Error::Training("a prepared crop has the wrong size".into()))?;
            spec.write_tensor(&img, out);
            truth.push(prepared.items[i].label);
        }
        probs.extend(classifier.run_uncalibrated(&batch, chunk.len())?.probs);
    }
    Ok(calibrate(&probs, &truth, prepared.labels.len(), "val"))
}

pub(super) fn write_logs(reports: &Path, state: &State) -> Result<()> {
    let steps = state.steps.iter().map(|s| {
        vec![
            s.step.to_string(),
            s.epoch.to_string(),
            format!("{:.6}", s.loss),
            format!("{:.4}", s.accuracy),
            format!("{:.6e}", s.lr),
        ]
    });
    write_csv(
        &reports.join("train_log.csv"),
        &["step", "epoch", "loss", "accuracy", "lr"],
        steps,
    )?;
    let epochs = state.epochs.iter().map(|e| {
        vec![
            e.epoch.to_string(),
            format!("{:.6}", e.train_loss),
            format!("{:.6}", e.train_accuracy),
            format!("{:.6}", e.val_loss),
            format!("{:.6}", e.val_accuracy),
            format!("{:.6e}", e.lr),
            format!("{:.1}", e.seconds),
        ]
    });
    write_csv(
        &reports.join("epochs.csv"),
        &[
            "epoch",
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "lr",
            "seconds",
        ],
        epochs,
    )?;
    training_curves(reports, &state.steps, &state.epochs)
}

/// Writes a CSV file atomically with the `csv` crate (quoting as CSV readers expect).
fn write_csv(path: &Path, header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<()> {
    let err = |e: csv::Error| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(err)?;
    for row in rows {
        w.write_record(&row).map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}
