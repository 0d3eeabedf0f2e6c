use super::*;
use crate::control::protocol::StreamLine;
use mailsync_actors::calendar_model::{CalendarEvent, EventTime};
use mailsync_actors::model::MessageId;
use mailsync_actors::store::encode;

fn feed_event(seq: u64, change: &Change) -> FeedEvent {
    FeedEvent {
        seq,
        account: "a".into(),
        kind: change.kind().into(),
        key: format!("k{seq}"),
        payload: encode(change),
        ts_ms: 5,
    }
}

#[test]
fn events_render_in_the_public_schema() {
    let change = Change::MessageLabelsChanged {
        id: MessageId("m1".into()),
        added: vec![LabelId("STARRED".into())],
        removed: vec![],
        label_ids: vec![LabelId("INBOX".into()), LabelId("STARRED".into())],
    };
    let ev = feed_event(7, &change);
    assert_eq!(
        event_value(&ev),
        serde_json::json!({
            "v": 1, "seq": 7, "account": "a", "kind": "message.labels_changed", "key": "k7", "ts_ms": 5,
            "change": {"id": "m1", "added": ["STARRED"], "removed": [], "label_ids": ["INBOX", "STARRED"]}
        })
    );
    let bad = FeedEvent {
        payload: vec![9, 9],
        ..ev
    };
    assert!(event_json(&bad).change.is_none());
}

#[test]
fn calendar_events_render_with_plain_strings() {
    let change = Change::EventCreated {
        calendar_id: "cal@x".into(),
        event: CalendarEvent {
            id: "e1_20260512".into(),
            etag: "t3".into(),
            recurring_event_id: Some("e1".into()),
            start: Some(EventTime::Date("2026-05-12".into())),
            ..CalendarEvent::default()
        },
    };
    let v = event_value(&feed_event(1, &change));
    assert_eq!(v["kind"], "event.created");
    assert_eq!(v["change"]["calendar_id"], "cal@x");
    assert_eq!(v["change"]["event"]["status"], "confirmed");
    assert_eq!(v["change"]["event"]["series_id"], "e1");
    assert_eq!(
        v["change"]["event"]["start"],
        serde_json::json!({"date": "2026-05-12"})
    );
}

#[test]
fn a_cancelled_instance_renders_as_deleted_with_its_series_and_original_start() {
    let change = Change::EventDeleted {
        calendar_id: "cal@x".into(),
        event_id: "e1_20260519".into(),
        series_id: "e1".into(),
        original_start: Some(EventTime::Date("2026-05-19".into())),
    };
    let v = event_value(&feed_event(1, &change));
    assert_eq!(v["kind"], "event.deleted");
    assert_eq!(v["change"]["event_id"], "e1_20260519");
    assert_eq!(v["change"]["series_id"], "e1");
    assert_eq!(
        v["change"]["original_start"],
        serde_json::json!({"date": "2026-05-19"})
    );
}

/// The socket stream (`ctl events`) and a webhook body carry the same bytes for an event.
#[test]
fn socket_and_webhook_bytes_are_identical() {
    let changes = [
        Change::MessageDeleted {
            id: MessageId("m9".into()),
        },
        Change::AccountStateChanged {
            state: "running".into(),
            reason: Some("resumed by admin".into()),
        },
        Change::CalendarRemoved {
            calendar_id: "c".into(),
        },
    ];
    let events: Vec<FeedEvent> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| feed_event(i as u64 + 1, c))
        .collect();
    let body = crate::sink::webhook::batch_body(&events).unwrap();
    let parts: Vec<String> = events
        .iter()
        .map(|e| String::from_utf8(event_bytes(e)).unwrap())
        .collect();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("{{\"events\":[{}]}}", parts.join(","))
    );
    for (ev, bytes) in events.iter().zip(&parts) {
        let line = StreamLine::Event(crate::admin::event_json(ev)).to_line();
        assert_eq!(line, format!("{{\"event\":{bytes}}}\n"));
        assert!(bytes.contains("\"v\":1"), "{bytes}");
    }
}
