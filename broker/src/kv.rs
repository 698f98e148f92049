//! JetStream key-value buckets the broker keeps its shared records in (devices, transfers, the
//! library): opened or created the same way, listed by tenant the same way.

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;

/// Largest value a bucket takes: records are small JSON; anything bigger is a bug or an attack.
const MAX_VALUE_BYTES: i32 = 64 * 1024;

/// Opens `bucket`, creating it on first use with one value per key of at most 64 KiB and
/// `replicas` copies.
pub async fn open_bucket(
    client: async_nats::Client,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<kv::Store, String> {
    let js = jetstream::new(client);
    match js.get_key_value(bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: bucket.into(),
                description: description.into(),
                history: 1,
                max_value_size: MAX_VALUE_BYTES,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string()),
    }
}

/// `<tenant>.<id>`: the one way a record's key is built. Both parts pass the [`ids`] rules, so a
/// key is exactly two tokens and one tenant's prefix never matches another tenant's keys. A
/// library name, a file name, is hex-encoded to the characters keys allow.
pub fn key(tenant: &str, kind: ids::Kind, id: &str) -> Result<String, ids::InvalidId> {
    ids::tenant(tenant)?;
    ids::check(kind, id)?;
    Ok(match kind {
        ids::Kind::LibraryName => format!("{tenant}.{}", hex::encode(id)),
        _ => format!("{tenant}.{id}"),
    })
}

/// The values of every key `<tenant>.…`, decoded as JSON; values that do not decode are skipped.
/// Only the tenant's keys are read: the server lists the subjects under its prefix.
pub async fn tenant_values<T: serde::de::DeserializeOwned>(
    store: &kv::Store,
    tenant: &str,
) -> Result<Vec<T>, String> {
    ids::tenant(tenant).map_err(|e| e.to_string())?;
    let filter = format!("{}{tenant}.>", store.prefix);
    let mut subjects = store
        .stream
        .info_with_subjects(&filter)
        .await
        .map_err(|e| format!("listing {}'s keys of tenant {tenant}: {e}", store.name))?;
    let mut values = Vec::new();
    while let Some((subject, _)) = subjects
        .try_next()
        .await
        .map_err(|e| format!("listing {}'s keys of tenant {tenant}: {e}", store.name))?
    {
        let key = subject.strip_prefix(&store.prefix).unwrap_or(&subject);
        if let Some(value) = store.get(key).await.map_err(|e| e.to_string())?
            && let Ok(decoded) = serde_json::from_slice(&value)
        {
            values.push(decoded);
        }
    }
    Ok(values)
}
