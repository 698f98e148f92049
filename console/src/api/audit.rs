//! The audit endpoints (`/api/v1/audit...`): the tenant's log, read whole or one page at a time
//! (to follow it), a finished command's output, and the verification of the log's hash chain.
//! All are reads; retrying one is the caller's choice.

use api_model::{AuditEntry, AuditFilter, AuditVerification, Paging};
use reqwest::{Method, StatusCode};

use super::{ApiError, Client, List, Object, REQUEST_TIMEOUT, Replay, Trace, Typed, append_query};

impl Object for AuditEntry {
    const WHAT: &'static str = "audit entry";
}
impl Object for AuditVerification {
    const WHAT: &'static str = "audit verification";
}

/// One page of the log: its entries, oldest first, and the cursor of the page after it (none on
/// the last page).
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub entries: Vec<Typed<AuditEntry>>,
    pub next: Option<String>,
}

impl Client {
    /// `GET /api/v1/audit`: the first `max` entries that match `filter`, page after page.
    pub async fn audit(
        &self,
        filter: &AuditFilter,
        max: usize,
    ) -> Result<List<AuditEntry>, ApiError> {
        self.list_up_to(&["audit"], filter, max).await
    }

    /// `GET /api/v1/audit?limit=<limit>&after=<after>`: one page of the entries that match
    /// `filter`.
    pub async fn audit_page(
        &self,
        filter: &AuditFilter,
        limit: usize,
        after: Option<String>,
    ) -> Result<AuditPage, ApiError> {
        let mut url = self.api(&["audit"]);
        append_query(&mut url, filter);
        append_query(
            &mut url,
            &Paging {
                limit: Some(limit),
                after,
            },
        );
        let answer = self.get_url(url).await?;
        let page = answer.page()?;
        // As for every list: each page but the last brings something, so reading ends.
        if page.items.is_empty()
            && let Some(next) = &page.next
        {
            return Err(ApiError::Protocol(format!(
                "{} answered an empty page with a next cursor ({next})",
                answer.shown
            )));
        }
        let entries = page
            .items
            .iter()
            .map(|item| Typed::parse(item.get()))
            .collect::<Result<_, _>>()?;
        Ok(AuditPage {
            entries,
            next: page.next,
        })
    }

    /// `GET /api/v1/audit/output/{ref}`: a finished command's output, the bytes as stored
    /// (`text/plain; charset=utf-8`).
    pub async fn audit_output(&self, reference: &str) -> Result<Vec<u8>, ApiError> {
        let url = self.api(&["audit", "output", reference]);
        let answer = self
            .failover(Replay::Safe, |node| {
                let url = self.nodes.at(&url, node);
                let shown = url.to_string();
                let trace = self
                    .tracing()
                    .then(|| Trace::start(&Method::GET, &shown, None, None));
                let request = self
                    .request_accepting(Method::GET, url, "text/plain")
                    .timeout(REQUEST_TIMEOUT);
                self.exchange(request, shown, trace, &[StatusCode::OK])
            })
            .await?;
        Ok(answer.body)
    }

    /// `GET /api/v1/audit/verify`: the chain walked from its first entry, against the cluster's
    /// checkpoints of its head.
    pub async fn audit_verify(&self) -> Result<Typed<AuditVerification>, ApiError> {
        self.get(&["audit", "verify"]).await?.typed()
    }
}
