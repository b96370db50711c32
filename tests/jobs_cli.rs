//! Scheduled jobs and scale-out through the real binary: shards, dataset mode with success
//! markers, `--shard auto`, job files with incremental runs, and model versions.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use arrow::array::StringArray;
use common::*;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// `n` distinct small JPEG faces under `dir` in a few sub-folders; their relative paths.
fn corpus(dir: &Path, n: usize) -> Vec<String> {
    let face = image::open(repo().join("data/samples/faces/female/face367.bmp"))
        .unwrap()
        .to_rgb8();
    (0..n)
        .map(|i| {
            let mut img: RgbImage = face.clone();
            img.put_pixel((i % 92) as u32, (i / 92 % 112) as u32, Rgb([255, 0, 0]));
            let rel = format!("d{}/img{i:05}.jpg", i % 5);
            write_image(&dir.join(&rel), &img);
            rel
        })
        .collect()
}

fn write_image(path: &Path, img: &RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        encode(&DynamicImage::ImageRgb8(img.clone()), ImageFormat::Jpeg),
    )
    .unwrap();
}

/// Every row's path in one Parquet file.
fn paths(file: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for b in read_parquet(file).0 {
        let p = col::<StringArray>(&b, "path");
        v.extend((0..b.num_rows()).map(|i| p.value(i).to_string()));
    }
    v
}

fn classify(inputs: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(facebatch()
        .arg("classify")
        .arg(inputs)
        .arg("--out")
        .arg(out)
        .args(["--faces", "whole", "--threads", "1"])
        .args(extra))
}

/// `out` as a dataset-folder argument (ending with a separator).
fn dir_arg(out: &Path) -> String {
    format!("{}/", out.display())
}

#[test]
fn shards_split_the_inputs_exactly_and_rerunning_a_finished_shard_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let mut all = corpus(&photos, 40);
    all.sort();
    std::fs::write(photos.join("d0/broken.jpg"), b"not a jpeg").unwrap();
    all.push("d0/broken.jpg".into());
    all.sort();

    let full = tmp.path().join("full.parquet");
    assert_eq!(classify(&photos, &full, &[]).status.code(), Some(1));
    let mut expected = paths(&full);
    expected.sort();
    assert_eq!(expected, all);

    let ds = tmp.path().join("ds");
    let mut union = Vec::new();
    for k in 0..3 {
        let o = classify(
            &photos,
            Path::new(&dir_arg(&ds)),
            &["--shard", &format!("{k}/3")],
        );
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
        let part = ds.join(format!("part-{k:05}-of-00003.parquet"));
        let marker: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(ds.join(format!("_SUCCESS-{k:05}-of-00003.json"))).unwrap(),
        )
        .unwrap();
        let rows = paths(&part);
        assert_eq!(marker["rows"], rows.len() as u64);
        assert_eq!(marker["shard"], format!("{k}/3"));
        assert_eq!(marker["model_version"], "v4");
        // Every shard gets a fair share of 41 files.
        assert!((5..=25).contains(&rows.len()), "shard {k}: {}", rows.len());
        union.extend(rows);
    }
    union.sort();
    assert_eq!(
        union, expected,
        "the shards together are exactly the full run"
    );
    assert!(!ds.join("_staging").exists(), "staging is cleaned up");

    // A finished shard run again is a no-op: same bytes, same modification time.
    let part = ds.join("part-00001-of-00003.parquet");
    let before = (
        std::fs::read(&part).unwrap(),
        std::fs::metadata(&part).unwrap().modified().unwrap(),
    );
    let o = classify(&photos, Path::new(&dir_arg(&ds)), &["--shard", "1/3"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("already complete"), "{}", stdout(&o));
    let after = (
        std::fs::read(&part).unwrap(),
        std::fs::metadata(&part).unwrap().modified().unwrap(),
    );
    assert!(before == after, "a finished shard must not be rewritten");
}

#[test]
fn a_killed_shard_resumes_on_retry_without_losing_or_repeating_a_row() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let mut all: Vec<String> = corpus(&photos, 150);
    let ds = tmp.path().join("ds");
    let spawn = || {
        facebatch()
            .arg("classify")
            .arg(&photos)
            .arg("--out")
            .arg(dir_arg(&ds))
            .args(["--faces", "whole", "--threads", "1", "--batch-size", "2"])
            .args(["--checkpoint-rows", "4", "--shard", "0/1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    let parts = ds.join("_staging/part-00000-of-00001.parquet.parts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = std::fs::read_dir(&parts)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
                    .count()
            })
            .unwrap_or(0);
        if n >= 2 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!ds.join("_SUCCESS-00000-of-00001.json").exists());
    assert!(!ds.join("part-00000-of-00001.parquet").exists());

    // The retry is the same command: it finds the staging and resumes it.
    let o = run(facebatch()
        .arg("classify")
        .arg(&photos)
        .arg("--out")
        .arg(dir_arg(&ds))
        .args(["--faces", "whole", "--threads", "1", "--shard", "0/1"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("already done earlier"),
        "{}",
        stdout(&o)
    );
    let mut got = paths(&ds.join("part-00000-of-00001.parquet"));
    got.sort();
    all.sort();
    assert_eq!(got, all, "every file exactly once");
}

#[test]
fn shard_auto_reads_kubernetes_and_slurm_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    corpus(&photos, 12);
    let ds = tmp.path().join("ds");
    let auto = |env: &[(&str, &str)]| {
        let mut c = facebatch();
        c.arg("classify")
            .arg(&photos)
            .arg("--out")
            .arg(dir_arg(&ds))
            .args(["--faces", "whole", "--threads", "1", "--shard", "auto"]);
        for v in [
            "JOB_COMPLETION_INDEX",
            "JOB_COMPLETIONS",
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_MIN",
            "SLURM_ARRAY_TASK_COUNT",
        ] {
            c.env_remove(v);
        }
        c.envs(env.iter().copied());
        run(&mut c)
    };
    let o = auto(&[("JOB_COMPLETION_INDEX", "1"), ("JOB_COMPLETIONS", "2")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(ds.join("_SUCCESS-00001-of-00002.json").is_file());
    let o = auto(&[
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "5"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(ds.join("_SUCCESS-00000-of-00002.json").is_file());
    let mut union = paths(&ds.join("part-00000-of-00002.parquet"));
    union.extend(paths(&ds.join("part-00001-of-00002.parquet")));
    assert_eq!(union.len(), 12);
    assert_eq!(union.iter().collect::<BTreeSet<_>>().len(), 12);

    assert_fatal(&auto(&[]), "--shard auto");
    assert_fatal(&auto(&[("JOB_COMPLETION_INDEX", "0")]), "JOB_COMPLETIONS");
    let o = run(facebatch()
        .arg("classify")
        .arg(&photos)
        .arg("--out")
        .arg(dir_arg(&ds))
        .args(["--shard", "3/3"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

fn job_file(dir: &Path, photos: &Path, out: &Path, extra: &str) -> PathBuf {
    let file = dir.join("job.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"test\"\ninputs = [{:?}]\noutput = {:?}\nmodel = {:?}\n{extra}\n\
             [classify]\nfaces = \"whole\"\nthreads = 1\nbatch_size = 8\n",
            photos.display().to_string(),
            out.display().to_string(),
            repo().join("models/facebatch-gender").display().to_string(),
        ),
    )
    .unwrap();
    file
}

fn run_job(job: &Path, date: &str) -> std::process::Output {
    run(facebatch().arg("run").arg(job).args(["--date", date]))
}

#[test]
fn a_job_classifies_only_new_or_changed_files_and_reruns_are_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let first = corpus(&photos, 10);
    std::fs::write(photos.join("d0/broken.jpg"), b"not a jpeg").unwrap();
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "");
    let part = |date: &str| out.join(format!("dt={date}/part-00000-of-00001.parquet"));

    let o = run_job(&job, "2026-11-01");
    assert_eq!(o.status.code(), Some(1), "one broken file: {}", stderr(&o));
    let day1 = paths(&part("2026-11-01"));
    assert_eq!(day1.len(), 11);
    let (_, meta) = read_parquet(&part("2026-11-01"));
    assert_eq!(meta["facebatch.model_version"], "v4", "latest version used");

    // The same date again: already complete, nothing rewritten, and the same exit status as
    // the run (its error rows are over the default --max-error-rate of 0) ...
    let o = run_job(&job, "2026-11-01");
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("already complete"));
    // ... which a higher rate turns into a success: 1 error in 11 images.
    let o = run(facebatch().arg("run").arg(&job).args([
        "--date",
        "2026-11-01",
        "--max-error-rate",
        "0.1",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // Next day, nothing changed: an empty partition (the broken file is not retried).
    let o = run_job(&job, "2026-11-02");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("11 unchanged"), "{}", stdout(&o));
    assert!(paths(&part("2026-11-02")).is_empty());

    // A new file and a changed one (other pixels and size); the rest untouched.
    let face = image::open(photos.join(&first[3])).unwrap().to_rgb8();
    write_image(&photos.join("new/added.jpg"), &face);
    let changed = image::imageops::flip_horizontal(&face);
    write_image(&photos.join(&first[7]), &changed);
    // Make sure the modification time moves even on coarse clocks.
    let f = std::fs::File::options()
        .append(true)
        .open(photos.join(&first[7]))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let o = run_job(&job, "2026-11-03");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut day3 = paths(&part("2026-11-03"));
    day3.sort();
    let mut want = vec!["new/added.jpg".to_string(), first[7].clone()];
    want.sort();
    assert_eq!(day3, want);
}

#[test]
fn a_job_pins_a_model_version_and_bad_job_files_are_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    corpus(&photos, 3);
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "model_version = \"v2\"");
    let o = run_job(&job, "2026-11-05");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (_, meta) = read_parquet(&out.join("dt=2026-11-05/part-00000-of-00001.parquet"));
    assert_eq!(meta["facebatch.model_version"], "v2");

    for (extra, needle) in [
        ("model_version = \"v99\"", "v99"),
        ("colour = \"red\"", "unknown field"),
        ("partition = \"fixed\"", "{date}"),
    ] {
        let job = job_file(tmp.path(), &photos, &out, extra);
        assert_fatal(&run_job(&job, "2026-11-06"), needle);
    }
    let job = job_file(tmp.path(), &photos, &out, "");
    assert_fatal(&run_job(&job, "06/11/2026"), "YYYY-MM-DD");
    // A classify option the binary does not know.
    let bad = tmp.path().join("bad.toml");
    let text = std::fs::read_to_string(&job).unwrap() + "no_such_option = 1\n";
    std::fs::write(&bad, text).unwrap();
    assert_fatal(&run_job(&bad, "2026-11-06"), "[classify]");
    assert!(!out.join("dt=2026-11-06").exists());
}

/// Regression: a job's `model_version` could point outside the model folder, and the
/// `[classify]` keys `ort_lib`, `detector` and `quiet` were silently ignored. Versions are
/// folder names; `detector` and `ort_lib` are honoured; logging options are refused. And an
/// OS error is printed once, not twice.
#[test]
fn job_files_refuse_escaping_versions_and_process_wide_options() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    corpus(&photos, 2);
    let out = tmp.path().join("labels");
    let job = job_file(
        tmp.path(),
        &photos,
        &out,
        "model_version = \"../facebatch-gender/v2\"",
    );
    assert_fatal(
        &run_job(&job, "2026-11-05"),
        "must be the name of a version folder",
    );
    let job = job_file(tmp.path(), &photos, &out, "");
    let with = |line: &str| {
        let text = std::fs::read_to_string(&job)
            .unwrap()
            .replace("faces = \"whole\"", "faces = \"detect\"")
            + line
            + "\n";
        let file = tmp.path().join("with.toml");
        std::fs::write(&file, text).unwrap();
        file
    };
    assert_fatal(
        &run_job(&with("quiet = true"), "2026-11-05"),
        "--quiet to `facebatch run`",
    );
    let missing = tmp.path().join("no-such-detector.onnx");
    let o = run_job(
        &with(&format!("detector = {:?}", missing.display().to_string())),
        "2026-11-05",
    );
    assert_fatal(&o, "no-such-detector.onnx");
    let o = run_job(
        &with(&format!(
            "ort_lib = {:?}",
            tmp.path().join("no-such-lib.so").display().to_string()
        )),
        "2026-11-05",
    );
    assert_fatal(&o, "no-such-lib.so");
    // The OS error appears once.
    let o = run(facebatch().arg("run").arg(tmp.path().join("missing.toml")));
    assert_fatal(&o, "missing.toml");
    let err = stderr(&o);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}
