//! The scale-out recipes with this binary: `--shard K/N`, the Ray driver on a real two-node
//! local Ray cluster (one task killed mid-run and retried), the Slurm array script and the
//! Kubernetes Indexed Job's command, and the cron and systemd units. They run in Python
//! (pipelines/tests/test_scale_out.py) through scripts/scale-out-test.sh, which installs
//! pinned Ray, pyarrow and pytest from PyPI into .cache/ray-venv on first use.

mod common;

use std::process::Command;

#[test]
fn shards_ray_kubernetes_and_slurm_give_exactly_the_full_run() {
    let out = Command::new("bash")
        .arg(common::repo().join("scripts/scale-out-test.sh"))
        .arg(env!("CARGO_BIN_EXE_facebatch"))
        .current_dir(common::repo())
        .env_remove("FACEBATCH_ORT_LIB")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("FACEBATCH_MODEL")
        .output()
        .expect("bash runs scripts/scale-out-test.sh");
    let stdout = common::stdout(&out);
    let stderr = common::stderr(&out);
    eprintln!(
        "--- scale-out-test.sh exited {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status.code()
    );
    assert!(
        out.status.success(),
        "scripts/scale-out-test.sh failed (exit {:?}); its output is above",
        out.status.code()
    );
    // pytest's closing line, e.g. "5 passed in 92.31s": nothing skipped, failed or errored.
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default();
    assert!(
        !summary.is_empty()
            && !["skipped", "failed", "error", "deselected"]
                .iter()
                .any(|w| summary.contains(w)),
        "every scale-out test must run and pass: {summary:?}"
    );
}
