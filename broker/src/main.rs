//! `lr-broker`: runs a broker node, or creates development certificates.

use std::path::PathBuf;
use std::process::ExitCode;

use broker::{BrokerConfig, BrokerNode};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lr-broker",
    version,
    about = "A broker node of the live response cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker node.
    Run {
        /// TOML config file; `LR_*` environment variables override it (nested keys with `__`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// This node's id (overrides the config).
        #[arg(long)]
        node_id: Option<u64>,
    },
    /// Create a development CA (kept if it exists) and certificates for brokers and agents.
    DevCerts {
        /// Directory for the PEM files.
        #[arg(long, default_value = ".lr/dev/certs")]
        out: PathBuf,
        /// Broker certificates to issue: broker-1 .. broker-N.
        #[arg(long, default_value_t = 3)]
        brokers: u32,
        /// Agent certificates to issue, as TENANT/DEVICE (repeatable).
        #[arg(long = "agent")]
        agents: Vec<String>,
    },
}

/// Exit code for bad configuration (EX_CONFIG).
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Run { config, node_id } => run(config, node_id).await,
        Command::DevCerts {
            out,
            brokers,
            agents,
        } => match dev_certs(&out, brokers, &agents) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lr-broker: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

async fn run(file: Option<PathBuf>, node_id: Option<u64>) -> ExitCode {
    let overrides: Vec<(&str, String)> = node_id
        .map(|id| ("node_id", id.to_string()))
        .into_iter()
        .collect();
    let config = match BrokerConfig::load(file.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("lr-broker: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let node = match BrokerNode::start(config).await {
        Ok(node) => node,
        Err(e) => {
            eprintln!("lr-broker: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("lr-broker: cannot listen for SIGTERM: {e}");
                return ExitCode::from(1);
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    node.shutdown().await;
    ExitCode::SUCCESS
}

fn dev_certs(out: &std::path::Path, brokers: u32, agents: &[String]) -> anyhow::Result<()> {
    let ca = pki::ensure_ca(out)?;
    for n in 1..=brokers {
        let issued = ca.issue_broker(out, &n.to_string(), &[])?;
        println!("{}", issued.cert.display());
    }
    for agent in agents {
        let (tenant, device) = agent
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("--agent {agent:?} is not TENANT/DEVICE"))?;
        let issued = ca.issue_agent(out, tenant, device)?;
        println!("{}", issued.cert.display());
    }
    Ok(())
}
