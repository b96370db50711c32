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

pub(crate) fn perr(e: impl std::fmt::Display) -> Error {
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
    /// A noisy per-batch series: drawn faint and one pixel wide, and given no say in the
    /// y range beyond its 1st to 99th percentile (what lies outside is clipped at the
    /// plot's edge), so the smoothed curve beside it fills the plot.
    raw: bool,
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

/// Tick positions for an axis whose values are whole numbers (steps, epochs): at most
/// `max` of them, every 1, 2 or 5 times a power of ten, so they print without decimals.
fn whole_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let span = (hi - lo).max(1.0);
    let wanted = span / max.saturating_sub(1).max(1) as f64;
    let mut step = 1.0f64;
    'search: loop {
        for m in [1.0, 2.0, 5.0] {
            if step * m >= wanted {
                step *= m;
                break 'search;
            }
        }
        step *= 10.0;
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// The value at quantile `q` (0..=1) of `values` (nearest rank; 0 for none).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize]
}

/// The smallest and largest of `values` (`None` for none).
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((a, b)) => Some((a.min(v), b.max(v))),
        })
}

/// The part of the segment `a`-`b` inside the box `x`×`y` (Liang-Barsky), if any.
fn clip_segment(
    a: (f64, f64),
    b: (f64, f64),
    x: (f64, f64),
    y: (f64, f64),
) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - x.0),
        (dx, x.1 - a.0),
        (-dy, a.1 - y.0),
        (dy, y.1 - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    (t0 <= t1).then_some((
        (a.0 + t0 * dx, a.1 + t0 * dy),
        (a.0 + t1 * dx, a.1 + t1 * dy),
    ))
}

/// `points` as the runs of line that lie inside the box `x`×`y`: plotters does not clip,
/// so a line drawn past the plotting area lands on the title and the tick labels.
fn clip_polyline(points: &[(f64, f64)], x: (f64, f64), y: (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let inside = |p: &(f64, f64)| p.0 >= x.0 && p.0 <= x.1 && p.1 >= y.0 && p.1 <= y.1;
    if points.len() == 1 {
        return if inside(&points[0]) {
            vec![points.to_vec()]
        } else {
            Vec::new()
        };
    }
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut open = false;
    for w in points.windows(2) {
        let Some((a, b)) = clip_segment(w[0], w[1], x, y) else {
            open = false;
            continue;
        };
        match runs.last_mut() {
            Some(run) if open => run.push(b),
            _ => runs.push(vec![a, b]),
        }
        // The run goes on only where the segment ended inside, at its own end point.
        open = b == w[1];
    }
    runs
}

/// Where a panel's legend covers the least: the right-hand corner (upper or lower) with
/// fewer points of the solid series in the right third of the plot.
fn legend_corner(series: &[Series<'_>], x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let right = x.0 + (x.1 - x.0) * 2.0 / 3.0;
    let middle = (y.0 + y.1) / 2.0;
    let (mut upper, mut lower) = (0usize, 0usize);
    for p in series
        .iter()
        .filter(|s| !s.raw)
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0 >= right)
    {
        if p.1 >= middle {
            upper += 1;
        } else {
            lower += 1;
        }
    }
    if upper <= lower {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::LowerRight
    }
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series<'_>],
) -> Result<()> {
    let (x0, mut x1) =
        bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.0))).unwrap_or((0.0, 1.0));
    let y_all = series.iter().filter_map(|s| {
        let ys: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        if s.raw {
            (!ys.is_empty()).then(|| (quantile(&ys, 0.01), quantile(&ys, 0.99)))
        } else {
            bounds(ys.into_iter())
        }
    });
    let (y0, mut y1) = y_all
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        .unwrap_or((0.0, 1.0));
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1e-3;
    }
    let pad = (y1 - y0) * 0.05;
    let (y0, y1) = (y0 - pad, y1 + pad);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(perr)?;
    // x is a step or an epoch: as many ticks as there are whole-number ones, and any
    // tick plotters puts between whole numbers left unlabelled.
    let whole = |x: &f64| {
        if (x - x.round()).abs() < 1e-6 {
            format!("{x:.0}")
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(whole_ticks(x0, x1, 10).len().max(2))
        .x_label_formatter(&whole)
        .light_line_style(WHITE)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(perr)?;
    for s in series {
        let color = s.color;
        // The raw series is pale by its colour; it and any long series are one pixel wide.
        let style = if s.raw || s.points.len() > THICK_MAX_POINTS {
            color.stroke_width(1)
        } else {
            color.stroke_width(3)
        };
        let runs = clip_polyline(&s.points, (x0, x1), (y0, y1));
        for (k, run) in runs.into_iter().enumerate() {
            let drawn = chart
                .draw_series(LineSeries::new(run, style))
                .map_err(perr)?;
            if k == 0 {
                drawn.label(s.name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
        if s.points.len() <= 60 {
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(perr)?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_corner(series, (x0, x1), (y0, y1)))
        .background_style(WHITE.mix(0.85))
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
        write_png(&dir.join(format!("{file}.png")), (1400, 520), |root| {
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
                        // Pale and opaque: thousands of overlapping segments stay pale.
                        color: RGBColor(200, 212, 240),
                        points: raw.clone(),
                        raw: true,
                    },
                    Series {
                        name: "train (smoothed)",
                        color: BLUE,
                        points: downsample(&smooth(&raw, alpha), THICK_MAX_POINTS),
                        raw: false,
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
                        raw: false,
                    },
                    Series {
                        name: "validation",
                        color: RGBColor(220, 80, 30),
                        points: epochs
                            .iter()
                            .map(|e| (e.epoch as f64, pick_e(e).1))
                            .collect(),
                        raw: false,
                    },
                ],
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Draws on `img` in place with plotters (text, shapes), through a drawing area of its
/// size.
pub(crate) fn draw_on(img: &mut RgbImage, draw: impl FnOnce(&Area) -> Result<()>) -> Result<()> {
    ensure_font();
    let (w, h) = img.dimensions();
    let buf: &mut [u8] = img.as_mut();
    let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
    draw(&root)?;
    root.present().map_err(perr)
}

/// Draws `title` in a band above `grid` and saves the PNG.
pub fn save_titled(grid: &RgbImage, title: &str, path: &Path) -> Result<()> {
    let band = 34u32;
    let (w, h) = (grid.width().max(360), grid.height() + band);
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut canvas, grid, 0, band as i64);
    draw_on(&mut canvas, |root| {
        root.draw(&Text::new(
            title.to_string(),
            (8, 8),
            ("sans-serif", 18).into_font().color(&BLACK),
        ))
        .map_err(perr)
    })?;
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
pub(crate) type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

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

/// The files [`report_figures`] writes for `report`, in order: `confusion.png`,
/// `groups-<column>.png` for every group column, and `reliability.png` when the report
/// holds its calibration.
pub fn report_figure_names(report: &crate::model::metrics::Report) -> Vec<String> {
    let mut names = vec!["confusion.png".to_string()];
    for column in report.groups.keys() {
        let name: String = column
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        names.push(format!("groups-{}.png", name.trim_matches('-')));
    }
    if report.calibration.is_some() {
        names.push("reliability.png".to_string());
    }
    names
}

/// A test report as pictures in `reports` (the files of [`report_figure_names`]): the
/// confusion matrix, the accuracy per group with its 95% interval for every group column,
/// and the reliability diagram. Returns the files written.
pub fn report_figures(
    reports: &Path,
    report: &crate::model::metrics::Report,
) -> Result<Vec<std::path::PathBuf>> {
    let written: Vec<std::path::PathBuf> = report_figure_names(report)
        .iter()
        .map(|n| reports.join(n))
        .collect();
    confusion_matrix(
        &written[0],
        &report.labels,
        &report.confusion,
        &format!("test split: confusion matrix ({} images)", report.n),
    )?;
    for ((column, groups), path) in report.groups.iter().zip(&written[1..]) {
        group_bars(
            path,
            column,
            groups,
            &format!("test split: accuracy by {column}"),
        )?;
    }
    if let (Some(r), Some(path)) = (&report.calibration, written.last()) {
        reliability_diagram(path, r, "test split")?;
    }
    Ok(written)
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
            let bluish = |p: &image::Rgb<u8>| p[2] as i32 > p[0] as i32 + 20;
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
        assert_eq!(whole_ticks(1.0, 3.0, 10), vec![1.0, 2.0, 3.0]);
        assert_eq!(
            whole_ticks(1.0, 10.0, 10),
            (1..=10).map(f64::from).collect::<Vec<_>>()
        );
        assert_eq!(
            whole_ticks(1.0, 10800.0, 10),
            vec![2000.0, 4000.0, 6000.0, 8000.0, 10000.0]
        );
        assert_eq!(whole_ticks(1.0, 2.0, 10), vec![1.0, 2.0]);
        for t in whole_ticks(3.0, 977.0, 10) {
            assert_eq!(t.fract(), 0.0);
        }
    }

    #[test]
    fn a_line_is_clipped_to_the_plot() {
        let (x, y) = ((0.0, 10.0), (0.0, 1.0));
        // In, out above, back in, out below and the end outside.
        let line = [(0.0, 0.5), (2.0, 3.0), (4.0, 0.5), (6.0, 0.2), (8.0, -1.0)];
        let runs = clip_polyline(&line, x, y);
        assert_eq!(runs.len(), 2, "{runs:?}");
        for p in runs.iter().flatten() {
            assert!(
                p.0 >= x.0 && p.0 <= x.1 && p.1 >= y.0 && p.1 <= y.1,
                "{p:?}"
            );
        }
        // The first run ends where the line leaves through the top (y = 1 at x = 0.4).
        let end = *runs[0].last().unwrap();
        assert!((end.0 - 0.4).abs() < 1e-9 && (end.1 - 1.0).abs() < 1e-9);
        // The second keeps the inside points (4, 0.5) and (6, 0.2).
        assert!(runs[1].contains(&(4.0, 0.5)) && runs[1].contains(&(6.0, 0.2)));
        assert!(clip_polyline(&[(0.0, 5.0), (9.0, 5.0)], x, y).is_empty());
        assert_eq!(clip_polyline(&line[..1], x, y), vec![vec![(0.0, 0.5)]]);
    }

    #[test]
    fn the_batch_series_does_not_stretch_the_y_range() {
        let values: Vec<f64> = (0..1000)
            .map(|i| if i == 500 { 50.0 } else { 1.0 })
            .collect();
        assert_eq!(quantile(&values, 0.99), 1.0);
        assert_eq!(quantile(&values, 1.0), 50.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
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
