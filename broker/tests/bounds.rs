//! Resource bounds on a real stack: limits that contradict each other are refused at startup,
//! naming both.

mod common;

use std::time::Duration;

use common::Stack;

/// Waits (bounded) for broker `id` to exit; its exit code.
async fn exit_code(stack: &mut Stack, id: u64) -> Option<i32> {
    for _ in 0..600 {
        let child = stack.brokers.get_mut(&id).unwrap().child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_larger_than_nats_carries_is_refused_at_startup_naming_both_limits() {
    let mut stack = Stack::start(3, "").await;
    stack.nats.reconfigure(|config| {
        config.replace(
            &format!("max_payload: {}", broker::nats::MAX_PAYLOAD_BYTES),
            "max_payload: 1048576",
        )
    });
    stack.kill(1);
    stack.spawn_broker(1);
    assert_eq!(exit_code(&mut stack, 1).await, Some(1), "{}", stack.log(1));
    let log = stack.log(1);
    assert!(
        log.contains("agents.max_message_bytes") && log.contains("max_payload is 1048576"),
        "{log}"
    );
}
