//! Redraws a model's report figures with today's plotting code from what `train` saved
//! beside them: the history (`train_log.csv`, `epochs.csv`) gives `loss.png` and
//! `accuracy.png`; the test report (`test_report.json`) gives `confusion.png`,
//! `groups-<column>.png` and `reliability.png`. `facebatch visualize --replot DIR`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::plot::{EpochRecord, StepRecord, report_figures, training_curves};
use crate::error::{Error, Result};
use crate::model::calibration::wilson;
use crate::model::metrics::{Report, SMALL_GROUP};

/// The per-step history `train` writes into its reports folder.
pub const STEPS_FILE: &str = "train_log.csv";
/// The per-epoch history.
pub const EPOCHS_FILE: &str = "epochs.csv";
/// The test report.
pub const REPORT_FILE: &str = "test_report.json";

/// Reads every row of a CSV file with a header into `T`.
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let err = |reason: String| Error::Csv {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.map_err(|e| err(format!("row {}: {e}", i + 1))))
        .collect()
}

/// Reads a test report, filling in what reports written before the 95% intervals lack:
/// each group's Wilson interval and its small-group mark, from its counts.
pub fn read_report(path: &Path) -> Result<Report> {
    let text = fs_err::read_to_string(path)?;
    let mut report: Report = serde_json::from_str(&text).map_err(|e| Error::Json {
        context: format!("reading {}", path.display()),
        source: e,
    })?;
    for g in report.groups.values_mut().flat_map(|g| g.values_mut()) {
        if g.accuracy_ci == [0.0, 0.0] && g.n > 0 {
            g.accuracy_ci = wilson(g.correct, g.n);
            g.small = g.n < SMALL_GROUP;
        }
    }
    Ok(report)
}

/// The curves' files, drawn from the history.
const CURVES: [&str; 2] = ["loss.png", "accuracy.png"];

/// Reads a history file when it is there (`train` writes both; a folder may hold one).
fn rows_if_there<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if path.is_file() {
        read_rows(path)
    } else {
        Ok(Vec::new())
    }
}

/// Redraws the figures of the reports folder `dir` from the history and the test report
/// it holds, over the old ones. A figure never replaces one of those inputs (a figure's
/// name made a link to one is refused before anything is drawn). Returns the files
/// written.
pub fn replot(dir: &Path) -> Result<Vec<PathBuf>> {
    let inputs = [STEPS_FILE, EPOCHS_FILE, REPORT_FILE].map(|f| dir.join(f));
    let [steps_file, epochs_file, report_file] = &inputs;
    let history = steps_file.is_file() || epochs_file.is_file();
    let report = report_file
        .is_file()
        .then(|| read_report(report_file))
        .transpose()?;
    let mut names: Vec<String> = Vec::new();
    if history {
        names.extend(CURVES.map(String::from));
    }
    if let Some(r) = &report {
        names.extend(super::plot::report_figure_names(r));
    }
    if names.is_empty() {
        return Err(Error::NothingToReplot {
            dir: dir.to_path_buf(),
        });
    }
    for name in &names {
        crate::fsutil::check_out_is_safe(
            &crate::fsutil::OutCheck {
                flag: "--replot",
                path: &dir.join(name),
                kind: crate::fsutil::OutKind::File,
                is_own: &|_| true,
                own: "an earlier figure",
            },
            inputs.iter().map(PathBuf::as_path),
        )?;
    }
    let mut written = Vec::new();
    if history {
        let steps: Vec<StepRecord> = rows_if_there(steps_file)?;
        let epochs: Vec<EpochRecord> = rows_if_there(epochs_file)?;
        training_curves(dir, &steps, &epochs)?;
        written.extend(CURVES.map(|f| dir.join(f)));
    }
    if let Some(r) = &report {
        written.extend(report_figures(dir, r)?);
    }
    tracing::info!(dir = %dir.display(), figures = written.len(), "report figures redrawn");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &str = "step,epoch,loss,accuracy,lr\n\
        1,1,0.693147,0.5000,1.000000e-4\n\
        2,1,0.600000,0.6250,2.000000e-4\n\
        3,2,0.500000,0.7500,3.000000e-4\n";
    const EPOCHS: &str = "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n\
        1,0.650000,0.560000,0.620000,0.600000,2.000000e-4,12.5\n\
        2,0.500000,0.750000,0.550000,0.700000,3.000000e-4,11.0\n";

    #[test]
    fn the_history_reads_back_as_train_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STEPS_FILE);
        std::fs::write(&path, STEPS).unwrap();
        let steps: Vec<StepRecord> = read_rows(&path).unwrap();
        assert_eq!(steps.len(), 3);
        assert_eq!(
            steps[2],
            StepRecord {
                step: 3,
                epoch: 2,
                loss: 0.5,
                accuracy: 0.75,
                lr: 3e-4
            }
        );
        let path = dir.path().join(EPOCHS_FILE);
        std::fs::write(&path, EPOCHS).unwrap();
        let epochs: Vec<EpochRecord> = read_rows(&path).unwrap();
        assert_eq!(epochs[1].epoch, 2);
        assert_eq!(epochs[0].seconds, 12.5);
    }

    #[test]
    fn a_damaged_row_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STEPS_FILE);
        std::fs::write(
            &path,
            "step,epoch,loss,accuracy,lr\n1,1,0.5,0.5,1e-4\nx,1,0.5,0.5,1e-4\n",
        )
        .unwrap();
        let e = read_rows::<StepRecord>(&path).unwrap_err().to_string();
        assert!(e.contains("train_log.csv") && e.contains("row 2"), "{e}");
    }

    #[test]
    fn replot_draws_the_curves_and_the_test_figures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STEPS_FILE), STEPS).unwrap();
        std::fs::write(dir.path().join(EPOCHS_FILE), EPOCHS).unwrap();
        // A report from before the 95% intervals: the groups hold counts only.
        let report = serde_json::json!({
            "labels": ["female", "male"], "n": 100, "accuracy": 0.9,
            "per_class": {}, "macro_avg": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 100},
            "weighted_avg": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 100},
            "confusion": [[45, 5], [5, 45]],
            "groups": {"age:15": {
                "<15": {"n": 20, "correct": 15, "accuracy": 0.75, "recall": {}},
                ">=15": {"n": 80, "correct": 75, "accuracy": 0.9375, "recall": {}}
            }}
        });
        std::fs::write(dir.path().join(REPORT_FILE), report.to_string()).unwrap();
        let read = read_report(&dir.path().join(REPORT_FILE)).unwrap();
        let young = &read.groups["age:15"]["<15"];
        assert_eq!(young.accuracy_ci, wilson(15, 20));
        assert!(young.small);
        let written = replot(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "loss.png",
                "accuracy.png",
                "confusion.png",
                "groups-age-15.png"
            ]
        );
        for p in &written {
            image::open(p).expect("a PNG");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_figure_linked_to_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STEPS_FILE), STEPS).unwrap();
        std::os::unix::fs::symlink(STEPS_FILE, dir.path().join("loss.png")).unwrap();
        let e = replot(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is one of the inputs"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(STEPS_FILE)).unwrap(),
            STEPS
        );
    }

    #[test]
    fn an_empty_folder_has_nothing_to_redraw() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            replot(dir.path()),
            Err(Error::NothingToReplot { .. })
        ));
    }
}
