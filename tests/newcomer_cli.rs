//! Regressions from a newcomer's first session (issue 16): answers that were silently wrong
//! or inconsistent.

mod common;

use common::*;

/// Regression: `--group-by rac` (a typo of `race`) printed one unnamed group and exited 0.
#[test]
fn an_unknown_group_by_column_is_refused_with_the_columns_there_are() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("labels.csv");
    let faces = repo().join("data/samples/faces");
    std::fs::write(
        &csv,
        format!(
            "path,label,race\n{0}/female/face367.bmp,female,white\n{0}/male/face78.bmp,male,black\n",
            faces.display()
        ),
    )
    .unwrap();
    let o = run(facebatch()
        .arg("eval")
        .arg(&csv)
        .args(["--group-by", "rac"]));
    assert_fatal(
        &o,
        "--group-by rac: the data has no such column; it has: label, race, source",
    );
    // The right name works.
    let o = run(facebatch()
        .arg("eval")
        .arg(&csv)
        .args(["--group-by", "race", "--json"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"race\""), "{}", stdout(&o));
    #[cfg(feature = "train")]
    {
        let o = run(facebatch()
            .arg("train")
            .arg(&csv)
            .arg("--out")
            .arg(tmp.path().join("m"))
            .args(["--group-by", "rac"]));
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
        run(facebatch()
            .arg("classify")
            .arg(repo().join("data/samples/faces"))
            .args(["--out", &out, "--shard", shard, "--faces", "whole"])
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
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(
        repo().join("data/samples/faces/female/face367.bmp"),
        photos.join("good.bmp"),
    )
    .unwrap();
    std::fs::write(photos.join("broken0.jpg"), b"not a jpeg").unwrap();
    let classify = |out: &str| {
        run(facebatch()
            .arg("classify")
            .arg(&photos)
            .arg("--out")
            .arg(tmp.path().join(out))
            .args(["--faces", "whole"]))
    };
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
        .arg(repo().join("data/samples/faces"))
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
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
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
