//! `facebatch samples --out DIR`: the sample data built into the binary, for the tour.

use std::path::PathBuf;

use clap::Args;

use super::{EXIT_OK, GlobalArgs};

#[derive(Args, Debug)]
pub struct SamplesArgs {
    /// The folder to write the samples into (created; an earlier `facebatch samples`
    /// folder is written again).
    #[arg(long)]
    pub out: PathBuf,
}

/// `facebatch samples`.
pub fn run(args: &SamplesArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    facebatch::fsutil::check_out_is_safe(
        &facebatch::fsutil::OutCheck {
            flag: "--out",
            path: &args.out,
            kind: facebatch::fsutil::OutKind::Folder,
            is_own: &|dir| dir.join(facebatch::samples::MARKER).is_file(),
            own: "an earlier `facebatch samples` folder",
        },
        std::iter::empty(),
    )?;
    let written = facebatch::samples::write(&args.out)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({ "out": args.out, "files": written.len() })
        );
    } else {
        println!(
            "{} files -> {} (faces/, photos/, labels.csv, nightly.toml, README.md)",
            written.len(),
            args.out.display()
        );
    }
    Ok(EXIT_OK)
}
