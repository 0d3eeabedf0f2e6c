//! IMAP trouble: a wrong password marks the account `disconnected` with the server's words and
//! no retry storm; a server that answers garbage or stalls in the middle of a literal gives a
//! clear error class while the daemon keeps answering; Dovecot killed in the middle of the
//! initial sync and restarted → the sync resumes from its checkpoint.

use crate::common::dovecot::{Caps, Dovecot, ImapView, generate};
use crate::common::{TestEnv, wait_until};
use crate::imap_sync::{PASS, USER, held, server, stored, tail, total, users, wait_equal};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

#[test]
fn wrong_password_disconnects_without_a_retry_storm() {
    let dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(10, 1, "inbox"));
    let env = TestEnv::new();
    env.write_config(&dc.account_toml("mail", USER, "wrong-password-xyz", ""));
    let d = env.start();
    let ok = wait_until(Duration::from_secs(30), || {
        d.account("mail")["state"] == json!("disconnected")
    });
    let a = d.account("mail");
    assert!(ok, "not disconnected: {a}");
    let reason = a["last_error"].to_string();
    assert!(
        reason.contains("AUTHENTICATIONFAILED") || reason.contains("Authentication failed"),
        "server's words missing: {reason}"
    );
    // No storm: a few seconds later the server has seen at most a couple of attempts.
    std::thread::sleep(Duration::from_secs(6));
    let attempts = dc.log().matches("auth failed").count();
    assert!(
        (1..=3).contains(&attempts),
        "{attempts} failed logins:\n{}",
        dc.log()
    );
    assert_eq!(d.account("mail")["state"], json!("disconnected"));
    let log = d.log_text();
    assert!(!log.contains("wrong-password-xyz"), "password in the log");
    assert!(!d.status().to_string().contains("wrong-password-xyz"));
    d.stop();
}

#[derive(Clone, Copy)]
enum Fault {
    Garbage,
    StallMidLiteral,
}

/// A scripted fake IMAP server on a loopback port; returns the port.
fn fake_server(fault: Fault) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut out) = conn else { continue };
            std::thread::spawn(move || {
                if let Fault::Garbage = fault {
                    let _ = out.write_all(b"HELLO THIS IS NOT IMAP\r\n)(*&^%\r\n");
                    std::thread::sleep(Duration::from_secs(30));
                    return;
                }
                let _ = out.write_all(b"* OK fake ready\r\n");
                let Ok(input) = out.try_clone() else { return };
                let mut lines = BufReader::new(input).lines();
                while let Some(Ok(line)) = lines.next() {
                    let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
                    let cmd = rest.to_ascii_uppercase();
                    let reply = if cmd.starts_with("LOGIN") {
                        format!("{tag} OK logged in\r\n")
                    } else if cmd.starts_with("CAPABILITY") {
                        format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")
                    } else if cmd.starts_with("LIST") {
                        format!("* LIST () \"/\" INBOX\r\n{tag} OK done\r\n")
                    } else if cmd.starts_with("SELECT") {
                        format!(
                            "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT 2] n\r\n{tag} OK [READ-WRITE] done\r\n"
                        )
                    } else if cmd.contains("BODY.PEEK[]") {
                        let _ = out.write_all(b"* 1 FETCH (UID 1 FLAGS () BODY[] {5000}\r\nSubject: partial\r\n\r\nonly a part of the literal");
                        std::thread::sleep(Duration::from_secs(60));
                        return;
                    } else if cmd.starts_with("UID FETCH") {
                        format!("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 5000)\r\n{tag} OK done\r\n")
                    } else if cmd.starts_with("LOGOUT") {
                        format!("* BYE bye\r\n{tag} OK done\r\n")
                    } else {
                        format!("{tag} OK done\r\n")
                    };
                    if out.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn fault_gives_a_clear_class(fault: Fault, class: &str) {
    let port = fake_server(fault);
    let env = TestEnv::new();
    env.write_config(&format!(
        r#"[[accounts]]
id = "odd"
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "u"
password = {{ value = "p" }}

[accounts.imap]
allow_plaintext = true
timeout_secs = 2
connect_timeout_secs = 2
"#
    ));
    let d = env.start();
    let wanted = format!("{class} ");
    let ok = wait_until(Duration::from_secs(40), || {
        d.account("odd")["cursor"]
            .as_str()
            .is_some_and(|c| c.contains("errors:") && c.contains(&wanted))
    });
    assert!(
        ok,
        "no {class} error counted: {}\n{}",
        d.account("odd"),
        tail(&d.log_text(), 30)
    );
    assert!(
        d.log_text().contains(&format!("imap {class} error")),
        "the log does not name the class"
    );
    // The daemon is fine: it answers and the account is not failed for good.
    let a = d.account("odd");
    assert_ne!(a["state"], json!("disconnected"), "{a}");
    d.stop();
}

#[test]
fn a_server_answering_garbage_is_a_parse_error() {
    fault_gives_a_clear_class(Fault::Garbage, "parse");
}

#[test]
fn a_server_stalling_mid_literal_is_a_timeout() {
    fault_gives_a_clear_class(Fault::StallMidLiteral, "timeout");
}

#[test]
fn dovecot_killed_mid_initial_sync_resumes_from_the_checkpoint() {
    let mut dc = Dovecot::start(Caps::Full, &users());
    dc.seed(USER, "INBOX", &generate(6_000, 5, "inbox"));
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    crate::imap_sync::config(&env, &dc, "");
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(120), || held(&d, "mail").unwrap_or(0)
            >= 1_000),
        "initial sync did not start: {}",
        d.account("mail")
    );
    dc.crash();
    let at_kill = held(&d, "mail").unwrap_or(0);
    std::thread::sleep(Duration::from_secs(2));
    assert!(d.try_request(&json!({"v":1,"cmd":"status"})).is_ok());
    let during = held(&d, "mail").unwrap_or(0);
    assert!(
        during <= at_kill + 100,
        "synced on while the server was dead"
    );
    dc.launch();
    let back = Instant::now();
    let resumed = wait_until(Duration::from_secs(10), || {
        held(&d, "mail").unwrap_or(0) > at_kill + 100
    });
    assert!(
        resumed,
        "no progress within 10 s of the server's return: {}\n{}",
        d.account("mail"),
        tail(&d.log_text(), 30)
    );
    eprintln!(
        "held {at_kill} at the kill; progress {} ms after the server came back",
        back.elapsed().as_millis()
    );
    wait_equal(&d, &env, &view, &["INBOX", "Trash"], 240);
    // Resumed, not restarted: the bodies fetched add up to the mailbox plus at most the one
    // chunk the kill interrupted.
    let fetched: u64 = d
        .log_text()
        .lines()
        .filter(|l| l.contains("IMAP bodies recorded."))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["fetched"].as_u64())
        .sum();
    d.stop();
    let truth = server(&view, &["INBOX", "Trash"]);
    assert!(
        fetched <= total(&truth) + 100,
        "{fetched} bodies fetched for {} messages",
        total(&truth)
    );
    assert_eq!(stored(&env.data_dir, "mail"), truth);
}

fn tls_account(port: u16, tls: &str, ca: &std::path::Path) -> String {
    format!(
        r#"[[accounts]]
id = "mail"
kind = "imap"
host = "localhost"
port = {port}
tls = "{tls}"
username = "{USER}"
password = {{ value = "{PASS}" }}

[accounts.imap]
ca_file = "{ca}"
"#,
        ca = ca.display()
    )
}

#[test]
fn implicit_tls_and_starttls_with_a_ca_file() {
    let dc = Dovecot::start_tls(&users());
    dc.seed(USER, "INBOX", &generate(25, 41, "tls"));
    let view = ImapView::new(&dc, USER, PASS);
    let truth = server(&view, &["INBOX", "Trash"]);
    for (port, mode) in [(dc.tls_port, "implicit"), (dc.port, "starttls")] {
        let env = TestEnv::new();
        env.write_config(&tls_account(port, mode, &dc.ca_file()));
        let d = env.start();
        let ok = wait_until(Duration::from_secs(60), || {
            crate::imap_sync::caught_up(&d, "mail", 25)
        });
        assert!(
            ok,
            "{mode}: {}\n{}",
            d.account("mail"),
            tail(&d.log_text(), 20)
        );
        d.stop();
        assert_eq!(stored(&env.data_dir, "mail"), truth, "{mode}");
    }
    // A server whose certificate the CA file does not vouch for is refused (network class).
    let env = TestEnv::new();
    let wrong = TestEnv::new();
    let foreign = wrong.path("foreign.pem");
    let st = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(wrong.path("k.pem"))
        .arg("-out")
        .arg(&foreign)
        .args(["-days", "1", "-subj", "/CN=someone else"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    env.write_config(&tls_account(dc.tls_port, "implicit", &foreign));
    let d = env.start();
    let ok = wait_until(Duration::from_secs(30), || {
        d.account("mail")["cursor"]
            .as_str()
            .is_some_and(|c| c.contains("network "))
    });
    assert!(ok, "{}", d.account("mail"));
    assert!(d.log_text().contains("TLS handshake failed"));
    assert_eq!(held(&d, "mail"), Some(0));
    d.stop();
}
