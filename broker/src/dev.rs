//! A development deployment's trust material: the two CAs and the certificates of a local
//! cluster (`lr-broker dev-certs`), and the nats-server configuration that admits its brokers
//! (`lr-broker nats-config`). Files follow one layout in one directory, which `up.sh`, the
//! benchmarks and the tests share:
//!
//! - `cluster-ca.pem/.key`, `broker-<n>.pem/.key`, `nats-server.pem/.key` (cluster CA);
//! - `agent-ca.pem/.key`, `agent-<device>.pem/.key` (agent CA);
//! - `authority.key` (the lease authority's signing key, every broker's `raft.authority_key`) and
//!   `authority.pub` (its public key as `ed25519:<hex>`, every agent's `authority_keys`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use grants::AuthorityKey;
use pki::{BrokerIdentity, CaRole};

use crate::nats::{ClientTls, ServerTls};

/// The lease authority's public key, as agents pin it.
pub const AUTHORITY_PUBLIC_FILE: &str = "authority.pub";

/// The stem of nats-server's certificate files.
pub const NATS_SERVER_CERT: &str = "nats-server";

/// Creates both CAs in `out` (each kept if it exists) and issues certificates for brokers
/// `1..=brokers` of `cluster` and nats-server (unless `brokers` is 0). Agents get theirs by
/// enrolling (`lr-agent enroll`), from the agent CA kept here. Returns the certificate files
/// written. Blocking.
pub fn certs(out: &Path, cluster: &str, brokers: u64) -> anyhow::Result<Vec<PathBuf>> {
    let cluster_ca = pki::ensure_ca(out, CaRole::Cluster)?;
    pki::ensure_ca(out, CaRole::Agents)?;
    let authority = AuthorityKey::from_pem_file(&pki::ensure_authority_key(out)?)?;
    let public = out.join(AUTHORITY_PUBLIC_FILE);
    std::fs::write(&public, format!("{}\n", authority.public()))
        .with_context(|| format!("cannot write {}", public.display()))?;
    let mut written = vec![public];
    for n in 1..=brokers {
        let identity = BrokerIdentity::new(cluster, n)?;
        written.push(cluster_ca.issue_broker(out, &identity, &[])?.cert);
    }
    if brokers > 0 {
        written.push(cluster_ca.issue_server(out, NATS_SERVER_CERT, &[])?.cert);
    }
    Ok(written)
}

/// A nats-server configuration for the certificates in `certs` that admits brokers
/// `1..=brokers` of `cluster` and nobody else.
pub fn nats_config(
    certs: &Path,
    cluster: &str,
    brokers: u64,
    listen: &str,
    store_dir: &Path,
    sync: &str,
) -> anyhow::Result<String> {
    crate::nats::check_sync(sync)?;
    let identities = (1..=brokers)
        .map(|n| BrokerIdentity::new(cluster, n))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = ServerTls {
        ca: certs.join(CaRole::Cluster.cert_file()),
        cert: certs.join(format!("{NATS_SERVER_CERT}.pem")),
        key: certs.join(format!("{NATS_SERVER_CERT}.key")),
    };
    for path in [&tls.ca, &tls.cert, &tls.key] {
        anyhow::ensure!(
            path.is_file(),
            "{} is missing; create it with `lr-broker dev-certs --out {}`",
            path.display(),
            certs.display()
        );
    }
    Ok(crate::nats::server_config(
        listen,
        store_dir,
        sync,
        &tls,
        &identities,
    ))
}

/// Broker `node`'s NATS client material in `certs`.
pub fn broker_tls(certs: &Path, node: u64) -> ClientTls {
    ClientTls {
        ca: certs.join(CaRole::Cluster.cert_file()),
        cert: certs.join(format!("broker-{node}.pem")),
        key: certs.join(format!("broker-{node}.key")),
    }
}
