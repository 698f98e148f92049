//! `ChunkStore` against a real nats-server with JetStream: round trips, duplicates, corruption,
//! resume points, byte ranges, tenant isolation and deletion.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use broker::transfer::{
    CHECKSUM_HEADER, ChunkStore, ChunkStoreConfig, PutOutcome, STREAM, StoreError, chunk_count,
};
use bytes::Bytes;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use testkit::NatsServer;

mod common;

const MIB: usize = 1024 * 1024;
/// Bound on every test; a hang fails instead of blocking the suite.
const WAIT: Duration = Duration::from_secs(120);

struct Fixture {
    _nats: NatsServer,
    _certs: tempfile::TempDir,
    client: async_nats::Client,
    store: ChunkStore,
}

/// A nats-server as deployed (TLS, brokers only) and a client with broker 1's credentials.
async fn nats() -> (NatsServer, tempfile::TempDir, async_nats::Client) {
    let certs = tempfile::tempdir().unwrap();
    let nats = common::secure_nats(certs.path(), 1);
    let client = common::connect_as_broker(&nats, certs.path(), 1).await;
    (nats, certs, client)
}

async fn fixture() -> Fixture {
    fixture_with(ChunkStoreConfig::default()).await
}

async fn fixture_with(config: ChunkStoreConfig) -> Fixture {
    testkit::init_tracing();
    let (nats, certs, client) = nats().await;
    let store = ChunkStore::open_with(client.clone(), config).await.unwrap();
    Fixture {
        _nats: nats,
        _certs: certs,
        client,
        store,
    }
}

impl Fixture {
    /// Messages in the chunk stream, all tenants and transfers together.
    async fn messages(&self) -> u64 {
        let js = jetstream::new(self.client.clone());
        let mut stream = js.get_stream(STREAM).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    async fn put_all(&self, tenant: &str, transfer: &str, data: &[u8], chunk: usize) {
        for (index, piece) in data.chunks(chunk).enumerate() {
            let outcome = self
                .store
                .put_chunk(
                    tenant,
                    transfer,
                    index as u64,
                    Bytes::copy_from_slice(piece),
                    &sha256(piece),
                )
                .await
                .unwrap();
            assert_eq!(outcome, PutOutcome::Stored, "chunk {index}");
        }
    }
}

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, test)
        .await
        .expect("test did not finish in time")
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic noise (xorshift64*), so a failure can be reproduced.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_20_mib_file_in_1_mib_chunks_comes_back_whole_and_verified() {
    bounded(async {
        let f = fixture().await;
        let file = noise(20 * MIB + 12345, 1);
        let chunks: Vec<&[u8]> = file.chunks(MIB).collect();
        assert_eq!(chunks.len(), 21);
        // Out of order, as a windowed pipeline delivers them.
        for (index, piece) in chunks.iter().enumerate().rev() {
            let outcome = f
                .store
                .put_chunk(
                    "acme",
                    "xfer-1",
                    index as u64,
                    Bytes::copy_from_slice(piece),
                    &sha256(piece),
                )
                .await
                .unwrap();
            assert_eq!(outcome, PutOutcome::Stored);
        }
        assert_eq!(
            f.store.contiguous_count("acme", "xfer-1").await.unwrap(),
            21
        );
        assert_eq!(chunk_count(file.len() as u64, MIB as u64), 21);

        let mut out = Vec::new();
        f.store
            .write_file("acme", "xfer-1", 21, &sha256(&file), &mut out)
            .await
            .unwrap();
        assert_eq!(out.len(), file.len());
        assert!(out == file, "the file came back different");
        assert_eq!(f.messages().await, 21);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_of_the_largest_size_fits_with_its_headers() {
    bounded(async {
        let f = fixture().await;
        assert_eq!(f.store.max_chunk_size(), 4 * MIB);
        let data = Bytes::from(noise(4 * MIB, 2));
        let sha = sha256(&data);
        let outcome = f
            .store
            .put_chunk("acme", "big", 0, data.clone(), &sha)
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
        assert_eq!(f.store.read_chunk("acme", "big", 0).await.unwrap(), data);

        let over = Bytes::from(vec![0u8; 4 * MIB + 1]);
        let err = f
            .store
            .put_chunk("acme", "big", 1, over.clone(), &sha256(&over))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { index: 1, .. }),
            "{err}"
        );
        assert!(!f.store.has_chunk("acme", "big", 1).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chunk_limit_follows_the_config_and_the_servers_max_payload() {
    bounded(async {
        let small = fixture_with(ChunkStoreConfig {
            max_chunk_size: 1000,
            ..ChunkStoreConfig::default()
        })
        .await;
        assert_eq!(small.store.max_chunk_size(), 1000);
        let data = vec![1u8; 1001];
        let err = small
            .store
            .put_chunk("acme", "x", 0, Bytes::from(data.clone()), &sha256(&data))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { max: 1000, .. }),
            "{err}"
        );

        // The test server carries 8 MB messages; a wish for 16 MiB chunks is cut to that.
        let (_nats, _certs, client) = nats().await;
        let store = ChunkStore::open_with(
            client.clone(),
            ChunkStoreConfig {
                max_chunk_size: 16 * MIB,
                ..ChunkStoreConfig::default()
            },
        )
        .await
        .unwrap();
        assert!(store.max_chunk_size() < client.max_payload());
        assert!(store.max_chunk_size() > 7 * MIB);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_sent_chunk_is_a_duplicate_and_stored_once() {
    bounded(async {
        let f = fixture().await;
        let data = Bytes::from(noise(1000, 3));
        let sha = sha256(&data);
        let first = f
            .store
            .put_chunk("acme", "x", 0, data.clone(), &sha)
            .await
            .unwrap();
        // Upper-case hex is the same checksum.
        let again = f
            .store
            .put_chunk("acme", "x", 0, data.clone(), &sha.to_uppercase())
            .await
            .unwrap();
        assert_eq!(first, PutOutcome::Stored);
        assert_eq!(again, PutOutcome::Duplicate);
        assert_eq!(f.messages().await, 1);
        assert_eq!(f.store.read_chunk("acme", "x", 0).await.unwrap(), data);

        // Other content for the same index replaces the first; still one copy.
        let other = Bytes::from(noise(1000, 4));
        let outcome = f
            .store
            .put_chunk("acme", "x", 0, other.clone(), &sha256(&other))
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
        assert_eq!(f.messages().await, 1);
        assert_eq!(f.store.read_chunk("acme", "x", 0).await.unwrap(), other);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_chunk_is_refused_and_nothing_is_stored() {
    bounded(async {
        let f = fixture().await;
        let data = Bytes::from(noise(5000, 5));
        let mut flipped = data.to_vec();
        flipped[17] ^= 0x01;
        let err = f
            .store
            .put_chunk("acme", "x", 3, Bytes::from(flipped), &sha256(&data))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { index: 3 }), "{err}");
        assert!(err.to_string().contains("send the chunk again"), "{err}");
        assert!(!f.store.has_chunk("acme", "x", 3).await.unwrap());
        assert_eq!(f.messages().await, 0);

        for bad in ["", "not-hex", &"0".repeat(63)] {
            let err = f
                .store
                .put_chunk("acme", "x", 3, data.clone(), bad)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidChecksum { .. }), "{err}");
        }
        assert_eq!(f.messages().await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_resume_point_is_the_first_gap() {
    bounded(async {
        let f = fixture().await;
        assert_eq!(f.store.contiguous_count("acme", "x").await.unwrap(), 0);
        let chunk = |i: u64| Bytes::from(noise(100, 10 + i));
        for index in [0, 1, 2, 4, 5] {
            let data = chunk(index);
            f.store
                .put_chunk("acme", "x", index, data.clone(), &sha256(&data))
                .await
                .unwrap();
        }
        assert_eq!(f.store.contiguous_count("acme", "x").await.unwrap(), 3);
        assert_eq!(
            f.store
                .stored_chunks("acme", "x")
                .await
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![0, 1, 2, 4, 5]
        );
        assert!(f.store.has_chunk("acme", "x", 4).await.unwrap());
        assert!(!f.store.has_chunk("acme", "x", 3).await.unwrap());
        let err = f.store.read_chunk("acme", "x", 3).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound { index: 3, .. }),
            "{err}"
        );

        let data = chunk(3);
        f.store
            .put_chunk("acme", "x", 3, data.clone(), &sha256(&data))
            .await
            .unwrap();
        assert_eq!(f.store.contiguous_count("acme", "x").await.unwrap(), 6);

        // A chunk missing at the start leaves nothing to resume from.
        let data = chunk(1);
        f.store
            .put_chunk("acme", "y", 1, data.clone(), &sha256(&data))
            .await
            .unwrap();
        assert_eq!(f.store.contiguous_count("acme", "y").await.unwrap(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_survives_a_new_store_on_a_new_connection() {
    bounded(async {
        let f = fixture().await;
        let file = noise(10_000, 6);
        f.put_all("acme", "x", &file[..7_000], 1_000).await;

        // What a node taking over a transfer does: open the store afresh and ask where to resume.
        let client = common::connect_as_broker(&f._nats, f._certs.path(), 1).await;
        let store = ChunkStore::open(client, 1).await.unwrap();
        let resume = store.contiguous_count("acme", "x").await.unwrap();
        assert_eq!(resume, 7);
        for (index, piece) in file.chunks(1_000).enumerate().skip(resume as usize) {
            store
                .put_chunk(
                    "acme",
                    "x",
                    index as u64,
                    Bytes::copy_from_slice(piece),
                    &sha256(piece),
                )
                .await
                .unwrap();
        }
        let mut out = Vec::new();
        store
            .write_file("acme", "x", 10, &sha256(&file), &mut out)
            .await
            .unwrap();
        assert!(out == file);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_ranges_are_cut_from_the_chunks_that_cover_them() {
    bounded(async {
        let f = fixture().await;
        let file = noise(2_500, 7);
        f.put_all("acme", "x", &file, 1_000).await;
        let read = |start: u64, end: u64| {
            let store = f.store.clone();
            async move {
                let range = store.read_range("acme", "x", 1_000, 2_500, start, end)?;
                let parts: Vec<Bytes> = range.body.try_collect().await?;
                Ok::<_, StoreError>((range.first, range.last, parts))
            }
        };

        let (first, last, parts) = read(0, 0).await.unwrap();
        assert_eq!((first, last), (0, 0));
        assert_eq!(parts.concat(), file[..1]);

        let (_, _, parts) = read(990, 1_009).await.unwrap();
        assert_eq!(parts.len(), 2, "a range across two chunks reads two");
        assert_eq!(parts.concat(), file[990..1_010]);

        let (_, _, parts) = read(2_499, 2_499).await.unwrap();
        assert_eq!(parts.concat(), file[2_499..]);

        let (_, _, parts) = read(0, 2_499).await.unwrap();
        assert!(parts.concat() == file);

        let (first, last, parts) = read(2_400, 9_999).await.unwrap();
        assert_eq!((first, last), (2_400, 2_499));
        assert_eq!(parts.concat(), file[2_400..]);

        for (start, end) in [(2_500, 2_500), (3_000, 4_000), (10, 9)] {
            let err = read(start, end).await.unwrap_err();
            assert!(
                matches!(err, StoreError::RangeNotSatisfiable { .. }),
                "{start}-{end}: {err}"
            );
        }

        // A layout that does not match what was stored is caught, not sliced blindly.
        let range = f
            .store
            .read_range("acme", "x", 2_000, 2_500, 0, 10)
            .unwrap();
        let err = range.body.try_collect::<Vec<_>>().await.unwrap_err();
        assert!(matches!(err, StoreError::Damaged { index: 0, .. }), "{err}");
        let range = f.store.read_range("acme", "x", 500, 2_500, 0, 10).unwrap();
        let err = range.body.try_collect::<Vec<_>>().await.unwrap_err();
        assert!(matches!(err, StoreError::Damaged { index: 0, .. }), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_of_another_tenant_is_not_found() {
    bounded(async {
        let f = fixture().await;
        let data = Bytes::from(noise(1_000, 8));
        let sha = sha256(&data);
        f.store
            .put_chunk("acme", "shared-id", 0, data.clone(), &sha)
            .await
            .unwrap();

        assert!(!f.store.has_chunk("globex", "shared-id", 0).await.unwrap());
        assert_eq!(
            f.store
                .contiguous_count("globex", "shared-id")
                .await
                .unwrap(),
            0
        );
        let err = f
            .store
            .read_chunk("globex", "shared-id", 0)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        let mut out = Vec::new();
        let err = f
            .store
            .write_file("globex", "shared-id", 1, &sha, &mut out)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
        assert!(out.is_empty());
        assert_eq!(f.store.delete("globex", "shared-id").await.unwrap(), 0);
        assert!(f.store.has_chunk("acme", "shared-id", 0).await.unwrap());

        // The same chunk in another tenant is stored, not taken for a duplicate of the first.
        let outcome = f
            .store
            .put_chunk("globex", "shared-id", 0, data.clone(), &sha)
            .await
            .unwrap();
        assert_eq!(outcome, PutOutcome::Stored);
        assert_eq!(f.messages().await, 2);

        // Ids that could widen a subject never reach NATS.
        for (tenant, transfer) in [
            ("acme", "*"),
            ("acme", ">"),
            ("*", "shared-id"),
            ("ac.me", "x"),
        ] {
            let err = f.store.has_chunk(tenant, transfer, 0).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidId(_)), "{err}");
            let err = f.store.delete(tenant, transfer).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidId(_)), "{err}");
        }
        assert_eq!(f.messages().await, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_every_chunk_and_the_transfer_can_be_sent_again() {
    bounded(async {
        let f = fixture().await;
        let file = noise(3_500, 9);
        f.put_all("acme", "x", &file, 1_000).await;
        f.put_all("acme", "other", &file[..1_000], 1_000).await;
        assert_eq!(f.store.delete("acme", "x").await.unwrap(), 4);
        for index in 0..4 {
            assert!(!f.store.has_chunk("acme", "x", index).await.unwrap());
        }
        assert_eq!(f.store.contiguous_count("acme", "x").await.unwrap(), 0);
        assert!(f.store.has_chunk("acme", "other", 0).await.unwrap());
        assert_eq!(f.messages().await, 1);

        // Within the duplicate window, which a purge does not clear: still stored, not "duplicate".
        f.put_all("acme", "x", &file, 1_000).await;
        let mut out = Vec::new();
        f.store
            .write_file("acme", "x", 4, &sha256(&file), &mut out)
            .await
            .unwrap();
        assert!(out == file);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_does_not_match_its_declared_checksum_is_never_complete() {
    bounded(async {
        let f = fixture().await;
        let file = noise(3_000, 10);
        f.put_all("acme", "x", &file, 1_000).await;
        let declared = sha256(b"what the agent said it would send");
        let mut out = Vec::new();
        let err = f
            .store
            .write_file("acme", "x", 3, &declared, &mut out)
            .await
            .unwrap_err();
        match err {
            StoreError::Mismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, declared);
                assert_eq!(actual, sha256(&file));
            }
            other => panic!("expected a mismatch, got {other}"),
        }

        // Fewer chunks than the file has is a mismatch too, not a short success.
        let err = f
            .store
            .write_file("acme", "x", 2, &sha256(&file), Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Mismatch { .. }), "{err}");

        // An empty file is zero chunks.
        f.store
            .write_file("acme", "empty", 0, &sha256(b""), Vec::new())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_chunk_that_no_longer_matches_its_checksum_is_never_served() {
    bounded(async {
        let f = fixture().await;
        // Written behind the store's back, as a damaged or forged message would be.
        let js = jetstream::new(f.client.clone());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(CHECKSUM_HEADER, sha256(b"good").as_str());
        js.publish_with_headers(
            "lr.acme.xfer.x.chunk.0",
            headers,
            Bytes::from_static(b"evil"),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        js.publish("lr.acme.xfer.x.chunk.1", Bytes::from_static(b"no header"))
            .await
            .unwrap()
            .await
            .unwrap();

        let err = f.store.read_chunk("acme", "x", 0).await.unwrap_err();
        assert!(matches!(err, StoreError::Damaged { index: 0, .. }), "{err}");
        let err = f.store.read_chunk("acme", "x", 1).await.unwrap_err();
        assert!(matches!(err, StoreError::Damaged { index: 1, .. }), "{err}");
        let err = f
            .store
            .write_file("acme", "x", 1, &sha256(b"good"), Vec::new())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    })
    .await;
}

/// A stream made before the store had limits, or with other limits, takes the configured ones
/// when a broker opens it: a full store refuses new chunks whatever its age.
#[tokio::test(flavor = "multi_thread")]
async fn limits_are_applied_to_a_stream_made_before_them() {
    bounded(async {
        let f = fixture().await;
        let js = jetstream::new(f.client.clone());
        let limits = |js: jetstream::Context| async move {
            let info = js
                .get_stream(STREAM)
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .clone();
            (info.config.max_bytes, info.config.discard)
        };
        assert_eq!(limits(js.clone()).await.0, -1, "made without a limit");
        let data = Bytes::from(noise(200_000, 9));
        f.store
            .put_chunk("acme", "old", 0, data.clone(), &sha256(&data))
            .await
            .unwrap();

        let limited = ChunkStore::open_with(
            f.client.clone(),
            ChunkStoreConfig {
                max_bytes: Some(300_000),
                ..ChunkStoreConfig::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            limits(js.clone()).await,
            (300_000, jetstream::stream::DiscardPolicy::New)
        );
        // What was stored stays; what no longer fits is refused.
        assert_eq!(limited.read_chunk("acme", "old", 0).await.unwrap(), data);
        let more = Bytes::from(noise(200_000, 10));
        let refused = limited
            .put_chunk("acme", "new", 0, more.clone(), &sha256(&more))
            .await;
        assert!(refused.is_err(), "{refused:?}");
    })
    .await;
}
