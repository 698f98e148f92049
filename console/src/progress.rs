//! The progress bar of transfers and uploads, drawn by indicatif on stderr: percent, bytes, rate
//! and time left. Nothing is drawn when stderr is not a terminal (a pipe, a file, a script).

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

const BAR_WIDTH: usize = 24;
/// The rate (and so the time left) is shown once a phase has run this long: before, it is noise.
const RATE_AFTER: Duration = Duration::from_millis(500);

/// A bar for one operation, made of phases (`from the device`, `downloading`): each phase has its
/// own label and its own rate measurement.
#[derive(Debug)]
pub struct Bar {
    enabled: bool,
    /// The current phase's bar and label.
    shown: Option<(ProgressBar, String)>,
}

impl Bar {
    /// A bar drawn on stderr if stderr is a terminal.
    pub fn new() -> Bar {
        Bar {
            enabled: std::io::stderr().is_terminal(),
            shown: None,
        }
    }

    /// Shows `done` of `total` bytes under `label`. A new label starts a new rate measurement.
    pub fn update(&mut self, label: &str, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        if self.shown.as_ref().is_none_or(|(_, shown)| shown != label) {
            self.clear();
            let bar = phase(label, done, total, ProgressDrawTarget::stderr());
            self.shown = Some((bar, label.to_owned()));
        }
        if let Some((bar, _)) = &self.shown {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Removes the line, so what follows starts on a clean line.
    pub fn clear(&mut self) {
        if let Some((bar, _)) = self.shown.take() {
            bar.finish_and_clear();
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

/// A bar for one phase that starts at `done`, drawn on `target`:
/// ` 45% [==========>             ] 12.3 MiB / 27.0 MiB  3.2 MiB/s  ETA 5s  label`.
fn phase(label: &str, done: u64, total: u64, target: ProgressDrawTarget) -> ProgressBar {
    let template = if label.is_empty() {
        format!("{{percent}}% [{{bar:{BAR_WIDTH}}}] {{done}} / {{total}}{{rate}}")
    } else {
        // wide_msg: a long label is cut to the terminal's width rather than wrapped.
        format!("{{percent}}% [{{bar:{BAR_WIDTH}}}] {{done}} / {{total}}{{rate}}  {{wide_msg}}")
    };
    let style = ProgressStyle::with_template(&template)
        .expect("the progress template is valid")
        .progress_chars("=> ")
        .with_key(
            "percent",
            |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:>3}", percent(s.pos(), s.len().unwrap_or(0)));
            },
        )
        .with_key("done", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&bytes(s.pos()));
        })
        .with_key("total", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&bytes(s.len().unwrap_or(0)));
        })
        .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let rate = (s.elapsed() >= RATE_AFTER).then(|| s.per_sec());
            let _ = w.write_str(&rate_and_eta(rate, s.pos(), s.len().unwrap_or(0)));
        });
    // Hidden while it is moved to `done`, then the estimate starts afresh: otherwise the bytes of
    // earlier phases or sessions (a job watched again with `fg`) would count as this phase's rate.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
        .with_style(style)
        .with_message(label.to_owned());
    bar.set_position(done);
    bar.reset_eta();
    bar.set_draw_target(target);
    bar.tick();
    bar
}

/// Whole percent done, rounded down: 100 only when all is done.
fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (u128::from(done.min(total)) * 100 / u128::from(total)) as u64
    }
}

/// `  3.2 MiB/s  ETA 5s`: the rate when it is known, and the time left when there is some.
fn rate_and_eta(rate: Option<f64>, done: u64, total: u64) -> String {
    let mut text = String::new();
    if let Some(rate) = rate {
        let _ = write!(text, "  {}/s", bytes(rate as u64));
        if rate >= 1.0 && done < total {
            let left = ((total - done) as f64 / rate).ceil() as u64;
            let _ = write!(text, "  ETA {}", duration(left));
        }
    }
    text
}

/// `812 B`, `12.3 KiB`, `4.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `42s`, `3m05s`, `1h02m`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    use super::*;

    /// A terminal in memory: what is on the bar's line since it was last cleared.
    #[derive(Debug, Clone)]
    struct Screen {
        width: u16,
        line: Arc<Mutex<String>>,
    }

    impl Screen {
        fn new(width: u16) -> Screen {
            Screen {
                width,
                line: Arc::default(),
            }
        }

        fn shown(&self) -> String {
            self.line.lock().unwrap().trim_end().to_owned()
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            self.width
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            *self.line.lock().unwrap() = s.to_owned();
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            let mut line = self.line.lock().unwrap();
            match s.rsplit_once('\r') {
                Some((_, after)) => *line = after.to_owned(),
                None => line.push_str(s),
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.line.lock().unwrap().clear();
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn drawn(label: &str, done: u64, total: u64, width: u16) -> String {
        let screen = Screen::new(width);
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let _bar = phase(label, done, total, target);
        screen.shown()
    }

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(185), "3m05s");
        assert_eq!(duration(3720), "1h02m");
    }

    #[test]
    fn percent_is_rounded_down() {
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(999, 1000), 99);
        assert_eq!(percent(1000, 1000), 100);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
    }

    #[test]
    fn rate_and_time_left_once_the_rate_is_known() {
        assert_eq!(rate_and_eta(None, 1, 2), "");
        assert_eq!(
            rate_and_eta(Some(65536.0), 512 * 1024, 1024 * 1024),
            "  64.0 KiB/s  ETA 8s"
        );
        // Nothing left, or no progress: no time left to tell.
        assert_eq!(rate_and_eta(Some(10.0), 10, 10), "  10 B/s");
        assert_eq!(rate_and_eta(Some(0.0), 1, 10), "  0 B/s");
    }

    #[test]
    fn a_line_has_percent_bytes_and_label() {
        assert_eq!(
            drawn("from the device", 512 * 1024, 1024 * 1024, 200),
            " 50% [============>           ] 512.0 KiB / 1.0 MiB  from the device"
        );
        assert_eq!(
            drawn("", 10, 10, 200),
            "100% [========================] 10 B / 10 B"
        );
        assert!(drawn("", 0, 0, 200).starts_with("100%"));
        let label = "a label far longer than the terminal is wide";
        assert!(drawn(label, 1, 2, 60).chars().count() <= 60);
    }
}
