//! The classifier networks, written with burn.
//!
//! Every network's forward pass returns the three tensors the ONNX export exposes:
//! class probabilities `[N, C]`, the penultimate embedding `[N, E]` and the globally
//! average-pooled last-conv feature vector `[N, F]`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, AvgPool2d, AvgPool2dConfig, MaxPool2d,
    MaxPool2dConfig,
};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which network to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The blog's network: 112x92 RGB, conv 16/32/64, dense 10752-512-128-C, dropout.
    Seed,
    /// facebatch's default: 64x64 RGB, seven batch-normalised 3x3 convs, global pooling.
    Compact,
    /// Residual: a stem conv, three two-conv residual blocks (1x1 projection shortcuts),
    /// a last conv and global pooling; 64x64 by default.
    Residual,
    /// Depthwise-separable (MobileNet-style): a stem conv, six depthwise 3x3 + pointwise
    /// 1x1 blocks, global pooling; cheap enough for 96x96 input.
    Separable,
    /// dlib's gender network (`dnn_gender_classifier_v1`, CC0): 32x32 RGB, conv 32, 32 /
    /// avg-pool / 64, 64 / avg-pool / dense 4096-16-C. Fine-tuned from its published
    /// weights (`train --init models/dlib-gender/v1`), with its own input and alignment.
    Dlib,
}

impl Arch {
    /// Default input (height, width) of the architecture.
    pub fn input_size(self) -> (u32, u32) {
        match self {
            Arch::Seed => (112, 92),
            Arch::Compact | Arch::Residual => (64, 64),
            Arch::Separable => (96, 96),
            Arch::Dlib => (32, 32),
        }
    }

    /// Whether the network takes `height` x `width` input. The fully convolutional ones
    /// take any size from 32 up (four 2x2 pools); the blog network's dense layer fixes it.
    pub fn accepts_size(self, height: u32, width: u32) -> bool {
        match self {
            Arch::Seed | Arch::Dlib => (height, width) == self.input_size(),
            _ => (32..=256).contains(&height) && (32..=256).contains(&width),
        }
    }

    /// Length of the `pooled` output.
    pub fn pooled_dim(self) -> usize {
        match self {
            Arch::Seed => 64,
            Arch::Compact | Arch::Residual => 256,
            Arch::Separable => 384,
            Arch::Dlib => 64,
        }
    }

    /// Multiply-accumulates of one forward pass on one `height` x `width` face (conv and
    /// dense layers; batch norm, pooling and activations are negligible). FLOPs are twice
    /// this.
    pub fn macs(self, height: u32, width: u32) -> u64 {
        // Spatial size after k ceil-mode 2x2 pools.
        let at = |k: u32| -> u64 {
            let (mut h, mut w) = (height as u64, width as u64);
            for _ in 0..k {
                (h, w) = (h.div_ceil(2), w.div_ceil(2));
            }
            h * w
        };
        let conv = |k: u32, c_in: u64, c_out: u64, kernel: u64| at(k) * c_in * c_out * kernel;
        match self {
            Arch::Seed => {
                conv(0, 3, 16, 9)
                    + conv(1, 16, 32, 9)
                    + conv(2, 32, 64, 9)
                    + 10752 * 512
                    + 512 * 128
            }
            Arch::Compact => {
                let mut total = 0;
                let (mut c_in, mut pools) = (3u64, 0u32);
                for (c_out, pool) in COMPACT_PLAN {
                    total += conv(pools, c_in, c_out as u64, 9);
                    c_in = c_out as u64;
                    pools += u32::from(pool);
                }
                total + 256 * 128
            }
            Arch::Residual => {
                let mut total = conv(0, 3, RESIDUAL_STEM as u64, 9);
                let mut c_in = RESIDUAL_STEM as u64;
                for (k, c_out) in RESIDUAL_PLAN.iter().enumerate() {
                    let (k, c_out) = (k as u32 + 1, *c_out as u64);
                    total += conv(k, c_in, c_out, 9)
                        + conv(k, c_out, c_out, 9)
                        + conv(k, c_in, c_out, 1);
                    c_in = c_out;
                }
                total + conv(4, c_in, 256, 9) + 256 * 128
            }
            Arch::Dlib => {
                conv(0, 3, 32, 9)
                    + conv(0, 32, 32, 9)
                    + conv(1, 32, 64, 9)
                    + conv(1, 64, 64, 9)
                    + at(2) * 64 * DLIB_HIDDEN as u64
                    + DLIB_HIDDEN as u64 * 2
            }
            Arch::Separable => {
                let mut total = conv(0, 3, SEPARABLE_STEM as u64, 9);
                let mut c_in = SEPARABLE_STEM as u64;
                let mut pools = 1;
                for (c_out, pool) in SEPARABLE_PLAN {
                    total += conv(pools, 1, c_in, 9) + conv(pools, c_in, c_out as u64, 1);
                    c_in = c_out as u64;
                    pools += u32::from(pool);
                }
                total + 384 * 128
            }
        }
    }

    /// Short stable name used in cards and file names.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Seed => "seed",
            Arch::Compact => "compact",
            Arch::Residual => "residual",
            Arch::Separable => "separable",
            Arch::Dlib => "dlib",
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
            Arch::Residual => {
                "residual: conv3x3-bn-relu 24 / pool / [res 32] / pool / [res 64] / pool / \
                 [res 128] / pool / conv3x3-bn-relu 256 / global-avg-pool 256 (pooled features) / \
                 dropout0.3 / dense 128-relu (embedding) / dropout0.3 / dense C-softmax; \
                 res = conv3x3-bn-relu, conv3x3-bn, plus a 1x1-conv-bn shortcut, relu"
            }
            Arch::Separable => {
                "separable: conv3x3-bn-relu 24 / pool / [dw 48] / pool / [dw 96, dw 96] / pool / \
                 [dw 192, dw 192] / pool / [dw 384] / global-avg-pool 384 (pooled features) / \
                 dropout0.3 / dense 128-relu (embedding) / dropout0.3 / dense C-softmax; \
                 dw = depthwise conv3x3-bn-relu, pointwise conv1x1-bn-relu"
            }
            Arch::Dlib => {
                "dlib (dnn_gender_classifier_v1, CC0): [conv3x3-relu] 32, 32 / avg-pool / 64, 64 / \
                 avg-pool / flatten 4096 / dense 16-relu (embedding) / dense C-softmax; 32x32 input; \
                 pooled features: global average of the last convolution (64)"
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
        ConvBlock::with(c_in, c_out, 3, 1, bn, device)
    }

    /// A `kernel` x `kernel` convolution in `groups` groups (`groups == c_in`: depthwise).
    fn with(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        groups: usize,
        bn: bool,
        device: &Device,
    ) -> Self {
        ConvBlock {
            conv: Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_padding(PaddingConfig2d::Same)
                .with_groups(groups)
                .with_bias(!bn)
                .init(device),
            bn: bn.then(|| BatchNormConfig::new(c_out).init(device)),
        }
    }

    /// Convolution and batch norm, without the ReLU.
    fn linear(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.linear(x))
    }
}

/// Two 3x3 conv-bn layers with a 1x1 conv-bn projection shortcut: relu(f(x) + p(x)).
#[derive(Module, Debug)]
pub struct ResBlock {
    a: ConvBlock,
    b: ConvBlock,
    shortcut: ConvBlock,
}

impl ResBlock {
    fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        ResBlock {
            a: ConvBlock::new(c_in, c_out, true, device),
            b: ConvBlock::new(c_out, c_out, true, device),
            shortcut: ConvBlock::with(c_in, c_out, 1, 1, true, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.b.linear(self.a.forward(x.clone()));
        relu(y + self.shortcut.linear(x))
    }
}

/// Depthwise 3x3 then pointwise 1x1, each batch-normalised with ReLU.
#[derive(Module, Debug)]
pub struct SeparableBlock {
    depthwise: ConvBlock,
    pointwise: ConvBlock,
}

impl SeparableBlock {
    fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        SeparableBlock {
            depthwise: ConvBlock::with(c_in, c_in, 3, c_in, true, device),
            pointwise: ConvBlock::with(c_in, c_out, 1, 1, true, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pointwise.forward(self.depthwise.forward(x))
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
        head(x, &self.gap, &self.fc, &self.out, &self.drop)
    }
}

/// Stem width and per-stage widths of the residual network (a pool before each stage).
const RESIDUAL_STEM: usize = 24;
const RESIDUAL_PLAN: [usize; 3] = [32, 64, 128];

/// The residual network.
#[derive(Module, Debug)]
pub struct ResidualNet {
    stem: ConvBlock,
    stages: Vec<ResBlock>,
    last: ConvBlock,
    pool: MaxPool2d,
    gap: AdaptiveAvgPool2d,
    fc: Linear,
    out: Linear,
    drop: Dropout,
}

impl ResidualNet {
    fn new(classes: usize, device: &Device) -> Self {
        let mut c_in = RESIDUAL_STEM;
        let mut stages = Vec::new();
        for c_out in RESIDUAL_PLAN {
            stages.push(ResBlock::new(c_in, c_out, device));
            c_in = c_out;
        }
        ResidualNet {
            stem: ConvBlock::new(3, RESIDUAL_STEM, true, device),
            stages,
            last: ConvBlock::new(c_in, 256, true, device),
            pool: pool2(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(256, 128).init(device),
            out: LinearConfig::new(128, classes).init(device),
            drop: DropoutConfig::new(0.3).init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Outputs {
        let mut x = self.stem.forward(x);
        for stage in &self.stages {
            x = stage.forward(self.pool.forward(x));
        }
        let x = self.last.forward(self.pool.forward(x));
        head(x, &self.gap, &self.fc, &self.out, &self.drop)
    }
}

/// Stem width and (output channels, pool after) of the separable network's blocks.
const SEPARABLE_STEM: usize = 24;
const SEPARABLE_PLAN: [(usize, bool); 6] = [
    (48, true),
    (96, false),
    (96, true),
    (192, false),
    (192, true),
    (384, false),
];

/// The depthwise-separable network.
#[derive(Module, Debug)]
pub struct SeparableNet {
    stem: ConvBlock,
    blocks: Vec<SeparableBlock>,
    pool: MaxPool2d,
    gap: AdaptiveAvgPool2d,
    fc: Linear,
    out: Linear,
    drop: Dropout,
}

impl SeparableNet {
    fn new(classes: usize, device: &Device) -> Self {
        let mut c_in = SEPARABLE_STEM;
        let mut blocks = Vec::new();
        for (c_out, _) in SEPARABLE_PLAN {
            blocks.push(SeparableBlock::new(c_in, c_out, device));
            c_in = c_out;
        }
        SeparableNet {
            stem: ConvBlock::new(3, SEPARABLE_STEM, true, device),
            blocks,
            pool: pool2(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(c_in, 128).init(device),
            out: LinearConfig::new(128, classes).init(device),
            drop: DropoutConfig::new(0.3).init(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Outputs {
        let mut x = self.pool.forward(self.stem.forward(x));
        for (block, (_, pool)) in self.blocks.iter().zip(SEPARABLE_PLAN) {
            x = block.forward(x);
            if pool {
                x = self.pool.forward(x);
            }
        }
        head(x, &self.gap, &self.fc, &self.out, &self.drop)
    }
}

/// Global average pool, dropout, dense 128 (the embedding), dropout, dense C.
/// Width of dlib's hidden dense layer.
pub const DLIB_HIDDEN: usize = 16;

/// dlib's gender network. Its published graph has a per-channel affine after each
/// convolution and a constant factor before each dense layer; the import folds them into
/// the convolutions' and dense layers' weights (`train::import`), so this is the same
/// function with fewer operations.
#[derive(Module, Debug)]
pub struct DlibNet {
    pub convs: Vec<Conv2d>,
    pool: AvgPool2d,
    gap: AdaptiveAvgPool2d,
    pub fc: Linear,
    pub out: Linear,
}

impl DlibNet {
    fn new(classes: usize, device: &Device) -> Self {
        let conv = |c_in: usize, c_out: usize| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        DlibNet {
            convs: vec![conv(3, 32), conv(32, 32), conv(32, 64), conv(64, 64)],
            pool: AvgPool2dConfig::new([2, 2]).init(),
            gap: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(64 * 8 * 8, DLIB_HIDDEN).init(device),
            out: LinearConfig::new(DLIB_HIDDEN, classes).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Outputs {
        let mut x = x;
        for (i, conv) in self.convs.iter().enumerate() {
            x = relu(conv.forward(x));
            if i % 2 == 1 {
                x = self.pool.forward(x);
            }
        }
        let [n, c, _, _] = x.dims();
        let pooled = self.gap.forward(x.clone()).reshape([n, c]);
        let embedding = relu(self.fc.forward(x.flatten::<2>(1, 3)));
        let logits = self.out.forward(embedding.clone());
        finish(logits, embedding, pooled)
    }
}

fn head(
    x: Tensor<4>,
    gap: &AdaptiveAvgPool2d,
    fc: &Linear,
    out: &Linear,
    drop: &Dropout,
) -> Outputs {
    let [n, c, _, _] = x.dims();
    let pooled = gap.forward(x).reshape([n, c]);
    let embedding = relu(fc.forward(drop.forward(pooled.clone())));
    let logits = out.forward(drop.forward(embedding.clone()));
    finish(logits, embedding, pooled)
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
    Residual(ResidualNet),
    Separable(SeparableNet),
    Dlib(DlibNet),
}

impl Net {
    /// Builds a freshly initialised network on `device`.
    pub fn new(arch: Arch, classes: usize, device: &Device) -> Self {
        match arch {
            Arch::Seed => Net::Seed(SeedNet::new(classes, device)),
            Arch::Compact => Net::Compact(CompactNet::new(classes, device)),
            Arch::Residual => Net::Residual(ResidualNet::new(classes, device)),
            Arch::Separable => Net::Separable(SeparableNet::new(classes, device)),
            Arch::Dlib => Net::Dlib(DlibNet::new(classes, device)),
        }
    }

    /// Full forward pass.
    pub fn forward(&self, x: Tensor<4>) -> Outputs {
        match self {
            Net::Seed(n) => n.forward(x),
            Net::Compact(n) => n.forward(x),
            Net::Residual(n) => n.forward(x),
            Net::Separable(n) => n.forward(x),
            Net::Dlib(n) => n.forward(x),
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
        for arch in [
            Arch::Seed,
            Arch::Compact,
            Arch::Residual,
            Arch::Separable,
            Arch::Dlib,
        ] {
            let (h, w) = arch.input_size();
            let net = Net::new(arch, 2, &device).valid();
            let x = Tensor::<4>::zeros([3, 3, h as usize, w as usize], &device);
            let o = net.forward(x);
            assert_eq!(o.probs.dims(), [3, 2]);
            let sums = o.probs.sum_dim(1).into_data().try_to_vec::<f32>().unwrap();
            assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
            // dlib's network has a 16-wide dense layer where facebatch's have 128.
            let embedding = if arch == Arch::Dlib { 16 } else { 128 };
            assert_eq!(o.embedding.dims(), [3, embedding]);
            assert_eq!(o.pooled.dims()[1], arch.pooled_dim());
        }
        // The fully convolutional networks take other sizes.
        let net = Net::new(Arch::Compact, 2, &device).valid();
        let o = net.forward(Tensor::<4>::zeros([1, 3, 88, 88], &device));
        assert_eq!(o.probs.dims(), [1, 2]);
        assert!(Arch::Compact.accepts_size(88, 88) && !Arch::Seed.accepts_size(88, 88));
    }

    #[test]
    fn cost_of_dlibs_network() {
        // 24.5 M multiply-accumulates: 49 MFLOP a pass, as the issue and card state.
        assert_eq!(Arch::Dlib.macs(32, 32), 24_543_264);
    }

    #[test]
    fn cost_of_the_default_network() {
        // v3's compact at 64x64: 39.5 M multiply-accumulates, 79 MFLOP a pass (docs).
        let macs = Arch::Compact.macs(64, 64);
        assert_eq!(macs, 39_518_208 + 256 * 128);
        // Cost grows with the input area (a little faster: ceil-mode pooling of 11 gives 6).
        let ratio = Arch::Compact.macs(88, 88) as f64 / macs as f64;
        assert!(ratio > (88.0f64 / 64.0).powi(2) && ratio < 1.95, "{ratio}");
    }
}
