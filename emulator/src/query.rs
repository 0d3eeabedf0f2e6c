//! Parser and evaluator for the subset of Gmail's search syntax (`q`) that the emulator
//! supports. Terms it cannot evaluate exactly are rejected with a 400 rather than silently
//! matched wrongly, so a client test never passes on a lenient answer.
//!
//! Supported: `newer_than:`/`older_than:` (`Nd`, `Nm` = 30 d, `Ny` = 365 d), `after:`/`before:`
//! (`YYYY/MM/DD` at midnight America/Los_Angeles, as Gmail, or epoch seconds), `label:`, `in:`,
//! `is:` (`unread`, `read`, `starred`, `important`), `from:`, `has:attachment`, `-` negation,
//! implicit AND between terms, quoted values.

use crate::util::days_from_civil;

/// One search term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// internalDate strictly after this epoch ms.
    NewerThan(i64),
    /// internalDate strictly before this epoch ms.
    OlderThan(i64),
    /// internalDate at or after this epoch ms.
    After(i64),
    /// internalDate before this epoch ms.
    Before(i64),
    /// Label by name (normalised) or id.
    Label(String),
    /// `in:` location (lowercase).
    In(String),
    /// `is:` state (lowercase).
    Is(String),
    /// Sender substring (lowercase).
    From(String),
    HasAttachment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub negated: bool,
    pub term: Term,
}

/// A parsed query: all clauses must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub clauses: Vec<Clause>,
    /// `in:anywhere` was given (spam and trash are searched too).
    pub anywhere: bool,
    /// `in:trash`/`in:spam` was given (those are then not hidden).
    pub mentions_spam_trash: bool,
}

/// What a message exposes to the evaluator.
pub struct Candidate<'a> {
    pub internal_date: i64,
    pub label_ids: &'a [String],
    pub from: &'a str,
    pub has_attachment: bool,
}

/// Normalises a label name the way Gmail's `label:` operator spells it.
pub fn normalize_label(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '/' { '-' } else { c })
        .collect()
}

fn tokenize(q: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    for c in q.chars() {
        match c {
            '"' => in_q = !in_q,
            c if c.is_whitespace() && !in_q => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if in_q {
        return Err("unbalanced quote".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn la_offset_ms(days: i64, y: i64) -> i64 {
    // US rules since 2007: DST from the second Sunday of March to the first Sunday of November.
    let weekday = |d: i64| (d + 4).rem_euclid(7); // 0 = Sunday
    let mar1 = days_from_civil(y, 3, 1);
    let second_sun_mar = mar1 + (7 - weekday(mar1)) % 7 + 7;
    let nov1 = days_from_civil(y, 11, 1);
    let first_sun_nov = nov1 + (7 - weekday(nov1)) % 7;
    if days > second_sun_mar && days <= first_sun_nov {
        7 * 3_600_000
    } else {
        8 * 3_600_000
    }
}

fn parse_date(v: &str) -> Result<i64, String> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = v.parse().map_err(|_| format!("bad date {v}"))?;
        return Ok(secs * 1000);
    }
    let parts: Vec<&str> = v.split(['/', '-']).collect();
    if parts.len() != 3 {
        return Err(format!("bad date {v}"));
    }
    let nums: Result<Vec<i64>, _> = parts.iter().map(|p| p.parse::<i64>()).collect();
    let nums = nums.map_err(|_| format!("bad date {v}"))?;
    let (y, m, d) = if parts[0].len() == 4 {
        (nums[0], nums[1], nums[2])
    } else {
        (nums[2], nums[0], nums[1])
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return Err(format!("bad date {v}"));
    }
    let days = days_from_civil(y, m as u32, d as u32);
    Ok(days * 86_400_000 + la_offset_ms(days, y))
}

fn parse_relative(v: &str) -> Result<i64, String> {
    let Some(last) = v.chars().last() else {
        return Err("empty relative time".into());
    };
    let (num, unit) = v.split_at(v.len() - last.len_utf8());
    let n: i64 = num.parse().map_err(|_| format!("bad relative time {v}"))?;
    let day = 86_400_000i64;
    let mult = match unit {
        "d" => day,
        "m" => 30 * day,
        "y" => 365 * day,
        _ => return Err(format!("bad relative time {v}")),
    };
    Ok(n * mult)
}

/// Parses `q` at emulated time `now_ms`.
pub fn parse(q: &str, now_ms: i64) -> Result<Query, String> {
    let mut query = Query::default();
    for tok in tokenize(q)? {
        if tok == "OR" || tok == "AND" || tok.contains(['(', ')', '{', '}']) {
            return Err(format!("operator {tok} is not supported by the emulator"));
        }
        let (negated, body) = match tok.strip_prefix('-') {
            Some(rest) if !rest.is_empty() => (true, rest),
            _ => (false, tok.as_str()),
        };
        let Some((key, value)) = body.split_once(':') else {
            return Err(format!(
                "free-text search ({body}) is not supported by the emulator"
            ));
        };
        if value.is_empty() {
            return Err(format!("empty value for {key}:"));
        }
        let value_l = value.to_lowercase();
        let term = match key.to_ascii_lowercase().as_str() {
            "newer_than" | "newer" => Term::NewerThan(now_ms - parse_relative(&value_l)?),
            "older_than" | "older" => Term::OlderThan(now_ms - parse_relative(&value_l)?),
            "after" => Term::After(parse_date(value)?),
            "before" => Term::Before(parse_date(value)?),
            "label" => Term::Label(normalize_label(value)),
            "in" => {
                match value_l.as_str() {
                    "anywhere" => {
                        query.anywhere = true;
                        continue;
                    }
                    "trash" | "spam" => query.mentions_spam_trash = true,
                    "inbox" | "sent" | "drafts" | "draft" | "starred" | "important" | "chats" => {}
                    other => return Err(format!("in:{other} is not supported by the emulator")),
                }
                Term::In(value_l)
            }
            "is" => match value_l.as_str() {
                "unread" | "read" | "starred" | "important" => Term::Is(value_l),
                other => return Err(format!("is:{other} is not supported by the emulator")),
            },
            "from" => Term::From(value_l),
            "has" if value_l == "attachment" => Term::HasAttachment,
            other => {
                return Err(format!(
                    "operator {other}: is not supported by the emulator"
                ));
            }
        };
        query.clauses.push(Clause { negated, term });
    }
    Ok(query)
}

impl Query {
    /// Evaluates the query; `label_matches(name_or_id, label_ids)` resolves `label:`;
    /// `me` is the mailbox owner (for `from:me`).
    pub fn matches(
        &self,
        c: &Candidate<'_>,
        me: &str,
        label_matches: &dyn Fn(&str, &[String]) -> bool,
    ) -> bool {
        let has = |l: &str| c.label_ids.iter().any(|x| x == l);
        self.clauses.iter().all(|cl| {
            let v = match &cl.term {
                Term::NewerThan(t) => c.internal_date > *t,
                Term::OlderThan(t) => c.internal_date < *t,
                Term::After(t) => c.internal_date >= *t,
                Term::Before(t) => c.internal_date < *t,
                Term::Label(l) => label_matches(l, c.label_ids),
                Term::In(l) => match l.as_str() {
                    "drafts" | "draft" => has("DRAFT"),
                    "chats" => has("CHAT"),
                    other => has(&other.to_ascii_uppercase()),
                },
                Term::Is(s) => match s.as_str() {
                    "unread" => has("UNREAD"),
                    "read" => !has("UNREAD"),
                    other => has(&other.to_ascii_uppercase()),
                },
                Term::From(f) => {
                    if f == "me" {
                        c.from.eq_ignore_ascii_case(me)
                    } else {
                        c.from.to_lowercase().contains(f.as_str())
                    }
                }
                Term::HasAttachment => c.has_attachment,
            };
            v != cl.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_777_593_600_000; // 2026-05-01T00:00:00Z

    #[test]
    fn parses_terms() {
        let q = parse(
            "newer_than:2d -is:unread label:\"Work Projects\" from:Alice@Example.org in:anywhere",
            NOW,
        )
        .unwrap_or_default();
        assert!(q.anywhere);
        assert_eq!(q.clauses.len(), 4);
        assert_eq!(q.clauses[0].term, Term::NewerThan(NOW - 2 * 86_400_000));
        assert!(q.clauses[1].negated);
        assert_eq!(q.clauses[2].term, Term::Label("work-projects".into()));
        assert_eq!(q.clauses[3].term, Term::From("alice@example.org".into()));
    }

    #[test]
    fn dates_are_pacific_midnight_or_epoch() {
        // 2026-01-15 is PST (UTC-8); 2026-07-01 is PDT (UTC-7).
        let jan = parse("after:2026/01/15", NOW).unwrap_or_default();
        assert_eq!(
            jan.clauses[0].term,
            Term::After(days_from_civil(2026, 1, 15) * 86_400_000 + 8 * 3_600_000)
        );
        let jul = parse("before:2026-07-01", NOW).unwrap_or_default();
        assert_eq!(
            jul.clauses[0].term,
            Term::Before(days_from_civil(2026, 7, 1) * 86_400_000 + 7 * 3_600_000)
        );
        let e = parse("after:1700000000", NOW).unwrap_or_default();
        assert_eq!(e.clauses[0].term, Term::After(1_700_000_000_000));
        assert_eq!(
            parse("older_than:1y", NOW).unwrap_or_default().clauses[0].term,
            Term::OlderThan(NOW - 365 * 86_400_000)
        );
    }

    #[test]
    fn rejects_what_it_cannot_evaluate() {
        for bad in [
            "newer_than:2é",
            "hello",
            "subject:x",
            "a OR b",
            "(from:a)",
            "is:snoozed",
            "newer_than:3w",
            "after:2026/13/01",
            "from:",
            "\"open",
        ] {
            assert!(parse(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn evaluates() {
        let labels = vec![
            "INBOX".to_string(),
            "UNREAD".to_string(),
            "Label_3".to_string(),
        ];
        let c = Candidate {
            internal_date: NOW - 86_400_000,
            label_ids: &labels,
            from: "alice@example.org",
            has_attachment: false,
        };
        let lm = |name: &str, ids: &[String]| {
            name == "work-projects" && ids.iter().any(|i| i == "Label_3")
        };
        let ok = |q: &str| {
            parse(q, NOW)
                .map(|q| q.matches(&c, "me@example.com", &lm))
                .unwrap_or(false)
        };
        assert!(ok(
            "newer_than:2d is:unread in:inbox label:work-projects from:alice"
        ));
        assert!(!ok("older_than:2d"));
        assert!(!ok("-in:inbox"));
        assert!(!ok("is:read"));
        assert!(!ok("has:attachment"));
        assert!(!ok("from:me"));
    }
}
