//! `facebatch report`: the offline HTML review of a classify output.

use std::path::PathBuf;

use clap::Args;

use super::{EXIT_OK, GlobalArgs};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A classify output (.parquet), a dataset folder, or an `eval --predictions` file.
    pub input: PathBuf,
    /// The report folder (index.html and its files; created).
    #[arg(long)]
    pub out: PathBuf,
    /// The least confident faces shown per gallery (per label, near the threshold, ...).
    #[arg(long, default_value_t = 200)]
    pub least: usize,
    /// Other faces shown per gallery, sampled at random.
    #[arg(long, default_value_t = 100)]
    pub random: usize,
    /// Seed of the random sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `facebatch report`.
pub fn run(args: &ReportArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    facebatch::fsutil::check_out_is_safe(
        &facebatch::fsutil::OutCheck {
            flag: "--out",
            path: &args.out,
            kind: facebatch::fsutil::OutKind::Folder,
            is_own: &is_report_folder,
            own: "an earlier report (index.html and data.js)",
        },
        [args.input.as_path()],
    )?;
    let summary = facebatch::report::html::build(&facebatch::report::html::ReportSettings {
        input: args.input.clone(),
        out: args.out.clone(),
        least: args.least,
        random: args.random,
        seed: args.seed,
    })?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "rows": summary.rows, "shown": summary.shown,
                "missing": summary.missing, "index": summary.index,
            })
        );
        return Ok(EXIT_OK);
    }
    println!(
        "{} rows, {} faces shown{} -> {}",
        summary.rows,
        summary.shown,
        match summary.missing {
            0 => String::new(),
            n => format!(" ({n} whose photo is missing or changed since the run)"),
        },
        summary.index.display()
    );
    Ok(EXIT_OK)
}

/// True when `dir` holds a report this command wrote: its `index.html` and the `data.js`
/// that defines `FACEBATCH_REPORT`.
fn is_report_folder(dir: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 64];
    let n = std::fs::File::open(dir.join("data.js"))
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    dir.join("index.html").is_file() && head[..n].windows(16).any(|w| w == b"FACEBATCH_REPORT")
}
