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
