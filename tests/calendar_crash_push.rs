//! Calendar under kill -9, push, and khal: SIGKILL at seeded moments during a paced full sync
//! and during incremental runs with mutations → restart → the store equals the emulator and
//! no feed key repeats; a change reaches the feed through a channel notification with
//! polling effectively off; a forged notification is refused with nothing enqueued; a channel
//! about to expire is renewed; `khal list` over the synced vdir shows the series with its
//! moved instance and without its cancelled one.

use crate::calendar_sync::{cal_emu, wait_full, wait_rounds};
use crate::common::calendar::*;
use crate::common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn kill_9_during_calendar_full_and_incremental_sync_loses_and_duplicates_nothing() {
    let emu = cal_emu(400);
    let env = TestEnv::new();
    // Small pages at 5 requests/s: the full sync takes a few seconds, so kills land inside.
    write_config(
        &emu,
        &env,
        1,
        "calendar_page_size = 10\ncalendar_requests_per_minute = 300",
        "",
    );
    let primary = emu.cal_ids()[0].clone();
    let mut rng = StdRng::seed_from_u64(91);
    let mut created: Vec<String> = Vec::new();
    for round in 0..14 {
        let d = env.start();
        let lifetime = Duration::from_millis(rng.random_range(300..2_000));
        let t = Instant::now();
        while t.elapsed() < lifetime {
            if round > 6 && rng.random_bool(0.4) {
                let n = created.len();
                if n > 2 && rng.random_bool(0.3) {
                    let id = created.swap_remove(rng.random_range(0..n));
                    emu.cal_delete(&primary, &id);
                } else if n > 2 && rng.random_bool(0.3) {
                    let id = created[rng.random_range(0..n)].clone();
                    emu.cal_update(&primary, &id, json!({"summary": format!("r{round}")}));
                } else {
                    created.push(emu.cal_create(&primary, json!({"summary": format!("c{round}"), "start": "2026-06-03T10:00:00Z", "end": "2026-06-03T11:00:00Z"})));
                }
            }
            // Paces the changes over the daemon's random lifetime (the point: changes land at
            // every stage of the sync before the kill).
            std::thread::sleep(Duration::from_millis(60));
        }
        d.kill9();
    }
    let d = env.start();
    assert!(
        wait_full(&d, 2) && wait_rounds(&d),
        "did not converge:\n{}",
        d.status()
    );
    d.stop();
    assert_eq!(diff(&mirror(&env.data_dir), &truth(&emu)), "");
    let f = feed(&env.data_dir);
    assert_unique_keys(&f);
    // Every stored event was announced at least once (a cancelled instance as the instance
    // deleted), every live one is stored.
    let announced: std::collections::BTreeSet<String> = f
        .iter()
        .filter(|e| e.kind == "event.created" || e.kind == "event.deleted")
        .filter_map(|e| e.event.clone())
        .collect();
    for (cal, events) in truth(&emu) {
        for id in events.keys() {
            assert!(announced.contains(id), "{cal}: {id} never announced");
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

pub(crate) fn push_section(port: u16, ttl: u64, renew: u64) -> String {
    format!(
        "[push]\nbind = \"127.0.0.1\"\nport = {port}\nverification_token = {{ value = \"gmail-only\" }}\ncalendar_address = \"http://127.0.0.1:{port}/push/calendar\"\n\
         calendar_debounce_ms = 200\ncalendar_channel_ttl_secs = {ttl}\ncalendar_renew_before_secs = {renew}\n"
    )
}

fn post_push(port: u16, headers: &[(&str, &str)]) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut r = reqwest::Client::new().post(format!("http://127.0.0.1:{port}/push/calendar"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    })
}

#[test]
fn a_change_arrives_by_push_forged_notifications_are_refused_and_channels_renew() {
    let emu = cal_emu(20);
    let env = TestEnv::new();
    let port = free_port();
    // Polling once an hour: only a notification can bring the change in time. Channels live
    // 40 s and are renewed when less than 30 s remain.
    write_config(&emu, &env, 3600, "", &push_section(port, 40, 30));
    let primary = emu.cal_ids()[0].clone();
    let d = env.start();
    assert!(wait_full(&d, 2), "{}", d.status());
    assert!(
        wait_until(Duration::from_secs(30), || emu.cal_channels().len() >= 2),
        "channels not registered: {:?}\n{}",
        emu.cal_channels(),
        d.log_text()
    );
    let first: Vec<String> = emu
        .cal_channels()
        .iter()
        .filter_map(|c| c["id"].as_str().map(String::from))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || account_delivery(&d)
            == "active (push)"),
        "{}",
        d.status()
    );
    let count = |d: &Daemon| {
        d.account(CAL_ACCOUNT)["calendars"][0]["events"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = count(&d);
    let id = emu.cal_create(&primary, json!({"summary": "Pushed", "start": "2026-06-04T10:00:00Z", "end": "2026-06-04T11:00:00Z"}));
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || count(&d) == before + 1),
        "the pushed change never reached the store:\n{}",
        d.log_text()
    );
    let latency = started.elapsed();

    // Forged: a known channel id with a wrong token, and an unknown channel.
    let ch = emu.cal_channels()[0].clone();
    let cid = ch["id"].as_str().unwrap_or_default().to_string();
    let rid = ch["resourceId"].as_str().unwrap_or_default().to_string();
    let forged = [
        ("X-Goog-Channel-ID", cid.as_str()),
        ("X-Goog-Channel-Token", "forged"),
        ("X-Goog-Resource-ID", rid.as_str()),
        ("X-Goog-Resource-State", "exists"),
        ("X-Goog-Message-Number", "999999"),
    ];
    assert_eq!(post_push(port, &forged), 403);
    let mut unknown = forged;
    unknown[0].1 = "no-such-channel";
    assert_eq!(post_push(port, &unknown), 404);
    assert_eq!(post_push(port, &[]), 400);

    // Renewal: within ~15 s every channel is replaced by a new id and the old ones stopped.
    assert!(
        wait_until(Duration::from_secs(40), || {
            let now: Vec<String> = emu
                .cal_channels()
                .iter()
                .filter_map(|c| c["id"].as_str().map(String::from))
                .collect();
            now.len() == 2 && now.iter().all(|c| !first.contains(c))
        }),
        "channels not renewed: {:?} vs {first:?}\n{}",
        emu.cal_channels(),
        d.log_text()
    );
    d.stop();
    let f = feed(&env.data_dir);
    assert!(
        f.iter()
            .any(|e| e.kind == "event.created" && e.event.as_deref() == Some(id.as_str()))
    );
    assert_unique_keys(&f);
    eprintln!("push → store latency {latency:?}");
}

fn account_delivery(d: &Daemon) -> String {
    d.account(CAL_ACCOUNT)["delivery"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn khal_lists_the_synced_vdir() {
    let emu = cal_emu(20);
    let env = TestEnv::new();
    let root = env.path("vdir");
    write_config(
        &emu,
        &env,
        1,
        "",
        &format!("[vdir]\nroot = \"{}\"\n", root.display()),
    );
    let family = emu.cal_ids()[1].clone();
    let d = env.start();
    assert!(wait_full(&d, 2), "{}", d.status());
    let fam_dir = root.join(CAL_ACCOUNT).join(family.replace('_', "_5F"));
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_dir(&fam_dir)
            .map(|r| r.count() > 3)
            .unwrap_or(false)),
        "vdir not written at {}:\n{}",
        fam_dir.display(),
        d.log_text()
    );
    d.stop();
    assert_eq!(
        std::fs::read_to_string(fam_dir.join("displayname"))
            .ok()
            .as_deref(),
        Some("Family")
    );
    let config = env.path("khal.conf");
    std::fs::write(
        &config,
        format!(
            "[calendars]\n[[family]]\npath = {}\ntype = calendar\n[sqlite]\npath = {}\n[locale]\n\
             timeformat = %H:%M\ndateformat = %Y-%m-%d\nlongdateformat = %Y-%m-%d\n\
             datetimeformat = %Y-%m-%d %H:%M\nlongdatetimeformat = %Y-%m-%d %H:%M\n\
             local_timezone = Europe/Berlin\ndefault_timezone = Europe/Berlin\n",
            fam_dir.display(),
            env.path("khal.db").display()
        ),
    )
    .expect("khal config");
    let out = std::process::Command::new("khal")
        .arg("-c")
        .arg(&config)
        .args([
            "list",
            "--format",
            "{start} {title}",
            "--day-format",
            "",
            "2026-04-01",
            "60d",
        ])
        .env("HOME", env.path(""))
        .output()
        .expect("khal (scripts/test installs Debian's khal)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let piano: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("Piano lesson"))
        .collect();
    assert_eq!(
        piano,
        [
            "2026-04-17 17:00 Piano lesson",
            "2026-04-24 19:00 Piano lesson (moved)",
            "2026-05-08 17:00 Piano lesson",
            "2026-05-15 17:00 Piano lesson",
            "2026-05-22 17:00 Piano lesson",
        ],
        "khal output:\n{text}"
    );
}
