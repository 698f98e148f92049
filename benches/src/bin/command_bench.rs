//! `command-bench`: the round trip of one trivial command through the analyst API, next to a raw
//! NATS request-reply on the same server (the floor) and to `ssh` over a ControlMaster connection
//! (what an analyst would otherwise use). Every mode runs its operations one after another and
//! times each one. `benches/command_rtt.sh` runs all three against the local stack; see
//! benches/README.md.

// The percentile code of `lease-bench`; its other items are not used here.
#[allow(dead_code)]
#[path = "../report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../workload.rs"]
mod workload;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::report::Latency;

/// Cap on measured and warm-up operations, so a typo cannot run for hours.
const MAX_COUNT: usize = 100_000;
/// Longest long-poll the API allows (`MAX_WAIT_MS` in the broker).
const LONG_POLL_MS: u64 = 30_000;
/// Bound on one HTTP call (a long-poll included).
const HTTP_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Parser, Debug)]
#[command(
    name = "command-bench",
    about = "round trip of a trivial command: the analyst API, raw NATS request-reply, ssh"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Open a session through the API and run one command line after another in it.
    Api(ApiArgs),
    /// Sequential request-reply through a NATS server, to a responder in this process.
    Nats(NatsArgs),
    /// Run a program (e.g. `ssh -S <control socket> host ls /`) again and again.
    Ssh(SshArgs),
    /// Make a token, see it work on every node, revoke it through the first; times the revoke
    /// until every node refuses the token (401).
    Revocation(RevocationArgs),
    /// Print the results (`--json` lines, in any number of files) side by side, with ratios.
    Compare { files: Vec<PathBuf> },
}

#[derive(Args, Debug)]
struct Run {
    /// Measured operations.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Unmeasured operations before them.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Failed operations tolerated before the run stops (they are not in the percentiles).
    #[arg(long, default_value_t = 10)]
    max_errors: u64,
    /// Also print the result as one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ApiArgs {
    #[command(flatten)]
    run: Run,
    /// The API of the node the analyst talks to.
    #[arg(long, env = "LR_API_URL")]
    url: String,
    /// The cluster CA (the only trust root).
    #[arg(long, env = "LR_CA_CERT")]
    ca: PathBuf,
    /// The analyst's bearer token.
    #[arg(long, env = "LR_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    device: String,
    /// The command line each operation runs.
    #[arg(long, default_value = "cd /")]
    command_line: String,
    /// Wait (up to --online-timeout-secs) until the device is online through this node.
    #[arg(long)]
    expect_node: Option<u64>,
    #[arg(long, default_value_t = 60)]
    online_timeout_secs: u64,
    /// The name the result goes by (`api`): another one, such as `api-traced`, sets apart a run
    /// against a differently configured stack for `compare`.
    #[arg(long, default_value = "api")]
    label: String,
}

#[derive(Args, Debug)]
struct RevocationArgs {
    #[command(flatten)]
    run: Run,
    /// The API of every node, comma-separated; the revoke goes to the first.
    #[arg(long, value_delimiter = ',', required = true)]
    urls: Vec<String>,
    #[arg(long, env = "LR_CA_CERT")]
    ca: PathBuf,
    /// A tenant admin's (or, with --tenant, a platform admin's) token.
    #[arg(long, env = "LR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// The tenant to act in, for a platform admin.
    #[arg(long)]
    tenant: Option<String>,
    /// The user each token is made for.
    #[arg(long, default_value = "analyst-a")]
    user: String,
}

#[derive(Args, Debug)]
struct NatsArgs {
    #[command(flatten)]
    run: Run,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The cluster CA, and a broker's certificate and key: nats-server admits brokers only,
    /// over TLS, so this measures the same connections brokers use.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Size of the request and of the reply, about that of a command envelope.
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
}

#[derive(Args, Debug)]
struct SshArgs {
    #[command(flatten)]
    run: Run,
    /// Bound on one run of the program.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    argv: Vec<String>,
}

/// One mode's measurement.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    /// `api`, `nats` or `ssh`.
    target: String,
    /// What one operation was.
    operation: String,
    count: usize,
    warmup: usize,
    errors: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first_error: Option<String>,
    /// Wall time of the measured operations.
    seconds: f64,
    latency: Latency,
    cpus: usize,
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
    let (run, outcome) = match Cli::parse().command {
        Mode::Api(args) => {
            args.run.validate()?;
            let outcome = bench_api(&args).await?;
            (args.run, outcome)
        }
        Mode::Nats(args) => {
            args.run.validate()?;
            if args.payload_bytes > 64 * 1024 {
                bail!("--payload-bytes must be at most 65536");
            }
            let outcome = bench_nats(&args).await?;
            (args.run, outcome)
        }
        Mode::Ssh(args) => {
            args.run.validate()?;
            let outcome = bench_ssh(&args).await?;
            (args.run, outcome)
        }
        Mode::Revocation(args) => {
            args.run.validate()?;
            let outcome = bench_revocation(&args).await?;
            (args.run, outcome)
        }
        Mode::Compare { files } => return compare(&files),
    };
    print_header();
    print_row(&outcome);
    if run.json {
        println!("{}", serde_json::to_string(&outcome)?);
    }
    Ok(())
}

impl Run {
    fn validate(&self) -> anyhow::Result<()> {
        if self.count == 0 || self.count > MAX_COUNT || self.warmup > MAX_COUNT {
            bail!("--count must be from 1 to {MAX_COUNT}, --warmup at most that");
        }
        Ok(())
    }

    /// Runs `op` warm-up + count times, one after another; times the measured ones.
    async fn measure<F, Fut>(
        &self,
        target: &str,
        operation: &str,
        mut op: F,
    ) -> anyhow::Result<Outcome>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        self.measure_part(target, operation, || {
            let run = op();
            async move {
                let t0 = Instant::now();
                run.await.map(|()| t0.elapsed())
            }
        })
        .await
    }

    /// The same, for operations that time their measured part themselves (after unmeasured
    /// preparation).
    async fn measure_part<F, Fut>(
        &self,
        target: &str,
        operation: &str,
        mut op: F,
    ) -> anyhow::Result<Outcome>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Duration>>,
    {
        let mut errors = 0;
        let mut first_error = None;
        let mut fail = |e: anyhow::Error| {
            errors += 1;
            eprintln!("{target}: {e:#}");
            first_error.get_or_insert_with(|| format!("{e:#}"));
            if errors > self.max_errors {
                bail!(
                    "{target}: more than {} failed operations; stopping",
                    self.max_errors
                );
            }
            Ok(())
        };
        for _ in 0..self.warmup {
            if let Err(e) = op().await {
                fail(e)?;
            }
        }
        let mut samples = Vec::with_capacity(self.count);
        let started = Instant::now();
        for _ in 0..self.count {
            match op().await {
                Ok(took) => samples.push(took),
                Err(e) => fail(e)?,
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(Outcome {
            target: target.into(),
            operation: operation.into(),
            count: samples.len(),
            warmup: self.warmup,
            errors,
            first_error,
            seconds,
            latency: Latency::of(&mut samples),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        })
    }
}

// ---- api ----------------------------------------------------------------------------------------

/// The analyst's HTTPS client: one keep-alive connection, reused for every call.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let pem = std::fs::read(&args.ca)
            .with_context(|| format!("cannot read the CA {}", args.ca.display()))?;
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            http,
            url: args.url.trim_end_matches('/').to_string(),
            token: args.token.clone(),
        })
    }

    /// One call; any status other than `expect` is an error naming the API's answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> anyhow::Result<Value> {
        self.call_in(None, method, path, body, expect).await
    }

    /// The same, acting in `tenant` (a platform admin names it with `LR-Tenant`).
    async fn call_in(
        &self,
        tenant: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(tenant) = tenant {
            request = request.header("LR-Tenant", tenant);
        }
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
        if status != expect {
            bail!("{method} {path}: {status}: {text}");
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
    }

    async fn wait_online(&self, device: &str, node: u64, timeout: Duration) -> anyhow::Result<()> {
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
                        Some(d) if d["online"] == true && d["node"] == node => return Ok(()),
                        Some(d) => format!("device is {d}"),
                        None => "device not registered yet".to_string(),
                    }
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("{device} was not online through node {node} within {timeout:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Submits one command and long-polls it until it reaches a final state.
    async fn run_command(&self, session: &str, line: &str) -> anyhow::Result<()> {
        let submitted = self
            .call(
                Method::POST,
                &format!("/api/v1/sessions/{session}/commands"),
                Some(json!({ "command_line": line })),
                StatusCode::ACCEPTED,
            )
            .await?;
        let cid = submitted["command_id"]
            .as_str()
            .ok_or_else(|| anyhow!("no command_id in {submitted}"))?
            .to_string();
        let mut command = submitted;
        // Each poll waits up to 30 s; two polls without an answer mean something is stuck.
        for _ in 0..2 {
            if !matches!(command["state"].as_str(), Some("queued" | "running")) {
                break;
            }
            command = self
                .call(
                    Method::GET,
                    &format!("/api/v1/sessions/{session}/commands/{cid}?wait_ms={LONG_POLL_MS}"),
                    None,
                    StatusCode::OK,
                )
                .await?;
        }
        match command["state"].as_str() {
            Some("completed") => Ok(()),
            _ => bail!("command {cid} ({line}) ended as {command}"),
        }
    }
}

async fn bench_api(args: &ApiArgs) -> anyhow::Result<Outcome> {
    let api = Api::new(args)?;
    if let Some(node) = args.expect_node {
        let timeout = Duration::from_secs(args.online_timeout_secs.min(3600));
        api.wait_online(&args.device, node, timeout).await?;
    }
    let opened = api
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({ "device": args.device })),
            StatusCode::CREATED,
        )
        .await
        .context("opening the session")?;
    let session = opened["session_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no session_id in {opened}"))?
        .to_string();
    let device_node = args
        .expect_node
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    eprintln!(
        "api: session {session} held by node {} (API {}), device {} on node {device_node}",
        opened["node"], args.url, args.device
    );
    let operation = format!(
        "POST a command ({:?}), long-poll it until it is final",
        args.command_line
    );
    // The session is ended whatever happens to the run, Ctrl-C included.
    let outcome = tokio::select! {
        outcome = args.run.measure(&args.label, &operation, || api.run_command(&session, &args.command_line)) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let ended = api
        .call(
            Method::DELETE,
            &format!("/api/v1/sessions/{session}"),
            None,
            StatusCode::NO_CONTENT,
        )
        .await;
    let outcome = outcome?;
    ended.context("ending the session")?;
    Ok(outcome)
}

// ---- revocation ---------------------------------------------------------------------------------

/// Polls of one node for the refusal, at most this far apart.
const REVOCATION_POLL: Duration = Duration::from_millis(1);
/// Bound on one revocation reaching every node.
const REVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

async fn bench_revocation(args: &RevocationArgs) -> anyhow::Result<Outcome> {
    let client = |url: &str, token: &str| {
        Api::new(&ApiArgs {
            run: Run {
                count: 1,
                warmup: 0,
                max_errors: 0,
                json: false,
            },
            url: url.to_string(),
            ca: args.ca.clone(),
            token: token.to_string(),
            device: String::new(),
            command_line: String::new(),
            expect_node: None,
            online_timeout_secs: 0,
            label: "api".into(),
        })
    };
    let admins = args
        .urls
        .iter()
        .map(|url| client(url, &args.admin_token))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tenant = args.tenant.clone();
    let operation = format!(
        "revoke a token through one node, until all {} refuse it",
        args.urls.len()
    );
    args.run
        .measure_part("revocation", &operation, || async {
            let admin = &admins[0];
            let created = admin
                .call_in(
                    tenant.as_deref(),
                    Method::POST,
                    "/api/v1/admin/tokens",
                    Some(json!({"user": args.user, "description": "revocation bench"})),
                    StatusCode::CREATED,
                )
                .await?;
            let token = created["token"].as_str().unwrap_or_default().to_string();
            let id = created["id"].as_str().unwrap_or_default().to_string();
            let users = args
                .urls
                .iter()
                .map(|url| client(url, &token))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for user in &users {
                until_status(user, StatusCode::OK).await?;
            }
            let t0 = Instant::now();
            admin
                .call_in(
                    tenant.as_deref(),
                    Method::DELETE,
                    &format!("/api/v1/admin/tokens/{id}"),
                    None,
                    StatusCode::OK,
                )
                .await?;
            for user in &users {
                until_status(user, StatusCode::UNAUTHORIZED).await?;
            }
            Ok(t0.elapsed())
        })
        .await
}

/// Asks `GET /api/v1/me` until it answers `status`.
async fn until_status(api: &Api, status: StatusCode) -> anyhow::Result<()> {
    let deadline = Instant::now() + REVOCATION_TIMEOUT;
    loop {
        if api
            .call(Method::GET, "/api/v1/me", None, status)
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer {status} within {REVOCATION_TIMEOUT:?}",
                api.url
            );
        }
        tokio::time::sleep(REVOCATION_POLL).await;
    }
}

// ---- nats ---------------------------------------------------------------------------------------

async fn bench_nats(args: &NatsArgs) -> anyhow::Result<Outcome> {
    let connect = || {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(args.ca.clone())
            .add_client_certificate(args.cert.clone(), args.key.clone())
            .request_timeout(Some(Duration::from_secs(10)))
            .connection_timeout(Duration::from_secs(5))
            .connect(args.url.as_str())
    };
    // Two connections, as two broker processes would have.
    let responder = connect()
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let requester = connect()
        .await
        .with_context(|| format!("connecting to {}", args.url))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // Under `lr.>`, the only plain subjects a broker's credentials may use.
    let subject = format!("lr.bench.rtt.{}.{nanos}", std::process::id());
    let mut requests = responder.subscribe(subject.clone()).await?;
    responder.flush().await?;
    let reply: Bytes = vec![b'r'; args.payload_bytes].into();
    let echo = {
        let responder = responder.clone();
        tokio::spawn(async move {
            while let Some(message) = requests.next().await {
                if let Some(to) = message.reply
                    && let Err(e) = responder.publish(to, reply.clone()).await
                {
                    eprintln!("nats responder: {e}");
                }
            }
        })
    };
    let payload: Bytes = vec![b'q'; args.payload_bytes].into();
    let operation = format!(
        "request-reply of {} bytes each way, responder on another connection",
        args.payload_bytes
    );
    let outcome = args
        .run
        .measure("nats", &operation, || async {
            let answer = requester.request(subject.clone(), payload.clone()).await?;
            if answer.payload.len() != args.payload_bytes {
                bail!("reply of {} bytes", answer.payload.len());
            }
            Ok(())
        })
        .await;
    echo.abort();
    outcome
}

// ---- ssh ----------------------------------------------------------------------------------------

async fn bench_ssh(args: &SshArgs) -> anyhow::Result<Outcome> {
    let timeout = Duration::from_secs(args.timeout_secs.clamp(1, 600));
    let (program, rest) = args
        .argv
        .split_first()
        .ok_or_else(|| anyhow!("no program to run"))?;
    let operation = format!("run `{}` to completion", args.argv.join(" "));
    args.run
        .measure("ssh", &operation, || async {
            let run = tokio::process::Command::new(program)
                .args(rest)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(timeout, run)
                .await
                .map_err(|_| anyhow!("{program} did not finish within {timeout:?}"))?
                .with_context(|| format!("cannot run {program}"))?;
            if !output.status.success() {
                bail!(
                    "{program} exited with {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            Ok(())
        })
        .await
}

// ---- output -------------------------------------------------------------------------------------

fn print_header() {
    println!(
        "{:<10} {:>6} {:>6} | {:>9} {:>9} {:>9} {:>9}",
        "target", "count", "errors", "p50 ms", "p99 ms", "max ms", "mean ms"
    );
}

fn print_row(o: &Outcome) {
    println!(
        "{:<10} {:>6} {:>6} | {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        o.target,
        o.count,
        o.errors,
        o.latency.p50_ms,
        o.latency.p99_ms,
        o.latency.max_ms,
        o.latency.mean_ms
    );
    if let Some(error) = &o.first_error {
        println!("  first error: {error}");
    }
}

fn compare(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut outcomes = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let outcome: Outcome = serde_json::from_str(line)
                .with_context(|| format!("{} holds a line that is not a result", path.display()))?;
            outcomes.push(outcome);
        }
    }
    print_header();
    for o in &outcomes {
        print_row(o);
    }
    let find = |target: &str| outcomes.iter().find(|o| o.target == target);
    let Some(api) = find("api") else {
        return Ok(());
    };
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!();
    println!("{:<10} | {:>9} {:>9}", "ratio", "p50", "p99");
    for other in ["nats", "ssh"] {
        if let Some(o) = find(other) {
            println!(
                "{:<10} | {:>8.3}x {:>8.3}x",
                format!("api/{other}"),
                ratio(api.latency.p50_ms, o.latency.p50_ms),
                ratio(api.latency.p99_ms, o.latency.p99_ms)
            );
        }
    }
    // The same command with every process exporting its spans: what tracing costs.
    if let Some(traced) = find("api-traced") {
        println!(
            "{:<10} | {:>8.3}x {:>8.3}x",
            "traced/api",
            ratio(traced.latency.p50_ms, api.latency.p50_ms),
            ratio(traced.latency.p99_ms, api.latency.p99_ms)
        );
        println!(
            "{:<10} | {:>+8.3}ms {:>+8.3}ms",
            "overhead",
            traced.latency.p50_ms - api.latency.p50_ms,
            traced.latency.p99_ms - api.latency.p99_ms
        );
    }
    Ok(())
}
