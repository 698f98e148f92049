//! `lr`: parse the command line, run it, turn the result into an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use lr_console::cli::Cli;
use lr_console::exit::Exit;

fn main() -> ExitCode {
    // One TLS provider for the whole process, before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return Exit::Success.into();
        }
        Err(e) => {
            let _ = e.print();
            return Exit::Usage.into();
        }
    };
    match lr_console::app::main(cli) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            failure.print();
            failure.exit.into()
        }
    }
}
