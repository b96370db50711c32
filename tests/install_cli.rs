//! The install paths' promises, run as a user would: the binary works from any directory
//! with its built-in model, every subcommand takes the same `--model`, and a bundle made by
//! `facebatch setup --bundle` runs with no cache and no network.

mod common;

use std::path::Path;

use arrow::array::StringArray;
use common::*;

/// A folder with one sample face and one sample photo, outside the checkout.
fn photos(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("photos");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::copy(
        repo().join("data/samples/faces/female/face367.bmp"),
        p.join("face.bmp"),
    )
    .unwrap();
    p
}

#[test]
fn classify_runs_from_any_directory_with_the_builtin_model() {
    let tmp = tempfile::tempdir().unwrap();
    let input = photos(tmp.path());
    let o =
        run(facebatch()
            .current_dir(tmp.path())
            .args(["classify", "photos", "--out", "x.parquet"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (batches, meta) = read_parquet(&tmp.path().join("x.parquet"));
    let b = &batches[0];
    assert_eq!(b.num_rows(), 1);
    assert_eq!(col::<StringArray>(b, "status").value(0), "ok");
    assert_eq!(meta["facebatch.model_version"], "v4");
    assert_eq!(meta["facebatch.model_name"], "facebatch-gender");
    // The same face through an explicit copy of the model gives the same row.
    let o2 = run(facebatch()
        .current_dir(tmp.path())
        .args(["classify"])
        .arg(&input)
        .args(["--out", "y.parquet", "--model"])
        .arg(default_model()));
    assert_eq!(o2.status.code(), Some(0));
    let b2 = &read_parquet(&tmp.path().join("y.parquet")).0[0];
    for c in ["label", "p_female"] {
        assert_eq!(
            format!("{:?}", b.column_by_name(c)),
            format!("{:?}", b2.column_by_name(c)),
            "{c}"
        );
    }
}

#[test]
fn every_subcommand_that_classifies_takes_the_same_model_default() {
    let tmp = tempfile::tempdir().unwrap();
    photos(tmp.path());
    let eval = run(facebatch()
        .current_dir(tmp.path())
        .arg("eval")
        .arg(repo().join("data/samples/faces"))
        .arg("--json"));
    // Exit 1: the samples hold a truncated JPEG on purpose, skipped and counted.
    assert_eq!(eval.status.code(), Some(1), "{}", stderr(&eval));
    assert!(stdout(&eval).contains("\"accuracy\""));
    assert!(stderr(&eval).contains("1 unreadable image"));
    let vis = run(facebatch()
        .current_dir(tmp.path())
        .env("FACEBATCH_MODEL", "builtin")
        .args(["visualize", "photos/face.bmp", "--out", "maps"]));
    assert_eq!(vis.status.code(), Some(0), "{}", stderr(&vis));
    assert!(tmp.path().join("maps/01_relu1.png").is_file());
    // FACEBATCH_MODEL is the default of --model everywhere; a missing one is one line.
    let o = run(facebatch()
        .current_dir(tmp.path())
        .env("FACEBATCH_MODEL", "no/such/model")
        .args(["classify", "photos", "--out", "z.parquet"]));
    assert_fatal(&o, "no/such/model");
}

#[test]
fn a_bundle_runs_with_no_cache_and_no_network() {
    let tmp = tempfile::tempdir().unwrap();
    photos(tmp.path());
    let bundle = tmp.path().join("bundle");
    let o = run(facebatch()
        .args(["setup", "--json", "--bundle"])
        .arg(&bundle));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["model"]["version"], "v4");
    let bundle = bundle.canonicalize().unwrap();
    assert!(
        v["onnxruntime"]["path"]
            .as_str()
            .unwrap()
            .starts_with(bundle.to_str().unwrap())
    );
    // No cache and no way out: every download would fail.
    let offline = |out: &str| {
        run(facebatch()
            .current_dir(tmp.path())
            .env("FACEBATCH_BUNDLE", &bundle)
            .env("FACEBATCH_CACHE_DIR", tmp.path().join("no-cache"))
            .env("HOME", tmp.path().join("no-home"))
            .env("https_proxy", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .args(["classify", "photos", "--faces", "detect", "--out", out]))
    };
    let o = offline("x.parquet");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!tmp.path().join("no-cache").exists());
    // A bundle is never repaired by a download: a missing piece names the fix.
    for d in std::fs::read_dir(&bundle).unwrap() {
        let d = d.unwrap().path();
        if d.to_string_lossy().contains("/retinaface-") {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
    let o = offline("y.parquet");
    assert_fatal(&o, "setup --bundle");
}
