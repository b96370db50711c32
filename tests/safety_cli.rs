//! Issue 29, through the real binary: a card that does not describe its network, absurd
//! card values and a damaged runtime library are refused before any work (exit 2, one
//! line), and no command writes over what it reads or over a file that is not its own.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// `src` model folder's `files` copied into `dst`.
fn copy_model(src: &Path, dst: &Path, files: &[&str]) {
    for f in files {
        copy_file(&src.join(f), &dst.join(f));
    }
}

/// The card at `dir/card.json`, changed by `edit` and written back.
fn edit_card(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("card.json");
    let mut card = read_json(&path);
    edit(&mut card);
    std::fs::write(&path, serde_json::to_string_pretty(&card).unwrap()).unwrap();
}

/// Sets an input (and its alignment, which must match it) to `n` x `n`.
fn resize_input(net: &mut serde_json::Value, n: u32) {
    net["input"]["height"] = n.into();
    net["input"]["width"] = n.into();
    if net.get("alignment").is_some() {
        net["alignment"]["height"] = n.into();
        net["alignment"]["width"] = n.into();
    }
}

/// The run was refused (exit 2, one line naming `needle`) and `out` was not written.
fn assert_refused_without_output(o: &std::process::Output, needle: &str, out: &Path) {
    assert_fatal(o, needle);
    assert!(!out.exists(), "{} must not be written", out.display());
}

/// What every file under `dir` holds, to compare before and after a refused run.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return out;
    }
    for e in std::fs::read_dir(dir).unwrap() {
        out.extend(walk(&e.unwrap().path()));
    }
    out
}

// Hole 5a: the card's input against the graph's, when the session opens.

#[test]
fn a_card_whose_input_size_differs_from_its_network_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    copy_model(&default_model(), &model, &["model.onnx", "card.json"]);
    edit_card(&model, |c| resize_input(c, 32));
    let out = tmp.path().join("o.parquet");
    let o = run(classify_cmd([sample_faces()], &out)
        .arg("--model")
        .arg(&model));
    assert_refused_without_output(&o, "[batch, 3, 32, 32] float32 in the card", &out);
    let err = stderr(&o);
    assert!(
        err.contains("[batch, 3, 64, 64]"),
        "the graph's shape: {err}"
    );
    assert!(
        err.contains(&*model.join("card.json").to_string_lossy()),
        "the card: {err}"
    );
    assert!(err.contains("\"facebatch-gender\""), "the network: {err}");
    assert!(!err.contains("inference"), "no per-image rows: {err}");
}

#[test]
fn an_ensemble_member_whose_input_differs_from_its_network_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    copy_model(
        &builtin_model(),
        &model,
        &["card.json", "v4.onnx", "dlib.onnx"],
    );
    edit_card(&model, |c| resize_input(&mut c["members"][0], 48));
    let out = tmp.path().join("o.parquet");
    let o = run(classify_cmd([sample_faces()], &out)
        .arg("--model")
        .arg(&model));
    assert_refused_without_output(&o, "member \"v4\"", &out);
    let err = stderr(&o);
    assert!(
        err.contains("[batch, 3, 48, 48] float32 in the card"),
        "{err}"
    );
    assert!(err.contains("[batch, 3, 64, 64]"), "{err}");
    assert!(err.contains("v4.onnx"), "names the member's file: {err}");
}

// Hole 9c: absurd card values.

#[test]
fn absurd_card_values_are_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 4] = [
        (|c| c["input"]["mean"][0] = 1e39.into(), "input.mean[0]"),
        (|c| c["input"]["std"][1] = (-0.5).into(), "input.std[1]"),
        (|c| c["input"]["scale"] = 1e30.into(), "input.scale"),
        (
            |c| c["calibration"]["temperature"] = 0.0.into(),
            "calibration.temperature",
        ),
    ];
    for (i, (edit, field)) in cases.into_iter().enumerate() {
        let model = tmp.path().join(format!("m{i}"));
        copy_model(&default_model(), &model, &["model.onnx", "card.json"]);
        edit_card(&model, edit);
        let out = tmp.path().join(format!("o{i}.parquet"));
        let o = run(classify_cmd([sample_faces()], &out)
            .arg("--model")
            .arg(&model));
        assert_refused_without_output(&o, field, &out);
        assert!(stderr(&o).contains("model card"), "{}", stderr(&o));
    }
    // An ensemble's combining step too.
    let model = tmp.path().join("ens");
    copy_model(
        &builtin_model(),
        &model,
        &["card.json", "v4.onnx", "dlib.onnx"],
    );
    edit_card(&model, |c| {
        c["combine"]["calibration"]["temperature"] = (-1.0).into()
    });
    let o = run(&mut eval_cmd(sample_faces(), &model));
    assert_fatal(&o, "combine.calibration.temperature");
}

// Hole 7: no command replaces an input.

/// A manifest `m.csv` in `dir` listing two sample faces copied beside it (`imgs/`).
fn manifest(dir: &Path) -> (PathBuf, PathBuf) {
    let imgs = dir.join("imgs");
    let female = any_file(&sample_faces().join("female"));
    let male = any_file(&sample_faces().join("male"));
    copy_file(&female, &imgs.join("a.jpg"));
    copy_file(&male, &imgs.join("b.jpg"));
    let csv = dir.join("m.csv");
    std::fs::write(&csv, "path,label\nimgs/a.jpg,female\nimgs/b.jpg,male\n").unwrap();
    (csv, imgs.join("a.jpg"))
}

#[test]
fn eval_predictions_never_replace_the_manifest_or_an_image_it_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, image) = manifest(tmp.path());
    let before = snapshot(tmp.path());
    for target in [&csv, &image] {
        let o = run(eval_cmd(&csv, default_model())
            .arg("--predictions")
            .arg(target));
        assert_fatal(&o, "is one of the inputs");
        assert_eq!(snapshot(tmp.path()), before, "nothing changed");
    }
    // The same file through another name, and the reliability diagram onto an image.
    let link = tmp.path().join("link.csv");
    std::os::unix::fs::symlink(&csv, &link).unwrap();
    let o = run(eval_cmd(&csv, default_model())
        .arg("--predictions")
        .arg(&link));
    assert_fatal(&o, "is one of the inputs");
    let o = run(eval_cmd(&csv, default_model())
        .arg("--reliability")
        .arg(&image));
    assert_fatal(&o, "--reliability");
    // A folder of classes: a file with an image extension inside it.
    let diagram = sample_faces().join("r.png");
    let o = run(eval_cmd(sample_faces(), default_model())
        .arg("--reliability")
        .arg(&diagram));
    assert_fatal(&o, "inside the input folder");
    assert!(!diagram.exists());
    std::fs::remove_file(&link).unwrap();
    assert_eq!(snapshot(tmp.path()), before, "nothing changed");
}

#[test]
fn eval_predictions_replace_only_an_earlier_predictions_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (csv, _) = manifest(tmp.path());
    let notes = tmp.path().join("notes.parquet");
    std::fs::write(&notes, b"someone's notes").unwrap();
    let o = run(eval_cmd(&csv, default_model())
        .arg("--predictions")
        .arg(&notes));
    assert_fatal(&o, "is not an earlier eval --predictions file");
    assert_eq!(std::fs::read(&notes).unwrap(), b"someone's notes");
    let preds = tmp.path().join("p.parquet");
    for _ in 0..2 {
        let o = run(eval_cmd(&csv, default_model())
            .arg("--predictions")
            .arg(&preds));
        assert_code(&o, 0);
    }
    assert_eq!(paths(&preds).len(), 2);
}

#[test]
fn report_out_never_replaces_its_input_or_what_is_not_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, image) = manifest(tmp.path());
    let results = tmp.path().join("o.parquet");
    assert_code(
        &run(&mut classify_default([tmp.path().join("imgs")], &results)),
        0,
    );
    let notes = tmp.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), b"keep me").unwrap();
    let before = snapshot(tmp.path());
    for (out, needle) in [
        (&results, "is one of the inputs"),
        (&notes, "is not an earlier report"),
        (&notes.join("todo.txt"), "is not a folder"),
        (&image, "is not a folder"),
    ] {
        assert_fatal(&run(&mut report_cmd(&results, out)), needle);
        assert_eq!(snapshot(tmp.path()), before, "nothing changed");
    }
    // An earlier report, and an empty folder, are written (again).
    let review = tmp.path().join("review");
    for _ in 0..2 {
        assert_code(&run(&mut report_cmd(&results, &review)), 0);
    }
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_code(&run(&mut report_cmd(&results, &empty)), 0);
}

#[test]
fn visualize_never_writes_over_the_image_it_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, image) = manifest(tmp.path());
    // A grid's name in the output folder is the image itself.
    let maps = tmp.path().join("maps");
    let named = maps.join("00_input.png");
    copy_file(&image, &named);
    let before = snapshot(tmp.path());
    let visualize = |image: &Path, out: &Path| {
        let mut c = facebatch();
        c.arg("visualize")
            .arg(image)
            .arg("--out")
            .arg(out)
            .arg("--model")
            .arg(default_model());
        run(&mut c)
    };
    assert_fatal(&visualize(&image, &image), "is one of the inputs");
    assert_fatal(
        &visualize(&named, &maps),
        "could replace the image it reads (00_input.png)",
    );
    assert_eq!(snapshot(tmp.path()), before, "nothing changed");
}

#[test]
fn setup_bundle_never_fills_an_unrelated_file_or_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, b"keep me").unwrap();
    let folder = tmp.path().join("home");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("thesis.tex"), b"keep me too").unwrap();
    let before = snapshot(tmp.path());
    for (bundle, needle) in [(&file, "is not a folder"), (&folder, "is not a bundle")] {
        let o = run(facebatch().arg("setup").arg("--bundle").arg(bundle));
        assert_fatal(&o, needle);
        assert_eq!(snapshot(tmp.path()), before, "nothing changed");
    }
}

// Holes 7 and 9d: train's --out.

#[cfg(feature = "train")]
#[test]
fn train_out_is_never_an_input_folder() {
    let (tmp, data) = temp_faces(4);
    let before = snapshot(tmp.path());
    let quick = short_training("1", "4", "1");
    assert_fatal(
        &run(&mut train_cmd(&data, &data, &quick)),
        "is one of the inputs",
    );
    assert_fatal(
        &run(&mut train_cmd(&data, &data.join("model"), &quick)),
        "inside the input folder",
    );
    assert_eq!(snapshot(tmp.path()), before, "nothing changed");
}

#[cfg(feature = "train")]
#[test]
fn train_out_into_an_existing_model_folder_is_refused() {
    let (tmp, data) = temp_faces(4);
    let model = tmp.path().join("v4");
    copy_model(
        &default_model(),
        &model,
        &["model.onnx", "model-int8.onnx", "card.json"],
    );
    let before = snapshot(&model);
    let quick = short_training("1", "4", "1");
    assert_fatal(
        &run(&mut train_cmd(&data, &model, &quick)),
        "is not empty: train writes a new model",
    );
    // Nor does --resume take a folder that no training run left.
    assert_fatal(
        &run(train_cmd(&data, &model, &quick).arg("--resume")),
        "is not a training run to continue",
    );
    assert_eq!(snapshot(&model), before, "the model is untouched");
}

#[cfg(feature = "train")]
#[test]
fn train_out_may_be_an_empty_folder() {
    let (tmp, data) = temp_faces(8);
    // What a run that failed early leaves: folders, no files.
    let out = tmp.path().join("m");
    std::fs::create_dir_all(out.join("checkpoints")).unwrap();
    let o = run(train_cmd(&data, &out, &short_training("1", "4", "1")).arg("--no-align"));
    assert_code(&o, 0);
    assert!(out.join("model.onnx").is_file());
}

// Hole 9e: a damaged runtime library.

/// The pinned ONNX Runtime library, as `setup` provisions it.
fn real_runtime() -> PathBuf {
    let o = run(facebatch().args(["setup", "--json"]));
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    PathBuf::from(v["onnxruntime"]["path"].as_str().unwrap())
}

#[test]
fn a_damaged_runtime_library_is_one_clear_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let random = tmp.path().join("random.so");
    // Deterministic noise (xorshift), the size of a small library.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..1 << 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&random, noise).unwrap();
    let real = std::fs::read(real_runtime()).unwrap();
    let truncated = tmp.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let headers_only = tmp.path().join("headers-only.so");
    std::fs::write(&headers_only, &real[..4096]).unwrap();
    for (lib, reason) in [
        (&random, "no ELF header"),
        (&truncated, "cut short"),
        (&headers_only, "cut short"),
    ] {
        let out = tmp.path().join("o.parquet");
        let o = run(facebatch()
            .arg("--ort-lib")
            .arg(lib)
            .arg("classify")
            .arg(sample_faces())
            .arg("--out")
            .arg(&out)
            .arg("--model")
            .arg(default_model()));
        assert_ne!(o.status.code(), Some(133), "must not die in the loader");
        let msg = format!("ONNX Runtime could not be loaded from {}", lib.display());
        assert_refused_without_output(&o, &msg, &out);
        assert!(stderr(&o).contains(reason), "{}", stderr(&o));
    }
}

#[test]
fn the_real_runtime_library_given_by_path_still_loads() {
    let o = run(eval_cmd(sample_faces(), default_model())
        .arg("--json")
        .env("FACEBATCH_ORT_LIB", real_runtime()));
    // data/samples holds one broken file on purpose: finished with a per-image error.
    assert_code(&o, 1);
}
