//! Scheduled jobs and scale-out through the real binary: shards, dataset mode with success
//! markers, `--shard auto`, job files with incremental runs, and model versions.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tempfile::TempDir;

/// A temporary folder with `n` distinct small JPEG faces in `photos/`, in five sub-folders:
/// the folder, `photos/` and their relative paths, sorted.
fn temp_corpus(n: usize) -> (TempDir, PathBuf, Vec<String>) {
    temp_photos(n, 5, &sample_face())
}

/// [`temp_corpus`] with one more file, `d0/broken.jpg`, that is not a JPEG.
fn temp_corpus_with_broken(n: usize) -> (TempDir, PathBuf, Vec<String>) {
    let (tmp, photos, mut all) = temp_corpus(n);
    std::fs::write(photos.join("d0/broken.jpg"), b"not a jpeg").unwrap();
    all.push("d0/broken.jpg".into());
    all.sort();
    (tmp, photos, all)
}

/// Moves a file's modification time `secs` into the future, so that it changes even on
/// coarse clocks.
fn touch_later(path: &Path, secs: u64) {
    std::fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(secs))
        .unwrap();
}

/// `facebatch classify INPUT --out OUT --faces whole --threads 1`.
fn classify_whole(input: &Path, out: impl AsRef<OsStr>) -> Command {
    let mut c = classify_cmd([input], out);
    c.args(["--faces", "whole", "--threads", "1"]);
    c
}

fn classify(input: &Path, out: impl AsRef<OsStr>, extra: &[&str]) -> std::process::Output {
    run(classify_whole(input, out).args(extra))
}

/// `out` as a dataset-folder argument (ending with a separator).
fn dir_arg(out: &Path) -> String {
    format!("{}/", out.display())
}

#[test]
fn shards_split_the_inputs_exactly_and_rerunning_a_finished_shard_does_nothing() {
    let (tmp, photos, all) = temp_corpus_with_broken(40);

    let full = tmp.path().join("full.parquet");
    assert_eq!(classify(&photos, &full, &[]).status.code(), Some(1));
    let mut expected = paths(&full);
    expected.sort();
    assert_eq!(expected, all);

    let ds = tmp.path().join("ds");
    let mut union = Vec::new();
    for k in 0..3 {
        let o = classify(&photos, dir_arg(&ds), &["--shard", &format!("{k}/3")]);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
        let part = ds.join(format!("part-{k:05}-of-00003.parquet"));
        let marker = read_json(&ds.join(format!("_SUCCESS-{k:05}-of-00003.json")));
        let rows = paths(&part);
        assert_eq!(marker["rows"], rows.len() as u64);
        assert_eq!(marker["shard"], format!("{k}/3"));
        assert_eq!(marker["model_version"], "v5");
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
    let o = classify(&photos, dir_arg(&ds), &["--shard", "1/3"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "already complete");
    let after = (
        std::fs::read(&part).unwrap(),
        std::fs::metadata(&part).unwrap().modified().unwrap(),
    );
    assert!(before == after, "a finished shard must not be rewritten");
}

#[test]
fn a_killed_shard_resumes_on_retry_without_losing_or_repeating_a_row() {
    let (tmp, photos, all) = temp_corpus(150);
    let ds = tmp.path().join("ds");
    let mut child = classify_whole(&photos, dir_arg(&ds))
        .args(["--batch-size", "2"])
        .args(["--checkpoint-rows", "4", "--shard", "0/1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_parts(
        &ds.join("_staging/part-00000-of-00001.parquet"),
        2,
        &mut child,
    );
    kill_9(&mut child);
    assert!(!ds.join("_SUCCESS-00000-of-00001.json").exists());
    assert!(!ds.join("part-00000-of-00001.parquet").exists());

    // The retry is the same command: it finds the staging and resumes it.
    let o = classify(&photos, dir_arg(&ds), &["--shard", "0/1"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "already done earlier");
    let mut got = paths(&ds.join("part-00000-of-00001.parquet"));
    got.sort();
    assert_eq!(got, all, "every file exactly once");
}

#[test]
fn shard_auto_reads_kubernetes_and_slurm_variables() {
    let (tmp, photos, _) = temp_corpus(12);
    let ds = tmp.path().join("ds");
    let auto = |env: &[(&str, &str)]| {
        let mut c = classify_whole(&photos, dir_arg(&ds));
        c.args(["--shard", "auto"]);
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
    assert_code(&o, 0);
    assert!(ds.join("_SUCCESS-00001-of-00002.json").is_file());
    let o = auto(&[
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "5"),
        ("SLURM_ARRAY_TASK_COUNT", "2"),
    ]);
    assert_code(&o, 0);
    assert!(ds.join("_SUCCESS-00000-of-00002.json").is_file());
    let mut union = paths(&ds.join("part-00000-of-00002.parquet"));
    union.extend(paths(&ds.join("part-00001-of-00002.parquet")));
    assert_eq!(union.len(), 12);
    assert_eq!(union.iter().collect::<BTreeSet<_>>().len(), 12);

    assert_fatal(&auto(&[]), "--shard auto");
    assert_fatal(&auto(&[("JOB_COMPLETION_INDEX", "0")]), "JOB_COMPLETIONS");
    let o = run(classify_cmd([&photos], dir_arg(&ds)).args(["--shard", "3/3"]));
    assert_code(&o, 2);
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

/// Adds a line to a job file's `[classify]` table (its last table).
fn add_to_classify(job: &Path, line: &str) {
    let text = std::fs::read_to_string(job).unwrap() + line + "\n";
    std::fs::write(job, text).unwrap();
}

/// `facebatch run JOB --date DATE`.
fn job_cmd(job: &Path, date: &str) -> Command {
    let mut c = facebatch();
    c.arg("run").arg(job).args(["--date", date]);
    c
}

fn run_job(job: &Path, date: &str) -> std::process::Output {
    run(&mut job_cmd(job, date))
}

#[test]
fn a_job_classifies_only_new_or_changed_files_and_reruns_are_idempotent() {
    let (tmp, photos, _) = temp_corpus_with_broken(10);
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "");
    let part = |date: &str| out.join(format!("dt={date}/part-00000-of-00001.parquet"));

    let o = run_job(&job, "2026-11-01");
    assert_eq!(o.status.code(), Some(1), "one broken file: {}", stderr(&o));
    let day1 = paths(&part("2026-11-01"));
    assert_eq!(day1.len(), 11);
    let (_, meta) = read_parquet(&part("2026-11-01"));
    assert_eq!(meta["facebatch.model_version"], "v5", "latest version used");

    // The same date again: already complete, nothing rewritten, and the same exit status as
    // the run (its error rows are over the default --max-error-rate of 0) ...
    let o = run_job(&job, "2026-11-01");
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("already complete"));
    // ... which a higher rate turns into a success: 1 error in 11 images.
    let o = run(job_cmd(&job, "2026-11-01").args(["--max-error-rate", "0.1"]));
    assert_code(&o, 0);

    // Next day, nothing changed: an empty partition (the broken file is not retried).
    let o = run_job(&job, "2026-11-02");
    assert_code(&o, 0);
    assert_stdout_has(&o, "11 unchanged");
    assert!(paths(&part("2026-11-02")).is_empty());

    // A new file and a changed one (other pixels and size); the rest untouched.
    let (copied, changed) = ("d3/img00003.jpg", "d2/img00007.jpg");
    let face = image::open(photos.join(copied)).unwrap().to_rgb8();
    write_jpeg(&photos.join("new/added.jpg"), &face);
    write_jpeg(
        &photos.join(changed),
        &image::imageops::flip_horizontal(&face),
    );
    touch_later(&photos.join(changed), 5);
    let o = run_job(&job, "2026-11-03");
    assert_code(&o, 0);
    let mut day3 = paths(&part("2026-11-03"));
    day3.sort();
    let mut want = vec!["new/added.jpg".to_string(), changed.to_string()];
    want.sort();
    assert_eq!(day3, want);
}

#[test]
fn a_job_pins_a_model_version_and_bad_job_files_are_fatal() {
    let (tmp, photos, _) = temp_corpus(3);
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "model_version = \"v2\"");
    let o = run_job(&job, "2026-11-05");
    assert_code(&o, 0);
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
    let (tmp, photos, _) = temp_corpus(2);
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

/// The `unchanged` count in a job run's marker.
fn unchanged(out: &Path, date: &str, tag: &str) -> u64 {
    read_json(&out.join(format!("dt={date}/_SUCCESS-{tag}.json")))["unchanged"]
        .as_u64()
        .unwrap()
}

/// Issue 18: an incremental run reads what earlier runs classified through the shard's
/// fingerprint index (`OUTPUT/_index/`), in step with the walk. Without the index (deleted,
/// damaged, or not yet covering a part because a run stopped before renaming it) the
/// parts are read instead, and the result is the same.
#[test]
fn a_job_skips_unchanged_files_through_its_index_and_without_it() {
    let (tmp, photos, all) = temp_corpus_with_broken(12);
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "");
    add_to_classify(&job, "max_error_rate = 1.0");
    let tag = "00000-of-00001";
    let index = out.join(format!("_index/seen-{tag}.index"));
    let part = |date: &str| out.join(format!("dt={date}/part-{tag}.parquet"));

    assert_code(&run_job(&job, "2026-12-01"), 0);
    assert!(index.is_file(), "the first run writes the index");
    let (_, meta) = read_parquet(&index);
    assert!(meta["facebatch.index.covers"].contains("dt=2026-12-01/part-"));
    let mut indexed = paths(&index);
    indexed.sort();
    assert_eq!(indexed, all, "every file, the error row's included");

    let o = run_job(&job, "2026-12-02");
    assert_code(&o, 0);
    assert_stdout_has(&o, "13 unchanged");
    assert!(paths(&part("2026-12-02")).is_empty());

    // A changed and a new file; then the index deleted, then damaged: the parts are read,
    // nothing else is classified, and each run writes a good index again.
    let face = image::open(photos.join("d1/img00001.jpg"))
        .unwrap()
        .to_rgb8();
    write_jpeg(&photos.join("d0/new.jpg"), &face);
    let changed = photos.join("d2/img00002.jpg");
    write_jpeg(&changed, &image::imageops::flip_horizontal(&face));
    touch_later(&changed, 5);
    let o = run_job(&job, "2026-12-03");
    assert_code(&o, 0);
    let mut day3 = paths(&part("2026-12-03"));
    day3.sort();
    assert_eq!(day3, ["d0/new.jpg", "d2/img00002.jpg"]);
    assert_eq!(unchanged(&out, "2026-12-03", tag), 12);

    std::fs::remove_file(&index).unwrap();
    let o = run_job(&job, "2026-12-04");
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("no fingerprint index"),
        "{}",
        stderr(&o)
    );
    assert!(paths(&part("2026-12-04")).is_empty());
    assert_eq!(unchanged(&out, "2026-12-04", tag), 14);

    std::fs::write(&index, b"PAR1 this is not an index").unwrap();
    let o = run_job(&job, "2026-12-05");
    assert_code(&o, 0);
    assert!(stderr(&o).contains("set aside"), "{}", stderr(&o));
    assert!(paths(&part("2026-12-05")).is_empty());
    assert_eq!(paths(&index).len(), 14, "a good index again");

    // A run that stops between its marker and its index: the same date again is complete
    // (and leaves no staging behind); the next date reads that run's part, which the
    // index does not cover, and skips the file it classified.
    touch_later(&changed, 10);
    let o = run(job_cmd(&job, "2026-12-06").env("FACEBATCH_FAILPOINT", "dataset-index=crash"));
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(paths(&part("2026-12-06")), ["d2/img00002.jpg"]);
    let (_, meta) = read_parquet(&index);
    assert!(!meta["facebatch.index.covers"].contains("2026-12-06"));
    let o = run_job(&job, "2026-12-06");
    assert_stdout_has(&o, "already complete");
    assert!(!out.join("dt=2026-12-06/_staging").exists());
    let o = run_job(&job, "2026-12-07");
    assert_code(&o, 0);
    assert!(paths(&part("2026-12-07")).is_empty());
    assert_eq!(unchanged(&out, "2026-12-07", tag), 14);
    let (_, meta) = read_parquet(&index);
    assert!(meta["facebatch.index.covers"].contains("2026-12-06"));
}

/// Issue 30: `OUTPUT/*/*.parquet` (DuckDB's `hive_partitioning=true` glob) reaches only
/// the partitions' rows: the index is not named `.parquet`, and an older version's
/// `_index/seen-*.parquet` is removed by the next run.
#[test]
fn the_dataset_glob_reaches_only_rows_and_an_older_index_is_removed() {
    let (tmp, photos, _) = temp_corpus(4);
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "");
    let tag = "00000-of-00001";
    assert_code(&run_job(&job, "2026-12-01"), 0);
    let legacy = out.join(format!("_index/seen-{tag}.parquet"));
    std::fs::rename(out.join(format!("_index/seen-{tag}.index")), &legacy).unwrap();
    assert_code(&run_job(&job, "2026-12-02"), 0);
    assert!(!legacy.exists(), "the older version's index is removed");
    assert!(out.join(format!("_index/seen-{tag}.index")).is_file());
    let mut reached: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).into_iter().flatten())
        .map(|f| f.unwrap().path())
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .map(|f| f.strip_prefix(&out).unwrap().display().to_string())
        .collect();
    reached.sort();
    assert_eq!(
        reached,
        ["2026-12-01", "2026-12-02"].map(|d| format!("dt={d}/part-{tag}.parquet"))
    );
}

/// Issue 30: an unchanged file whose newest row is an error row stays unchanged (it is not
/// classified every night), unless the run is told `--retry-errors`; a file that then
/// classifies is not retried again, one that still fails is.
#[test]
fn retry_errors_classifies_again_the_unchanged_files_that_failed() {
    let (tmp, photos, all) = temp_corpus_with_broken(4);
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "");
    let text = std::fs::read_to_string(&job).unwrap();
    // Day 1 under a file size limit that every image but the 10-byte broken one passes.
    add_to_classify(&job, "max_error_rate = 1.0\nmax_file_bytes = 20");
    let tag = "00000-of-00001";
    let part = |date: &str| out.join(format!("dt={date}/part-{tag}.parquet"));
    assert_code(&run_job(&job, "2026-12-01"), 0);
    let (b, _) = read_rows(&part("2026-12-01"));
    assert!(texts(&b, "status").iter().all(|s| s == "error"));
    std::fs::write(&job, text).unwrap();
    add_to_classify(&job, "max_error_rate = 1.0");
    assert_code(&run_job(&job, "2026-12-02"), 0);
    assert_eq!(
        unchanged(&out, "2026-12-02", tag),
        5,
        "error rows' files too"
    );
    let retried = |date: &str| run(job_cmd(&job, date).arg("--retry-errors"));
    assert_code(&retried("2026-12-03"), 0);
    let mut day3 = paths(&part("2026-12-03"));
    day3.sort();
    assert_eq!(day3, all);
    assert_code(&retried("2026-12-04"), 0);
    assert_eq!(
        paths(&part("2026-12-04")),
        ["d0/broken.jpg"],
        "only what still fails"
    );
    assert_eq!(unchanged(&out, "2026-12-04", tag), 4);
}

/// A job run killed mid-way resumes on its next start; the files it had done before the
/// kill are in its index with the fingerprints their rows record, so the next date skips
/// every file. Shards keep an index each.
#[test]
fn a_resumed_or_sharded_job_run_indexes_every_file_it_classified() {
    let (tmp, photos, all) = temp_corpus(24);
    let out = tmp.path().join("labels");
    let job = job_file(tmp.path(), &photos, &out, "");
    add_to_classify(&job, "checkpoint_rows = 4");
    let o = run(job_cmd(&job, "2026-12-01").env("FACEBATCH_FAILPOINT", "part-write@3=crash"));
    assert_ne!(o.status.code(), Some(0));
    let o = run_job(&job, "2026-12-01");
    assert_code(&o, 0);
    assert_stdout_has(&o, "already done earlier");
    let o = run_job(&job, "2026-12-02");
    assert_code(&o, 0);
    assert_stdout_has(&o, &format!("{} unchanged", all.len()));

    let sharded = tmp.path().join("sharded");
    let job = job_file(tmp.path(), &photos, &sharded, "");
    for date in ["2026-12-01", "2026-12-02"] {
        let mut skipped = 0;
        for k in 0..2 {
            let o = run(job_cmd(&job, date).args(["--shard", &format!("{k}/2")]));
            assert_code(&o, 0);
            skipped += unchanged(&sharded, date, &format!("{k:05}-of-00002"));
        }
        let want = if date == "2026-12-01" { 0 } else { all.len() };
        assert_eq!(skipped, want as u64, "{date}");
    }
    let mut indexed = paths(&sharded.join("_index/seen-00000-of-00002.index"));
    indexed.extend(paths(&sharded.join("_index/seen-00001-of-00002.index")));
    indexed.sort();
    assert_eq!(indexed, all);
}

/// The provisioned face detector's file, from `facebatch setup`.
fn provisioned_detector() -> PathBuf {
    let o = run(facebatch().arg("setup"));
    assert_code(&o, 0);
    let line = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("face detector: ").map(str::to_string))
        .expect("setup names the detector");
    PathBuf::from(line.trim())
}

/// A job file in `dir` with the given `model` and `[classify]` lines.
fn job_with(dir: &Path, inputs: &str, model: &Path, classify: &str) -> PathBuf {
    let file = dir.join("job.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"test\"\ninputs = [{inputs}]\noutput = \"labels\"\nmodel = {:?}\n\
             [classify]\nthreads = 1\nbatch_size = 8\n{classify}\n",
            model.display().to_string(),
        ),
    )
    .unwrap();
    file
}

/// Regression (issue 29, hole 3): `save_crops`, `detector` and `ort_lib` in a job's
/// `[classify]` were resolved from the current folder, not from the job file as `inputs`
/// and `output` are: crops landed in the caller's folder, and `detector = "det.onnx"`
/// failed unless run from the job's folder.
#[test]
fn paths_in_a_jobs_classify_table_are_relative_to_the_job_file() {
    let (tmp, photos, _) = temp_corpus(3);
    let jobdir = tmp.path().join("job");
    std::fs::create_dir_all(&jobdir).unwrap();
    std::fs::copy(provisioned_detector(), jobdir.join("det.onnx")).unwrap();
    let job = job_with(
        &jobdir,
        &format!("{:?}", photos.display().to_string()),
        &repo().join("models/facebatch-gender/v4"),
        "faces = \"auto\"\nsave_crops = \"crops\"\ndetector = \"det.onnx\"",
    );
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = run(job_cmd(&job, "2026-01-01").current_dir(&elsewhere));
    assert_code(&o, 0);
    assert!(jobdir.join("crops").is_dir(), "crops beside the job file");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing in the caller's folder"
    );
}

/// Regression (issue 29, holes 5 and 9): a model that failed on every image still
/// published the partition and its index, so once a good model was installed the next run
/// said "3 unchanged" and never classified them; a job that failed on a missing input left
/// an empty `dt=` folder.
#[test]
fn a_job_whose_model_fails_on_every_image_publishes_nothing_and_a_failed_job_leaves_no_partition() {
    let (tmp, photos, expected) = temp_corpus(3);
    // A card whose network loads but fails on every batch (tests/fixtures).
    let model = tmp.path().join("broken/v1");
    std::fs::create_dir_all(&model).unwrap();
    let onnx = std::fs::read(repo().join("tests/fixtures/fails-at-inference.onnx")).unwrap();
    std::fs::write(model.join("model.onnx"), &onnx).unwrap();
    let mut card = read_json(&default_model().join("card.json"));
    card["onnx"] = serde_json::json!({
        "file": "model.onnx",
        "sha256": facebatch::fsutil::sha256_hex(&onnx),
        "bytes": onnx.len(),
    });
    card["outputs"] = serde_json::json!([{"name": "probs", "shape": ["batch", 2], "description": "class probabilities"}]);
    card.as_object_mut().unwrap().remove("int8");
    std::fs::write(model.join("card.json"), card.to_string()).unwrap();
    let inputs = format!("{:?}", photos.display().to_string());
    let job = job_with(tmp.path(), &inputs, &model, "faces = \"whole\"");
    let o = run_job(&job, "2026-01-01");
    assert_fatal(&o, "inference failed on every one of the 3 images");
    let partition = tmp.path().join("labels/dt=2026-01-01");
    assert!(
        !partition.join("_SUCCESS-00000-of-00001.json").exists(),
        "no marker"
    );
    assert!(
        !partition.join("part-00000-of-00001.parquet").exists(),
        "no part"
    );
    // With a working model, the same day classifies every image.
    let job = job_with(tmp.path(), &inputs, &default_model(), "faces = \"whole\"");
    let o = run_job(&job, "2026-01-01");
    assert_code(&o, 0);
    let part = partition.join("part-00000-of-00001.parquet");
    let mut got: Vec<String> = path_faces(&part).into_iter().map(|(p, _)| p).collect();
    got.sort();
    assert_eq!(got, expected);
    // A missing input: exit 2 and no partition folder.
    let missing = format!("{:?}", tmp.path().join("missing").display().to_string());
    let job = job_with(tmp.path(), &missing, &default_model(), "faces = \"whole\"");
    let o = run_job(&job, "2026-01-02");
    assert_fatal(&o, "does not exist");
    assert!(!tmp.path().join("labels/dt=2026-01-02").exists());
}

/// Issue 29: a crash at every step of a job run's clean-up (inside the deletion of the
/// staged parts included), then the same job again: every image exactly once, and the
/// marker counts what the part holds.
#[test]
fn a_crash_at_any_clean_up_step_of_a_job_then_a_rerun_leaves_every_image_exactly_once() {
    let (tmp, photos, expected) = temp_corpus(30);
    for point in [
        "cleanup-parts",
        "cleanup-part@2",
        "cleanup-run",
        "cleanup-commit",
        "cleanup-dir",
        "dataset-publish",
    ] {
        let dir = tmp.path().join(point.replace('@', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let job = job_with(
            &dir,
            &format!("{:?}", photos.display().to_string()),
            &default_model(),
            "faces = \"whole\"\ncheckpoint_rows = 10",
        );
        let o =
            run(job_cmd(&job, "2026-01-01").env("FACEBATCH_FAILPOINT", format!("{point}=crash")));
        assert_ne!(o.status.code(), Some(0), "{point}: the crash");
        let o = run_job(&job, "2026-01-01");
        assert_code(&o, 0);
        let partition = dir.join("labels/dt=2026-01-01");
        let part = partition.join("part-00000-of-00001.parquet");
        let keys = path_faces(&part);
        let unique: std::collections::BTreeSet<_> = keys.iter().cloned().collect();
        assert_eq!(keys.len(), unique.len(), "{point}: no row twice");
        let mut got: Vec<String> = unique.into_iter().map(|(p, _)| p).collect();
        got.sort();
        assert_eq!(got, expected, "{point}");
        let marker = read_json(&partition.join("_SUCCESS-00000-of-00001.json"));
        assert_eq!(marker["rows"], expected.len(), "{point}: marker");
    }
}
