//! Training-time augmentation: flips, crop/scale jitter, small rotations, brightness,
//! contrast and grey-scale. It works on images already fitted by
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
        }
    }

    /// Writes an augmented, normalised CHW tensor of the fitted image `rgb` (HxWx3 bytes).
    pub fn apply<R: Rng>(&self, rgb: &[u8], spec: &InputSpec, rng: &mut R, out: &mut [f32]) {
        let (w, h) = (spec.width as usize, spec.height as usize);
        debug_assert_eq!(rgb.len(), w * h * 3);
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
                let v = bilinear(rgb, w, h, sx, sy);
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
        Augment::none().apply(img.as_raw(), &spec, &mut rng, &mut out);
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
        aug.apply(img.as_raw(), &spec, &mut rng, &mut out);
        let expected = spec.tensor_from_rgb(&image::imageops::flip_horizontal(&img));
        for (a, b) in out.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
