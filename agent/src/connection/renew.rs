//! Renewing the device's certificate over the stream, well before it expires: once two thirds of
//! its lifetime have passed, the agent makes a new key, sends a request for it, and on a
//! certificate that certifies that key and names this device, replaces its key and certificate
//! ([`crate::credentials::replace`]); the next dial presents them.
//!
//! [`Renewal`] decides when to ask (pure, per session: a new session starts from the certificate
//! it dialled with); [`request`] and [`answered`] carry its decisions out. A refusal or a missing
//! answer is asked again after [`retry_after`], never in a tight loop.

use std::time::Duration;

use pki::Validity;
use tracing::{info, warn};

use super::Link;
use crate::credentials::{self, rfc3339};

/// The longest single wait for the next request: the schedule is in wall-clock time, so it is
/// looked at again now and then in case the clock moved.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Bounds on the wait before asking again: at most a minute, and never a tight loop even for an
/// absurdly short lifetime.
const MAX_RETRY: Duration = Duration::from_secs(60);
const MIN_RETRY: Duration = Duration::from_secs(1);

/// The broker's answer to a renewal request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Renewed {
    Certificate(String),
    Refused(String),
}

/// When to ask for a certificate to replace one valid as `v` (ms since the epoch): once two
/// thirds of its lifetime have passed. The lifetime counts from its signing, which is
/// [`pki::BACKDATE`] after its `notBefore`.
pub fn renew_at_ms(v: Validity) -> u64 {
    let start = signed_at_ms(v);
    start.saturating_add(lifetime_ms(v).saturating_mul(2) / 3)
}

/// How long to wait before asking again after a refusal or no answer: a twentieth of the
/// lifetime, so a short-lived certificate still gets several attempts, at most a minute.
pub fn retry_after(v: Validity) -> Duration {
    (Duration::from_millis(lifetime_ms(v)) / 20).clamp(MIN_RETRY, MAX_RETRY)
}

fn signed_at_ms(v: Validity) -> u64 {
    let backdate = u64::try_from(pki::BACKDATE.as_millis()).unwrap_or(u64::MAX);
    v.not_before_ms.saturating_add(backdate)
}

fn lifetime_ms(v: Validity) -> u64 {
    v.not_after_ms.saturating_sub(signed_at_ms(v))
}

/// One session's renewal schedule.
#[derive(Debug)]
pub(crate) struct Renewal {
    validity: Validity,
    /// When the next request is due.
    next_ms: u64,
    /// The new key of the request awaiting an answer.
    key_pem: Option<String>,
}

impl Renewal {
    /// The schedule of the certificate valid as `validity`.
    pub fn new(validity: Validity) -> Self {
        Self {
            validity,
            next_ms: renew_at_ms(validity),
            key_pem: None,
        }
    }

    /// How long until the next request may be due.
    pub fn wait(&self, now_ms: u64) -> Duration {
        Duration::from_millis(self.next_ms.saturating_sub(now_ms)).min(MAX_WAIT)
    }

    pub fn due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_ms
    }

    /// A request for `key_pem` went out: without an answer, the next is due after
    /// [`retry_after`].
    pub fn asked(&mut self, key_pem: String, now_ms: u64) {
        self.key_pem = Some(key_pem);
        self.postpone(now_ms);
    }

    /// No request could be made now: try again after [`retry_after`].
    pub fn postpone(&mut self, now_ms: u64) {
        self.next_ms = now_ms.saturating_add(millis(retry_after(self.validity)));
    }

    /// The key of the request awaiting an answer, which an answer consumes.
    pub fn take_key(&mut self) -> Option<String> {
        self.key_pem.take()
    }

    /// A new certificate valid as `validity` is in place: the schedule follows it.
    pub fn renewed(&mut self, validity: Validity) {
        *self = Self::new(validity);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The certificate request to send when one is due: for a new key, which `renewal` keeps until
/// the answer.
pub(crate) fn request(link: &Link, renewal: &mut Renewal, now_ms: u64) -> Option<Vec<u8>> {
    if !renewal.due(now_ms) {
        return None;
    }
    if renewal.take_key().is_some() {
        warn!("no answer to the certificate renewal request; asking again");
    }
    match pki::new_request(&link.config.device_id) {
        Ok(request) => {
            info!(
                expires_at = %rfc3339(renewal.validity.not_after_ms),
                "asking the broker to renew the device's certificate"
            );
            renewal.asked(request.key_pem, now_ms);
            Some(request.csr_der)
        }
        Err(error) => {
            warn!(%error, "cannot make a new key to renew the certificate; trying again later");
            renewal.postpone(now_ms);
            None
        }
    }
}

/// Checks a renewed certificate and puts it and its key in place; anything wrong is logged and
/// the request is made again when `renewal` says.
pub(crate) async fn answered(link: &Link, renewal: &mut Renewal, answer: Renewed, now_ms: u64) {
    let Some(key_pem) = renewal.take_key() else {
        warn!("ignoring a certificate renewal nobody asked for");
        return;
    };
    let retry_in = retry_after(renewal.validity);
    let cert_pem = match answer {
        Renewed::Certificate(pem) => pem,
        Renewed::Refused(reason) => {
            warn!(%reason, ?retry_in, "the broker did not renew the device's certificate; asking again later");
            return;
        }
    };
    let config = &link.config;
    let validity = match credentials::check_issued(
        &cert_pem,
        &key_pem,
        &config.tenant,
        &config.device_id,
        now_ms,
    ) {
        Ok(v) => v,
        Err(reason) => {
            warn!(%reason, ?retry_in, "refusing the renewed certificate; asking again later");
            return;
        }
    };
    let (key, cert) = (config.tls.key.clone(), config.tls.cert.clone());
    let written = tokio::task::spawn_blocking(move || {
        credentials::replace(&key, &cert, &key_pem, &cert_pem).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match written {
        Ok(()) => {
            info!(
                expires_at = %rfc3339(validity.not_after_ms),
                "renewed the device's certificate; the next connection presents it"
            );
            renewal.renewed(validity);
        }
        Err(error) => warn!(
            %error, ?retry_in,
            "cannot write the renewed certificate and key; asking again later"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;
    const DAY: u64 = 24 * 3600 * S;
    /// A 30-day certificate signed at `T0`, valid from `BACKDATE` before.
    const T0: u64 = 1_800_000_000 * S;

    fn validity(signed_at: u64, lifetime: u64) -> Validity {
        Validity {
            not_before_ms: signed_at - 60 * S,
            not_after_ms: signed_at + lifetime,
        }
    }

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime_counted_from_signing() {
        assert_eq!(renew_at_ms(validity(T0, 30 * DAY)), T0 + 20 * DAY);
        assert_eq!(renew_at_ms(validity(T0, 6 * S)), T0 + 4 * S);
    }

    #[test]
    fn a_certificate_shorter_than_its_backdating_still_waits_between_attempts() {
        let v = Validity {
            not_before_ms: T0,
            not_after_ms: T0 + 10 * S,
        };
        assert_eq!(retry_after(v), MIN_RETRY);
    }

    #[test]
    fn retries_come_every_twentieth_of_the_lifetime_at_most_a_minute_apart() {
        assert_eq!(retry_after(validity(T0, 30 * DAY)), Duration::from_secs(60));
        assert_eq!(retry_after(validity(T0, 100 * S)), Duration::from_secs(5));
        assert_eq!(retry_after(validity(T0, 4 * S)), MIN_RETRY);
    }

    #[test]
    fn the_schedule_asks_once_then_waits_and_follows_a_renewed_certificate() {
        let v = validity(T0, 30 * DAY);
        let mut r = Renewal::new(v);
        assert!(!r.due(T0 + 20 * DAY - 1));
        assert_eq!(r.wait(T0), MAX_WAIT);
        assert_eq!(r.wait(T0 + 20 * DAY - 5 * S), Duration::from_secs(5));
        let now = T0 + 20 * DAY;
        assert!(r.due(now));
        r.asked("key".into(), now);
        assert!(!r.due(now + 59 * S), "asked again before a minute passed");
        assert!(r.due(now + 60 * S));
        assert_eq!(r.take_key().as_deref(), Some("key"));
        assert_eq!(r.take_key(), None);

        let renewed = validity(now, 30 * DAY);
        r.renewed(renewed);
        assert!(!r.due(now + 60 * S));
        assert!(r.due(now + 20 * DAY));
    }
}
