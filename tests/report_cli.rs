//! `facebatch report` through the real binary, on a real classify run over the bundled
//! samples plus generated photos: the page's data agrees with the Parquet, every shown
//! face has its thumbnails, photos changed since the run are not cut, and galleries stay
//! within their limits however many rows there are.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, TimeUnit};
use common::*;

fn statuses(parquet: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for status in texts(&read_rows(parquet).0, "status") {
        *out.entry(status).or_default() += 1;
    }
    out
}

fn classify(inputs: &[&Path], out: &Path, extra: &[&str]) {
    let o = run(classify_default(inputs, out).args(extra));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
}

#[test]
fn a_report_shows_every_face_of_a_run_with_its_thumbnails() {
    let (tmp, photos, _) = temp_photos(6, 2, &sample_face());
    let out = tmp.path().join("results.parquet");
    classify(&[&repo().join("data/samples"), &photos], &out, &[]);
    let report = tmp.path().join("report");
    let o = run(&mut report_cmd(&out, &report));
    assert_code(&o, 0);
    assert_stdout_has(&o, "index.html");
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(html.contains("data.js") && html.contains("report.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network resource"
    );
    let data = page_data(&report);
    let want = statuses(&out);
    let rows: u64 = want.values().sum();
    assert_eq!(data["summary"]["rows"], rows);
    for (status, n) in &want {
        assert_eq!(data["summary"]["by_status"][status], *n, "{status}");
    }
    // Small run: every row is shown, each with its thumbnails.
    let shown = data["rows"].as_array().unwrap();
    assert_eq!(shown.len() as u64, rows);
    for r in shown {
        let id = r["id"].as_u64().unwrap();
        match r["status"].as_str().unwrap() {
            "ok" => {
                assert_eq!(r["thumb"], "ok", "{r}");
                let face = image::open(report.join(format!("faces/{id}.png"))).unwrap();
                assert_eq!(
                    (face.width(), face.height()),
                    (64, 64),
                    "the model's input size"
                );
                assert!(image::open(report.join(format!("context/{id}.jpg"))).is_ok());
            }
            "error" => {
                assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()));
                assert!(r["error_kind"].as_str().is_some(), "{r}");
            }
            _ => {}
        }
    }
    // Errors are grouped by the output's error_kind column (the broken sample file).
    let (b, _) = read_rows(&out);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for k in strings(&b, "error_kind").into_iter().flatten() {
        *kinds.entry(k).or_default() += 1;
    }
    assert!(!kinds.is_empty(), "the samples hold a broken file");
    let grouped: BTreeMap<String, u64> = data["summary"]["errors_by_kind"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(grouped, kinds);
    // Least confident first within each label's gallery.
    for label in ["female", "male"] {
        let ids: Vec<u64> = data["galleries"][format!("label:{label}")]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let conf: Vec<f64> = ids
            .iter()
            .map(|id| {
                shown.iter().find(|r| r["id"] == *id).unwrap()["confidence"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert!(conf.windows(2).all(|w| w[0] <= w[1]), "{label}: {conf:?}");
        assert_eq!(
            ids.len() as u64,
            data["summary"]["by_label"][label].as_u64().unwrap()
        );
    }
}

/// A photo that changed after the run is reported as changed, not cut with stale boxes.
#[test]
fn photos_changed_since_the_run_are_shown_as_changed() {
    let (tmp, photos, rels) = temp_photos(3, 1, &sample_face());
    let out = tmp.path().join("results.parquet");
    classify(&[&photos], &out, &[]);
    let changed = photos.join(&rels[0]);
    let mut bytes = std::fs::read(&changed).unwrap();
    bytes.extend_from_slice(b"appended");
    std::fs::write(&changed, bytes).unwrap();
    std::fs::remove_file(photos.join(&rels[1])).unwrap();
    let report = tmp.path().join("report");
    let o = run(&mut report_cmd(&out, &report));
    assert_code(&o, 0);
    assert_stdout_has(&o, "2 whose photo is missing or changed");
    let data = page_data(&report);
    let thumbs: BTreeMap<String, String> = data["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                r["thumb"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let name = |rel: &str| rel.rsplit('/').next().unwrap().to_string();
    assert_eq!(thumbs[&name(&rels[0])], "changed");
    assert_eq!(thumbs[&name(&rels[1])], "missing");
    assert_eq!(thumbs[&name(&rels[2])], "ok");
}

/// Galleries keep at most --limit faces each, whatever the run's size, the report says how
/// many rows it left out, and a dataset folder reads as one input.
#[test]
fn galleries_are_bounded_and_dataset_folders_are_read_whole() {
    let (tmp, photos, _) = temp_photos(40, 4, &sample_face());
    let dataset = tmp.path().join("ds/");
    for shard in ["0/2", "1/2"] {
        classify(
            &[&photos],
            &dataset,
            &["--shard", shard, "--faces", "whole"],
        );
    }
    let report = tmp.path().join("report");
    let o = run(report_cmd(&dataset, &report).args(["--limit", "5"]));
    assert_code(&o, 0);
    let data = page_data(&report);
    assert_eq!(data["summary"]["rows"], 40);
    let left: u64 = data["left_out"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("label:") || *k == "no_face" || *k == "error")
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert!(left >= 30, "{}", data["left_out"]);
    assert_stdout_has(
        &o,
        &format!("; {left} rows left out (galleries show at most --limit 5"),
    );
    // Without --limit every face of this run is shown, and nothing is said left out.
    let all = tmp.path().join("all");
    let o = run(&mut report_cmd(&dataset, &all));
    assert_code(&o, 0);
    assert!(!stdout(&o).contains("left out"), "{}", stdout(&o));
    assert_eq!(page_data(&all)["rows"].as_array().unwrap().len(), 40);
    for (key, ids) in data["galleries"].as_object().unwrap() {
        assert!(ids.as_array().unwrap().len() <= 5, "{key}");
    }
    assert!(
        data["rows"].as_array().unwrap().len() <= 5 * data["galleries"].as_object().unwrap().len()
    );
}

/// Anything that is not a facebatch output is refused with one line.
#[test]
fn a_report_of_something_else_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (input, needle) in [
        (tmp.path().join("nothing.parquet"), "does not exist"),
        (empty, "no finished Parquet part"),
    ] {
        assert_fatal(&run(&mut report_cmd(&input, &tmp.path().join("r"))), needle);
    }
}

/// The correction loop's last step: a `corrections.csv` as the page writes it (the aligned
/// crops, the chosen labels, `already_aligned = true`, and a "not a face" verdict) trains
/// a model from the default one without detecting the crops again.
#[test]
#[cfg(feature = "train")] // trains a model
fn corrections_train_a_model_without_detecting_again() {
    let (tmp, photos, _) = temp_photos(12, 2, &sample_face());
    let out = tmp.path().join("results.parquet");
    classify(&[&sample_faces(), &photos], &out, &[]);
    let report = tmp.path().join("report");
    assert_code(&run(&mut report_cmd(&out, &report)), 0);
    let data = page_data(&report);
    let mut csv = String::from(
        "path,label,photo,face_index,box,model_label,model_confidence,already_aligned\n",
    );
    let mut kept = 0;
    for (k, r) in data["rows"].as_array().unwrap().iter().enumerate() {
        if r["status"] != "ok" {
            continue;
        }
        // Alternate labels so both classes are present; one row is not a face.
        let label = match k {
            0 => "not_a_face",
            k if k % 2 == 0 => "female",
            _ => "male",
        };
        kept += usize::from(label != "not_a_face");
        csv.push_str(&format!(
            "faces/{}.png,{label},\"{}\",0,,{},{},true\n",
            r["id"],
            r["path"].as_str().unwrap(),
            r["label"].as_str().unwrap(),
            r["confidence"]
        ));
    }
    std::fs::write(report.join("corrections.csv"), csv).unwrap();
    let model = tmp.path().join("model");
    let o = train_from_corrections(&report.join("corrections.csv"), &model);
    assert_code(&o, 0);
    let card = read_json(&model.join("card.json"));
    let source = &card["training"]["sources"][0];
    let per_class: u64 = source["per_class"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        per_class as usize, kept,
        "every correction but the not-a-face one: {source}"
    );
    assert!(
        stderr(&o).contains(&format!("images=0 already_aligned={kept}")),
        "already aligned crops are not detected again"
    );
}

/// An `eval --predictions` file reports as an evaluation: the confusion matrix over every
/// row, one gallery per non-empty cell, and accuracy per group.
#[test]
fn eval_predictions_report_a_confusion_matrix_with_its_faces() {
    let tmp = tempfile::tempdir().unwrap();
    let preds = tmp.path().join("pred.parquet");
    let o = run(eval_cmd(sample_faces(), default_model())
        .arg("--predictions")
        .arg(&preds));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let report = tmp.path().join("report");
    assert_code(&run(&mut report_cmd(&preds, &report)), 0);
    let data = page_data(&report);
    assert_eq!(data["kind"], "predictions");
    let ok = data["summary"]["by_status"]["ok"].as_u64().unwrap();
    let cells: u64 = data["summary"]["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(cells, ok, "every classified image is in one cell");
    let galleries = data["galleries"].as_object().unwrap();
    let cell_faces: usize = galleries
        .iter()
        .filter(|(k, _)| k.starts_with("cell:"))
        .map(|(_, v)| v.as_array().unwrap().len())
        .sum();
    assert_eq!(cell_faces as u64, ok);
    let source = data["summary"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "source")
        .expect("a chart by source");
    let n: u64 = source["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g[1]["n"].as_u64().unwrap())
        .sum();
    assert_eq!(n, data["summary"]["rows"].as_u64().unwrap());
    // Each row knows its true label.
    assert!(
        data["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["truth"].is_string())
    );
}

/// The columns of a Parquet file, each with its field, as a test changes them.
type Columns = Vec<(Field, ArrayRef)>;

/// `src` (a classify output) written again to `dst` by arrow's Parquet writer, as another
/// tool would write it, after `change` altered its columns; the key-value metadata is kept.
fn rewrite(src: &Path, dst: &Path, change: impl FnOnce(&mut Columns)) {
    let (batch, meta) = read_rows(src);
    let mut columns: Columns = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .zip(batch.columns().iter().cloned())
        .collect();
    change(&mut columns);
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema, columns.into_iter().map(|(_, c)| c).collect()).unwrap();
    write_parquet(dst, &batch, meta);
}

/// Replaces column `name` by `array` (its field keeps the name and takes the array's type).
fn replace(columns: &mut Columns, name: &str, array: ArrayRef) {
    let (f, c) = columns
        .iter_mut()
        .find(|(f, _)| f.name() == name)
        .unwrap_or_else(|| panic!("column {name}"));
    *f = Field::new(name, array.data_type().clone(), true);
    *c = array;
}

/// Column `name` cast to `to`.
fn recast(columns: &mut Columns, name: &str, to: &DataType) {
    let (_, c) = columns.iter().find(|(f, _)| f.name() == name).unwrap();
    let cast = arrow::compute::cast(c, to).unwrap();
    replace(columns, name, cast);
}

/// A small classify output (four photos of a face) in a temporary folder.
fn small_run() -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, photos, _) = temp_photos(4, 1, &sample_face());
    let out = tmp.path().join("results.parquet");
    classify(&[&photos], &out, &[]);
    (tmp, out)
}

/// A report that would show every row under "No face" (no `status`) or every gallery empty
/// (no `confidence`) is refused up front, naming the column and what it must hold, and
/// writes nothing.
#[test]
fn a_report_without_a_status_or_confidence_column_is_refused_with_exit_2() {
    let (tmp, out) = small_run();
    for (column, want) in [("status", "a string"), ("confidence", "a number")] {
        let bad = tmp.path().join(format!("no-{column}.parquet"));
        rewrite(&out, &bad, |c| c.retain(|(f, _)| f.name() != column));
        let report = tmp.path().join(format!("report-{column}"));
        let o = run(&mut report_cmd(&bad, &report));
        assert_fatal(
            &o,
            &format!("column \"{column}\" is missing, expected {want}"),
        );
        assert!(
            stderr(&o).contains(&bad.display().to_string()),
            "names the file"
        );
        assert!(!report.join("index.html").exists(), "nothing written");
    }
}

/// A `confidence` stored as text (a CSV round trip) is refused, not shown as empty
/// galleries; several bad columns are named in the one message.
#[test]
fn a_string_confidence_is_refused_with_exit_2() {
    let (tmp, out) = small_run();
    let bad = tmp.path().join("text.parquet");
    rewrite(&out, &bad, |c| {
        recast(c, "confidence", &DataType::Utf8);
        recast(c, "det_score", &DataType::Utf8);
    });
    let o = run(&mut report_cmd(&bad, &tmp.path().join("report")));
    assert_fatal(
        &o,
        "column \"confidence\" is Utf8, expected a number (any integer or float type)",
    );
    assert!(
        stderr(&o).contains("column \"det_score\" is Utf8"),
        "{}",
        stderr(&o)
    );
}

/// One face whose confidence is NaN: the report is written (exit 0), the face is in its
/// label's gallery, first (least confident), and `data.js` says "NaN", not null.
#[test]
fn a_nan_confidence_is_shown_as_nan_and_exits_0() {
    let (tmp, out) = small_run();
    let (b, _) = read_rows(&out);
    let status = texts(&b, "status");
    let nan_row = status.iter().position(|s| s == "ok").expect("an ok row");
    let label = texts(&b, "label")[nan_row].clone();
    let bad = tmp.path().join("nan.parquet");
    rewrite(&out, &bad, |c| {
        let (_, conf) = c.iter().find(|(f, _)| f.name() == "confidence").unwrap();
        let conf: Float32Array = conf
            .as_primitive::<Float32Type>()
            .iter()
            .enumerate()
            .map(|(i, v)| if i == nan_row { Some(f32::NAN) } else { v })
            .collect();
        replace(c, "confidence", Arc::new(conf));
    });
    let report = tmp.path().join("report");
    let o = run(&mut report_cmd(&bad, &report));
    assert_code(&o, 0);
    let data = page_data(&report);
    let row = data["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == nan_row as u64)
        .expect("the NaN face is shown");
    assert_eq!(row["confidence"], "NaN", "{row}");
    let gallery = data["galleries"][format!("label:{label}")]
        .as_array()
        .unwrap();
    assert_eq!(
        gallery[0], nan_row as u64,
        "least confident first: {gallery:?}"
    );
    let ok = status.iter().filter(|s| *s == "ok").count() as u64;
    assert_eq!(data["summary"]["by_status"]["ok"], ok);
}

/// What pandas, polars or DuckDB write for the same data (float64 probabilities, int64
/// indices and sizes, large strings) reports the same as facebatch's own types.
#[test]
fn float64_int64_and_large_string_columns_from_other_tools_are_accepted() {
    let (tmp, out) = small_run();
    let (b, _) = read_rows(&out);
    let other = tmp.path().join("other.parquet");
    rewrite(&out, &other, |c| {
        let names: Vec<String> = c.iter().map(|(f, _)| f.name().clone()).collect();
        for n in &names {
            let to = match n.as_str() {
                "confidence" | "det_score" => DataType::Float64,
                n if n.starts_with("p_") || n.starts_with("box_") => DataType::Float64,
                "face_index" | "width" | "height" | "bytes" => DataType::Int64,
                "root" | "path" | "status" | "label" | "error" | "error_kind" | "crop" => {
                    DataType::LargeUtf8
                }
                "modified" => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                "landmarks" => {
                    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
                }
                _ => continue,
            };
            recast(c, n, &to);
        }
    });
    let (theirs_dir, mine_dir) = (tmp.path().join("theirs"), tmp.path().join("mine"));
    assert_code(&run(&mut report_cmd(&other, &theirs_dir)), 0);
    assert_code(&run(&mut report_cmd(&out, &mine_dir)), 0);
    let (theirs, mine) = (page_data(&theirs_dir), page_data(&mine_dir));
    assert_eq!(theirs["summary"], mine["summary"]);
    assert_eq!(theirs["galleries"], mine["galleries"]);
    let conf = f32s(&b, "confidence");
    for r in theirs["rows"].as_array().unwrap() {
        let id = r["id"].as_u64().unwrap() as usize;
        assert_eq!(r["thumb"], "ok", "{r}");
        if let Some(c) = conf[id] {
            assert!(
                (r["confidence"].as_f64().unwrap() - c as f64).abs() < 1e-6,
                "{r}"
            );
        }
        let want = mine["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == r["id"])
            .unwrap();
        assert_eq!(r["path"], want["path"]);
        assert_eq!(r["face_index"], want["face_index"]);
        assert_eq!(r["box"], want["box"]);
        // The same crop, cut with the same landmarks; the photo found unchanged by its
        // size and (nanosecond) time.
        if r["status"] == "ok" {
            let face = |dir: &Path| std::fs::read(dir.join(format!("faces/{id}.png"))).unwrap();
            assert_eq!(face(&theirs_dir), face(&mine_dir), "face {id}");
        }
    }
}

/// Regression (issue 30): a report built from another folder than the run's said "400
/// whose photo is missing": photos now resolve through the file's `facebatch.base`, for
/// classify outputs and eval predictions alike.
#[test]
fn a_report_built_from_another_folder_finds_every_photo() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("run");
    let faces = run_dir.join("faces");
    copy_tree(&sample_faces(), &faces);
    let o = run(facebatch().current_dir(&run_dir).args([
        "classify",
        "faces",
        "--out",
        "results.parquet",
        "--max-error-rate",
        "1",
    ]));
    assert_code(&o, 0);
    let o = run(facebatch().current_dir(&run_dir).args([
        "eval",
        "faces",
        "--predictions",
        "pred.parquet",
    ]));
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    let elsewhere = tmp.path().join("elsewhere/deeper");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for input in ["results.parquet", "pred.parquet"] {
        let o = run(facebatch()
            .current_dir(&elsewhere)
            .arg("report")
            .arg(run_dir.join(input))
            .arg("--out")
            .arg(format!("report-{input}")));
        assert_code(&o, 0);
        assert!(!stdout(&o).contains("missing"), "{input}: {}", stdout(&o));
        let data = page_data(&elsewhere.join(format!("report-{input}")));
        for r in data["rows"].as_array().unwrap() {
            if r["status"] == "ok" {
                assert_eq!(r["thumb"], "ok", "{input}: {r}");
                assert!(Path::new(r["photo"].as_str().unwrap()).is_absolute(), "{r}");
            }
        }
    }
}

/// `report --import`: a file whose rows do not fit the report is refused whole (exit 2, one
/// message naming the rows), and nothing is written; a good one is kept with absolute
/// paths and its verdicts recomputed (the model's own label is a confirmation).
#[test]
fn import_keeps_good_corrections_and_refuses_rows_of_another_report() {
    let (tmp, out) = small_run();
    let report = tmp.path().join("report");
    assert_code(&run(&mut report_cmd(&out, &report)), 0);
    let data = page_data(&report);
    let face = data["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "ok" && r["thumb"] == "ok")
        .unwrap()
        .clone();
    let (id, label) = (
        face["id"].as_u64().unwrap(),
        face["label"].as_str().unwrap(),
    );
    let import = |csv: &str| {
        let file = tmp.path().join("saved.csv");
        std::fs::write(&file, csv).unwrap();
        run(facebatch()
            .arg("report")
            .arg("--import")
            .arg(&file)
            .arg("--out")
            .arg(&report))
    };
    let o = import(&format!("id,label\n{id},{label}\n999999,male\n{id},cat\n"));
    assert_fatal(&o, "2 row(s) do not fit the report");
    assert!(
        stderr(&o).contains("row 3: no face of this report"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("label \"cat\""), "{}", stderr(&o));
    assert!(!report.join("corrections.csv").exists(), "nothing written");
    // An older page's download: crops relative to the report folder, no id or verdict.
    let o = import(&format!("path,label\nfaces/{id}.png,{label}\n"));
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 corrected, 1 confirmed, 0 not a face");
    let kept = std::fs::read_to_string(report.join("corrections.csv")).unwrap();
    let row = kept.lines().nth(1).unwrap();
    let crop = report
        .canonicalize()
        .unwrap()
        .join(format!("faces/{id}.png"));
    assert!(
        row.starts_with(&format!("{},{label},confirmed,{id},", crop.display())),
        "{row}"
    );
    // A report built again keeps the imported corrections.
    assert_code(&run(&mut report_cmd(&out, &report)), 0);
    let js = std::fs::read_to_string(report.join("corrections.js")).unwrap();
    assert!(js.contains(&format!("\"{id}\":\"{label}\"")), "{js}");
}

/// Regression (issue 30): `report --help` listed --ort-lib, --detector and the progress
/// options, which report ignores.
#[test]
fn report_help_lists_only_the_options_report_uses() {
    let o = run(facebatch().args(["report", "--help"]));
    assert_code(&o, 0);
    let help = stdout(&o);
    let options: Vec<&str> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--") || l.starts_with("-v"))
        .collect();
    for ignored in [
        "--ort-lib",
        "--detector",
        "--no-progress",
        "--progress-interval",
    ] {
        assert!(
            !options.iter().any(|l| l.starts_with(ignored)),
            "{ignored} in {options:?}"
        );
    }
    for used in ["--out", "--limit", "--import", "--json"] {
        assert!(options.iter().any(|l| l.starts_with(used)), "{used}");
    }
}
