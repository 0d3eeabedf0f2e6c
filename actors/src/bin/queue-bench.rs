//! queue-bench: throughput of the durable mailbox and the change feed on this machine.
//!
//! ```text
//! cargo run --release -p mailsync-actors --bin queue-bench -- [--jobs N] [--dir PATH]
//! ```
//!
//! Scenarios (each on a fresh store in a new directory under `--dir`, default the system temp
//! dir; removed afterwards):
//! - `flush-per-job`: per job: enqueue (one transaction), lease 1, ack (one transaction), flush.
//! - `group-commit/B`: per batch of B jobs: enqueue B (one transaction), lease B, ack B (one
//!   transaction), one flush.
//! - `feed flush-per-event`: append (one transaction) + flush per event.
//! - `feed batch/100`: 100 appends per transaction, one flush per batch.
//!
//! Prints a Markdown table; copy it into `docs/benchmarks-queue.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailsync_actors::feed::NewEvent;
use mailsync_actors::mailbox::Priority;
use mailsync_actors::store::{Store, StoreError};

struct Args {
    jobs: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        jobs: 5_000,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--jobs" => {
                args.jobs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--jobs needs a number")?;
            }
            "--dir" => args.dir = it.next().ok_or("--dir needs a path")?.into(),
            "-h" | "--help" => {
                return Err("usage: queue-bench [--jobs N] [--dir PATH]".into());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

/// A fresh store directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(base: &Path, name: &str) -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Scratch(base.join(format!("queue-bench-{}-{name}-{nanos}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn payload(i: usize) -> Vec<u8> {
    format!("{{\"message_id\":\"18c{i:013x}\",\"account\":\"acct1\"}}").into_bytes()
}

fn flush_per_job(store: &Store, n: usize) -> Result<Duration, StoreError> {
    let mb = store.mailbox("acct1/ingest");
    let start = Instant::now();
    for i in 0..n {
        mb.enqueue(Priority::Normal, &format!("m{i}"), &payload(i))?;
        let jobs = mb.lease(1, 0)?;
        mb.ack_many(&jobs)?;
        store.flush()?;
    }
    Ok(start.elapsed())
}

fn group_commit(store: &Store, n: usize, batch: usize) -> Result<Duration, StoreError> {
    let mb = store.mailbox("acct1/ingest");
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let size = batch.min(n - done);
        let keys: Vec<(String, Vec<u8>)> = (done..done + size)
            .map(|i| (format!("m{i}"), payload(i)))
            .collect();
        let items: Vec<(&str, &[u8])> = keys
            .iter()
            .map(|(k, p)| (k.as_str(), p.as_slice()))
            .collect();
        mb.enqueue_batch(Priority::Normal, &items)?;
        let jobs = mb.lease(size, 0)?;
        assert_eq!(jobs.len(), size, "lease returns the batch");
        mb.ack_many(&jobs)?;
        store.flush()?;
        done += size;
    }
    Ok(start.elapsed())
}

fn event(i: usize) -> NewEvent {
    NewEvent {
        account: "acct1".into(),
        kind: "message.added".into(),
        key: format!("acct1/msg/{i}/added"),
        payload: payload(i),
        ts_ms: 1_700_000_000_000,
    }
}

fn feed_appends(store: &Store, n: usize, batch: usize) -> Result<Duration, StoreError> {
    let feed = store.feed();
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let size = batch.min(n - done);
        store.transaction(|tx| {
            for i in done..done + size {
                tx.append_event(event(i))?;
            }
            Ok(())
        })?;
        store.flush()?;
        done += size;
    }
    let elapsed = start.elapsed();
    assert_eq!(feed.last_seq()?, n as u64);
    Ok(elapsed)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("queue-bench: {e}");
        std::process::exit(1);
    }
}

type Scenario = Box<dyn Fn(&Store) -> Result<Duration, StoreError>>;

fn run(args: &Args) -> Result<(), StoreError> {
    let n = args.jobs;
    let scenarios: Vec<(String, usize, Scenario)> = vec![
        (
            "mailbox flush-per-job (enqueue → lease → ack → flush)".into(),
            n,
            Box::new(move |s| flush_per_job(s, n)),
        ),
        (
            "mailbox group commit, batch 50 (one flush per batch)".into(),
            n * 4,
            Box::new(move |s| group_commit(s, n * 4, 50)),
        ),
        (
            "mailbox group commit, batch 100 (one flush per batch)".into(),
            n * 4,
            Box::new(move |s| group_commit(s, n * 4, 100)),
        ),
        (
            "feed append, flush per event".into(),
            n,
            Box::new(move |s| feed_appends(s, n, 1)),
        ),
        (
            "feed append, 100 per transaction + flush".into(),
            n * 4,
            Box::new(move |s| feed_appends(s, n * 4, 100)),
        ),
    ];
    println!("| scenario | ops | seconds | ops/s | µs/op |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, ops, f)) in scenarios.iter().enumerate() {
        let scratch = Scratch::new(&args.dir, &i.to_string());
        let store = Store::open(&scratch.0)?;
        let elapsed = f(&store)?;
        drop(store);
        let secs = elapsed.as_secs_f64();
        println!(
            "| {name} | {ops} | {secs:.2} | {:.0} | {:.1} |",
            *ops as f64 / secs,
            secs * 1e6 / *ops as f64
        );
    }
    Ok(())
}
