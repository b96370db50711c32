//! Sink stage: counts rows, accumulates feature statistics and writes durable part files
//! every `checkpoint_rows` rows, at a file boundary (and whatever is left at the end).

use std::time::Instant;

use tokio::sync::mpsc::Receiver;

use crate::classify::output::PartWriter;
use crate::classify::stats::FeatureStats;
use crate::classify::{Row, StageStats, Status};
use crate::error::Result;

/// What the sink saw.
#[derive(Debug, Default)]
pub struct SinkResult {
    pub stats: StageStats,
    pub ok: u64,
    pub errors: u64,
    /// The first [`crate::classify::FAILED_SHOWN`] files that failed, in the order they came.
    pub failed: Vec<crate::classify::FailedFile>,
    pub no_face: u64,
    /// Files whose rows were all written (what the output holds of this run; an interrupted
    /// run drops the files still in flight before they reach the sink).
    pub files: u64,
    /// Error rows whose cause is the model, not the image (inference failed).
    pub model_errors: u64,
    pub features: FeatureStats,
}

/// Runs the stage until its input closes. A write failure is fatal (returned).
pub fn run(
    mut rx: Receiver<Vec<Row>>,
    mut parts: PartWriter,
    checkpoint_rows: usize,
    progress: crate::progress::Progress,
) -> Result<SinkResult> {
    let mut out = SinkResult {
        stats: StageStats {
            name: "sink",
            ..Default::default()
        },
        ..Default::default()
    };
    let mut pending: Vec<Row> = Vec::with_capacity(checkpoint_rows);
    let mut part_stats = FeatureStats::default();
    let flush = |pending: &mut Vec<Row>,
                 part_stats: &mut FeatureStats,
                 parts: &mut PartWriter|
     -> Result<()> {
        let has_features = pending.iter().any(|r| r.features.is_some());
        parts.write(pending, has_features.then_some(&*part_stats))?;
        pending.clear();
        *part_stats = FeatureStats::default();
        Ok(())
    };
    while let Some(rows) = rx.blocking_recv() {
        let t = Instant::now();
        for row in rows {
            out.stats.items += 1;
            match row.status {
                Status::Error => {
                    out.errors += 1;
                    if row.error_kind == Some(crate::error::ImageErrorKind::Inference) {
                        out.model_errors += 1;
                    }
                    if out.failed.len() < crate::classify::FAILED_SHOWN {
                        out.failed.push(crate::classify::FailedFile {
                            path: match row.path.as_str() {
                                "" => row.root.to_string(),
                                p => format!("{}/{p}", row.root.trim_end_matches('/')),
                            },
                            error: row.error.clone().unwrap_or_default(),
                        });
                    }
                    tracing::debug!(path = %row.path, error = row.error.as_deref().unwrap_or(""), "image failed");
                }
                Status::NoFace => out.no_face += 1,
                Status::Ok => out.ok += 1,
            }
            if row.last_of_file {
                out.files += 1;
                progress.inc(1);
            }
            if let Some(f) = &row.features {
                part_stats.push(f);
                out.features.push(f);
            }
            pending.push(row);
        }
        progress.set_message(match out.errors {
            1 => "1 error".to_string(),
            n => format!("{n} errors"),
        });
        // A part ends only after the last face of a file.
        if pending.len() >= checkpoint_rows && pending.last().is_some_and(|r| r.last_of_file) {
            flush(&mut pending, &mut part_stats, &mut parts)?;
        }
        out.stats.busy += t.elapsed();
    }
    let t = Instant::now();
    flush(&mut pending, &mut part_stats, &mut parts)?;
    out.stats.busy += t.elapsed();
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The sink in-process, on its own channel and a temporary folder: where parts end.
    use std::sync::Arc;

    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::classify::output;
    use crate::classify::{FaceMeta, Row, Status};
    use crate::vision::faces::CropKind;

    /// Face `index` of `count` of photo `photo`.
    fn face(photo: usize, index: u32, count: u32) -> Row {
        Row {
            root: Arc::from("r"),
            path: format!("{photo}.jpg"),
            status: Status::Ok,
            face: Some(FaceMeta {
                index,
                count,
                kind: CropKind::Aligned,
                face: None,
            }),
            last_of_file: index + 1 == count,
            error: None,
            error_kind: None,
            label: Some("female".into()),
            confidence: Some(0.9),
            probs: vec![0.9, 0.1],
            width: Some(10),
            height: Some(10),
            bytes: None,
            modified: None,
            features: None,
            member_probs: Vec::new(),
        }
    }

    /// The (path, face_index) rows of each part file, in part order.
    fn parts(dir: &std::path::Path) -> Vec<Vec<(String, i32)>> {
        output::list_parts(dir)
            .unwrap()
            .iter()
            .map(|p| {
                let file = std::fs::File::open(p).unwrap();
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
                let mut rows = Vec::new();
                for b in reader {
                    let b = b.unwrap();
                    let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
                    let (path, index) = (col("path"), col("face_index"));
                    let path = path
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .unwrap();
                    let index = index
                        .as_any()
                        .downcast_ref::<arrow::array::Int32Array>()
                        .unwrap();
                    for i in 0..b.num_rows() {
                        rows.push((path.value(i).to_string(), index.value(i)));
                    }
                }
                rows
            })
            .collect()
    }

    /// With a checkpoint every 3 rows, a part ends at the first file boundary at or after
    /// 3 rows, never inside a photo, and every row is written once, in order.
    #[test]
    fn a_part_ends_at_a_file_boundary_once_it_holds_checkpoint_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let labels = vec!["female".to_string(), "male".to_string()];
        let dir = tmp.path().join("out.parquet.parts");
        std::fs::create_dir_all(&dir).unwrap();
        let writer =
            PartWriter::open(dir.clone(), output::Columns::plain(&labels), "test").unwrap();
        // Photos with 2, 1, 4, 1, 1 and 2 faces, sent as the infer stage sends them: a
        // batch of rows at a time, one photo's faces split over two batches.
        let photos = [2u32, 1, 4, 1, 1, 2];
        let rows: Vec<Row> = photos
            .iter()
            .enumerate()
            .flat_map(|(p, &n)| (0..n).map(move |i| face(p, i, n)))
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let progress = crate::progress::Progress::new(crate::progress::ProgressMode::Off, 0, "x");
        let sink = std::thread::spawn(move || run(rx, writer, 3, progress));
        let mut rows = rows.into_iter();
        for size in [2, 3, 2, 4] {
            tx.blocking_send(rows.by_ref().take(size).collect())
                .unwrap();
        }
        drop(tx);
        let out = sink.join().unwrap().unwrap();
        assert_eq!(out.ok, 11);
        let got = parts(&dir);
        let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
        // Batches end after rows 2, 5, 7 and 11. Checks run after each batch: at 5 rows
        // the last row is face 1 of 4 of photo 2 (no flush), at 7 rows photo 2 is
        // complete (flush 7), then the rest at the end.
        assert_eq!(sizes, [7, 4], "{got:?}");
        let all: Vec<(String, i32)> = got.into_iter().flatten().collect();
        let expected: Vec<(String, i32)> = photos
            .iter()
            .enumerate()
            .flat_map(|(p, &n)| (0..n as i32).map(move |i| (format!("{p}.jpg"), i)))
            .collect();
        assert_eq!(all, expected);
    }
}
