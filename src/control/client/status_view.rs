//! How `ctl status`, `ctl status ACCOUNT` and `ctl health` read, modelled on
//! `systemctl status`: a header line for the daemon (version, pid, uptime, data dir, socket,
//! health), then one block per account (state and health, phase with progress and ETA,
//! cursor and its age, queue depths, delivery mode, last error; for IMAP accounts connection
//! health, errors by class, rate and a folder table), then the feed consumers and the sinks.
//! Works on the `status` JSON so it renders whatever daemon version answers.

use serde_json::Value;

use super::{format_uptime, table, text, u64_field};

fn bullet(health: &str) -> &'static str {
    match health {
        "active" | "ok" => "●",
        "degraded" => "◐",
        _ => "×",
    }
}

fn ago(now_ms: u64, at_ms: Option<u64>) -> String {
    match at_ms {
        Some(at) => format!("{} ago", format_uptime(now_ms.saturating_sub(at) / 1000)),
        None => "never".into(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The daemon's header line.
pub fn header(data: &Value) -> String {
    let health = data
        .pointer("/health/state")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let commit = data
        .get("commit")
        .and_then(Value::as_str)
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let degraded = data
        .get("degraded")
        .and_then(Value::as_str)
        .map(|why| format!("  degraded: {why}\n"))
        .unwrap_or_default();
    format!(
        "{} mailsync {}{commit} - pid {}, up {}, data {}, socket {}, health {}\n{degraded}",
        bullet(health),
        text(data.get("version")),
        text(data.get("pid")),
        format_uptime(u64_field(data, "uptime_seconds")),
        text(data.get("data_dir")),
        text(data.get("socket")),
        match data.pointer("/health/summary").and_then(Value::as_str) {
            Some(summary) => format!("{health}: {summary}"),
            None => health.to_string(),
        },
    )
}

fn phase_line(a: &Value) -> String {
    let mut phase = text(a.get("phase"));
    if let Some(p) = a.get("progress").filter(|p| p.is_object()) {
        let done = u64_field(p, "done");
        match p.get("total").and_then(Value::as_u64) {
            Some(total) if total > 0 => {
                phase.push_str(&format!(
                    " {done}/{total} ({}%)",
                    done.min(total) * 100 / total
                ));
            }
            _ => phase.push_str(&format!(" {done}")),
        }
        if let Some(rate) = p
            .get("per_second")
            .and_then(Value::as_f64)
            .filter(|r| *r > 0.0)
        {
            phase.push_str(&format!(", {rate:.1}/s"));
        }
        if let Some(eta) = p.get("eta_seconds").and_then(Value::as_u64) {
            phase.push_str(&format!(", ETA {}", format_uptime(eta)));
        }
    }
    phase
}

fn queue_totals(a: &Value) -> (u64, u64, u64, u64) {
    let queues = a.get("queues").and_then(Value::as_array);
    let sum = |key: &str| -> u64 {
        queues
            .map(|qs| qs.iter().map(|q| u64_field(q, key)).sum())
            .unwrap_or(0)
    };
    (
        sum("pending"),
        sum("leased"),
        sum("delayed"),
        sum("dead").max(u64_field(a, "dead_lettered")),
    )
}

/// The account's health; daemons older than the health rules report only a state.
fn account_health(a: &Value) -> &str {
    match a.get("health").and_then(Value::as_str) {
        Some(h) => h,
        None => match a.get("state").and_then(Value::as_str) {
            Some("failed") => "failed",
            Some("disconnected") => "disconnected",
            Some("paused" | "resyncing") => "degraded",
            _ => "active",
        },
    }
}

fn account_block(a: &Value, now: u64, detail: bool) -> String {
    let health = account_health(a);
    let reasons: Vec<&str> = a
        .get("health_reasons")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    let (pending, leased, delayed, dead) = queue_totals(a);
    let mut out = format!(
        "\n{} {} ({}) - {health}{reasons}\n",
        bullet(health),
        text(a.get("account")),
        text(a.get("kind")),
    );
    let folder_table = a
        .get("imap")
        .filter(|i| i.is_object())
        .map(|i| imap_folders(i, now, detail))
        .unwrap_or_default();
    let mut row = |label: &str, value: String| {
        out.push_str(&format!("{label:>12}: {value}\n"));
    };
    row("State", text(a.get("state")));
    row("Phase", phase_line(a));
    row(
        "Cursor",
        format!(
            "{} (last sync {})",
            text(a.get("cursor")),
            ago(now, a.get("last_sync_ms").and_then(Value::as_u64))
        ),
    );
    row(
        "Queues",
        format!("{pending} pending, {leased} leased, {delayed} delayed, {dead} dead"),
    );
    row("Delivery", text(a.get("delivery")));
    row("Restarts", text(a.get("restarts")));
    row("Last error", text(a.get("last_error")));
    if let Some(age) = a.get("status_age_ms").and_then(Value::as_u64) {
        row(
            "Answered",
            format!(
                "{:.1} s ago (busy syncing; its last answer)",
                age as f64 / 1000.0
            ),
        );
    }
    if let Some(imap) = a.get("imap").filter(|i| i.is_object()) {
        imap_rows(imap, &mut row);
    }
    if detail {
        if let Some(queues) = a.get("queues").and_then(Value::as_array) {
            for q in queues {
                row(
                    "Mailbox",
                    format!(
                        "{}: {} pending, {} leased, {} delayed, {} dead",
                        text(q.get("name")),
                        u64_field(q, "pending"),
                        u64_field(q, "leased"),
                        u64_field(q, "delayed"),
                        u64_field(q, "dead")
                    ),
                );
            }
        }
        let errors = a
            .get("recent_errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if errors.is_empty() {
            row("Recent", "no errors recorded".into());
        } else {
            for e in errors.iter().rev() {
                row(
                    "Recent",
                    format!(
                        "{}: {}",
                        ago(now, e.get("at_ms").and_then(Value::as_u64)),
                        text(e.get("error"))
                    ),
                );
            }
        }
    }
    out.push_str(&folder_table);
    out
}

/// An IMAP account's connection health, errors by class, rate and command counters.
fn imap_rows(imap: &Value, row: &mut impl FnMut(&str, String)) {
    row("Connections", text(imap.get("connections")));
    let errors: Vec<String> = imap
        .get("errors")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(class, n)| format!("{class} {n}"))
                .collect()
        })
        .unwrap_or_default();
    row(
        "Errors",
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join(", ")
        },
    );
    row(
        "Rate",
        format!(
            "{:.1} msg/s ({} downloaded since start)",
            imap.get("per_second")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            u64_field(imap, "fetched")
        ),
    );
    if let Some(c) = imap.get("commands") {
        row(
            "Commands",
            format!(
                "{} SELECT, {} STATUS ({} unchanged)",
                u64_field(c, "selects"),
                u64_field(c, "status_probes"),
                u64_field(c, "polls_skipped")
            ),
        );
    }
}

/// An IMAP account's folders as a table (with the cursor and poll columns in detail).
fn imap_folders(imap: &Value, now: u64, detail: bool) -> String {
    let Some(folders) = imap
        .get("folders")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
    else {
        return String::new();
    };
    let rows: Vec<Vec<String>> = folders
        .iter()
        .map(|f| {
            let progress = match f.get("progress").filter(|p| p.is_object()) {
                Some(p) => {
                    let (done, total) = (u64_field(p, "done"), u64_field(p, "total"));
                    let eta = p
                        .get("eta_seconds")
                        .and_then(Value::as_u64)
                        .map(|e| format!(", ETA {}", format_uptime(e)))
                        .unwrap_or_default();
                    format!("{done}/{total}{eta}")
                }
                None => "-".into(),
            };
            let mut cells = vec![
                format!(
                    "{}{}",
                    text(f.get("name")),
                    if f.get("idle") == Some(&Value::Bool(true)) {
                        " (idle)"
                    } else {
                        ""
                    }
                ),
                text(f.get("messages")),
                text(f.get("state")),
                progress,
                ago(now, f.get("last_sync_ms").and_then(Value::as_u64)),
                ago(now, f.get("last_checked_ms").and_then(Value::as_u64)),
            ];
            if detail {
                cells.push(text(f.get("uidvalidity")));
                cells.push(text(f.get("uidnext")));
                cells.push(text(f.get("highest_modseq")));
                cells.push(match f.get("poll_interval_secs").and_then(Value::as_u64) {
                    Some(s) => format_uptime(s),
                    None => "-".into(),
                });
                cells.push(text(f.get("last_error")));
            }
            cells
        })
        .collect();
    let mut header = vec![
        "FOLDER",
        "MESSAGES",
        "STATE",
        "PROGRESS",
        "LAST SYNC",
        "CHECKED",
    ];
    if detail {
        header.extend(["UIDVALIDITY", "UIDNEXT", "MODSEQ", "POLL", "LAST ERROR"]);
    }
    table(&header, &rows)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect()
}

/// The feed consumers as a table (`ctl status` and `ctl consumers`).
pub fn consumers_table(consumers: &[Value]) -> String {
    let rows: Vec<Vec<String>> = consumers
        .iter()
        .map(|c| {
            vec![
                text(c.get("consumer")),
                text(c.get("acked")),
                text(c.get("lag")),
            ]
        })
        .collect();
    table(&["CONSUMER", "ACKED", "LAG"], &rows)
}

/// `ctl status`: the header, every account, the feed consumers.
pub fn render_status(data: &Value, accounts: &[Value]) -> String {
    let mut out = header(data);
    if accounts.is_empty() {
        out.push_str("no accounts configured\n");
        return out;
    }
    let now = now_ms();
    for a in accounts {
        out.push_str(&account_block(a, now, false));
    }
    if let Some(consumers) = data
        .get("consumers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        out.push('\n');
        out.push_str(&consumers_table(consumers));
    }
    if let Some(sinks) = data
        .get("sinks")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
    {
        let rows: Vec<Vec<String>> = sinks
            .iter()
            .map(|s| {
                vec![
                    text(s.get("name")),
                    text(s.get("enabled")),
                    text(s.get("cursor")),
                    text(s.get("lag")),
                    text(s.get("dead_letters")),
                    text(s.get("last_error")),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["SINK", "ENABLED", "CURSOR", "LAG", "DEAD", "LAST ERROR"],
            &rows,
        ));
    }
    out
}

/// `ctl status ACCOUNT`: the header and that account in detail, or `None` if unknown.
pub fn render_account(data: &Value, account: &str) -> Option<String> {
    let a = data
        .get("accounts")
        .and_then(Value::as_array)?
        .iter()
        .find(|a| a.get("account").and_then(Value::as_str) == Some(account))?;
    Some(format!(
        "{}{}",
        header(data),
        account_block(a, now_ms(), true)
    ))
}

/// `ctl health`: the first line names the overall state, then one line per problem; the
/// exit code is 0 (ok), 1 (degraded) or 2 (failed).
pub fn render_health(data: &Value) -> (String, i32) {
    let state = data
        .pointer("/health/state")
        .and_then(Value::as_str)
        .unwrap_or("failed");
    let code = match state {
        "ok" => 0,
        "degraded" => 1,
        _ => 2,
    };
    let mut out = format!(
        "{state}: {}\n",
        data.pointer("/health/summary")
            .and_then(Value::as_str)
            .unwrap_or("no health reported")
    );
    if let Some(problems) = data.pointer("/health/problems").and_then(Value::as_array) {
        for p in problems.iter().filter_map(Value::as_str) {
            out.push_str(&format!("{p}\n"));
        }
    }
    (out, code)
}
