//! The model card: the JSON file next to `model.onnx` that says what the model expects
//! and what it was trained on. `classify` and `eval` refuse a model that does not match it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::metrics::Report;
use crate::vision::decode::InputSpec;

/// Card format identifier written by this version; bump on incompatible changes. Format 2
/// added ensembles (`members`, `combine`); a format-1 card (one network) still loads.
pub const CARD_FORMAT: &str = "facebatch-model-card/2";
/// The card formats this version reads.
pub const CARD_FORMATS_READ: [&str; 2] = ["facebatch-model-card/1", CARD_FORMAT];
/// File name of the card inside a model directory.
pub const CARD_FILE: &str = "card.json";
/// File name of the ONNX model inside a model directory (an ensemble's first member).
pub const MODEL_FILE: &str = "model.onnx";
/// Output names of the networks facebatch trains, in graph order.
pub const OUTPUT_NAMES: [&str; 3] = ["probs", "embedding", "pooled"];

/// What a graph output holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputRole {
    /// Class probabilities (softmax), `[batch, classes]` in the member's label order.
    Probs,
    /// The penultimate layer.
    Embedding,
    /// Global average pool of the last convolution (`classify --features`).
    Pooled,
}

/// One graph output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    /// Shape, with `"batch"` for the dynamic axis.
    pub shape: Vec<serde_json::Value>,
    pub description: String,
    /// What it holds; absent, it is read from the name (`probs`, `embedding`, `pooled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<OutputRole>,
}

impl OutputSpec {
    /// The output's role: as recorded, or by its name.
    pub fn role(&self) -> Option<OutputRole> {
        self.role.or(match self.name.as_str() {
            "probs" => Some(OutputRole::Probs),
            "embedding" => Some(OutputRole::Embedding),
            "pooled" => Some(OutputRole::Pooled),
            _ => None,
        })
    }
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

/// One network of a model: its file, the crop it sees (alignment and input), its label
/// order and its calibration. A single-network card is one member; an ensemble card lists
/// several, each run on its own crop of the same detected face.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Unique within the card; names the member's columns (`classify --member-probs`).
    pub name: String,
    /// The network's output order (may differ from the card's `labels`; mapped by name).
    pub labels: Vec<String>,
    pub input: InputSpec,
    /// Face detection and alignment the network expects (absent: the crop fitted by
    /// `input.fit` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<crate::vision::align::AlignSpec>,
    pub outputs: Vec<OutputSpec>,
    /// Classify each input and its mirror image and average the probabilities (twice the
    /// inference cost).
    #[serde(default)]
    pub test_time_flip: bool,
    /// Temperature scaling of this network's probabilities. Absent: as the network gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::model::calibration::Calibration>,
    pub architecture: ArchitectureInfo,
    pub onnx: OnnxInfo,
    /// The int8 copy, when one was made and passed its evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int8: Option<QuantizedInfo>,
    /// Where the network comes from and its licence (ensemble members made elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<MemberOrigin>,
    /// What trained this member, when it sits in an ensemble (a single network's card keeps
    /// this at its top level, as format 1 did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingInfo>,
}

impl Member {
    /// Floating-point operations per face, in millions, flip averaging included.
    pub fn mflops_per_face(&self) -> Option<f64> {
        let flips = if self.test_time_flip { 2.0 } else { 1.0 };
        self.architecture.mflops_per_pass.map(|m| m * flips)
    }

    /// The output that holds `role`, if the network has one.
    pub fn output(&self, role: OutputRole) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.role() == Some(role))
    }
}

/// Provenance of a member facebatch did not train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberOrigin {
    /// Where the file was taken from (a package and its pinned sha256).
    pub source: String,
    /// SPDX identifier of the weights' licence.
    pub licence: String,
    /// The licence notice, in full.
    pub notice: String,
}

/// How an ensemble's member probabilities become the model's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CombineRule {
    /// The plain mean of the members' calibrated probabilities.
    #[default]
    Mean,
    /// A weighted mean, weights fitted on the validation split.
    Weighted,
}

/// A decision threshold for a two-label model: `label` is predicted when its combined
/// probability is at least `value` (chosen on the validation split so that the two
/// labels' recalls are balanced). Applied as a shift of the log-odds, so the reported
/// probabilities and the predicted label agree (the prediction is the most probable label).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub label: String,
    pub value: f64,
    pub fitted_on: String,
    /// How it was chosen.
    pub rule: String,
    /// The recall of each label on `fitted_on` at this threshold.
    #[serde(default)]
    pub recall: BTreeMap<String, f64>,
}

/// The combining step after the members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Combine {
    pub rule: CombineRule,
    /// One weight per member, in member order (`weighted`); they sum to 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<f64>,
    /// The decision threshold, applied to the combined probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    /// Temperature scaling of the combined (and thresholded) probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::model::calibration::Calibration>,
    /// How the weights, threshold and temperature were fitted, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Combine {
    /// True when combining is nothing but passing one member's probabilities on.
    fn is_identity(&self) -> bool {
        self.weights.is_empty() && self.threshold.is_none() && self.calibration.is_none()
    }

    /// The weight of each of `n` members.
    pub fn weights(&self, n: usize) -> Vec<f64> {
        match self.rule {
            CombineRule::Weighted if self.weights.len() == n => self.weights.clone(),
            _ => vec![1.0 / n.max(1) as f64; n],
        }
    }
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

/// The model card, as facebatch works with it: always a list of members (one for a
/// single-network card) and the rule that combines them. On disk a single network is
/// written in the flat form of format 1 ([`CardFile`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CardFile", into = "CardFile")]
pub struct ModelCard {
    pub format: String,
    pub name: String,
    pub task: String,
    /// Class labels in output order.
    pub labels: Vec<String>,
    /// The networks, at least one; the first is the primary (its crop is the one
    /// `--save-crops` writes, its pooled features the ones `--features` reports).
    pub members: Vec<Member>,
    pub combine: Combine,
    /// The data and run that trained (or fine-tuned) the model; absent for a network
    /// imported as it was published (its `origin` says where it came from).
    pub training: Option<TrainingInfo>,
    /// Test-split metrics of the exported model, run through ONNX Runtime.
    pub metrics: BTreeMap<String, Report>,
    pub intended_use: String,
    pub limitations: Vec<String>,
    pub facebatch_version: String,
    pub created: String,
}

/// The card as stored: either the flat fields of one network, or `members`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CardFile {
    format: String,
    name: String,
    task: String,
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<InputSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alignment: Option<crate::vision::align::AlignSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outputs: Option<Vec<OutputSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    test_time_flip: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calibration: Option<crate::model::calibration::Calibration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    architecture: Option<ArchitectureInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    onnx: Option<OnnxInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    int8: Option<QuantizedInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    members: Vec<Member>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    combine: Option<Combine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    training: Option<TrainingInfo>,
    metrics: BTreeMap<String, Report>,
    intended_use: String,
    limitations: Vec<String>,
    facebatch_version: String,
    created: String,
}

impl TryFrom<CardFile> for ModelCard {
    type Error = String;
    fn try_from(f: CardFile) -> std::result::Result<Self, String> {
        let flat = f.input.is_some() || f.onnx.is_some() || f.architecture.is_some();
        let members = match (flat, f.members.is_empty()) {
            (true, false) => {
                return Err(
                    "a card lists either one network (input, onnx, ...) or members, not both"
                        .into(),
                );
            }
            (false, true) => {
                return Err(
                    "a card needs a network (input, outputs, architecture, onnx) or members".into(),
                );
            }
            (false, false) => f.members,
            (true, true) => {
                let missing = |what: &str| format!("missing field `{what}`");
                vec![Member {
                    name: f.name.clone(),
                    labels: f.labels.clone(),
                    input: f.input.ok_or_else(|| missing("input"))?,
                    alignment: f.alignment,
                    outputs: f.outputs.ok_or_else(|| missing("outputs"))?,
                    test_time_flip: f.test_time_flip.unwrap_or(false),
                    calibration: f.calibration,
                    architecture: f.architecture.ok_or_else(|| missing("architecture"))?,
                    onnx: f.onnx.ok_or_else(|| missing("onnx"))?,
                    int8: f.int8,
                    origin: None,
                    training: None,
                }]
            }
        };
        Ok(ModelCard {
            format: f.format,
            name: f.name,
            task: f.task,
            labels: f.labels,
            members,
            combine: f.combine.unwrap_or_default(),
            training: f.training,
            metrics: f.metrics,
            intended_use: f.intended_use,
            limitations: f.limitations,
            facebatch_version: f.facebatch_version,
            created: f.created,
        })
    }
}

impl From<ModelCard> for CardFile {
    fn from(c: ModelCard) -> CardFile {
        let mut f = CardFile {
            format: c.format,
            name: c.name,
            task: c.task,
            labels: c.labels,
            input: None,
            alignment: None,
            outputs: None,
            test_time_flip: None,
            calibration: None,
            architecture: None,
            onnx: None,
            int8: None,
            members: Vec::new(),
            combine: None,
            training: c.training,
            metrics: c.metrics,
            intended_use: c.intended_use,
            limitations: c.limitations,
            facebatch_version: c.facebatch_version,
            created: c.created,
        };
        let flat = c.members.len() == 1
            && c.combine.is_identity()
            && c.members[0].origin.is_none()
            && c.members[0].labels == f.labels;
        if flat {
            let m = c.members.into_iter().next().expect("one member");
            f.input = Some(m.input);
            f.alignment = m.alignment;
            f.outputs = Some(m.outputs);
            f.test_time_flip = Some(m.test_time_flip);
            f.calibration = m.calibration;
            f.architecture = Some(m.architecture);
            f.onnx = Some(m.onnx);
            f.int8 = m.int8;
            f.training = f.training.or(m.training);
        } else {
            f.members = c.members;
            f.combine = Some(c.combine);
        }
        f
    }
}

/// The output column of ensemble member `member`'s probability of `label` (`eval
/// --predictions`, `classify --member-probs`).
pub fn member_column(member: &str, label: &str) -> String {
    format!("member_{member}_p_{label}")
}

/// A file name with no folder part (a member's or an int8 copy's file in the model folder).
pub fn is_plain_file_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
}

impl ModelCard {
    /// The first member: the one whose crop `--save-crops` writes and whose pooled features
    /// `--features` reports; for a single-network card, the network.
    pub fn primary(&self) -> &Member {
        &self.members[0]
    }

    /// Mutable [`primary`](Self::primary).
    pub fn primary_mut(&mut self) -> &mut Member {
        &mut self.members[0]
    }

    /// Each member's input, in member order.
    pub fn inputs(&self) -> Vec<InputSpec> {
        self.members.iter().map(|m| m.input.clone()).collect()
    }

    /// True when the card combines several networks.
    pub fn is_ensemble(&self) -> bool {
        self.members.len() > 1
    }

    /// Floating-point operations per face of the whole model, in millions (flip averaging
    /// included), when every member records its cost.
    pub fn mflops_per_face(&self) -> Option<f64> {
        self.members.iter().map(Member::mflops_per_face).sum()
    }

    /// What the face finder needs of this card (`vision::faces::FaceFinder::for_model`).
    pub fn faces(&self) -> crate::vision::faces::ModelFaces<'_> {
        crate::vision::faces::ModelFaces {
            name: &self.name,
            views: self
                .members
                .iter()
                .map(|m| crate::vision::faces::View {
                    input: &m.input,
                    alignment: m.alignment.as_ref(),
                })
                .collect(),
        }
    }

    /// Reads and validates a card.
    pub fn load(path: &Path) -> Result<ModelCard> {
        let bad = |reason: String| Error::InvalidCard {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        // The format first: a newer card gets that message, not a missing field's.
        let format = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("format").and_then(|f| f.as_str()).map(str::to_string))
            .unwrap_or_default();
        if !CARD_FORMATS_READ.contains(&format.as_str()) {
            return Err(bad(format!(
                "format {format:?} is not one this facebatch reads ({CARD_FORMATS_READ:?}); \
                 a newer facebatch may read it"
            )));
        }
        let card: ModelCard = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        card.validate().map_err(bad)?;
        Ok(card)
    }

    /// The checks every card must pass beyond its JSON shape.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.format == CARD_FORMATS_READ[0] && self.is_ensemble() {
            return Err(format!("members need format {CARD_FORMAT:?}"));
        }
        distinct_labels(&self.labels)?;
        let mut names = std::collections::HashSet::new();
        for m in &self.members {
            let at = |e: String| format!("member {:?}: {e}", m.name);
            if m.name.is_empty() || !names.insert(m.name.as_str()) {
                return Err(format!("member name {:?} is empty or listed twice", m.name));
            }
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if self.is_ensemble() && !m.name.chars().all(plain) {
                return Err(at(
                    "a member name holds only letters, digits, - and _".into()
                ));
            }
            distinct_labels(&m.labels).map_err(at)?;
            let mut mine = m.labels.clone();
            let mut ours = self.labels.clone();
            mine.sort();
            ours.sort();
            if mine != ours {
                return Err(at(format!(
                    "labels {:?} are not the card's {:?}",
                    m.labels, self.labels
                )));
            }
            // The field-by-field check first: its message names the field.
            sane_normalisation(&m.input).map_err(at)?;
            m.input.validate().map_err(at)?;
            if let Some(c) = &m.calibration {
                sane_temperature("calibration.temperature", c.temperature).map_err(at)?;
            }
            if let Some(a) = &m.alignment
                && (a.width != m.input.width || a.height != m.input.height)
            {
                return Err(at("alignment size differs from the input size".into()));
            }
            if m.output(OutputRole::Probs).is_none() {
                return Err(at("no output holds the probabilities (role probs)".into()));
            }
            if self.is_ensemble() && !is_plain_file_name(&m.onnx.file) {
                return Err(at(format!(
                    "onnx.file {:?} must be a file name",
                    m.onnx.file
                )));
            }
        }
        let c = &self.combine;
        if let Some((i, w)) = c
            .weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
        {
            return Err(format!(
                "combine.weights[{i}] = {w:?} is not a finite number >= 0"
            ));
        }
        if !c.weights.is_empty() && c.weights.iter().sum::<f64>() <= 0.0 {
            return Err("combine.weights sum to 0".into());
        }
        if let Some(cal) = &c.calibration {
            sane_temperature("combine.calibration.temperature", cal.temperature)?;
        }
        if c.rule == CombineRule::Weighted {
            let ok = c.weights.len() == self.members.len()
                && c.weights.iter().all(|w| w.is_finite() && *w >= 0.0)
                && (c.weights.iter().sum::<f64>() - 1.0).abs() < 1e-6;
            if !ok {
                return Err(format!(
                    "combine.weights must be {} non-negative numbers summing to 1",
                    self.members.len()
                ));
            }
        }
        if let Some(t) = &c.threshold {
            if self.labels.len() != 2 || !self.labels.contains(&t.label) {
                return Err(
                    "combine.threshold needs a two-label card and one of its labels".into(),
                );
            }
            if !(t.value > 0.0 && t.value < 1.0) {
                return Err(format!(
                    "combine.threshold.value {} is not in (0, 1)",
                    t.value
                ));
            }
        }
        Ok(())
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

/// The largest magnitude a card's `input.scale`, `input.mean` and `input.std` may have, and
/// the largest a normalised pixel may reach: real models stay within a few hundred (dlib's
/// net subtracts means of about 120 from raw pixels); far beyond, every face becomes the same
/// saturated input and the model answers the same for all.
pub const MAX_NORMALISATION: f64 = 1e6;
/// The range a card's temperatures must lie in. Fitting searches 0.05 to 20
/// (`calibration::fit_temperature`); outside this range every probability is pushed to 0/1
/// or to one half.
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f64> = 0.01..=100.0;

/// `input.scale`, `input.mean` and `input.std` are finite, within
/// ±[`MAX_NORMALISATION`], `scale` is not 0 and `std` is positive (at least 1e-6), and
/// together they map every pixel value (0..=255) within ±[`MAX_NORMALISATION`].
fn sane_normalisation(input: &InputSpec) -> std::result::Result<(), String> {
    let within = |x: f64| x.is_finite() && x.abs() <= MAX_NORMALISATION;
    let scale = input.scale as f64;
    if !within(scale) || scale == 0.0 {
        return Err(format!(
            "input.scale = {:?} must be a finite, non-zero number within ±{MAX_NORMALISATION:e}",
            input.scale
        ));
    }
    for c in 0..3 {
        let (mean, std) = (input.mean[c] as f64, input.std[c] as f64);
        if !within(mean) {
            return Err(format!(
                "input.mean[{c}] = {:?} must be a finite number within ±{MAX_NORMALISATION:e}",
                input.mean[c]
            ));
        }
        if !(within(std) && std >= 1e-6) {
            return Err(format!(
                "input.std[{c}] = {:?} must be a finite number from 1e-6 to {MAX_NORMALISATION:e}",
                input.std[c]
            ));
        }
        let extreme = [0.0, 255.0]
            .iter()
            .map(|p| ((p * scale - mean) / std).abs())
            .fold(0.0, f64::max);
        if !within(extreme) {
            return Err(format!(
                "input.scale, input.mean[{c}] and input.std[{c}] map pixels to ±{extreme:e}, beyond ±{MAX_NORMALISATION:e}"
            ));
        }
    }
    Ok(())
}

/// A temperature is finite and within [`TEMPERATURE_RANGE`].
fn sane_temperature(field: &str, t: f64) -> std::result::Result<(), String> {
    if t.is_finite() && TEMPERATURE_RANGE.contains(&t) {
        return Ok(());
    }
    Err(format!(
        "{field} = {t:?} must be a finite number from {} to {}",
        TEMPERATURE_RANGE.start(),
        TEMPERATURE_RANGE.end()
    ))
}

/// Labels name output columns (`p_<label>`): they must be at least two, non-empty, distinct.
fn distinct_labels(labels: &[String]) -> std::result::Result<(), String> {
    if labels.len() < 2 {
        return Err("a card needs at least two labels".into());
    }
    let mut seen = std::collections::HashSet::new();
    for l in labels {
        if l.is_empty() {
            return Err("a label is empty".into());
        }
        if !seen.insert(l.as_str()) {
            return Err(format!("label {l:?} is listed twice"));
        }
    }
    Ok(())
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
        if !is_version_dir(&dir) {
            return Err(Error::InvalidModel {
                path: dir,
                reason: format!("model version {v:?} not found (no {MODEL_FILE} there)"),
            });
        }
        return Ok(dir);
    }
    if is_version_dir(model) {
        return Ok(model.to_path_buf());
    }
    let versions = std::fs::read_dir(model)
        .map_err(|e| Error::io(format!("listing model versions in {}", model.display()), e))?
        .filter_map(|e| e.ok())
        .filter(|e| is_version_dir(&e.path()))
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

/// A model version folder: one holding a `model.onnx` (a single network) or a `card.json`
/// (every model has one; an ensemble's networks have their members' names).
fn is_version_dir(dir: &Path) -> bool {
    dir.join(MODEL_FILE).is_file() || dir.join(CARD_FILE).is_file()
}

/// The version of a resolved model: the name of the folder holding its `model.onnx`.
pub fn model_version(onnx: &Path) -> String {
    onnx.parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Resolves `--model`: a model directory, or the `.onnx` file inside one. Returns
/// (onnx path, card path); for a directory the onnx path is its `model.onnx`, which an
/// ensemble's folder does not have (the card names its members' files).
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
    if !model.is_dir() && !onnx.is_file() {
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

    fn shipped(version: &str) -> ModelCard {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/facebatch-gender")
            .join(version)
            .join(CARD_FILE);
        ModelCard::load(&path).unwrap()
    }

    /// `change` applied to the shipped ensemble card (v5) is refused, naming `field`.
    fn refused(change: impl Fn(&mut ModelCard), field: &str) {
        let mut card = shipped("v5");
        change(&mut card);
        let e = card.validate().expect_err(field);
        assert!(e.contains(field), "{field}: {e}");
    }

    #[test]
    fn the_shipped_cards_are_sane() {
        for v in ["v1", "v2", "v3", "v4", "v5"] {
            shipped(v).validate().unwrap();
        }
    }

    #[test]
    fn absurd_temperatures_are_refused() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-9, 1e9] {
            refused(
                |c| {
                    c.members[1].calibration =
                        shipped("v4").primary().calibration.clone().map(|mut cal| {
                            cal.temperature = t;
                            cal
                        })
                },
                "member \"dlib\": calibration.temperature",
            );
            refused(
                |c| c.combine.calibration.as_mut().unwrap().temperature = t,
                "combine.calibration.temperature",
            );
        }
        // A single network's own temperature.
        let mut v4 = shipped("v4");
        v4.primary_mut().calibration.as_mut().unwrap().temperature = 0.0;
        assert!(
            v4.validate()
                .unwrap_err()
                .contains("calibration.temperature")
        );
    }

    #[test]
    fn absurd_normalisations_are_refused() {
        for x in [f32::NAN, f32::INFINITY, f32::MAX, 1e7] {
            refused(
                |c| c.members[0].input.mean[1] = x,
                "member \"v4\": input.mean[1]",
            );
            refused(|c| c.members[1].input.scale = x, "input.scale");
            refused(|c| c.members[0].input.std[2] = x, "input.std[2]");
        }
        refused(|c| c.members[0].input.scale = 0.0, "input.scale");
        refused(|c| c.members[0].input.std[0] = -0.5, "input.std[0]");
        refused(|c| c.members[0].input.std[0] = 1e-9, "input.std[0]");
        // Each value sane, together mapping a pixel past the bound.
        refused(
            |c| {
                c.members[0].input.scale = 1e5;
                c.members[0].input.std = [1e-3; 3];
            },
            "map pixels to",
        );
    }

    #[test]
    fn absurd_weights_and_thresholds_are_refused() {
        refused(
            |c| c.combine.weights = vec![f64::NAN, 0.5],
            "combine.weights[0]",
        );
        refused(
            |c| c.combine.weights = vec![0.5, -0.5],
            "combine.weights[1]",
        );
        refused(|c| c.combine.weights = vec![0.0, 0.0], "combine.weights");
        refused(|c| c.combine.weights = vec![0.7, 0.7], "summing to 1");
        for v in [0.0, 1.0, f64::NAN, -3.0] {
            refused(
                |c| c.combine.threshold.as_mut().unwrap().value = v,
                "combine.threshold.value",
            );
        }
    }

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
