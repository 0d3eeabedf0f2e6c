//! Tests of the RootSupervisor's roster: the same `Arc` while no account changed, a new one
//! as soon as one did (the service monitor relies on it to skip per-account work).

use crate::backoff::{RestartPolicy, RetryPolicy};
use crate::model::AccountId;
use crate::root::{RootArgs, RootMsg, RootSupervisor};
use crate::test_support::{ScriptedSource, spec, temp_store};
use ractor::Actor;
use std::sync::Arc;
use std::time::Duration;

fn account(id: &str) -> crate::spec::AccountSpec {
    let mut s = spec(
        Arc::new(ScriptedSource::default()),
        Duration::from_secs(60),
        RetryPolicy::default(),
        RestartPolicy::default(),
    );
    s.id = AccountId(id.into());
    s
}

#[tokio::test]
async fn the_roster_is_the_same_until_an_account_changes() {
    let (_dir, store) = temp_store();
    let args = RootArgs {
        store,
        accounts: vec![account("a"), account("b")],
    };
    let (root, handle) = Actor::spawn(None, RootSupervisor, args)
        .await
        .expect("root");
    let first = ractor::call!(root, RootMsg::Accounts).expect("roster");
    let again = ractor::call!(root, RootMsg::Accounts).expect("roster");
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|h| h.actor.is_some()), "both running");
    assert!(
        Arc::ptr_eq(&first, &again),
        "nothing changed: the same roster"
    );
    let summary = ractor::call!(root, RootMsg::Reconcile, vec![account("a")]).expect("reload");
    assert_eq!(summary.removed, vec!["b".to_string()]);
    let after = ractor::call!(root, RootMsg::Accounts).expect("roster");
    assert!(
        !Arc::ptr_eq(&first, &after),
        "a reload hands out a new roster"
    );
    assert_eq!(
        after.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    root.stop(None);
    handle.await.expect("root stopped");
}
