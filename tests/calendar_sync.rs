//! Calendar end to end, real binary against the emulator over HTTP.

use crate::common::calendar::*;
use crate::common::emulator::{Emu, config};
use crate::common::*;
use std::time::Duration;

fn emu(events: usize) -> Emu {
    let mut c = config(21, 5, 1.0);
    c.calendar_events = events;
    Emu::start(c)
}

#[test]
fn probe_status() {
    let emu = emu(40);
    let env = TestEnv::new();
    write_config(&emu, &env, 1, "", "");
    let d = env.start();
    std::thread::sleep(Duration::from_secs(6));
    println!(
        "{}",
        serde_json::to_string_pretty(&d.status()).unwrap_or_default()
    );
    d.stop();
    println!("{}", diff(&mirror(&env.data_dir), &truth(&emu)));
    println!("{:?}", feed(&env.data_dir).len());
}
