//! The model card: the JSON file next to `model.onnx` that says what the model expects
//! and what it was trained on. `classify` and `eval` refuse a model that does not match it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metrics::Report;
use crate::preprocess::InputSpec;

/// Card format identifier; bump on incompatible changes.
pub const CARD_FORMAT: &str = "facebatch-model-card/1";
/// File name of the card inside a model directory.
pub const CARD_FILE: &str = "card.json";
/// File name of the ONNX model inside a model directory.
pub const MODEL_FILE: &str = "model.onnx";
/// Output names, in graph order.
pub const OUTPUT_NAMES: [&str; 3] = ["probs", "embedding", "pooled"];

/// One graph output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    /// Shape, with `"batch"` for the dynamic axis.
    pub shape: Vec<serde_json::Value>,
    pub description: String,
}

/// The network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchitectureInfo {
    pub name: String,
    pub description: String,
    pub parameters: usize,
    pub onnx_opset: i64,
}

/// The ONNX file the card describes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxInfo {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// One training data source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSourceInfo {
    pub name: String,
    pub kind: String,
    pub location: String,
    /// Images per class after deduplication and dropping unreadable files.
    pub per_class: BTreeMap<String, usize>,
    pub duplicates_removed: usize,
    pub conflicting_labels_removed: usize,
    pub unreadable_skipped: usize,
    /// With alignment: images whose subject face was detected and aligned ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aligned: Option<usize>,
    /// ... small crops with no detection, used whole (the `auto` rule) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_fallback: Option<usize>,
    /// ... and larger images with no face, left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_face_skipped: Option<usize>,
}

/// What the model was trained on and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub sources: Vec<DataSourceInfo>,
    /// Licence terms of the data; the model inherits them.
    pub licence_notes: Vec<String>,
    /// Images per split and class.
    pub split_counts: BTreeMap<String, BTreeMap<String, usize>>,
    pub split_seed: u64,
    pub val_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_accuracy: f64,
    pub hyperparameters: serde_json::Value,
    pub augmentation: serde_json::Value,
}

/// The model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub name: String,
    pub task: String,
    /// Class labels in output order.
    pub labels: Vec<String>,
    pub input: InputSpec,
    /// Face detection and alignment the model was trained with (absent: trained on crops
    /// fitted by `input.fit` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<crate::align::AlignSpec>,
    pub outputs: Vec<OutputSpec>,
    /// Classify each input and its mirror image and average the probabilities (test-time
    /// augmentation; twice the inference cost). facebatch applies it wherever it runs the
    /// model (classify, eval, the card's test metrics).
    #[serde(default)]
    pub test_time_flip: bool,
    pub architecture: ArchitectureInfo,
    pub onnx: OnnxInfo,
    pub training: TrainingInfo,
    /// Test-split metrics of the exported model, run through ONNX Runtime.
    pub metrics: BTreeMap<String, Report>,
    pub intended_use: String,
    pub limitations: Vec<String>,
    pub facebatch_version: String,
    pub created: String,
}

impl ModelCard {
    /// Reads and validates a card.
    pub fn load(path: &Path) -> Result<ModelCard> {
        let bad = |reason: String| Error::InvalidCard {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if card.format != CARD_FORMAT {
            return Err(bad(format!(
                "format {:?} is not {CARD_FORMAT:?}",
                card.format
            )));
        }
        if card.labels.len() < 2 {
            return Err(bad("a card needs at least two labels".into()));
        }
        card.input.validate().map_err(bad)?;
        Ok(card)
    }

    /// Writes the card as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Json {
            context: "serialising the model card".into(),
            source: e,
        })?;
        crate::fsutil::write_atomic(path, text.as_bytes())
    }
}

/// Resolves `--model`: a model directory, or the `.onnx` file inside one. Returns
/// (onnx path, card path).
pub fn resolve_model_paths(model: &Path) -> Result<(PathBuf, PathBuf)> {
    let (onnx, dir) = if model.is_dir() {
        (model.join(MODEL_FILE), model.to_path_buf())
    } else {
        (
            model.to_path_buf(),
            model.parent().unwrap_or(Path::new(".")).to_path_buf(),
        )
    };
    if !onnx.is_file() {
        return Err(Error::InvalidModel {
            path: onnx,
            reason: "no such file (pass a model directory or its model.onnx)".into(),
        });
    }
    let card = dir.join(CARD_FILE);
    if !card.is_file() {
        return Err(Error::InvalidCard {
            path: card,
            reason: "missing: every facebatch model ships a card.json next to model.onnx".into(),
        });
    }
    Ok((onnx, card))
}
