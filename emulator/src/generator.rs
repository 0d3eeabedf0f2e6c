//! Seeded synthetic data: mailbox plans (ids, threads, dates, labels) and on-demand rendering
//! of each message's RFC 2822 bytes from `(seed, account, index)`, so 100k+ message mailboxes
//! cost only their metadata in memory. Also seeded calendars (single, all-day, recurring).
//!
//! Everything here is a pure function of its inputs: same seed, same bytes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::util::{b64std, hash64, rfc2822};

/// How a generated message is rendered; stored in the mailbox metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenInfo {
    pub index: u32,
    pub thread_root: u32,
    pub pos: u32,
    pub internal_date: i64,
}

/// Traits of message `index` that do not depend on its place in the mailbox.
#[derive(Debug, Clone)]
pub struct Traits {
    pub sent: bool,
    pub sender: usize,
    pub variant: Variant,
    pub body_seed: u64,
}

/// MIME layout of a generated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    PlainAscii,
    PlainQuotedPrintable,
    Alternative,
    MixedWithPdf,
    MixedWithImage,
    /// Declared multipart whose closing delimiter is missing.
    BrokenUnterminated,
    /// Declared multipart without a boundary parameter.
    BrokenNoBoundary,
}

impl Variant {
    pub fn has_attachment(self) -> bool {
        matches!(self, Variant::MixedWithPdf | Variant::MixedWithImage)
    }
}

const SENDERS: &[(&str, &str)] = &[
    ("Alice Johnson", "alice@example.org"),
    ("Bob Smith", "bob@example.net"),
    ("José Álvarez", "jose@example.es"),
    ("Zoë Müller", "zoe@example.de"),
    ("田中 太郎", "tanaka@example.jp"),
    ("Ольга Петрова", "olga@example.ru"),
    ("GitHub", "notifications@github.example"),
    ("Shop", "no-reply@shop.example"),
    ("Åsa Öberg", "asa@example.se"),
    ("Weekly News", "digest@news.example"),
];

const SUBJECTS: &[&str] = &[
    "Quarterly planning",
    "Your order has shipped",
    "Réunion de lundi",
    "Angebot für Sie – 20 % Rabatt",
    "会議の議事録",
    "Ваш заказ отправлен",
    "Weekly update",
    "Invoice available",
    "Trip to Zürich",
    "[repo] Pull request opened",
    "Lunch?",
    "Photos from the weekend",
];

const SENTENCES: &[&str] = &[
    "Thanks for the quick reply.",
    "Please find the details below.",
    "Let me know if anything is unclear & I'll follow up.",
    "The meeting moved to 3 pm <Room 4>.",
    "Voilà, c'est fait — à bientôt.",
    "Grüße aus München!",
    "よろしくお願いします。",
    "Спасибо за ваш заказ.",
    "Your package will arrive on Tuesday.",
    "Here is the summary you asked for.",
];

/// Stable per-account hash mixed into every seed.
pub fn account_hash(seed: u64, account: &str) -> u64 {
    hash64(&[&seed.to_le_bytes(), account.as_bytes()])
}

fn rng_for(ah: u64, kind: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        ah ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
    )
}

/// Traits of message `index` of the account with hash `ah`.
pub fn traits(ah: u64, index: u32) -> Traits {
    let mut r = rng_for(ah, 1, u64::from(index));
    let sent = r.random_bool(0.1);
    let sender = r.random_range(0..SENDERS.len());
    let v: f64 = r.random();
    let variant = if v < 0.20 {
        Variant::PlainAscii
    } else if v < 0.32 {
        Variant::PlainQuotedPrintable
    } else if v < 0.67 {
        Variant::Alternative
    } else if v < 0.85 {
        Variant::MixedWithPdf
    } else if v < 0.97 {
        Variant::MixedWithImage
    } else if v < 0.985 {
        Variant::BrokenUnterminated
    } else {
        Variant::BrokenNoBoundary
    };
    Traits {
        sent,
        sender,
        variant,
        body_seed: r.random(),
    }
}

/// Subject shared by a thread.
pub fn thread_subject(ah: u64, root: u32) -> &'static str {
    let mut r = rng_for(ah, 2, u64::from(root));
    SUBJECTS[r.random_range(0..SUBJECTS.len())]
}

/// Sender address (lowercase) of a message with the given traits.
pub fn from_address(t: &Traits, account: &str) -> String {
    if t.sent {
        account.to_ascii_lowercase()
    } else {
        SENDERS[t.sender].1.to_string()
    }
}

/// Labels of a seeded message (system labels plus some user labels `Label_1..Label_5`).
pub fn seeded_labels(ah: u64, index: u32, t: &Traits) -> Vec<String> {
    let mut r = rng_for(ah, 3, u64::from(index));
    let mut l: Vec<&str> = Vec::new();
    if t.sent {
        l.push("SENT");
        if r.random_bool(0.02) {
            l.push("DRAFT");
        }
    } else {
        let x: f64 = r.random();
        if x < 0.02 {
            l.push("SPAM");
        } else if x < 0.04 {
            l.push("TRASH");
        } else if x < 0.74 {
            l.push("INBOX");
        }
        if r.random_bool(0.3) {
            l.push("UNREAD");
        }
        if r.random_bool(0.2) {
            l.push("IMPORTANT");
        }
        const CATS: [&str; 5] = [
            "CATEGORY_PERSONAL",
            "CATEGORY_SOCIAL",
            "CATEGORY_PROMOTIONS",
            "CATEGORY_UPDATES",
            "CATEGORY_FORUMS",
        ];
        l.push(CATS[r.random_range(0..CATS.len())]);
    }
    if r.random_bool(0.05) {
        l.push("STARRED");
    }
    let user: u32 = r.random_range(0..12);
    let user_label = if (1..=5).contains(&user) {
        Some(format!("Label_{user}"))
    } else {
        None
    };
    let mut out: Vec<String> = l.into_iter().map(String::from).collect();
    out.extend(user_label);
    out.sort();
    out
}

/// The five seeded user labels: (id, name).
pub const USER_LABELS: &[(&str, &str)] = &[
    ("Label_1", "Receipts"),
    ("Label_2", "Travel"),
    ("Label_3", "Work/Projects"),
    ("Label_4", "Família"),
    ("Label_5", "Newsletters"),
];

/// One planned seeded message.
#[derive(Debug, Clone)]
pub struct Planned {
    pub info: GenInfo,
    pub labels: Vec<String>,
    pub from: String,
    pub has_attachment: bool,
}

/// Plans `n` seeded messages, oldest first, dates spread over `span_days` ending at `anchor_ms`.
pub fn plan_mailbox(
    ah: u64,
    account: &str,
    n: usize,
    anchor_ms: i64,
    span_days: u32,
) -> Vec<Planned> {
    plan_messages(ah, account, n, anchor_ms, span_days).collect()
}

/// [`plan_mailbox`] one message at a time, so a mailbox of a million messages is generated
/// without a second copy of its plan.
pub fn plan_messages(
    ah: u64,
    account: &str,
    n: usize,
    anchor_ms: i64,
    span_days: u32,
) -> impl Iterator<Item = Planned> + '_ {
    let mut r = rng_for(ah, 4, 0);
    let span_ms = i64::from(span_days.max(1)) * 86_400_000;
    let start = anchor_ms - span_ms;
    let step = (span_ms / (n.max(1) as i64)).max(1);
    let mut recent_roots: Vec<(u32, u32)> = Vec::new(); // (root, count)
    (0..n).map(move |i| {
        let idx = i as u32;
        let date = start + step * i as i64 + r.random_range(0..step.max(2) / 2);
        let (root, pos) = if !recent_roots.is_empty() && r.random_bool(0.35) {
            let k = r.random_range(0..recent_roots.len());
            recent_roots[k].1 += 1;
            (recent_roots[k].0, recent_roots[k].1 - 1)
        } else {
            recent_roots.push((idx, 1));
            if recent_roots.len() > 5 {
                recent_roots.remove(0);
            }
            (idx, 0)
        };
        let t = traits(ah, idx);
        Planned {
            info: GenInfo {
                index: idx,
                thread_root: root,
                pos,
                internal_date: date,
            },
            labels: seeded_labels(ah, idx, &t),
            from: from_address(&t, account),
            has_attachment: t.variant.has_attachment(),
        }
    })
}

/// RFC 2047 encoded word for non-ASCII text (B or Q chosen by `use_b`).
pub fn encode_word(s: &str, use_b: bool) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    if use_b {
        format!("=?UTF-8?B?{}?=", b64std(s.as_bytes()))
    } else {
        let mut q = String::new();
        for b in s.bytes() {
            match b {
                b' ' => q.push('_'),
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => q.push(b as char),
                _ => q.push_str(&format!("={b:02X}")),
            }
        }
        format!("=?UTF-8?Q?{q}?=")
    }
}

fn quoted_printable(s: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for b in s.bytes() {
        let piece = match b {
            b'\n' => {
                out.push_str("\r\n");
                line_len = 0;
                continue;
            }
            b'=' => "=3D".to_string(),
            33..=126 | b' ' => (b as char).to_string(),
            _ => format!("={b:02X}"),
        };
        if line_len + piece.len() > 73 {
            out.push_str("=\r\n");
            line_len = 0;
        }
        line_len += piece.len();
        out.push_str(&piece);
    }
    out
}

fn wrap76(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 76 * 2 + 2);
    let bytes = s.as_bytes();
    for chunk in bytes.chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push_str("\r\n");
    }
    out
}

fn body_text(r: &mut ChaCha8Rng, index: u32) -> String {
    let n = r.random_range(2..8);
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(SENTENCES[r.random_range(0..SENTENCES.len())]);
        s.push(' ');
    }
    s.push_str(&format!("\n\nRef #{index}\n"));
    s
}

/// Renders the RFC 2822 bytes of a generated message.
pub fn render(ah: u64, account: &str, info: &GenInfo) -> Vec<u8> {
    let t = traits(ah, info.index);
    let mut r = ChaCha8Rng::seed_from_u64(t.body_seed);
    let (from_name, from_addr) = if t.sent {
        ("Demo User", account)
    } else {
        SENDERS[t.sender]
    };
    let (to_name, to_addr) = if t.sent {
        SENDERS[t.sender]
    } else {
        ("Demo User", account)
    };
    let subject = thread_subject(ah, info.thread_root);
    let subject = if info.pos > 0 {
        format!("Re: {subject}")
    } else {
        subject.to_string()
    };
    let use_b = info.index.is_multiple_of(2);
    let msgid = |i: u32| format!("<gen-{i}-{:08x}@mail.example>", ah as u32);
    let mut h = String::new();
    h.push_str("MIME-Version: 1.0\r\n");
    h.push_str(&format!("Date: {}\r\n", rfc2822(info.internal_date)));
    h.push_str(&format!(
        "From: {} <{from_addr}>\r\n",
        encode_word(from_name, use_b)
    ));
    h.push_str(&format!(
        "To: {} <{to_addr}>\r\n",
        encode_word(to_name, !use_b)
    ));
    h.push_str(&format!("Subject: {}\r\n", encode_word(&subject, use_b)));
    h.push_str(&format!("Message-ID: {}\r\n", msgid(info.index)));
    if info.pos > 0 {
        h.push_str(&format!(
            "In-Reply-To: {}\r\nReferences: {}\r\n",
            msgid(info.thread_root),
            msgid(info.thread_root)
        ));
    }
    let text = body_text(&mut r, info.index);
    let html = format!(
        "<html><body><p>{}</p></body></html>",
        crate::util::html_escape(&text).replace('\n', "<br>")
    );
    let boundary = format!("b1_{:016x}", t.body_seed);
    let boundary2 = format!("b2_{:016x}", t.body_seed);
    let plain_part = |b: &mut String| {
        b.push_str("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
        b.push_str(&quoted_printable(&text));
        b.push_str("\r\n");
    };
    let html_part = |b: &mut String| {
        b.push_str(
            "Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        );
        b.push_str(&wrap76(&b64std(html.as_bytes())));
    };
    let mut body = String::new();
    match t.variant {
        Variant::PlainAscii => {
            let ascii: String = text
                .chars()
                .map(|c| if c.is_ascii() { c } else { '?' })
                .collect();
            h.push_str(
                "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n",
            );
            body.push_str(&ascii.replace('\n', "\r\n"));
        }
        Variant::PlainQuotedPrintable => {
            h.push_str("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n");
            body.push_str(&quoted_printable(&text));
            body.push_str("\r\n");
        }
        Variant::Alternative | Variant::BrokenUnterminated => {
            h.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n"
            ));
            body.push_str(&format!("--{boundary}\r\n"));
            plain_part(&mut body);
            body.push_str(&format!("--{boundary}\r\n"));
            html_part(&mut body);
            if t.variant == Variant::Alternative {
                body.push_str(&format!("--{boundary}--\r\n"));
            }
        }
        Variant::MixedWithPdf | Variant::MixedWithImage => {
            h.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n"
            ));
            body.push_str("This is a multi-part message in MIME format.\r\n");
            body.push_str(&format!("--{boundary}\r\n"));
            if t.variant == Variant::MixedWithPdf {
                body.push_str(&format!(
                    "Content-Type: multipart/alternative; boundary=\"{boundary2}\"\r\n\r\n"
                ));
                body.push_str(&format!("--{boundary2}\r\n"));
                plain_part(&mut body);
                body.push_str(&format!("--{boundary2}\r\n"));
                html_part(&mut body);
                body.push_str(&format!("--{boundary2}--\r\n"));
            } else {
                plain_part(&mut body);
            }
            body.push_str(&format!("--{boundary}\r\n"));
            let size = r.random_range(512..6_000usize);
            let mut data: Vec<u8> = Vec::with_capacity(size + 16);
            let (ctype, fname) = if t.variant == Variant::MixedWithPdf {
                data.extend_from_slice(b"%PDF-1.4\n");
                ("application/pdf", format!("invoice-{}.pdf", info.index))
            } else {
                data.extend_from_slice(b"\x89PNG\r\n\x1a\n");
                ("image/png", format!("photo-{}.png", info.index))
            };
            while data.len() < size {
                data.push(r.random());
            }
            let fname_enc = if info.index.is_multiple_of(3) {
                format!("Résumé-{}.pdf", info.index)
            } else {
                fname
            };
            let fname_hdr = encode_word(&fname_enc, true);
            body.push_str(&format!(
                "Content-Type: {ctype}; name=\"{fname_hdr}\"\r\nContent-Disposition: attachment; filename=\"{fname_hdr}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            ));
            body.push_str(&wrap76(&b64std(&data)));
            body.push_str(&format!("--{boundary}--\r\n"));
        }
        Variant::BrokenNoBoundary => {
            h.push_str("Content-Type: multipart/mixed\r\n");
            body.push_str("--orphan\r\nContent-Type: text/plain\r\n\r\n");
            body.push_str(&text.replace('\n', "\r\n"));
        }
    }
    let mut out = h.into_bytes();
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// A seeded calendar event description (the calendar module turns it into its own type).
#[derive(Debug, Clone)]
pub struct PlannedEvent {
    pub id: String,
    pub summary: String,
    /// `Some(yyyy-mm-dd)` for all-day events.
    pub all_day: Option<(i64, i64)>,
    /// Timed start/end epoch ms.
    pub start_ms: i64,
    pub end_ms: i64,
    pub recurrence: Option<String>,
}

const EVENT_TITLES: &[&str] = &[
    "Stand-up",
    "1:1 with Alice",
    "Dentist",
    "Vacances d'été",
    "Team offsite",
    "Geburtstag Zoë",
    "Project review",
    "Yoga",
];

/// Plans `n` seeded events around `anchor_ms` for the calendar `cal_key`.
pub fn plan_events(ah: u64, cal_key: &str, n: usize, anchor_ms: i64) -> Vec<PlannedEvent> {
    let mut r = rng_for(ah ^ hash64(&[cal_key.as_bytes()]), 5, 0);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{:026x}", (u128::from(r.random::<u64>()) << 40) | i as u128)
            .chars()
            .map(|c| {
                if c.is_ascii_digit() || ('a'..='f').contains(&c) {
                    c
                } else {
                    '0'
                }
            })
            .collect::<String>();
        let day = r.random_range(-60i64..60);
        let kind: f64 = r.random();
        let summary = EVENT_TITLES[r.random_range(0..EVENT_TITLES.len())].to_string();
        let day_start = (anchor_ms / 86_400_000 + day) * 86_400_000;
        if kind < 0.2 {
            let days = r.random_range(1..4);
            let d0 = day_start / 86_400_000;
            out.push(PlannedEvent {
                id,
                summary,
                all_day: Some((d0, d0 + days)),
                start_ms: day_start,
                end_ms: day_start + days * 86_400_000,
                recurrence: None,
            });
        } else {
            let start = day_start + r.random_range(7..19) * 3_600_000;
            let end = start + r.random_range(1..4) * 1_800_000;
            let recurrence = if kind > 0.8 {
                Some(if r.random_bool(0.5) {
                    format!("RRULE:FREQ=WEEKLY;COUNT={}", r.random_range(3..10))
                } else {
                    format!("RRULE:FREQ=DAILY;COUNT={}", r.random_range(2..6))
                })
            } else {
                None
            };
            out.push(PlannedEvent {
                id,
                summary,
                all_day: None,
                start_ms: start,
                end_ms: end,
                recurrence,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_plans_and_bytes() {
        let ah = account_hash(7, "a@example.com");
        let p1 = plan_mailbox(ah, "a@example.com", 300, 1_777_593_600_000, 30);
        let p2 = plan_mailbox(ah, "a@example.com", 300, 1_777_593_600_000, 30);
        assert_eq!(p1.len(), 300);
        for (a, b) in p1.iter().zip(&p2) {
            assert_eq!(a.info, b.info);
            assert_eq!(a.labels, b.labels);
            assert_eq!(
                render(ah, "a@example.com", &a.info),
                render(ah, "a@example.com", &b.info)
            );
        }
        // Dates increase, threads exist, a different seed gives different bytes.
        assert!(
            p1.windows(2)
                .all(|w| w[0].info.internal_date < w[1].info.internal_date)
        );
        assert!(p1.iter().any(|p| p.info.pos > 0));
        let other = account_hash(8, "a@example.com");
        assert_ne!(
            render(ah, "a@example.com", &p1[0].info),
            render(other, "a@example.com", &p1[0].info)
        );
        let e1 = plan_events(ah, "primary", 20, 1_777_593_600_000);
        let e2 = plan_events(ah, "primary", 20, 1_777_593_600_000);
        assert_eq!(
            e1.iter().map(|e| &e.id).collect::<Vec<_>>(),
            e2.iter().map(|e| &e.id).collect::<Vec<_>>()
        );
    }

    #[test]
    fn variety() {
        let ah = account_hash(1, "demo@example.com");
        let mut variants = std::collections::HashSet::new();
        for i in 0..400 {
            variants.insert(format!("{:?}", traits(ah, i).variant));
        }
        assert!(variants.len() >= 6, "{variants:?}");
        assert_eq!(encode_word("Zoë", false), "=?UTF-8?Q?Zo=C3=AB?=");
    }
}
