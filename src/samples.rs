//! The sample data built into the binary, so the README's tour works from any folder with
//! the binary alone: `facebatch samples --out DIR` writes the checkout's `data/samples/`
//! (face crops in a folder per class, two group photos, one broken file on purpose), its
//! labelled manifest `labels.csv` (for `eval` and `train`), the job file `nightly.toml`
//! (which uses the built-in model), and `README.md` with where each file comes from and
//! its licence.

use std::path::{Path, PathBuf};

use crate::error::Result;

/// Every sample file: its path under the samples folder, and its bytes.
pub const FILES: &[(&str, &[u8])] = &[
    (
        "faces/female/24_1_3_20170117145425107.jpg",
        include_bytes!("../data/samples/faces/female/24_1_3_20170117145425107.jpg"),
    ),
    (
        "faces/female/27_1_2_20170116165546386.jpg",
        include_bytes!("../data/samples/faces/female/27_1_2_20170116165546386.jpg"),
    ),
    (
        "faces/female/32_1_0_20170105162332267.jpg",
        include_bytes!("../data/samples/faces/female/32_1_0_20170105162332267.jpg"),
    ),
    (
        "faces/female/43_1_1_20170117193944155.jpg",
        include_bytes!("../data/samples/faces/female/43_1_1_20170117193944155.jpg"),
    ),
    (
        "faces/female/face367.bmp",
        include_bytes!("../data/samples/faces/female/face367.bmp"),
    ),
    (
        "faces/male/26_0_3_20170104230413577.jpg",
        include_bytes!("../data/samples/faces/male/26_0_3_20170104230413577.jpg"),
    ),
    (
        "faces/male/37_0_1_20170116002833730.jpg",
        include_bytes!("../data/samples/faces/male/37_0_1_20170116002833730.jpg"),
    ),
    (
        "faces/male/55_0_0_20170113190612249.jpg",
        include_bytes!("../data/samples/faces/male/55_0_0_20170113190612249.jpg"),
    ),
    (
        "faces/male/64_0_2_20170116193425715.jpg",
        include_bytes!("../data/samples/faces/male/64_0_2_20170116193425715.jpg"),
    ),
    (
        "faces/male/face78.bmp",
        include_bytes!("../data/samples/faces/male/face78.bmp"),
    ),
    (
        "faces/male/truncated.jpg",
        include_bytes!("../data/samples/faces/male/truncated.jpg"),
    ),
    ("labels.csv", include_bytes!("../data/samples/labels.csv")),
    (
        "nightly.toml",
        include_bytes!("../data/samples/nightly.toml"),
    ),
    (
        "photos/retreat-2017.jpg",
        include_bytes!("../data/samples/photos/retreat-2017.jpg"),
    ),
    (
        "photos/solvay-1927.jpg",
        include_bytes!("../data/samples/photos/solvay-1927.jpg"),
    ),
    ("README.md", include_bytes!("../data/README.md")),
];

/// The file that marks a folder as written by [`write`] (and so safe to write again).
pub const MARKER: &str = "nightly.toml";

/// Writes every sample file under `dir` (created), each atomically; returns their paths.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::with_capacity(FILES.len());
    for (rel, bytes) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent)?;
        }
        crate::fsutil::write_atomic(&path, bytes)?;
        written.push(path);
    }
    tracing::info!(dir = %dir.display(), files = written.len(), "samples written");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of data/samples is built in, and nothing else but the README.
    #[test]
    fn the_built_in_samples_are_the_checkouts_data_samples() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/samples");
        let mut on_disk: Vec<String> = walkdir::WalkDir::new(&root)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                e.path()
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        on_disk.sort();
        let mut built_in: Vec<String> = FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p != "README.md")
            .collect();
        built_in.sort();
        assert_eq!(on_disk, built_in, "regenerate FILES in src/samples.rs");
        for (rel, bytes) in FILES.iter().filter(|(p, _)| *p != "README.md") {
            assert_eq!(std::fs::read(root.join(rel)).unwrap(), *bytes, "{rel}");
        }
    }
}
