//! The commands the tests run, with the arguments every run of them has; each caller adds
//! its own options.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use super::{default_model, facebatch, run};

/// `facebatch SUBCOMMAND INPUTS... --out OUT`.
pub fn to_out(
    subcommand: &str,
    inputs: impl IntoIterator<Item = impl AsRef<OsStr>>,
    out: impl AsRef<OsStr>,
) -> Command {
    let mut c = facebatch();
    c.arg(subcommand).args(inputs).arg("--out").arg(out);
    c
}

/// `facebatch classify INPUTS... --out OUT`, with the model the binary picks itself.
pub fn classify_cmd(
    inputs: impl IntoIterator<Item = impl AsRef<OsStr>>,
    out: impl AsRef<OsStr>,
) -> Command {
    to_out("classify", inputs, out)
}

/// `facebatch classify INPUTS... --out OUT --model MODEL`, the shipped default model.
pub fn classify_default(
    inputs: impl IntoIterator<Item = impl AsRef<OsStr>>,
    out: impl AsRef<OsStr>,
) -> Command {
    let mut c = classify_cmd(inputs, out);
    c.arg("--model").arg(default_model());
    c
}

/// `facebatch report INPUT --out OUT`.
pub fn report_cmd(input: &Path, out: &Path) -> Command {
    to_out("report", [input], out)
}

/// `facebatch eval DATA --model MODEL`.
pub fn eval_cmd(data: impl AsRef<OsStr>, model: impl AsRef<OsStr>) -> Command {
    let mut c = facebatch();
    c.arg("eval").arg(data).arg("--model").arg(model);
    c
}

/// `facebatch train DATA --out OUT ARGS...`
pub fn train_cmd(data: &Path, out: &Path, args: &[&str]) -> Command {
    let mut c = to_out("train", [data], out);
    c.args(args);
    c
}

/// `facebatch train --labels-csv CSV --out OUT ARGS...`
pub fn train_csv_cmd(csv: &Path, out: &Path, args: &[&str]) -> Command {
    let mut c = facebatch();
    c.arg("train")
        .arg("--labels-csv")
        .arg(csv)
        .arg("--out")
        .arg(out)
        .args(args);
    c
}

/// The options of a short training run: `--epochs EPOCHS --batch-size BATCH_SIZE
/// --max-steps-per-epoch STEPS_PER_EPOCH`.
pub fn short_training<'a>(
    epochs: &'a str,
    batch_size: &'a str,
    steps_per_epoch: &'a str,
) -> [&'a str; 6] {
    [
        "--epochs",
        epochs,
        "--batch-size",
        batch_size,
        "--max-steps-per-epoch",
        steps_per_epoch,
    ]
}

/// One training step from the default model on a report's `corrections.csv`.
pub fn train_from_corrections(csv: &Path, out: &Path) -> Output {
    run(train_csv_cmd(csv, out, &short_training("1", "4", "1"))
        .arg("--init")
        .arg(default_model()))
}
