//! Small filesystem helpers.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it into place,
/// so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    tmp.write_all(bytes)
        .and_then(|_| set_readable(tmp.as_file()))
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io(format!("renaming into {}", path.display()), e.error))?;
    sync_parent(path);
    Ok(())
}

/// Syncs the folder holding `path`, so that a rename into it survives a crash (best
/// effort: some filesystems cannot sync a folder).
pub fn sync_parent(path: &Path) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A path as the string stored in the output's `root` and `path` columns: the path itself
/// when it is valid UTF-8 without a backslash; otherwise every byte that is not UTF-8 is
/// written `\xNN` and every backslash `\\`. Unique and reversible
/// ([`path_from_key`]), so two names that differ only in non-UTF-8 bytes stay two rows.
pub fn path_key(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes = path.as_os_str().as_bytes();
        if let Ok(s) = std::str::from_utf8(bytes)
            && !s.contains('\\')
        {
            return s.to_string();
        }
        let mut out = String::with_capacity(bytes.len() + 8);
        for chunk in bytes.utf8_chunks() {
            out.push_str(&chunk.valid().replace('\\', "\\\\"));
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().replace('\\', "/")
    }
}

/// The path a [`path_key`] was made from.
#[cfg(unix)]
pub fn path_from_key(key: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    std::path::PathBuf::from(std::ffi::OsString::from_vec(key_bytes(key).collect()))
}

/// The bytes of the path a [`path_key`] was made from, one at a time (no allocation): `\\`
/// is one backslash, `\xNN` the byte NN, everything else itself.
pub fn key_bytes(key: &str) -> impl Iterator<Item = u8> + '_ {
    let b = key.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        let c = *b.get(i)?;
        if c == b'\\' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            return Some(b'\\');
        }
        if c == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(v) = key
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            i += 4;
            return Some(v);
        }
        i += 1;
        Some(c)
    })
}

/// Current UTC time as RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// sha256 of some bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Gives a file made by `tempfile` (mode 0600) the usual 0644, so outputs are readable by
/// the other users and services that consume them.
pub fn set_readable(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// Reads the members `names` of a zip archive (a wheel) held in memory.
pub fn zip_members(archive: Vec<u8>, names: &[&str]) -> std::result::Result<Vec<Vec<u8>>, String> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
        .map_err(|e| format!("wheel is not a zip archive: {e}"))?;
    names
        .iter()
        .map(|name| {
            let mut entry = zip
                .by_name(name)
                .map_err(|e| format!("wheel lacks {name}: {e}"))?;
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("extracting {name}: {e}"))?;
            Ok(bytes)
        })
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn path_keys_are_unique_and_reversible() {
        let names: [&[u8]; 6] = [
            b"plain/a.jpg",
            b"caf\xc3\xa9.jpg",
            b"bad\xff.jpg",
            b"bad\xfe.jpg",
            b"bad\\xff.jpg",
            b"back\\slash\\\\.jpg",
        ];
        let keys: Vec<String> = names
            .iter()
            .map(|n| path_key(Path::new(std::ffi::OsStr::from_bytes(n))))
            .collect();
        assert_eq!(keys[0], "plain/a.jpg");
        assert_eq!(keys[1], "caf\u{e9}.jpg");
        assert_eq!(keys[2], "bad\\xff.jpg");
        for (n, k) in names.iter().zip(&keys) {
            assert_eq!(path_from_key(k).as_os_str().as_bytes(), *n, "{k}");
        }
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
    }
}

// Path normalisation, lexical (the file system is not asked, no symlink is resolved). Kept
// here rather than taken from a crate: `path-clean` and `normpath` resolve `..` too, which
// input keys must not (a root stays as the user named it), and each function is 15 lines.

/// `p` without `.` components (`IN`, `IN/`, `./IN` and `IN/.` are one path); `..` stays.
pub fn without_cur_dirs(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// `p` without `.` components and with each `..` taking away the component before it (a
/// leading `..` stays), as C++'s `lexically_normal`.
pub fn lexically_normal(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// File extensions treated as images (lower case).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff", "pgm", "ppm", "pnm", "gif",
];

/// True when the path has an image extension.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// `p` made absolute (from the working directory) and [`lexically_normal`]; links are not
/// resolved, so the names stay the user's.
pub fn absolute_normal(p: &Path) -> PathBuf {
    lexically_normal(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}

/// The working directory as a path key (`facebatch.base`: what relative paths in an output
/// are relative to); empty when it cannot be read.
pub fn working_dir_key() -> String {
    std::env::current_dir()
        .map(|d| path_key(&d))
        .unwrap_or_default()
}

// The output rule: what every command that writes a file or fills a folder checks before
// any work (eval `--predictions` and `--reliability`, report, train, visualize, setup
// `--bundle`; classify's `--out` follows the same rule in its preflight).

/// What a command writes at an output path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutKind {
    /// One file, written whole (replaced when it exists and is the command's own).
    File,
    /// A folder the command creates or fills (an empty one, or its own earlier output).
    Folder,
}

impl OutKind {
    fn noun(self) -> &'static str {
        match self {
            OutKind::File => "file",
            OutKind::Folder => "folder",
        }
    }
}

/// One output of a command, as [`check_out_is_safe`] checks it.
pub struct OutCheck<'a> {
    /// The option that names it (`--predictions`, `--out`, `--bundle`), for the message.
    pub flag: &'a str,
    pub path: &'a Path,
    pub kind: OutKind,
    /// Whether an existing `path` is this command's own earlier output, which it may
    /// replace (or write into). Not asked for a missing path, nor for a folder that holds
    /// no files.
    pub is_own: &'a dyn Fn(&Path) -> bool,
    /// What `is_own` accepts, for the message: "an earlier `eval --predictions` file".
    pub own: &'a str,
}

/// The rule every output follows: it never replaces one of the command's inputs (a file it
/// reads, a folder it reads from, an image a manifest lists; the same file through another
/// name or a link counts), a file with an image's extension never lands inside an input
/// folder (nor does an output folder: a later run over that folder would read what it
/// holds), and an existing file or folder is replaced only when it is this command's own
/// earlier output (`is_own`; an empty folder is always fine). `InvalidOption` otherwise,
/// naming the option, the path and the input.
pub fn check_out_is_safe<'p>(
    out: &OutCheck<'_>,
    inputs: impl IntoIterator<Item = &'p Path>,
) -> Result<()> {
    let (flag, path, noun) = (out.flag, out.path, out.kind.noun());
    let refuse = |why: String| {
        Err(Error::InvalidOption(format!(
            "{flag} {}{why}",
            path.display()
        )))
    };
    let existing = std::fs::metadata(path).ok();
    let resolved = resolved(path);
    for input in inputs {
        let Ok(input_meta) = std::fs::metadata(input) else {
            continue;
        };
        if existing
            .as_ref()
            .is_some_and(|m| same_file(m, &input_meta, path, input))
        {
            return refuse(format!(
                " is one of the inputs ({}); facebatch never replaces what it reads: name a new {noun}",
                input.display()
            ));
        }
        if !input_meta.is_dir() {
            continue;
        }
        let Ok(input_abs) = std::fs::canonicalize(input) else {
            continue;
        };
        let inside = resolved != input_abs && resolved.starts_with(&input_abs);
        let read_later = match out.kind {
            OutKind::Folder => true,
            OutKind::File => has_image_extension(path),
        };
        if inside && read_later {
            let what = match out.kind {
                OutKind::Folder => "a folder",
                OutKind::File => "a file with an image extension",
            };
            return refuse(format!(
                " lies inside the input folder {}: {what} there would be read as input by the next run; name a {noun} outside the inputs",
                input.display()
            ));
        }
    }
    let Some(meta) = existing else {
        return Ok(());
    };
    match out.kind {
        OutKind::File if meta.is_dir() => {
            return refuse(" is a folder; name a file".to_string());
        }
        OutKind::Folder if !meta.is_dir() => {
            return refuse(" exists and is not a folder; name a folder".to_string());
        }
        OutKind::Folder if holds_no_files(path) => return Ok(()),
        _ => {}
    }
    if (out.is_own)(path) {
        return Ok(());
    }
    refuse(format!(
        " exists and is not {}; refusing to replace it (move it away, or name a new {noun})",
        out.own
    ))
}

/// True when `a` (the metadata of `a_path`) and `b` (of `b_path`) are one file: the same
/// inode (a hard link, a symbolic link, another spelling of the path).
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, a_path: &Path, b_path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = (a_path, b_path);
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        match (std::fs::canonicalize(a_path), std::fs::canonicalize(b_path)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// True when the folder holds no file at any depth (nothing, or only empty folders, as a
/// run that failed early leaves them). An unreadable folder counts as holding files.
pub fn holds_no_files(dir: &Path) -> bool {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .all(|e| e.is_ok_and(|e| e.file_type().is_dir()))
}

/// `p` made absolute through its longest existing ancestor (links resolved), with the
/// components that do not exist yet appended: where a file or folder about to be created
/// will be.
pub fn resolved(p: &Path) -> PathBuf {
    let p = lexically_normal(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let mut rest = Vec::new();
    let mut cur = p.as_path();
    loop {
        if let Ok(found) = std::fs::canonicalize(cur) {
            return rest.iter().rev().fold(found, |acc, c| acc.join(c));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return p.clone(),
        }
    }
}

#[cfg(all(test, unix))]
mod out_tests {
    use super::*;

    fn check(path: &Path, kind: OutKind, inputs: &[&Path], own: bool) -> Result<()> {
        check_out_is_safe(
            &OutCheck {
                flag: "--out",
                path,
                kind,
                is_own: &|_| own,
                own: "an earlier output",
            },
            inputs.iter().copied(),
        )
    }

    fn refused(r: Result<()>, needle: &str) {
        match r {
            Err(Error::InvalidOption(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected a refusal naming {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn an_output_never_replaces_an_input() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("female")).unwrap();
        let img = data.join("female/a.jpg");
        std::fs::write(&img, b"x").unwrap();
        let csv = tmp.path().join("m.csv");
        std::fs::write(&csv, b"path,label\n").unwrap();
        // The input itself, through another spelling, a symbolic link or a hard link.
        refused(
            check(&csv, OutKind::File, &[&csv], true),
            "is one of the inputs",
        );
        let spelled = tmp.path().join("data/../m.csv");
        refused(
            check(&spelled, OutKind::File, &[&csv], true),
            "is one of the inputs",
        );
        let link = tmp.path().join("link.csv");
        std::os::unix::fs::symlink(&csv, &link).unwrap();
        refused(
            check(&link, OutKind::File, &[&csv], true),
            "is one of the inputs",
        );
        let hard = tmp.path().join("hard.csv");
        std::fs::hard_link(&csv, &hard).unwrap();
        refused(
            check(&hard, OutKind::File, &[&csv], true),
            "is one of the inputs",
        );
        // An image a manifest lists, and an input folder as an output folder.
        refused(
            check(&img, OutKind::File, &[&csv, &img], true),
            "is one of the inputs",
        );
        refused(
            check(&data, OutKind::Folder, &[&data], true),
            "is one of the inputs",
        );
        // Inside an input folder: an image-named file or a folder, not a Parquet file.
        refused(
            check(&data.join("new.png"), OutKind::File, &[&data], true),
            "inside the input folder",
        );
        refused(
            check(&data.join("model"), OutKind::Folder, &[&data], true),
            "inside the input folder",
        );
        check(&data.join("p.parquet"), OutKind::File, &[&data], false).unwrap();
        // Outside the inputs: new paths are fine.
        check(
            &tmp.path().join("p.parquet"),
            OutKind::File,
            &[&data, &csv],
            false,
        )
        .unwrap();
        check(&tmp.path().join("new"), OutKind::Folder, &[&data], false).unwrap();
    }

    #[test]
    fn an_existing_output_is_replaced_only_when_it_is_the_commands_own() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("p.parquet");
        std::fs::write(&file, b"x").unwrap();
        refused(
            check(&file, OutKind::File, &[], false),
            "exists and is not an earlier output",
        );
        check(&file, OutKind::File, &[], true).unwrap();
        refused(check(tmp.path(), OutKind::File, &[], true), "is a folder");
        refused(check(&file, OutKind::Folder, &[], true), "is not a folder");
        // A folder that holds only empty folders is as good as a new one.
        let dir = tmp.path().join("d");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        check(&dir, OutKind::Folder, &[], false).unwrap();
        std::fs::write(dir.join("a/b/f"), b"x").unwrap();
        refused(
            check(&dir, OutKind::Folder, &[], false),
            "refusing to replace it",
        );
        check(&dir, OutKind::Folder, &[], true).unwrap();
    }
}

/// This machine's host name, for lock holders' names (`unknown` when it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // when the name fits, and the last byte is kept 0 for when it does not.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
