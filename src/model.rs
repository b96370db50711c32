//! The classifier networks, written with burn.
//!
//! Every network's forward pass returns the three tensors the ONNX export exposes:
//! class probabilities `[N, C]`, the penultimate embedding `[N, E]` and the globally
//! average-pooled last-conv feature vector `[N, F]`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which network to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The blog's network: 112x92 RGB, conv 16/32/64, dense 10752-512-128-C, dropout.
    Seed,
    /// facebatch's default: 64x64 RGB, seven batch-normalised 3x3 convs, global pooling.
    Compact,
}

impl Arch {
    /// Input (height, width) of the architecture.
    pub fn input_size(self) -> (u32, u32) {
        match self {
            Arch::Seed => (112, 92),
            Arch::Compact => (64, 64),
        }
    }

    /// Short stable name used in cards and file names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Seed => "seed",
            Arch::Compact => "compact",
        }
    }

    /// One-line description for the model card.
    pub fn describe(self) -> &'static str {
        match self {
            Arch::Seed => {
                "blog network: conv3x3(16)-relu-maxpool2(same) / conv3x3(32)-relu-maxpool2(same) / \
                 conv3x3(64)-relu-maxpool2(same) / flatten 10752 / dense 512-relu-dropout0.5 / \
                 dense 128-relu-dropout0.5 (embedding) / dense C-softmax"
            }
            Arch::Compact => {
                "compact: [conv3x3-bn-relu] 16 / pool / 32 / pool / 64,64 / pool / 128,128 / pool / \
                 256 / global-avg-pool 256 (pooled features) / dropout0.3 / dense 128-relu (embedding) / \
                 dropout0.3 / dense C-softmax"
            }
        }
    }
}

/// A 3x3 convolution with SAME padding, optionally batch-normalised, followed by ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: Option<BatchNorm>,
}

impl ConvBlock {
    fn new(c_in: usize, c_out: usize, bn: bool, device: &Device) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(!bn)
                .init(device),
            bn: bn.then(|| BatchNormConfig::new(c_out).init(device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        relu(x)
    }
}

fn pool2() -> MaxPool2d {
    // 2x2 stride 2 with ceil mode equals TensorFlow's SAME max-pooling (23 -> 12).
    MaxPool2dConfig::new([2, 2]).with_ceil_mode(true).init()
}

/// Intermediate activations, in order, for visualisation and tests.
pub struct Outputs {
    /// Class probabilities `[N, C]`.
    pub probs: Tensor<2>,
    /// Penultimate embedding `[N, E]`.
    pub embedding: Tensor<2>,
    /// Global-average-pooled last conv feature vector `[N, F]`.
    pub pooled: Tensor<2>,
    /// Logits `[N, C]` (training only; not exported).
    pub logits: Tensor<2>,
}

/// The blog network.
#[derive(Module, Debug)]
pub struct SeedNet {
    c1: ConvBlock,
    c2: ConvBlock,
    c3: ConvBlock,
    pool: MaxPool2d,
    gap: AdaptiveAvgPool2d,
    fc1: Linear,
    fc2: Linear,
    out: Linear,
    drop: Dropout,
}

impl SeedNet {
    fn new(classes: usize, device: &Device) -> Self {
        SeedNet {
            c1: ConvBlock::new(3, 16, false, device),
            c2: ConvBlock::new(16, 32, false, device),
            c3: ConvBlock::new(32, 64, false, device),
            pool: pool2(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc1: LinearConfig::new(10752, 512).init(device),
            fc2: LinearConfig::new(512, 128).init(device),
            out: LinearConfig::new(128, classes).init(device),
            drop: DropoutConfig::new(0.5).init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Outputs {
        let x = self.pool.forward(self.c1.forward(x));
        let x = self.pool.forward(self.c2.forward(x));
        let x = self.pool.forward(self.c3.forward(x));
        let [n, c, _, _] = x.dims();
        let pooled = self.gap.forward(x.clone()).reshape([n, c]);
        let x = x.flatten::<2>(1, 3);
        let x = self.drop.forward(relu(self.fc1.forward(x)));
        let embedding = relu(self.fc2.forward(x));
        let logits = self.out.forward(self.drop.forward(embedding.clone()));
        finish(logits, embedding, pooled)
    }
}

/// facebatch's default network.
#[derive(Module, Debug)]
pub struct CompactNet {
    blocks: Vec<ConvBlock>,
    pool: MaxPool2d,
    gap: AdaptiveAvgPool2d,
    fc: Linear,
    out: Linear,
    drop: Dropout,
}

/// (output channels, max-pool after this block)
const COMPACT_PLAN: [(usize, bool); 7] = [
    (16, true),
    (32, true),
    (64, false),
    (64, true),
    (128, false),
    (128, true),
    (256, false),
];

impl CompactNet {
    fn new(classes: usize, device: &Device) -> Self {
        let mut c_in = 3;
        let mut blocks = Vec::new();
        for (c_out, _) in COMPACT_PLAN {
            blocks.push(ConvBlock::new(c_in, c_out, true, device));
            c_in = c_out;
        }
        CompactNet {
            blocks,
            pool: pool2(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(c_in, 128).init(device),
            out: LinearConfig::new(128, classes).init(device),
            drop: DropoutConfig::new(0.3).init(),
        }
    }

    fn forward(&self, mut x: Tensor<4>) -> Outputs {
        for (block, (_, pool)) in self.blocks.iter().zip(COMPACT_PLAN) {
            x = block.forward(x);
            if pool {
                x = self.pool.forward(x);
            }
        }
        let [n, c, _, _] = x.dims();
        let pooled = self.gap.forward(x).reshape([n, c]);
        let embedding = relu(self.fc.forward(self.drop.forward(pooled.clone())));
        let logits = self.out.forward(self.drop.forward(embedding.clone()));
        finish(logits, embedding, pooled)
    }
}

fn finish(logits: Tensor<2>, embedding: Tensor<2>, pooled: Tensor<2>) -> Outputs {
    // Softmax from exp/sum: the exporter lowers these, not the fused softmax.
    let e = logits.clone().exp();
    let probs = e.clone() / e.sum_dim(1);
    Outputs {
        probs,
        embedding,
        pooled,
        logits,
    }
}

/// Any facebatch network. A process holds one or two, so the size gap between variants
/// does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    Seed(SeedNet),
    Compact(CompactNet),
}

impl Net {
    /// Builds a freshly initialised network on `device`.
    pub fn new(arch: Arch, classes: usize, device: &Device) -> Self {
        match arch {
            Arch::Seed => Net::Seed(SeedNet::new(classes, device)),
            Arch::Compact => Net::Compact(CompactNet::new(classes, device)),
        }
    }

    /// Full forward pass.
    pub fn forward(&self, x: Tensor<4>) -> Outputs {
        match self {
            Net::Seed(n) => n.forward(x),
            Net::Compact(n) => n.forward(x),
        }
    }

    /// The exported signature: (probabilities, embedding, pooled features).
    pub fn forward_export(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let o = self.forward(x);
        (o.probs, o.embedding, o.pooled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_card() {
        let device = Device::default();
        for arch in [Arch::Seed, Arch::Compact] {
            let (h, w) = arch.input_size();
            let net = Net::new(arch, 2, &device).valid();
            let x = Tensor::<4>::zeros([3, 3, h as usize, w as usize], &device);
            let o = net.forward(x);
            assert_eq!(o.probs.dims(), [3, 2]);
            let sums = o.probs.sum_dim(1).into_data().try_to_vec::<f32>().unwrap();
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
            assert_eq!(o.embedding.dims(), [3, 128]);
            let f = o.pooled.dims()[1];
            assert_eq!(f, if arch == Arch::Seed { 64 } else { 256 });
        }
    }
}
