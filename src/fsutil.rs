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
