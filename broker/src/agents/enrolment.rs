//! How devices get and keep their certificates: enrolment with a token, renewal over the stream,
//! and the check that a connecting certificate is the device's current one and not revoked.
//!
//! The device makes its key and sends only a signing request; a node holding the issuing CA's
//! key signs it for the identity the token decides (`lr-agent://<tenant>/<device>`), and the
//! enrolment is one directory entry, which checks the token (tenant, expiry, uses, revocation)
//! and the device id again atomically. The directory records each device's certificate by its
//! fingerprint, so a revoked or replaced certificate is refused even while the CA still vouches
//! for it.

use std::sync::Arc;
use std::time::Duration;

use agent_proto::agent::enrolment_server::Enrolment;
use agent_proto::agent::{EnrolReply, EnrolRequest};
use cluster::directory::{DirectoryError, DirectoryOp, ENROLMENT_TOKEN_PREFIX};
use cluster::{ClusterError, LeaseService};
use tonic::{Request, Response, Status};

use crate::api::sha256_hex;
use crate::time::now_ms;

/// What a node hands out and signs with: the issuing CA (with its key when this node holds it),
/// the cluster CA devices pin, and the lease authority keys they trust.
pub struct Issuer {
    ca: Option<pki::Ca>,
    cluster_ca_pem: String,
    agent_ca_pem: String,
    authority_keys: Vec<String>,
    lifetime: Duration,
}

impl Issuer {
    pub fn new(
        ca: Option<pki::Ca>,
        cluster_ca_pem: String,
        agent_ca_pem: String,
        authority_keys: Vec<String>,
        lifetime: Duration,
    ) -> Self {
        Self {
            ca,
            cluster_ca_pem,
            agent_ca_pem,
            authority_keys,
            lifetime,
        }
    }

    /// SHA-256 of the cluster CA certificate: what `lr-agent enroll --ca-fingerprint` pins.
    pub fn ca_fingerprint(&self) -> String {
        fingerprint_of(&self.cluster_ca_pem)
    }

    /// SHA-256 of the issuing CA certificate.
    pub fn issuing_ca_fingerprint(&self) -> String {
        fingerprint_of(&self.agent_ca_pem)
    }

    fn sign(
        &self,
        csr_der: &[u8],
        tenant: &str,
        device: &str,
    ) -> Result<pki::IssuedCertificate, Status> {
        let ca = self.ca.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this broker holds no issuing ca key (tls.agent_ca_key), so it issues no certificates; enrol through a broker that holds it",
            )
        })?;
        ca.sign_agent_request(csr_der, tenant, device, self.lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }

    /// A new certificate for a connected device whose current certificate is `presented`.
    pub async fn renew(
        &self,
        leases: &LeaseService,
        tenant: &str,
        device: &str,
        presented: &str,
        csr_der: &[u8],
    ) -> Result<pki::IssuedCertificate, Status> {
        admitted(leases, tenant, device, presented).await?;
        let issued = self.sign(csr_der, tenant, device)?;
        let op = DirectoryOp::RenewCertificate {
            tenant: tenant.into(),
            device: device.into(),
            presented: presented.into(),
            certificate: issued.fingerprint.clone(),
            certificate_expires_at: issued.expires_at_ms,
        };
        leases.change_directory(op).await.map_err(refusal)?;
        tracing::info!(%tenant, %device, expires_at_ms = issued.expires_at_ms, "renewed a device certificate");
        Ok(issued)
    }
}

fn fingerprint_of(pem: &str) -> String {
    pki::pem_to_der(pem)
        .map(|der| pki::fingerprint(&der))
        .unwrap_or_default()
}

/// Whether `certificate` (a fingerprint) admits `device` of `tenant`: this node's replica first,
/// and before a refusal the leader's directory, so a device enrolled a moment ago through
/// another node is not turned away.
pub async fn admitted(
    leases: &LeaseService,
    tenant: &str,
    device: &str,
    certificate: &str,
) -> Result<(), Status> {
    let local = leases
        .with_local_directory(|d| d.admits(tenant, device, certificate))
        .await;
    if local.is_ok() {
        return Ok(());
    }
    admitted_by_leader(leases, tenant, device, certificate).await
}

/// The same, asking the leader's directory at once: when the enrolment is known to have just
/// changed, before this replica may have applied it.
pub async fn admitted_by_leader(
    leases: &LeaseService,
    tenant: &str,
    device: &str,
    certificate: &str,
) -> Result<(), Status> {
    let enrolled = leases.enrolled_device(tenant, device).await.map_err(|e| {
        Status::unavailable(format!("cannot check the device's enrolment: {e}; retry"))
    })?;
    cluster::directory::admits(enrolled.as_ref(), tenant, device, certificate)
        .map_err(|e| Status::permission_denied(e.to_string()))
}

/// The `Enrolment` gRPC service, beside `AgentLink` on the agents' port. It needs no client
/// certificate: the token is the credential.
pub struct EnrolmentService {
    pub issuer: Arc<Issuer>,
    pub leases: LeaseService,
}

#[tonic::async_trait]
impl Enrolment for EnrolmentService {
    async fn enrol(&self, request: Request<EnrolRequest>) -> Result<Response<EnrolReply>, Status> {
        let request = request.into_inner();
        let (id, sha256) = parse_token(&request.token)?;
        ids::device(&request.device_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // The token says which tenant the device joins. One made a moment ago through another
        // node may not have reached this replica yet: ask the leader before calling it unknown.
        let local = self
            .leases
            .with_local_directory(|d| d.enrolment_token(&id).cloned())
            .await;
        let known_here = local.is_some();
        let token = match local {
            Some(token) => Some(token),
            None => self.leases.enrolment_token(&id).await.map_err(|e| {
                Status::unavailable(format!("cannot read the directory: {e}; retry"))
            })?,
        };
        let tenant = token
            .filter(|t| t.sha256 == sha256)
            .map(|t| t.tenant)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the enrolment token is not known; check it, or make a new one with `lr admin enrolment create`",
                )
            })?;
        if !request.tenant.is_empty() && request.tenant != tenant {
            return Err(Status::permission_denied(format!(
                "the enrolment token belongs to another tenant than {}; use a token of {}",
                request.tenant, request.tenant
            )));
        }
        // Nothing is signed for a token this replica knows dead. The entry below checks it
        // again, atomically, on every replica: that check alone decides for a token this
        // replica has not applied yet, and a refused entry hands out no certificate.
        if known_here {
            self.leases
                .with_local_directory(|d| d.check_enrolment_token(now_ms(), &tenant, &id, &sha256))
                .await
                .map_err(|e| refusal(ClusterError::Directory(e)))?;
        }
        let issued = self
            .issuer
            .sign(&request.csr_der, &tenant, &request.device_id)?;
        let op = DirectoryOp::Enrol {
            tenant: tenant.clone(),
            device: request.device_id.clone(),
            token_id: id.clone(),
            token_sha256: sha256,
            certificate: issued.fingerprint.clone(),
            certificate_expires_at: issued.expires_at_ms,
        };
        if let Err(error) = self.leases.change_directory(op).await {
            tracing::warn!(%tenant, device = %request.device_id, token = %id, %error, "refused an enrolment");
            return Err(refusal(error));
        }
        tracing::info!(%tenant, device = %request.device_id, token = %id, expires_at_ms = issued.expires_at_ms, "enrolled a device");
        Ok(Response::new(EnrolReply {
            tenant,
            device_id: request.device_id,
            certificate_pem: issued.cert_pem,
            issuing_ca_pem: self.issuer.agent_ca_pem.clone(),
            cluster_ca_pem: self.issuer.cluster_ca_pem.clone(),
            authority_keys: self.issuer.authority_keys.clone(),
            expires_at_ms: issued.expires_at_ms,
        }))
    }
}

/// `lre_<id>_<secret>` into the token's id and the SHA-256 of the whole token.
fn parse_token(token: &str) -> Result<(String, String), Status> {
    let malformed = || {
        Status::unauthenticated(format!(
            "that is not an enrolment token (they start with {ENROLMENT_TOKEN_PREFIX}); copy it as `lr admin enrolment create` printed it"
        ))
    };
    let rest = token
        .strip_prefix(ENROLMENT_TOKEN_PREFIX)
        .ok_or_else(malformed)?;
    let (id, _) = rest.split_once('_').ok_or_else(malformed)?;
    ids::tenant(id).map_err(|_| malformed())?;
    Ok((id.to_owned(), sha256_hex(token)))
}

/// A refused enrolment or renewal as the status the device sees.
fn refusal(error: ClusterError) -> Status {
    match error {
        ClusterError::Directory(DirectoryError::Refused(reason)) => {
            Status::permission_denied(reason)
        }
        ClusterError::Directory(e @ DirectoryError::NotFound { .. }) => {
            Status::permission_denied(e.to_string())
        }
        ClusterError::Directory(e) => Status::invalid_argument(e.to_string()),
        e => Status::unavailable(format!("cannot record the enrolment: {e}; retry")),
    }
}
