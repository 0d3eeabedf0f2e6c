//! `StatusCache`: the last full status each running account answered, and the last roster of
//! accounts the root supervisor gave, so `ctl status` answers within [`STATUS_DEADLINE`] even
//! while the sync saturates the cores.
//!
//! `ctl status` asks the root supervisor for its accounts and then every AccountActor
//! (`AccountMsg::Status`). With a thousand accounts and both cores busy syncing, the last of
//! a thousand answers can take seconds: each actor waits for a runtime worker among the
//! sync's tasks. The cache keeps the questions in flight as shared futures (one question per
//! account at a time, however many clients ask) and the last answer of each. An account that
//! has not answered by the deadline is shown with its last answer, marked with
//! `status_age_ms`; its question goes on in its own task and refreshes the cache when the
//! answer comes. The roster is treated the same way (its last answer is used when the root
//! is late). Nothing is invented: an account, or a roster, with no answer yet is waited for
//! (up to the RPC timeout), so the first status after start-up, a restart, a reload or a
//! command is always a real answer.
//!
//! Account entries are keyed by account id and the actor's id, so a restarted account's old
//! answer is never shown for its new actor.

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use mailsync_actors::account::AccountMsg;
use mailsync_actors::root::{RootMsg, Roster};
use mailsync_actors::status::AccountStatus;
use ractor::{ActorId, ActorRef};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long `ctl status` waits for the roster and the accounts' own answers, together, before
/// it shows the cached ones.
pub const STATUS_DEADLINE: Duration = Duration::from_millis(50);

/// One question, shared by every status request waiting for it. `Err` says why it was not
/// answered (a timeout, a stopped actor).
type Asking<T> = Shared<BoxFuture<'static, Result<T, String>>>;

/// What is known of one question: its last answer and the one in flight.
struct Question<T: Clone> {
    /// Bumped by `forget`: a question asked before it may not fill the cache.
    generation: u64,
    last: Option<(T, Instant)>,
    asking: Option<Asking<T>>,
}

impl<T: Clone> Question<T> {
    fn new(generation: u64) -> Self {
        Question {
            generation,
            last: None,
            asking: None,
        }
    }

    fn forget(&mut self) {
        *self = Question::new(self.generation + 1);
    }
}

impl<T: Clone> Default for Question<T> {
    fn default() -> Self {
        Question::new(0)
    }
}

struct AccountEntry {
    actor: ActorId,
    question: Question<AccountStatus>,
}

/// The cache; shared by the status requests of the daemon's core.
#[derive(Clone, Default)]
pub struct StatusCache {
    entries: Arc<Mutex<HashMap<String, AccountEntry>>>,
    roster: Arc<Mutex<Question<Roster>>>,
}

impl StatusCache {
    /// The accounts the root supervisor holds: its answer if it comes by `deadline` (or when
    /// none is cached), else its last one.
    pub async fn roster(
        &self,
        root: &ActorRef<RootMsg>,
        deadline: tokio::time::Instant,
        rpc_timeout_ms: u64,
    ) -> Result<Roster, String> {
        let asking = {
            let mut roster = lock(&self.roster);
            let root = root.clone();
            ask(&mut roster, self.roster.clone(), |q| Some(q), async move {
                ractor::call_t!(root, RootMsg::Accounts, rpc_timeout_ms).map_err(|e| e.to_string())
            })
        };
        let (handles, _) = answer_by(deadline, asking, || lock(&self.roster).last.clone()).await?;
        Ok(handles)
    }

    /// Forgets the roster: the accounts were just started, reloaded or stopped.
    pub fn forget_roster(&self) {
        lock(&self.roster).forget();
    }

    /// The account's status: its own answer if it comes by `deadline` (or when nothing is
    /// cached), else its last answer with `status_age_ms` set. `rpc_timeout_ms` bounds the
    /// question itself.
    pub async fn status_of(
        &self,
        id: &str,
        actor: &ActorRef<AccountMsg>,
        deadline: tokio::time::Instant,
        rpc_timeout_ms: u64,
    ) -> Result<AccountStatus, String> {
        let asking = self.ask(id, actor, rpc_timeout_ms);
        let (mut s, age) = answer_by(deadline, asking, || self.last(id, actor.get_id())).await?;
        s.status_age_ms = age.map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX));
        Ok(s)
    }

    /// Forgets the account's last answer and any question in flight: it was just sent a
    /// command, so its next status must be an answer given after the command (the actor
    /// handles its messages in order).
    pub fn forget(&self, id: &str) {
        if let Some(entry) = lock(&self.entries).get_mut(id) {
            entry.question.forget();
        }
    }

    /// Forgets the accounts not in `ids` (removed by a reload).
    pub fn retain(&self, ids: &std::collections::HashSet<&str>) {
        lock(&self.entries).retain(|id, _| ids.contains(id.as_str()));
    }

    /// The question in flight to this actor, or a new one in its own task (so it goes on, and
    /// fills the cache, when every waiter has given up).
    fn ask(
        &self,
        id: &str,
        actor: &ActorRef<AccountMsg>,
        rpc_timeout_ms: u64,
    ) -> Asking<AccountStatus> {
        let mut entries = lock(&self.entries);
        let entry = entries
            .entry(id.to_string())
            .or_insert_with(|| AccountEntry {
                actor: actor.get_id(),
                question: Question::new(0),
            });
        if entry.actor != actor.get_id() {
            entry.actor = actor.get_id();
            entry.question.forget();
        }
        let (key, actor_id, actor) = (id.to_string(), entry.actor, actor.clone());
        ask(
            &mut entry.question,
            self.entries.clone(),
            move |entries| {
                entries
                    .get_mut(&key)
                    .filter(|e| e.actor == actor_id)
                    .map(|e| &mut e.question)
            },
            async move {
                ractor::call_t!(actor, AccountMsg::Status, rpc_timeout_ms)
                    .map_err(|e| e.to_string())
            },
        )
    }

    fn last(&self, id: &str, actor: ActorId) -> Option<(AccountStatus, Instant)> {
        let entries = lock(&self.entries);
        let entry = entries.get(id).filter(|e| e.actor == actor)?;
        entry.question.last.clone()
    }
}

/// The answer to `asking` if it comes by `deadline`, else the last answer `last` gives with
/// its age, else (nothing cached) the answer whenever it comes.
async fn answer_by<T: Clone>(
    deadline: tokio::time::Instant,
    asking: Asking<T>,
    last: impl FnOnce() -> Option<(T, Instant)>,
) -> Result<(T, Option<Duration>), String> {
    match tokio::time::timeout_at(deadline, asking.clone()).await {
        Ok(answer) => answer.map(|v| (v, None)),
        Err(_) => match last() {
            Some((v, at)) => Ok((v, Some(at.elapsed()))),
            None => asking.await.map(|v| (v, None)),
        },
    }
}

/// The question in flight in `q`, or `call` started in its own task, which records its answer
/// in the question `find` finds in `home` when it comes, unless the question was forgotten
/// (its generation moved on) meanwhile.
fn ask<T, H, F>(
    q: &mut Question<T>,
    home: Arc<Mutex<H>>,
    find: F,
    call: impl Future<Output = Result<T, String>> + Send + 'static,
) -> Asking<T>
where
    T: Clone + Send + Sync + 'static,
    H: Send + 'static,
    F: FnOnce(&mut H) -> Option<&mut Question<T>> + Send + 'static,
{
    if let Some(asking) = &q.asking {
        return asking.clone();
    }
    let generation = q.generation;
    let task = tokio::spawn(async move {
        let answer = call.await;
        let mut home = lock(&home);
        if let Some(q) = find(&mut home)
            && q.generation == generation
        {
            q.asking = None;
            if let Ok(v) = &answer {
                q.last = Some((v.clone(), Instant::now()));
            }
        }
        answer
    });
    let asking: Asking<T> = async move { task.await.unwrap_or_else(|e| Err(e.to_string())) }
        .boxed()
        .shared();
    q.asking = Some(asking.clone());
    asking
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_actors::root::AccountHandle;
    use mailsync_actors::status::AccountState;
    use ractor::{Actor, ActorProcessingErr};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// An account actor that takes `busy` to answer each status question and numbers its
    /// answers (in `restarts`), counting the questions it was asked.
    struct SlowAccount;

    struct Slow {
        busy: Duration,
        asked: Arc<AtomicU32>,
    }

    impl Actor for SlowAccount {
        type Msg = AccountMsg;
        type State = Slow;
        type Arguments = Slow;

        async fn pre_start(
            &self,
            _myself: ActorRef<AccountMsg>,
            args: Slow,
        ) -> Result<Slow, ActorProcessingErr> {
            Ok(args)
        }

        async fn handle(
            &self,
            _myself: ActorRef<AccountMsg>,
            msg: AccountMsg,
            st: &mut Slow,
        ) -> Result<(), ActorProcessingErr> {
            if let AccountMsg::Status(reply) = msg {
                let n = st.asked.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(st.busy).await;
                let mut s = AccountStatus::bare("a", "test", AccountState::Running, "fetching");
                s.restarts = n;
                let _ = reply.send(s);
            }
            Ok(())
        }
    }

    async fn slow_account(busy: Duration) -> (ActorRef<AccountMsg>, Arc<AtomicU32>) {
        let asked = Arc::new(AtomicU32::new(0));
        let args = Slow {
            busy,
            asked: asked.clone(),
        };
        let (actor, _) = Actor::spawn(None, SlowAccount, args)
            .await
            .expect("spawn the test account");
        (actor, asked)
    }

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(20)
    }

    #[tokio::test]
    async fn an_account_never_answered_is_waited_for_past_the_deadline() {
        let cache = StatusCache::default();
        let (actor, _) = slow_account(Duration::from_millis(200)).await;
        let s = cache
            .status_of("a", &actor, soon(), 5_000)
            .await
            .expect("answered");
        assert_eq!(s.restarts, 1, "its own answer");
        assert_eq!(s.status_age_ms, None, "not a cached one");
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_busy_account_is_shown_with_its_last_answer_and_one_question_goes_on() {
        let cache = StatusCache::default();
        let (actor, asked) = slow_account(Duration::from_millis(300)).await;
        cache
            .status_of("a", &actor, soon(), 5_000)
            .await
            .expect("first answer");
        // Busy: three clients ask; each gets the first answer back, marked as cached, and the
        // account is asked once, not three times.
        for _ in 0..3 {
            let s = cache
                .status_of("a", &actor, soon(), 5_000)
                .await
                .expect("cached answer");
            assert_eq!(s.restarts, 1, "the last answer");
            assert!(s.status_age_ms.is_some(), "marked with its age");
        }
        // The question in flight comes back and refreshes the cache.
        let fresh = cache.ask("a", &actor, 5_000).await.expect("second answer");
        assert_eq!(fresh.restarts, 2);
        assert_eq!(asked.load(Ordering::SeqCst), 2, "one question while busy");
        let (s, _) = cache.last("a", actor.get_id()).expect("cached");
        assert_eq!(s.restarts, 2, "the cache holds the newest answer");
        actor.stop(None);
    }

    #[tokio::test]
    async fn a_restarted_account_is_never_shown_with_its_old_actors_answer() {
        let cache = StatusCache::default();
        let (old, _) = slow_account(Duration::ZERO).await;
        cache
            .status_of("a", &old, soon(), 5_000)
            .await
            .expect("old");
        old.stop(None);
        let (new, _) = slow_account(Duration::from_millis(200)).await;
        let s = cache
            .status_of("a", &new, soon(), 5_000)
            .await
            .expect("answered");
        assert_eq!(
            s.status_age_ms, None,
            "the new actor's own answer, waited for"
        );
        new.stop(None);
    }

    #[tokio::test]
    async fn after_a_command_the_next_status_is_an_answer_given_after_it() {
        let cache = StatusCache::default();
        let (actor, _) = slow_account(Duration::from_millis(200)).await;
        cache
            .status_of("a", &actor, soon(), 5_000)
            .await
            .expect("first");
        // A question goes out (and is cached as in flight); then a command is sent.
        let before = cache.ask("a", &actor, 5_000);
        cache.forget("a");
        let s = cache
            .status_of("a", &actor, soon(), 5_000)
            .await
            .expect("answered");
        assert_eq!(
            s.status_age_ms, None,
            "waited for, not the cached first answer"
        );
        assert_eq!(s.restarts, 3, "a question asked after the command");
        assert_eq!(before.await.expect("second").restarts, 2);
        let (cached, _) = cache.last("a", actor.get_id()).expect("cached");
        assert_eq!(
            cached.restarts, 3,
            "the answer from before the command did not refill it"
        );
        actor.stop(None);
    }

    /// A root supervisor that takes `busy` to list its accounts, one more each time.
    struct SlowRoot;

    impl Actor for SlowRoot {
        type Msg = RootMsg;
        type State = Slow;
        type Arguments = Slow;

        async fn pre_start(
            &self,
            _myself: ActorRef<RootMsg>,
            args: Slow,
        ) -> Result<Slow, ActorProcessingErr> {
            Ok(args)
        }

        async fn handle(
            &self,
            _myself: ActorRef<RootMsg>,
            msg: RootMsg,
            st: &mut Slow,
        ) -> Result<(), ActorProcessingErr> {
            if let RootMsg::Accounts(reply) = msg {
                let n = st.asked.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(st.busy).await;
                let handles = (0..n)
                    .map(|i| AccountHandle {
                        id: format!("a{i}"),
                        kind: "test".into(),
                        actor: None,
                        down_reason: None,
                    })
                    .collect();
                let _ = reply.send(handles);
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_late_root_is_answered_with_its_last_roster_until_the_roster_is_forgotten() {
        let cache = StatusCache::default();
        let args = Slow {
            busy: Duration::from_millis(200),
            asked: Arc::new(AtomicU32::new(0)),
        };
        let (root, _) = Actor::spawn(None, SlowRoot, args).await.expect("root");
        let first = cache.roster(&root, soon(), 5_000).await.expect("first");
        assert_eq!(first.len(), 1, "the first roster is waited for");
        let late = cache.roster(&root, soon(), 5_000).await.expect("cached");
        assert_eq!(late.len(), 1, "the root is late: its last roster");
        // A reload (or the start-up) forgets it: the next roster is a new answer.
        cache.forget_roster();
        let after = cache.roster(&root, soon(), 5_000).await.expect("after");
        assert_eq!(after.len(), 3, "asked after the forget, waited for");
        root.stop(None);
    }

    #[tokio::test]
    async fn an_account_that_does_not_answer_at_all_is_an_error_not_a_hang() {
        let cache = StatusCache::default();
        let (actor, _) = slow_account(Duration::from_secs(30)).await;
        let e = cache
            .status_of("a", &actor, soon(), 100)
            .await
            .expect_err("timed out");
        assert!(!e.is_empty());
        actor.stop(None);
    }
}
