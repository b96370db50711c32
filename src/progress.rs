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
                        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} {unit} ({{rate}}, eta {{eta_when_known}}) {{msg}}"
                    ))
                    .map(|style| {
                        // indicatif's {per_sec} prints 4 decimals ("127.3126/s").
                        style
                            .with_key(
                                "rate",
                                |state: &indicatif::ProgressState,
                                 w: &mut dyn std::fmt::Write| {
                                    let _ = write!(w, "{}/s", for_humans(state.per_sec()));
                                },
                            )
                            // indicatif's {eta} guesses from the first item ("eta 7m" in a
                            // 6 s run): "..." until the guess means something.
                            .with_key(
                                "eta_when_known",
                                |state: &indicatif::ProgressState,
                                 w: &mut dyn std::fmt::Write| {
                                    let eta = eta_seconds(
                                        state.pos(),
                                        state.len().unwrap_or(0),
                                        state.per_sec(),
                                        state.elapsed(),
                                    );
                                    let _ = match eta {
                                        Some(s) => write!(
                                            w,
                                            "{:#}",
                                            indicatif::HumanDuration(Duration::from_secs(s))
                                        ),
                                        None => write!(w, "..."),
                                    };
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
        let eta = eta_seconds(done, total, rate, self.bar.elapsed());
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

/// Seconds left at `rate`, once the guess means something: after at least 3 s and 2% of
/// the work (or 50 items), so that the first, warm-up items (model loading, the first
/// detector pass) do not make it up. `None` before, when done or when nothing moves.
pub fn eta_seconds(done: u64, total: u64, rate: f64, elapsed: Duration) -> Option<u64> {
    let enough = elapsed >= Duration::from_secs(3) && (done * 50 >= total || done >= 50);
    (enough && total > done && rate > 0.0).then(|| ((total - done) as f64 / rate).round() as u64)
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

    /// Issue 30: "eta 7m" was shown for a 6 s run, guessed from the first item.
    #[test]
    fn no_eta_before_it_means_something() {
        let s = Duration::from_secs;
        assert_eq!(eta_seconds(1, 1000, 0.5, s(2)), None, "too early");
        assert_eq!(eta_seconds(5, 1000, 2.0, s(10)), None, "too little done");
        assert_eq!(eta_seconds(50, 1000, 10.0, s(5)), Some(95));
        assert_eq!(eta_seconds(30, 100, 10.0, s(3)), Some(7));
        assert_eq!(eta_seconds(100, 100, 10.0, s(30)), None, "done");
        assert_eq!(eta_seconds(60, 100, 0.0, s(30)), None, "stalled");
    }

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
