//! The corrections of a report: what a reviewer said of its faces, as `corrections.csv`
//! (one row per face given a verdict, the aligned crop by absolute path so `train` reads it
//! from any folder) and `corrections.js` (the same choices, which the page loads back).
//!
//! The page writes the CSV in the browser ("Download corrections.csv"); `facebatch report
//! --import FILE --out DIR` takes such a file back into the report folder: it checks every
//! row against the report's faces, names the crops by where the report is now, and writes
//! `DIR/corrections.csv` and `DIR/corrections.js`, so the corrections survive the
//! browser's storage and the page shows them on every machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::labelled::{ALREADY_ALIGNED, NOT_A_FACE};

/// The corrections file `--import` writes into the report folder.
pub const CORRECTIONS_CSV: &str = "corrections.csv";
/// The choices the page loads back (`window.FACEBATCH_CORRECTIONS`).
pub const CORRECTIONS_JS: &str = "corrections.js";
/// What `corrections.js` assigns: the imported choices, or `null`.
const JS_PREFIX: &str = "window.FACEBATCH_CORRECTIONS = ";
/// `corrections.js` of a report without imported corrections.
const NONE_JS: &str = "window.FACEBATCH_CORRECTIONS = null;\n";

/// The page reads its imported corrections from corrections.js: none yet. One that
/// `report --import` wrote is kept (it names its run; the page applies it only to it).
pub fn ensure_file(report: &Path) -> Result<()> {
    let path = report.join(CORRECTIONS_JS);
    if path.exists() {
        return Ok(());
    }
    crate::fsutil::write_atomic(&path, NONE_JS.as_bytes())
}

/// The columns of `corrections.csv`, in order (the page writes the same).
pub const COLUMNS: [&str; 10] = [
    "path",
    "label",
    "verdict",
    "id",
    "photo",
    "face_index",
    "box",
    "model_label",
    "model_confidence",
    ALREADY_ALIGNED,
];

/// What a reviewer said of a face.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Another label than the model's.
    Corrected,
    /// The model's own label: checked, not a correction.
    Confirmed,
    /// Not a face (left out by `train`).
    NotAFace,
}

impl Verdict {
    /// The verdict of choosing `label` for a face the model labelled `model_label`.
    pub fn of(label: &str, model_label: Option<&str>) -> Verdict {
        if label == NOT_A_FACE {
            Verdict::NotAFace
        } else if Some(label) == model_label {
            Verdict::Confirmed
        } else {
            Verdict::Corrected
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Corrected => "corrected",
            Verdict::Confirmed => "confirmed",
            Verdict::NotAFace => NOT_A_FACE,
        }
    }
}

/// What an import took in.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Imported {
    /// The corrections file written (`DIR/corrections.csv`).
    pub csv: PathBuf,
    pub corrected: usize,
    pub confirmed: usize,
    pub not_a_face: usize,
}

/// A face of the report as `data.js` holds it.
#[derive(Deserialize)]
struct PageRow {
    id: u64,
    status: String,
    thumb: String,
    label: Option<String>,
    #[serde(default)]
    photo: Option<String>,
    path: String,
    face_index: Option<i64>,
    #[serde(rename = "box", default)]
    bbox: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    confidence: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PageData {
    labels: Vec<String>,
    #[serde(default)]
    store_key: Option<String>,
    rows: Vec<PageRow>,
}

/// Reads a report's `data.js`.
fn page_data(report: &Path) -> Result<PageData> {
    let json = super::page::read_data_json(report)?;
    serde_json::from_str(&json).map_err(|e| Error::Json {
        context: format!("reading {}", report.join("data.js").display()),
        source: e,
    })
}

/// A number of the page's data as text (`"NaN"` stays `NaN`).
fn number_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// Takes the corrections in `file` (a `corrections.csv` the page saved, wherever it was
/// saved) into the report folder `report`: see the module docs. Nothing is written when a
/// row names no face of this report, or a label it does not have: one error lists them.
pub fn import(file: &Path, report: &Path) -> Result<Imported> {
    let data = page_data(report)?;
    let report_abs = crate::fsutil::absolute_normal(report);
    let faces: BTreeMap<u64, &PageRow> = data.rows.iter().map(|r| (r.id, r)).collect();
    let bad_csv = |reason: String| Error::Csv {
        path: file.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(file).map_err(|e| bad_csv(e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| bad_csv(e.to_string()))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let label_at = column("label").ok_or_else(|| bad_csv("no column named \"label\"".into()))?;
    let (id_at, path_at) = (column("id"), column("path"));
    if id_at.is_none() && path_at.is_none() {
        return Err(bad_csv("no column named \"id\" or \"path\"".into()));
    }
    let mut choices: BTreeMap<u64, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| bad_csv(format!("row {line}: {e}")))?;
        let label = record.get(label_at).unwrap_or("").trim();
        if label == "skip" || label.is_empty() {
            continue;
        }
        // The face: its `id`, else the crop's name (`faces/ID.png`, as older pages wrote).
        let id = id_at
            .and_then(|k| record.get(k))
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string)
            .or_else(|| {
                let p = Path::new(record.get(path_at?)?);
                Some(p.file_stem()?.to_string_lossy().into_owned())
            })
            .and_then(|v| v.trim().parse::<u64>().ok());
        let Some(face) = id.and_then(|id| faces.get(&id)) else {
            problems.push(format!("row {line}: no face of this report"));
            continue;
        };
        if face.status != "ok" || face.thumb != "ok" {
            problems.push(format!(
                "row {line}: face {} has no crop in this report",
                face.id
            ));
            continue;
        }
        if label != NOT_A_FACE && !data.labels.iter().any(|l| l == label) {
            problems.push(format!(
                "row {line}: label {label:?} is not one of {} or {NOT_A_FACE}",
                data.labels.join(", ")
            ));
            continue;
        }
        choices.insert(face.id, label.to_string());
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(3);
        return Err(bad_csv(format!(
            "{n} row(s) do not fit the report {}: {}",
            report.display(),
            problems.join("; ")
        )));
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| bad_csv(e.to_string());
    out.write_record(COLUMNS).map_err(csv_err)?;
    let mut imported = Imported {
        csv: report_abs.join(CORRECTIONS_CSV),
        ..Default::default()
    };
    for (id, label) in &choices {
        let face = faces[id];
        let verdict = Verdict::of(label, face.label.as_deref());
        match verdict {
            Verdict::Corrected => imported.corrected += 1,
            Verdict::Confirmed => imported.confirmed += 1,
            Verdict::NotAFace => imported.not_a_face += 1,
        }
        let crop = report_abs
            .join(super::page::CROPS_DIR)
            .join(format!("{id}.png"));
        let bbox = face
            .bbox
            .as_ref()
            .map(|b| b.iter().map(number_text).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        out.write_record([
            crop.to_string_lossy().as_ref(),
            label,
            verdict.as_str(),
            &id.to_string(),
            face.photo.as_deref().unwrap_or(&face.path),
            &face.face_index.map(|i| i.to_string()).unwrap_or_default(),
            &bbox,
            face.label.as_deref().unwrap_or(""),
            &face
                .confidence
                .as_ref()
                .map(number_text)
                .unwrap_or_default(),
            "true",
        ])
        .map_err(csv_err)?;
    }
    let bytes = out.into_inner().map_err(|e| bad_csv(e.to_string()))?;
    // The page's key: the one data.js names (reports before it: the run id or input).
    let js = serde_json::json!({
        "key": data.store_key,
        "choices": choices.iter().map(|(id, l)| (id.to_string(), l)).collect::<BTreeMap<_, _>>(),
    });
    let script = format!("{JS_PREFIX}{};\n", js.to_string().replace("</", "<\\/"));
    crate::fsutil::write_atomic(&report.join(CORRECTIONS_CSV), &bytes)?;
    crate::fsutil::write_atomic(&report.join(CORRECTIONS_JS), script.as_bytes())?;
    tracing::info!(
        corrected = imported.corrected,
        confirmed = imported.confirmed,
        not_a_face = imported.not_a_face,
        csv = %imported.csv.display(),
        "corrections imported"
    );
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choosing_the_models_own_label_is_a_confirmation_not_a_correction() {
        assert_eq!(Verdict::of("male", Some("male")), Verdict::Confirmed);
        assert_eq!(Verdict::of("female", Some("male")), Verdict::Corrected);
        assert_eq!(Verdict::of(NOT_A_FACE, Some("male")), Verdict::NotAFace);
        assert_eq!(Verdict::of("male", None), Verdict::Corrected);
    }
}
