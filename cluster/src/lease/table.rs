//! The lease table: applies lease ops deterministically at a log index and a stamped time, and answers reads.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::index::Index;
use super::snapshot::TableData;
use super::{
    AcquireRequest, AdoptRequest, Holder, Invariant, Lease, LeaseError, LeaseOp, LeaseOutcome,
    LeaseQuery, Millis, QueryAnswer, Refusal, Takeover, TenantLimits, validate,
};
use crate::directory::{Directory, DirectoryOp};

/// Every live lease, the tenants' limits and the highest stamped time seen.
///
/// Serialized (for Raft snapshots) as its essential data only; the indexes are rebuilt on load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TableData", into = "TableData")]
pub struct LeaseTable {
    pub(super) clock: Millis,
    /// Keyed by session id, which is unique across tenants.
    pub(super) leases: BTreeMap<String, Lease>,
    /// Only tenants whose limits were set; the others have the defaults.
    pub(super) limits: BTreeMap<String, TenantLimits>,
    /// Until when each broker node last proved it is alive.
    pub(super) nodes: BTreeMap<u64, Millis>,
    pub(super) directory: Directory,
    pub(super) index: Index,
}

impl LeaseTable {
    /// Applies one op at Raft log `index` with the leader-stamped time. Deterministic.
    ///
    /// A malformed op changes nothing, not even the clock; any other op first advances the clock
    /// and removes the leases that expired by it.
    pub fn apply(&mut self, index: u64, stamped_at: Millis, op: &LeaseOp) -> LeaseOutcome {
        if let Err(error) = validate(op) {
            return LeaseOutcome::Rejected(error);
        }
        // A new leader's clock may be behind the old one's; time in the table never goes back.
        let now = self.clock.max(stamped_at);
        self.clock = now;
        let expired = self.sweep(now);
        match op {
            LeaseOp::Acquire(req) => self.acquire(index, now, req),
            LeaseOp::Renew {
                tenant,
                session,
                token,
            } => self.renew(now, tenant, session, *token),
            LeaseOp::Release {
                tenant,
                session,
                token,
            } => self.release(tenant, session, *token),
            LeaseOp::ExpireSweep => LeaseOutcome::Expired(expired),
            LeaseOp::NodeAlive { node, ttl_ms } => {
                let until = now.saturating_add(*ttl_ms);
                self.nodes.insert(*node, until);
                LeaseOutcome::NodeAlive { node: *node, until }
            }
            LeaseOp::Adopt(req) => self.adopt(index, now, req),
            LeaseOp::Directory(op) => match self.directory.apply(now, op) {
                Ok(outcome) => {
                    // A revoked device's session ends with the revocation, on every replica.
                    if let DirectoryOp::RevokeDevice { tenant, device } = op
                        && let Some(session) =
                            self.by_device(tenant, device).map(|l| l.session.clone())
                    {
                        self.remove(&session);
                    }
                    LeaseOutcome::Directory(outcome)
                }
                Err(error) => LeaseOutcome::DirectoryRefused(error),
            },
            LeaseOp::SetTenantLimits { tenant, limits } => {
                // Lowering a limit evicts nobody: it only refuses acquires until usage drops.
                self.limits.insert(tenant.clone(), *limits);
                self.directory.limits_changed(tenant);
                LeaseOutcome::LimitsSet {
                    tenant: tenant.clone(),
                    limits: *limits,
                }
            }
        }
    }

    /// Tenants, users, tokens and groups.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Highest stamped time applied so far.
    pub fn clock(&self) -> Millis {
        self.clock
    }

    pub fn query(&self, q: &LeaseQuery) -> QueryAnswer {
        let leases = match q {
            LeaseQuery::Session { tenant, session } => {
                self.get(tenant, session).into_iter().cloned().collect()
            }
            LeaseQuery::Device { tenant, device } => self
                .by_device(tenant, device)
                .into_iter()
                .cloned()
                .collect(),
            LeaseQuery::User { tenant, user } => {
                self.by_user(tenant, user).into_iter().cloned().collect()
            }
            LeaseQuery::Tenant { tenant } => self.by_tenant(tenant).into_iter().cloned().collect(),
            LeaseQuery::Limits { tenant } => return QueryAnswer::Limits(self.limits(tenant)),
            LeaseQuery::All => self.all().cloned().collect(),
            LeaseQuery::Directory => {
                return QueryAnswer::Directory(Box::new(self.directory.clone()));
            }
            LeaseQuery::EnrolmentToken { id } => {
                return QueryAnswer::EnrolmentToken(self.directory.enrolment_token(id).cloned());
            }
            LeaseQuery::EnrolledDevice { tenant, device } => {
                return QueryAnswer::EnrolledDevice(self.directory.device(tenant, device).cloned());
            }
            LeaseQuery::Nodes => return QueryAnswer::Nodes(self.nodes.clone()),
        };
        QueryAnswer::Leases(leases)
    }

    /// The lease of `session` if it belongs to `tenant`: another tenant's session is not found.
    pub fn get(&self, tenant: &str, session: &str) -> Option<&Lease> {
        self.leases.get(session).filter(|l| l.tenant == tenant)
    }

    pub fn by_device(&self, tenant: &str, device: &str) -> Option<&Lease> {
        self.leases.get(self.index.device(tenant, device)?)
    }

    /// Ordered by session id.
    pub fn by_user(&self, tenant: &str, user: &str) -> Vec<&Lease> {
        self.resolve(self.index.user(tenant, user))
    }

    /// Ordered by session id.
    pub fn by_tenant(&self, tenant: &str) -> Vec<&Lease> {
        self.resolve(self.index.tenant(tenant))
    }

    /// Ordered by session id.
    pub fn all(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// The broker nodes alive at `now`, in order.
    pub fn live_nodes(&self, now: Millis) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(node, _)| *node)
            .collect()
    }

    /// Whether broker node `node` proved it is alive past `now` (a node never heard of is not).
    pub fn node_alive(&self, node: u64, now: Millis) -> bool {
        self.nodes.get(&node).is_some_and(|until| *until > now)
    }

    pub fn limits(&self, tenant: &str) -> TenantLimits {
        self.limits.get(tenant).copied().unwrap_or_default()
    }

    /// True when some lease has `expires_at <= now`: the leader then proposes an `ExpireSweep`.
    pub fn has_expired_at(&self, now: Millis) -> bool {
        self.index.has_expired_at(now)
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    fn resolve(&self, sessions: Option<&BTreeSet<String>>) -> Vec<&Lease> {
        sessions
            .into_iter()
            .flatten()
            .filter_map(|s| self.leases.get(s))
            .collect()
    }

    /// Removes and returns the leases with `expires_at <= now`, ordered by token.
    fn sweep(&mut self, now: Millis) -> Vec<Lease> {
        let mut expired = Vec::new();
        while let Some(session) = self.index.pop_expired(now) {
            expired.extend(self.remove(&session));
        }
        expired.sort_by_key(|l| l.token);
        expired
    }

    fn insert(&mut self, lease: Lease) {
        self.index.insert(&lease);
        self.leases.insert(lease.session.clone(), lease);
    }

    fn remove(&mut self, session: &str) -> Option<Lease> {
        let lease = self.leases.remove(session)?;
        self.index.remove(&lease);
        Some(lease)
    }

    fn acquire(&mut self, index: u64, now: Millis, req: &AcquireRequest) -> LeaseOutcome {
        if let Some(existing) = self.leases.get(&req.session) {
            // A client retrying after a lost answer must get the same lease, not a refusal by
            // its own device.
            let retry = existing.tenant == req.tenant
                && existing.user == req.user
                && existing.device == req.device
                && existing.node == req.node
                && existing.ttl_ms == req.ttl_ms
                && existing.session_key == req.session_key;
            return if retry {
                LeaseOutcome::Granted(existing.clone())
            } else {
                LeaseOutcome::Rejected(LeaseError::SessionIdInUse {
                    session: req.session.clone(),
                })
            };
        }
        if let Some(refusal) = self.refusal(req) {
            return LeaseOutcome::Refused(refusal);
        }
        let lease = Lease {
            session: req.session.clone(),
            tenant: req.tenant.clone(),
            user: req.user.clone(),
            device: req.device.clone(),
            node: req.node,
            token: index,
            granted_at: now,
            renewed_at: now,
            ttl_ms: req.ttl_ms,
            expires_at: now.saturating_add(req.ttl_ms),
            session_key: req.session_key,
        };
        self.insert(lease.clone());
        LeaseOutcome::Granted(lease)
    }

    /// The first invariant, in order device, user, tenant, that granting `req` would break.
    fn refusal(&self, req: &AcquireRequest) -> Option<Refusal> {
        let refuse = |invariant, limit, sessions: Vec<&String>| Refusal {
            invariant,
            tenant: req.tenant.clone(),
            limit,
            holders: self.holders(sessions),
        };
        if let Some(holder) = self.index.device(&req.tenant, &req.device) {
            return Some(refuse(Invariant::OneSessionPerDevice, 1, vec![holder]));
        }
        let limits = self.limits(&req.tenant);
        if let Some(user) = self.index.user(&req.tenant, &req.user)
            && at_limit(user.len(), limits.max_sessions_per_user)
        {
            return Some(refuse(
                Invariant::SessionsPerUser,
                limits.max_sessions_per_user,
                user.iter().collect(),
            ));
        }
        if let Some(tenant) = self.index.tenant(&req.tenant)
            && at_limit(tenant.len(), limits.max_sessions_per_tenant)
        {
            return Some(refuse(
                Invariant::SessionsPerTenant,
                limits.max_sessions_per_tenant,
                tenant.iter().collect(),
            ));
        }
        None
    }

    /// Ordered by `since`, then session, so the oldest holders come first.
    fn holders(&self, sessions: Vec<&String>) -> Vec<Holder> {
        let mut holders: Vec<Holder> = sessions
            .into_iter()
            .filter_map(|s| self.leases.get(s))
            .map(|l| Holder {
                user: l.user.clone(),
                session: l.session.clone(),
                device: l.device.clone(),
                since: l.granted_at,
            })
            .collect();
        holders.sort_by(|a, b| (a.since, &a.session).cmp(&(b.since, &b.session)));
        holders
    }

    /// The lease `session` of `tenant` if `token` is its token.
    fn held(&self, tenant: &str, session: &str, token: u64) -> Result<&Lease, LeaseError> {
        let lease = self
            .get(tenant, session)
            .ok_or_else(|| LeaseError::UnknownSession {
                session: session.to_owned(),
            })?;
        if lease.token != token {
            return Err(LeaseError::WrongToken {
                session: session.to_owned(),
                token,
            });
        }
        Ok(lease)
    }

    fn renew(&mut self, now: Millis, tenant: &str, session: &str, token: u64) -> LeaseOutcome {
        let old = match self.held(tenant, session, token) {
            Ok(lease) => lease.clone(),
            Err(error) => return LeaseOutcome::Rejected(error),
        };
        self.index.remove(&old);
        let lease = Lease {
            renewed_at: now,
            expires_at: now.saturating_add(old.ttl_ms),
            ..old
        };
        self.insert(lease.clone());
        LeaseOutcome::Renewed(lease)
    }

    /// Moves the lease to the adopter under this entry's index as its token. The lease never
    /// lapses in between, so no other session can take the device meanwhile.
    fn adopt(&mut self, index: u64, now: Millis, req: &AdoptRequest) -> LeaseOutcome {
        let old = match self.held(&req.tenant, &req.session, req.token) {
            Ok(lease) => lease.clone(),
            Err(error) => return LeaseOutcome::Rejected(error),
        };
        if req.reason == Takeover::HolderGone && self.node_alive(old.node, now) {
            return LeaseOutcome::Rejected(LeaseError::HolderAlive {
                session: old.session,
                node: old.node,
            });
        }
        self.index.remove(&old);
        let lease = Lease {
            node: req.node,
            token: index,
            renewed_at: now,
            expires_at: now.saturating_add(old.ttl_ms),
            session_key: req.session_key,
            ..old
        };
        self.insert(lease.clone());
        LeaseOutcome::Adopted(lease)
    }

    fn release(&mut self, tenant: &str, session: &str, token: u64) -> LeaseOutcome {
        if let Err(error) = self.held(tenant, session, token) {
            return LeaseOutcome::Rejected(error);
        }
        match self.remove(session) {
            Some(lease) => LeaseOutcome::Released(lease),
            // Unreachable: `held` just found it. Answered as unknown rather than panicking.
            None => LeaseOutcome::Rejected(LeaseError::UnknownSession {
                session: session.to_owned(),
            }),
        }
    }
}

fn at_limit(count: usize, limit: u32) -> bool {
    // usize fits in u64 on every target Rust supports.
    count as u64 >= u64::from(limit)
}
