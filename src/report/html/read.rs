//! Reading what a report shows, straight from Parquet: a classify output file, a dataset
//! folder (every finished part, partitions included), or an `eval --predictions` file.
//! Rows are streamed batch by batch into one [`FaceRow`] each; nothing else is loaded.
//!
//! Every file's columns are checked before its rows are read: the ones the report needs must
//! be there, and every column it reads must be of a type it can read (numbers of any integer
//! or float type, text of any string type), else one error names them all. Values are not
//! trusted either: a NaN or infinite number is carried to the page as such
//! ([`finite`]: the strings `"NaN"`, `"Infinity"`, `"-Infinity"` in `data.js`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float32Array, Int32Array, ListArray, PrimitiveArray, RecordBatch,
    StringArray, TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow::compute::can_cast_types;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Float32Type, Schema, TimeUnit, TimestampMicrosecondType,
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
    /// Where the photo is read from now, absolute (the corrections' `photo`).
    #[serde(rename = "photo", serialize_with = "lossy_path")]
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
    #[serde(serialize_with = "finite::opt")]
    pub confidence: Option<f32>,
    /// Probabilities in label order (empty on error rows).
    #[serde(serialize_with = "finite::seq")]
    pub probs: Vec<f32>,
    pub crop: Option<String>,
    #[serde(serialize_with = "finite::opt")]
    pub det_score: Option<f32>,
    #[serde(rename = "box", serialize_with = "finite::opt_seq")]
    pub bbox: Option<[f32; 4]>,
    #[serde(serialize_with = "finite::opt_seq")]
    pub landmarks: Option<Vec<f32>>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: Option<u64>,
    pub modified: Option<i64>,
    /// Columns to group and filter by (`source`, `age`, ... and `root`).
    pub groups: BTreeMap<String, String>,
    /// An ensemble's members' probabilities of each label, by member (outputs written with
    /// `classify --member-probs`, and eval predictions of an ensemble).
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "finite::map"
    )]
    pub members: BTreeMap<String, Vec<f32>>,
}

/// A path as text (a name that is not UTF-8 with its bad bytes replaced: the page only
/// shows it and names it in corrections).
fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// Numbers as the page reads them: a finite one as a JSON number, NaN and the infinities
/// as the strings `"NaN"`, `"Infinity"` and `"-Infinity"` (JSON has no such numbers, and
/// serde_json would write them as `null`, the same as a missing value). The page turns
/// them back with `Number(...)` and shows them as "NaN", "∞", "−∞"; null is "–".
pub mod finite {
    use std::collections::BTreeMap;

    use serde::{Serialize, Serializer};

    /// One number.
    pub struct F(pub f32);

    impl Serialize for F {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let v = self.0;
            if v.is_finite() {
                s.serialize_f32(v)
            } else if v.is_nan() {
                s.serialize_str("NaN")
            } else if v > 0.0 {
                s.serialize_str("Infinity")
            } else {
                s.serialize_str("-Infinity")
            }
        }
    }

    pub fn opt<S: Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
        v.map(F).serialize(s)
    }

    pub fn seq<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| F(*x)))
    }

    pub fn opt_seq<S: Serializer, V: AsRef<[f32]>>(v: &Option<V>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => seq(v.as_ref(), s),
            None => s.serialize_none(),
        }
    }

    pub fn map<S: Serializer>(v: &BTreeMap<String, Vec<f32>>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            v.iter()
                .map(|(k, p)| (k, p.iter().map(|x| F(*x)).collect::<Vec<_>>())),
        )
    }
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

/// Opens `input` and tells what it is, from its schema; refuses one without a column the
/// report reads, or with one of a type it cannot read.
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
    let input = Input {
        kind,
        files,
        labels,
        metadata,
        group_columns,
        members,
    };
    check(&input, &schema, &input.files[0])?;
    Ok(input)
}

/// What a column the report reads must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Text that every row has (`root`, `path`, `status`): a string type, never the all-null
    /// `Null` type.
    Key,
    /// Text: any string type (Utf8, LargeUtf8, Utf8View, or a dictionary of strings).
    Text,
    /// A number: any integer or float type, read as the report's type (probabilities as
    /// float32, sizes as unsigned integers; a value out of range is read as null).
    Number,
    /// A timestamp of any unit and time zone.
    Time,
    /// A list of numbers (`landmarks`).
    NumberList,
    /// A group column: anything that reads as text (strings, numbers, booleans).
    Group,
}

impl Want {
    fn describe(self) -> &'static str {
        match self {
            Want::Key | Want::Text => "a string (Utf8, LargeUtf8 or Utf8View)",
            Want::Number => "a number (any integer or float type)",
            Want::Time => "a timestamp",
            Want::NumberList => "a list of numbers",
            Want::Group => "a value that reads as text",
        }
    }

    fn accepts(self, t: &DataType) -> bool {
        let string =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        let number = |t: &DataType| t.is_integer() || t.is_floating();
        match (self, t) {
            (Want::Key, _) => string(t) || matches!(t, DataType::Dictionary(_, v) if string(v)),
            (_, DataType::Null) => true,
            (Want::Text, _) => Want::Key.accepts(t),
            (Want::Number, _) => number(t),
            (Want::Time, DataType::Timestamp(_, _)) => true,
            (Want::Time, _) => false,
            (
                Want::NumberList,
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _),
            ) => number(f.data_type()) || f.data_type() == &DataType::Null,
            (Want::NumberList, _) => false,
            (Want::Group, _) => can_cast_types(t, &DataType::Utf8),
        }
    }
}

/// The columns a report of `input` reads, each with what it must hold and whether it must
/// be there.
fn wanted(input: &Input) -> Vec<(String, Want, bool)> {
    let mut w: Vec<(String, Want, bool)> = Vec::new();
    let mut add =
        |name: &str, want: Want, required: bool| w.push((name.to_string(), want, required));
    match input.kind {
        Kind::Classify => {
            add("root", Want::Key, true);
            add("path", Want::Key, true);
            add("status", Want::Key, true);
            add("face_index", Want::Number, true);
            add("label", Want::Text, true);
        }
        Kind::Predictions => {
            add("path", Want::Key, true);
            add("status", Want::Key, true);
            add("predicted", Want::Text, true);
            add("label", Want::Text, true);
            add("face_index", Want::Number, false);
        }
    }
    add("confidence", Want::Number, true);
    for l in &input.labels {
        add(&format!("p_{l}"), Want::Number, true);
    }
    for n in ["error", "error_kind", "crop"] {
        add(n, Want::Text, false);
    }
    for n in [
        "det_score",
        "box_x1",
        "box_y1",
        "box_x2",
        "box_y2",
        "width",
        "height",
        "bytes",
    ] {
        add(n, Want::Number, false);
    }
    add("landmarks", Want::NumberList, false);
    add("modified", Want::Time, false);
    for m in &input.members {
        for l in &input.labels {
            add(&crate::model::card::member_column(m, l), Want::Number, true);
        }
    }
    if input.kind == Kind::Predictions {
        for g in &input.group_columns {
            add(g, Want::Group, false);
        }
    }
    w
}

/// Checks that `schema` (of `file`) holds every column a report of `input` reads, each of
/// a type it can read: one error naming every column that is missing or of another type.
fn check(input: &Input, schema: &Schema, file: &Path) -> Result<()> {
    let mut problems = Vec::new();
    if input.labels.is_empty() {
        problems.push(
            "no probability column p_<label>, expected one per label, each a number".to_string(),
        );
    }
    for (name, want, required) in wanted(input) {
        match schema.field_with_name(&name) {
            Ok(f) if want.accepts(f.data_type()) => {}
            Ok(f) => problems.push(format!(
                "column \"{name}\" is {}, expected {}",
                f.data_type(),
                want.describe()
            )),
            Err(_) if required => problems.push(format!(
                "column \"{name}\" is missing, expected {}",
                want.describe()
            )),
            Err(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::ReportColumns {
        path: file.to_path_buf(),
        problems: problems.join("; "),
    })
}

/// Column `name` of `b` cast to `to` (`None` where the file has no such column).
fn cast_col(b: &RecordBatch, name: &str, to: &DataType, file: &Path) -> Result<Option<ArrayRef>> {
    let Some(c) = b.column_by_name(name) else {
        return Ok(None);
    };
    if c.data_type() == to {
        return Ok(Some(c.clone()));
    }
    arrow::compute::cast(c, to).map(Some).map_err(|e| {
        Error::arrow(
            format!("{}: reading column \"{name}\" as {to}", file.display()),
            e,
        )
    })
}

fn strings(b: &RecordBatch, name: &str, file: &Path) -> Result<Option<StringArray>> {
    Ok(cast_col(b, name, &DataType::Utf8, file)?.map(|a| a.as_string::<i32>().clone()))
}

fn numbers<T: ArrowPrimitiveType>(
    b: &RecordBatch,
    name: &str,
    file: &Path,
) -> Result<Option<PrimitiveArray<T>>> {
    Ok(cast_col(b, name, &T::DATA_TYPE, file)?.map(|a| a.as_primitive::<T>().clone()))
}

fn text(a: Option<&StringArray>, i: usize) -> Option<String> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_string())
}

fn num<T: ArrowPrimitiveType>(a: Option<&PrimitiveArray<T>>, i: usize) -> Option<T::Native> {
    a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
}

/// Where the relative photo paths of `file` resolve from: the folder its run recorded
/// (`facebatch.base`, the run's working directory), else the working directory, as before
/// the key existed (outputs of older versions recorded paths relative to where they ran).
pub fn base_of(file: &Path) -> Result<PathBuf> {
    let md = output::read_metadata(file)?;
    Ok(match md.get(output::meta::BASE).filter(|b| !b.is_empty()) {
        Some(b) => crate::fsutil::path_from_key(b),
        None => crate::fsutil::absolute_normal(Path::new(".")),
    })
}

/// Streams every row of `input` to `f`, in file and row order. A file without a column the
/// report reads, or with one of a type it cannot read, is refused before any of its rows.
/// Each file's relative photo paths resolve from its own [`base_of`], so a report read
/// from any folder, of a dataset written by runs in several folders, finds every photo.
pub fn for_each_row(input: &Input, mut f: impl FnMut(FaceRow)) -> Result<()> {
    let mut id = 0u64;
    for file in &input.files {
        let base = base_of(file)?;
        let base = base.as_path();
        output::for_each_batch(file, |b| {
            let columns = Columns::of(b, input, file)?;
            for i in 0..b.num_rows() {
                f(columns.row(i, id, base));
                id += 1;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The columns of one record batch that a [`FaceRow`] reads, cast to the types it reads
/// them as (absent ones are `None`).
struct Columns<'a> {
    kind: Kind,
    path: Option<StringArray>,
    root: Option<StringArray>,
    status: Option<StringArray>,
    error: Option<StringArray>,
    error_kind: Option<StringArray>,
    /// The predicted label.
    label: Option<StringArray>,
    /// The true label (eval predictions only).
    truth: Option<StringArray>,
    confidence: Option<Float32Array>,
    probs: Vec<Option<Float32Array>>,
    face_index: Option<Int32Array>,
    crop: Option<StringArray>,
    det_score: Option<Float32Array>,
    boxes: Vec<Option<Float32Array>>,
    landmarks: Option<ListArray>,
    width: Option<UInt32Array>,
    height: Option<UInt32Array>,
    bytes: Option<UInt64Array>,
    modified: Option<TimestampMicrosecondArray>,
    groups: Vec<(&'a String, Option<StringArray>)>,
    /// Per member, its probability column of each label.
    members: Vec<(&'a String, Vec<Option<Float32Array>>)>,
}

impl<'a> Columns<'a> {
    /// Finds the columns of `b` (a batch of `file`), named as files of `input`'s kind name
    /// them, after checking their names and types.
    fn of(b: &RecordBatch, input: &'a Input, file: &Path) -> Result<Columns<'a>> {
        check(input, &b.schema(), file)?;
        let (label, truth) = match input.kind {
            Kind::Classify => (strings(b, "label", file)?, None),
            Kind::Predictions => (strings(b, "predicted", file)?, strings(b, "label", file)?),
        };
        let f32s = |names: &mut dyn Iterator<Item = String>| -> Result<Vec<Option<Float32Array>>> {
            names.map(|n| numbers::<Float32Type>(b, &n, file)).collect()
        };
        let modified = match b
            .schema()
            .field_with_name("modified")
            .map(|f| f.data_type().clone())
        {
            Ok(DataType::Timestamp(_, tz)) => cast_col(
                b,
                "modified",
                &DataType::Timestamp(TimeUnit::Microsecond, tz),
                file,
            )?
            .map(|a| a.as_primitive::<TimestampMicrosecondType>().clone()),
            _ => None,
        };
        let landmarks = cast_col(
            b,
            "landmarks",
            &DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            file,
        )?
        .map(|a| a.as_list::<i32>().clone());
        Ok(Columns {
            kind: input.kind,
            path: strings(b, "path", file)?,
            root: strings(b, "root", file)?,
            status: strings(b, "status", file)?,
            error: strings(b, "error", file)?,
            error_kind: strings(b, "error_kind", file)?,
            label,
            truth,
            confidence: numbers(b, "confidence", file)?,
            probs: f32s(&mut input.labels.iter().map(|l| format!("p_{l}")))?,
            face_index: numbers(b, "face_index", file)?,
            crop: strings(b, "crop", file)?,
            det_score: numbers(b, "det_score", file)?,
            boxes: f32s(
                &mut ["box_x1", "box_y1", "box_x2", "box_y2"]
                    .iter()
                    .map(|n| n.to_string()),
            )?,
            landmarks,
            width: numbers(b, "width", file)?,
            height: numbers(b, "height", file)?,
            bytes: numbers(b, "bytes", file)?,
            modified,
            groups: input
                .group_columns
                .iter()
                .map(|g| Ok((g, strings(b, g, file)?)))
                .collect::<Result<_>>()?,
            members: input
                .members
                .iter()
                .map(|m| {
                    let columns = f32s(
                        &mut input
                            .labels
                            .iter()
                            .map(|l| crate::model::card::member_column(m, l)),
                    )?;
                    Ok((m, columns))
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Row `i` as the page's row `id`; relative photo paths resolve against `base` (an
    /// absolute folder).
    fn row(&self, i: usize, id: u64, base: &Path) -> FaceRow {
        let (path, file) = self.photo(i, base);
        let bbox = (0..4)
            .map(|k| num(self.boxes[k].as_ref(), i))
            .collect::<Option<Vec<f32>>>()
            .map(|v| [v[0], v[1], v[2], v[3]]);
        let landmarks = self
            .landmarks
            .as_ref()
            .filter(|l| l.is_valid(i))
            .and_then(|l| {
                l.value(i)
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .map(|a| a.values().to_vec())
            });
        FaceRow {
            id,
            path,
            file,
            face_index: num(self.face_index.as_ref(), i),
            status: text(self.status.as_ref(), i).unwrap_or_default(),
            error: text(self.error.as_ref(), i),
            error_kind: text(self.error_kind.as_ref(), i),
            label: text(self.label.as_ref(), i),
            truth: text(self.truth.as_ref(), i),
            confidence: num(self.confidence.as_ref(), i),
            probs: self
                .probs
                .iter()
                .filter_map(|p| num(p.as_ref(), i))
                .collect(),
            crop: text(self.crop.as_ref(), i),
            det_score: num(self.det_score.as_ref(), i),
            bbox,
            landmarks,
            width: num(self.width.as_ref(), i),
            height: num(self.height.as_ref(), i),
            bytes: num(self.bytes.as_ref(), i),
            modified: num(self.modified.as_ref(), i),
            groups: self
                .groups
                .iter()
                .filter_map(|(g, a)| text(a.as_ref(), i).map(|v| ((*g).clone(), v)))
                .collect(),
            members: self
                .members
                .iter()
                .filter_map(|(m, cols)| {
                    let p: Option<Vec<f32>> = cols.iter().map(|c| num(c.as_ref(), i)).collect();
                    p.map(|p| ((*m).clone(), p))
                })
                .collect(),
        }
    }

    /// Row `i`'s photo: as the run recorded it (shown on the page), and where it is read
    /// from now.
    fn photo(&self, i: usize, base: &Path) -> (String, PathBuf) {
        let rel = text(self.path.as_ref(), i).unwrap_or_default();
        let is_url = |t: &str| crate::remote::ObjectUrl::parse(t).is_some();
        match (self.kind, text(self.root.as_ref(), i)) {
            // A manifest's URL, or an object of a store's prefix: read from the store.
            (Kind::Classify, _) if is_url(&rel) => (rel.clone(), PathBuf::from(rel)),
            (Kind::Classify, Some(r)) if is_url(&r) => {
                let file = if r.ends_with('/') {
                    format!("{r}{rel}")
                } else {
                    r.clone()
                };
                (file.clone(), PathBuf::from(file))
            }
            (Kind::Classify, Some(r)) => {
                let root_path = base.join(crate::fsutil::path_from_key(&r));
                let manifest = root_path.is_file()
                    && crate::classify::Input::parse(root_path.as_os_str())
                        .is_ok_and(|i| matches!(i, crate::classify::Input::Manifest(_)));
                let file = if manifest {
                    // A manifest's path entry: relative to the manifest.
                    root_path
                        .parent()
                        .unwrap_or(Path::new(""))
                        .join(crate::fsutil::path_from_key(&rel))
                } else if root_path.is_file() {
                    root_path
                } else {
                    root_path.join(crate::fsutil::path_from_key(&rel))
                };
                (format!("{r}/{rel}"), file)
            }
            _ => {
                let file = base.join(&rel);
                (rel, file)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_of_any_width_are_accepted_and_nothing_else() {
        use DataType as T;
        let dict = T::Dictionary(Box::new(T::Int32), Box::new(T::Utf8));
        let list = |t: T| T::List(Arc::new(Field::new("item", t, true)));
        for t in [
            T::Float16,
            T::Float32,
            T::Float64,
            T::Int8,
            T::Int64,
            T::UInt64,
            T::Null,
        ] {
            assert!(Want::Number.accepts(&t), "{t}");
        }
        for t in [T::Utf8, T::Boolean, T::Date32, list(T::Float32)] {
            assert!(!Want::Number.accepts(&t), "{t}");
        }
        for t in [T::Utf8, T::LargeUtf8, T::Utf8View, dict.clone()] {
            assert!(Want::Key.accepts(&t) && Want::Text.accepts(&t), "{t}");
        }
        assert!(!Want::Key.accepts(&T::Null) && Want::Text.accepts(&T::Null));
        assert!(!Want::Text.accepts(&T::Float32));
        assert!(Want::NumberList.accepts(&list(T::Float64)));
        assert!(!Want::NumberList.accepts(&list(T::Utf8)));
        assert!(Want::Time.accepts(&T::Timestamp(TimeUnit::Nanosecond, None)));
        assert!(!Want::Time.accepts(&T::Int64));
    }

    #[test]
    fn finite_numbers_stay_numbers_and_the_others_are_named() {
        let row = FaceRow {
            confidence: Some(f32::NAN),
            det_score: Some(0.5),
            probs: vec![f32::INFINITY, f32::NEG_INFINITY],
            bbox: Some([1.0, f32::NAN, 3.0, 4.0]),
            ..Default::default()
        };
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(v["confidence"], "NaN");
        assert_eq!(v["det_score"], 0.5);
        assert_eq!(v["probs"], serde_json::json!(["Infinity", "-Infinity"]));
        assert_eq!(v["box"], serde_json::json!([1.0, "NaN", 3.0, 4.0]));
        assert!(v["landmarks"].is_null());
    }
}
