//! Helpers shared by the integration tests: they run the real binary in temp directories.
//!
//! - this file: where things are, running the binary, reading what it printed, and the
//!   checks of a run's outcome;
//! - `cli`: the commands the tests run (`classify`, `report`, `eval`, `train`);
//! - `corpus`: images and folders of images to run them on;
//! - `rows`: the Parquet outputs read back;
//! - `process`: runs in the background, waited on and signalled.
#![allow(dead_code)]

mod cli;
mod corpus;
mod process;
mod rows;

// Each test binary uses some of these: the rest are unused there, as with dead code.
#[allow(unused_imports)]
pub use {cli::*, corpus::*, process::*, rows::*};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared face collections, when `FACEBATCH_SHARED_DATA` names them (`.ci/run` sets it
/// to `../shared/data`). Opt-in, so that `cargo test` does the same on every machine: a
/// GitHub clone has no shared data, and the tests then make their faces from the bundled
/// `data/samples` instead.
pub fn shared_data_opt() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("FACEBATCH_SHARED_DATA")?);
    dir.join("seed-faces").is_dir().then_some(dir)
}

/// The shared data directory, which the test needs.
pub fn shared_data() -> PathBuf {
    shared_data_opt().unwrap_or_else(|| {
        panic!("this test needs the shared face collections: set FACEBATCH_SHARED_DATA")
    })
}

/// The shipped single-network model (v4): what most tests classify with, and copy or
/// alter as one `model.onnx` beside its card.
pub fn default_model() -> PathBuf {
    repo().join("models/facebatch-gender/v4")
}

/// The shipped default model, v5 (an ensemble of v4 and dlib's gender net): the one built
/// into the binary.
pub fn builtin_model() -> PathBuf {
    repo().join("models/facebatch-gender/v5")
}

/// The bundled labelled sample faces (`data/samples/faces`: `female/`, `male/`).
pub fn sample_faces() -> PathBuf {
    repo().join("data/samples/faces")
}

/// The binary without `--no-progress`, for tests of the progress records.
pub fn facebatch_with_progress() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facebatch"));
    c.env_remove("FACEBATCH_MODEL");
    c.env_remove("FACEBATCH_BUNDLE");
    c
}

/// A command for the facebatch binary built for these tests.
pub fn facebatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_facebatch"));
    without_user_settings(&mut c).arg("--no-progress");
    c
}

/// `c` without the environment variables that would choose another runtime, bundle or
/// model than the test means.
pub fn without_user_settings(c: &mut Command) -> &mut Command {
    for var in [
        "FACEBATCH_ORT_LIB",
        "ORT_DYLIB_PATH",
        "FACEBATCH_BUNDLE",
        "FACEBATCH_MODEL",
    ] {
        c.env_remove(var);
    }
    c
}

/// A report's page data (`data.js` without its assignment).
pub fn page_data(report: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(report.join("data.js")).unwrap();
    let json = text
        .trim()
        .strip_prefix("window.FACEBATCH_REPORT = ")
        .and_then(|t| t.strip_suffix(';'))
        .unwrap();
    serde_json::from_str(json).unwrap()
}

/// Copies the tree `from` (folders and files) to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dst = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// Runs and returns output, printing it when the test fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("facebatch binary runs");
    eprintln!(
        "--- {:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
        cmd,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The run exited with `code`; its stderr is the message otherwise.
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
}

/// The run printed `needle` on stdout; its stdout is the message otherwise.
pub fn assert_stdout_has(o: &Output, needle: &str) {
    let out = stdout(o);
    assert!(
        out.contains(needle),
        "stdout should mention {needle:?}: {out}"
    );
}

/// A fatal error: exit code 2, one clear line on stderr, no panic or backtrace.
pub fn assert_fatal(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "expected the fatal exit code");
    let err = stderr(o);
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "must not panic: {err}");
    assert!(
        !err.contains("RUST_BACKTRACE"),
        "must not print a backtrace hint: {err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("facebatch: error"))
            .count(),
        1,
        "exactly one error line: {err}"
    );
}

/// A JSON file (a model card, a success marker, feature statistics).
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// `out` with `suffix` added to its file name: `o.parquet` -> `o.parquet.parts`.
pub fn beside(out: &Path, suffix: &str) -> PathBuf {
    out.with_file_name(format!(
        "{}{suffix}",
        out.file_name().unwrap().to_string_lossy()
    ))
}
