//! The one validator of every id the platform takes from outside: config files, certificates,
//! API paths and bodies, agents' messages.
//!
//! Ids end up in NATS subjects (`lr.<tenant>.dev.<device>.cmd`), JetStream KV keys, file names
//! and `lr-agent://` / `lr-broker://` URIs. A `.` would add a subject level (tenant `acme` would
//! then see `acme.eu`), `*` and `>` are subject wildcards, and whitespace or control characters
//! would split or forge log lines. So the ids that address something are *tokens*: 1 to
//! [`MAX_TOKEN_LEN`] characters from `A-Z a-z 0-9 _ -`. User ids are names people choose (an
//! e-mail address, say): `.`, `@` and `+` are allowed there as well, since a user id never enters
//! a subject or key. A library name is a file name on the device.

#![forbid(unsafe_code)]

use std::fmt;

/// Longest tenant, device, session, transfer or broker id.
pub const MAX_TOKEN_LEN: usize = 64;
/// Longest user id.
pub const MAX_USER_LEN: usize = 128;
/// Longest library name, in bytes.
pub const MAX_LIBRARY_NAME_LEN: usize = 128;
/// How much of a refused value an error repeats.
const SHOWN: usize = 80;

/// What an id names; each kind has one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Tenant,
    Device,
    User,
    Session,
    Command,
    Transfer,
    Broker,
    /// A client's key that makes a retried request answer what the first one did.
    IdempotencyKey,
    LibraryName,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tenant => "tenant id",
            Kind::Device => "device id",
            Kind::User => "user id",
            Kind::Session => "session id",
            Kind::Command => "command id",
            Kind::IdempotencyKey => "idempotency key",
            Kind::Transfer => "transfer id",
            Kind::Broker => "broker id",
            Kind::LibraryName => "library name",
        }
    }

    /// The rule, as a person fixing the value needs to read it.
    pub fn rule(self) -> &'static str {
        match self {
            Kind::Tenant
            | Kind::Device
            | Kind::Session
            | Kind::Command
            | Kind::Transfer
            | Kind::Broker
            | Kind::IdempotencyKey => {
                "use 1 to 64 characters from A-Z a-z 0-9 _ - (no dots, wildcards or spaces)"
            }
            Kind::User => "use 1 to 128 characters from A-Z a-z 0-9 . _ - @ +",
            Kind::LibraryName => {
                "use a file name of 1 to 128 bytes: no slash, no control character, not starting with '.'"
            }
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused id: which kind, the value (cut and escaped for display), why, and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}; {}", kind.rule())]
pub struct InvalidId {
    pub kind: Kind,
    pub value: String,
    pub reason: &'static str,
}

impl InvalidId {
    pub fn rule(&self) -> &'static str {
        self.kind.rule()
    }
}

/// Checks `value` against the rule of `kind`.
pub fn check(kind: Kind, value: &str) -> Result<(), InvalidId> {
    let verdict = match kind {
        Kind::Tenant
        | Kind::Device
        | Kind::Session
        | Kind::Command
        | Kind::Transfer
        | Kind::Broker
        | Kind::IdempotencyKey => check_chars(value, MAX_TOKEN_LEN, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
        }),
        Kind::User => check_chars(value, MAX_USER_LEN, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'+')
        }),
        Kind::LibraryName => check_library_name(value),
    };
    verdict.map_err(|reason| InvalidId {
        kind,
        value: value.chars().take(SHOWN).collect(),
        reason,
    })
}

pub fn tenant(value: &str) -> Result<(), InvalidId> {
    check(Kind::Tenant, value)
}

pub fn device(value: &str) -> Result<(), InvalidId> {
    check(Kind::Device, value)
}

pub fn user(value: &str) -> Result<(), InvalidId> {
    check(Kind::User, value)
}

pub fn session(value: &str) -> Result<(), InvalidId> {
    check(Kind::Session, value)
}

pub fn command(value: &str) -> Result<(), InvalidId> {
    check(Kind::Command, value)
}

pub fn idempotency_key(value: &str) -> Result<(), InvalidId> {
    check(Kind::IdempotencyKey, value)
}

pub fn transfer(value: &str) -> Result<(), InvalidId> {
    check(Kind::Transfer, value)
}

pub fn broker(value: &str) -> Result<(), InvalidId> {
    check(Kind::Broker, value)
}

pub fn library_name(value: &str) -> Result<(), InvalidId> {
    check(Kind::LibraryName, value)
}

fn check_chars(value: &str, max: usize, allowed: impl Fn(u8) -> bool) -> Result<(), &'static str> {
    if value.is_empty() {
        Err("it is empty")
    } else if value.len() > max {
        Err(if max == MAX_TOKEN_LEN {
            "it is longer than 64 characters"
        } else {
            "it is longer than 128 characters"
        })
    } else if value
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        Err("it holds whitespace or a control character")
    } else {
        match value.bytes().find(|b| !allowed(*b)) {
            Some(b'.' | b'*' | b'>') => {
                Err("it holds '.', '*' or '>', which separate or match NATS subject levels")
            }
            Some(_) => Err("it holds a character outside the allowed set"),
            None => Ok(()),
        }
    }
}

fn check_library_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.len() > MAX_LIBRARY_NAME_LEN {
        Err("it is longer than 128 bytes")
    } else if name.contains(['/', '\\']) {
        Err("it holds a slash; a library name is a file name, not a path")
    } else if name.chars().any(char::is_control) {
        Err("it holds a control character (a newline, a tab or NUL)")
    } else if name.starts_with('.') {
        Err("it starts with '.'")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
