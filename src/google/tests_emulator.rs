//! Conformance runs of [`GmailClient`](super::gmail::GmailClient) against a running
//! `mailsync-emulator` binary. They are `#[ignore]`d (the emulator is not a dev-dependency of
//! this crate yet) and read the emulator's address and refresh token from the environment:
//!
//! ```text
//! MAILSYNC_EMULATOR_URL=http://127.0.0.1:PORT MAILSYNC_EMULATOR_REFRESH_TOKEN=... \
//!   cargo test -p mailsync --lib google::tests_emulator -- --ignored --test-threads 1
//! ```
//!
//! Optional: `MAILSYNC_EMULATOR_CLIENT_ID` / `_CLIENT_SECRET` (default: the emulator's
//! pre-provisioned test client), `MAILSYNC_EMULATOR_EXPECT` (`paced`: the emulator runs with
//! default quotas and the client must never be refused; `throttled`: the emulator's per-user
//! rate is scaled down and the client must absorb the refusals), `MAILSYNC_EMULATOR_MUTATING`
//! (set when the emulator runs `--mutation-rate`: the mailbox moves between calls, so exact
//! comparisons between listings are skipped).

use super::auth::OAuthCredentials;
use super::gmail::{GmailClient, GmailClientConfig, RetryConfig};
use crate::secret::Secret;
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{HistoryId, LabelKind, ListQuery, MessageId};
use mailsync_actors::ports::GmailApi;
use mailsync_actors::quota::{CostTable, QuotaGate};
use std::sync::Arc;
use std::time::Duration;

struct Env {
    base: String,
    refresh_token: String,
    client_id: String,
    client_secret: String,
}

fn env() -> Option<Env> {
    let base = std::env::var("MAILSYNC_EMULATOR_URL").ok()?;
    let refresh_token = std::env::var("MAILSYNC_EMULATOR_REFRESH_TOKEN").ok()?;
    Some(Env {
        base: base.trim_end_matches('/').to_owned(),
        refresh_token,
        client_id: std::env::var("MAILSYNC_EMULATOR_CLIENT_ID")
            .unwrap_or_else(|_| "mailsync-test-client".into()),
        client_secret: std::env::var("MAILSYNC_EMULATOR_CLIENT_SECRET")
            .unwrap_or_else(|_| "mailsync-test-secret".into()),
    })
}

fn client(env: &Env, costs: CostTable) -> GmailClient {
    let gate = Arc::new(QuotaGate::with_costs("emulated", &costs, None).expect("gate"));
    let config = GmailClientConfig {
        api_base: env.base.clone(),
        token_url: format!("{}/token", env.base),
        request_timeout: Duration::from_secs(20),
        costs,
        retry: RetryConfig {
            max_attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
        },
        ..GmailClientConfig::default()
    };
    let credentials = OAuthCredentials {
        client_id: env.client_id.clone(),
        client_secret: Secret::new(env.client_secret.clone()),
        refresh_token: Secret::new(env.refresh_token.clone()),
    };
    GmailClient::connect(config, gate, credentials).expect("client")
}

async fn all_ids(c: &GmailClient, query: &ListQuery) -> Vec<MessageId> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = c
            .list_messages(query, token.as_deref())
            .await
            .expect("list page");
        ids.extend(page.ids);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return ids,
        }
    }
}

#[tokio::test]
#[ignore = "needs a running mailsync-emulator (see module docs)"]
async fn full_sync_against_the_emulator() {
    let Some(env) = env() else {
        eprintln!("MAILSYNC_EMULATOR_URL / _REFRESH_TOKEN not set; skipping");
        return;
    };
    let expect = std::env::var("MAILSYNC_EMULATOR_EXPECT").unwrap_or_else(|_| "paced".into());
    let mutating = std::env::var_os("MAILSYNC_EMULATOR_MUTATING").is_some();
    let c = client(&env, CostTable::profile_2026());
    let started = tokio::time::Instant::now();

    let profile = c.profile().await.expect("profile");
    assert!(profile.email.contains('@'));
    assert!(profile.history_id > HistoryId(0));

    let labels = c.labels().await.expect("labels");
    assert!(
        labels
            .iter()
            .any(|l| l.id.0 == "INBOX" && l.kind == LabelKind::System)
    );

    let query = ListQuery {
        include_spam_trash: true,
        page_size: 500,
        ..ListQuery::default()
    };
    let ids = all_ids(&c, &query).await;
    if !mutating {
        assert_eq!(ids.len() as u64, profile.messages_total, "list vs profile");
        let small_pages = all_ids(
            &c,
            &ListQuery {
                page_size: 7,
                ..query.clone()
            },
        )
        .await;
        assert_eq!(small_pages, ids, "paging does not change the result");
    }

    let items = c.get_messages(&ids).await.expect("batches");
    assert_eq!(items.len(), ids.len());
    let mut ok = 0usize;
    let mut limited = 0usize;
    for ((id, result), asked) in items.iter().zip(&ids) {
        assert_eq!(id, asked);
        match result {
            Ok(m) => {
                ok += 1;
                assert_eq!(&m.id, id);
                assert!(!m.raw.is_empty());
                assert!(mutating || m.history_id <= profile.history_id);
                assert!(m.headers.from.is_some(), "From header of {id}");
            }
            Err(ApiError::RateLimited { .. }) if expect == "throttled" => limited += 1,
            // Deleted by the mutator between list and get.
            Err(ApiError::NotFound) if mutating => {}
            Err(e) => panic!("{id}: {e:?}"),
        }
    }
    let stats = c.quota_stats();
    eprintln!(
        "emulator run: {} ids, {ok} fetched, {limited} rate-limited parts, {} units, {} rate errors, {:?} elapsed, waited {} ms",
        ids.len(),
        stats.units_spent,
        stats.rate_errors,
        started.elapsed(),
        stats.waited_ms,
    );
    if expect == "paced" {
        assert_eq!(stats.rate_errors, 0, "default pacing must never be refused");
        assert_eq!(ok, ids.len());
    }

    let page = c.history(profile.history_id, None).await.expect("history");
    assert!(page.history_id >= profile.history_id);
}

#[tokio::test]
#[ignore = "needs a running mailsync-emulator (see module docs)"]
async fn history_and_errors_against_the_emulator() {
    let Some(env) = env() else {
        eprintln!("MAILSYNC_EMULATOR_URL / _REFRESH_TOKEN not set; skipping");
        return;
    };
    let c = client(&env, CostTable::profile_2026());
    let profile = c.profile().await.expect("profile");

    // Walk every history page from just before the profile's id.
    let start = HistoryId(profile.history_id.0.saturating_sub(50).max(1));
    let mut token: Option<String> = None;
    let mut changes = 0usize;
    let last = loop {
        match c.history(start, token.as_deref()).await {
            Ok(page) => {
                changes += page.changes.len();
                match page.next_page_token {
                    Some(t) => token = Some(t),
                    None => break Some(page.history_id),
                }
            }
            Err(ApiError::HistoryExpired) => break None,
            Err(e) => panic!("history: {e:?}"),
        }
    };
    eprintln!("history from {start}: {changes} changes, ends at {last:?}");

    // An unknown message answers NotFound per part, not as a batch failure.
    let items = c
        .get_messages(&[MessageId("ffffffffffffffff".into())])
        .await
        .expect("batch");
    let throttled = std::env::var("MAILSYNC_EMULATOR_EXPECT").is_ok_and(|e| e == "throttled");
    match &items[0].1 {
        Err(ApiError::NotFound) => {}
        Err(ApiError::RateLimited { .. }) if throttled => {}
        other => panic!("expected NotFound, got {other:?}"),
    }

    // A revoked refresh token disconnects the account.
    let revoked = client(
        &Env {
            refresh_token: "1//not-a-real-token".into(),
            base: env.base.clone(),
            client_id: env.client_id.clone(),
            client_secret: env.client_secret.clone(),
        },
        CostTable::profile_2026(),
    );
    match revoked.profile().await {
        Err(ApiError::Disconnected(msg)) => {
            assert!(!msg.contains("not-a-real-token"), "{msg}");
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
}
