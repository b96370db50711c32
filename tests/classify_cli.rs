//! `facebatch classify` through the real binary: generated fixtures of every format and
//! every kind of bad input, the Parquet read back with arrow, and interruption and crash
//! recovery of a real process.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use arrow::array::{
    Array, Float32Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use common::*;
use image::{DynamicImage, ImageFormat, RgbImage};

/// A face from the shared seed faces (or, without them, the bundled sample), so
/// predictions are made on real content.
fn face() -> RgbImage {
    let Some(shared) = shared_data_opt() else {
        return sample_face();
    };
    let dir = shared.join("seed-faces/female");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    image::open(&files[0]).unwrap().to_rgb8()
}

/// Writes the fixture tree; returns (relative path -> expected status) for the files.
fn fixtures(dir: &Path) -> BTreeMap<String, &'static str> {
    let face = face();
    let rgb = DynamicImage::ImageRgb8(face.clone());
    let mut expect = BTreeMap::new();
    let mut put = |rel: &str, bytes: &[u8], status: &'static str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        expect.insert(rel.to_string(), status);
    };
    put("good/face.jpg", &encode(&rgb, ImageFormat::Jpeg), "ok");
    put("good/face.png", &encode(&rgb, ImageFormat::Png), "ok");
    put("good/face.bmp", &encode(&rgb, ImageFormat::Bmp), "ok");
    put("good/face.webp", &encode(&rgb, ImageFormat::WebP), "ok");
    put("good/face.tiff", &encode(&rgb, ImageFormat::Tiff), "ok");
    put(
        "good/face.pgm",
        &encode(&DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Pnm),
        "ok",
    );
    put(
        "good/grey.png",
        &encode(&DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Png),
        "ok",
    );
    put(
        "good/rgba.png",
        &encode(&DynamicImage::ImageRgba8(rgb.to_rgba8()), ImageFormat::Png),
        "ok",
    );
    put(
        "good/sixteen-bit.png",
        &encode(&DynamicImage::ImageRgb16(rgb.to_rgb16()), ImageFormat::Png),
        "ok",
    );
    put("good/UPPER.JPG", &encode(&rgb, ImageFormat::Jpeg), "ok");
    put("good/png-named.jpg", &encode(&rgb, ImageFormat::Png), "ok");
    put("good/rotated.jpg", &jpeg_with_orientation(&face, 6), "ok");
    let cmyk = repo().join("tests/fixtures/cmyk.jpg");
    put("good/cmyk.jpg", &std::fs::read(cmyk).unwrap(), "ok");
    let jpeg = encode(&rgb, ImageFormat::Jpeg);
    let png = encode(&rgb, ImageFormat::Png);
    put("bad/truncated.jpg", &jpeg[..jpeg.len() / 2], "error");
    put("bad/truncated.png", &png[..png.len() / 2], "error");
    put("bad/zero-bytes.jpg", b"", "error");
    put(
        "bad/corrupt.jpg",
        &[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5, 6, 7, 8, 0xFF, 0xD9],
        "error",
    );
    put("bad/not-an-image.png", b"hello, I am a text file", "error");
    put(
        "bad/photo.heic",
        b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
        "error",
    );
    put(
        "bad/huge.png",
        &encode(
            &DynamicImage::ImageRgb8(RgbImage::new(300, 300)),
            ImageFormat::Png,
        ),
        "error",
    );
    // Not images by extension: ignored, no row.
    std::fs::write(dir.join("good/notes.txt"), "ignore me").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        // Not followed without --follow-symlinks (reliability_cli covers links): no row.
        std::os::unix::fs::symlink(dir.join("nowhere.jpg"), dir.join("bad/broken-link.jpg"))
            .unwrap();
        let fifo = dir.join("bad/fifo.jpg");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        expect.insert("bad/fifo.jpg".into(), "error");
        // Read like any other file; its path is escaped losslessly.
        let name = std::ffi::OsStr::from_bytes(b"good/latin1-\xe9.jpg");
        std::fs::write(dir.join(name), encode(&rgb, ImageFormat::Jpeg)).unwrap();
        expect.insert("good/latin1-\\xe9.jpg".into(), "ok");
    }
    expect
}

/// Rows as (path -> (status, error, label)) for assertions.
fn rows(batches: &[RecordBatch]) -> BTreeMap<String, (String, Option<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    for b in batches {
        let (path, status, error, label) = (
            col::<StringArray>(b, "path"),
            col::<StringArray>(b, "status"),
            col::<StringArray>(b, "error"),
            col::<StringArray>(b, "label"),
        );
        for i in 0..b.num_rows() {
            let prev = out.insert(
                path.value(i).to_string(),
                (
                    status.value(i).to_string(),
                    error.is_valid(i).then(|| error.value(i).to_string()),
                    label.is_valid(i).then(|| label.value(i).to_string()),
                ),
            );
            assert!(prev.is_none(), "{} appears twice", path.value(i));
        }
    }
    out
}

#[test]
fn every_file_gets_a_row_and_bad_files_do_not_stop_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let expect = fixtures(&photos);
    let out = tmp.path().join("results.parquet");
    let o = run(facebatch()
        .arg("classify")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(default_model())
        .args(["--max-pixels", "50000", "--batch-size", "4", "--features"]));
    assert_eq!(o.status.code(), Some(1), "finished with per-image errors");
    assert!(stdout(&o).contains("busy time per stage: walk"));
    let (batches, meta) = read_parquet(&out);
    let got = rows(&batches);
    let statuses: BTreeMap<String, &str> =
        got.iter().map(|(k, v)| (k.clone(), v.0.as_str())).collect();
    let expected: BTreeMap<String, &str> =
        expect.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(
        statuses, expected,
        "one row per image file with the right status"
    );
    for (path, (status, error, label)) in &got {
        if status == "ok" {
            assert!(error.is_none() && label.is_some(), "{path}");
        } else {
            assert!(
                error.as_deref().is_some_and(|e| !e.is_empty()) && label.is_none(),
                "{path}"
            );
        }
    }
    let reason = |p: &str| got[p].1.clone().unwrap();
    assert!(
        reason("bad/huge.png").contains("pixel limit"),
        "{}",
        reason("bad/huge.png")
    );
    assert!(
        reason("bad/truncated.jpg").contains("truncated"),
        "{}",
        reason("bad/truncated.jpg")
    );
    assert!(reason("bad/zero-bytes.jpg").contains("empty"));
    assert!(reason("bad/fifo.jpg").contains("not a regular file"));
    assert!(reason("bad/photo.heic").contains("not a recognised image format"));

    let b = &batches[0];
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "root",
            "path",
            "face_index",
            "status",
            "error",
            "error_kind",
            "label",
            "confidence",
            "p_female",
            "p_male",
            "face_count",
            "crop",
            "det_score",
            "box_x1",
            "box_y1",
            "box_x2",
            "box_y2",
            "landmarks",
            "width",
            "height",
            "bytes",
            "modified",
            "features"
        ]
    );
    // Every ok row: probabilities sum to one and confidence is the larger one.
    let mut checked = 0;
    for b in &batches {
        let (pf, pm, conf) = (
            col::<Float32Array>(b, "p_female"),
            col::<Float32Array>(b, "p_male"),
            col::<Float32Array>(b, "confidence"),
        );
        let (w, h, bytes) = (
            col::<UInt32Array>(b, "width"),
            col::<UInt32Array>(b, "height"),
            col::<UInt64Array>(b, "bytes"),
        );
        let status = col::<StringArray>(b, "status");
        let path = col::<StringArray>(b, "path");
        let feats = col::<ListArray>(b, "features");
        for i in 0..b.num_rows() {
            if status.value(i) != "ok" {
                assert!(pf.is_null(i) && conf.is_null(i) && feats.is_null(i));
                continue;
            }
            assert!((pf.value(i) + pm.value(i) - 1.0).abs() < 1e-4);
            assert_eq!(conf.value(i), pf.value(i).max(pm.value(i)));
            assert_eq!(feats.value(i).len(), 256);
            assert!(bytes.value(i) > 0);
            let (ww, hh) = (w.value(i), h.value(i));
            if path.value(i) == "good/rotated.jpg" {
                assert_eq!(
                    (ww, hh),
                    (112, 92),
                    "EXIF orientation 6 turns 92x112 on its side"
                );
            } else {
                assert_eq!((ww, hh), (92, 112), "{}", path.value(i));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 14);
    // Run metadata.
    for key in [
        "facebatch.version",
        "facebatch.run_id",
        "facebatch.started_at",
        "facebatch.finished_at",
        "facebatch.model_card",
    ] {
        assert!(
            meta.get(key).is_some_and(|v| !v.is_empty()),
            "metadata {key}"
        );
    }
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(default_model().join("card.json")).unwrap())
            .unwrap();
    assert_eq!(
        meta["facebatch.model_sha256"],
        card["onnx"]["sha256"].as_str().unwrap()
    );
    assert_eq!(meta["facebatch.run_status"], "complete");
    // Feature statistics beside the output.
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("results.parquet.features.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stats["count"], 14);
    assert_eq!(stats["mean"].as_array().unwrap().len(), 256);
    assert_eq!(stats["std"].as_array().unwrap().len(), 256);
    assert!(
        !tmp.path().join("results.parquet.parts").exists(),
        "parts are merged and removed"
    );
}

#[test]
fn the_same_face_in_every_format_gets_the_same_label() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    fixtures(&photos);
    let out = tmp.path().join("r.parquet");
    run(facebatch()
        .arg("classify")
        .arg(photos.join("good"))
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(default_model()));
    let got = rows(&read_parquet(&out).0);
    let lossless: Vec<&Option<String>> = [
        "face.png",
        "face.bmp",
        "face.tiff",
        "face.webp",
        "rgba.png",
        "sixteen-bit.png",
    ]
    .iter()
    .map(|p| &got[*p].2)
    .collect();
    assert!(lossless.windows(2).all(|w| w[0] == w[1]), "{lossless:?}");
}

#[test]
fn fatal_problems_are_reported_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let out = tmp.path().join("r.parquet");
    let classify = || {
        let mut c = facebatch();
        c.arg("classify");
        c
    };
    assert_fatal(
        &run(classify()
            .arg(tmp.path().join("missing"))
            .arg("--out")
            .arg(&out)),
        "does not exist",
    );
    assert_fatal(
        &run(classify()
            .arg(&photos)
            .arg("--out")
            .arg(tmp.path().join("no/such/dir/r.parquet"))),
        "does not exist",
    );
    assert_fatal(
        &run(classify().arg(&photos).arg("--out").arg(&photos)),
        "is a directory",
    );
    let bad_model = tmp.path().join("model");
    std::fs::create_dir_all(&bad_model).unwrap();
    std::fs::copy(
        default_model().join("card.json"),
        bad_model.join("card.json"),
    )
    .unwrap();
    std::fs::write(bad_model.join("model.onnx"), b"garbage").unwrap();
    assert_fatal(
        &run(classify()
            .arg(&photos)
            .arg("--out")
            .arg(&out)
            .arg("--model")
            .arg(&bad_model)),
        "does not match its card",
    );
    assert_fatal(
        &run(classify()
            .arg(&photos)
            .arg("--out")
            .arg(&out)
            .args(["--device", "cuda"])),
        "cuda",
    );
    assert!(!out.exists(), "nothing written");
}

/// Writes `n` small JPEG faces in a few folders.
fn corpus(dir: &Path, n: usize) -> Vec<String> {
    jpeg_corpus(dir, n, 7, &face())
}

fn spawn_classify(photos: &Path, out: &Path, extra: &[&str]) -> std::process::Child {
    facebatch()
        .arg("classify")
        .arg(photos)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(default_model())
        .args([
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--checkpoint-rows",
            "25",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_parts(out: &Path, n: usize, child: &mut std::process::Child) {
    wait_while_running("it could be interrupted", child, || part_count(out) >= n);
}

fn paths_in(out: &Path) -> Vec<String> {
    let mut all: Vec<String> = rows(&read_parquet(out).0).into_keys().collect();
    all.sort();
    all
}

#[test]
fn resume_after_kill_9_completes_every_image_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let expected = corpus(&photos, 1500);
    let out = tmp.path().join("r.parquet");
    let mut child = spawn_classify(&photos, &out, &[]);
    wait_for_parts(&out, 2, &mut child);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(!out.exists(), "a killed run leaves no half-written output");
    // Without --resume the leftover run is not silently overwritten.
    let o = run(facebatch()
        .arg("classify")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(default_model()));
    assert_fatal(&o, "--resume");
    let o = run(facebatch()
        .arg("classify")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(default_model())
        .arg("--resume"));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("already done earlier"));
    assert_eq!(paths_in(&out), expected);
}

#[test]
fn ctrl_c_leaves_a_valid_partial_file_that_resume_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let expected = corpus(&photos, 1500);
    let out = tmp.path().join("r.parquet");
    let mut child = spawn_classify(&photos, &out, &["--features"]);
    wait_for_parts(&out, 1, &mut child);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "interrupted exit code: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (batches, meta) = read_parquet(&out);
    assert_eq!(meta["facebatch.run_status"], "interrupted");
    let partial = rows(&batches).len();
    assert!(partial > 0 && partial < expected.len(), "{partial}");
    let o = run(facebatch()
        .arg("classify")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(default_model())
        .args(["--features", "--resume"]));
    assert!(o.status.success());
    let (_, meta2) = read_parquet(&out);
    assert_eq!(meta2["facebatch.run_status"], "complete");
    assert_eq!(
        meta2["facebatch.run_id"], meta["facebatch.run_id"],
        "a resumed run keeps its id"
    );
    assert_eq!(paths_in(&out), expected);
    let stats: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("r.parquet.features.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        stats["count"],
        expected.len(),
        "feature statistics cover the whole resumed run"
    );
}

/// Regression: `--resume` once accepted an earlier output written without `--features`
/// when resumed with it, mixing two schemas.
#[test]
fn resume_refuses_a_different_features_setting() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    corpus(&photos, 5);
    let out = tmp.path().join("r.parquet");
    let classify = || {
        let mut c = facebatch();
        c.arg("classify")
            .arg(&photos)
            .arg("--out")
            .arg(&out)
            .arg("--model")
            .arg(default_model());
        c
    };
    assert!(run(&mut classify()).status.success());
    assert_fatal(
        &run(classify().args(["--resume", "--features"])),
        "different --features",
    );
    // The same options resume fine (nothing left to do).
    let o = run(classify().arg("--resume"));
    assert!(o.status.success());
    assert!(stdout(&o).contains("0 images"), "{}", stdout(&o));
    assert_eq!(paths_in(&out).len(), 5);
}

/// (path, face_index) -> (label, probabilities) of a classify output.
fn predictions(out: &Path) -> BTreeMap<(String, i32), (String, Vec<f32>)> {
    let (batches, _) = read_parquet(out);
    let mut m = BTreeMap::new();
    for b in &batches {
        let path = col::<StringArray>(b, "path");
        let face = col::<arrow::array::Int32Array>(b, "face_index");
        let label = col::<StringArray>(b, "label");
        let pf = col::<Float32Array>(b, "p_female");
        let pm = col::<Float32Array>(b, "p_male");
        for i in 0..b.num_rows() {
            if label.is_valid(i) {
                m.insert(
                    (path.value(i).to_string(), face.value(i)),
                    (label.value(i).to_string(), vec![pf.value(i), pm.value(i)]),
                );
            }
        }
    }
    m
}

/// Every row's (path, face index), in file order.
fn row_order(out: &Path) -> Vec<(String, Option<i32>)> {
    let (batches, _) = read_parquet(out);
    let mut v = Vec::new();
    for b in &batches {
        let path = col::<StringArray>(b, "path");
        let face = col::<arrow::array::Int32Array>(b, "face_index");
        for i in 0..b.num_rows() {
            v.push((
                path.value(i).to_string(),
                face.is_valid(i).then(|| face.value(i)),
            ));
        }
    }
    v
}

#[test]
fn labels_do_not_depend_on_threads_batch_size_or_decode_scale() {
    // Faces, photos (several faces each) and a photo large enough to be decoded at half
    // scale for detection.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let samples = repo().join("data/samples");
    for (src, dst) in [
        ("faces/female/24_1_3_20170117145425107.jpg", "a.jpg"),
        ("faces/male/55_0_0_20170113190612249.jpg", "b.jpg"),
        ("faces/female/face367.bmp", "c.bmp"),
        ("photos/retreat-2017.jpg", "d.jpg"),
    ] {
        std::fs::copy(samples.join(src), data.join(dst)).unwrap();
    }
    let photo = image::open(samples.join("photos/solvay-1927.jpg")).unwrap();
    let big = photo.resize(
        photo.width() * 2,
        photo.height() * 2,
        image::imageops::FilterType::Triangle,
    );
    std::fs::write(data.join("e.jpg"), encode(&big, ImageFormat::Jpeg)).unwrap();

    let run_with = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let o = run(facebatch()
            .arg("classify")
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .arg("--model")
            .arg(default_model())
            .args(extra));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        predictions(&out)
    };
    let base = run_with("a.parquet", &["--threads", "1", "--batch-size", "1"]);
    let base_order = row_order(&tmp.path().join("a.parquet"));
    assert_eq!(base.len(), 3 + 6 + 29, "{base:?}");
    for (name, extra) in [
        ("b.parquet", &["--threads", "2", "--batch-size", "7"][..]),
        (
            "c.parquet",
            &["--batch-size", "64", "--intra-threads", "2"][..],
        ),
        // Three inference workers finishing one-face batches out of order.
        (
            "w.parquet",
            &["--batch-size", "1", "--infer-workers", "3"][..],
        ),
    ] {
        let other = run_with(name, extra);
        assert_eq!(
            base.keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>()
        );
        for (k, (label, p)) in &base {
            let (l2, p2) = &other[k];
            assert_eq!(label, l2, "{k:?} with {extra:?}");
            for (a, b) in p.iter().zip(p2) {
                assert!((a - b).abs() < 1e-4, "{k:?} with {extra:?}: {a} vs {b}");
            }
        }
        // Rows keep the walk order, whatever finishes first.
        assert_eq!(base_order, row_order(&tmp.path().join(name)), "{extra:?}");
    }
    // Decoding every pixel instead of the DCT-scaled JPEG changes pixels slightly, not
    // what is found or how it is labelled.
    let full = run_with("d.parquet", &["--full-decode"]);
    assert_eq!(
        base.keys().collect::<Vec<_>>(),
        full.keys().collect::<Vec<_>>()
    );
    for (k, (label, p)) in &base {
        let (l2, p2) = &full[k];
        assert_eq!(label, l2, "{k:?} with --full-decode");
        assert!((p[0] - p2[0]).abs() < 0.05, "{k:?}: {p:?} vs {p2:?}");
    }
}

/// Issue 17: every error row says what kind of failure it is (`error_kind`), so that
/// analysts group by it instead of parsing messages.
#[test]
fn error_rows_carry_their_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let samples = repo().join("data/samples/faces");
    std::fs::copy(samples.join("male/truncated.jpg"), photos.join("cut.jpg")).unwrap();
    std::fs::write(photos.join("empty.png"), b"").unwrap();
    std::fs::write(photos.join("notes.jpg"), b"these are words, not pixels").unwrap();
    let png = encode(
        &image::DynamicImage::ImageRgb8(image::RgbImage::new(40, 40)),
        ImageFormat::Png,
    );
    let mut broken = png[..png.len() / 2].to_vec();
    broken.extend(std::iter::repeat_n(0u8, 64));
    std::fs::write(photos.join("broken.png"), &broken).unwrap();
    std::fs::copy(samples.join("female/face367.bmp"), photos.join("big.bmp")).unwrap();
    let out = tmp.path().join("o.parquet");
    let o = run(facebatch()
        .arg("classify")
        .arg(&photos)
        .arg("--out")
        .arg(&out)
        .args(["--faces", "whole", "--max-file-bytes", "20000"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let mut kinds = std::collections::BTreeMap::new();
    for b in read_parquet(&out).0 {
        let path = col::<StringArray>(&b, "path");
        let kind = col::<StringArray>(&b, "error_kind");
        let error = col::<StringArray>(&b, "error");
        for i in 0..b.num_rows() {
            assert_eq!(
                kind.is_null(i),
                error.is_null(i),
                "a kind exactly when an error"
            );
            if !kind.is_null(i) {
                kinds.insert(path.value(i).to_string(), kind.value(i).to_string());
            }
        }
    }
    let want: std::collections::BTreeMap<String, String> = [
        ("big.bmp", "too_large"),
        ("broken.png", "decode"),
        ("cut.jpg", "truncated"),
        ("empty.png", "empty"),
        ("notes.jpg", "unknown_format"),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k.to_string()))
    .collect();
    assert_eq!(kinds, want);
}
