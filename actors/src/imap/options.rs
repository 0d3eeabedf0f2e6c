//! Which folders of an IMAP account are synced and in which order, and the account's options:
//! include / exclude patterns (LIST wildcards), recent-first depth, step bounds, IDLE folders
//! and the STATUS poll schedule's bounds.

use crate::imap::folder_sync::Limits;
use crate::imap::store::FolderState;
use std::time::Duration;

/// Options of an IMAP account.
#[derive(Clone, Debug)]
pub struct ImapOptions {
    /// Folder patterns to sync (`*` any run, `%` any run without the hierarchy delimiter).
    pub include: Vec<String>,
    /// Folder patterns to leave out (win over `include`).
    pub exclude: Vec<String>,
    /// The newest messages of each folder synced before the rest of any folder.
    pub recent_first: u64,
    /// Bounds of a step.
    pub limits: Limits,
    /// IDLE on these folders (within the pool bound), when the server offers IDLE.
    pub idle_folders: Vec<String>,
    /// How long one IDLE lasts before it is re-issued (at most 29 min).
    pub idle_max: Duration,
    /// STATUS poll interval of a quiet folder: from this …
    pub poll_min: Duration,
    /// … doubling up to this (`poll.rs`).
    pub poll_max: Duration,
}

impl Default for ImapOptions {
    fn default() -> Self {
        ImapOptions {
            include: vec!["*".into()],
            exclude: Vec::new(),
            recent_first: 1_000,
            limits: Limits {
                page_uids: 500,
                pages_per_select: 10,
                chunk: 100,
                chunk_bytes: 20 * 1024 * 1024,
            },
            idle_folders: vec!["INBOX".into()],
            idle_max: Duration::from_secs(25 * 60),
            poll_min: Duration::from_secs(60),
            poll_max: Duration::from_secs(15 * 60),
        }
    }
}

/// Matches an IMAP LIST-style pattern: `*` any run, `%` any run without `/` or `.`.
pub fn folder_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('%', rest)) => (0..=n.len())
                .take_while(|i| *i == 0 || !matches!(n[i - 1], '/' | '.'))
                .any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first().is_some_and(|x| x == c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if pattern.eq_ignore_ascii_case("INBOX") {
        return name.eq_ignore_ascii_case("INBOX");
    }
    go(&p, &n)
}

/// Sync order: INBOX, flagged / important folders, others, junk and trash last.
pub(crate) fn folder_rank(f: &FolderState) -> u8 {
    if f.name.eq_ignore_ascii_case("INBOX") {
        return 0;
    }
    match f
        .special_use
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("\\flagged") | Some("\\important") => 1,
        Some("\\junk") | Some("\\trash") => 3,
        _ => 2,
    }
}
