//! The analyst console `lr`: one-shot commands and `exec` for scripts, and a live response REPL,
//! all on the broker's analyst API (`/api/v1`).
#![forbid(unsafe_code)]

/// `eprintln!` that never panics: the terminal may be gone (SIGHUP) while the console still has a
/// session to close.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod admin;
pub mod api;
pub mod app;
pub mod cli;
pub mod cmdline;
pub mod complete;
pub mod config;
pub mod doc;
pub mod download;
pub mod exit;
pub mod health;
pub mod help;
pub mod jobs;
pub mod library;
pub mod local;
pub mod log;
pub mod progress;
pub mod render;
pub mod repl;
pub mod run;
pub mod savename;
pub mod signals;
pub mod sink;
pub mod transfer;
