//! The device's key and certificate: checked when a broker issues them (at enrolment and at
//! renewal), and replaced on disk as a pair, so that a crash never leaves a key beside another
//! key's certificate.
//!
//! A replacement writes `<key>.next` and `<cert>.next` (each whole or not at all: pki writes
//! through a temporary file and a rename), then renames the key's into place, then the
//! certificate's. [`finish_pending`], run before the pair is read, completes or undoes a
//! replacement a crash interrupted.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use pki::{PkiError, Validity};

/// Checks a certificate a broker issued for the key `key_pem` this device made: it certifies
/// that key, names `lr-agent://<tenant>/<device>` and has not expired at `now_ms`. Returns its
/// validity; the error says what is wrong with it.
pub(crate) fn check_issued(
    cert_pem: &str,
    key_pem: &str,
    tenant: &str,
    device: &str,
    now_ms: u64,
) -> Result<Validity, String> {
    let der = pki::pem_to_der(cert_pem).map_err(|e| e.to_string())?;
    if !pki::certifies_key(&der, key_pem).map_err(|e| e.to_string())? {
        return Err("a certificate for another key than the one this device made".into());
    }
    let identity = pki::agent_identity(&der).map_err(|e| e.to_string())?;
    if identity.tenant != tenant || identity.device != device {
        return Err(format!(
            "a certificate for {identity}, not {}{tenant}/{device}",
            pki::AGENT_URI_SCHEME
        ));
    }
    let validity = pki::validity(&der).map_err(|e| e.to_string())?;
    if validity.not_after_ms <= now_ms {
        return Err(format!(
            "a certificate that expired at {}",
            rfc3339(validity.not_after_ms)
        ));
    }
    Ok(validity)
}

/// Replaces the key at `key` and the certificate at `cert` with `key_pem` (mode 0600) and
/// `cert_pem` (0644). Blocking (fsync).
pub(crate) fn replace(
    key: &Path,
    cert: &Path,
    key_pem: &str,
    cert_pem: &str,
) -> Result<(), PkiError> {
    pki::write_secret(&next(key), key_pem)?;
    pki::write_public(&next(cert), cert_pem)?;
    commit(key, cert)
}

/// Completes a replacement a crash interrupted. Both `.next` files: the pair was written whole,
/// so it is put in place. Only the certificate's: the key was already renamed, so the certificate
/// follows. Only the key's: its certificate never got written, so the old pair stands and the
/// orphan key is deleted. Blocking.
pub(crate) fn finish_pending(key: &Path, cert: &Path) -> Result<(), PkiError> {
    if exists(&next(cert))? {
        commit(key, cert)
    } else if exists(&next(key))? {
        fs::remove_file(next(key)).map_err(io("delete", &next(key)))
    } else {
        Ok(())
    }
}

/// Renames the `.next` files into place, key first (when it is still there), and makes the
/// renames durable.
fn commit(key: &Path, cert: &Path) -> Result<(), PkiError> {
    if exists(&next(key))? {
        fs::rename(next(key), key).map_err(io("rename into place", &next(key)))?;
    }
    fs::rename(next(cert), cert).map_err(io("rename into place", &next(cert)))?;
    for dir in [key, cert].iter().filter_map(|p| p.parent()) {
        // A rename is on disk only once its directory is.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))?;
    }
    Ok(())
}

/// `<path>.next`: where the replacement of `path` waits.
fn next(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".next");
    PathBuf::from(name)
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(io("check", path))
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PkiError {
    let path = path.to_owned();
    move |source| PkiError::Io {
        action,
        path,
        source,
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC), for messages.
pub(crate) fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(|| format!("{ms} ms after the epoch"), |t| t.to_string())
}

#[cfg(test)]
mod tests;
