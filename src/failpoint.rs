//! Fault injection for the crash-consistency tests: every write, rename and remove step of
//! an output calls [`hit`] with its name, and `FACEBATCH_FAILPOINT=NAME[@N]=ACTION` makes
//! the N-th hit (default the first) of that step fail:
//!
//! - `error`: the step returns an I/O error, as a full disk would;
//! - `crash`: the process aborts on the spot, as `kill -9` or a power cut would.
//!
//! Unset (always, outside tests), a hit costs one read of a process-wide cell. The names
//! are listed in docs/reliability.md.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

#[derive(Debug)]
struct Spec {
    name: String,
    nth: u64,
    crash: bool,
    hits: AtomicU64,
}

fn spec() -> Option<&'static Spec> {
    static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let raw = std::env::var("FACEBATCH_FAILPOINT").ok()?;
        let (point, action) = raw.split_once('=')?;
        let (name, nth) = match point.split_once('@') {
            Some((n, k)) => (n, k.parse().ok()?),
            None => (point, 1),
        };
        Some(Spec {
            name: name.to_string(),
            nth,
            crash: action == "crash",
            hits: AtomicU64::new(0),
        })
    })
    .as_ref()
}

/// Marks the step `name`; fails it when `FACEBATCH_FAILPOINT` says so.
pub fn hit(name: &str) -> Result<()> {
    let Some(s) = spec() else {
        return Ok(());
    };
    if s.name != name || s.hits.fetch_add(1, Ordering::SeqCst) + 1 != s.nth {
        return Ok(());
    }
    if s.crash {
        // SIGKILL to ourselves: no destructor, flush or clean-up runs, as with `kill -9`.
        #[cfg(unix)]
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
    Err(Error::io(
        format!("injected failure at {name}"),
        std::io::Error::other("FACEBATCH_FAILPOINT"),
    ))
}
