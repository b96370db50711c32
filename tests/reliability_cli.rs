//! Exactly-once and output safety through the real binary: a failure injected at every
//! write, rename and remove step of a run (`FACEBATCH_FAILPOINT`), then a resume that must
//! leave every image exactly once; locks, input spellings, exit codes, `--out` and
//! `--save-crops` safety, signals. Every fixture is generated from the bundled sample
//! faces, so these tests need nothing outside the repository.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use tempfile::TempDir;

/// `n` distinct small JPEG faces under `dir`; their relative paths, sorted.
fn corpus(dir: &Path, n: usize) -> Vec<String> {
    jpeg_corpus(dir, n, 3, &sample_face())
}

/// A temporary folder with `corpus(photos/, n)`: the folder, `photos/`, the relative paths.
fn temp_corpus(n: usize) -> (TempDir, PathBuf, Vec<String>) {
    temp_photos(n, 3, &sample_face())
}

/// `facebatch classify INPUTS --out OUT` with small parts, one thread, the default model.
fn classify(inputs: &[&Path], out: &Path, extra: &[&str]) -> Command {
    let mut c = classify_default(inputs, out);
    c.args([
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--checkpoint-rows",
        "10",
    ])
    .args(extra);
    c
}

/// The paths of every row, sorted, asserting that no (path, face_index) appears twice.
fn keys(file: &Path) -> Vec<String> {
    let mut all = BTreeSet::new();
    for k in path_faces(file) {
        let dup = !all.insert(k.clone());
        assert!(!dup, "{k:?} appears twice in {}", file.display());
    }
    all.into_iter().map(|(p, _)| p).collect()
}

fn status(o: &Output) -> Option<i32> {
    o.status.code()
}

/// Every step of a file-mode run at which a failure is injected.
const FILE_POINTS: &[&str] = &[
    "part-write@2",
    "part-rename@2",
    "commit",
    "merge-write",
    "merge-rename",
    "cleanup-stats",
    "cleanup-parts",
    // Inside the clean-up's deletion: after the first and the second part, before
    // run.json, before the commit record, before the empty folder.
    "cleanup-part@2",
    "cleanup-part@3",
    "cleanup-run",
    "cleanup-commit",
    "cleanup-dir",
];

/// A crash (SIGKILL) or an I/O error at every step, then `--resume`: every image exactly
/// once, the feature statistics over all of them, exit 0. Regression: a failure between
/// publishing the output and removing the parts made `--resume` write every row twice.
#[test]
fn a_failure_at_any_step_then_resume_leaves_every_image_exactly_once() {
    let (tmp, photos, expected) = temp_corpus(30);
    for action in ["crash", "error"] {
        for point in FILE_POINTS {
            let out = tmp
                .path()
                .join(format!("{}-{action}.parquet", point.replace('@', "-")));
            let o = run(classify(&[&photos], &out, &["--features"])
                .env("FACEBATCH_FAILPOINT", format!("{point}={action}")));
            assert_ne!(status(&o), Some(0), "{point}={action} must fail the run");
            if action == "error" {
                assert_fatal(&o, "injected failure");
            }
            let o = run(&mut classify(&[&photos], &out, &["--features", "--resume"]));
            assert_eq!(status(&o), Some(0), "{point}={action}: resume");
            assert_eq!(keys(&out), expected, "{point}={action}");
            let parts = beside(&out, ".parts");
            assert!(!parts.exists(), "{point}={action}: parts removed");
            let stats = read_json(&beside(&out, ".features.json"));
            assert_eq!(
                stats["count"],
                expected.len(),
                "{point}={action}: statistics"
            );
        }
    }
}

/// The same in dataset mode, where a shard is also published and marked: rerunning the
/// same command completes the shard, and the marker counts what the part holds.
#[test]
fn a_failure_at_any_step_of_a_dataset_shard_then_a_retry_leaves_it_exactly_once() {
    let (tmp, photos, expected) = temp_corpus(30);
    let points = FILE_POINTS.iter().copied().chain([
        "dataset-record",
        "dataset-publish",
        "dataset-features",
        "dataset-marker",
    ]);
    for action in ["crash", "error"] {
        for point in points.clone() {
            let dir = tmp
                .path()
                .join(format!("ds-{}-{action}", point.replace('@', "-")));
            let out = PathBuf::from(format!("{}/", dir.display()));
            let o = run(classify(&[&photos], &out, &["--features"])
                .env("FACEBATCH_FAILPOINT", format!("{point}={action}")));
            assert_ne!(status(&o), Some(0), "{point}={action} must fail the run");
            let o = run(&mut classify(&[&photos], &out, &["--features"]));
            assert_eq!(status(&o), Some(0), "{point}={action}: retry");
            let part = dir.join("part-00000-of-00001.parquet");
            assert_eq!(keys(&part), expected, "{point}={action}");
            let marker = read_json(&dir.join("_SUCCESS-00000-of-00001.json"));
            assert_eq!(marker["rows"], expected.len(), "{point}={action}: marker");
            assert_eq!(marker["files"], expected.len(), "{point}={action}: marker");
            assert!(
                dir.join("_features-00000-of-00001.json").is_file(),
                "{point}={action}: statistics published"
            );
            assert!(
                !dir.join("_staging").exists(),
                "{point}={action}: staging removed"
            );
            // And once complete, running it again does nothing.
            let o = run(&mut classify(&[&photos], &out, &["--features"]));
            assert!(stdout(&o).contains("already complete"), "{point}={action}");
        }
    }
}

/// Regression: an earlier complete output, a new run into it that crashed, then
/// `--resume`, took the earlier file as part of the crashed run: 528 rows for 400.
#[test]
fn resume_never_counts_an_earlier_unrelated_output_as_done() {
    let (tmp, photos, expected) = temp_corpus(30);
    let out = tmp.path().join("o.parquet");
    assert_eq!(status(&run(&mut classify(&[&photos], &out, &[]))), Some(0));
    let o = run(classify(&[&photos], &out, &[]).env("FACEBATCH_FAILPOINT", "part-write@2=crash"));
    assert_ne!(status(&o), Some(0));
    let o = run(&mut classify(&[&photos], &out, &["--resume"]));
    assert_eq!(status(&o), Some(0));
    assert_eq!(keys(&out), expected);
    let out_text = stdout(&o);
    assert!(
        out_text.contains("already done earlier") && !out_text.contains("30 already done"),
        "only the crashed run's own part counts as done: {out_text}"
    );
}

/// Regression: `IN` then `IN/ --resume` gave 464 rows for 400 files.
#[test]
fn the_same_input_spelled_differently_resumes_exactly_once_and_other_inputs_are_refused() {
    let (tmp, photos, expected) = temp_corpus(30);
    let out = tmp.path().join("o.parquet");
    let o = run(classify(&[&photos], &out, &[]).env("FACEBATCH_FAILPOINT", "part-write@2=crash"));
    assert_ne!(status(&o), Some(0));
    let other = tmp.path().join("other");
    corpus(&other, 2);
    let o = run(&mut classify(&[&other], &out, &["--resume"]));
    assert_fatal(&o, "--resume: the earlier run read other inputs");
    let slash = PathBuf::from(format!("{}/", photos.display()));
    let o = run(&mut classify(&[&slash], &out, &["--resume"]));
    assert_eq!(status(&o), Some(0));
    assert_eq!(keys(&out), expected);
}

/// Regression: the exit status of a resumed run ignored the error rows of the attempt it
/// completed; it reflects the whole output.
#[test]
fn a_resumed_run_exits_partial_when_an_earlier_attempt_wrote_an_error_row() {
    let (tmp, photos, _) = temp_corpus(30);
    std::fs::write(photos.join("d0/a-broken.jpg"), b"not a jpeg").unwrap();
    let out = tmp.path().join("o.parquet");
    let o = run(classify(&[&photos], &out, &[]).env("FACEBATCH_FAILPOINT", "part-write@2=crash"));
    assert_ne!(status(&o), Some(0));
    let o = run(&mut classify(&[&photos], &out, &["--resume"]));
    assert_eq!(status(&o), Some(1), "an error row in the output");
    assert!(stdout(&o).contains("1 error"), "{}", stdout(&o));
}

/// Another run holds the output: exit 75 (try again later) and one line naming it.
fn assert_busy(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(75), "{}", stderr(o));
    let err = stderr(o);
    assert!(err.contains(needle), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("facebatch: error"))
            .count(),
        1,
        "{err}"
    );
}

/// Regression: a second run with `--resume` while the first was still running made the
/// first report 400 rows while the file held 304. The output is locked for the whole run.
#[test]
fn a_second_run_into_a_busy_output_is_refused_and_names_the_holder() {
    let (tmp, photos, expected) = temp_corpus(600);
    let out = tmp.path().join("o.parquet");
    let mut first = spawn_piped(&mut classify(&[&photos], &out, &[]));
    wait_for_parts(&out, 1, &mut first);
    let o = run(&mut classify(&[&photos], &out, &["--resume"]));
    assert_busy(&o, &format!("pid {}", first.id()));
    let dataset = tmp.path().join("ds/");
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(keys(&out), expected);
    assert!(
        !tmp.path().join(".o.parquet.lock").exists(),
        "the lock file goes with the run"
    );
    // A dataset shard is locked the same way.
    let mut first = spawn_piped(&mut classify(&[&photos], &dataset, &["--shard", "1/2"]));
    let staged = tmp.path().join("ds/_staging/part-00001-of-00002.parquet");
    wait_for_parts(&staged, 1, &mut first);
    let o = run(&mut classify(&[&photos], &dataset, &["--shard", "1/2"]));
    assert_busy(&o, "is writing");
    assert_eq!(first.wait_with_output().unwrap().status.code(), Some(0));
}

/// Regression: `--out` replaced an input image, or any file at all, with Parquet.
#[test]
fn out_never_replaces_an_input_or_a_file_that_is_not_a_facebatch_output() {
    let (tmp, photos, _) = temp_corpus(3);
    let image = photos.join("d0/img00000.jpg");
    let before = std::fs::read(&image).unwrap();
    let o = run(&mut classify(&[&photos], &image, &[]));
    assert_fatal(&o, "inside the input folder");
    let o = run(&mut classify(&[&image], &image, &[]));
    assert_fatal(&o, "one of the inputs");
    let o = run(&mut classify(&[&photos], &photos.join("new.png"), &[]));
    assert_fatal(&o, "inside the input folder");
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "the input is untouched"
    );
    let notes = tmp.path().join("notes.parquet");
    std::fs::write(&notes, "my notes").unwrap();
    let o = run(&mut classify(&[&photos], &notes, &[]));
    assert_fatal(&o, "not a facebatch output");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes");
    // An earlier facebatch output is replaced, and a .parquet inside the photos is fine.
    let out = photos.join("labels.parquet");
    assert_eq!(status(&run(&mut classify(&[&photos], &out, &[]))), Some(0));
    assert_eq!(status(&run(&mut classify(&[&photos], &out, &[]))), Some(0));
    assert_eq!(keys(&out).len(), 3);
}

/// Regression (issue 29, hole 1): a crash in the clean-up's deletion that lost the commit
/// record made `--resume` count the output and the leftover parts: 838 rows for 451.
#[test]
fn a_clean_up_that_lost_its_commit_record_never_doubles_rows_on_resume() {
    let (tmp, photos, expected) = temp_corpus(30);
    for point in ["cleanup-parts", "cleanup-part@2"] {
        let out = tmp
            .path()
            .join(format!("{}.parquet", point.replace('@', "-")));
        let o =
            run(classify(&[&photos], &out, &[])
                .env("FACEBATCH_FAILPOINT", format!("{point}=crash")));
        assert_ne!(status(&o), Some(0), "{point}: the crash");
        let parts = beside(&out, ".parts");
        assert!(
            out.is_file() && parts.is_dir(),
            "{point}: published, not cleaned"
        );
        let _ = std::fs::remove_file(parts.join("commit.json"));
        let o = run(&mut classify(&[&photos], &out, &["--resume"]));
        assert_eq!(status(&o), Some(0), "{point}: resume\n{}", stderr(&o));
        assert_eq!(keys(&out), expected, "{point}: every image exactly once");
        assert!(!parts.exists(), "{point}: parts removed");
        // Also with run.json gone: the parts that OUT holds are recognised by their id.
        let out2 = tmp
            .path()
            .join(format!("{}-norun.parquet", point.replace('@', "-")));
        let o =
            run(classify(&[&photos], &out2, &[])
                .env("FACEBATCH_FAILPOINT", format!("{point}=crash")));
        assert_ne!(status(&o), Some(0));
        let parts = beside(&out2, ".parts");
        let _ = std::fs::remove_file(parts.join("commit.json"));
        let _ = std::fs::remove_file(parts.join("run.json"));
        let o = run(&mut classify(&[&photos], &out2, &["--resume"]));
        assert_eq!(status(&o), Some(0), "{point}: resume without run.json");
        assert_eq!(keys(&out2), expected, "{point}: without run.json");
    }
}

/// Regression (issue 29, hole 2): `classify mix mix/` classified every image twice (902
/// rows for 451), and a resume after a kill gave yet other counts.
#[test]
fn the_same_input_named_twice_is_read_once_and_nested_inputs_are_refused() {
    let (tmp, photos, expected) = temp_corpus(24);
    let slash = PathBuf::from(format!("{}/", photos.display()));
    let out = tmp.path().join("twice.parquet");
    let o = run(&mut classify(&[&photos, &slash], &out, &[]));
    assert_eq!(status(&o), Some(0), "{}", stderr(&o));
    assert_eq!(keys(&out), expected);
    // Killed and resumed, still exactly once.
    let out = tmp.path().join("twice-killed.parquet");
    let o =
        run(classify(&[&photos, &slash], &out, &[])
            .env("FACEBATCH_FAILPOINT", "part-write@2=crash"));
    assert_ne!(status(&o), Some(0));
    let o = run(&mut classify(&[&photos, &slash], &out, &["--resume"]));
    assert_eq!(status(&o), Some(0), "{}", stderr(&o));
    assert_eq!(keys(&out), expected);
    // A folder and a folder or a file inside it: one clear message, nothing written.
    for inner in [photos.join("d0"), photos.join("d0/img00000.jpg")] {
        let out = tmp.path().join("nested.parquet");
        let o = run(&mut classify(&[&photos, &inner], &out, &[]));
        assert_fatal(&o, "lies inside input");
        assert!(!out.exists() && !beside(&out, ".parts").exists());
    }
}

/// Regression (issue 29, hole 4): `--save-crops` inside an input folder was accepted, and
/// every later run classified the crops as new images.
#[test]
fn save_crops_inside_an_input_folder_is_refused() {
    let (tmp, photos, _) = temp_corpus(3);
    let out = tmp.path().join("o.parquet");
    for crops in [photos.join("crops"), photos.join("d0/new/deeper")] {
        let o = run(&mut classify(
            &[&photos],
            &out,
            &["--save-crops", crops.to_str().unwrap()],
        ));
        assert_fatal(&o, "--save-crops");
        assert!(
            stderr(&o).contains("inside the input folder"),
            "{}",
            stderr(&o)
        );
        assert!(!crops.exists(), "nothing created");
    }
    assert!(!out.exists());
}

/// Regression (issue 29, hole 8): `--threads 100000` took 23 GB of a 24 GB machine.
#[test]
fn thread_counts_past_eight_per_core_are_refused() {
    let (tmp, photos, _) = temp_corpus(2);
    let out = tmp.path().join("o.parquet");
    for flag in ["--threads", "--infer-workers", "--intra-threads"] {
        let o = run(classify_default([&photos], &out).args([flag, "100000"]));
        assert_fatal(&o, "per core");
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
    assert!(!out.exists());
}

/// Regression (issue 29, hole 9): newlines and ANSI escapes in a file name forged lines of
/// the text summary; an interrupted run counted files it dropped.
#[test]
fn the_text_summary_escapes_control_characters_in_names() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("p");
    std::fs::create_dir_all(&photos).unwrap();
    let name = "bad\nfacebatch: all good \x1b[32m.jpg";
    std::fs::write(photos.join(name), b"not a jpeg").unwrap();
    let out = tmp.path().join("o.parquet");
    let o = run(&mut classify(&[&photos], &out, &[]));
    assert_eq!(status(&o), Some(1));
    let text = stdout(&o);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("facebatch: all good")),
        "{text:?}"
    );
    assert!(
        text.contains("bad\\x0afacebatch: all good \\x1b[32m.jpg"),
        "{text:?}"
    );
}

/// Regression: crops from two inputs with the same relative name overwrote each other; a
/// crop that could not be written was left empty behind an `ok` row; a symbolic link in
/// the crops folder led writes outside it.
#[test]
fn save_crops_never_overwrites_never_leaves_a_bad_crop_and_stays_inside_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    corpus(&a, 2);
    corpus(&b, 2);
    let crops = tmp.path().join("crops");
    let out = tmp.path().join("o.parquet");
    let o = run(&mut classify(
        &[&a, &b],
        &out,
        &["--save-crops", crops.to_str().unwrap()],
    ));
    assert_eq!(status(&o), Some(0));
    for input in ["1", "2"] {
        for rel in ["d0/img00000.jpg.face0.png", "d1/img00001.jpg.face0.png"] {
            let p = crops.join(input).join(rel);
            assert!(
                image::open(&p).is_ok(),
                "{} is a readable crop",
                p.display()
            );
        }
    }
    // A crop whose name is taken by a folder cannot be written: that row is an error.
    let crops = tmp.path().join("crops2");
    std::fs::create_dir_all(crops.join("d0/img00000.jpg.face0.png")).unwrap();
    // A folder of the crops tree that is a link to elsewhere is refused.
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, crops.join("d1")).unwrap();
    let out = tmp.path().join("o2.parquet");
    let o = run(&mut classify(
        &[&a],
        &out,
        &["--save-crops", crops.to_str().unwrap()],
    ));
    assert_eq!(status(&o), Some(1), "two error rows");
    let (b, _) = read_rows(&out);
    let mut errors: Vec<String> = texts(&b, "status")
        .into_iter()
        .zip(strings(&b, "error"))
        .filter(|(status, _)| status == "error")
        .map(|(_, error)| error.unwrap_or_default())
        .collect();
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("--save-crops: writing")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("leads outside")),
        "{errors:?}"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
}

/// SIGTERM and SIGHUP stop a run as Ctrl-C does: a valid file, exit 130, resumable. A
/// second signal stops at once and the parts are kept.
#[test]
fn sigterm_stops_gracefully_and_a_second_signal_stops_at_once() {
    let (tmp, photos, expected) = temp_corpus(600);
    let cases = [
        (&["-TERM"][..], true),
        (&["-HUP"][..], true),
        (&["-INT", "-INT"][..], false),
    ];
    for (k, (signals, kept_output)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("o{k}.parquet"));
        let mut child = spawn_piped(&mut classify(&[&photos], &out, &[]));
        wait_for_parts(&out, 1, &mut child);
        for (i, s) in signals.iter().enumerate() {
            if i > 0 {
                // Let the first be handled, so the second one is a second signal. Regression:
                // the second one once exited through exit(3), whose C++ destructors tore
                // ONNX Runtime down under a running batch, leaving error rows in a part.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            send_signal(&child, s);
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(status(&o), Some(130), "{signals:?}: {}", stderr(&o));
        if kept_output {
            let (_, meta) = read_parquet(&out);
            assert_eq!(meta["facebatch.run_status"], "interrupted", "{signals:?}");
            // Regression (issue 29): the summary counted files dropped in flight (136
            // images while the output held 128).
            let text = stdout(&o);
            let said: usize = text
                .split(" images,")
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no summary in {text:?}"));
            let held: BTreeSet<String> = keys(&out).into_iter().collect();
            assert_eq!(
                said,
                held.len(),
                "{signals:?}: the summary counts what the output holds"
            );
        }
        let o = run(&mut classify(&[&photos], &out, &["--resume"]));
        assert_eq!(status(&o), Some(0), "{signals:?}");
        assert_eq!(keys(&out), expected, "{signals:?}");
    }
}

/// Files over `--max-file-bytes` get an error row without being read; names that are not
/// UTF-8 stay distinct, reversible rows; links are not followed without
/// `--follow-symlinks`, as documented.
#[test]
fn big_files_odd_names_and_links_are_handled_as_documented() {
    use std::os::unix::ffi::OsStrExt;
    let (tmp, photos, _) = temp_corpus(2);
    let jpeg = std::fs::read(photos.join("d0/img00000.jpg")).unwrap();
    for bytes in [&b"bad\xff.jpg"[..], &b"bad\xfe.jpg"[..]] {
        std::fs::write(photos.join(std::ffi::OsStr::from_bytes(bytes)), &jpeg).unwrap();
    }
    std::os::unix::fs::symlink(photos.join("d0/img00000.jpg"), photos.join("link.jpg")).unwrap();
    let out = tmp.path().join("o.parquet");
    let o = run(&mut classify(&[&photos], &out, &[]));
    assert_eq!(status(&o), Some(0));
    assert_stdout_has(&o, "1 symbolic link not followed");
    let paths = keys(&out);
    assert_eq!(
        paths,
        [
            "bad\\xfe.jpg",
            "bad\\xff.jpg",
            "d0/img00000.jpg",
            "d1/img00001.jpg"
        ]
    );
    std::os::unix::fs::symlink(photos.join("nowhere.jpg"), photos.join("broken.jpg")).unwrap();
    let o = run(&mut classify(&[&photos], &out, &["--follow-symlinks"]));
    assert_eq!(status(&o), Some(1), "the broken link is an error row");
    let (b, _) = read_rows(&out);
    let errors: BTreeMap<String, Option<String>> = texts(&b, "path")
        .into_iter()
        .zip(strings(&b, "error"))
        .collect();
    assert!(errors["link.jpg"].is_none(), "a followed link is read");
    assert!(
        errors["broken.jpg"]
            .as_deref()
            .is_some_and(|e| e.contains("broken symbolic link")),
        "{errors:?}"
    );
    let o = run(&mut classify(
        &[&photos],
        &out,
        &["--max-file-bytes", "100"],
    ));
    assert_eq!(status(&o), Some(1));
    let first_error = strings(&read_rows(&out).0, "error")[0]
        .clone()
        .unwrap_or_default();
    assert!(first_error.contains("--max-file-bytes"), "{first_error}");
}

/// A model card with a label twice, a `--detector` that is not a detector and an empty
/// FACEBATCH_ORT_LIB are each refused up front with one line that says what is wrong.
#[test]
fn bad_cards_detectors_and_empty_variables_are_refused_up_front() {
    let (tmp, photos, _) = temp_corpus(2);
    let model = tmp.path().join("model");
    copy_file(
        &default_model().join("model.onnx"),
        &model.join("model.onnx"),
    );
    let mut card = read_json(&default_model().join("card.json"));
    card["labels"] = serde_json::json!(["female", "female"]);
    std::fs::write(model.join("card.json"), card.to_string()).unwrap();
    let out = tmp.path().join("o.parquet");
    let o = run(classify_cmd([&photos], &out).arg("--model").arg(&model));
    assert_fatal(&o, "listed twice");
    let o = run(classify(&[&photos], &out, &["--faces", "detect"])
        .arg("--detector")
        .arg(default_model().join("model.onnx")));
    assert_fatal(&o, "is not a RetinaFace face detector");
    let o = run(classify(&[&photos], &out, &[]).env("FACEBATCH_ORT_LIB", ""));
    assert_fatal(&o, "FACEBATCH_ORT_LIB is set but empty");
    assert!(!out.exists());
}

/// Regression: a truncated or bit-flipped cached ONNX Runtime killed the process with no
/// message. It is checked before loading and fetched again; when that is impossible, one
/// line says why.
#[test]
fn a_damaged_cached_onnx_runtime_is_detected_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = cache.join("onnxruntime-1.31.1");
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libonnxruntime.so.1.31.1");
    std::fs::write(&lib, vec![0u8; 4096]).unwrap();
    std::fs::write(dir.join(".verified"), "x").unwrap();
    let photos = tmp.path().join("photos");
    corpus(&photos, 1);
    let out = tmp.path().join("o.parquet");
    let o = run(classify(&[&photos], &out, &[])
        .env("FACEBATCH_CACHE_DIR", &cache)
        .env("FACEBATCH_ORT_WHEEL", tmp.path().join("no-such-wheel.whl")));
    assert_fatal(&o, "no-such-wheel.whl");
    assert!(
        !dir.join(".verified").exists(),
        "the damaged copy is no longer trusted"
    );
}

/// A small deterministic generator (xorshift64*), seeded from `FACEBATCH_KILL_SEED` or the
/// clock; the seed is printed so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("FACEBATCH_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("random kills: FACEBATCH_KILL_SEED={seed}");
        Rng(seed | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Issue 29: `kill -9` at random moments, 15 times in each of file, dataset and job mode,
/// each followed by the documented way to finish (`--resume`, or the same command again),
/// and exactly-once checked every time: every image once, no row twice, the marker's count
/// equal to the part's. Run by `.ci/run` (about a minute on 2 cores); ignored in the
/// README's test command. `FACEBATCH_KILL_SEED=N` replays a run.
#[test]
#[ignore = "the randomised kill test: .ci/run runs it with --ignored"]
fn random_kill_9s_in_file_dataset_and_job_modes_then_finishing_leaves_every_image_exactly_once() {
    let (tmp, photos, expected) = temp_corpus(120);
    let mut rng = Rng::seeded();
    let job = |dir: &Path| -> PathBuf {
        let file = dir.join("job.toml");
        std::fs::write(
            &file,
            format!(
                "name = \"kills\"\ninputs = [{:?}]\noutput = \"labels\"\nmodel = {:?}\n\
                 [classify]\nthreads = 1\nbatch_size = 4\ncheckpoint_rows = 10\n",
                photos.display().to_string(),
                default_model().display().to_string()
            ),
        )
        .unwrap();
        file
    };
    // How long a whole run takes here: kills land anywhere in it, and a little after.
    let t0 = std::time::Instant::now();
    assert_eq!(
        status(&run(&mut classify(
            &[&photos],
            &tmp.path().join("timing.parquet"),
            &[]
        ))),
        Some(0)
    );
    let whole = t0.elapsed().as_secs_f64();
    let mut kills = 0;
    for mode in ["file", "dataset", "job"] {
        for trial in 0..15 {
            let dir = tmp.path().join(format!("{mode}-{trial}"));
            std::fs::create_dir_all(&dir).unwrap();
            let (mut first, mut again, check): (Command, Command, PathBuf) = match mode {
                "file" => {
                    let out = dir.join("o.parquet");
                    (
                        classify(&[&photos], &out, &[]),
                        classify(&[&photos], &out, &["--resume"]),
                        out,
                    )
                }
                "dataset" => {
                    let out = PathBuf::from(format!("{}/ds/", dir.display()));
                    (
                        classify(&[&photos], &out, &[]),
                        classify(&[&photos], &out, &[]),
                        dir.join("ds/part-00000-of-00001.parquet"),
                    )
                }
                _ => {
                    let file = job(&dir);
                    let cmd = || {
                        let mut c = facebatch();
                        c.arg("run").arg(&file).args(["--date", "2026-01-01"]);
                        c
                    };
                    (
                        cmd(),
                        cmd(),
                        dir.join("labels/dt=2026-01-01/part-00000-of-00001.parquet"),
                    )
                }
            };
            let delay = rng.next() * whole * 1.1;
            let mut child = spawn_piped(&mut first);
            std::thread::sleep(std::time::Duration::from_secs_f64(delay));
            let finished = child.try_wait().unwrap().is_some();
            kill_9(&mut child);
            kills += usize::from(!finished);
            let o = run(&mut again);
            let what = format!("{mode} trial {trial}, killed after {delay:.2}s");
            assert_eq!(status(&o), Some(0), "{what}: finishing");
            assert_eq!(keys(&check), expected, "{what}: every image exactly once");
            if mode != "file" {
                let marker = check.with_file_name("_SUCCESS-00000-of-00001.json");
                assert_eq!(read_json(&marker)["rows"], expected.len(), "{what}: marker");
            }
        }
    }
    assert!(
        kills >= 30,
        "only {kills} of the 45 runs were still running when killed"
    );
}
