//! The fingerprint index as a file: its columns and metadata, opening and checking one, a
//! cursor over one root's section, and the writer. What the index is for, and how a run
//! uses it, is in the parent module.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use super::{Published, walk_order};
use crate::classify::output::{self, Fingerprint};
use crate::classify::shard::Shard;
use crate::error::{Error, Result};

/// The index's folder under the job's output. Names starting with `_` are skipped by Spark,
/// pyarrow datasets and the listing of parts below.
pub const INDEX_DIR: &str = "_index";
/// The index format this build writes, and the only one it reads.
const FORMAT: &str = "1";
/// Rows per row group, and per batch read: what the index costs in memory, however long.
const ROW_GROUP_ROWS: usize = 8192;
const BATCH_ROWS: usize = 1024;

/// Key-value metadata keys of an index file.
pub mod meta {
    pub const FORMAT: &str = "facebatch.index.format";
    /// `K/N`: the shard whose files the index holds.
    pub const SHARD: &str = "facebatch.index.shard";
    /// JSON `[{"root": .., "first": .., "count": ..}]`: each root's row groups.
    pub const SECTIONS: &str = "facebatch.index.sections";
    /// JSON `[{"part": "dt=../part-...parquet", "run_id": ..}]`: the parts it holds.
    pub const COVERS: &str = "facebatch.index.covers";
}

/// The columns of an index file.
pub(super) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("root", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new(
            "modified",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// One root's rows in an index file: row groups `first..first + count`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Section {
    pub(super) root: String,
    first: usize,
    count: usize,
}

/// A part an index holds: its path under the output (a path key) and the run that wrote it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Cover {
    pub(super) part: String,
    pub(super) run_id: String,
}

/// The index of shard `shard` of the job whose output is `output`. Parquet inside, but not
/// named `.parquet`: the analysts' glob `OUTPUT/*/*.parquet` (DuckDB with
/// `hive_partitioning=true`, which a leading `_` does not stop) must reach only the rows.
pub fn index_path(output: &Path, shard: Shard) -> PathBuf {
    output
        .join(INDEX_DIR)
        .join(format!("seen-{}.{INDEX_EXT}", shard.tag()))
}

/// The file name extension of an index.
pub const INDEX_EXT: &str = "index";

/// Where versions before 0.1.0's issue 30 kept the index: removed when a new one is
/// published (it broke that glob), never read (the parts it covered are read instead, once).
pub fn legacy_index_path(output: &Path, shard: Shard) -> PathBuf {
    output
        .join(INDEX_DIR)
        .join(format!("seen-{}.parquet", shard.tag()))
}

/// An index file, opened: its metadata read and checked.
pub(super) struct Index {
    pub(super) path: PathBuf,
    /// The file as opened: every section is read from it, even if a newer index has been
    /// renamed over `path` since (a run of the same shard for another date).
    file: File,
    meta: ArrowReaderMetadata,
    pub(super) sections: Vec<Section>,
    pub(super) covers: Vec<Cover>,
}

impl Index {
    /// Opens the index at `path`; `None` when there is none.
    pub(super) fn open(path: &Path, shard: Shard) -> Result<Option<Index>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let meta = ArrowReaderMetadata::load(&file, Default::default())
            .map_err(|e| Error::parquet(format!("reading {}", path.display()), e))?;
        let bad = |what: String| Error::Output(format!("{}: {what}", path.display()));
        let kv = |key: &str| {
            meta.metadata()
                .file_metadata()
                .key_value_metadata()
                .and_then(|kvs| kvs.iter().find(|kv| kv.key == key))
                .and_then(|kv| kv.value.clone())
        };
        match kv(meta::FORMAT) {
            Some(f) if f == FORMAT => {}
            other => {
                return Err(bad(format!(
                    "index format {other:?}; this build reads {FORMAT:?}"
                )));
            }
        }
        if kv(meta::SHARD) != Some(shard.to_string()) {
            return Err(bad(format!("not the index of shard {shard}")));
        }
        if meta.schema().fields() != schema().fields() {
            return Err(bad("unexpected columns".into()));
        }
        fn parse<T: serde::de::DeserializeOwned>(path: &Path, key: &str, text: &str) -> Result<T> {
            serde_json::from_str(text).map_err(|e| Error::Json {
                context: format!("reading {key} of {}", path.display()),
                source: e,
            })
        }
        let text = |key: &str| kv(key).ok_or_else(|| bad(format!("no {key}")));
        let sections: Vec<Section> = parse(path, meta::SECTIONS, &text(meta::SECTIONS)?)?;
        let covers: Vec<Cover> = parse(path, meta::COVERS, &text(meta::COVERS)?)?;
        let groups = meta.metadata().num_row_groups();
        let mut roots = HashSet::new();
        for s in &sections {
            if s.first.checked_add(s.count).is_none_or(|end| end > groups)
                || !roots.insert(s.root.as_str())
            {
                return Err(bad(format!(
                    "section {s:?} does not fit its {groups} row groups"
                )));
            }
        }
        Ok(Some(Index {
            path: path.to_path_buf(),
            file,
            meta,
            sections,
            covers,
        }))
    }

    /// The index may be used only while every part it covers is still there, written by
    /// the same run, and no part it does not cover finished before one it does (their
    /// files' order would be unknown).
    pub(super) fn check(&self, relevant: &[&Published]) -> Result<()> {
        let by_rel: HashMap<&str, &Published> =
            relevant.iter().map(|p| (p.rel.as_str(), *p)).collect();
        let mut newest: Option<&str> = None;
        for c in &self.covers {
            let Some(p) = by_rel
                .get(c.part.as_str())
                .filter(|p| p.run_id.as_deref() == Some(c.run_id.as_str()))
            else {
                return Err(Error::Output(format!(
                    "it covers {} of run {}, which is no longer there with its marker",
                    c.part, c.run_id
                )));
            };
            newest = newest.max(p.finished_at.as_deref());
        }
        let covered: HashSet<&str> = self.covers.iter().map(|c| c.part.as_str()).collect();
        for p in relevant {
            if !covered.contains(p.rel.as_str())
                && p.run_id.is_some()
                && let Some(t) = p.finished_at.as_deref()
                && newest.is_some_and(|n| t < n)
            {
                return Err(Error::Output(format!(
                    "{} finished before parts it covers, but it does not cover it",
                    p.rel
                )));
            }
        }
        Ok(())
    }
}

/// A cursor over one section of an index file, batch by batch.
pub(super) struct IndexCursor {
    path: PathBuf,
    root: String,
    /// `None` once the section ended, or the index proved damaged.
    reader: Option<ParquetRecordBatchReader>,
    columns: Option<Columns>,
    i: usize,
    /// The row under the cursor is read and checked.
    ready: bool,
    /// The last path read, to check the order.
    last: Option<String>,
}

/// The columns of a batch of an index file.
struct Columns {
    root: StringArray,
    path: StringArray,
    bytes: UInt64Array,
    modified: TimestampMicrosecondArray,
}

impl Columns {
    fn of(b: &RecordBatch) -> Option<Columns> {
        let col = |i: usize| b.columns().get(i).map(|c| c.as_any());
        Some(Columns {
            root: col(0)?.downcast_ref::<StringArray>()?.clone(),
            path: col(1)?.downcast_ref::<StringArray>()?.clone(),
            bytes: col(2)?.downcast_ref::<UInt64Array>()?.clone(),
            modified: col(3)?.downcast_ref::<TimestampMicrosecondArray>()?.clone(),
        })
    }
}

impl IndexCursor {
    pub(super) fn open(index: &Index, section: &Section) -> Result<IndexCursor> {
        let file = index
            .file
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", index.path.display()), e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, index.meta.clone())
            .with_row_groups((section.first..section.first + section.count).collect())
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::parquet(format!("reading {}", index.path.display()), e))?;
        Ok(IndexCursor {
            path: index.path.clone(),
            root: section.root.clone(),
            reader: Some(reader),
            columns: None,
            i: 0,
            ready: false,
            last: None,
        })
    }

    /// The entry under the cursor; `None` at the end of the section.
    pub(super) fn peek(&mut self) -> Option<(&str, Fingerprint)> {
        if !self.ready {
            self.ready = self.load();
        }
        let c = self.columns.as_ref().filter(|_| self.ready)?;
        let i = self.i;
        Some((c.path.value(i), (c.bytes.value(i), c.modified.value(i))))
    }

    pub(super) fn advance(&mut self) {
        self.i += 1;
        self.ready = false;
    }

    /// Reads the row under the cursor (the next batch when needed) and checks it: not
    /// null, of this root, after the row before. A damaged section ends there, with a
    /// warning: its other files are classified again.
    fn load(&mut self) -> bool {
        loop {
            if self.columns.as_ref().is_some_and(|c| self.i < c.path.len()) {
                break;
            }
            let Some(reader) = self.reader.as_mut() else {
                return false;
            };
            match reader.next() {
                None => {
                    self.reader = None;
                    self.columns = None;
                    return false;
                }
                Some(Ok(b)) => match Columns::of(&b) {
                    Some(c) => (self.columns, self.i) = (Some(c), 0),
                    None => return self.stop("unexpected columns"),
                },
                Some(Err(e)) => return self.stop(&e.to_string()),
            }
        }
        let Some(c) = self.columns.as_ref() else {
            return false;
        };
        let i = self.i;
        if c.root.is_null(i) || c.path.is_null(i) || c.bytes.is_null(i) || c.modified.is_null(i) {
            return self.stop("a null entry");
        }
        if c.root.value(i) != self.root {
            return self.stop("an entry of another root");
        }
        let key = c.path.value(i);
        if self
            .last
            .as_deref()
            .is_some_and(|last| walk_order(key, last) != Ordering::Greater)
        {
            return self.stop("entries out of walk order");
        }
        let last = self.last.get_or_insert_with(String::new);
        last.clear();
        last.push_str(key);
        true
    }

    fn stop(&mut self, error: &str) -> bool {
        tracing::warn!(index = %self.path.display(), root = %self.root, error, "the fingerprint index is damaged: the rest of this root's files are classified again");
        self.reader = None;
        self.columns = None;
        false
    }
}

/// Writes an index file: a temporary file beside its staged name, renamed to it once
/// complete (dropped unfinished, it is removed).
pub(super) struct IndexWriter {
    staged: PathBuf,
    tmp: tempfile::NamedTempFile,
    writer: ArrowWriter<File>,
    shard: Shard,
    covers: Vec<Cover>,
    sections: Vec<Section>,
    /// The section being written.
    section: Option<Section>,
    columns: (
        StringBuilder,
        StringBuilder,
        UInt64Builder,
        TimestampMicrosecondBuilder,
    ),
    pending: usize,
    /// The last path written in this section: each must come after it.
    last: Option<String>,
    rows: u64,
    /// Entries not written because they came out of order (their files are then
    /// classified again by the next run).
    refused: u64,
    failed: Option<Error>,
}

impl IndexWriter {
    pub(super) fn create(staged: PathBuf, shard: Shard, covers: Vec<Cover>) -> Result<IndexWriter> {
        let dir = staged
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".seen-")
            .suffix(".index.tmp")
            .tempfile_in(dir)
            .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", tmp.path().display()), e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("root"), true)
            .build();
        let writer = ArrowWriter::try_new(file, schema(), Some(props))
            .map_err(|e| Error::parquet(format!("opening {}", tmp.path().display()), e))?;
        Ok(IndexWriter {
            staged,
            tmp,
            writer,
            shard,
            covers,
            sections: Vec::new(),
            section: None,
            columns: (
                StringBuilder::new(),
                StringBuilder::new(),
                UInt64Builder::new(),
                TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            ),
            pending: 0,
            last: None,
            rows: 0,
            refused: 0,
            failed: None,
        })
    }

    pub(super) fn start_section(&mut self, root: &str) {
        self.end_section();
        self.section = Some(Section {
            root: root.to_string(),
            first: self.writer.flushed_row_groups().len(),
            count: 0,
        });
        self.last = None;
    }

    /// Ends the section at a row-group boundary, so each root's rows can be read alone.
    fn end_section(&mut self) {
        self.write_batch();
        if let Err(e) = self.writer.flush() {
            self.fail(Error::parquet("writing the fingerprint index", e));
        }
        if let Some(mut s) = self.section.take() {
            s.count = self.writer.flushed_row_groups().len() - s.first;
            if s.count > 0 {
                self.sections.push(s);
            }
        }
    }

    pub(super) fn push(&mut self, key: &str, (bytes, modified): Fingerprint) {
        let Some(section) = self.section.as_ref() else {
            return;
        };
        if self
            .last
            .as_deref()
            .is_some_and(|last| walk_order(key, last) != Ordering::Greater)
        {
            self.refused += 1;
            return;
        }
        let last = self.last.get_or_insert_with(String::new);
        last.clear();
        last.push_str(key);
        let c = &mut self.columns;
        c.0.append_value(&section.root);
        c.1.append_value(key);
        c.2.append_value(bytes);
        c.3.append_value(modified);
        self.pending += 1;
        self.rows += 1;
        if self.pending == BATCH_ROWS {
            self.write_batch();
        }
    }

    fn write_batch(&mut self) {
        if self.pending == 0 || self.failed.is_some() {
            return;
        }
        self.pending = 0;
        let c = &mut self.columns;
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(c.0.finish()),
            Arc::new(c.1.finish()),
            Arc::new(c.2.finish()),
            Arc::new(c.3.finish()),
        ];
        let written = RecordBatch::try_new(schema(), columns)
            .map_err(|e| Error::arrow("building a fingerprint index batch", e))
            .and_then(|b| {
                self.writer
                    .write(&b)
                    .map_err(|e| Error::parquet("writing the fingerprint index", e))
            });
        if let Err(e) = written {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: Error) {
        self.failed.get_or_insert(e);
    }

    /// Writes the metadata and renames the file to its staged name.
    pub(super) fn close(mut self) -> Result<()> {
        self.end_section();
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.refused > 0 {
            tracing::warn!(
                entries = self.refused,
                "entries came out of walk order and were left out of the fingerprint index: their files are classified again"
            );
        }
        let json = |v: serde_json::Result<String>| {
            v.map_err(|e| Error::Json {
                context: "encoding the fingerprint index's metadata".into(),
                source: e,
            })
        };
        for (key, value) in [
            (meta::FORMAT, FORMAT.to_string()),
            (meta::SHARD, self.shard.to_string()),
            (meta::SECTIONS, json(serde_json::to_string(&self.sections))?),
            (meta::COVERS, json(serde_json::to_string(&self.covers))?),
            (output::meta::VERSION, env!("CARGO_PKG_VERSION").to_string()),
        ] {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.to_string(), value));
        }
        let path = self.tmp.path().to_path_buf();
        let file = self
            .writer
            .into_inner()
            .map_err(|e| Error::parquet(format!("closing {}", path.display()), e))?;
        crate::fsutil::set_readable(&file)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        self.tmp
            .persist(&self.staged)
            .map_err(|e| Error::io(format!("renaming into {}", self.staged.display()), e.error))?;
        tracing::debug!(index = %self.staged.display(), entries = self.rows, sections = self.sections.len(), covers = self.covers.len(), "fingerprint index written");
        Ok(())
    }
}
