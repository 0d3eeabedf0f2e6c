//! The status page's HTML, rendered on the server from the `status` JSON: a header with the
//! daemon's version, uptime and health summary; one card per account with its state badge
//! (active / degraded / disconnected / failed), phase, a progress bar with ETA while a full
//! sync runs, queue depths, last sync time and last error; then the feed consumers and their
//! lag. Inline CSS only, a meta refresh every 5 s, every value HTML-escaped.

use serde_json::Value;

/// Seconds between the page's own refreshes.
const REFRESH_SECS: u32 = 5;

const STYLE: &str = "body{font:15px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}\
h1{font-size:22px;margin:0 0 4px}.meta{color:#555;margin-bottom:16px}\
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:14px 18px;margin:0 0 14px;max-width:760px}\
.card h2{font-size:18px;margin:0 0 8px;display:flex;align-items:center;gap:12px}\
.badge{display:inline-block;padding:6px 16px;border-radius:14px;color:#fff;font-weight:700;font-size:15px}\
.badge-active{background:#2e7d32}.badge-degraded{background:#f9a825;color:#222}\
.badge-disconnected{background:#6a1b9a}.badge-failed{background:#c62828}\
.bar{height:16px;background:#e3e3e3;border-radius:8px;overflow:hidden;margin:6px 0}\
.fill{height:100%;background:#1565c0}\
table{border-collapse:collapse}td,th{padding:3px 12px 3px 0;text-align:left}\
.err{color:#b71c1c}.muted{color:#777}";

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => escape(s),
        Some(other) => escape(&other.to_string()),
    }
}

/// "1h 2m", "3m 4s", "5s".
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )
}

/// The page shown when the daemon does not answer in time.
pub fn unavailable(reason: &str) -> String {
    page(
        "mailsync: unavailable",
        &format!(
            "<h1>mailsync</h1><p class=\"err\" id=\"unavailable\">The daemon did not answer: {}</p>",
            escape(reason)
        ),
    )
}

fn progress_html(a: &Value) -> String {
    let Some(p) = a.get("progress").filter(|p| p.is_object()) else {
        return String::new();
    };
    let done = p.get("done").and_then(Value::as_u64).unwrap_or(0);
    let total = p.get("total").and_then(Value::as_u64);
    let eta = p
        .get("eta_seconds")
        .and_then(Value::as_u64)
        .map(|s| format!(", ETA {}", duration(s)))
        .unwrap_or_default();
    match total {
        Some(total) if total > 0 => {
            let pct = (done.min(total) * 100) / total;
            format!(
                "<div class=\"progress\" data-done=\"{done}\" data-total=\"{total}\">\
<div class=\"bar\"><div class=\"fill\" style=\"width:{pct}%\"></div></div>\
{done} / {total} ({pct}%){eta}</div>"
            )
        }
        _ => format!("<div class=\"progress\" data-done=\"{done}\">{done} done{eta}</div>"),
    }
}

fn account_html(a: &Value, now_ms: u64) -> String {
    let id = text(a.get("account"));
    let health = a.get("health").and_then(Value::as_str).unwrap_or("failed");
    let health = match health {
        "active" | "degraded" | "disconnected" | "failed" => health,
        _ => "failed",
    };
    let reasons: Vec<String> = a
        .get("health_reasons")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(escape).collect())
        .unwrap_or_default();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" <span class=\"muted\">({})</span>", reasons.join(", "))
    };
    let queues = a.get("queues").and_then(Value::as_array);
    let sum = |key: &str| -> u64 {
        queues
            .map(|qs| {
                qs.iter()
                    .map(|q| q.get(key).and_then(Value::as_u64).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let last_sync = match a.get("last_sync_ms").and_then(Value::as_u64) {
        Some(ms) => format!("{} ago", duration(now_ms.saturating_sub(ms) / 1000)),
        None => "never".into(),
    };
    let error = match a.get("last_error").and_then(Value::as_str) {
        Some(e) => format!(
            "<tr><th>last error</th><td class=\"err\">{}</td></tr>",
            escape(e)
        ),
        None => String::new(),
    };
    format!(
        "<section class=\"card account\" data-account=\"{id}\" data-health=\"{health}\">\
<h2>{id} <span class=\"badge badge-{health}\">{health}</span>{reasons}</h2>\
<table><tr><th>kind</th><td>{kind}</td></tr>\
<tr><th>state</th><td class=\"state\">{state}</td></tr>\
<tr><th>phase</th><td class=\"phase\">{phase}</td></tr>\
<tr><th>delivery</th><td>{delivery}</td></tr>\
<tr><th>queues</th><td class=\"queues\">{pending} pending, {leased} leased, {delayed} delayed, {dead} dead</td></tr>\
<tr><th>last sync</th><td class=\"last-sync\">{last_sync}</td></tr>{error}</table>{progress}</section>",
        kind = text(a.get("kind")),
        state = text(a.get("state")),
        phase = text(a.get("phase")),
        delivery = text(a.get("delivery")),
        pending = sum("pending"),
        leased = sum("leased"),
        delayed = sum("delayed"),
        dead = sum("dead"),
        progress = progress_html(a),
    )
}

/// The whole page for a `status` reply.
pub fn render(status: &Value, now_ms: u64) -> String {
    let mut body = format!(
        "<h1>mailsync</h1><div class=\"meta\">version {version} ({commit}) · pid {pid} · up {up} · \
<span id=\"health\" data-health=\"{hstate}\">{summary}</span></div>",
        version = text(status.get("version")),
        commit = text(status.get("commit")),
        pid = text(status.get("pid")),
        up = duration(
            status
                .get("uptime_seconds")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        ),
        hstate = text(status.pointer("/health/state")),
        summary = text(status.pointer("/health/summary")),
    );
    let accounts = status.get("accounts").and_then(Value::as_array);
    match accounts {
        Some(list) if !list.is_empty() => {
            for a in list {
                body.push_str(&account_html(a, now_ms));
            }
        }
        _ => body.push_str("<p class=\"muted\">No accounts configured.</p>"),
    }
    if let Some(consumers) = status
        .get("consumers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        body.push_str("<section class=\"card\" id=\"consumers\"><h2>Feed consumers</h2><table><tr><th>consumer</th><th>acked</th><th>lag</th></tr>");
        for c in consumers {
            body.push_str(&format!(
                "<tr class=\"consumer\" data-consumer=\"{name}\"><td>{name}</td><td>{acked}</td><td class=\"lag\">{lag}</td></tr>",
                name = text(c.get("consumer")),
                acked = text(c.get("acked")),
                lag = text(c.get("lag")),
            ));
        }
        body.push_str("</table></section>");
    }
    page("mailsync status", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_badges_progress_and_escapes() {
        let status = json!({
            "version": "0.1.0", "pid": 7, "uptime_seconds": 65,
            "health": {"state": "degraded", "summary": "2 accounts: 1 active, 1 failed"},
            "accounts": [
                {"account": "work<1>", "kind": "gmail", "state": "running", "phase": "fetching",
                 "health": "active", "progress": {"done": 25, "total": 100, "eta_seconds": 90},
                 "queues": [{"pending": 3, "leased": 1, "delayed": 0, "dead": 0}], "last_sync_ms": 1000},
                {"account": "bad", "kind": "gmail", "state": "failed", "health": "failed",
                 "last_error": "cannot read <secret file>"}
            ],
            "consumers": [{"consumer": "indexer", "acked": 5, "lag": 2}]
        });
        let html = render(&status, 61_000);
        assert!(html.contains("data-account=\"work&lt;1&gt;\" data-health=\"active\""));
        assert!(html.contains("25 / 100 (25%), ETA 1m 30s"));
        assert!(html.contains("style=\"width:25%\""));
        assert!(html.contains("badge badge-failed"));
        assert!(html.contains("cannot read &lt;secret file&gt;"));
        assert!(html.contains("1m 0s ago"));
        assert!(html.contains("data-consumer=\"indexer\""));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
