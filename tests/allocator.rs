//! The daemon runs with one malloc arena (`mailsync::allocator`): it re-executes itself in
//! place, keeping its pid and arguments, and leaves the allocator alone when told to.

use crate::common::*;

fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read cmdline");
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn the_daemon_re_executes_in_place_with_one_arena() {
    let env = TestEnv::new();
    env.write_config(&test_account("arena", "messages = 3"));
    let d = env.start();
    let vars = environ(d.pid());
    assert!(
        vars.iter()
            .any(|v| v == "GLIBC_TUNABLES=glibc.malloc.arena_max=1"),
        "{vars:?}"
    );
    assert!(
        vars.iter().any(|v| v == "MAILSYNC_MALLOC_ARENAS=1"),
        "{vars:?}"
    );
    // Same pid (the one spawned, which answered status) and the same arguments.
    let args = cmdline(d.pid());
    assert_eq!(
        args[1..],
        ["--config", &env.config_path.to_string_lossy(), "daemon"]
    );
    d.stop();
}

#[test]
fn an_admins_tunables_are_kept_and_the_knob_turns_the_re_exec_off() {
    let env = TestEnv::new();
    env.write_config(&test_account("arena2", "messages = 3"));
    let d = env.start_with_env(&[("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072")]);
    // glibc splits the variable in its own copy of the environment while it parses it, so
    // the ':' may read back as a NUL.
    let raw = environ(d.pid())
        .join("\n")
        .replace("131072\nglibc", "131072:glibc");
    assert!(
        raw.contains("GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072:glibc.malloc.arena_max=1"),
        "{raw}"
    );
    d.stop();
    let d = env.start_with_env(&[("MAILSYNC_MALLOC_ARENAS", "glibc")]);
    let vars = environ(d.pid());
    assert!(
        !vars.iter().any(|v| v.starts_with("GLIBC_TUNABLES=")),
        "{vars:?}"
    );
    assert!(
        vars.iter().any(|v| v == "MAILSYNC_MALLOC_ARENAS=glibc"),
        "{vars:?}"
    );
    d.stop();
}
