//! A mutation fuzzer for the image-decoding entry point classify uses on every file
//! (`decode_bytes_for`, both the DCT-scaled JPEG path and the full decoders): valid JPEG,
//! PNG, WebP, BMP, GIF and TIFF files are mutated (bytes flipped, set to marker values,
//! cut, chunks repeated or dropped) and decoded. Any panic or crash fails the test; the
//! input that caused it is saved under `target/fuzz-decode-failures/`.
//!
//! In `cargo test` it runs a fixed, seeded set of cases (a few seconds). By hand, for as
//! long as you like, with fresh seeds:
//!
//! ```sh
//! FACEBATCH_FUZZ_SECONDS=600 cargo test --release --test fuzz_decode -- --nocapture
//! ```

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use facebatch::vision::decode::{DecodeLimits, DecodeTarget, decode_bytes_for};
use image::{DynamicImage, ImageFormat};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let face = DynamicImage::ImageRgb8(common::sample_face());
    let small = face.resize_exact(40, 48, image::imageops::FilterType::Triangle);
    let mut out = vec![
        ("jpg", common::encode(&face, ImageFormat::Jpeg)),
        ("jpg", common::jpeg_with_orientation(&small.to_rgb8(), 6)),
        ("png", common::encode(&small, ImageFormat::Png)),
        (
            "png",
            common::encode(
                &DynamicImage::ImageRgb16(small.to_rgb16()),
                ImageFormat::Png,
            ),
        ),
        ("webp", common::encode(&small, ImageFormat::WebP)),
        ("bmp", common::encode(&small, ImageFormat::Bmp)),
        ("gif", common::encode(&small, ImageFormat::Gif)),
        ("tiff", common::encode(&small, ImageFormat::Tiff)),
    ];
    out.push((
        "jpg",
        std::fs::read(common::repo().join("tests/fixtures/cmyk.jpg")).unwrap(),
    ));
    out
}

/// One random mutation of `data`.
fn mutate(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        data.push(rng.random());
        return;
    }
    let n = data.len();
    match rng.random_range(0..7) {
        0 => {
            let i = rng.random_range(0..n);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let i = rng.random_range(0..n);
            data[i] = *[0x00, 0xFF, 0xD8, 0xD9, 0xDA, 0xC0, 0x7F, 0x80]
                .get(rng.random_range(0..8))
                .unwrap();
        }
        2 => data.truncate(rng.random_range(0..n)),
        3 => {
            let (a, len) = (rng.random_range(0..n), rng.random_range(1..64));
            let chunk: Vec<u8> = data[a..(a + len).min(n)].to_vec();
            let at = rng.random_range(0..n);
            data.splice(at..at, chunk);
        }
        4 => {
            let a = rng.random_range(0..n);
            let b = (a + rng.random_range(1..256)).min(n);
            data.drain(a..b);
        }
        5 => {
            // A large size field: 4 bytes of 0xFF somewhere in the header.
            let i = rng.random_range(0..n.min(64));
            data[i..(i + 4).min(n)].fill(0xFF);
        }
        _ => {
            let i = rng.random_range(0..n);
            data[i] = rng.random();
        }
    }
}

#[test]
fn decoding_mutated_images_never_panics() {
    let budget = std::env::var("FACEBATCH_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let seed: u64 = match budget {
        Some(_) => rand::rng().random(),
        None => 20261202,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inputs = seeds();
    let limits = DecodeLimits {
        max_pixels: 4096 * 4096,
        ..DecodeLimits::default()
    };
    let targets = [
        DecodeTarget::LongSide(16),
        DecodeTarget::Cover((8, 8)),
        DecodeTarget::Full,
    ];
    let deadline = budget.map(|s| Instant::now() + Duration::from_secs(s));
    let mut cases = 0u64;
    loop {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            None if cases >= 20_000 => break,
            _ => {}
        }
        let (ext, base) = &inputs[rng.random_range(0..inputs.len())];
        let mut data = base.clone();
        for _ in 0..rng.random_range(1..5) {
            mutate(&mut rng, &mut data);
        }
        let target = targets[rng.random_range(0..targets.len())];
        let name = format!("case-{seed}-{cases}.{ext}");
        let result = std::panic::catch_unwind(|| {
            let _ = decode_bytes_for(&data, Path::new(&name), limits, target);
        });
        if result.is_err() {
            let dir = common::repo().join("target/fuzz-decode-failures");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(&name), &data).unwrap();
            panic!(
                "decoding panicked on {} ({target:?}); seed {seed}, case {cases}",
                dir.join(&name).display()
            );
        }
        cases += 1;
    }
    eprintln!("{cases} mutated images decoded without a panic (seed {seed})");
}
