//! Training data preparation: read every source, deduplicate by content, detect and align
//! each image's subject face once, and assign the splits.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{AlignChoice, TrainSettings};
use crate::error::{Error, Result};
use crate::labelled::{self, Sample, Source, Split};
use crate::model::card::DataSourceInfo;
use crate::vision::align::AlignSpec;
use crate::vision::decode::{DecodeLimits, InputSpec, load_rgb};
use crate::vision::detect::Detector;
use crate::vision::faces::{CropKind, FaceFinder, FaceMode, ViewGeometry};

/// A decoded, fitted image held in memory for training.
pub(super) struct Item {
    pub sample: Sample,
    pub sha256: String,
    pub label: usize,
}

/// How an image's subject face was cropped, its pixels (HxWx3) and, for aligned crops,
/// its photo coverage (HxW).
type SubjectPixels = (CropKind, Vec<u8>, Option<Vec<u8>>);

/// The whole dataset in memory: items plus their fitted pixels, HxWx3 each.
pub(super) struct Prepared {
    pub labels: Vec<String>,
    pub items: Vec<Item>,
    pub pixels: Vec<u8>,
    /// How much of each pixel came from the photo, HxW each (255 for whole crops).
    pub coverage: Vec<u8>,
    pub splits: Vec<Split>,
    pub sources: Vec<DataSourceInfo>,
    /// Images whose split an earlier run fixed (`--pin-splits`).
    pub pinned: usize,
}

impl Prepared {
    /// Indices of the items in split `s`.
    pub fn indices(&self, s: Split) -> Vec<usize> {
        self.splits
            .iter()
            .enumerate()
            .filter(|(_, x)| **x == s)
            .map(|(i, _)| i)
            .collect()
    }
}

/// Loads the detector and builds the face finder training uses, per `settings.align`.
pub(super) fn face_finder(
    settings: &TrainSettings,
    spec: &InputSpec,
    like: Option<AlignSpec>,
) -> Result<Option<FaceFinder>> {
    if settings.align == AlignChoice::Off {
        return Ok(None);
    }
    let workers = rayon::current_num_threads();
    let detector = match Detector::load(settings.detector.as_deref(), &settings.session, workers) {
        Ok(d) => d,
        Err(e) if settings.align == AlignChoice::Auto => {
            tracing::warn!(error = %e, "face detector unavailable: training on whole crops without alignment (pass --align to require it)");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let align = match like {
        // The init model's template and border, with this run's detector and settings.
        Some(a) => AlignSpec {
            detector: detector.info.clone(),
            det_threshold: settings.detect.threshold,
            det_max_side: settings.detect.max_side,
            ..a
        },
        None => AlignSpec::standard(
            spec.height,
            spec.width,
            settings.align_zoom,
            detector.info.clone(),
            settings.detect.threshold,
            settings.detect.max_side,
        ),
    };
    Ok(Some(FaceFinder {
        mode: FaceMode::Auto,
        detector: Some(detector),
        settings: settings.detect.clone(),
        views: vec![ViewGeometry {
            align,
            input: spec.clone(),
        }],
    }))
}

/// Reads the sources (each sample remembers which of them it came from) and checks the
/// labels before any image is decoded.
pub(super) fn read(settings: &TrainSettings) -> Result<(Vec<Sample>, BTreeMap<String, usize>)> {
    if settings.sources.is_empty() {
        return Err(Error::Dataset(
            "no data given: pass a class-per-folder directory or a CSV manifest".into(),
        ));
    }
    let mut samples = Vec::new();
    let mut origin = BTreeMap::new();
    for (k, src) in settings.sources.iter().enumerate() {
        for s in labelled::read_source(src)? {
            origin.entry(s.source.clone()).or_insert(k);
            samples.push(s);
        }
    }
    labelled::label_set(&samples)?;
    crate::eval::check_group_columns(&settings.group_by, &samples)?;
    Ok((samples, origin))
}

/// Deduplicates, detects and aligns each image's subject face, and assigns the splits.
pub(super) fn prepare(
    settings: &TrainSettings,
    spec: &InputSpec,
    finder: Option<&FaceFinder>,
    samples: Vec<Sample>,
    origin: BTreeMap<String, usize>,
) -> Result<Prepared> {
    let pins = match &settings.pin_splits {
        Some(dir) => labelled::pinned_splits(dir)?,
        None => HashMap::new(),
    };
    let (unique, dedup) = unique_samples(settings, samples);
    let decoded = subjects(&unique, spec, finder);
    let gathered = Gathered::new(unique, decoded, dedup, spec);
    gathered.log(finder.is_some());
    let (labels, items) = items(gathered.kept)?;
    let (splits, pinned) = assign_splits(settings, &items, &pins);
    let sources = source_infos(
        settings,
        &origin,
        &items,
        &gathered.removals,
        finder.is_some().then_some(&gathered.face_counts),
    );
    Ok(Prepared {
        labels,
        items,
        pixels: gathered.pixels,
        coverage: gathered.coverage,
        splits,
        sources,
        pinned,
    })
}

/// The samples deduplicated by content (each with its hash), cut to `--max-images`.
fn unique_samples(
    settings: &TrainSettings,
    samples: Vec<Sample>,
) -> (Vec<(Sample, String)>, labelled::DedupReport) {
    let listed = samples.len();
    let (mut unique, dedup) = labelled::dedup(samples);
    tracing::info!(
        listed,
        unique = unique.len(),
        duplicates_removed = dedup.duplicates_removed,
        conflicting_removed = dedup.conflicting_removed,
        "deduplicated by content hash"
    );
    if let Some(max) = settings.max_images.filter(|m| *m < unique.len()) {
        unique = subsample(unique, max, settings.seed);
    }
    (unique, dedup)
}

/// Each image's subject face, aligned (or the whole crop, per the `auto` rule), decoded in
/// parallel.
fn subjects(
    unique: &[(Sample, String)],
    spec: &InputSpec,
    finder: Option<&FaceFinder>,
) -> Vec<Result<Option<SubjectPixels>>> {
    let limits = DecodeLimits::default();
    let t = Instant::now();
    let decoded: Vec<Result<Option<SubjectPixels>>> = unique
        .par_iter()
        .map(|(s, _)| subject(s, spec, finder, limits))
        .collect();
    let already = unique
        .iter()
        .filter(|(s, _)| crate::labelled::is_already_aligned(s))
        .count();
    if finder.is_some() {
        tracing::info!(
            images = unique.len() - already,
            already_aligned = already,
            seconds = format!("{:.1}", t.elapsed().as_secs_f64()),
            "faces detected and aligned"
        );
    }
    decoded
}

/// One image's subject face: `None` when the finder finds none.
fn subject(
    s: &Sample,
    spec: &InputSpec,
    finder: Option<&FaceFinder>,
    limits: DecodeLimits,
) -> Result<Option<SubjectPixels>> {
    let (w, h) = (spec.width, spec.height);
    let img = load_rgb(&s.path, limits)?;
    // A crop that is already the model's aligned input (a report's corrections): used as
    // it is, never detected again.
    if crate::labelled::is_already_aligned(s) {
        let px = if img.dimensions() == (w, h) {
            img
        } else {
            image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle)
        };
        return Ok(Some((CropKind::Aligned, px.into_raw(), None)));
    }
    Ok(match finder {
        Some(f) => f.subject(&img)?.map(|c| {
            let (kind, coverage) = (c.kind, c.coverage.clone());
            (
                kind,
                c.into_image().into_raw(),
                coverage.map(|g| g.into_raw()),
            )
        }),
        None => Some((CropKind::Whole, spec.fit(&img).into_raw(), None)),
    })
}

/// The images that gave a crop, with their pixels, and what became of the others.
struct Gathered {
    /// The kept samples with their content hashes, in order.
    kept: Vec<(Sample, String)>,
    /// HxWx3 per kept sample.
    pixels: Vec<u8>,
    /// HxW per kept sample.
    coverage: Vec<u8>,
    /// Aligned crops that reach past their photo.
    partial: usize,
    /// Per source: aligned, whole, no face.
    face_counts: BTreeMap<String, [usize; 3]>,
    removals: BTreeMap<String, labelled::SourceRemovals>,
    unreadable: Vec<String>,
}

impl Gathered {
    /// Sorts the `decoded` subjects of `unique`: kept with their pixels, counted as no
    /// face, or counted and listed as unreadable.
    fn new(
        unique: Vec<(Sample, String)>,
        decoded: Vec<Result<Option<SubjectPixels>>>,
        dedup: labelled::DedupReport,
        spec: &InputSpec,
    ) -> Gathered {
        let (w, h) = (spec.width as usize, spec.height as usize);
        let mut g = Gathered {
            kept: Vec::new(),
            pixels: Vec::with_capacity(unique.len() * w * h * 3),
            coverage: Vec::with_capacity(unique.len() * w * h),
            partial: 0,
            face_counts: BTreeMap::new(),
            removals: dedup.by_source,
            unreadable: dedup.unreadable,
        };
        for ((s, hash), d) in unique.into_iter().zip(decoded) {
            let counts = g.face_counts.entry(s.source.clone()).or_default();
            match d {
                Ok(None) => counts[2] += 1,
                Ok(Some((kind, px, cov))) => {
                    counts[usize::from(kind == CropKind::Whole)] += 1;
                    g.pixels.extend_from_slice(&px);
                    match cov {
                        Some(c) => {
                            g.partial += usize::from(c.iter().any(|&v| v < 255));
                            g.coverage.extend_from_slice(&c);
                        }
                        None => g.coverage.resize(g.coverage.len() + w * h, 255),
                    }
                    g.kept.push((s, hash));
                }
                Err(e) => {
                    g.removals.entry(s.source.clone()).or_default().unreadable += 1;
                    g.unreadable.push(e.to_string());
                }
            }
        }
        g
    }

    /// Logs the crops that reach past their photo (when aligning) and the unreadable files.
    fn log(&self, aligned: bool) {
        if aligned {
            let out_of_photo = self.coverage.iter().filter(|&&v| v < 128).count() as f64
                / self.coverage.len().max(1) as f64;
            tracing::info!(
                crops_reaching_past_the_photo = self.partial,
                share_of_pixels_outside = format!("{out_of_photo:.3}"),
                "aligned crops that reach past their source image"
            );
        }
        if !self.unreadable.is_empty() {
            tracing::warn!(
                count = self.unreadable.len(),
                first = %self.unreadable.iter().take(5).cloned().collect::<Vec<_>>().join(" | "),
                "skipped unreadable images"
            );
        }
    }
}

/// The label set of the kept samples, and the samples as items with their label index.
fn items(kept: Vec<(Sample, String)>) -> Result<(Vec<String>, Vec<Item>)> {
    let all: Vec<Sample> = kept.iter().map(|(s, _)| s.clone()).collect();
    let labels = labelled::label_set(&all)?;
    let items: Vec<Item> = kept
        .into_iter()
        .map(|(sample, sha256)| {
            let label = labels.iter().position(|l| *l == sample.label).unwrap_or(0);
            Item {
                sample,
                sha256,
                label,
            }
        })
        .collect();
    Ok((labels, items))
}

/// Each item's split, and how many of them kept a split pinned by an earlier run.
/// Stratified by label within each source, so every source is represented in every split
/// in its own class proportions; images an earlier run placed keep their split.
fn assign_splits(
    settings: &TrainSettings,
    items: &[Item],
    pins: &HashMap<String, Split>,
) -> (Vec<Split>, usize) {
    let keys: Vec<(&str, usize)> = items
        .iter()
        .map(|i| (i.sample.source.as_str(), i.label))
        .collect();
    let pinned: Vec<Option<Split>> = items.iter().map(|i| pins.get(&i.sha256).copied()).collect();
    let n_pinned = pinned.iter().flatten().count();
    if settings.pin_splits.is_some() {
        tracing::info!(
            pinned = n_pinned,
            of = items.len(),
            "splits kept from the earlier run"
        );
    }
    let splits = labelled::stratified_split(&labelled::strata(&keys), &pinned, settings.split);
    (splits, n_pinned)
}

/// Seeded, label-stratified subsample for quick runs.
fn subsample(mut unique: Vec<(Sample, String)>, max: usize, seed: u64) -> Vec<(Sample, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED);
    unique.shuffle(&mut rng);
    let mut by_label: BTreeMap<String, Vec<(Sample, String)>> = BTreeMap::new();
    for u in unique {
        by_label.entry(u.0.label.clone()).or_default().push(u);
    }
    let total: usize = by_label.values().map(Vec::len).sum();
    let mut out: Vec<(Sample, String)> = by_label
        .into_values()
        .flat_map(|v| {
            let take = ((v.len() * max) as f64 / total as f64).ceil() as usize;
            v.into_iter().take(take.max(1))
        })
        .collect();
    out.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    out
}

/// The card's per-source entries: one per source name (a manifest's `source` column can
/// name several), with what was kept and removed.
fn source_infos(
    settings: &TrainSettings,
    origin: &BTreeMap<String, usize>,
    items: &[Item],
    removals: &BTreeMap<String, labelled::SourceRemovals>,
    face_counts: Option<&BTreeMap<String, [usize; 3]>>,
) -> Vec<DataSourceInfo> {
    let mut out = Vec::new();
    for (name, &k) in origin {
        let (kind, location) = match &settings.sources[k] {
            Source::Folder(p) => ("folder", p.display().to_string()),
            Source::Csv { path, .. } => ("csv", path.display().to_string()),
        };
        let mut per_class = BTreeMap::new();
        for it in items.iter().filter(|i| &i.sample.source == name) {
            *per_class.entry(it.sample.label.clone()).or_default() += 1;
        }
        let r = removals.get(name).cloned().unwrap_or_default();
        let c = face_counts.map(|f| f.get(name).copied().unwrap_or_default());
        if let Some(c) = c.filter(|c| c[2] > 0) {
            tracing::warn!(source = %name, images = c[2], "no face found; left out of training");
        }
        out.push(DataSourceInfo {
            name: name.clone(),
            kind: kind.into(),
            location,
            per_class,
            duplicates_removed: r.duplicates,
            conflicting_labels_removed: r.conflicting,
            unreadable_skipped: r.unreadable,
            aligned: c.map(|c| c[0]),
            whole_fallback: c.map(|c| c[1]),
            no_face_skipped: c.map(|c| c[2]),
        });
    }
    out
}
