//! Envelopes round-trip, and one naming another tenant than its subject is refused.

use agent_proto::bus::TransferCancel;
use async_nats::Message;

use super::*;

fn message(subject: &str, payload: Bytes) -> Message {
    Message {
        subject: subject.into(),
        reply: None,
        payload,
        headers: None,
        status: None,
        description: None,
        length: 0,
    }
}

#[test]
fn an_envelope_round_trips_on_its_tenants_subject() {
    let body = Body::TransferCancel(TransferCancel {
        transfer_id: "t1".into(),
        user: "a".into(),
    });
    let (tenant, decoded) = decode(&message(
        &device_cmd("demo", "web-07"),
        encode("demo", body.clone()),
    ))
    .unwrap();
    assert_eq!(tenant, "demo");
    assert_eq!(decoded, body);
}

#[test]
fn an_envelope_for_another_tenant_is_refused() {
    let body = Body::TransferCancel(TransferCancel {
        transfer_id: "t1".into(),
        user: "a".into(),
    });
    let err = decode(&message(
        &device_cmd("demo", "web-07"),
        encode("acme", body),
    ))
    .unwrap_err();
    assert!(matches!(err, BusError::WrongTenant { .. }), "{err}");
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let err = decode(&message(
        "lr.demo.dev.x.cmd",
        Bytes::from_static(b"\xff\xff\xff"),
    ))
    .unwrap_err();
    assert!(matches!(err, BusError::Malformed { .. }), "{err}");
    assert_eq!(tenant_of("lr.demo.sess.s1.ctl"), Some("demo"));
    assert_eq!(tenant_of("other.demo"), None);
}

#[test]
fn a_transfers_control_subject_is_its_tenants_and_outside_the_chunk_stream() {
    let subject = transfer_ctl("demo", "t-1");
    assert_eq!(tenant_of(&subject), Some("demo"));
    // `LR_CHUNKS` captures `lr.*.xfer.*.chunk.*`: a request here must reach the owner, not the
    // stream (which would answer it with a publish acknowledgement).
    assert_eq!(subject.split('.').count(), 5);
    assert_ne!(subject, transfer_evt("demo", "t-1"));
}
