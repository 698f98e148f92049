//! The device registry: which devices a tenant has, whether they are online and through which node.
//! A JetStream key-value bucket, so every node sees the same answer and it survives node restarts.
//!
//! A device's connection epoch grows with each connection (compare-and-set on the entry's
//! revision), so a node holding an older connection can tell it has been superseded.

use std::time::Duration;

use async_nats::jetstream::kv;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

const BUCKET: &str = "lr-devices";
/// Attempts at a compare-and-set before giving up on a racing writer: 16, at most 10 ms apart
/// (backon's jitter adds up to the delay again, so 5 ms become 5 to 10 ms).
const CAS_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(5))
    .with_max_delay(Duration::from_millis(5))
    .with_max_times(15);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device: String,
    pub tenant: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub online: bool,
    pub node: u64,
    pub epoch: u64,
    pub last_seen_ms: u64,
    /// The tags the agent's configuration gives the device.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A connection whose node has not refreshed `last_seen` for this long is taken as gone (the node
/// died without marking it offline). Nodes refresh it every 30 s while heartbeats arrive.
pub const STALE_AFTER_MS: u64 = 90_000;

impl DeviceRecord {
    /// Online as far as anyone can tell at `now_ms`: marked online and refreshed recently.
    pub fn is_online(&self, now_ms: u64) -> bool {
        self.online && now_ms.saturating_sub(self.last_seen_ms) < STALE_AFTER_MS
    }
}

#[derive(Debug, thiserror::Error)]
#[error("device registry: {0}")]
pub struct RegistryError(String);

fn err(e: impl std::fmt::Display) -> RegistryError {
    RegistryError(e.to_string())
}

/// How one compare-and-set went wrong: another writer won (worth another try), or the bucket failed.
enum Cas {
    Lost,
    Failed(RegistryError),
}

impl From<RegistryError> for Cas {
    fn from(error: RegistryError) -> Self {
        Cas::Failed(error)
    }
}

#[derive(Clone)]
pub struct DeviceRegistry {
    kv: kv::Store,
}

fn key(tenant: &str, device: &str) -> Result<String, RegistryError> {
    crate::kv::key(tenant, ids::Kind::Device, device).map_err(err)
}

impl DeviceRegistry {
    /// Opens the bucket, creating it on first use. `replicas` is the JetStream replication factor.
    pub async fn open(client: async_nats::Client, replicas: usize) -> Result<Self, RegistryError> {
        let kv = crate::kv::open_bucket(
            client,
            BUCKET,
            "live response devices: presence and connection epoch",
            replicas,
        )
        .await
        .map_err(RegistryError)?;
        Ok(Self { kv })
    }

    /// Records a new connection and returns its epoch, one above any earlier connection's.
    pub async fn connected(&self, record: DeviceRecord) -> Result<u64, RegistryError> {
        let key = key(&record.tenant, &record.device)?;
        let attempt = || self.try_connected(&key, record.clone());
        attempt
            .retry(CAS_RETRIES)
            .when(|e| matches!(e, Cas::Lost))
            .notify(|_, delay| {
                tracing::debug!(%key, ?delay, "another connection wrote the device record; retrying")
            })
            .await
            .map_err(|e| match e {
                Cas::Lost => {
                    RegistryError(format!("device {key}: too many concurrent connections"))
                }
                Cas::Failed(e) => e,
            })
    }

    /// One compare-and-set of the record with the next epoch.
    async fn try_connected(&self, key: &str, mut record: DeviceRecord) -> Result<u64, Cas> {
        let current = self.kv.entry(key).await.map_err(err)?;
        let (previous_epoch, revision) = match &current {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let old: DeviceRecord = serde_json::from_slice(&entry.value).map_err(err)?;
                (old.epoch, Some(entry.revision))
            }
            Some(entry) => (0, Some(entry.revision)),
            None => (0, None),
        };
        record.epoch = previous_epoch + 1;
        let value = Bytes::from(serde_json::to_vec(&record).map_err(err)?);
        let written = match revision {
            Some(revision) => self.kv.update(key, value, revision).await.map(drop).is_ok(),
            None => self.kv.create(key, value).await.map(drop).is_ok(),
        };
        if written {
            Ok(record.epoch)
        } else {
            Err(Cas::Lost)
        }
    }

    /// Updates `last_seen` or marks the device offline, only if `epoch` is still the current connection.
    pub async fn touch(
        &self,
        tenant: &str,
        device: &str,
        epoch: u64,
        online: bool,
        now_ms: u64,
    ) -> Result<(), RegistryError> {
        let key = key(tenant, device)?;
        let Some(entry) = self.kv.entry(&key).await.map_err(err)? else {
            return Ok(());
        };
        let Ok(mut record) = serde_json::from_slice::<DeviceRecord>(&entry.value) else {
            return Ok(());
        };
        if record.epoch != epoch {
            return Ok(());
        }
        record.online = online;
        record.last_seen_ms = now_ms;
        let value = Bytes::from(serde_json::to_vec(&record).map_err(err)?);
        // A lost race means a newer connection wrote; that write wins.
        let _ = self.kv.update(&key, value, entry.revision).await;
        Ok(())
    }

    pub async fn get(
        &self,
        tenant: &str,
        device: &str,
    ) -> Result<Option<DeviceRecord>, RegistryError> {
        match self.kv.get(key(tenant, device)?).await.map_err(err)? {
            Some(value) => Ok(serde_json::from_slice(&value).ok()),
            None => Ok(None),
        }
    }

    pub async fn list(&self, tenant: &str) -> Result<Vec<DeviceRecord>, RegistryError> {
        let mut devices: Vec<DeviceRecord> = crate::kv::tenant_values(&self.kv, tenant)
            .await
            .map_err(RegistryError)?;
        devices.sort_by(|a, b| a.device.cmp(&b.device));
        Ok(devices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_not_refreshed_for_long_counts_as_offline() {
        let record = DeviceRecord {
            device: "web-07".into(),
            tenant: "demo".into(),
            hostname: "web-07".into(),
            os: "linux".into(),
            agent_version: "0.1.0".into(),
            online: true,
            node: 1,
            epoch: 1,
            last_seen_ms: 1_000_000,
            tags: Vec::new(),
        };
        assert!(record.is_online(1_000_000 + STALE_AFTER_MS - 1));
        assert!(!record.is_online(1_000_000 + STALE_AFTER_MS));
        let offline = DeviceRecord {
            online: false,
            ..record
        };
        assert!(!offline.is_online(1_000_000));
    }
}
