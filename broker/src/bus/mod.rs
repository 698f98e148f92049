//! Messages between broker nodes over NATS: tenant-namespaced subjects carrying protobuf envelopes.
//!
//! Every envelope names its tenant, and a node drops any envelope whose tenant differs from the
//! tenant of the subject it arrived on, so a message can never cross into another tenant.
//! Messages sent inside a traced span carry its W3C trace context in their headers
//! ([`crate::trace`]).

mod subjects;

use std::time::Duration;

use agent_proto::bus::Envelope;
use agent_proto::bus::envelope::Body;
use async_nats::{Client, RequestErrorKind, Subscriber};
use bytes::Bytes;
use prost::Message as _;

use crate::trace;

pub use subjects::{
    device_cmd, device_online, session_ctl, session_evt, session_out, tenant_of, transfer_ctl,
    transfer_evt,
};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("nobody serves {0}")]
    NoResponders(String),
    #[error("no answer on {0} in time")]
    TimedOut(String),
    #[error("malformed message on {subject}: {reason}")]
    Malformed { subject: String, reason: String },
    #[error("message on {subject} claims tenant {claimed}; dropped")]
    WrongTenant { subject: String, claimed: String },
    #[error(transparent)]
    InvalidId(#[from] ids::InvalidId),
    #[error("nats: {0}")]
    Nats(String),
}

/// The node's NATS connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    client: Client,
}

impl Bus {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Publishes `body`, with the current span's trace context in its headers when it has one.
    pub async fn publish(&self, subject: String, tenant: &str, body: Body) -> Result<(), BusError> {
        ids::tenant(tenant)?;
        let payload = encode(tenant, body);
        match trace::headers() {
            Some(headers) => {
                self.client
                    .publish_with_headers(subject, headers, payload)
                    .await
            }
            None => self.client.publish(subject, payload).await,
        }
        .map_err(|e| BusError::Nats(e.to_string()))
    }

    /// Sends a request (with the current span's trace context, as [`Bus::publish`]) and decodes the
    /// reply, which must carry the same tenant.
    pub async fn request(
        &self,
        subject: String,
        tenant: &str,
        body: Body,
        timeout: Duration,
    ) -> Result<Body, BusError> {
        ids::tenant(tenant)?;
        let payload = encode(tenant, body);
        let request = async {
            match trace::headers() {
                Some(headers) => {
                    self.client
                        .request_with_headers(subject.clone(), headers, payload)
                        .await
                }
                None => self.client.request(subject.clone(), payload).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, request).await {
            Err(_) => return Err(BusError::TimedOut(subject)),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => BusError::NoResponders(subject),
                    RequestErrorKind::TimedOut => BusError::TimedOut(subject),
                    _ => BusError::Nats(e.to_string()),
                });
            }
            Ok(Ok(reply)) => reply,
        };
        let (claimed, body) = decode_any(&subject, &reply.payload)?;
        if claimed != tenant {
            return Err(BusError::WrongTenant { subject, claimed });
        }
        Ok(body)
    }

    pub async fn subscribe(&self, subject: String) -> Result<Subscriber, BusError> {
        self.client
            .subscribe(subject)
            .await
            .map_err(|e| BusError::Nats(e.to_string()))
    }

    /// Answers a request message, when it asked for an answer.
    pub async fn reply(
        &self,
        request: &async_nats::Message,
        tenant: &str,
        body: Body,
    ) -> Result<(), BusError> {
        match &request.reply {
            Some(reply) => self.publish(reply.to_string(), tenant, body).await,
            None => Ok(()),
        }
    }
}

pub fn encode(tenant: &str, body: Body) -> Bytes {
    Envelope {
        tenant: tenant.to_string(),
        body: Some(body),
    }
    .encode_to_vec()
    .into()
}

fn decode_any(subject: &str, payload: &[u8]) -> Result<(String, Body), BusError> {
    let envelope = Envelope::decode(payload).map_err(|e| BusError::Malformed {
        subject: subject.to_string(),
        reason: e.to_string(),
    })?;
    let body = envelope.body.ok_or_else(|| BusError::Malformed {
        subject: subject.to_string(),
        reason: "empty envelope".into(),
    })?;
    Ok((envelope.tenant, body))
}

/// Decodes a message that arrived on a tenant subject, refusing one whose envelope names another tenant.
pub fn decode(message: &async_nats::Message) -> Result<(String, Body), BusError> {
    let subject = message.subject.as_str();
    let (claimed, body) = decode_any(subject, &message.payload)?;
    if tenant_of(subject) != Some(claimed.as_str()) {
        return Err(BusError::WrongTenant {
            subject: subject.to_string(),
            claimed,
        });
    }
    Ok((claimed, body))
}

#[cfg(test)]
mod tests;
