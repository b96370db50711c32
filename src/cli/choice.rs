//! The command line's names for the library's choices. The library's enums know nothing of
//! clap; these mirror them for `--help` and completions, and each `*_parser` gives clap a
//! parser that yields the library's own type, so the `*Args` fields and job files hold the
//! library's values.

use clap::ValueEnum;
use clap::builder::{EnumValueParser, TypedValueParser};

use facebatch::model::card::Precision;
use facebatch::onnx::ExecDevice;
use facebatch::vision::faces::FaceMode;

/// Where inference runs (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

impl From<DeviceArg> for ExecDevice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Cpu => ExecDevice::Cpu,
            DeviceArg::Cuda => ExecDevice::Cuda,
        }
    }
}

/// How faces are found (`--faces`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FacesArg {
    /// Detect; fall back to the whole image for small face crops with no detection.
    Auto,
    /// Detect on every image; no face gives `no_face`.
    Detect,
    /// The image is a face crop; no detection.
    Whole,
}

impl From<FacesArg> for FaceMode {
    fn from(f: FacesArg) -> Self {
        match f {
            FacesArg::Auto => FaceMode::Auto,
            FacesArg::Detect => FaceMode::Detect,
            FacesArg::Whole => FaceMode::Whole,
        }
    }
}

/// Which copy of the network runs (`--precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// The float32 network (model.onnx).
    Float32,
    /// The card's int8 copy: about 1.9x faster inference on AVX2/VNNI CPUs, accuracy within
    /// 0.2 points on every source of the default model's test and validation splits
    /// (docs/int8.md).
    Int8,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Float32 => Precision::Float32,
            PrecisionArg::Int8 => Precision::Int8,
        }
    }
}

/// `--precision`, parsed into the library's [`Precision`].
pub fn precision_parser() -> impl TypedValueParser<Value = Precision> {
    EnumValueParser::<PrecisionArg>::new().map(Precision::from)
}

/// `--device`, parsed into the library's [`ExecDevice`].
pub fn device_parser() -> impl TypedValueParser<Value = ExecDevice> {
    EnumValueParser::<DeviceArg>::new().map(ExecDevice::from)
}

/// `--faces`, parsed into the library's [`FaceMode`].
pub fn faces_parser() -> impl TypedValueParser<Value = FaceMode> {
    EnumValueParser::<FacesArg>::new().map(FaceMode::from)
}

/// Which network to build (`train --arch`).
#[cfg(feature = "train")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
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
    /// dlib's gender network (CC0), 32x32: fine-tune it from its published weights with
    /// `--init models/dlib-gender/v1` (its input and alignment come with it).
    Dlib,
}

#[cfg(feature = "train")]
impl From<ArchArg> for facebatch::train::net::Arch {
    fn from(a: ArchArg) -> Self {
        use facebatch::train::net::Arch;
        match a {
            ArchArg::Seed => Arch::Seed,
            ArchArg::Compact => Arch::Compact,
            ArchArg::Residual => Arch::Residual,
            ArchArg::Separable => Arch::Separable,
            ArchArg::Dlib => Arch::Dlib,
        }
    }
}

/// `--arch`, parsed into the library's `Arch`.
#[cfg(feature = "train")]
pub fn arch_parser() -> impl TypedValueParser<Value = facebatch::train::net::Arch> {
    EnumValueParser::<ArchArg>::new().map(facebatch::train::net::Arch::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names on the command line are the library's own: `FaceMode`'s `Display`, and
    /// the names the card and `run.json` record.
    #[test]
    fn every_choice_names_the_library_value() {
        for f in FacesArg::value_variants() {
            let name = f.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(FaceMode::from(*f).to_string(), name);
        }
        for d in DeviceArg::value_variants() {
            let name = d.to_possible_value().unwrap().get_name().to_string();
            let lib = serde_json::to_value(ExecDevice::from(*d)).unwrap();
            assert_eq!(lib, serde_json::Value::String(name));
        }
        for p in PrecisionArg::value_variants() {
            let name = p.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(Precision::from(*p).to_string(), name);
            let lib = serde_json::to_value(Precision::from(*p)).unwrap();
            assert_eq!(lib, serde_json::Value::String(name));
        }
        #[cfg(feature = "train")]
        for a in ArchArg::value_variants() {
            let name = a.to_possible_value().unwrap().get_name().to_string();
            let lib = serde_json::to_value(facebatch::train::net::Arch::from(*a)).unwrap();
            assert_eq!(lib, serde_json::Value::String(name));
        }
    }
}

/// How an ensemble combines its members (`ensemble --rule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RuleArg {
    /// The plain mean of the members' calibrated probabilities.
    Mean,
    /// A weighted mean, the weights with the lowest log-loss on the fitting split.
    Weighted,
}

impl From<RuleArg> for facebatch::model::card::CombineRule {
    fn from(r: RuleArg) -> Self {
        match r {
            RuleArg::Mean => facebatch::model::card::CombineRule::Mean,
            RuleArg::Weighted => facebatch::model::card::CombineRule::Weighted,
        }
    }
}

/// `--rule`, parsed into the library's [`CombineRule`](facebatch::model::card::CombineRule).
pub fn rule_parser() -> impl TypedValueParser<Value = facebatch::model::card::CombineRule> {
    EnumValueParser::<RuleArg>::new().map(facebatch::model::card::CombineRule::from)
}
