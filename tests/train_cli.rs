//! `facebatch train`, `eval` and `visualize` run as a user would: the real binary on real
//! face images in temp directories, with the outputs read back.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

struct Trained {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    out: PathBuf,
}

/// One tiny training run (24 faces per class, a duplicate and a broken file), shared by the
/// tests below.
fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let (tmp, data) = temp_faces(24);
        // An exact duplicate under another name, and a file that is not an image.
        let first = any_file(&data.join("female"));
        std::fs::copy(&first, data.join("female/zz-duplicate.bmp")).unwrap();
        std::fs::write(
            data.join("male/zz-broken.jpg"),
            b"\xff\xd8\xff\xe0 not really a jpeg",
        )
        .unwrap();
        let out = tmp.path().join("model");
        let o = run(
            train_cmd(&data, &out, &short_training("2", "8", "3")).args([
                "--seed",
                "3",
                "--licence-note",
                "test data licence",
            ]),
        );
        assert!(o.status.success(), "training failed");
        assert!(
            stdout(&o).contains("weighted avg"),
            "train prints the test report"
        );
        Trained {
            _tmp: tmp,
            data,
            out,
        }
    })
}

fn csv_paths(p: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(p).unwrap();
    r.records().map(|x| x.unwrap()[0].to_string()).collect()
}

#[test]
fn train_exports_model_card_and_reports() {
    let t = trained();
    let card = read_json(&t.out.join("card.json"));
    assert_eq!(card["format"], "facebatch-model-card/2");
    assert_eq!(card["labels"], serde_json::json!(["female", "male"]));
    assert_eq!(card["input"]["layout"], "NCHW");
    assert_eq!(card["input"]["channel_order"], "RGB");
    assert_eq!(card["input"]["height"], 64);
    assert_eq!(card["architecture"]["name"], "compact");
    assert!(card["architecture"]["parameters"].as_u64().unwrap() > 100_000);
    let onnx = std::fs::read(t.out.join("model.onnx")).unwrap();
    let sha = {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&onnx))
    };
    assert_eq!(card["onnx"]["sha256"], sha.as_str());
    assert!(
        onnx.len() < 4 * 1024 * 1024,
        "default architecture stays under 4 MB"
    );
    let src = &card["training"]["sources"][0];
    assert_eq!(src["duplicates_removed"], 1);
    assert_eq!(src["unreadable_skipped"], 1);
    assert_eq!(src["per_class"]["female"], 24);
    assert_eq!(src["per_class"]["male"], 24);
    assert_eq!(card["training"]["licence_notes"][0], "test data licence");
    let test = &card["metrics"]["test"];
    assert!(test["accuracy"].as_f64().is_some());
    assert_eq!(test["n"], 4, "10% of 24 per class, rounded: 2 + 2");
    for f in ["loss.png", "accuracy.png"] {
        let img = image::open(t.out.join("reports").join(f)).expect("curve PNG decodes");
        assert!(img.width() >= 1000);
    }
    let report = read_json(&t.out.join("reports/test_report.json"));
    assert!(report["per_class"]["female"]["f1"].is_number());
    assert!(
        std::fs::read_to_string(t.out.join("reports/test_report.txt"))
            .unwrap()
            .contains("confusion matrix")
    );
    let log = std::fs::read_to_string(t.out.join("reports/train_log.csv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 6, "header plus 2 epochs x 3 steps");
    let epochs = std::fs::read_to_string(t.out.join("reports/epochs.csv")).unwrap();
    assert_eq!(epochs.lines().count(), 3);
}

#[test]
fn splits_are_disjoint_and_cover_every_unique_image() {
    let t = trained();
    let mut all = Vec::new();
    for s in ["train", "val", "test"] {
        all.extend(csv_paths(&t.out.join("splits").join(format!("{s}.csv"))));
    }
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no image in two splits");
    assert_eq!(n, 48, "48 unique readable images");
    for p in &all {
        assert!(
            t.out.join("splits").join(p).is_file(),
            "manifest path {p} resolves relative to the CSV"
        );
    }
}

#[test]
fn eval_reuses_the_saved_test_split_and_prints_json() {
    let t = trained();
    let o = run(eval_cmd(t.out.join("splits/test.csv"), &t.out).args([
        "--json",
        "--group-by",
        "source",
    ]));
    assert!(o.status.success());
    let v: Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["n"], 4);
    assert!(v["accuracy"].as_f64().unwrap() >= 0.0);
    assert!(v["per_class"]["male"]["support"].as_u64().is_some());
    assert_eq!(v["confusion"].as_array().unwrap().len(), 2);
    assert_eq!(v["groups"]["source"]["faces"]["n"], 4);
    // The card's test metrics came from the same model and images.
    let card = read_json(&t.out.join("card.json"));
    assert_eq!(card["metrics"]["test"]["confusion"], v["confusion"]);
}

#[test]
fn eval_on_a_folder_skips_unreadable_files_with_exit_1() {
    let t = trained();
    let o = run(&mut eval_cmd(&t.data, &t.out));
    assert_eq!(o.status.code(), Some(1), "finished with per-image errors");
    assert!(stdout(&o).contains("precision"));
    assert!(stderr(&o).contains("1 unreadable image(s) skipped"));
}

#[test]
fn visualize_draws_every_conv_and_pool_layer() {
    let t = trained();
    let dir = tempfile::tempdir().unwrap();
    let img = any_file(&t.data.join("male"));
    let o = run(facebatch()
        .arg("visualize")
        .arg(&img)
        .arg("--model")
        .arg(t.out.join("model.onnx"))
        .arg("--out")
        .arg(dir.path()));
    assert!(o.status.success());
    let listing = stdout(&o);
    // compact: 7 conv blocks (ReLU after each) and 4 max-pools.
    assert_eq!(
        listing.lines().filter(|l| l.starts_with("relu")).count(),
        7,
        "{listing}"
    );
    assert_eq!(
        listing.lines().filter(|l| l.starts_with("pool")).count(),
        4,
        "{listing}"
    );
    assert!(listing.contains("relu1\t16 maps 64x64"));
    let pngs = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(pngs, 12, "input plus 11 layers");
    image::open(dir.path().join("01_relu1.png")).expect("grid PNG decodes");
}

#[test]
fn resume_continues_from_the_last_checkpoint() {
    let (tmp, data) = temp_faces(10);
    let out = tmp.path().join("m");
    let base = |epochs: &str| train_cmd(&data, &out, &short_training(epochs, "8", "2"));
    assert!(run(&mut base("1")).status.success());
    let o = run(base("3").arg("--resume"));
    assert!(o.status.success());
    assert!(stderr(&o).contains("resumed from checkpoint"));
    let epochs = std::fs::read_to_string(out.join("reports/epochs.csv")).unwrap();
    let numbers: Vec<&str> = epochs
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    let steps = std::fs::read_to_string(out.join("reports/train_log.csv")).unwrap();
    assert_eq!(
        steps.lines().count(),
        1 + 6,
        "steps continue, none repeated"
    );
    // A checkpoint from other data is refused rather than silently mixed in.
    std::fs::remove_file(any_file(&data.join("male"))).unwrap();
    let o = run(base("4").arg("--resume"));
    assert_fatal(&o, "different data or settings");
}

#[test]
fn seed_architecture_reproduces_the_blog_network() {
    let (tmp, data) = temp_faces(8);
    let out = tmp.path().join("m");
    let o = run(train_cmd(&data, &out, &short_training("1", "4", "2")).args(["--arch", "seed"]));
    assert!(o.status.success());
    let card = read_json(&out.join("card.json"));
    assert_eq!(card["architecture"]["name"], "seed");
    assert_eq!(card["input"]["height"], 112);
    assert_eq!(card["input"]["width"], 92);
    // conv 3*16*9+16, 16*32*9+32, 32*64*9+64; dense 10752*512+512, 512*128+128, 128*2+2
    let expected = (432 + 16)
        + (4608 + 32)
        + (18432 + 64)
        + (10752 * 512 + 512)
        + (512 * 128 + 128)
        + (256 + 2);
    assert_eq!(card["architecture"]["parameters"], expected);
    assert_eq!(card["outputs"][2]["shape"][1], 64);
}

#[test]
fn csv_manifest_keeps_columns_for_grouping() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("imgs");
    seed_subset(&data, 10);
    let mut csv = String::from("file,sex,band\n");
    for class in ["female", "male"] {
        for (i, e) in std::fs::read_dir(data.join(class)).unwrap().enumerate() {
            let name = e.unwrap().file_name().into_string().unwrap();
            csv.push_str(&format!(
                "imgs/{class}/{name},{class},{}\n",
                if i % 2 == 0 { "even" } else { "odd" }
            ));
        }
    }
    let manifest = tmp.path().join("labels.csv");
    std::fs::write(&manifest, csv).unwrap();
    let out = tmp.path().join("m");
    let o = run(
        train_csv_cmd(&manifest, &out, &short_training("1", "8", "1"))
            .args(["--label-column", "sex", "--path-column", "file"])
            .args(["--group-by", "band"]),
    );
    assert!(o.status.success());
    let test = std::fs::read_to_string(out.join("splits/test.csv")).unwrap();
    assert!(
        test.lines().next().unwrap().ends_with(",band"),
        "extra column kept: {test}"
    );
    let card = read_json(&out.join("card.json"));
    let groups = card["metrics"]["test"]["groups"]["band"]
        .as_object()
        .unwrap();
    assert!(!groups.is_empty());
}

#[test]
fn bad_training_data_gives_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let single = tmp.path().join("single");
    seed_subset(&single, 3);
    std::fs::remove_dir_all(single.join("male")).unwrap();
    let manifest = tmp.path().join("m.csv");
    std::fs::write(
        &manifest,
        "path,gender\nnope/a.jpg,female\nnope/b.jpg,male\n",
    )
    .unwrap();
    for (mut train, needle) in [
        // An empty folder.
        (train_cmd(&empty, &out, &[]), "holds no images"),
        // A single class.
        (train_cmd(&single, &out, &[]), "at least two classes"),
        // A manifest naming files that do not exist.
        (
            train_csv_cmd(&manifest, &out, &["--label-column", "gender"]),
            "2 listed file(s) do not exist",
        ),
        // A manifest without the label column.
        (
            train_csv_cmd(&manifest, &out, &[]),
            "no column named \"label\"",
        ),
        // A folder that does not exist.
        (train_cmd(&tmp.path().join("missing"), &out, &[]), "missing"),
    ] {
        assert_fatal(&run(&mut train), needle);
    }
}

/// Regression: the card once repeated run-wide removal counts on every source.
#[test]
fn removal_counts_are_attributed_to_their_source() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    seed_subset(&a, 12);
    for class in ["female", "male"] {
        std::fs::create_dir_all(b.join(class)).unwrap();
        let files = files_in(&a.join(class));
        for f in &files[6..] {
            std::fs::rename(f, b.join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    let first = any_file(&a.join("male"));
    std::fs::copy(&first, a.join("male/zz-copy.bmp")).unwrap();
    std::fs::write(b.join("female/zz-broken.png"), b"nope").unwrap();
    let out = tmp.path().join("m");
    let mut cmd = to_out("train", [&a, &b], &out);
    cmd.args(["--epochs", "1", "--max-steps-per-epoch", "1"]);
    assert!(run(&mut cmd).status.success());
    let card = read_json(&out.join("card.json"));
    // Two sources: the test report is broken down by source without being asked.
    let groups = &card["metrics"]["test"]["groups"]["source"];
    assert!(groups["a"]["n"].as_u64().unwrap() > 0 && groups["b"]["n"].as_u64().unwrap() > 0);
    let sources = card["training"]["sources"].as_array().unwrap();
    let by_name = |n: &str| sources.iter().find(|s| s["name"] == n).unwrap().clone();
    assert_eq!(by_name("a")["duplicates_removed"], 1);
    assert_eq!(by_name("a")["unreadable_skipped"], 0);
    assert_eq!(by_name("b")["duplicates_removed"], 0);
    assert_eq!(by_name("b")["unreadable_skipped"], 1);
    assert_eq!(by_name("a")["per_class"]["male"], 6);
}

/// Several collections in one manifest (a `source` column), a folder beside it, the splits
/// of an earlier model kept, the balanced sampler, a fitted temperature, and per-image
/// predictions from `eval`: issue 12's training workflow end to end, on tiny data.
#[test]
fn several_sources_keep_their_names_pinned_splits_and_calibrated_predictions() {
    let t = trained();
    let tmp = tempfile::tempdir().unwrap();
    // The earlier run's images again (same bytes: their splits must be kept) ...
    let old = tmp.path().join("old");
    copy_tree(&t.data, &old);
    // ... and two new "collections" named by a manifest column.
    let imgs = tmp.path().join("more");
    seed_subset(&imgs, 40);
    let mut csv = String::from("path,gender,source,age\n");
    let mut n_new = 0;
    for class in ["female", "male"] {
        let mut files: Vec<String> = std::fs::read_dir(imgs.join(class))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        for (i, name) in files.iter().enumerate() {
            let rel = format!("more/{class}/{name}");
            if csv.contains(&rel) || old_has_same_bytes(&old, &imgs.join(class).join(name)) {
                continue;
            }
            let source = if i % 3 == 0 { "press" } else { "web" };
            csv.push_str(&format!("{rel},{class},{source},{}\n", 10 + i));
            n_new += 1;
        }
    }
    assert!(n_new >= 20, "enough new images: {n_new}");
    let manifest = tmp.path().join("labels.csv");
    std::fs::write(&manifest, csv).unwrap();
    let out = tmp.path().join("v2");
    let o = run(to_out("train", [&old], &out)
        .arg("--labels-csv")
        .arg(&manifest)
        .args(short_training("1", "8", "2"))
        .args(["--label-column", "gender", "--sampler", "balanced"])
        .args(["--augment", "jpeg=1", "--augment", "occlude=0.5"])
        .args(["--group-by", "source", "--group-by", "age:15,60"])
        .arg("--pin-splits")
        .arg(&t.out));
    assert!(o.status.success());
    let card = read_json(&out.join("card.json"));
    let names: Vec<&str> = card["training"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["old", "press", "web"],
        "a manifest's source column names sources"
    );
    assert_eq!(card["training"]["augmentation"]["jpeg"], 1.0);
    assert_eq!(
        card["training"]["hyperparameters"]["sampling"]["kind"],
        "balanced"
    );
    // Every image of the earlier run keeps its split (matched by content).
    for split in ["train", "val", "test"] {
        let before = split_hashes(&t.out.join(format!("splits/{split}.csv")));
        let after = split_hashes(&out.join(format!("splits/{split}.csv")));
        assert!(before.is_subset(&after), "{split} split kept");
    }
    // Every source is in every split.
    let test = std::fs::read_to_string(out.join("splits/test.csv")).unwrap();
    assert!(test.contains(",press,") && test.contains(",web,"), "{test}");
    // A temperature was fitted and recorded; the test report has ECE and intervals.
    let cal = &card["calibration"];
    assert_eq!(cal["fitted_on"], "val");
    let temp = cal["temperature"].as_f64().unwrap();
    assert!(temp > 0.05 && temp < 20.0, "{cal}");
    let report = &card["metrics"]["test"];
    assert!(report["calibration"]["ece"].as_f64().unwrap() >= 0.0);
    let press = &report["groups"]["source"]["press"];
    assert_eq!(press["small"], true, "tiny groups are flagged");
    let [lo, hi] =
        [&press["accuracy_ci"][0], &press["accuracy_ci"][1]].map(|v| v.as_f64().unwrap());
    let acc = press["accuracy"].as_f64().unwrap();
    assert!(lo <= acc && acc <= hi && hi - lo > 0.1, "{press}");
    assert!(out.join("reports/reliability.png").is_file());
    for f in ["confusion.png", "groups-source.png"] {
        let img = image::open(out.join("reports").join(f)).expect("report figure decodes");
        assert!(img.width() >= 400, "{f}");
    }

    // eval --predictions: one row per image with the manifest's columns, probabilities
    // that are the calibrated ones, and the reliability diagram.
    let preds = tmp.path().join("pred.parquet");
    let diagram = tmp.path().join("rel.png");
    let o = run(eval_cmd(out.join("splits/test.csv"), &out)
        .arg("--predictions")
        .arg(&preds)
        .arg("--reliability")
        .arg(&diagram)
        .arg("--json"));
    assert!(o.status.success());
    let json: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(json["calibration"]["ece"].is_number());
    assert!(diagram.is_file());
    let rows = csv_paths(&out.join("splits/test.csv")).len();
    let (batches, meta) = read_parquet(&preds);
    assert_eq!(meta["facebatch.temperature"], temp.to_string());
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, rows);
    let b = &batches[0];
    for c in [
        "path",
        "label",
        "predicted",
        "correct",
        "confidence",
        "p_female",
        "p_male",
        "source",
        "age",
        "crop",
    ] {
        assert!(b.schema().column_with_name(c).is_some(), "column {c}");
    }
    let pf = col::<arrow::array::Float32Array>(b, "p_female");
    let pm = col::<arrow::array::Float32Array>(b, "p_male");
    let conf = col::<arrow::array::Float32Array>(b, "confidence");
    for i in 0..b.num_rows() {
        assert!((pf.value(i) + pm.value(i) - 1.0).abs() < 1e-4);
        assert!((conf.value(i) - pf.value(i).max(pm.value(i))).abs() < 1e-6);
    }
    // Accuracy from the rows equals the report's.
    let correct = col::<arrow::array::BooleanArray>(b, "correct");
    let acc = (0..b.num_rows()).filter(|&i| correct.value(i)).count() as f64 / n as f64;
    assert!((acc - json["accuracy"].as_f64().unwrap()).abs() < 1e-9);
}

fn old_has_same_bytes(old: &Path, f: &Path) -> bool {
    let bytes = std::fs::read(f).unwrap();
    walkdir::WalkDir::new(old)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .any(|e| std::fs::read(e.path()).unwrap() == bytes)
}

fn split_hashes(p: &Path) -> std::collections::BTreeSet<String> {
    let mut r = csv::Reader::from_path(p).unwrap();
    let col = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "sha256")
        .unwrap();
    r.records().map(|x| x.unwrap()[col].to_string()).collect()
}
