//! Bilinear sampling of an RGB image at a fractional position, with the edge replicated
//! outside the image: the one sampler behind face alignment (`align::warp`) and the
//! training augmentations (`train::augment`), so a training crop and an inference crop are
//! sampled alike.

/// The colour at (`x`, `y`) of the `w` x `h` RGB image `raw` (row-major, 3 bytes a pixel),
/// interpolated between the four nearest pixels; positions outside the image take the
/// nearest edge pixel. Channels are in 0..=255.
pub fn bilinear(raw: &[u8], w: usize, h: usize, x: f64, y: f64) -> [f64; 3] {
    let x0 = x.floor();
    let y0 = y.floor();
    let fx = x - x0;
    let fy = y - y0;
    let (x0, y0) = (x0 as i64, y0 as i64);
    let get = |xx: i64, yy: i64| -> [f64; 3] {
        let xx = xx.clamp(0, w as i64 - 1) as usize;
        let yy = yy.clamp(0, h as i64 - 1) as usize;
        let i = (yy * w + xx) * 3;
        [raw[i] as f64, raw[i + 1] as f64, raw[i + 2] as f64]
    };
    let p00 = get(x0, y0);
    let p10 = get(x0 + 1, y0);
    let p01 = get(x0, y0 + 1);
    let p11 = get(x0 + 1, y0 + 1);
    std::array::from_fn(|c| {
        let top = p00[c] * (1.0 - fx) + p10[c] * fx;
        let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_are_exact_between_them_interpolated_and_outside_the_edge_replicated() {
        // 2x1: black, then (200, 100, 50).
        let raw = [0, 0, 0, 200, 100, 50];
        assert_eq!(bilinear(&raw, 2, 1, 1.0, 0.0), [200.0, 100.0, 50.0]);
        assert_eq!(bilinear(&raw, 2, 1, 0.5, 0.0), [100.0, 50.0, 25.0]);
        assert_eq!(bilinear(&raw, 2, 1, -3.0, 0.7), [0.0, 0.0, 0.0]);
        assert_eq!(bilinear(&raw, 2, 1, 9.5, -2.0), [200.0, 100.0, 50.0]);
    }
}
