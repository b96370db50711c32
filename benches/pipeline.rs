//! The cost of each `classify` stage on its own, on the CPU:
//! - decode, per format and size (200x200 face crops; a 4000x3000 JPEG photo, quality 90,
//!   in full and at the DCT scales `classify` uses for detection and for whole-image crops);
//! - resize (the model input fit of a crop; the detector's downscale of a photo);
//! - inference of the default model per batch size (one ONNX Runtime thread);
//! - Parquet write of 10,000 rows (one part file, zstd, fsync'ed).
//!
//! Inputs are generated deterministically or taken from `data/samples`. Needs ONNX Runtime
//! (provisioned on first use, like the binary). Run: `cargo bench --bench pipeline`.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use facebatch::classify::output::{Columns, PartWriter};
use facebatch::classify::{FaceMeta, Row, Status};
use facebatch::model::classifier::Classifier;
use facebatch::onnx::SessionOptions;
use facebatch::vision::decode::{
    DecodeLimits, DecodeTarget, InputSpec, ResizeFilter, decode_bytes, decode_bytes_for, resize_rgb,
};
use facebatch::vision::faces::CropKind;
use image::{ImageFormat, RgbImage};

/// A 4000x3000 photo: the sample group photo upscaled (real content, so JPEG has the work
/// of a real photo to do).
fn photo_4000x3000(root: &Path) -> RgbImage {
    let img = image::open(root.join("data/samples/photos/solvay-1927.jpg"))
        .expect("sample photo")
        .to_rgb8();
    image::imageops::resize(&img, 4000, 3000, image::imageops::FilterType::CatmullRom)
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    if format == ImageFormat::Jpeg {
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .expect("encode jpeg");
    } else {
        img.write_to(&mut out, format).expect("encode");
    }
    out.into_inner()
}

fn decode(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crop_jpeg =
        std::fs::read(root.join("data/samples/faces/male/55_0_0_20170113190612249.jpg"))
            .expect("sample crop");
    let crop = image::load_from_memory(&crop_jpeg).unwrap().to_rgb8();
    let photo = photo_4000x3000(root);
    let photo_jpeg = encode(&photo, ImageFormat::Jpeg);
    let limits = DecodeLimits::default();
    let p = Path::new("bench");
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    for (name, bytes) in [
        ("jpeg_200x200", crop_jpeg.clone()),
        ("png_200x200", encode(&crop, ImageFormat::Png)),
        ("bmp_200x200", encode(&crop, ImageFormat::Bmp)),
        ("webp_lossless_200x200", encode(&crop, ImageFormat::WebP)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| decode_bytes(&bytes, p, limits).unwrap())
        });
    }
    let input = (64, 64);
    group.bench_function("jpeg_200x200/for_64x64_input", |b| {
        b.iter(|| decode_bytes_for(&crop_jpeg, p, limits, DecodeTarget::Cover(input)).unwrap())
    });
    group.sample_size(10);
    group.bench_function("jpeg_4000x3000/full", |b| {
        b.iter(|| decode_bytes(&photo_jpeg, p, limits).unwrap())
    });
    group.bench_function("jpeg_4000x3000/for_detection_960", |b| {
        b.iter(|| decode_bytes_for(&photo_jpeg, p, limits, DecodeTarget::LongSide(960)).unwrap())
    });
    group.bench_function("jpeg_4000x3000/for_64x64_input", |b| {
        b.iter(|| decode_bytes_for(&photo_jpeg, p, limits, DecodeTarget::Cover(input)).unwrap())
    });
    group.finish();
}

fn resize(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crop = image::open(root.join("data/samples/faces/male/55_0_0_20170113190612249.jpg"))
        .unwrap()
        .to_rgb8();
    let photo = photo_4000x3000(root);
    let spec = InputSpec::standard(64, 64);
    let mut group = c.benchmark_group("resize");
    group.sample_size(20);
    group.bench_function("fit_200x200_to_64x64", |b| b.iter(|| spec.fit(&crop)));
    group.bench_function("tensor_64x64", |b| {
        let fitted = spec.fit(&crop);
        b.iter(|| spec.tensor_from_rgb(&fitted))
    });
    group.sample_size(10);
    group.bench_function("photo_4000x3000_to_960/image_crate_triangle", |b| {
        b.iter(|| image::imageops::resize(&photo, 960, 720, image::imageops::FilterType::Triangle))
    });
    group.bench_function("photo_4000x3000_to_960/resize_rgb", |b| {
        b.iter(|| resize_rgb(&photo, (0, 0, 4000, 3000), 960, 720, ResizeFilter::Triangle))
    });
    group.bench_function("fit_200x200_to_64x64/image_crate_triangle", |b| {
        b.iter(|| image::imageops::resize(&crop, 64, 64, image::imageops::FilterType::Triangle))
    });
    group.finish();
}

fn infer(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let classifier = Classifier::load(
        &root.join("models/facebatch-gender/v3"),
        &SessionOptions::default(),
    )
    .expect("default model");
    let per = classifier.input_len();
    let mut group = c.benchmark_group("infer");
    group.sample_size(10);
    for n in [1usize, 8, 32, 128] {
        let input: Vec<f32> = (0..n * per)
            .map(|i| ((i % 255) as f32 / 127.5) - 1.0)
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("batch", n), &n, |b, &n| {
            b.iter(|| classifier.run(&input, n).unwrap())
        });
    }
    group.finish();
}

fn parquet(c: &mut Criterion) {
    let labels = vec!["female".to_string(), "male".to_string()];
    let root: Arc<str> = Arc::from("/photos");
    let rows: Vec<Row> = (0..10_000u32)
        .map(|i| Row {
            root: root.clone(),
            path: format!("2026/11/{:03}/IMG_{i:06}.jpg", i / 100),
            status: Status::Ok,
            face: Some(FaceMeta {
                index: 0,
                count: 1,
                kind: CropKind::Whole,
                face: None,
            }),
            last_of_file: true,
            error: None,
            error_kind: None,
            label: Some(labels[(i % 2) as usize].clone()),
            confidence: Some(0.9),
            probs: vec![0.1, 0.9],
            width: Some(200),
            height: Some(200),
            bytes: Some(8_000 + i as u64),
            modified: Some(1_764_300_000_000_000),
            features: None,
            member_probs: Vec::new(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("parquet");
    group.sample_size(10);
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.bench_function("write_10000_rows", |b| {
        let mut w =
            PartWriter::open(dir.path().join("parts"), Columns::plain(&labels), "bench").unwrap();
        b.iter(|| w.write(&rows, None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, decode, resize, infer, parquet);
criterion_main!(benches);
