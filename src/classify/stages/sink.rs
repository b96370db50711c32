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
