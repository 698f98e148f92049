//! The serialized form of the lease table: its essential data only, indexes rebuilt on load.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::table::LeaseTable;
use super::{Lease, Millis, TenantLimits};
use crate::directory::Directory;

/// What a Raft snapshot stores. Plain string-keyed maps, because JSON cannot key a map by a tuple.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct TableData {
    clock: Millis,
    leases: BTreeMap<String, Lease>,
    limits: BTreeMap<String, TenantLimits>,
    #[serde(default)]
    nodes: BTreeMap<u64, Millis>,
    #[serde(default)]
    directory: Directory,
}

impl From<LeaseTable> for TableData {
    fn from(table: LeaseTable) -> Self {
        Self {
            clock: table.clock,
            leases: table.leases,
            limits: table.limits,
            nodes: table.nodes,
            directory: table.directory,
        }
    }
}

/// Refuses data the table could never have produced, so a corrupt snapshot fails to load
/// instead of silently breaking an invariant.
impl TryFrom<TableData> for LeaseTable {
    type Error = String;

    fn try_from(data: TableData) -> Result<Self, String> {
        let mut table = LeaseTable {
            clock: data.clock,
            limits: data.limits,
            nodes: data.nodes,
            directory: data.directory,
            ..LeaseTable::default()
        };
        for (key, lease) in data.leases {
            if key != lease.session {
                return Err(format!(
                    "snapshot lease under key {key} is of session {}",
                    lease.session
                ));
            }
            if let Some(other) = table.by_device(&lease.tenant, &lease.device) {
                return Err(format!(
                    "snapshot has two leases on device {} of tenant {}: sessions {} and {}",
                    lease.device, lease.tenant, other.session, lease.session
                ));
            }
            table.index.insert(&lease);
            table.leases.insert(key, lease);
        }
        Ok(table)
    }
}
