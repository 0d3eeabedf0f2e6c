//! The Debian package, built and installed on the test machine: a test binary of its own
//! because it changes the system (`dpkg -i` puts mailsync in /usr/bin and its config in
//! /etc/mailsync), so it must not run beside tests that look for config files there (cargo
//! runs test binaries one after another).
//!
//! Builds the .deb from the binary under test (`packaging/debian/build-deb.sh dev`, no second
//! compile), checks it with lintian (no errors), installs it with `dpkg -i` (the maintainer
//! scripts must be harmless without a running systemd), runs `/usr/bin/mailsync --version`,
//! finds `man mailsync`, then removes and purges it and checks nothing is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "mailsync"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
        .unwrap_or(false)
}

#[test]
fn deb_builds_installs_runs_and_purges_cleanly() {
    assert!(
        is_root(),
        "the package test installs a .deb: run it as root (scripts/test does)"
    );
    // The binary under test: <target>/debug/mailsync.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mailsync"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let out_dir = tempfile::tempdir().expect("tempdir");
    run(
        Command::new(Path::new(REPO).join("packaging/debian/build-deb.sh"))
            .args(["dev"])
            .arg(out_dir.path())
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(REPO),
    );
    let deb = std::fs::read_dir(out_dir.path())
        .expect("output dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb was built");

    let info = stdout(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    for path in [
        "./usr/bin/mailsync",
        "./usr/lib/systemd/system/mailsync.service",
        "./usr/lib/systemd/user/mailsync.service",
        "./usr/lib/sysusers.d/mailsync.conf",
        "./usr/lib/tmpfiles.d/mailsync.conf",
        "./etc/mailsync/config.toml",
        "./usr/share/man/man1/mailsync.1.gz",
        "./usr/share/bash-completion/completions/mailsync",
        "./usr/share/zsh/vendor-completions/_mailsync",
        "./usr/share/fish/vendor_completions.d/mailsync.fish",
        "./usr/share/doc/mailsync/operations.md",
    ] {
        assert!(info.contains(path), "the package lacks {path}:\n{info}");
    }
    let conffiles = stdout(&run(Command::new("dpkg-deb")
        .args(["-I"])
        .arg(&deb)
        .arg("conffiles")));
    assert!(
        conffiles.contains("/etc/mailsync/config.toml"),
        "{conffiles}"
    );

    let lint = Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(&deb)
        .output()
        .expect("lintian is installed (scripts/test installs it)");
    let report = stdout(&lint);
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{report}");

    run(Command::new("dpkg").arg("-i").arg(&deb));
    let result = std::panic::catch_unwind(|| {
        let version = stdout(&run(Command::new("/usr/bin/mailsync").arg("--version")));
        assert!(
            version.starts_with(&format!("mailsync {} (commit ", env!("CARGO_PKG_VERSION"))),
            "{version}"
        );
        let page = stdout(&run(Command::new("man").args(["-w", "mailsync"])));
        assert!(page.trim().ends_with("mailsync.1.gz"), "{page}");
        let text = stdout(&run(Command::new("man")
            .arg("mailsync")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")));
        assert!(text.contains("NAME") && text.contains("mailsync"), "{text}");
        // The bash completion is valid shell (zsh and fish are not on the test machine).
        run(Command::new("bash")
            .arg("-n")
            .arg("/usr/share/bash-completion/completions/mailsync"));
        // The maintainer scripts made the service user.
        run(Command::new("getent").args(["passwd", "mailsync"]));
        assert!(Path::new("/etc/mailsync/config.toml").is_file());
    });

    run(Command::new("dpkg").args(["-r", "mailsync"]));
    assert!(
        !Path::new("/usr/bin/mailsync").exists(),
        "binary left after remove"
    );
    assert!(
        Path::new("/etc/mailsync/config.toml").exists(),
        "remove must keep the conffile"
    );
    run(Command::new("dpkg").args(["-P", "mailsync"]));
    assert!(!installed(), "still known to dpkg after purge");
    assert!(
        !Path::new("/etc/mailsync").exists(),
        "config left after purge"
    );
    assert!(
        !Path::new("/var/lib/mailsync").exists(),
        "state dir left after purge"
    );
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
