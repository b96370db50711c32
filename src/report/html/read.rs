//! Reading what a report shows, straight from Parquet: a classify output file, a dataset
//! folder (every finished part, partitions included), or an `eval --predictions` file.
//! Rows are streamed batch by batch into one [`FaceRow`] each; nothing else is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, Float32Array, Int32Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
};

use crate::classify::output;
use crate::error::{Error, Result};

/// What kind of file the rows come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `facebatch classify` output (file or dataset folder).
    Classify,
    /// `facebatch eval --predictions`: rows carry the true label.
    Predictions,
}

/// One row of the input, whatever its kind.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FaceRow {
    /// Position in the input, from 0: the row's id on the page.
    pub id: u64,
    /// The photo as the run recorded it (`root`/`path`, or the manifest path).
    pub path: String,
    /// Where the photo is read from now.
    #[serde(skip)]
    pub file: PathBuf,
    pub face_index: Option<i32>,
    pub status: String,
    pub error: Option<String>,
    /// The predicted label.
    pub label: Option<String>,
    /// The true label (eval predictions only).
    pub truth: Option<String>,
    pub confidence: Option<f32>,
    /// Probabilities in label order (empty on error rows).
    pub probs: Vec<f32>,
    pub crop: Option<String>,
    pub det_score: Option<f32>,
    #[serde(rename = "box")]
    pub bbox: Option<[f32; 4]>,
    pub landmarks: Option<Vec<f32>>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: Option<u64>,
    pub modified: Option<i64>,
    /// Columns to group and filter by (`source`, `age`, ... and `root`).
    pub groups: BTreeMap<String, String>,
}

/// The input: its files, kind, labels and metadata.
#[derive(Debug)]
pub struct Input {
    pub kind: Kind,
    pub files: Vec<PathBuf>,
    pub labels: Vec<String>,
    /// Key-value metadata of the first file (run id, model, times, settings).
    pub metadata: BTreeMap<String, String>,
    /// Group columns (manifest columns of predictions; `root` of classify outputs).
    pub group_columns: Vec<String>,
}

/// Finds the Parquet files of `input`: the file itself, or every finished part under a
/// dataset folder (names starting with `_` or `.` are staging and markers, never read).
pub fn files(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        return Err(Error::InvalidOption(format!(
            "report input {} does not exist",
            input.display()
        )));
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(input)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !e.file_name().to_string_lossy().starts_with(['_', '.'])
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "parquet"))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::InvalidOption(format!(
            "{} holds no finished Parquet part (DIR/**/*.parquet)",
            input.display()
        )));
    }
    Ok(files)
}

/// Opens `input` and tells what it is, from its schema.
pub fn open(input: &Path) -> Result<Input> {
    let files = files(input)?;
    let first = &files[0];
    let metadata = output::read_metadata(first)?;
    let file = std::fs::File::open(first)
        .map_err(|e| Error::io(format!("opening {}", first.display()), e))?;
    let schema = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::Output(format!("reading {}: {e}", first.display())))?
        .schema()
        .clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let kind = if names.contains(&"root") && names.contains(&"face_index") {
        Kind::Classify
    } else if names.contains(&"predicted") && names.contains(&"correct") {
        Kind::Predictions
    } else {
        return Err(Error::InvalidOption(format!(
            "{} is neither a facebatch classify output nor an eval --predictions file (columns: {})",
            first.display(),
            names.join(", ")
        )));
    };
    let labels: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_prefix("p_"))
        .map(str::to_string)
        .collect();
    let group_columns = match kind {
        Kind::Classify => vec!["root".to_string()],
        Kind::Predictions => names
            .iter()
            .skip_while(|n| **n != "source")
            .map(|n| n.to_string())
            .collect(),
    };
    Ok(Input {
        kind,
        files,
        labels,
        metadata,
        group_columns,
    })
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Option<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
}

fn text(a: Option<&StringArray>, i: usize) -> Option<String> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
}

fn num<T: arrow::datatypes::ArrowPrimitiveType>(
    a: Option<&arrow::array::PrimitiveArray<T>>,
    i: usize,
) -> Option<T::Native> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}

/// Streams every row of `input` to `f`, in file and row order.
pub fn for_each_row(input: &Input, base: &Path, mut f: impl FnMut(FaceRow)) -> Result<()> {
    let mut id = 0u64;
    for file in &input.files {
        output::for_each_batch(file, |b| {
            let path = col::<StringArray>(b, "path");
            let root = col::<StringArray>(b, "root");
            let status = col::<StringArray>(b, "status");
            let error = col::<StringArray>(b, "error");
            let (label, truth) = match input.kind {
                Kind::Classify => (col::<StringArray>(b, "label"), None),
                Kind::Predictions => (
                    col::<StringArray>(b, "predicted"),
                    col::<StringArray>(b, "label"),
                ),
            };
            let confidence = col::<Float32Array>(b, "confidence");
            let probs: Vec<Option<&Float32Array>> = input
                .labels
                .iter()
                .map(|l| col::<Float32Array>(b, &format!("p_{l}")))
                .collect();
            let face_index = col::<Int32Array>(b, "face_index");
            let crop = col::<StringArray>(b, "crop");
            let det_score = col::<Float32Array>(b, "det_score");
            let boxes: Vec<Option<&Float32Array>> = ["box_x1", "box_y1", "box_x2", "box_y2"]
                .iter()
                .map(|n| col::<Float32Array>(b, n))
                .collect();
            let landmarks = col::<ListArray>(b, "landmarks");
            let width = col::<UInt32Array>(b, "width");
            let height = col::<UInt32Array>(b, "height");
            let bytes = col::<UInt64Array>(b, "bytes");
            let modified = col::<TimestampMicrosecondArray>(b, "modified");
            let groups: Vec<(&String, Option<&StringArray>)> = input
                .group_columns
                .iter()
                .map(|g| (g, col::<StringArray>(b, g)))
                .collect();
            for i in 0..b.num_rows() {
                let rel = text(path, i).unwrap_or_default();
                let (shown, file) = match (input.kind, text(root, i)) {
                    (Kind::Classify, Some(r)) => {
                        let root_path = crate::fsutil::path_from_key(&r);
                        let file = if root_path.is_file() {
                            root_path
                        } else {
                            root_path.join(crate::fsutil::path_from_key(&rel))
                        };
                        (format!("{r}/{rel}"), file)
                    }
                    _ => {
                        let p = PathBuf::from(&rel);
                        let file = if p.is_absolute() || p.exists() {
                            p
                        } else {
                            base.join(&p)
                        };
                        (rel.clone(), file)
                    }
                };
                let bbox = (0..4)
                    .map(|k| num(boxes[k], i))
                    .collect::<Option<Vec<f32>>>()
                    .map(|v| [v[0], v[1], v[2], v[3]]);
                let lm = landmarks.filter(|l| l.is_valid(i)).and_then(|l| {
                    l.value(i)
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .map(|a| a.values().to_vec())
                });
                f(FaceRow {
                    id,
                    path: shown,
                    file,
                    face_index: num(face_index, i),
                    status: text(status, i).unwrap_or_default(),
                    error: text(error, i),
                    label: text(label, i),
                    truth: text(truth, i),
                    confidence: num(confidence, i),
                    probs: probs.iter().filter_map(|p| num(*p, i)).collect(),
                    crop: text(crop, i),
                    det_score: num(det_score, i),
                    bbox,
                    landmarks: lm,
                    width: num(width, i),
                    height: num(height, i),
                    bytes: num(bytes, i),
                    modified: num(modified, i),
                    groups: groups
                        .iter()
                        .filter_map(|(g, a)| text(*a, i).map(|v| ((*g).clone(), v)))
                        .collect(),
                });
                id += 1;
            }
            Ok(())
        })?;
    }
    Ok(())
}
