//! Broker configuration: a TOML file, then `LR_*` environment variables, then flags; validated once.
//!
//! Environment keys nest with `__`: `LR_API__LISTEN=127.0.0.1:7601`, `LR_NODE_ID=2`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// This node's certificate must carry `lr-broker://<cluster_name>/<node_id>`; so must every
    /// Raft peer's and every NATS user's.
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    pub node_id: u64,
    /// Raft files live under `<data_dir>/raft`.
    pub data_dir: PathBuf,
    pub nats_url: String,
    pub raft: RaftSection,
    pub agents: AgentsSection,
    pub api: ApiSection,
    pub tls: TlsSection,
    #[serde(default)]
    pub sessions: SessionsSection,
    #[serde(default)]
    pub transfers: TransfersSection,
    #[serde(default)]
    pub audit: crate::audit::AuditSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub tracing: TracingSection,
    /// Session limits per tenant, written to the replicated state at start; tenants not listed
    /// keep the defaults (10 per tenant, 1 per user).
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSection>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    #[serde(default = "default_sessions_per_tenant")]
    pub max_sessions_per_tenant: u32,
    #[serde(default = "default_sessions_per_user")]
    pub max_sessions_per_user: u32,
    /// Overrides `transfers.max_getfile_bytes` for this tenant.
    #[serde(default)]
    pub max_getfile_bytes: Option<u64>,
    /// Overrides `transfers.max_tenant_store_bytes` for this tenant.
    #[serde(default)]
    pub max_store_bytes: Option<u64>,
    /// Overrides `audit.retention_days` for this tenant.
    #[serde(default)]
    pub audit_retention_days: Option<f64>,
}

/// File transfers and the library.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransfersSection {
    /// Bytes per chunk: every chunk is one JetStream message (nats-server's max_payload must
    /// carry it) and one gRPC message.
    pub chunk_size: u32,
    /// Chunks in flight per transfer.
    pub window_chunks: u32,
    /// Largest file getfile fetches, unless the tenant says otherwise (3 GB, as in the seed).
    pub max_getfile_bytes: u64,
    /// Largest library file (250 MB, as in the seed).
    pub max_library_file_bytes: u64,
    /// Most bytes the chunk stream holds, for all tenants (none: as much as nats-server's store).
    /// Set it below the server's `max_file_store`, so that chunks cannot crowd out the device
    /// registry, transfer records and audit log: past it, chunks are refused.
    pub max_store_bytes: Option<u64>,
    /// What one tenant's fetched files and library may hold in the store together (100 GB),
    /// unless the tenant says otherwise: checked before a getfile starts or an upload is stored.
    pub max_tenant_store_bytes: u64,
    /// JetStream replicas of chunks and transfer records: 1 for one NATS server, 3 for a cluster.
    pub replicas: usize,
    /// How long a finished transfer stays, for its analyst to download or look at; then its
    /// record and a getfile's stored file are deleted.
    pub retention_secs: u64,
    /// A transfer that moves no chunk forward for this long (its device away, its source gone,
    /// the store refusing) ends failed, saying what stood in its way.
    pub max_stall_secs: u64,
    /// A transfer whose chunks the store refuses as full for this long ends failed, saying so,
    /// and frees what it stored: sooner than a stall, as waiting rarely empties a store (the
    /// stall limit still applies when it is the shorter).
    pub max_store_full_secs: u64,
}

impl Default for TransfersSection {
    fn default() -> Self {
        Self {
            chunk_size: 1024 * 1024,
            window_chunks: 16,
            max_getfile_bytes: 3_000_000_000,
            max_library_file_bytes: 250_000_000,
            max_store_bytes: None,
            max_tenant_store_bytes: 100_000_000_000,
            replicas: 1,
            retention_secs: 3 * 24 * 3600,
            max_stall_secs: 600,
            max_store_full_secs: 30,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    pub listen: SocketAddr,
    /// Every initial voter, this node included.
    pub members: Vec<Member>,
    #[serde(default)]
    pub join: bool,
    /// The largest Raft RPC message sent or accepted.
    #[serde(default = "default_raft_message_bytes")]
    pub max_message_bytes: usize,
    /// The lease authority's signing key (Ed25519, PKCS#8 PEM): whichever voter leads signs every
    /// session's grant with it, so every voter holds the same key. `lr-broker dev-certs` writes
    /// one as `authority.key`.
    pub authority_key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: u64,
    pub addr: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsSection {
    pub listen: SocketAddr,
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_interval_ms: u32,
    /// The largest gRPC message an agent may send or be sent: a transfer chunk with its
    /// envelope, or a command's output.
    #[serde(default = "default_agent_message_bytes")]
    pub max_message_bytes: usize,
    /// How long a certificate issued at enrolment or renewal is valid (default 30 days); agents
    /// renew it when two thirds of it have passed.
    #[serde(default = "default_certificate_lifetime_secs")]
    pub certificate_lifetime_secs: u64,
    /// The lease authority's public keys (`ed25519:<hex>`) enrolling devices are told to trust;
    /// empty: this node's own authority key. List the old and the new key while rotating it.
    #[serde(default)]
    pub authority_keys: Vec<String>,
}

impl AgentsSection {
    pub fn certificate_lifetime(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.certificate_lifetime_secs)
    }
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics` is served over plain HTTP; none when absent. Keep it on a private
    /// address: the metrics carry no ids, but say how busy the cluster is.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Traces: the spans along a command's path, exported over OTLP.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSection {
    /// An OTLP/gRPC collector, `http://host:port` (e.g. `http://127.0.0.1:4317`); spans are
    /// exported only when it is set. `OTEL_BSP_SCHEDULE_DELAY` (ms) and the other
    /// `OTEL_BSP_*` variables tune the batches.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub listen: SocketAddr,
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
    /// Connections served at once (4096). Past it, new ones wait in the kernel's listen backlog
    /// until one closes; keep it well below the process's file descriptor limit (`ulimit -n`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a new connection may take to finish its TLS handshake (10 s).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// How long a connection may take, once TLS is up or its last response is sent, to send a
    /// request's headers (30 s); so also how long an HTTP/1.1 connection may stay idle. HTTP/2:
    /// how long until its client preface.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
}

impl ApiSection {
    pub fn handshake_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.header_timeout_ms)
    }
}

fn default_max_connections() -> usize {
    4096
}

fn default_handshake_timeout_ms() -> u64 {
    10_000
}

fn default_header_timeout_ms() -> u64 {
    30_000
}

/// Bounds of the API's connection limits: a timeout shorter than 100 ms fails real clients on a
/// slow link, one longer than 5 minutes holds a slot for nothing.
const API_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=300_000;
const API_MAX_CONNECTIONS: std::ops::RangeInclusive<usize> = 1..=1_000_000;

/// An analyst's bearer token, stored as its SHA-256 so the config file holds no secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub tenant: String,
    pub user: String,
    pub token_sha256: String,
    /// The user's roles when imported (default: responder-basic, responder-advanced and
    /// library-manager, what every analyst could do before roles).
    #[serde(default)]
    pub roles: Option<Vec<access::Role>>,
}

/// PEM files. This node's certificate (from the cluster CA, identity
/// `lr-broker://<cluster_name>/<node_id>`) serves the agents' endpoint and the API, and is its
/// client certificate for Raft and NATS.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The cluster CA: the only root Raft peers and nats-server are trusted by.
    pub cluster_ca: PathBuf,
    /// The agent issuing CA: the only root agents' client certificates are trusted by.
    pub agent_ca: PathBuf,
    /// The issuing CA's private key: a node that holds it signs the certificates of devices
    /// enrolling or renewing through it; one without it refuses enrolments, saying so.
    #[serde(default)]
    pub agent_ca_key: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsSection {
    /// A session's lease lives this long without renewal; its actor renews it every third of it.
    pub lease_ttl_ms: u64,
    /// A session with no command for this long is ended.
    pub idle_timeout_ms: u64,
    /// Finished outputs a session holds in memory until the audit log stores them (then it
    /// holds their references). Past it, the oldest are let go; one the log then fails to store
    /// is lost, and its command says so.
    pub max_held_output_bytes: usize,
}

impl Default for SessionsSection {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 30_000,
            idle_timeout_ms: 30 * 60 * 1000,
            max_held_output_bytes: 64 * 1024 * 1024,
        }
    }
}

fn default_sessions_per_tenant() -> u32 {
    10
}

fn default_sessions_per_user() -> u32 {
    1
}

fn default_certificate_lifetime_secs() -> u64 {
    30 * 24 * 3_600
}

/// Agents renew at two thirds of a lifetime; much shorter, renewals would chase each other.
const MIN_CERTIFICATE_LIFETIME_SECS: u64 = 10;
/// What browsers accept of public certificates; a device certificate should not live longer.
const MAX_CERTIFICATE_LIFETIME_SECS: u64 = 397 * 24 * 3_600;

fn default_heartbeat_ms() -> u32 {
    5_000
}

fn default_cluster_name() -> String {
    "local".into()
}

fn default_raft_message_bytes() -> usize {
    cluster::node::DEFAULT_MAX_MESSAGE_BYTES
}

fn default_agent_message_bytes() -> usize {
    8 * 1024 * 1024
}

/// A configuration that cannot work, naming the bad key.
#[derive(Debug, thiserror::Error)]
#[error("invalid broker config: {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

/// Audit retention: at least a second (for tests), at most a century.
fn check_retention(key: &str, days: f64) -> Result<(), ConfigError> {
    if (1.0 / 86_400.0..=36_500.0).contains(&days) {
        Ok(())
    } else {
        Err(bad(
            key,
            "must be a number of days between 0.0000116 (a second) and 36500",
        ))
    }
}

fn bad(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Top-level keys, the only ones read from `LR_*` variables.
const KEYS: [&str; 14] = [
    "cluster_name",
    "node_id",
    "data_dir",
    "nats_url",
    "raft",
    "agents",
    "api",
    "tls",
    "sessions",
    "transfers",
    "audit",
    "tenants",
    "metrics",
    "tracing",
];

impl BrokerConfig {
    /// Reads the file (if given), then `LR_*` variables, then `overrides` (from flags).
    pub fn load(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(bad(
                    "--config",
                    format!("{} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        // Only this config's own keys: the console's and scripts' LR_* variables share the prefix.
        let env = Env::prefixed("LR_").filter(|key| {
            let top = key.as_str().split("__").next().unwrap_or_default();
            KEYS.iter().any(|k| top.eq_ignore_ascii_case(k))
        });
        figment = figment.merge(env.split("__"));
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, value));
        }
        let config: BrokerConfig = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            bad(
                if key.is_empty() { "config" } else { &key },
                e.kind.to_string(),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        ids::broker(&self.cluster_name).map_err(|e| bad("cluster_name", e.to_string()))?;
        self.cluster_config()
            .validate()
            .map_err(|e| bad(&format!("raft.{}", e.key), e.reason))?;
        if self.raft.authority_key.as_os_str().is_empty() {
            return Err(bad(
                "raft.authority_key",
                "must name the lease authority's key file (create one with `lr-broker dev-certs`)",
            ));
        }
        if !self.nats_url.starts_with("nats://") && !self.nats_url.starts_with("tls://") {
            return Err(bad(
                "nats_url",
                format!("{:?} is not a nats:// or tls:// url", self.nats_url),
            ));
        }
        if !API_MAX_CONNECTIONS.contains(&self.api.max_connections) {
            return Err(bad(
                "api.max_connections",
                "must be between 1 and 1000000, and below the file descriptor limit (ulimit -n)",
            ));
        }
        for (key, ms) in [
            ("api.handshake_timeout_ms", self.api.handshake_timeout_ms),
            ("api.header_timeout_ms", self.api.header_timeout_ms),
        ] {
            if !API_TIMEOUT_MS.contains(&ms) {
                return Err(bad(key, "must be between 100 and 300000 (5 minutes)"));
            }
        }
        for (i, token) in self.api.tokens.iter().enumerate() {
            let hex_ok = token.token_sha256.len() == 64
                && token.token_sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok {
                return Err(bad(
                    &format!("api.tokens[{i}].token_sha256"),
                    "must be 64 hex digits (sha256 of the token)",
                ));
            }
            ids::tenant(&token.tenant)
                .map_err(|e| bad(&format!("api.tokens[{i}].tenant"), e.to_string()))?;
            ids::user(&token.user)
                .map_err(|e| bad(&format!("api.tokens[{i}].user"), e.to_string()))?;
        }
        for (key, path) in [
            ("tls.cluster_ca", &self.tls.cluster_ca),
            ("tls.agent_ca", &self.tls.agent_ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if !path.is_file() {
                return Err(bad(
                    key,
                    format!(
                        "{} is not a readable file; create dev certificates with `lr-broker dev-certs`",
                        path.display()
                    ),
                ));
            }
        }
        if let Some(path) = &self.tls.agent_ca_key
            && !path.is_file()
        {
            return Err(bad(
                "tls.agent_ca_key",
                format!(
                    "{} is not a readable file; give the issuing ca's key, or leave the key out so this node issues no certificates",
                    path.display()
                ),
            ));
        }
        for (i, key) in self.agents.authority_keys.iter().enumerate() {
            key.parse::<grants::PublicKey>()
                .map_err(|e| bad(&format!("agents.authority_keys[{i}]"), e.to_string()))?;
        }
        if !(MIN_CERTIFICATE_LIFETIME_SECS..=MAX_CERTIFICATE_LIFETIME_SECS)
            .contains(&self.agents.certificate_lifetime_secs)
        {
            return Err(bad(
                "agents.certificate_lifetime_secs",
                format!(
                    "must be between {MIN_CERTIFICATE_LIFETIME_SECS} and {MAX_CERTIFICATE_LIFETIME_SECS} (397 days)"
                ),
            ));
        }
        let a = &self.audit;
        if !(1..=5).contains(&a.replicas) {
            return Err(bad("audit.replicas", "must be between 1 and 5"));
        }
        check_retention("audit.retention_days", a.retention_days)?;
        if !(1_000..=86_400_000).contains(&a.retention_interval_ms) {
            return Err(bad(
                "audit.retention_interval_ms",
                "must be between 1000 and 86400000 (a day)",
            ));
        }
        if !(100..=60_000).contains(&a.checkpoint_interval_ms) {
            return Err(bad(
                "audit.checkpoint_interval_ms",
                "must be between 100 and 60000",
            ));
        }
        let s = &self.sessions;
        if s.lease_ttl_ms < 1_000 || s.lease_ttl_ms > cluster::lease::MAX_TTL_MS {
            return Err(bad(
                "sessions.lease_ttl_ms",
                "must be between 1000 and 86400000",
            ));
        }
        if s.idle_timeout_ms == 0 {
            return Err(bad("sessions.idle_timeout_ms", "must be above 0"));
        }
        if s.max_held_output_bytes < self.agents.max_message_bytes {
            return Err(bad(
                "sessions.max_held_output_bytes",
                format!(
                    "{} is below agents.max_message_bytes ({}): a session must hold at least one whole result",
                    s.max_held_output_bytes, self.agents.max_message_bytes
                ),
            ));
        }
        for (tenant, limits) in &self.tenants {
            ids::tenant(tenant).map_err(|e| bad(&format!("tenants.{tenant}"), e.to_string()))?;
            if let Some(days) = limits.audit_retention_days {
                check_retention(&format!("tenants.{tenant}.audit_retention_days"), days)?;
            }
            let op = cluster::lease::LeaseOp::SetTenantLimits {
                tenant: tenant.clone(),
                limits: cluster::lease::TenantLimits {
                    max_sessions_per_tenant: limits.max_sessions_per_tenant,
                    max_sessions_per_user: limits.max_sessions_per_user,
                },
            };
            cluster::lease::validate(&op)
                .map_err(|e| bad(&format!("tenants.{tenant}"), e.to_string()))?;
        }
        let t = &self.transfers;
        if !(64 * 1024..=4 * 1024 * 1024 - 64 * 1024).contains(&t.chunk_size) {
            return Err(bad(
                "transfers.chunk_size",
                "must be between 65536 and 4128768 bytes",
            ));
        }
        if !(1..=64).contains(&t.window_chunks) {
            return Err(bad("transfers.window_chunks", "must be between 1 and 64"));
        }
        if !(1..=5).contains(&t.replicas) {
            return Err(bad("transfers.replicas", "must be between 1 and 5"));
        }
        if t.retention_secs == 0 {
            return Err(bad("transfers.retention_secs", "must be at least 1"));
        }
        if !(2..=7 * 24 * 3600).contains(&t.max_stall_secs) {
            return Err(bad(
                "transfers.max_stall_secs",
                "must be between 2 and 604800 (a week)",
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&t.max_store_full_secs) {
            return Err(bad(
                "transfers.max_store_full_secs",
                "must be between 1 and 604800 (a week)",
            ));
        }
        if let Some(listen) = self.metrics.listen {
            for (key, other) in [
                ("api.listen", self.api.listen),
                ("agents.listen", self.agents.listen),
                ("raft.listen", self.raft.listen),
            ] {
                if listen.port() != 0 && listen.port() == other.port() && listen.ip() == other.ip()
                {
                    return Err(bad(
                        "metrics.listen",
                        format!("{listen} is already {key}; give metrics a port of their own"),
                    ));
                }
            }
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            telemetry::check_endpoint(endpoint).map_err(|e| bad("tracing.otlp_endpoint", e))?;
        }
        if self.agents.heartbeat_interval_ms < 100 {
            return Err(bad("agents.heartbeat_interval_ms", "must be at least 100"));
        }
        let chunk_and_envelope = t.chunk_size as usize + 64 * 1024;
        if !(chunk_and_envelope..=256 * 1024 * 1024).contains(&self.agents.max_message_bytes) {
            return Err(bad(
                "agents.max_message_bytes",
                format!(
                    "must be between {chunk_and_envelope} (a transfer chunk and its envelope) and 268435456"
                ),
            ));
        }
        Ok(())
    }

    /// The cluster crate's view of this node (TLS material is read separately).
    pub fn cluster_config(&self) -> cluster::ClusterConfig {
        cluster::ClusterConfig {
            name: self.cluster_name.clone(),
            node_id: self.node_id,
            listen_addr: self.raft.listen,
            members: self
                .raft
                .members
                .iter()
                .map(|m| (m.id, m.addr.clone()))
                .collect(),
            join: self.raft.join,
            data_dir: self.data_dir.join("raft"),
            max_message_bytes: self.raft.max_message_bytes,
            ..cluster::ClusterConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"node_id = 1
data_dir = "/var/lib/lr-broker"
nats_url = "tls://127.0.0.1:4222"

[raft]
listen = "127.0.0.1:7001"
members = [
    { id = 1, addr = "127.0.0.1:7001" },
    { id = 2, addr = "127.0.0.1:7011" },
    { id = 3, addr = "127.0.0.1:7021" },
]
authority_key = "authority.key"

[agents]
listen = "127.0.0.1:7002"

[api]
listen = "127.0.0.1:7003"

[tls]
cluster_ca = "ca.pem"
agent_ca = "agent-ca.pem"
cert = "broker.pem"
key = "broker.key"
"#;

    fn load(extra: &str) -> Result<BrokerConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let mut text = MINIMAL.to_string();
        for name in [
            "authority.key",
            "ca.pem",
            "agent-ca.pem",
            "broker.pem",
            "broker.key",
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, "").unwrap();
            text = text.replace(
                &format!("\"{name}\""),
                &format!("{:?}", path.display().to_string()),
            );
        }
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, format!("{text}\n{extra}")).unwrap();
        BrokerConfig::load(Some(&file), &[])
    }

    #[test]
    fn metrics_listen_is_optional_and_checked() {
        assert_eq!(load("").unwrap().metrics.listen, None);
        let config = load("[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(
            config.metrics.listen,
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let error = load("[metrics]\nlisten = \"not an address\"\n").unwrap_err();
        assert_eq!(error.key, "metrics.listen");
        let error = load("[metrics]\nlisten = \"127.0.0.1:7003\"\n").unwrap_err();
        assert_eq!(error.key, "metrics.listen");
        assert!(error.reason.contains("api.listen"), "{}", error.reason);
    }

    #[test]
    fn otlp_endpoint_is_optional_and_checked() {
        assert_eq!(load("").unwrap().tracing.otlp_endpoint, None);
        let config = load("[tracing]\notlp_endpoint = \"http://127.0.0.1:4317\"\n").unwrap();
        assert_eq!(
            config.tracing.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4317")
        );
        for bad in [
            "127.0.0.1:4317",
            "https://collector:4317",
            "http://collector",
        ] {
            let error = load(&format!("[tracing]\notlp_endpoint = \"{bad}\"\n")).unwrap_err();
            assert_eq!(error.key, "tracing.otlp_endpoint", "{bad}");
        }
    }

    #[test]
    fn a_session_must_be_able_to_hold_one_whole_result() {
        let config = load("").unwrap();
        assert!(config.sessions.max_held_output_bytes >= config.agents.max_message_bytes);
        let error = load("[sessions]\nmax_held_output_bytes = 1000\n").unwrap_err();
        assert_eq!(error.key, "sessions.max_held_output_bytes");
        assert!(
            error.reason.contains("agents.max_message_bytes"),
            "{}",
            error.reason
        );
    }
}
