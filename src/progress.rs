//! Progress of a long command (classify, train, eval): a bar on a terminal; elsewhere (cron,
//! Kubernetes, Slurm) a log record every N seconds with what is done, the rate and the ETA;
//! or nothing.
//!
//! Bars are drawn through one [`indicatif::MultiProgress`], and the binary's log writer
//! ([`suspend_bars`]) clears them for each log line and redraws them after, so log lines and
//! bars share the terminal without overwriting each other.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// How a command reports its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    #[default]
    Off,
    /// A bar on stderr (a terminal).
    Bar,
    /// A `progress` log record at most every `every` (no terminal).
    Log { every: Duration },
}

fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// Runs `f` (a write to stderr) with every progress bar cleared, then redraws them.
pub fn suspend_bars<R>(f: impl FnOnce() -> R) -> R {
    bars().suspend(f)
}

/// The progress of one command, counted in `unit`s. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    log: Option<Arc<Ticker>>,
}

struct Ticker {
    every: Duration,
    unit: &'static str,
    last: Mutex<Instant>,
}

impl Progress {
    pub fn new(mode: ProgressMode, len: u64, unit: &'static str) -> Progress {
        match mode {
            ProgressMode::Off => Progress {
                bar: ProgressBar::hidden(),
                log: None,
            },
            ProgressMode::Bar => {
                let bar = bars().add(ProgressBar::new(len));
                bar.set_style(
                    ProgressStyle::with_template(&format!(
                        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} {unit} ({{rate}}, eta {{eta}}) {{msg}}"
                    ))
                    .map(|style| {
                        // indicatif's {per_sec} prints 4 decimals ("127.3126/s").
                        style.with_key(
                            "rate",
                            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = write!(w, "{}/s", for_humans(state.per_sec()));
                            },
                        )
                    })
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                Progress { bar, log: None }
            }
            ProgressMode::Log { every } => {
                let bar = ProgressBar::hidden();
                bar.set_length(len);
                Progress {
                    bar,
                    log: Some(Arc::new(Ticker {
                        every,
                        unit,
                        last: Mutex::new(Instant::now()),
                    })),
                }
            }
        }
    }

    /// Whether anyone sees the progress (worth counting the work ahead for an ETA).
    pub fn is_shown(&self) -> bool {
        !self.bar.is_hidden() || self.log.is_some()
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.tick();
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    pub fn set_length(&self, len: u64) {
        self.bar.set_length(len);
    }

    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// A line printed above the bar (nothing when no bar is drawn: the log has it).
    pub fn println(&self, line: String) {
        if !self.bar.is_hidden() {
            self.bar.println(line);
        }
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }

    fn tick(&self) {
        let Some(t) = &self.log else { return };
        let now = Instant::now();
        {
            let Ok(mut last) = t.last.lock() else { return };
            if now.duration_since(*last) < t.every {
                return;
            }
            *last = now;
        }
        let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
        // Full precision: text logs round what they show (for_humans), JSON logs keep it.
        let rate = self.bar.per_sec();
        let eta =
            (total > done && rate > 0.0).then(|| ((total - done) as f64 / rate).round() as u64);
        tracing::info!(
            done,
            total,
            unit = t.unit,
            rate_per_s = rate,
            eta_s = eta,
            elapsed_s = self.bar.elapsed().as_secs(),
            "progress"
        );
    }
}

/// A number as people read it: 4 significant digits, at most 4 decimals, no exponent
/// (`0.6720301811124237` -> `0.6720`, `127.3126` -> `127.3`, `12345.6` -> `12346`).
pub fn for_humans(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(0, 4) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_humans() {
        assert_eq!(for_humans(0.6720301811124237), "0.6720");
        assert_eq!(for_humans(0.655520656), "0.6555");
        assert_eq!(for_humans(127.3126), "127.3");
        assert_eq!(for_humans(12345.6), "12346");
        assert_eq!(for_humans(0.00012345), "0.0001");
        assert_eq!(for_humans(-2.5), "-2.500");
        assert_eq!(for_humans(0.0), "0");
    }

    #[test]
    fn counts_without_a_terminal() {
        let p = Progress::new(
            ProgressMode::Log {
                every: Duration::ZERO,
            },
            10,
            "images",
        );
        assert!(p.is_shown());
        p.inc(3);
        p.inc(2);
        assert_eq!(p.bar.position(), 5);
        assert!(!Progress::new(ProgressMode::Off, 0, "x").is_shown());
    }
}
