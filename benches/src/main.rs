//! `lease-bench`: acquire+release throughput and latency of the lease cluster, and of the same
//! workload on etcd, at a few client concurrencies. See benches/README.md.

mod etcd;
mod ours;
mod report;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::etcd::{EtcdTarget, Gateway, LeaseMode};
use crate::ours::{ClusterTarget, LocalCluster, Route};
use crate::report::{Report, RunResult};
use crate::workload::{Bounds, Clients, Target};

/// Cap on clients, so a typo cannot spawn an unbounded number of tasks and connections.
const MAX_CLIENTS: usize = 4096;
/// Cap on a run's duration, so every run ends.
const MAX_SECONDS: u64 = 3600;

/// Without a subcommand, runs `cluster` with the flags given.
#[derive(Parser, Debug)]
#[command(
    name = "lease-bench",
    about = "acquire+release load on the lease cluster or on etcd",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a 3-node lease cluster in this process (loopback, fsync on) and load it (the default).
    Cluster(ClusterArgs),
    /// Load a running etcd v3.4 cluster through its JSON gateway.
    Etcd {
        #[command(flatten)]
        load: Load,
        /// Client URLs of every member, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        endpoints: Vec<String>,
        /// How sessions map onto etcd leases.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "per-session")]
        lease_mode: Vec<LeaseMode>,
    },
    /// Print ours / etcd ratios from two `--json` reports.
    Compare { ours: PathBuf, etcd: PathBuf },
}

#[derive(Args, Debug)]
struct ClusterArgs {
    #[command(flatten)]
    load: Load,
    /// Where the nodes keep their redb files (node-1, node-2, node-3); a temp dir if absent.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct Load {
    /// Concurrent clients, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    clients: Vec<usize>,
    /// Measured duration of each run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Unmeasured warm-up before each run.
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Most pairs attempted in one run (and again in its warm-up).
    #[arg(long, default_value_t = 1_000_000)]
    max_ops: u64,
    /// How clients pick the node they send through.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "round-robin,leader"
    )]
    routes: Vec<RouteKind>,
    /// Also print the whole report as one JSON line at the end.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum RouteKind {
    /// Pair k of client i goes through node (i + k) mod 3, so followers forward to the leader.
    RoundRobin,
    /// Every pair goes straight to the leader.
    Leader,
}

impl RouteKind {
    fn label(self) -> &'static str {
        match self {
            RouteKind::RoundRobin => "round-robin",
            RouteKind::Leader => "leader",
        }
    }
}

impl Load {
    fn validate(&self) -> anyhow::Result<()> {
        if self.clients.is_empty() || self.clients.iter().any(|c| *c == 0 || *c > MAX_CLIENTS) {
            bail!("--clients must list values from 1 to {MAX_CLIENTS}");
        }
        if self.seconds == 0 || self.seconds > MAX_SECONDS || self.warmup_seconds > MAX_SECONDS {
            bail!("--seconds must be from 1 to {MAX_SECONDS}, --warmup-seconds at most that");
        }
        if self.max_ops == 0 {
            bail!("--max-ops must be above 0");
        }
        Ok(())
    }

    fn measured(&self) -> Bounds {
        Bounds {
            duration: Duration::from_secs(self.seconds),
            max_ops: self.max_ops,
        }
    }

    fn warmup(&self) -> Bounds {
        Bounds {
            duration: Duration::from_secs(self.warmup_seconds),
            max_ops: self.max_ops,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Cluster(cli.cluster)) {
        Command::Cluster(ClusterArgs { load, data_dir }) => {
            load.validate()?;
            let report = bench_cluster(&load, data_dir).await?;
            finish(&load, &report)
        }
        Command::Etcd {
            load,
            endpoints,
            lease_mode,
        } => {
            load.validate()?;
            let report = bench_etcd(&load, endpoints, &lease_mode).await?;
            finish(&load, &report)
        }
        Command::Compare { ours, etcd } => {
            report::print_comparison(&read_report(&ours)?, &read_report(&etcd)?);
            Ok(())
        }
    }
}

async fn bench_cluster(load: &Load, data_dir: Option<PathBuf>) -> anyhow::Result<Report> {
    let cluster = LocalCluster::start(3, data_dir.as_deref()).await?;
    cluster.open_tenant().await?;
    report::print_header();
    let mut results = Vec::new();
    let outcome = async {
        for &clients in &load.clients {
            for &route in &load.routes {
                let services = cluster.services();
                let routed = match route {
                    RouteKind::RoundRobin => Route::RoundRobin(services),
                    RouteKind::Leader => Route::Leader(services[cluster.leader().await?].clone()),
                };
                let target = ClusterTarget::new(routed, tag(route, clients));
                let result = measure(load, target, "cluster", route, clients, 2).await?;
                report::print_row(&result);
                results.push(result);
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Shut down cleanly even after a failed run, so the store files are closed.
    cluster.shutdown().await;
    outcome?;
    Ok(Report {
        cpus: cpus(),
        results,
    })
}

async fn bench_etcd(
    load: &Load,
    endpoints: Vec<String>,
    modes: &[LeaseMode],
) -> anyhow::Result<Report> {
    if endpoints.iter().any(|e| !e.starts_with("http://")) {
        bail!("etcd endpoints must be plain http:// urls");
    }
    let gateway = Gateway::new();
    report::print_header();
    let mut results = Vec::new();
    for &mode in modes {
        for &clients in &load.clients {
            for &route in &load.routes {
                let leader = match route {
                    RouteKind::RoundRobin => None,
                    RouteKind::Leader => Some(gateway.leader(&endpoints).await?),
                };
                let target = EtcdTarget::new(
                    gateway.clone(),
                    endpoints.clone(),
                    leader,
                    mode,
                    tag(route, clients),
                );
                let result = measure(
                    load,
                    target,
                    mode.label(),
                    route,
                    clients,
                    mode.writes_per_pair(),
                )
                .await?;
                report::print_row(&result);
                results.push(result);
            }
        }
    }
    Ok(Report {
        cpus: cpus(),
        results,
    })
}

/// One run: set up the clients, warm up, then measure.
async fn measure<T: Target>(
    load: &Load,
    target: Arc<T>,
    label: &str,
    route: RouteKind,
    clients: usize,
    writes_per_pair: u32,
) -> anyhow::Result<RunResult> {
    let mut pool = Clients::new(target, clients).await?;
    if load.warmup_seconds > 0 {
        pool.run(load.warmup()).await?;
    }
    let samples = pool.run(load.measured()).await?;
    Ok(RunResult::new(
        label,
        route.label(),
        clients,
        writes_per_pair,
        samples,
    ))
}

/// A prefix that keeps ids unique across runs and across invocations against one etcd.
fn tag(route: RouteKind, clients: usize) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{now}-{}-{clients}", route.label())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn finish(load: &Load, report: &Report) -> anyhow::Result<()> {
    if load.json {
        println!("{}", serde_json::to_string(report)?);
    }
    Ok(())
}

fn read_report(path: &PathBuf) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a --json report", path.display()))
}
