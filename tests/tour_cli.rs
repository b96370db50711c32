//! The README's tour as a new user takes it: the binary alone, copied into a temporary
//! folder outside the checkout and run by name from PATH, in folders outside the checkout,
//! every step in order: samples, classify, report, corrections taken back into the report,
//! train on them from another folder, eval, the nightly job (twice), man.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// The user's machine: a folder with the binary on its PATH, and a home to work in.
struct Machine {
    _tmp: tempfile::TempDir,
    path: String,
    home: PathBuf,
}

impl Machine {
    fn new() -> Machine {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        assert!(
            !root.starts_with(repo().canonicalize().unwrap()),
            "the tour runs outside the checkout"
        );
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_facebatch"), bin.join("facebatch")).unwrap();
        let home = root.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Machine {
            _tmp: tmp,
            path,
            home,
        }
    }

    /// `facebatch ARGS...`, found on PATH, run in `dir`.
    fn facebatch(&self, dir: &Path, args: &[&str]) -> Output {
        let mut c = Command::new("facebatch");
        without_user_settings(&mut c)
            .current_dir(dir)
            .env("PATH", &self.path)
            .arg("--no-progress")
            .args(args);
        run(&mut c)
    }
}

#[test]
fn the_whole_tour_works_from_a_folder_outside_the_checkout_with_the_binary_alone() {
    let m = Machine::new();
    let home = &m.home;

    // 1. The samples built into the binary.
    let o = m.facebatch(home, &["samples", "--out", "samples"]);
    assert_code(&o, 0);
    for f in [
        "labels.csv",
        "nightly.toml",
        "README.md",
        "photos/retreat-2017.jpg",
    ] {
        assert!(home.join("samples").join(f).is_file(), "{f}");
    }

    // 2. classify: one row per face, the broken file one error row.
    let o = m.facebatch(
        home,
        &[
            "classify",
            "samples",
            "--out",
            "results.parquet",
            "--max-error-rate",
            "0.1",
        ],
    );
    assert_code(&o, 0);
    let (rows, meta) = read_rows(&home.join("results.parquet"));
    let status = texts(&rows, "status");
    assert_eq!(status.iter().filter(|s| *s == "error").count(), 1);
    assert!(
        status.iter().filter(|s| *s == "ok").count() >= 20,
        "{status:?}"
    );
    assert_eq!(
        meta.get("facebatch.base").map(PathBuf::from).as_deref(),
        Some(home.as_path())
    );

    // 3. report, from another folder than the run's: every photo found.
    let elsewhere = home.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = m.facebatch(
        &elsewhere,
        &["report", "../results.parquet", "--out", "../report"],
    );
    assert_code(&o, 0);
    assert!(
        !stdout(&o).contains("missing"),
        "every photo found: {}",
        stdout(&o)
    );
    let report = home.join("report");
    let data = page_data(&report);
    let faces: Vec<&serde_json::Value> = data["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "ok" && r["thumb"] == "ok")
        .collect();
    assert_eq!(faces.len(), status.iter().filter(|s| *s == "ok").count());

    // 4. Corrections, as the page saves them into the browser's downloads folder: one face
    // given the other label, one confirmed, one not a face.
    let other = |l: &str| if l == "female" { "male" } else { "female" };
    let downloads = home.join("Downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let mut csv = String::from("path,label,verdict,id\n");
    for (k, r) in faces.iter().take(3).enumerate() {
        let (id, model) = (r["id"].as_u64().unwrap(), r["label"].as_str().unwrap());
        let (label, verdict) = match k {
            0 => (other(model), "corrected"),
            1 => (model, "confirmed"),
            _ => ("not_a_face", "not_a_face"),
        };
        let crop = report.join(format!("faces/{id}.png"));
        csv.push_str(&format!("{},{label},{verdict},{id}\n", crop.display()));
    }
    std::fs::write(downloads.join("corrections.csv"), csv).unwrap();
    let o = m.facebatch(
        home,
        &[
            "report",
            "--import",
            "Downloads/corrections.csv",
            "--out",
            "report",
        ],
    );
    assert_code(&o, 0);
    assert_stdout_has(&o, "1 corrected, 1 confirmed, 1 not a face");
    let kept = std::fs::read_to_string(report.join("corrections.csv")).unwrap();
    assert_eq!(kept.lines().count(), 4, "{kept}");
    assert!(
        kept.lines()
            .skip(1)
            .all(|l| Path::new(l.split(',').next().unwrap()).is_absolute()),
        "{kept}"
    );
    let js = std::fs::read_to_string(report.join("corrections.js")).unwrap();
    assert!(js.contains(data["store_key"].as_str().unwrap()), "{js}");

    // 5. Train on them from a folder that is neither the report's nor the run's, with the
    // corrections file moved there.
    #[cfg(feature = "train")]
    {
        let lab = home.join("lab");
        std::fs::create_dir_all(&lab).unwrap();
        std::fs::copy(report.join("corrections.csv"), lab.join("mine.csv")).unwrap();
        let o = m.facebatch(
            &lab,
            &[
                "train",
                "../samples/faces",
                "mine.csv",
                "--out",
                "model",
                "--epochs",
                "1",
                "--batch-size",
                "4",
            ],
        );
        assert_code(&o, 0);
        assert!(lab.join("model/model.onnx").is_file());
        assert!(
            stderr(&o).contains("already_aligned=2"),
            "the two labelled crops train as they are"
        );
    }

    // 6. eval on the samples' labelled manifest, with the built-in model.
    let o = m.facebatch(
        home,
        &[
            "eval",
            "samples/labels.csv",
            "--group-by",
            "age:15,60",
            "--json",
            "--predictions",
            "pred.parquet",
        ],
    );
    assert_code(&o, 0);
    let report_json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(
        report_json["accuracy"].as_f64().unwrap() > 0.5,
        "{report_json}"
    );
    let (pred, _) = read_rows(&home.join("pred.parquet"));
    assert!(
        texts(&pred, "path")
            .iter()
            .all(|p| Path::new(p).is_absolute()),
        "predictions name their images absolutely"
    );

    // 7. The nightly job on the samples, with the built-in model: a second run of the same
    // date does nothing, the next date finds nothing new.
    for (date, needle) in [
        ("2026-11-28", "classified"),
        ("2026-11-28", "already"),
        ("2026-11-29", "unchanged"),
    ] {
        let o = m.facebatch(home, &["run", "samples/nightly.toml", "--date", date]);
        assert_code(&o, 0);
        let said = format!("{}{}", stdout(&o), stderr(&o));
        assert!(said.contains(needle), "{date}: {needle:?} in {said}");
    }
    assert!(
        home.join("face-labels/dt=2026-11-28/part-00000-of-00001.parquet")
            .is_file()
    );

    // 8. man, to a pager.
    let o = m.facebatch(home, &["man"]);
    assert_code(&o, 0);
    let page = stdout(&o);
    assert!(page.contains(".TH FACEBATCH 1"), "{page}");
    assert_eq!(
        page.matches(".ds Aq").count(),
        2,
        "roff's quote preamble once, not before every section"
    );
}
