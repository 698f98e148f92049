//! The leader signs a grant for every lease that names a session key: on acquire and on each
//! renewal, with the lease's token and expiry, verifiable with the authority's public key alone.

mod common;

use std::sync::Arc;

use cluster::ClusterError;
use cluster::lease::LeaseError;
use common::{TestCluster, acquire_request};
use grants::{AuthorityKey, SessionKey, TrustedKeys};

fn authority() -> AuthorityKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    AuthorityKey::from_pem(&pair.serialize_pem()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_signed_on_acquire_and_on_every_renewal() {
    let key = Arc::new(authority());
    let trusted = TrustedKeys::new(vec![key.public()]);
    let cluster = TestCluster::start(3, |c| c.authority = Some(key.clone())).await;
    let session_key = SessionKey::generate().unwrap().public();
    let mut request = acquire_request("demo", "analyst-a", "web-07", "s1", 60_000);
    request.session_key = Some(session_key);

    // Asked through a follower, signed by the leader.
    let leader = cluster.wait_for_leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    let granted = cluster
        .service(follower)
        .acquire(request.clone())
        .await
        .unwrap();
    let grant = trusted.verify(&granted.grant.expect("no grant")).unwrap();
    let lease = &granted.lease;
    assert_eq!(
        (
            grant.tenant.as_str(),
            grant.device.as_str(),
            grant.session.as_str()
        ),
        ("demo", "web-07", "s1")
    );
    assert_eq!(
        (grant.user.as_str(), grant.token),
        ("analyst-a", lease.token)
    );
    assert_eq!(grant.expires_at_ms, lease.expires_at);
    assert_eq!(grant.session_key, session_key);

    let renewed = cluster
        .service(3)
        .renew("demo", "s1", lease.token)
        .await
        .unwrap();
    let again = trusted.verify(&renewed.grant.expect("no grant")).unwrap();
    assert_eq!(again.token, lease.token);
    assert_eq!(again.expires_at_ms, renewed.lease.expires_at);
    assert!(again.expires_at_ms >= grant.expires_at_ms);

    // A retry with the same key is the same lease; another key is another opener.
    let retried = cluster.service(2).acquire(request.clone()).await.unwrap();
    assert_eq!(retried.lease.token, lease.token);
    request.session_key = Some(SessionKey::generate().unwrap().public());
    let err = cluster.service(2).acquire(request).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClusterError::Rejected(LeaseError::SessionIdInUse { .. })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_without_a_session_key_or_a_leader_without_the_key_carries_no_grant() {
    let key = Arc::new(authority());
    let cluster = TestCluster::start(3, |c| c.authority = Some(key.clone())).await;
    let granted = cluster
        .service(1)
        .acquire(acquire_request("demo", "a", "web-07", "s1", 60_000))
        .await
        .unwrap();
    assert_eq!(granted.grant, None);

    let keyless = TestCluster::start(3, |_| {}).await;
    let mut request = acquire_request("demo", "a", "web-07", "s1", 60_000);
    request.session_key = Some(SessionKey::generate().unwrap().public());
    assert_eq!(
        keyless.service(1).acquire(request).await.unwrap().grant,
        None
    );
}

/// A rotation of the authority key: agents trust the old and the new key, brokers restart one
/// by one with the new one. A session's renewals go on being signed, by whichever key its leader
/// holds, and once the new key leads its grants no longer verify with the old key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_key_rotation_keeps_renewals_signed() {
    let (old, new) = (Arc::new(authority()), Arc::new(authority()));
    let both = TrustedKeys::new(vec![old.public(), new.public()]);
    let only_old = TrustedKeys::new(vec![old.public()]);
    let mut cluster = TestCluster::start(3, |c| c.authority = Some(old.clone())).await;
    let mut request = acquire_request("demo", "a", "web-07", "s1", 600_000);
    request.session_key = Some(SessionKey::generate().unwrap().public());
    let granted = cluster.service(1).acquire(request).await.unwrap();
    let token = granted.lease.token;
    only_old.verify(&granted.grant.unwrap()).unwrap();

    // The followers first, then the leader: the new leader is always a node with the new key.
    let leader = cluster.wait_for_leader().await;
    let mut order: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    order.push(leader);
    for id in order {
        cluster.kill(id).await;
        cluster.configs.get_mut(&id).unwrap().authority = Some(new.clone());
        cluster.restart(id).await;
        let leader = cluster.wait_for_leader().await;
        let renewed = cluster.service(leader).renew("demo", "s1", token).await;
        let grant = renewed.unwrap().grant.expect("a renewal without a grant");
        let read = both.verify(&grant).unwrap();
        assert_eq!((read.session.as_str(), read.token), ("s1", token));
    }
    let leader = cluster.wait_for_leader().await;
    let grant = cluster
        .service(leader)
        .renew("demo", "s1", token)
        .await
        .unwrap()
        .grant
        .unwrap();
    assert_eq!(grant.key_id, new.public().key_id());
    assert!(only_old.verify(&grant).is_err());
}
