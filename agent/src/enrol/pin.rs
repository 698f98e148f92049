//! Trusting a broker by its CA's fingerprint. Before enrolment the device holds no CA file, only
//! the SHA-256 the operator copied from `lr admin enrolment create`: among the certificates the
//! broker sends after its leaf, the one with that fingerprint becomes the only trust root, and
//! the leaf must verify under it (name, validity, signature), as webpki checks any server.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why the broker was not trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Distrust {
    /// No certificate after the leaf has the pinned fingerprint.
    NoPinnedCa,
    /// The leaf does not verify under the pinned CA.
    Leaf(String),
}

#[derive(Debug)]
pub(super) struct PinnedCa {
    /// Lowercase hex, as [`pki::fingerprint`] writes it.
    fingerprint: String,
    provider: Arc<CryptoProvider>,
    /// tonic turns a refused handshake into a bare transport error, so the reason is kept here.
    distrust: Mutex<Option<Distrust>>,
}

impl PinnedCa {
    pub fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_owned(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            distrust: Mutex::default(),
        }
    }

    /// Why the broker was refused, if it was.
    pub fn distrust(&self) -> Option<Distrust> {
        self.distrust
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn refuse(&self, why: Distrust) -> rustls::Error {
        let error = rustls::Error::General(format!("{why:?}"));
        *self.distrust.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        error
    }

    /// A TLS client configuration trusting only the pinned CA, without a client certificate (the
    /// device has none yet), speaking HTTP/2 as gRPC needs.
    pub fn client_config(self: Arc<Self>) -> Result<rustls::ClientConfig, rustls::Error> {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates
            .iter()
            .find(|c| pki::fingerprint(c) == self.fingerprint)
        else {
            return Err(self.refuse(Distrust::NoPinnedCa));
        };
        let leaf = |why: String| self.refuse(Distrust::Leaf(why));
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| leaf(format!("the pinned ca is not a usable root ({e})")))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| leaf(e.to_string()))?;
        verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| leaf(e.to_string()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The fingerprint as [`pki::fingerprint`] writes it (64 lowercase hex digits), from what an
/// operator may paste: any case, an optional `sha256:` prefix, `:` between bytes.
pub(super) fn parse_fingerprint(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let bare = match trimmed.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("sha256:") => &trimmed[7..],
        _ => trimmed,
    };
    let hex: String = bare
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(format!(
            "'{text}' is not a SHA-256 fingerprint; give the 64 hex digits `lr admin enrolment create` printed (a sha256: prefix and ':' between bytes are fine)"
        ))
    }
}
