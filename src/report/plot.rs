//! PNG figures: training curves and feature-map grids. The font is embedded, so figures
//! render the same on any machine.

use std::path::Path;
use std::sync::Once;

use image::RgbImage;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

static FONT: Once = Once::new();
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

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

/// Series with more points than this are drawn one pixel wide: plotters draws a wider
/// line as a polygon per segment with mitred joins, and on a dense zig-zag (a per-batch
/// series) those joins spike far outside the plot, across the title and the axis labels.
const THICK_MAX_POINTS: usize = 300;

/// Averages `points` into at most `n` buckets of consecutive points (x and y means), so a
/// smoothed series of thousands of steps is drawn as a few hundred gentle segments.
fn downsample(points: &[(f64, f64)], n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n || n == 0 {
        return points.to_vec();
    }
    let size = points.len().div_ceil(n);
    points
        .chunks(size)
        .map(|c| {
            let k = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / k,
                c.iter().map(|p| p.1).sum::<f64>() / k,
            )
        })
        .collect()
}

/// Tick labels for an axis whose values are whole numbers (steps, epochs): at most `max`
/// labels on whole numbers, printed without decimals.
fn integer_ticks(lo: f64, hi: f64, max: usize) -> usize {
    ((hi - lo).round() as usize + 1).clamp(2, max)
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
    // x is a step or an epoch: whole numbers, so whole-number ticks.
    let whole = |x: &f64| format!("{x:.0}");
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(integer_ticks(x0, x1, 10))
        .x_label_formatter(&whole)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    for s in series {
        let color = s.color;
        let width = if s.points.len() > THICK_MAX_POINTS {
            1
        } else {
            2
        };
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(width),
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
                        points: downsample(&smooth(&raw, alpha), THICK_MAX_POINTS),
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
    r: &crate::model::calibration::Reliability,
    title: &str,
) -> Result<()> {
    ensure_font();
    write_png(path, (640, 640), |root| {
        let mut chart = ChartBuilder::on(root)
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
        Ok(())
    })
}

/// A figure being drawn.
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws a figure of `size` on white with `draw` and writes it to `path` as PNG (through a
/// temporary file beside it, then a rename).
fn write_png(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("png.tmp.png");
    {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(perr)?;
        draw(&root)?;
        root.present().map_err(perr)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Text of `px` pixels, centred on its position.
fn centred(px: u32) -> TextStyle<'static> {
    TextStyle::from(("sans-serif", px).into_font()).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Center,
    ))
}

/// The confusion-matrix figure's cell side, and its margins left of and above the cells.
const CELL: i32 = 150;
const LEFT: i32 = 140;
const TOP: i32 = 90;

/// Writes a confusion matrix as a heat map: rows the true labels, columns the predicted
/// ones, each cell with its count and its share of the row.
pub fn confusion_matrix(
    path: &Path,
    labels: &[String],
    confusion: &[Vec<usize>],
    title: &str,
) -> Result<()> {
    ensure_font();
    let n = labels.len().max(1);
    let size = (
        (LEFT + CELL * n as i32 + 40) as u32,
        (TOP + CELL * n as i32 + 70) as u32,
    );
    write_png(path, size, |root| {
        confusion_axes(root, labels, title, size.0)?;
        for (i, row) in confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (j, &c) in row.iter().enumerate() {
                let share = if total > 0 {
                    c as f64 / total as f64
                } else {
                    0.0
                };
                let at = (LEFT + CELL * j as i32, TOP + CELL * i as i32);
                confusion_cell(root, at, c, share)?;
            }
        }
        Ok(())
    })
}

/// The confusion matrix's title, axis names and labels, on a figure `width` wide.
fn confusion_axes(root: &Area, labels: &[String], title: &str, width: u32) -> Result<()> {
    let n = labels.len().max(1);
    root.draw(&Text::new(
        title.to_string(),
        (width as i32 / 2, 22),
        centred(20),
    ))
    .map_err(perr)?;
    root.draw(&Text::new(
        "predicted".to_string(),
        (LEFT + CELL * n as i32 / 2, TOP - 40),
        centred(16),
    ))
    .map_err(perr)?;
    root.draw(&Text::new(
        "true".to_string(),
        (LEFT / 2 - 30, TOP + CELL * n as i32 / 2),
        centred(16),
    ))
    .map_err(perr)?;
    for (j, l) in labels.iter().enumerate() {
        root.draw(&Text::new(
            l.clone(),
            (LEFT + CELL * j as i32 + CELL / 2, TOP - 14),
            centred(15),
        ))
        .map_err(perr)?;
        root.draw(&Text::new(
            l.clone(),
            (LEFT - 45, TOP + CELL * j as i32 + CELL / 2),
            centred(15),
        ))
        .map_err(perr)?;
    }
    Ok(())
}

/// One confusion-matrix cell at `(x, y)`: shaded by its `share` of the row, with its
/// count and share written in it.
fn confusion_cell(root: &Area, (x, y): (i32, i32), count: usize, share: f64) -> Result<()> {
    // White to the report blue by the share of the row.
    let shade = |lo: f64, hi: f64| (lo + (hi - lo) * share).round() as u8;
    let fill = RGBColor(shade(255.0, 40.0), shade(255.0, 90.0), shade(255.0, 170.0));
    root.draw(&Rectangle::new(
        [(x, y), (x + CELL, y + CELL)],
        fill.filled(),
    ))
    .map_err(perr)?;
    root.draw(&Rectangle::new([(x, y), (x + CELL, y + CELL)], BLACK))
        .map_err(perr)?;
    let ink = if share > 0.55 { WHITE } else { BLACK };
    root.draw(&Text::new(
        count.to_string(),
        (x + CELL / 2, y + CELL / 2 - 12),
        centred(22).color(&ink),
    ))
    .map_err(perr)?;
    root.draw(&Text::new(
        format!("{:.1}%", 100.0 * share),
        (x + CELL / 2, y + CELL / 2 + 16),
        centred(15).color(&ink),
    ))
    .map_err(perr)?;
    Ok(())
}

/// The y axis of [`group_bars`]: one segment per group.
type BarChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
    >,
>;

/// Writes one group column's accuracy per group as horizontal bars with their 95% Wilson
/// intervals as whiskers; groups under [`crate::model::metrics::SMALL_GROUP`] images are drawn
/// pale and marked `*`, as the text report does.
pub fn group_bars(
    path: &Path,
    column: &str,
    groups: &std::collections::BTreeMap<String, crate::model::metrics::GroupStats>,
    title: &str,
) -> Result<()> {
    ensure_font();
    let rows: Vec<(&String, &crate::model::metrics::GroupStats)> = groups.iter().collect();
    let n = rows.len().max(1);
    let height = (120 + 44 * n) as u32;
    write_png(path, (900, height), |root| {
        let lo = rows
            .iter()
            .map(|(_, g)| g.accuracy_ci[0].min(g.accuracy))
            .fold(1.0f64, f64::min);
        let x0 = ((lo * 10.0).floor() / 10.0).clamp(0.0, 0.9);
        let names: Vec<String> = rows
            .iter()
            .map(|(k, g)| format!("{k}{} (n={})", if g.small { "*" } else { "" }, g.n))
            .collect();
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(200)
            // An integer range's segments include its end: n rows are 0..n-1.
            .build_cartesian_2d(x0..1.0f64, (0..n.saturating_sub(1).max(1)).into_segmented())
            .map_err(perr)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let percent = |x: &f64| format!("{:.0}%", 100.0 * x);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(format!(
                "accuracy by {column} (95% Wilson interval; * fewer than {} images)",
                crate::model::metrics::SMALL_GROUP
            ))
            .y_label_formatter(&label)
            .x_label_formatter(&percent)
            .y_labels(n)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(perr)?;
        for (i, (_, g)) in rows.iter().enumerate() {
            group_bar(&mut chart, i, g, x0)?;
        }
        Ok(())
    })
}

/// Group `i`'s bar from `x0` to its accuracy, pale when the group is small, and the
/// whisker of its 95% interval.
fn group_bar(
    chart: &mut BarChart,
    i: usize,
    g: &crate::model::metrics::GroupStats,
    x0: f64,
) -> Result<()> {
    let bar = RGBColor(90, 130, 200);
    let color = if g.small {
        bar.mix(0.35)
    } else {
        bar.mix(0.85)
    };
    let mut rect = Rectangle::new(
        [
            (x0, SegmentValue::Exact(i)),
            (g.accuracy, SegmentValue::Exact(i + 1)),
        ],
        color.filled(),
    );
    rect.set_margin(6, 6, 0, 0);
    chart.draw_series(std::iter::once(rect)).map_err(perr)?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (g.accuracy_ci[0], SegmentValue::CenterOf(i)),
                (g.accuracy_ci[1], SegmentValue::CenterOf(i)),
            ],
            BLACK.stroke_width(2),
        )))
        .map_err(perr)?;
    for x in g.accuracy_ci {
        chart
            .draw_series(std::iter::once(Circle::new(
                (x, SegmentValue::CenterOf(i)),
                3,
                BLACK.filled(),
            )))
            .map_err(perr)?;
    }
    Ok(())
}

/// A test report as pictures: `confusion.png`, and `groups-<column>.png` (accuracy per
/// group with its 95% interval) for every group column.
pub fn report_figures(reports: &Path, report: &crate::model::metrics::Report) -> Result<()> {
    confusion_matrix(
        &reports.join("confusion.png"),
        &report.labels,
        &report.confusion,
        &format!("test split: confusion matrix ({} images)", report.n),
    )?;
    for (column, groups) in &report.groups {
        let name: String = column
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        group_bars(
            &reports.join(format!("groups-{}.png", name.trim_matches('-'))),
            column,
            groups,
            &format!("test split: accuracy by {column}"),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the per-batch series, drawn two pixels wide, spiked across the title
    /// and the axis labels (mitred joins on a dense zig-zag).
    #[test]
    fn a_dense_batch_series_stays_inside_its_plot() {
        let dir = tempfile::tempdir().unwrap();
        let steps: Vec<StepRecord> = (0..3000)
            .map(|i| StepRecord {
                step: i + 1,
                epoch: i / 1000 + 1,
                loss: if i % 2 == 0 { 0.1 } else { 2.0 },
                accuracy: if i % 2 == 0 { 0.0 } else { 1.0 },
                lr: 1e-3,
            })
            .collect();
        let epochs: Vec<EpochRecord> = (1..=3)
            .map(|e| EpochRecord {
                epoch: e,
                train_loss: 1.0,
                train_accuracy: 0.5,
                val_loss: 1.0,
                val_accuracy: 0.5,
                lr: 1e-3,
                seconds: 1.0,
            })
            .collect();
        training_curves(dir.path(), &steps, &epochs).unwrap();
        for file in ["accuracy.png", "loss.png"] {
            let img = image::open(dir.path().join(file)).unwrap().to_rgb8();
            // The caption band of the per-step panel (above the plotting area) and the
            // axis-label band left of it hold no series colour.
            let bluish = |p: &image::Rgb<u8>| p[2] as i32 > p[0] as i32 + 40;
            for y in 0..40 {
                for x in 0..700 {
                    assert!(
                        !bluish(img.get_pixel(x, y)),
                        "{file}: series pixel at ({x}, {y}) in the title"
                    );
                }
            }
            for y in 0..img.height() {
                for x in 0..60 {
                    assert!(
                        !bluish(img.get_pixel(x, y)),
                        "{file}: series pixel at ({x}, {y}) in the axis labels"
                    );
                }
            }
        }
    }

    #[test]
    fn whole_number_axes_get_whole_number_ticks() {
        assert_eq!(integer_ticks(1.0, 3.0, 10), 3);
        assert_eq!(integer_ticks(1.0, 20.0, 10), 10);
        assert_eq!(integer_ticks(1.0, 1.0, 10), 2);
    }

    #[test]
    fn report_figures_render() {
        let dir = tempfile::tempdir().unwrap();
        let labels = vec!["female".to_string(), "male".to_string()];
        confusion_matrix(
            &dir.path().join("c.png"),
            &labels,
            &[vec![40, 3], vec![5, 52]],
            "t",
        )
        .unwrap();
        let mut groups = std::collections::BTreeMap::new();
        for (name, n, correct) in [("utkface", 200, 180), ("press", 12, 11)] {
            let acc = correct as f64 / n as f64;
            groups.insert(
                name.to_string(),
                crate::model::metrics::GroupStats {
                    n,
                    correct,
                    accuracy: acc,
                    accuracy_ci: crate::model::calibration::wilson(correct, n),
                    recall: Default::default(),
                    recall_ci: Default::default(),
                    support: Default::default(),
                    small: n < crate::model::metrics::SMALL_GROUP,
                },
            );
        }
        group_bars(&dir.path().join("g.png"), "source", &groups, "t").unwrap();
        for f in ["c.png", "g.png"] {
            let img = image::open(dir.path().join(f)).unwrap().to_rgb8();
            let inked = img.pixels().filter(|p| p[0] < 200).count();
            assert!(inked > 1000, "{f} has content");
        }
    }
}
