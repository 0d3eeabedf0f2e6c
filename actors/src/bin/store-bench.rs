//! store-bench: what the data-directory safeguards cost on this machine.
//!
//! ```text
//! cargo run --release -p mailsync-actors --bin store-bench -- [--mb N] [--dir PATH]
//! ```
//!
//! - transactions per second with the free-space floor off and on (one `statvfs` per
//!   transaction), best of three interleaved rounds;
//! - for a store filled with about N MB of values (default 256): the seal written at a clean
//!   close and verified at the next open, a backup (`Store::backup_to`), a restore, and
//!   `store check`.
//!
//! Prints a Markdown table; copy it into `docs/BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailsync_actors::disk_space::FreeSpaceFloor;
use mailsync_actors::store::{Space, Store, StoreOptions};
use mailsync_actors::{store_backup, store_check, store_open};

fn parse_args() -> Result<(u64, PathBuf), String> {
    let mut mb = 256;
    let mut dir = std::env::temp_dir();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mb" => {
                mb = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--mb needs a number")?
            }
            "--dir" => dir = it.next().map(PathBuf::from).ok_or("--dir needs a path")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((mb, dir))
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    base.join(format!("store-bench-{name}-{nanos}"))
}

fn tx_rate(dir: &Path, floor: FreeSpaceFloor) -> Result<f64, String> {
    let opts = StoreOptions {
        floor,
        ..Default::default()
    };
    let store = Store::open_opts(dir, &opts).map_err(|e| e.to_string())?;
    let n = 20_000u32;
    let t = Instant::now();
    for i in 0..n {
        store
            .transaction(|tx| tx.insert(Space::Cursors, &i.to_be_bytes(), b"v"))
            .map_err(|e| e.to_string())?;
    }
    Ok(f64::from(n) / t.elapsed().as_secs_f64())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() -> Result<(), String> {
    let (mb, base) = parse_args()?;
    // Interleaved rounds (the first store of a process is slower); the best of three each.
    let (mut rate_off, mut rate_on) = (0f64, 0f64);
    for _ in 0..3 {
        for (floor, best) in [
            (FreeSpaceFloor::NONE, &mut rate_off),
            (FreeSpaceFloor::DEFAULT, &mut rate_on),
        ] {
            let dir = fresh(&base, "tx");
            *best = best.max(tx_rate(&dir, floor)?);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    let dir = fresh(&base, "big");
    let store = Store::open(&dir).map_err(|e| e.to_string())?;
    let value = vec![0x5au8; 8 * 1024];
    let count = mb * 1024 / 8;
    for chunk in 0..count.div_ceil(100) {
        store
            .transaction(|tx| {
                for i in chunk * 100..((chunk + 1) * 100).min(count) {
                    tx.insert(Space::Cursors, &i.to_be_bytes(), &value)?;
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
    }
    store.flush().map_err(|e| e.to_string())?;
    let backup = dir.with_extension("msbk");
    let t = Instant::now();
    let report = store.backup_to(&backup).map_err(|e| e.to_string())?;
    let backup_time = t.elapsed();
    let t = Instant::now();
    drop(store);
    let close_time = t.elapsed();
    let db_bytes: u64 = std::fs::read_dir(dir.join(store_open::DB_DIR))
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let t = Instant::now();
    store_open::verify_seal(&dir)?;
    let verify_time = t.elapsed();
    let t = Instant::now();
    let check = store_check::check_store(&dir).map_err(|e| e.to_string())?;
    let check_time = t.elapsed();
    if !check.ok() {
        return Err(format!("store check found problems: {:?}", check.problems));
    }
    let t = Instant::now();
    store_backup::restore(&dir, &backup).map_err(|e| e.to_string())?;
    let restore_time = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&backup);

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("| measurement | result |");
    println!("|---|---:|");
    println!("| transactions/s, floor off | {rate_off:.0} |");
    println!("| transactions/s, floor on (statvfs per transaction) | {rate_on:.0} |");
    println!(
        "| store of {:.0} MiB on disk ({} values of 8 KiB): close incl. seal | {} |",
        mib(db_bytes),
        count,
        secs(close_time)
    );
    println!("| seal verified at open | {} |", secs(verify_time));
    println!(
        "| `ctl backup` ({:.0} MiB file, {} entries) | {} |",
        mib(report.bytes),
        report.entries,
        secs(backup_time)
    );
    println!("| `store restore` | {} |", secs(restore_time));
    println!("| `store check` (copy + walk) | {} |", secs(check_time));
    Ok(())
}
