//! Helpers shared by the integration tests: they run the real binary in temp directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared face collections, when `FACEBATCH_SHARED_DATA` names them (`.ci/run` sets it
/// to `../shared/data`). Opt-in, so that `cargo test` does the same on every machine: a
/// GitHub clone has no shared data, and the tests then make their faces from the bundled
/// `data/samples` instead.
pub fn shared_data_opt() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("FACEBATCH_SHARED_DATA")?);
    dir.join("seed-faces").is_dir().then_some(dir)
}

/// The shared data directory, which the test needs.
pub fn shared_data() -> PathBuf {
    shared_data_opt().unwrap_or_else(|| {
        panic!("this test needs the shared face collections: set FACEBATCH_SHARED_DATA")
    })
}

/// The shipped default model directory.
pub fn default_model() -> PathBuf {
    repo().join("models/facebatch-gender/v4")
}

/// The binary without `--no-progress`, for tests of the progress records.
pub fn facebatch_with_progress() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facebatch"));
    c.env_remove("FACEBATCH_MODEL");
    c.env_remove("FACEBATCH_BUNDLE");
    c
}

/// A command for the facebatch binary built for these tests.
pub fn facebatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facebatch"));
    c.arg("--no-progress");
    c.env_remove("FACEBATCH_ORT_LIB");
    c.env_remove("ORT_DYLIB_PATH");
    c.env_remove("FACEBATCH_BUNDLE");
    c.env_remove("FACEBATCH_MODEL");
    c
}

/// Runs and returns output, printing it when the test fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("facebatch binary runs");
    eprintln!(
        "--- {:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
        cmd,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Copies `n` distinct images (by content) of each class from the seed faces into
/// `dst/<class>/`. The seed faces hold exact duplicates; the fixture does not. Without the
/// shared data (a GitHub clone), the images are made from the bundled `data/samples/faces`
/// instead: each sample with one pixel marked, so every file is distinct.
pub fn seed_subset(dst: &Path, n: usize) {
    let Some(shared) = shared_data_opt() else {
        return sample_subset(dst, n);
    };
    let src = shared.join("seed-faces");
    let mut seen = std::collections::HashSet::new();
    for class in ["female", "male"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(src.join(class))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        std::fs::create_dir_all(dst.join(class)).unwrap();
        let mut copied = 0;
        for f in &files {
            if copied == n {
                break;
            }
            if seen.insert(std::fs::read(f).unwrap()) {
                std::fs::copy(f, dst.join(class).join(f.file_name().unwrap())).unwrap();
                copied += 1;
            }
        }
        assert_eq!(copied, n, "enough distinct {class} seed faces");
    }
}

/// `n` distinct BMP faces per class made from the bundled samples.
fn sample_subset(dst: &Path, n: usize) {
    for class in ["female", "male"] {
        let mut faces: Vec<PathBuf> =
            std::fs::read_dir(repo().join("data/samples/faces").join(class))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| image::open(p).is_ok())
                .collect();
        faces.sort();
        std::fs::create_dir_all(dst.join(class)).unwrap();
        for i in 0..n {
            let mut img = image::open(&faces[i % faces.len()]).unwrap().to_rgb8();
            let k = (i / faces.len()) as u32;
            img.put_pixel(
                k % img.width(),
                k / img.width() % img.height(),
                image::Rgb([255, 0, 0]),
            );
            img.save(dst.join(class).join(format!("{class}{i:03}.bmp")))
                .unwrap();
        }
    }
}

/// A fatal error: exit code 2, one clear line on stderr, no panic or backtrace.
pub fn assert_fatal(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "expected the fatal exit code");
    let err = stderr(o);
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "must not panic: {err}");
    assert!(
        !err.contains("RUST_BACKTRACE"),
        "must not print a backtrace hint: {err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("facebatch: error"))
            .count(),
        1,
        "exactly one error line: {err}"
    );
}

/// `facebatch train DATA --out OUT ARGS...`
pub fn train_cmd(data: &Path, out: &Path, args: &[&str]) -> Command {
    let mut c = facebatch();
    c.arg("train").arg(data).arg("--out").arg(out).args(args);
    c
}

/// A Parquet file's record batches and key-value metadata.
pub fn read_parquet(
    path: &Path,
) -> (
    Vec<arrow::array::RecordBatch>,
    std::collections::HashMap<String, String>,
) {
    let file = std::fs::File::open(path).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let batches = builder.build().unwrap().map(|b| b.unwrap()).collect();
    (batches, meta)
}

/// A typed column of a record batch.
pub fn col<'a, T: 'static>(b: &'a arrow::array::RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

pub fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// A JPEG with an EXIF orientation tag spliced in after SOI.
pub fn jpeg_with_orientation(img: &image::RgbImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(
        &image::DynamicImage::ImageRgb8(img.clone()),
        image::ImageFormat::Jpeg,
    );
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend(1u16.to_le_bytes()); // one IFD entry
    tiff.extend(0x0112u16.to_le_bytes()); // Orientation
    tiff.extend(3u16.to_le_bytes()); // SHORT
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

/// A real face crop shipped with the repository (`data/samples`).
pub fn sample_face() -> image::RgbImage {
    image::open(repo().join("data/samples/faces/female/face367.bmp"))
        .unwrap()
        .to_rgb8()
}

/// Writes `n` distinct JPEGs of `face` (one pixel marked per image) spread over `folders`
/// folders `d0`, `d1`, ... under `dir`; returns their relative paths, sorted.
pub fn jpeg_corpus(dir: &Path, n: usize, folders: usize, face: &image::RgbImage) -> Vec<String> {
    let mut rels = Vec::new();
    for i in 0..n {
        let mut img = face.clone();
        img.put_pixel(
            (i % 92) as u32,
            (i / 92 % 112) as u32,
            image::Rgb([255, 0, 0]),
        );
        let rel = format!("d{}/img{i:05}.jpg", i % folders);
        let p = dir.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            encode(
                &image::DynamicImage::ImageRgb8(img),
                image::ImageFormat::Jpeg,
            ),
        )
        .unwrap();
        rels.push(rel);
    }
    rels.sort();
    rels
}

/// The finished part files of a run into `out` so far.
pub fn part_count(out: &Path) -> usize {
    let parts = out.with_file_name(format!(
        "{}.parts",
        out.file_name().unwrap().to_string_lossy()
    ));
    std::fs::read_dir(parts)
        .map(|rd| {
            rd.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("part-")
            })
            .count()
        })
        .unwrap_or(0)
}

/// Waits (at most two minutes) until `done`, asserting that `child` is still running.
pub fn wait_while_running(what: &str, child: &mut std::process::Child, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {what}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no progress towards {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// One training step from the default model on a report's `corrections.csv`.
pub fn train_from_corrections(csv: &Path, out: &Path) -> Output {
    run(facebatch()
        .arg("train")
        .arg("--labels-csv")
        .arg(csv)
        .arg("--init")
        .arg(default_model())
        .arg("--out")
        .arg(out)
        .args([
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            "1",
            "--batch-size",
            "4",
        ]))
}
