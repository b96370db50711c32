//! `facebatch report`: the offline HTML review of a classify output, and `--import`, which
//! takes the corrections saved from its page back into the report folder.

use std::path::PathBuf;

use anyhow::Context;

use clap::Args;

use super::{EXIT_OK, GlobalArgs};

/// The most faces a gallery shows unless `--limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 10_000;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A classify output (.parquet), a dataset folder, or an `eval --predictions` file.
    #[arg(required_unless_present = "import")]
    pub input: Option<PathBuf>,
    /// The report folder (index.html and its files; created). With --import: the report
    /// the corrections belong to.
    #[arg(long)]
    pub out: PathBuf,
    /// The most faces shown per gallery (per label, no face, errors, ...): a gallery with
    /// no more shows every face; a larger one its least confident half and a random
    /// sample of the rest, and the report says how many it left out.
    #[arg(long, default_value_t = DEFAULT_LIMIT, value_parser = parse_limit)]
    pub limit: usize,
    /// Seed of the random sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Instead of building a report: take a corrections.csv saved from the report's page
    /// (wherever the browser saved it) into the report folder --out, as
    /// OUT/corrections.csv (absolute crop paths, for `train`) and OUT/corrections.js (the
    /// page shows them again).
    #[arg(long, value_name = "CSV", conflicts_with_all = ["input", "limit", "seed"])]
    pub import: Option<PathBuf>,
}

/// `--limit`: a whole number of faces, at least 1.
fn parse_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a number of faces (1 or more)")),
    }
}

/// `facebatch report`.
pub fn run(args: &ReportArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    if let Some(csv) = &args.import {
        return import(csv, args, g);
    }
    let input = args
        .input
        .as_ref()
        .expect("clap requires INPUT without --import");
    // An output on an object store is read from a local copy, for this command only.
    let copy = tempfile::tempdir().context("making a folder for the output's copy")?;
    let input = &match input.to_str().and_then(facebatch::remote::ObjectUrl::parse) {
        Some(url) => facebatch::remote::fetch_output(&url?, copy.path())?,
        None => input.clone(),
    };
    facebatch::fsutil::check_out_is_safe(
        &facebatch::fsutil::OutCheck {
            flag: "--out",
            path: &args.out,
            kind: facebatch::fsutil::OutKind::Folder,
            is_own: &is_report_folder,
            own: "an earlier report (index.html and data.js)",
        },
        [input.as_path()],
    )?;
    let summary = facebatch::report::html::build(&facebatch::report::html::ReportSettings {
        input: input.clone(),
        out: args.out.clone(),
        limit: args.limit,
        seed: args.seed,
    })?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "rows": summary.rows, "shown": summary.shown,
                "missing": summary.missing, "left_out": summary.left_out,
                "limit": summary.limit, "index": summary.index,
            })
        );
        return Ok(EXIT_OK);
    }
    println!(
        "{} rows, {} faces shown{}{} -> {}",
        summary.rows,
        summary.shown,
        match summary.missing {
            0 => String::new(),
            n => format!(" ({n} whose photo is missing or changed since the run)"),
        },
        match summary.left_out {
            0 => String::new(),
            n => format!(
                "; {n} rows left out (galleries show at most --limit {} faces; a larger --limit shows them)",
                summary.limit
            ),
        },
        summary.index.display()
    );
    Ok(EXIT_OK)
}

/// `report --import CSV --out DIR`.
fn import(csv: &std::path::Path, args: &ReportArgs, g: &GlobalArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        is_report_folder(&args.out),
        "--out {}: not a facebatch report folder (index.html and data.js); --import takes \
         corrections into the report they were made on",
        args.out.display()
    );
    anyhow::ensure!(csv.is_file(), "--import {}: no such file", csv.display());
    let done = facebatch::report::html::corrections::import(csv, &args.out)?;
    if g.json {
        println!("{}", serde_json::to_string(&done)?);
        return Ok(EXIT_OK);
    }
    println!(
        "{} corrected, {} confirmed, {} not a face -> {}\n  train on them: facebatch train \
         DATA {} --init MODEL --out NEW",
        done.corrected,
        done.confirmed,
        done.not_a_face,
        done.csv.display(),
        done.csv.display()
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
