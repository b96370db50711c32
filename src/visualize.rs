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

/// Tiles `[C, H, W]` maps into a grid, each channel min-max normalised.
fn grid(data: &[f32], c: usize, h: usize, w: usize) -> RgbImage {
    let cols = (c as f64).sqrt().ceil() as usize;
    let rows = c.div_ceil(cols);
    let scale = (48 / h.max(w)).max(1);
    let (th, tw, gap) = (h * scale, w * scale, 2);
    let mut img = RgbImage::from_pixel(
        (cols * (tw + gap) + gap) as u32,
        (rows * (th + gap) + gap) as u32,
        Rgb([255, 255, 255]),
    );
    for ch in 0..c {
        let plane = &data[ch * h * w..(ch + 1) * h * w];
        let (lo, hi) = plane
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        let range = if hi > lo { hi - lo } else { 1.0 };
        let (ox, oy) = (
            gap + (ch % cols) * (tw + gap),
            gap + (ch / cols) * (th + gap),
        );
        for y in 0..th {
            for x in 0..tw {
                let v = (plane[(y / scale) * w + x / scale] - lo) / range;
                img.put_pixel((ox + x) as u32, (oy + y) as u32, viridis(v));
            }
        }
    }
    img
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
            &grid(data, c, h, w),
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
        let g = grid(&data, 5, 4, 4);
        // 3 columns x 2 rows of 48px tiles with 2px gaps.
        assert_eq!(g.dimensions(), (3 * 50 + 2, 2 * 50 + 2));
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

/// Draws each face's box, landmarks and "label confidence" tag onto `rgb`, coloured by
/// label.
fn paint(rgb: RgbImage, labels: &[String], drawn: &[(Face, DrawnFace)]) -> Result<RgbImage> {
    let (w, h) = rgb.dimensions();
    let mut buf = rgb.into_raw();
    {
        use plotters::prelude::*;
        crate::report::plot::ensure_font();
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let thick = (w.max(h) / 400).max(2);
        let font = (w.max(h) / 45).max(12);
        let palette = [
            RGBColor(230, 60, 150),
            RGBColor(40, 120, 240),
            RGBColor(250, 180, 0),
            RGBColor(0, 190, 120),
        ];
        let perr = |e: &dyn std::fmt::Display| Error::Plot(e.to_string());
        for (f, d) in drawn {
            let k = labels.iter().position(|l| *l == d.label).unwrap_or(0);
            let color = palette[k % palette.len()];
            let [x1, y1, x2, y2] = f.bbox.map(|v| v.round() as i32);
            root.draw(&Rectangle::new(
                [(x1, y1), (x2, y2)],
                color.stroke_width(thick),
            ))
            .map_err(|e| perr(&e))?;
            for p in &f.landmarks {
                root.draw(&Circle::new(
                    (p[0].round() as i32, p[1].round() as i32),
                    thick as i32 + 1,
                    color.filled(),
                ))
                .map_err(|e| perr(&e))?;
            }
            let text = format!("{} {:.2}", d.label, d.confidence);
            let ty = (y1 - font as i32 - 4).max(0);
            let tw = (text.len() as u32 * font * 3 / 5) as i32;
            root.draw(&Rectangle::new(
                [(x1, ty), (x1 + tw, ty + font as i32 + 4)],
                color.filled(),
            ))
            .map_err(|e| perr(&e))?;
            root.draw(&Text::new(
                text,
                (x1 + 2, ty + 2),
                ("sans-serif", font).into_font().color(&WHITE),
            ))
            .map_err(|e| perr(&e))?;
        }
        root.present().map_err(|e| perr(&e))?;
    }
    RgbImage::from_raw(w, h, buf)
        .ok_or_else(|| Error::Plot("drawing buffer has the wrong size".into()))
}
