//! NATS subject names. Every id in them has passed the [`ids`] rules where it entered (config,
//! certificate, API, KV key), so each is exactly one subject level: no dot, wildcard or space.
//! [`super::Bus`] checks the tenant again before anything is sent.

pub fn device_cmd(tenant: &str, device: &str) -> String {
    format!("lr.{tenant}.dev.{device}.cmd")
}

pub fn device_online(tenant: &str, device: &str) -> String {
    format!("lr.{tenant}.dev.{device}.online")
}

pub fn session_ctl(tenant: &str, session: &str) -> String {
    format!("lr.{tenant}.sess.{session}.ctl")
}

pub fn session_evt(tenant: &str, session: &str) -> String {
    format!("lr.{tenant}.sess.{session}.evt")
}

pub fn session_out(tenant: &str, session: &str) -> String {
    format!("lr.{tenant}.sess.{session}.out")
}

/// Events of one transfer, for the node that owns it.
pub fn transfer_evt(tenant: &str, transfer: &str) -> String {
    format!("lr.{tenant}.xfer.{transfer}.evt")
}

/// Requests to one transfer's owner (cancel), answered by the node driving it.
pub fn transfer_ctl(tenant: &str, transfer: &str) -> String {
    format!("lr.{tenant}.xfer.{transfer}.ctl")
}

/// The tenant a subject belongs to.
pub fn tenant_of(subject: &str) -> Option<&str> {
    subject
        .strip_prefix("lr.")?
        .split('.')
        .next()
        .filter(|t| !t.is_empty())
}
