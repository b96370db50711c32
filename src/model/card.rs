//! The model card: the JSON file next to `model.onnx` that says what the model expects
//! and what it was trained on. `classify` and `eval` refuse a model that does not match it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::metrics::Report;
use crate::vision::decode::InputSpec;

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
    /// Floating-point operations of one forward pass on one face, in millions (twice the
    /// multiply-accumulates of the conv and dense layers). With `test_time_flip` a face
    /// costs two passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mflops_per_pass: Option<f64>,
}

/// The ONNX file the card describes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnnxInfo {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Which copy of the network runs (`--precision`): the float32 export, or the int8 one
/// quantised from it (the card's [`QuantizedInfo`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Float32,
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An int8 copy of the network, beside `model.onnx` in the model folder
/// (`--precision int8`). Same inputs, outputs, calibration temperature and labels; the
/// evaluation that justified it is in docs/int8.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedInfo {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// How it was quantised and calibrated.
    pub method: String,
    /// Its accuracy against the float32 network's on the same images.
    pub evaluation: String,
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
    pub alignment: Option<crate::vision::align::AlignSpec>,
    pub outputs: Vec<OutputSpec>,
    /// Classify each input and its mirror image and average the probabilities (test-time
    /// augmentation; twice the inference cost). facebatch applies it wherever it runs the
    /// model (classify, eval, the card's test metrics).
    #[serde(default)]
    pub test_time_flip: bool,
    /// Temperature scaling fitted after training; facebatch applies it to every probability
    /// it reports (classify, eval, visualize). Absent: probabilities as the network gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::model::calibration::Calibration>,
    pub architecture: ArchitectureInfo,
    pub onnx: OnnxInfo,
    /// The int8 copy, when one was made and passed its evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<QuantizedInfo>,
    pub training: TrainingInfo,
    /// Test-split metrics of the exported model, run through ONNX Runtime.
    pub metrics: BTreeMap<String, Report>,
    pub intended_use: String,
    pub limitations: Vec<String>,
    pub facebatch_version: String,
    pub created: String,
}

impl ModelCard {
    /// What the face finder needs of this card (`vision::faces::FaceFinder::for_model`).
    pub fn faces(&self) -> crate::vision::faces::ModelFaces<'_> {
        crate::vision::faces::ModelFaces {
            name: &self.name,
            input: &self.input,
            alignment: self.alignment.as_ref(),
        }
    }

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
        // Each label names an output column (`p_<label>`): they must be distinct.
        let mut seen = std::collections::HashSet::new();
        for l in &card.labels {
            if l.is_empty() {
                return Err(bad("a label is empty".into()));
            }
            if !seen.insert(l.as_str()) {
                return Err(bad(format!("label {l:?} is listed twice")));
            }
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

/// Orders version names naturally: `v2` < `v10`, `1.9.0` < `1.10.0`. (Kept by hand: 20
/// lines with a test below; `natord` would do the same, not worth a dependency.)
fn version_key(name: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let (mut num, mut text) = (String::new(), String::new());
    for c in name.chars().chain(std::iter::once('.')) {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            if !num.is_empty() || !text.is_empty() {
                key.push((num.parse().unwrap_or(0), std::mem::take(&mut text)));
                num.clear();
            }
            if c != '.' {
                text.push(c);
            }
        }
    }
    key
}

/// Resolves a model folder to one version's folder (the one holding `model.onnx`).
///
/// Models are kept as `models/<name>/<version>/` (onnx, card, reports). A folder that holds
/// a `model.onnx` is a version and is used as is. A folder without one is a model name: its
/// subfolders that hold a `model.onnx` are its versions, and `version` picks one by name,
/// or `None` the latest (natural order of the names: `v2` < `v10`).
pub fn resolve_version(model: &Path, version: Option<&str>) -> Result<PathBuf> {
    if let Some(v) = version {
        let mut parts = Path::new(v).components();
        let one_name = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        if !one_name {
            return Err(Error::InvalidModel {
                path: model.to_path_buf(),
                reason: format!(
                    "model version {v:?} must be the name of a version folder inside it, such as \"v4\""
                ),
            });
        }
        let dir = model.join(v);
        if !dir.join(MODEL_FILE).is_file() {
            return Err(Error::InvalidModel {
                path: dir,
                reason: format!("model version {v:?} not found (no {MODEL_FILE} there)"),
            });
        }
        return Ok(dir);
    }
    if model.join(MODEL_FILE).is_file() {
        return Ok(model.to_path_buf());
    }
    let versions = std::fs::read_dir(model)
        .map_err(|e| Error::io(format!("listing model versions in {}", model.display()), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(MODEL_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string));
    versions
        .max_by_key(|v| version_key(v))
        .map(|v| model.join(v))
        .ok_or_else(|| Error::InvalidModel {
            path: model.join(MODEL_FILE),
            reason: "no such file, and no version folders (NAME/VERSION/model.onnx) under it; \
                     pass a model directory, a model name directory or a model.onnx"
                .into(),
        })
}

/// The version of a resolved model: the name of the folder holding its `model.onnx`.
pub fn model_version(onnx: &Path) -> String {
    onnx.parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Resolves `--model`: a model directory, or the `.onnx` file inside one. Returns
/// (onnx path, card path).
pub fn resolve_model_paths(model: &Path) -> Result<(PathBuf, PathBuf)> {
    let (onnx, dir) = if model.is_dir() {
        let dir = resolve_version(model, None)?;
        (dir.join(MODEL_FILE), dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_version_is_the_natural_maximum() {
        let tmp = tempfile::tempdir().unwrap();
        for v in ["v1", "v2", "v10", "notes"] {
            std::fs::create_dir_all(tmp.path().join(v)).unwrap();
            if v != "notes" {
                std::fs::write(tmp.path().join(v).join(MODEL_FILE), b"x").unwrap();
            }
        }
        assert_eq!(
            resolve_version(tmp.path(), None).unwrap(),
            tmp.path().join("v10")
        );
        assert_eq!(
            resolve_version(tmp.path(), Some("v2")).unwrap(),
            tmp.path().join("v2")
        );
        assert!(resolve_version(tmp.path(), Some("v3")).is_err());
        assert!(resolve_version(&tmp.path().join("notes"), None).is_err());
        assert!(version_key("1.10.0") > version_key("1.9.2"));
        assert!(version_key("v10") > version_key("v9"));
    }
}
