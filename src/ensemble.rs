//! `facebatch ensemble`: a model made of exported networks. Each member keeps its own file,
//! crop (alignment and input) and calibration; the combining step (weights, a decision
//! threshold that balances the labels' recalls, a temperature) is fitted on one labelled
//! split and the result is scored on another, through the same classifier and evaluation
//! every command uses. The model folder appears only when it is complete (built beside it,
//! then renamed), and no member's folder is written to.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::eval::{GroupBy, Outcome, evaluate, write_report};
use crate::fsutil::{now_rfc3339, write_atomic};
use crate::labelled::Sample;
use crate::model::card::{CARD_FILE, CARD_FORMAT, Combine, Member, ModelCard, is_plain_file_name};
use crate::model::classifier::{CheckedModel, Classifier};
use crate::model::combine::{FitOptions, Scored, fit};
use crate::model::metrics::Report;
use crate::onnx::SessionOptions;
use crate::progress::{Progress, ProgressMode};
use crate::vision::decode::DecodeLimits;
use crate::vision::faces::{FaceFinder, FaceOptions};

/// One network to take into the ensemble.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberSource {
    /// The member's name in the card (and in `member_<name>_p_<label>` columns).
    pub name: String,
    /// A single-network model folder (or its model.onnx).
    pub model: PathBuf,
    /// Overrides the card's test-time flip for this member.
    pub flip: Option<bool>,
}

/// Everything `ensemble` needs, checked at the edge.
#[derive(Clone, Debug)]
pub struct EnsembleSettings {
    pub members: Vec<MemberSource>,
    /// The labelled split the combining step is fitted on, and its name (`val`).
    pub fit_on: Vec<Sample>,
    pub fit_on_name: String,
    /// The split the finished model is scored on (its card's `metrics.test`); may be empty.
    pub test: Vec<Sample>,
    pub out: PathBuf,
    /// The card's `name` (default: the first member's).
    pub name: Option<String>,
    pub fit: FitOptions,
    /// Refuse an ensemble that costs more than this many MFLOP per face.
    pub max_mflops: Option<f64>,
    pub group_by: Vec<GroupBy>,
    pub faces: FaceOptions,
    pub session: SessionOptions,
    pub batch_size: usize,
    pub progress: ProgressMode,
}

/// What was built.
#[derive(Clone, Debug)]
pub struct EnsembleOutcome {
    pub out: PathBuf,
    pub card: ModelCard,
    /// The finished model on the fitting split and on the test split.
    pub fit_report: Report,
    pub test_report: Option<Report>,
}

/// Builds the ensemble into `settings.out`.
pub fn build(s: &EnsembleSettings) -> Result<EnsembleOutcome> {
    check_settings(s)?;
    let stage = staging_dir(&s.out);
    if stage.exists() {
        // Left by an interrupted run of this command: it is ours, and incomplete.
        fs_err::remove_dir_all(&stage)?;
    }
    fs_err::create_dir_all(stage.join("reports"))?;
    let result = build_in(s, &stage);
    if result.is_err() {
        let _ = fs_err::remove_dir_all(&stage);
    }
    let (card, fit_report, test_report) = result?;
    fs_err::rename(&stage, &s.out)?;
    crate::fsutil::sync_parent(&s.out);
    Ok(EnsembleOutcome {
        out: s.out.clone(),
        card,
        fit_report,
        test_report,
    })
}

/// The folder the model is built in before it is renamed to `out`.
fn staging_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ensemble".into());
    out.with_file_name(format!(".{name}.partial"))
}

fn check_settings(s: &EnsembleSettings) -> Result<()> {
    if s.members.is_empty() {
        return Err(Error::InvalidOption(
            "an ensemble needs at least one --member NAME=MODEL".into(),
        ));
    }
    let mut names = BTreeSet::new();
    for m in &s.members {
        if !is_plain_file_name(&m.name) || m.name.contains('=') {
            return Err(Error::InvalidOption(format!(
                "member name {:?} must be a plain name (letters, digits, '-', '_')",
                m.name
            )));
        }
        if !names.insert(m.name.as_str()) {
            return Err(Error::InvalidOption(format!(
                "member name {:?} is given twice",
                m.name
            )));
        }
    }
    if s.out.exists() {
        return Err(Error::InvalidOption(format!(
            "--out {} already exists; ensemble writes a new model folder and never replaces one",
            s.out.display()
        )));
    }
    let out = absolute(&s.out);
    for m in &s.members {
        let dir = absolute(&model_dir(&m.model));
        if out.starts_with(&dir) {
            return Err(Error::InvalidOption(format!(
                "--out {} is inside member {}'s folder {}; write the ensemble elsewhere",
                s.out.display(),
                m.name,
                dir.display()
            )));
        }
    }
    if s.fit_on.is_empty() {
        return Err(Error::Dataset(format!(
            "the {} split has no images to fit the ensemble on",
            s.fit_on_name
        )));
    }
    Ok(())
}

fn model_dir(model: &Path) -> PathBuf {
    if model.is_file() {
        model.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        model.to_path_buf()
    }
}

fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    crate::fsutil::lexically_normal(&abs)
}

type Built = (ModelCard, Report, Option<Report>);

fn build_in(s: &EnsembleSettings, stage: &Path) -> Result<Built> {
    let mut card = assemble(s, stage)?;
    if let (Some(max), Some(cost)) = (s.max_mflops, card.mflops_per_face())
        && cost > max
    {
        return Err(Error::InvalidOption(format!(
            "the ensemble costs {cost:.1} MFLOP per face (flips included), more than --max-mflops {max}"
        )));
    }
    card.save(&stage.join(CARD_FILE))?;

    // Fit the combining step on the members' calibrated probabilities.
    let (classifier, finder) = open(s, stage)?;
    let fitted = score(s, &classifier, &finder, &s.fit_on, &[])?;
    let scored: Vec<Scored> = fitted
        .predictions
        .iter()
        .filter_map(|p| match &p.outcome {
            Outcome::Classified {
                probs,
                member_probs,
                ..
            } => Some(Scored {
                members: if member_probs.is_empty() {
                    vec![probs.clone()]
                } else {
                    member_probs.clone()
                },
                truth: p.truth,
            }),
            _ => None,
        })
        .collect();
    if scored.is_empty() {
        return Err(Error::Dataset(format!(
            "no face of the {} split could be classified",
            s.fit_on_name
        )));
    }
    card.combine = fit(&scored, &card.labels, &s.fit_on_name, s.fit);
    tracing::info!(combine = %card.combine.description, "combining step fitted");
    card.save(&stage.join(CARD_FILE))?;

    // The finished model, through the same path as every command.
    let (classifier, finder) = open(s, stage)?;
    let fit_report = score(s, &classifier, &finder, &s.fit_on, &s.group_by)?.report;
    card.metrics
        .insert(s.fit_on_name.clone(), fit_report.clone());
    let test_report = if s.test.is_empty() {
        None
    } else {
        let reports = stage.join("reports");
        let eval = score(s, &classifier, &finder, &s.test, &s.group_by)?;
        write_report(&reports, "test_report", &eval.report)?;
        crate::report::plot::report_figures(&reports, &eval.report)?;
        crate::eval::predictions::write(
            &reports.join("test_predictions.parquet"),
            &s.test,
            &eval.predictions,
            &classifier,
            Some(&finder),
        )?;
        card.metrics.insert("test".into(), eval.report.clone());
        Some(eval.report)
    };
    card.save(&stage.join(CARD_FILE))?;
    Ok((card, fit_report, test_report))
}

/// The card with every member's file copied into `stage` (checked against its card).
fn assemble(s: &EnsembleSettings, stage: &Path) -> Result<ModelCard> {
    let mut members: Vec<Member> = Vec::new();
    let mut first: Option<ModelCard> = None;
    let mut limitations: Vec<String> = Vec::new();
    for src in &s.members {
        let checked = CheckedModel::read(&src.model)?;
        let card = checked.card;
        if card.is_ensemble() {
            return Err(Error::InvalidModel {
                path: src.model.clone(),
                reason: "is itself an ensemble; give its members one by one".into(),
            });
        }
        if let Some(f) = &first {
            let want: BTreeSet<&String> = f.labels.iter().collect();
            let have: BTreeSet<&String> = card.labels.iter().collect();
            if want != have {
                return Err(Error::InvalidModel {
                    path: src.model.clone(),
                    reason: format!(
                        "labels {:?} differ from the first member's {:?}",
                        card.labels, f.labels
                    ),
                });
            }
        }
        let mut m = card.members[0].clone();
        m.name = src.name.clone();
        if let Some(flip) = src.flip {
            m.test_time_flip = flip;
        }
        m.training = card.training.clone();
        let file = format!("{}.onnx", src.name);
        write_atomic(&stage.join(&file), &checked.files[0].bytes)?;
        m.onnx.file = file;
        if let Some(q) = &mut m.int8 {
            let from = model_dir(&src.model).join(&q.file);
            let file = format!("{}-int8.onnx", src.name);
            fs_err::copy(&from, stage.join(&file))?;
            q.file = file;
        }
        for l in &card.limitations {
            if !limitations.contains(l) {
                limitations.push(l.clone());
            }
        }
        members.push(m);
        if first.is_none() {
            first = Some(card);
        }
    }
    let first = first.expect("at least one member (checked)");
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        name: s.name.clone().unwrap_or(first.name),
        task: first.task,
        labels: first.labels,
        members,
        combine: Combine::default(),
        training: None,
        metrics: Default::default(),
        intended_use: first.intended_use,
        limitations,
        facebatch_version: env!("CARGO_PKG_VERSION").into(),
        created: now_rfc3339(),
    };
    card.validate().map_err(|reason| Error::InvalidCard {
        path: stage.join(CARD_FILE),
        reason,
    })?;
    Ok(card)
}

fn open(s: &EnsembleSettings, stage: &Path) -> Result<(Classifier, FaceFinder)> {
    let classifier = Classifier::from_checked(&CheckedModel::read(stage)?, &s.session)?;
    let finder = FaceFinder::for_model(
        classifier.card.faces(),
        &s.faces,
        &s.session,
        rayon::current_num_threads(),
    )?;
    Ok((classifier, finder))
}

fn score(
    s: &EnsembleSettings,
    classifier: &Classifier,
    finder: &FaceFinder,
    samples: &[Sample],
    group_by: &[GroupBy],
) -> Result<crate::eval::Evaluation> {
    let progress = Progress::new(s.progress, samples.len() as u64, "images");
    let e = evaluate(
        classifier,
        samples,
        s.batch_size.max(1),
        group_by,
        DecodeLimits::default(),
        Some(finder),
        &progress,
    )?;
    progress.finish_and_clear();
    Ok(e)
}
