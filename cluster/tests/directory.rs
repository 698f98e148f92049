//! The directory is replicated with the leases: a change made through any node reaches every
//! node's replica, and survives a restart of the whole cluster through its snapshots.

mod common;

use access::{Role, RoleGrant};
use cluster::ClusterError;
use cluster::directory::{ApiToken, DirectoryError, DirectoryOp, PLATFORM_TENANT};
use common::{TestCluster, WAIT};

fn admin_token() -> ApiToken {
    ApiToken {
        id: "t0".into(),
        tenant: PLATFORM_TENANT.into(),
        user: "root".into(),
        sha256: "a".repeat(64),
        description: "bootstrap".into(),
        created_at: 0,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_any_node_holds_on_every_node_and_survives_restarts() {
    // Snapshots every few entries, so the restart reads the directory back from one.
    let mut cluster = TestCluster::start(3, |c| {
        c.snapshot_every = 3;
        c.keep_after_snapshot = 1;
    })
    .await;
    let bootstrap = DirectoryOp::Bootstrap {
        admin: "root".into(),
        token: admin_token(),
        import: vec![],
    };
    cluster
        .service(2)
        .change_directory(bootstrap.clone())
        .await
        .unwrap();
    let again = cluster.service(3).change_directory(bootstrap).await;
    assert!(
        matches!(
            again,
            Err(ClusterError::Directory(DirectoryError::AlreadyBootstrapped))
        ),
        "{again:?}"
    );
    for (i, tenant) in ["demo", "acme", "globex"].iter().enumerate() {
        let node = (i as u64 % 3) + 1;
        let create = DirectoryOp::CreateTenant {
            id: (*tenant).into(),
            display_name: tenant.to_uppercase(),
        };
        cluster
            .service(node)
            .change_directory(create)
            .await
            .unwrap();
    }
    let user = DirectoryOp::CreateUser {
        tenant: "demo".into(),
        name: "analyst-a".into(),
        roles: vec![RoleGrant::everywhere(Role::ResponderBasic)],
    };
    cluster.service(1).change_directory(user).await.unwrap();

    let everywhere = |cluster: &TestCluster| {
        let services: Vec<_> = (1..=3).map(|id| cluster.service(id)).collect();
        testkit::wait_until(WAIT, move || {
            let services = services.clone();
            async move {
                for s in &services {
                    let seen = s
                        .with_local_directory(|d| {
                            d.tenants().count() == 4
                                && d.user("demo", "analyst-a").is_some()
                                && d.token_by_hash(&"a".repeat(64)).is_some()
                        })
                        .await;
                    if !seen {
                        return false;
                    }
                }
                true
            }
        })
    };
    assert!(everywhere(&cluster).await, "a replica missed a change");

    cluster.shutdown_all().await;
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    cluster.wait_for_leader().await;
    assert!(
        everywhere(&cluster).await,
        "the directory did not survive a restart"
    );
    let read = cluster.service(3).directory().await.unwrap();
    assert_eq!(read.tenant("acme").unwrap().display_name, "ACME");
}
