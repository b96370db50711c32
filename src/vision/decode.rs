//! Image decoding and the model-input transform.
//!
//! This is the one implementation of "how a picture becomes the model's input". Training
//! (for validation and test images), `eval`, `visualize` and `classify` all call it, and the
//! model card records its parameters ([`InputSpec`]), so a model cannot drift from the way
//! it is fed.

use std::io::{BufRead, Seek};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage, imageops::FilterType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ImageErrorKind, Result};

/// Default pixel limit for a decoded image (width x height): 64 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// How an image of arbitrary size and aspect is made to fit the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitMode {
    /// Crop the largest centred region with the input's aspect ratio, then resize it.
    CenterCropResize,
    /// Resize to the input size, ignoring the aspect ratio.
    Stretch,
}

/// Resampling filter used when resizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Bilinear with an area-averaging support when shrinking (the `image` crate's Triangle).
    Triangle,
    Nearest,
    CatmullRom,
}

impl ResizeFilter {
    fn filter(self) -> FilterType {
        match self {
            ResizeFilter::Triangle => FilterType::Triangle,
            ResizeFilter::Nearest => FilterType::Nearest,
            ResizeFilter::CatmullRom => FilterType::CatmullRom,
        }
    }

    fn algorithm(self) -> fast_image_resize::ResizeAlg {
        use fast_image_resize::{FilterType as F, ResizeAlg};
        match self {
            ResizeFilter::Triangle => ResizeAlg::Convolution(F::Bilinear),
            ResizeFilter::Nearest => ResizeAlg::Nearest,
            ResizeFilter::CatmullRom => ResizeAlg::Convolution(F::CatmullRom),
        }
    }
}

/// Resizes the `crop` (left, top, width, height) of `img` to `width` x `height` with
/// `filter`: a separable convolution whose support widens with the shrink factor (so
/// shrinking averages every source pixel), vectorised (SSE4.1/AVX2 where the CPU has them).
pub fn resize_rgb(
    img: &RgbImage,
    crop: (u32, u32, u32, u32),
    width: u32,
    height: u32,
    filter: ResizeFilter,
) -> RgbImage {
    use fast_image_resize::{PixelType, ResizeOptions, Resizer, images::Image, images::ImageRef};
    let (left, top, cw, ch) = crop;
    let fallback = || {
        let view = image::imageops::crop_imm(img, left, top, cw, ch).to_image();
        image::imageops::resize(&view, width, height, filter.filter())
    };
    let Ok(src) = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3) else {
        return fallback();
    };
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(filter.algorithm()).crop(
        left as f64,
        top as f64,
        cw as f64,
        ch as f64,
    );
    match Resizer::new().resize(&src, &mut dst, &options) {
        Ok(()) => RgbImage::from_raw(width, height, dst.into_vec()).unwrap_or_else(fallback),
        Err(_) => fallback(),
    }
}

/// The model input, as recorded in the model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Input tensor name in the ONNX graph.
    pub name: String,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Always 3.
    pub channels: u32,
    /// Tensor layout; facebatch models take `NCHW`.
    pub layout: String,
    /// Channel order of the colour axis; facebatch models take `RGB`.
    pub channel_order: String,
    /// Element type, `float32`.
    pub dtype: String,
    /// Pixel values are multiplied by this first (1/255 maps bytes to 0..1).
    pub scale: f32,
    /// Then the per-channel mean is subtracted ...
    pub mean: [f32; 3],
    /// ... and the result divided by the per-channel std.
    pub std: [f32; 3],
    /// How the decoded, EXIF-oriented image is fitted to `height` x `width`.
    pub fit: FitMode,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// Human-readable statement of the whole transform.
    pub description: String,
}

impl InputSpec {
    /// The standard facebatch transform for an input of `height` x `width`.
    pub fn standard(height: u32, width: u32) -> Self {
        InputSpec {
            name: "input".into(),
            height,
            width,
            channels: 3,
            layout: "NCHW".into(),
            channel_order: "RGB".into(),
            dtype: "float32".into(),
            scale: 1.0 / 255.0,
            mean: [0.5, 0.5, 0.5],
            std: [0.5, 0.5, 0.5],
            fit: FitMode::CenterCropResize,
            filter: ResizeFilter::Triangle,
            description: format!(
                "decode, apply EXIF orientation, convert to 8-bit RGB; crop the largest centred \
                 region with aspect {width}:{height}; resize to {width}x{height} (triangle filter); \
                 x = (pixel/255 - 0.5)/0.5 per channel; NCHW float32"
            ),
        }
    }

    /// Number of floats in one image's tensor.
    pub fn len(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }

    /// True when the spec describes an empty tensor (never for a valid card).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that this is a transform this build of facebatch implements.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.channels != 3 || self.layout != "NCHW" || self.channel_order != "RGB" {
            return Err(format!(
                "unsupported input {}x{} {} {}; facebatch feeds 3-channel NCHW RGB",
                self.channels, self.height, self.layout, self.channel_order
            ));
        }
        if self.dtype != "float32" {
            return Err(format!("unsupported input dtype {}", self.dtype));
        }
        if self.height == 0 || self.width == 0 || self.height > 4096 || self.width > 4096 {
            return Err(format!(
                "implausible input size {}x{}",
                self.width, self.height
            ));
        }
        if self.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err("std must be finite and non-zero".into());
        }
        Ok(())
    }

    /// Fits an RGB image to the input size (crop and resize as the spec says).
    pub fn fit(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        if w == self.width && h == self.height {
            return img.clone();
        }
        let crop = match self.fit {
            FitMode::Stretch => (0, 0, w, h),
            FitMode::CenterCropResize => {
                let (cw, ch) = center_crop_size(w, h, self.width, self.height);
                ((w - cw) / 2, (h - ch) / 2, cw, ch)
            }
        };
        resize_rgb(img, crop, self.width, self.height, self.filter)
    }

    /// Writes a fitted image (exactly `width` x `height`) as normalised CHW floats into `out`.
    pub fn write_tensor(&self, img: &RgbImage, out: &mut [f32]) {
        debug_assert_eq!(img.dimensions(), (self.width, self.height));
        let plane = (self.width * self.height) as usize;
        debug_assert_eq!(out.len(), 3 * plane);
        let mul: [f32; 3] = std::array::from_fn(|c| self.scale / self.std[c]);
        let add: [f32; 3] = std::array::from_fn(|c| -self.mean[c] / self.std[c]);
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px.0[c] as f32 * mul[c] + add[c];
            }
        }
    }

    /// Fit and normalise in one go; the path every consumer of a model uses.
    pub fn tensor_from_rgb(&self, img: &RgbImage) -> Vec<f32> {
        let fitted = self.fit(img);
        let mut out = vec![0.0; self.len()];
        self.write_tensor(&fitted, &mut out);
        out
    }
}

/// One face's input for a model of several networks: each view's crop fitted and normalised
/// by its own spec ([`InputSpec::tensor_from_rgb`]), concatenated in view order.
pub fn views_tensor(specs: &[InputSpec], crops: &[RgbImage]) -> Vec<f32> {
    let mut out = Vec::with_capacity(specs.iter().map(InputSpec::len).sum());
    for (spec, img) in specs.iter().zip(crops) {
        out.extend_from_slice(&spec.tensor_from_rgb(img));
    }
    out
}

/// Largest `cw x ch` inside `w x h` with aspect `tw:th`.
fn center_crop_size(w: u32, h: u32, tw: u32, th: u32) -> (u32, u32) {
    // Compare w/h with tw/th without floating point.
    if (w as u64) * (th as u64) > (h as u64) * (tw as u64) {
        let cw = ((h as u64 * tw as u64) / th as u64).max(1) as u32;
        (cw.min(w), h)
    } else {
        let ch = ((w as u64 * th as u64) / tw as u64).max(1) as u32;
        (w, ch.min(h))
    }
}

/// Files larger than this are refused before they are read (`--max-file-bytes`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Decoding limits.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Reject images with more than this many pixels before decoding them.
    pub max_pixels: u64,
    /// Reject files larger than this before reading them.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Opens `path` for reading only if it is a regular file. The open never blocks (a FIFO
/// or device swapped in after the walk would otherwise hang the run), and the check is
/// made on the opened handle, so a file replaced between check and read cannot slip by.
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta.len()))
}

/// Reads a whole image file, refusing a non-regular file or one over `max_bytes` before
/// reading it.
pub fn read_image_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let err = |kind: ImageErrorKind, reason: String| Error::Image {
        path: path.to_path_buf(),
        kind,
        reason,
    };
    let (file, len) = open_regular(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::InvalidInput {
            ImageErrorKind::NotAFile
        } else {
            ImageErrorKind::Io
        };
        err(kind, e.to_string())
    })?;
    if len > max_bytes {
        return Err(err(
            ImageErrorKind::TooLarge,
            format!("file is {len} bytes, over the limit of {max_bytes} (--max-file-bytes)"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // A file that grows while being read is still cut at the limit.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| err(ImageErrorKind::Io, e.to_string()))?;
    if bytes.len() as u64 > max_bytes {
        return Err(err(
            ImageErrorKind::TooLarge,
            format!(
                "file grew past the limit of {max_bytes} bytes (--max-file-bytes) while being read"
            ),
        ));
    }
    Ok(bytes)
}

/// The memory a full decode of `bytes` takes: the decoder's buffer plus the 8-bit RGB copy
/// the pipeline makes. `None` when the header cannot be read (the decode will say why).
pub fn decode_memory(bytes: &[u8]) -> Option<u64> {
    let decoder = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_decoder()
        .ok()?;
    let (w, h) = decoder.dimensions();
    Some(decoder.total_bytes() + w as u64 * h as u64 * 3)
}

/// Decodes an image file, applying its EXIF orientation, within the limits.
pub fn decode_path(path: &Path, limits: DecodeLimits) -> Result<DynamicImage> {
    let bytes = read_image_file(path, limits.max_file_bytes)?;
    decode_bytes(&bytes, path, limits)
}

/// Decodes in-memory bytes (the file at `path`), applying EXIF orientation.
pub fn decode_bytes(bytes: &[u8], path: &Path, limits: DecodeLimits) -> Result<DynamicImage> {
    decode_reader(std::io::Cursor::new(bytes), path, limits)
}

/// How much of an image's resolution the next step needs, so that a JPEG can be decoded at
/// 1/2, 1/4 or 1/8 scale in the DCT domain (the inverse DCT, upsampling and colour
/// conversion then run on a quarter, a sixteenth or a sixty-fourth of the pixels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeTarget {
    /// Every pixel.
    Full,
    /// The long side at least this (the face detector's input size).
    LongSide(u32),
    /// The centred crop of this aspect at least this large (width, height): the model
    /// input of a whole-image crop.
    Cover((u32, u32)),
}

impl DecodeTarget {
    /// The largest scale denominator (1, 2, 4 or 8) that still meets the target for a
    /// `w` x `h` image, in either orientation (EXIF may turn it by 90 degrees).
    pub fn denominator(self, w: u32, h: u32) -> u32 {
        let fits = |d: u32| {
            let (sw, sh) = (w.div_ceil(d), h.div_ceil(d));
            match self {
                DecodeTarget::Full => d == 1,
                DecodeTarget::LongSide(side) => sw.max(sh) >= side,
                DecodeTarget::Cover((tw, th)) => [(tw, th), (th, tw)].iter().all(|&(tw, th)| {
                    let (cw, ch) = center_crop_size(sw, sh, tw, th);
                    cw >= tw && ch >= th
                }),
            }
        };
        [8, 4, 2].into_iter().find(|&d| fits(d)).unwrap_or(1)
    }
}

/// A decoded image and the size of the full-resolution (oriented) original.
pub struct DecodedImage {
    pub image: DynamicImage,
    /// The original's width and height after EXIF orientation.
    pub original: (u32, u32),
}

/// Decodes `bytes` at the smallest resolution that meets `target` (JPEG only; other
/// formats, and JPEGs the scaled decoder cannot take, decode in full).
pub fn decode_bytes_for(
    bytes: &[u8],
    path: &Path,
    limits: DecodeLimits,
    target: DecodeTarget,
) -> Result<DecodedImage> {
    if target != DecodeTarget::Full
        && image::guess_format(bytes).ok() == Some(image::ImageFormat::Jpeg)
        && let Some(d) = decode_jpeg_scaled(bytes, path, limits, target)?
    {
        return Ok(d);
    }
    let image = decode_bytes(bytes, path, limits)?;
    Ok(DecodedImage {
        original: (image.width(), image.height()),
        image,
    })
}

/// [`decode_bytes_for`] on a file.
pub fn decode_path_for(
    path: &Path,
    limits: DecodeLimits,
    target: DecodeTarget,
) -> Result<DecodedImage> {
    let bytes = read_image_file(path, limits.max_file_bytes)?;
    decode_bytes_for(&bytes, path, limits, target)
}

/// A scaled decode: pixels, the full-size (width, height) and the EXIF block, if any.
type ScaledJpeg = (RgbImage, (u32, u32), Option<Vec<u8>>);

unsafe extern "C" {
    /// libjpeg-turbo's own answer to "does the IDCT run in SIMD here?": its SIMD build
    /// checks the CPU; without nasm at build time, `jsimd_none.c` answers 0.
    fn jsimd_can_idct_islow() -> std::ffi::c_int;
}

/// The JPEG decoder this binary uses, as `facebatch setup` and `--version` report it: the
/// `simd-jpeg` feature silently builds without SIMD when `nasm` is missing at build time.
pub fn jpeg_decoder() -> &'static str {
    // SAFETY: a pure query of libjpeg-turbo (linked through the mozjpeg crate) that reads the
    // CPU's features once; it takes no arguments and touches no decoder state.
    if unsafe { jsimd_can_idct_islow() } != 0 {
        "libjpeg-turbo with SIMD"
    } else {
        "libjpeg-turbo without SIMD (slower: built without nasm, or the CPU lacks SSE2)"
    }
}

/// DCT-domain scaled JPEG decoding with libjpeg-turbo's decoder (the `mozjpeg` fork, built
/// from source); `None` when full resolution is needed or the decoder does not take the
/// file (then the regular decoder runs and reports any error).
fn decode_jpeg_scaled(
    bytes: &[u8],
    path: &Path,
    limits: DecodeLimits,
    target: DecodeTarget,
) -> Result<Option<DecodedImage>> {
    // A file cut short decodes with a grey tail instead of failing: refuse it first.
    check_jpeg_end(&mut std::io::Cursor::new(bytes)).map_err(|reason| Error::Image {
        path: path.to_path_buf(),
        kind: ImageErrorKind::Truncated,
        reason,
    })?;
    // libjpeg reports a fatal error by unwinding (without the panic hook, so nothing is
    // printed); any such error sends the file to the regular decoder, which reports it.
    let decoded = std::panic::catch_unwind(|| -> Option<ScaledJpeg> {
        let mut dec = mozjpeg::Decompress::with_markers(&[mozjpeg::Marker::APP(1)])
            .from_mem(bytes)
            .ok()?;
        let (w, h) = (dec.width() as u32, dec.height() as u32);
        if w == 0 || h == 0 || (w as u64) * (h as u64) > limits.max_pixels {
            return None;
        }
        let d = target.denominator(w, h);
        if d == 1 || dec.color_space() != mozjpeg::ColorSpace::JCS_YCbCr {
            // Grey, CMYK and other colour spaces take the regular decoder's conversions.
            return None;
        }
        let exif = dec
            .markers()
            .find_map(|m| m.data.strip_prefix(b"Exif\0\0").map(<[u8]>::to_vec));
        dec.scale((8 / d) as u8);
        let mut started = dec.rgb().ok()?;
        let (sw, sh) = (started.width() as u32, started.height() as u32);
        let pixels: Vec<u8> = started.read_scanlines().ok()?;
        started.finish().ok()?;
        Some((RgbImage::from_raw(sw, sh, pixels)?, (w, h), exif))
    });
    let Ok(Some((rgb, (w, h), exif))) = decoded else {
        return Ok(None);
    };
    let sw = rgb.width();
    let mut image = DynamicImage::ImageRgb8(rgb);
    let mut original = (w, h);
    if let Some(o) = exif
        .as_deref()
        .and_then(image::metadata::Orientation::from_exif_chunk)
    {
        image.apply_orientation(o);
        if image.width() != sw {
            original = (h, w);
        }
    }
    Ok(Some(DecodedImage { image, original }))
}

fn decode_reader<R: BufRead + Seek>(
    mut input: R,
    path: &Path,
    limits: DecodeLimits,
) -> Result<DynamicImage> {
    let err = |kind: ImageErrorKind, reason: String| Error::Image {
        path: path.to_path_buf(),
        kind,
        reason,
    };
    let head = input
        .fill_buf()
        .map_err(|e| err(ImageErrorKind::Io, e.to_string()))?;
    if head.is_empty() {
        return Err(err(ImageErrorKind::Empty, "empty file".into()));
    }
    if image::guess_format(head).ok() == Some(image::ImageFormat::Jpeg) {
        // The JPEG decoder fills a truncated scan with grey instead of failing; a file cut
        // short has no end-of-image marker near its end, so refuse it here.
        check_jpeg_end(&mut input).map_err(|r| err(ImageErrorKind::Truncated, r))?;
    }
    let reader = ImageReader::new(input)
        .with_guessed_format()
        .map_err(|e| err(ImageErrorKind::Io, e.to_string()))?;
    if reader.format().is_none() {
        return Err(err(
            ImageErrorKind::UnknownFormat,
            "not a recognised image format".into(),
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| err(ImageErrorKind::Decode, e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if (w as u64) * (h as u64) > limits.max_pixels {
        return Err(err(
            ImageErrorKind::TooLarge,
            format!(
                "{w}x{h} exceeds the pixel limit of {} (decompression bomb guard)",
                limits.max_pixels
            ),
        ));
    }
    if w == 0 || h == 0 {
        return Err(err(
            ImageErrorKind::Decode,
            "image has zero width or height".into(),
        ));
    }
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| err(ImageErrorKind::Decode, e.to_string()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img)
}

/// How far from the end of a JPEG its end-of-image marker may sit (cameras append
/// trailers after it).
const JPEG_EOI_WINDOW: u64 = 64 * 1024;

fn check_jpeg_end<R: BufRead + Seek>(r: &mut R) -> std::result::Result<(), String> {
    use std::io::SeekFrom;
    let start = r.stream_position().map_err(|e| e.to_string())?;
    let scan = jpeg_scan_start(r);
    let len = r.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    let from = len.saturating_sub(JPEG_EOI_WINDOW);
    r.seek(SeekFrom::Start(from)).map_err(|e| e.to_string())?;
    let mut tail = Vec::with_capacity((len - from) as usize);
    r.read_to_end(&mut tail).map_err(|e| e.to_string())?;
    r.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    // Look only after the start of the scan: an EXIF thumbnail in the header has its own
    // end marker, which must not count.
    let Some(scan) = scan else {
        // A header that cannot be walked: the decoder reports what is wrong with it.
        return Ok(());
    };
    let body = &tail[(scan.saturating_sub(from) as usize).min(tail.len())..];
    if body.windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err("truncated JPEG: no end-of-image marker".into())
    }
}

/// The offset just past the first start-of-scan header, found by walking the marker
/// segments from the start of the file; `None` if the header is not a JPEG's.
fn jpeg_scan_start<R: BufRead + Seek>(r: &mut R) -> Option<u64> {
    use std::io::SeekFrom;
    r.seek(SeekFrom::Start(0)).ok()?;
    let mut b = [0u8; 2];
    r.read_exact(&mut b).ok()?;
    if b != [0xFF, 0xD8] {
        return None;
    }
    for _ in 0..4096 {
        // A marker: 0xFF, optional fill bytes 0xFF, then the code.
        r.read_exact(&mut b[..1]).ok()?;
        if b[0] != 0xFF {
            return None;
        }
        let mut code = 0xFF;
        while code == 0xFF {
            r.read_exact(&mut b[..1]).ok()?;
            code = b[0];
        }
        match code {
            // Standalone markers without a length.
            0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        r.read_exact(&mut b).ok()?;
        let seg = u16::from_be_bytes(b);
        if seg < 2 {
            return None;
        }
        let at = r.seek(SeekFrom::Current(i64::from(seg) - 2)).ok()?;
        if code == 0xDA {
            return Some(at);
        }
    }
    None
}

/// Decodes a file straight to 8-bit RGB (grey, alpha and 16-bit inputs are converted).
pub fn load_rgb(path: &Path, limits: DecodeLimits) -> Result<RgbImage> {
    Ok(decode_path(path, limits)?.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_jpeg_under_2_kb_is_not_called_truncated() {
        // Regression: the end-marker check skipped the first 2 KiB of small files, so
        // every valid JPEG smaller than that was reported as truncated.
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(24, 24, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 10) as u8, 128])
        }));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        assert!(bytes.len() < 2048, "{}", bytes.len());
        let path = Path::new("small.jpg");
        for target in [DecodeTarget::Full, DecodeTarget::Cover((8, 8))] {
            let d = decode_bytes_for(&bytes, path, DecodeLimits::default(), target).unwrap();
            assert_eq!(d.original, (24, 24));
        }
        // Cut short, the same file is refused.
        let cut = &bytes[..bytes.len() - 200];
        assert!(decode_bytes_for(cut, path, DecodeLimits::default(), DecodeTarget::Full).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("swapped.jpg");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo on a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o644) }, 0);
        // Nobody writes to it: a blocking open would wait forever.
        let err = read_image_file(&fifo, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn files_over_the_size_limit_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.jpg");
        std::fs::write(&big, vec![0u8; 2048]).unwrap();
        let err = read_image_file(&big, 1024).unwrap_err().to_string();
        assert!(err.contains("--max-file-bytes"), "{err}");
        assert_eq!(read_image_file(&big, 2048).unwrap().len(), 2048);
    }

    #[test]
    fn center_crop_keeps_aspect() {
        assert_eq!(center_crop_size(200, 200, 92, 112), (164, 200));
        assert_eq!(center_crop_size(92, 112, 64, 64), (92, 92));
        assert_eq!(center_crop_size(64, 64, 64, 64), (64, 64));
        assert_eq!(center_crop_size(4000, 3000, 64, 64), (3000, 3000));
    }

    #[test]
    fn tensor_is_normalised_chw() {
        let spec = InputSpec::standard(2, 2);
        let mut img = RgbImage::new(2, 2);
        img.put_pixel(1, 0, image::Rgb([255, 0, 128]));
        let t = spec.tensor_from_rgb(&img);
        assert_eq!(t.len(), 12);
        // R plane, pixel (x=1, y=0) is index 1.
        assert!((t[1] - 1.0).abs() < 1e-6);
        assert!((t[4 + 1] + 1.0).abs() < 1e-6);
        assert!((t[8 + 1] - (128.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        assert!((t[0] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn fit_produces_input_size() {
        let spec = InputSpec::standard(112, 92);
        let out = spec.fit(&RgbImage::new(200, 150));
        assert_eq!(out.dimensions(), (92, 112));
    }
}
