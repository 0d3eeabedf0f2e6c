//! The allocator's settings for the long-running commands (`daemon`, `demo`): glibc's malloc
//! with one arena instead of its default of eight per core.
//!
//! Why: with many arenas, memory freed by one thread (sled's flusher, a tokio worker) stays
//! cached in that thread's arena while another thread grows its own, so resident memory rises
//! well above what is live. One arena took the peak RSS of a 1,000,000-message full sync from
//! 125–130 MiB to about 104 MiB and of a 100,000-message sync from 76–84 to 65–67 MiB, at the
//! same CPU per message (docs/BENCHMARKS.md, seventeenth session).
//!
//! How, without `unsafe` (no `mallopt`): glibc reads `GLIBC_TUNABLES` once, when the process
//! starts, so the command re-executes its own binary (`/proc/self/exe`, same arguments, same
//! pid) with `glibc.malloc.arena_max=1` added, before any thread or file exists. It leaves the
//! allocator alone when `GLIBC_TUNABLES` already sets `glibc.malloc.arena_max` (the admin's
//! choice wins) or when `MAILSYNC_MALLOC_ARENAS` is set: the re-executed process finds it set
//! (to the value used), which also guarantees a single re-exec. Programs the daemon starts
//! inherit both variables.

use std::ffi::{OsStr, OsString};

/// The tunable this module sets.
pub const ARENA_TUNABLE: &str = "glibc.malloc.arena_max";
/// Set in the re-executed process; set it yourself to keep glibc's default arenas.
pub const ARENAS_ENV: &str = "MAILSYNC_MALLOC_ARENAS";
/// The arenas the daemon runs with.
pub const ARENAS: u32 = 1;

/// The `GLIBC_TUNABLES` value to re-execute with, or `None` when the allocator is to be left
/// as it is (`tunables` already sets the arenas, or `knob` is set).
pub fn tunables_to_set(tunables: Option<&OsStr>, knob: Option<&OsStr>) -> Option<OsString> {
    if knob.is_some() {
        return None;
    }
    let ours = format!("{ARENA_TUNABLE}={ARENAS}");
    match tunables {
        Some(existing) if !existing.is_empty() => {
            let text = existing.to_string_lossy();
            if text
                .split(':')
                .any(|t| t.split('=').next() == Some(ARENA_TUNABLE))
            {
                return None;
            }
            let mut v = existing.to_os_string();
            v.push(":");
            v.push(&ours);
            Some(v)
        }
        _ => Some(OsString::from(ours)),
    }
}

/// Re-executes this process with one malloc arena, unless [`tunables_to_set`] says not to.
/// Returns only when it does not re-execute: `Ok(())` when nothing was to be done, the error
/// when the exec failed (the caller logs it and goes on with glibc's default).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn use_one_arena() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let Some(tunables) = tunables_to_set(
        std::env::var_os("GLIBC_TUNABLES").as_deref(),
        std::env::var_os(ARENAS_ENV).as_deref(),
    ) else {
        return Ok(());
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("mailsync"));
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(ARENAS_ENV, ARENAS.to_string())
        .exec();
    Err(err)
}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn use_one_arena() -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_set(t: Option<&str>, k: Option<&str>) -> Option<String> {
        tunables_to_set(t.map(OsStr::new), k.map(OsStr::new)).map(|v| v.to_string_lossy().into())
    }

    #[test]
    fn unset_tunables_get_one_arena() {
        assert_eq!(
            to_set(None, None).as_deref(),
            Some("glibc.malloc.arena_max=1")
        );
        assert_eq!(
            to_set(Some(""), None).as_deref(),
            Some("glibc.malloc.arena_max=1")
        );
    }

    #[test]
    fn other_tunables_are_kept_and_ours_appended() {
        assert_eq!(
            to_set(Some("glibc.malloc.trim_threshold=131072"), None).as_deref(),
            Some("glibc.malloc.trim_threshold=131072:glibc.malloc.arena_max=1")
        );
    }

    #[test]
    fn an_admins_arena_setting_or_the_knob_leaves_the_allocator_alone() {
        assert_eq!(to_set(Some("glibc.malloc.arena_max=4"), None), None);
        assert_eq!(
            to_set(
                Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2"),
                None
            ),
            None
        );
        assert_eq!(to_set(None, Some("1")), None);
        assert_eq!(to_set(None, Some("glibc")), None);
    }

    #[test]
    fn a_tunable_that_only_starts_like_ours_is_not_ours() {
        assert_eq!(
            to_set(Some("glibc.malloc.arena_max_x=3"), None).as_deref(),
            Some("glibc.malloc.arena_max_x=3:glibc.malloc.arena_max=1")
        );
    }
}
