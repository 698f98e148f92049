//! The development CAs (cluster and agent) and the certificates they issue, in memory or as files.
//!
//! Keys are ECDSA P-256 (rcgen's default). Serial numbers are derived from each certificate's
//! public key, so every fresh key gets a fresh serial. Leaves carry an authority key identifier
//! pointing at the CA.

use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use jiff::ToSpan;
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::PkiError;
use crate::identity::{AgentIdentity, BrokerIdentity};

/// What a CA may sign. Two CAs, so that a certificate trusted on one channel is never trusted on
/// another: an agent's certificate cannot join Raft or NATS, a broker's cannot pose as an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaRole {
    /// Brokers (Raft, NATS, the agents' endpoint and the API as a server) and nats-server.
    Cluster,
    /// Agents' client certificates: the issuing CA enrolment will use.
    Agents,
}

impl CaRole {
    /// `cluster` or `agent`: the stem of the CA's files and part of its name.
    pub fn name(self) -> &'static str {
        match self {
            CaRole::Cluster => "cluster",
            CaRole::Agents => "agent",
        }
    }

    /// File name of the CA certificate inside the PKI directory: `cluster-ca.pem`, `agent-ca.pem`.
    pub fn cert_file(self) -> String {
        format!("{}-ca.pem", self.name())
    }

    /// File name of the CA private key inside the PKI directory.
    pub fn key_file(self) -> String {
        format!("{}-ca.key", self.name())
    }
}
const ORGANIZATION: &str = "live response (development)";
const CA_VALID_YEARS: i16 = 10;
const LEAF_VALID_YEARS: i16 = 1;
/// Every broker certificate answers to these, so a local cluster works without extra names.
const LOCAL_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct IssuedPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for IssuedPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// Where an issued certificate and its key were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority able to sign the certificates of its role.
#[derive(Debug)]
pub struct Ca {
    role: CaRole,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// Loads the CA of `role` kept in `dir` (`<role>-ca.pem`, `<role>-ca.key`), or creates it there
/// when neither file exists.
///
/// A directory holding only one of the two files is refused rather than repaired: a new CA would
/// silently invalidate every certificate the old one issued.
///
/// Blocking (file IO with fsync): from async code, call it and the file-writing `issue_*` methods
/// on `spawn_blocking`.
pub fn ensure_ca(dir: &Path, role: CaRole) -> Result<Ca, PkiError> {
    let cert_path = dir.join(role.cert_file());
    let key_path = dir.join(role.key_file());
    match (exists(&cert_path)?, exists(&key_path)?) {
        (true, true) => Ca::from_pem(role, &read(&cert_path)?, &read(&key_path)?),
        (true, false) => Err(PkiError::CaIncomplete {
            present: cert_path,
            missing: key_path,
        }),
        (false, true) => Err(PkiError::CaIncomplete {
            present: key_path,
            missing: cert_path,
        }),
        (false, false) => {
            let ca = Ca::generate(role)?;
            create_dir(dir)?;
            // Key first: a crash in between leaves a key without a certificate, which the next run
            // reports instead of overwriting.
            write_file(&key_path, &ca.issuer.key().serialize_pem(), Mode::Secret)?;
            write_file(&cert_path, &ca.cert_pem, Mode::Public)?;
            Ok(ca)
        }
    }
}

/// The file of the lease authority's signing key in a development directory.
pub const AUTHORITY_KEY_FILE: &str = "authority.key";

/// The lease authority's Ed25519 signing key in `dir` (PKCS#8 PEM, owner-only), created if
/// missing and kept if present, like the CAs. Returns its path.
pub fn ensure_authority_key(dir: &Path) -> Result<PathBuf, PkiError> {
    let path = dir.join(AUTHORITY_KEY_FILE);
    if !exists(&path)? {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(generate("the lease authority key"))?;
        create_dir(dir)?;
        write_file(&path, &key.serialize_pem(), Mode::Secret)?;
    }
    Ok(path)
}

impl Ca {
    /// Creates a new CA in memory (tests; [`ensure_ca`] for one kept on disk).
    pub fn generate(role: CaRole) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(generate("the ca key"))?;
        let mut params = CertificateParams::default();
        // A name of its own per CA: with one shared name, a certificate from another developer's
        // CA fails as "bad signature" instead of "unknown issuer".
        let key_id = params.key_identifier(&key);
        let key_id = hex::encode(&key_id[..key_id.len().min(4)]);
        params.distinguished_name = dn(&format!("lr development {} ca {key_id}", role.name()));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALID_YEARS);
        let cert = params
            .self_signed(&key)
            .map_err(generate("the ca certificate"))?;
        // Go through the loader so a fresh CA and a reloaded one sign identically.
        Self::from_pem(role, &cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its PEM certificate and PEM (PKCS#8) private key, checking that the
    /// certificate is a CA, is currently valid, and belongs to the key.
    pub fn from_pem(role: CaRole, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let bad = |reason: String| PkiError::BadCa { role, reason };
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| bad(format!("the ca key is not a pem private key ({e})")))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| bad(format!("the ca certificate is not pem ({e})")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| bad(format!("the ca certificate does not parse ({e})")))?;
        if !cert.is_ca() {
            return Err(bad("the ca certificate is not a ca certificate".into()));
        }
        if !cert.validity().is_valid() {
            return Err(bad(format!(
                "the ca certificate is valid only from {} to {}",
                cert.validity().not_before,
                cert.validity().not_after
            )));
        }
        // rcgen does not check that the key matches the certificate; certificates signed with the
        // wrong key would only fail later, in a TLS handshake.
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(bad(
                "the ca key does not belong to the ca certificate".into()
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| bad(format!("rcgen cannot use the ca certificate ({e})")))?;
        Ok(Self {
            role,
            issuer,
            cert_pem: cert_pem.to_owned(),
        })
    }

    /// The CA certificate, PEM-encoded: the trust root of its role.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn role(&self) -> CaRole {
        self.role
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// Issues a broker certificate for TLS server and client use (agent gRPC, HTTPS API, Raft,
    /// NATS). Its identity is the SAN URI `lr-broker://<cluster>/<node>`; its names are
    /// `localhost`, `127.0.0.1`, `::1` and `extra_sans` (DNS names or IP addresses).
    pub fn issue_broker_pem(
        &self,
        identity: &BrokerIdentity,
        extra_sans: &[String],
    ) -> Result<IssuedPem, PkiError> {
        self.require(CaRole::Cluster, "broker certificates")?;
        // The fields are public: check a hand-built identity too, so that no certificate carries
        // an identity `broker_identity` would refuse.
        let identity = BrokerIdentity::new(&identity.cluster, identity.node)?;
        let uri =
            Ia5String::try_from(identity.uri()).map_err(generate("the broker identity uri"))?;
        let mut sans = vec![SanType::URI(uri)];
        sans.extend(local_and(extra_sans)?);
        self.issue(
            &format!("broker-{}", identity.node),
            sans,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// Issues a TLS server certificate without a platform identity, for a service the brokers
    /// dial (nats-server): common name `name`, names `localhost`, `127.0.0.1`, `::1` and
    /// `extra_sans`.
    pub fn issue_server_pem(
        &self,
        name: &str,
        extra_sans: &[String],
    ) -> Result<IssuedPem, PkiError> {
        self.require(CaRole::Cluster, "server certificates")?;
        ids::broker(name)?;
        self.issue(
            name,
            local_and(extra_sans)?,
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// Issues an agent client certificate: common name `device`, identity
    /// `lr-agent://<tenant>/<device>` as a SAN URI (read back by [`crate::agent_identity`]).
    pub fn issue_agent_pem(&self, tenant: &str, device: &str) -> Result<IssuedPem, PkiError> {
        self.require(CaRole::Agents, "agent certificates")?;
        let identity = AgentIdentity::new(tenant, device)?;
        let uri =
            Ia5String::try_from(identity.uri()).map_err(generate("the agent identity uri"))?;
        self.issue(
            device,
            vec![SanType::URI(uri)],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// [`Ca::issue_broker_pem`], written to `dir` as `broker-<node>.pem` and `broker-<node>.key`
    /// (mode 0600), replacing earlier ones.
    pub fn issue_broker(
        &self,
        dir: &Path,
        identity: &BrokerIdentity,
        extra_sans: &[String],
    ) -> Result<IssuedPaths, PkiError> {
        let issued = self.issue_broker_pem(identity, extra_sans)?;
        write_pair(dir, &format!("broker-{}", identity.node), &issued)
    }

    /// [`Ca::issue_server_pem`], written to `dir` as `<name>.pem` and `<name>.key`.
    pub fn issue_server(
        &self,
        dir: &Path,
        name: &str,
        extra_sans: &[String],
    ) -> Result<IssuedPaths, PkiError> {
        let issued = self.issue_server_pem(name, extra_sans)?;
        write_pair(dir, name, &issued)
    }

    /// [`Ca::issue_agent_pem`], written to `dir` as `agent-<device>.pem` and `agent-<device>.key`
    /// (mode 0600), replacing earlier ones.
    pub fn issue_agent(
        &self,
        dir: &Path,
        tenant: &str,
        device: &str,
    ) -> Result<IssuedPaths, PkiError> {
        let issued = self.issue_agent_pem(tenant, device)?;
        write_pair(dir, &format!("agent-{device}"), &issued)
    }

    fn require(&self, role: CaRole, what: &'static str) -> Result<(), PkiError> {
        if self.role == role {
            Ok(())
        } else {
            Err(PkiError::WrongCa {
                held: self.role.name(),
                needed: role.name(),
                what,
            })
        }
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        ekus: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<IssuedPem, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = ekus;
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALID_YEARS);
        let failed = |source| PkiError::Generate {
            what: format!("a certificate for {common_name}"),
            source,
        };
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(IssuedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// `localhost`, `127.0.0.1`, `::1` and `extra`, without repeats.
fn local_and(extra: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut sans = Vec::new();
    for value in LOCAL_SANS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        let san = parse_san(value)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

pub(crate) fn dn(common_name: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

/// Valid from the start of yesterday (UTC, to absorb clock skew between machines) for `years`.
fn set_validity(params: &mut CertificateParams, years: i16) {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let start = today.yesterday().unwrap_or(today);
    let end = start
        .checked_add(years.years())
        .unwrap_or(jiff::civil::Date::MAX);
    let ymd = |d: jiff::civil::Date| {
        rcgen::date_time_ymd(
            d.year().into(),
            d.month().unsigned_abs(),
            d.day().unsigned_abs(),
        )
    };
    params.not_before = ymd(start);
    params.not_after = ymd(end);
}

fn parse_san(value: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = |reason: String| PkiError::InvalidSan {
        value: value.to_owned(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    Ia5String::try_from(value)
        .map(SanType::DnsName)
        .map_err(|e| invalid(e.to_string()))
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate {
        what: what.to_owned(),
        source,
    }
}

fn write_pair(dir: &Path, stem: &str, issued: &IssuedPem) -> Result<IssuedPaths, PkiError> {
    create_dir(dir)?;
    let paths = IssuedPaths {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    };
    write_file(&paths.key, &issued.key_pem, Mode::Secret)?;
    write_file(&paths.cert, &issued.cert_pem, Mode::Public)?;
    Ok(paths)
}

/// Writes `contents` to `path` readable by its owner only (0600), atomically: a private key.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_file(path, contents, Mode::Secret)
}

/// Writes `contents` to `path` (0644), atomically: a certificate.
pub fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_file(path, contents, Mode::Public)
}

#[derive(Clone, Copy)]
enum Mode {
    /// 0644
    Public,
    /// 0600: private keys
    Secret,
}

/// Writes through a temporary file created with the final mode and renamed over `path`, so a key
/// is never readable by others, not even briefly or when replacing a looser file.
fn write_file(path: &Path, contents: &str, mode: Mode) -> Result<(), PkiError> {
    let io = |action, source| PkiError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove the stale temporary file of", e));
        }
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(match mode {
            Mode::Public => 0o644,
            Mode::Secret => 0o600,
        });
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(|e| io("create", e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", e))?;
    fs::rename(&tmp, path).map_err(|e| io("write", e))
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        action: "create directory",
        path: dir.to_owned(),
        source,
    })
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(|source| PkiError::Io {
        action: "check",
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}
