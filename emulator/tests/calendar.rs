//! Calendar v3 conformance: paging with nextSyncToken only on the last page, incremental sync
//! with cancelled items, 410 on invalidated/corrupted tokens, 400 on forbidden combinations,
//! singleEvents expansion, web-hook channels with X-Goog-* headers.

mod common;

use common::{ACCOUNT, Env, next, start, start_receiver};
use reqwest::Method;
use serde_json::{Value, json};

async fn list_all(env: &Env, cal: &str, extra: &str) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut path = format!("/calendar/v3/calendars/{cal}/events?maxResults=7{extra}");
        if let Some(p) = &page {
            path.push_str(&format!("&pageToken={}", common::urlencode(p)));
        }
        let (s, v) = env.get(&path).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["kind"], "calendar#events");
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        match (v["nextPageToken"].as_str(), v["nextSyncToken"].as_str()) {
            (Some(p), None) => page = Some(p.to_string()),
            (None, Some(t)) => return (items, t.to_string()),
            other => panic!("exactly one token expected, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn calendar_sync_tokens_and_errors() {
    let env = start(common::quiet_config(3)).await;
    let (s, cl) = env.get("/calendar/v3/users/me/calendarList").await;
    assert_eq!(s, 200);
    assert_eq!(cl["kind"], "calendar#calendarList");
    let cals = cl["items"].as_array().expect("items");
    assert_eq!(cals.len(), 2);
    assert_eq!(cals[0]["id"], ACCOUNT);
    assert_eq!(cals[0]["primary"], true);
    assert!(cl["nextSyncToken"].is_string());
    let cl_tok = cl["nextSyncToken"].as_str().expect("t");
    let (s, e) = env
        .get(&format!(
            "/calendar/v3/users/me/calendarList?syncToken={cl_tok}&minAccessRole=owner"
        ))
        .await;
    assert_eq!(s, 400, "{e}");

    let (items, token) = list_all(&env, "primary", "").await;
    assert_eq!(items.len(), 40, "seeded events");
    let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "no duplicates across pages");
    assert!(
        items.iter().any(|i| i["start"]["date"].is_string()),
        "all-day events exist"
    );
    assert!(
        items.iter().any(|i| i["recurrence"].is_array()),
        "recurring events exist"
    );

    // Incremental with no change: empty items, a sync token.
    let (s, v) = env
        .get(&format!(
            "/calendar/v3/calendars/primary/events?syncToken={}",
            common::urlencode(&token)
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["items"], json!([]));
    assert!(v["nextSyncToken"].is_string());

    // Changes: one created, one deleted, one occurrence of a series cancelled.
    let victim = items
        .iter()
        .find(|i| i.get("recurrence").is_none())
        .and_then(|i| i["id"].as_str())
        .expect("single")
        .to_string();
    let master = items
        .iter()
        .find(|i| i["recurrence"].is_array())
        .and_then(|i| i["id"].as_str())
        .expect("master")
        .to_string();
    let c = format!("/_emulator/accounts/{ACCOUNT}/calendars/primary");
    let (s, created) = env.control(Method::POST, &format!("{c}/events"), json!({"summary": "New", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"})).await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(
        env.control(Method::DELETE, &format!("{c}/events/{victim}"), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        env.control(Method::DELETE, &format!("{c}/events/{victim}"), json!({}))
            .await
            .0,
        410,
        "delete twice → 410 deleted"
    );
    let (s, exc) = env
        .control(
            Method::POST,
            &format!("{c}/events/{master}/cancel-instance"),
            json!({"index": 1}),
        )
        .await;
    assert_eq!(s, 200);
    let (changed, token2) = list_all(
        &env,
        "primary",
        &format!("&syncToken={}", common::urlencode(&token)),
    )
    .await;
    assert_eq!(changed.len(), 3, "{changed:?}");
    let deleted = changed
        .iter()
        .find(|i| i["id"] == victim.as_str())
        .expect("deleted item");
    assert_eq!(deleted["status"], "cancelled");
    assert!(
        deleted.get("summary").is_none(),
        "tombstone carries only identity fields"
    );
    let inst = changed
        .iter()
        .find(|i| i["id"] == exc["id"])
        .expect("cancelled instance");
    assert_eq!(inst["recurringEventId"], master.as_str());
    assert!(inst["originalStartTime"].is_object());
    assert!(
        changed
            .iter()
            .any(|i| i["id"] == created["id"] && i["status"] == "confirmed")
    );

    // A full list hides cancelled events unless showDeleted=true.
    let (all, _) = list_all(&env, "primary", "").await;
    assert!(!all.iter().any(|i| i["id"] == victim.as_str()));
    let (all_deleted, _) = list_all(&env, "primary", "&showDeleted=true").await;
    assert!(all_deleted.iter().any(|i| i["id"] == victim.as_str()));
    // singleEvents expands the series and omits the cancelled occurrence.
    let (singles, _) = list_all(&env, "primary", "&singleEvents=true").await;
    assert!(singles.iter().all(|i| i.get("recurrence").is_none()));
    let instances: Vec<&Value> = singles
        .iter()
        .filter(|i| i["recurringEventId"] == master.as_str())
        .collect();
    assert!(!instances.is_empty());
    assert!(!singles.iter().any(|i| i["id"] == exc["id"]));
    let (ordered, _) = list_all(
        &env,
        "primary",
        "&singleEvents=true&orderBy=startTime&timeMin=2026-01-01T00:00:00Z",
    )
    .await;
    assert!(!ordered.is_empty());

    // Forbidden combinations → 400; bad ranges → 400.
    let tok = common::urlencode(&token2);
    for bad in [
        "timeMin=2026-01-01T00:00:00Z",
        "timeMax=2026-01-01T00:00:00Z",
        "updatedMin=2026-01-01T00:00:00Z",
        "orderBy=updated",
        "q=x",
        "iCalUID=a",
        "showDeleted=false",
    ] {
        let (s, e) = env
            .get(&format!(
                "/calendar/v3/calendars/primary/events?syncToken={tok}&{bad}"
            ))
            .await;
        assert_eq!(s, 400, "{bad}: {e}");
    }
    let (s, e) = env.get("/calendar/v3/calendars/primary/events?timeMin=2026-02-01T00:00:00Z&timeMax=2026-01-01T00:00:00Z").await;
    assert_eq!((s, Env::reason(&e)), (400, "timeRangeEmpty"));
    assert_eq!(
        env.get("/calendar/v3/calendars/primary/events?orderBy=startTime")
            .await
            .0,
        400
    );
    assert_eq!(
        env.get("/calendar/v3/calendars/primary/events?timeMin=yesterday")
            .await
            .0,
        400
    );
    assert_eq!(
        env.get("/calendar/v3/calendars/nope@example.com/events")
            .await
            .0,
        404
    );

    // Corrupted and invalidated tokens → 410 fullSyncRequired.
    let (s, e) = env
        .get(&format!(
            "/calendar/v3/calendars/primary/events?syncToken=x{tok}"
        ))
        .await;
    assert_eq!((s, Env::reason(&e)), (410, "fullSyncRequired"));
    assert_eq!(
        env.control(
            Method::POST,
            &format!("{c}/invalidate-sync-tokens"),
            json!({})
        )
        .await
        .0,
        200
    );
    let (s, e) = env
        .get(&format!(
            "/calendar/v3/calendars/primary/events?syncToken={tok}"
        ))
        .await;
    assert_eq!(s, 410);
    assert_eq!(e["error"]["errors"][0]["domain"], "calendar");
    assert_eq!(e["error"]["errors"][0]["location"], "syncToken");
    assert_eq!(
        e["error"]["message"],
        "Sync token is no longer valid, a full sync is required."
    );
    // A fresh full sync gives a working token again.
    let (_, fresh) = list_all(&env, "primary", "").await;
    assert_eq!(
        env.get(&format!(
            "/calendar/v3/calendars/primary/events?syncToken={}",
            common::urlencode(&fresh)
        ))
        .await
        .0,
        200
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn calendar_watch_channels() {
    let (hook, mut hits) = start_receiver(vec![]).await;
    let env = start(common::quiet_config(3)).await;
    let (s, e) = env
        .post(
            "/calendar/v3/calendars/primary/events/watch",
            json!({"id": "ch-1", "type": "web_hook", "address": "http://example.com/hook"}),
        )
        .await;
    assert_eq!(s, 400, "plain http only allowed on loopback: {e}");
    let (s, ch) = env
        .post("/calendar/v3/calendars/primary/events/watch", json!({"id": "ch-1", "type": "web_hook", "address": format!("{hook}/gcal"), "token": "acct=1", "params": {"ttl": "3600"}}))
        .await;
    assert_eq!(s, 200, "{ch}");
    assert_eq!(ch["kind"], "api#channel");
    assert!(ch["expiration"].is_string());
    let sync = next(&mut hits).await;
    assert_eq!(sync.path, "/gcal");
    assert_eq!(sync.headers["x-goog-channel-id"], "ch-1");
    assert_eq!(sync.headers["x-goog-resource-state"], "sync");
    assert_eq!(sync.headers["x-goog-message-number"], "1");
    assert_eq!(sync.headers["x-goog-channel-token"], "acct=1");
    assert_eq!(
        sync.headers["x-goog-resource-id"],
        ch["resourceId"].as_str().expect("rid")
    );
    assert!(
        sync.headers["x-goog-channel-expiration"]
            .to_str()
            .unwrap_or("")
            .ends_with("GMT")
    );
    assert!(sync.body.is_empty());
    assert_eq!(
        env.post(
            "/calendar/v3/calendars/primary/events/watch",
            json!({"id": "ch-1", "type": "web_hook", "address": format!("{hook}/gcal")})
        )
        .await
        .0,
        400,
        "ids are unique"
    );

    env.control(
        Method::POST,
        &format!("/_emulator/accounts/{ACCOUNT}/calendars/primary/events"),
        json!({"summary": "x", "start": "2026-06-01T10:00:00Z", "end": "2026-06-01T11:00:00Z"}),
    )
    .await;
    let exists = next(&mut hits).await;
    assert_eq!(exists.headers["x-goog-resource-state"], "exists");
    let n: u64 = exists.headers["x-goog-message-number"]
        .to_str()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(n > 1);

    let stop = json!({"id": "ch-1", "resourceId": ch["resourceId"]});
    let r = env
        .http
        .post(format!("{}/calendar/v3/channels/stop", env.base))
        .bearer_auth(&env.token)
        .json(&stop)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let r = env
        .http
        .post(format!("{}/calendar/v3/channels/stop", env.base))
        .bearer_auth(&env.token)
        .json(&stop)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn calendar_event_writes_and_preconditions() {
    let env = start(common::quiet_config(3)).await;
    let ev = json!({"id": "abcdef12345", "summary": "Planning", "start": {"dateTime": "2026-06-01T10:00:00+02:00"}, "end": {"dateTime": "2026-06-01T11:00:00+02:00"}});
    let (s, created) = env
        .post(
            "/calendar/v3/calendars/primary/events?sendUpdates=none",
            ev.clone(),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    assert_eq!(created["start"]["dateTime"], "2026-06-01T08:00:00Z");
    let etag = created["etag"].as_str().expect("etag").to_string();
    let (s, e) = env.post("/calendar/v3/calendars/primary/events", ev).await;
    assert_eq!((s, Env::reason(&e)), (409, "duplicate"));
    let bad = |body: Value| {
        let env = &env;
        async move {
            env.post("/calendar/v3/calendars/primary/events", body)
                .await
        }
    };
    let (s, e) = bad(json!({"start": {"date": "2026-06-02"}, "end": {"date": "2026-06-01"}})).await;
    assert_eq!((s, Env::reason(&e)), (400, "timeRangeEmpty"));
    assert_eq!(
        bad(json!({"start": {"date": "2026-06-02"}, "end": {"dateTime": "2026-06-03T00:00:00Z"}}))
            .await
            .0,
        400
    );
    assert_eq!(bad(json!({"start": {"dateTime": "2026-06-02T10:00:00Z"}, "end": {"dateTime": "2026-06-02T11:00:00Z"}, "recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]})).await.0, 400, "recurring needs a time zone");
    assert_eq!(
        bad(
            json!({"start": {"date": "2026-06-02"}, "end": {"date": "2026-06-03"}, "conferenceData": {}})
        )
        .await
        .0,
        400,
        "unmodelled fields are refused"
    );
    assert_eq!(bad(json!({"id": "UPPER-case", "start": {"date": "2026-06-02"}, "end": {"date": "2026-06-03"}})).await.0, 400);
    let (s, rec) = bad(json!({"start": {"dateTime": "2026-06-02T10:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-06-02T11:00:00", "timeZone": "UTC"}, "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"]})).await;
    assert_eq!(s, 200, "{rec}");

    let url = format!(
        "{}/calendar/v3/calendars/primary/events/abcdef12345",
        env.base
    );
    let r = env
        .http
        .patch(&url)
        .bearer_auth(&env.token)
        .header("if-match", "\"1\"")
        .json(&json!({"summary": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 412);
    let v: Value = r.json().await.expect("json");
    assert_eq!(Env::reason(&v), "conditionNotMet");
    let r = env
        .http
        .patch(&url)
        .bearer_auth(&env.token)
        .header("if-match", &etag)
        .json(&json!({"summary": "Renamed"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["summary"], "Renamed");
    assert_ne!(v["etag"], etag.as_str());
    let r = env
        .http
        .delete(&url)
        .bearer_auth(&env.token)
        .header("if-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 412, "stale etag");
    let r = env
        .http
        .delete(&url)
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let r = env
        .http
        .delete(&url)
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 410);
    let v: Value = r.json().await.expect("json");
    assert_eq!(Env::reason(&v), "deleted");
    let (s, g) = env
        .get("/calendar/v3/calendars/primary/events/abcdef12345")
        .await;
    assert_eq!((s, g["status"].as_str()), (200, Some("cancelled")));
    env.emu.shutdown().await;
}
