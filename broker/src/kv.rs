//! JetStream key-value buckets the broker keeps its shared records in (devices, transfers, the
//! library): opened or created the same way, listed by tenant the same way.

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;

/// Opens `bucket`, creating it on first use with one value per key and `replicas` copies.
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
pub async fn tenant_values<T: serde::de::DeserializeOwned>(
    store: &kv::Store,
    tenant: &str,
) -> Result<Vec<T>, String> {
    ids::tenant(tenant).map_err(|e| e.to_string())?;
    let prefix = format!("{tenant}.");
    let keys: Vec<String> = match store.keys().await {
        Ok(keys) => keys.try_collect().await.map_err(|e| e.to_string())?,
        // An empty bucket has no keys to list.
        Err(_) => Vec::new(),
    };
    let mut values = Vec::new();
    for key in keys.into_iter().filter(|k| k.starts_with(&prefix)) {
        if let Some(value) = store.get(&key).await.map_err(|e| e.to_string())?
            && let Ok(decoded) = serde_json::from_slice(&value)
        {
            values.push(decoded);
        }
    }
    Ok(values)
}
