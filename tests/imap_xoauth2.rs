//! IMAP with `auth = "xoauth2"` and a Google OAuth credential, end to end: a real Dovecot whose
//! `oauth2` passdb asks the emulator's tokeninfo endpoint about every bearer token, the daemon
//! taking its access tokens from the emulator's token endpoint (refresh token from the
//! authorization-code flow, scopes `https://mail.google.com/ email`, so tokeninfo names the
//! user).
//!
//! 1. The account syncs seeded folders: mirror and Maildir equal the server.
//! 2. Its access token expires at the emulator (clock moved on) while the daemon still trusts
//!    it; Dovecot restarts, refuses the old token on reconnect, the daemon refreshes once and
//!    goes on syncing — never `disconnected`.
//! 3. The grant is revoked: the refresh after Dovecot's refusal gets `invalid_grant`, the
//!    account is `disconnected` with the words of both, and nothing asks again — until a new
//!    grant and `ctl resume`, after which it syncs again.
//! 4. A token of another user (refused even after a refresh): `disconnected` with Dovecot's
//!    words, no retry storm.
//!
//! In every case no token appears in the daemon's log or status.

use crate::common::dovecot::{Dovecot, ImapView, generate};
use crate::common::emulator::{Emu, write_private};
use crate::common::{Daemon, TestEnv, wait_until};
use crate::imap_sync::{
    caught_up, expected_maildir, maildir_view, server, stored, tail, total, wait_equal,
};
use mailsync_emulator::EmulatorConfig;
use serde_json::json;
use std::time::Duration;

const USER: &str = "alice@example.com";
/// The oracle's password (LOGIN still goes to the passwd-file passdb).
const PASS: &str = "oracle-pw-7";
const OTHER: &str = "bob@example.com";
const SCOPES: &str = "https://mail.google.com/ email";
const FOLDERS: [&str; 3] = ["INBOX", "Sent", "Trash"];

struct Rig {
    emu: Emu,
    dc: Dovecot,
    view: ImapView,
    env: TestEnv,
    refresh: String,
}

/// The emulator (account `USER`, no Gmail mail), a grant with the email scope, Dovecot with
/// the oauth2 passdb on the emulator's tokeninfo and seeded folders, and a daemon config for
/// an xoauth2 account logging in as `imap_user` with the Maildir sink on.
fn rig(imap_user: &str) -> Rig {
    let emu = Emu::start(EmulatorConfig {
        account: USER.into(),
        messages: 0,
        ..Default::default()
    });
    let refresh = emu.consent(SCOPES);
    let tokeninfo = format!("{}/oauth2/v3/tokeninfo?access_token=", emu.base);
    let users = [
        (USER.to_string(), PASS.to_string()),
        (OTHER.to_string(), "other-pw".to_string()),
    ];
    let dc = Dovecot::start_oauth2(&users, &tokeninfo);
    dc.seed(USER, "INBOX", &generate(60, 11, "inbox"));
    dc.seed(USER, "Sent", &generate(15, 12, "sent"));
    let view = ImapView::new(&dc, USER, PASS);
    let env = TestEnv::new();
    let secret = env.path("client_secret");
    let token = env.path("refresh_token");
    write_private(&secret, mailsync_emulator::DEFAULT_CLIENT_SECRET);
    write_private(&token, &refresh);
    let oauth = format!(
        "client_id = \"{}\"\nclient_secret = {{ file = \"{}\" }}\nrefresh_token = {{ file = \"{}\" }}\ntoken_url = \"{}/token\"",
        mailsync_emulator::DEFAULT_CLIENT_ID,
        secret.display(),
        token.display(),
        emu.base
    );
    env.write_config(&format!(
        "[maildir]\nroot = \"{}\"\n\n{}",
        env.path("maildir").display(),
        dc.account_toml_xoauth2("mail", imap_user, &oauth, "")
    ));
    Rig {
        emu,
        dc,
        view,
        env,
        refresh,
    }
}

fn requests(emu: &Emu, method: &str) -> u64 {
    emu.counters().requests.get(method).copied().unwrap_or(0)
}

/// No refresh token, no access token (those given, and any `ya29.` at all) in the daemon's log
/// or status.
fn assert_no_secrets(d: &Daemon, rig: &Rig, access: &[String]) {
    let log = d.log_text();
    let status = d.status().to_string();
    for (what, text) in [("log", &log), ("status", &status)] {
        assert!(!text.contains(&rig.refresh), "refresh token in the {what}");
        assert!(!text.contains("ya29."), "an access token in the {what}");
        for t in access {
            assert!(!text.contains(t.as_str()), "access token in the {what}");
        }
    }
}

/// Waits until the daemon holds what the server holds, asserting on every look that the
/// account is not `disconnected`.
fn wait_equal_connected(d: &Daemon, rig: &Rig, secs: u64) {
    let truth = server(&rig.view, &FOLDERS);
    let expected = expected_maildir(&truth);
    let md = rig.env.path("maildir").join("mail");
    let ok = wait_until(Duration::from_secs(secs), || {
        let a = d.account("mail");
        assert_ne!(a["state"], json!("disconnected"), "{a}");
        caught_up(d, "mail", total(&truth)) && maildir_view(&md) == expected
    });
    assert!(
        ok,
        "not equal within {secs} s: {}\nlog tail:\n{}\ndovecot:\n{}",
        d.account("mail"),
        tail(&d.log_text(), 40),
        rig.dc.log()
    );
}

/// Stops the daemon and checks the stored mirror equals Dovecot's folders.
fn stop_and_compare(d: Daemon, rig: &Rig) {
    d.stop();
    assert_eq!(
        stored(&rig.env.data_dir, "mail"),
        server(&rig.view, &FOLDERS)
    );
}

#[test]
fn xoauth2_with_a_google_credential_syncs_the_folders() {
    let rig = rig(USER);
    let d = rig.env.start();
    wait_equal(&d, &rig.env, &rig.view, &FOLDERS, 120);
    let log = rig.dc.log();
    assert!(
        log.contains(&format!("Login: user=<{USER}>, method=XOAUTH2")),
        "no XOAUTH2 login in Dovecot's log:\n{log}"
    );
    assert!(requests(&rig.emu, "oauth2.tokeninfo") >= 1);
    assert!(requests(&rig.emu, "oauth2.token") >= 2, "consent + refresh");
    let access = rig.emu.access_tokens();
    assert_no_secrets(&d, &rig, &access);
    stop_and_compare(d, &rig);
}

#[test]
fn an_access_token_expired_at_the_server_is_refreshed_once_and_sync_goes_on() {
    let mut rig = rig(USER);
    let d = rig.env.start();
    wait_equal(&d, &rig.env, &rig.view, &FOLDERS, 120);
    let refreshes = requests(&rig.emu, "oauth2.token");
    let before = rig.emu.access_tokens();
    // Two hours later at the emulator: every access token it issued has expired, while the
    // daemon still holds its own as fresh. Dovecot restarts, so every connection logs in again.
    rig.emu.advance_clock(2 * 3_600_000);
    rig.dc.crash();
    rig.dc.launch();
    for m in generate(7, 13, "after-expiry") {
        rig.view.append("INBOX", &m.raw);
    }
    rig.view
        .run_in("Sent", &["UID STORE 1:3 +FLAGS (\\Flagged)".into()]);
    wait_equal_connected(&d, &rig, 120);
    let dlog = rig.dc.log();
    assert!(
        dlog.contains("Token validation failed: Invalid token"),
        "Dovecot never refused the expired token:\n{dlog}"
    );
    let log = d.log_text();
    assert!(
        log.contains("XOAUTH2 token refused; refreshing it and trying once more."),
        "no refresh after the refusal:\n{}",
        tail(&log, 40)
    );
    let after = requests(&rig.emu, "oauth2.token") - refreshes;
    assert!(
        (1..=3).contains(&after),
        "{after} refreshes for one expired token"
    );
    // Still connected a few seconds later.
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(d.account("mail")["state"], json!("disconnected"));
    let mut access = before;
    access.extend(rig.emu.access_tokens());
    assert_no_secrets(&d, &rig, &access);
    stop_and_compare(d, &rig);
}

#[test]
fn a_revoked_grant_disconnects_with_the_reasons_and_nothing_asks_until_resumed() {
    let mut rig = rig(USER);
    let d = rig.env.start();
    wait_equal(&d, &rig.env, &rig.view, &FOLDERS, 120);
    let access = rig.emu.access_tokens();
    rig.emu.revoke_all_tokens();
    let (refreshes, checks) = (
        requests(&rig.emu, "oauth2.token"),
        requests(&rig.emu, "oauth2.tokeninfo"),
    );
    rig.dc.crash();
    rig.dc.launch();
    let ok = wait_until(Duration::from_secs(60), || {
        d.account("mail")["state"] == json!("disconnected")
    });
    let a = d.account("mail");
    assert!(ok, "not disconnected: {a}\n{}", tail(&d.log_text(), 30));
    let reason = a["last_error"].to_string();
    assert!(
        reason.contains("Token has been expired or revoked"),
        "the token endpoint's words missing: {reason}"
    );
    assert!(
        reason.contains("AUTHENTICATIONFAILED"),
        "Dovecot's words missing: {reason}"
    );
    // No storm: the source is disconnected, so no connection asks Dovecot (or the token
    // endpoint) again. An AUTHENTICATE already under way (Dovecot delays refusals) may still
    // end first.
    std::thread::sleep(Duration::from_secs(5));
    let seen = (
        requests(&rig.emu, "oauth2.token"),
        requests(&rig.emu, "oauth2.tokeninfo"),
    );
    std::thread::sleep(Duration::from_secs(6));
    let later = (
        requests(&rig.emu, "oauth2.token"),
        requests(&rig.emu, "oauth2.tokeninfo"),
    );
    assert_eq!(seen, later, "still asking after the disconnection");
    assert!(
        later.0 - refreshes <= 2 && later.1 - checks <= 3,
        "{} refreshes and {} token checks after the revocation",
        later.0 - refreshes,
        later.1 - checks
    );
    assert_eq!(d.account("mail")["state"], json!("disconnected"));
    assert_no_secrets(&d, &rig, &access);
    // Authorized again: a new grant in the token file, `ctl resume`, and the account syncs.
    let fresh = rig.emu.consent(SCOPES);
    write_private(&rig.env.path("refresh_token"), &fresh);
    let r = d.request(json!({"v":1,"cmd":"resume","account":"mail"}));
    assert_eq!(r["ok"], json!(true), "{r}");
    for m in generate(3, 14, "after-resume") {
        rig.view.append("INBOX", &m.raw);
    }
    wait_equal_connected(&d, &rig, 90);
    assert!(
        !d.log_text().contains(&fresh),
        "the new refresh token in the log"
    );
    stop_and_compare(d, &rig);
}

#[test]
fn a_token_refused_even_after_a_refresh_disconnects_without_a_retry_storm() {
    // The grant is alice's; the account logs in as bob: Dovecot's tokeninfo check refuses
    // every token ("did not match"), the fresh one too.
    let rig = rig(OTHER);
    let d = rig.env.start();
    let ok = wait_until(Duration::from_secs(60), || {
        d.account("mail")["state"] == json!("disconnected")
    });
    let a = d.account("mail");
    assert!(
        ok,
        "not disconnected: {a}\n{}\ndovecot:\n{}",
        tail(&d.log_text(), 30),
        rig.dc.log()
    );
    let reason = a["last_error"].to_string();
    assert!(
        reason.contains("AUTHENTICATIONFAILED") && reason.contains(r#"\"status\":\"401\""#),
        "Dovecot's words missing: {reason}"
    );
    let log = d.log_text();
    assert!(
        log.contains("XOAUTH2 token refused; refreshing it and trying once more."),
        "no refresh before giving up"
    );
    let refused = || rig.dc.log().matches("did not match").count();
    std::thread::sleep(Duration::from_secs(5));
    let seen = (refused(), requests(&rig.emu, "oauth2.tokeninfo"));
    std::thread::sleep(Duration::from_secs(6));
    let later = (refused(), requests(&rig.emu, "oauth2.tokeninfo"));
    assert_eq!(seen, later, "still authenticating after the disconnection");
    // One connection attempt is two AUTHENTICATEs; the pool's breaker and the account's
    // disconnection keep it to a couple of attempts.
    assert!(
        (2..=6).contains(&later.0),
        "{} refused AUTHENTICATEs:\n{}",
        later.0,
        rig.dc.log()
    );
    assert_eq!(d.account("mail")["state"], json!("disconnected"));
    let access = rig.emu.access_tokens();
    assert_no_secrets(&d, &rig, &access);
    d.stop();
}
