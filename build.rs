//! Build script: records the git commit the binary is built from as `MAILSYNC_GIT_COMMIT`
//! (for `mailsync --version`). Building from a tarball without `.git` (or without git) gives
//! `unknown`; packagers may set `MAILSYNC_GIT_COMMIT` themselves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Watches `path` only if it exists (a missing file would rerun the script on every build).
fn watch(path: &str) {
    if std::path::Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=MAILSYNC_GIT_COMMIT");
    let commit = std::env::var("MAILSYNC_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // Rebuild when HEAD moves: HEAD itself and the ref it points to (worktrees included).
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watch(&head);
    }
    if let Some(name) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &name])
    {
        watch(&path);
    }
    if let Some(packed) = git(&["rev-parse", "--git-common-dir"]) {
        watch(&format!("{packed}/packed-refs"));
    }
    println!("cargo:rustc-env=MAILSYNC_GIT_COMMIT={commit}");
}
