//! Tests of loading and validation: defaults, every kind of error naming key and file,
//! environment overrides, and the shipped example file.

use std::time::Duration;

use super::*;

const ORIGIN: &str = "/etc/mailsync/config.toml";

fn home_env() -> Vec<(&'static str, &'static str)> {
    vec![("HOME", "/home/ada")]
}

fn load(toml: &str) -> Result<Config, ConfigError> {
    load_str_with_env(toml, ORIGIN, home_env())
}

fn issues(result: Result<Config, ConfigError>) -> Vec<ConfigIssue> {
    match result {
        Err(ConfigError::Invalid { file, issues }) => {
            assert_eq!(file, PathBuf::from(ORIGIN));
            issues
        }
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

fn has_issue(issues: &[ConfigIssue], key: &str, reason_part: &str) -> bool {
    issues
        .iter()
        .any(|i| i.key == key && i.reason.contains(reason_part))
}

const GMAIL: &str = r#"
[[accounts]]
id = "work"
kind = "gmail"
email = "me@example.com"
client_id = "cid"
client_secret = { env = "GOOGLE_SECRET" }
refresh_token = { file = "secrets/work.token" }
"#;

#[test]
fn config_empty_file_gives_defaults() -> Result<(), ConfigError> {
    let c = load("")?;
    assert_eq!(c.source, PathBuf::from(ORIGIN));
    assert_eq!(c.data_dir, PathBuf::from("/home/ada/.local/share/mailsync"));
    assert_eq!(
        c.socket_path,
        PathBuf::from("/home/ada/.local/share/mailsync/control.sock")
    );
    assert_eq!(c.log_format, LogFormat::Pretty);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.shutdown_grace, Duration::from_secs(10));
    assert_eq!(c.sync.poll_interval, Duration::from_secs(60));
    assert_eq!(c.sync.batch_size, 50);
    assert_eq!(c.sync.initial_query, None);
    assert_eq!(c.quota.profile, QuotaProfile::Y2026);
    assert_eq!(c.quota.units_per_user_per_minute, 6_000);
    assert_eq!(c.quota.messages_get_cost, 20);
    assert_eq!(c.quota.project_units_per_minute, 1_200_000);
    assert_eq!(c.quota.max_in_flight, 10);
    assert_eq!(c.quota.pacing, 0.97);
    assert_eq!(c.quota.scale, 1.0);
    assert_eq!(c.retry.base, Duration::from_millis(1000));
    assert_eq!(c.retry.cap, Duration::from_millis(30_000));
    assert_eq!(c.retry.max_attempts, 8);
    assert_eq!(c.restart.max_restarts, 5);
    assert_eq!(c.restart.window, Duration::from_secs(300));
    assert!(c.accounts.is_empty());
    assert!(c.webhooks.is_empty());
    assert_eq!(c.maildir, None);
    assert_eq!(c.feed.retention, Duration::from_secs(7 * 86_400));
    Ok(())
}

#[test]
fn config_xdg_dirs_are_used_for_defaults() -> Result<(), ConfigError> {
    let c = load_str_with_env(
        "",
        ORIGIN,
        [
            ("HOME", "/home/ada"),
            ("XDG_DATA_HOME", "/data"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ],
    )?;
    assert_eq!(c.data_dir, PathBuf::from("/data/mailsync"));
    assert_eq!(
        c.socket_path,
        PathBuf::from("/run/user/1000/mailsync/control.sock")
    );
    let c = load_str_with_env("", ORIGIN, Vec::<(String, String)>::new())?;
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/mailsync"));
    Ok(())
}

#[test]
fn config_gmail_account_gets_defaults_and_resolved_paths() -> Result<(), ConfigError> {
    let c = load(GMAIL)?;
    let a = c
        .account("work")
        .ok_or_else(|| ConfigError::NotFound { searched: vec![] })?;
    assert_eq!(a.kind, AccountKind::Gmail);
    assert!(a.enabled);
    assert_eq!(a.poll_interval, Duration::from_secs(60));
    let AccountSettings::Gmail(g) = &a.settings else {
        panic!("expected gmail settings, got {:?}", a.settings);
    };
    assert_eq!(g.api_base, "https://gmail.googleapis.com");
    assert_eq!(g.auth.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(
        g.auth.auth_url,
        "https://accounts.google.com/o/oauth2/v2/auth"
    );
    assert_eq!(
        g.auth.client_secret,
        CredentialRef::Env("GOOGLE_SECRET".into())
    );
    // Relative credential files are anchored at the config file's directory.
    assert_eq!(
        g.auth.refresh_token,
        CredentialRef::File("/etc/mailsync/secrets/work.token".into())
    );
    Ok(())
}

#[test]
fn config_account_overrides_apply() -> Result<(), ConfigError> {
    let toml = format!(
        "[quota]\nscale = 0.5\n{GMAIL}poll_interval_secs = 5\ninitial_query = \"in:inbox\"\nquota_profile = \"legacy\"\napi_base = \"http://127.0.0.1:9000/\"\n"
    );
    let c = load(&toml)?;
    let a = &c.accounts[0];
    assert_eq!(a.poll_interval, Duration::from_secs(5));
    assert_eq!(a.initial_query.as_deref(), Some("in:inbox"));
    assert_eq!(a.quota.profile, QuotaProfile::Legacy);
    assert_eq!(a.quota.units_per_user_per_minute, 15_000);
    assert_eq!(a.quota.messages_get_cost, 5);
    assert_eq!(a.quota.scale, 0.5);
    assert_eq!(c.quota.profile, QuotaProfile::Y2026);
    let AccountSettings::Gmail(g) = &a.settings else {
        panic!("expected gmail settings");
    };
    assert_eq!(g.api_base, "http://127.0.0.1:9000");
    Ok(())
}

#[test]
fn config_bad_values_are_all_reported_with_key_and_file() {
    let toml = r#"
log_format = "xml"
log_level = "info,[[["
shutdown_grace_secs = -1
[sync]
batch_size = 101
poll_interval_secs = 0
[quota]
profile = "2027"
pacing = 1.5
scale = 0.0
[retry]
base_ms = 5000
cap_ms = 10
[feed]
retention_days = 0
"#;
    let issues = issues(load(toml));
    for (key, reason) in [
        ("log_format", "pretty"),
        ("log_level", "filter"),
        ("shutdown_grace_secs", "between 0 and 3600"),
        ("sync.batch_size", "between 1 and 100"),
        ("sync.poll_interval_secs", "between"),
        ("quota.profile", "2026"),
        ("quota.pacing", "(0, 1]"),
        ("quota.scale", "positive"),
        ("retry.cap_ms", "retry.base_ms"),
        ("feed.retention_days", "between"),
    ] {
        assert!(has_issue(&issues, key, reason), "{key}: {issues:?}");
    }
    let err = ConfigError::Invalid {
        file: ORIGIN.into(),
        issues,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(ORIGIN) && msg.contains("sync.batch_size"),
        "{msg}"
    );
}

#[test]
fn config_duplicate_ids_are_rejected() {
    let toml = format!("{GMAIL}{GMAIL}");
    let issues = issues(load(&toml));
    assert!(
        has_issue(&issues, "accounts[1].id", "duplicate account id \"work\""),
        "{issues:?}"
    );
}

#[test]
fn config_bad_kind_and_bad_id_are_rejected() {
    let toml = "[[accounts]]\nid = \"has space\"\nkind = \"exchange\"\n";
    let issues = issues(load(toml));
    assert!(
        has_issue(&issues, "accounts[0].kind", "exchange"),
        "{issues:?}"
    );
    assert!(
        has_issue(&issues, "accounts[0].id", "letters"),
        "{issues:?}"
    );
    let issues = super::tests::issues(load("[[accounts]]\nkind = \"test\"\n"));
    assert!(
        has_issue(&issues, "accounts[0].id", "required"),
        "{issues:?}"
    );
}

#[test]
fn config_unknown_key_is_named_with_its_path() {
    let issues = issues(load("colour = \"blue\"\n"));
    assert!(has_issue(&issues, "colour", "unknown field"), "{issues:?}");
    let issues = super::tests::issues(load("[sync]\nbach_size = 10\n"));
    assert!(
        has_issue(&issues, "sync.bach_size", "unknown field"),
        "{issues:?}"
    );
    let toml = format!("{GMAIL}pasword = 1\n");
    let issues = super::tests::issues(load(&toml));
    assert!(
        has_issue(&issues, "accounts[0].pasword", "unknown field"),
        "{issues:?}"
    );
}

#[test]
fn config_wrong_type_names_the_key() {
    let issues = issues(load("[sync]\nbatch_size = \"lots\"\n"));
    assert!(
        issues.iter().any(|i| i.key == "sync.batch_size"),
        "{issues:?}"
    );
}

#[test]
fn config_invalid_toml_is_a_parse_error() {
    match load("data_dir = \n") {
        Err(ConfigError::Parse { file, .. }) => assert_eq!(file, PathBuf::from(ORIGIN)),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn config_credential_refs_need_exactly_one_source() {
    let toml = r#"
[[accounts]]
id = "work"
kind = "gmail"
email = "me@example.com"
client_id = "cid"
client_secret = { env = "A", file = "/x" }
refresh_token = {}
"#;
    let issues = issues(load(toml));
    assert!(
        has_issue(&issues, "accounts[0].client_secret", "exactly one"),
        "{issues:?}"
    );
    assert!(
        has_issue(&issues, "accounts[0].refresh_token", "exactly one"),
        "{issues:?}"
    );
    let toml = "[[accounts]]\nid = \"w\"\nkind = \"gmail\"\nemail = \"nope\"\n";
    let issues = super::tests::issues(load(toml));
    for key in ["client_id", "client_secret", "refresh_token"] {
        assert!(
            has_issue(&issues, &format!("accounts[0].{key}"), "required"),
            "{issues:?}"
        );
    }
    assert!(
        has_issue(&issues, "accounts[0].email", "not an email"),
        "{issues:?}"
    );
}

#[test]
fn config_inline_secret_is_accepted_with_a_warning_and_hidden() -> Result<(), ConfigError> {
    let toml = GMAIL.replace("{ env = \"GOOGLE_SECRET\" }", "{ value = \"hunter2\" }");
    let c = load(&toml)?;
    assert!(
        c.warnings
            .iter()
            .any(|w| w.key == "accounts[0].client_secret.value")
    );
    assert!(!format!("{c:?}").contains("hunter2"));
    Ok(())
}

#[test]
fn config_keys_of_another_kind_are_rejected() {
    let toml = "[[accounts]]\nid = \"t\"\nkind = \"test\"\nhost = \"imap.example.com\"\n";
    let issues = issues(load(toml));
    assert!(
        has_issue(
            &issues,
            "accounts[0].host",
            "not a setting of kind \"test\""
        ),
        "{issues:?}"
    );
}

#[test]
fn config_test_account_settings_parse() -> Result<(), ConfigError> {
    let toml = r#"
[[accounts]]
id = "t1"
kind = "test"
[accounts.test]
messages = 5
fail_child = "ingest"
fail_times = 2
completions_file = "done.txt"
job_delay_ms = 3
"#;
    let c = load(toml)?;
    assert_eq!(
        c.accounts[0].settings,
        AccountSettings::Test(TestSettings {
            messages: 5,
            fail_child: Some(TestChild::Ingest),
            fail_times: 2,
            completions_file: Some("/etc/mailsync/done.txt".into()),
            job_delay: Duration::from_millis(3),
        })
    );
    let issues = issues(load(
        "[[accounts]]\nid = \"t\"\nkind = \"test\"\n[accounts.test]\nfail_child = \"sync\"\n",
    ));
    assert!(
        has_issue(&issues, "accounts[0].test.fail_child", "ingest"),
        "{issues:?}"
    );
    Ok(())
}

#[test]
fn config_imap_and_webhook_validation() {
    let toml = r#"
[[accounts]]
id = "box"
kind = "imap"
port = 70000
tls = "maybe"
[[webhooks]]
name = "hook"
url = "ftp://x"
accounts = ["box", "ghost"]
"#;
    let issues = issues(load(toml));
    for (key, reason) in [
        ("accounts[0].host", "required"),
        ("accounts[0].username", "required"),
        ("accounts[0].password", "required"),
        ("accounts[0].port", "65535"),
        ("accounts[0].tls", "starttls"),
        ("webhooks[0].url", "http"),
        ("webhooks[0].accounts[1]", "ghost"),
    ] {
        assert!(has_issue(&issues, key, reason), "{key}: {issues:?}");
    }
}

#[test]
fn config_imap_xoauth2_takes_a_google_credential_and_shares_its_token_source() {
    let toml = r#"
[[accounts]]
id = "work"
kind = "gmail"
email = "me@example.com"
client_id = "cid"
client_secret = { value = "s3cret" }
refresh_token = { value = "r1" }

[[accounts]]
id = "work-imap"
kind = "imap"
host = "imap.example.com"
username = "me@example.com"
client_id = "cid"
client_secret = { value = "s3cret" }
refresh_token = { value = "r1" }
[accounts.imap]
auth = "xoauth2"
"#;
    let c = load(toml).expect("valid");
    let AccountSettings::Imap(m) = &c.accounts[1].settings else {
        panic!("not imap: {:?}", c.accounts[1]);
    };
    assert_eq!(m.auth, ImapAuth::XOAuth2);
    let ImapCredential::OAuth(auth) = &m.credential else {
        panic!("no OAuth credential: {:?}", m.credential);
    };
    assert_eq!(auth.client_id, "cid");
    assert_eq!(auth.token_url, "https://oauth2.googleapis.com/token");
    let builder = crate::gmail_port::RestGmailBuilder::default();
    let gmail = crate::accounts::GmailPortBuilder::token_source(&builder, &c.accounts[0]);
    let imap = crate::accounts::GmailPortBuilder::token_source(&builder, &c.accounts[1]);
    assert!(
        std::sync::Arc::ptr_eq(&gmail.expect("gmail"), &imap.expect("imap")),
        "one refresh serves the Gmail account and its IMAP twin"
    );
}

#[test]
fn config_imap_credentials_are_checked_without_showing_them() {
    let base = "[[accounts]]\nid = \"b\"\nkind = \"imap\"\nhost = \"h\"\nusername = \"u\"\n";
    // An OAuth credential without xoauth2.
    let i = issues(load(&format!(
        "{base}client_id = \"c\"\nclient_secret = {{ value = \"topsecret\" }}\nrefresh_token = {{ value = \"r\" }}\npassword = {{ value = \"pw\" }}\n"
    )));
    assert!(has_issue(&i, "accounts[0].client_id", "xoauth2"), "{i:?}");
    // xoauth2 with neither a credential nor a fixed token.
    let i = issues(load(&format!(
        "{base}[accounts.imap]\nauth = \"xoauth2\"\n"
    )));
    assert!(
        has_issue(&i, "accounts[0].client_id", "refresh_token"),
        "{i:?}"
    );
    // Both.
    let i = issues(load(&format!(
        "{base}password = {{ value = \"tok\" }}\nclient_id = \"c\"\nclient_secret = {{ value = \"topsecret\" }}\nrefresh_token = {{ value = \"r\" }}\n[accounts.imap]\nauth = \"xoauth2\"\n"
    )));
    assert!(has_issue(&i, "accounts[0].password", "not both"), "{i:?}");
    // A half credential names the missing key once.
    let i = issues(load(&format!(
        "{base}client_id = \"c\"\n[accounts.imap]\nauth = \"xoauth2\"\n"
    )));
    assert!(
        has_issue(&i, "accounts[0].client_secret", "required"),
        "{i:?}"
    );
    assert!(
        !has_issue(&i, "accounts[0].client_id", "xoauth2 needs"),
        "{i:?}"
    );
    for issue in &i {
        assert!(!issue.reason.contains("topsecret"), "{issue:?}");
    }
    // A fixed token in password still works.
    let c = load(&format!(
        "{base}password = {{ value = \"tok\" }}\n[accounts.imap]\nauth = \"xoauth2\"\n"
    ))
    .expect("valid");
    let AccountSettings::Imap(m) = &c.accounts[0].settings else {
        panic!("not imap");
    };
    assert!(matches!(m.credential, ImapCredential::Password(_)));
}

#[test]
fn config_env_overrides_file_values() -> Result<(), ConfigError> {
    let c = load_str_with_env(
        "data_dir = \"/from/file\"\n[sync]\nbatch_size = 10\n",
        ORIGIN,
        [
            ("HOME", "/home/ada"),
            ("MAILSYNC_DATA_DIR", "/from/env"),
            ("MAILSYNC_LOG_FORMAT", "json"),
            ("MAILSYNC_SYNC__BATCH_SIZE", "25"),
            ("MAILSYNC_QUOTA__SCALE", "0.25"),
            ("MAILSYNC_SYNC__INITIAL_QUERY", "1234"),
            // Not config keys: ignored rather than reported as unknown.
            ("MAILSYNC_CONFIG", "/somewhere.toml"),
            ("MAILSYNC_WEBHOOK_SECRET", "s"),
        ],
    )?;
    assert_eq!(c.data_dir, PathBuf::from("/from/env"));
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.sync.batch_size, 25);
    assert_eq!(c.quota.scale, 0.25);
    assert_eq!(c.sync.initial_query.as_deref(), Some("1234"));
    Ok(())
}

#[test]
fn config_bad_env_override_names_key_and_source() {
    let result = load_str_with_env(
        "",
        ORIGIN,
        [("HOME", "/h"), ("MAILSYNC_SYNC__BATCH_SIZE", "many")],
    );
    let issues = issues(result);
    assert!(
        issues
            .iter()
            .any(|i| i.key == "sync.batch_size" && i.reason.contains("environment")),
        "{issues:?}"
    );
}

#[test]
fn config_reload_detects_changed_accounts() -> Result<(), ConfigError> {
    let a = load(GMAIL)?;
    let b = load(&format!("{GMAIL}poll_interval_secs = 30\n"))?;
    assert_ne!(a.accounts[0], b.accounts[0]);
    assert_eq!(a.accounts[0], load(GMAIL)?.accounts[0]);
    Ok(())
}

#[test]
fn config_example_file_parses() -> Result<(), ConfigError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mailsync.example.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let c = load_str_with_env(&text, &path.to_string_lossy(), home_env())?;
    assert_eq!(c.accounts.len(), 4);
    assert_eq!(
        c.accounts.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [
            AccountKind::Gmail,
            AccountKind::Calendar,
            AccountKind::Imap,
            AccountKind::Test
        ]
    );
    assert_eq!(c.webhooks.len(), 1);
    assert!(c.maildir.is_some());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    Ok(())
}

#[test]
fn config_locate_follows_the_search_order() -> Result<(), ConfigError> {
    let env: raw::Env = [
        ("HOME".to_string(), "/home/ada".to_string()),
        ("MAILSYNC_CONFIG".to_string(), "/from/env.toml".to_string()),
    ]
    .into_iter()
    .collect();
    let explicit = Path::new("/cli.toml");
    assert_eq!(locate_in(Some(explicit), &env, |_| false)?, explicit);
    assert_eq!(
        locate_in(None, &env, |_| false)?,
        PathBuf::from("/from/env.toml")
    );
    let mut env = env;
    env.remove("MAILSYNC_CONFIG");
    let user = PathBuf::from("/home/ada/.config/mailsync/config.toml");
    assert_eq!(locate_in(None, &env, |p| p == user)?, user);
    let system = PathBuf::from("/etc/mailsync/config.toml");
    assert_eq!(locate_in(None, &env, |p| p == system)?, system);
    match locate_in(None, &env, |_| false) {
        Err(ConfigError::NotFound { searched }) => assert_eq!(searched, [user, system]),
        other => panic!("expected NotFound, got {other:?}"),
    }
    Ok(())
}

#[test]
fn config_load_reads_the_file_and_names_a_missing_one() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "log_level = \"debug\"\n")?;
    assert_eq!(super::load(&path)?.log_level, "debug");
    let missing = dir.path().join("missing.toml");
    let msg = super::load(&missing)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("missing.toml"), "{msg}");
    Ok(())
}

#[test]
fn config_calendar_accounts_and_gmail_with_calendar() -> Result<(), ConfigError> {
    let c = load(&format!(
        "{GMAIL}calendar = true\ncalendar_ids = [\"primary\"]\ncalendar_requests_per_minute = 120\n\n\
         [[accounts]]\nid = \"cal\"\nkind = \"calendar\"\nclient_id = \"cid\"\n\
         client_secret = {{ env = \"S\" }}\nrefresh_token = {{ env = \"R\" }}\n"
    ))?;
    let ids: Vec<&str> = c.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["work", "work-calendar", "cal"]);
    let AccountSettings::Calendar(twin) = &c.accounts[1].settings else {
        panic!("twin is a calendar account")
    };
    assert_eq!(
        twin.calendar_ids.as_deref(),
        Some(&["primary".to_string()][..])
    );
    assert_eq!(twin.requests_per_minute, 120);
    assert_eq!(twin.api_base, "https://www.googleapis.com");
    let AccountSettings::Gmail(g) = &c.accounts[0].settings else {
        panic!("gmail")
    };
    assert_eq!(twin.auth, g.auth, "one OAuth credential");
    let AccountSettings::Calendar(cal) = &c.accounts[2].settings else {
        panic!("calendar")
    };
    assert_eq!(cal.calendar_ids, None, "default: every calendar");
    assert_eq!(
        (cal.requests_per_minute, cal.max_in_flight, cal.page_size),
        (60, 5, 2500)
    );
    let bad = issues(load(&format!("{GMAIL}calendar_page_size = 10\n")));
    assert!(
        has_issue(&bad, "accounts[0].calendar_page_size", ""),
        "{bad:?}"
    );
    Ok(())
}

#[test]
fn store_floor_defaults_and_bounds() {
    let cfg = load("").expect("empty config");
    assert_eq!(
        cfg.store,
        StoreConfig {
            min_free_mb: 500,
            min_free_percent: 1,
            open_timeout: Duration::from_secs(120),
            cache_mb: 8,
        }
    );
    let cfg = load("[store]\ncache_mb = 64\n").expect("cache size");
    assert_eq!(cfg.store.options().cache_capacity_bytes, 64 * 1024 * 1024);
    assert!(!issues(load("[store]\ncache_mb = 1\n")).is_empty());
    let floor = cfg.store.options().floor;
    assert_eq!(floor.min_free_bytes, 500 * 1024 * 1024);
    let cfg = load("[store]\nmin_free_mb = 0\nmin_free_percent = 0\n").expect("floor off");
    assert_eq!(
        cfg.store.options().floor,
        mailsync_actors::disk_space::FreeSpaceFloor::NONE
    );
    let found = issues(load("[store]\nmin_free_percent = 60\nmin_free_mb = -1\n"));
    assert!(has_issue(&found, "store.min_free_percent", ""), "{found:?}");
    assert!(has_issue(&found, "store.min_free_mb", ""), "{found:?}");
}
