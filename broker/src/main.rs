//! `lr-broker`: runs a broker node, creates development certificates, or writes the nats-server
//! configuration that admits the brokers alone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use broker::{BrokerConfig, BrokerNode, dev};
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
    /// How log lines are written to stderr: `text`, or `json` (one object a line).
    #[arg(long, global = true, env = "LR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The form of log lines; the agent takes the same flag and variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Create the development cluster CA and agent (issuing) CA, each kept if it exists, and
    /// certificates for brokers and nats-server (cluster CA). Agents enrol (`lr-agent enroll`).
    DevCerts {
        /// Directory for the PEM files.
        #[arg(long, default_value = ".lr/dev/certs")]
        out: PathBuf,
        /// The cluster the brokers belong to (their identity is lr-broker://CLUSTER/N).
        #[arg(long, default_value = "local")]
        cluster: String,
        /// Broker certificates to issue: broker-1 .. broker-N.
        #[arg(long, default_value_t = 3)]
        brokers: u64,
    },
    /// Print a nats-server configuration that admits brokers 1..N of a cluster and nobody else:
    /// TLS with cluster-CA client certificates mapped to users, broker permissions only.
    NatsConfig {
        /// Where `dev-certs` wrote cluster-ca.pem and nats-server.pem/.key.
        #[arg(long, default_value = ".lr/dev/certs")]
        certs: PathBuf,
        #[arg(long, default_value = "local")]
        cluster: String,
        /// Brokers to admit: lr-broker://CLUSTER/1 .. N.
        #[arg(long, default_value_t = 3)]
        brokers: u64,
        /// host:port nats-server listens on.
        #[arg(long, default_value = "127.0.0.1:4222")]
        listen: String,
        /// JetStream's store directory.
        #[arg(long)]
        store_dir: PathBuf,
        /// How often JetStream flushes to disk: `always` (every write: nothing acknowledged is
        /// lost with the machine, at the cost of each write) or a period such as `2m` (NATS's
        /// default: a power loss can take the writes of that period, which replicas on other
        /// machines cover).
        #[arg(long, default_value = broker::nats::DEFAULT_SYNC)]
        sync: String,
    },
}

/// Exit code for bad configuration (EX_CONFIG).
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let json = cli.log_format == LogFormat::Json;
    if !matches!(cli.command, Command::Run { .. }) {
        // Only a running node exports spans; the tools log as they always did.
        let _ = telemetry::init(json, log_filter(), None);
    }
    match cli.command {
        Command::Run { config, node_id } => run(json, config, node_id).await,
        Command::DevCerts {
            out,
            cluster,
            brokers,
        } => report(dev_certs(&out, &cluster, brokers)),
        Command::NatsConfig {
            certs,
            cluster,
            brokers,
            listen,
            store_dir,
            sync,
        } => report(nats_config(
            &certs, &cluster, brokers, &listen, &store_dir, &sync,
        )),
    }
}

/// Which log lines are written: `LR_LOG`, else info (Raft's own at warn).
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("LR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"))
}

/// Spans go to `[tracing] otlp_endpoint` when it is set, as `lr-broker` with this node's id.
fn span_export(config: &BrokerConfig) -> Option<telemetry::Export> {
    let endpoint = config.tracing.otlp_endpoint.clone()?;
    let node = i64::try_from(config.node_id).unwrap_or(i64::MAX);
    Some(telemetry::Export {
        endpoint,
        service: "lr-broker",
        attributes: vec![
            telemetry::KeyValue::new(
                "service.instance.id",
                format!("{}/{}", config.cluster_name, config.node_id),
            ),
            telemetry::KeyValue::new("lr.cluster", config.cluster_name.clone()),
            telemetry::KeyValue::new("lr.node_id", node),
        ],
        schedule_delay: None,
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lr-broker: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(json: bool, file: Option<PathBuf>, node_id: Option<u64>) -> ExitCode {
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
    // After the config, which names the collector; nothing logs before this.
    let telemetry = match telemetry::init(json, log_filter(), span_export(&config).as_ref()) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("lr-broker: invalid broker config: tracing.otlp_endpoint: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = serve(config).await;
    // The last spans (the node's shutdown among them) leave before the process does.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    code
}

async fn serve(config: BrokerConfig) -> ExitCode {
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
    let refused = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = terminate.recv() => None,
        reason = node.refused() => Some(reason),
    };
    node.shutdown().await;
    match refused {
        Some(reason) => {
            eprintln!("lr-broker: {reason}");
            ExitCode::from(EXIT_CONFIG)
        }
        None => ExitCode::SUCCESS,
    }
}

fn dev_certs(out: &Path, cluster: &str, brokers: u64) -> anyhow::Result<()> {
    for cert in dev::certs(out, cluster, brokers)? {
        println!("{}", cert.display());
    }
    Ok(())
}

fn nats_config(
    certs: &Path,
    cluster: &str,
    brokers: u64,
    listen: &str,
    store_dir: &Path,
    sync: &str,
) -> anyhow::Result<()> {
    print!(
        "{}",
        dev::nats_config(certs, cluster, brokers, listen, store_dir, sync)?
    );
    Ok(())
}
