//! Gmail's Ingest batch: the leased fetch jobs (one id each, or a full sync's page of ids,
//! `ingest_pages.rs`) fetched in one batch request and recorded in one transaction that also
//! acks them, flushed before anyone is told.
//!
//! Per id: a fetched message is applied unless a change seen meanwhile is newer
//! (`freshness.rs`); one that is gone is deleted from the mirror; one that failed or came back
//! outdated is handed back to Ingest as its job, which for an id of a page is a new job of its
//! own, queued in the same transaction that acks the page. So an id is never dropped, and
//! retries and dead letters are per message.

use super::{GmailSource, store_err};
use crate::error::{ApiError, SyncError};
use crate::freshness::{self, Freshness};
use crate::ingest_pages;
use crate::mailbox::Job;
use crate::mirror::{self, Applied};
use crate::model::{FetchedMessage, MessageId};
use crate::source::{IngestBatch, SourceCx};
use crate::spec::now_ms;

/// One id to fetch and the leased job (index) it came from.
struct Wanted {
    job: usize,
    id: MessageId,
}

/// What the batch request said about one id.
enum Answer {
    Fetched(FetchedMessage),
    Gone,
    Failed(ApiError),
}

/// Why an id goes back to Ingest.
enum Again {
    /// Its fetch is older than a change seen meanwhile: fetch it again now.
    Outdated,
    /// It failed on its own.
    Failed(ApiError),
}

impl GmailSource {
    pub(super) async fn fetch_batch(
        &self,
        cx: &SourceCx<'_>,
        leased: &[Job],
    ) -> Result<IngestBatch, SyncError> {
        let mut wanted = Vec::new();
        let mut unreadable = Vec::new();
        // Ids read from each job, for the page tally when it is acked.
        let mut ids_of = vec![0usize; leased.len()];
        for (i, job) in leased.iter().enumerate() {
            match ingest_pages::items(job) {
                Ok(ids) => {
                    ids_of[i] = ids.len();
                    wanted.extend(ids.into_iter().map(|id| Wanted {
                        job: i,
                        id: MessageId(id),
                    }));
                }
                Err(e) => {
                    tracing::error!(account = %cx.account, job = %job.key, error = %e, "Unreadable Ingest page job; dead-lettered after its attempts.");
                    unreadable.push(i);
                }
            }
        }
        let ids: Vec<MessageId> = wanted.iter().map(|w| w.id.clone()).collect();
        let mut items = if ids.is_empty() {
            Vec::new()
        } else {
            self.api.get_messages(&ids).await?
        };
        let mut answers = Vec::with_capacity(wanted.len());
        for w in &wanted {
            answers.push(match items.iter().position(|(mid, _)| *mid == w.id) {
                Some(pos) => match items.swap_remove(pos).1 {
                    Ok(m) => Answer::Fetched(m),
                    Err(ApiError::NotFound) => Answer::Gone,
                    Err(ApiError::Internal(e)) => {
                        return Err(SyncError::Api(ApiError::Internal(e)));
                    }
                    Err(e) => Answer::Failed(e),
                },
                // A port that lost the item says nothing about it: not counted.
                None => Answer::Failed(ApiError::Transient(
                    "the batch response lacks this message".into(),
                )),
            });
        }
        self.ensure_labels(
            cx,
            answers
                .iter()
                .filter_map(|a| match a {
                    Answer::Fetched(m) => Some(m),
                    _ => None,
                })
                .flat_map(|m| m.label_ids.iter()),
        )
        .await?;
        let account = cx.account.0.clone();
        let now = now_ms();
        let (added, acked, failed, retry_now) = cx
            .store
            .transaction(|tx| {
                let mut added = 0u64;
                let mut acked = vec![false; leased.len()];
                let mut failed: Vec<(Job, ApiError)> = Vec::new();
                let mut retry_now: Vec<Job> = Vec::new();
                for (w, answer) in wanted.iter().zip(&answers) {
                    let job = &leased[w.job];
                    let again = match answer {
                        Answer::Fetched(m) => match freshness::check_fetched(tx, cx.account, m)? {
                            Freshness::Fresh => {
                                if mirror::apply_fetched(tx, &account, m, now)? == Applied::Added {
                                    added += 1;
                                }
                                None
                            }
                            // Deleted after this fetch: never resurrect it.
                            Freshness::Deleted => None,
                            // Changed after this fetch: not applied, fetched again.
                            Freshness::Outdated => Some(Again::Outdated),
                        },
                        Answer::Gone => {
                            mirror::apply_deleted(tx, &account, &w.id, now)?;
                            None
                        }
                        Answer::Failed(e) => Some(Again::Failed(e.clone())),
                    };
                    let page = ingest_pages::is_page(job);
                    let Some(again) = again else {
                        freshness::clear(tx, cx.account, &w.id)?;
                        if !page {
                            ingest_pages::ack_tx(tx, cx.account, job, 1)?;
                            acked[w.job] = true;
                        }
                        continue;
                    };
                    // The id's own job: the leased one, or a new one split off its page.
                    let own = if page {
                        ingest_pages::split_tx(tx, cx.account, job, &w.id.0, now)?
                    } else {
                        Some(job.clone())
                    };
                    if let Some(own) = own {
                        match again {
                            Again::Outdated => retry_now.push(own),
                            Again::Failed(e) => failed.push((own, e)),
                        }
                    }
                }
                for (i, job) in leased.iter().enumerate() {
                    if ingest_pages::is_page(job) && !unreadable.contains(&i) {
                        ingest_pages::ack_tx(tx, cx.account, job, ids_of[i])?;
                        acked[i] = true;
                    }
                }
                Ok((added, acked, failed, retry_now))
            })
            .map_err(store_err)?;
        // Durable before anyone is told: the flush is the commit point of this batch.
        cx.store.flush_async().await.map_err(store_err)?;
        let mut failed = failed;
        for &i in &unreadable {
            failed.push((
                leased[i].clone(),
                ApiError::Malformed("the stored page job cannot be read".into()),
            ));
        }
        let done: Vec<Job> = leased
            .iter()
            .zip(&acked)
            .filter(|(_, a)| **a)
            .map(|(j, _)| j.clone())
            .collect();
        if !retry_now.is_empty() {
            tracing::debug!(account = %cx.account, jobs = retry_now.len(), "Fetches older than a change seen meanwhile; fetching again.");
        }
        Ok(IngestBatch {
            done,
            failed,
            added,
            retry_now,
        })
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod fetch_tests;
