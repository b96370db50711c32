//! From a decoded image to the classifier's input crops: detect, align, or take the image
//! whole. The one rule set used by `classify`, `eval` and `train`.
//!
//! `--faces`:
//! - `whole`: the image is already a face crop; it is fitted to the input as the card's
//!   [`InputSpec`] says (centre crop + resize).
//! - `detect`: the detector runs on every image; each face found is aligned; no face means
//!   a `no_face` result.
//! - `auto` (default): detect; when no face is found in a *small* image (long side at most
//!   [`CROP_MAX_SIDE`] pixels, the size of face-crop datasets), fall back to the whole
//!   image, because such an image is almost always a tight crop whose face fills the frame.
//!
//! Tight crops are searched as they are: padding them with a border before detection was
//! measured and found no extra faces (UTKFace 21,314/21,326 either way; seed faces 399/399
//! unpadded, 397/399 padded).

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::vision::align::AlignSpec;
use crate::vision::decode::InputSpec;
use crate::vision::detect::{DetectSettings, Detector, Face, subject};

/// Images with a long side at most this are treated as face crops by `--faces auto`.
pub const CROP_MAX_SIDE: u32 = 320;

/// How faces are found in an image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaceMode {
    /// Detect; fall back to the whole image for small face crops with no detection.
    #[default]
    Auto,
    /// Detect on every image; no face gives `no_face`.
    Detect,
    /// The image is a face crop; no detection.
    Whole,
}

impl std::fmt::Display for FaceMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FaceMode::Auto => "auto",
            FaceMode::Detect => "detect",
            FaceMode::Whole => "whole",
        })
    }
}

/// How a crop was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropKind {
    /// Detected and aligned.
    Aligned,
    /// The whole image, fitted to the input.
    Whole,
}

impl CropKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CropKind::Aligned => "aligned",
            CropKind::Whole => "whole",
        }
    }
}

/// One classifier-ready face: a crop for each of the model's views (its members), cut from
/// the same detection.
#[derive(Clone, Debug)]
pub struct Crop {
    pub kind: CropKind,
    /// The detection (absent for whole-image crops).
    pub face: Option<Face>,
    /// One crop per view, in view order, each exactly its view's input size.
    pub images: Vec<RgbImage>,
    /// For aligned crops, how much of each pixel of the first view's crop lies inside the
    /// photo (see
    /// [`AlignSpec::align_with_coverage`](crate::vision::align::AlignSpec::align_with_coverage)).
    pub coverage: Option<GrayImage>,
}

impl Crop {
    /// The first view's crop: the primary network's (`--save-crops`, training, thumbnails).
    pub fn image(&self) -> &RgbImage {
        &self.images[0]
    }

    /// Takes the first view's crop.
    pub fn into_image(self) -> RgbImage {
        self.images.into_iter().next().unwrap_or_default()
    }
}

/// How one network sees a face: its alignment and its input.
#[derive(Clone, Debug)]
pub struct ViewGeometry {
    pub align: AlignSpec,
    pub input: InputSpec,
}

/// Finds and aligns faces, once per view.
pub struct FaceFinder {
    pub mode: FaceMode,
    pub detector: Option<Detector>,
    pub settings: DetectSettings,
    /// At least one; the first is the primary network's.
    pub views: Vec<ViewGeometry>,
}

impl FaceFinder {
    /// The face settings a run records (mode, detector, thresholds, alignment), as JSON:
    /// runs that continue or repeat it must find faces the same way (`facebatch.faces` in
    /// classify outputs and eval predictions).
    pub fn identity(&self) -> String {
        serde_json::json!({
            "mode": self.mode,
            "detector": self.detector.as_ref().map(|d| &d.info),
            "detection": self.detector.as_ref().map(|_| &self.settings),
            // One view as earlier versions wrote it; an ensemble's views as a list. Each
            // with the detection settings this run used (`--det-threshold`, `--det-size`),
            // not the card's defaults, and without the card's prose (which states them).
            "alignment": self.detector.as_ref().map(|_| {
                // As written on the command line (0.7, not 0.699999988 from f32).
                let threshold: f64 = self.settings.threshold.to_string().parse().unwrap_or_default();
                let used = |align: &crate::vision::align::AlignSpec| {
                    let mut v = serde_json::json!(align);
                    if let Some(o) = v.as_object_mut() {
                        o.remove("description");
                        o.insert("det_threshold".into(), serde_json::json!(threshold));
                        o.insert("det_max_side".into(), serde_json::json!(self.settings.max_side));
                    }
                    v
                };
                match self.views.as_slice() {
                    [one] => used(&one.align),
                    views => serde_json::json!(views.iter().map(|v| used(&v.align)).collect::<Vec<_>>()),
                }
            }),
        })
        .to_string()
    }

    /// Every face in `img`, left to right, as aligned crops (or the whole image, per mode).
    /// Empty means no face.
    pub fn crops(&self, img: &RgbImage) -> Result<Vec<Crop>> {
        self.crops_scaled(img, 1.0)
    }

    /// [`crops`](Self::crops) of an image decoded at reduced scale: `scale` original pixels
    /// per pixel of `img`. Sizes (`min_face`, the `auto` fallback) are judged, and boxes
    /// and landmarks are returned, in original pixels; the crops come from `img`.
    pub fn crops_scaled(&self, img: &RgbImage, scale: f32) -> Result<Vec<Crop>> {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        let original = (
            (img.width() as f32 * scale).round() as u32,
            (img.height() as f32 * scale).round() as u32,
        );
        let Some(mut faces) = self.detect(img, scale)? else {
            return Ok(vec![self.whole(img)]);
        };
        if faces.is_empty() {
            return Ok(if self.falls_back(original) {
                vec![self.whole(img)]
            } else {
                Vec::new()
            });
        }
        faces.sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
        Ok(faces
            .into_iter()
            .map(|f| {
                let mut crop = self.aligned(img, f);
                if scale != 1.0
                    && let Some(face) = &mut crop.face
                {
                    face.bbox = face.bbox.map(|v| v * scale);
                    face.landmarks = face.landmarks.map(|[x, y]| [x * scale, y * scale]);
                }
                crop
            })
            .collect())
    }

    /// The subject of a one-person image (the face nearest the centre), per mode.
    pub fn subject(&self, img: &RgbImage) -> Result<Option<Crop>> {
        let Some(faces) = self.detect(img, 1.0)? else {
            return Ok(Some(self.whole(img)));
        };
        match subject(&faces, img.width(), img.height()) {
            Some(f) => Ok(Some(self.aligned(img, f.clone()))),
            None if self.falls_back(img.dimensions()) => Ok(Some(self.whole(img))),
            None => Ok(None),
        }
    }

    /// The detections, or `None` when images are taken whole (`whole` mode, or no detector).
    /// `scale`: original pixels per pixel of `img` (`min_face` is in original pixels).
    fn detect(&self, img: &RgbImage, scale: f32) -> Result<Option<Vec<Face>>> {
        match (&self.detector, self.mode) {
            (_, FaceMode::Whole) | (None, _) => Ok(None),
            (Some(d), _) => {
                let settings = DetectSettings {
                    min_face: self.settings.min_face / scale,
                    ..self.settings.clone()
                };
                d.detect(img, &settings).map(Some)
            }
        }
    }

    /// The `auto` rule for an image of this (original) size without a detection.
    fn falls_back(&self, (width, height): (u32, u32)) -> bool {
        self.mode == FaceMode::Auto && width.max(height) <= CROP_MAX_SIDE
    }

    /// The primary view's alignment.
    pub fn align(&self) -> &AlignSpec {
        &self.views[0].align
    }

    fn aligned(&self, img: &RgbImage, face: Face) -> Crop {
        let mut coverage = None;
        let images = self
            .views
            .iter()
            .map(|v| {
                let (image, cov) = v.align.align_with_coverage(img, &face);
                coverage.get_or_insert(cov);
                image
            })
            .collect();
        Crop {
            kind: CropKind::Aligned,
            face: Some(face),
            images,
            coverage,
        }
    }

    fn whole(&self, img: &RgbImage) -> Crop {
        Crop {
            kind: CropKind::Whole,
            face: None,
            images: self.views.iter().map(|v| v.input.fit(img)).collect(),
            coverage: None,
        }
    }
}

/// Detection options as given on the command line; `None` takes the model card's value
/// (or the default).
#[derive(Clone, Debug, Default)]
pub struct FaceOptions {
    pub mode: Option<FaceMode>,
    pub detector: Option<std::path::PathBuf>,
    pub threshold: Option<f32>,
    pub max_side: Option<u32>,
    pub min_face: Option<f32>,
    pub max_faces: Option<usize>,
}

/// What the face finder needs to know of a model: what its card says of its name and, for
/// each of its networks, its input and alignment (`ModelCard::faces`).
#[derive(Clone, Debug)]
pub struct ModelFaces<'a> {
    pub name: &'a str,
    /// At least one.
    pub views: Vec<View<'a>>,
}

/// One network's input and alignment, as its card states them.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub input: &'a InputSpec,
    pub alignment: Option<&'a AlignSpec>,
}

impl FaceFinder {
    /// The face finder for a model: its card's alignment (or the standard one for its input
    /// size), the default detection settings unless overridden, `workers` detector sessions.
    /// Default mode: `auto` for models trained on aligned faces, `whole` otherwise.
    pub fn for_model(
        card: ModelFaces<'_>,
        opts: &FaceOptions,
        session: &crate::onnx::SessionOptions,
        workers: usize,
    ) -> Result<FaceFinder> {
        let aligned = card.views.iter().any(|v| v.alignment.is_some());
        let mode = opts.mode.unwrap_or(if aligned {
            FaceMode::Auto
        } else {
            FaceMode::Whole
        });
        let defaults = DetectSettings::default();
        // Which faces are kept is an inference choice (the alignment of a kept face does not
        // depend on it), so the defaults apply, not the values training used.
        let settings = DetectSettings {
            threshold: opts.threshold.unwrap_or(defaults.threshold),
            max_side: opts.max_side.unwrap_or(defaults.max_side),
            min_face: opts.min_face.unwrap_or(defaults.min_face),
            max_faces: opts.max_faces.unwrap_or(defaults.max_faces),
            nms_iou: defaults.nms_iou,
        };
        settings.validate()?;
        let detector = if mode == FaceMode::Whole {
            None
        } else {
            Some(Detector::load(opts.detector.as_deref(), session, workers)?)
        };
        let info = detector.as_ref().map(|d| d.info.clone()).unwrap_or(
            crate::vision::detect::DetectorInfo {
                name: "none".into(),
                sha256: String::new(),
                licence: String::new(),
            },
        );
        let mut views = Vec::with_capacity(card.views.len());
        for v in &card.views {
            if let (Some(a), Some(d)) = (v.alignment, &detector)
                && a.detector.sha256 != d.info.sha256
            {
                tracing::warn!(
                    trained_with = %a.detector.sha256,
                    using = %d.info.sha256,
                    "the detector differs from the one the model was trained with"
                );
            }
            let align = v.alignment.cloned().unwrap_or_else(|| {
                AlignSpec::standard(
                    v.input.height,
                    v.input.width,
                    crate::vision::align::DEFAULT_ZOOM,
                    info.clone(),
                    settings.threshold,
                    settings.max_side,
                )
            });
            if align.width != v.input.width || align.height != v.input.height {
                return Err(crate::Error::InvalidCard {
                    path: card.name.into(),
                    reason: "alignment size differs from the input size".into(),
                });
            }
            views.push(ViewGeometry {
                align,
                input: v.input.clone(),
            });
        }
        if views.is_empty() {
            return Err(crate::Error::InvalidCard {
                path: card.name.into(),
                reason: "no network to find faces for".into(),
            });
        }
        Ok(FaceFinder {
            mode,
            detector,
            settings,
            views,
        })
    }
}
