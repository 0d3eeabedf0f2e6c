//! layout-bench: how sled 0.34's memory grows with the number of records, for the mirror's
//! layout (one key a message) and for a bucketed one (several messages in one value).
//!
//! ```text
//! cargo run --release -p mailsync-actors --bin layout-bench -- [N ...]
//! ```
//!
//! For each N (default 10,000 and 1,000,000) and each layout, a child process of this binary
//! writes N records of 330 bytes (about a mirror record) into a fresh sled tree with the
//! store's cache capacity, 500 to a batch and a flush after each batch, as the full sync's
//! Ingest writes them (ids in descending order, as Gmail lists them). The child reports its
//! peak RSS and the tree's bytes on disk. Layouts:
//!
//! - `key-per-record`: key `<account>\0<id>`, the mirror's layout today;
//! - `bucket-16`, `bucket-64`: key `<account>\0<hash(id) % (N / k)>`, value = the bucket's
//!   records appended, so about k records a value (every insert rewrites its bucket);
//! - `key-per-record, 2 MiB cache`: the mirror's layout with a quarter of the cache.
//!
//! It answers whether a bucketed mirror would flatten memory against the mailbox's size, the
//! only lever the scale issue's 1M/10k goal had left. Prints a Markdown table; copy it into
//! `docs/BENCHMARKS.md`.

use std::path::Path;
use std::process::Command;

use mailsync_actors::store::CACHE_CAPACITY_BYTES;

const RECORD_BYTES: usize = 330;
const BATCH: u64 = 500;

/// One layout under test.
struct Layout {
    name: &'static str,
    per_value: u64,
    cache: u64,
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        name: "key-per-record",
        per_value: 1,
        cache: CACHE_CAPACITY_BYTES,
    },
    Layout {
        name: "key-per-record, 2 MiB cache",
        per_value: 1,
        cache: 2 * 1024 * 1024,
    },
    Layout {
        name: "bucket-16",
        per_value: 16,
        cache: CACHE_CAPACITY_BYTES,
    },
    Layout {
        name: "bucket-64",
        per_value: 64,
        cache: CACHE_CAPACITY_BYTES,
    },
];

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The child: writes `n` records in layout `per_value` into `dir`, prints `peak_kib disk_bytes`.
fn child(n: u64, per_value: u64, cache: u64, dir: &Path) -> Result<(), sled::Error> {
    let db = sled::Config::new().path(dir).cache_capacity(cache).open()?;
    let tree = db.open_tree("messages")?;
    let record = vec![7u8; RECORD_BYTES];
    let buckets = (n / per_value).max(1);
    let mut i = 0;
    while i < n {
        let mut batch = sled::Batch::default();
        for j in i..(i + BATCH).min(n) {
            // Descending, sparse ids: the order and shape of a Gmail listing.
            let id = format!("{:016x}", 0x1800_0000_0000_u64 + (n - j) * 7919);
            if per_value == 1 {
                batch.insert(format!("acct-0001\0{id}").as_bytes(), record.as_slice());
            } else {
                let h = j.wrapping_mul(0x9E37_79B9_7F4A_7C15) % buckets;
                let key = format!("acct-0001\0{h:08x}");
                let mut value = tree.get(&key)?.map(|v| v.to_vec()).unwrap_or_default();
                value.extend_from_slice(id.as_bytes());
                value.extend_from_slice(&record);
                tree.insert(key.as_bytes(), value)?;
            }
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        i += BATCH;
    }
    println!("{} {}", rss_kib("VmHWM:"), db.size_on_disk()?);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let num = |i: usize| args.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(1);
        let dir = args.get(4).map(String::as_str).unwrap_or("layout-bench-db");
        if let Err(e) = child(num(1), num(2), num(3), Path::new(dir)) {
            eprintln!("layout-bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let sizes: Vec<u64> = if args.is_empty() {
        vec![10_000, 1_000_000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("layout-bench: {e}");
            std::process::exit(1);
        }
    };
    println!("| layout | records | peak RSS | on disk | RSS at this size ÷ the smallest |");
    println!("|---|---|---|---|---|");
    for layout in &LAYOUTS {
        let mut first: Option<f64> = None;
        for &n in &sizes {
            let dir = std::env::temp_dir().join(format!(
                "layout-bench-{}-{n}-{}",
                std::process::id(),
                layout.per_value * 1000 + layout.cache / (1024 * 1024)
            ));
            let out = Command::new(&exe)
                .arg("--child")
                .arg(n.to_string())
                .arg(layout.per_value.to_string())
                .arg(layout.cache.to_string())
                .arg(&dir)
                .output();
            let _ = std::fs::remove_dir_all(&dir);
            let text = match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                Ok(o) => {
                    eprintln!("{}: {}", layout.name, String::from_utf8_lossy(&o.stderr));
                    continue;
                }
                Err(e) => {
                    eprintln!("{}: {e}", layout.name);
                    continue;
                }
            };
            let mut fields = text
                .split_whitespace()
                .filter_map(|v| v.parse::<f64>().ok());
            let (Some(peak_kib), Some(disk)) = (fields.next(), fields.next()) else {
                eprintln!("{}: unreadable child output {text:?}", layout.name);
                continue;
            };
            let peak = peak_kib / 1024.0;
            let base = *first.get_or_insert(peak);
            println!(
                "| {} | {n} | {peak:.1} MiB | {:.0} MiB | {:.2}× |",
                layout.name,
                disk / 1_048_576.0,
                peak / base
            );
        }
    }
}
