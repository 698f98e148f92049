//! `load-bench`: the analyst API under load, with the brokers' memory watched meanwhile.
//!
//! - `outputs`: several analysts at once, each in their own session on their own device, run the
//!   same large-output command again and again; then every session's command list is read.
//!   Records each watched process's resident size before, its peak during the commands and during
//!   the reads (`VmHWM`, reset in between), the output bytes moved and the wall time.
//! - `full-store`: a getfile larger than the chunk store can hold, timed until it ends failed;
//!   another analyst opens a session on another device meanwhile; after the failed transfer is
//!   deleted, a smaller getfile is timed until it completes.
//! - `output-size`: the size of one command's output, to size a folder for `outputs`.
//!
//! `benches/output_memory.sh` and `benches/store_full.sh` run it against the local stack; see
//! benches/README.md.

// The percentile code of `lease-bench`; its other items are not used here.
#[allow(dead_code)]
#[path = "../report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../workload.rs"]
mod workload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::report::Latency;

/// Longest long-poll the API allows (`MAX_WAIT_MS` in the broker).
const LONG_POLL_MS: u64 = 30_000;
/// Bound on one HTTP call (a long-poll included).
const HTTP_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound on reading one page of commands: each item carries its output, read from the audit log.
const LIST_TIMEOUT: Duration = Duration::from_secs(300);
/// Long-polls of one command without a final answer before it counts as stuck.
const MAX_POLLS: usize = 4;
/// Cap on commands per session, so a typo cannot run for days.
const MAX_COMMANDS: usize = 100_000;
/// Cap on sessions.
const MAX_SESSIONS: usize = 100;

#[derive(Parser, Debug)]
#[command(
    name = "load-bench",
    about = "the analyst API under load: large outputs in many sessions, a full chunk store"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Sessions at once, each running one command line again and again; then each session's
    /// command list is read. Memory of the watched processes before, and at its peak.
    Outputs(OutputsArgs),
    /// A getfile larger than the chunk store until it fails; another session meanwhile; after
    /// deleting the failed transfer, a smaller getfile until it completes.
    FullStore(FullStoreArgs),
    /// Print the byte size of one command's output (compact JSON, as the agent counts it).
    OutputSize(OutputSizeArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// The cluster CA (the only trust root).
    #[arg(long, env = "LR_CA_CERT")]
    ca: PathBuf,
    /// Wait this long for each device to be online before starting.
    #[arg(long, default_value_t = 120)]
    online_timeout_secs: u64,
    /// Also print the result as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct OutputsArgs {
    #[command(flatten)]
    common: Common,
    /// The nodes' API URLs, comma-separated: session i is opened through URL i mod their number.
    #[arg(long, value_delimiter = ',', required = true)]
    urls: Vec<String>,
    /// A file of `<device> <token>` lines: one session per line, that analyst on that device.
    #[arg(long)]
    analysts: PathBuf,
    /// The command line every command runs.
    #[arg(long)]
    command_line: String,
    /// Commands per session.
    #[arg(long, default_value_t = 1000)]
    commands: usize,
    /// Items asked for in each session's command list at the end.
    #[arg(long, default_value_t = 50)]
    list_limit: usize,
    /// Failed commands tolerated, all sessions together, before the run stops.
    #[arg(long, default_value_t = 10)]
    max_errors: u64,
    /// The commands stop (and are reported as cut short) after this long.
    #[arg(long, default_value_t = 1800)]
    max_secs: u64,
    /// Processes whose memory and CPU time are reported, as NAME=PID (PID `self`: this
    /// process); repeat; processes of the same name are reported together.
    #[arg(long = "watch", value_name = "NAME=PID")]
    watch: Vec<String>,
    /// The kernel's clock ticks per second (`getconf CLK_TCK`), for CPU times.
    #[arg(long, default_value_t = 100)]
    clock_ticks: u64,
    /// Print progress (commands done, watched sizes) this often.
    #[arg(long, default_value_t = 30)]
    progress_secs: u64,
}

#[derive(Args, Debug)]
struct FullStoreArgs {
    #[command(flatten)]
    common: Common,
    /// The API the first analyst uses.
    #[arg(long)]
    url: String,
    #[arg(long, env = "LR_TOKEN", hide_env_values = true)]
    token: String,
    /// The device holding the files.
    #[arg(long)]
    device: String,
    /// A file larger than the chunk store.
    #[arg(long)]
    big: PathBuf,
    /// A file the store holds.
    #[arg(long)]
    small: PathBuf,
    /// The API the second analyst uses.
    #[arg(long)]
    other_url: String,
    #[arg(long, env = "LR_TOKEN_B", hide_env_values = true)]
    other_token: String,
    /// The device the second analyst opens a session on while the store is full.
    #[arg(long)]
    other_device: String,
    /// The brokers' `transfers.max_stall_secs`: the wait for the failure is bounded by it.
    #[arg(long, default_value_t = 600)]
    stall_secs: u64,
    /// No progress for this long means the store is full: then the other session is tried.
    #[arg(long, default_value_t = 10)]
    quiet_secs: u64,
    /// nats-server (with the next three: a broker's credentials), to read the chunk stream's
    /// size at each step; without it the sizes are not reported.
    #[arg(long)]
    nats_url: Option<String>,
    #[arg(long)]
    nats_cert: Option<PathBuf>,
    #[arg(long)]
    nats_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct OutputSizeArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, env = "LR_API_URL")]
    url: String,
    #[arg(long, env = "LR_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    device: String,
    #[arg(long)]
    command_line: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Mode::Outputs(args) => {
            let outcome = outputs(&args).await?;
            outcome.print();
            if args.common.json {
                println!("{}", serde_json::to_string(&outcome)?);
            }
            if !outcome.lists.iter().all(|l| l.status == 200) {
                bail!("a session's command list did not answer 200");
            }
            if outcome.errors > 0 || outcome.cut_short {
                bail!("not every command completed");
            }
        }
        Mode::FullStore(args) => {
            let outcome = full_store(&args).await?;
            outcome.print();
            if args.common.json {
                println!("{}", serde_json::to_string(&outcome)?);
            }
        }
        Mode::OutputSize(args) => output_size(&args).await?,
    }
    Ok(())
}

// ---- the API ------------------------------------------------------------------------------------

/// One analyst's HTTPS client: its own keep-alive connections, its own token.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

/// A command as the API answers it; the output stays raw (it is only measured).
#[derive(Deserialize)]
struct CommandView<'a> {
    command_id: String,
    state: String,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<String>,
}

/// A command in a final state: its answer's text, and the output's size in it.
struct Finished {
    state: String,
    error: Option<String>,
    output_bytes: usize,
    text: String,
}

impl Finished {
    fn output(&self) -> Value {
        serde_json::from_str::<Value>(&self.text)
            .map(|mut v| v["output"].take())
            .unwrap_or(Value::Null)
    }
}

impl Api {
    fn new(url: &str, ca: &PathBuf, token: &str) -> anyhow::Result<Self> {
        let pem =
            std::fs::read(ca).with_context(|| format!("cannot read the CA {}", ca.display()))?;
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// One call, bounded by `timeout`: the status and the answer's text.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<(StatusCode, String)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {path}: reading the answer"))?;
        Ok((status, text))
    }

    /// One call; any status other than `expect` is an error naming the API's answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> anyhow::Result<Value> {
        let (status, text) = self.send(method.clone(), path, body, HTTP_TIMEOUT).await?;
        if status != expect {
            bail!("{method} {path}: {status}: {}", cut(&text));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: not JSON: {}", cut(&text)))
    }

    async fn wait_online(&self, device: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self
                .call(
                    Method::GET,
                    "/api/v1/devices?limit=1000",
                    None,
                    StatusCode::OK,
                )
                .await
            {
                Ok(page) => {
                    let entry = page["items"]
                        .as_array()
                        .and_then(|list| list.iter().find(|d| d["device"] == device).cloned());
                    match entry {
                        Some(d) if d["online"] == true => return Ok(()),
                        Some(d) => format!("device is {d}"),
                        None => "device not registered yet".to_string(),
                    }
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("{device} was not online within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Opens a session on `device`: its id and the node holding it.
    async fn open(&self, device: &str) -> anyhow::Result<(String, u64)> {
        let opened = self
            .call(
                Method::POST,
                "/api/v1/sessions",
                Some(json!({ "device": device })),
                StatusCode::CREATED,
            )
            .await
            .with_context(|| format!("opening a session on {device}"))?;
        let session = opened["session_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no session_id in {opened}"))?
            .to_string();
        Ok((session, opened["node"].as_u64().unwrap_or(0)))
    }

    async fn close(&self, session: &str) -> anyhow::Result<()> {
        self.call(
            Method::DELETE,
            &format!("/api/v1/sessions/{session}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await
        .map(|_| ())
    }

    /// Submits one command and long-polls it until it reaches a final state.
    async fn run_command(&self, session: &str, line: &str) -> anyhow::Result<Finished> {
        let path = format!("/api/v1/sessions/{session}/commands");
        let (status, mut text) = self
            .send(
                Method::POST,
                &path,
                Some(json!({ "command_line": line })),
                HTTP_TIMEOUT,
            )
            .await?;
        if status != StatusCode::ACCEPTED {
            bail!("POST {path}: {status}: {}", cut(&text));
        }
        let mut cid = None;
        for _ in 0..=MAX_POLLS {
            let view: CommandView = serde_json::from_str(&text)
                .with_context(|| format!("not a command: {}", cut(&text)))?;
            if !matches!(view.state.as_str(), "queued" | "running") {
                let finished = Finished {
                    state: view.state,
                    error: view.error,
                    output_bytes: view.output.map_or(0, |o| o.get().len()),
                    text: String::new(),
                };
                return Ok(Finished { text, ..finished });
            }
            let id = cid.get_or_insert(view.command_id);
            let (status, answer) = self
                .send(
                    Method::GET,
                    &format!("{path}/{id}?wait_ms={LONG_POLL_MS}"),
                    None,
                    HTTP_TIMEOUT,
                )
                .await?;
            if status != StatusCode::OK {
                bail!("GET {path}/{id}: {status}: {}", cut(&answer));
            }
            text = answer;
        }
        bail!(
            "command {} ({line}) was not final after {MAX_POLLS} long-polls of {LONG_POLL_MS} ms",
            cid.unwrap_or_default()
        )
    }

    async fn transfer(&self, id: &str, wait_ms: u64) -> anyhow::Result<Value> {
        self.call(
            Method::GET,
            &format!("/api/v1/transfers/{id}?wait_ms={wait_ms}"),
            None,
            StatusCode::OK,
        )
        .await
    }
}

/// The start of a long answer, for error messages.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(400);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// ---- memory -------------------------------------------------------------------------------------

/// Processes whose memory and CPU time are reported together under one name (one broker, or all
/// the bench agents).
#[derive(Clone, Debug)]
struct Watched {
    name: String,
    pids: Vec<u32>,
}

impl Watched {
    /// `NAME=PID` arguments, grouped by name in the order the names first appear; `self` is this
    /// process (the load's client side).
    fn group(specs: &[String]) -> anyhow::Result<Vec<Self>> {
        let mut groups: Vec<Self> = Vec::new();
        for spec in specs {
            let (name, pid) = spec
                .split_once('=')
                .ok_or_else(|| anyhow!("--watch takes NAME=PID, not {spec:?}"))?;
            let pid = if pid == "self" {
                std::process::id()
            } else {
                pid.parse()
                    .with_context(|| format!("--watch {spec}: not a pid"))?
            };
            match groups.iter_mut().find(|g| g.name == name) {
                Some(group) => group.pids.push(pid),
                None => groups.push(Self {
                    name: name.to_string(),
                    pids: vec![pid],
                }),
            }
        }
        Ok(groups)
    }

    /// A `Vm*` line of /proc/<pid>/status, in KiB, summed over the group.
    fn kib(&self, field: &str) -> Option<u64> {
        self.pids.iter().try_fold(0, |sum, pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())?;
            Some(sum + kib)
        })
    }

    /// User and system CPU time so far, in clock ticks, summed over the group.
    fn cpu_ticks(&self) -> Option<u64> {
        self.pids.iter().try_fold(0, |sum, pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name (which may hold spaces) in parentheses: state is
            // field 3, utime 14 and stime 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
            Some(sum + ticks(14)? + ticks(15)?)
        })
    }

    /// Resets the peak (`VmHWM`) to the current size (Linux's clear_refs, value 5).
    fn reset_peak(&self) -> bool {
        self.pids
            .iter()
            .all(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok())
    }
}

/// Sizes in MiB of one watched group, and the CPU it used.
#[derive(Debug, Serialize)]
struct Memory {
    name: String,
    processes: usize,
    /// Resident before the commands.
    before_mib: f64,
    /// Peak while the commands ran (for a group, the sum of each one's peak).
    commands_peak_mib: f64,
    /// Resident when they were done.
    commands_end_mib: f64,
    /// Peak while the command lists were read.
    lists_peak_mib: f64,
    /// Resident at the end.
    end_mib: f64,
    /// CPU time (user and system) while the commands ran.
    commands_cpu_secs: f64,
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

// ---- outputs ------------------------------------------------------------------------------------

/// One session's share of the run.
#[derive(Default)]
struct SessionRun {
    completed: u64,
    output_bytes: u64,
    min_output: Option<usize>,
    max_output: usize,
    latencies: Vec<Duration>,
}

/// A page of commands, counted without keeping its items.
#[derive(Deserialize)]
struct ListPage {
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(Debug, Serialize)]
struct ListCheck {
    session: String,
    status: u16,
    items: usize,
    bytes: usize,
    ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct OutputsOutcome {
    sessions: usize,
    commands_per_session: usize,
    command_line: String,
    completed: u64,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// The commands stopped at `--max-secs` (or Ctrl-C) before all had run.
    cut_short: bool,
    output_bytes: u64,
    min_output_bytes: usize,
    max_output_bytes: usize,
    seconds: f64,
    latency: Latency,
    peaks_reset: bool,
    memory: Vec<Memory>,
    lists: Vec<ListCheck>,
    cpus: usize,
}

async fn outputs(args: &OutputsArgs) -> anyhow::Result<OutputsOutcome> {
    if args.commands == 0 || args.commands > MAX_COMMANDS {
        bail!("--commands must be from 1 to {MAX_COMMANDS}");
    }
    if args.urls.is_empty() || !(1..=1000).contains(&args.list_limit) {
        bail!("--urls needs at least one URL; --list-limit is 1 to 1000");
    }
    let watched = Watched::group(&args.watch)?;
    let text = std::fs::read_to_string(&args.analysts)
        .with_context(|| format!("cannot read {}", args.analysts.display()))?;
    let mut analysts = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let (device, token) = line.trim().split_once(' ').ok_or_else(|| {
            anyhow!(
                "{}: line {} is not `<device> <token>`",
                args.analysts.display(),
                i + 1
            )
        })?;
        let api = Api::new(
            &args.urls[i % args.urls.len()],
            &args.common.ca,
            token.trim(),
        )?;
        analysts.push((device.to_string(), api));
    }
    if analysts.is_empty() || analysts.len() > MAX_SESSIONS {
        bail!("--analysts must list 1 to {MAX_SESSIONS} sessions");
    }
    let online_timeout = Duration::from_secs(args.common.online_timeout_secs.min(3600));
    for (device, api) in &analysts {
        api.wait_online(device, online_timeout).await?;
    }

    let mut sessions: Vec<String> = Vec::new();
    let opened = async {
        for (device, api) in &analysts {
            let (session, node) = api.open(device).await?;
            eprintln!(
                "outputs: session {session} on {device}, held by node {node} (API {})",
                api.url
            );
            sessions.push(session);
        }
        anyhow::Ok(())
    }
    .await;
    let outcome = match opened {
        Ok(()) => {
            tokio::select! {
                outcome = run_outputs(args, &analysts, &sessions, &watched) => outcome,
                _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            }
        }
        Err(e) => Err(e),
    };
    // Every session opened is ended, whatever happened to the run.
    for ((_, api), session) in analysts.iter().zip(&sessions) {
        if let Err(e) = api.close(session).await {
            eprintln!("outputs: cannot end session {session}: {e:#}");
        }
    }
    outcome
}

async fn run_outputs(
    args: &OutputsArgs,
    analysts: &[(String, Api)],
    sessions: &[String],
    watched: &[Watched],
) -> anyhow::Result<OutputsOutcome> {
    let before: Vec<Option<u64>> = watched.iter().map(|w| w.kib("VmRSS")).collect();
    let cpu_before: Vec<Option<u64>> = watched.iter().map(Watched::cpu_ticks).collect();
    let mut peaks_reset = watched.iter().all(Watched::reset_peak);

    let deadline = Instant::now() + Duration::from_secs(args.max_secs.clamp(1, 24 * 3600));
    let errors = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let first_error = std::sync::Mutex::new(None::<String>);
    let started = Instant::now();
    let run_one = |index: usize| {
        let (errors, done, stop, first_error) = (&errors, &done, &stop, &first_error);
        let api = &analysts[index].1;
        let session = &sessions[index];
        async move {
            let mut run = SessionRun::default();
            for _ in 0..args.commands {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                let t0 = Instant::now();
                let failure = match api.run_command(session, &args.command_line).await {
                    Ok(f) if f.state == "completed" => {
                        run.latencies.push(t0.elapsed());
                        run.completed += 1;
                        run.output_bytes += f.output_bytes as u64;
                        run.min_output = Some(
                            run.min_output
                                .map_or(f.output_bytes, |m| m.min(f.output_bytes)),
                        );
                        run.max_output = run.max_output.max(f.output_bytes);
                        done.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    Ok(f) => Some(format!(
                        "command ended {}: {}",
                        f.state,
                        f.error.unwrap_or_default()
                    )),
                    Err(e) => Some(format!("{e:#}")),
                };
                if let Some(message) = failure {
                    eprintln!("outputs: session {session}: {message}");
                    first_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert(message);
                    if errors.fetch_add(1, Ordering::Relaxed) + 1 > args.max_errors {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
            run
        }
    };
    let all = futures::future::join_all((0..analysts.len()).map(run_one));
    let progress = async {
        let every = Duration::from_secs(args.progress_secs.clamp(1, 3600));
        let total = (args.commands * analysts.len()) as u64;
        loop {
            tokio::time::sleep(every).await;
            let sizes: Vec<String> = watched
                .iter()
                .map(|w| format!("{} {:.0}", w.name, mib(w.kib("VmRSS"))))
                .collect();
            eprintln!(
                "outputs: {:>4.0} s: {}/{total} commands; resident MiB: {}",
                started.elapsed().as_secs_f64(),
                done.load(Ordering::Relaxed),
                sizes.join(", ")
            );
        }
    };
    let runs = tokio::select! {
        runs = all => runs,
        () = progress => unreachable!("the progress loop never ends"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let commands_peak: Vec<Option<u64>> = watched.iter().map(|w| w.kib("VmHWM")).collect();
    let commands_end: Vec<Option<u64>> = watched.iter().map(|w| w.kib("VmRSS")).collect();
    let cpu_after: Vec<Option<u64>> = watched.iter().map(Watched::cpu_ticks).collect();

    // Every session's command list, one session after another.
    peaks_reset &= watched.iter().all(Watched::reset_peak);
    let mut lists = Vec::new();
    for ((_, api), session) in analysts.iter().zip(sessions) {
        let path = format!(
            "/api/v1/sessions/{session}/commands?limit={}",
            args.list_limit
        );
        let t0 = Instant::now();
        let check = match api.send(Method::GET, &path, None, LIST_TIMEOUT).await {
            Ok((status, text)) => {
                let items =
                    serde_json::from_str::<ListPage>(&text).map_or(0, |page| page.items.len());
                ListCheck {
                    session: session.clone(),
                    status: status.as_u16(),
                    items,
                    bytes: text.len(),
                    ms: t0.elapsed().as_secs_f64() * 1000.0,
                    error: (status != StatusCode::OK).then(|| cut(&text).to_string()),
                }
            }
            Err(e) => ListCheck {
                session: session.clone(),
                status: 0,
                items: 0,
                bytes: 0,
                ms: t0.elapsed().as_secs_f64() * 1000.0,
                error: Some(format!("{e:#}")),
            },
        };
        eprintln!(
            "outputs: GET {path}: {} ({} items, {} bytes, {:.0} ms)",
            check.status, check.items, check.bytes, check.ms
        );
        lists.push(check);
    }
    let memory = watched
        .iter()
        .enumerate()
        .map(|(i, w)| Memory {
            name: w.name.clone(),
            processes: w.pids.len(),
            before_mib: mib(before[i]),
            commands_peak_mib: mib(commands_peak[i]),
            commands_end_mib: mib(commands_end[i]),
            lists_peak_mib: mib(w.kib("VmHWM")),
            end_mib: mib(w.kib("VmRSS")),
            commands_cpu_secs: match (cpu_before[i], cpu_after[i]) {
                (Some(a), Some(b)) => b.saturating_sub(a) as f64 / args.clock_ticks as f64,
                _ => f64::NAN,
            },
        })
        .collect();

    let mut latencies = Vec::new();
    let (mut completed, mut output_bytes, mut min_output, mut max_output) = (0, 0, None, 0);
    for run in runs {
        completed += run.completed;
        output_bytes += run.output_bytes;
        max_output = max_output.max(run.max_output);
        min_output = match (min_output, run.min_output) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
        latencies.extend(run.latencies);
    }
    let errors = errors.load(Ordering::Relaxed);
    Ok(OutputsOutcome {
        sessions: analysts.len(),
        commands_per_session: args.commands,
        command_line: args.command_line.clone(),
        completed,
        errors,
        first_error: first_error
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        cut_short: completed + errors < (args.commands * analysts.len()) as u64,
        output_bytes,
        min_output_bytes: min_output.unwrap_or(0),
        max_output_bytes: max_output,
        seconds,
        latency: Latency::of(&mut latencies),
        peaks_reset,
        memory,
        lists,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
    })
}

impl OutputsOutcome {
    fn print(&self) {
        println!(
            "== {} sessions x {} commands of `{}`",
            self.sessions, self.commands_per_session, self.command_line
        );
        println!(
            "completed {} commands, {} failed{}; output {:.2} GiB ({} to {} bytes each) in {:.1} s: {:.1} MB/s, {:.1} commands/s",
            self.completed,
            self.errors,
            if self.cut_short { " (cut short)" } else { "" },
            self.output_bytes as f64 / f64::from(1u32 << 30),
            self.min_output_bytes,
            self.max_output_bytes,
            self.seconds,
            self.output_bytes as f64 / 1e6 / self.seconds.max(f64::EPSILON),
            self.completed as f64 / self.seconds.max(f64::EPSILON)
        );
        println!(
            "one command (POST, long-poll until final, output read): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency.p50_ms, self.latency.p99_ms, self.latency.max_ms
        );
        if let Some(error) = &self.first_error {
            println!("first error: {error}");
        }
        println!();
        println!(
            "== memory (MiB) and CPU time{}",
            if self.peaks_reset {
                ""
            } else {
                " (peaks could not be reset: each is the peak since the process started)"
            }
        );
        println!(
            "| process | before | peak during commands | at their end | peak during lists | end | CPU s during commands |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for m in &self.memory {
            let name = if m.processes > 1 {
                format!("{} ({})", m.name, m.processes)
            } else {
                m.name.clone()
            };
            println!(
                "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
                m.before_mib,
                m.commands_peak_mib,
                m.commands_end_mib,
                m.lists_peak_mib,
                m.end_mib,
                m.commands_cpu_secs
            );
        }
        println!();
        println!("== GET /api/v1/sessions/{{id}}/commands (one session after another)");
        for l in &self.lists {
            println!(
                "{}: {} ({} items, {:.1} MB, {:.0} ms){}",
                l.session,
                l.status,
                l.items,
                l.bytes as f64 / 1e6,
                l.ms,
                l.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

// ---- output-size --------------------------------------------------------------------------------

async fn output_size(args: &OutputSizeArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.url, &args.common.ca, &args.token)?;
    api.wait_online(
        &args.device,
        Duration::from_secs(args.common.online_timeout_secs.min(3600)),
    )
    .await?;
    let (session, _) = api.open(&args.device).await?;
    let finished = api.run_command(&session, &args.command_line).await;
    api.close(&session).await?;
    let finished = finished?;
    if finished.state != "completed" {
        bail!(
            "`{}` ended {}: {}",
            args.command_line,
            finished.state,
            finished.error.unwrap_or_default()
        );
    }
    println!("{}", finished.output_bytes);
    Ok(())
}

// ---- full-store ---------------------------------------------------------------------------------

/// The chunk stream as nats-server reports it.
#[derive(Debug, Serialize)]
struct StreamSize {
    bytes: u64,
    messages: u64,
    max_bytes: i64,
}

/// How long the chunk stream is watched after the failure, for the failed transfer's chunks to go.
const FREED_WAIT: Duration = Duration::from_secs(10);

/// The other analyst's session, tried while the store is full.
#[derive(Debug, Serialize)]
struct OtherSession {
    /// Seconds after the getfile started.
    at_secs: f64,
    /// Whether the getfile was still running then (the store full, the transfer not yet failed).
    while_stalled: bool,
    opened: bool,
    open_ms: f64,
    node: u64,
    /// `dir /` in it.
    command_state: String,
    command_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Its own getfile of the smaller file, watched for `OTHER_GETFILE_WATCH`, then deleted:
    /// chunks stored of all, and its state then.
    getfile_chunks_done: u64,
    getfile_chunks: u64,
    getfile_state: String,
}

/// How long the other session's getfile is watched while the store is full.
const OTHER_GETFILE_WATCH: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize)]
struct FullStoreOutcome {
    big_bytes: u64,
    small_bytes: u64,
    stall_secs: u64,
    /// The getfile command (fileinfo on the device, the transfer started) answered.
    started_secs: f64,
    /// The last chunk the transfer stored, and when.
    chunks_stored: u64,
    chunks: u64,
    last_progress_secs: f64,
    /// The transfer's end, its state and error.
    ended_secs: f64,
    state: String,
    error: String,
    /// The error says the store refused chunks.
    says_store_full: bool,
    other: Option<OtherSession>,
    /// How long after the failure the chunk stream held less than at the failure (none: not
    /// within a few seconds, or its size unknown).
    freed_secs: Option<f64>,
    delete_status: u16,
    /// From the DELETE's answer to the smaller getfile's completion.
    recovery_secs: f64,
    /// Of which the getfile command (fileinfo, the transfer started).
    recovery_started_secs: f64,
    recovery_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_error: Option<String>,
    /// The chunk stream at each step.
    stream: Vec<(String, Option<StreamSize>)>,
}

async fn full_store(args: &FullStoreArgs) -> anyhow::Result<FullStoreOutcome> {
    let api = Api::new(&args.url, &args.common.ca, &args.token)?;
    let other = Api::new(&args.other_url, &args.common.ca, &args.other_token)?;
    let size = |path: &PathBuf| {
        std::fs::metadata(path)
            .map(|m| m.len())
            .with_context(|| format!("cannot read {}", path.display()))
    };
    let (big_bytes, small_bytes) = (size(&args.big)?, size(&args.small)?);
    let nats = match (&args.nats_url, &args.nats_cert, &args.nats_key) {
        (Some(url), Some(cert), Some(key)) => Some(
            async_nats::ConnectOptions::new()
                .require_tls(true)
                .add_root_certificates(args.common.ca.clone())
                .add_client_certificate(cert.clone(), key.clone())
                .connection_timeout(Duration::from_secs(5))
                .request_timeout(Some(Duration::from_secs(10)))
                .connect(url.as_str())
                .await
                .with_context(|| format!("connecting to {url}"))?,
        ),
        _ => None,
    };
    let stream_size = || async {
        let nats = nats.as_ref()?;
        let js = async_nats::jetstream::new(nats.clone());
        let result = async {
            let mut stream = js.get_stream("LR_CHUNKS").await?;
            let info = stream.info().await?;
            anyhow::Ok(StreamSize {
                bytes: info.state.bytes,
                messages: info.state.messages,
                max_bytes: info.config.max_bytes,
            })
        }
        .await;
        match result {
            Ok(size) => Some(size),
            Err(e) => {
                eprintln!("full-store: cannot read the chunk stream's size: {e:#}");
                None
            }
        }
    };

    let online_timeout = Duration::from_secs(args.common.online_timeout_secs.min(3600));
    api.wait_online(&args.device, online_timeout).await?;
    other
        .wait_online(&args.other_device, online_timeout)
        .await?;
    let (session, node) = api.open(&args.device).await?;
    eprintln!(
        "full-store: session {session} on {}, held by node {node}",
        args.device
    );
    let outcome = tokio::select! {
        outcome = measure_full_store(args, &api, &other, &session, big_bytes, small_bytes, &stream_size) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    if let Err(e) = api.close(&session).await {
        eprintln!("full-store: cannot end session {session}: {e:#}");
    }
    outcome
}

/// Runs `getfile <path> -auto` and answers the transfer's id.
async fn start_getfile(api: &Api, session: &str, path: &std::path::Path) -> anyhow::Result<String> {
    let line = format!("getfile {} -auto", path.display());
    let finished = api.run_command(session, &line).await?;
    if finished.state != "completed" {
        bail!(
            "`{line}` ended {}: {}",
            finished.state,
            finished.error.unwrap_or_default()
        );
    }
    let output = finished.output();
    output["transfer_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no transfer_id in the output of `{line}`: {output}"))
}

fn is_final(transfer: &Value) -> bool {
    matches!(
        transfer["state"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

async fn measure_full_store<F, Fut>(
    args: &FullStoreArgs,
    api: &Api,
    other: &Api,
    session: &str,
    big_bytes: u64,
    small_bytes: u64,
    stream_size: &F,
) -> anyhow::Result<FullStoreOutcome>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<StreamSize>>,
{
    let mut stream = Vec::new();
    let t0 = Instant::now();
    let secs = |at: Instant| at.duration_since(t0).as_secs_f64();
    let id = start_getfile(api, session, &args.big).await?;
    let started_secs = secs(Instant::now());
    eprintln!(
        "full-store: getfile of {big_bytes} bytes: transfer {id} started after {started_secs:.2} s"
    );

    // Until it ends: at most the stall bound past the last progress, plus a margin. Once the
    // store is found full (or the transfer ended first), the other analyst's session is tried
    // beside the wait, so it cannot delay seeing the end.
    let quiet = Duration::from_secs(args.quiet_secs.clamp(1, 600));
    let bound = Duration::from_secs(args.stall_secs.saturating_add(300).min(24 * 3600));
    let (found, found_rx) = tokio::sync::oneshot::channel::<bool>();
    let other_session = async {
        let stalled = found_rx.await.ok()?;
        Some(try_other(args, other, t0, stalled).await)
    };
    let watch = async {
        let mut found = Some(found);
        let mut last_chunks = 0;
        let mut last_progress = Instant::now();
        loop {
            let transfer = api.transfer(&id, 5_000).await?;
            let chunks = transfer["chunks_done"].as_u64().unwrap_or(0);
            if chunks != last_chunks {
                last_chunks = chunks;
                last_progress = Instant::now();
            }
            let stalled = last_progress.elapsed() >= quiet && !is_final(&transfer);
            if (stalled || is_final(&transfer))
                && let Some(found) = found.take()
            {
                if stalled {
                    eprintln!(
                        "full-store: no progress for {} s at chunk {chunks} of {}: the store is full; opening another session",
                        quiet.as_secs(),
                        transfer["chunks"]
                    );
                    stream.push(("when found full".to_string(), stream_size().await));
                }
                let _ = found.send(stalled);
            }
            if is_final(&transfer) {
                let ended = Instant::now();
                eprintln!(
                    "full-store: transfer {id} ended {} after {:.1} s: {}",
                    transfer["state"],
                    secs(ended),
                    transfer["error"]
                );
                let freed_secs = watch_freed(&stream_size, &mut stream).await;
                return anyhow::Ok((transfer, last_chunks, last_progress, ended, freed_secs));
            }
            if last_progress.elapsed() > bound {
                bail!(
                    "transfer {id} made no progress for {} s and did not end: {transfer}",
                    bound.as_secs()
                );
            }
        }
    };
    let (watched, other_session) = tokio::join!(watch, other_session);
    let (transfer, last_chunks, last_progress, ended, freed_secs) = watched?;
    let ended_secs = secs(ended);
    let state = transfer["state"].as_str().unwrap_or_default().to_string();
    let error = transfer["error"].as_str().unwrap_or_default().to_string();

    let (status, text) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/transfers/{id}"),
            None,
            HTTP_TIMEOUT,
        )
        .await?;
    let deleted = Instant::now();
    if status != StatusCode::NO_CONTENT {
        eprintln!(
            "full-store: DELETE /api/v1/transfers/{id}: {status}: {}",
            cut(&text)
        );
    }
    stream.push(("after the DELETE".to_string(), stream_size().await));

    let small = start_getfile(api, session, &args.small).await?;
    let recovery_started_secs = deleted.elapsed().as_secs_f64();
    let small_bound = Instant::now() + Duration::from_secs(600);
    let done = loop {
        let transfer = api.transfer(&small, LONG_POLL_MS).await?;
        if is_final(&transfer) {
            break transfer;
        }
        if Instant::now() >= small_bound {
            bail!("the smaller getfile did not end within 600 s: {transfer}");
        }
    };
    let recovery_secs = deleted.elapsed().as_secs_f64();
    stream.push(("after the smaller getfile".to_string(), stream_size().await));
    // Its stored file is not needed.
    let _ = api
        .send(
            Method::DELETE,
            &format!("/api/v1/transfers/{small}"),
            None,
            HTTP_TIMEOUT,
        )
        .await;
    Ok(FullStoreOutcome {
        big_bytes,
        small_bytes,
        stall_secs: args.stall_secs,
        started_secs,
        chunks_stored: last_chunks,
        chunks: transfer["chunks"].as_u64().unwrap_or(0),
        last_progress_secs: secs(last_progress),
        ended_secs,
        says_store_full: error.contains("LR_CHUNKS") || error.contains("maximum bytes"),
        state,
        error,
        other: other_session,
        delete_status: status.as_u16(),
        freed_secs,
        recovery_secs,
        recovery_started_secs,
        recovery_state: done["state"].as_str().unwrap_or_default().to_string(),
        recovery_error: done["error"].as_str().map(str::to_string),
        stream,
    })
}

/// The chunk stream at the failure, then watched for `FREED_WAIT` until it holds less: how long
/// that took (none: not within the wait, or its size unknown).
async fn watch_freed<F, Fut>(
    stream_size: &F,
    steps: &mut Vec<(String, Option<StreamSize>)>,
) -> Option<f64>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<StreamSize>>,
{
    let at_failure = stream_size().await;
    let full_bytes = at_failure.as_ref().map(|s| s.bytes);
    steps.push(("at the failure".to_string(), at_failure));
    let full_bytes = full_bytes?;
    let failed_at = Instant::now();
    let mut after = None;
    while failed_at.elapsed() < FREED_WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = stream_size().await;
        if after.as_ref().is_some_and(|s| s.bytes < full_bytes) {
            let secs = failed_at.elapsed().as_secs_f64();
            steps.push((format!("{secs:.1} s after the failure"), after));
            return Some(secs);
        }
    }
    steps.push((
        format!("{} s after the failure", FREED_WAIT.as_secs()),
        after,
    ));
    None
}

/// The other analyst opens a session on the other device, runs `dir /` and ends it.
async fn try_other(args: &FullStoreArgs, other: &Api, t0: Instant, stalled: bool) -> OtherSession {
    let at_secs = t0.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut result = OtherSession {
        at_secs,
        while_stalled: stalled,
        opened: false,
        open_ms: 0.0,
        node: 0,
        command_state: String::new(),
        command_ms: 0.0,
        error: None,
        getfile_chunks_done: 0,
        getfile_chunks: 0,
        getfile_state: String::new(),
    };
    match other.open(&args.other_device).await {
        Ok((session, node)) => {
            result.opened = true;
            result.open_ms = started.elapsed().as_secs_f64() * 1000.0;
            result.node = node;
            let ran = Instant::now();
            match other.run_command(&session, "dir /").await {
                Ok(f) => {
                    result.command_state = f.state;
                    result.error = f.error;
                }
                Err(e) => result.error = Some(format!("{e:#}")),
            }
            result.command_ms = ran.elapsed().as_secs_f64() * 1000.0;
            match other_getfile(other, &session, &args.small).await {
                Ok(transfer) => {
                    result.getfile_chunks_done = transfer["chunks_done"].as_u64().unwrap_or(0);
                    result.getfile_chunks = transfer["chunks"].as_u64().unwrap_or(0);
                    result.getfile_state = transfer["state"].as_str().unwrap_or_default().into();
                }
                Err(e) => result.getfile_state = format!("not started: {e:#}"),
            }
            if let Err(e) = other.close(&session).await {
                eprintln!("full-store: cannot end session {session}: {e:#}");
            }
        }
        Err(e) => result.error = Some(format!("{e:#}")),
    }
    eprintln!(
        "full-store: other session on {}: opened {} in {:.0} ms, `dir /` {} in {:.0} ms{}; its getfile: {} of {} chunks in {} s, {}",
        args.other_device,
        result.opened,
        result.open_ms,
        result.command_state,
        result.command_ms,
        result
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
        result.getfile_chunks_done,
        result.getfile_chunks,
        OTHER_GETFILE_WATCH.as_secs(),
        result.getfile_state
    );
    result
}

/// A getfile in the other session, watched for `OTHER_GETFILE_WATCH` (or until it ends), then
/// deleted: the transfer as it stood.
async fn other_getfile(
    other: &Api,
    session: &str,
    path: &std::path::Path,
) -> anyhow::Result<Value> {
    let id = start_getfile(other, session, path).await?;
    let until = Instant::now() + OTHER_GETFILE_WATCH;
    let mut transfer = other.transfer(&id, 0).await?;
    while !is_final(&transfer) && Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        transfer = other.transfer(&id, left.as_millis() as u64).await?;
    }
    let (status, text) = other
        .send(
            Method::DELETE,
            &format!("/api/v1/transfers/{id}"),
            None,
            HTTP_TIMEOUT,
        )
        .await?;
    if status != StatusCode::NO_CONTENT {
        eprintln!(
            "full-store: DELETE /api/v1/transfers/{id}: {status}: {}",
            cut(&text)
        );
    }
    Ok(transfer)
}

impl FullStoreOutcome {
    fn print(&self) {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        println!(
            "== getfile of {:.0} MiB against a full chunk store (transfers.max_stall_secs {})",
            mib(self.big_bytes),
            self.stall_secs
        );
        println!(
            "getfile command answered (transfer started): {:.2} s",
            self.started_secs
        );
        println!(
            "last progress: chunk {} of {} at {:.1} s",
            self.chunks_stored, self.chunks, self.last_progress_secs
        );
        println!(
            "transfer ended {} at {:.1} s ({:.1} s after its last progress); store-full message: {}",
            self.state,
            self.ended_secs,
            self.ended_secs - self.last_progress_secs,
            if self.says_store_full { "yes" } else { "no" }
        );
        println!("error: {}", self.error);
        match &self.other {
            Some(o) => println!(
                "other session ({}, at {:.1} s): opened {} in {:.0} ms on node {}; `dir /` {} in {:.0} ms{}; its getfile of the smaller file: {} of {} chunks after {} s ({})",
                if o.while_stalled {
                    "while the transfer was stalled"
                } else {
                    "after the transfer ended"
                },
                o.at_secs,
                o.opened,
                o.open_ms,
                o.node,
                o.command_state,
                o.command_ms,
                o.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                o.getfile_chunks_done,
                o.getfile_chunks,
                OTHER_GETFILE_WATCH.as_secs(),
                o.getfile_state
            ),
            None => println!("other session: not tried"),
        }
        println!(
            "DELETE of the failed transfer: {}; then getfile of {:.0} MiB {} in {:.2} s (command answered after {:.2} s){}",
            self.delete_status,
            mib(self.small_bytes),
            self.recovery_state,
            self.recovery_secs,
            self.recovery_started_secs,
            self.recovery_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        for (step, size) in &self.stream {
            match size {
                Some(s) => println!(
                    "chunk stream LR_CHUNKS {step}: {:.1} MiB in {} messages (max_bytes {})",
                    mib(s.bytes),
                    s.messages,
                    s.max_bytes
                ),
                None => println!("chunk stream LR_CHUNKS {step}: unknown"),
            }
        }
        match self.freed_secs {
            Some(s) => println!("the failure freed the store by itself, {s:.1} s after it"),
            None => println!(
                "the failure did not free the store within {} s (or its size is unknown)",
                FREED_WAIT.as_secs()
            ),
        }
    }
}
