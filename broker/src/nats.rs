//! NATS as a trust boundary: brokers alone may connect, over TLS, each as its own user with only
//! the subjects and JetStream API a broker uses.
//!
//! nats-server requires TLS with a client certificate from the cluster CA (`verify_and_map`) and
//! maps the certificate's `lr-broker://<cluster>/<node>` SAN URI to the NATS user of that name;
//! a client without a certificate, or with one from the agent CA, is refused by nats-server
//! itself. [`server_config`] writes that configuration (`lr-broker nats-config` prints it for
//! deployments); [`connect`] is how a broker dials it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pki::BrokerIdentity;

/// The JetStream streams brokers keep: the three key-value buckets and the transfer chunks.
const STREAMS: [&str; 4] = [
    "KV_lr-devices",
    "KV_lr-transfers",
    "KV_lr-library",
    crate::transfer::STREAM,
];

/// The largest NATS message nats-server accepts: a transfer chunk (at most 4 MiB) and its
/// envelope, or a command's output.
pub const MAX_PAYLOAD_BYTES: u64 = 8 * 1024 * 1024;
/// JetStream's flush to disk unless told otherwise: NATS's own default period.
pub const DEFAULT_SYNC: &str = "2m";

/// A JetStream sync policy as nats-server takes it: `always`, or a whole number of `ms`, `s`,
/// `m` or `h`.
pub fn check_sync(sync: &str) -> anyhow::Result<()> {
    let digits = sync.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &sync[digits.len()..];
    let period = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["ms", "s", "m", "h"].contains(&unit);
    anyhow::ensure!(
        sync == "always" || period,
        "--sync {sync:?} is not `always` or a period such as 500ms, 30s, 2m or 1h"
    );
    Ok(())
}

/// TLS files of a broker's NATS connection.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The cluster CA, which signed nats-server's certificate.
    pub ca: PathBuf,
    /// This broker's certificate and key; the certificate's identity is its NATS user.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Connects to nats-server at `url` over TLS as this broker, waiting up to `wait` until the
/// server has admitted it (so its `max_payload` is known before anyone sizes a message by it).
pub async fn connect(
    url: &str,
    name: String,
    tls: &ClientTls,
    wait: Duration,
) -> anyhow::Result<async_nats::Client> {
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .require_tls(true)
        .add_root_certificates(tls.ca.clone())
        .add_client_certificate(tls.cert.clone(), tls.key.clone())
        .retry_on_initial_connect();
    let admitted = async {
        let client = options.connect(url).await?;
        // The first round trip completes once the handshake and authorization have.
        client.flush().await?;
        Ok::<_, anyhow::Error>(client)
    };
    match tokio::time::timeout(wait, admitted).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(anyhow::anyhow!(
            "cannot connect to nats at {url}: {error}; check that nats-server requires tls with the cluster ca and lists this broker's identity as a user (`lr-broker nats-config`)"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "no nats server admitted this broker at {url} within {wait:?}; start it, fix nats_url, or check that its configuration lists this broker's identity (`lr-broker nats-config`)"
        )),
    }
}

/// The subjects a broker may publish to: its own `lr.>` traffic, replies to requests, and the
/// JetStream API of its own streams only (no account-wide stream listing or deletion of others';
/// of the audit log, no change or deletion of the stream).
pub fn publish_allow() -> Vec<String> {
    let mut subjects = vec![
        "lr.>".to_string(),
        "_INBOX.>".to_string(),
        "$JS.API.INFO".to_string(),
    ];
    for stream in STREAMS {
        subjects.extend([
            format!("$JS.API.STREAM.*.{stream}"),
            format!("$JS.API.STREAM.MSG.*.{stream}"),
            format!("$JS.API.CONSUMER.*.{stream}"),
            format!("$JS.API.CONSUMER.*.{stream}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.>"),
            format!("$JS.API.DIRECT.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.ACK.{stream}.>"),
            format!("$JS.FC.{stream}.>"),
        ]);
        if let Some(bucket) = stream.strip_prefix("KV_") {
            subjects.push(format!("$KV.{bucket}.>"));
        }
    }
    // The audit log: created, read and appended to (on `lr.>`), never changed or deleted.
    // Retention purges a chain's start and deletes those entries' outputs; the cut it records in
    // the replicated state first lets the verifier catch any other removal or deletion.
    let audit = crate::audit::STREAM;
    subjects.extend([
        format!("$JS.API.STREAM.CREATE.{audit}"),
        format!("$JS.API.STREAM.INFO.{audit}"),
        format!("$JS.API.STREAM.PURGE.{audit}"),
        format!("$JS.API.STREAM.MSG.GET.{audit}"),
        format!("$JS.API.STREAM.MSG.DELETE.{audit}"),
        format!("$JS.API.CONSUMER.*.{audit}"),
        format!("$JS.API.CONSUMER.*.{audit}.>"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{audit}.>"),
        format!("$JS.API.DIRECT.GET.{audit}"),
        format!("$JS.API.DIRECT.GET.{audit}.>"),
        format!("$JS.ACK.{audit}.>"),
        format!("$JS.FC.{audit}.>"),
    ]);
    subjects
}

/// The subjects a broker may subscribe to: `lr.>` and its own inboxes (JetStream delivers
/// consumers' messages and API replies there).
pub fn subscribe_allow() -> Vec<String> {
    vec!["lr.>".to_string(), "_INBOX.>".to_string()]
}

/// nats-server's TLS files.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The cluster CA: the only one client certificates may come from.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A nats-server configuration that admits exactly `brokers`, over TLS, with broker permissions.
pub fn server_config(
    listen: &str,
    store_dir: &Path,
    sync: &str,
    tls: &ServerTls,
    brokers: &[BrokerIdentity],
) -> String {
    let quote = |value: &str| serde_json::to_string(value).unwrap_or_default();
    let list = |items: Vec<String>| {
        items
            .iter()
            .map(|s| quote(s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Brokers only: TLS with a cluster-CA client certificate mapped to a user by its identity."
    );
    let _ = writeln!(text, "listen: {}", quote(listen));
    let _ = writeln!(text, "max_payload: {MAX_PAYLOAD_BYTES}");
    let _ = writeln!(
        text,
        "jetstream {{ store_dir: {}, sync_interval: {} }}",
        quote(&store_dir.display().to_string()),
        quote(sync)
    );
    let _ = writeln!(text, "tls {{");
    let _ = writeln!(
        text,
        "  cert_file: {}",
        quote(&tls.cert.display().to_string())
    );
    let _ = writeln!(
        text,
        "  key_file: {}",
        quote(&tls.key.display().to_string())
    );
    let _ = writeln!(text, "  ca_file: {}", quote(&tls.ca.display().to_string()));
    let _ = writeln!(text, "  verify_and_map: true");
    let _ = writeln!(text, "  timeout: 5");
    let _ = writeln!(text, "}}");
    let _ = writeln!(text, "authorization {{");
    let _ = writeln!(
        text,
        "  BROKER = {{ publish: {{ allow: [{}] }}, subscribe: {{ allow: [{}] }} }}",
        list(publish_allow()),
        list(subscribe_allow())
    );
    let _ = writeln!(text, "  users = [");
    for broker in brokers {
        let _ = writeln!(
            text,
            "    {{ user: {}, permissions: $BROKER }}",
            quote(&broker.uri())
        );
    }
    let _ = writeln!(text, "  ]");
    let _ = writeln!(text, "}}");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_config_lists_each_broker_with_broker_permissions() {
        let brokers = [
            BrokerIdentity::new("local", 1).unwrap(),
            BrokerIdentity::new("local", 2).unwrap(),
        ];
        let tls = ServerTls {
            ca: "/c/cluster-ca.pem".into(),
            cert: "/c/nats-server.pem".into(),
            key: "/c/nats-server.key".into(),
        };
        let text = server_config("127.0.0.1:4222", Path::new("/js"), "always", &tls, &brokers);
        assert!(text.contains("verify_and_map: true"), "{text}");
        assert!(text.contains(r#"sync_interval: "always""#), "{text}");
        assert!(text.contains(r#"user: "lr-broker://local/1""#), "{text}");
        assert!(text.contains(r#"user: "lr-broker://local/2""#), "{text}");
        assert!(
            !text.contains("$JS.API.>"),
            "the whole jetstream api is not a broker's"
        );
    }

    #[test]
    fn a_sync_policy_is_always_or_a_period() {
        for good in ["always", "2m", "500ms", "30s", "1h"] {
            assert!(check_sync(good).is_ok(), "{good}");
        }
        for bad in ["", "never", "2", "m", "1.5s", "2d", "-1s"] {
            assert!(check_sync(bad).is_err(), "{bad}");
        }
    }
}
