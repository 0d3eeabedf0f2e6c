//! Calendar v3 conformance, the edges a sync engine trips over: the calendar list's own sync
//! token (added calendars, removed ones as `deleted: true`, 410), empty pages that still carry
//! a `nextPageToken`, recurring series in a non-UTC zone with a moved and a cancelled
//! instance, instance ids turning into exceptions, cascading deletes, the per-user quota
//! answering 403 `usageLimits`, and the channel control endpoints.

mod common;

use common::{ACCOUNT, Env, start};
use mailsync_emulator::{EmulatorConfig, QuotaMode};
use reqwest::Method;
use serde_json::{Value, json};

/// Every page of a listing: (items, pages seen, empty pages seen, sync token).
async fn pages(env: &Env, path: &str) -> (Vec<Value>, usize, usize, String) {
    let (mut items, mut n, mut empty) = (Vec::new(), 0, 0);
    let mut page: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &page {
            Some(p) => format!("{path}{sep}pageToken={}", common::urlencode(p)),
            None => path.to_string(),
        };
        let (s, v) = env.get(&url).await;
        assert_eq!(s, 200, "{url}: {v}");
        n += 1;
        let got = v["items"].as_array().cloned().unwrap_or_default();
        if got.is_empty() {
            empty += 1;
        }
        items.extend(got);
        match (v["nextPageToken"].as_str(), v["nextSyncToken"].as_str()) {
            (Some(p), None) => page = Some(p.to_string()),
            (None, Some(t)) => return (items, n, empty, t.to_string()),
            other => panic!("exactly one token expected, got {other:?}"),
        }
    }
}

fn ctl(path: &str) -> String {
    format!("/_emulator/accounts/{ACCOUNT}{path}")
}

#[tokio::test]
async fn calendar_list_follows_its_own_sync_token() {
    let env = start(common::quiet_config(3)).await;
    let (items, _, _, tok) = pages(&env, "/calendar/v3/users/me/calendarList").await;
    assert_eq!(items.len(), 2);
    let (s, added) = env
        .control(
            Method::POST,
            &ctl("/calendars"),
            json!({"summary": "Work", "timeZone": "America/New_York"}),
        )
        .await;
    assert_eq!(s, 200, "{added}");
    let work = added["id"].as_str().expect("id").to_string();
    let (items, _, _, tok2) = pages(
        &env,
        &format!(
            "/calendar/v3/users/me/calendarList?syncToken={}",
            common::urlencode(&tok)
        ),
    )
    .await;
    assert_eq!(items.len(), 1, "only the added calendar: {items:?}");
    assert_eq!(items[0]["id"], work.as_str());
    assert_eq!(items[0]["timeZone"], "America/New_York");

    let family = env.get("/calendar/v3/users/me/calendarList").await.1["items"][1]["id"]
        .as_str()
        .expect("family")
        .to_string();
    let (s, _) = env
        .control(
            Method::DELETE,
            &ctl(&format!("/calendars/{}", common::urlencode(&family))),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (items, _, _, tok3) = pages(
        &env,
        &format!(
            "/calendar/v3/users/me/calendarList?syncToken={}",
            common::urlencode(&tok2)
        ),
    )
    .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], family.as_str());
    assert_eq!(items[0]["deleted"], true);
    let (s, e) = env
        .get(&format!(
            "/calendar/v3/calendars/{}/events",
            common::urlencode(&family)
        ))
        .await;
    assert_eq!(s, 404, "a removed calendar is gone: {e}");
    let (items, _, _, _) = pages(
        &env,
        &format!(
            "/calendar/v3/users/me/calendarList?syncToken={}",
            common::urlencode(&tok3)
        ),
    )
    .await;
    assert!(items.is_empty(), "no change, no items");
    let full = pages(&env, "/calendar/v3/users/me/calendarList").await.0;
    assert_eq!(
        full.len(),
        2,
        "removed calendars are hidden without showDeleted"
    );
    let (s, e) = env
        .get("/calendar/v3/users/me/calendarList?syncToken=CLbogus")
        .await;
    assert_eq!((s, Env::reason(&e)), (410, "fullSyncRequired"));
    env.emu.shutdown().await;
}

#[tokio::test]
async fn empty_pages_still_point_to_the_next_page() {
    let env = start(common::quiet_config(3)).await;
    let (plain, plain_pages, _, _) = pages(
        &env,
        "/calendar/v3/calendars/primary/events?maxResults=10&showDeleted=true",
    )
    .await;
    let (s, _) = env
        .control(
            Method::POST,
            &ctl("/calendars/empty-pages"),
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(s, 200);
    let (items, n, empty, tok) = pages(
        &env,
        "/calendar/v3/calendars/primary/events?maxResults=10&showDeleted=true",
    )
    .await;
    assert_eq!(items.len(), plain.len(), "the same events");
    assert_eq!(n, plain_pages * 2, "an empty page before every page");
    assert_eq!(empty, plain_pages);
    let (items, n, empty, _) = pages(
        &env,
        &format!(
            "/calendar/v3/calendars/primary/events?maxResults=10&showDeleted=true&syncToken={}",
            common::urlencode(&tok)
        ),
    )
    .await;
    assert!(items.is_empty());
    assert_eq!(
        (n, empty),
        (2, 2),
        "no changes: an empty page, then an empty last page"
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn recurring_series_in_a_zone_with_moved_and_cancelled_instances() {
    let env = start(common::quiet_config(3)).await;
    let list = env.get("/calendar/v3/users/me/calendarList").await.1;
    let family = list["items"][1]["id"].as_str().expect("family").to_string();
    assert_eq!(list["items"][1]["timeZone"], "Europe/Berlin");
    let cal = common::urlencode(&family);
    let (items, _, _, _) = pages(
        &env,
        &format!("/calendar/v3/calendars/{cal}/events?showDeleted=true"),
    )
    .await;
    let master = items
        .iter()
        .find(|e| e["summary"] == "Piano lesson" && e["recurrence"].is_array())
        .expect("seeded series");
    assert_eq!(master["start"]["timeZone"], "Europe/Berlin");
    assert!(
        master["start"]["dateTime"]
            .as_str()
            .unwrap_or("")
            .ends_with("+02:00"),
        "{master}"
    );
    let mid = master["id"].as_str().expect("id");
    let moved = items
        .iter()
        .find(|e| e["recurringEventId"] == mid && e["status"] == "confirmed")
        .expect("moved exception");
    assert_ne!(
        moved["start"]["dateTime"],
        moved["originalStartTime"]["dateTime"]
    );
    assert_eq!(moved["summary"], "Piano lesson (moved)");
    let cancelled = items
        .iter()
        .find(|e| e["recurringEventId"] == mid && e["status"] == "cancelled")
        .expect("cancelled instance");
    assert!(cancelled["originalStartTime"]["dateTime"].is_string());
    assert!(
        items
            .iter()
            .any(|e| e["attendees"][1]["responseStatus"] == "needsAction")
    );
    assert!(items.iter().any(|e| e["organizer"]["email"] == ACCOUNT));

    // Without showDeleted the cancelled instance still shows (singleEvents=false).
    let (plain, _, _, _) = pages(&env, &format!("/calendar/v3/calendars/{cal}/events")).await;
    assert!(plain.iter().any(|e| e["id"] == cancelled["id"]));
    // Expanded: 6 occurrences, one cancelled → 5 instances, one of them moved.
    let (single, _, _, _) = pages(
        &env,
        &format!("/calendar/v3/calendars/{cal}/events?singleEvents=true"),
    )
    .await;
    let inst: Vec<&Value> = single
        .iter()
        .filter(|e| e["recurringEventId"] == mid)
        .collect();
    assert_eq!(inst.len(), 5, "{inst:?}");
    assert!(inst.iter().any(|e| e["summary"] == "Piano lesson (moved)"));

    // Patching an instance id creates an exception; deleting one cancels it; deleting the
    // master cancels the exceptions too.
    let (_, tok_page) = env
        .get(&format!(
            "/calendar/v3/calendars/{cal}/events?maxResults=2500&showDeleted=true"
        ))
        .await;
    let tok = tok_page["nextSyncToken"]
        .as_str()
        .expect("token")
        .to_string();
    let plain_inst = inst
        .iter()
        .find(|e| e["summary"] == "Piano lesson")
        .expect("plain instance");
    let iid = plain_inst["id"].as_str().expect("iid").to_string();
    let r = env
        .http
        .patch(format!(
            "{}/calendar/v3/calendars/{cal}/events/{iid}",
            env.base
        ))
        .bearer_auth(&env.token)
        .json(&json!({"summary": "Recital"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let (changed, _, _, tok) = pages(
        &env,
        &format!(
            "/calendar/v3/calendars/{cal}/events?showDeleted=true&syncToken={}",
            common::urlencode(&tok)
        ),
    )
    .await;
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["id"], iid.as_str());
    assert_eq!(changed[0]["recurringEventId"], mid);
    assert_eq!(changed[0]["summary"], "Recital");
    let r = env
        .http
        .delete(format!(
            "{}/calendar/v3/calendars/{cal}/events/{mid}",
            env.base
        ))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let (changed, _, _, _) = pages(
        &env,
        &format!(
            "/calendar/v3/calendars/{cal}/events?showDeleted=true&syncToken={}",
            common::urlencode(&tok)
        ),
    )
    .await;
    assert!(changed.iter().all(|e| e["status"] == "cancelled"));
    assert!(changed.iter().any(|e| e["id"] == mid));
    assert!(
        changed.iter().any(|e| e["id"] == iid.as_str()),
        "exceptions follow their master"
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn calendar_quota_answers_403_usage_limits() {
    let env = start(EmulatorConfig {
        messages: 3,
        quota: QuotaMode::On,
        calendar_user_requests_per_minute: 5,
        ..EmulatorConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    let mut last = Value::Null;
    for _ in 0..7 {
        let (s, v) = env.get("/calendar/v3/users/me/calendarList").await;
        statuses.push(s);
        last = v;
    }
    assert_eq!(&statuses[..5], &[200; 5]);
    assert_eq!(statuses[5], 403, "{last}");
    assert_eq!(last["error"]["errors"][0]["domain"], "usageLimits");
    assert_eq!(Env::reason(&last), "userRateLimitExceeded");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn channel_controls_list_and_forget() {
    let env = start(common::quiet_config(3)).await;
    let (s, ch) = env
        .post("/calendar/v3/calendars/primary/events/watch", json!({"id": "c1", "type": "web_hook", "address": "http://127.0.0.1:9/x", "token": "t"}))
        .await;
    assert_eq!(s, 200, "{ch}");
    let (_, list) = env.control(Method::GET, &ctl("/channels"), json!({})).await;
    assert_eq!(list["channels"][0]["id"], "c1");
    assert_eq!(list["channels"][0]["calendarId"], ACCOUNT);
    let (_, gone) = env
        .control(Method::DELETE, &ctl("/channels"), json!({}))
        .await;
    assert_eq!(gone["forgotten"], 1);
    let r = env
        .http
        .post(format!("{}/calendar/v3/channels/stop", env.base))
        .bearer_auth(&env.token)
        .json(&json!({"id": "c1", "resourceId": ch["resourceId"]}))
        .send()
        .await
        .expect("stop");
    assert_eq!(r.status(), 404, "a forgotten channel cannot be stopped");
    env.emu.shutdown().await;
}
