//! `facebatch visualize`: every convolution and pooling layer's feature maps for one image,
//! straight from the shipped ONNX file (no training checkpoint needed).
//!
//! The graph is rewritten in memory so that each ReLU after a convolution and each
//! max-pool also becomes a graph output, then run once through ONNX Runtime.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use onnx_ir::{Message, ModelProto};
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::infer::{CheckedModel, SessionOptions, build_session};
use crate::plot::save_titled;
use crate::preprocess::{DecodeLimits, load_rgb};

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
    let mut proto = ModelProto::parse_from_bytes(bytes).map_err(|e| invalid(e.to_string()))?;
    let graph = proto
        .graph
        .as_mut()
        .ok_or_else(|| invalid("no graph".into()))?;
    let template = graph
        .output
        .first()
        .cloned()
        .ok_or_else(|| invalid("graph has no outputs".into()))?;
    let existing: std::collections::HashSet<String> =
        graph.output.iter().map(|o| o.name.clone()).collect();
    let (mut conv, mut pool) = (0, 0);
    let mut picked = Vec::new();
    for node in &graph.node {
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
        if let Some(out) = node.output.first() {
            picked.push((out.clone(), display));
        }
    }
    for (name, _) in &picked {
        if existing.contains(name) {
            continue;
        }
        let mut vi = template.clone();
        vi.name = name.clone();
        if let Some(t) = vi.type_.as_mut() {
            t.mut_tensor_type().shape.clear();
        }
        graph.output.push(vi);
    }
    let bytes = proto.write_to_bytes().map_err(|e| invalid(e.to_string()))?;
    Ok((bytes, picked))
}

/// A perceptually uniform colour map (viridis, piecewise linear through 5 anchors).
fn viridis(t: f32) -> Rgb<u8> {
    const ANCHORS: [[f32; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f32;
    Rgb(std::array::from_fn(|c| {
        (ANCHORS[i][c] * (1.0 - f) + ANCHORS[i + 1][c] * f).round() as u8
    }))
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

/// Writes one PNG per layer (plus the model's view of the input) into `out_dir`.
pub fn feature_maps(
    model: &Path,
    image_path: &Path,
    out_dir: &Path,
    opts: &SessionOptions,
) -> Result<Vec<LayerMaps>> {
    let CheckedModel {
        onnx_path,
        card,
        bytes,
        ..
    } = CheckedModel::read(model)?;
    let (rewritten, layers) = expose_activations(&bytes, &onnx_path)?;
    let mut session = build_session(&rewritten, opts, &onnx_path)?;

    let spec = &card.input;
    let rgb = load_rgb(image_path, DecodeLimits::default())?;
    let fitted = spec.fit(&rgb);
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
    let probs = outputs["probs"]
        .try_extract_tensor::<f32>()
        .map_err(|e| Error::ort("reading probs", e))?
        .1
        .to_vec();
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
    let summary: Vec<String> = card
        .labels
        .iter()
        .zip(&probs)
        .map(|(l, p)| format!("{l}={p:.4}"))
        .collect();
    tracing::info!(image = %image_path.display(), layers = written.len(), probs = %summary.join(" "), "feature maps written");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_map_ends() {
        assert_eq!(viridis(0.0), Rgb([68, 1, 84]));
        assert_eq!(viridis(1.0), Rgb([253, 231, 37]));
    }

    #[test]
    fn grid_layout() {
        let data = vec![0.5f32; 5 * 4 * 4];
        let g = grid(&data, 5, 4, 4);
        // 3 columns x 2 rows of 48px tiles with 2px gaps.
        assert_eq!(g.dimensions(), (3 * 50 + 2, 2 * 50 + 2));
    }
}
