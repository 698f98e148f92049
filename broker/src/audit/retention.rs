//! Retention: each tenant's entries older than its retention (`[tenants.<t>]
//! audit_retention_days`, else `audit.retention_days`) leave the start of its chain, with their
//! outputs. The Raft leader's node does it every `audit.retention_interval_ms`. The cut (which
//! entry now starts the chain, and the hash it follows) goes into the replicated state before
//! anything is removed, so the verifier starts the chain there and still catches any entry
//! missing after it. Only checkpointed entries are cut, and the newest entry always stays: it
//! anchors the chain for the next append.

use std::collections::HashMap;
use std::time::Duration;

use cluster::LeaseService;
use tokio::sync::watch;

use super::AuditLog;
use crate::config::BrokerConfig;
use crate::time::now_ms;

/// How long each tenant's entries are kept, and how often that is enforced.
#[derive(Clone, Debug)]
pub struct Retention {
    default: Duration,
    tenants: HashMap<String, Duration>,
    every: Duration,
}

impl Retention {
    pub fn from_config(config: &BrokerConfig) -> Self {
        Self {
            default: days(config.audit.retention_days),
            tenants: config
                .tenants
                .iter()
                .filter_map(|(t, s)| Some((t.clone(), days(s.audit_retention_days?))))
                .collect(),
            every: Duration::from_millis(config.audit.retention_interval_ms),
        }
    }

    pub fn of(&self, tenant: &str) -> Duration {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }
}

fn days(days: f64) -> Duration {
    Duration::from_secs_f64(days * 86_400.0)
}

/// Enforces `retention` while this node leads the cluster, until `stop` turns true.
pub async fn run(
    log: AuditLog,
    leases: LeaseService,
    retention: Retention,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(retention.every) => {}
            _ = stop.changed() => return,
        }
        if leases.leader() != Some(log.node()) {
            continue;
        }
        let tenants = match log.tenants().await {
            Ok(tenants) => tenants,
            Err(error) => {
                tracing::warn!(%error, "cannot list the audit log's tenants; retention waits");
                continue;
            }
        };
        for tenant in tenants {
            let kept = retention.of(&tenant).as_millis();
            let horizon = now_ms().saturating_sub(u64::try_from(kept).unwrap_or(u64::MAX));
            match log.expire(&leases, &tenant, horizon).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(%tenant, removed, "audit entries past retention removed")
                }
                Err(error) => {
                    tracing::warn!(%tenant, %error, "cannot apply the audit log's retention; trying again")
                }
            }
        }
    }
}
