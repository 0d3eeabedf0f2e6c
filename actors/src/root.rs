//! RootSupervisor: the top of the tree. It starts one AccountActor per configured account,
//! restarts an AccountActor that itself fails (with backoff and a budget, like the accounts do
//! for their children), applies config reloads (added accounts start, removed ones stop,
//! changed ones restart) and hands the control socket the accounts to talk to.
//!
//! Children: AccountActor. Messages: `RootMsg`. Persists nothing itself.

use crate::account::{AccountActor, AccountArgs, AccountMsg};
use crate::backoff::RestartBudget;
use crate::spec::AccountSpec;
use crate::store::Store;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The RootSupervisor.
pub struct RootSupervisor;

/// What the RootSupervisor is started with.
pub struct RootArgs {
    /// The store shared by every account.
    pub store: Store,
    /// The accounts to run.
    pub accounts: Vec<AccountSpec>,
}

/// One account as the control socket sees it.
#[derive(Clone, Debug)]
pub struct AccountHandle {
    /// Account id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// The running actor (None while it waits for a restart or after its budget ran out).
    pub actor: Option<ActorRef<AccountMsg>>,
    /// Why the actor is not running, if it is not.
    pub down_reason: Option<String>,
}

/// Every account and its actor, as the root lists them. The root hands out the same `Arc`
/// until an account starts, stops, fails or is reloaded, so a caller that asks every second
/// (the service monitor) can tell an unchanged roster by pointer and skip the work that
/// only a changed one needs.
pub type Roster = Arc<[AccountHandle]>;

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Accounts started.
    pub added: Vec<String>,
    /// Accounts stopped.
    pub removed: Vec<String>,
    /// Accounts restarted because their config changed.
    pub restarted: Vec<String>,
}

/// The RootSupervisor's messages.
#[derive(Debug)]
pub enum RootMsg {
    /// List the accounts and their actors.
    Accounts(RpcReplyPort<Roster>),
    /// Apply a new set of accounts (SIGHUP / `ctl reload`).
    Reconcile(Vec<AccountSpec>, RpcReplyPort<ReloadSummary>),
    /// Restart an AccountActor after its backoff.
    Respawn(String),
    /// Test hook (`ctl debug-wedge`, allowed only by `[debug] allow_wedge`): block the root's
    /// message loop for this long, as a wedged tree would, so the watchdog stops petting.
    Wedge(Duration),
}

struct Entry {
    spec: AccountSpec,
    actor: Option<ActorRef<AccountMsg>>,
    budget: RestartBudget,
    down_reason: Option<String>,
}

/// The RootSupervisor's private state.
pub struct RootState {
    store: Store,
    accounts: BTreeMap<String, Entry>,
    by_id: HashMap<ActorId, String>,
    /// The last roster handed out; `None` once anything in `accounts` changed.
    roster: Option<Roster>,
}

const STOP_GRACE: Duration = Duration::from_secs(10);

impl Actor for RootSupervisor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RootMsg>,
        args: RootArgs,
    ) -> Result<RootState, ActorProcessingErr> {
        let accounts = args
            .accounts
            .into_iter()
            .map(|spec| {
                let budget = RestartBudget::new(spec.restart.clone());
                (
                    spec.id.0.clone(),
                    Entry {
                        spec,
                        actor: None,
                        budget,
                        down_reason: None,
                    },
                )
            })
            .collect();
        Ok(RootState {
            store: args.store,
            accounts,
            by_id: HashMap::new(),
            roster: None,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<RootMsg>,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let ids: Vec<String> = st.accounts.keys().cloned().collect();
        for id in ids {
            st.start_account(&myself, &id).await;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RootMsg>,
        _st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        // Leaves first: each AccountActor stops its own children in its post_stop.
        myself
            .stop_children_and_wait(Some("shutdown".into()), Some(STOP_GRACE))
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        evt: SupervisionEvent,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        st.roster = None;
        let Some(id) = st.by_id.remove(&cell.get_id()) else {
            return Ok(());
        };
        let Some(entry) = st.accounts.get_mut(&id) else {
            return Ok(());
        };
        entry.actor = None;
        let Some(reason) = reason else {
            return Ok(());
        };
        match entry.budget.next_delay(Instant::now()) {
            Some(delay) => {
                tracing::warn!(account = %id, error = %reason, delay_ms = delay.as_millis() as u64, "Account actor failed; restarting after backoff.");
                entry.down_reason = Some(format!("restarting after failure: {reason}"));
                let id2 = id.clone();
                myself.send_after(delay, move || RootMsg::Respawn(id2));
            }
            None => {
                tracing::error!(account = %id, error = %reason, "Account actor failed too often; giving up on it.");
                entry.down_reason = Some(format!("failed: {reason}"));
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        st: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        if !matches!(msg, RootMsg::Accounts(_)) {
            // Every other message may start, stop or restart an account.
            st.roster = None;
        }
        match msg {
            RootMsg::Accounts(reply) => {
                let _ = reply.send(st.roster());
            }
            RootMsg::Respawn(id) => {
                if st.accounts.get(&id).is_some_and(|e| e.actor.is_none()) {
                    st.start_account(&myself, &id).await;
                }
            }
            RootMsg::Reconcile(specs, reply) => {
                let summary = st.reconcile(&myself, specs).await;
                let _ = reply.send(summary);
            }
            RootMsg::Wedge(hold) => {
                tracing::warn!(
                    hold_ms = hold.as_millis() as u64,
                    "Root supervisor wedged on request (debug)."
                );
                tokio::time::sleep(hold).await;
            }
        }
        Ok(())
    }
}

impl RootState {
    /// The roster: the last one handed out while nothing changed, else a new one.
    fn roster(&mut self) -> Roster {
        let accounts = &self.accounts;
        self.roster
            .get_or_insert_with(|| {
                accounts
                    .iter()
                    .map(|(id, e)| AccountHandle {
                        id: id.clone(),
                        kind: e.spec.kind.to_string(),
                        actor: e.actor.clone(),
                        down_reason: e.down_reason.clone(),
                    })
                    .collect()
            })
            .clone()
    }

    async fn start_account(&mut self, myself: &ActorRef<RootMsg>, id: &str) {
        let Some(entry) = self.accounts.get_mut(id) else {
            return;
        };
        let args = AccountArgs {
            spec: entry.spec.clone(),
            store: self.store.clone(),
        };
        match Actor::spawn_linked(None, AccountActor, args, myself.get_cell()).await {
            Ok((actor, _)) => {
                self.by_id.insert(actor.get_id(), id.to_string());
                entry.actor = Some(actor);
                entry.down_reason = None;
            }
            Err(e) => {
                tracing::error!(account = %id, error = %e, "Could not start the account.");
                entry.down_reason = Some(format!("could not start: {e}"));
            }
        }
    }

    async fn stop_account(&mut self, id: &str) {
        if let Some(entry) = self.accounts.get_mut(id)
            && let Some(actor) = entry.actor.take()
        {
            self.by_id.remove(&actor.get_id());
            if let Err(e) = actor
                .stop_and_wait(Some("removed from config".into()), Some(STOP_GRACE))
                .await
            {
                tracing::warn!(account = %id, error = %e, "Account did not stop in time.");
            }
        }
    }

    async fn reconcile(
        &mut self,
        myself: &ActorRef<RootMsg>,
        specs: Vec<AccountSpec>,
    ) -> ReloadSummary {
        let mut summary = ReloadSummary::default();
        let wanted: BTreeMap<String, AccountSpec> =
            specs.into_iter().map(|s| (s.id.0.clone(), s)).collect();
        let current: Vec<String> = self.accounts.keys().cloned().collect();
        for id in current {
            match wanted.get(&id) {
                None => {
                    self.stop_account(&id).await;
                    self.accounts.remove(&id);
                    summary.removed.push(id);
                }
                Some(spec) => {
                    let changed = self
                        .accounts
                        .get(&id)
                        .is_some_and(|e| e.spec.fingerprint != spec.fingerprint);
                    if changed {
                        self.stop_account(&id).await;
                        if let Some(e) = self.accounts.get_mut(&id) {
                            e.spec = spec.clone();
                            e.budget = RestartBudget::new(spec.restart.clone());
                        }
                        self.start_account(myself, &id).await;
                        summary.restarted.push(id);
                    }
                }
            }
        }
        for (id, spec) in wanted {
            if self.accounts.contains_key(&id) {
                continue;
            }
            let budget = RestartBudget::new(spec.restart.clone());
            self.accounts.insert(
                id.clone(),
                Entry {
                    spec,
                    actor: None,
                    budget,
                    down_reason: None,
                },
            );
            self.start_account(myself, &id).await;
            summary.added.push(id);
        }
        tracing::info!(added = ?summary.added, removed = ?summary.removed, restarted = ?summary.restarted, "Configuration reloaded.");
        summary
    }
}
