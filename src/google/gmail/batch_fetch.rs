//! Batched `messages.get` (`format=raw`): ids in batches of at most the learnt
//! [`ConcurrencyLimit`](crate::google::concurrency::ConcurrencyLimit); every part answers on
//! its own — 404, 429, 5xx and bad JSON come back per id for the caller to retry or
//! dead-letter; parts answered 401 are re-sent once after a token refresh; rate-limited parts
//! pause the account; parts refused for concurrency shrink the next batches.

use super::GmailClient;
use crate::google::auth::BearerToken;
use crate::google::batch::{self, BatchPart};
use crate::google::error::{
    GmailMethod, classify, is_concurrency_refusal, malformed_json, parse_retry_after,
};
use crate::google::rest::{self, ms};
use crate::google::wire::WireMessage;
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{BatchItem, FetchedMessage, MessageId};
use rand::Rng as _;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use std::time::Duration;

impl GmailClient {
    pub(super) async fn get_messages_impl(
        &self,
        ids: &[MessageId],
    ) -> Result<Vec<BatchItem>, ApiError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut rest = ids;
        while !rest.is_empty() {
            // The limit may shrink after a concurrency refusal: read it for every batch.
            let n = self.concurrency.current().min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            out.extend(self.get_chunk(chunk).await?);
            rest = tail;
        }
        Ok(out)
    }

    /// One batch of up to `batch_size` ids; parts answered 401 are re-sent once after a token
    /// refresh.
    async fn get_chunk(&self, ids: &[MessageId]) -> Result<Vec<BatchItem>, ApiError> {
        let mut results: Vec<Option<Result<FetchedMessage, ApiError>>> = vec![None; ids.len()];
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        let mut auth_retried = false;
        while !pending.is_empty() {
            let (parts, token) = self.send_batch(ids, &pending).await?;
            let cids: Vec<String> = pending.iter().map(|i| format!("p{i}")).collect();
            let matched = batch::match_parts(&cids, parts);
            let mut unauthorized = Vec::new();
            let mut pause: Option<Duration> = None;
            let mut rate_limited = 0usize;
            let mut concurrency_refused = 0usize;
            for (&i, part) in pending.iter().zip(matched) {
                let requested = &ids[i];
                let result = match part {
                    // A lost part says nothing about the message: retried without counting.
                    None => Err(ApiError::Transient(
                        "batch response: no part answered this message".into(),
                    )),
                    Some(p) if (200..300).contains(&p.status) => parse_fetched(requested, &p.body),
                    Some(p) if p.status == 401 && !auth_retried => {
                        unauthorized.push(i);
                        continue;
                    }
                    Some(p) => {
                        if is_concurrency_refusal(p.status, &p.body) {
                            concurrency_refused += 1;
                        }
                        let retry_after = p.header("retry-after").and_then(parse_retry_after);
                        let err = classify(GmailMethod::GetMessage, p.status, retry_after, &p.body);
                        if let ApiError::RateLimited { retry_after } = &err {
                            rate_limited += 1;
                            let wait = retry_after
                                .unwrap_or_else(|| rest::rate_limit_pause(&self.config.retry, 1));
                            pause = Some(pause.map_or(wait, |p| p.max(wait)));
                        }
                        Err(err)
                    }
                };
                results[i] = Some(result);
            }
            self.concurrency.record(pending.len(), concurrency_refused);
            if concurrency_refused > 0 {
                tracing::info!(
                    account = %self.account,
                    parts = pending.len(),
                    refused = concurrency_refused,
                    limit = self.concurrency.current(),
                    "too many concurrent requests; smaller batches from now on"
                );
            }
            if let Some(wait) = pause {
                self.rest.gate.slow_down(wait);
                tracing::warn!(
                    account = %self.account,
                    method = GmailMethod::GetMessage.name(),
                    status = 429u16,
                    parts = rate_limited,
                    retry_after_ms = ms(wait),
                    "batch parts rate limited; pausing the account"
                );
            }
            if unauthorized.is_empty() {
                break;
            }
            auth_retried = true;
            tracing::info!(
                account = %self.account,
                method = GmailMethod::GetMessage.name(),
                status = 401u16,
                parts = unauthorized.len(),
                "batch parts unauthorized; refreshing once"
            );
            if let Err(e) = self.rest.tokens.refresh_after_401(&token).await {
                for &i in &unauthorized {
                    results[i] = Some(Err(e.clone()));
                }
                break;
            }
            pending = unauthorized;
        }
        Ok(ids
            .iter()
            .cloned()
            .zip(results)
            .map(|(id, r)| {
                let r = r.unwrap_or_else(|| {
                    Err(ApiError::Transient(
                        "batch part still unauthorized right after a refresh".into(),
                    ))
                });
                (id, r)
            })
            .collect())
    }

    /// Sends the parts `pending` (indexes into `ids`) as one batch, with retries of the whole
    /// envelope; returns the decoded parts and the token used.
    async fn send_batch(
        &self,
        ids: &[MessageId],
        pending: &[usize],
    ) -> Result<(Vec<batch::ResponsePart>, BearerToken), ApiError> {
        let parts: Vec<BatchPart> = pending
            .iter()
            .map(|&i| BatchPart {
                content_id: format!("p{i}"),
                method: "GET".to_owned(),
                path_and_query: format!(
                    "{}?format=raw",
                    self.user_path(&["messages", ids[i].0.as_str()])
                ),
            })
            .collect();
        let boundary = format!("batch_mailsync_{:016x}", rand::rng().random::<u64>());
        let encoded = batch::encode(&parts, &boundary)
            .map_err(|e| ApiError::Internal(format!("encoding a batch: {e}")))?;
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}/batch/gmail/v1"));
        let body = bytes::Bytes::from(encoded.body);
        let content_type = encoded.content_type;
        let build = || {
            self.http
                .request(Method::POST, url.clone())
                .header(CONTENT_TYPE, content_type.as_str())
                .body(body.clone())
        };
        let charges = vec![self.config.costs.messages_get; parts.len()];
        let slots = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        let (answer, token) = self
            .execute(GmailMethod::Batch, &charges, slots, &build)
            .await?;
        let content_type = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let decoded = batch::decode(content_type, &answer.body)?;
        Ok((decoded, token))
    }
}

/// One batch part's 2xx body → the fetched message (its id must be the one asked for).
fn parse_fetched(requested: &MessageId, body: &[u8]) -> Result<FetchedMessage, ApiError> {
    let wire: WireMessage = serde_json::from_slice(body)
        .map_err(|e| malformed_json(GmailMethod::GetMessage.name(), &e, body))?;
    if wire.id != requested.0 {
        return Err(ApiError::Malformed(format!(
            "batch part for {} answered with message {}",
            requested,
            crate::google::error::excerpt(wire.id.as_bytes())
        )));
    }
    wire.into_fetched()
}
