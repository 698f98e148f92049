//! The command-line surface of `lr` (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::render::Format;

mod admin;
mod log;

pub use admin::{
    AdminCommand, DeviceCommand, EnrolmentCommand, GroupCommand, GroupList, RoleArgs, SettingsArgs,
    SettingsCommand, Switch, TenantCommand, TokenCommand, UserCommand, parse_grant,
};
pub use log::{LogArgs, LogCommand};

const AFTER_HELP: &str = "\
Settings: flags override LR_API_URL, LR_TOKEN, LR_CA_CERT, LR_TENANT, LR_OUTPUT, LR_DOWNLOADS_DIR
and LR_INSECURE_HTTP, which override ~/.config/lr/config.toml (keys api_url, token, ca_cert,
tenant, output, downloads_dir, insecure_http; LR_CONFIG names another file). getfile saves files in
downloads_dir, by default ~/lr-downloads. An http:// API URL is refused (the token would travel
in clear) unless it names this machine (localhost, 127.0.0.0/8, ::1) and --insecure-http is given.

Exit codes:
  0  success
  1  the command failed on the device (failed, timed_out, rejected, cancelled), or
     `lr log verify` found the audit log broken
  2  usage: bad flags or settings, a mistake in the command line (nothing is sent),
     no such device/session (404), or a request the broker refuses as malformed
  3  refused: bad token or role (401/403), device busy or offline (409), session ended (410)
  4  broker unreachable (connect, TLS, timeout), unavailable (5xx), or an off-contract answer";

/// Live response console: investigate a device in a remote, audited session.
#[derive(Debug, Parser)]
#[command(name = "lr", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Output format: one JSON document, or tables for people [env: LR_OUTPUT] [default: table]
    #[arg(long, short = 'o', global = true, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,

    /// Broker API base URL, e.g. https://broker.example:7601, or several nodes' URLs separated
    /// by commas, tried in turn when one does not answer [env: LR_API_URL]
    #[arg(long, global = true, value_name = "URL[,URL...]")]
    pub api_url: Option<String>,

    /// API bearer token [env: LR_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Tenant to act in, for platform admins: sent as the LR-Tenant header on every request
    /// [env: LR_TENANT]
    #[arg(long, global = true, value_name = "TENANT")]
    pub tenant: Option<String>,

    /// PEM file of the CA to trust, instead of the system's trust store [env: LR_CA_CERT]
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,

    /// Folder where getfile saves files [env: LR_DOWNLOADS_DIR] [default: ~/lr-downloads]
    #[arg(long, global = true, value_name = "DIR")]
    pub downloads_dir: Option<PathBuf>,

    /// Allow an http:// API URL to a broker on this machine (localhost, 127.0.0.0/8, ::1); the
    /// token then travels without TLS. Other hosts need https:// [env: LR_INSECURE_HTTP=1]
    #[arg(long, global = true)]
    pub insecure_http: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the devices you can reach, with their online state
    Devices,
    /// List the live sessions of your tenant
    Sessions,
    /// Open a session, run commands in it, close it
    #[command(subcommand)]
    Session(SessionCommand),
    /// Run one command on a device in a short session: open, run, print, close (always)
    #[command(after_help = "Example: lr exec web-07 -- dir /tmp --output json")]
    Exec {
        /// Device id, as `lr devices` shows it
        device: String,
        #[command(flatten)]
        wait: WaitArgs,
        /// The command line, after `--` (a trailing `--output json|table` is lr's own flag)
        #[arg(last = true, required = true, value_name = "COMMAND LINE")]
        command_line: Vec<String>,
    },
    /// Interactive console on a device (exit, quit or Ctrl+D end it and close the session)
    Connect {
        /// Device id, as `lr devices` shows it
        device: String,
    },
    /// Whether each API node is ready to serve, and why not (no token needed; exit 4 when not)
    Health,
    /// Who the token belongs to: its user, tenant and roles
    Whoami,
    /// The tenant's library of files for putfile and run: list, upload, delete
    #[command(subcommand)]
    Library(LibraryCommand),
    /// Transfers started by getfile, download and putfile: show, download again, cancel
    #[command(subcommand)]
    Transfer(TransferCommand),
    /// Administration: tenants, settings, users and their roles, API tokens, device groups,
    /// enrolment tokens, enrolled devices
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The tenant's audit log: who did what, when, on which device, oldest first; a command's
    /// output; the verification of the log's hash chain
    #[command(args_conflicts_with_subcommands = true, after_help = LOG_HELP)]
    Log {
        #[command(subcommand)]
        command: Option<LogCommand>,
        #[command(flatten)]
        args: LogArgs,
    },
}

const LOG_HELP: &str = "\
Table columns: seq, at, kind, user, device, session, and a summary of the entry's details. JSON:
the entries as the broker sends them (with --follow, one entry per line). Every filter given
must match.

Examples:
  lr log --device web-07 --since 2h
  lr log --kind refused --since 7d --output json
  lr log --session 0191c1e2-... --follow
  lr log output 4711
  lr log verify";

#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// List the library's files
    List,
    /// Upload a file to the library (streamed; the broker's limit applies, 250 MB by default)
    #[command(
        after_help = "Example: lr library upload ./collect.sh --description \"collect logs\" --parameters-description \"-days N\""
    )]
    Upload {
        /// The file on this machine
        file: PathBuf,
        /// Name in the library [default: the file's name]
        #[arg(long)]
        name: Option<String>,
        /// What the file is for
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The parameters a script takes, for analysts who run it
        #[arg(long, value_name = "TEXT")]
        parameters_description: Option<String>,
        /// Replace a file of the same name
        #[arg(long)]
        overwrite: bool,
    },
    /// Delete a file from the library
    Delete {
        /// Name in the library
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TransferCommand {
    /// List your transfers in a session
    List {
        /// Session id
        session_id: String,
    },
    /// Show a transfer: state, progress, size, SHA-256
    Show {
        /// Transfer id, as the command that started it printed it
        transfer_id: String,
    },
    /// Wait for a getfile transfer and save it in the downloads folder (resumes a partial file)
    Download {
        /// Transfer id
        transfer_id: String,
    },
    /// Cancel a running transfer and delete its data on the brokers
    Cancel {
        /// Transfer id
        transfer_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Open a session to a device and print its id
    Open {
        /// Device id, as `lr devices` shows it
        device: String,
    },
    /// Run a command in an open session, wait for it and print its output
    #[command(after_help = "Example: lr session run 0191c1e2-... -- processes")]
    Run {
        /// Session id, as `lr session open` printed it
        session_id: String,
        #[command(flatten)]
        wait: WaitArgs,
        /// The command line, after `--` (a trailing `--output json|table` is lr's own flag)
        #[arg(last = true, required = true, value_name = "COMMAND LINE")]
        command_line: Vec<String>,
    },
    /// Show a session: device, user, node, working directory
    Show {
        /// Session id
        session_id: String,
    },
    /// List the commands of a session and their states
    Commands {
        /// Session id
        session_id: String,
    },
    /// Cancel a running command of a session
    Cancel {
        /// Session id
        session_id: String,
        /// Command id
        command_id: String,
    },
    /// Close a session
    Close {
        /// Session id
        session_id: String,
    },
}

#[derive(Debug, Clone, Copy, clap::Args)]
pub struct WaitArgs {
    /// Give up waiting for the command after this many seconds (then cancel it)
    #[arg(long, value_name = "SECONDS", default_value_t = 2100, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub wait: u64,
}

impl Command {
    /// Whether the command calls endpoints that need a token.
    pub fn needs_token(&self) -> bool {
        !matches!(self, Command::Health)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_takes_the_rest_after_double_dash() {
        let cli = Cli::try_parse_from([
            "lr", "--output", "json", "exec", "web-07", "--", "dir", "/tmp", "-x",
        ])
        .unwrap();
        assert_eq!(cli.output, Some(Format::Json));
        let Command::Exec {
            device,
            command_line,
            wait,
        } = cli.command
        else {
            panic!("not exec")
        };
        assert_eq!(device, "web-07");
        assert_eq!(command_line, ["dir", "/tmp", "-x"]);
        assert_eq!(wait.wait, 2100);
    }

    #[test]
    fn global_flags_after_the_subcommand() {
        let cli =
            Cli::try_parse_from(["lr", "devices", "--output", "json", "--api-url", "x"]).unwrap();
        assert_eq!(cli.output, Some(Format::Json));
        assert_eq!(cli.api_url.as_deref(), Some("x"));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["lr"][..],
            &["lr", "exec", "web-07"],
            &["lr", "exec", "web-07", "dir"],
            &["lr", "frobnicate"],
            &["lr", "devices", "--output", "yaml"],
            &["lr", "session", "run", "s1", "--wait", "0", "--", "dir"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
