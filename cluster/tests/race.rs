//! 64 clients race for 16 devices through all three nodes while the leader is killed; the whole
//! committed history, replayed entry by entry, never breaks an invariant and holds every
//! acknowledged grant and release.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cluster::lease::{Lease, LeaseOutcome, LeaseTable, TenantLimits};
use cluster::raft_types::NodeId;
use cluster::store::read_all_entries;
use cluster::{ClusterError, LeaseService};
use common::{TestCluster, WAIT, acquire_request};
use openraft::EntryPayload;
use rand::Rng;

const CLIENTS: usize = 64;
const USERS: usize = 32;
const DEVICES: usize = 16;
const ROUNDS: usize = 12;
const TENANT_LIMIT: u32 = 12;
/// Acknowledged operations after which the leader is killed.
const KILL_AFTER: usize = 120;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ack {
    Granted { session: String, token: u64 },
    Released { session: String, token: u64 },
}

type Nodes = Arc<RwLock<Vec<LeaseService>>>;

fn pick(nodes: &Nodes) -> LeaseService {
    let nodes = nodes.read().unwrap();
    nodes[rand::rng().random_range(0..nodes.len())].clone()
}

/// One client: acquire a random device, hold it briefly, release it. An acquire whose outcome is
/// unknown (leader died) is retried with the same session id, which is idempotent.
async fn client(id: usize, nodes: Nodes, acks: Arc<Mutex<Vec<Ack>>>) {
    let user = format!("analyst-{}", id % USERS);
    for round in 0..ROUNDS {
        let device = format!("dev-{}", rand::rng().random_range(0..DEVICES));
        let session = format!("c{id}-r{round}");
        let mut granted = None;
        for _attempt in 0..5 {
            match pick(&nodes)
                .acquire(acquire_request("demo", &user, &device, &session, 120_000))
                .await
            {
                Ok(cluster::Granted { lease, .. }) => {
                    granted = Some(lease);
                    break;
                }
                Err(ClusterError::Refused(_)) => break,
                Err(error) => {
                    tracing::info!(client = id, %error, "acquire outcome unknown; retrying")
                }
            }
        }
        let Some(lease) = granted else { continue };
        acks.lock().unwrap().push(Ack::Granted {
            session: session.clone(),
            token: lease.token,
        });
        let hold = Duration::from_millis(rand::rng().random_range(0..20));
        tokio::time::sleep(hold).await;
        for _attempt in 0..5 {
            match pick(&nodes).release("demo", &session, lease.token).await {
                Ok(released) => {
                    acks.lock().unwrap().push(Ack::Released {
                        session: session.clone(),
                        token: released.token,
                    });
                    break;
                }
                // An earlier attempt with an unknown outcome did release it.
                Err(ClusterError::Rejected(_)) => break,
                Err(error) => {
                    tracing::info!(client = id, %error, "release outcome unknown; retrying")
                }
            }
        }
    }
}

/// Replays the committed history and checks the invariants after every entry, with bookkeeping
/// of its own rather than the state machine's indexes. Returns the live leases at the end.
fn check_history(entries: &[cluster::raft_types::Entry], acks: &[Ack]) -> BTreeMap<String, Lease> {
    let mut table = LeaseTable::default();
    let mut live: BTreeMap<String, Lease> = BTreeMap::new();
    let mut limits: BTreeMap<String, TenantLimits> = BTreeMap::new();
    let mut granted_at: BTreeMap<u64, String> = BTreeMap::new();
    let mut released: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut last_token = 0;
    for entry in entries {
        let EntryPayload::Normal(request) = &entry.payload else {
            continue;
        };
        let index = entry.log_id.index;
        match table.apply(index, request.stamped_at, &request.op) {
            LeaseOutcome::Granted(lease) if lease.token == index => {
                assert!(lease.token > last_token, "tokens must strictly increase");
                last_token = lease.token;
                let limit = limits.get(&lease.tenant).copied().unwrap_or_default();
                let same_device = live
                    .values()
                    .filter(|l| l.tenant == lease.tenant && l.device == lease.device)
                    .count();
                let same_user = live
                    .values()
                    .filter(|l| l.tenant == lease.tenant && l.user == lease.user)
                    .count();
                let same_tenant = live.values().filter(|l| l.tenant == lease.tenant).count();
                assert_eq!(
                    same_device, 0,
                    "two live leases for {} at index {index}",
                    lease.device
                );
                assert!(
                    same_user < limit.max_sessions_per_user as usize,
                    "user limit broken at {index}"
                );
                assert!(
                    same_tenant < limit.max_sessions_per_tenant as usize,
                    "tenant limit broken at {index}"
                );
                granted_at.insert(index, lease.session.clone());
                live.insert(lease.session.clone(), lease);
            }
            // An idempotent retry of an acquire already granted.
            LeaseOutcome::Granted(lease) => assert_eq!(live.get(&lease.session), Some(&lease)),
            LeaseOutcome::Released(lease) => {
                assert_eq!(
                    live.remove(&lease.session).as_ref(),
                    Some(&lease),
                    "released a lease that was not live"
                );
                released.insert((lease.session, lease.token));
            }
            LeaseOutcome::Expired(leases) => {
                for lease in leases {
                    assert!(live.remove(&lease.session).is_some());
                }
            }
            LeaseOutcome::LimitsSet {
                tenant,
                limits: set,
            } => {
                limits.insert(tenant, set);
            }
            LeaseOutcome::Renewed(lease) => {
                assert!(
                    live.insert(lease.session.clone(), lease).is_some(),
                    "renewed a lease that was not live"
                );
            }
            LeaseOutcome::Adopted(lease) => {
                assert!(lease.token == index && lease.token > last_token);
                last_token = lease.token;
                assert!(
                    live.insert(lease.session.clone(), lease).is_some(),
                    "adopted a lease that was not live"
                );
            }
            LeaseOutcome::Refused(_)
            | LeaseOutcome::Rejected(_)
            | LeaseOutcome::NodeAlive { .. }
            | LeaseOutcome::Directory(_)
            | LeaseOutcome::DirectoryRefused(_) => {}
        }
    }
    for ack in acks {
        match ack {
            Ack::Granted { session, token } => {
                assert_eq!(
                    granted_at.get(token),
                    Some(session),
                    "acknowledged grant {session}@{token} is not in the history"
                )
            }
            Ack::Released { session, token } => assert!(
                released.contains(&(session.clone(), *token)),
                "acknowledged release {session}@{token} is not in the history"
            ),
        }
    }
    live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_clients_never_break_the_invariants_while_the_leader_dies() {
    // No snapshots, so the log keeps the whole history for the replay.
    let mut cluster = TestCluster::start(3, |c| c.snapshot_every = 1_000_000).await;
    cluster
        .any_service()
        .set_tenant_limits(
            "demo",
            TenantLimits {
                max_sessions_per_tenant: TENANT_LIMIT,
                max_sessions_per_user: 1,
            },
        )
        .await
        .unwrap();

    let nodes: Nodes = Arc::new(RwLock::new(
        cluster.nodes.values().map(|n| n.lease_service()).collect(),
    ));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(id, nodes.clone(), acks.clone())))
        .collect();

    // Kill the leader in the middle of the race.
    let busy = testkit::wait_until(WAIT * 3, || {
        let n = acks.lock().unwrap().len();
        async move { n >= KILL_AFTER }
    })
    .await;
    assert!(busy, "the race did not get going");
    let old_leader = cluster.wait_for_leader().await;
    nodes
        .write()
        .unwrap()
        .retain(|s| s.metrics().borrow().id != old_leader);
    cluster.kill(old_leader).await;
    let acked_before_kill = acks.lock().unwrap().len();

    for client in clients {
        tokio::time::timeout(Duration::from_secs(180), client)
            .await
            .expect("a client hung")
            .unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    assert!(
        acks.len() > acked_before_kill,
        "no operation succeeded after the leader died"
    );
    let new_leader: NodeId = cluster.wait_for_leader().await;
    assert_ne!(new_leader, old_leader);

    // New grants work after the failover.
    let service = cluster.service(new_leader);
    let lease = service
        .acquire(acquire_request(
            "demo",
            "late",
            "late-device",
            "late",
            120_000,
        ))
        .await
        .unwrap()
        .lease;
    let final_state = service.list_all().await.unwrap();
    assert!(final_state.contains(&lease));
    let applied = service.metrics().borrow().last_applied.unwrap().index;

    cluster.shutdown_all().await;
    let entries: Vec<_> = read_all_entries(&cluster.log_path(new_leader))
        .unwrap()
        .into_iter()
        .filter(|e| e.log_id.index <= applied)
        .collect();
    let live = check_history(&entries, &acks);
    let final_state: BTreeMap<String, Lease> = final_state
        .into_iter()
        .map(|l| (l.session.clone(), l))
        .collect();
    assert_eq!(
        live, final_state,
        "the replayed history and the cluster disagree on the live leases"
    );
    let grants = acks
        .iter()
        .filter(|a| matches!(a, Ack::Granted { .. }))
        .count();
    assert!(
        grants >= CLIENTS,
        "too few grants ({grants}) to call this a race"
    );
}
