//! Training-time augmentation, for the domains the model meets in photos:
//!
//! - geometry: flips, crop/scale jitter and small rotations (the landmark noise of a
//!   detector on real photos);
//! - scene fill: pixels the crop has no photo for (an aligned crop reaching past the edge
//!   of a tight source crop, or shifted in by the jitter) are filled with varied content,
//!   as a real photo would show there, instead of replicated edge pixels;
//! - colour: brightness, contrast, gamma, colour casts and grey-scale (press archives);
//! - degradation: downscale-then-upscale (faces of 15-40 px in a photo), Gaussian blur
//!   (focus, motion), JPEG recompression at low quality (web images);
//! - occlusion: a random block over part of the face (hands, microphones, masks).
//!
//! It works on images already fitted by
//! [`InputSpec::fit`](crate::vision::decode::InputSpec::fit), so the un-augmented path is exactly
//! the inference path.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::vision::decode::InputSpec;

/// Augmentation strengths, recorded in the model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    pub flip: f32,
    /// Scale jitter: zoom factor drawn from [1-scale, 1+scale].
    pub scale: f32,
    /// Translation jitter as a fraction of the side.
    pub shift: f32,
    /// Rotation jitter in degrees.
    pub rotate_deg: f32,
    /// Brightness offset drawn from [-brightness, brightness] (pixel range 0..1).
    pub brightness: f32,
    /// Contrast factor drawn from [1-contrast, 1+contrast].
    pub contrast: f32,
    /// Probability of converting to grey-scale.
    pub grayscale: f32,
    /// Probability of filling the pixels without photo content with scene-like content
    /// (another training crop, a smooth colour field or a flat colour, with noise).
    /// Cards written before this field existed read as 0.
    #[serde(default)]
    pub fill: f32,
    /// Gamma drawn log-uniformly from [exp(-gamma), exp(gamma)] (0: off).
    #[serde(default)]
    pub gamma: f32,
    /// Per-channel gain drawn from [1-color_cast, 1+color_cast] (white balance, tints).
    #[serde(default)]
    pub color_cast: f32,
    /// Probability of shrinking the crop to a side of 12-40 px and enlarging it back.
    #[serde(default)]
    pub downscale: f32,
    /// Probability of a Gaussian blur with sigma 0.4-1.6 px.
    #[serde(default)]
    pub blur: f32,
    /// Probability of JPEG recompression at quality 10-60.
    #[serde(default)]
    pub jpeg: f32,
    /// Probability of covering a random block of 15-40% of each side.
    #[serde(default)]
    pub occlude: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            flip: 0.5,
            scale: 0.12,
            shift: 0.07,
            rotate_deg: 10.0,
            brightness: 0.15,
            contrast: 0.25,
            grayscale: 0.2,
            fill: 0.8,
            gamma: 0.35,
            color_cast: 0.1,
            downscale: 0.2,
            blur: 0.15,
            jpeg: 0.25,
            occlude: 0.1,
        }
    }
}

impl Augment {
    /// No augmentation at all.
    pub fn none() -> Self {
        Augment {
            flip: 0.0,
            scale: 0.0,
            shift: 0.0,
            rotate_deg: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            grayscale: 0.0,
            fill: 0.0,
            gamma: 0.0,
            color_cast: 0.0,
            downscale: 0.0,
            blur: 0.0,
            jpeg: 0.0,
            occlude: 0.0,
        }
    }

    /// The strength names [`set`](Self::set) accepts.
    pub fn names() -> Vec<String> {
        match serde_json::to_value(Augment::none()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Sets one strength by name (`--augment blur=0`), for ablations.
    pub fn set(&mut self, name: &str, value: f32) -> Result<(), String> {
        if !value.is_finite() || value < 0.0 {
            return Err(format!(
                "augmentation {name}={value}: must be a number >= 0"
            ));
        }
        let probability = !matches!(
            name,
            "scale" | "shift" | "rotate_deg" | "brightness" | "contrast" | "gamma" | "color_cast"
        );
        if probability && value > 1.0 {
            return Err(format!(
                "augmentation {name}={value}: a probability, at most 1"
            ));
        }
        let mut v = serde_json::to_value(&*self).map_err(|e| e.to_string())?;
        match v.get_mut(name) {
            Some(slot) => *slot = serde_json::json!(value),
            None => {
                return Err(format!(
                    "unknown augmentation {name:?}; known: {}",
                    Augment::names().join(", ")
                ));
            }
        }
        *self = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Writes an augmented, normalised CHW tensor of the fitted image `rgb` (HxWx3 bytes).
    ///
    /// `coverage` (HxW, 0..=255) says how much of each pixel came from the photo (all of
    /// it when absent); `donor` is another fitted image of the same size that scene fill may
    /// borrow texture from.
    pub fn apply<R: Rng>(
        &self,
        rgb: &[u8],
        coverage: Option<&[u8]>,
        donor: Option<&[u8]>,
        spec: &InputSpec,
        rng: &mut R,
        out: &mut [f32],
    ) {
        let (w, h) = (spec.width as usize, spec.height as usize);
        debug_assert_eq!(rgb.len(), w * h * 3);
        let fill = (rng.random::<f32>() < self.fill).then(|| Fill::draw(rng, w, h, donor));
        let flip = rng.random::<f32>() < self.flip;
        let zoom = 1.0 + self.scale * (rng.random::<f32>() * 2.0 - 1.0);
        let angle = (self.rotate_deg * (rng.random::<f32>() * 2.0 - 1.0)).to_radians();
        let tx = self.shift * w as f32 * (rng.random::<f32>() * 2.0 - 1.0);
        let ty = self.shift * h as f32 * (rng.random::<f32>() * 2.0 - 1.0);
        let bright = self.brightness * (rng.random::<f32>() * 2.0 - 1.0);
        let contrast = 1.0 + self.contrast * (rng.random::<f32>() * 2.0 - 1.0);
        let grey = rng.random::<f32>() < self.grayscale;
        let gamma = (self.gamma * (rng.random::<f32>() * 2.0 - 1.0)).exp();
        let gain: [f32; 3] =
            std::array::from_fn(|_| 1.0 + self.color_cast * (rng.random::<f32>() * 2.0 - 1.0));
        let degrade = Degrade::draw(self, w, h, rng);

        // Output pixel -> source pixel: rotate and scale about the centre, then shift.
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let (cos, sin) = (angle.cos() / zoom, angle.sin() / zoom);
        let plane = w * h;
        let mut sum = 0.0f32;
        let mut px = vec![[0f32; 3]; plane];
        for y in 0..h {
            for x in 0..w {
                let dx = if flip { (w - 1 - x) as f32 } else { x as f32 } - cx;
                let dy = y as f32 - cy;
                let sx = cos * dx - sin * dy + cx - tx;
                let sy = sin * dx + cos * dy + cy - ty;
                let mut v = bilinear(rgb, w, h, sx, sy);
                if let Some(fill) = &fill {
                    let inside = photo_weight(coverage, w, h, sx, sy);
                    if inside < 1.0 {
                        let f = fill.at(x, y, w);
                        v = std::array::from_fn(|c| v[c] * inside + f[c] * (1.0 - inside));
                    }
                }
                sum += v[0] + v[1] + v[2];
                px[y * w + x] = v;
            }
        }
        let mean = sum / (3 * plane) as f32;
        // Colour, then 8-bit pixels as a camera or an archive would store them.
        let mut bytes = vec![0u8; plane * 3];
        for (i, v) in px.iter().enumerate() {
            let mut c: [f32; 3] = std::array::from_fn(|k| {
                let adj = ((v[k] - mean) * contrast + mean + bright).clamp(0.0, 1.0);
                (adj * gain[k]).clamp(0.0, 1.0).powf(gamma)
            });
            if grey {
                let l = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
                c = [l, l, l];
            }
            for k in 0..3 {
                bytes[i * 3 + k] = (c[k] * 255.0).round() as u8;
            }
        }
        let img = image::RgbImage::from_raw(w as u32, h as u32, bytes)
            .expect("buffer size matches the spec");
        let img = degrade.apply(img, rng);
        spec.write_tensor(&img, out);
    }
}

/// Degradations drawn for one image: each is applied or not.
struct Degrade {
    /// Short side to shrink to before enlarging back.
    downscale: Option<u32>,
    blur: Option<f32>,
    jpeg: Option<u8>,
    /// (x, y, width, height) of the occluding block.
    occlude: Option<(u32, u32, u32, u32)>,
}

impl Degrade {
    fn draw<R: Rng>(a: &Augment, w: usize, h: usize, rng: &mut R) -> Degrade {
        let mut hit = |p: f32| rng.random::<f32>() < p;
        let (ds, bl, jp, oc) = (hit(a.downscale), hit(a.blur), hit(a.jpeg), hit(a.occlude));
        Degrade {
            downscale: ds.then(|| rng.random_range(12..=40u32)),
            blur: bl.then(|| 0.4 + 1.2 * rng.random::<f32>()),
            jpeg: jp.then(|| rng.random_range(10..=60u8)),
            occlude: oc.then(|| {
                let bw = ((0.15 + 0.25 * rng.random::<f32>()) * w as f32).round() as u32;
                let bh = ((0.15 + 0.25 * rng.random::<f32>()) * h as f32).round() as u32;
                let x = rng.random_range(0..=(w as u32).saturating_sub(bw));
                let y = rng.random_range(0..=(h as u32).saturating_sub(bh));
                (x, y, bw.max(1), bh.max(1))
            }),
        }
    }

    fn apply<R: Rng>(&self, mut img: image::RgbImage, rng: &mut R) -> image::RgbImage {
        use image::imageops::{FilterType, blur, resize};
        let (w, h) = img.dimensions();
        if let Some(side) = self.downscale.filter(|s| *s < w.min(h)) {
            let k = side as f32 / w.min(h) as f32;
            let (sw, sh) = (
                ((w as f32 * k).round() as u32).max(1),
                ((h as f32 * k).round() as u32).max(1),
            );
            let small = resize(&img, sw, sh, FilterType::Triangle);
            img = resize(&small, w, h, FilterType::Triangle);
        }
        if let Some(sigma) = self.blur {
            img = blur(&img, sigma);
        }
        if let Some(q) = self.jpeg {
            img = recompress(&img, q).unwrap_or(img);
        }
        if let Some((x, y, bw, bh)) = self.occlude {
            let base: [u8; 3] = std::array::from_fn(|_| rng.random::<u8>());
            let noise = rng.random::<bool>();
            for yy in y..(y + bh).min(h) {
                for xx in x..(x + bw).min(w) {
                    let p: [u8; 3] = if noise {
                        std::array::from_fn(|c| base[c].saturating_add(rng.random_range(0..40)))
                    } else {
                        base
                    };
                    img.put_pixel(xx, yy, image::Rgb(p));
                }
            }
        }
        img
    }
}

/// Encodes `img` as a JPEG of quality `q` and decodes it again.
fn recompress(img: &image::RgbImage, q: u8) -> Option<image::RgbImage> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, q)
        .encode_image(img)
        .ok()?;
    image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
        .ok()
        .map(|d| d.to_rgb8())
}

/// Scene content for the pixels a crop has no photo for, in output coordinates (0..1).
struct Fill {
    px: Vec<[f32; 3]>,
}

impl Fill {
    fn draw<R: Rng>(rng: &mut R, w: usize, h: usize, donor: Option<&[u8]>) -> Fill {
        let kind = rng.random_range(0..if donor.is_some() { 3 } else { 2 });
        let mut px = match (kind, donor) {
            // Another crop, rescaled and moved: skin, hair, clothes and background texture.
            (2, Some(d)) => {
                let zoom = 0.5 + 1.5 * rng.random::<f32>();
                let (ox, oy) = (
                    rng.random::<f32>() * w as f32,
                    rng.random::<f32>() * h as f32,
                );
                let flip = rng.random::<bool>();
                (0..w * h)
                    .map(|i| {
                        let (x, y) = ((i % w) as f32, (i / w) as f32);
                        let x = if flip { w as f32 - 1.0 - x } else { x };
                        bilinear(
                            d,
                            w,
                            h,
                            (x / zoom + ox).rem_euclid(w as f32),
                            (y / zoom + oy).rem_euclid(h as f32),
                        )
                    })
                    .collect()
            }
            // A smooth colour field: a coarse grid of random colours, interpolated.
            (1, _) => {
                let k = rng.random_range(2..=5usize);
                let grid: Vec<u8> = (0..k * k * 3).map(|_| rng.random::<u8>()).collect();
                (0..w * h)
                    .map(|i| {
                        let x = (i % w) as f32 / (w - 1).max(1) as f32 * (k - 1) as f32;
                        let y = (i / w) as f32 / (h - 1).max(1) as f32 * (k - 1) as f32;
                        bilinear(&grid, k, k, x, y)
                    })
                    .collect()
            }
            // A flat colour.
            _ => {
                let c: [f32; 3] = std::array::from_fn(|_| rng.random::<f32>());
                vec![c; w * h]
            }
        };
        // Sensor-like noise.
        let sigma = 0.04 * rng.random::<f32>();
        if sigma > 0.0 {
            for p in &mut px {
                for v in p.iter_mut() {
                    // Sum of two uniforms: a cheap, bounded bell.
                    let n = rng.random::<f32>() + rng.random::<f32>() - 1.0;
                    *v = (*v + n * sigma * 2.0).clamp(0.0, 1.0);
                }
            }
        }
        Fill { px }
    }

    fn at(&self, x: usize, y: usize, w: usize) -> [f32; 3] {
        self.px[y * w + x]
    }
}

/// How much of the source at (x, y) is photo: the coverage there, and 0 beyond the crop.
fn photo_weight(coverage: Option<&[u8]>, w: usize, h: usize, x: f32, y: f32) -> f32 {
    let (xmax, ymax) = ((w - 1) as f32, (h - 1) as f32);
    // Inside the crop 1, falling to 0 half a pixel beyond its edge pixels' centres.
    let outside = (-x).max(x - xmax).max(-y).max(y - ymax);
    let edge = (1.0 - 2.0 * outside).clamp(0.0, 1.0);
    if edge == 0.0 {
        return 0.0;
    }
    let Some(cov) = coverage else { return edge };
    let (x, y) = (x.clamp(0.0, xmax), y.clamp(0.0, ymax));
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: usize, yy: usize| cov[yy * w + xx] as f32 / 255.0;
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bot = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    edge * (top * (1.0 - fy) + bot * fy)
}

/// Bilinear sample of an HxWx3 byte image at (x, y), replicating the border. Returns 0..1.
/// The shared sampler ([`crate::vision::sample::bilinear`], as alignment samples), in this
/// module's 0..1 floats.
fn bilinear(rgb: &[u8], w: usize, h: usize, x: f32, y: f32) -> [f32; 3] {
    crate::vision::sample::bilinear(rgb, w, h, f64::from(x), f64::from(y))
        .map(|v| (v / 255.0) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn no_augmentation_equals_the_inference_tensor() {
        let spec = InputSpec::standard(8, 6);
        let img = image::RgbImage::from_fn(6, 8, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 30) as u8, 77])
        });
        let expected = spec.tensor_from_rgb(&img);
        let mut out = vec![0.0; spec.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        Augment::none().apply(img.as_raw(), None, None, &spec, &mut rng, &mut out);
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn flip_mirrors_columns() {
        let spec = InputSpec::standard(2, 3);
        let img = image::RgbImage::from_fn(3, 2, |x, _| image::Rgb([(x * 100) as u8, 0, 0]));
        let mut aug = Augment::none();
        aug.flip = 1.0;
        let mut out = vec![0.0; spec.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        aug.apply(img.as_raw(), None, None, &spec, &mut rng, &mut out);
        let expected = spec.tensor_from_rgb(&image::imageops::flip_horizontal(&img));
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn each_degradation_changes_the_image_and_keeps_its_size() {
        let spec = InputSpec::standard(64, 64);
        // A face-like pattern with fine detail, so blur, JPEG and downscaling all show.
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            let v = if (x / 2 + y / 2) % 2 == 0 { 220 } else { 30 };
            image::Rgb([v, (x * 4) as u8, (y * 4) as u8])
        });
        let plain = spec.tensor_from_rgb(&img);
        for name in [
            "downscale",
            "blur",
            "jpeg",
            "occlude",
            "gamma",
            "color_cast",
            "grayscale",
        ] {
            let mut aug = Augment::none();
            aug.set(name, 1.0).unwrap();
            let mut out = vec![0.0; spec.len()];
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            aug.apply(img.as_raw(), None, None, &spec, &mut rng, &mut out);
            let diff: f32 = out
                .iter()
                .zip(&plain)
                .map(|(a, b)| (a - b).abs())
                .sum::<f32>()
                / out.len() as f32;
            assert!(diff > 0.01, "{name} changed the image by only {diff}");
            assert!(out.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-5));
        }
    }

    #[test]
    fn set_names_a_strength_and_refuses_nonsense() {
        let mut a = Augment::default();
        a.set("blur", 0.0).unwrap();
        assert_eq!(a.blur, 0.0);
        a.set("rotate_deg", 20.0).unwrap();
        assert_eq!(a.rotate_deg, 20.0);
        assert!(a.set("blurr", 0.5).unwrap_err().contains("known:"));
        assert!(a.set("jpeg", 2.0).is_err());
        assert!(a.set("gamma", -1.0).is_err());
    }

    #[test]
    fn cards_without_the_newer_strengths_still_read() {
        let old = r#"{"flip":0.5,"scale":0.1,"shift":0.1,"rotate_deg":10,"brightness":0.1,"contrast":0.1,"grayscale":0.1}"#;
        let a: Augment = serde_json::from_str(old).unwrap();
        assert_eq!((a.fill, a.jpeg, a.occlude), (0.0, 0.0, 0.0));
    }

    #[test]
    fn fill_replaces_only_pixels_without_photo() {
        let spec = InputSpec::standard(8, 8);
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([128, 128, 128]));
        // The top half has no photo behind it.
        let coverage: Vec<u8> = (0..64).map(|i| if i < 32 { 0 } else { 255 }).collect();
        let mut aug = Augment::none();
        aug.fill = 1.0;
        let plain = spec.tensor_from_rgb(&img);
        let mut differs_top = 0;
        for seed in 0..20 {
            let mut out = vec![0.0; spec.len()];
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            aug.apply(
                img.as_raw(),
                Some(&coverage),
                Some(img.as_raw()),
                &spec,
                &mut rng,
                &mut out,
            );
            for c in 0..3 {
                for i in 0..64 {
                    let (a, b) = (out[c * 64 + i], plain[c * 64 + i]);
                    if i >= 40 {
                        // Well inside the photo: untouched.
                        assert!((a - b).abs() < 1e-5, "seed {seed} pixel {i}: {a} vs {b}");
                    } else if i < 24 && (a - b).abs() > 1e-3 {
                        differs_top += 1;
                    }
                }
            }
        }
        assert!(
            differs_top > 20 * 3 * 24 / 2,
            "fill changed only {differs_top} top values"
        );
    }
}
