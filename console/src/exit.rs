//! Exit codes of `lr` and the one mapping from every failure to a code and a message.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the command ran and failed on the device: failed, timed_out, rejected or cancelled (also: gave up waiting); or `lr log verify` found the audit log's chain broken |
//! | 2 | usage: bad flags or config, a mistake in a command line (found before sending), or the request names something that does not exist or is malformed (400, 404, 413) |
//! | 3 | refused: not authenticated or not allowed, or the device/session is busy, offline or ended (401, 403, 409, 410, 429) |
//! | 4 | the broker is unreachable (connect, TLS, timeout), unavailable or broken (5xx), or answered off-contract; `lr health`: an API node is not ready |

use std::fmt;

use api_model::{ErrorCode, ErrorDetail};

use crate::api::ApiError;

/// What the process returns to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    /// A command failed on the device, or what was checked does not hold (a broken audit chain).
    CommandFailed = 1,
    Usage = 2,
    Refused = 3,
    Unavailable = 4,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The exit code for an HTTP error status from the broker.
    pub fn for_status(status: u16) -> Exit {
        match status {
            400 | 404 | 413 | 414 | 422 => Exit::Usage,
            401 | 403 | 409 | 410 | 429 => Exit::Refused,
            _ => Exit::Unavailable,
        }
    }

    /// The exit code for a stable error code of the API; a code of a newer broker falls back to
    /// the status.
    pub fn for_api_code(code: ErrorCode, status: u16) -> Exit {
        match code {
            ErrorCode::InvalidRequest | ErrorCode::NotFound | ErrorCode::PayloadTooLarge => {
                Exit::Usage
            }
            ErrorCode::Unauthorized
            | ErrorCode::Forbidden
            | ErrorCode::SessionRefused
            | ErrorCode::DeviceOffline
            | ErrorCode::AlreadyExists
            | ErrorCode::NotReady
            | ErrorCode::Gone => Exit::Refused,
            ErrorCode::RangeNotSatisfiable
            | ErrorCode::Unavailable
            | ErrorCode::SessionMoving
            | ErrorCode::Internal => Exit::Unavailable,
            ErrorCode::Unknown => Exit::for_status(status),
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

/// A failure as the user sees it: `lr: <message>` and optional hints on stderr, and an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub hints: Vec<String>,
    /// The API's stable error code, when the broker sent one.
    pub api_code: Option<ErrorCode>,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure {
            exit,
            message: message.into(),
            hints: Vec::new(),
            api_code: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Exit::Usage, message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The lines printed on stderr.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("lr: {}", self.message)];
        lines.extend(self.hints.iter().map(|h| format!("lr: hint: {h}")));
        lines
    }

    pub fn print(&self) {
        for line in self.lines() {
            crate::say!("{line}");
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ApiError> for Failure {
    fn from(err: ApiError) -> Self {
        let exit = err.exit();
        let mut failure = Failure::new(exit, err.to_string());
        failure.api_code = err.code();
        match &err {
            ApiError::Api { detail, .. } => {
                failure.hints.extend(holders(detail));
                if let Some(hint) = hint_for_code(detail.code) {
                    failure.hints.push(hint.to_owned());
                }
            }
            ApiError::Unreachable { tls: true, .. } => failure.hints.push(
                "check that LR_CA_CERT (--ca-cert, ca_cert in the config file) is the cluster CA \
                 and that the broker's certificate names the host in LR_API_URL"
                    .to_owned(),
            ),
            ApiError::Unreachable { tls: false, .. } => failure.hints.push(
                "check LR_API_URL (--api-url) and that a broker node is running there".to_owned(),
            ),
            ApiError::NoNode { tried, tls } => {
                failure.hints.push(format!(
                    "each of the {} API nodes in LR_API_URL (--api-url, api_url in the config \
                     file) was tried {} times; check that broker nodes run there, or add the \
                     address of one that does",
                    tried.len(),
                    crate::api::ATTEMPTS_PER_NODE
                ));
                if *tls {
                    failure.hints.push(
                        "check that LR_CA_CERT (--ca-cert, ca_cert in the config file) is the \
                         cluster CA and that the brokers' certificates name the hosts in LR_API_URL"
                            .to_owned(),
                    );
                }
            }
            ApiError::Protocol(_) => failure.hints.push(
                "is LR_API_URL the address of an lr broker, and is the broker the same version?"
                    .to_owned(),
            ),
            ApiError::Setup(_) => {}
        }
        failure
    }
}

fn hint_for_code(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::Unauthorized => {
            "check LR_TOKEN (--token, token in the config file): it may be missing, mistyped or expired"
        }
        ErrorCode::Forbidden => {
            "`lr whoami` lists your roles; ask a tenant admin for the role the message names"
        }
        ErrorCode::NotFound => {
            "`lr devices` lists the devices you can reach, `lr sessions` the live sessions"
        }
        ErrorCode::DeviceOffline => {
            "the device's agent is not connected; `lr devices` shows which devices are online"
        }
        ErrorCode::Unavailable => {
            "the broker cluster cannot decide right now (no quorum or restarting); retry shortly"
        }
        ErrorCode::SessionMoving => {
            "the session's broker stopped; another takes the session over within seconds: run the command again (same session)"
        }
        _ => return None,
    })
}

/// `held by <user> since <since> (session <id>, device <device>)` for each holder of a refusal
/// that the message does not already name.
fn holders(detail: &ErrorDetail) -> Vec<String> {
    detail
        .holders
        .iter()
        .flatten()
        .filter(|h| !detail.message.contains(&h.session))
        .map(|h| {
            format!(
                "held by {} since {} (session {}, device {})",
                h.user, h.since, h.session, h.device
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::Doc;

    fn api_error(status: u16, body: &str) -> ApiError {
        ApiError::from_error_body(status, body.as_bytes())
    }

    #[test]
    fn status_mapping() {
        assert_eq!(Exit::for_status(404), Exit::Usage);
        assert_eq!(Exit::for_status(400), Exit::Usage);
        assert_eq!(Exit::for_status(413), Exit::Usage);
        assert_eq!(Exit::for_status(401), Exit::Refused);
        assert_eq!(Exit::for_status(403), Exit::Refused);
        assert_eq!(Exit::for_status(409), Exit::Refused);
        assert_eq!(Exit::for_status(410), Exit::Refused);
        assert_eq!(Exit::for_status(500), Exit::Unavailable);
        assert_eq!(Exit::for_status(503), Exit::Unavailable);
        assert_eq!(Exit::for_status(502), Exit::Unavailable);
    }

    #[test]
    fn every_contract_code_maps() {
        let cases = [
            ("unauthorized", 401, Exit::Refused),
            ("not_found", 404, Exit::Usage),
            ("session_refused", 409, Exit::Refused),
            ("device_offline", 409, Exit::Refused),
            ("invalid_request", 400, Exit::Usage),
            ("payload_too_large", 413, Exit::Usage),
            ("session_ended", 410, Exit::Refused),
            ("unavailable", 503, Exit::Unavailable),
            ("internal", 500, Exit::Unavailable),
            ("something_new", 409, Exit::Refused),
            ("something_new", 418, Exit::Unavailable),
        ];
        for (code, status, exit) in cases {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
            assert_eq!(api_error(status, &body).exit(), exit, "{code}");
        }
    }

    #[test]
    fn refusal_names_the_holders_and_keeps_the_api_message() {
        let body = r#"{"error":{"code":"session_refused","message":"device web-07 is in a session held by analyst-a","invariant":"one_session_per_device","holders":[{"user":"analyst-a","session":"s-1","device":"web-07","since":"2025-01-01T10:42:00Z"}]}}"#;
        let failure = Failure::from(api_error(409, body));
        assert_eq!(failure.exit, Exit::Refused);
        assert_eq!(
            failure.lines(),
            [
                "lr: device web-07 is in a session held by analyst-a",
                "lr: hint: held by analyst-a since 2025-01-01T10:42:00Z (session s-1, device web-07)",
            ]
        );
    }

    #[test]
    fn holders_named_in_the_message_are_not_repeated() {
        let body = r#"{"error":{"code":"session_refused","message":"device web-07 is in a session held by analyst-a (session s-1)","holders":[{"user":"analyst-a","session":"s-1","device":"web-07","since":"2025-01-01T10:42:00Z"}]}}"#;
        assert_eq!(Failure::from(api_error(409, body)).lines().len(), 1);
    }

    #[test]
    fn unauthorized_hints_at_the_token() {
        let body =
            r#"{"error":{"code":"unauthorized","message":"missing or invalid bearer token"}}"#;
        let failure = Failure::from(api_error(401, body));
        assert_eq!(failure.exit, Exit::Refused);
        assert!(
            failure.lines()[1].contains("LR_TOKEN"),
            "{:?}",
            failure.lines()
        );
    }

    #[test]
    fn off_contract_answers_are_protocol_errors() {
        let failure = Failure::from(api_error(404, "<html>nginx</html>"));
        assert_eq!(failure.exit, Exit::Unavailable);
        assert!(failure.message.contains("404"), "{}", failure.message);
        assert_eq!(Doc::Null, Doc::default());
    }

    #[test]
    fn transport_failures_are_unavailable() {
        let err = ApiError::Unreachable {
            url: "https://127.0.0.1:1".into(),
            reason: "connection refused".into(),
            tls: false,
            sent: false,
        };
        assert_eq!(Failure::from(err).exit, Exit::Unavailable);
    }

    #[test]
    fn no_node_answering_lists_each_and_says_what_to_do() {
        let err = ApiError::NoNode {
            tried: vec![
                ("https://a:7601".into(), "connection refused".into()),
                ("https://b:7601".into(), "HTTP 503: no quorum".into()),
            ],
            tls: false,
        };
        let failure = Failure::from(err);
        assert_eq!(failure.exit, Exit::Unavailable);
        assert_eq!(
            failure.lines(),
            [
                "lr: no API node answered: https://a:7601 (connection refused); https://b:7601 \
                 (HTTP 503: no quorum)",
                "lr: hint: each of the 2 API nodes in LR_API_URL (--api-url, api_url in the config \
                 file) was tried 3 times; check that broker nodes run there, or add the address of \
                 one that does",
            ]
        );
    }
}
