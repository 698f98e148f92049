//! `lr-agent`: the endpoint agent binary. Reads the config, then runs until SIGTERM or ctrl-c.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use agent::{Config, Overrides, TlsOverrides};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// sysexits.h EX_CONFIG-style code for "the configuration is wrong".
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "lr-agent", version, about = "Live response endpoint agent")]
struct Cli {
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
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

impl Cli {
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
    init_logging(cli.log_json);
    let config = match Config::load(cli.config.as_deref(), cli.overrides())
        .and_then(|c| agent::check(&c).map(|_| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lr-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lr-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lr-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let filter = std::env::var("LR_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // Logs go to stderr (journald, container logs); colours only for a person at a terminal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
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
