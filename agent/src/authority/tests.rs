use grants::{AuthorityKey, PublicKey, SessionKey};
use proptest::prelude::*;

use super::*;

const TENANT: &str = "demo";
const DEVICE: &str = "web-07";
const ISSUED: u64 = 1_700_000_000_000;
const EXPIRES: u64 = ISSUED + 30_000;

fn authority_key() -> AuthorityKey {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    AuthorityKey::from_pem(&pem).unwrap()
}

/// One lease authority and one of its sessions, as the brokers hold them.
struct Broker {
    authority: AuthorityKey,
    session: SessionKey,
}

impl Broker {
    fn new() -> Self {
        Self {
            authority: authority_key(),
            session: SessionKey::generate().unwrap(),
        }
    }

    fn grant(&self) -> Grant {
        Grant {
            tenant: TENANT.into(),
            device: DEVICE.into(),
            session: "s1".into(),
            user: "ana".into(),
            token: 42,
            issued_at_ms: ISSUED,
            expires_at_ms: EXPIRES,
            session_key: self.session.public(),
        }
    }

    /// An order of `kind` under `grant`, stamped at `stamped_at_ms` and signed by the session.
    fn order_under(&self, grant: &Grant, kind: OrderKind, stamped_at_ms: u64) -> SignedOrder {
        let claim = Claim {
            kind,
            session_id: grant.session.clone(),
            token: grant.token,
            stamped_at_ms,
        };
        signed(
            &self.session,
            Some(self.authority.sign(grant)),
            claim,
            b"dir /tmp",
        )
    }

    fn order(&self, kind: OrderKind, stamped_at_ms: u64) -> SignedOrder {
        self.order_under(&self.grant(), kind, stamped_at_ms)
    }
}

/// `claim` and `payload` as body bytes (the authority never reads them: convert does), signed by
/// `key`.
fn signed(
    key: &SessionKey,
    grant: Option<SignedGrant>,
    claim: Claim,
    payload: &[u8],
) -> SignedOrder {
    let mut body = format!("{claim:?}").into_bytes();
    body.extend_from_slice(payload);
    SignedOrder {
        signature: key.sign(&body),
        body,
        grant,
        claim,
    }
}

fn trusting(keys: &[PublicKey]) -> Authority {
    Authority::new(TrustedKeys::new(keys.to_vec()), TENANT, DEVICE)
}

#[test]
fn a_valid_order_is_admitted_and_its_stamp_remembered() {
    let b = Broker::new();
    let mut a = trusting(&[b.authority.public()]);
    let grant = a.admit(&b.order(OrderKind::Command, ISSUED + 5)).unwrap();
    assert_eq!(grant, b.grant());
    assert_eq!(a.newest_stamp_ms(), ISSUED + 5);
    // An older stamp does not move it back.
    a.admit(&b.order(OrderKind::Cancel, ISSUED + 1)).unwrap();
    assert_eq!(a.newest_stamp_ms(), ISSUED + 5);
}

#[test]
fn a_refused_order_leaves_no_stamp() {
    let b = Broker::new();
    let mut a = trusting(&[b.authority.public()]);
    let mut order = b.order(OrderKind::Command, ISSUED + 5);
    order.signature[0] ^= 1;
    assert!(a.admit(&order).is_err());
    assert_eq!(a.newest_stamp_ms(), 0);
}

#[test]
fn an_order_without_a_grant_is_refused() {
    let b = Broker::new();
    let mut order = b.order(OrderKind::Command, ISSUED);
    order.grant = None;
    let err = trusting(&[b.authority.public()]).check(&order).unwrap_err();
    assert_eq!(err, Refused::NoGrant);
}

#[test]
fn a_grant_from_an_unknown_key_is_refused_naming_both_keys() {
    let real = authority_key();
    let forger = Broker::new();
    let err = trusting(&[real.public()])
        .check(&forger.order(OrderKind::Command, ISSUED))
        .unwrap_err();
    assert_eq!(
        err,
        Refused::UnknownKey {
            key_id: forger.authority.public().key_id(),
            trusted: real.public().key_id(),
        }
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "the order's grant is signed with key {}, which this agent does not trust",
            forger.authority.public().key_id()
        )),
        "{text}"
    );
    assert!(text.contains("authority_keys"), "{text}");
}

#[test]
fn a_key_id_copied_onto_a_forged_grant_does_not_verify() {
    let real = authority_key();
    let forger = Broker::new();
    let mut order = forger.order(OrderKind::Command, ISSUED);
    order.grant.as_mut().unwrap().key_id = real.public().key_id();
    let err = trusting(&[real.public()]).check(&order).unwrap_err();
    assert_eq!(
        err,
        Refused::BadGrantSignature {
            key_id: real.public().key_id()
        }
    );
}

#[test]
fn a_grant_for_another_device_or_tenant_is_refused() {
    let b = Broker::new();
    let a = trusting(&[b.authority.public()]);
    for (tenant, device) in [(TENANT, "db-01"), ("other", DEVICE)] {
        let grant = Grant {
            tenant: tenant.into(),
            device: device.into(),
            ..b.grant()
        };
        let err = a
            .check(&b.order_under(&grant, OrderKind::Command, ISSUED))
            .unwrap_err();
        assert_eq!(
            err,
            Refused::OtherDevice {
                tenant: tenant.into(),
                device: device.into(),
                our_tenant: TENANT.into(),
                our_device: DEVICE.into(),
            }
        );
        assert!(err.to_string().contains("wrong device"), "{err}");
    }
}

#[test]
fn a_copied_real_grant_on_an_order_signed_by_another_key_is_refused() {
    let b = Broker::new();
    let real = b.order(OrderKind::Command, ISSUED);
    let attacker = SessionKey::generate().unwrap();
    let forged = signed(
        &attacker,
        real.grant.clone(),
        real.claim.clone(),
        b"persistence; rm -rf /",
    );
    let err = trusting(&[b.authority.public()])
        .check(&forged)
        .unwrap_err();
    assert_eq!(
        err,
        Refused::BadOrderSignature {
            session: "s1".into()
        }
    );
    // The real session's signature over other bytes does not pass either.
    let mut swapped = forged;
    swapped.signature = real.signature;
    assert!(matches!(
        trusting(&[b.authority.public()]).check(&swapped),
        Err(Refused::BadOrderSignature { .. })
    ));
}

#[test]
fn a_claim_that_differs_from_the_grant_is_refused() {
    let b = Broker::new();
    let a = trusting(&[b.authority.public()]);
    let claim = |session: &str, token: u64| Claim {
        kind: OrderKind::Command,
        session_id: session.into(),
        token,
        stamped_at_ms: ISSUED,
    };
    let sign = |c: Claim| signed(&b.session, Some(b.authority.sign(&b.grant())), c, b"");
    assert_eq!(
        a.check(&sign(claim("s1", u64::MAX))).unwrap_err(),
        Refused::OtherToken {
            claimed: u64::MAX,
            granted: 42
        }
    );
    assert_eq!(
        a.check(&sign(claim("s2", 42))).unwrap_err(),
        Refused::OtherSession {
            claimed: "s2".into(),
            granted: "s1".into()
        }
    );
    a.check(&sign(claim("s1", 42))).unwrap();
}

#[test]
fn an_order_stamped_after_its_grant_expired_is_refused() {
    let b = Broker::new();
    let a = trusting(&[b.authority.public()]);
    a.check(&b.order(OrderKind::Command, EXPIRES)).unwrap();
    for kind in [
        OrderKind::Command,
        OrderKind::Cancel,
        OrderKind::GetTicket,
        OrderKind::PutOffer,
    ] {
        let err = a.check(&b.order(kind, EXPIRES + 1)).unwrap_err();
        assert_eq!(
            err,
            Refused::Expired {
                stamped_at_ms: EXPIRES + 1,
                expires_at_ms: EXPIRES
            }
        );
    }
    let text = a
        .check(&b.order(OrderKind::Command, EXPIRES + 1))
        .unwrap_err()
        .to_string();
    assert_eq!(
        text,
        "the order was stamped at 2023-11-14T22:13:50.001Z but its grant expired at 2023-11-14T22:13:50Z; nothing was done; the session's lease has run out: open a new session"
    );
}

#[test]
fn a_command_under_a_grant_older_than_the_newest_stamp_is_refused_but_its_ticket_is_not() {
    let old = Broker::new();
    // The next session's grant, from the same authority, much later.
    let later = Grant {
        session: "s2".into(),
        token: 43,
        issued_at_ms: EXPIRES + 60_000,
        expires_at_ms: EXPIRES + 90_000,
        ..old.grant()
    };
    let mut a = trusting(&[old.authority.public()]);
    a.admit(&old.order_under(&later, OrderKind::Command, EXPIRES + 61_000))
        .unwrap();

    // Stamped inside its grant by a broker whose clock is behind: only the newest stamp tells.
    let err = a
        .check(&old.order(OrderKind::Command, ISSUED + 10))
        .unwrap_err();
    assert_eq!(
        err,
        Refused::Superseded {
            expires_at_ms: EXPIRES,
            newest_stamp_ms: EXPIRES + 61_000
        }
    );
    assert!(err.to_string().contains("10 s of clock skew"), "{err}");
    // A transfer's orders, its cancel included, outlive the session that signed them.
    for kind in [OrderKind::Cancel, OrderKind::GetTicket, OrderKind::PutOffer] {
        a.check(&old.order(kind, ISSUED + 10)).unwrap();
    }
}

#[test]
fn the_newest_stamp_is_allowed_the_clock_skew() {
    let b = Broker::new();
    let later = Grant {
        expires_at_ms: EXPIRES + 60_000,
        ..b.grant()
    };
    let mut a = trusting(&[b.authority.public()]);
    a.admit(&b.order_under(&later, OrderKind::Command, EXPIRES + CLOCK_SKEW_MS))
        .unwrap();
    a.check(&b.order(OrderKind::Command, EXPIRES)).unwrap();
    a.admit(&b.order_under(&later, OrderKind::Command, EXPIRES + CLOCK_SKEW_MS + 1))
        .unwrap();
    assert!(matches!(
        a.check(&b.order(OrderKind::Command, EXPIRES)),
        Err(Refused::Superseded { .. })
    ));
}

#[test]
fn during_a_rotation_grants_from_either_trusted_key_are_admitted() {
    let old = Broker::new();
    let new = Broker::new();
    let mut a = trusting(&[old.authority.public(), new.authority.public()]);
    a.admit(&old.order(OrderKind::Command, ISSUED)).unwrap();
    a.admit(&new.order(OrderKind::Command, ISSUED)).unwrap();
    // Once the old key is dropped, its grants are not.
    let a = trusting(&[new.authority.public()]);
    assert!(matches!(
        a.check(&old.order(OrderKind::Command, ISSUED)),
        Err(Refused::UnknownKey { .. })
    ));
}

/// Which part of an order a flipped byte lands in.
#[derive(Debug, Clone, Copy)]
enum Part {
    Body,
    Signature,
    GrantBody,
    GrantSignature,
    KeyId,
}

proptest! {
    #[test]
    fn flipping_any_byte_of_an_order_refuses_it(
        part in prop_oneof![
            Just(Part::Body),
            Just(Part::Signature),
            Just(Part::GrantBody),
            Just(Part::GrantSignature),
            Just(Part::KeyId),
        ],
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let b = Broker::new();
        let a = trusting(&[b.authority.public()]);
        let mut order = b.order(OrderKind::Command, ISSUED);
        prop_assert!(a.check(&order).is_ok());
        let grant = order.grant.as_mut().unwrap();
        let bytes: &mut Vec<u8> = match part {
            Part::Body => &mut order.body,
            Part::Signature => &mut order.signature,
            Part::GrantBody => &mut grant.body,
            Part::GrantSignature => &mut grant.signature,
            Part::KeyId => {
                // Kept ASCII, so the id stays a string.
                let mut id = std::mem::take(&mut grant.key_id).into_bytes();
                let i = at.index(id.len());
                id[i] ^= (flip & 0x7f) | 1;
                grant.key_id = String::from_utf8(id).unwrap();
                prop_assert!(a.check(&order).is_err());
                return Ok(());
            }
        };
        let i = at.index(bytes.len());
        bytes[i] ^= flip;
        prop_assert!(a.check(&order).is_err());
    }
}
