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
    assert_eq!(meta["facebatch.model_version"], "v5");
    assert_eq!(meta["facebatch.model_name"], "facebatch-gender");
    // The same face through an explicit copy of the model gives the same row.
    let o2 = run(facebatch()
        .current_dir(tmp.path())
        .args(["classify"])
        .arg(&input)
        .args(["--out", "y.parquet", "--model"])
        .arg(builtin_model()));
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

/// Issue 30: every row names the model that made it (a union of outputs of several versions
/// can be told apart without footers), the metadata records the detection threshold the
/// run used (not the card's) and the folder relative roots are relative to; eval's
/// predictions hold absolute, normalised paths and the same model metadata.
#[test]
fn rows_name_their_model_and_the_metadata_what_the_run_used() {
    let tmp = tempfile::tempdir().unwrap();
    photos(tmp.path());
    let o = run(facebatch().current_dir(tmp.path()).args([
        "classify",
        "photos",
        "--out",
        "x.parquet",
        "--det-threshold",
        "0.7",
    ]));
    assert_code(&o, 0);
    let (batches, meta) = read_parquet(&tmp.path().join("x.parquet"));
    assert_eq!(texts(&batches[0], "model"), ["facebatch-gender/v5"]);
    let faces: serde_json::Value = serde_json::from_str(&meta["facebatch.faces"]).unwrap();
    let align = &faces["alignment"];
    let first = if align.is_array() { &align[0] } else { align };
    assert_eq!(first["det_threshold"], serde_json::json!(0.7), "{faces}");
    assert_eq!(
        Path::new(&meta["facebatch.base"]),
        tmp.path().canonicalize().unwrap()
    );

    // eval from a sibling folder, the data named through `..`.
    let faces_dir = tmp.path().join("faces");
    for (class, file) in [
        ("female", "female/face367.bmp"),
        ("male", "male/face78.bmp"),
    ] {
        std::fs::create_dir_all(faces_dir.join(class)).unwrap();
        std::fs::copy(
            repo().join("data/samples/faces").join(file),
            faces_dir.join(file),
        )
        .unwrap();
    }
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let o = run(facebatch().current_dir(&work).args([
        "eval",
        "../faces",
        "--predictions",
        "p.parquet",
    ]));
    assert_code(&o, 0);
    let (batches, meta) = read_parquet(&work.join("p.parquet"));
    for p in texts(&batches[0], "path") {
        let path = Path::new(&p);
        assert!(path.is_absolute() && path.is_file(), "{p}");
        assert!(!p.contains("/../") && !p.contains("/./"), "{p}");
    }
    for key in [
        "facebatch.model_version",
        "facebatch.model_card",
        "facebatch.model_precision",
        "facebatch.faces",
        "facebatch.base",
    ] {
        assert!(meta.contains_key(key), "{key}: {meta:?}");
    }
    assert_eq!(meta["facebatch.model_version"], "v5");
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
    assert_eq!(v["model"]["version"], "v5");
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

#[test]
fn completions_and_man_pages_are_generated() {
    let o = run(facebatch().args(["completions", "bash"]));
    assert_eq!(o.status.code(), Some(0));
    let script = stdout(&o);
    assert!(
        script.contains("complete") && script.contains("classify"),
        "{script}"
    );
    assert!(script.contains("--max-error-rate"));
    let tmp = tempfile::tempdir().unwrap();
    let o = run(facebatch().args(["man", "--out"]).arg(tmp.path()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let page = std::fs::read_to_string(tmp.path().join("facebatch-classify.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("max\\-error\\-rate"), "{page}");
    assert!(tmp.path().join("facebatch.1").is_file());

    // Issue 30: without --out one page goes to stdout (`facebatch man | man -l -`), in
    // proper sections.
    let o = run(facebatch().arg("man"));
    assert_code(&o, 0);
    let page = stdout(&o);
    let title = page
        .lines()
        .find(|l| l.starts_with(".TH"))
        .unwrap_or_default();
    assert!(
        title.starts_with(".TH FACEBATCH 1 2")
            && !title.contains("  ")
            && title.ends_with("\"facebatch manual\""),
        "five fields, none empty: {title}"
    );
    for section in ["NAME", "SYNOPSIS", "OPTIONS", "\"SEE ALSO\"", "VERSION"] {
        assert!(
            page.contains(&format!(".SH {section}\n")),
            "{section}: {page}"
        );
    }
    let o = run(facebatch().args(["man", "classify"]));
    assert_code(&o, 0);
    let page = stdout(&o);
    assert!(page.contains(".TH FACEBATCH-CLASSIFY 1"), "{page}");
    for section in ["EXAMPLES", "EXIT STATUS"] {
        assert!(
            page.contains(&format!(".SH \"{section}\"\n")),
            "{section}: {page}"
        );
    }
    assert_fatal(&run(facebatch().args(["man", "nosuch"])), "nosuch");
}

/// The samples hold 13 images, one of them a truncated JPEG.
#[test]
fn max_error_rate_decides_whether_per_image_errors_fail_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let samples = repo().join("data/samples");
    let classify = |rate: &str, out: &str| {
        run(facebatch()
            .arg("classify")
            .arg(&samples)
            .arg("--out")
            .arg(tmp.path().join(out))
            .args(["--max-error-rate", rate]))
    };
    let o = classify("0", "a.parquet");
    assert_eq!(o.status.code(), Some(1));
    // Issue 30: exit 1 says why.
    assert!(
        stderr(&o).contains("exit 1: 1 error row in 13 images (7.7%) > --max-error-rate 0"),
        "{}",
        stderr(&o)
    );
    assert_eq!(classify("0.05", "b.parquet").status.code(), Some(1));
    assert_eq!(classify("0.1", "c.parquet").status.code(), Some(0));
    assert_fatal(&classify("1.5", "d.parquet"), "--max-error-rate");
}

#[test]
fn an_output_that_is_not_parquet_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(facebatch()
        .arg("classify")
        .arg(repo().join("data/samples/faces/male"))
        .arg("--out")
        .arg(tmp.path().join("results.csv")));
    assert_fatal(&o, "name the file .parquet");
    assert!(!tmp.path().join("results.csv").exists());
}

#[test]
fn json_summary_and_progress_records_without_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(facebatch_with_progress()
        .args(["--log-format", "json", "--progress-interval", "0", "--json"])
        .arg("classify")
        .arg(repo().join("data/samples"))
        .arg("--out")
        .arg(tmp.path().join("x.parquet"))
        .args(["--max-error-rate", "0.1"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // stdout: the summary, one JSON object.
    let summary: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(summary["files"], 13);
    assert_eq!(summary["output"]["errors"], 1);
    assert_eq!(summary["exit_status"], 0);
    // stderr: JSON lines; progress records with done, total and a rate; the last record is
    // the summary with its nested fields as objects, not strings.
    let records: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let progress: Vec<_> = records
        .iter()
        .filter(|r| r["fields"]["message"] == "progress")
        .collect();
    assert!(!progress.is_empty());
    let last_progress = progress.last().unwrap();
    assert!(last_progress["fields"]["done"].as_u64().unwrap() >= 1);
    assert_eq!(last_progress["fields"]["total"], 13);
    assert!(last_progress["fields"]["rate_per_s"].is_number());
    let last = records.last().unwrap();
    assert_eq!(last["fields"]["message"], "classify finished");
    assert!(last["fields"]["stages"].is_array(), "{last}");
    assert!(last["fields"]["output"].is_object(), "{last}");
}

#[test]
fn version_names_the_build() {
    let o = run(facebatch().arg("--version"));
    let v = stdout(&o);
    assert!(v.starts_with("facebatch "), "{v}");
    assert!(v.contains("JPEG decoder: libjpeg-turbo"), "{v}");
    let features = if cfg!(feature = "train") {
        "features: train"
    } else {
        "features: inference-only"
    };
    assert!(v.contains(features), "{v}");
}

/// `package version -> features` as `cargo tree` resolves them with these edge kinds.
fn resolved_features(edges: &str, features: &[&str]) -> std::collections::BTreeMap<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "--prefix",
            "none",
            "-e",
            edges,
        ])
        .args(["-f", "{p}|{f}"])
        .args(features)
        .current_dir(repo())
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree: {}", stderr(&out));
    let mut map = std::collections::BTreeMap::new();
    for line in stdout(&out).lines() {
        let line = line.trim_end_matches(" (*)");
        let Some((package, feats)) = line.split_once('|') else {
            continue;
        };
        // A package built for the host (proc-macros, build scripts) and for the target may
        // have two feature sets: keep their union, as the comparison is per package.
        let package: String = package
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let entry: &mut String = map.entry(package).or_default();
        let mut all: std::collections::BTreeSet<&str> = entry
            .split(',')
            .chain(feats.split(','))
            .filter(|f| !f.is_empty())
            .collect();
        all.remove("");
        *entry = all.into_iter().collect::<Vec<_>>().join(",");
    }
    map
}

/// Regression (issue 16, item 9): a dev-dependency (criterion, and before it fantoccini)
/// switched on features of crates the run build shares, so `cargo test --release`
/// recompiled rayon, burn and most of the graph right after `cargo run --release`. The
/// dev-dependencies may add crates, never features to a crate the run build has.
#[test]
fn the_test_build_reuses_the_run_build() {
    for features in [
        &[][..],
        &["--no-default-features", "--features", "simd-jpeg"][..],
    ] {
        let run = resolved_features("normal,build", features);
        let test = resolved_features("normal,build,dev", features);
        let changed: Vec<String> = run
            .iter()
            .filter_map(|(package, f)| {
                let t = &test[package];
                (t != f).then(|| format!("{package}: [{f}] becomes [{t}]"))
            })
            .collect();
        assert!(
            changed.is_empty(),
            "with {features:?}, the dev-dependencies change features of crates in the run build \
             (add them to Cargo.toml's feature-alignment lines):\n{}",
            changed.join("\n")
        );
    }
}

/// Regression (issue 16, item 13): the tour's "real output" had drifted from real runs and
/// was tidied by hand. Every console block of the tour is now written by
/// scripts/readme-tour.sh from a command it runs: each block is marked with a step of that
/// script, and each step has its block.
#[test]
fn every_console_block_of_the_tour_comes_from_the_tour_script() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let script = std::fs::read_to_string(repo().join("scripts/readme-tour.sh")).unwrap();
    let start = readme.find("## Five-minute tour").expect("the tour");
    let end = start
        + readme[start..]
            .find("\n## ")
            .expect("a section after the tour");
    let tour = &readme[start..end];
    let mut marked = Vec::new();
    let mut lines = tour.lines().peekable();
    let mut last_marker: Option<&str> = None;
    while let Some(line) = lines.next() {
        if let Some(name) = line
            .strip_prefix("<!-- tour:")
            .and_then(|l| l.strip_suffix(" -->"))
        {
            last_marker = Some(name);
            continue;
        }
        if line == "```console" {
            let name = last_marker.take().unwrap_or_else(|| {
                panic!("a console block in the tour without a <!-- tour:NAME --> marker")
            });
            let first = lines.peek().copied().unwrap_or_default();
            assert!(
                first.starts_with("$ "),
                "block {name} starts with its command: {first}"
            );
            marked.push(name.to_string());
        } else {
            last_marker = None;
        }
    }
    let mut steps: Vec<String> = script
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    steps.sort();
    let mut sorted = marked.clone();
    sorted.sort();
    assert_eq!(sorted, steps, "the tour's blocks and the script's steps");
    // Each block's commands are the script's, word for word.
    for (name, block) in tour.split("<!-- tour:").skip(1).map(|b| {
        let (name, rest) = b.split_once(" -->").unwrap();
        (name, rest.split("<!-- /tour:").next().unwrap())
    }) {
        for cmd in block.lines().filter_map(|l| l.strip_prefix("$ ")) {
            let quoted = format!("'{cmd}'");
            let dq = cmd.replace('\\', "\\\\").replace('"', "\\\"");
            assert!(
                script.contains(&quoted) || script.contains(&format!("\"{dq}\"")),
                "block {name}: `{cmd}` is not a command of scripts/readme-tour.sh"
            );
        }
    }
}
