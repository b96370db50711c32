//! Face thumbnails, cut from the original photos with each row's box and landmarks: the
//! aligned crop the model saw (`faces/ID.png`) and a wider view with the box drawn
//! (`context/ID.jpg`). Photos are decoded once each, in parallel, a few at a time, so memory
//! is bounded by the thread count; a photo whose size or modification time differs from
//! the row's is reported as changed, never cut wrongly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use rayon::prelude::*;
use serde::Serialize;

use super::read::FaceRow;
use crate::vision::decode::{DecodeLimits, decode_bytes, decode_path};

/// How a row's face is cut for display.
#[derive(Clone, Debug)]
pub struct CropSpec {
    /// The alignment template (the model input's five landmark positions) and size.
    pub template: [[f32; 2]; 5],
    pub width: u32,
    pub height: u32,
}

/// What became of a row's thumbnails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Thumb {
    /// `faces/ID.png` (when the row has a face) and `context/ID.jpg` were written.
    Ok,
    /// The photo is no longer there.
    Missing,
    /// The photo's size or modification time differs from the row's: not cut.
    Changed,
    /// The photo could not be decoded (error rows).
    Unreadable,
}

/// The long side of a context thumbnail.
const CONTEXT_SIDE: u32 = 240;

/// Writes the thumbnails of `rows` under `dir` (`faces/`, `context/`) and returns each
/// row id's outcome.
pub fn write_all(
    rows: &[&FaceRow],
    spec: &CropSpec,
    dir: &Path,
) -> crate::Result<BTreeMap<u64, Thumb>> {
    for sub in ["faces", "context"] {
        fs_err::create_dir_all(dir.join(sub))?;
    }
    let mut by_photo: BTreeMap<&PathBuf, Vec<&FaceRow>> = BTreeMap::new();
    for r in rows {
        by_photo.entry(&r.file).or_default().push(r);
    }
    let photos: Vec<(&PathBuf, Vec<&FaceRow>)> = by_photo.into_iter().collect();
    let results: Vec<Vec<(u64, Thumb)>> = photos
        .par_iter()
        .map(|(file, rows)| photo_thumbs(file, rows, spec, dir))
        .collect();
    Ok(results.into_iter().flatten().collect())
}

/// The photo's object URL, when it lives on a store or an HTTP server.
fn object(file: &Path) -> Option<crate::remote::ObjectUrl> {
    crate::remote::ObjectUrl::parse(file.to_str()?)?.ok()
}

fn unchanged(file: &Path, row: &FaceRow) -> Option<Thumb> {
    if let Some(url) = object(file) {
        let Ok(Some(meta)) = crate::remote::head(&url) else {
            return Some(Thumb::Missing);
        };
        let size_differs = row.bytes.is_some_and(|b| b != meta.size);
        let time_differs = row
            .modified
            .is_some_and(|m| m != meta.last_modified.timestamp_micros());
        return (size_differs || time_differs).then_some(Thumb::Changed);
    }
    let Ok(meta) = std::fs::metadata(file) else {
        return Some(Thumb::Missing);
    };
    let size_differs = row.bytes.is_some_and(|b| b != meta.len());
    let time_differs = row
        .modified
        .is_some_and(|m| crate::classify::stages::walk::modified_micros(&meta) != Some(m));
    (size_differs || time_differs).then_some(Thumb::Changed)
}

fn photo_thumbs(file: &Path, rows: &[&FaceRow], spec: &CropSpec, dir: &Path) -> Vec<(u64, Thumb)> {
    let all = |t: Thumb| rows.iter().map(|r| (r.id, t)).collect();
    if let Some(t) = unchanged(file, rows[0]) {
        return all(t);
    }
    let decoded = match object(file) {
        Some(url) => match crate::remote::get_blocking(&url) {
            Ok(Some(bytes)) => decode_bytes(&bytes, file, DecodeLimits::default()),
            _ => return all(Thumb::Missing),
        },
        None => decode_path(file, DecodeLimits::default()),
    };
    let Ok(img) = decoded else {
        return all(Thumb::Unreadable);
    };
    let img = img.to_rgb8();
    rows.iter()
        .map(|r| {
            let ok = write_one(&img, r, spec, dir).is_ok();
            (r.id, if ok { Thumb::Ok } else { Thumb::Unreadable })
        })
        .collect()
}

fn write_one(img: &RgbImage, row: &FaceRow, spec: &CropSpec, dir: &Path) -> image::ImageResult<()> {
    let id = row.id;
    match (&row.landmarks, row.status.as_str()) {
        (Some(lm), "ok") if lm.len() == 10 && lm.iter().all(|v| v.is_finite()) => {
            let pts: [[f32; 2]; 5] = std::array::from_fn(|k| [lm[2 * k], lm[2 * k + 1]]);
            let face =
                crate::vision::align::warp(img, &pts, &spec.template, spec.width, spec.height);
            face.save(dir.join("faces").join(format!("{id}.png")))?;
        }
        (_, "ok") => {
            // A whole-image crop: the centred square the model was given.
            let side = img.width().min(img.height());
            let x = (img.width() - side) / 2;
            let y = (img.height() - side) / 2;
            let sq = image::imageops::crop_imm(img, x, y, side, side).to_image();
            let face = image::imageops::resize(
                &sq,
                spec.width,
                spec.height,
                image::imageops::FilterType::Triangle,
            );
            face.save(dir.join("faces").join(format!("{id}.png")))?;
        }
        _ => {}
    }
    let context = context(img, row.bbox);
    let path = dir.join("context").join(format!("{id}.jpg"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&context)?;
    Ok(())
}

/// The box grown to three times its size (clamped to the photo), scaled to at most
/// [`CONTEXT_SIDE`], with the box drawn; the whole photo when there is no box.
fn context(img: &RgbImage, bbox: Option<[f32; 4]>) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    // A box that is not one (NaN, infinite, empty, or outside the photo) is not drawn: the
    // whole photo is shown instead.
    let bbox = bbox.filter(|&[a, b, c, d]| {
        [a, b, c, d].iter().all(|v| v.is_finite())
            && a < c
            && b < d
            && c > 0.0
            && d > 0.0
            && a < w
            && b < h
    });
    let (x0, y0, x1, y1) = match bbox {
        Some([a, b, c, d]) => {
            let (bw, bh) = (c - a, d - b);
            (
                (a - bw).max(0.0),
                (b - bh).max(0.0),
                (c + bw).min(w),
                (d + bh).min(h),
            )
        }
        None => (0.0, 0.0, w, h),
    };
    let cw = ((x1 - x0).round() as u32).max(1);
    let ch = ((y1 - y0).round() as u32).max(1);
    let region = image::imageops::crop_imm(img, x0 as u32, y0 as u32, cw, ch).to_image();
    let scale = (CONTEXT_SIDE as f32 / cw.max(ch) as f32).min(4.0);
    let (tw, th) = (
        ((cw as f32 * scale).round() as u32).max(1),
        ((ch as f32 * scale).round() as u32).max(1),
    );
    let mut out = image::imageops::resize(&region, tw, th, image::imageops::FilterType::Triangle);
    if let Some([a, b, c, d]) = bbox {
        let map = |v: f32, o: f32| ((v - o) * scale).round() as i64;
        draw_rect(
            &mut out,
            (map(a, x0), map(b, y0)),
            (map(c, x0), map(d, y0)),
            Rgb([255, 200, 0]),
        );
    }
    out
}

fn draw_rect(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.put_pixel(x as u32, y as u32, c);
        }
    };
    // Only the part inside the image is walked, however far outside the box reaches.
    let (xs, ys) = (x0.max(-2)..=x1.min(w + 1), y0.max(-2)..=y1.min(h + 1));
    for t in 0..2 {
        for x in xs.clone() {
            put(x, y0.saturating_add(t));
            put(x, y1.saturating_sub(t));
        }
        for y in ys.clone() {
            put(x0.saturating_add(t), y);
            put(x1.saturating_sub(t), y);
        }
    }
}
