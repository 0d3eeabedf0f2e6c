//! The sinks against the real binary: the Maildir holds exactly one file per message (also
//! across SIGKILL) and notmuch indexes it; a webhook receiver verifies every signature and,
//! after dedupe by key, sees every feed event once (also across SIGKILL); a webhook that
//! never answers delays neither sync nor the Maildir.

use crate::common::*;
use mailsync::sink::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature};
use mailsync_actors::store::Store;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "integration-webhook-secret";

/// Every file name in `<root>/<account>/cur`.
fn cur_files(root: &Path, account: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(account).join("cur"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts one file per message: `count` files, all with distinct stems, none in tmp/ or new/.
fn assert_one_file_per_message(root: &Path, account: &str, count: usize) {
    let files = cur_files(root, account);
    let stems: BTreeSet<&str> = files
        .iter()
        .map(|f| f.split_once(":2,").map_or(f.as_str(), |(s, _)| s))
        .collect();
    assert_eq!(stems.len(), files.len(), "twin files: {files:?}");
    assert_eq!(files.len(), count, "files in cur/: {files:?}");
    for sub in ["tmp", "new"] {
        let n = std::fs::read_dir(root.join(account).join(sub))
            .map(|rd| rd.count())
            .unwrap_or(0);
        assert_eq!(n, 0, "{sub}/ is not empty");
    }
}

fn maildir_section(root: &Path) -> String {
    format!("[maildir]\nroot = \"{}\"\n", root.display())
}

fn caught_up(d: &Daemon, account: &str) -> bool {
    d.account(account)["phase"] == json!("caught_up")
}

/// Every feed key in the store (read after the daemon stopped).
fn feed_keys(data_dir: &Path) -> BTreeSet<String> {
    let store = Store::open(data_dir).expect("reopen store");
    store
        .feed()
        .read_after(0, 1_000_000)
        .expect("read feed")
        .into_iter()
        .map(|e| e.key)
        .collect()
}

#[test]
fn maildir_holds_one_file_per_message_and_notmuch_indexes_it() {
    const N: usize = 30;
    let env = TestEnv::new();
    let root = env.path("mail");
    env.write_config(&format!(
        "{}\n{}",
        maildir_section(&root),
        test_account("md", &format!("messages = {N}"))
    ));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || caught_up(&d, "md")
            && cur_files(&root, "md").len() >= N),
        "maildir never filled: {:?}\n{}",
        cur_files(&root, "md"),
        d.log_text()
    );
    d.stop();
    assert_one_file_per_message(&root, "md", N);
    // Synthetic messages are in INBOX and not UNREAD: seen.
    assert!(cur_files(&root, "md").iter().all(|f| f.ends_with(":2,S")));

    // A restart (with its reconcile) changes nothing.
    let d = env.start();
    assert!(wait_until(Duration::from_secs(30), || caught_up(&d, "md")));
    d.stop();
    assert_one_file_per_message(&root, "md", N);

    // notmuch counts the same number of messages.
    let notmuch = Notmuch::new(&env, &root, false);
    notmuch.run(&["new"]);
    assert_eq!(notmuch.run(&["count", "*"]), N.to_string());
    assert_eq!(notmuch.run(&["count", "folder:md"]), N.to_string());
}

#[test]
fn sigkill_during_maildir_writes_leaves_one_file_per_message() {
    const N: usize = 150;
    const KILLS: usize = 3;
    let env = TestEnv::new();
    let root = env.path("mail");
    env.write_config(&format!(
        "{}\n{}",
        maildir_section(&root),
        test_account("crashy", &format!("messages = {N}\njob_delay_ms = 30"))
    ));
    for round in 0..KILLS {
        let d = env.start();
        let target = (round + 1) * N / (KILLS + 1);
        assert!(
            wait_until(Duration::from_secs(60), || cur_files(&root, "crashy").len()
                >= target),
            "no maildir progress before kill {round}: {}",
            d.log_text()
        );
        d.kill9();
    }
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(90), || caught_up(&d, "crashy")
            && cur_files(&root, "crashy").len() >= N),
        "never caught up: {} files\n{}",
        cur_files(&root, "crashy").len(),
        d.log_text()
    );
    // The sink has acked its last batch, then stop cleanly.
    assert!(
        wait_consumers_caught_up(&d, Duration::from_secs(30)),
        "{}",
        d.request(json!({"v":1,"cmd":"consumers"}))
    );
    d.stop();
    assert_one_file_per_message(&root, "crashy", N);
}

/// A minimal HTTP/1.1 receiver: verifies each request's signature, records the event keys,
/// answers `status`. Handles keep-alive connections.
struct Receiver {
    url: String,
    /// Key → times delivered.
    keys: Arc<Mutex<HashMap<String, usize>>>,
    /// Requests whose signature did not verify.
    bad_signatures: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let keys: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let bad: Arc<Mutex<usize>> = Arc::default();
        let (k, b) = (Arc::clone(&keys), Arc::clone(&bad));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (k, b) = (Arc::clone(&k), Arc::clone(&b));
                std::thread::spawn(move || serve(conn, &k, &b));
            }
        });
        Receiver {
            url,
            keys,
            bad_signatures: bad,
        }
    }

    fn distinct(&self) -> BTreeSet<String> {
        self.keys.lock().expect("lock").keys().cloned().collect()
    }
}

fn serve(conn: TcpStream, keys: &Mutex<HashMap<String, usize>>, bad: &Mutex<usize>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers: HashMap<String, String> = HashMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let header = |n: &str| {
            headers
                .get(&n.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let verified = verify_signature(
            SECRET.as_bytes(),
            &header(TIMESTAMP_HEADER),
            &body,
            &header(SIGNATURE_HEADER),
            now,
            300,
        );
        if verified.is_err() {
            *bad.lock().expect("lock") += 1;
            let _ = out.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n");
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        {
            let mut keys = keys.lock().expect("lock");
            for ev in v["events"].as_array().into_iter().flatten() {
                if let Some(k) = ev["key"].as_str() {
                    *keys.entry(k.to_string()).or_default() += 1;
                }
            }
        }
        if out
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

fn webhook_section(url: &str) -> String {
    format!("[[webhooks]]\nname = \"hook\"\nurl = \"{url}\"\nsecret = {{ value = \"{SECRET}\" }}\n")
}

#[test]
fn webhook_sees_every_event_once_after_dedupe_across_sigkill() {
    const N: usize = 120;
    let env = TestEnv::new();
    let rx = Receiver::start();
    env.write_config(&format!(
        "{}\n{}",
        webhook_section(&rx.url),
        test_account("hooked", &format!("messages = {N}\njob_delay_ms = 30"))
    ));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || rx.distinct().len() >= N / 3),
        "no deliveries: {}",
        d.log_text()
    );
    d.kill9();
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(90), || caught_up(&d, "hooked")
            && rx.distinct().len() > N),
        "never delivered everything: {} keys\n{}",
        rx.distinct().len(),
        d.log_text()
    );
    assert!(
        wait_consumers_caught_up(&d, Duration::from_secs(30)),
        "{}",
        d.request(json!({"v":1,"cmd":"consumers"}))
    );
    d.stop();
    assert_eq!(*rx.bad_signatures.lock().expect("lock"), 0);
    let expected = feed_keys(&env.data_dir);
    assert_eq!(
        rx.distinct(),
        expected,
        "after dedupe: every feed event, once"
    );
    let repeats: usize = rx.keys.lock().expect("lock").values().map(|n| n - 1).sum();
    assert!(
        repeats <= 100,
        "{repeats} redeliveries: more than the one batch in flight at the kill"
    );
}

#[test]
fn a_webhook_that_never_answers_delays_neither_sync_nor_the_maildir() {
    const N: usize = 40;
    let env = TestEnv::new();
    let root = env.path("mail");
    // Accepts connections, never answers.
    let hole = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", hole.local_addr().expect("addr"));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let h = Arc::clone(&held);
    std::thread::spawn(move || {
        for conn in hole.incoming().flatten() {
            h.lock().expect("lock").push(conn);
        }
    });
    env.write_config(&format!(
        "{}\n{}\n{}",
        maildir_section(&root),
        webhook_section(&url),
        test_account("busy", &format!("messages = {N}"))
    ));
    let d = env.start();
    let started = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || caught_up(&d, "busy")
            && cur_files(&root, "busy").len() >= N),
        "sync or maildir held up by the stuck webhook: {} files\n{}",
        cur_files(&root, "busy").len(),
        d.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the 30 s webhook timeout must not be on the path"
    );
    assert!(
        !held.lock().expect("lock").is_empty(),
        "the webhook was tried"
    );
    // A hung POST does not hold up a clean shutdown either.
    d.stop();
    assert_one_file_per_message(&root, "busy", N);
}
