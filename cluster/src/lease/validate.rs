//! Input checks of lease ops: what `apply` rejects as malformed before it touches the table.

use ids::Kind;

use super::{LeaseError, LeaseOp, MAX_LIMIT, MAX_TTL_MS, TenantLimits};

/// Validates an op without applying it, with exactly the checks `LeaseTable::apply` makes,
/// so a caller can reject bad input before proposing it to Raft.
pub fn validate(op: &LeaseOp) -> Result<(), LeaseError> {
    match op {
        LeaseOp::Acquire(req) => {
            check_id("tenant", Kind::Tenant, &req.tenant)?;
            check_id("session", Kind::Session, &req.session)?;
            check_id("user", Kind::User, &req.user)?;
            check_id("device", Kind::Device, &req.device)?;
            check_ttl(req.ttl_ms)
        }
        LeaseOp::Renew {
            tenant, session, ..
        }
        | LeaseOp::Release {
            tenant, session, ..
        } => {
            check_id("tenant", Kind::Tenant, tenant)?;
            check_id("session", Kind::Session, session)
        }
        LeaseOp::NodeAlive { ttl_ms, .. } => check_ttl(*ttl_ms),
        LeaseOp::Adopt(req) => {
            check_id("tenant", Kind::Tenant, &req.tenant)?;
            check_id("session", Kind::Session, &req.session)
        }
        // The directory checks its own ops as it applies them (a refusal changes nothing).
        LeaseOp::ExpireSweep | LeaseOp::Directory(_) => Ok(()),
        LeaseOp::SetTenantLimits { tenant, limits } => {
            check_id("tenant", Kind::Tenant, tenant)?;
            check_limits(limits)
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> LeaseError {
    LeaseError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Ids end up in NATS subjects, logs and operator output: the platform's one id rule applies.
fn check_id(field: &str, kind: Kind, id: &str) -> Result<(), LeaseError> {
    ids::check(kind, id).map_err(|e| invalid(field, format!("{}; {}", e.reason, e.rule())))
}

fn check_ttl(ttl_ms: u64) -> Result<(), LeaseError> {
    if ttl_ms == 0 {
        return Err(invalid("ttl_ms", "must be at least 1"));
    }
    if ttl_ms > MAX_TTL_MS {
        return Err(invalid(
            "ttl_ms",
            format!("must be at most {MAX_TTL_MS}, got {ttl_ms}"),
        ));
    }
    Ok(())
}

fn check_limits(limits: &TenantLimits) -> Result<(), LeaseError> {
    check_limit("max_sessions_per_tenant", limits.max_sessions_per_tenant)?;
    check_limit("max_sessions_per_user", limits.max_sessions_per_user)
}

/// A zero limit would lock a tenant out entirely; that is an operator mistake, not a policy.
fn check_limit(field: &str, limit: u32) -> Result<(), LeaseError> {
    if limit == 0 {
        return Err(invalid(field, "must be at least 1"));
    }
    if limit > MAX_LIMIT {
        return Err(invalid(
            field,
            format!("must be at most {MAX_LIMIT}, got {limit}"),
        ));
    }
    Ok(())
}
