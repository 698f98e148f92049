//! A real stack on loopback: one nats-server, N `lr-broker` processes (each with its own ports and
//! redb files), agents in-process, and an HTTPS client for the analyst API.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::{NatsServer, free_port};

pub const WAIT: Duration = Duration::from_secs(30);
pub const TENANT: &str = "demo";
/// Analysts and their tokens: three in `demo`, one in `acme`.
pub const ANALYSTS: [(&str, &str, &str); 4] = [
    ("demo", "analyst-a", "token-a"),
    ("demo", "analyst-b", "token-b"),
    ("acme", "analyst-c", "token-c"),
    ("demo", "analyst-d", "token-d"),
];

/// Creates the development certificates for `brokers` brokers in `certs` and starts nats-server
/// the way a deployment does: TLS, brokers' certificates mapped to users, broker permissions.
pub fn secure_nats(certs: &Path, brokers: u64) -> NatsServer {
    broker::dev::certs(certs, CLUSTER, brokers).unwrap();
    NatsServer::start_with(|listen, store| {
        broker::dev::nats_config(
            certs,
            CLUSTER,
            brokers,
            listen,
            store,
            broker::nats::DEFAULT_SYNC,
        )
        .unwrap()
    })
}

/// Connects to `nats` as broker `node` of the certificates in `certs`.
pub async fn connect_as_broker(nats: &NatsServer, certs: &Path, node: u64) -> async_nats::Client {
    broker::nats::connect(
        &nats.url(),
        format!("test-as-broker-{node}"),
        &broker::dev::broker_tls(certs, node),
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\nnats-server log:\n{}", nats.log()))
}

/// The cluster name of test stacks (the brokers' default).
pub const CLUSTER: &str = "local";

pub struct Broker {
    pub child: Option<Child>,
    pub config: PathBuf,
    pub api_port: u16,
    pub agent_port: u16,
    pub raft_port: u16,
    /// Where the broker serves `/metrics` (plain HTTP).
    pub metrics_port: u16,
}

/// Stacks running at once in one test binary: each is a nats-server and three broker processes,
/// and more than two at a time starve a 2-core machine into missed elections.
static STACKS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(2)));

pub struct Stack {
    _turn: tokio::sync::OwnedSemaphorePermit,
    pub dir: TempDir,
    pub nats: NatsServer,
    pub certs: PathBuf,
    pub brokers: BTreeMap<u64, Broker>,
    pub http: reqwest::Client,
    /// The authority keys agents started from now on trust (`ed25519:<hex>`): the stack's own.
    pub trusted_keys: Vec<String>,
    /// The tags agents started from now on carry.
    pub agent_tags: Vec<String>,
    /// Proxies in front of some brokers' Raft listeners ([`Stack::start_fronted`]).
    pub raft_fronts: BTreeMap<u64, testkit::TcpProxy>,
    /// Environment every broker process is started with.
    pub broker_env: Vec<(String, String)>,
    agents: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Stack {
    /// Starts nats-server and `n` brokers; `extra_toml` is appended to every broker's config,
    /// in its `[agents]` section (keys before any header set agent settings).
    pub async fn start(n: u64, extra_toml: &str) -> Self {
        Self::start_with_api(n, "", extra_toml).await
    }

    /// The same, with `api_toml` in every broker's `[api]` section.
    pub async fn start_with_api(n: u64, api_toml: &str, extra_toml: &str) -> Self {
        Self::start_full(n, api_toml, extra_toml, &[], &[]).await
    }

    /// The same, with `env` in every broker process's environment (now and at restarts).
    pub async fn start_with(
        n: u64,
        api_toml: &str,
        extra_toml: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_full(n, api_toml, extra_toml, env, &[]).await
    }

    /// The same, with the Raft listeners of the `fronted` brokers behind a [`testkit::TcpProxy`]
    /// each (in [`Stack::raft_fronts`]): every member reaches them through it, so cutting it
    /// leaves such a node hearing nothing from the Raft group while it still reaches the others
    /// and NATS.
    pub async fn start_fronted(n: u64, api_toml: &str, extra_toml: &str, fronted: &[u64]) -> Self {
        Self::start_full(n, api_toml, extra_toml, &[], fronted).await
    }

    async fn start_full(
        n: u64,
        api_toml: &str,
        extra_toml: &str,
        env: &[(&str, &str)],
        fronted: &[u64],
    ) -> Self {
        testkit::init_tracing();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let turn = STACKS
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let nats = secure_nats(&certs, n);
        let raft_ports: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        // A fronted node's proxy listens on 127.0.0.2 with the node's own port (a member's
        // entry must name the port it listens on), so its certificate names that address too.
        let raft_fronts: BTreeMap<u64, testkit::TcpProxy> = fronted
            .iter()
            .map(|id| {
                let identity = pki::BrokerIdentity::new(CLUSTER, *id).unwrap();
                pki::ensure_ca(&certs, pki::CaRole::Cluster)
                    .unwrap()
                    .issue_broker(&certs, &identity, &["127.0.0.2".to_string()])
                    .unwrap();
                let port = raft_ports[id];
                let front = testkit::TcpProxy::start_at(
                    std::net::SocketAddr::from(([127, 0, 0, 2], port)),
                    std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                );
                (*id, front)
            })
            .collect();
        let members: Vec<String> = raft_ports
            .iter()
            .map(|(id, port)| match raft_fronts.get(id) {
                Some(front) => format!("{{ id = {id}, addr = \"{}\" }}", front.addr()),
                None => format!("{{ id = {id}, addr = \"127.0.0.1:{port}\" }}"),
            })
            .collect();
        let tokens: Vec<String> = ANALYSTS
            .iter()
            .map(|(tenant, user, token)| {
                format!(
                    "{{ tenant = \"{tenant}\", user = \"{user}\", token_sha256 = \"{}\" }}",
                    broker::api::sha256_hex(token)
                )
            })
            .collect();
        let mut brokers = BTreeMap::new();
        for id in 1..=n {
            let (api_port, agent_port, metrics_port) = (free_port(), free_port(), free_port());
            let config = dir.path().join(format!("broker-{id}.toml"));
            let toml = format!(
                r#"node_id = {id}
data_dir = "{data}"
nats_url = "{nats}"

[raft]
listen = "127.0.0.1:{raft}"
members = [{members}]
authority_key = "{authority_key}"

[api]
listen = "127.0.0.1:{api_port}"
tokens = [{tokens}]
{api_toml}

[tls]
cluster_ca = "{cluster_ca}"
agent_ca = "{agent_ca}"
agent_ca_key = "{agent_ca_key}"
cert = "{cert}"
key = "{key}"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[agents]
listen = "127.0.0.1:{agent_port}"
heartbeat_interval_ms = 300
{extra_toml}
"#,
                data = dir.path().join(format!("broker-{id}")).display(),
                nats = nats.url(),
                raft = raft_ports[&id],
                members = members.join(", "),
                tokens = tokens.join(", "),
                cluster_ca = certs.join("cluster-ca.pem").display(),
                agent_ca = certs.join("agent-ca.pem").display(),
                agent_ca_key = certs.join("agent-ca.key").display(),
                cert = certs.join(format!("broker-{id}.pem")).display(),
                key = certs.join(format!("broker-{id}.key")).display(),
                authority_key = certs.join(pki::AUTHORITY_KEY_FILE).display(),
            );
            std::fs::write(&config, toml).unwrap();
            brokers.insert(
                id,
                Broker {
                    child: None,
                    config,
                    api_port,
                    agent_port,
                    raft_port: raft_ports[&id],
                    metrics_port,
                },
            );
        }
        let ca_pem = std::fs::read(certs.join("cluster-ca.pem")).unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let public =
            std::fs::read_to_string(certs.join(broker::dev::AUTHORITY_PUBLIC_FILE)).unwrap();
        let mut stack = Stack {
            _turn: turn,
            dir,
            nats,
            certs,
            brokers,
            http,
            trusted_keys: vec![public.trim().to_string()],
            agent_tags: Vec::new(),
            raft_fronts,
            broker_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            agents: Vec::new(),
        };
        for id in 1..=n {
            stack.spawn_broker(id);
        }
        for id in 1..=n {
            stack.wait_healthy(id).await;
        }
        stack
    }

    pub fn spawn_broker(&mut self, id: u64) {
        self.spawn_broker_with_env(id, &[]);
    }

    /// The same, with extra environment variables (such as `LR_LOG_FORMAT`).
    pub fn spawn_broker_with_env(&mut self, id: u64, env: &[(&str, &str)]) {
        let broker = self.brokers.get_mut(&id).unwrap();
        let log = std::fs::File::create(broker.config.with_extension("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lr-broker"))
            .args(["run", "--config"])
            .arg(&broker.config)
            .env("LR_LOG", "info,openraft=warn")
            .envs(self.broker_env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        broker.child = Some(child);
    }

    /// Kills a broker process with SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.brokers.get_mut(&id).unwrap().child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn wait_healthy(&self, id: u64) {
        let url = format!("{}/healthz", self.url(id));
        let ok = testkit::wait_until(WAIT, || {
            let request = self.http.get(&url).send();
            async move {
                match request.await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .map(|v| v["ok"] == true)
                        .unwrap_or(false),
                    Err(_) => false,
                }
            }
        })
        .await;
        if !ok {
            let log = self.log(id);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            panic!("broker {id} did not become healthy within {WAIT:?}; its log ends:\n{tail}");
        }
    }

    pub fn url(&self, id: u64) -> String {
        format!("https://localhost:{}", self.brokers[&id].api_port)
    }

    /// Calls the API of broker `id` as the analyst holding `token`.
    pub async fn call(
        &self,
        id: u64,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_in(id, token, None, method, path, body).await
    }

    /// The same, naming the tenant to act in (what a platform admin does).
    pub async fn call_in(
        &self,
        id: u64,
        token: &str,
        tenant: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url(id)))
            .bearer_auth(token);
        if let Some(tenant) = tenant {
            request = request.header("LR-Tenant", tenant);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log(id)));
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs `body` with an `Idempotency-Key` header.
    pub async fn call_with_key(
        &self,
        id: u64,
        token: &str,
        path: &str,
        body: Value,
        key: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.url(id)))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs `path` without a token and answers its body as text.
    pub async fn get_text(&self, id: u64, path: &str) -> (StatusCode, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.url(id)))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    pub async fn get(&self, id: u64, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(id, token, Method::GET, path, None).await
    }

    pub async fn post(
        &self,
        id: u64,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(id, token, Method::POST, path, body).await
    }

    pub async fn delete(&self, id: u64, token: &str, path: &str) -> (StatusCode, Value) {
        self.call(id, token, Method::DELETE, path, None).await
    }

    /// Opens a session; returns (status, body).
    pub async fn open(&self, id: u64, token: &str, device: &str) -> (StatusCode, Value) {
        self.call(
            id,
            token,
            Method::POST,
            "/api/v1/sessions",
            Some(json!({ "device": device })),
        )
        .await
    }

    /// Long-polls transfer `id` through broker `node` until it is final; its view.
    pub async fn transfer_finished(&self, node: u64, token: &str, id: &str) -> Value {
        for _ in 0..120 {
            let (status, view) = self
                .get(node, token, &format!("/api/v1/transfers/{id}?wait_ms=2000"))
                .await;
            if status == StatusCode::OK
                && matches!(
                    view["state"].as_str(),
                    Some("completed" | "failed" | "cancelled")
                )
            {
                return view;
            }
        }
        panic!("transfer {id} did not finish");
    }

    /// Runs a command line in a session and waits for its final state.
    pub async fn run(&self, id: u64, token: &str, session: &str, line: &str) -> Value {
        let (status, submitted) = self
            .call(
                id,
                token,
                Method::POST,
                &format!("/api/v1/sessions/{session}/commands"),
                Some(json!({ "command_line": line })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
        let cid = submitted["command_id"].as_str().unwrap().to_string();
        for _ in 0..10 {
            let (status, command) = self
                .call(
                    id,
                    token,
                    Method::GET,
                    &format!("/api/v1/sessions/{session}/commands/{cid}?wait_ms=10000"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{command}");
            if !matches!(command["state"].as_str(), Some("queued" | "running")) {
                return command;
            }
        }
        panic!("command {line} did not finish");
    }

    /// The bootstrap file of the broker that bootstrapped the directory, and the platform
    /// admin's token in it.
    pub async fn admin_token(&self) -> (PathBuf, String) {
        let files: Vec<PathBuf> = self
            .brokers
            .keys()
            .map(|id| {
                self.dir
                    .path()
                    .join(format!("broker-{id}"))
                    .join(broker::directory::BOOTSTRAP_TOKEN_FILE)
            })
            .collect();
        let mut found = None;
        let ok = testkit::wait_until(WAIT, || {
            found = files.iter().find(|f| f.is_file()).cloned();
            let done = found.is_some();
            async move { done }
        })
        .await;
        assert!(ok, "no broker wrote the bootstrap token");
        let file = found.unwrap();
        let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
        (file, token)
    }

    /// An enrolment token of `tenant` made by the platform admin; `body` as the API takes it.
    /// Answers the API's answer (`token`, `ca_fingerprint`, ...).
    pub async fn enrolment_token(&self, tenant: &str, body: Value) -> Value {
        let (_, admin) = self.admin_token().await;
        let (status, answer) = self
            .call_in(
                1,
                &admin,
                Some(tenant),
                Method::POST,
                "/api/v1/admin/enrolment-tokens",
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer
    }

    /// The options `lr-agent enroll` would be given to enrol `device` through broker `via` with
    /// `token`, writing under the device's own directory of this stack.
    pub fn enrol_options(
        &self,
        via: u64,
        token: &Value,
        device: &str,
    ) -> agent::enrol::EnrolOptions {
        let state_dir = self.dir.path().join(format!("agent-{device}"));
        agent::enrol::EnrolOptions {
            broker: format!("127.0.0.1:{}", self.brokers[&via].agent_port),
            token: token["token"].as_str().unwrap().to_string(),
            ca_fingerprint: token["ca_fingerprint"].as_str().unwrap().to_string(),
            device_id: device.to_string(),
            tenant: None,
            config: state_dir.join("agent.toml"),
            state_dir,
            server_name: Some("localhost".into()),
            tags: Vec::new(),
        }
    }

    /// Enrols `device` of `tenant` as a device does: a one-use token from the admin API, then
    /// what `lr-agent enroll` does, through broker `via`. Answers the configuration written.
    pub async fn enrol(&self, tenant: &str, device: &str, via: u64) -> agent::Config {
        let token = self.enrolment_token(tenant, json!({})).await;
        agent::enrol::enrol(&self.enrol_options(via, &token, device))
            .await
            .unwrap_or_else(|e| panic!("enrolling {device}: {e}"))
    }

    /// The certificate and key of an enrolled `device` of `tenant`.
    pub async fn agent_cert(&self, tenant: &str, device: &str) -> (PathBuf, PathBuf) {
        let config = self.enrol(tenant, device, 1).await;
        (config.tls.cert, config.tls.key)
    }

    /// The cluster CA: what agents and analysts check brokers' certificates against.
    pub fn ca_path(&self) -> PathBuf {
        self.certs.join("cluster-ca.pem")
    }

    /// A NATS client with broker `node`'s credentials, for tests that look at the bus directly.
    pub async fn nats_as_broker(&self, node: u64) -> async_nats::Client {
        connect_as_broker(&self.nats, &self.certs, node).await
    }

    pub fn agent_ports(&self) -> Vec<u16> {
        self.brokers.values().map(|b| b.agent_port).collect()
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.brokers[&id].config.with_extension("log")).unwrap_or_default()
    }

    /// Enrols `device_in_cert` of `tenant` through the first of `brokers`, then starts an agent
    /// in this process calling itself `device` (a test may make it claim another device than
    /// its certificate's), dialling the given brokers in order. Answers its state directory.
    pub async fn start_agent(
        &mut self,
        tenant: &str,
        device: &str,
        device_in_cert: &str,
        brokers: &[u64],
    ) -> PathBuf {
        self.start_agent_on(tenant, device, device_in_cert, brokers, Path::new("/"))
            .await
    }

    /// The same, with the agent reading configuration files (cron, keys, units) under `system_root`.
    pub async fn start_agent_on(
        &mut self,
        tenant: &str,
        device: &str,
        device_in_cert: &str,
        brokers: &[u64],
        system_root: &Path,
    ) -> PathBuf {
        let enrolled = self.enrol(tenant, device_in_cert, brokers[0]).await;
        let state_dir = self.dir.path().join(format!("agent-{device}"));
        let config = agent::Config {
            device_id: device.into(),
            brokers: brokers
                .iter()
                .map(|id| format!("127.0.0.1:{}", self.brokers[id].agent_port))
                .collect(),
            state_dir: state_dir.clone(),
            authority_keys: self.trusted_keys.clone(),
            tags: self.agent_tags.clone(),
            system_root: system_root.to_path_buf(),
            connection: agent::config::ConnectionConfig {
                backoff_initial_ms: 50,
                backoff_max_ms: 500,
                ..Default::default()
            },
            ..enrolled
        };
        self.run_agent(config);
        state_dir
    }

    /// Runs an agent with `config` in this process until the stack is dropped.
    pub fn run_agent(&mut self, config: agent::Config) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(error) = agent::run(config, async {
                let _ = stopped.await;
            })
            .await
            {
                tracing::error!(%error, "agent stopped");
            }
        });
        self.agents.push(stop);
    }

    /// Stops the agent started last, as a stopped agent process goes.
    pub fn stop_last_agent(&mut self) {
        if let Some(stop) = self.agents.pop() {
            let _ = stop.send(());
        }
    }

    /// Waits until `device` is online through broker `via` (any broker when None).
    pub async fn wait_online(&self, token: &str, device: &str, via: Option<u64>) {
        self.wait_online_ask(1, token, device, via).await;
    }

    /// The same, asking broker `ask` (when broker 1 may be down).
    pub async fn wait_online_via(&self, ask: u64, token: &str, device: &str, via: u64) {
        self.wait_online_ask(ask, token, device, Some(via)).await;
    }

    async fn wait_online_ask(&self, ask: u64, token: &str, device: &str, via: Option<u64>) {
        let online = testkit::wait_until(WAIT, || async {
            let (_, devices) = self
                .call(ask, token, Method::GET, "/api/v1/devices", None)
                .await;
            devices["items"].as_array().is_some_and(|list| {
                list.iter().any(|d| {
                    d["device"] == device
                        && d["online"] == true
                        && via.is_none_or(|id| d["node"] == id)
                })
            })
        })
        .await;
        assert!(online, "device {device} did not come online (via {via:?})");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.brokers.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        for stop in self.agents.drain(..) {
            let _ = stop.send(());
        }
        // Brokers' NATS permissions must cover everything brokers do: a refusal here is a
        // missing permission, which would otherwise only show as a stall.
        let log = self.nats.log();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("Publish Violation") || l.contains("Subscription Violation"))
            .collect();
        if !refused.is_empty() && !std::thread::panicking() {
            panic!(
                "nats-server refused brokers:\n{}",
                refused[..refused.len().min(10)].join("\n")
            );
        }
    }
}
