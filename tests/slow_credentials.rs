//! The control socket is bound and answering before slow credential commands run: a Gmail
//! account whose `refresh_token` command blocks on a fifo shows `starting` in `ctl status`
//! while the command is still running, and syncs once the test feeds the fifo. The order is
//! proven by the fifo (the token exists only after `status` answered), not by timing.

use crate::common::emulator::*;
use crate::common::*;
use serde_json::json;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_socket_answers_while_a_credential_command_blocks_and_the_account_shows_starting() {
    let emu = Emu::start(config(41, 20, quota_scale(20, 2)));
    let env = TestEnv::new();
    let fifo = env.path("token.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let token = emu
        .handle()
        .refresh_token(&emu.email)
        .expect("refresh token");
    let block = emu.account_block(&env);
    let file_line = block
        .lines()
        .find(|l| l.starts_with("refresh_token"))
        .expect("refresh_token line")
        .to_string();
    let block = block.replace(
        &file_line,
        &format!(
            "refresh_token = {{ command = [\"sh\", \"-c\", \"cat '{}'\"] }}",
            fifo.display()
        ),
    );
    env.write_config(&block);
    let d = env.start();

    // The command is blocked in `cat` until we open the fifo: status answers meanwhile.
    let a = d.account(ACCOUNT);
    assert_eq!(a["state"], json!("starting"), "{a}");
    let status = d.status();
    assert_eq!(
        status["accounts"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    let reload = d.request(json!({"v":1,"cmd":"reload"}));
    assert_eq!(
        reload["ok"],
        json!(false),
        "a reload waits for the start: {reload}"
    );

    // Now the credential resolves.
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("open fifo for writing");
    w.write_all(token.as_bytes()).expect("write token");
    drop(w);
    assert!(
        wait_until(Duration::from_secs(60), || d.account(ACCOUNT)["phase"]
            == json!("caught_up")),
        "never synced: {}\n{}",
        d.account(ACCOUNT),
        d.log_text()
    );
    assert!(
        !d.log_text().contains(token.trim()),
        "the log holds the token"
    );
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);
}
