//! What `classify` checks before any work starts: the inputs exist, the output can be
//! written, and writing it cannot replace an input or a file that is not a facebatch output.

use std::path::Path;

use super::output::{self, meta};
use super::stages::walk;
use super::{ClassifySettings, Input};
use crate::error::{Error, Result};

/// Checks everything that can be checked before any work starts.
pub(crate) fn preflight(s: &ClassifySettings) -> Result<()> {
    if s.inputs.is_empty() {
        return Err(Error::InvalidOption(
            "no input: pass one or more folders or image files".into(),
        ));
    }
    for input in &s.inputs {
        check_input_exists(input)?;
    }
    check_inputs_do_not_overlap(s)?;
    check_crops_outside_inputs(s)?;
    if s.batch_size == 0 || s.checkpoint_rows == 0 {
        return Err(Error::InvalidOption(
            "--batch-size and --checkpoint-rows must be at least 1".into(),
        ));
    }
    if s.out.is_dir() {
        return Err(Error::InvalidOption(format!(
            "--out {} is a directory; name a .parquet file, or end it with / to write a dataset folder",
            s.out.display()
        )));
    }
    let dir = s
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::InvalidOption(format!(
            "cannot write {}: folder {} does not exist",
            s.out.display(),
            dir.display()
        )));
    }
    tempfile::Builder::new()
        .prefix(".facebatch-write-check")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("cannot write {}", s.out.display()), e))?;
    check_out_is_safe(s, dir)?;
    // Last, so that the checks above name the more specific reason first.
    if !s
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        return Err(Error::InvalidOption(format!(
            "--out {}: classify writes Parquet: name the file .parquet, or end the path with / \
             for a dataset folder",
            s.out.display()
        )));
    }
    Ok(())
}

/// A local input must exist; an object-store input must be readable: a prefix lists (no
/// such bucket, no credentials, a bad endpoint: one fatal message before any work), a
/// single object exists.
fn check_input_exists(input: &Input) -> Result<()> {
    match input {
        Input::Path(p) | Input::Manifest(p) => {
            if !p.exists() {
                return Err(Error::InvalidOption(format!(
                    "input {} does not exist",
                    p.display()
                )));
            }
        }
        Input::Object(url) if url.is_prefix() => {
            if let Some(Err(e)) = crate::remote::list(url)?.next() {
                return Err(e);
            }
        }
        Input::Object(url) => {
            if crate::remote::head(url)?.is_none() {
                return Err(Error::InvalidOption(format!("input {url} does not exist")));
            }
        }
    }
    Ok(())
}

/// A folder and a file or folder inside it would be walked twice: refused, naming both.
/// (The same input given twice is dropped before this, see `resume::normalised`.)
fn check_inputs_do_not_overlap(s: &ClassifySettings) -> Result<()> {
    let abs: Vec<Option<std::path::PathBuf>> = s
        .inputs
        .iter()
        .map(|i| i.local().and_then(|p| std::fs::canonicalize(p).ok()))
        .collect();
    for (i, a) in abs.iter().enumerate() {
        for (j, b) in abs.iter().enumerate() {
            let (Some(a), Some(b)) = (a, b) else {
                continue;
            };
            if i != j && a != b && b.is_dir() && a.starts_with(b) {
                return Err(Error::InvalidOption(format!(
                    "input {} lies inside input {}: its images would be classified twice; pass only {}",
                    s.inputs[i], s.inputs[j], s.inputs[j]
                )));
            }
        }
    }
    Ok(())
}

/// `--save-crops` inside an input folder would feed the run's own crops to this and every
/// later run: refused, as `--out` is.
fn check_crops_outside_inputs(s: &ClassifySettings) -> Result<()> {
    let Some(crops) = &s.save_crops else {
        return Ok(());
    };
    let crops_abs = crate::fsutil::resolved(crops);
    for input in s.inputs.iter().filter_map(|i| i.local()) {
        let Ok(input_abs) = std::fs::canonicalize(input) else {
            continue;
        };
        if input_abs.is_dir() && crops_abs.starts_with(&input_abs) {
            return Err(Error::InvalidOption(format!(
                "--save-crops {} lies inside the input folder {}: its crops would be classified as new images; name a folder outside the inputs",
                crops.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// `--out` never replaces an input, an image inside an input folder, or any file that is
/// not an earlier facebatch output.
fn check_out_is_safe(s: &ClassifySettings, dir: &Path) -> Result<()> {
    let out = fs_err::canonicalize(dir)?.join(s.out.file_name().unwrap_or_default());
    for input in s.inputs.iter().filter_map(|i| i.local()) {
        let Ok(input_abs) = std::fs::canonicalize(input) else {
            continue;
        };
        if input_abs == out || std::fs::canonicalize(&s.out).is_ok_and(|o| o == input_abs) {
            return Err(Error::InvalidOption(format!(
                "--out {} is one of the inputs; name a new .parquet file",
                s.out.display()
            )));
        }
        if input_abs.is_dir() && out.starts_with(&input_abs) && walk::is_candidate(&out) {
            return Err(Error::InvalidOption(format!(
                "--out {} lies inside the input folder {} and has an image extension; name a .parquet file",
                s.out.display(),
                input.display()
            )));
        }
    }
    if s.out.exists() {
        let ours = output::read_metadata(&s.out)
            .is_ok_and(|md| md.contains_key(meta::VERSION) || md.contains_key(meta::RUN_ID));
        if !ours {
            return Err(Error::InvalidOption(format!(
                "--out {} exists and is not a facebatch output; refusing to replace it (move it away or name another file)",
                s.out.display()
            )));
        }
    }
    Ok(())
}
