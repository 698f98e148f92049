//! The API nodes a client was given, the one it uses now, and the order it tries them in.
//!
//! Every request goes to the node in use. When it fails there, the next node in turn becomes the
//! node in use, for that request's next attempt and for every request after it: the console stays
//! with a node that answers (sticky) and comes back to a failed one only after the others failed.

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Url;

#[derive(Debug)]
pub struct Nodes {
    /// Never empty; requests' URLs are made against the first.
    urls: Vec<Url>,
    current: AtomicUsize,
    /// The node that last answered, to say once when that changes.
    answered: AtomicUsize,
}

impl Nodes {
    /// `first`, then `more` in their order.
    pub fn new(first: Url, more: Vec<Url>) -> Nodes {
        let mut urls = vec![first];
        urls.extend(more);
        Nodes {
            urls,
            current: AtomicUsize::new(0),
            answered: AtomicUsize::new(0),
        }
    }

    pub fn count(&self) -> usize {
        self.urls.len()
    }

    /// The base URL of node `node`.
    pub fn url(&self, node: usize) -> &Url {
        &self.urls[node]
    }

    /// The first node: the one requests' URLs are made against.
    pub fn first(&self) -> &Url {
        &self.urls[0]
    }

    /// The node requests go to now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// A request failed at `node`: the next node in turn is used from now on, unless another
    /// request already moved on from it.
    pub fn failed(&self, node: usize) {
        let count = self.count();
        let _ = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                Some(after_failure(current, node, count))
            });
    }

    /// `node` answered. The node that answered before, when it was another: the console moved.
    pub fn answered(&self, node: usize) -> Option<usize> {
        let before = self.answered.swap(node, Ordering::AcqRel);
        (before != node).then_some(before)
    }

    /// `url`, made against the first node, at node `node`.
    pub fn at(&self, url: &Url, node: usize) -> Url {
        rebase(url, self.first(), self.url(node))
    }
}

/// The node in use after a request failed at `failed` while `current` was in use: the next in
/// turn, or `current` when another request already moved away from `failed`.
pub fn after_failure(current: usize, failed: usize, count: usize) -> usize {
    if current == failed {
        (failed + 1) % count
    } else {
        current
    }
}

/// `url` (under `from`) moved under `to`: its path below `from`'s, and its query, kept.
fn rebase(url: &Url, from: &Url, to: &Url) -> Url {
    if from == to {
        return url.clone();
    }
    let below = url
        .path()
        .strip_prefix(from.path().trim_end_matches('/'))
        .unwrap_or(url.path());
    let mut moved = to.clone();
    moved.set_path(&format!("{}{below}", to.path().trim_end_matches('/')));
    moved.set_query(url.query());
    moved.set_fragment(None);
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    /// The nodes one request tries when every attempt fails, starting from `start`, with no
    /// other request moving the node in use.
    fn order(start: usize, count: usize, attempts: usize) -> Vec<usize> {
        let mut current = start;
        let mut tried = Vec::new();
        for _ in 0..attempts {
            tried.push(current);
            current = after_failure(current, current, count);
        }
        tried
    }

    #[test]
    fn a_failing_request_tries_each_node_in_turn_from_the_one_in_use() {
        assert_eq!(order(0, 3, 6), [0, 1, 2, 0, 1, 2]);
        assert_eq!(order(1, 3, 4), [1, 2, 0, 1]);
        assert_eq!(order(0, 1, 3), [0, 0, 0]);
    }

    #[test]
    fn a_stale_failure_does_not_move_the_node_in_use_again() {
        // Two requests failed at node 0 at once: the second must not skip node 1.
        assert_eq!(after_failure(1, 0, 3), 1);
        assert_eq!(after_failure(2, 1, 3), 2);
    }

    #[test]
    fn the_node_that_answers_is_kept() {
        let nodes = Nodes::new(
            url("https://a:1"),
            vec![url("https://b:2"), url("https://c:3")],
        );
        assert_eq!(nodes.current(), 0);
        assert_eq!(nodes.answered(0), None);
        nodes.failed(0);
        assert_eq!(nodes.current(), 1);
        // Node 1 answers: it stays in use, and the move is reported once.
        assert_eq!(nodes.answered(1), Some(0));
        assert_eq!(nodes.answered(1), None);
        assert_eq!(nodes.current(), 1);
        // A late failure of node 0 (a request started before the move) changes nothing.
        nodes.failed(0);
        assert_eq!(nodes.current(), 1);
        nodes.failed(1);
        nodes.failed(2);
        assert_eq!(nodes.current(), 0);
    }

    #[test]
    fn urls_move_between_nodes_with_their_path_and_query() {
        let nodes = Nodes::new(
            url("https://a:1/"),
            vec![url("https://b:2/lr"), url("http://127.0.0.1:3")],
        );
        let request = url("https://a:1/api/v1/sessions/s%2F1/commands?wait_ms=1000");
        assert_eq!(nodes.at(&request, 0), request);
        assert_eq!(
            nodes.at(&request, 1).as_str(),
            "https://b:2/lr/api/v1/sessions/s%2F1/commands?wait_ms=1000"
        );
        assert_eq!(
            nodes.at(&request, 2).as_str(),
            "http://127.0.0.1:3/api/v1/sessions/s%2F1/commands?wait_ms=1000"
        );
        let prefixed = Nodes::new(url("https://a/p/"), vec![url("https://b")]);
        assert_eq!(
            prefixed.at(&url("https://a/p/healthz"), 1).as_str(),
            "https://b/healthz"
        );
    }
}
