//! `facebatch report INPUT --out DIR`: an offline HTML review of what a run labelled, read
//! straight from its Parquet (no model runs), with a correction loop.
//!
//! ```text
//! Parquet rows ──▶ select (one pass: summary counts, bounded galleries)
//!              ──▶ thumbs (the aligned crop and a context view per shown face, in parallel)
//!              ──▶ page (index.html, report.js, report.css, data.js)
//! ```
//!
//! The page is static and self-contained: no server, no CDN, no network; it opens from
//! `file://` and the folder can be zipped and mailed. The data is a script (`data.js`), not
//! a fetched JSON file, because browsers refuse `fetch` on `file://`.

pub mod corrections;
pub mod page;
pub mod read;
pub mod select;
pub mod thumbs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::error::Result;

/// Validated settings of one report.
#[derive(Clone, Debug)]
pub struct ReportSettings {
    /// A classify output, a dataset folder or an `eval --predictions` file.
    pub input: PathBuf,
    /// The report folder (created; files in it are replaced).
    pub out: PathBuf,
    /// The most faces shown per gallery (every face of a smaller one).
    pub limit: usize,
    pub seed: u64,
}

/// What a report holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReportSummary {
    pub index: PathBuf,
    pub rows: u64,
    /// Faces with thumbnails on the pages.
    pub shown: usize,
    /// Shown faces whose photo is missing or changed since the run.
    pub missing: usize,
    /// Rows shown in no gallery, because their gallery held more than the limit.
    pub left_out: u64,
    /// The limit that left them out.
    pub limit: usize,
}

/// Builds the report.
pub fn build(s: &ReportSettings) -> Result<ReportSummary> {
    let input = read::open(&s.input)?;
    let limits = select::Limits {
        limit: s.limit,
        seed: s.seed,
    };
    let selected = select::select(&input.labels, limits, |f| read::for_each_row(&input, f))?;
    tracing::info!(
        rows = selected.summary.rows,
        galleries = selected.galleries.len(),
        "rows read"
    );
    fs_err::create_dir_all(&s.out)?;
    // Each shown face once, whatever galleries it is in.
    let mut seen = BTreeSet::new();
    let shown: Vec<&read::FaceRow> = selected
        .galleries
        .values()
        .flatten()
        .filter(|r| seen.insert(r.id))
        .collect();
    let spec = crop_spec(&input.metadata);
    let thumbs = thumbs::write_all(&shown, &spec, &s.out)?;
    let missing = thumbs
        .values()
        .filter(|t| matches!(t, thumbs::Thumb::Missing | thumbs::Thumb::Changed))
        .count();
    let rows: BTreeMap<u64, (&read::FaceRow, thumbs::Thumb)> = shown
        .iter()
        .map(|r| {
            (
                r.id,
                (
                    *r,
                    thumbs
                        .get(&r.id)
                        .copied()
                        .unwrap_or(thumbs::Thumb::Unreadable),
                ),
            )
        })
        .collect();
    let index = page::write(s, &input, &selected, &rows)?;
    corrections::ensure_file(&s.out)?;
    Ok(ReportSummary {
        index,
        rows: selected.summary.rows,
        shown: rows.len(),
        missing,
        left_out: selected.left_out_rows(),
        limit: s.limit,
    })
}

/// The alignment the run used (from the output's `facebatch.faces`, else its model card),
/// so the crop shown is the crop the model saw; the default model's otherwise.
fn crop_spec(md: &BTreeMap<String, String>) -> thumbs::CropSpec {
    let from = |key: &str, path: &[&str]| -> Option<crate::vision::align::AlignSpec> {
        let mut v: serde_json::Value = serde_json::from_str(md.get(key)?).ok()?;
        for p in path {
            v = match p.parse::<usize>() {
                Ok(i) => v.get(i)?.clone(),
                Err(_) => v.get(p)?.clone(),
            };
        }
        // An ensemble records one alignment per member: the first is the primary's.
        if let serde_json::Value::Array(views) = v {
            v = views.into_iter().next()?;
        }
        serde_json::from_value(v).ok()
    };
    let align = from("facebatch.faces", &["alignment"])
        .or_else(|| from("facebatch.model_card", &["alignment"]))
        .or_else(|| from("facebatch.model_card", &["members", "0", "alignment"]))
        .or_else(|| {
            let model = PathBuf::from(md.get("facebatch.model_path")?);
            let card = crate::model::card::ModelCard::load(
                &model.with_file_name(crate::model::card::CARD_FILE),
            )
            .ok()?;
            card.primary().alignment.clone()
        });
    match align {
        Some(a) => thumbs::CropSpec {
            template: a.template,
            width: a.width,
            height: a.height,
        },
        None => thumbs::CropSpec {
            template: crate::vision::align::template(64, 64, crate::vision::align::DEFAULT_ZOOM),
            width: 64,
            height: 64,
        },
    }
}
