//! The hash chain, pure: how an entry is sealed (canonical JSON, SHA-256, the previous entry's
//! hash inside) and how a stored chain is checked, entry by entry, against the newest checkpoint
//! of its head.

use api_model::AuditEntry;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of a tenant's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `value` as canonical JSON: object keys sorted, no whitespace, strings and numbers as serde_json
/// writes them. Independent of how serde_json orders maps, so every broker hashes alike.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of a stored entry: SHA-256 of its canonical JSON without `hash`.
pub fn hash_of(entry: &Value) -> String {
    let mut unsealed = entry.clone();
    if let Value::Object(map) = &mut unsealed {
        map.remove("hash");
    }
    hex::encode(Sha256::digest(canonical(&unsealed).as_bytes()))
}

/// Sets `entry.hash` and answers the bytes to store: the sealed entry's canonical JSON.
pub fn seal(entry: &mut AuditEntry) -> Vec<u8> {
    entry.hash.clear();
    let mut value = serde_json::to_value(&*entry).unwrap_or(Value::Null);
    entry.hash = hash_of(&value);
    if let Value::Object(map) = &mut value {
        map.insert("hash".into(), Value::String(entry.hash.clone()));
    }
    canonical(&value).into_bytes()
}

/// The newest checkpoint of a chain's head in the replicated state, and where retention cut
/// its start: the entry the chain starts at and the hash that entry follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    pub cut: Option<(u64, String)>,
}

/// What a walk of a chain found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    pub entries: u64,
    pub head_seq: u64,
    pub head_hash: Option<String>,
    /// The chain position where it first does not hold, and why.
    pub broken: Option<(u64, String)>,
}

/// Checks entries in the order stored: each parses, its hash is its own, it follows the previous
/// one (`seq` one more, `prev_hash` its hash; the first from [`GENESIS`], or from the retention
/// cut's hash at the cut), and the chain reaches the checkpoint with the checkpointed hash.
/// Entries before the cut that retention has not removed yet are passed over.
pub struct Verifier {
    checkpoint: Option<Checkpoint>,
    walk: Walk,
    expected_prev: String,
    checkpoint_seen: bool,
}

impl Verifier {
    pub fn new(checkpoint: Option<Checkpoint>) -> Self {
        let (start, expected_prev) = checkpoint
            .as_ref()
            .and_then(|c| c.cut.clone())
            .unwrap_or((1, GENESIS.into()));
        Self {
            checkpoint,
            walk: Walk {
                entries: 0,
                head_seq: start.saturating_sub(1),
                head_hash: None,
                broken: None,
            },
            expected_prev,
            checkpoint_seen: false,
        }
    }

    /// How many entries were checked and found in place so far.
    pub fn accepted(&self) -> u64 {
        self.walk.entries
    }

    /// Whether the chain already broke (later entries add nothing).
    pub fn is_broken(&self) -> bool {
        self.walk.broken.is_some()
    }

    /// The next stored entry.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.is_broken() {
            return;
        }
        let position = self.walk.head_seq + 1;
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(e) => return self.broken(position, format!("not a json entry ({e})")),
        };
        let seq = value["seq"].as_u64().unwrap_or(0);
        if self.walk.entries == 0 && seq < position {
            return;
        }
        let stored_hash = value["hash"].as_str().unwrap_or_default().to_owned();
        if seq != position {
            let what = if seq > position {
                format!(
                    "entries {position} to {} are missing (the next stored entry is {seq})",
                    seq - 1
                )
            } else {
                format!("an entry numbered {seq} stands where entry {position} should")
            };
            return self.broken(position, what);
        }
        if hash_of(&value) != stored_hash {
            return self.broken(
                position,
                "its content does not match its hash: it was edited".into(),
            );
        }
        if value["prev_hash"].as_str() != Some(self.expected_prev.as_str()) {
            return self.broken(
                position,
                "it does not follow the entry before it (prev_hash differs): an entry was removed, replaced or moved".into(),
            );
        }
        if let Some(c) = &self.checkpoint
            && c.seq == seq
        {
            if c.hash != stored_hash {
                return self.broken(
                    position,
                    "it differs from the cluster's checkpoint of this position".into(),
                );
            }
            self.checkpoint_seen = true;
        }
        self.walk.entries += 1;
        self.walk.head_seq = seq;
        self.walk.head_hash = Some(stored_hash.clone());
        self.expected_prev = stored_hash;
    }

    fn broken(&mut self, position: u64, why: String) {
        self.walk.broken = Some((position, why));
    }

    /// The walk, once every stored entry was pushed.
    pub fn finish(mut self) -> Walk {
        if !self.is_broken()
            && let Some(c) = &self.checkpoint
            && !self.checkpoint_seen
            && c.seq > self.walk.head_seq
        {
            let position = self.walk.head_seq + 1;
            self.walk.broken = Some((
                position,
                format!(
                    "the chain ends at entry {}, but the cluster checkpointed entry {}: entries from {position} on were removed",
                    self.walk.head_seq, c.seq
                ),
            ));
        }
        self.walk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_model::AuditKind;
    use serde_json::json;

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let mut entry = AuditEntry {
                    tenant: "demo".into(),
                    seq,
                    at: api_model::Timestamp::from_second(1_700_000_000 + seq as i64).unwrap(),
                    kind: AuditKind::CommandSubmitted,
                    user: Some("analyst-a".into()),
                    node: 1,
                    device: Some("web-07".into()),
                    session: Some("s1".into()),
                    command_id: Some(format!("c{seq}")),
                    transfer_id: None,
                    details: json!({"command_line": "dir /", "z": 1, "a": [1, {"y": 2, "b": 3}]}),
                    output_ref: None,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                let bytes = seal(&mut entry);
                prev = entry.hash;
                bytes
            })
            .collect()
    }

    fn walk(entries: &[Vec<u8>], checkpoint: Option<Checkpoint>) -> Walk {
        let mut verifier = Verifier::new(checkpoint);
        for e in entries {
            verifier.push(e);
        }
        verifier.finish()
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value = json!({"b": 1, "a": {"d": [3, {"f": 1, "e": 2}], "c": "x"}});
        assert_eq!(
            canonical(&value),
            r#"{"a":{"c":"x","d":[3,{"e":2,"f":1}]},"b":1}"#
        );
    }

    #[test]
    fn an_intact_chain_verifies_up_to_its_checkpoint() {
        let entries = chain(5);
        let head: Value = serde_json::from_slice(&entries[2]).unwrap();
        let checkpoint = Checkpoint {
            seq: 3,
            hash: head["hash"].as_str().unwrap().into(),
            cut: None,
        };
        let walk = walk(&entries, Some(checkpoint));
        assert_eq!(walk.broken, None);
        assert_eq!((walk.entries, walk.head_seq), (5, 5));
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut entries = chain(5);
        let mut value: Value = serde_json::from_slice(&entries[2]).unwrap();
        value["details"]["command_line"] = json!("rm -rf /");
        entries[2] = canonical(&value).into_bytes();
        let broken = walk(&entries, None).broken.unwrap();
        assert_eq!(broken.0, 3);
        assert!(broken.1.contains("edited"), "{}", broken.1);
    }

    #[test]
    fn a_removed_or_moved_entry_is_named() {
        let mut entries = chain(5);
        entries.remove(1);
        let broken = walk(&entries, None).broken.unwrap();
        assert_eq!(broken.0, 2);
        assert!(broken.1.contains("missing"), "{}", broken.1);

        let mut entries = chain(5);
        entries.swap(1, 2);
        assert_eq!(walk(&entries, None).broken.unwrap().0, 2);

        // Re-sealed with its number changed, an entry still does not follow its predecessor.
        let mut entries = chain(5);
        let mut forged: AuditEntry = serde_json::from_slice(&entries[3]).unwrap();
        forged.seq = 3;
        entries[2] = seal(&mut forged);
        let broken = walk(&entries, None).broken.unwrap();
        assert_eq!(broken.0, 3);
        assert!(broken.1.contains("prev_hash"), "{}", broken.1);
    }

    #[test]
    fn a_truncated_tail_is_caught_by_the_checkpoint() {
        let entries = chain(5);
        let last: Value = serde_json::from_slice(&entries[4]).unwrap();
        let checkpoint = Checkpoint {
            seq: 5,
            hash: last["hash"].as_str().unwrap().into(),
            cut: None,
        };
        let broken = walk(&entries[..3], Some(checkpoint)).broken.unwrap();
        assert_eq!(broken.0, 4);
        assert!(broken.1.contains("removed"), "{}", broken.1);
    }

    #[test]
    fn the_chain_starts_at_the_retention_cut_and_is_still_checked_after_it() {
        let entries = chain(6);
        let hash = |i: usize| {
            let value: Value = serde_json::from_slice(&entries[i]).unwrap();
            value["hash"].as_str().unwrap().to_owned()
        };
        let checkpoint = Checkpoint {
            seq: 5,
            hash: hash(4),
            cut: Some((3, hash(1))),
        };
        // Cut and removed; or cut with the removal still to come.
        for stored in [&entries[2..], &entries[..]] {
            let walk = walk(stored, Some(checkpoint.clone()));
            assert_eq!(walk.broken, None);
            assert_eq!((walk.entries, walk.head_seq), (4, 6));
        }
        // Removed past the cut: the first missing entry is named.
        let broken = walk(&entries[3..], Some(checkpoint.clone()))
            .broken
            .unwrap();
        assert_eq!(broken.0, 3);
        assert!(broken.1.contains("missing"), "{}", broken.1);
        // The entry at the cut does not follow the recorded hash: replaced.
        let other = Checkpoint {
            cut: Some((3, hash(0))),
            ..checkpoint
        };
        assert_eq!(walk(&entries[2..], Some(other)).broken.unwrap().0, 3);
    }
}
