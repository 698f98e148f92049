use proptest::prelude::*;

use super::*;

fn authority() -> AuthorityKey {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    AuthorityKey::from_pem(&pem).unwrap()
}

fn grant(session_key: PublicKey) -> Grant {
    Grant {
        tenant: "acme".into(),
        device: "web-07".into(),
        session: "s1".into(),
        user: "ana".into(),
        token: 42,
        issued_at_ms: 1_000,
        expires_at_ms: 31_000,
        session_key,
    }
}

#[test]
fn a_grant_signed_by_a_trusted_key_verifies_and_reads_back() {
    let key = authority();
    let session = SessionKey::generate().unwrap();
    let signed = key.sign(&grant(session.public()));
    let trusted = TrustedKeys::new(vec![key.public()]);
    assert_eq!(trusted.verify(&signed).unwrap(), grant(session.public()));
}

#[test]
fn a_grant_from_an_unknown_key_is_refused_naming_the_key() {
    let signed = authority().sign(&grant(SessionKey::generate().unwrap().public()));
    let trusted = TrustedKeys::new(vec![authority().public()]);
    let err = trusted.verify(&signed).unwrap_err();
    assert_eq!(
        err,
        GrantError::UnknownKey {
            key_id: signed.key_id.clone()
        }
    );
    assert!(err.to_string().contains("public key"));
}

#[test]
fn a_key_id_copied_onto_another_keys_signature_does_not_verify() {
    let real = authority();
    let forger = authority();
    let mut signed = forger.sign(&grant(SessionKey::generate().unwrap().public()));
    signed.key_id = real.public().key_id();
    let trusted = TrustedKeys::new(vec![real.public()]);
    assert!(matches!(
        trusted.verify(&signed),
        Err(GrantError::BadGrantSignature { .. })
    ));
}

#[test]
fn during_a_rotation_grants_of_the_old_and_the_new_key_both_verify() {
    let old = authority();
    let new = authority();
    let trusted = TrustedKeys::new(vec![new.public(), old.public()]);
    let session = SessionKey::generate().unwrap().public();
    assert!(trusted.verify(&old.sign(&grant(session))).is_ok());
    assert!(trusted.verify(&new.sign(&grant(session))).is_ok());
    let after = TrustedKeys::new(vec![new.public()]);
    assert!(after.verify(&old.sign(&grant(session))).is_err());
}

#[test]
fn public_keys_read_back_from_their_text_and_refuse_anything_else() {
    let key = SessionKey::generate().unwrap().public();
    assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
    for bad in ["", "ed25519:", "ed25519:zz", "rsa:00", "ed25519:0011"] {
        assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
    }
    let json = serde_json::to_string(&key).unwrap();
    assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
}

#[test]
fn an_authority_key_file_that_is_not_a_key_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authority.key");
    std::fs::write(&path, "not a key").unwrap();
    let err = AuthorityKey::from_pem_file(&path).unwrap_err();
    assert!(err.to_string().contains("authority.key"), "{err}");
}

#[test]
fn a_grant_covers_orders_stamped_up_to_its_expiry() {
    let g = grant(SessionKey::generate().unwrap().public());
    assert!(g.covers(g.issued_at_ms));
    assert!(g.covers(g.expires_at_ms));
    assert!(!g.covers(g.expires_at_ms + 1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_changed_byte_of_an_order_or_its_signature_is_refused(
        body in proptest::collection::vec(any::<u8>(), 1..200),
        flip in any::<usize>(),
        in_signature in any::<bool>(),
    ) {
        let session = SessionKey::generate().unwrap();
        let mut signature = session.sign(&body);
        prop_assert!(verify_signature(&session.public(), &body, &signature));
        let mut body = body;
        if in_signature {
            let i = flip % signature.len();
            signature[i] ^= 1;
        } else {
            let i = flip % body.len();
            body[i] ^= 1;
        }
        prop_assert!(!verify_signature(&session.public(), &body, &signature));
    }
}
