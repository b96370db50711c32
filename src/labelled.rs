//! Labeled face datasets: a folder per class or a CSV manifest, content-hash deduplication
//! and seeded stratified splits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use crate::fsutil::{IMAGE_EXTENSIONS, has_image_extension};

/// Where labeled images come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// `ROOT/<class>/**/*.jpg`: the folder name is the label.
    Folder(PathBuf),
    /// A CSV manifest with a header; paths are relative to the CSV file.
    Csv {
        path: PathBuf,
        label_column: String,
        path_column: String,
    },
}

impl Source {
    /// Picks the source kind from the path: a `.csv` file is a manifest, anything else a folder.
    pub fn from_path(path: &Path, label_column: &str, path_column: &str) -> Source {
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Source::Csv {
                path: path.to_path_buf(),
                label_column: label_column.to_string(),
                path_column: path_column.to_string(),
            }
        } else {
            Source::Folder(path.to_path_buf())
        }
    }

    fn root(&self) -> &Path {
        match self {
            Source::Folder(p) => p,
            Source::Csv { path, .. } => path,
        }
    }

    /// A short name for the source (its folder or file name).
    pub fn name(&self) -> String {
        let p = self.root();
        let stem = match self {
            Source::Folder(_) => p.file_name(),
            Source::Csv { .. } => p.parent().and_then(|d| d.file_name()),
        };
        stem.map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    }
}

/// One labeled image.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Resolved path on disk.
    pub path: PathBuf,
    /// Label string as given.
    pub label: String,
    /// Name of the source the sample came from.
    pub source: String,
    /// The other manifest columns, kept for grouping.
    pub extra: BTreeMap<String, String>,
}

/// Reads every source into a flat list of samples, with clear errors for unusable input.
pub fn read_sources(sources: &[Source]) -> Result<Vec<Sample>> {
    if sources.is_empty() {
        return Err(Error::Dataset(
            "no data given: pass a class-per-folder directory or a CSV manifest".into(),
        ));
    }
    let mut out = Vec::new();
    for source in sources {
        out.extend(read_source(source)?);
    }
    Ok(out)
}

/// Reads one source. Each sample's `source` is the manifest's `source` column where it has
/// one (a manifest that gathers several collections), else the source's own name.
pub fn read_source(source: &Source) -> Result<Vec<Sample>> {
    let samples = match source {
        Source::Folder(root) => read_folder(root)?,
        Source::Csv {
            path,
            label_column,
            path_column,
        } => read_csv(path, label_column, path_column)?,
    };
    let name = source.name();
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.source = match s.extra.get("source").map(|v| v.trim()) {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => name.clone(),
            };
            s
        })
        .collect())
}

fn read_folder(root: &Path) -> Result<Vec<Sample>> {
    let meta =
        std::fs::metadata(root).map_err(|e| Error::Dataset(format!("{}: {e}", root.display())))?;
    if !meta.is_dir() {
        return Err(Error::Dataset(format!(
            "{} is neither a folder of class sub-folders nor a .csv manifest",
            root.display()
        )));
    }
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::Dataset(format!("{}: {e}", root.display())))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    let mut out = Vec::new();
    for class_dir in classes {
        let label = class_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if label.starts_with('.') {
            continue;
        }
        let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&class_dir)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file() && has_image_extension(e.path()))
            .map(|e| e.into_path())
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|path| Sample {
            path,
            label: label.clone(),
            source: String::new(),
            extra: BTreeMap::new(),
        }));
    }
    if out.is_empty() {
        return Err(Error::Dataset(format!(
            "{} holds no images: expected one sub-folder per class (for example female/ and male/) with image files",
            root.display()
        )));
    }
    Ok(out)
}

fn read_csv(csv_path: &Path, label_column: &str, path_column: &str) -> Result<Vec<Sample>> {
    let err = |reason: String| Error::Csv {
        path: csv_path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(csv_path).map_err(|e| err(e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
    let find = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            err(format!(
                "no column named {name:?}; columns are {:?}",
                headers.iter().collect::<Vec<_>>()
            ))
        })
    };
    let path_idx = find(path_column)?;
    let label_idx = find(label_column)?;
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let mut not_faces = 0usize;
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| err(format!("row {}: {e}", row + 2)))?;
        let rel = record.get(path_idx).unwrap_or("").trim();
        let label = record.get(label_idx).unwrap_or("").trim();
        if rel.is_empty() || label.is_empty() {
            return Err(err(format!("row {}: empty path or label", row + 2)));
        }
        if label == NOT_A_FACE {
            // The report's "not a face" verdict: left out of training.
            not_faces += 1;
            continue;
        }
        let path = base.join(rel);
        if !path.is_file() {
            missing.push(path.display().to_string());
            continue;
        }
        let extra = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, _)| *i != path_idx && *i != label_idx)
            .map(|(_, (h, v))| (h.to_string(), v.to_string()))
            .collect();
        out.push(Sample {
            path,
            label: label.to_string(),
            source: String::new(),
            extra,
        });
    }
    if !missing.is_empty() {
        return Err(err(format!(
            "{} listed file(s) do not exist (paths are relative to the CSV's folder), first: {}",
            missing.len(),
            missing
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if not_faces > 0 {
        tracing::info!(manifest = %csv_path.display(), rows = not_faces, "rows labelled {NOT_A_FACE} left out");
    }
    if out.is_empty() {
        return Err(err("the manifest lists no images".into()));
    }
    Ok(out)
}

/// The label a report's "not a face" verdict writes; such manifest rows are left out.
pub const NOT_A_FACE: &str = "not_a_face";

/// The manifest column that marks a crop as already the model's aligned input (a report's
/// corrections write `already_aligned = true`): training uses it as it is.
pub const ALREADY_ALIGNED: &str = "already_aligned";

/// True when the sample's manifest marks it as an already aligned crop.
pub fn is_already_aligned(s: &Sample) -> bool {
    s.extra
        .get(ALREADY_ALIGNED)
        .is_some_and(|v| matches!(v.trim(), "true" | "1" | "yes"))
}

/// The sorted label set, with a clear error for fewer than two classes.
pub fn label_set(samples: &[Sample]) -> Result<Vec<String>> {
    let labels: BTreeSet<&str> = samples.iter().map(|s| s.label.as_str()).collect();
    if labels.len() < 2 {
        return Err(Error::Dataset(format!(
            "need at least two classes to train a classifier, found {}: {:?}",
            labels.len(),
            labels
        )));
    }
    Ok(labels.into_iter().map(String::from).collect())
}

/// What deduplication removed.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DedupReport {
    /// Exact copies of an earlier file with the same label, removed.
    pub duplicates_removed: usize,
    /// Files whose identical bytes carry different labels; every copy is dropped.
    pub conflicting_removed: usize,
    /// Files that could not be read at all.
    pub unreadable: Vec<String>,
    /// The same counts per source name.
    pub by_source: BTreeMap<String, SourceRemovals>,
}

/// What was dropped from one source.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceRemovals {
    pub duplicates: usize,
    pub conflicting: usize,
    pub unreadable: usize,
}

/// Hashes file contents and keeps the first copy of each distinct image.
///
/// Copies with one label collapse to the first; byte-identical files with different
/// labels are label noise, so every copy is dropped. Unreadable files are dropped and listed.
pub fn dedup(samples: Vec<Sample>) -> (Vec<(Sample, String)>, DedupReport) {
    let hashed: Vec<(Sample, std::io::Result<String>)> = samples
        .into_par_iter()
        .map(|s| {
            let h = std::fs::read(&s.path).map(|b| crate::fsutil::sha256_hex(&b));
            (s, h)
        })
        .collect();
    let mut report = DedupReport::default();
    let mut labels_by_hash: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (s, h) in &hashed {
        if let Ok(h) = h {
            labels_by_hash
                .entry(h.clone())
                .or_default()
                .insert(s.label.clone());
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (s, h) in hashed {
        let removed = report.by_source.entry(s.source.clone()).or_default();
        match h {
            Err(e) => {
                removed.unreadable += 1;
                report.unreadable.push(format!("{}: {e}", s.path.display()));
            }
            Ok(h) => {
                if labels_by_hash[&h].len() > 1 {
                    removed.conflicting += 1;
                    report.conflicting_removed += 1;
                } else if !seen.insert(h.clone()) {
                    removed.duplicates += 1;
                    report.duplicates_removed += 1;
                } else {
                    out.push((s, h));
                }
            }
        }
    }
    (out, report)
}

/// Split fractions.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SplitSpec {
    pub val: f64,
    pub test: f64,
    pub seed: u64,
}

impl SplitSpec {
    /// Validates the fractions.
    pub fn validate(&self) -> Result<()> {
        let ok = |f: f64| (0.0..1.0).contains(&f);
        if !ok(self.val) || !ok(self.test) || self.val + self.test >= 1.0 {
            return Err(Error::InvalidOption(format!(
                "split fractions val={} test={} must each be in [0,1) and sum below 1",
                self.val, self.test
            )));
        }
        Ok(())
    }
}

/// Which split an item landed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

/// Assigns each item to a split, stratified per stratum (a label, or a label within a
/// source) and seeded. Items with a pinned split keep it; the fractions apply to the rest
/// of each stratum. Every item gets exactly one split.
pub fn stratified_split(strata: &[usize], pinned: &[Option<Split>], spec: SplitSpec) -> Vec<Split> {
    debug_assert_eq!(strata.len(), pinned.len());
    let mut by_stratum: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut out = vec![Split::Train; strata.len()];
    for (i, (&k, pin)) in strata.iter().zip(pinned).enumerate() {
        match pin {
            Some(s) => out[i] = *s,
            None => by_stratum.entry(k).or_default().push(i),
        }
    }
    for (stratum, mut idx) in by_stratum {
        let mut rng = ChaCha8Rng::seed_from_u64(
            spec.seed ^ (stratum as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        idx.shuffle(&mut rng);
        let n = idx.len();
        let mut n_test = (n as f64 * spec.test).round() as usize;
        let mut n_val = (n as f64 * spec.val).round() as usize;
        // Keep at least one example per stratum in each requested split when there is room.
        if spec.test > 0.0 && n_test == 0 && n >= 3 {
            n_test = 1;
        }
        if spec.val > 0.0 && n_val == 0 && n >= 3 {
            n_val = 1;
        }
        n_test = n_test.min(n.saturating_sub(1));
        n_val = n_val.min(n.saturating_sub(1 + n_test));
        for (k, &i) in idx.iter().enumerate() {
            out[i] = if k < n_test {
                Split::Test
            } else if k < n_test + n_val {
                Split::Val
            } else {
                Split::Train
            };
        }
    }
    out
}

/// The stratum of each item: one per distinct key, numbered in sorted key order.
pub fn strata<K: Ord + Clone>(keys: &[K]) -> Vec<usize> {
    let distinct: BTreeSet<K> = keys.iter().cloned().collect();
    let index: BTreeMap<K, usize> = distinct.into_iter().zip(0..).collect();
    keys.iter().map(|k| index[k]).collect()
}

/// The split of every image an earlier run's `splits/{train,val,test}.csv` lists, by the
/// content hash in their `sha256` column. `dir` is that `splits/` folder or the model
/// folder holding it.
pub fn pinned_splits(dir: &Path) -> Result<HashMap<String, Split>> {
    let dir = if dir.join("splits").is_dir() {
        dir.join("splits")
    } else {
        dir.to_path_buf()
    };
    let mut out = HashMap::new();
    for (name, split) in [
        ("train", Split::Train),
        ("val", Split::Val),
        ("test", Split::Test),
    ] {
        let path = dir.join(format!("{name}.csv"));
        let err = |reason: String| Error::Csv {
            path: path.clone(),
            reason,
        };
        let mut reader = csv::Reader::from_path(&path).map_err(|e| err(e.to_string()))?;
        let headers = reader.headers().map_err(|e| err(e.to_string()))?.clone();
        let col = headers
            .iter()
            .position(|h| h == "sha256")
            .ok_or_else(|| err("no sha256 column: not a facebatch split file".into()))?;
        for record in reader.records() {
            let record = record.map_err(|e| err(e.to_string()))?;
            if let Some(h) = record.get(col).filter(|h| !h.is_empty()) {
                out.insert(h.to_string(), split);
            }
        }
    }
    Ok(out)
}

/// Path of `target` relative to directory `base` (both made absolute first).
pub fn relative_path(target: &Path, base: &Path) -> PathBuf {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .components()
            .fold(PathBuf::new(), |mut acc, c| {
                match c {
                    Component::ParentDir => {
                        acc.pop();
                    }
                    Component::CurDir => {}
                    other => acc.push(other),
                }
                acc
            })
    };
    let (t, b) = (abs(target), abs(base));
    let tc: Vec<_> = t.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &tc[common..] {
        out.push(c);
    }
    out
}

/// Writes a split as a CSV manifest (`path,label,source,sha256,...extra`) usable by `eval`.
pub fn write_manifest(path: &Path, rows: &[(&Sample, &str)]) -> Result<()> {
    let base = path.parent().unwrap_or(Path::new("."));
    let extra_cols: BTreeSet<&str> = rows
        .iter()
        .flat_map(|(s, _)| s.extra.keys().map(String::as_str))
        .filter(|k| !matches!(*k, "path" | "label" | "source" | "sha256"))
        .collect();
    let mut w = csv::Writer::from_path(path).map_err(|e| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut header = vec!["path", "label", "source", "sha256"];
    header.extend(extra_cols.iter().copied());
    let csv_err = |e: csv::Error| Error::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    w.write_record(&header).map_err(csv_err)?;
    for (s, hash) in rows {
        let rel = relative_path(&s.path, base);
        let mut rec = vec![
            rel.to_string_lossy().into_owned(),
            s.label.clone(),
            s.source.clone(),
            hash.to_string(),
        ];
        rec.extend(
            extra_cols
                .iter()
                .map(|k| s.extra.get(*k).cloned().unwrap_or_default()),
        );
        w.write_record(&rec).map_err(csv_err)?;
    }
    w.flush()
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 4 == 0)).collect();
        let spec = SplitSpec {
            val: 0.1,
            test: 0.1,
            seed: 7,
        };
        let none = vec![None; labels.len()];
        let a = stratified_split(&labels, &none, spec);
        let b = stratified_split(&labels, &none, spec);
        assert_eq!(a, b);
        let count = |c: usize, s: Split| {
            labels
                .iter()
                .zip(&a)
                .filter(|(l, x)| **l == c && **x == s)
                .count()
        };
        assert_eq!(count(1, Split::Test), 25);
        assert_eq!(count(0, Split::Test), 75);
        assert_eq!(count(1, Split::Val), 25);
        assert_eq!(count(0, Split::Train), 600);
        let c = stratified_split(&labels, &none, SplitSpec { seed: 8, ..spec });
        assert_ne!(a, c);
    }

    #[test]
    fn tiny_classes_still_get_every_split() {
        let labels = vec![0, 0, 0, 1, 1, 1];
        let s = stratified_split(
            &labels,
            &[None; 6],
            SplitSpec {
                val: 0.1,
                test: 0.1,
                seed: 1,
            },
        );
        for class in 0..2 {
            for split in [Split::Train, Split::Val, Split::Test] {
                assert_eq!(
                    labels
                        .iter()
                        .zip(&s)
                        .filter(|(l, x)| **l == class && **x == split)
                        .count(),
                    1
                );
            }
        }
    }

    #[test]
    fn pinned_items_keep_their_split_and_the_rest_is_stratified_per_stratum() {
        // Stratum 0: 100 pinned to test. Stratum 1 (another source): 200 free.
        let keys: Vec<(&str, usize)> = (0..300)
            .map(|i| if i < 100 { ("old", 0) } else { ("new", 1) })
            .collect();
        let st = strata(&keys);
        let pinned: Vec<Option<Split>> =
            (0..300).map(|i| (i < 100).then_some(Split::Test)).collect();
        let spec = SplitSpec {
            val: 0.1,
            test: 0.1,
            seed: 3,
        };
        let s = stratified_split(&st, &pinned, spec);
        assert!(s[..100].iter().all(|x| *x == Split::Test));
        let count = |x: Split| s[100..].iter().filter(|y| **y == x).count();
        assert_eq!((count(Split::Test), count(Split::Val)), (20, 20));
    }

    #[test]
    fn a_manifest_source_column_names_each_rows_source() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.png", "b.png"] {
            image::RgbImage::new(2, 2).save(dir.path().join(f)).unwrap();
        }
        let csv = dir.path().join("labels.csv");
        std::fs::write(&csv, "path,gender,source\na.png,female,aaf\nb.png,male,\n").unwrap();
        let got = read_source(&Source::Csv {
            path: csv,
            label_column: "gender".into(),
            path_column: "path".into(),
        })
        .unwrap();
        let dir_name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(got[0].source, "aaf");
        // An empty cell falls back to the manifest's own name.
        assert_eq!(got[1].source, dir_name);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/a/b/c.jpg"), Path::new("/a/d")),
            PathBuf::from("../b/c.jpg")
        );
        assert_eq!(
            relative_path(Path::new("/a/b/c.jpg"), Path::new("/a/b")),
            PathBuf::from("c.jpg")
        );
    }
}
