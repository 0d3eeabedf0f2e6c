//! Unit tests of the push module root: notification decoding, push body parsing, the health
//! registry's delivery states, and the `[push]` config validation.

use super::*;
use crate::config::{AccountSettings, load_str_with_env};
use std::time::Duration;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn data_decodes_in_both_alphabets_and_number_forms() {
    let json = r#"{"emailAddress":"a@example.com","historyId":"9137501"}"#;
    let want = GmailNotification {
        email: "a@example.com".into(),
        history_id: 9_137_501,
    };
    assert_eq!(decode_data(&b64(json)), Ok(want.clone()));
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    assert_eq!(decode_data(&url), Ok(want.clone()));
    let num = b64(r#"{"emailAddress":"a@example.com","historyId":9137501}"#);
    assert_eq!(decode_data(&num), Ok(want));
}

#[test]
fn bad_data_is_rejected() {
    assert_eq!(decode_data("***"), Err(NotificationError::Base64));
    assert!(matches!(
        decode_data(&b64("{}")),
        Err(NotificationError::Payload(_))
    ));
    assert!(matches!(
        decode_data(&b64(r#"{"emailAddress":"a@b","historyId":"-1"}"#)),
        Err(NotificationError::Payload(_))
    ));
    assert!(matches!(
        decode_data(&b64(r#"{"emailAddress":"nobody","historyId":"1"}"#)),
        Err(NotificationError::Payload(_))
    ));
}

#[test]
fn push_body_carries_the_message_id() {
    let data = b64(r#"{"emailAddress":"a@example.com","historyId":"5"}"#);
    let body = format!(
        r#"{{"message":{{"data":"{data}","attributes":{{}},"messageId":"12","message_id":"12","publishTime":"2026-05-02T10:11:12.345Z"}},"subscription":"projects/p/subscriptions/s"}}"#
    );
    let (n, id) = decode_push_body(body.as_bytes()).expect("decodes");
    assert_eq!(n.history_id, 5);
    assert_eq!(id.as_deref(), Some("12"));
    assert!(matches!(
        decode_push_body(b"{\"message\":{}}"),
        Err(NotificationError::Envelope(_))
    ));
    assert!(matches!(
        decode_push_body(b"garbage"),
        Err(NotificationError::Envelope(_))
    ));
}

const BASE: &str = r#"
data_dir = "/tmp/x"
socket_path = "/tmp/x/s"
"#;

fn gmail(id: &str, extra: &str) -> String {
    format!(
        r#"
[[accounts]]
id = "{id}"
kind = "gmail"
email = "{id}@example.com"
client_id = "c"
client_secret = {{ env = "S" }}
refresh_token = {{ env = "R" }}
{extra}
"#
    )
}

fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
    load_str_with_env(text, "/tmp/x/config.toml", [("HOME", "/tmp")])
}

#[test]
fn push_config_defaults_and_account_keys() {
    let text = format!(
        "{BASE}\n{}\n[push]\nport = 8087\naudience = \"https://h/push/gmail\"\nservice_account = \"p@x.iam.gserviceaccount.com\"\n",
        gmail(
            "a",
            "push_topic = \"projects/p/topics/t\"\npush_label_ids = [\"INBOX\"]"
        )
    );
    let c = load(&text).expect("valid");
    let p = c.push.expect("push");
    assert_eq!(p.listen, Some("127.0.0.1:8087".parse().expect("addr")));
    assert_eq!(p.max_body_bytes, 65_536);
    assert_eq!(p.silence, Duration::from_secs(600));
    let jwt = p.jwt.expect("jwt");
    assert_eq!(jwt.jwks_url, "https://www.googleapis.com/oauth2/v3/certs");
    let AccountSettings::Gmail(g) = &c.accounts[0].settings else {
        panic!("gmail");
    };
    let gp = g.push.as_ref().expect("push keys");
    assert_eq!(gp.topic, "projects/p/topics/t");
    assert_eq!(gp.label_ids, vec!["INBOX".to_string()]);
}

#[test]
fn push_config_problems_are_named() {
    let cases = [
        // An open endpoint without authentication.
        ("[push]\nport = 8087\n", "push.port"),
        // Half a JWT configuration.
        (
            "[push]\nport = 8087\naudience = \"a\"\n",
            "push.service_account",
        ),
        // Neither endpoint nor pull.
        (
            "[push]\naudience = \"a\"\nservice_account = \"b\"\n",
            "push",
        ),
        // Pulling Google without credentials.
        (
            "[push.pull]\nsubscription = \"projects/p/subscriptions/s\"\n",
            "push.pull.token_account",
        ),
        (
            "[push.pull]\nsubscription = \"subs\"\nendpoint = \"http://127.0.0.1:1\"\n",
            "push.pull.subscription",
        ),
    ];
    for (section, key) in cases {
        let text = format!("{BASE}\n{section}");
        match load(&text) {
            Err(crate::config::ConfigError::Invalid { issues, .. }) => {
                assert!(issues.iter().any(|i| i.key == key), "{section}: {issues:?}")
            }
            other => panic!("{section}: expected invalid, got {other:?}"),
        }
    }
    // A topic without a [push] section, and a malformed topic.
    let text = format!("{BASE}\n{}", gmail("a", "push_topic = \"t\""));
    let Err(crate::config::ConfigError::Invalid { issues, .. }) = load(&text) else {
        panic!("expected invalid");
    };
    assert!(issues.iter().any(|i| i.key == "accounts[0].push_topic"));
    assert!(issues.iter().any(|i| i.reason.contains("[push]")));
}

#[test]
fn health_goes_degraded_after_silence_and_back() {
    let text = format!(
        "{BASE}\n{}\n{}\n[push]\nport = 8087\nverification_token = {{ env = \"T\" }}\nsilence_secs = 10\n",
        gmail("a", "push_topic = \"projects/p/topics/t\""),
        gmail("b", "")
    );
    let c = load(&text).expect("valid");
    let h = PushHealth::default();
    h.configure(&c);
    assert_eq!(h.delivery("b", 0), "polling");
    assert_eq!(h.delivery("unknown", 0), "polling");
    // No watch yet: degraded.
    assert_eq!(h.delivery("a", 0), "degraded (polling)");
    h.watch_registered("a", 1_000_000, 1_000);
    assert_eq!(h.delivery("a", 5_000), "active (push)");
    assert_eq!(h.delivery("a", 11_000), "degraded (polling)");
    h.record_push("A@Example.com", 12_000);
    assert_eq!(h.delivery("a", 13_000), "active (push)");
    assert_eq!(h.account_of("a@EXAMPLE.com").as_deref(), Some("a"));
    let j = h.account_json("a", 13_000);
    assert_eq!(j["mode"], "push");
    assert_eq!(j["last_push_ms"], 12_000);
    h.watch_cleared("a", Some("boom".into()));
    assert_eq!(h.delivery("a", 13_000), "degraded (polling)");
}
