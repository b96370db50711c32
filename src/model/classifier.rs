//! The classifier: an exported facebatch model, checked against its card, run through ONNX
//! Runtime the way the card says. A card lists one network or several (an ensemble); each
//! member runs on its own crop of the face (its own alignment and input), with its own
//! test-time flip and calibration, and the card's combining rule (mean or fitted weights,
//! then an optional decision threshold and temperature) makes the model's probabilities.
//! Every command that reports a probability goes through [`Classifier::run`].

use std::path::{Path, PathBuf};

use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::model::card::{
    Member, ModelCard, OutputRole, Precision, is_plain_file_name, resolve_model_paths,
};
use crate::onnx::{SessionOptions, SessionPool};

/// Outputs for one batch, row-major.
#[derive(Clone, Debug, Default)]
pub struct BatchOutput {
    pub n: usize,
    /// `[n, classes]`, the model's probabilities in the card's label order.
    pub probs: Vec<f32>,
    /// `[n, embedding_dim]`, the primary member's (empty when it has none).
    pub embedding: Vec<f32>,
    /// `[n, pooled_dim]`, the primary member's (empty when it has none).
    pub pooled: Vec<f32>,
    /// For an ensemble, each member's calibrated probabilities (`[n, classes]`, card label
    /// order), in member order; empty for a single network.
    pub members: Vec<Vec<f32>>,
}

impl BatchOutput {
    /// Index of the most probable class for row `i`. Ties go to the lower index.
    pub fn argmax(&self, i: usize, classes: usize) -> usize {
        let row = &self.probs[i * classes..(i + 1) * classes];
        let mut best = 0;
        for (k, p) in row.iter().enumerate() {
            if *p > row[best] {
                best = k;
            }
        }
        best
    }
}

/// One member's file, read and checked against the card.
pub struct CheckedFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

/// A model's files, read once and checked against each other.
pub struct CheckedModel {
    /// The primary member's file (for a single network, the `model.onnx` given).
    pub onnx_path: PathBuf,
    pub card: ModelCard,
    /// One per member, in member order.
    pub files: Vec<CheckedFile>,
    /// The model's identity in outputs (`facebatch.model_sha256`): a single network's
    /// file sha256; for an ensemble, the sha256 of its members' sha256s and combining rule.
    pub sha256: String,
    pub precision: Precision,
}

impl CheckedModel {
    /// Reads `model` (a directory or its `model.onnx`) and its card, and refuses an ONNX file
    /// whose sha256 differs from the card's.
    pub fn read(model: &Path) -> Result<CheckedModel> {
        CheckedModel::read_as(model, Precision::Float32)
    }

    /// [`read`](Self::read) for one precision: `Int8` reads each member's int8 file from the
    /// same folder, and is refused when a member has none.
    pub fn read_as(model: &Path, precision: Precision) -> Result<CheckedModel> {
        let (onnx_path, card_path) = resolve_model_paths(model)?;
        let card = ModelCard::load(&card_path)?;
        if !card.is_ensemble() && !onnx_path.is_file() {
            return Err(Error::InvalidModel {
                path: onnx_path,
                reason: "no such file (pass a model directory or its model.onnx)".into(),
            });
        }
        let dir = card_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        // Every member's int8 entry first: a member without one refuses the model before any
        // other member's file is read.
        if precision == Precision::Int8 {
            for (i, m) in card.members.iter().enumerate() {
                member_file(m, i, &card, &dir, &onnx_path, precision)?;
            }
        }
        let mut files = Vec::with_capacity(card.members.len());
        for (i, m) in card.members.iter().enumerate() {
            let (path, expected) = member_file(m, i, &card, &dir, &onnx_path, precision)?;
            let bytes = fs_err::read(&path)?;
            let sha256 = crate::fsutil::sha256_hex(&bytes);
            if sha256 != expected {
                return Err(Error::InvalidModel {
                    path,
                    reason: format!(
                        "sha256 {sha256} does not match its card ({expected}); the model or the card was changed"
                    ),
                });
            }
            files.push(CheckedFile {
                path,
                bytes,
                sha256,
            });
        }
        let sha256 = identity(&card, &files);
        Ok(CheckedModel {
            onnx_path: files[0].path.clone(),
            card,
            files,
            sha256,
            precision,
        })
    }
}

/// The file member `i` runs at `precision`, and the sha256 its card gives for it.
fn member_file(
    m: &Member,
    i: usize,
    card: &ModelCard,
    dir: &Path,
    given: &Path,
    precision: Precision,
) -> Result<(PathBuf, String)> {
    let card_path = dir.join(crate::model::card::CARD_FILE);
    match precision {
        // A single network runs the `.onnx` named on the command line (its card beside it).
        Precision::Float32 if !card.is_ensemble() => {
            Ok((given.to_path_buf(), m.onnx.sha256.clone()))
        }
        Precision::Float32 => Ok((dir.join(&m.onnx.file), m.onnx.sha256.clone())),
        Precision::Int8 => {
            let q = m.int8.as_ref().ok_or_else(|| {
                let what = if card.is_ensemble() {
                    format!(
                        "its member {:?} (member {} of {})",
                        m.name,
                        i + 1,
                        card.members.len()
                    )
                } else {
                    "its card".to_string()
                };
                Error::InvalidOption(format!(
                    "--precision int8: the model {} has no int8 copy ({what} lists none); \
                     leave --precision at float32, or quantise it (scripts/int8-eval.sh)",
                    dir.display()
                ))
            })?;
            if !is_plain_file_name(&q.file) {
                return Err(Error::InvalidCard {
                    path: card_path,
                    reason: format!("int8.file {:?} must be a file name", q.file),
                });
            }
            Ok((dir.join(&q.file), q.sha256.clone()))
        }
    }
}

/// See [`CheckedModel::sha256`].
fn identity(card: &ModelCard, files: &[CheckedFile]) -> String {
    if !card.is_ensemble() {
        return files[0].sha256.clone();
    }
    let mut text = String::from("facebatch-ensemble\n");
    for (m, f) in card.members.iter().zip(files) {
        text.push_str(&format!("{} {}\n", m.name, f.sha256));
    }
    text.push_str(&serde_json::to_string(&card.combine).unwrap_or_default());
    crate::fsutil::sha256_hex(text.as_bytes())
}

/// One member, loaded: its sessions and how its outputs map onto the card's labels.
struct MemberSession {
    sessions: SessionPool,
    /// `order[k]`: the member's output column of the card's label `k`.
    order: Vec<usize>,
    probs: String,
    embedding: Option<String>,
    pooled: Option<String>,
}

/// A loaded, card-checked classifier.
pub struct Classifier {
    members: Vec<MemberSession>,
    pub card: ModelCard,
    /// The primary member's file.
    pub onnx_path: PathBuf,
    /// See [`CheckedModel::sha256`].
    pub onnx_sha256: String,
    pub precision: Precision,
}

impl Classifier {
    /// Loads `model` (a directory or its `model.onnx`) and checks it against its card.
    pub fn load(model: &Path, opts: &SessionOptions) -> Result<Classifier> {
        Classifier::from_checked(&CheckedModel::read(model)?, opts)
    }

    /// Loads `model` at `precision` (see [`CheckedModel::read_as`]).
    pub fn load_as(
        model: &Path,
        precision: Precision,
        opts: &SessionOptions,
    ) -> Result<Classifier> {
        Classifier::from_checked(&CheckedModel::read_as(model, precision)?, opts)
    }

    /// Loads `model` at `precision` with `sessions` sessions, for as many threads running it
    /// at once (the inference workers).
    pub fn load_pooled(
        model: &Path,
        precision: Precision,
        opts: &SessionOptions,
        sessions: usize,
    ) -> Result<Classifier> {
        Classifier::from_checked_pooled(&CheckedModel::read_as(model, precision)?, opts, sessions)
    }

    /// A classifier with one session from a model already read and checked.
    pub fn from_checked(m: &CheckedModel, opts: &SessionOptions) -> Result<Classifier> {
        Classifier::from_checked_pooled(m, opts, 1)
    }

    /// A classifier with `sessions` sessions of each member; each member's inputs and
    /// outputs are checked against the card.
    pub fn from_checked_pooled(
        m: &CheckedModel,
        opts: &SessionOptions,
        sessions: usize,
    ) -> Result<Classifier> {
        let members = m
            .card
            .members
            .iter()
            .zip(&m.files)
            .map(|(member, file)| load_member(&m.card, member, file, opts, sessions))
            .collect::<Result<Vec<_>>>()?;
        Ok(Classifier {
            members,
            card: m.card.clone(),
            onnx_path: m.onnx_path.clone(),
            onnx_sha256: m.sha256.clone(),
            precision: m.precision,
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.card.labels.len()
    }

    /// Floats in one face's input: the members' tensors one after the other.
    pub fn input_len(&self) -> usize {
        self.card.members.iter().map(|m| m.input.len()).sum()
    }

    /// One face's input from its crops (one per member, as the face finder cuts them for
    /// this card's views): each fitted and normalised to its member's input, concatenated.
    pub fn tensor(&self, crops: &[image::RgbImage]) -> Vec<f32> {
        crate::vision::decode::views_tensor(&self.card.inputs(), crops)
    }

    /// Runs a batch of `n` faces, each laid out as [`input_len`](Self::input_len) floats
    /// (see [`tensor`](Self::tensor)), and returns the probabilities the card defines: each
    /// member with its test-time flip and calibration, combined by the card's rule, then the
    /// card's threshold and temperature.
    pub fn run(&self, input: &[f32], n: usize) -> Result<BatchOutput> {
        let mut out = self.run_uncalibrated(input, n)?;
        let classes = self.classes();
        if self.combines() {
            if let Some(c) = &self.card.combine.calibration {
                crate::model::calibration::apply_temperature(
                    &mut out.probs,
                    classes,
                    c.temperature,
                );
            }
        } else if let Some(c) = &self.card.primary().calibration {
            crate::model::calibration::apply_temperature(&mut out.probs, classes, c.temperature);
        }
        Ok(out)
    }

    /// Classifies faces given as crops, one list per face (a crop per member): the shortcut
    /// for callers that hold images rather than a batch tensor (classify builds its tensors
    /// in a stage of their own, in parallel).
    pub fn classify_crops(&self, faces: &[&[image::RgbImage]]) -> Result<BatchOutput> {
        let mut input = Vec::with_capacity(faces.len() * self.input_len());
        for crops in faces {
            input.extend_from_slice(&self.tensor(crops));
        }
        self.run(&input, faces.len())
    }

    /// Classifies images that are already face crops, each fitted to every member's input
    /// (`InputSpec::fit`).
    pub fn classify_images(&self, images: &[&image::RgbImage]) -> Result<BatchOutput> {
        let views = self.card.members.len();
        let faces: Vec<Vec<image::RgbImage>> = images
            .iter()
            .map(|img| vec![(*img).clone(); views])
            .collect();
        let refs: Vec<&[image::RgbImage]> = faces.iter().map(Vec::as_slice).collect();
        self.classify_crops(&refs)
    }

    /// [`run`](Self::run) without the last calibration step: a single network's
    /// temperature, or an ensemble's combined temperature (what each is fitted to). The
    /// members of an ensemble are calibrated, and its threshold is applied.
    pub fn run_uncalibrated(&self, input: &[f32], n: usize) -> Result<BatchOutput> {
        let per = self.input_len();
        if input.len() != n * per {
            return Err(Error::Internal(format!(
                "batch holds {} floats, expected {n} faces of {per}",
                input.len()
            )));
        }
        let classes = self.classes();
        if !self.combines() {
            return self.run_member(0, input, n);
        }
        let weights = self.card.combine.weights(self.members.len());
        let mut combined = BatchOutput {
            n,
            probs: vec![0.0; n * classes],
            ..Default::default()
        };
        let mut offset = 0;
        for (i, m) in self.card.members.iter().enumerate() {
            let len = m.input.len();
            let mine: Vec<f32> = input
                .chunks(per)
                .flat_map(|face| face[offset..offset + len].iter().copied())
                .collect();
            offset += len;
            let mut out = self.run_member(i, &mine, n)?;
            if let Some(c) = &m.calibration {
                crate::model::calibration::apply_temperature(
                    &mut out.probs,
                    classes,
                    c.temperature,
                );
            }
            for (acc, p) in combined.probs.iter_mut().zip(&out.probs) {
                *acc += (weights[i] * *p as f64) as f32;
            }
            if i == 0 {
                combined.embedding = std::mem::take(&mut out.embedding);
                combined.pooled = std::mem::take(&mut out.pooled);
            }
            combined.members.push(out.probs);
        }
        if let Some(t) = &self.card.combine.threshold {
            let k = self
                .card
                .labels
                .iter()
                .position(|l| *l == t.label)
                .unwrap_or(0);
            crate::model::calibration::shift_threshold(&mut combined.probs, classes, k, t.value);
        }
        Ok(combined)
    }

    /// True when the card's combining step does anything: several members, or a
    /// threshold or temperature after them. Otherwise the one network's own calibration is
    /// the last step.
    fn combines(&self) -> bool {
        let c = &self.card.combine;
        self.card.is_ensemble() || c.threshold.is_some() || c.calibration.is_some()
    }

    /// Member `i` on its own input (`n` faces of its input size), with its test-time flip,
    /// without its calibration; probabilities in the card's label order.
    fn run_member(&self, i: usize, input: &[f32], n: usize) -> Result<BatchOutput> {
        let spec = &self.card.members[i];
        if !spec.test_time_flip || n == 0 {
            return self.run_raw(i, input, n);
        }
        let w = spec.input.width as usize;
        let mut both = Vec::with_capacity(input.len() * 2);
        both.extend_from_slice(input);
        for row in input.chunks(w) {
            both.extend(row.iter().rev());
        }
        let mut out = self.run_raw(i, &both, 2 * n)?;
        let classes = self.classes();
        let half = n * classes;
        let probs: Vec<f32> = (0..half)
            .map(|k| (out.probs[k] + out.probs[half + k]) / 2.0)
            .collect();
        let emb = out.embedding.len() / 2;
        let pooled = out.pooled.len() / 2;
        out.embedding.truncate(emb);
        out.pooled.truncate(pooled);
        out.probs = probs;
        out.n = n;
        Ok(out)
    }

    fn run_raw(&self, i: usize, input: &[f32], n: usize) -> Result<BatchOutput> {
        let (spec, loaded) = (&self.card.members[i].input, &self.members[i]);
        let (c, h, w) = (
            spec.channels as usize,
            spec.height as usize,
            spec.width as usize,
        );
        if input.len() != n * c * h * w {
            return Err(Error::Internal(format!(
                "batch holds {} floats, expected {n}x{c}x{h}x{w}",
                input.len()
            )));
        }
        let tensor = TensorRef::from_array_view(([n, c, h, w], input))
            .map_err(|e| Error::ort("wrapping the input batch", e))?;
        let mut session = loaded.sessions.get()?;
        let outputs = session
            .run(ort::inputs![spec.name.as_str() => tensor])
            .map_err(|e| Error::ort("running the model", e))?;
        let read = |key: &str| -> Result<Vec<f32>> {
            let (_, data) = outputs[key]
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::ort(format!("reading output {key}"), e))?;
            Ok(data.to_vec())
        };
        let raw = read(&loaded.probs)?;
        let classes = loaded.order.len();
        let mut probs = Vec::with_capacity(raw.len());
        for row in raw.chunks(classes) {
            probs.extend(loaded.order.iter().map(|&j| row[j]));
        }
        Ok(BatchOutput {
            n,
            probs,
            embedding: loaded
                .embedding
                .as_deref()
                .map(read)
                .transpose()?
                .unwrap_or_default(),
            pooled: loaded
                .pooled
                .as_deref()
                .map(read)
                .transpose()?
                .unwrap_or_default(),
            members: Vec::new(),
        })
    }
}

/// Builds a member's sessions and checks its graph against its card.
fn load_member(
    card: &ModelCard,
    member: &Member,
    file: &CheckedFile,
    opts: &SessionOptions,
    sessions: usize,
) -> Result<MemberSession> {
    let invalid = |reason: String| Error::InvalidModel {
        path: file.path.clone(),
        reason,
    };
    let pool = SessionPool::build(&file.bytes, opts, &file.path, sessions)?;
    let session = pool.get()?;
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    if inputs != [member.input.name.as_str()] {
        return Err(invalid(format!(
            "inputs {inputs:?} do not match the card's {:?}",
            member.input.name
        )));
    }
    check_input(card, member, file, session.inputs()[0].dtype())?;
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    for o in &member.outputs {
        if !outputs.contains(&o.name.as_str()) {
            return Err(invalid(format!(
                "missing output {:?}; outputs are {outputs:?}",
                o.name
            )));
        }
    }
    let name = |role| member.output(role).map(|o| o.name.clone());
    let probs = name(OutputRole::Probs).ok_or_else(|| invalid("no probs output".into()))?;
    if let Some(shape) = session
        .outputs()
        .iter()
        .find(|o| o.name() == probs)
        .and_then(|o| o.dtype().tensor_shape())
    {
        let classes = shape.last().copied().unwrap_or(-1);
        if classes >= 0 && classes as usize != member.labels.len() {
            return Err(invalid(format!(
                "it outputs {classes} classes but the card lists {} labels",
                member.labels.len()
            )));
        }
    }
    drop(session);
    let order = card
        .labels
        .iter()
        .map(|l| member.labels.iter().position(|m| m == l))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| invalid("its labels are not the card's".into()))?;
    Ok(MemberSession {
        sessions: pool,
        order,
        probs,
        embedding: name(OutputRole::Embedding),
        pooled: name(OutputRole::Pooled),
    })
}

/// The graph's input against the card's: a float32 tensor of rank 4 whose fixed
/// dimensions are the card's channels, height and width (the batch, and any axis the graph
/// leaves dynamic, are not checked). A mismatch refuses the model when it is opened, with
/// the card, the member and both shapes named; otherwise every batch would fail at run time
/// and every image become an error row.
fn check_input(
    card: &ModelCard,
    member: &Member,
    file: &CheckedFile,
    graph: &ort::value::ValueType,
) -> Result<()> {
    let spec = &member.input;
    let wanted = [
        -1,
        spec.channels as i64,
        spec.height as i64,
        spec.width as i64,
    ];
    let shape: Option<Vec<i64>> = graph.tensor_shape().map(|s| s.iter().copied().collect());
    let dims_match = shape.as_ref().is_some_and(|s| {
        s.len() == 4
            && s.iter()
                .zip(wanted)
                .skip(1)
                .all(|(&have, want)| have < 0 || have == want)
    });
    let float = graph.tensor_type() == Some(ort::value::TensorElementType::Float32);
    if dims_match && float {
        return Ok(());
    }
    let show = |dims: &[i64]| {
        let d: Vec<String> = dims
            .iter()
            .map(|&x| {
                if x < 0 {
                    "batch".to_string()
                } else {
                    x.to_string()
                }
            })
            .collect();
        format!("[{}]", d.join(", "))
    };
    let theirs = match (&shape, graph.tensor_type()) {
        (Some(s), Some(ort::value::TensorElementType::Float32)) => format!("{} float32", show(s)),
        (Some(s), Some(t)) => format!("{} {t}", show(s)),
        _ => graph.to_string(),
    };
    let member_name = if card.is_ensemble() {
        format!("member {:?}", member.name)
    } else {
        format!("the network {:?}", member.name)
    };
    Err(Error::InvalidCard {
        path: file
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join(crate::model::card::CARD_FILE),
        reason: format!(
            "{member_name}: its input {:?} is {} {} in the card but {theirs} in {}; the card \
             does not describe this network",
            spec.name,
            show(&wanted),
            spec.dtype,
            file.path.display()
        ),
    })
}
