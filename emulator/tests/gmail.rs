//! Conformance tests for the Gmail v1 surface, driven with plain reqwest.

mod common;

use base64::Engine;
use common::{ACCOUNT, Env, quiet_config, start};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn b64url_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .expect("base64url")
}

#[tokio::test]
async fn profile_labels_and_errors() {
    let env = start(quiet_config(50)).await;
    let (s, p) = env.get("/gmail/v1/users/me/profile").await;
    assert_eq!(s, 200);
    assert_eq!(p["emailAddress"], ACCOUNT);
    assert_eq!(p["messagesTotal"], 50);
    assert!(
        p["historyId"].is_string(),
        "historyId must be a JSON string"
    );

    // The address works as well as `me`; someone else's mailbox does not.
    assert_eq!(
        env.get(&format!("/gmail/v1/users/{ACCOUNT}/profile"))
            .await
            .0,
        200
    );
    assert_eq!(
        env.get("/gmail/v1/users/other@example.com/profile").await.0,
        403
    );

    let (s, l) = env.get("/gmail/v1/users/me/labels").await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = l["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    for sys in [
        "INBOX",
        "UNREAD",
        "STARRED",
        "IMPORTANT",
        "SENT",
        "DRAFT",
        "SPAM",
        "TRASH",
        "CATEGORY_SOCIAL",
        "Label_1",
    ] {
        assert!(ids.contains(&sys), "{sys} missing");
    }
    assert!(
        l["labels"][0].get("messagesTotal").is_none(),
        "list entries carry no counts"
    );
    let (s, inbox) = env.get("/gmail/v1/users/me/labels/INBOX").await;
    assert_eq!(s, 200);
    assert!(inbox["messagesTotal"].is_number());

    let (s, created) = env
        .post(
            "/gmail/v1/users/me/labels",
            json!({"name": "Projects/Émulateur"}),
        )
        .await;
    assert_eq!(s, 200);
    let lid = created["id"].as_str().expect("id").to_string();
    assert!(lid.starts_with("Label_"));
    assert_eq!(
        env.post(
            "/gmail/v1/users/me/labels",
            json!({"name": "projects/émulateur"})
        )
        .await
        .0,
        409
    );
    let r = env
        .http
        .patch(format!("{}/gmail/v1/users/me/labels/{lid}", env.base))
        .bearer_auth(&env.token)
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let r = env
        .http
        .delete(format!("{}/gmail/v1/users/me/labels/{lid}", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let (s, e) = env.get(&format!("/gmail/v1/users/me/labels/{lid}")).await;
    assert_eq!((s, Env::reason(&e)), (404, "notFound"));
    assert_eq!(e["error"]["status"], "NOT_FOUND");
    assert_eq!(
        env.post(
            "/gmail/v1/users/me/labels",
            json!({"name": "x", "bogus": 1})
        )
        .await
        .0,
        400
    );

    // Unknown query parameters and unknown methods are refused.
    let (s, e) = env.get("/gmail/v1/users/me/messages?foo=1").await;
    assert_eq!((s, Env::reason(&e)), (400, "invalidArgument"));
    assert_eq!(env.get("/gmail/v1/users/me/nothing").await.0, 404);
    assert_eq!(
        env.get("/gmail/v1/users/me/messages/zz-not-hex").await.0,
        400
    );
    assert_eq!(
        env.get("/gmail/v1/users/me/messages/00000000000000ff")
            .await
            .0,
        404
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn list_pages_to_the_end_in_stable_newest_first_order() {
    let env = start(quiet_config(260)).await;
    let mut seen: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path =
            "/gmail/v1/users/me/messages?maxResults=100&includeSpamTrash=true".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={t}"));
        }
        let (s, v) = env.get(&path).await;
        assert_eq!(s, 200);
        pages += 1;
        assert_eq!(v["resultSizeEstimate"], 260);
        for m in v["messages"].as_array().expect("messages") {
            assert_eq!(
                m.as_object().map(|o| o.len()),
                Some(2),
                "only id and threadId"
            );
            seen.push(m["id"].as_str().expect("id").to_string());
        }
        match v["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 260);
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let truth: Vec<String> = snap.messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(seen, truth, "newest first, every message once");

    // Default page size is 100; the cap is 500; SPAM/TRASH hidden by default.
    let (_, v) = env.get("/gmail/v1/users/me/messages").await;
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(100));
    let (_, v) = env
        .get("/gmail/v1/users/me/messages?maxResults=5000&includeSpamTrash=false")
        .await;
    let hidden = snap
        .messages
        .iter()
        .filter(|m| m.label_ids.iter().any(|l| l == "SPAM" || l == "TRASH"))
        .count();
    assert_eq!(
        v["resultSizeEstimate"].as_u64(),
        Some((260 - hidden) as u64)
    );
    assert!(v.get("nextPageToken").is_none());
    assert_eq!(
        env.get("/gmail/v1/users/me/messages?pageToken=garbage")
            .await
            .0,
        400
    );

    // labelIds is an AND; q works; unsupported q is a 400.
    let (_, v) = env
        .get("/gmail/v1/users/me/messages?labelIds=INBOX&labelIds=UNREAD&maxResults=500")
        .await;
    let expect = snap
        .messages
        .iter()
        .filter(|m| {
            m.label_ids.contains(&"INBOX".to_string())
                && m.label_ids.contains(&"UNREAD".to_string())
        })
        .count();
    assert_eq!(v["resultSizeEstimate"].as_u64(), Some(expect as u64));
    let (_, v) = env
        .get("/gmail/v1/users/me/messages?q=is%3Aunread%20in%3Ainbox&maxResults=500")
        .await;
    assert_eq!(v["resultSizeEstimate"].as_u64(), Some(expect as u64));
    let (_, v) = env
        .get("/gmail/v1/users/me/messages?q=label%3Areceipts&maxResults=500")
        .await;
    let receipts = snap
        .messages
        .iter()
        .filter(|m| {
            m.label_ids.contains(&"Label_1".to_string())
                && !m.label_ids.iter().any(|l| l == "SPAM" || l == "TRASH")
        })
        .count();
    assert_eq!(v["resultSizeEstimate"].as_u64(), Some(receipts as u64));
    let (_, v) = env
        .get("/gmail/v1/users/me/messages?q=newer_than%3A1d")
        .await;
    assert_eq!(
        v["resultSizeEstimate"], 0,
        "seeded mail is older than a day"
    );
    assert!(v.get("messages").is_none());
    let (_, v) = env.get("/gmail/v1/users/me/messages?q=after%3A2000%2F01%2F01%20before%3A2100%2F01%2F01&maxResults=500").await;
    assert_eq!(
        v["resultSizeEstimate"].as_u64(),
        Some((260 - hidden) as u64)
    );
    let (_, v) = env
        .get("/gmail/v1/users/me/messages?q=from%3Aalice%40example.org&maxResults=500")
        .await;
    assert!(v["resultSizeEstimate"].as_u64().unwrap_or(0) > 0);
    let (s, e) = env.get("/gmail/v1/users/me/messages?q=hello%20world").await;
    assert_eq!((s, Env::reason(&e)), (400, "invalid"));
    env.emu.shutdown().await;
}

#[tokio::test]
async fn message_formats() {
    let env = start(quiet_config(40)).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    for m in snap.messages.iter().take(40) {
        let (s, raw) = env
            .get(&format!("/gmail/v1/users/me/messages/{}?format=raw", m.id))
            .await;
        assert_eq!(s, 200);
        assert!(raw.get("payload").is_none());
        let text = raw["raw"].as_str().expect("raw");
        // Gmail pads `raw`: base64url with `=` to a multiple of 4.
        assert_eq!(text.len() % 4, 0, "raw is padded");
        assert!(
            !text.contains('+') && !text.contains('/'),
            "url-safe alphabet"
        );
        let bytes = b64url_decode(text);
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, m.sha256);
        assert_eq!(raw["sizeEstimate"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(raw["internalDate"], Value::String(m.internal_date.clone()));

        let (_, full) = env
            .get(&format!("/gmail/v1/users/me/messages/{}", m.id))
            .await;
        assert!(full.get("raw").is_none());
        assert_eq!(full["payload"]["partId"], "");
        assert!(
            full["payload"]["headers"]
                .as_array()
                .is_some_and(|h| h.iter().any(|x| x["name"] == "Subject"))
        );
        if full["payload"]["mimeType"]
            .as_str()
            .is_some_and(|t| t.starts_with("multipart/"))
            && full["payload"]["parts"].is_array()
        {
            assert_eq!(full["payload"]["parts"][0]["partId"], "0");
        }
        let (_, min) = env
            .get(&format!(
                "/gmail/v1/users/me/messages/{}?format=MINIMAL",
                m.id
            ))
            .await;
        assert!(min.get("payload").is_none() && min.get("raw").is_none());
        assert_eq!(min["labelIds"], json!(m.label_ids));
        let (_, meta) = env.get(&format!("/gmail/v1/users/me/messages/{}?format=metadata&metadataHeaders=Subject&metadataHeaders=From", m.id)).await;
        let names: Vec<&str> = meta["payload"]["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter_map(|h| h["name"].as_str())
            .collect();
        assert!(
            names.iter().all(|n| *n == "Subject" || *n == "From") && names.len() == 2,
            "{names:?}"
        );
        assert!(meta["payload"].get("parts").is_none());
    }
    assert_eq!(
        env.get(&format!(
            "/gmail/v1/users/me/messages/{}?format=weird",
            snap.messages[0].id
        ))
        .await
        .0,
        400
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn modify_trash_delete_and_history() {
    let env = start(quiet_config(30)).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let start_id = snap.history_id.clone();
    let unread = |m: &&mailsync_emulator::SnapshotMessage| {
        m.label_ids.iter().any(|l| l == "UNREAD") && !m.label_ids.iter().any(|l| l == "STARRED")
    };
    let id = snap
        .messages
        .iter()
        .find(unread)
        .expect("an unread message")
        .id
        .clone();
    let id2 = snap
        .messages
        .iter()
        .find(|m| m.id != id)
        .expect("another")
        .id
        .clone();

    let (s, v) = env
        .post(
            &format!("/gmail/v1/users/me/messages/{id}/modify"),
            json!({"addLabelIds": ["STARRED", "Label_2"], "removeLabelIds": ["UNREAD"]}),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        v["labelIds"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("STARRED")))
    );
    let (s, e) = env
        .post(
            &format!("/gmail/v1/users/me/messages/{id}/modify"),
            json!({"addLabelIds": ["NOPE"]}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(
        env.post(
            &format!("/gmail/v1/users/me/messages/{id}/modify"),
            json!({"addLabelIds": ["SENT"]})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        env.post(
            &format!("/gmail/v1/users/me/messages/{id}/trash"),
            json!({})
        )
        .await
        .0,
        200
    );
    let (_, v) = env
        .post(
            &format!("/gmail/v1/users/me/messages/{id}/untrash"),
            json!({}),
        )
        .await;
    assert!(
        !v["labelIds"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("TRASH")))
    );
    let r = env
        .http
        .post(format!(
            "{}/gmail/v1/users/me/messages/batchModify",
            env.base
        ))
        .bearer_auth(&env.token)
        .json(&json!({"ids": [id, id2], "addLabelIds": ["IMPORTANT"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let (s, d) = env
        .control(
            Method::POST,
            &format!("/_emulator/accounts/{ACCOUNT}/messages"),
            json!({"rawText": "From: X <x@example.org>\r\nSubject: hi\r\n\r\nbody"}),
        )
        .await;
    assert_eq!(s, 201);
    let new_id = d["id"].as_str().expect("id").to_string();
    let r = env
        .http
        .delete(format!("{}/gmail/v1/users/me/messages/{id2}", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    assert_eq!(
        env.get(&format!("/gmail/v1/users/me/messages/{id2}"))
            .await
            .0,
        404
    );

    // History: chronological, typed arrays, ids > start, current historyId.
    let (s, h) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={start_id}"
        ))
        .await;
    assert_eq!(s, 200, "{h}");
    let recs = h["history"].as_array().expect("history");
    let ids: Vec<u64> = recs
        .iter()
        .map(|r| r["id"].as_str().expect("id string").parse().expect("u64"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(ids[0] > start_id.parse::<u64>().expect("u64"));
    assert!(recs.iter().any(|r| {
        r["labelsAdded"][0]["labelIds"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("STARRED")))
    }));
    assert!(
        recs.iter()
            .any(|r| r["labelsRemoved"][0]["labelIds"] == json!(["UNREAD"]))
    );
    assert!(
        recs.iter()
            .any(|r| r["messagesAdded"][0]["message"]["id"] == json!(new_id))
    );
    assert!(
        recs.iter()
            .any(|r| r["messagesDeleted"][0]["message"]["id"] == json!(id2))
    );
    let current = env.get("/gmail/v1/users/me/profile").await.1["historyId"].clone();
    assert_eq!(h["historyId"], current);
    let (_, only_added) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={start_id}&historyTypes=messageAdded"
        ))
        .await;
    assert_eq!(only_added["history"].as_array().map(Vec::len), Some(1));
    let (_, paged) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={start_id}&maxResults=2"
        ))
        .await;
    assert_eq!(paged["history"].as_array().map(Vec::len), Some(2));
    let t = paged["nextPageToken"].as_str().expect("token");
    let (_, rest) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={start_id}&maxResults=500&pageToken={t}"
        ))
        .await;
    assert_eq!(
        rest["history"].as_array().map(Vec::len),
        Some(recs.len() - 2)
    );
    let (_, none) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={}",
            current.as_str().unwrap_or("0")
        ))
        .await;
    assert!(
        none.get("history").is_none(),
        "nothing new → only historyId"
    );

    // Errors: missing / garbled start → 400; expired window → 404.
    let (s, e) = env.get("/gmail/v1/users/me/history").await;
    assert_eq!((s, Env::reason(&e)), (400, "invalidArgument"));
    assert_eq!(
        e["error"]["message"],
        "Missing/invalid parameter: startHistoryId"
    );
    assert_eq!(
        env.get("/gmail/v1/users/me/history?startHistoryId=abc")
            .await
            .0,
        400
    );
    assert_eq!(
        env.get("/gmail/v1/users/me/history?startHistoryId=1")
            .await
            .0,
        404,
        "older than the seeded mailbox"
    );
    let (s, _) = env
        .control(
            Method::POST,
            &format!("/_emulator/accounts/{ACCOUNT}/history/expire"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, e) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={start_id}"
        ))
        .await;
    assert_eq!((s, Env::reason(&e)), (404, "notFound"));
    assert_eq!(e["error"]["message"], "Requested entity was not found.");
    env.emu.shutdown().await;
}

#[tokio::test]
async fn history_retention_by_records() {
    let mut cfg = quiet_config(10);
    cfg.history_retention_records = 3;
    let env = start(cfg).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let start_id = snap.history_id.clone();
    for l in ["Label_1", "Label_2", "Label_3", "Label_4"] {
        assert_eq!(
            env.post(
                &format!("/gmail/v1/users/me/messages/{}/modify", snap.messages[0].id),
                json!({"addLabelIds": [l]})
            )
            .await
            .0,
            200
        );
    }
    assert_eq!(
        env.get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={start_id}"
        ))
        .await
        .0,
        404
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn auth_is_required_and_expiry_gives_401() {
    let env = start(quiet_config(5)).await;
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"https://accounts.google.com/\""
    );
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth("ya29.bogus")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap_or("")
            .contains("invalid_token")
    );
    let v: Value = r.json().await.expect("json");
    assert_eq!(Env::reason(&v), "authError");
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    // The token works until the clock passes its expiry.
    assert_eq!(env.get("/gmail/v1/users/me/profile").await.0, 200);
    env.control(
        Method::POST,
        "/_emulator/clock",
        json!({"advanceMs": 3_600_000}),
    )
    .await;
    let (s, v) = env.get("/gmail/v1/users/me/profile").await;
    assert_eq!((s, Env::reason(&v)), (401, "authError"));
    assert_eq!(env.get("/calendar/v3/users/me/calendarList").await.0, 401);
    let c = env.emu.counters();
    assert!(c.status_401 >= 4);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn watch_and_stop() {
    let env = start(quiet_config(5)).await;
    let (s, e) = env
        .post(
            "/gmail/v1/users/me/watch",
            json!({"topicName": "projects/other/topics/x"}),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        e["error"]["message"],
        "Invalid topicName does not match projects/mailsync-emulator/topics/*"
    );
    assert_eq!(env.post("/gmail/v1/users/me/watch", json!({})).await.0, 400);
    let (s, w) = env.post("/gmail/v1/users/me/watch", json!({"topicName": "projects/mailsync-emulator/topics/gmail", "labelIds": ["INBOX"], "labelFilterBehavior": "INCLUDE"})).await;
    assert_eq!(s, 200);
    let exp: i64 = w["expiration"]
        .as_str()
        .expect("string")
        .parse()
        .expect("ms");
    let now = env
        .control(Method::GET, "/_emulator/clock", json!({}))
        .await
        .1["nowMs"]
        .as_i64()
        .expect("now");
    assert!(
        (exp - now - 7 * 86_400_000).abs() < 10_000,
        "expiration = now + 7 days"
    );
    assert!(w["historyId"].is_string());
    let r = env
        .http
        .post(format!("{}/gmail/v1/users/me/stop", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn history_retention_by_age() {
    let mut cfg = quiet_config(10);
    cfg.history_retention = std::time::Duration::from_secs(3600);
    cfg.access_token_ttl = std::time::Duration::from_secs(86_400);
    let env = start(cfg).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let id = &snap.messages[0].id;
    assert_eq!(
        env.post(
            &format!("/gmail/v1/users/me/messages/{id}/modify"),
            json!({"addLabelIds": ["Label_1"]})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        env.get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={}",
            snap.history_id
        ))
        .await
        .0,
        200
    );
    env.control(
        Method::POST,
        "/_emulator/clock",
        json!({"advanceMs": 2 * 3_600_000}),
    )
    .await;
    let (s, e) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={}",
            snap.history_id
        ))
        .await;
    assert_eq!((s, Env::reason(&e)), (404, "notFound"));
    // A cursor taken now is valid again.
    let now_id = env.get("/gmail/v1/users/me/profile").await.1["historyId"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    assert_eq!(
        env.get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={now_id}"
        ))
        .await
        .0,
        200
    );
    env.emu.shutdown().await;
}

fn find_attachment(part: &Value) -> Option<(String, u64)> {
    if let Some(a) = part["body"]["attachmentId"].as_str() {
        return Some((a.to_string(), part["body"]["size"].as_u64().unwrap_or(0)));
    }
    part["parts"].as_array()?.iter().find_map(find_attachment)
}

#[tokio::test]
async fn threads_and_attachments() {
    let env = start(quiet_config(120)).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let mut truth: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for m in &snap.messages {
        *truth.entry(m.thread_id.clone()).or_insert(0) += 1;
    }
    // Page through every thread (spam/trash included) and check each with threads.get.
    let mut seen = std::collections::BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = "/gmail/v1/users/me/threads?maxResults=25&includeSpamTrash=true".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={t}"));
        }
        let (s, v) = env.get(&path).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["resultSizeEstimate"].as_u64(), Some(truth.len() as u64));
        for t in v["threads"].as_array().expect("threads") {
            assert!(t["snippet"].is_string() && t["historyId"].is_string());
            let id = t["id"].as_str().expect("id").to_string();
            assert!(seen.insert(id, ()).is_none(), "thread listed twice");
        }
        match v["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), truth.len());
    let multi = truth
        .iter()
        .find(|(_, n)| **n > 1)
        .map(|(t, n)| (t.clone(), *n))
        .expect("a thread with replies");
    let (s, t) = env
        .get(&format!(
            "/gmail/v1/users/me/threads/{}?format=minimal",
            multi.0
        ))
        .await;
    assert_eq!(s, 200);
    let msgs = t["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), multi.1);
    assert!(msgs.iter().all(|m| m["threadId"] == multi.0.as_str()));
    let dates: Vec<u64> = msgs
        .iter()
        .map(|m| {
            m["internalDate"]
                .as_str()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0)
        })
        .collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert_eq!(
        env.get(&format!(
            "/gmail/v1/users/me/threads/{}?format=raw",
            multi.0
        ))
        .await
        .0,
        400
    );
    assert_eq!(
        env.get("/gmail/v1/users/me/threads/00000000000000ab")
            .await
            .0,
        404
    );

    // Attachments: find one through q=has:attachment, fetch it by attachmentId.
    let (_, list) = env
        .get("/gmail/v1/users/me/messages?q=has%3Aattachment")
        .await;
    let id = list["messages"][0]["id"]
        .as_str()
        .expect("a message with an attachment")
        .to_string();
    let (_, full) = env.get(&format!("/gmail/v1/users/me/messages/{id}")).await;
    let (aid, size) = find_attachment(&full["payload"]).expect("attachment part");
    let (s, a) = env
        .get(&format!(
            "/gmail/v1/users/me/messages/{id}/attachments/{aid}"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(a["size"].as_u64(), Some(size));
    assert_eq!(
        b64url_decode(a["data"].as_str().expect("data")).len() as u64,
        size
    );
    assert_eq!(
        env.get(&format!(
            "/gmail/v1/users/me/messages/{id}/attachments/bogus"
        ))
        .await
        .0,
        400
    );
    let c = env.emu.counters();
    assert!(
        c.units
            .get("gmail.users.threads.list")
            .is_some_and(|u| *u % 10 == 0)
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn app_router_can_be_served_by_the_caller() {
    let (state, _rx) = mailsync_emulator::EmulatorState::new(quiet_config(3)).expect("state");
    let state = std::sync::Arc::new(state);
    let refresh = state.create_account(ACCOUNT, 0, 1);
    let router = mailsync_emulator::app(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let token = common::access_token(&http, &base, &refresh).await;
    let v: Value = http
        .get(format!("{base}/gmail/v1/users/me/profile"))
        .bearer_auth(token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["messagesTotal"], 3);
    server.abort();
}

#[tokio::test]
async fn thread_writes_apply_to_every_message() {
    let env = start(quiet_config(60)).await;
    let snap = env.emu.snapshot(ACCOUNT).expect("snapshot");
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for m in &snap.messages {
        *counts.entry(m.thread_id.as_str()).or_insert(0) += 1;
    }
    let (tid, n) = counts
        .iter()
        .find(|(_, n)| **n > 1)
        .map(|(t, n)| (t.to_string(), *n))
        .expect("thread");
    let (s, t) = env
        .post(
            &format!("/gmail/v1/users/me/threads/{tid}/modify"),
            json!({"addLabelIds": ["STARRED"]}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["messages"].as_array().map(Vec::len), Some(n));
    assert!(t["messages"].as_array().is_some_and(|m| m.iter().all(|x| {
        x["labelIds"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("STARRED")))
    })));
    let (_, t) = env
        .post(
            &format!("/gmail/v1/users/me/threads/{tid}/trash"),
            json!({}),
        )
        .await;
    assert!(t["messages"].as_array().is_some_and(|m| m.iter().all(|x| {
        x["labelIds"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("TRASH")))
    })));
    let (s, _) = env
        .post(
            &format!("/gmail/v1/users/me/threads/{tid}/untrash"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let r = env
        .http
        .delete(format!("{}/gmail/v1/users/me/threads/{tid}", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    assert_eq!(
        env.get(&format!("/gmail/v1/users/me/threads/{tid}"))
            .await
            .0,
        404
    );
    let (_, h) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={}&historyTypes=messageDeleted",
            snap.history_id
        ))
        .await;
    assert_eq!(h["history"].as_array().map(Vec::len), Some(n));
    env.emu.shutdown().await;
}
