//! `facebatch visualize`: one image's feature maps, layer by layer, or every face's box
//! and label drawn on a photo (`--boxes`), or a model's report figures redrawn from the
//! history and test report saved beside them (`--replot`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::{EXIT_OK, FaceArgs, GlobalArgs, ModelArg, session_options};

#[derive(Args, Debug)]
pub struct VisualizeArgs {
    /// The image to run.
    #[arg(required_unless_present = "replot")]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArg,
    /// Directory for the PNG grids.
    #[arg(long, required_unless_present = "replot")]
    pub out: Option<PathBuf>,
    /// Instead of feature maps: detect and classify every face, and draw boxes, landmarks
    /// and labels on the photo (OUT/<stem>.boxes.png).
    #[arg(long)]
    pub boxes: bool,
    /// Instead of an image: redraw the figures of a model's reports folder (loss.png and
    /// accuracy.png from train_log.csv and epochs.csv; confusion.png, groups-<column>.png
    /// and reliability.png from test_report.json) with this version's plotting code, over
    /// the old ones.
    #[arg(
        long,
        value_name = "REPORTS_DIR",
        conflicts_with_all = ["image", "out", "boxes"]
    )]
    pub replot: Option<PathBuf>,
    #[command(flatten)]
    pub face: FaceArgs,
}

impl VisualizeArgs {
    /// The image (clap requires it unless `--replot` is given).
    fn image(&self) -> anyhow::Result<&Path> {
        self.image.as_deref().context("name the image to visualize")
    }

    /// `--out` (clap requires it unless `--replot` is given).
    fn out(&self) -> anyhow::Result<&Path> {
        self.out
            .as_deref()
            .context("name the folder for the figures with --out")
    }
}

/// `facebatch visualize`.
pub fn run(args: &VisualizeArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    if let Some(dir) = &args.replot {
        return replot(dir, g);
    }
    check_out(args)?;
    if args.boxes {
        boxes(args, g)
    } else {
        feature_maps(args, g)
    }
}

/// `--replot`: a reports folder's figures, redrawn.
fn replot(dir: &Path, g: &GlobalArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        dir.is_dir(),
        "--replot {}: not a folder; name a model's reports folder (models/NAME/VERSION/reports)",
        dir.display()
    );
    let files = facebatch::report::replot::replot(dir)
        .with_context(|| format!("redrawing the figures of {}", dir.display()))?;
    if g.json {
        println!("{}", serde_json::json!({ "files": files }));
        return Ok(EXIT_OK);
    }
    for f in &files {
        println!("{}", f.display());
    }
    println!("{} figure(s) redrawn in {}", files.len(), dir.display());
    Ok(EXIT_OK)
}

/// `--out` is a new or existing folder, never the image; and the image is not among the
/// files written into it (`00_input.png`, `NN_<layer>.png`; `<stem>.boxes.png`, which the
/// image's own name cannot be). Files of those names already in the folder are taken to be
/// an earlier visualization, and replaced.
fn check_out(args: &VisualizeArgs) -> anyhow::Result<()> {
    let (image, out) = (args.image()?, args.out()?);
    facebatch::fsutil::check_out_is_safe(
        &facebatch::fsutil::OutCheck {
            flag: "--out",
            path: out,
            kind: facebatch::fsutil::OutKind::Folder,
            is_own: &|_| true,
            own: "a folder",
        },
        [image],
    )?;
    let (Ok(image), Ok(out_abs)) = (image.canonicalize(), out.canonicalize()) else {
        return Ok(());
    };
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let written_here =
        !args.boxes && image.parent() == Some(out_abs.as_path()) && is_map_name(&name);
    anyhow::ensure!(
        !written_here,
        "--out {}: visualize writes its grids there as 00_input.png and NN_<layer>.png, which \
         could replace the image it reads ({name}); name another folder",
        out.display()
    );
    Ok(())
}

/// A name feature-map grids are written under: `NN_<layer>.png` (`00_input.png` first).
fn is_map_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 7
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'_'
        && name.to_ascii_lowercase().ends_with(".png")
}

/// `--boxes`: every face found, with its box, score and label.
fn boxes(args: &VisualizeArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    let image = args.image()?;
    let (file, faces) = facebatch::visualize::draw_boxes(
        &args.model.path()?,
        image,
        args.out()?,
        &session_options(g),
        &args.face.options(g),
    )
    .with_context(|| format!("drawing faces on {}", image.display()))?;
    if g.json {
        let faces: Vec<_> = faces
            .iter()
            .map(|f| {
                serde_json::json!({
                    "box": f.bbox, "score": f.score,
                    "label": f.label, "confidence": f.confidence,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "file": file, "faces": faces }));
        return Ok(EXIT_OK);
    }
    for (i, f) in faces.iter().enumerate() {
        println!(
            "face {i}\tbox {:.0},{:.0},{:.0},{:.0}\tscore {:.3}\t{} {:.3}",
            f.bbox[0], f.bbox[1], f.bbox[2], f.bbox[3], f.score, f.label, f.confidence
        );
    }
    println!("{} face(s) drawn on {}", faces.len(), file.display());
    Ok(EXIT_OK)
}

/// Every convolution and pooling layer's feature maps, and the model's probabilities.
fn feature_maps(args: &VisualizeArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    let image = args.image()?;
    let maps = facebatch::visualize::feature_maps(
        &args.model.path()?,
        image,
        args.out()?,
        &session_options(g),
        &args.face.options(g),
    )
    .with_context(|| format!("visualizing {}", image.display()))?;
    let layers = &maps.layers;
    if g.json {
        let probabilities: serde_json::Map<String, serde_json::Value> = maps
            .probabilities
            .iter()
            .map(|(l, p)| (l.clone(), serde_json::json!(p)))
            .collect();
        let layers: Vec<_> = layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": l.name, "channels": l.channels,
                    "width": l.width, "height": l.height, "file": l.file,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "layers": layers, "probabilities": probabilities })
        );
        return Ok(EXIT_OK);
    }
    for l in layers {
        println!(
            "{}\t{} maps {}x{}\t{}",
            l.name,
            l.channels,
            l.width,
            l.height,
            l.file.display()
        );
    }
    let probabilities: Vec<String> = maps
        .probabilities
        .iter()
        .map(|(l, p)| format!("{l} {p:.4}"))
        .collect();
    println!("probabilities\t{}", probabilities.join("\t"));
    Ok(EXIT_OK)
}
