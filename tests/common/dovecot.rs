//! A real Dovecot (Debian's `dovecot-imapd`) for IMAP tests: its own config, mail root, users
//! and loopback port per instance, run in the foreground as our child and stopped by its own
//! pid (never by group or name). Mailboxes are seeded by writing Maildir files directly;
//! `ImapView` reads a folder over a second IMAP connection (the oracle) and changes it.
//! [`Dovecot::start_oauth2`] adds Dovecot's `oauth2` passdb for XOAUTH2 / OAUTHBEARER, asking a
//! tokeninfo endpoint (the emulator's) about every bearer token; passwords keep working for
//! LOGIN / PLAIN, so the oracle logs in as before.

#![allow(dead_code)]

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which RFC 7162 extensions the server advertises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caps {
    /// Dovecot's own list (CONDSTORE and QRESYNC).
    Full,
    /// CONDSTORE without QRESYNC.
    CondstoreOnly,
    /// Neither.
    Neither,
}

const BASE_CAPS: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY \
THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT \
CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN \
CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE \
SAVEDATE LITERAL+ NOTIFY SPECIAL-USE";

/// One Dovecot instance.
pub struct Dovecot {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The implicit-TLS port, when started with TLS (`tls_port != 0`).
    pub tls_port: u16,
    pub mail: PathBuf,
    pub conf: PathBuf,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Dovecot {
    /// Writes the config for `users` (name, password) and starts Dovecot.
    pub fn start(caps: Caps, users: &[(String, String)]) -> Dovecot {
        Dovecot::start_with(caps, users, 50)
    }

    /// Same, with at most `max_conns` connections per user and client address.
    pub fn start_with(caps: Caps, users: &[(String, String)], max_conns: u32) -> Dovecot {
        Dovecot::start_inner(caps, users, max_conns, false, None)
    }

    /// With the `oauth2` passdb for XOAUTH2 and OAUTHBEARER: every token is checked at
    /// `tokeninfo_url` (token appended, e.g. `http://127.0.0.1:PORT/oauth2/v3/tokeninfo?access_token=`),
    /// whose `email` must be the user. No auth cache (Dovecot's default), so every
    /// AUTHENTICATE asks the endpoint; `auth_verbose` logs each refusal with its reason.
    pub fn start_oauth2(users: &[(String, String)], tokeninfo_url: &str) -> Dovecot {
        Dovecot::start_inner(Caps::Full, users, 50, false, Some(tokeninfo_url))
    }

    /// With TLS: a test CA (`ca.pem` in the instance dir) signs a certificate for
    /// `localhost` / 127.0.0.1; implicit TLS on `tls_port`, STARTTLS on `port`.
    pub fn start_tls(users: &[(String, String)]) -> Dovecot {
        Dovecot::start_inner(Caps::Full, users, 50, true, None)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_inner(
        caps: Caps,
        users: &[(String, String)],
        max_conns: u32,
        tls: bool,
        tokeninfo_url: Option<&str>,
    ) -> Dovecot {
        let dir = tempfile::Builder::new()
            .prefix("dc")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let mail = dir.path().join("mail");
        std::fs::create_dir_all(&mail).expect("mail root");
        chown_nobody(&mail);
        let users_file = dir.path().join("users");
        let lines: String = users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        std::fs::write(&users_file, lines).expect("users");
        let port = free_port();
        let tls_port = if tls { free_port() } else { 0 };
        let ssl = if tls {
            super::certs::make_certs(dir.path());
            format!(
                "ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n",
                d = dir.path().display()
            )
        } else {
            "ssl = no\n".to_string()
        };
        let capability = match caps {
            Caps::Full => String::new(),
            Caps::CondstoreOnly => format!("  imap_capability = {BASE_CAPS} CONDSTORE\n"),
            Caps::Neither => format!("  imap_capability = {BASE_CAPS}\n"),
        };
        let d = dir.path().display();
        let (mechanisms, password_mechs, oauth2_passdb) = match tokeninfo_url {
            None => ("plain login", String::new(), String::new()),
            Some(url) => {
                let ext = dir.path().join("dovecot-oauth2.conf.ext");
                std::fs::write(
                    &ext,
                    format!("tokeninfo_url = {url}\nusername_attribute = email\n"),
                )
                .expect("oauth2 conf");
                (
                    "plain login xoauth2 oauthbearer",
                    "  mechanisms = plain login\n".to_string(),
                    format!(
                        "auth_verbose = yes\npassdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
                        ext.display()
                    ),
                )
            }
        };
        let conf_text = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = mailsync-test-{port}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:{m}/%u
mail_fsync = always
default_process_limit = 1000
default_client_limit = 5000
passdb {{
  driver = passwd-file
{password_mechs}  args = scheme=PLAIN username_format=%u {d}/users
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid=65534 gid=65534 home={m}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service imap {{
  process_limit = 1000
}}
protocol imap {{
  mail_max_userip_connections = {max_conns}
{capability}}}
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Sent {{
    special_use = \Sent
  }}
  mailbox Trash {{
    special_use = \Trash
    auto = create
  }}
}}
"#,
            m = mail.display(),
        );
        let conf = dir.path().join("dovecot.conf");
        std::fs::write(&conf, conf_text).expect("conf");
        let mut dc = Dovecot {
            dir,
            port,
            tls_port,
            mail,
            conf,
            child: None,
        };
        dc.launch();
        dc
    }

    /// Starts the master in the foreground and waits for the greeting.
    pub fn launch(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let child = Command::new("dovecot")
                .arg("-F")
                .arg("-c")
                .arg(&self.conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn dovecot (is dovecot-imapd installed?)");
            self.child = Some(child);
            let up = super::wait_until(Duration::from_secs(5), || self.greets());
            if up {
                return;
            }
            self.kill();
            assert!(
                Instant::now() < deadline,
                "dovecot did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn greets(&self) -> bool {
        use std::io::Read;
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(n) if n > 4 && buf.starts_with(b"* OK"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// SIGKILL to the master (by its pid), then waits until the port is free.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        super::wait_until(Duration::from_secs(10), || {
            std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok()
        });
    }

    /// The whole server dies at once: SIGKILL to the master and to each of its descendants,
    /// each by its own pid (read from /proc before the kill; sessions would outlive the master
    /// otherwise), then waits until the port is free.
    pub fn crash(&mut self) {
        let Some(master) = self.child.as_ref().map(Child::id) else {
            return;
        };
        let mut pids = Vec::new();
        let mut todo = vec![master];
        while let Some(p) = todo.pop() {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let children =
                    std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                for c in children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok())
                {
                    pids.push(c);
                    todo.push(c);
                }
            }
        }
        self.kill();
        for pid in pids {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }

    /// SIGTERM to the master (by its pid) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The Maildir of `user`'s `folder` (INBOX = the user's root).
    pub fn folder_dir(&self, user: &str, folder: &str) -> PathBuf {
        let root = self.mail.join(user);
        if folder == "INBOX" {
            root
        } else {
            root.join(format!(".{}", folder.replace('/', ".")))
        }
    }

    /// Writes messages straight into `user`'s `folder` (Maildir files in `cur/`).
    pub fn seed(&self, user: &str, folder: &str, messages: &[SeedMessage]) {
        let dir = self.folder_dir(user, folder);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("maildir");
        }
        for (i, m) in messages.iter().enumerate() {
            let name = format!(
                "{}.M{i}P{}.seed,S={}:2,{}",
                1_700_000_000 + i,
                std::process::id(),
                m.raw.len(),
                m.maildir_flags
            );
            std::fs::write(dir.join("cur").join(name), &m.raw).expect("seed");
        }
        chown_nobody(&self.mail.join(user));
    }

    /// Port config for a mailsync account on this server.
    pub fn account_toml(&self, id: &str, user: &str, pass: &str, extra: &str) -> String {
        self.account_toml_with(id, user, pass, "", extra)
    }

    /// Same, with `top` lines in the account table and `extra` in `[accounts.imap]`.
    pub fn account_toml_with(
        &self,
        id: &str,
        user: &str,
        pass: &str,
        top: &str,
        extra: &str,
    ) -> String {
        format!(
            r#"[[accounts]]
id = "{id}"
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "{user}"
password = {{ value = "{pass}" }}
{top}

[accounts.imap]
allow_plaintext = true
{extra}
"#,
            port = self.port
        )
    }

    /// An account on this server with `auth = "xoauth2"` and a Google OAuth credential:
    /// `oauth` holds its `client_id`, `client_secret`, `refresh_token` and `token_url` lines;
    /// `extra` goes into `[accounts.imap]`.
    pub fn account_toml_xoauth2(&self, id: &str, user: &str, oauth: &str, extra: &str) -> String {
        format!(
            r#"[[accounts]]
id = "{id}"
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "{user}"
{oauth}

[accounts.imap]
allow_plaintext = true
auth = "xoauth2"
{extra}
"#,
            port = self.port
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.kill();
    }
}

fn chown_nobody(path: &Path) {
    let st = Command::new("chown")
        .arg("-R")
        .arg("65534:65534")
        .arg(path)
        .status()
        .expect("chown");
    assert!(st.success());
}

/// One seeded message.
#[derive(Clone, Debug)]
pub struct SeedMessage {
    pub raw: Vec<u8>,
    pub maildir_flags: String,
}

/// `n` deterministic messages (CRLF, some with an attachment-sized body), flags varied.
pub fn generate(n: usize, seed: u64, tag: &str) -> Vec<SeedMessage> {
    let mut out = Vec::with_capacity(n);
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for i in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (x >> 33) as usize;
        let body_len = if r.is_multiple_of(10) {
            2_000 + r % 28_000
        } else {
            200 + r % 3_000
        };
        let mut raw = format!(
            "From: Sender {i} <s{i}@example.org>\r\nTo: rcpt@example.org\r\nSubject: {tag} message {i}\r\nDate: Tue, 1 Dec 2026 10:{:02}:{:02} +0000\r\nMessage-ID: <{tag}.{i}.{seed}@example.org>\r\n\r\n",
            (i / 60) % 60,
            i % 60
        )
        .into_bytes();
        let line = format!("line of message {i} in {tag} ");
        while raw.len() < body_len {
            raw.extend_from_slice(line.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        let mut flags = String::new();
        if r.is_multiple_of(7) {
            flags.push('F');
        }
        if r.is_multiple_of(5) {
            flags.push('R');
        }
        if !r.is_multiple_of(3) {
            flags.push('S');
        }
        out.push(SeedMessage {
            raw,
            maildir_flags: flags,
        });
    }
    out
}

/// What the server holds in a folder: uid → (sorted flags, sha256 hex of BODY[]).
pub type FolderView = BTreeMap<u32, (Vec<String>, String)>;

pub fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn norm(flags: Vec<String>) -> Vec<String> {
    let mut f: Vec<String> = flags.into_iter().filter(|f| f != "\\Recent").collect();
    f.sort();
    f.dedup();
    f
}

fn flag_string(f: &async_imap::types::Flag<'_>) -> String {
    use async_imap::types::Flag;
    match f {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(c) => c.to_string(),
    }
}

/// A second IMAP client (async-imap on its own runtime): the oracle and the hand that changes
/// the server.
pub struct ImapView {
    rt: tokio::runtime::Runtime,
    port: u16,
    user: String,
    pass: String,
}

type Session = async_imap::Session<tokio::net::TcpStream>;

impl ImapView {
    pub fn new(dc: &Dovecot, user: &str, pass: &str) -> ImapView {
        ImapView {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            port: dc.port,
            user: user.into(),
            pass: pass.into(),
        }
    }

    /// Runs `f` on a fresh logged-in session.
    pub fn with<T>(&self, f: impl AsyncFnOnce(&mut Session) -> T) -> T {
        self.rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .expect("connect");
            let mut client = async_imap::Client::new(tcp);
            client.read_response().await.expect("greeting");
            let mut s = client
                .login(&self.user, &self.pass)
                .await
                .map_err(|(e, _)| e)
                .expect("login");
            let out = f(&mut s).await;
            let _ = s.logout().await;
            out
        })
    }

    /// The folder's messages.
    pub fn folder(&self, folder: &str) -> FolderView {
        self.with(async |s| {
            s.select(folder).await.expect("select");
            let fetches: Vec<_> = s
                .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
                .await
                .expect("fetch")
                .try_collect()
                .await
                .expect("fetch stream");
            let mut out = FolderView::new();
            for f in fetches {
                let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                    continue;
                };
                let flags = norm(f.flags().map(|x| flag_string(&x)).collect());
                out.insert(uid, (flags, sha_hex(body)));
            }
            out
        })
    }

    /// Runs raw commands in `folder` (selected first).
    pub fn run_in(&self, folder: &str, commands: &[String]) {
        self.with(async |s| {
            s.select(folder).await.expect("select");
            for c in commands {
                s.run_command_and_check_ok(c)
                    .await
                    .unwrap_or_else(|e| panic!("{c}: {e}"));
            }
        })
    }

    /// APPENDs a message.
    pub fn append(&self, folder: &str, raw: &[u8]) {
        self.with(async |s| {
            s.append(folder, Some("(\\Seen)"), None, raw)
                .await
                .expect("append");
        })
    }
}
