//! The classifier: an exported facebatch model, checked against its card, run through ONNX
//! Runtime the way the card says (test-time flip, calibration).

use std::path::{Path, PathBuf};

use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::model::card::{ModelCard, OUTPUT_NAMES, Precision, resolve_model_paths};
use crate::onnx::{SessionOptions, SessionPool};

/// Outputs for one batch, row-major.
#[derive(Clone, Debug, Default)]
pub struct BatchOutput {
    pub n: usize,
    /// `[n, classes]`
    pub probs: Vec<f32>,
    /// `[n, embedding_dim]`
    pub embedding: Vec<f32>,
    /// `[n, pooled_dim]`
    pub pooled: Vec<f32>,
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

/// A loaded, card-checked classifier.
pub struct Classifier {
    sessions: SessionPool,
    pub card: ModelCard,
    pub onnx_path: PathBuf,
    pub onnx_sha256: String,
    pub precision: Precision,
}

/// A model's files, read once and checked against each other.
pub struct CheckedModel {
    pub onnx_path: PathBuf,
    pub card: ModelCard,
    pub bytes: Vec<u8>,
    pub sha256: String,
    pub precision: Precision,
}

impl CheckedModel {
    /// Reads `model` (a directory or its `model.onnx`) and its card, and refuses an ONNX file
    /// whose sha256 differs from the card's.
    pub fn read(model: &Path) -> Result<CheckedModel> {
        CheckedModel::read_as(model, Precision::Float32)
    }

    /// [`read`](Self::read) for one precision: `Int8` reads the card's int8 file from the
    /// same folder, and is refused when the card has none.
    pub fn read_as(model: &Path, precision: Precision) -> Result<CheckedModel> {
        let (onnx_path, card_path) = resolve_model_paths(model)?;
        let card = ModelCard::load(&card_path)?;
        let (onnx_path, expected) = match precision {
            Precision::Float32 => (onnx_path, card.onnx.sha256.clone()),
            Precision::Int8 => {
                let q = card.int8.as_ref().ok_or_else(|| {
                    Error::InvalidOption(format!(
                        "--precision int8: the model {} has no int8 copy (its card lists none); \
                         leave --precision at float32, or quantise it (scripts/int8-eval.sh)",
                        card_path.parent().unwrap_or(Path::new(".")).display()
                    ))
                })?;
                let mut parts = Path::new(&q.file).components();
                if !matches!(
                    (parts.next(), parts.next()),
                    (Some(std::path::Component::Normal(_)), None)
                ) {
                    return Err(Error::InvalidCard {
                        path: card_path,
                        reason: format!("int8.file {:?} must be a file name", q.file),
                    });
                }
                let dir = card_path.parent().unwrap_or(Path::new("."));
                (dir.join(&q.file), q.sha256.clone())
            }
        };
        let bytes = fs_err::read(&onnx_path)?;
        let sha256 = crate::fsutil::sha256_hex(&bytes);
        if sha256 != expected {
            return Err(Error::InvalidModel {
                path: onnx_path,
                reason: format!(
                    "sha256 {sha256} does not match its card ({expected}); the model or the card was changed"
                ),
            });
        }
        Ok(CheckedModel {
            onnx_path,
            card,
            bytes,
            sha256,
            precision,
        })
    }
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

    /// A classifier with `sessions` sessions; the first one's inputs and outputs are
    /// checked against the card.
    pub fn from_checked_pooled(
        m: &CheckedModel,
        opts: &SessionOptions,
        sessions: usize,
    ) -> Result<Classifier> {
        let (onnx_path, card, sha) = (m.onnx_path.clone(), m.card.clone(), m.sha256.clone());
        let invalid = |reason: String| Error::InvalidModel {
            path: onnx_path.clone(),
            reason,
        };
        let pool = SessionPool::build(&m.bytes, opts, &onnx_path, sessions)?;
        let session = pool.get()?;
        let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if inputs != [card.input.name.as_str()] {
            return Err(invalid(format!(
                "inputs {inputs:?} do not match the card's {:?}",
                card.input.name
            )));
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        for name in OUTPUT_NAMES {
            if !outputs.contains(&name) {
                return Err(invalid(format!(
                    "missing output {name:?}; outputs are {outputs:?}"
                )));
            }
        }
        if let Some(shape) = session
            .outputs()
            .iter()
            .find(|o| o.name() == "probs")
            .and_then(|o| o.dtype().tensor_shape())
        {
            let classes = shape.last().copied().unwrap_or(-1);
            if classes >= 0 && classes as usize != card.labels.len() {
                return Err(invalid(format!(
                    "it outputs {classes} classes but the card lists {} labels",
                    card.labels.len()
                )));
            }
        }
        drop(session);
        Ok(Classifier {
            sessions: pool,
            card,
            onnx_path,
            onnx_sha256: sha,
            precision: m.precision,
        })
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.card.labels.len()
    }

    /// Runs a batch of `n` preprocessed images laid out as the card's input says, and
    /// returns the probabilities the card defines: with its `test_time_flip`, each image is
    /// also run mirrored and the two probability vectors averaged (embedding and pooled
    /// features stay those of the image itself); with its `calibration`, the temperature is
    /// applied.
    pub fn run(&self, input: &[f32], n: usize) -> Result<BatchOutput> {
        let mut out = self.run_uncalibrated(input, n)?;
        if let Some(c) = &self.card.calibration {
            let classes = self.card.labels.len();
            crate::model::calibration::apply_temperature(&mut out.probs, classes, c.temperature);
        }
        Ok(out)
    }

    /// Classifies face crops as the card says: each crop fitted and normalised to the
    /// card's input (`InputSpec::tensor_from_rgb`),
    /// then [`run`](Self::run) (test-time flip, calibration). Every command that reports a
    /// probability for an image goes through `run`; this is the shortcut for callers that
    /// hold images rather than a batch tensor (classify builds its tensors in a stage of
    /// their own, in parallel).
    pub fn classify_images(&self, images: &[&image::RgbImage]) -> Result<BatchOutput> {
        let spec = &self.card.input;
        let mut input = Vec::with_capacity(images.len() * spec.len());
        for img in images {
            input.extend_from_slice(&spec.tensor_from_rgb(img));
        }
        self.run(&input, images.len())
    }

    /// [`run`](Self::run) without the card's calibration: what a temperature is fitted to.
    pub fn run_uncalibrated(&self, input: &[f32], n: usize) -> Result<BatchOutput> {
        if !self.card.test_time_flip || n == 0 {
            return self.run_raw(input, n);
        }
        let (h, w) = (
            self.card.input.height as usize,
            self.card.input.width as usize,
        );
        let mut both = Vec::with_capacity(input.len() * 2);
        both.extend_from_slice(input);
        for row in input.chunks(w) {
            both.extend(row.iter().rev());
        }
        debug_assert_eq!(both.len(), 2 * n * 3 * h * w);
        let mut out = self.run_raw(&both, 2 * n)?;
        let classes = out.probs.len() / (2 * n);
        let half = n * classes;
        let probs: Vec<f32> = (0..half)
            .map(|i| (out.probs[i] + out.probs[half + i]) / 2.0)
            .collect();
        let emb = out.embedding.len() / 2;
        let pooled = out.pooled.len() / 2;
        out.embedding.truncate(emb);
        out.pooled.truncate(pooled);
        out.probs = probs;
        out.n = n;
        Ok(out)
    }

    fn run_raw(&self, input: &[f32], n: usize) -> Result<BatchOutput> {
        let spec = &self.card.input;
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
        let name = spec.name.clone();
        let mut session = self.sessions.get()?;
        let outputs = session
            .run(ort::inputs![name => tensor])
            .map_err(|e| Error::ort("running the model", e))?;
        let mut out = BatchOutput {
            n,
            ..Default::default()
        };
        for (slot, key) in [
            (&mut out.probs, "probs"),
            (&mut out.embedding, "embedding"),
            (&mut out.pooled, "pooled"),
        ] {
            let (_, data) = outputs[key]
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::ort(format!("reading output {key}"), e))?;
            *slot = data.to_vec();
        }
        Ok(out)
    }
}
