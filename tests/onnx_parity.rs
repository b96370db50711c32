//! The exported ONNX model, run by ONNX Runtime, gives the same outputs as burn's eval-mode
//! network on real face images.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use facebatch::model::classifier::Classifier;
use facebatch::onnx::SessionOptions;
use facebatch::train::net::{Arch, Net};
use facebatch::vision::decode::{DecodeLimits, load_rgb};

/// dlib's published network, in the repository (scripts/import-dlib-gender.sh).
fn dlib_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/dlib-gender/v1")
}

fn parity(arch: Arch, steps: &str) {
    let (tmp, data) = common::temp_faces(12);
    let out = tmp.path().join("m");
    // Train briefly, so batch-norm statistics and weights are not at their initial values.
    let short = common::short_training("1", "6", steps);
    let mut cmd = common::train_cmd(&data, &out, &short);
    cmd.args(["--arch", arch.name()]);
    if arch == Arch::Dlib {
        // dlib's network is fine-tuned from its published weights, with its own input.
        cmd.arg("--init").arg(dlib_dir());
    }
    let o = common::run(&mut cmd);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let classifier = Classifier::load(&out, &SessionOptions::default()).unwrap();
    let spec = classifier.card.primary().input.clone();
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
        .primary()
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
        classifier.card.primary().test_time_flip,
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
    onnx_runtime_matches_burn_for_the_fine_tuned_dlib_network: Dlib, "2";
}

/// dlib's weights brought into burn (its affines and constants folded into the
/// convolutions and dense layers) compute what its published ONNX graph computes.
#[test]
fn dlibs_published_graph_and_its_burn_import_agree() {
    let classifier = Classifier::load(&dlib_dir(), &SessionOptions::default()).unwrap();
    let bytes = std::fs::read(dlib_dir().join("model.onnx")).unwrap();
    let device = Device::default();
    let net = facebatch::train::import::dlib_from_onnx(&bytes, 2, &device)
        .unwrap()
        .valid();
    let spec = classifier.card.primary().input.clone();
    let (tmp, data) = common::temp_faces(4);
    let mut images = common::files_in(&data.join("female"));
    images.extend(common::files_in(&data.join("male")));
    let mut batch = Vec::new();
    for p in &images {
        batch.extend(spec.tensor_from_rgb(&load_rgb(p, DecodeLimits::default()).unwrap()));
    }
    let ort = classifier.run(&batch, images.len()).unwrap();
    let shape = [images.len(), 3, 32, 32];
    let ours = net
        .forward(Tensor::<4>::from_data(
            TensorData::new(batch, shape),
            &device,
        ))
        .probs
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let max = ours
        .iter()
        .zip(&ort.probs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-5, "burn and ONNX Runtime differ by {max}");
    assert!(
        ort.probs.iter().any(|p| (*p - 0.5).abs() > 0.1),
        "real predictions"
    );
    drop(tmp);
}
