//! Progress of long work: a bar with counts, rate and ETA on a terminal; on a log (stderr not a
//! terminal) one plain line every few seconds and one at the end, so background runs and CI
//! show progress too.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Seconds between plain progress lines when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    what: String,
    unit: String,
    total: u64,
    /// Units already done when this run started (a resumed run), left out of the rate.
    start_done: u64,
    bar: Option<ProgressBar>,
    started: Instant,
    state: Mutex<LogState>,
}

struct LogState {
    done: u64,
    last_line: Instant,
    message: String,
}

fn eta(elapsed: Duration, done: u64, total: u64) -> String {
    if done == 0 || done >= total {
        return "-".into();
    }
    let secs = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    format_secs(secs)
}

/// 75 -> "1m15s".
pub fn format_secs(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    /// `what` (e.g. "synth vkitti2") over `total` `unit`s (e.g. "images"), starting at `done`.
    pub fn new(what: &str, unit: &str, total: u64, done: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(&format!(
                "{what} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}} {{msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_position(done);
            bar
        });
        let now = Instant::now();
        Self {
            what: what.into(),
            unit: unit.into(),
            total,
            start_done: done,
            bar,
            started: now,
            state: Mutex::new(LogState {
                done,
                last_line: now,
                message: String::new(),
            }),
        }
    }

    /// Adds `n` finished units (thread-safe).
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.done += n;
        if st.last_line.elapsed() >= LOG_EVERY {
            st.last_line = Instant::now();
            eprintln!("{}", self.line(st.done, &st.message));
        }
    }

    /// A short status shown after the counts (e.g. running losses).
    pub fn set_message(&self, msg: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
            return;
        }
        self.state.lock().unwrap_or_else(|e| e.into_inner()).message = msg;
    }

    fn line(&self, done: u64, msg: &str) -> String {
        let elapsed = self.started.elapsed();
        format!(
            "{}: {done}/{} {} ({:.0}%), {} elapsed, ETA {}{}{}",
            self.what,
            self.total,
            self.unit,
            100.0 * done as f64 / self.total.max(1) as f64,
            format_secs(elapsed.as_secs_f64()),
            eta(
                elapsed,
                done.saturating_sub(self.start_done),
                self.total.saturating_sub(self.start_done)
            ),
            if msg.is_empty() { "" } else { ", " },
            msg
        )
    }

    /// Ends the bar (or prints the last line).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
            return;
        }
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("{}", self.line(st.done, &st.message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_and_durations_read_well() {
        assert_eq!(format_secs(75.0), "1m15s");
        assert_eq!(format_secs(7260.0), "2h01m");
        assert_eq!(eta(Duration::from_secs(10), 1, 11), "1m40s");
        let p = Progress::new("train", "steps", 10, 0);
        assert!(p.line(5, "g 1.0").contains("train: 5/10 steps (50%)"));
        // A resumed run's rate counts only its own steps.
        assert_eq!(eta(Duration::from_secs(10), 10 - 8, 20 - 8), "50s");
    }
}
