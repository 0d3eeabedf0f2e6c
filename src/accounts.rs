//! Turns validated account configs into `AccountSpec`s for the actor tree: resolves
//! credentials, builds the port (the Gmail or Calendar client with its quota gate, or the
//! test provider)
//! and computes the fingerprint a reload compares. The only place config meets the actors.

use crate::config::{AccountConfig, AccountKind, AccountSettings, Config, TestChild};
use crate::providers::test_provider::{FailTarget, TestProvider, TestProviderConfig};
use mailsync_actors::backoff::{RestartPolicy, RetryPolicy};
use mailsync_actors::calendar::{CalendarOptions, CalendarSource};
use mailsync_actors::gmail::{GmailOptions, GmailSource};
use mailsync_actors::model::AccountId;
use mailsync_actors::ports::GmailApi;
use mailsync_actors::push_watch::PushWatch;
use mailsync_actors::source::{SourceKind, SyncSource};
use mailsync_actors::spec::AccountSpec;
use std::sync::Arc;

/// Why an account could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AccountBuildError {
    /// The kind has no sync engine in this build.
    #[error("account {account}: kind {kind} is not supported by this build yet")]
    Unsupported {
        /// Account id.
        account: String,
        /// Its kind.
        kind: String,
    },
    /// The port could not be created (credentials, files).
    #[error("account {account}: {reason}")]
    Port {
        /// Account id.
        account: String,
        /// Why, secret-free.
        reason: String,
    },
}

impl AccountBuildError {
    /// The account that could not be built.
    pub fn account(&self) -> &str {
        match self {
            AccountBuildError::Unsupported { account, .. }
            | AccountBuildError::Port { account, .. } => account,
        }
    }
}

/// Builds the specs of every enabled account; accounts that cannot be built are returned as
/// errors next to the specs, so one bad account never stops the others.
/// `decorate` wraps each Gmail-shaped port (the service layer meters them).
/// `watch` gives a Gmail account with push its watch duty over the (decorated) port.
pub fn build_all(
    config: &Config,
    gmail: &dyn GmailPortBuilder,
    decorate: &PortDecorator<'_>,
    watch: &WatchMaker<'_>,
) -> (Vec<AccountSpec>, Vec<AccountBuildError>) {
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for account in config.accounts.iter().filter(|a| a.enabled) {
        match build(config, account, gmail, decorate, watch) {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.push(e),
        }
    }
    (specs, errors)
}

/// Wraps an account's port before its source is built (metering); `&|_, api| api` for none.
pub type PortDecorator<'a> = dyn Fn(&str, Arc<dyn GmailApi>) -> Arc<dyn GmailApi> + 'a;

/// The push-watch duty of an account over its port (`gmail_watch.rs`), `None` without push;
/// `&|_, _| None` for none.
pub type WatchMaker<'a> =
    dyn Fn(&AccountConfig, &Arc<dyn GmailApi>) -> Option<Arc<dyn PushWatch>> + 'a;

/// Builds the Gmail port of an account; implemented over the REST client in `google`.
pub trait GmailPortBuilder: Send + Sync {
    /// Creates the account's client (credentials are resolved here, lazily per refresh).
    fn build(&self, config: &Config, account: &AccountConfig) -> Result<Arc<dyn GmailApi>, String>;

    /// The token source `account`'s credential shares with the other accounts using it (a
    /// Gmail account and its Calendar twin refresh once for both); `None` = build its own.
    fn token_source(
        &self,
        _account: &AccountConfig,
    ) -> Option<Arc<crate::google::auth::TokenSource>> {
        None
    }
}

fn build(
    config: &Config,
    account: &AccountConfig,
    gmail: &dyn GmailPortBuilder,
    decorate: &PortDecorator<'_>,
    watch: &WatchMaker<'_>,
) -> Result<AccountSpec, AccountBuildError> {
    if let AccountSettings::Imap(settings) = &account.settings {
        let shared = match &settings.credential {
            crate::config::ImapCredential::OAuth(_) => gmail.token_source(account),
            crate::config::ImapCredential::Password(_) => None,
        };
        let source = crate::imap::build_source(account, settings, shared).map_err(|reason| {
            AccountBuildError::Port {
                account: account.id.clone(),
                reason,
            }
        })?;
        return Ok(spec(config, account, SourceKind::Imap, Arc::new(source)));
    }
    let api: Arc<dyn GmailApi> = match &account.settings {
        AccountSettings::Test(t) => {
            let cfg = TestProviderConfig {
                messages: u32::try_from(t.messages).unwrap_or(u32::MAX),
                fail: t.fail_child.map(|c| match c {
                    TestChild::HistorySync => FailTarget::HistorySync,
                    TestChild::Backfill => FailTarget::Backfill,
                    TestChild::Ingest => FailTarget::Ingest,
                }),
                fail_times: t.fail_times,
                completions_file: t.completions_file.clone(),
                job_delay: t.job_delay,
            };
            Arc::new(
                TestProvider::new(&account.id, cfg).map_err(|e| AccountBuildError::Port {
                    account: account.id.clone(),
                    reason: format!("cannot open the completions file: {e}"),
                })?,
            )
        }
        AccountSettings::Gmail(_) => {
            gmail
                .build(config, account)
                .map_err(|reason| AccountBuildError::Port {
                    account: account.id.clone(),
                    reason,
                })?
        }
        AccountSettings::Calendar(c) => {
            let client = crate::calendar_port::build_with(account, gmail.token_source(account))
                .map_err(|reason| AccountBuildError::Port {
                    account: account.id.clone(),
                    reason,
                })?;
            let options = CalendarOptions {
                calendars: c.calendar_ids.clone(),
            };
            let source = Arc::new(CalendarSource::new(client, options));
            return Ok(spec(config, account, SourceKind::Calendar, source));
        }
        AccountSettings::Imap(_) => {
            return Err(AccountBuildError::Unsupported {
                account: account.id.clone(),
                kind: account.kind.to_string(),
            });
        }
    };
    let (kind, list_page_size) = if account.kind == AccountKind::Test {
        (SourceKind::Test, 10)
    } else {
        (SourceKind::Gmail, 500)
    };
    let options = GmailOptions {
        initial_query: account.initial_query.clone(),
        list_page_size,
        listing_ahead: mailsync_actors::gmail::LISTING_AHEAD,
        ingest_page_ids: account.batch_size.max(1),
    };
    let api = decorate(&account.id, api);
    let push_watch = watch(account, &api);
    let source = Arc::new(GmailSource::new(kind, api, options));
    let mut spec = spec(config, account, kind, source);
    spec.push_watch = push_watch;
    Ok(spec)
}

/// The spec of `account` driving `source`.
fn spec(
    config: &Config,
    account: &AccountConfig,
    kind: SourceKind,
    source: Arc<dyn SyncSource>,
) -> AccountSpec {
    AccountSpec {
        id: AccountId(account.id.clone()),
        kind,
        source,
        poll_interval: account.poll_interval,
        batch_size: account.batch_size.max(1),
        retry: RetryPolicy {
            base: config.retry.base,
            cap: config.retry.cap,
            max_attempts: config.retry.max_attempts,
            ..RetryPolicy::default()
        },
        restart: RestartPolicy {
            base: config.restart.base,
            cap: config.restart.cap,
            max_restarts: config.restart.max_restarts,
            window: config.restart.window,
        },
        // Debug output never contains secrets (credential refs print their source only), so
        // it is a safe and complete fingerprint of what the account was built from.
        fingerprint: format!("{account:?}|{:?}|{:?}", config.retry, config.restart),
        push_watch: None,
    }
}
