//! `lr-agent enroll`: how a device joins. It makes its own key (which never leaves it) and a
//! certificate request, dials a broker over TLS trusting only the CA whose fingerprint the
//! operator gave ([`pin`]), sends the enrolment token and the request, checks what comes back,
//! and writes the key, the certificates and the agent's config.
//!
//! ```text
//! enrol ─► options checked ─► pki::new_request ─► TLS, CA pinned ─► Enrolment.Enrol
//!       ─► reply checked ─► <state_dir>/tls/{agent.key, agent.pem, cluster-ca.pem, agent-ca.pem}
//!       ─► config (0600) ─► loaded back
//! ```
//!
//! Nothing is written unless every check passed; the config is written last, so an interrupted
//! enrolment leaves no config naming files that are not there.

mod pin;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_proto::agent::enrolment_client::EnrolmentClient;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::{self, Config, ConnectionConfig, Overrides, TlsPaths};
use crate::connection::chain;
use crate::convert;
use crate::credentials;
use pin::{Distrust, PinnedCa};

/// Where `lr-agent enroll` puts the agent's state and TLS files unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/lr-agent";
/// Where `lr-agent enroll` writes the agent's config unless told otherwise.
pub const DEFAULT_CONFIG: &str = "/etc/lr-agent/agent.toml";
/// The whole exchange with the broker (dial, handshake, answer) takes at most this long.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What `lr-agent enroll` was asked to do.
#[derive(Clone)]
pub struct EnrolOptions {
    /// `host:port` of a broker's agent endpoint; it becomes the config's only broker.
    pub broker: String,
    /// The enrolment token `lr admin enrolment create` printed.
    pub token: String,
    /// SHA-256 of the cluster CA's certificate: 64 hex digits, in any case, optionally prefixed
    /// `sha256:` and with `:` between bytes.
    pub ca_fingerprint: String,
    /// This device's id (`lr-agent enroll` defaults it to [`hostname_device_id`]).
    pub device_id: String,
    /// The tenant the device expects to join; `None`: the token's.
    pub tenant: Option<String>,
    /// The agent's state directory; the TLS files go to its `tls/`.
    pub state_dir: PathBuf,
    /// Where the agent's config is written.
    pub config: PathBuf,
    /// The name the broker's certificate must carry; `None`: the host part of `broker`.
    pub server_name: Option<String>,
    /// The device's tags, written into the config.
    pub tags: Vec<String>,
}

impl fmt::Debug for EnrolOptions {
    // The token never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolOptions")
            .field("broker", &self.broker)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("device_id", &self.device_id)
            .field("tenant", &self.tenant)
            .field("state_dir", &self.state_dir)
            .field("config", &self.config)
            .field("server_name", &self.server_name)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

/// Why a device did not enrol. Only [`EnrolError::Write`] may leave files behind; `lr-agent
/// enroll` exits with 64 for [`EnrolError::Invalid`], 69 for [`EnrolError::Unreachable`] and 1
/// otherwise.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    /// An option is wrong; nothing was sent.
    #[error("--{option}: {reason}")]
    Invalid {
        option: &'static str,
        reason: String,
    },
    #[error(
        "cannot reach the broker at {broker}: {reason}; check --broker and the network, then run enroll again"
    )]
    Unreachable { broker: String, reason: String },
    #[error(
        "the broker at {broker} presented no CA with fingerprint {fingerprint}; check --ca-fingerprint, `lr admin enrolment create` prints it"
    )]
    CaNotPresented { broker: String, fingerprint: String },
    #[error(
        "the broker at {broker} presented a certificate its pinned CA does not vouch for: {reason}; check --server-name (a name in the broker's certificate) and this machine's clock"
    )]
    BrokerCertificate { broker: String, reason: String },
    #[error("the broker at {broker} refused the enrolment: {message}; {}", refusal_hint(*.code))]
    Refused {
        broker: String,
        code: tonic::Code,
        message: String,
    },
    #[error(
        "the broker at {broker} answered the enrolment with {reason}; nothing was written; report this to the broker's administrator"
    )]
    BadReply { broker: String, reason: String },
    #[error(
        "cannot write the enrolment's files: {reason}; fix this and enrol again (with a new token if this one was for one use)"
    )]
    Write { reason: String },
    #[error("cannot make the device's key: {0}")]
    Key(String),
}

/// What to do about a broker's refusal, by its code.
fn refusal_hint(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Unauthenticated => {
            "check --token, or ask for a new one (`lr admin enrolment create`)"
        }
        tonic::Code::PermissionDenied => {
            "the token does not allow this device or tenant; check --device-id and --tenant, or ask for a token that does"
        }
        tonic::Code::InvalidArgument => "check --device-id and --tenant",
        tonic::Code::Unimplemented => "the broker does not offer enrolment; upgrade the brokers",
        _ => "ask the brokers' administrator",
    }
}

/// This machine's hostname, when it is a valid device id: `--device-id`'s default.
pub fn hostname_device_id() -> Result<String, EnrolError> {
    let host = crate::hostname();
    ids::device(&host).map_err(|e| EnrolError::Invalid {
        option: "device-id",
        reason: format!(
            "not given, and this machine's hostname cannot be a device id ({e}); give --device-id"
        ),
    })?;
    Ok(host)
}

/// The broker's answer to an enrolment, read.
#[derive(Debug)]
pub(crate) struct Enrolled {
    pub tenant: String,
    pub device_id: String,
    pub certificate_pem: String,
    /// The agent CA, which signed `certificate_pem`.
    pub issuing_ca_pem: String,
    /// The cluster CA, which signs brokers' certificates: the agent's trust root from now on.
    pub cluster_ca_pem: String,
    pub authority_keys: Vec<String>,
}

/// Enrols this device as `options` say and returns the agent's config, written and loaded back.
pub async fn enrol(options: &EnrolOptions) -> Result<Config, EnrolError> {
    let plan = Plan::new(options)?;
    let request = pki::new_request(&plan.device_id).map_err(|e| EnrolError::Key(e.to_string()))?;
    let enrolled = call(&plan, request.csr_der).await?;
    let bad_reply = |reason: String| EnrolError::BadReply {
        broker: plan.broker.clone(),
        reason,
    };
    check_reply(&plan, &request.key_pem, &enrolled).map_err(bad_reply)?;
    let config = plan.config(&enrolled);
    config
        .validate()
        .map_err(|e| bad_reply(format!("values the agent cannot use ({e})")))?;
    let text = format!(
        "# Written by `lr-agent enroll` for device {} of tenant {}. The agent renews the certificate\n# under {} while connected. Flags and LR_* variables override these values.\n{}",
        config.device_id,
        config.tenant,
        plan.state_dir.join("tls").display(),
        toml::to_string(&config).map_err(|e| EnrolError::Write {
            reason: format!("cannot write the config as TOML: {e}"),
        })?
    );
    let path = plan.config_path.clone();
    tokio::task::spawn_blocking(move || {
        write(&config, &path, &text, &enrolled, &request.key_pem)?;
        Config::load(Some(&path), Overrides::default())
            .and_then(|c| crate::check(&c).map(|_| c))
            .map_err(|e| EnrolError::Write {
                reason: format!("the written config does not load: {e}"),
            })
    })
    .await
    .map_err(|e| EnrolError::Write {
        reason: e.to_string(),
    })?
}

/// The options, checked, with their defaults filled in.
struct Plan {
    broker: String,
    token: String,
    fingerprint: String,
    device_id: String,
    tenant: Option<String>,
    server_name: String,
    state_dir: PathBuf,
    config_path: PathBuf,
    tags: Vec<String>,
}

impl Plan {
    fn new(o: &EnrolOptions) -> Result<Self, EnrolError> {
        let invalid = |option, reason: String| EnrolError::Invalid { option, reason };
        config::check_broker(&o.broker).map_err(|r| invalid("broker", r))?;
        if o.token.trim().is_empty() {
            return Err(invalid(
                "token",
                "missing; give the token `lr admin enrolment create` printed, best through LR_ENROL_TOKEN".into(),
            ));
        }
        let fingerprint =
            pin::parse_fingerprint(&o.ca_fingerprint).map_err(|r| invalid("ca-fingerprint", r))?;
        ids::device(&o.device_id).map_err(|e| invalid("device-id", e.to_string()))?;
        if let Some(t) = &o.tenant {
            ids::tenant(t).map_err(|e| invalid("tenant", e.to_string()))?;
        }
        config::check_tags(&o.tags).map_err(|e| invalid("tag", e.to_string()))?;
        let server_name = o
            .server_name
            .clone()
            .unwrap_or_else(|| host_of(&o.broker).to_owned());
        ServerName::try_from(server_name.as_str()).map_err(|e| {
            invalid(
                "server-name",
                format!("'{server_name}' is not a DNS name or IP address ({e})"),
            )
        })?;
        let absolute = |option, path: &Path| {
            std::path::absolute(path)
                .map_err(|e| invalid(option, format!("'{}': {e}", path.display())))
        };
        Ok(Self {
            broker: o.broker.clone(),
            token: o.token.trim().to_owned(),
            fingerprint,
            device_id: o.device_id.clone(),
            tenant: o.tenant.clone(),
            server_name,
            state_dir: absolute("state-dir", &o.state_dir)?,
            config_path: absolute("config", &o.config)?,
            tags: o.tags.clone(),
        })
    }

    /// The agent's config for what the broker answered.
    fn config(&self, enrolled: &Enrolled) -> Config {
        let tls = self.state_dir.join("tls");
        Config {
            device_id: self.device_id.clone(),
            tenant: enrolled.tenant.clone(),
            brokers: vec![self.broker.clone()],
            authority_keys: enrolled.authority_keys.clone(),
            state_dir: self.state_dir.clone(),
            system_root: PathBuf::from("/"),
            work_dir: None,
            tags: self.tags.clone(),
            held_result_bytes: crate::fencing::DEFAULT_HELD_RESULT_BYTES,
            tls: TlsPaths {
                ca_cert: tls.join("cluster-ca.pem"),
                cert: tls.join("agent.pem"),
                key: tls.join("agent.key"),
                server_name: self.server_name.clone(),
            },
            connection: ConnectionConfig::default(),
            tracing: Default::default(),
        }
    }
}

/// The host of a checked `host:port`, an IPv6 address without its brackets.
fn host_of(broker: &str) -> &str {
    let host = broker.rsplit_once(':').map_or(broker, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Dials the broker with the CA pinned and asks it to enrol the device.
async fn call(plan: &Plan, csr_der: Vec<u8>) -> Result<Enrolled, EnrolError> {
    let verifier = Arc::new(PinnedCa::new(&plan.fingerprint));
    let tls = Arc::clone(&verifier)
        .client_config()
        .map_err(|e| EnrolError::Unreachable {
            broker: plan.broker.clone(),
            reason: format!("cannot set up tls: {e}"),
        })?;
    let request = convert::enrol_request(
        &plan.token,
        &plan.device_id,
        csr_der,
        plan.tenant.as_deref(),
    );
    let answer = tokio::time::timeout(TIMEOUT, async {
        let channel = dial(&plan.broker, tls, &plan.server_name)
            .await
            .map_err(|e| tonic::Status::unavailable(chain(&e)))?;
        EnrolmentClient::new(channel).enrol(request).await
    })
    .await;
    // A refused handshake reaches here as a bare transport error; the verifier knows why.
    let broker = plan.broker.clone();
    match verifier.distrust() {
        Some(Distrust::NoPinnedCa) => {
            return Err(EnrolError::CaNotPresented {
                broker,
                fingerprint: plan.fingerprint.clone(),
            });
        }
        Some(Distrust::Leaf(reason)) => {
            return Err(EnrolError::BrokerCertificate { broker, reason });
        }
        None => {}
    }
    match answer {
        Ok(Ok(reply)) => Ok(convert::enrolled(reply.into_inner())),
        Err(_) => Err(EnrolError::Unreachable {
            broker,
            reason: format!("no answer within {}s", TIMEOUT.as_secs()),
        }),
        Ok(Err(status)) => match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Err(EnrolError::Unreachable {
                    broker,
                    reason: status.message().to_owned(),
                })
            }
            code => Err(EnrolError::Refused {
                broker,
                code,
                message: status.message().to_owned(),
            }),
        },
    }
}

/// A channel over TLS this crate sets up (the pinned CA), so the endpoint is `http://`: tonic
/// adds no TLS of its own.
async fn dial(
    broker: &str,
    tls: rustls::ClientConfig,
    server_name: &str,
) -> Result<Channel, tonic::transport::Error> {
    let connector = TlsConnector::from(Arc::new(tls));
    let (addr, name) = (broker.to_owned(), server_name.to_owned());
    let connect = tower::service_fn(move |_: Uri| {
        let (connector, addr, name) = (connector.clone(), addr.clone(), name.clone());
        async move {
            let name = ServerName::try_from(name)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tcp = TcpStream::connect(addr.as_str()).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Endpoint::from_shared(format!("http://{broker}"))?
        .connect_timeout(TIMEOUT)
        .connect_with_connector(connect)
        .await
}

/// Checks the reply against what was asked and pinned.
fn check_reply(plan: &Plan, key_pem: &str, e: &Enrolled) -> Result<(), String> {
    if e.device_id != plan.device_id {
        return Err(format!(
            "a certificate for device '{}', not '{}'",
            e.device_id, plan.device_id
        ));
    }
    if let Some(tenant) = &plan.tenant
        && e.tenant != *tenant
    {
        return Err(format!(
            "tenant '{}', not '{tenant}' as --tenant asked",
            e.tenant
        ));
    }
    let cluster_ca = pki::pem_to_der(&e.cluster_ca_pem)
        .map_err(|err| format!("a cluster ca that is not a certificate ({err})"))?;
    let fingerprint = pki::fingerprint(&cluster_ca);
    if fingerprint != plan.fingerprint {
        return Err(format!(
            "a cluster ca with fingerprint {fingerprint}, not the pinned {}",
            plan.fingerprint
        ));
    }
    pki::pem_to_der(&e.issuing_ca_pem)
        .map_err(|err| format!("an issuing ca that is not a certificate ({err})"))?;
    credentials::check_issued(
        &e.certificate_pem,
        key_pem,
        &e.tenant,
        &plan.device_id,
        now_ms(),
    )
    .map(drop)
}

/// Writes the TLS files under `config.tls` and the config at `path`, last. Blocking.
fn write(
    config: &Config,
    path: &Path,
    text: &str,
    e: &Enrolled,
    key_pem: &str,
) -> Result<(), EnrolError> {
    let failed = |e: &dyn fmt::Display| EnrolError::Write {
        reason: e.to_string(),
    };
    let tls_dir = config.tls.cert.parent().unwrap_or(&config.state_dir);
    // The state and the key are the device's alone.
    for dir in [config.state_dir.as_path(), tls_dir] {
        private_dir(dir).map_err(|e| failed(&format!("cannot create {}: {e}", dir.display())))?;
    }
    pki::write_public(&config.tls.ca_cert, &e.cluster_ca_pem).map_err(|e| failed(&e))?;
    pki::write_public(&tls_dir.join("agent-ca.pem"), &e.issuing_ca_pem).map_err(|e| failed(&e))?;
    credentials::replace(
        &config.tls.key,
        &config.tls.cert,
        key_pem,
        &e.certificate_pem,
    )
    .map_err(|e| failed(&e))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| failed(&format!("cannot create {}: {e}", parent.display())))?;
    }
    pki::write_secret(path, text).map_err(|e| failed(&e))
}

/// Creates `dir` (and missing parents) with mode 0700; an existing one is left as it is.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
