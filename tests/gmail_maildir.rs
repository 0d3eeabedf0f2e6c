//! A synced Gmail account's Maildir against the emulator's truth: one file per message, flags
//! from labels, and `notmuch new` (Debian's notmuch) counts exactly the messages the emulator
//! holds.

use crate::common::emulator::{
    ACCOUNT, Emu, assert_mirror_equals, config, quota_scale, wait_caught_up,
};
use crate::common::*;
use std::time::Duration;

const MESSAGES: usize = 400;

fn cur_files(root: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(root.join(ACCOUNT).join("cur"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn notmuch_counts_the_emulators_messages_in_the_synced_maildir() {
    let emu = Emu::start(config(11, MESSAGES, quota_scale(MESSAGES, 5)));
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let root = env.path("mail");
    let mut text = std::fs::read_to_string(&env.config_path).expect("config");
    text.push_str(&format!("\n[maildir]\nroot = \"{}\"\n", root.display()));
    std::fs::write(&env.config_path, text).expect("config");

    let d = env.start();
    let truth = emu.snapshot();
    assert!(
        wait_caught_up(&d, Duration::from_secs(120))
            && wait_until(Duration::from_secs(60), || cur_files(&root).len()
                >= truth.messages.len()),
        "maildir did not fill: {} files\n{}",
        cur_files(&root).len(),
        d.status()
    );
    d.stop();
    assert_mirror_equals(&env.data_dir, &emu);

    let files = cur_files(&root);
    assert_eq!(files.len(), truth.messages.len(), "one file per message");
    // Flags follow labels: messages without UNREAD are Seen, STARRED are Flagged.
    let seen = truth
        .messages
        .iter()
        .filter(|m| !m.label_ids.iter().any(|l| l == "UNREAD"))
        .count();
    let flagged = truth
        .messages
        .iter()
        .filter(|m| m.label_ids.iter().any(|l| l == "STARRED"))
        .count();
    let flags = |f: &String| {
        f.rsplit_once(":2,")
            .map(|(_, fl)| fl.to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        files.iter().filter(|f| flags(f).contains('S')).count(),
        seen
    );
    assert_eq!(
        files.iter().filter(|f| flags(f).contains('F')).count(),
        flagged
    );

    let notmuch = Notmuch::new(&env, &root, true);
    notmuch.run(&["new"]);
    assert_eq!(
        notmuch.run(&["count", "*"]),
        truth.messages.len().to_string()
    );
    // notmuch reads the Maildir flags: its unread count is the emulator's UNREAD count.
    let unread = truth.messages.len() - seen;
    assert_eq!(notmuch.run(&["count", "tag:unread"]), unread.to_string());
}
