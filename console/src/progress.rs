//! A one-line progress bar on stderr: percent, bytes, rate and time left.
//!
//! Written here rather than with indicatif: indicatif depends on a crates.io crate named
//! `console`, and a second package of that name makes `cargo -p console` ambiguous for the whole
//! workspace. The line is only drawn when stderr is a terminal; in a pipe nothing is drawn.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraws at most this often.
const REDRAW: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 24;

#[derive(Debug)]
pub struct Bar {
    drawn: bool,
    enabled: bool,
    last_draw: Option<Instant>,
    /// Start of the current phase, and the bytes done at that moment, for the rate.
    since: Instant,
    since_bytes: u64,
    label: String,
}

impl Bar {
    /// A bar drawn on stderr if stderr is a terminal.
    pub fn new() -> Bar {
        Bar {
            drawn: false,
            enabled: std::io::stderr().is_terminal(),
            last_draw: None,
            since: Instant::now(),
            since_bytes: 0,
            label: String::new(),
        }
    }

    /// Shows `done` of `total` bytes under `label`. A new label starts a new rate measurement.
    pub fn update(&mut self, label: &str, done: u64, total: u64) {
        if label != self.label {
            self.label = label.to_owned();
            self.since = Instant::now();
            self.since_bytes = done;
            self.last_draw = None;
        }
        if !self.enabled || self.last_draw.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let elapsed = self.since.elapsed().as_secs_f64();
        let rate = if elapsed > 0.5 {
            Some((done.saturating_sub(self.since_bytes)) as f64 / elapsed)
        } else {
            None
        };
        let width = crossterm::terminal::size()
            .map(|(w, _)| usize::from(w))
            .unwrap_or(80);
        let text = line(label, done, total, rate, width);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{text}\x1b[K").and_then(|()| err.flush());
        self.drawn = true;
    }

    /// Removes the line, so what follows starts on a clean line.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K").and_then(|()| err.flush());
            self.drawn = false;
        }
        self.last_draw = None;
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

/// ` 45% [==========>           ] 12.3 MiB / 27.0 MiB  3.2 MiB/s  ETA 5s  label`, cut to `width`.
pub fn line(label: &str, done: u64, total: u64, rate: Option<f64>, width: usize) -> String {
    let fraction = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    let mut bar = "=".repeat(filled);
    if filled < BAR_WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    let mut text = format!(
        "{:>3}% [{bar}] {} / {}",
        (fraction * 100.0).floor() as u64,
        bytes(done),
        bytes(total)
    );
    if let Some(rate) = rate {
        text.push_str(&format!("  {}/s", bytes(rate as u64)));
        if rate >= 1.0 && done < total {
            text.push_str(&format!(
                "  ETA {}",
                duration(((total - done) as f64 / rate).ceil() as u64)
            ));
        }
    }
    if !label.is_empty() {
        text.push_str("  ");
        text.push_str(label);
    }
    if text.chars().count() >= width {
        text = text.chars().take(width.saturating_sub(1)).collect();
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
    use super::*;

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
    fn a_line_has_percent_bytes_rate_and_eta() {
        let text = line(
            "from the device",
            512 * 1024,
            1024 * 1024,
            Some(65536.0),
            200,
        );
        assert_eq!(
            text,
            " 50% [============>           ] 512.0 KiB / 1.0 MiB  64.0 KiB/s  ETA 8s  from the device"
        );
        let done = line("", 10, 10, None, 200);
        assert_eq!(done, "100% [========================] 10 B / 10 B");
        assert_eq!(line("", 0, 0, None, 200).chars().next(), Some('1'));
        assert!(line("label", 1, 2, Some(1.0), 20).chars().count() < 20);
    }
}
