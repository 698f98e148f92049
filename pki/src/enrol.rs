//! Enrolment: a device makes its own key and a certificate signing request; the issuing (agent)
//! CA signs a short-lived certificate for the identity the enrolment decided, whatever the request
//! asked for. The private key never leaves the device.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateSigningRequestDer;
use sha2::{Digest, Sha256};

use crate::issue::{Ca, CaRole, dn};
use crate::{AgentIdentity, PkiError};

/// How far before its signing a certificate is valid from, so a device whose clock is a little
/// behind the broker's accepts it at once. Agents renew counting the lifetime from after it.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// A device's new key (PKCS#8 PEM; it stays on the device) and its signing request (DER).
pub struct NewRequest {
    pub key_pem: String,
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for NewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewRequest").finish_non_exhaustive()
    }
}

/// Makes a fresh ECDSA P-256 key and a request for `device`, signed by that key.
pub fn new_request(device: &str) -> Result<NewRequest, PkiError> {
    ids::device(device)?;
    let failed = |source| PkiError::Generate {
        what: format!("a certificate request for {device}"),
        source,
    };
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(device);
    let csr = params.serialize_request(&key).map_err(failed)?;
    Ok(NewRequest {
        key_pem: key.serialize_pem(),
        csr_der: csr.der().to_vec(),
    })
}

/// A certificate the issuing CA signed at enrolment or renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub cert_pem: String,
    /// [`fingerprint`] of the certificate.
    pub fingerprint: String,
    /// Its `notAfter`, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

impl Ca {
    /// Signs a client certificate for `lr-agent://<tenant>/<device>` valid for `lifetime` from
    /// now, with the public key of `csr_der` once its signature verifies. Names and extensions
    /// the request asks for are ignored: the identity is the enrolment's, not the device's claim.
    pub fn sign_agent_request(
        &self,
        csr_der: &[u8],
        tenant: &str,
        device: &str,
        lifetime: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        if self.role() != CaRole::Agents {
            return Err(PkiError::WrongCa {
                held: self.role().name(),
                needed: CaRole::Agents.name(),
                what: "agent certificates",
            });
        }
        let identity = AgentIdentity::new(tenant, device)?;
        let request =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| PkiError::BadRequest {
                    reason: e.to_string(),
                })?;
        let uri =
            Ia5String::try_from(identity.uri()).map_err(generate("the agent identity uri"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(device);
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        let not_after = now + lifetime;
        params.not_before = (now - BACKDATE).into();
        params.not_after = not_after.into();
        let cert = params
            .signed_by(&request.public_key, self.issuer())
            .map_err(generate("an agent certificate"))?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            fingerprint: fingerprint(cert.der()),
            expires_at_ms: millis(not_after),
        })
    }
}

/// The SHA-256 of a DER certificate in lowercase hex: how certificates and CAs are named, pinned
/// and recorded.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The DER of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| {
        PkiError::NotACertificate {
            reason: format!("not a pem certificate ({e})"),
        }
    })?;
    Ok(pem.contents)
}

/// When a certificate becomes valid and when it expires, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before_ms: u64,
    pub not_after_ms: u64,
}

/// The validity of the certificate `der`, and whether its public key is `key_pem`'s (when given).
pub fn validity(der: &[u8]) -> Result<Validity, PkiError> {
    let cert = parse(der)?;
    let ms = |t: x509_parser::time::ASN1Time| {
        u64::try_from(t.timestamp())
            .unwrap_or(0)
            .saturating_mul(1000)
    };
    Ok(Validity {
        not_before_ms: ms(cert.validity().not_before),
        not_after_ms: ms(cert.validity().not_after),
    })
}

/// Whether the certificate `der` carries the public key of the private key `key_pem`.
pub fn certifies_key(der: &[u8], key_pem: &str) -> Result<bool, PkiError> {
    let cert = parse(der)?;
    let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadRequest {
        reason: format!("the private key is not a pem key ({e})"),
    })?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

fn parse(der: &[u8]) -> Result<x509_parser::certificate::X509Certificate<'_>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::NotACertificate {
            reason: e.to_string(),
        })
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate {
        what: what.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_carries_the_enrolments_identity_and_lifetime() {
        let ca = Ca::generate(CaRole::Agents).unwrap();
        let request = new_request("web-07").unwrap();
        let issued = ca
            .sign_agent_request(&request.csr_der, "demo", "web-07", Duration::from_secs(600))
            .unwrap();
        let der = pem_to_der(&issued.cert_pem).unwrap();
        assert_eq!(fingerprint(&der), issued.fingerprint);
        let identity = crate::agent_identity(&der).unwrap();
        assert_eq!(
            (identity.tenant.as_str(), identity.device.as_str()),
            ("demo", "web-07")
        );
        let validity = validity(&der).unwrap();
        // Seconds in the certificate; the answer's expiry in milliseconds.
        assert_eq!(validity.not_after_ms / 1000, issued.expires_at_ms / 1000);
        assert_eq!(
            validity.not_after_ms - validity.not_before_ms,
            (600 + BACKDATE.as_secs()) * 1000
        );
        assert!(certifies_key(&der, &request.key_pem).unwrap());
        let other = new_request("web-07").unwrap();
        assert!(!certifies_key(&der, &other.key_pem).unwrap());
    }

    #[test]
    fn a_request_with_a_broken_signature_is_refused() {
        let ca = Ca::generate(CaRole::Agents).unwrap();
        let mut csr = new_request("web-07").unwrap().csr_der;
        let last = csr.len() - 1;
        csr[last] ^= 0x55;
        let error = ca
            .sign_agent_request(&csr, "demo", "web-07", Duration::from_secs(60))
            .unwrap_err();
        assert!(matches!(error, PkiError::BadRequest { .. }), "{error}");
    }

    #[test]
    fn only_the_agent_ca_signs_requests() {
        let ca = Ca::generate(CaRole::Cluster).unwrap();
        let csr = new_request("web-07").unwrap().csr_der;
        let error = ca
            .sign_agent_request(&csr, "demo", "web-07", Duration::from_secs(60))
            .unwrap_err();
        assert!(matches!(error, PkiError::WrongCa { .. }), "{error}");
    }
}
