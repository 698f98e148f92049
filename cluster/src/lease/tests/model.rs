//! A naive reference model of the lease table: linear scans over a `Vec`, written straight from
//! the rules, to check the indexed table against in property tests.

use std::collections::BTreeMap;

use crate::lease::{
    Holder, Invariant, Lease, LeaseError, LeaseOp, LeaseOutcome, Millis, Refusal, Takeover,
    TenantLimits, validate,
};

#[derive(Clone, Debug, Default)]
pub(super) struct Model {
    pub(super) clock: Millis,
    pub(super) leases: Vec<Lease>,
    pub(super) limits: BTreeMap<String, TenantLimits>,
    pub(super) nodes: BTreeMap<u64, Millis>,
}

impl Model {
    pub(super) fn limits(&self, tenant: &str) -> TenantLimits {
        self.limits.get(tenant).copied().unwrap_or_default()
    }

    /// Live leases ordered by session, as the table lists them.
    pub(super) fn sorted(&self) -> Vec<Lease> {
        let mut leases = self.leases.clone();
        leases.sort_by(|a, b| a.session.cmp(&b.session));
        leases
    }

    pub(super) fn apply(&mut self, index: u64, stamped_at: Millis, op: &LeaseOp) -> LeaseOutcome {
        if let Err(error) = validate(op) {
            return LeaseOutcome::Rejected(error);
        }
        let now = self.clock.max(stamped_at);
        self.clock = now;
        let (mut expired, live): (Vec<Lease>, Vec<Lease>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|l| l.expires_at <= now);
        self.leases = live;
        expired.sort_by_key(|l| l.token);
        match op {
            LeaseOp::Acquire(req) => {
                if let Some(l) = self.leases.iter().find(|l| l.session == req.session) {
                    let same = (
                        &l.tenant,
                        &l.user,
                        &l.device,
                        l.node,
                        l.ttl_ms,
                        l.session_key,
                    ) == (
                        &req.tenant,
                        &req.user,
                        &req.device,
                        req.node,
                        req.ttl_ms,
                        req.session_key,
                    );
                    return if same {
                        LeaseOutcome::Granted(l.clone())
                    } else {
                        LeaseOutcome::Rejected(LeaseError::SessionIdInUse {
                            session: req.session.clone(),
                        })
                    };
                }
                let limits = self.limits(&req.tenant);
                let tenant: Vec<&Lease> = self
                    .leases
                    .iter()
                    .filter(|l| l.tenant == req.tenant)
                    .collect();
                let device: Vec<&Lease> = tenant
                    .iter()
                    .copied()
                    .filter(|l| l.device == req.device)
                    .collect();
                let user: Vec<&Lease> = tenant
                    .iter()
                    .copied()
                    .filter(|l| l.user == req.user)
                    .collect();
                let refusal = if !device.is_empty() {
                    Some((Invariant::OneSessionPerDevice, 1, device))
                } else if user.len() >= limits.max_sessions_per_user as usize {
                    Some((
                        Invariant::SessionsPerUser,
                        limits.max_sessions_per_user,
                        user,
                    ))
                } else if tenant.len() >= limits.max_sessions_per_tenant as usize {
                    Some((
                        Invariant::SessionsPerTenant,
                        limits.max_sessions_per_tenant,
                        tenant,
                    ))
                } else {
                    None
                };
                if let Some((invariant, limit, held)) = refusal {
                    let mut holders: Vec<Holder> = held
                        .iter()
                        .map(|l| Holder {
                            user: l.user.clone(),
                            session: l.session.clone(),
                            device: l.device.clone(),
                            since: l.granted_at,
                        })
                        .collect();
                    holders.sort_by(|a, b| (a.since, &a.session).cmp(&(b.since, &b.session)));
                    return LeaseOutcome::Refused(Refusal {
                        invariant,
                        tenant: req.tenant.clone(),
                        limit,
                        holders,
                    });
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
                self.leases.push(lease.clone());
                LeaseOutcome::Granted(lease)
            }
            LeaseOp::Renew {
                tenant,
                session,
                token,
            } => match self.find(tenant, session, *token) {
                Ok(i) => {
                    let l = &mut self.leases[i];
                    l.renewed_at = now;
                    l.expires_at = now.saturating_add(l.ttl_ms);
                    LeaseOutcome::Renewed(l.clone())
                }
                Err(error) => LeaseOutcome::Rejected(error),
            },
            LeaseOp::Release {
                tenant,
                session,
                token,
            } => match self.find(tenant, session, *token) {
                Ok(i) => LeaseOutcome::Released(self.leases.remove(i)),
                Err(error) => LeaseOutcome::Rejected(error),
            },
            LeaseOp::ExpireSweep => LeaseOutcome::Expired(expired),
            LeaseOp::NodeAlive { node, ttl_ms } => {
                let until = now.saturating_add(*ttl_ms);
                self.nodes.insert(*node, until);
                LeaseOutcome::NodeAlive { node: *node, until }
            }
            LeaseOp::Adopt(req) => match self.find(&req.tenant, &req.session, req.token) {
                Ok(i) => {
                    let holder = self.leases[i].node;
                    let alive = self.nodes.get(&holder).is_some_and(|until| *until > now);
                    if req.reason == Takeover::HolderGone && alive {
                        return LeaseOutcome::Rejected(LeaseError::HolderAlive {
                            session: req.session.clone(),
                            node: holder,
                        });
                    }
                    let l = &mut self.leases[i];
                    l.node = req.node;
                    l.token = index;
                    l.renewed_at = now;
                    l.expires_at = now.saturating_add(l.ttl_ms);
                    l.session_key = req.session_key;
                    LeaseOutcome::Adopted(l.clone())
                }
                Err(error) => LeaseOutcome::Rejected(error),
            },
            LeaseOp::SetTenantLimits { tenant, limits } => {
                self.limits.insert(tenant.clone(), *limits);
                LeaseOutcome::LimitsSet {
                    tenant: tenant.clone(),
                    limits: *limits,
                }
            }
            // The generators make lease ops only; the directory has its own tests.
            LeaseOp::Directory(op) => panic!("the lease model was given {op:?}"),
        }
    }

    fn find(&self, tenant: &str, session: &str, token: u64) -> Result<usize, LeaseError> {
        let i = self
            .leases
            .iter()
            .position(|l| l.session == session && l.tenant == tenant)
            .ok_or_else(|| LeaseError::UnknownSession {
                session: session.to_owned(),
            })?;
        if self.leases[i].token != token {
            return Err(LeaseError::WrongToken {
                session: session.to_owned(),
                token,
            });
        }
        Ok(i)
    }
}
