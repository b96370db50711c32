//! Runs in the background: started, waited on until they have done something, then
//! signalled or killed.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::beside;

/// Starts `cmd` with its output piped (kept for `wait_with_output`).
pub fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The finished part files of a run into `out` so far.
pub fn part_count(out: &Path) -> usize {
    std::fs::read_dir(beside(out, ".parts"))
        .map(|rd| {
            rd.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("part-")
            })
            .count()
        })
        .unwrap_or(0)
}

/// Waits (at most two minutes) until `done`, asserting that `child` is still running.
pub fn wait_while_running(what: &str, child: &mut Child, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {what}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no progress towards {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits while `child` runs until the run into `out` has finished `n` parts.
pub fn wait_for_parts(out: &Path, n: usize, child: &mut Child) {
    wait_while_running(&format!("{n} finished part(s)"), child, || {
        part_count(out) >= n
    });
}

/// Waits for a run stopped by a signal, asserting that it exits 130 (interrupted); `what`
/// names the case in the message.
pub fn wait_interrupted(child: Child, what: &str) {
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{what}: interrupted exit code: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// SIGKILL: no chance to clean up. Returns once the process is gone.
pub fn kill_9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends `signal` (`kill`'s spelling: `-INT`, `-TERM`, ...) to `child`.
pub fn send_signal(child: &Child, signal: &str) {
    assert!(
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success(),
        "kill {signal}"
    );
}
