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
    /// The output's `error_kind` (`decode`, `too_large`, …); absent in outputs written
    /// before the column existed and in eval predictions.
    pub error_kind: Option<String>,
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
    /// An ensemble's members' probabilities of each label, by member (outputs written with
    /// `classify --member-probs`, and eval predictions of an ensemble).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, Vec<f32>>,
}

impl FaceRow {
    /// How far the members are apart: the largest difference between two members'
    /// probabilities of one label (0: they agree; `None` without member columns).
    pub fn disagreement(&self) -> Option<f32> {
        if self.members.len() < 2 {
            return None;
        }
        let classes = self.members.values().map(Vec::len).min().unwrap_or(0);
        (0..classes)
            .map(|l| {
                let ps = self.members.values().map(|p| p[l]);
                let hi = ps.clone().fold(f32::MIN, f32::max);
                let lo = ps.fold(f32::MAX, f32::min);
                hi - lo
            })
            .filter(|d| d.is_finite())
            .reduce(f32::max)
    }
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
    /// Ensemble members with probability columns (`member_<name>_p_<label>`), in column
    /// order.
    pub members: Vec<String>,
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
        .map_err(|e| Error::parquet(format!("reading {}", first.display()), e))?
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
    let members: Vec<String> = match labels.first() {
        Some(first) => names
            .iter()
            .filter_map(|n| {
                n.strip_prefix("member_")
                    .and_then(|rest| rest.strip_suffix(&format!("_p_{first}")))
            })
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    let group_columns = match kind {
        Kind::Classify => vec!["root".to_string()],
        Kind::Predictions => names
            .iter()
            .skip_while(|n| **n != "source")
            .filter(|n| !n.starts_with("member_"))
            .map(|n| n.to_string())
            .collect(),
    };
    Ok(Input {
        kind,
        files,
        labels,
        metadata,
        group_columns,
        members,
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
            let columns = Columns::of(b, input);
            for i in 0..b.num_rows() {
                f(columns.row(i, id, base));
                id += 1;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The columns of one record batch that a [`FaceRow`] reads (absent ones are `None`).
struct Columns<'a> {
    kind: Kind,
    path: Option<&'a StringArray>,
    root: Option<&'a StringArray>,
    status: Option<&'a StringArray>,
    error: Option<&'a StringArray>,
    error_kind: Option<&'a StringArray>,
    /// The predicted label.
    label: Option<&'a StringArray>,
    /// The true label (eval predictions only).
    truth: Option<&'a StringArray>,
    confidence: Option<&'a Float32Array>,
    probs: Vec<Option<&'a Float32Array>>,
    face_index: Option<&'a Int32Array>,
    crop: Option<&'a StringArray>,
    det_score: Option<&'a Float32Array>,
    boxes: Vec<Option<&'a Float32Array>>,
    landmarks: Option<&'a ListArray>,
    width: Option<&'a UInt32Array>,
    height: Option<&'a UInt32Array>,
    bytes: Option<&'a UInt64Array>,
    modified: Option<&'a TimestampMicrosecondArray>,
    groups: Vec<(&'a String, Option<&'a StringArray>)>,
    /// Per member, its probability column of each label.
    members: Vec<(&'a String, Vec<Option<&'a Float32Array>>)>,
}

impl<'a> Columns<'a> {
    /// Finds the columns of `b`, named as files of `input`'s kind name them.
    fn of(b: &'a RecordBatch, input: &'a Input) -> Columns<'a> {
        let (label, truth) = match input.kind {
            Kind::Classify => (col::<StringArray>(b, "label"), None),
            Kind::Predictions => (
                col::<StringArray>(b, "predicted"),
                col::<StringArray>(b, "label"),
            ),
        };
        Columns {
            kind: input.kind,
            path: col(b, "path"),
            root: col(b, "root"),
            status: col(b, "status"),
            error: col(b, "error"),
            error_kind: col(b, "error_kind"),
            label,
            truth,
            confidence: col(b, "confidence"),
            probs: input
                .labels
                .iter()
                .map(|l| col::<Float32Array>(b, &format!("p_{l}")))
                .collect(),
            face_index: col(b, "face_index"),
            crop: col(b, "crop"),
            det_score: col(b, "det_score"),
            boxes: ["box_x1", "box_y1", "box_x2", "box_y2"]
                .iter()
                .map(|n| col::<Float32Array>(b, n))
                .collect(),
            landmarks: col(b, "landmarks"),
            width: col(b, "width"),
            height: col(b, "height"),
            bytes: col(b, "bytes"),
            modified: col(b, "modified"),
            groups: input
                .group_columns
                .iter()
                .map(|g| (g, col::<StringArray>(b, g)))
                .collect(),
            members: input
                .members
                .iter()
                .map(|m| {
                    let columns = input
                        .labels
                        .iter()
                        .map(|l| col::<Float32Array>(b, &crate::model::card::member_column(m, l)))
                        .collect();
                    (m, columns)
                })
                .collect(),
        }
    }

    /// Row `i` as the page's row `id`; relative photo paths resolve against `base`.
    fn row(&self, i: usize, id: u64, base: &Path) -> FaceRow {
        let (path, file) = self.photo(i, base);
        let bbox = (0..4)
            .map(|k| num(self.boxes[k], i))
            .collect::<Option<Vec<f32>>>()
            .map(|v| [v[0], v[1], v[2], v[3]]);
        let landmarks = self.landmarks.filter(|l| l.is_valid(i)).and_then(|l| {
            l.value(i)
                .as_any()
                .downcast_ref::<Float32Array>()
                .map(|a| a.values().to_vec())
        });
        FaceRow {
            id,
            path,
            file,
            face_index: num(self.face_index, i),
            status: text(self.status, i).unwrap_or_default(),
            error: text(self.error, i),
            error_kind: text(self.error_kind, i),
            label: text(self.label, i),
            truth: text(self.truth, i),
            confidence: num(self.confidence, i),
            probs: self.probs.iter().filter_map(|p| num(*p, i)).collect(),
            crop: text(self.crop, i),
            det_score: num(self.det_score, i),
            bbox,
            landmarks,
            width: num(self.width, i),
            height: num(self.height, i),
            bytes: num(self.bytes, i),
            modified: num(self.modified, i),
            groups: self
                .groups
                .iter()
                .filter_map(|(g, a)| text(*a, i).map(|v| ((*g).clone(), v)))
                .collect(),
            members: self
                .members
                .iter()
                .filter_map(|(m, cols)| {
                    let p: Option<Vec<f32>> = cols.iter().map(|c| num(*c, i)).collect();
                    p.map(|p| ((*m).clone(), p))
                })
                .collect(),
        }
    }

    /// Row `i`'s photo: as the run recorded it (shown on the page), and where it is read
    /// from now.
    fn photo(&self, i: usize, base: &Path) -> (String, PathBuf) {
        let rel = text(self.path, i).unwrap_or_default();
        match (self.kind, text(self.root, i)) {
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
                (rel, file)
            }
        }
    }
}
