//! `facebatch visualize`: every convolution and pooling layer's feature maps for one image,
//! straight from the shipped ONNX file (no training checkpoint needed).
//!
//! The graph is rewritten in memory so that each ReLU after a convolution and each
//! max-pool also becomes a graph output, then run once through ONNX Runtime.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::model::classifier::{CheckedModel, Classifier};
use crate::onnx::{SessionOptions, build_session};
use crate::report::plot::save_titled;
use crate::vision::decode::{DecodeLimits, load_rgb};
use crate::vision::detect::Face;
use crate::vision::faces::{Crop, FaceFinder, FaceMode, FaceOptions};

/// One visualised layer.
#[derive(Clone, Debug)]
pub struct LayerMaps {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub file: PathBuf,
}

/// Adds every rank-4 activation candidate (ReLU, MaxPool) as a graph output. Returns the
/// rewritten model and the (tensor name, display name) pairs in graph order.
/// An activation exposed as a graph output: (tensor name, display name).
type Exposed = (String, String);

fn expose_activations(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<Exposed>)> {
    let invalid = |reason: String| Error::InvalidModel {
        path: path.to_path_buf(),
        reason,
    };
    let graph = crate::onnx::proto::read_graph(bytes).map_err(invalid)?;
    let Some(elem_type) = graph.first_output_elem_type else {
        return Err(invalid("graph has no typed outputs".into()));
    };
    let existing: std::collections::HashSet<&String> = graph.outputs.iter().collect();
    let (mut conv, mut pool) = (0, 0);
    let mut picked = Vec::new();
    for node in &graph.nodes {
        let display = match node.op_type.as_str() {
            "Relu" => {
                conv += 1;
                format!("relu{conv}")
            }
            "MaxPool" => {
                pool += 1;
                format!("pool{pool}")
            }
            _ => continue,
        };
        if let Some(out) = node.outputs.first() {
            picked.push((out.clone(), display));
        }
    }
    let new: Vec<String> = picked
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| !existing.contains(name))
        .collect();
    Ok((
        crate::onnx::proto::add_outputs(bytes, &new, elem_type),
        picked,
    ))
}

/// The viridis colour map (plotters' matplotlib table), for `t` in 0..=1.
fn viridis(t: f32) -> Rgb<u8> {
    use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
    let c = ViridisRGB.get_color(t.clamp(0.0, 1.0));
    Rgb([c.0, c.1, c.2])
}

/// The band below a feature-map grid that holds its colour scale.
const SCALE_BAND: usize = 44;

/// Tiles `[C, H, W]` maps into a grid on one colour scale shared by every tile (the
/// layer's smallest value to its largest, so tiles compare), each tile numbered with its
/// map index, and the viridis scale with those two values written below.
fn grid(data: &[f32], c: usize, h: usize, w: usize) -> Result<RgbImage> {
    let cols = (c as f64).sqrt().ceil() as usize;
    let rows = c.div_ceil(cols);
    let scale = (48 / h.max(w)).max(1);
    let (th, tw, gap) = (h * scale, w * scale, 2);
    let tiles_h = rows * (th + gap) + gap;
    let mut img = RgbImage::from_pixel(
        (cols * (tw + gap) + gap) as u32,
        (tiles_h + SCALE_BAND) as u32,
        Rgb([255, 255, 255]),
    );
    let values = &data[..(c * h * w).min(data.len())];
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
    let range = if hi > lo { hi - lo } else { 1.0 };
    let origin = |ch: usize| {
        (
            gap + (ch % cols) * (tw + gap),
            gap + (ch / cols) * (th + gap),
        )
    };
    for ch in 0..c {
        let Some(plane) = values.get(ch * h * w..(ch + 1) * h * w) else {
            break;
        };
        let (ox, oy) = origin(ch);
        for y in 0..th {
            for x in 0..tw {
                let v = (plane[(y / scale) * w + x / scale] - lo) / range;
                img.put_pixel((ox + x) as u32, (oy + y) as u32, viridis(v));
            }
        }
    }
    // The scale: a viridis ramp as wide as the grid allows (at most 320 px).
    let (bar_x, bar_y, bar_w, bar_h) = (
        8usize,
        tiles_h + 6,
        (img.width() as usize).saturating_sub(16).clamp(16, 320),
        12usize,
    );
    for x in 0..bar_w.min(img.width() as usize - bar_x) {
        let color = viridis(x as f32 / (bar_w - 1) as f32);
        for y in 0..bar_h {
            img.put_pixel((bar_x + x) as u32, (bar_y + y) as u32, color);
        }
    }
    let number = |v: f32| {
        if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
            format!("{v:.2e}")
        } else {
            format!("{v:.2}")
        }
    };
    let index_px = (tw.min(th) as u32 / 4).clamp(9, 12);
    crate::report::plot::draw_on(&mut img, |root| {
        use plotters::prelude::*;
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let perr = crate::report::plot::perr;
        for ch in 0..c {
            let (ox, oy) = origin(ch);
            let text = ch.to_string();
            let font = ("sans-serif", index_px).into_font();
            let (w, h) = root
                .estimate_text_size(&text, &TextStyle::from(font.clone()))
                .map_err(perr)?;
            let (x, y) = (ox as i32, oy as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + w as i32 + 3, y + h as i32 + 1)],
                BLACK.mix(0.55).filled(),
            ))
            .map_err(perr)?;
            root.draw(&Text::new(text, (x + 2, y), font.color(&WHITE)))
                .map_err(perr)?;
        }
        let y = (bar_y + bar_h + 3) as i32;
        let small = ("sans-serif", 12).into_font().color(&BLACK);
        root.draw(&Text::new(number(lo), (bar_x as i32, y), small.clone()))
            .map_err(perr)?;
        root.draw(&Text::new(
            number(hi),
            ((bar_x + bar_w) as i32, y),
            small.clone().pos(Pos::new(HPos::Right, VPos::Top)),
        ))
        .map_err(perr)?;
        root.draw(&Text::new(
            "activation (one scale, all maps)",
            ((bar_x + bar_w / 2) as i32, y),
            small.pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(perr)?;
        Ok(())
    })?;
    Ok(img)
}

/// What [`feature_maps`] wrote, and what the model says of the face.
#[derive(Debug)]
pub struct FeatureMaps {
    pub layers: Vec<LayerMaps>,
    /// `(label, probability)` in the card's label order: the reported probabilities, the
    /// same as classify's and eval's for this face.
    pub probabilities: Vec<(String, f32)>,
}

/// Writes one PNG per layer (plus the model's view of the input) into `out_dir`.
pub fn feature_maps(
    model: &Path,
    image_path: &Path,
    out_dir: &Path,
    opts: &SessionOptions,
    faces: &FaceOptions,
) -> Result<FeatureMaps> {
    let checked = CheckedModel::read(model)?;
    let (onnx_path, card) = (&checked.onnx_path, &checked.card);
    let (rewritten, layers) = expose_activations(&checked.files[0].bytes, onnx_path)?;
    let mut session = build_session(&rewritten, opts, onnx_path)?;
    // The probabilities come from the model as the card runs it (test-time flip,
    // calibration), exactly as classify and eval report them; the rewritten graph only
    // shows the activations of one plain pass.
    let classifier = Classifier::from_checked(&checked, opts)?;

    let spec = &card.primary().input;
    let rgb = load_rgb(image_path, DecodeLimits::default())?;
    // The subject face exactly as classify would crop it (aligned models), else the fit.
    let finder = FaceFinder::for_model(card.faces(), faces, opts, 1)?;
    let subject = finder
        .subject(&rgb)?
        .ok_or_else(|| Error::Dataset(format!("no face found in {}", image_path.display())))?;
    let fitted = subject.image().clone();
    let mut input = vec![0f32; spec.len()];
    spec.write_tensor(&fitted, &mut input);
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::io(format!("creating {}", out_dir.display()), e))?;
    let shape = [1usize, 3, spec.height as usize, spec.width as usize];
    let tensor = TensorRef::from_array_view((shape, input.as_slice()))
        .map_err(|e| Error::ort("wrapping the input", e))?;
    let outputs = session
        .run(ort::inputs![spec.name.clone() => tensor])
        .map_err(|e| Error::ort("running the model", e))?;

    let big = image::imageops::resize(
        &fitted,
        fitted.width() * 3,
        fitted.height() * 3,
        image::imageops::FilterType::Nearest,
    );
    save_titled(
        &big,
        &format!(
            "input as the model sees it ({}x{})",
            spec.width, spec.height
        ),
        &out_dir.join("00_input.png"),
    )?;
    let probs = classifier.classify_crops(&[&subject.images])?.probs;
    let written = write_layers(&outputs, &layers, out_dir)?;
    let probabilities: Vec<(String, f32)> = card.labels.iter().cloned().zip(probs).collect();
    tracing::info!(image = %image_path.display(), layers = written.len(), "feature maps written");
    Ok(FeatureMaps {
        layers: written,
        probabilities,
    })
}

/// Writes one grid of feature maps per exposed `layers` output of rank 4, numbered in
/// graph order.
fn write_layers(
    outputs: &ort::session::SessionOutputs<'_>,
    layers: &[Exposed],
    out_dir: &Path,
) -> Result<Vec<LayerMaps>> {
    let mut written = Vec::new();
    for (k, (tensor_name, display)) in layers.iter().enumerate() {
        let Some(value) = outputs.get(tensor_name) else {
            continue;
        };
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::ort(format!("reading {display}"), e))?;
        if shape.len() != 4 {
            continue; // dense-layer ReLUs
        }
        let (c, h, w) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
        let file = out_dir.join(format!("{:02}_{display}.png", k + 1));
        save_titled(
            &grid(data, c, h, w)?,
            &format!("{display}: {c} maps of {w}x{h}"),
            &file,
        )?;
        written.push(LayerMaps {
            name: display.clone(),
            channels: c,
            height: h,
            width: w,
            file,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_map_ends() {
        assert_eq!(viridis(0.0), Rgb([68, 1, 84]));
        assert_eq!(viridis(1.0), Rgb([254, 232, 37]));
    }

    #[test]
    fn grid_layout() {
        let data = vec![0.5f32; 5 * 4 * 4];
        let g = grid(&data, 5, 4, 4).unwrap();
        // 3 columns x 2 rows of 48px tiles with 2px gaps, and the scale below.
        assert_eq!(
            g.dimensions(),
            (3 * 50 + 2, (2 * 50 + 2 + SCALE_BAND) as u32)
        );
    }

    fn assert_apart_and_inside(spots: &[Rect], image: (i32, i32)) {
        for (i, a) in spots.iter().enumerate() {
            assert!(a.inside(image), "label {i} {a:?} leaves the image");
            for (j, b) in spots.iter().enumerate().skip(i + 1) {
                assert!(!a.overlaps(b), "labels {i} {a:?} and {j} {b:?} overlap");
            }
        }
    }

    #[test]
    fn labels_of_adjacent_faces_do_not_overlap() {
        let image = (200, 200);
        let boxes = [[10, 40, 30, 60], [32, 40, 52, 60]];
        let spots = place_labels(&boxes, &[(60, 15), (60, 15)], image);
        assert_apart_and_inside(&spots, image);
        // The first sits right above its face.
        assert_eq!(
            spots[0],
            Rect {
                x: 10,
                y: 25,
                w: 60,
                h: 15
            }
        );
    }

    #[test]
    fn labels_stay_inside_the_image() {
        let image = (100, 80);
        // At the right edge, at the top (no room above: below the box), and at the bottom
        // left with no room below either.
        let boxes = [[85, 30, 99, 44], [0, 0, 20, 20], [0, 60, 10, 79]];
        let spots = place_labels(&boxes, &[(50, 14), (50, 14), (50, 14)], image);
        assert_apart_and_inside(&spots, image);
        assert_eq!(spots[0].x, 50, "shifted left to fit");
        assert_eq!(spots[1].y, 21, "below the box at the top");
        assert!(spots[2].y + 14 <= 60, "above the box at the bottom");
    }

    #[test]
    fn a_row_of_small_faces_gets_a_label_each_without_overlaps() {
        // A crowd: 12 faces of 16 px side by side, labels four faces wide.
        let image = (400, 300);
        let boxes: Vec<[i32; 4]> = (0..12)
            .map(|i| [20 + i * 18, 120, 36 + i * 18, 136])
            .collect();
        let spots = place_labels(&boxes, &[(70, 15); 12], image);
        assert_apart_and_inside(&spots, image);
        // And none covers a face.
        for s in &spots {
            assert!(boxes.iter().all(|&b| !Rect::of_box(b).overlaps(s)), "{s:?}");
        }
    }

    #[test]
    fn every_tile_shares_one_scale_shown_below_the_grid() {
        // Map 0 is all 0, map 1 all 1, map 2 all 4, map 3 runs 0 to 4: one scale, 0 to 4.
        let (h, w) = (8, 8);
        let mut data = vec![0f32; 4 * h * w];
        data[h * w..2 * h * w].fill(1.0);
        data[2 * h * w..3 * h * w].fill(4.0);
        for (i, v) in data[3 * h * w..].iter_mut().enumerate() {
            *v = 4.0 * (i % w) as f32 / (w - 1) as f32;
        }
        let g = grid(&data, 4, h, w).unwrap();
        // A pixel away from the index in the corner of each tile.
        let at = |ch: usize| {
            *g.get_pixel(
                (2 + (ch % 2) * 50 + 40) as u32,
                (2 + (ch / 2) * 50 + 40) as u32,
            )
        };
        assert_eq!(at(0), viridis(0.0));
        assert_eq!(at(1), viridis(0.25));
        assert_eq!(at(2), viridis(1.0));
        // The ramp below runs from the scale's low end to its high end.
        let y = (2 * 50 + 2 + 6 + 5) as u32;
        assert_eq!(*g.get_pixel(8, y), viridis(0.0));
        let right = 8 + (g.width() - 16).clamp(16, 320) - 1;
        assert_eq!(*g.get_pixel(right, y), viridis(1.0));
        // The tile index is written in white on each tile's corner.
        let white = (2..14)
            .flat_map(|x| (2..14).map(move |y| (x, y)))
            .filter(|&(x, y)| g.get_pixel(x, y)[0] > 200 && g.get_pixel(x, y)[2] > 200)
            .count();
        assert!(white > 3, "tile 0 is numbered");
    }
}

/// One face drawn by [`draw_boxes`].
#[derive(Clone, Debug)]
pub struct DrawnFace {
    pub bbox: [f32; 4],
    pub score: f32,
    pub label: String,
    pub confidence: f32,
}

/// Detects and classifies every face of a photo and draws boxes, the five landmarks and
/// "label confidence" onto it: `out_dir/<stem>.boxes.png`.
pub fn draw_boxes(
    model: &Path,
    image_path: &Path,
    out_dir: &Path,
    opts: &SessionOptions,
    faces: &FaceOptions,
) -> Result<(PathBuf, Vec<DrawnFace>)> {
    let classifier = Classifier::load(model, opts)?;
    let mut fo = faces.clone();
    if fo.mode.is_none() || fo.mode == Some(FaceMode::Whole) {
        fo.mode = Some(FaceMode::Detect);
    }
    let finder = FaceFinder::for_model(classifier.card.faces(), &fo, opts, 1)?;
    let rgb = load_rgb(image_path, DecodeLimits::default())?;
    let crops = finder.crops(&rgb)?;
    let drawn = classify_faces(&classifier, &crops)?;
    let img = paint(rgb, &classifier.card.labels, &drawn)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|e| Error::io(format!("creating {}", out_dir.display()), e))?;
    let stem = image_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let file = out_dir.join(format!("{stem}.boxes.png"));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Plot(format!("encoding {}: {e}", file.display())))?;
    crate::fsutil::write_atomic(&file, &bytes)?;
    Ok((file, drawn.into_iter().map(|(_, d)| d).collect()))
}

/// Classifies the detected faces among `crops`: each detection with what is drawn for it.
fn classify_faces(classifier: &Classifier, crops: &[Crop]) -> Result<Vec<(Face, DrawnFace)>> {
    let labels = classifier.card.labels.clone();
    let mut drawn = Vec::new();
    if crops.is_empty() {
        return Ok(drawn);
    }
    let faces: Vec<&[image::RgbImage]> = crops.iter().map(|c| c.images.as_slice()).collect();
    let out = classifier.classify_crops(&faces)?;
    for (i, c) in crops.iter().enumerate() {
        let Some(f) = &c.face else { continue };
        let best = out.argmax(i, labels.len());
        drawn.push((
            f.clone(),
            DrawnFace {
                bbox: f.bbox,
                score: f.score,
                label: labels[best].clone(),
                confidence: out.probs[i * labels.len() + best],
            },
        ));
    }
    Ok(drawn)
}

/// A rectangle in image pixels: its left, top, width and height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rect {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
}

impl Rect {
    /// A face box `[x1, y1, x2, y2]`.
    fn of_box([x1, y1, x2, y2]: [i32; 4]) -> Rect {
        Rect {
            x: x1,
            y: y1,
            w: (x2 - x1).max(1),
            h: (y2 - y1).max(1),
        }
    }

    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    fn inside(&self, (w, h): (i32, i32)) -> bool {
        self.x >= 0 && self.y >= 0 && self.x + self.w <= w && self.y + self.h <= h
    }
}

/// Where each face's label goes: `sizes[i]` is label `i`'s width and height, `boxes[i]`
/// its face `[x1, y1, x2, y2]`, in an image of `image` (width, height). A label sits
/// just above its box, below it where there is no room above, shifted inside the image;
/// one that would overlap a label placed before it moves to the nearest free place
/// beside, above or below the labels in its way, preferring places that cover no face.
/// Where none is free (a crowd too dense for its labels) it keeps its first place.
fn place_labels(boxes: &[[i32; 4]], sizes: &[(i32, i32)], image: (i32, i32)) -> Vec<Rect> {
    let faces: Vec<Rect> = boxes.iter().map(|&b| Rect::of_box(b)).collect();
    let mut placed: Vec<Rect> = Vec::with_capacity(boxes.len());
    for (b, &(w, h)) in boxes.iter().zip(sizes) {
        let (w, h) = (w.clamp(1, image.0.max(1)), h.clamp(1, image.1.max(1)));
        let fit_x = |x: i32| x.clamp(0, (image.0 - w).max(0));
        let fit_y = |y: i32| y.clamp(0, (image.1 - h).max(0));
        let (above, below) = (b[1] - h, b[3] + 1);
        let home = Rect {
            x: fit_x(b[0]),
            y: if above >= 0 || below + h > image.1 {
                fit_y(above)
            } else {
                below
            },
            w,
            h,
        };
        let mut xs = vec![home.x];
        let mut ys = vec![home.y, fit_y(above), fit_y(below)];
        for p in &placed {
            xs.extend([fit_x(p.x + p.w), fit_x(p.x - w)]);
            ys.extend([fit_y(p.y + p.h), fit_y(p.y - h)]);
        }
        let covered = |r: &Rect| faces.iter().filter(|f| f.overlaps(r)).count() as i32;
        let best = xs
            .iter()
            .flat_map(|&x| ys.iter().map(move |&y| Rect { x, y, w, h }))
            .filter(|r| r.inside(image) && !placed.iter().any(|p| p.overlaps(r)))
            .min_by_key(|r| {
                // Distance from home, and four label heights for each face it covers.
                (r.x - home.x).abs() + (r.y - home.y).abs() + 4 * h * covered(r)
            });
        placed.push(best.unwrap_or(home));
    }
    placed
}

/// The label font for a photo: about half the typical (median) face width, at least 11
/// px and at most what suits the whole picture, so labels of small faces in a crowd stay
/// small.
fn label_font(drawn: &[(Face, DrawnFace)], (w, h): (u32, u32)) -> u32 {
    let mut widths: Vec<f32> = drawn.iter().map(|(f, _)| f.bbox[2] - f.bbox[0]).collect();
    widths.sort_by(f32::total_cmp);
    let median = widths.get(widths.len() / 2).copied().unwrap_or(0.0);
    let most = (w.max(h) / 45).max(12);
    ((median * 0.5).round() as u32).clamp(11, most)
}

/// Draws each face's box, landmarks and "label confidence" tag onto `rgb`, coloured by
/// label: box lines and landmark dots scaled to the face (a dot of `max(1, width/25)` px
/// leaves a 20 px face visible), and labels placed by [`place_labels`] so that none
/// overlaps another or leaves the image.
fn paint(mut rgb: RgbImage, labels: &[String], drawn: &[(Face, DrawnFace)]) -> Result<RgbImage> {
    use plotters::prelude::*;
    let (w, h) = rgb.dimensions();
    let font_px = label_font(drawn, (w, h));
    let most_thick = (w.max(h) / 400).max(2) as i32;
    let palette = [
        RGBColor(230, 60, 150),
        RGBColor(40, 120, 240),
        RGBColor(250, 180, 0),
        RGBColor(0, 190, 120),
    ];
    let perr = crate::report::plot::perr;
    crate::report::plot::draw_on(&mut rgb, |root| {
        let font = ("sans-serif", font_px).into_font();
        let boxes: Vec<[i32; 4]> = drawn
            .iter()
            .map(|(f, _)| f.bbox.map(|v| v.round() as i32))
            .collect();
        let texts: Vec<String> = drawn
            .iter()
            .map(|(_, d)| format!("{} {:.2}", d.label, d.confidence))
            .collect();
        let mut sizes = Vec::with_capacity(texts.len());
        for t in &texts {
            let (tw, th) = root
                .estimate_text_size(t, &TextStyle::from(font.clone()))
                .map_err(perr)?;
            sizes.push((tw as i32 + 6, (th as i32).max(font_px as i32) + 4));
        }
        let spots = place_labels(&boxes, &sizes, (w as i32, h as i32));
        for (((f, d), b), (text, spot)) in
            drawn.iter().zip(&boxes).zip(texts.into_iter().zip(spots))
        {
            let k = labels.iter().position(|l| *l == d.label).unwrap_or(0);
            let color = palette[k % palette.len()];
            let side = (b[2] - b[0]).min(b[3] - b[1]).max(1);
            let thick = (side / 12).clamp(1, most_thick) as u32;
            root.draw(&Rectangle::new(
                [(b[0], b[1]), (b[2], b[3])],
                color.stroke_width(thick),
            ))
            .map_err(perr)?;
            let dot = (side / 25).max(1);
            for p in &f.landmarks {
                root.draw(&Circle::new(
                    (p[0].round() as i32, p[1].round() as i32),
                    dot,
                    color.filled(),
                ))
                .map_err(perr)?;
            }
            root.draw(&Rectangle::new(
                [(spot.x, spot.y), (spot.x + spot.w - 1, spot.y + spot.h - 1)],
                color.filled(),
            ))
            .map_err(perr)?;
            root.draw(&Text::new(
                text,
                (spot.x + 3, spot.y + 2),
                font.color(&WHITE),
            ))
            .map_err(perr)?;
        }
        Ok(())
    })?;
    Ok(rgb)
}
