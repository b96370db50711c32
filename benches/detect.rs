//! Face detection and alignment cost per photo on the CPU (one ONNX Runtime thread, as each
//! classify worker uses): RetinaFace on a group photo at the default detection size (960)
//! and at 640, on a 200x200 face crop, and one 5-point alignment to the 64x64 model input.
//! Needs ONNX Runtime and the detector (provisioned on first use, like the binary).

use criterion::{Criterion, criterion_group, criterion_main};
use facebatch::onnx::SessionOptions;
use facebatch::vision::align::AlignSpec;
use facebatch::vision::detect::{DetectSettings, Detector};

fn bench(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let detector = Detector::load(None, &SessionOptions::default(), 1).expect("detector");
    let photo = image::open(root.join("data/samples/photos/solvay-1927.jpg"))
        .expect("sample photo")
        .to_rgb8();
    let crop = image::open(root.join("data/samples/faces/male/55_0_0_20170113190612249.jpg"))
        .expect("sample crop")
        .to_rgb8();
    let mut group = c.benchmark_group("detect");
    group.sample_size(20);
    for max_side in [960u32, 640] {
        let s = DetectSettings {
            max_side,
            ..DetectSettings::default()
        };
        group.bench_function(
            format!(
                "photo_{}x{}/det_size_{max_side}",
                photo.width(),
                photo.height()
            ),
            |b| b.iter(|| detector.detect(&photo, &s).unwrap()),
        );
    }
    let s = DetectSettings::default();
    group.bench_function("crop_200x200", |b| {
        b.iter(|| detector.detect(&crop, &s).unwrap())
    });
    let face = detector.detect(&photo, &s).unwrap().remove(0);
    let spec = AlignSpec::standard(
        64,
        64,
        facebatch::vision::align::DEFAULT_ZOOM,
        detector.info.clone(),
        0.8,
        960,
    );
    group.bench_function("align_one_face_64x64", |b| {
        b.iter(|| spec.align(&photo, &face))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
