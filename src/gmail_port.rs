//! Builds the `GmailApi` port of a `kind = "gmail"` account from its config: resolves the
//! credential references, sets up the account's `QuotaGate` (per-user pacing from the quota
//! profile, shared per-project limiter keyed by OAuth client id, in-flight cap) and the REST
//! client in `google`, on the HTTP clients all accounts share (`http_clients.rs`).

use crate::accounts::GmailPortBuilder;
use crate::config::{AccountConfig, AccountSettings, Config, QuotaProfile as CfgProfile};
use crate::google::{GmailClient, GmailClientConfig, TokenSource};
use mailsync_actors::ports::GmailApi;
use mailsync_actors::quota::{CostTable, ProjectQuotas, QuotaGate, QuotaLimits};
use std::sync::{Arc, Mutex};

/// The production builder. It keeps one project limiter per OAuth client for the daemon's life,
/// so a reload does not hand a restarted account a fresh project budget.
#[derive(Default)]
pub struct RestGmailBuilder {
    projects: Mutex<Option<Arc<ProjectQuotas>>>,
    /// One token source per credential (a Gmail account and its Calendar twin share one).
    tokens: crate::token_sources::TokenSources,
    /// The REST and token HTTP clients every account shares.
    http: crate::http_clients::SharedHttp,
}

impl RestGmailBuilder {
    fn projects(&self, config: &crate::config::QuotaConfig) -> Arc<ProjectQuotas> {
        let mut guard = self
            .projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard
            .get_or_insert_with(|| {
                Arc::new(ProjectQuotas::new(QuotaLimits::paced(
                    config.project_units_per_minute,
                    config.pacing,
                )))
            })
            .clone()
    }
}

/// The cost table of an account's quota config (profile defaults plus overrides).
pub fn cost_table(q: &crate::config::QuotaConfig) -> CostTable {
    let mut costs = match q.profile {
        CfgProfile::Legacy => CostTable::legacy(),
        _ => CostTable::profile_2026(),
    };
    costs.messages_get = q.messages_get_cost;
    costs.user_units_per_minute = q.units_per_user_per_minute;
    costs.project_units_per_minute = q.project_units_per_minute;
    costs
}

/// The per-user limiter settings: the ceiling scaled by `scale`, paced at `pacing`.
pub fn user_limits(q: &crate::config::QuotaConfig, costs: &CostTable) -> QuotaLimits {
    let ceiling = (f64::from(q.units_per_user_per_minute) * q.scale).round();
    let ceiling = if ceiling >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        ceiling.max(1.0) as u32
    };
    QuotaLimits::paced(ceiling, q.pacing).with_min_burst(costs.largest_cost())
}

impl GmailPortBuilder for RestGmailBuilder {
    fn token_source(&self, account: &AccountConfig) -> Option<Arc<TokenSource>> {
        match self.tokens.for_account(account, &self.http) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(account = %account.id, error = %e, "No shared token source; the account builds its own.");
                None
            }
        }
    }

    fn build(
        &self,
        _config: &Config,
        account: &AccountConfig,
    ) -> Result<Arc<dyn GmailApi>, String> {
        let AccountSettings::Gmail(g) = &account.settings else {
            return Err(format!("account {} is not a gmail account", account.id));
        };
        let costs = cost_table(&account.quota);
        let project = self
            .projects(&account.quota)
            .for_client(&g.auth.client_id)
            .map_err(|e| e.to_string())?;
        let limits = user_limits(&account.quota, &costs);
        let gate = if account.quota.spend_burst {
            QuotaGate::adaptive(
                account.id.clone(),
                limits,
                costs.largest_cost(),
                account.quota.max_in_flight,
                Some(project),
            )
        } else {
            QuotaGate::new(
                account.id.clone(),
                limits,
                account.quota.max_in_flight,
                Some(project),
            )
        }
        .map_err(|e| e.to_string())?;
        let tokens = self.tokens.for_account(account, &self.http)?;
        let client_config = GmailClientConfig {
            api_base: g.api_base.clone(),
            token_url: g.auth.token_url.clone(),
            user_id: "me".into(),
            batch_size: account.batch_size,
            costs,
            ..GmailClientConfig::default()
        };
        let http = self
            .http
            .rest(client_config.request_timeout)
            .map_err(|e| e.to_string())?;
        let client = GmailClient::with_http(client_config, Arc::new(gate), tokens, http)
            .map_err(|e| e.to_string())?;
        client
            .tokens()
            .set_hooks(crate::token_sources::credential_hooks(&g.auth));
        Ok(Arc::new(client))
    }
}

/// The builder the binary uses.
pub fn builder() -> Arc<dyn GmailPortBuilder> {
    Arc::new(RestGmailBuilder::default())
}
