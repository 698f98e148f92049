//! The agent's configuration: plain data from a TOML file with flag overrides, validated once.
//!
//! ```toml
//! device_id = "web-07"
//! tenant = "demo"
//! brokers = ["10.0.0.1:7501", "10.0.0.2:7501"]
//! # the lease authority's public keys: orders are obeyed only under grants signed by one of them
//! # (usually one key; the old and the new one while the key is rotated)
//! authority_keys = ["ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"]
//! state_dir = "/var/lib/lr-agent"
//! system_root = "/"          # optional; where system state commands read /etc, /var, /home
//! work_dir = "/var/lib/lr-agent/work"   # optional; putfile's working folder, <state_dir>/work by default
//! held_result_bytes = 67108864   # optional; memory for finished results kept to answer re-sends
//!
//! [tls]
//! ca_cert = "/etc/lr-agent/cluster-ca.pem"   # the cluster CA, which signs brokers' certificates
//! cert = "/etc/lr-agent/agent.pem"
//! key = "/etc/lr-agent/agent.key"
//! server_name = "localhost"   # optional
//!
//! [connection]                # optional; defaults shown
//! connect_timeout_ms = 5000
//! welcome_timeout_ms = 10000
//! backoff_initial_ms = 100
//! backoff_max_ms = 5000
//! keepalive_interval_ms = 15000
//! max_message_bytes = 8388608
//!
//! [tracing]                   # optional
//! otlp_endpoint = "http://127.0.0.1:4317"   # export command spans to this OTLP/gRPC collector
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use grants::{GrantError, PublicKey, TrustedKeys};
use serde::{Deserialize, Serialize};

/// Most tags a device may carry.
pub const MAX_TAGS: usize = 32;

/// The largest `held_result_bytes`: more memory than an agent should ever take for re-sends.
const MAX_HELD_RESULT_BYTES: usize = 4 * 1024 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This device's id; must match the client certificate the broker sees.
    pub device_id: String,
    pub tenant: String,
    /// `host:port` of the brokers' agent endpoints, tried in turn.
    pub brokers: Vec<String>,
    /// The lease authority's public keys (`ed25519:<64 hex digits>`) this agent trusts: it obeys
    /// only orders whose grant one of them signed. Usually one; two while the key is rotated. See
    /// [`Config::trusted_keys`].
    pub authority_keys: Vec<String>,
    /// Where the fencing state lives; one directory per agent.
    pub state_dir: PathBuf,
    /// The directory system state commands (`services`, `scheduledtasks`, `startupfolders`,
    /// `persistence`) read `/etc`, `/var`, `/run`, `/lib` and homes under: "/" (the default) on a
    /// live device; a mounted disk image or a fixture tree otherwise. Live state (systemctl) is
    /// only queried when it is "/".
    #[serde(default = "default_system_root")]
    pub system_root: PathBuf,
    /// The working folder putfile writes files into (created with mode 0700 when first needed);
    /// `<state_dir>/work` when not set. See [`Config::work_dir`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<PathBuf>,
    /// Labels an administrator gives this device (ids: `A-Z a-z 0-9 _ -`, at most
    /// [`MAX_TAGS`]); device groups may select devices by tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// How many bytes of finished commands' results the agent keeps in memory to answer a request
    /// the broker sends again (after a reconnect or a broker failover); older results beyond it
    /// are let go, and a re-send of one is answered that its result is no longer held.
    #[serde(
        default = "default_held_result_bytes",
        skip_serializing_if = "is_default_held_result_bytes"
    )]
    pub held_result_bytes: usize,
    pub tls: TlsPaths,
    // Left out of a written config when it holds the defaults, so they can change with the agent.
    #[serde(default, skip_serializing_if = "ConnectionConfig::is_default")]
    pub connection: ConnectionConfig,
    #[serde(default, skip_serializing_if = "TracingConfig::is_default")]
    pub tracing: TracingConfig,
}

/// Traces: the agent's spans of the commands it is sent, exported over OTLP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// An OTLP/gRPC collector, `http://host:port`; spans are exported only when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

impl TracingConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_held_result_bytes() -> usize {
    crate::fencing::DEFAULT_HELD_RESULT_BYTES
}

fn is_default_held_result_bytes(bytes: &usize) -> bool {
    *bytes == default_held_result_bytes()
}

/// PEM files of the agent's mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The cluster CA: the only trust root (pinned).
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The name the broker's certificate must carry.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_system_root() -> PathBuf {
    PathBuf::from("/")
}

fn default_server_name() -> String {
    "localhost".into()
}

/// Timing of the connection to brokers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    pub connect_timeout_ms: u64,
    pub welcome_timeout_ms: u64,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// HTTP/2 pings: how a silently dead broker or network path is noticed.
    pub keepalive_interval_ms: u64,
    /// The largest gRPC message sent to or accepted from a broker (a putfile chunk and its
    /// envelope, a command's output).
    pub max_message_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 5_000,
            welcome_timeout_ms: 10_000,
            backoff_initial_ms: 100,
            backoff_max_ms: 5_000,
            keepalive_interval_ms: 15_000,
            max_message_bytes: 8 * 1024 * 1024,
        }
    }
}

impl ConnectionConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn welcome_timeout(&self) -> Duration {
        Duration::from_millis(self.welcome_timeout_ms)
    }

    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }
}

/// Values given as flags or environment; each replaces the file's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_keys: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "TlsOverrides::is_empty")]
    pub tls: TlsOverrides,
    #[serde(skip_serializing_if = "TracingOverrides::is_empty")]
    pub tracing: TracingOverrides,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TracingOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

impl TracingOverrides {
    fn is_empty(&self) -> bool {
        self.otlp_endpoint.is_none()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl TlsOverrides {
    fn is_empty(&self) -> bool {
        self.ca_cert.is_none()
            && self.cert.is_none()
            && self.key.is_none()
            && self.server_name.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file '{}': {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config: {0}")]
    Parse(String),
    #[error("bad config: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Reads `file` (when given), applies `overrides` and validates.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            figment = figment.merge(Toml::string(&text));
        }
        let config: Config = figment
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string().to_lowercase()))?;
        config.validate()?;
        Ok(config)
    }

    /// putfile's working folder: `work_dir`, or `<state_dir>/work` when it is not set.
    pub fn work_dir(&self) -> PathBuf {
        self.work_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("work"))
    }

    /// The authority keys, read: what [`Config::validate`] checks, naming the bad entry.
    pub fn trusted_keys(&self) -> Result<TrustedKeys, ConfigError> {
        if self.authority_keys.is_empty() {
            return Err(ConfigError::invalid(
                "authority_keys",
                "no key given; list the lease authority's public key as \"ed25519:<64 hex digits>\" (two while it is rotated): without one the agent can verify no order and obeys none",
            ));
        }
        let keys = self
            .authority_keys
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<PublicKey>().map_err(|e| {
                    let why = match e {
                        GrantError::BadPublicKey { why, .. } => why,
                        other => other.to_string(),
                    };
                    ConfigError::invalid(
                        format!("authority_keys[{i}]"),
                        format!(
                            "'{text}' is not an Ed25519 public key ({why}); copy the lease authority's public key, written ed25519:<64 hex digits>"
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedKeys::new(keys))
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ids::device(&self.device_id)
            .map_err(|e| ConfigError::invalid("device_id", e.to_string()))?;
        ids::tenant(&self.tenant).map_err(|e| ConfigError::invalid("tenant", e.to_string()))?;
        check_tags(&self.tags)?;
        if self.brokers.is_empty() {
            return Err(ConfigError::invalid(
                "brokers",
                "no broker given; list at least one host:port",
            ));
        }
        for (i, b) in self.brokers.iter().enumerate() {
            check_broker(b)
                .map_err(|reason| ConfigError::invalid(format!("brokers[{i}]"), reason))?;
        }
        self.trusted_keys()?;
        if self.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("state_dir", "must not be empty"));
        }
        if !self.system_root.is_absolute() {
            return Err(ConfigError::invalid(
                "system_root",
                format!(
                    "'{}' is not an absolute path; use \"/\" for this system",
                    self.system_root.display()
                ),
            ));
        }
        if let Some(dir) = &self.work_dir
            && !dir.is_absolute()
        {
            return Err(ConfigError::invalid(
                "work_dir",
                format!(
                    "'{}' is not an absolute path; give an absolute directory, or leave it out for <state_dir>/work",
                    dir.display()
                ),
            ));
        }
        for (key, path) in [
            ("tls.ca_cert", &self.tls.ca_cert),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::invalid(key, "must name a PEM file"));
            }
        }
        if self.tls.server_name.is_empty() {
            return Err(ConfigError::invalid("tls.server_name", "must not be empty"));
        }
        if self.held_result_bytes > MAX_HELD_RESULT_BYTES {
            return Err(ConfigError::invalid(
                "held_result_bytes",
                format!(
                    "{} is above {MAX_HELD_RESULT_BYTES} (4 GiB); results above the budget are only let go sooner, so a smaller value is safe",
                    self.held_result_bytes
                ),
            ));
        }
        let c = &self.connection;
        for (key, v) in [
            ("connection.connect_timeout_ms", c.connect_timeout_ms),
            ("connection.welcome_timeout_ms", c.welcome_timeout_ms),
            ("connection.backoff_initial_ms", c.backoff_initial_ms),
            ("connection.keepalive_interval_ms", c.keepalive_interval_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be above 0"));
            }
        }
        if !(1024 * 1024..=256 * 1024 * 1024).contains(&c.max_message_bytes) {
            return Err(ConfigError::invalid(
                "connection.max_message_bytes",
                "must be between 1048576 and 268435456",
            ));
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint {
            telemetry::check_endpoint(endpoint)
                .map_err(|e| ConfigError::invalid("tracing.otlp_endpoint", e))?;
        }
        if c.backoff_max_ms < c.backoff_initial_ms {
            return Err(ConfigError::invalid(
                "connection.backoff_max_ms",
                format!(
                    "{} is below backoff_initial_ms ({})",
                    c.backoff_max_ms, c.backoff_initial_ms
                ),
            ));
        }
        Ok(())
    }
}

/// At most [`MAX_TAGS`] tags, each an id.
pub(crate) fn check_tags(tags: &[String]) -> Result<(), ConfigError> {
    if tags.len() > MAX_TAGS {
        return Err(ConfigError::invalid(
            "tags",
            format!("{} tags; at most {MAX_TAGS}", tags.len()),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        ids::tenant(tag).map_err(|e| ConfigError::invalid(format!("tags[{i}]"), e.to_string()))?;
    }
    Ok(())
}

/// A broker's `host:port`, without a scheme; an IPv6 address in brackets.
pub(crate) fn check_broker(b: &str) -> Result<(), String> {
    if b.contains("://") {
        return Err(format!("'{b}': give host:port without a scheme"));
    }
    let Some((host, port)) = b.rsplit_once(':') else {
        return Err(format!("'{b}' has no port; give host:port"));
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("'{b}' has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "'{b}': put an IPv6 address in brackets, e.g. [::1]:7501"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("'{b}' has a bad port '{port}'; use 1 to 65535")),
    }
}

#[cfg(test)]
mod tests;
