//! Gmail end-to-end helpers: the Google API emulator started in-process (its own tokio runtime,
//! real HTTP on 127.0.0.1:0), a daemon config with a gmail account pointing at it (credentials as
//! `{ file = ... }` references), the control API, and the oracles: the mirror read from sled
//! after the daemon exited vs the emulator's truth snapshot, and the feed's idempotency keys.

use super::TestEnv;
use mailsync_actors::mirror::{self, Change};
use mailsync_actors::store::{Store, decode};
use mailsync_emulator::{
    Counters, Emulator, EmulatorConfig, EmulatorHandle, FaultRule, MailboxSnapshot,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

/// The account id used in the daemon config.
pub const ACCOUNT: &str = "gm";

/// A running emulator and the runtime that drives it.
pub struct Emu {
    rt: tokio::runtime::Runtime,
    handle: Option<EmulatorHandle>,
    http: reqwest::Client,
    /// The mailbox address.
    pub email: String,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The per-user limit multiplier, told to both sides.
    pub scale: f64,
    /// The quota profile name for the daemon config ("2026" or "legacy").
    pub profile: &'static str,
}

impl Emu {
    /// Starts the emulator with `config` on an ephemeral loopback port.
    pub fn start(config: EmulatorConfig) -> Emu {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let email = config.account.clone();
        let scale = config.user_rate_scale;
        let profile = match config.quota_profile {
            mailsync_emulator::QuotaProfile::Legacy => "legacy",
            _ => "2026",
        };
        let handle = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            Emulator::start(config, listener).await.expect("emulator")
        });
        let base = handle.base_url();
        Emu {
            rt,
            handle: Some(handle),
            http: reqwest::Client::new(),
            email,
            base,
            scale,
            profile,
        }
    }

    pub fn handle(&self) -> &EmulatorHandle {
        self.handle.as_ref().expect("emulator running")
    }

    pub fn snapshot(&self) -> MailboxSnapshot {
        self.handle().snapshot(&self.email).expect("snapshot")
    }

    pub fn counters(&self) -> Counters {
        self.handle().counters()
    }

    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let http = self.http.clone();
        self.rt.block_on(async move {
            let mut req = http.request(method, &url);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("control call");
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            assert!(status.is_success(), "{url}: {status} {text}");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        })
    }

    fn acct_path(&self, rest: &str) -> String {
        format!("/_emulator/accounts/{}{rest}", self.email)
    }

    /// Delivers a generated message; returns its id.
    pub fn deliver(&self) -> String {
        let v = self.call(
            reqwest::Method::POST,
            &self.acct_path("/messages"),
            Some(json!({})),
        );
        v["id"].as_str().expect("id").to_string()
    }

    /// Delivers a generated message under an id that was deleted before (a restore).
    pub fn redeliver(&self, id: &str) -> String {
        let v = self.call(
            reqwest::Method::POST,
            &self.acct_path("/messages"),
            Some(json!({"id": id})),
        );
        v["id"].as_str().expect("id").to_string()
    }

    pub fn change_labels(&self, id: &str, add: &[&str], remove: &[&str]) {
        self.call(
            reqwest::Method::POST,
            &self.acct_path(&format!("/messages/{id}/labels")),
            Some(json!({"add": add, "remove": remove})),
        );
    }

    pub fn delete(&self, id: &str) {
        self.call(
            reqwest::Method::DELETE,
            &self.acct_path(&format!("/messages/{id}")),
            None,
        );
    }

    /// Creates a user label; returns its id.
    pub fn create_label(&self, name: &str) -> String {
        let v = self.call(
            reqwest::Method::POST,
            &self.acct_path("/labels"),
            Some(json!({ "name": name })),
        );
        v["id"].as_str().expect("label id").to_string()
    }

    /// Makes one message's `format=raw` answer corrupt on every fetch (`true`) or heals it.
    pub fn corrupt(&self, id: &str, corrupt: bool) {
        self.call(
            reqwest::Method::POST,
            &self.acct_path(&format!("/messages/{id}/corrupt")),
            Some(json!({ "corrupt": corrupt })),
        );
    }

    pub fn expire_history(&self) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.acct_path("/history/expire"),
            None,
        )
    }

    pub fn revoke_all_tokens(&self) -> Value {
        self.call(
            reqwest::Method::POST,
            "/_emulator/tokens/revoke",
            Some(json!({"email": self.email})),
        )
    }

    pub fn set_faults(&self, seed: u64, rules: &[FaultRule]) {
        self.call(
            reqwest::Method::PUT,
            "/_emulator/faults",
            Some(json!({"seed": seed, "rules": rules})),
        );
    }

    pub fn clear_faults(&self) {
        self.call(reqwest::Method::DELETE, "/_emulator/faults", None);
    }

    pub fn reset_counters(&self) {
        self.call(reqwest::Method::POST, "/_emulator/counters/reset", None);
    }

    pub fn advance_clock(&self, ms: i64) {
        self.call(
            reqwest::Method::POST,
            "/_emulator/clock",
            Some(json!({"advanceMs": ms})),
        );
    }

    /// A new grant of `scopes` for the default account through the authorization-code flow
    /// (what a person's consent in `mailsync auth` produces): the authorization endpoint
    /// consents at once and redirects with a code, which the token endpoint trades for a
    /// refresh token, returned.
    pub fn consent(&self, scopes: &str) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let enc = |v: &str| utf8_percent_encode(v, NON_ALPHANUMERIC).to_string();
        let redirect = "http://127.0.0.1:9/callback";
        let client_id = mailsync_emulator::DEFAULT_CLIENT_ID;
        let auth = format!(
            "{}/o/oauth2/v2/auth?client_id={}&redirect_uri={}&response_type=code&scope={}&login_hint={}",
            self.base,
            enc(client_id),
            enc(redirect),
            enc(scopes),
            enc(&self.email)
        );
        let token_url = format!("{}/token", self.base);
        self.rt.block_on(async move {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client");
            let resp = http.get(&auth).send().await.expect("authorize");
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("no redirect: {}", resp.status()))
                .to_string();
            let code = location
                .split(['?', '&'])
                .find_map(|kv| kv.strip_prefix("code="))
                .expect("code in the redirect");
            let code = percent_encoding::percent_decode_str(code)
                .decode_utf8()
                .expect("utf-8 code")
                .to_string();
            let body = format!(
                "grant_type=authorization_code&code={}&redirect_uri={}&client_id={}&client_secret={}",
                enc(&code),
                enc(redirect),
                enc(client_id),
                enc(mailsync_emulator::DEFAULT_CLIENT_SECRET)
            );
            let answer: Value = http
                .post(&token_url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("token JSON");
            answer["refresh_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no refresh token: {answer}"))
                .to_string()
        })
    }

    /// Every access token the emulator has issued and still knows (for leak checks).
    pub fn access_tokens(&self) -> Vec<String> {
        mailsync_emulator::util::lock(&self.handle().state().oauth)
            .access
            .keys()
            .cloned()
            .collect()
    }

    /// Writes the credential files into `env` and returns the `[quota]` + `[[accounts]]` text.
    pub fn account_block(&self, env: &TestEnv) -> String {
        let secret = env.path("client_secret");
        let refresh = env.path("refresh_token");
        let token = self
            .handle()
            .refresh_token(&self.email)
            .expect("refresh token");
        write_private(&secret, mailsync_emulator::DEFAULT_CLIENT_SECRET);
        write_private(&refresh, &token);
        format!(
            r#"[quota]
profile = "{profile}"
scale = {scale:?}

[[accounts]]
id = "{ACCOUNT}"
kind = "gmail"
email = "{email}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client_id}"
client_secret = {{ file = "{secret}" }}
refresh_token = {{ file = "{refresh}" }}
"#,
            profile = self.profile,
            scale = self.scale,
            email = self.email,
            base = self.base,
            client_id = mailsync_emulator::DEFAULT_CLIENT_ID,
            secret = secret.display(),
            refresh = refresh.display(),
        )
    }

    /// Writes a daemon config for one gmail account on this emulator with the production
    /// defaults of attempts and restarts (no `max_attempts`, no `[restart]`) and only the
    /// retry delays shortened; `extra` follows the account block (more account keys).
    pub fn write_production_config(&self, env: &TestEnv, extra: &str) {
        self.write_daemon_config(env, 10, "", extra);
    }

    /// Writes a complete daemon config for one gmail account on this emulator.
    pub fn write_config(&self, env: &TestEnv, max_attempts: u32) {
        let tuning = format!(
            "max_attempts = {max_attempts}\n\n[restart]\nbase_ms = 100\ncap_ms = 800\nmax_restarts = 20\nwindow_secs = 60\n"
        );
        self.write_daemon_config(env, 50, &tuning, "");
    }

    /// The config both writers share: short retry delays, `tuning` after them (more
    /// `[retry]` keys and later sections), the account block, then `extra`.
    fn write_daemon_config(&self, env: &TestEnv, batch_size: usize, tuning: &str, extra: &str) {
        let text = format!(
            r#"data_dir = "{data}"
socket_path = "{socket}"
log_format = "json"
log_level = "info,mailsync=debug,mailsync_actors=debug"
shutdown_grace_secs = 10

[sync]
poll_interval_secs = 1
batch_size = {batch_size}

[retry]
base_ms = 50
cap_ms = 1000
{tuning}
{account}{extra}
"#,
            data = env.data_dir.display(),
            socket = env.socket.display(),
            account = self.account_block(env),
        );
        std::fs::write(&env.config_path, text).expect("write config");
    }
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

pub fn write_private(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .expect("credential file");
    f.write_all(text.as_bytes()).expect("write credential");
}

/// An emulator config with quota on (real cost table, 2026 profile) and `scale`.
pub fn config(seed: u64, messages: usize, scale: f64) -> EmulatorConfig {
    EmulatorConfig {
        seed,
        messages,
        user_rate_scale: scale,
        ..EmulatorConfig::default()
    }
}

/// Quota scale so a full sync of `messages` takes about `secs` (the demo's formula).
pub fn quota_scale(messages: usize, secs: u64) -> f64 {
    mailsync::cli::demo::quota_scale(messages, secs)
}

/// Seeded fault rules on messages.get and history.list: 429, 500, 503, malformed and
/// truncated JSON, connection resets.
pub fn fault_rules(rate: f64) -> Vec<FaultRule> {
    ["gmail.users.messages.get", "gmail.users.history.list"]
        .iter()
        .map(|m| FaultRule {
            method: (*m).to_string(),
            rate_429: rate,
            rate_500: rate,
            rate_503: rate,
            rate_reset: rate,
            rate_malformed: rate,
            rate_truncated: rate / 2.0,
            ..FaultRule::default()
        })
        .collect()
}

/// Messages as (labels sorted, sha256).
pub type MessageSet = BTreeMap<String, (Vec<String>, String)>;

/// The emulator's truth.
pub fn truth(s: &MailboxSnapshot) -> MessageSet {
    s.messages
        .iter()
        .map(|m| {
            let mut l = m.label_ids.clone();
            l.sort();
            l.dedup();
            (m.id.clone(), (l, m.sha256.clone()))
        })
        .collect()
}

/// The mirror, read from sled (the daemon must have exited).
pub fn mirror_set(data_dir: &Path) -> MessageSet {
    let store = Store::open(data_dir).expect("open store");
    mirror_set_of(&store)
}

pub fn mirror_set_of(store: &Store) -> MessageSet {
    let mut out = MessageSet::new();
    mirror::for_each_message(store, ACCOUNT, |m| {
        let mut l: Vec<String> = m.label_ids.iter().map(|x| x.0.clone()).collect();
        l.sort();
        out.insert(m.id.0.clone(), (l, m.raw_sha256.clone()));
        Ok(())
    })
    .expect("scan mirror");
    // The raw bytes must be there and hash to the recorded value.
    for (id, (_, sha)) in &out {
        let raw = mirror::raw(
            store,
            ACCOUNT,
            &mailsync_actors::model::MessageId(id.clone()),
        )
        .expect("raw")
        .unwrap_or_else(|| panic!("raw bytes of {id} missing"));
        assert_eq!(
            &mirror::sha256_hex(&raw),
            sha,
            "raw bytes of {id} do not match"
        );
    }
    out
}

/// A readable description of the differences (empty when equal).
pub fn diff(mirror: &MessageSet, truth: &MessageSet) -> String {
    let mut out = Vec::new();
    for (id, t) in truth {
        match mirror.get(id) {
            None => out.push(format!("missing {id} {:?}", t.0)),
            Some(m) if m.1 != t.1 => out.push(format!("{id}: raw sha differs")),
            Some(m) if m.0 != t.0 => out.push(format!("{id}: labels {:?} != truth {:?}", m.0, t.0)),
            _ => {}
        }
    }
    for id in mirror.keys() {
        if !truth.contains_key(id) {
            out.push(format!("extra {id} (deleted at the provider)"));
        }
    }
    let n = out.len();
    out.truncate(15);
    if n > 15 {
        out.push(format!("... {n} differences in all"));
    }
    out.join("\n")
}

/// Panics with the differences unless the mirror in `data_dir` equals the emulator.
pub fn assert_mirror_equals(data_dir: &Path, emu: &Emu) {
    let truth = truth(&emu.snapshot());
    let mirror = mirror_set(data_dir);
    let d = diff(&mirror, &truth);
    assert!(
        d.is_empty(),
        "mirror ({}) != emulator ({}):\n{d}",
        mirror.len(),
        truth.len()
    );
}

/// What the feed holds for the gmail account.
#[derive(Debug, Default)]
pub struct FeedSummary {
    /// `message.added` events per message id.
    pub added: HashMap<String, usize>,
    /// `message.deleted` events per message id.
    pub deleted: HashMap<String, usize>,
    /// `message.labels_changed` events.
    pub label_changes: usize,
    /// `message.labels_changed` events per message id.
    pub label_changed: HashMap<String, usize>,
    /// `account.state_changed` states, in order.
    pub states: Vec<String>,
    /// Total events.
    pub events: usize,
}

/// Reads the feed from sled, asserting no idempotency key appears twice and seqs increase.
pub fn feed_summary(data_dir: &Path) -> FeedSummary {
    let store = Store::open(data_dir).expect("open store");
    let events = store.feed().read_after(0, 10_000_000).expect("read feed");
    let mut keys = BTreeSet::new();
    let mut s = FeedSummary {
        events: events.len(),
        ..FeedSummary::default()
    };
    let mut last = 0;
    for ev in &events {
        assert!(ev.seq > last, "feed out of order at {}", ev.seq);
        last = ev.seq;
        assert!(
            keys.insert(ev.key.clone()),
            "duplicate event key {}",
            ev.key
        );
        match decode::<Change>(&ev.payload).expect("payload") {
            Change::MessageAdded { id, .. } => *s.added.entry(id.0).or_default() += 1,
            Change::MessageDeleted { id } => *s.deleted.entry(id.0).or_default() += 1,
            Change::MessageLabelsChanged { id, .. } => {
                s.label_changes += 1;
                *s.label_changed.entry(id.0).or_default() += 1;
            }
            Change::AccountStateChanged { state, .. } => s.states.push(state),
            _ => {}
        }
    }
    s
}

/// Asserts the feed's message events are exactly-once and complete with respect to `truth`:
/// every message in the emulator has exactly one `message.added`; a message with a
/// `message.deleted` had its `message.added` first and is gone from the emulator.
pub fn assert_feed_complete(f: &FeedSummary, truth: &MessageSet) {
    for id in truth.keys() {
        assert_eq!(
            f.added.get(id).copied().unwrap_or(0),
            1,
            "message {id} should have exactly one message.added"
        );
    }
    for (id, n) in &f.added {
        assert_eq!(*n, 1, "message {id} added {n} times");
    }
    for (id, n) in &f.deleted {
        assert_eq!(*n, 1, "message {id} deleted {n} times");
        assert!(
            !truth.contains_key(id),
            "{id} deleted in the feed but present upstream"
        );
        assert!(f.added.contains_key(id), "{id} deleted without being added");
    }
    for id in f.added.keys() {
        if !truth.contains_key(id) {
            assert!(
                f.deleted.contains_key(id),
                "{id} was added, is gone upstream, but has no message.deleted"
            );
        }
    }
}

/// Waits until the account's phase is `caught_up` and its ingest queue is empty.
pub fn wait_caught_up(d: &super::Daemon, timeout: Duration) -> bool {
    super::wait_until(timeout, || {
        let a = d.account(ACCOUNT);
        a["phase"] == json!("caught_up")
            && a["missing"] == json!(0)
            && a["state"] == json!("running")
    })
}

/// Waits until the mirror (read through status) is quiet and the emulator's history id was
/// reached: `sync-now`, then caught up with the cursor at the emulator's history id.
pub fn wait_converged(d: &super::Daemon, emu: &Emu, timeout: Duration) -> bool {
    let target = emu.snapshot().history_id;
    let _ = d.try_request(&json!({"v":1,"cmd":"sync-now","account":ACCOUNT}));
    super::wait_until(timeout, || {
        let a = d.account(ACCOUNT);
        a["phase"] == json!("caught_up")
            && a["missing"] == json!(0)
            && a["cursor"] == json!(format!("historyId {target}"))
    })
}

/// Parses JSON log lines of a daemon log.
pub fn log_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}
