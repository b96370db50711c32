//! `facebatch ensemble`: a model made of exported networks, its combining step fitted on
//! one labelled split and scored on another.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use facebatch::ensemble::{EnsembleSettings, MemberSource, build};
use facebatch::eval::GroupBy;
use facebatch::model::card::CombineRule;
use facebatch::model::combine::FitOptions;

use super::{EXIT_OK, FaceArgs, GlobalArgs, progress_mode, session_options};

/// `NAME=MODEL`: a member's name and its model folder.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberArg {
    pub name: String,
    pub model: PathBuf,
}

impl std::str::FromStr for MemberArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, model)) if !name.is_empty() && !model.is_empty() => Ok(MemberArg {
                name: name.into(),
                model: model.into(),
            }),
            _ => Err(format!("expected NAME=MODEL_DIR, got {s:?}")),
        }
    }
}

#[derive(Args, Debug)]
pub struct EnsembleArgs {
    /// A member: its name in the card and a single-network model folder (repeat, in order;
    /// the first is the primary: its crop and features are the ones classify reports).
    #[arg(long = "member", value_name = "NAME=MODEL_DIR", required = true)]
    pub members: Vec<MemberArg>,
    /// The labelled split to fit weights, threshold and temperature on (a CSV manifest or a
    /// folder per class), e.g. a training run's splits/val.csv.
    #[arg(long, value_name = "CSV|DIR")]
    pub fit_on: PathBuf,
    /// The labelled split to score the finished model on (its card's test metrics and
    /// OUT/reports/).
    #[arg(long, value_name = "CSV|DIR")]
    pub test: Option<PathBuf>,
    /// The new model folder (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// The card's name [default: the first member's].
    #[arg(long)]
    pub name: Option<String>,
    /// How the members' probabilities are combined.
    #[arg(long, value_parser = super::choice::rule_parser(), default_value = "weighted")]
    pub rule: CombineRule,
    /// Grid step of the weight search.
    #[arg(long, default_value_t = 0.05)]
    pub weight_step: f64,
    /// Keep the 0.5 decision threshold instead of the one that balances the two labels'
    /// recalls on the fitting split.
    #[arg(long)]
    pub no_balance: bool,
    /// No temperature on the combined probabilities.
    #[arg(long)]
    pub no_calibrate: bool,
    /// Average this member's probabilities with its mirror image's (twice its cost).
    #[arg(long, value_name = "NAME")]
    pub flip: Vec<String>,
    /// Do not flip this member, whatever its card says.
    #[arg(long, value_name = "NAME")]
    pub no_flip: Vec<String>,
    /// Refuse an ensemble that costs more than this many MFLOP per face, flips included.
    #[arg(long, value_name = "MFLOP")]
    pub max_mflops: Option<f64>,
    /// Accuracy per group of a manifest column in the reports (as in eval).
    #[arg(long = "group-by")]
    pub group_by: Vec<GroupBy>,
    #[command(flatten)]
    pub columns: super::ManifestColumns,
    /// Faces per inference batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[command(flatten)]
    pub face: FaceArgs,
}

impl EnsembleArgs {
    /// The typed settings, with the splits read.
    pub fn settings(&self, g: &GlobalArgs) -> anyhow::Result<EnsembleSettings> {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        for n in self.flip.iter().chain(&self.no_flip) {
            if !names.contains(&n.as_str()) {
                anyhow::bail!(facebatch::Error::InvalidOption(format!(
                    "--flip/--no-flip {n:?} names no member (members: {names:?})"
                )));
            }
        }
        if let Some(n) = self.flip.iter().find(|n| self.no_flip.contains(n)) {
            anyhow::bail!(facebatch::Error::InvalidOption(format!(
                "member {n:?} is given both --flip and --no-flip"
            )));
        }
        if !(self.weight_step > 0.0 && self.weight_step <= 0.5) {
            anyhow::bail!(facebatch::Error::InvalidOption(format!(
                "--weight-step must be in (0, 0.5], got {}",
                self.weight_step
            )));
        }
        let read = |p: &PathBuf| {
            self.columns
                .read(p)
                .with_context(|| format!("reading {}", p.display()))
        };
        let members = self
            .members
            .iter()
            .map(|m| MemberSource {
                name: m.name.clone(),
                model: m.model.clone(),
                flip: if self.flip.contains(&m.name) {
                    Some(true)
                } else if self.no_flip.contains(&m.name) {
                    Some(false)
                } else {
                    None
                },
            })
            .collect();
        Ok(EnsembleSettings {
            members,
            fit_on: read(&self.fit_on)?,
            fit_on_name: "val".into(),
            test: match &self.test {
                Some(t) => read(t)?,
                None => Vec::new(),
            },
            out: self.out.clone(),
            name: self.name.clone(),
            fit: FitOptions {
                rule: self.rule,
                weight_step: self.weight_step,
                balance_recall: !self.no_balance,
                calibrate: !self.no_calibrate,
            },
            max_mflops: self.max_mflops,
            group_by: self.group_by.clone(),
            faces: self.face.options(g),
            session: session_options(g),
            batch_size: self.batch_size,
            progress: progress_mode(g),
        })
    }
}

/// `facebatch ensemble`.
pub fn run(args: &EnsembleArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    let settings = args.settings(g)?;
    let outcome = build(&settings)?;
    let card = &outcome.card;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "model": outcome.out,
                "members": card.members.iter().map(|m| &m.name).collect::<Vec<_>>(),
                "mflops_per_face": card.mflops_per_face(),
                "combine": card.combine,
                "fit_report": outcome.fit_report,
                "test_report": outcome.test_report,
            })
        );
        return Ok(EXIT_OK);
    }
    println!("combining step: {}", card.combine.description);
    if let Some(cost) = card.mflops_per_face() {
        println!("cost: {cost:.1} MFLOP per face (flips included)");
    }
    if let Some(report) = &outcome.test_report {
        println!(
            "test split of the ensemble ({} images):\n{}",
            report.n,
            report.to_text()
        );
    }
    println!("model written to {}", outcome.out.display());
    Ok(EXIT_OK)
}
