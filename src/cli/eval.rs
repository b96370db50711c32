//! `facebatch eval`: accuracy of a model on labelled data, as text or JSON, with the
//! optional per-image predictions and the reliability diagram.

use std::path::PathBuf;

use clap::Args;

use facebatch::eval::{GroupBy, evaluate, report_json};
use facebatch::model::classifier::Classifier;
use facebatch::vision::decode::DecodeLimits;
use facebatch::vision::faces::FaceFinder;

use super::{
    EXIT_OK, EXIT_PARTIAL, FaceArgs, GlobalArgs, ModelArg, progress_mode, session_options,
};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A folder with one sub-folder per class, or a CSV manifest (e.g. a training run's splits/test.csv).
    pub data: PathBuf,
    #[command(flatten)]
    pub model: ModelArg,
    /// Accuracy per group of a manifest column; numeric columns take bin edges (age:15).
    #[arg(long = "group-by")]
    pub group_by: Vec<GroupBy>,
    #[command(flatten)]
    pub columns: super::ManifestColumns,
    /// Which of the model's networks runs (as in classify).
    #[arg(long, value_parser = super::choice::precision_parser(), default_value = "float32")]
    pub precision: facebatch::model::card::Precision,
    /// Faces per inference batch (as in classify).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub face: FaceArgs,
    /// Write one Parquet row per image (true and predicted label, calibrated probabilities,
    /// face fields and every manifest column) to this file.
    #[arg(long, value_name = "FILE.parquet")]
    pub predictions: Option<PathBuf>,
    /// Draw the reliability diagram (accuracy against confidence, with the ECE) to this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub reliability: Option<PathBuf>,
}

/// `--predictions` and `--reliability` never replace the data, an image it lists, or a
/// file that is not an earlier output of theirs (`fsutil::check_out_is_safe`).
fn check_outputs(args: &EvalArgs, samples: &[facebatch::labelled::Sample]) -> anyhow::Result<()> {
    use facebatch::fsutil::{OutCheck, OutKind, check_out_is_safe};
    let inputs =
        || std::iter::once(args.data.as_path()).chain(samples.iter().map(|s| s.path.as_path()));
    if let Some(path) = &args.predictions {
        let check = OutCheck {
            flag: "--predictions",
            path,
            kind: OutKind::File,
            is_own: &facebatch::eval::predictions::is_predictions_file,
            own: "an earlier eval --predictions file",
        };
        check_out_is_safe(&check, inputs())?;
    }
    if let Some(path) = &args.reliability {
        let check = OutCheck {
            flag: "--reliability",
            path,
            kind: OutKind::File,
            is_own: &is_png,
            own: "a PNG image (an earlier reliability diagram)",
        };
        check_out_is_safe(&check, inputs())?;
    }
    Ok(())
}

/// True when the file starts with the PNG signature.
fn is_png(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|_| head == *b"\x89PNG\r\n\x1a\n")
}

/// `facebatch eval`.
pub fn run(args: &EvalArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    let samples = args.columns.read(&args.data)?;
    check_outputs(args, &samples)?;
    let classifier = Classifier::load_as(&args.model.path()?, args.precision, &session_options(g))?;
    let finder = FaceFinder::for_model(
        classifier.card.faces(),
        &args.face.options(g),
        &session_options(g),
        rayon::current_num_threads(),
    )?;
    // The same progress as classify's: a bar on a terminal, records in a log.
    let progress =
        facebatch::progress::Progress::new(progress_mode(g), samples.len() as u64, "images");
    let evaluation = evaluate(
        &classifier,
        &samples,
        args.batch_size.max(1),
        &args.group_by,
        DecodeLimits::default(),
        Some(&finder),
        &progress,
    )?;
    progress.finish_and_clear();
    if let Some(path) = &args.predictions {
        facebatch::eval::predictions::write(
            path,
            &samples,
            &evaluation.predictions,
            &classifier,
            Some(&finder),
        )?;
    }
    if let (Some(path), Some(r)) = (&args.reliability, &evaluation.report.calibration) {
        facebatch::report::plot::reliability_diagram(path, r, "reliability")?;
    }
    if g.json {
        println!("{}", report_json(&evaluation.report)?);
    } else {
        print!("{}", evaluation.report.to_text());
    }
    if evaluation.skipped.is_empty() {
        Ok(EXIT_OK)
    } else {
        eprintln!("{} unreadable image(s) skipped", evaluation.skipped.len());
        Ok(EXIT_PARTIAL)
    }
}
