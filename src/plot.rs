//! PNG figures: training curves and feature-map grids. The font is embedded, so figures
//! render the same on any machine.

use std::path::Path;
use std::sync::Once;

use image::RgbImage;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

static FONT: Once = Once::new();
const FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

pub(crate) fn ensure_font() {
    FONT.call_once(|| {
        // The bytes are a known-good TTF compiled into the binary.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
    });
}

fn perr(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

/// One optimisation step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: usize,
    pub epoch: usize,
    pub loss: f32,
    pub accuracy: f32,
    pub lr: f64,
}

/// One epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub lr: f64,
    pub seconds: f64,
}

struct Series<'a> {
    name: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<()> {
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let (mut x0, mut x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (mut y0, mut y1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    if all.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1e-3;
    }
    let pad = (y1 - y0) * 0.05;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(perr)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(perr)?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if s.points.len() <= 60 {
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(perr)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    Ok(())
}

/// Exponential moving average, for readable per-step curves.
fn smooth(points: &[(f64, f64)], alpha: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut acc: Option<f64> = None;
    for &(x, y) in points {
        let v = match acc {
            Some(a) => a + alpha * (y - a),
            None => y,
        };
        acc = Some(v);
        out.push((x, v));
    }
    out
}

/// Writes `loss.png` and `accuracy.png`: per-step training curves on the left, per-epoch
/// training and validation curves on the right.
pub fn training_curves(dir: &Path, steps: &[StepRecord], epochs: &[EpochRecord]) -> Result<()> {
    ensure_font();
    type Pick = fn(&StepRecord) -> f64;
    type PickE = fn(&EpochRecord) -> (f64, f64);
    let metrics: [(&str, &str, Pick, PickE); 2] = [
        (
            "loss",
            "loss",
            |s| s.loss as f64,
            |e| (e.train_loss, e.val_loss),
        ),
        (
            "accuracy",
            "accuracy",
            |s| s.accuracy as f64,
            |e| (e.train_accuracy, e.val_accuracy),
        ),
    ];
    for (file, what, pick, pick_e) in metrics {
        let path = dir.join(format!("{file}.png"));
        {
            let root = BitMapBackend::new(&path, (1400, 520)).into_drawing_area();
            root.fill(&WHITE).map_err(perr)?;
            let (left, right) = root.split_horizontally(700);
            let raw: Vec<(f64, f64)> = steps.iter().map(|s| (s.step as f64, pick(s))).collect();
            let alpha = (10.0 / raw.len().max(10) as f64).clamp(0.01, 1.0);
            panel(
                &left,
                &format!("training {what} per step"),
                "step",
                what,
                &[
                    Series {
                        name: "train (batch)",
                        color: RGBColor(170, 190, 230),
                        points: raw.clone(),
                    },
                    Series {
                        name: "train (smoothed)",
                        color: BLUE,
                        points: smooth(&raw, alpha),
                    },
                ],
            )?;
            panel(
                &right,
                &format!("{what} per epoch"),
                "epoch",
                what,
                &[
                    Series {
                        name: "train",
                        color: BLUE,
                        points: epochs
                            .iter()
                            .map(|e| (e.epoch as f64, pick_e(e).0))
                            .collect(),
                    },
                    Series {
                        name: "validation",
                        color: RGBColor(220, 80, 30),
                        points: epochs
                            .iter()
                            .map(|e| (e.epoch as f64, pick_e(e).1))
                            .collect(),
                    },
                ],
            )?;
            root.present().map_err(perr)?;
        }
    }
    Ok(())
}

/// Draws `title` in a band above `grid` and saves the PNG.
pub fn save_titled(grid: &RgbImage, title: &str, path: &Path) -> Result<()> {
    ensure_font();
    let band = 34u32;
    let (w, h) = (grid.width().max(360), grid.height() + band);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, grid, 0, band as i64);
    {
        let buf: &mut [u8] = canvas.as_mut();
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        root.draw(&Text::new(
            title.to_string(),
            (8, 8),
            ("sans-serif", 18).into_font().color(&BLACK),
        ))
        .map_err(perr)?;
        root.present().map_err(perr)?;
    }
    canvas.save(path).map_err(perr)
}

/// Writes a reliability diagram: the accuracy of each confidence bin as a bar, against
/// the diagonal of perfect calibration, with the ECE in the title.
pub fn reliability_diagram(
    path: &Path,
    r: &crate::calibration::Reliability,
    title: &str,
) -> Result<()> {
    ensure_font();
    let tmp = path.with_extension("png.tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (640, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title} (ECE {:.3})", r.ece), ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
            .map_err(perr)?;
        chart
            .configure_mesh()
            .x_desc("confidence (top-class probability)")
            .y_desc("accuracy")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        let bar = RGBColor(90, 130, 200);
        chart
            .draw_series(
                r.bins.iter().filter(|b| b.n > 0).map(|b| {
                    Rectangle::new([(b.lo, 0.0), (b.hi, b.accuracy)], bar.mix(0.75).filled())
                }),
            )
            .map_err(perr)?
            .label("accuracy per bin")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], bar.filled()));
        let gap = RGBColor(220, 80, 30);
        chart
            .draw_series(
                r.bins
                    .iter()
                    .filter(|b| b.n > 0)
                    .map(|b| Circle::new((b.confidence, b.accuracy), 4, gap.filled())),
            )
            .map_err(perr)?
            .label("(mean confidence, accuracy)")
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, gap.filled()));
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(perr)?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(perr)?;
        root.present().map_err(perr)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
