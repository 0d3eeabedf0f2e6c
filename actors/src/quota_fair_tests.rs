//! Unit tests of the fair turns, on tokio's paused clock: real-time first, bulk round-robin
//! by account, a dropped waiter passes its turn on.

use super::*;
use crate::quota_limiter::QuotaLimits;
use std::sync::Arc;

/// One unit per second, a burst of one: each charge of one unit is a turn.
fn one_per_second() -> Arc<FairLimiter> {
    let limits = QuotaLimits {
        units_per_minute: 60,
        burst: 1,
    };
    Arc::new(FairLimiter::new(
        UnitLimiter::new(limits, "project").expect("limits"),
    ))
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

type Order = Arc<Mutex<Vec<String>>>;

/// Spawns a charge that records `tag` once granted; yields so it queues before the next.
async fn queue(
    fair: &Arc<FairLimiter>,
    order: &Order,
    account: &'static str,
    class: WorkClass,
    tag: String,
) -> tokio::task::JoinHandle<()> {
    let (fair, order) = (Arc::clone(fair), Arc::clone(order));
    let h = tokio::spawn(async move {
        fair.take(account, class, one()).await.expect("granted");
        order.lock().expect("order").push(tag);
    });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    h
}

#[tokio::test(start_paused = true)]
async fn an_idle_limiter_grants_at_once_without_queueing() {
    let fair = one_per_second();
    let t = tokio::time::Instant::now();
    fair.take("a", WorkClass::Bulk, one())
        .await
        .expect("granted");
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert!(lock(&fair.turns).is_empty());
}

#[tokio::test(start_paused = true)]
async fn real_time_work_goes_before_bulk_work_that_queued_earlier() {
    let fair = one_per_second();
    let order: Order = Arc::default();
    fair.take("a", WorkClass::Bulk, one()).await.expect("burst");
    let mut handles = Vec::new();
    for i in 0..5 {
        handles.push(queue(&fair, &order, "a", WorkClass::Bulk, format!("bulk{i}")).await);
    }
    handles.push(queue(&fair, &order, "b", WorkClass::RealTime, "live".into()).await);
    for h in handles {
        h.await.expect("join");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(order[0], "live", "{order:?}");
    assert_eq!(order.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn bulk_work_is_served_round_robin_by_account() {
    let fair = one_per_second();
    let order: Order = Arc::default();
    fair.take("a", WorkClass::Bulk, one()).await.expect("burst");
    let mut handles = Vec::new();
    // Account a queues eight charges before b and c queue two each.
    for i in 0..8 {
        handles.push(queue(&fair, &order, "a", WorkClass::Bulk, format!("a{i}")).await);
    }
    for i in 0..2 {
        handles.push(queue(&fair, &order, "b", WorkClass::Bulk, format!("b{i}")).await);
        handles.push(queue(&fair, &order, "c", WorkClass::Bulk, format!("c{i}")).await);
    }
    for h in handles {
        h.await.expect("join");
    }
    let order = order.lock().expect("order").clone();
    let accounts: String = order.iter().map(|t| &t[..1]).collect();
    assert_eq!(accounts, "abcabcaaaaaa", "{order:?}");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_passes_its_turn_on() {
    let fair = one_per_second();
    let order: Order = Arc::default();
    fair.take("a", WorkClass::Bulk, one()).await.expect("burst");
    let head = queue(&fair, &order, "a", WorkClass::Bulk, "gone".into()).await;
    let next = queue(&fair, &order, "b", WorkClass::Bulk, "b".into()).await;
    head.abort();
    let _ = head.await;
    next.await.expect("join");
    assert_eq!(order.lock().expect("order").clone(), vec!["b".to_string()]);
    assert!(lock(&fair.turns).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_class_comes_from_the_scope_and_is_bulk_outside_one() {
    assert_eq!(current_class(), WorkClass::Bulk);
    let inside = in_class(WorkClass::RealTime, async { current_class() }).await;
    assert_eq!(inside, WorkClass::RealTime);
}
