//! The exported ONNX model, run by ONNX Runtime, gives the same outputs as burn's eval-mode
//! network on real face images.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use facebatch::model::classifier::Classifier;
use facebatch::onnx::SessionOptions;
use facebatch::train::net::{Arch, Net};
use facebatch::vision::decode::{DecodeLimits, load_rgb};

fn parity(arch: Arch, steps: &str) {
    let (tmp, data) = common::temp_faces(12);
    let out = tmp.path().join("m");
    // Train briefly, so batch-norm statistics and weights are not at their initial values.
    let short = common::short_training("1", "6", steps);
    let o = common::run(common::train_cmd(&data, &out, &short).args(["--arch", arch.name()]));
    assert!(o.status.success());

    let classifier = Classifier::load(&out, &SessionOptions::default()).unwrap();
    let spec = classifier.card.input.clone();
    let net = Net::new(arch, 2, &Device::default())
        .try_load_file(out.join("checkpoints/best.bpk"))
        .unwrap()
        .valid();
    let mut images = common::files_in(&data.join("female"));
    images.extend(common::files_in(&data.join("male")));
    images.sort();
    let images = &images[..8];
    let mut batch = Vec::new();
    for p in images {
        batch.extend(spec.tensor_from_rgb(&load_rgb(p, DecodeLimits::default()).unwrap()));
    }
    // The network's own probabilities: the card's temperature is compared separately below.
    let ort = classifier.run_uncalibrated(&batch, images.len()).unwrap();
    let calibrated = classifier.run(&batch, images.len()).unwrap();
    let t = classifier
        .card
        .calibration
        .as_ref()
        .expect("training fits a temperature")
        .temperature;
    let mut expected = ort.probs.clone();
    facebatch::model::calibration::apply_temperature(&mut expected, 2, t);
    assert_eq!(
        calibrated.probs, expected,
        "run() applies the card's temperature"
    );
    let shape = [images.len(), 3, spec.height as usize, spec.width as usize];
    // The card's test-time flip: burn runs the mirrored batch too and the probabilities of
    // the two are averaged, as facebatch does around ONNX Runtime.
    assert!(
        classifier.card.test_time_flip,
        "flip averaging is on by default"
    );
    let mirrored: Vec<f32> = batch
        .chunks(spec.width as usize)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    let run_burn = |data: Vec<f32>| {
        net.forward(Tensor::<4>::from_data(
            TensorData::new(data, shape),
            &Device::default(),
        ))
    };
    let mut burn_out = run_burn(batch);
    let flipped = run_burn(mirrored);
    burn_out.probs = (burn_out.probs + flipped.probs) / 2.0;
    for (name, ours, theirs) in [
        ("probs", burn_out.probs, &ort.probs),
        ("embedding", burn_out.embedding, &ort.embedding),
        ("pooled", burn_out.pooled, &ort.pooled),
    ] {
        let ours = ours.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name} length");
        let max = ours
            .iter()
            .zip(theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("{arch:?} {name}: max |burn - onnxruntime| = {max:e}");
        assert!(max <= 1e-4, "{name} differs by {max}");
        assert!(ours.iter().any(|v| *v != 0.0), "{name} is not all zeros");
    }
}

/// One test per architecture, each named as written: `test name: architecture, training
/// steps per epoch;`.
macro_rules! parity_tests {
    ($($name:ident: $arch:ident, $steps:literal;)*) => {$(
        #[test]
        fn $name() {
            parity(Arch::$arch, $steps);
        }
    )*};
}

parity_tests! {
    onnx_runtime_matches_burn_for_the_compact_network: Compact, "3";
    onnx_runtime_matches_burn_for_the_residual_network: Residual, "3";
    onnx_runtime_matches_burn_for_the_separable_network: Separable, "3";
    onnx_runtime_matches_burn_for_the_seed_network: Seed, "2";
}
