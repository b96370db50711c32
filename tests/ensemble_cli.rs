//! `facebatch ensemble` and ensemble models through the real binary: a card built from the
//! shipped v4 and the CC0 dlib gender net, then `eval`, `classify` and `report` on it, with
//! each member's probabilities where they are asked for.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn dlib() -> PathBuf {
    repo().join("models/dlib-gender/v1")
}

/// `facebatch ensemble --member v4=... --member dlib=...` on the sample faces.
fn ensemble(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = facebatch();
    c.arg("ensemble")
        .arg("--member")
        .arg(format!("v4={}", default_model().display()))
        .arg("--member")
        .arg(format!("dlib={}", dlib().display()))
        .arg("--fit-on")
        .arg(sample_faces())
        .arg("--test")
        .arg(sample_faces())
        .arg("--out")
        .arg(out)
        .args(extra);
    run(&mut c)
}

#[test]
fn an_ensemble_is_one_model_for_eval_classify_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("v5");
    let o = ensemble(&model, &["--json"]);
    assert_code(&o, 0);
    let printed: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(printed["members"], serde_json::json!(["v4", "dlib"]));
    let card = read_json(&model.join("card.json"));
    assert_eq!(card["format"], "facebatch-model-card/2");
    let members = card["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[1]["origin"]["licence"], "CC0-1.0");
    assert_eq!(members[1]["alignment"]["width"], 32);
    for m in members {
        let file = m["onnx"]["file"].as_str().unwrap();
        assert!(model.join(file).is_file(), "{file} copied into the model");
    }
    let weights: Vec<f64> = card["combine"]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    assert_eq!(weights.len(), 2);
    assert!(
        (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{weights:?}"
    );
    assert_eq!(card["combine"]["threshold"]["label"], "female");
    assert!(card["metrics"]["test"]["accuracy"].as_f64().unwrap() > 0.5);
    assert!(model.join("reports/test_predictions.parquet").is_file());
    // No member folder was written to, and the staging folder is gone.
    assert!(!tmp.path().join(".v5.partial").exists());

    // eval: every member's probabilities beside the model's.
    let preds = tmp.path().join("preds.parquet");
    let o = run(eval_cmd(sample_faces(), &model)
        .arg("--predictions")
        .arg(&preds)
        .arg("--json"));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let (b, _) = read_rows(&preds);
    for c in ["member_v4_p_female", "member_dlib_p_male"] {
        assert!(f32s(&b, c).iter().any(Option::is_some), "{c}");
    }

    // classify: member columns only behind --member-probs, named in the metadata.
    let plain = tmp.path().join("plain.parquet");
    let o = run(classify_cmd([repo().join("data/samples")], &plain)
        .arg("--model")
        .arg(&model));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let (b, _) = read_rows(&plain);
    assert!(b.schema().index_of("member_v4_p_female").is_err());
    let out = tmp.path().join("members.parquet");
    let o = run(classify_cmd([repo().join("data/samples")], &out)
        .arg("--model")
        .arg(&model)
        .arg("--member-probs"));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let (b, meta) = read_rows(&out);
    assert_eq!(meta["facebatch.members"], r#"["v4","dlib"]"#);
    let ok: Vec<bool> = texts(&b, "status").iter().map(|s| s == "ok").collect();
    let v4 = f32s(&b, "member_v4_p_female");
    let dl = f32s(&b, "member_dlib_p_female");
    for (i, ok) in ok.iter().enumerate() {
        assert_eq!(v4[i].is_some(), *ok, "row {i}");
        assert_eq!(dl[i].is_some(), *ok, "row {i}");
    }
    // The same labels as without the flag: the columns are extra, nothing else changes.
    assert_eq!(strings(&b, "label"), strings(&read_rows(&plain).0, "label"));

    // report: each face shows its members.
    let report = tmp.path().join("report");
    let o = run(&mut report_cmd(&out, &report));
    assert_code(&o, 0);
    let data = std::fs::read_to_string(report.join("data.js")).unwrap();
    assert!(
        data.contains("\"members\":{"),
        "member probabilities on the page"
    );

    // int8: dlib's member has no int8 copy, so the run is refused up front, naming it.
    let o = run(classify_cmd([sample_faces()], tmp.path().join("q.parquet"))
        .arg("--model")
        .arg(&model)
        .args(["--precision", "int8"]));
    assert_fatal(&o, "dlib");
}

#[test]
fn a_plain_mean_ensemble_reports_the_mean_of_its_members() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("mean");
    let o = ensemble(
        &model,
        &["--rule", "mean", "--no-balance", "--no-calibrate"],
    );
    assert_code(&o, 0);
    let card = read_json(&model.join("card.json"));
    assert_eq!(card["combine"]["rule"], "mean");
    assert!(card["combine"].get("threshold").is_none());
    let out = tmp.path().join("o.parquet");
    let o = run(classify_cmd([sample_faces()], &out)
        .arg("--model")
        .arg(&model)
        .arg("--member-probs"));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let (b, _) = read_rows(&out);
    let p = f32s(&b, "p_female");
    let a = f32s(&b, "member_v4_p_female");
    let d = f32s(&b, "member_dlib_p_female");
    let mut checked = 0;
    for i in 0..p.len() {
        if let (Some(p), Some(a), Some(d)) = (p[i], a[i], d[i]) {
            assert!(
                (p - (a + d) / 2.0).abs() < 1e-5,
                "row {i}: {p} vs {a} and {d}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} faces checked");
}

#[test]
fn ensemble_and_member_probs_refuse_what_they_cannot_do() {
    let tmp = tempfile::tempdir().unwrap();
    // An existing --out is never replaced.
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    assert_fatal(&ensemble(&taken, &[]), "already exists");
    // --member-probs on a single network.
    let o =
        run(classify_default([sample_faces()], tmp.path().join("x.parquet")).arg("--member-probs"));
    assert_fatal(&o, "single network");
    // A flip for a member that is not there.
    assert_fatal(
        &ensemble(&tmp.path().join("e"), &["--flip", "nobody"]),
        "names no member",
    );
    // Over the cost limit: v4 (79) + dlib (49) is 128 MFLOP; flipping dlib makes it 177.
    assert_fatal(
        &ensemble(
            &tmp.path().join("e"),
            &["--flip", "dlib", "--max-mflops", "160"],
        ),
        "MFLOP",
    );
    assert!(!tmp.path().join("e").exists());
    // The built-in model (v5) has no int8 copy of dlib's net: refused, naming the member,
    // before any work.
    let o =
        run(classify_cmd([sample_faces()], tmp.path().join("q.parquet"))
            .args(["--precision", "int8"]));
    assert_fatal(&o, "\"dlib\"");
    assert!(!tmp.path().join(".e.partial").exists());
}
