//! `facebatch train`: its options and their validation into [`TrainSettings`]. Compiled
//! with the `train` feature (on by default), which brings burn and the ONNX exporter.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use facebatch::eval::GroupBy;
use facebatch::labelled::{Source, SplitSpec};
use facebatch::train::augment::Augment;
use facebatch::train::net::Arch;
use facebatch::train::{AlignChoice, Sampling, TrainSettings};
use facebatch::vision::detect::DetectSettings;

use super::{GlobalArgs, progress_mode, session_options};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Folders with one sub-folder per class, or CSV manifests.
    data: Vec<PathBuf>,
    /// CSV manifest(s); paths are relative to the CSV, other columns are kept for grouping.
    #[arg(long = "labels-csv")]
    labels_csv: Vec<PathBuf>,
    /// Manifest column holding the label.
    #[arg(long, default_value = "label")]
    label_column: String,
    /// Manifest column holding the image path.
    #[arg(long, default_value = "path")]
    path_column: String,
    /// Output directory (model.onnx, card.json, reports/, splits/, checkpoints/).
    #[arg(long)]
    out: PathBuf,
    /// Network architecture.
    #[arg(long, value_parser = super::choice::arch_parser(), default_value = "compact")]
    arch: Arch,
    /// Input size of the fully convolutional networks, N (square) or HxW; default: the
    /// architecture's own (64 for compact and residual, 96 for separable).
    #[arg(long, value_name = "N|HxW")]
    input_size: Option<String>,
    /// Model name recorded in the card.
    #[arg(long, default_value = "facebatch-gender")]
    name: String,
    /// Passes over the training split (early stopping may end sooner, see --patience).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Images per training step (classify's and eval's --batch-size is faces per inference
    /// batch).
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (Adam).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// L2 weight decay of the Adam optimiser (0: none).
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f32,
    /// Label smoothing of the cross-entropy, in [0, 1).
    #[arg(long, default_value_t = 0.05)]
    label_smoothing: f32,
    /// Stop after this many epochs without a better validation accuracy.
    #[arg(long, default_value_t = 6)]
    patience: usize,
    /// Fraction of the images held out for validation (early stopping, calibration).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Fraction of the images held out for the test report.
    #[arg(long, default_value_t = 0.1)]
    test_fraction: f64,
    /// Seed for initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seed for the train/val/test split [default: --seed].
    #[arg(long)]
    split_seed: Option<u64>,
    /// Train without augmentation.
    #[arg(long)]
    no_augment: bool,
    /// Use at most this many images (seeded, stratified); for quick runs.
    #[arg(long)]
    max_images: Option<usize>,
    /// Cap the steps per epoch; for quick runs.
    #[arg(long)]
    max_steps_per_epoch: Option<usize>,
    /// Continue from the last checkpoint in --out.
    #[arg(long)]
    resume: bool,
    /// Fine-tune: start from the weights of an earlier model trained by facebatch (a model
    /// folder with card.json and checkpoints/best.bpk). Its architecture, labels and input
    /// must match; the card records it.
    #[arg(long, value_name = "MODEL_DIR")]
    init: Option<PathBuf>,
    /// Licence terms of the training data, recorded in the card (repeatable).
    #[arg(long = "licence-note")]
    licence_notes: Vec<String>,
    /// Test-report groups: a column, or a numeric column with bin edges (age:15).
    #[arg(long = "group-by")]
    group_by: Vec<GroupBy>,
    /// Detect and align every training image (the default when the detector is available;
    /// with this flag its absence is an error).
    #[arg(long, conflicts_with = "no_align")]
    align: bool,
    /// Train on the images as they are, without detection and alignment.
    #[arg(long)]
    no_align: bool,
    /// Zoom of the alignment template about the crop centre (1 = the ArcFace 112x112
    /// geometry; larger is tighter on the face), 0.5..=2.
    #[arg(long, default_value_t = facebatch::vision::align::DEFAULT_ZOOM)]
    align_zoom: f32,
    /// Minimum detection score for aligning a training image, 0..1 (stricter than
    /// classify's default 0.6: training keeps only confident landmarks).
    #[arg(long, default_value_t = 0.8)]
    det_threshold: f32,
    /// Do not average each face's prediction with its mirror image's at inference (the
    /// card's `test_time_flip`; on by default).
    #[arg(long)]
    no_flip_tta: bool,
    /// Keep the split of every image listed in an earlier model's splits/ (a model folder
    /// or its splits/ folder), matched by content hash; the rest is split as usual.
    #[arg(long, value_name = "MODEL_DIR")]
    pin_splits: Option<PathBuf>,
    /// How each epoch draws its images: `balanced` gives each source a share proportional
    /// to its size to the power --source-power and each class in a source the same share;
    /// `uniform` takes every image once.
    #[arg(long, value_enum, default_value_t = SamplerArg::Balanced)]
    sampler: SamplerArg,
    /// With --sampler balanced: 1 = every source alike, 0 = in proportion to size.
    #[arg(long, default_value_t = 0.5)]
    source_power: f64,
    /// Override one augmentation strength, NAME=VALUE (repeatable), e.g. --augment jpeg=0.
    #[arg(long = "augment", value_name = "NAME=VALUE")]
    augment: Vec<String>,
    /// Do not fit a temperature on the validation split.
    #[arg(long)]
    no_calibrate: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SamplerArg {
    Uniform,
    Balanced,
}

impl TrainArgs {
    pub fn settings(&self, g: &GlobalArgs) -> anyhow::Result<TrainSettings> {
        let sources = self.sources()?;
        anyhow::ensure!(self.epochs > 0, "--epochs must be at least 1");
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        anyhow::ensure!(
            self.lr > 0.0 && self.lr.is_finite(),
            "--lr must be positive"
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.label_smoothing),
            "--label-smoothing must be in [0, 1)"
        );
        let split = SplitSpec {
            val: self.val_fraction,
            test: self.test_fraction,
            seed: self.split_seed.unwrap_or(self.seed),
        };
        split.validate()?;
        let settings = TrainSettings {
            sources,
            out_dir: self.out.clone(),
            name: self.name.clone(),
            arch: self.arch,
            input: self.input()?,
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            weight_decay: self.weight_decay,
            label_smoothing: self.label_smoothing,
            patience: self.patience.max(1),
            split,
            seed: self.seed,
            augment: self.augmentation()?,
            pin_splits: self.pin_splits.clone(),
            sampling: self.sampling()?,
            calibrate: !self.no_calibrate,
            max_images: self.max_images,
            max_steps_per_epoch: self.max_steps_per_epoch,
            resume: self.resume,
            init: self.init.clone(),
            licence_notes: self.licence_notes.clone(),
            group_by: self.group_by.clone(),
            session: session_options(g),
            progress: progress_mode(g),
            align: if self.no_align {
                AlignChoice::Off
            } else if self.align {
                AlignChoice::On
            } else {
                AlignChoice::Auto
            },
            align_zoom: {
                anyhow::ensure!(
                    (0.5..=2.0).contains(&self.align_zoom),
                    "--align-zoom must be within 0.5..=2, got {}",
                    self.align_zoom
                );
                self.align_zoom
            },
            detector: g.detector.clone(),
            test_time_flip: !self.no_flip_tta,
            detect: {
                let d = DetectSettings {
                    threshold: self.det_threshold,
                    ..DetectSettings::default()
                };
                d.validate()?;
                d
            },
        };
        // Last, so that a bad option is named first.
        self.check_out()?;
        Ok(settings)
    }

    /// `--out` is a new or empty folder (or, with `--resume`, the run to continue), never
    /// one of the inputs nor inside an input folder: a model written over an earlier one
    /// would leave that one's other files (its int8 copy) beside the new `model.onnx`.
    fn check_out(&self) -> anyhow::Result<()> {
        use facebatch::fsutil::{OutCheck, OutKind, check_out_is_safe};
        let (is_own, own): (&dyn Fn(&std::path::Path) -> bool, &str) = if self.resume {
            (
                &facebatch::train::is_resumable_run,
                "a training run to continue (only the files train writes, with its \
                 checkpoints/state.json or no model yet)",
            )
        } else {
            (
                &|_| false,
                "empty: train writes a new model into a new or empty folder (add --resume \
                 to continue an interrupted run)",
            )
        };
        let data = self
            .data
            .iter()
            .chain(&self.labels_csv)
            .map(PathBuf::as_path);
        check_out_is_safe(
            &OutCheck {
                flag: "--out",
                path: &self.out,
                kind: OutKind::Folder,
                is_own,
                own,
            },
            data,
        )?;
        // The earlier model read from (a new version may well go inside its name folder).
        let out = self.out.canonicalize().ok();
        for (flag, dir) in [("--init", &self.init), ("--pin-splits", &self.pin_splits)] {
            let Some(dir) = dir else { continue };
            anyhow::ensure!(
                out.is_none() || dir.canonicalize().ok() != out,
                "--out {} is the {flag} model it reads; name a new folder",
                self.out.display()
            );
        }
        Ok(())
    }

    /// The data folders and manifests, in the order given (folders first).
    fn sources(&self) -> anyhow::Result<Vec<Source>> {
        let mut sources: Vec<Source> = self
            .data
            .iter()
            .map(|p| Source::from_path(p, &self.label_column, &self.path_column))
            .collect();
        sources.extend(self.labels_csv.iter().map(|p| Source::Csv {
            path: p.clone(),
            label_column: self.label_column.clone(),
            path_column: self.path_column.clone(),
        }));
        anyhow::ensure!(
            !sources.is_empty(),
            "no training data: pass a folder per class, or --labels-csv FILE"
        );
        Ok(sources)
    }

    /// `--input-size` as (height, width), checked against the architecture.
    fn input(&self) -> anyhow::Result<Option<(u32, u32)>> {
        let Some(v) = &self.input_size else {
            return Ok(None);
        };
        let parse = |x: &str| x.trim().parse::<u32>().ok();
        let (h, w) = match v.split_once(['x', 'X']) {
            Some((h, w)) => (parse(h), parse(w)),
            None => (parse(v), parse(v)),
        };
        let (Some(h), Some(w)) = (h, w) else {
            anyhow::bail!("--input-size {v:?}: expected N or HxW");
        };
        anyhow::ensure!(
            self.arch.accepts_size(h, w),
            "--input-size {h}x{w}: the {} network takes {}",
            self.arch.name(),
            if self.arch == Arch::Seed {
                "only 112x92"
            } else {
                "32 to 256 pixels a side"
            }
        );
        Ok(Some((h, w)))
    }

    /// The augmentation: the defaults (or none, `--no-augment`) with `--augment` overrides.
    fn augmentation(&self) -> anyhow::Result<Augment> {
        let mut a = if self.no_augment {
            Augment::none()
        } else {
            Augment::default()
        };
        for kv in &self.augment {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--augment {kv:?}: expected NAME=VALUE"))?;
            let v: f32 = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--augment {kv:?}: {v:?} is not a number"))?;
            a.set(k.trim(), v)
                .map_err(|e| anyhow::anyhow!("--augment: {e}"))?;
        }
        Ok(a)
    }

    /// `--sampler`, with `--source-power` checked for the balanced one.
    fn sampling(&self) -> anyhow::Result<Sampling> {
        Ok(match self.sampler {
            SamplerArg::Uniform => Sampling::Uniform,
            SamplerArg::Balanced => {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&self.source_power),
                    "--source-power must be within 0..=1, got {}",
                    self.source_power
                );
                Sampling::Balanced {
                    source_power: self.source_power,
                }
            }
        })
    }
}

/// `facebatch train`.
pub fn run(args: &TrainArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    let settings = args.settings(g)?;
    let outcome = facebatch::train::train(&settings)?;
    if g.json {
        let report = match &outcome.test_report {
            Some(r) => serde_json::from_str(&facebatch::eval::report_json(r)?)?,
            None => serde_json::Value::Null,
        };
        println!(
            "{}",
            serde_json::json!({ "model": outcome.dir, "test_report": report })
        );
        return Ok(super::EXIT_OK);
    }
    if let Some(report) = &outcome.test_report {
        println!(
            "test split of the exported model ({} images):\n{}",
            report.n,
            report.to_text()
        );
    }
    println!("model written to {}", outcome.dir.display());
    Ok(super::EXIT_OK)
}
