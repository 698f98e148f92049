//! `lr-agent`: the endpoint agent binary. `lr-agent [flags]` reads the config, then runs until
//! SIGTERM or ctrl-c; `lr-agent enroll ...` enrols the device (see [`agent::enrol`]).

use std::path::PathBuf;
use std::process::ExitCode;

use agent::enrol::{EnrolError, EnrolOptions};
use agent::{Config, Overrides, TlsOverrides, TracingOverrides};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// sysexits.h EX_CONFIG-style code for "the configuration is wrong".
const EXIT_CONFIG: u8 = 64;
/// sysexits.h EX_UNAVAILABLE: enroll could not reach the broker; trying again later may work.
const EXIT_UNREACHABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "lr-agent",
    version,
    about = "Live response endpoint agent",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enrols this device: makes its key, gets its certificate from a broker with an enrolment
    /// token, and writes the agent's config.
    #[command(
        after_help = "Exit codes: 0 enrolled; 64 bad arguments (nothing was sent); 69 the \
broker could not be reached (nothing was written; try again); 1 the enrolment was refused or failed."
    )]
    Enroll(EnrollArgs),
}

/// Running the agent (no subcommand).
#[derive(Debug, Args)]
struct RunArgs {
    /// TOML config file; flags and LR_* variables override its values.
    #[arg(long, env = "LR_AGENT_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "LR_DEVICE_ID")]
    device_id: Option<String>,
    #[arg(long, env = "LR_TENANT")]
    tenant: Option<String>,
    /// host:port of a broker's agent endpoint; repeat, or comma-separate in LR_BROKERS.
    #[arg(long = "broker", env = "LR_BROKERS", value_delimiter = ',')]
    brokers: Vec<String>,
    /// The lease authority's public key (ed25519:<hex>) whose grants are obeyed; repeat during a
    /// key rotation, or comma-separate in LR_AUTHORITY_KEYS.
    #[arg(
        long = "authority-key",
        env = "LR_AUTHORITY_KEYS",
        value_delimiter = ','
    )]
    authority_keys: Vec<String>,
    #[arg(long, env = "LR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[arg(long, env = "LR_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[arg(long, env = "LR_CERT")]
    cert: Option<PathBuf>,
    #[arg(long, env = "LR_KEY")]
    key: Option<PathBuf>,
    #[arg(long, env = "LR_SERVER_NAME")]
    server_name: Option<String>,
    /// Log as JSON lines instead of text (the same as `--log-format json`).
    #[arg(long)]
    log_json: bool,
    /// How log lines are written to stderr: `text`, or `json` (one object a line).
    #[arg(long, env = "LR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Export the spans of the commands this agent runs to this OTLP/gRPC collector
    /// (`http://host:port`); the config's `[tracing] otlp_endpoint`.
    #[arg(long, env = "LR_TRACING__OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// The form of log lines; the broker takes the same flag and variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct EnrollArgs {
    /// host:port of a broker's agent endpoint.
    #[arg(long, value_name = "HOST:PORT")]
    broker: String,
    /// The enrolment token `lr admin enrolment create` printed; best given through the
    /// environment, so it does not show in the process list.
    #[arg(long, env = "LR_ENROL_TOKEN", hide_env_values = true)]
    token: String,
    /// SHA-256 of the cluster CA, as `lr admin enrolment create` printed it (64 hex digits; a
    /// sha256: prefix and ':' between bytes are fine).
    #[arg(long, value_name = "SHA256")]
    ca_fingerprint: String,
    /// This device's id [default: the hostname, when it is a valid id].
    #[arg(long)]
    device_id: Option<String>,
    /// The tenant this device expects to join [default: the token's].
    #[arg(long)]
    tenant: Option<String>,
    /// The agent's state directory; the key and certificates go to its tls/.
    #[arg(long, default_value = agent::enrol::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Where to write the agent's config.
    #[arg(long, default_value = agent::enrol::DEFAULT_CONFIG)]
    config: PathBuf,
    /// The name the broker's certificate carries [default: the host of --broker].
    #[arg(long)]
    server_name: Option<String>,
    /// A tag for this device, written into the config; repeat for more.
    #[arg(long = "tag")]
    tags: Vec<String>,
}

impl EnrollArgs {
    fn options(self) -> Result<EnrolOptions, EnrolError> {
        let device_id = match self.device_id {
            Some(id) => id,
            None => agent::enrol::hostname_device_id()?,
        };
        Ok(EnrolOptions {
            broker: self.broker,
            token: self.token,
            ca_fingerprint: self.ca_fingerprint,
            device_id,
            tenant: self.tenant,
            state_dir: self.state_dir,
            config: self.config,
            server_name: self.server_name,
            tags: self.tags,
        })
    }
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            device_id: self.device_id.clone(),
            tenant: self.tenant.clone(),
            brokers: (!self.brokers.is_empty()).then(|| self.brokers.clone()),
            authority_keys: (!self.authority_keys.is_empty()).then(|| self.authority_keys.clone()),
            state_dir: self.state_dir.clone(),
            tls: TlsOverrides {
                ca_cert: self.ca_cert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
                server_name: self.server_name.clone(),
            },
            tracing: TracingOverrides {
                otlp_endpoint: self.otlp_endpoint.clone(),
            },
        }
    }
}

fn main() -> ExitCode {
    // One TLS provider for the whole process, installed before anything builds a TLS config.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lr-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Enroll(args)) => enroll(&runtime, args),
        None => run(&runtime, &cli.run),
    }
}

fn run(runtime: &tokio::runtime::Runtime, cli: &RunArgs) -> ExitCode {
    let config = match Config::load(cli.config.as_deref(), cli.overrides())
        .and_then(|c| agent::check(&c).map(|_| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lr-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let json = cli.log_json || cli.log_format == LogFormat::Json;
    // The exporter's gRPC channel lives on the runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        telemetry::init(json, log_filter(), agent::span_export(&config).as_ref())
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("lr-agent: bad config: tracing.otlp_endpoint: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = match runtime.block_on(agent::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lr-agent: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The last spans leave while the runtime still runs.
    telemetry.shutdown();
    code
}

fn enroll(runtime: &tokio::runtime::Runtime, args: EnrollArgs) -> ExitCode {
    let path = args.config.clone();
    match args
        .options()
        .and_then(|options| runtime.block_on(agent::enrol::enrol(&options)))
    {
        Ok(config) => {
            println!(
                "enrolled device {} of tenant {}; config written to {}; start the agent with `lr-agent --config {}`",
                config.device_id,
                config.tenant,
                path.display(),
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lr-agent enroll: {e}");
            ExitCode::from(match e {
                EnrolError::Invalid { .. } => EXIT_CONFIG,
                EnrolError::Unreachable { .. } => EXIT_UNREACHABLE,
                _ => 1,
            })
        }
    }
}

/// Which log lines are written: `LR_LOG`, else `RUST_LOG`, else info.
fn log_filter() -> EnvFilter {
    std::env::var("LR_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_flags_run_the_agent() {
        let cli =
            Cli::try_parse_from(["lr-agent", "--config", "/etc/lr-agent/agent.toml"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(
            cli.run.config.as_deref(),
            Some(std::path::Path::new("/etc/lr-agent/agent.toml"))
        );
    }

    #[test]
    fn enroll_is_a_subcommand_with_defaults() {
        let cli = Cli::try_parse_from([
            "lr-agent",
            "enroll",
            "--broker",
            "b1:7501",
            "--token",
            "lre_1_secret",
            "--ca-fingerprint",
            "sha256:ab",
            "--tag",
            "pci",
            "--tag",
            "db",
            "--device-id",
            "web-07",
        ])
        .unwrap();
        let Some(Command::Enroll(args)) = cli.command else {
            panic!("not enroll");
        };
        let o = args.options().unwrap();
        assert_eq!(
            (o.broker.as_str(), o.token.as_str()),
            ("b1:7501", "lre_1_secret")
        );
        assert_eq!(o.tags, ["pci", "db"]);
        assert_eq!(o.state_dir, PathBuf::from(agent::enrol::DEFAULT_STATE_DIR));
        assert_eq!(o.config, PathBuf::from(agent::enrol::DEFAULT_CONFIG));
        assert_eq!(o.device_id, "web-07");
        assert_eq!((o.tenant, o.server_name), (None, None));
    }

    #[test]
    fn run_flags_do_not_mix_with_enroll() {
        let e = Cli::try_parse_from([
            "lr-agent", "--config", "x.toml", "enroll", "--broker", "b1:7501",
        ])
        .unwrap_err();
        assert!(e.use_stderr());
    }
}
