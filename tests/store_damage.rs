//! A damaged store is a clear error, never a panic: a store whose tail was cut, one with a
//! flipped byte in the middle and one written by a newer schema each make `mailsync daemon`
//! exit with status 3 and a message naming the path, what was found and the commands that
//! help; `mailsync store check` reports each (exit 3) without changing anything; an
//! unfinished snapshot left by a start on a full disk does not poison the store.

use crate::common::emulator::{
    ACCOUNT, Emu, assert_mirror_equals, config, quota_scale, wait_caught_up,
};
use crate::common::*;
use mailsync_actors::store::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, Space, Store, encode};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: usize = 300;

/// Runs `mailsync daemon` expecting it to refuse to start; returns (status, stderr).
fn start_refused(env: &TestEnv) -> (i32, String) {
    let t = Instant::now();
    let out = Command::new(bin())
        .arg("--config")
        .arg(&env.config_path)
        .arg("daemon")
        .stdin(Stdio::null())
        .output()
        .expect("run daemon");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "refusal took {:?}",
        t.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

fn store_check(env: &TestEnv) -> (i32, String) {
    let (code, out, err) = run_cli(&[
        "--config",
        env.config_path.to_str().expect("utf-8"),
        "store",
        "check",
    ]);
    (code, format!("{out}{err}"))
}

fn assert_clear_refusal(env: &TestEnv, what: &str) -> String {
    let (code, stderr) = start_refused(env);
    assert_eq!(code, 3, "{what}: exit status; stderr:\n{stderr}");
    assert!(
        stderr.contains(&env.data_dir.display().to_string()),
        "{what}: names the path:\n{stderr}"
    );
    assert!(
        stderr.contains("mailsync store check") || stderr.contains("mailsync store restore"),
        "{what}: names the commands that help:\n{stderr}"
    );
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(bad), "{what}: no panic output:\n{stderr}");
    }
    stderr
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).expect("copy");
        }
    }
}

#[test]
fn damaged_stores_give_a_clear_error_with_status_3_and_store_check_reports_each() {
    let emu = Emu::start(config(21, MESSAGES, quota_scale(MESSAGES, 3)));
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let d = env.start();
    assert!(
        wait_caught_up(&d, Duration::from_secs(120)),
        "{}",
        d.status()
    );
    d.stop();
    let pristine = env.path("pristine");
    copy_dir(&env.data_dir, &pristine);
    let (code, out) = store_check(&env);
    assert_eq!(code, 0, "a healthy store checks clean:\n{out}");
    let db = env.data_dir.join("db").join("db");
    let restore_pristine = || {
        std::fs::remove_dir_all(&env.data_dir).expect("rm");
        copy_dir(&pristine, &env.data_dir);
    };

    // 1. A lost tail (a torn write, a copy cut short).
    let len = std::fs::metadata(&db).expect("db").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .expect("open")
        .set_len(len - len / 3)
        .expect("truncate");
    let stderr = assert_clear_refusal(&env, "truncated tail");
    assert!(stderr.contains("tail was lost"), "{stderr}");
    let (code, out) = store_check(&env);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("tail was lost"), "{out}");
    // check changed nothing: the same refusal again.
    assert_clear_refusal(&env, "truncated tail, again");

    // 2. One flipped byte in the middle.
    restore_pristine();
    let mut bytes = std::fs::read(&db).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&db, &bytes).expect("write");
    let stderr = assert_clear_refusal(&env, "flipped byte");
    assert!(stderr.contains("damaged"), "{stderr}");
    let (code, out) = store_check(&env);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("changed since the last clean shutdown"),
        "{out}"
    );

    // 3. A store from a newer schema version.
    restore_pristine();
    {
        let store = Store::open(&env.data_dir).expect("open");
        store
            .kv(Space::Meta)
            .insert(SCHEMA_VERSION_KEY, encode(&(SCHEMA_VERSION + 1)))
            .expect("insert");
        store.flush().expect("flush");
    }
    let stderr = assert_clear_refusal_schema(&env);
    assert!(
        stderr.contains("newer than this build supports"),
        "{stderr}"
    );
    let (code, out) = store_check(&env);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("newer than this build supports"), "{out}");

    // 4. An unfinished snapshot (a start that ran out of space) does not poison the store.
    restore_pristine();
    let _ = std::fs::remove_file(env.data_dir.join("store.seal"));
    std::fs::write(
        env.data_dir
            .join("db")
            .join("snap.FFFFFFFFFFFFFFFF.generating"),
        b"",
    )
    .expect("snap");
    let d = env.start();
    assert_eq!(d.account(ACCOUNT)["state"], serde_json::json!("running"));
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
}

/// A newer schema is refused with status 3 and the advice to run the newer build or restore.
fn assert_clear_refusal_schema(env: &TestEnv) -> String {
    let (code, stderr) = start_refused(env);
    assert_eq!(code, 3, "newer schema: exit status; stderr:\n{stderr}");
    assert!(
        stderr.contains(&env.data_dir.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("mailsync store restore"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}
