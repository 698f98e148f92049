//! Config validation names the bad key.

use super::*;

fn three_nodes() -> ClusterConfig {
    ClusterConfig {
        node_id: 1,
        listen_addr: "127.0.0.1:7401".parse().unwrap(),
        members: [
            (1, "127.0.0.1:7401"),
            (2, "127.0.0.1:7402"),
            (3, "127.0.0.1:7403"),
        ]
        .into_iter()
        .map(|(id, a)| (id, a.to_string()))
        .collect(),
        ..ClusterConfig::default()
    }
}

#[test]
fn a_three_node_config_is_valid() {
    three_nodes().validate().unwrap();
}

#[test]
fn a_node_that_names_itself_wrongly_is_refused() {
    let config = ClusterConfig {
        node_id: 4,
        ..three_nodes()
    };
    let err = config.validate().unwrap_err();
    assert_eq!(err.key, "node_id");
    assert!(err.reason.contains("not among members (1, 2, 3)"), "{err}");
}

#[test]
fn a_node_whose_own_address_differs_from_its_listener_is_refused() {
    let config = ClusterConfig {
        listen_addr: "127.0.0.1:9999".parse().unwrap(),
        ..three_nodes()
    };
    assert_eq!(config.validate().unwrap_err().key, "members");
}

#[test]
fn a_node_without_peers_is_refused() {
    let mut config = three_nodes();
    config.members.retain(|id, _| *id == 1);
    let err = config.validate().unwrap_err();
    assert!(err.reason.starts_with("no peers"), "{err}");
}

#[test]
fn bad_timings_are_refused() {
    let config = ClusterConfig {
        heartbeat_ms: 400,
        ..three_nodes()
    };
    assert_eq!(config.validate().unwrap_err().key, "heartbeat_ms");
    let config = ClusterConfig {
        election_timeout_max_ms: 100,
        ..three_nodes()
    };
    assert_eq!(
        config.validate().unwrap_err().key,
        "election_timeout_max_ms"
    );
}
