//! Regressions from a newcomer's first session (issue 16): answers that were silently wrong
//! or inconsistent.

mod common;

use common::*;

/// Regression: `--group-by rac` (a typo of `race`) printed one unnamed group and exited 0.
#[test]
fn an_unknown_group_by_column_is_refused_with_the_columns_there_are() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("labels.csv");
    let faces = sample_faces();
    std::fs::write(
        &csv,
        format!(
            "path,label,race\n{0}/female/face367.bmp,female,white\n{0}/male/face78.bmp,male,black\n",
            faces.display()
        ),
    )
    .unwrap();
    let eval = |args: &[&str]| run(facebatch().arg("eval").arg(&csv).args(args));
    assert_fatal(
        &eval(&["--group-by", "rac"]),
        "--group-by rac: the data has no such column; it has: label, race, source",
    );
    // The right name works.
    let o = eval(&["--group-by", "race", "--json"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "\"race\"");
    #[cfg(feature = "train")]
    {
        let o = run(&mut train_cmd(
            &csv,
            &tmp.path().join("m"),
            &["--group-by", "rac"],
        ));
        assert_fatal(&o, "--group-by rac");
        assert!(!tmp.path().join("m/model.onnx").exists());
    }
}

/// Regression: `--shard 1/2` into a folder of `-of-00004` parts was accepted, and the
/// folder then held 24 rows for 13 files.
#[test]
fn a_shard_count_other_than_the_folders_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = format!("{}/", tmp.path().join("dataset").display());
    let classify = |shard: &str| {
        run(classify_cmd([sample_faces()], &out)
            .args(["--shard", shard, "--faces", "whole"])
            .args(["--max-error-rate", "0.5"]))
    };
    assert_eq!(classify("0/4").status.code(), Some(0));
    let o = classify("1/2");
    assert_fatal(
        &o,
        "part-00000-of-00004.parquet, from a run with another shard count",
    );
    assert!(
        !tmp.path()
            .join("dataset/part-00001-of-00002.parquet")
            .exists()
    );
    assert_eq!(classify("1/4").status.code(), Some(0));
}

/// Regression: the summary said "1 errors" and named no file.
#[test]
fn the_summary_names_the_failing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    copy_file(
        &sample_faces().join("female/face367.bmp"),
        &photos.join("good.bmp"),
    );
    std::fs::write(photos.join("broken0.jpg"), b"not a jpeg").unwrap();
    let classify =
        |out: &str| run(classify_cmd([&photos], tmp.path().join(out)).args(["--faces", "whole"]));
    let o = classify("one.parquet");
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains(" 1 error in "), "{text}");
    assert!(text.contains("broken0.jpg: "), "{text}");
    for k in 1..8 {
        std::fs::write(photos.join(format!("broken{k}.jpg")), b"not a jpeg").unwrap();
    }
    let o = classify("eight.parquet");
    let text = stdout(&o);
    assert!(text.contains(" 8 errors in "), "{text}");
    assert_eq!(text.matches("  error: ").count(), 5, "{text}");
    assert!(
        text.contains("... and 3 more: query status = 'error' in "),
        "{text}"
    );
}

/// Regression: eval ran silent (16.7 s for 2,134 images with no output). It reports
/// progress as classify does: without a terminal, as `progress` records in the log.
#[test]
fn eval_reports_its_progress() {
    let o = run(facebatch_with_progress()
        .args(["--log-format", "json", "--progress-interval", "0"])
        .arg("eval")
        .arg(sample_faces())
        .args(["--batch-size", "4"]));
    assert_eq!(
        o.status.code(),
        Some(1),
        "one truncated sample: {}",
        stderr(&o)
    );
    let records: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &serde_json::Value| r["fields"]["message"] == "progress")
        .collect();
    assert!(records.len() >= 2, "{}", stderr(&o));
    let last = records.last().unwrap();
    assert_eq!(last["fields"]["total"], 11);
    assert_eq!(last["fields"]["unit"], "images");
}

/// Regression: text logs printed unrounded floats (`seconds=0.655520656`) and the progress
/// rate 4 decimals. What people read has at most 4 decimals; JSON logs keep every digit.
#[test]
fn text_logs_round_the_numbers_people_read() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(facebatch_with_progress()
        .env("FACEBATCH_LOG", "debug")
        .args(["--progress-interval", "0", "classify"])
        .arg(repo().join("data/samples"))
        .arg("--out")
        .arg(tmp.path().join("x.parquet"))
        .args(["--max-error-rate", "0.1"]));
    assert_code(&o, 0);
    let err = stderr(&o);
    assert!(err.contains(" progress done="), "{err}");
    for line in err.lines() {
        // The fields, after the timestamp (which has its own microseconds).
        let fields = line.split_once("Z ").map_or(line, |(_, f)| f);
        let bytes = fields.as_bytes();
        for (i, _) in fields.match_indices('.') {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let after_digit = i > 0 && bytes[i - 1].is_ascii_digit();
            assert!(!(after_digit && digits > 4), "unrounded number in: {line}");
        }
    }
}

/// `p_female` of the one row whose path ends with `name`.
fn p_female(parquet: &std::path::Path, name: &str) -> f32 {
    let (b, _) = read_rows(parquet);
    let found: Vec<f32> = texts(&b, "path")
        .into_iter()
        .zip(f32s(&b, "p_female"))
        .filter(|(path, _)| path.ends_with(name))
        .map(|(_, p)| p.unwrap())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one row for {name} in {}",
        parquet.display()
    );
    found[0]
}

/// Regression: for `face367.bmp` visualize logged `female=0.5448` and classify said 0.727:
/// visualize ran the plain graph, without the card's test-time flip and calibration. Every
/// command that reports a probability now classifies through the same path.
#[test]
fn classify_eval_and_visualize_give_the_same_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let faces = tmp.path().join("faces");
    let name = "face367.bmp";
    let image = faces.join("female").join(name);
    copy_file(&sample_faces().join("female").join(name), &image);
    // v3's card asks for test-time flips (the case at issue), v4's for calibration.
    let models = repo().join("models/facebatch-gender");
    for (version, key) in [("v3", "test_time_flip"), ("v4", "calibration")] {
        let card = read_json(&models.join(version).join("card.json"));
        assert!(
            card[key] == serde_json::json!(true) || card[key].is_object(),
            "{version}'s card has {key}"
        );
        let model = models.join(version);
        let model = model.to_str().unwrap();
        // classify's rows and eval's --predictions rows, both Parquet with `p_female`.
        let [by_classify, by_eval] =
            [("classify", "--out"), ("eval", "--predictions")].map(|(command, flag)| {
                let out = tmp.path().join(format!("{version}-{command}.parquet"));
                let o = run(facebatch()
                    .arg(command)
                    .arg(&faces)
                    .arg(flag)
                    .arg(&out)
                    .args(["--model", model]));
                assert_eq!(o.status.code(), Some(0), "{command}: {}", stderr(&o));
                p_female(&out, name)
            });

        let visualize = |json: bool| {
            let mut c = facebatch();
            c.arg("visualize")
                .arg(&image)
                .arg("--out")
                .arg(tmp.path().join(format!("{version}-maps")))
                .args(["--model", model]);
            if json {
                c.arg("--json");
            }
            let o = run(&mut c);
            assert_code(&o, 0);
            stdout(&o)
        };
        let v: serde_json::Value = serde_json::from_str(&visualize(true)).unwrap();
        let by_visualize = v["probabilities"]["female"].as_f64().unwrap() as f32;
        let text = visualize(false);
        assert!(
            text.contains(&format!("probabilities\tfemale {by_classify:.4}\t")),
            "{text}"
        );

        // One path: the same numbers, not merely close ones.
        assert_eq!(by_classify, by_eval, "{version}: classify against eval");
        assert_eq!(
            by_classify, by_visualize,
            "{version}: classify against visualize"
        );
    }
}

/// Regression: rerunning a finished dataset shard with another `--model` or `--faces`
/// printed "already complete: nothing to do" and exited 0, though `--resume` refuses the
/// same change. The rerun is refused, naming the setting.
#[test]
fn a_finished_shard_refuses_other_settings_and_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = format!("{}/", tmp.path().join("out").display());
    let shard = |extra: &[&str]| {
        let faces = if extra.contains(&"--faces") {
            &[][..]
        } else {
            &["--faces", "whole"][..]
        };
        run(classify_cmd([sample_faces()], &dir)
            .args(["--shard", "0/2"])
            .args(faces)
            .args(extra))
    };
    let first = shard(&[]);
    assert!(
        matches!(first.status.code(), Some(0 | 1)),
        "{}",
        stderr(&first)
    );
    let again = shard(&[]);
    assert_eq!(
        again.status.code(),
        first.status.code(),
        "{}",
        stderr(&again)
    );
    assert_stdout_has(&again, "already complete");

    let other_model = repo().join("models/facebatch-gender/v3");
    let o = shard(&["--model", other_model.to_str().unwrap()]);
    assert_fatal(
        &o,
        "is already complete, and the run that finished it used another model (--model: sha256",
    );
    let o = shard(&["--faces", "detect"]);
    assert_fatal(
        &o,
        "is already complete, and the run that finished it found faces differently (--faces",
    );
    let o = shard(&["--features"]);
    assert_fatal(
        &o,
        "the run that finished it had a different --features setting (off, this run on)",
    );
    // The marker and part are untouched by the refusals.
    let again = shard(&[]);
    assert_stdout_has(&again, "already complete");
}

/// Regression: training a one-class folder detected and aligned every image (after
/// fetching the detector) before it said "need at least two classes". The labels are
/// checked first: with no cache and no network it still gives that answer, at once, and
/// leaves no model folder behind.
#[cfg(feature = "train")]
#[test]
fn training_one_class_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    for f in files_in(&sample_faces().join("female")) {
        copy_file(&f, &data.join("female").join(f.file_name().unwrap()));
    }
    let out = tmp.path().join("model");
    let o = run(train_cmd(&data, &out, &["--align"])
        .env("FACEBATCH_CACHE_DIR", tmp.path().join("empty-cache"))
        .env("HOME", tmp.path().join("no-home"))
        .env("https_proxy", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9"));
    assert_fatal(
        &o,
        "need at least two classes to train a classifier, found 1",
    );
    assert!(!stderr(&o).contains("download"), "{}", stderr(&o));
    assert!(!out.exists(), "no model folder is made for a refused run");
    assert!(
        !tmp.path().join("empty-cache").exists(),
        "nothing was fetched"
    );
}
