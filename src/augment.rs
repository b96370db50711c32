//! Training-time augmentation: flips, crop/scale jitter, small rotations, brightness,
//! contrast, grey-scale, and scene fill: pixels the crop has no photo for (an aligned
//! crop reaching past the edge of a tight source crop, or shifted in by the jitter) are
//! filled with varied content, as a real photo would show there, instead of replicated
//! edge pixels. It works on images already fitted by
//! [`InputSpec::fit`](crate::preprocess::InputSpec::fit), so the un-augmented path is exactly
//! the inference path.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::preprocess::InputSpec;

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
            grayscale: 0.15,
            fill: 0.8,
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
        }
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
        let mul: [f32; 3] = std::array::from_fn(|c| spec.scale * 255.0 / spec.std[c]);
        let add: [f32; 3] = std::array::from_fn(|c| -spec.mean[c] / spec.std[c]);
        for (i, v) in px.iter().enumerate() {
            let v = if grey {
                let l = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2];
                [l, l, l]
            } else {
                *v
            };
            for c in 0..3 {
                // v is in 0..1 here.
                let adj = ((v[c] - mean) * contrast + mean + bright).clamp(0.0, 1.0);
                out[c * plane + i] = adj * mul[c] + add[c];
            }
        }
    }
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
fn bilinear(rgb: &[u8], w: usize, h: usize, x: f32, y: f32) -> [f32; 3] {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: usize, yy: usize, c: usize| rgb[(yy * w + xx) * 3 + c] as f32;
    std::array::from_fn(|c| {
        let top = at(x0, y0, c) * (1.0 - fx) + at(x1, y0, c) * fx;
        let bot = at(x0, y1, c) * (1.0 - fx) + at(x1, y1, c) * fx;
        (top * (1.0 - fy) + bot * fy) / 255.0
    })
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
