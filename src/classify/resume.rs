//! What makes a run the same run, and what an earlier attempt of an output left: the
//! identity a run records (model, `--features`, face finding, inputs), the comparison that
//! `--resume` and a finished shard make, and the parts an interrupted run continues from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::output::{self, meta};
use super::staging::{self, RunInfo};
use super::stats::FeatureStats;
use super::{ClassifySettings, Input};
use crate::error::{Error, Result};
use crate::vision::faces::FaceFinder;

/// The pooled feature size written with `--features`, from the card; `None` without it.
pub(crate) fn feature_dim(
    s: &ClassifySettings,
    card: &crate::model::card::ModelCard,
) -> Result<Option<usize>> {
    if !s.features {
        return Ok(None);
    }
    let dim = card
        .primary()
        .output(crate::model::card::OutputRole::Pooled)
        .and_then(|o| o.shape.get(1))
        .and_then(|d| d.as_u64())
        .ok_or_else(|| Error::InvalidCard {
            path: s.model.clone(),
            reason: "--features: the card's (primary) network has no pooled output, or its size is not given".into(),
        })?;
    Ok(Some(dim as usize))
}

/// The members whose probability columns `--member-probs` adds; empty without it.
/// Refused for a single-network model, which has no members to tell apart.
pub(crate) fn member_columns(
    s: &ClassifySettings,
    card: &crate::model::card::ModelCard,
) -> Result<Vec<String>> {
    if !s.member_probs {
        return Ok(Vec::new());
    }
    if !card.is_ensemble() {
        return Err(Error::InvalidOption(format!(
            "--member-probs: model {:?} is a single network; its probabilities are the p_ columns",
            card.name
        )));
    }
    Ok(card.members.iter().map(|m| m.name.clone()).collect())
}

/// What makes a run the same run: the model, `--features`, face finding and the inputs,
/// as a run of `s` records them. Reads the model's files and loads the detector (if `s`
/// uses one), without running anything.
pub(crate) fn identity(s: &ClassifySettings) -> Result<RunInfo> {
    let s = &normalised(s);
    let model = crate::model::classifier::CheckedModel::read(&s.model)?;
    let detector_session = crate::onnx::SessionOptions {
        intra_threads: 1,
        ..s.session.clone()
    };
    let finder = FaceFinder::for_model(model.card.faces(), &s.faces, &detector_session, 1)?;
    Ok(RunInfo {
        run_id: String::new(),
        started_at: String::new(),
        model_sha256: model.sha256.clone(),
        labels: model.card.labels.clone(),
        feature_dim: feature_dim(s, &model.card)?,
        members: member_columns(s, &model.card)?,
        faces: finder.identity(),
        inputs: input_keys(&s.inputs),
        parts_id: String::new(),
    })
}

/// The run an output's Parquet metadata records (`labels` are taken as given).
pub(crate) fn recorded_identity(
    md: &std::collections::BTreeMap<String, String>,
    labels: &[String],
) -> RunInfo {
    RunInfo {
        run_id: md.get(meta::RUN_ID).cloned().unwrap_or_default(),
        started_at: md.get(meta::STARTED).cloned().unwrap_or_default(),
        model_sha256: md.get(meta::MODEL_SHA256).cloned().unwrap_or_default(),
        labels: labels.to_vec(),
        feature_dim: md.get(meta::FEATURE_DIM).and_then(|d| d.parse().ok()),
        members: md
            .get(meta::MEMBERS)
            .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
            .unwrap_or_default(),
        faces: md.get(meta::FACES).cloned().unwrap_or_default(),
        inputs: md
            .get(meta::INPUTS)
            .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
            .map(|v| v.iter().map(|k| normalise_key(k)).collect())
            .unwrap_or_default(),
        parts_id: String::new(),
    }
}

/// What an earlier attempt left that this run continues.
pub(crate) struct Earlier {
    /// This run's identity: a new one, or the resumed run's.
    pub(crate) info: RunInfo,
    /// (root, path) of every file already written, with the fingerprint its rows record.
    pub(crate) done: HashMap<(String, String), Option<output::Fingerprint>>,
    pub(crate) features: FeatureStats,
    /// `OUT` holds rows of this run and is merged into the new `OUT`.
    pub(crate) out: bool,
}

/// Reads what is on disk for `s.out` (its lock held) and decides what this run continues:
/// a committed merge is finished first; an unrelated earlier `OUT` is replaced, never
/// continued; `--resume` checks that model, features, faces and inputs are unchanged.
pub(crate) fn earlier(s: &ClassifySettings, mut info: RunInfo) -> Result<Earlier> {
    let parts_dir = output::parts_dir(&s.out);
    output::remove_stale_merges(&s.out)?;
    let mut found = staging::inspect(&s.out)?;
    if found.committed {
        // A run published OUT but stopped before its clean-up: finish that first.
        tracing::info!(out = %s.out.display(), "finishing the clean-up of an earlier published run");
        if let Some(md) = &found.out_meta {
            staging::clean_up(&s.out, md.get(meta::FEATURE_STATS).map(String::as_str))?;
        }
        found.run = None;
    }
    if found.run.is_none() && is_empty_dir(&parts_dir) {
        // What a clean-up that stopped at its last step leaves: nothing to resume.
        let _ = std::fs::remove_dir(&parts_dir);
    }
    if parts_dir.exists() && !s.resume {
        return Err(Error::OtherRun(format!(
            "{} holds an unfinished run: pass --resume to complete it, or delete that folder to start over",
            parts_dir.display()
        )));
    }
    let mut out = Earlier {
        info: info.clone(),
        done: HashMap::new(),
        features: FeatureStats::default(),
        out: false,
    };
    if !s.resume {
        return Ok(out);
    }
    let out_md = found.out_meta.as_ref();
    match &found.run {
        Some(saved) => {
            check_same_run(saved, &info)?;
            info.run_id = saved.run_id.clone();
            info.started_at = saved.started_at.clone();
            info.parts_id = saved.parts_id.clone();
            // OUT belongs to this run only when it carries the run's id (an earlier
            // interrupted attempt); anything else is an older output this run replaces.
            out.out = out_md.is_some_and(|md| md.get(meta::RUN_ID) == Some(&saved.run_id));
        }
        None => {
            if let Some(md) = out_md {
                let earlier = recorded_identity(md, &info.labels);
                check_same_run(&earlier, &info)?;
                info.run_id = earlier.run_id;
                info.started_at = earlier.started_at;
                out.out = true;
            }
        }
    }
    if out.out {
        output::done_files(&s.out, &mut out.done)?;
        let stats = out_md
            .and_then(|md| md.get(meta::FEATURE_STATS).cloned())
            .or_else(|| std::fs::read_to_string(output::stats_path(&s.out)).ok());
        if let Some(st) = stats.and_then(|t| serde_json::from_str::<FeatureStats>(&t).ok()) {
            out.features.merge(&st);
        }
    }
    if found.run.is_some() {
        for part in output::list_parts(&parts_dir)? {
            let md = output::read_metadata(&part)?;
            if out.out
                && let (Some(id), Some(out_md)) = (md.get(meta::PARTS_ID), out_md)
                && staging::holds_parts(out_md, id)
            {
                // Already merged into OUT (its folder's record is gone): never twice.
                tracing::warn!(part = %part.display(), "a part that the output already holds: removing it");
                fs_err::remove_file(&part)?;
                continue;
            }
            output::done_files(&part, &mut out.done)?;
            if let Some(st) = md
                .get("facebatch.part_feature_stats")
                .and_then(|t| serde_json::from_str::<FeatureStats>(t).ok())
            {
                out.features.merge(&st);
            }
        }
    } else if parts_dir.exists() {
        // A parts folder without its run.json: the run stopped before writing any part.
        fs_err::remove_dir_all(&parts_dir)?;
    }
    tracing::info!(already_done = out.done.len(), "resuming");
    out.info = info;
    Ok(out)
}

/// Refuses a `--resume` whose model, features, face finding or inputs differ.
fn check_same_run(saved: &RunInfo, now: &RunInfo) -> Result<()> {
    match differing_setting(saved, now) {
        None => Ok(()),
        Some(what) => Err(Error::OtherRun(format!(
            "--resume: the earlier run {what}; use the same settings, or start a new output"
        ))),
    }
}

/// The first setting in which `now` differs from the recorded run `saved`, said as "the
/// earlier run ..." continues: `None` when they are the same run. A setting the record
/// lacks (older outputs) is not compared.
pub(crate) fn differing_setting(saved: &RunInfo, now: &RunInfo) -> Option<String> {
    if saved.model_sha256 != now.model_sha256 {
        return Some(format!(
            "used another model (--model: sha256 {}, this run {})",
            saved.model_sha256, now.model_sha256
        ));
    }
    if saved.feature_dim != now.feature_dim {
        let on = |d: Option<usize>| if d.is_some() { "on" } else { "off" };
        return Some(format!(
            "had a different --features setting ({}, this run {})",
            on(saved.feature_dim),
            on(now.feature_dim)
        ));
    }
    if saved.members != now.members {
        let on = |m: &[String]| if m.is_empty() { "off" } else { "on" };
        return Some(format!(
            "had a different --member-probs setting ({}, this run {})",
            on(&saved.members),
            on(&now.members)
        ));
    }
    if !saved.faces.is_empty() && saved.faces != now.faces {
        return Some(format!(
            "found faces differently (--faces and detection options: {}; this run {})",
            saved.faces, now.faces
        ));
    }
    if !saved.inputs.is_empty() && sorted(&saved.inputs) != sorted(&now.inputs) {
        return Some(format!(
            "read other inputs ({}; this run {})",
            saved.inputs.join(", "),
            now.inputs.join(", ")
        ));
    }
    None
}

fn sorted(v: &[String]) -> Vec<&String> {
    let mut v: Vec<&String> = v.iter().collect();
    v.sort();
    v
}

/// An input path as the key it becomes in `root`: `IN`, `IN/`, `./IN` and `IN/.` are one
/// input ([`crate::fsutil::without_cur_dirs`]).
pub fn normalise_input(p: &Path) -> PathBuf {
    crate::fsutil::without_cur_dirs(p)
}

pub(crate) fn input_keys(inputs: &[Input]) -> Vec<String> {
    inputs.iter().map(Input::key).collect()
}

/// A recorded input's key as [`Input::key`] gives it now (a URL stays as it is).
fn normalise_key(key: &str) -> String {
    if crate::remote::ObjectUrl::parse(key).is_some() {
        key.to_string()
    } else {
        normalise_input(std::path::Path::new(key))
            .to_string_lossy()
            .into_owned()
    }
}

/// The settings with every input normalised ([`normalise_input`]), and an input given
/// twice (however spelled: `IN IN/`, or a link to it) kept once, in its first spelling.
pub(crate) fn normalised(s: &ClassifySettings) -> ClassifySettings {
    let mut s = s.clone();
    let mut seen = std::collections::HashSet::new();
    let mut inputs = Vec::with_capacity(s.inputs.len());
    for input in &s.inputs {
        let (input, identity) = match input {
            Input::Path(p) | Input::Manifest(p) => {
                let p = normalise_input(p);
                let identity = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
                let input = match input {
                    Input::Manifest(_) => Input::Manifest(p),
                    _ => Input::Path(p),
                };
                (input, identity)
            }
            Input::Object(u) => (input.clone(), PathBuf::from(u.to_string())),
        };
        if seen.insert(identity) {
            inputs.push(input);
        } else {
            tracing::warn!(%input, "this input was given more than once: reading it once");
        }
    }
    s.inputs = inputs;
    s
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_input_normalise_to_one_key() {
        for spelling in ["IN", "IN/", "./IN", "IN/.", "./IN/./"] {
            assert_eq!(normalise_input(Path::new(spelling)), PathBuf::from("IN"));
        }
        assert_eq!(normalise_input(Path::new("./")), PathBuf::from("."));
        assert_eq!(normalise_input(Path::new("/a/b/")), PathBuf::from("/a/b"));
        assert_eq!(
            normalise_input(Path::new("a/../b")),
            PathBuf::from("a/../b")
        );
    }
}
