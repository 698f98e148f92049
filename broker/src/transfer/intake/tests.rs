//! The intake against a real nats-server with JetStream: a chunk is stored only if this connection
//! asked for it, inside the window, with the exact length and a matching checksum.

use std::time::Duration;

use futures::StreamExt;

use super::*;
use crate::transfer::sha256_hex;

const CHUNK: usize = 64 * 1024;

struct Fixture {
    _nats: testkit::NatsServer,
    _certs: tempfile::TempDir,
    client: async_nats::Client,
    store: ChunkStore,
}

/// nats-server as deployed (TLS, brokers only), and a client with broker 1's credentials.
async fn fixture() -> Fixture {
    let certs = tempfile::tempdir().unwrap();
    crate::dev::certs(certs.path(), "local", 1).unwrap();
    let nats = testkit::NatsServer::start_with(|listen, store| {
        crate::dev::nats_config(
            certs.path(),
            "local",
            1,
            listen,
            store,
            crate::nats::DEFAULT_SYNC,
        )
        .unwrap()
    });
    let tls = crate::dev::broker_tls(certs.path(), 1);
    let client = crate::nats::connect(&nats.url(), "test".into(), &tls, Duration::from_secs(30))
        .await
        .unwrap();
    let store = ChunkStore::open(client.clone(), 1).await.unwrap();
    Fixture {
        _nats: nats,
        _certs: certs,
        client,
        store,
    }
}

impl Fixture {
    fn intake(&self, tenant: &str) -> ChunkIntake {
        let bus = Bus::new(self.client.clone());
        ChunkIntake::new(tenant.into(), "db-01".into(), self.store.clone(), bus)
    }
}

/// A ticket for a file of three and a bit chunks.
fn ticket(transfer: &str) -> GetTicket {
    GetTicket {
        transfer_id: transfer.into(),
        size: 3 * CHUNK as u64 + 10,
        chunk_size: CHUNK as u32,
        ..GetTicket::default()
    }
}

/// The next event reported for a transfer, if one comes within a second.
async fn next_event(events: &mut async_nats::Subscriber) -> Option<Event> {
    let message = tokio::time::timeout(Duration::from_secs(1), events.next())
        .await
        .ok()??;
    match bus::decode(&message).unwrap().1 {
        Body::TransferEvent(event) => event.event,
        other => panic!("not a transfer event: {other:?}"),
    }
}

fn refusal(event: Option<Event>) -> String {
    match event {
        Some(Event::ChunkRefused(refused)) => refused.reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn only_what_this_connection_asked_for_is_stored() {
    let f = fixture().await;
    let intake = f.intake("demo");
    intake.expect(&ticket("xfer-a"), 0, 2);
    let mut events = f
        .client
        .subscribe(bus::transfer_evt("demo", "xfer-a"))
        .await
        .unwrap();
    let data = Bytes::from(vec![7u8; CHUNK]);
    let sha = sha256_hex(&data);

    // Another transfer's chunk, never asked of this connection: dropped, nothing stored.
    intake
        .chunk("xfer-b".into(), 0, data.clone(), sha.clone())
        .await;
    assert_eq!(f.store.contiguous_count("demo", "xfer-b").await.unwrap(), 0);

    // Larger than the negotiated chunk size.
    let long = Bytes::from(vec![7u8; CHUNK + 1]);
    let long_sha = sha256_hex(&long);
    intake.chunk("xfer-a".into(), 0, long, long_sha).await;
    assert!(refusal(next_event(&mut events).await).contains("bytes where the chunk has"));

    // Outside the window asked for.
    intake
        .chunk("xfer-a".into(), 2, data.clone(), sha.clone())
        .await;
    assert!(refusal(next_event(&mut events).await).contains("outside the window"));

    // Its checksum does not match its data.
    intake
        .chunk("xfer-a".into(), 0, data.clone(), sha256_hex(b"other"))
        .await;
    refusal(next_event(&mut events).await);
    assert_eq!(f.store.contiguous_count("demo", "xfer-a").await.unwrap(), 0);

    intake.chunk("xfer-a".into(), 0, data, sha).await;
    assert!(matches!(
        next_event(&mut events).await,
        Some(Event::ChunkStored(0))
    ));
    assert_eq!(f.store.contiguous_count("demo", "xfer-a").await.unwrap(), 1);
}

#[tokio::test]
async fn another_tenants_connection_cannot_add_to_a_transfer() {
    let f = fixture().await;
    f.intake("demo").expect(&ticket("xfer-a"), 0, 2);
    let data = Bytes::from(vec![1u8; CHUNK]);
    let sha = sha256_hex(&data);

    // The same transfer id on a connection of another tenant was never asked for there.
    let other = f.intake("acme");
    other.chunk("xfer-a".into(), 0, data, sha).await;
    assert_eq!(f.store.contiguous_count("acme", "xfer-a").await.unwrap(), 0);
    assert_eq!(f.store.contiguous_count("demo", "xfer-a").await.unwrap(), 0);
}
