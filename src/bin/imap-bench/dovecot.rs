//! The bench's Dovecot: its users' INBOXes seeded with Maildir files, `mail_fsync = always`,
//! run in the foreground as our child and stopped by its pid.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user of the single-account runs.
pub const USER: &str = "bench";
/// Every user's password.
pub const PASS: &str = "bench-pw";

pub struct Dovecot {
    pub port: u16,
    conf: PathBuf,
    child: Child,
}

fn chown_nobody(path: &Path) {
    let _ = Command::new("chown")
        .arg("-R")
        .arg("65534:65534")
        .arg(path)
        .status();
}

/// Writes `n` messages (CRLF, 10 % with a 2–30 KB body, 2/3 seen) into `dir/cur`.
fn seed(dir: &Path, n: u64) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("maildir");
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = (x >> 33) as usize;
        let body_len = if r.is_multiple_of(10) {
            2_000 + r % 28_000
        } else {
            300 + r % 3_000
        };
        let mut raw = format!(
            "From: Sender {i} <s{i}@example.org>\r\nTo: bench@example.org\r\nSubject: bench message {i}\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <bench.{i}@example.org>\r\n\r\n"
        )
        .into_bytes();
        while raw.len() < body_len {
            raw.extend_from_slice(format!("body line of message {i}\r\n").as_bytes());
        }
        let flags = if !r.is_multiple_of(3) { "S" } else { "" };
        let name = format!("{}.M{i}.bench,S={}:2,{flags}", 1_700_000_000 + i, raw.len());
        std::fs::write(dir.join("cur").join(name), &raw).expect("seed");
    }
}

impl Dovecot {
    /// Starts Dovecot with `users` (name, messages in INBOX), all with [`PASS`].
    pub fn start(work: &Path, users: &[(String, u64)]) -> Dovecot {
        let dir = work.join("dovecot");
        std::fs::create_dir_all(&dir).expect("dir");
        let _ = std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755));
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
        let mail: PathBuf = dir.join("mail");
        let mut lines = String::new();
        for (user, n) in users {
            seed(&mail.join(user), *n);
            lines.push_str(&format!("{user}:{{PLAIN}}{PASS}\n"));
        }
        chown_nobody(&mail);
        std::fs::write(dir.join("users"), lines).expect("users");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let d = dir.display();
        let conf = dir.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                r#"base_dir = {d}/run
state_dir = {d}/state
instance_name = imap-bench-{port}
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
mail_fsync = always
default_process_limit = 1000
default_client_limit = 5000
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  process_limit = 1000
}}
protocol imap {{
  mail_max_userip_connections = 20
}}
"#
            ),
        )
        .expect("conf");
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "dovecot did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let dc = Dovecot { port, conf, child };
        for (user, _) in users {
            dc.warm(user);
        }
        dc
    }

    /// Builds Dovecot's index of `user`'s INBOX (and the cache fields both clients ask for)
    /// before anything is timed, so neither tool pays for the server's first scan of the files.
    fn warm(&self, user: &str) {
        let _ = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args([
                "fetch",
                "-u",
                user,
                "uid flags size.virtual date.received",
                "mailbox",
                "INBOX",
                "all",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
