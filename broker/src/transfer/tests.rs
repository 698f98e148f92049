//! The pure parts: id checks, subjects, checksums and range plans.

use super::StoreError;
use super::names::{Sha256Hex, TransferKey};
use super::range::{Piece, RangePlan, chunk_count};

#[test]
fn ids_are_letters_digits_dash_and_underscore() {
    let key = TransferKey::new("acme-1", "0190f3c2-AB_cd").unwrap();
    assert_eq!(
        key.chunk_subject(7),
        "lr.acme-1.xfer.0190f3c2-AB_cd.chunk.7"
    );
    assert_eq!(key.chunks_filter(), "lr.acme-1.xfer.0190f3c2-AB_cd.chunk.*");
    TransferKey::new(&"t".repeat(64), &"x".repeat(64)).unwrap();
}

#[test]
fn ids_that_could_reach_other_subjects_are_refused() {
    for (tenant, transfer) in [
        ("acme", "a.b"),
        ("acme", "*"),
        ("acme", ">"),
        ("acme", "a b"),
        ("acme", ""),
        ("ac.me", "x"),
        ("acme", "x\n"),
        ("acme", "é"),
        ("", "x"),
    ] {
        let err = TransferKey::new(tenant, transfer).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidId(_)),
            "{tenant:?}/{transfer:?}: {err}"
        );
    }
    let err = TransferKey::new("acme", &"x".repeat(65)).unwrap_err();
    assert!(err.to_string().contains("longer than 64"), "{err}");
}

#[test]
fn msg_ids_differ_by_tenant_and_content() {
    let a = Sha256Hex::parse(&"a".repeat(64)).unwrap();
    let b = Sha256Hex::parse(&"b".repeat(64)).unwrap();
    let t1 = TransferKey::new("t1", "x").unwrap();
    let t2 = TransferKey::new("t2", "x").unwrap();
    assert_ne!(t1.msg_id(0, &a), t2.msg_id(0, &a));
    assert_ne!(t1.msg_id(0, &a), t1.msg_id(0, &b));
    assert_ne!(t1.msg_id(0, &a), t1.msg_id(1, &a));
}

#[test]
fn index_is_read_back_only_from_this_transfers_subjects() {
    let key = TransferKey::new("t", "x").unwrap();
    assert_eq!(key.index_of("lr.t.xfer.x.chunk.42"), Some(42));
    assert_eq!(key.index_of("lr.t.xfer.xy.chunk.42"), None);
    assert_eq!(key.index_of("lr.u.xfer.x.chunk.42"), None);
    assert_eq!(key.index_of("lr.t.xfer.x.chunk.4a"), None);
}

#[test]
fn checksums_are_64_hex_digits_folded_to_lower_case() {
    let upper = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    let sha = Sha256Hex::parse(upper).unwrap();
    assert_eq!(sha.as_str(), upper.to_ascii_lowercase());
    assert_eq!(Sha256Hex::from_digest(&[0xe3, 0x0b]).as_str(), "e30b");
    for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65)] {
        assert!(matches!(
            Sha256Hex::parse(bad),
            Err(StoreError::InvalidChecksum { .. })
        ));
    }
}

#[test]
fn chunk_count_rounds_up() {
    assert_eq!(chunk_count(0, 10), 0);
    assert_eq!(chunk_count(1, 10), 1);
    assert_eq!(chunk_count(10, 10), 1);
    assert_eq!(chunk_count(11, 10), 2);
    assert_eq!(chunk_count(5, 0), 0);
}

fn plan(chunk: u64, total: u64, start: u64, end: u64) -> Vec<Piece> {
    RangePlan::new(chunk, total, start, end).unwrap().collect()
}

fn piece(index: u64, chunk_len: u64, from: u64, to: u64) -> Piece {
    Piece {
        index,
        chunk_len,
        from,
        to,
    }
}

#[test]
fn a_range_inside_one_chunk_is_one_slice() {
    assert_eq!(plan(10, 25, 0, 0), vec![piece(0, 10, 0, 1)]);
    assert_eq!(plan(10, 25, 12, 15), vec![piece(1, 10, 2, 6)]);
    assert_eq!(plan(10, 25, 24, 24), vec![piece(2, 5, 4, 5)]);
}

#[test]
fn a_range_across_chunks_is_cut_at_both_edges() {
    assert_eq!(
        plan(10, 25, 8, 21),
        vec![piece(0, 10, 8, 10), piece(1, 10, 0, 10), piece(2, 5, 0, 2)]
    );
    assert_eq!(
        plan(10, 20, 0, 19),
        vec![piece(0, 10, 0, 10), piece(1, 10, 0, 10)]
    );
}

#[test]
fn an_end_past_the_file_means_its_last_byte() {
    let plan = RangePlan::new(10, 25, 20, u64::MAX).unwrap();
    assert_eq!(plan.bounds(), (20, 24));
    assert_eq!(plan.collect::<Vec<_>>(), vec![piece(2, 5, 0, 5)]);
}

#[test]
fn ranges_that_cannot_be_satisfied_are_refused() {
    for (total, start, end) in [(25, 25, 30), (25, 100, 200), (0, 0, 0), (25, 5, 4)] {
        let err = RangePlan::new(10, total, start, end).unwrap_err();
        assert!(
            matches!(err, StoreError::RangeNotSatisfiable { .. }),
            "{total} {start}-{end}: {err}"
        );
    }
    assert!(matches!(
        RangePlan::new(0, 25, 0, 1),
        Err(StoreError::InvalidLayout(_))
    ));
}
