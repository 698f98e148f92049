//! Ed25519 keys: the authority's signing key, the public keys an agent trusts, and a session's
//! own key pair.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::GrantError;
use crate::grant::{Grant, SignedGrant};

const PREFIX: &str = "ed25519:";

/// An Ed25519 public key, written `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GrantError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| GrantError::BadPublicKey {
            text: hex::encode(bytes),
            why: format!("{} bytes instead of 32", bytes.len()),
        })?;
        Ok(Self(key))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short name for the key: the first 8 bytes of its SHA-256, in hex.
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for PublicKey {
    type Err = GrantError;

    fn from_str(text: &str) -> Result<Self, GrantError> {
        let bad = |why: &str| GrantError::BadPublicKey {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let digits = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with ed25519:"))?;
        let bytes = hex::decode(digits).map_err(|e| bad(&e.to_string()))?;
        Self::from_bytes(&bytes).map_err(|_| bad("it is not 32 bytes long"))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks an Ed25519 signature of `message` by `key`.
pub fn verify_signature(key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, key.0)
        .verify(message, signature)
        .is_ok()
}

/// The lease authority's signing key, held by the brokers that may lead the cluster.
pub struct AuthorityKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorityKey({})", self.public)
    }
}

impl AuthorityKey {
    /// Reads a PKCS#8 PEM file (`PRIVATE KEY`), as `openssl genpkey -algorithm ed25519` writes.
    pub fn from_pem_file(path: &Path) -> Result<Self, GrantError> {
        let bad = |why: String| GrantError::BadAuthorityKey {
            path: path.display().to_string(),
            why,
        };
        let der = PrivatePkcs8KeyDer::from_pem_file(path)
            .map_err(|e| bad(format!("no PKCS#8 PEM private key could be read ({e})")))?;
        Self::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| bad(e.to_string()))
    }

    /// Reads a PKCS#8 PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, GrantError> {
        let bad = |why: String| GrantError::BadAuthorityKey {
            path: "(text)".into(),
            why,
        };
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| bad(format!("no PKCS#8 PEM private key could be read ({e})")))?;
        Self::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| bad(e.to_string()))
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, GrantError> {
        // "maybe unchecked" accepts PKCS#8 v1 (no public key inside), which openssl writes.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| {
            GrantError::BadAuthorityKey {
                path: "(key)".into(),
                why: format!("not an Ed25519 key ({e})"),
            }
        })?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self { pair, public })
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn sign(&self, grant: &Grant) -> SignedGrant {
        let body = grant.to_bytes();
        let signature = self.pair.sign(&body).as_ref().to_vec();
        SignedGrant {
            body,
            signature,
            key_id: self.public.key_id(),
        }
    }
}

/// The authority keys an agent accepts grants from: usually one, two while the key is rotated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// The grant inside `signed`, if one of these keys signed exactly its bytes.
    pub fn verify(&self, signed: &SignedGrant) -> Result<Grant, GrantError> {
        let key = self
            .0
            .iter()
            .find(|k| k.key_id() == signed.key_id)
            .ok_or_else(|| GrantError::UnknownKey {
                key_id: signed.key_id.clone(),
            })?;
        if !verify_signature(key, &signed.body, &signed.signature) {
            return Err(GrantError::BadGrantSignature {
                key_id: signed.key_id.clone(),
            });
        }
        serde_json::from_slice(&signed.body).map_err(|e| GrantError::MalformedGrant(e.to_string()))
    }
}

/// A session's own key pair, made when the session opens and never written anywhere.
pub struct SessionKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.public)
    }
}

impl SessionKey {
    pub fn generate() -> Result<Self, GrantError> {
        let rng = SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|e| GrantError::KeyGeneration(e.to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8(der.as_ref())
            .map_err(|e| GrantError::KeyGeneration(e.to_string()))?;
        let public = PublicKey::from_bytes(pair.public_key().as_ref())?;
        Ok(Self { pair, public })
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests;
