//! Calendar channels follow config reloads, the real binary against the emulator: an account
//! disabled (or one of its calendars deselected) by a SIGHUP reload gets `channels.stop` for every channel it had (the emulator
//! forgets them), and an account that joins again gets a keeper that registers new ones.

use crate::calendar_crash_push::{free_port, push_section};
use crate::calendar_sync::{cal_emu, wait_full};
use crate::common::calendar::*;
use crate::common::*;
use std::collections::BTreeSet;
use std::time::Duration;

fn channel_ids(emu: &crate::common::emulator::Emu) -> BTreeSet<String> {
    emu.cal_channels()
        .iter()
        .filter_map(|c| c["id"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_reload_stops_the_channels_of_a_removed_account_and_starts_an_added_one() {
    let emu = cal_emu(10);
    let env = TestEnv::new();
    let port = free_port();
    // Channels live 2 minutes and renew in the last 30 s: none is renewed during the test,
    // and keepers check every 12 s (a tenth of the lifetime).
    let push = push_section(port, 120, 30);
    write_config(&emu, &env, 3600, "", &push);
    let d = env.start();
    assert!(wait_full(&d, 2), "{}", d.status());
    assert!(
        wait_until(Duration::from_secs(30), || channel_ids(&emu).len() >= 2),
        "channels not registered: {:?}\n{}",
        emu.cal_channels(),
        d.log_text()
    );
    let first = channel_ids(&emu);

    // One calendar deselected: its channel is stopped, the other stays.
    let primary = emu.cal_ids()[0].clone();
    let only = format!("calendar_ids = [\"{primary}\"]");
    write_config(&emu, &env, 3600, &only, &push);
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(30), || channel_ids(&emu).len() == 1),
        "the deselected calendar's channel is still open: {:?}\n{}",
        emu.cal_channels(),
        d.log_text()
    );
    assert!(channel_ids(&emu).is_subset(&first));

    // The account leaves the sync: its keeper stops every channel.
    write_config(&emu, &env, 3600, "enabled = false", &push);
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(30), || channel_ids(&emu).is_empty()),
        "channels of the removed account still open: {:?}\n{}",
        emu.cal_channels(),
        d.log_text()
    );

    // It joins again: a new keeper registers new channels.
    write_config(&emu, &env, 3600, "", &push);
    d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let now = channel_ids(&emu);
            now.len() >= 2 && now.is_disjoint(&first)
        }),
        "no channels after the account came back: {:?}\n{}",
        emu.cal_channels(),
        d.log_text()
    );
    d.stop();
}
