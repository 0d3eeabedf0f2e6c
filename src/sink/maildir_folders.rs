//! How the Maildir sink lays out IMAP accounts: one Maildir per folder under the account's
//! directory (Maildir++ style: INBOX is the account's own Maildir, `Sent` is `.Sent/`,
//! `Archive/2024` is `.Archive.2024/`), and IMAP flags as Maildir flags (`\Draft` D,
//! `\Flagged` F, `$Forwarded` P, `\Answered` R, `\Seen` S, `\Deleted` T). A message is an IMAP
//! one when its mirror labels carry the folder label (`imap.folder:<name>`).

use mailsync_actors::imap::store::FOLDER_LABEL_PREFIX;
use mailsync_actors::model::LabelId;
use std::path::{Path, PathBuf};

/// Every Maildir flag an IMAP account's files carry comes from the server.
pub const IMAP_MANAGED_FLAGS: &str = "DFPRST";

/// The folder of an IMAP message, from its labels.
pub fn imap_folder(labels: &[LabelId]) -> Option<&str> {
    labels
        .iter()
        .find_map(|l| l.0.strip_prefix(FOLDER_LABEL_PREFIX))
}

/// Maildir flags for IMAP flags, sorted.
pub fn imap_flags(labels: &[LabelId]) -> String {
    let has = |f: &str| labels.iter().any(|l| l.0.eq_ignore_ascii_case(f));
    let mut out = String::new();
    for (flag, c) in [
        ("\\Draft", 'D'),
        ("\\Flagged", 'F'),
        ("$Forwarded", 'P'),
        ("\\Answered", 'R'),
        ("\\Seen", 'S'),
        ("\\Deleted", 'T'),
    ] {
        if has(flag) {
            out.push(c);
        }
    }
    out
}

/// The directory of a folder's Maildir below the account's directory (`None` = INBOX, the
/// account directory itself). Bytes outside `[A-Za-z0-9 _,&+-]` are escaped as `=XX`; the
/// hierarchy delimiter `/` becomes `.`.
pub fn folder_dir_name(folder: &str) -> Option<String> {
    if folder.eq_ignore_ascii_case("INBOX") {
        return None;
    }
    let mut out = String::from(".");
    for b in folder.bytes() {
        match b {
            b'/' => out.push('.'),
            b if b.is_ascii_alphanumeric() || b" _,&+-".contains(&b) => out.push(char::from(b)),
            b => out.push_str(&format!("={b:02X}")),
        }
    }
    Some(out)
}

/// The Maildir of `folder` in `account_dir`.
pub fn folder_dir(account_dir: &Path, folder: &str) -> PathBuf {
    match folder_dir_name(folder) {
        None => account_dir.to_path_buf(),
        Some(name) => account_dir.join(name),
    }
}

/// Moves a renamed folder's Maildir to its new name (idempotent: nothing to move when the old
/// directory is gone). When the new directory exists already, the files are moved into it one
/// by one (same file system, so each `rename` is atomic) and the old directory is removed.
/// INBOX is never moved (renaming INBOX moves its messages, which their own events carry).
/// Returns whether anything moved; the caller fsyncs the account directory.
pub fn rename_folder_dir(account_dir: &Path, from: &str, to: &str) -> std::io::Result<bool> {
    let (Some(_), Some(_)) = (folder_dir_name(from), folder_dir_name(to)) else {
        return Ok(false);
    };
    let src = folder_dir(account_dir, from);
    let dst = folder_dir(account_dir, to);
    if !src.is_dir() {
        return Ok(false);
    }
    if !dst.exists() {
        std::fs::rename(&src, &dst)?;
        return Ok(true);
    }
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(src.join(sub)) else {
            continue;
        };
        std::fs::create_dir_all(dst.join(sub))?;
        for e in entries.flatten() {
            std::fs::rename(e.path(), dst.join(sub).join(e.file_name()))?;
        }
    }
    std::fs::remove_dir_all(&src)?;
    Ok(true)
}

/// The folder Maildirs that exist below an account directory (not the account's own).
pub fn existing_folder_dirs(account_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(account_dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.len() > 1)
                && e.path().join("cur").is_dir()
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(names: &[&str]) -> Vec<LabelId> {
        names.iter().map(|n| LabelId((*n).to_string())).collect()
    }

    #[test]
    fn imap_layout_and_flags() {
        assert_eq!(folder_dir_name("INBOX"), None);
        assert_eq!(folder_dir_name("Sent").as_deref(), Some(".Sent"));
        assert_eq!(
            folder_dir_name("Archive/2024").as_deref(),
            Some(".Archive.2024")
        );
        assert_eq!(folder_dir_name("..").as_deref(), Some(".=2E=2E"));
        assert_eq!(
            imap_flags(&l(&[
                "\\Seen",
                "\\Answered",
                "imap.folder:INBOX",
                "$Forwarded"
            ])),
            "PRS"
        );
        assert_eq!(
            imap_folder(&l(&["\\Seen", "imap.folder:Sent"])),
            Some("Sent")
        );
        assert_eq!(imap_folder(&l(&["UNREAD"])), None);
    }

    #[test]
    fn renamed_folders_move_their_maildir() {
        let root = tempfile::tempdir().expect("tempdir");
        let old = folder_dir(root.path(), "Projects");
        std::fs::create_dir_all(old.join("cur")).expect("mkdir");
        std::fs::write(old.join("cur").join("a:2,S"), b"x").expect("write");
        assert!(rename_folder_dir(root.path(), "Projects", "Work/Projects").expect("rename"));
        let new = folder_dir(root.path(), "Work/Projects");
        assert!(new.join("cur").join("a:2,S").is_file());
        assert!(!old.exists());
        // Replayed: nothing left to move.
        assert!(!rename_folder_dir(root.path(), "Projects", "Work/Projects").expect("again"));
        // Into an existing directory: merged file by file.
        std::fs::create_dir_all(old.join("cur")).expect("mkdir");
        std::fs::write(old.join("cur").join("b:2,"), b"y").expect("write");
        assert!(rename_folder_dir(root.path(), "Projects", "Work/Projects").expect("merge"));
        assert!(new.join("cur").join("b:2,").is_file() && new.join("cur").join("a:2,S").is_file());
        assert!(!old.exists());
        assert!(!rename_folder_dir(root.path(), "INBOX", "Old").expect("inbox"));
    }
}
