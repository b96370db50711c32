//! The output contract: Arrow schema, Parquet files, durable part files and resume.
//!
//! Rows are first written to small, complete Parquet part files in `OUT.parts/` (each
//! written to a temporary name and renamed), so a crash or `kill -9` loses at most the rows
//! not yet in a part. At the end, or on Ctrl-C, the parts are merged into `OUT` (written
//! to a temporary name and renamed) and the parts directory is removed.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, Float32Builder, Int32Builder, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::stats::FeatureStats;
use super::{Row, Status};
use crate::error::{Error, Result};

/// Rows per Parquet row group in the final file.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Key-value metadata keys in the output file (their home is `model::meta`, which eval's
/// predictions files write too).
pub use crate::model::meta;

/// What the output's columns depend on: the model's labels, the pooled feature size
/// (`--features`) and the ensemble members whose probabilities are written
/// (`--member-probs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Columns {
    pub labels: Vec<String>,
    pub feature_dim: Option<usize>,
    /// Member names, in card order (empty: no member columns).
    pub members: Vec<String>,
    /// The `model` column's value on every row: `NAME/VERSION` of the model that ran.
    pub model: String,
}

impl Columns {
    /// Columns for `labels` with neither features nor member probabilities.
    pub fn plain(labels: &[String]) -> Columns {
        Columns {
            labels: labels.to_vec(),
            ..Columns::default()
        }
    }
}

/// The Arrow schema of the output's columns.
pub fn schema(c: &Columns) -> SchemaRef {
    let (labels, feature_dim) = (&c.labels, c.feature_dim);
    let mut fields = vec![
        Field::new("root", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("face_index", DataType::Int32, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("error_kind", DataType::Utf8, true),
        Field::new("label", DataType::Utf8, true),
        Field::new("confidence", DataType::Float32, true),
    ];
    for l in labels {
        fields.push(Field::new(format!("p_{l}"), DataType::Float32, true));
    }
    fields.extend([
        Field::new("face_count", DataType::Int32, true),
        Field::new("crop", DataType::Utf8, true),
    ]);
    fields.extend(crate::model::columns::face_fields());
    fields.extend([
        Field::new("width", DataType::UInt32, true),
        Field::new("height", DataType::UInt32, true),
        Field::new("bytes", DataType::UInt64, true),
        Field::new(
            "modified",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("model", DataType::Utf8, false),
    ]);
    if feature_dim.is_some() {
        // A list of exactly `feature_dim` floats per ok row, null on error rows. (A Parquet
        // fixed-size list cannot hold null rows in a way pyarrow reads back, so the fixed
        // length is a documented invariant plus the `facebatch.feature_dim` metadata.)
        fields.push(Field::new(
            "features",
            DataType::List(Arc::new(Field::new("item", DataType::Float32, false))),
            true,
        ));
    }
    for m in &c.members {
        for l in labels {
            fields.push(Field::new(
                crate::model::card::member_column(m, l),
                DataType::Float32,
                true,
            ));
        }
    }
    Arc::new(Schema::new(fields))
}

/// Builds one record batch from rows.
pub fn record_batch(schema: &SchemaRef, c: &Columns, rows: &[Row]) -> Result<RecordBatch> {
    let mut columns = RowColumns::new(rows.len(), c);
    for r in rows {
        columns.push(r, c);
    }
    RecordBatch::try_new(schema.clone(), columns.finish())
        .map_err(|e| Error::arrow("building a record batch", e))
}

/// The column builders of [`schema`], filled one row at a time.
struct RowColumns {
    root: StringBuilder,
    path: StringBuilder,
    face_index: Int32Builder,
    face_count: Int32Builder,
    crop: StringBuilder,
    /// The detection's score, box and landmarks.
    face: crate::model::columns::FaceColumns,
    status: StringBuilder,
    error: StringBuilder,
    error_kind: StringBuilder,
    label: StringBuilder,
    confidence: Float32Builder,
    /// One per label, in label order.
    probs: Vec<Float32Builder>,
    width: UInt32Builder,
    height: UInt32Builder,
    bytes: UInt64Builder,
    modified: TimestampMicrosecondBuilder,
    model: StringBuilder,
    /// With `--features`: the pooled features of each row.
    features: Option<ListBuilder<Float32Builder>>,
    /// With `--member-probs`: one per member and label, in member then label order.
    members: Vec<Float32Builder>,
}

impl RowColumns {
    /// Empty builders for `n` rows.
    fn new(n: usize, c: &Columns) -> RowColumns {
        let (labels, feature_dim) = (c.labels.len(), c.feature_dim);
        let floats = |capacity: usize| {
            ListBuilder::new(Float32Builder::with_capacity(capacity))
                .with_field(Arc::new(Field::new("item", DataType::Float32, false)))
        };
        RowColumns {
            root: StringBuilder::with_capacity(n, n * 8),
            path: StringBuilder::with_capacity(n, n * 32),
            face_index: Int32Builder::with_capacity(n),
            face_count: Int32Builder::with_capacity(n),
            crop: StringBuilder::with_capacity(n, n * 7),
            face: crate::model::columns::FaceColumns::with_capacity(n),
            status: StringBuilder::with_capacity(n, n * 2),
            error: StringBuilder::new(),
            error_kind: StringBuilder::new(),
            label: StringBuilder::new(),
            confidence: Float32Builder::with_capacity(n),
            probs: (0..labels)
                .map(|_| Float32Builder::with_capacity(n))
                .collect(),
            width: UInt32Builder::with_capacity(n),
            height: UInt32Builder::with_capacity(n),
            bytes: UInt64Builder::with_capacity(n),
            modified: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            model: StringBuilder::with_capacity(n, n * c.model.len()),
            features: feature_dim.map(|d| floats(n * d)),
            members: (0..c.members.len() * labels)
                .map(|_| Float32Builder::with_capacity(n))
                .collect(),
        }
    }

    /// Appends row `r`.
    fn push(&mut self, r: &Row, c: &Columns) {
        let feature_dim = c.feature_dim;
        self.root.append_value(&*r.root);
        self.path.append_value(&r.path);
        self.status.append_value(r.status.as_str());
        let face = r.face.as_ref();
        self.face_index.append_option(face.map(|f| f.index as i32));
        self.face_count.append_option(match r.status {
            Status::NoFace => Some(0),
            _ => face.map(|f| f.count as i32),
        });
        self.crop.append_option(face.map(|f| f.kind.as_str()));
        self.face.push(face.and_then(|f| f.face.as_ref()));
        self.error.append_option(r.error.as_deref());
        self.error_kind
            .append_option(r.error_kind.map(|k| k.as_str()));
        self.label.append_option(r.label.as_deref());
        self.confidence.append_option(r.confidence);
        for (i, b) in self.probs.iter_mut().enumerate() {
            b.append_option(r.probs.get(i).copied());
        }
        self.width.append_option(r.width);
        self.height.append_option(r.height);
        self.bytes.append_option(r.bytes);
        self.modified.append_option(r.modified);
        self.model.append_value(&c.model);
        if let (Some(fb), Some(dim)) = (self.features.as_mut(), feature_dim) {
            match &r.features {
                Some(v) if v.len() == dim => {
                    fb.values().append_slice(v);
                    fb.append(true);
                }
                _ => fb.append(false),
            }
        }
        let classes = self.probs.len().max(1);
        for (i, b) in self.members.iter_mut().enumerate() {
            let (m, l) = (i / classes, i % classes);
            b.append_option(r.member_probs.get(m).and_then(|p| p.get(l)).copied());
        }
    }

    /// The finished arrays, in [`schema`] order.
    fn finish(mut self) -> Vec<ArrayRef> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.root.finish()),
            Arc::new(self.path.finish()),
            Arc::new(self.face_index.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.error_kind.finish()),
            Arc::new(self.label.finish()),
            Arc::new(self.confidence.finish()),
        ];
        columns.extend(self.probs.iter_mut().map(ArrayBuilder::finish));
        columns.push(Arc::new(self.face_count.finish()));
        columns.push(Arc::new(self.crop.finish()));
        columns.extend(self.face.finish());
        columns.push(Arc::new(self.width.finish()));
        columns.push(Arc::new(self.height.finish()));
        columns.push(Arc::new(self.bytes.finish()));
        columns.push(Arc::new(self.modified.finish()));
        columns.push(Arc::new(self.model.finish()));
        if let Some(mut fb) = self.features {
            columns.push(Arc::new(fb.finish()));
        }
        columns.extend(self.members.iter_mut().map(ArrayBuilder::finish));
        columns
    }
}

fn props(metadata: Vec<KeyValue>) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(metadata))
        .build()
}

fn pq_err(what: &str, path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> Error {
    let msg = format!("{what} {}", path.display());
    move |e| Error::parquet(msg, e)
}

/// The directory holding durable part files for `out`.
pub fn parts_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".parts");
    out.with_file_name(name)
}

/// The feature statistics file for `out`.
pub fn stats_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".features.json");
    out.with_file_name(name)
}

/// Writes durable part files.
pub struct PartWriter {
    dir: PathBuf,
    next: usize,
    schema: SchemaRef,
    columns: Columns,
    parts_id: String,
    /// Where each finished part is also put, for an output on an object store.
    mirror: Option<super::mirror::Mirror>,
}

impl PartWriter {
    /// Opens the parts directory (creating it), numbering after the highest existing part
    /// (so no part is ever replaced, whatever is missing); each part records `parts_id`.
    pub fn open(dir: PathBuf, columns: Columns, parts_id: &str) -> Result<Self> {
        let schema = schema(&columns);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let next = list_parts(&dir)?
            .iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                name.strip_prefix("part-")?
                    .strip_suffix(".parquet")?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            + 1;
        Ok(PartWriter {
            dir,
            next,
            schema,
            columns,
            parts_id: parts_id.to_string(),
            mirror: None,
        })
    }

    /// Puts each finished part on the store too (after it is durable here).
    pub fn mirrored(mut self, mirror: Option<super::mirror::Mirror>) -> Self {
        self.mirror = mirror;
        self
    }

    /// Writes `rows` as one complete part file (temporary name, fsync, rename).
    pub fn write(&mut self, rows: &[Row], stats: Option<&FeatureStats>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let batch = record_batch(&self.schema, &self.columns, rows)?;
        let final_path = self.dir.join(format!("part-{:06}.parquet", self.next));
        let tmp = self.dir.join(format!(".part-{:06}.parquet.tmp", self.next));
        let mut metadata = vec![KeyValue::new(
            meta::PARTS_ID.to_string(),
            self.parts_id.clone(),
        )];
        if let Some(s) = stats {
            metadata.push(KeyValue::new(
                "facebatch.part_feature_stats".to_string(),
                serde_json::to_string(s).map_err(|source| Error::Json {
                    context: "writing a part's feature statistics".into(),
                    source,
                })?,
            ));
        }
        crate::failpoint::hit("part-write")?;
        let file =
            File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let mut w = ArrowWriter::try_new(file, self.schema.clone(), Some(props(metadata)))
            .map_err(pq_err("opening", &tmp))?;
        w.write(&batch).map_err(pq_err("writing", &tmp))?;
        let file = w.into_inner().map_err(pq_err("closing", &tmp))?;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
        crate::failpoint::hit("part-rename")?;
        std::fs::rename(&tmp, &final_path)
            .map_err(|e| Error::io(format!("renaming {}", final_path.display()), e))?;
        if let Some(m) = &self.mirror {
            m.put(&final_path)?;
        }
        self.next += 1;
        Ok(())
    }
}

/// Finished part files in order.
pub fn list_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    parts.sort();
    Ok(parts)
}

/// Reads a Parquet file's key-value metadata.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq_err("reading", path))?;
    Ok(builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default())
}

/// Calls `f` with every record batch of a Parquet file.
pub fn for_each_batch(path: &Path, mut f: impl FnMut(&RecordBatch) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq_err("reading", path))?
        .with_batch_size(8192)
        .build()
        .map_err(pq_err("reading", path))?;
    for batch in reader {
        let batch = batch.map_err(|e| Error::arrow(format!("reading {}", path.display()), e))?;
        f(&batch)?;
    }
    Ok(())
}

/// A file's size and modification time (µs since the Unix epoch) when it was classified:
/// what incremental job runs compare.
pub type Fingerprint = (u64, i64);

/// The files already written to a Parquet file: (root, path) -> their fingerprint when the
/// rows have one.
pub fn done_files(
    path: &Path,
    files: &mut HashMap<(String, String), Option<Fingerprint>>,
) -> Result<()> {
    for_each_file(path, |root, p, fingerprint, _| {
        files.insert((root.to_string(), p.to_string()), fingerprint);
    })
}

/// Calls `f` with the root, path and fingerprint of every row of an output file, and
/// whether it is an error row. The fingerprint is `None` where the row has no size or time
/// (an unreadable file), or the file was written before `modified` existed: such rows are
/// never skipped as unchanged.
pub fn for_each_file(
    path: &Path,
    mut f: impl FnMut(&str, &str, Option<Fingerprint>, bool),
) -> Result<()> {
    for_each_batch(path, |b| {
        let col = |name: &str| {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                .ok_or_else(|| Error::Output(format!("{} has no {name} column", path.display())))
        };
        let (root, p) = (col("root")?, col("path")?);
        let bytes = b.column_by_name("bytes").and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::UInt64Array>()
                .cloned()
        });
        let modified = b.column_by_name("modified").and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .cloned()
        });
        let status = b
            .column_by_name("status")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
        for i in 0..b.num_rows() {
            if !(root.is_valid(i) && p.is_valid(i)) {
                continue;
            }
            let error = status
                .as_ref()
                .is_some_and(|s| s.is_valid(i) && s.value(i) == Status::Error.as_str());
            let fingerprint = match (&bytes, &modified) {
                (Some(b), Some(m)) if b.is_valid(i) && m.is_valid(i) => {
                    Some((b.value(i), m.value(i)))
                }
                _ => None,
            };
            f(root.value(i), p.value(i), fingerprint, error);
        }
        Ok(())
    })
}

/// Row counts of an output file, by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusCounts {
    pub rows: u64,
    /// Files (a photo gives one row per face).
    pub files: u64,
    pub ok: u64,
    pub errors: u64,
    pub no_face: u64,
}

impl StatusCounts {
    fn add(&mut self, b: &RecordBatch) {
        self.rows += b.num_rows() as u64;
        let status = b
            .column_by_name("status")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let face = b
            .column_by_name("face_index")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int32Array>());
        let (Some(status), Some(face)) = (status, face) else {
            return;
        };
        for i in 0..b.num_rows() {
            match status.value(i) {
                "ok" => self.ok += 1,
                "error" => self.errors += 1,
                _ => self.no_face += 1,
            }
            // One row per file carries face 0 or no face at all.
            if !face.is_valid(i) || face.value(i) == 0 {
                self.files += 1;
            }
        }
    }
}

/// Merges `sources` (earlier output and parts, in order) into `out`, atomically, and
/// returns what the merged file holds.
pub fn merge(
    sources: &[PathBuf],
    out: &Path,
    schema: &SchemaRef,
    metadata: Vec<KeyValue>,
) -> Result<StatusCounts> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(&merge_tmp_prefix(out))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    let file = tmp
        .reopen()
        .map_err(|e| Error::io("reopening the temporary output", e))?;
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props(metadata)))
        .map_err(pq_err("opening", tmp.path()))?;
    let mut counts = StatusCounts::default();
    for src in sources {
        for_each_batch(src, |b| {
            if b.schema().fields() != schema.fields() {
                return Err(Error::Output(format!(
                    "{} has a different schema (another model or --features setting)",
                    src.display()
                )));
            }
            counts.add(b);
            w.write(b).map_err(pq_err("writing", out))
        })?;
    }
    crate::failpoint::hit("merge-write")?;
    let file = w.into_inner().map_err(pq_err("closing", out))?;
    crate::fsutil::set_readable(&file)
        .map_err(|e| Error::io(format!("setting permissions of {}", out.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", out.display()), e))?;
    crate::failpoint::hit("merge-rename")?;
    tmp.persist(out)
        .map_err(|e| Error::io(format!("renaming into {}", out.display()), e.error))?;
    crate::fsutil::sync_parent(out);
    Ok(counts)
}

/// The name prefix of `out`'s temporary merge file: `.NAME.merge-`.
fn merge_tmp_prefix(out: &Path) -> String {
    format!(
        ".{}.merge-",
        out.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// Removes temporary merge files of `out` left by a run that crashed while merging. Call
/// only with the output's lock held: no other run can be writing one.
pub fn remove_stale_merges(out: &Path) -> Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = merge_tmp_prefix(out);
    let entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            tracing::debug!(file = %e.path().display(), "removing a crashed run's temporary file");
            std::fs::remove_file(e.path())
                .map_err(|err| Error::io(format!("removing {}", e.path().display()), err))?;
        }
    }
    Ok(())
}

/// Counts the rows of an output file by status.
pub fn count(path: &Path) -> Result<StatusCounts> {
    let mut counts = StatusCounts::default();
    for_each_batch(path, |b| {
        counts.add(b);
        Ok(())
    })?;
    Ok(counts)
}
