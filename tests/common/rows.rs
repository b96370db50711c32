//! The Parquet outputs read back with arrow.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::{Array, Float32Array, Int32Array, RecordBatch, StringArray};

/// A Parquet file's record batches and key-value metadata.
pub fn read_parquet(path: &Path) -> (Vec<RecordBatch>, HashMap<String, String>) {
    let (batches, meta, _) = read_with_schema(path);
    (batches, meta)
}

fn read_with_schema(
    path: &Path,
) -> (
    Vec<RecordBatch>,
    HashMap<String, String>,
    arrow::datatypes::SchemaRef,
) {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .map(|kv| {
            kv.iter()
                .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let schema = builder.schema().clone();
    let batches = builder.build().unwrap().map(|b| b.unwrap()).collect();
    (batches, meta, schema)
}

/// Every row of a Parquet file, in file order, as one record batch; and the file's
/// key-value metadata.
pub fn read_rows(path: &Path) -> (RecordBatch, HashMap<String, String>) {
    let (batches, meta, schema) = read_with_schema(path);
    let rows = arrow::compute::concat_batches(&schema, &batches).unwrap();
    (rows, meta)
}

/// A typed column of a record batch.
pub fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

/// A string column's values, `None` where null.
pub fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = col::<StringArray>(b, name);
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

/// A 32-bit integer column's values, `None` where null.
pub fn i32s(b: &RecordBatch, name: &str) -> Vec<Option<i32>> {
    col::<Int32Array>(b, name).iter().collect()
}

/// A 32-bit float column's values, `None` where null.
pub fn f32s(b: &RecordBatch, name: &str) -> Vec<Option<f32>> {
    col::<Float32Array>(b, name).iter().collect()
}

/// A string column that has a value in every row.
pub fn texts(b: &RecordBatch, name: &str) -> Vec<String> {
    strings(b, name)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.unwrap_or_else(|| panic!("{name} is null in row {i}")))
        .collect()
}

/// Every row's path in a Parquet file, in file order.
pub fn paths(file: &Path) -> Vec<String> {
    texts(&read_rows(file).0, "path")
}

/// Every row's (path, face index) in a Parquet file, in file order.
pub fn path_faces(file: &Path) -> Vec<(String, Option<i32>)> {
    let (b, _) = read_rows(file);
    texts(&b, "path")
        .into_iter()
        .zip(i32s(&b, "face_index"))
        .collect()
}

/// Writes `batch` to `path` with arrow's Parquet writer, as another tool would, keeping the
/// key-value metadata `meta` (as [`read_parquet`] returns it).
pub fn write_parquet(path: &Path, batch: &RecordBatch, meta: HashMap<String, String>) {
    let kv = meta
        .into_iter()
        .filter(|(k, _)| k != "ARROW:schema")
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v))
        .collect();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}
