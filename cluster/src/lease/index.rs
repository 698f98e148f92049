//! Secondary indexes of the lease table: by tenant, device, user and expiry. Derived, never serialized.

use std::collections::{BTreeMap, BTreeSet};

use super::{Lease, Millis};

/// Who holds what within one tenant. Nested per tenant rather than keyed by `(tenant, x)` tuples
/// so that lookups can borrow `&str` without building owned keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TenantIndex {
    sessions: BTreeSet<String>,
    /// Device → the one session holding it.
    devices: BTreeMap<String, String>,
    users: BTreeMap<String, BTreeSet<String>>,
}

/// Empty entries are pruned on removal, so an index built op by op equals one rebuilt from a
/// snapshot: the table derives `PartialEq` over it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Index {
    tenants: BTreeMap<String, TenantIndex>,
    /// Ordered by expiry first so a sweep pops from the front.
    expiry: BTreeSet<(Millis, String)>,
}

impl Index {
    pub(super) fn insert(&mut self, lease: &Lease) {
        let t = self.tenants.entry(lease.tenant.clone()).or_default();
        t.sessions.insert(lease.session.clone());
        t.devices
            .insert(lease.device.clone(), lease.session.clone());
        t.users
            .entry(lease.user.clone())
            .or_default()
            .insert(lease.session.clone());
        self.expiry
            .insert((lease.expires_at, lease.session.clone()));
    }

    pub(super) fn remove(&mut self, lease: &Lease) {
        self.expiry
            .remove(&(lease.expires_at, lease.session.clone()));
        let Some(t) = self.tenants.get_mut(&lease.tenant) else {
            return;
        };
        t.sessions.remove(&lease.session);
        if t.devices.get(&lease.device) == Some(&lease.session) {
            t.devices.remove(&lease.device);
        }
        if let Some(user) = t.users.get_mut(&lease.user) {
            user.remove(&lease.session);
            if user.is_empty() {
                t.users.remove(&lease.user);
            }
        }
        if t.sessions.is_empty() {
            self.tenants.remove(&lease.tenant);
        }
    }

    pub(super) fn device(&self, tenant: &str, device: &str) -> Option<&String> {
        self.tenants.get(tenant)?.devices.get(device)
    }

    pub(super) fn user(&self, tenant: &str, user: &str) -> Option<&BTreeSet<String>> {
        self.tenants.get(tenant)?.users.get(user)
    }

    pub(super) fn tenant(&self, tenant: &str) -> Option<&BTreeSet<String>> {
        self.tenants.get(tenant).map(|t| &t.sessions)
    }

    pub(super) fn has_expired_at(&self, now: Millis) -> bool {
        self.expiry
            .first()
            .is_some_and(|(expires_at, _)| *expires_at <= now)
    }

    /// Takes the session of some lease with `expires_at <= now` off the expiry order. Popping
    /// rather than peeking lets a sweep terminate even if the index ever disagreed with the leases.
    pub(super) fn pop_expired(&mut self, now: Millis) -> Option<String> {
        if !self.has_expired_at(now) {
            return None;
        }
        self.expiry.pop_first().map(|(_, session)| session)
    }
}
