//! One optimisation step, the learning-rate schedule, batches (augmented or not) and
//! validation.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::prepare::Prepared;
use crate::train::augment::Augment;
use crate::train::net::Net;
use crate::vision::decode::InputSpec;

/// Learning rate: linear warm-up, then cosine decay to 2% of the peak.
pub(super) fn lr_at(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    let floor = 0.02 * peak;
    floor + (peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

pub(super) fn batch_tensor(
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

/// What validation measured.
pub(crate) struct Validation {
    pub loss: f64,
    pub accuracy: f64,
    /// Accuracy per source.
    pub per_source: BTreeMap<String, f64>,
    /// Validation images per source.
    pub counts: BTreeMap<String, usize>,
}

/// Sources with fewer validation images than this do not count in model selection: their
/// accuracy moves by several points from one epoch to the next by chance alone.
pub const SELECTION_MIN_IMAGES: usize = 100;

impl Validation {
    /// The model-selection figure: the mean of the per-source accuracies over the sources
    /// with at least [`SELECTION_MIN_IMAGES`] validation images, so a smaller collection
    /// counts as much as the largest; plain accuracy with fewer than two such sources.
    pub fn selection(&self) -> f64 {
        let big: Vec<f64> = self
            .per_source
            .iter()
            .filter(|(s, _)| self.counts.get(*s).copied().unwrap_or(0) >= SELECTION_MIN_IMAGES)
            .map(|(_, a)| *a)
            .collect();
        if big.len() < 2 {
            return self.accuracy;
        }
        big.iter().sum::<f64>() / big.len() as f64
    }
}

/// Loss and accuracy of the eval-mode network over `idx`.
pub(super) fn validate(
    net: &Net,
    prepared: &Prepared,
    idx: &[usize],
    spec: &InputSpec,
    classes: usize,
) -> Validation {
    let mut v = Validation {
        loss: 0.0,
        accuracy: 0.0,
        per_source: BTreeMap::new(),
        counts: BTreeMap::new(),
    };
    if idx.is_empty() {
        return v;
    }
    let model = net.valid();
    let device = Device::default();
    let (mut loss_sum, mut correct) = (0.0f64, 0usize);
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
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
        for ((p, t), &i) in argmax_rows(&probs, classes).iter().zip(&labels).zip(chunk) {
            let e = tally
                .entry(prepared.items[i].sample.source.as_str())
                .or_default();
            e.0 += 1;
            e.1 += usize::from(p == t);
            correct += usize::from(p == t);
        }
    }
    v.loss = loss_sum / idx.len() as f64;
    v.accuracy = correct as f64 / idx.len() as f64;
    v.per_source = tally
        .iter()
        .map(|(s, (n, c))| (s.to_string(), *c as f64 / *n as f64))
        .collect();
    v.counts = tally
        .iter()
        .map(|(s, (n, _))| (s.to_string(), *n))
        .collect();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_the_mean_over_sources_large_enough_to_tell() {
        let mut v = Validation {
            loss: 0.0,
            accuracy: 0.9,
            per_source: BTreeMap::from([
                ("a".to_string(), 0.95),
                ("b".to_string(), 0.75),
                ("tiny".to_string(), 0.2),
            ]),
            counts: BTreeMap::from([
                ("a".to_string(), 2000),
                ("b".to_string(), 100),
                ("tiny".to_string(), 47),
            ]),
        };
        assert!((v.selection() - 0.85).abs() < 1e-12, "tiny is left out");
        v.counts.insert("b".into(), 99);
        assert_eq!(v.selection(), 0.9, "one large source: plain accuracy");
    }

    #[test]
    fn lr_schedule_warms_up_then_decays() {
        assert!((lr_at(0, 10, 100, 1.0) - 0.1).abs() < 1e-9);
        assert!((lr_at(9, 10, 100, 1.0) - 1.0).abs() < 1e-9);
        assert!(lr_at(50, 10, 100, 1.0) < 1.0);
        assert!((lr_at(100, 10, 100, 1.0) - 0.02).abs() < 1e-9);
    }
}
