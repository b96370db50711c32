//! The page: `index.html`, `report.css` and `report.js` (compiled into the binary) and
//! `data.js`, which sets `window.FACEBATCH_REPORT` to everything the page shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ReportSettings;
use super::read::{FaceRow, Input, Kind};
use super::select::{Selected, Summary};
use super::thumbs::Thumb;
use crate::error::{Error, Result};

const INDEX_HTML: &str = include_str!("../../../assets/report/index.html");
const REPORT_JS: &str = include_str!("../../../assets/report/report.js");
const REPORT_CSS: &str = include_str!("../../../assets/report/report.css");

/// Metadata keys shown on the summary page.
const SHOWN_METADATA: &[&str] = &[
    "facebatch.version",
    "facebatch.run_id",
    "facebatch.run_status",
    "facebatch.started_at",
    "facebatch.finished_at",
    "facebatch.model_name",
    "facebatch.model_version",
    "facebatch.model_sha256",
    "facebatch.model_path",
    "facebatch.model_precision",
    "facebatch.shard",
    "facebatch.inputs",
    "facebatch.faces",
    "facebatch.temperature",
];

#[derive(Serialize)]
struct ShownRow<'a> {
    #[serde(flatten)]
    row: &'a FaceRow,
    thumb: Thumb,
}

#[derive(Serialize)]
struct Data<'a> {
    kind: Kind,
    input: String,
    generated_at: String,
    labels: &'a [String],
    group_columns: &'a [String],
    metadata: BTreeMap<&'a str, &'a str>,
    summary: &'a Summary,
    /// Gallery key -> row ids, in display order.
    galleries: BTreeMap<&'a str, Vec<u64>>,
    rows: Vec<ShownRow<'a>>,
    /// The alignment crops' folder, for the corrections' `path` column.
    crops_dir: &'static str,
}

/// Writes the page files into `s.out`; returns the path of `index.html`.
pub fn write(
    s: &ReportSettings,
    input: &Input,
    selected: &Selected,
    rows: &BTreeMap<u64, (&FaceRow, Thumb)>,
) -> Result<PathBuf> {
    let data = Data {
        kind: input.kind,
        input: s.input.display().to_string(),
        generated_at: crate::fsutil::now_rfc3339(),
        labels: &input.labels,
        group_columns: &input.group_columns,
        metadata: SHOWN_METADATA
            .iter()
            .filter_map(|k| input.metadata.get(*k).map(|v| (*k, v.as_str())))
            .collect(),
        summary: &selected.summary,
        galleries: selected
            .galleries
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(|r| r.id).collect()))
            .collect(),
        rows: rows
            .values()
            .map(|(row, thumb)| ShownRow { row, thumb: *thumb })
            .collect(),
        crops_dir: "faces",
    };
    let json = serde_json::to_string(&data).map_err(|e| Error::Json {
        context: "encoding the report data".into(),
        source: e,
    })?;
    // `</` never appears inside the script, whatever the paths and errors hold.
    let script = format!(
        "window.FACEBATCH_REPORT = {};\n",
        json.replace("</", "<\\/")
    );
    let out = &s.out;
    put(out, "data.js", script.as_bytes())?;
    put(out, "report.js", REPORT_JS.as_bytes())?;
    put(out, "report.css", REPORT_CSS.as_bytes())?;
    put(out, "index.html", INDEX_HTML.as_bytes())?;
    Ok(out.join("index.html"))
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    crate::fsutil::write_atomic(&dir.join(name), bytes)
}
