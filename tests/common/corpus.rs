//! Images and folders of images for the runs: the shared seed faces, the bundled samples,
//! and generated JPEGs.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{repo, shared_data_opt};

/// The entries of `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The first entry of `dir` in the order the file system lists them: any one of its files.
pub fn any_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// Copies `n` distinct images (by content) of each class from the seed faces into
/// `dst/<class>/`. The seed faces hold exact duplicates; the fixture does not. Without the
/// shared data (a GitHub clone), the images are made from the bundled `data/samples/faces`
/// instead: each sample with one pixel marked, so every file is distinct.
pub fn seed_subset(dst: &Path, n: usize) {
    let Some(shared) = shared_data_opt() else {
        return sample_subset(dst, n);
    };
    let src = shared.join("seed-faces");
    let mut seen = std::collections::HashSet::new();
    for class in ["female", "male"] {
        let files = files_in(&src.join(class));
        std::fs::create_dir_all(dst.join(class)).unwrap();
        let mut copied = 0;
        for f in &files {
            if copied == n {
                break;
            }
            if seen.insert(std::fs::read(f).unwrap()) {
                std::fs::copy(f, dst.join(class).join(f.file_name().unwrap())).unwrap();
                copied += 1;
            }
        }
        assert_eq!(copied, n, "enough distinct {class} seed faces");
    }
}

/// `n` distinct BMP faces per class made from the bundled samples.
fn sample_subset(dst: &Path, n: usize) {
    for class in ["female", "male"] {
        let faces: Vec<PathBuf> = files_in(&repo().join("data/samples/faces").join(class))
            .into_iter()
            .filter(|p| image::open(p).is_ok())
            .collect();
        std::fs::create_dir_all(dst.join(class)).unwrap();
        for i in 0..n {
            let mut img = image::open(&faces[i % faces.len()]).unwrap().to_rgb8();
            let k = (i / faces.len()) as u32;
            img.put_pixel(
                k % img.width(),
                k / img.width() % img.height(),
                image::Rgb([255, 0, 0]),
            );
            img.save(dst.join(class).join(format!("{class}{i:03}.bmp")))
                .unwrap();
        }
    }
}

/// A test's temporary folder holding `faces/`: `n` distinct faces per class (`seed_subset`).
/// The folder (removed when dropped) and `faces/`.
pub fn temp_faces(n: usize) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    seed_subset(&data, n);
    (tmp, data)
}

pub fn encode(img: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

/// Writes `img` as a JPEG at `path`, making its folder.
pub fn write_jpeg(path: &Path, img: &image::RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        encode(
            &image::DynamicImage::ImageRgb8(img.clone()),
            image::ImageFormat::Jpeg,
        ),
    )
    .unwrap();
}

/// A JPEG with an EXIF orientation tag spliced in after SOI.
pub fn jpeg_with_orientation(img: &image::RgbImage, orientation: u16) -> Vec<u8> {
    let jpeg = encode(
        &image::DynamicImage::ImageRgb8(img.clone()),
        image::ImageFormat::Jpeg,
    );
    let mut tiff = b"II*\0\x08\0\0\0".to_vec();
    tiff.extend(1u16.to_le_bytes()); // one IFD entry
    tiff.extend(0x0112u16.to_le_bytes()); // Orientation
    tiff.extend(3u16.to_le_bytes()); // SHORT
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

/// A real face crop shipped with the repository (`data/samples`).
pub fn sample_face() -> image::RgbImage {
    image::open(repo().join("data/samples/faces/female/face367.bmp"))
        .unwrap()
        .to_rgb8()
}

/// Writes `n` distinct JPEGs of `face` (one pixel marked per image) spread over `folders`
/// folders `d0`, `d1`, ... under `dir`; returns their relative paths, sorted.
pub fn jpeg_corpus(dir: &Path, n: usize, folders: usize, face: &image::RgbImage) -> Vec<String> {
    let mut rels = Vec::new();
    for i in 0..n {
        let mut img = face.clone();
        img.put_pixel(
            (i % 92) as u32,
            (i / 92 % 112) as u32,
            image::Rgb([255, 0, 0]),
        );
        let rel = format!("d{}/img{i:05}.jpg", i % folders);
        write_jpeg(&dir.join(&rel), &img);
        rels.push(rel);
    }
    rels.sort();
    rels
}

/// A test's temporary folder holding `photos/`, a `jpeg_corpus` of `n` JPEGs of `face` in
/// `folders` folders. The folder (removed when dropped), `photos/` and the relative paths.
pub fn temp_photos(
    n: usize,
    folders: usize,
    face: &image::RgbImage,
) -> (TempDir, PathBuf, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    let rels = jpeg_corpus(&photos, n, folders, face);
    (tmp, photos, rels)
}

/// Copies `src` to `dst`, making `dst`'s folder.
pub fn copy_file(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    std::fs::copy(src, dst)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", src.display(), dst.display()));
}
