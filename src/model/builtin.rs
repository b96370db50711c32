//! The default model, built into the binary: `facebatch classify DIR --out x.parquet` works
//! from any directory, from `cargo install`, the pip wheel or the container image, with no
//! `models/` folder beside it.
//!
//! ONNX Runtime and the rest of facebatch read a model from a folder (`model.onnx` beside
//! `card.json`, the folder's name being its version), so the embedded files are unpacked
//! once into the store (`<store>/models/<name>/<version>/`) and checked byte for byte on
//! every use; `facebatch setup --bundle DIR` unpacks them into a bundle ahead of time.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::store::Store;

/// The built-in model's name and version (its folder under `models/`).
pub const NAME: &str = "facebatch-gender";
pub const VERSION: &str = "v5";
/// What `--model` and `FACEBATCH_MODEL` take to mean the built-in model (their default).
pub const KEYWORD: &str = "builtin";

/// v5 is an ensemble: its card and its two members' networks (v4's and dlib's).
const FILES: [(&str, &[u8]); 3] = [
    (
        "v4.onnx",
        include_bytes!("../../models/facebatch-gender/v5/v4.onnx"),
    ),
    (
        "dlib.onnx",
        include_bytes!("../../models/facebatch-gender/v5/dlib.onnx"),
    ),
    (
        crate::model::card::CARD_FILE,
        include_bytes!("../../models/facebatch-gender/v5/card.json"),
    ),
];

/// Where the built-in model lives in a store.
pub fn dir_in(store: &Store) -> PathBuf {
    store.root.join("models").join(NAME).join(VERSION)
}

fn intact(dir: &Path) -> bool {
    FILES
        .iter()
        .all(|(name, bytes)| std::fs::read(dir.join(name)).is_ok_and(|b| b == *bytes))
}

/// The built-in model's folder in `store`, unpacked there first if needed.
pub fn install(store: &Store) -> Result<PathBuf> {
    let dir = dir_in(store);
    if intact(&dir) {
        return Ok(dir);
    }
    if !store.may_fetch {
        return Err(store.incomplete(&format!("built-in model {NAME} {VERSION}")));
    }
    std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in FILES {
        // Each file is replaced atomically: a concurrent reader sees the old or new whole.
        crate::fsutil::write_atomic(&dir.join(name), bytes)?;
    }
    tracing::debug!(dir = %dir.display(), "unpacked the built-in model");
    Ok(dir)
}

/// `--model`: the built-in model, or a model path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Builtin,
    Path(PathBuf),
}

impl ModelRef {
    /// The model folder (or model.onnx) to load: a path as given, the built-in one unpacked.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            ModelRef::Path(p) => Ok(p.clone()),
            ModelRef::Builtin => install(&Store::current()),
        }
    }
}

impl std::str::FromStr for ModelRef {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "" => Err("empty model path".into()),
            KEYWORD => Ok(ModelRef::Builtin),
            _ => Ok(ModelRef::Path(PathBuf::from(s))),
        }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Builtin => f.write_str(KEYWORD),
            ModelRef::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_once_and_repairs_a_damaged_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::preparing(tmp.path());
        let dir = install(&store).unwrap();
        assert_eq!(dir, tmp.path().join("models/facebatch-gender/v5"));
        let card = crate::model::card::ModelCard::load(&dir.join("card.json")).unwrap();
        assert_eq!(card.labels.len(), 2);
        std::fs::write(dir.join("v4.onnx"), b"damaged").unwrap();
        let bundle = Store {
            root: tmp.path().to_path_buf(),
            may_fetch: false,
        };
        let err = install(&bundle).unwrap_err().to_string();
        assert!(err.contains("setup --bundle"), "{err}");
        install(&store).unwrap();
        assert!(intact(&dir));
        install(&bundle).unwrap();
    }

    #[test]
    fn the_keyword_means_the_builtin_model() {
        assert_eq!("builtin".parse::<ModelRef>(), Ok(ModelRef::Builtin));
        assert_eq!(
            "./builtin".parse::<ModelRef>(),
            Ok(ModelRef::Path("./builtin".into()))
        );
        assert!("".parse::<ModelRef>().is_err());
    }
}
