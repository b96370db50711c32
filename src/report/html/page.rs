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

/// What `data.js` starts with; the JSON of [`Data`] follows, then `;`.
const DATA_JS_PREFIX: &str = "window.FACEBATCH_REPORT = ";

/// The report's folder of aligned crops (`faces/ID.png`).
pub const CROPS_DIR: &str = "faces";

/// The JSON that a report's `data.js` holds (what [`write`] wrote there).
pub fn read_data_json(report: &Path) -> Result<String> {
    let path = report.join("data.js");
    let text = fs_err::read_to_string(&path)?;
    text.trim()
        .strip_prefix(DATA_JS_PREFIX)
        .and_then(|t| t.strip_suffix(';'))
        .map(str::to_string)
        .ok_or_else(|| {
            Error::InvalidOption(format!(
                "{} is not a facebatch report's data",
                path.display()
            ))
        })
}

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
    /// An ensemble's members' disagreement ([`FaceRow::disagreement`]), which the page
    /// sorts by.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::read::finite::opt"
    )]
    disagreement: Option<f32>,
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
    /// The report folder, absolute: the corrections name their crops by it, so a
    /// `corrections.csv` saved anywhere trains from anywhere.
    report_dir: String,
    /// What the page keeps its corrections under, in the browser and in `corrections.js`.
    store_key: String,
    /// The most faces shown per gallery, and per gallery how many it left out.
    limit: usize,
    left_out: &'a BTreeMap<String, u64>,
}

/// The key a report's corrections are kept under: its run's id, else its input; a
/// `corrections.js` of another run is not applied.
pub fn store_key(input: &Input, shown_input: &str) -> String {
    format!(
        "facebatch-report:{}",
        input
            .metadata
            .get(crate::classify::output::meta::RUN_ID)
            .map_or(shown_input, String::as_str)
    )
}

/// Writes the page files into `s.out`; returns the path of `index.html`.
pub fn write(
    s: &ReportSettings,
    input: &Input,
    selected: &Selected,
    rows: &BTreeMap<u64, (&FaceRow, Thumb)>,
) -> Result<PathBuf> {
    let shown_input = s.input.display().to_string();
    let data = Data {
        kind: input.kind,
        store_key: store_key(input, &shown_input),
        input: shown_input,
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
            .map(|(row, thumb)| ShownRow {
                row,
                thumb: *thumb,
                disagreement: row.disagreement(),
            })
            .collect(),
        crops_dir: CROPS_DIR,
        report_dir: crate::fsutil::absolute_normal(&s.out)
            .to_string_lossy()
            .into_owned(),
        limit: s.limit,
        left_out: &selected.left_out,
    };
    let json = serde_json::to_string(&data).map_err(|e| Error::Json {
        context: "encoding the report data".into(),
        source: e,
    })?;
    // `</` never appears inside the script, whatever the paths and errors hold.
    let script = format!("{DATA_JS_PREFIX}{};\n", json.replace("</", "<\\/"));
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
