//! Signed orders (`Order` in agent.proto): what a session sends its device, signed with the
//! session's own key under the grant the lease authority signed for it.
//!
//! The session side holds a [`Signer`]: its key, made when the session opens and never written
//! anywhere, and its latest grant (renewals replace it). A device's node reads an order's claims
//! with [`claims`] to check them against the lease table before it delivers the order; it cannot
//! verify the signature (only the agent pins the authority's keys) and need not: the agent does.

use agent_proto::agent::order_body::Action;
use agent_proto::agent::{Order, OrderBody, SignedGrant as WireGrant};
use api_model::ErrorCode;
use cluster::lease::Lease;
use grants::{SessionKey, SignedGrant};
use prost::Message;

use crate::time::now_ms;

/// A session's key and its latest grant.
pub struct Signer {
    key: SessionKey,
    grant: SignedGrant,
}

impl Signer {
    pub fn new(key: SessionKey, grant: SignedGrant) -> Self {
        Self { key, grant }
    }

    /// Orders from now on carry `grant` (a renewal: same token, later expiry).
    pub fn renewed(&mut self, grant: SignedGrant) {
        self.grant = grant;
    }

    /// `action` as an order stamped now.
    pub fn sign(&self, action: Action) -> Order {
        let body = OrderBody {
            stamped_at_ms: now_ms(),
            action: Some(action),
        }
        .encode_to_vec();
        Order {
            signature: self.key.sign(&body),
            body,
            grant: Some(WireGrant {
                body: self.grant.body.clone(),
                signature: self.grant.signature.clone(),
                key_id: self.grant.key_id.clone(),
            }),
            // The device's node adds the trace when it hands the order to the agent.
            trace_context: Default::default(),
        }
    }
}

/// What an order says of itself, unverified: its session, token and action.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub session: String,
    pub token: u64,
    pub action: Action,
}

impl Claims {
    /// A ticket (getfile), offer (putfile) or cancel stays valid after its session ends, until a
    /// newer lease takes the device (a transfer outlives its session, and so does stopping it); a
    /// command only while its lease is the device's.
    pub fn outlives_session(&self) -> bool {
        !matches!(self.action, Action::Command(_))
    }

    /// The command or transfer the order is about.
    pub fn subject_id(&self) -> &str {
        match &self.action {
            Action::Command(c) => &c.command_id,
            Action::Cancel(c) => &c.command_id,
            Action::Get(t) => &t.transfer_id,
            Action::Put(p) => &p.transfer_id,
        }
    }
}

/// Why a device's node will not deliver an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `Gone` when a newer lease holds the device (final for a transfer); `Unauthorized` when
    /// the order names no lease the device ever had, or not its current one.
    pub code: ErrorCode,
    pub reason: String,
}

/// Whether an order with `claims` may reach the device whose current lease is `lease`, with no
/// fencing token above `applied` ever granted. A command needs the current lease itself; a ticket,
/// offer or cancel needs a token that was granted and that no newer lease has superseded.
pub fn judge(claims: &Claims, lease: Option<&Lease>, applied: u64) -> Result<(), Refusal> {
    let refuse = |code, reason: String| Err(Refusal { code, reason });
    let current = lease.map(|l| (l.session.as_str(), l.token));
    if !claims.outlives_session() {
        if current == Some((claims.session.as_str(), claims.token)) {
            return Ok(());
        }
        return refuse(
            ErrorCode::Unauthorized,
            match current {
                Some((_, token)) => format!(
                    "token {} of session {} is not the device's current lease (token {token})",
                    claims.token, claims.session
                ),
                None => format!(
                    "token {} of session {} is not the device's current lease (it has none)",
                    claims.token, claims.session
                ),
            },
        );
    }
    match current {
        Some((_, token)) if token > claims.token => refuse(
            ErrorCode::Gone,
            format!(
                "a newer session (token {token}) holds the device; token {} no longer reaches it",
                claims.token
            ),
        ),
        Some((session, token)) if token == claims.token && session != claims.session => refuse(
            ErrorCode::Unauthorized,
            format!(
                "token {} belongs to another session than {}",
                claims.token, claims.session
            ),
        ),
        _ if claims.token > applied => refuse(
            ErrorCode::Unauthorized,
            format!(
                "token {} was never granted (the lease authority's log ends at {applied})",
                claims.token
            ),
        ),
        _ => Ok(()),
    }
}

/// Reads an order's claims; an order whose body cannot be read is refused with why.
pub fn claims(order: &Order) -> Result<Claims, String> {
    let body = OrderBody::decode(order.body.as_slice())
        .map_err(|e| format!("the order's body cannot be read: {e}"))?;
    let action = body
        .action
        .ok_or_else(|| "the order has no action".to_string())?;
    let (session, token) = match &action {
        Action::Command(c) => (&c.session_id, c.token),
        Action::Cancel(c) => (&c.session_id, c.token),
        Action::Get(t) => (&t.session_id, t.token),
        Action::Put(p) => (&p.session_id, p.token),
    };
    Ok(Claims {
        session: session.clone(),
        token,
        action,
    })
}

/// An order kept as bytes (in a transfer's record), and read back.
pub fn encode(order: &Order) -> String {
    hex::encode(order.encode_to_vec())
}

pub fn decode(text: &str) -> Result<Order, String> {
    let bytes = hex::decode(text).map_err(|e| format!("a stored order is not hex: {e}"))?;
    Order::decode(bytes.as_slice()).map_err(|e| format!("a stored order cannot be read: {e}"))
}

#[cfg(test)]
mod tests {
    use agent_proto::agent::{CommandRequest, GetTicket};

    use super::*;

    fn signer() -> Signer {
        let grant = SignedGrant {
            body: b"{}".to_vec(),
            signature: vec![1; 64],
            key_id: "k".into(),
        };
        Signer::new(SessionKey::generate().unwrap(), grant)
    }

    #[test]
    fn an_order_is_signed_over_its_exact_body_and_reads_back() {
        let key = SessionKey::generate().unwrap();
        let public = key.public();
        let mut own = signer();
        own.key = key;
        let order = own.sign(Action::Command(CommandRequest {
            command_id: "s.c1".into(),
            session_id: "s".into(),
            token: 7,
            command: "dir".into(),
            ..CommandRequest::default()
        }));
        assert!(grants::verify_signature(
            &public,
            &order.body,
            &order.signature
        ));
        let claims = claims(&order).unwrap();
        assert_eq!((claims.session.as_str(), claims.token), ("s", 7));
        assert_eq!(claims.subject_id(), "s.c1");
        assert!(!claims.outlives_session());
        let cancel = signer().sign(Action::Cancel(agent_proto::agent::Cancel::default()));
        assert!(super::claims(&cancel).unwrap().outlives_session());
        assert_eq!(decode(&encode(&order)).unwrap(), order);
    }

    fn claims_of(action: Action) -> Claims {
        claims(&signer().sign(action)).unwrap()
    }

    fn command(session: &str, token: u64) -> Claims {
        claims_of(Action::Command(CommandRequest {
            session_id: session.into(),
            token,
            ..CommandRequest::default()
        }))
    }

    fn ticket(session: &str, token: u64) -> Claims {
        claims_of(Action::Get(GetTicket {
            session_id: session.into(),
            token,
            ..GetTicket::default()
        }))
    }

    fn lease(session: &str, token: u64) -> Lease {
        Lease {
            session: session.into(),
            tenant: "demo".into(),
            user: "a".into(),
            device: "web-07".into(),
            node: 1,
            token,
            granted_at: 0,
            renewed_at: 0,
            ttl_ms: 1,
            expires_at: 1,
            session_key: None,
        }
    }

    #[test]
    fn a_command_needs_the_devices_current_lease() {
        let live = lease("s2", 20);
        assert_eq!(judge(&command("s2", 20), Some(&live), 30), Ok(()));
        for (forged, why) in [
            (command("s2", u64::MAX), "a higher token"),
            (command("s1", 10), "a stale token"),
            (command("s9", 20), "the live token under another session"),
            (command("s2", 19), "a lower token of the live session"),
        ] {
            let refusal = judge(&forged, Some(&live), 30).unwrap_err();
            assert_eq!(refusal.code, ErrorCode::Unauthorized, "{why}");
        }
        let none = judge(&command("s2", 20), None, 30).unwrap_err();
        assert!(none.reason.contains("it has none"), "{}", none.reason);
    }

    #[test]
    fn a_ticket_holds_until_a_newer_lease_and_never_for_an_ungranted_token() {
        // Its session ended: still good.
        assert_eq!(judge(&ticket("s1", 10), None, 30), Ok(()));
        assert_eq!(judge(&ticket("s1", 10), Some(&lease("s1", 10)), 30), Ok(()));
        let gone = judge(&ticket("s1", 10), Some(&lease("s2", 20)), 30).unwrap_err();
        assert_eq!(gone.code, ErrorCode::Gone);
        let never = judge(&ticket("x", u64::MAX), None, 30).unwrap_err();
        assert_eq!(never.code, ErrorCode::Unauthorized);
        let borrowed = judge(&ticket("x", 20), Some(&lease("s2", 20)), 30).unwrap_err();
        assert_eq!(borrowed.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn tickets_outlive_their_session_and_garbage_is_refused() {
        let order = signer().sign(Action::Get(GetTicket {
            transfer_id: "t1".into(),
            session_id: "s".into(),
            token: 3,
            ..GetTicket::default()
        }));
        assert!(claims(&order).unwrap().outlives_session());
        let garbage = Order {
            body: vec![0xff; 9],
            ..order
        };
        assert!(claims(&garbage).is_err());
        assert!(decode("zz").is_err());
    }
}
