//! Finding the daemon's socket when `mailsync ctl` has no config to read it from: the
//! per-user socket `$XDG_RUNTIME_DIR/mailsync/control.sock` (a desktop or `systemd --user`
//! daemon), then the system service's `/run/mailsync/control.sock`.

use std::path::{Path, PathBuf};

/// The system service's socket (`RuntimeDirectory=mailsync` in the unit).
pub const SYSTEM_SOCKET: &str = "/run/mailsync/control.sock";

/// The default sockets, in lookup order, for the given `$XDG_RUNTIME_DIR`.
pub fn candidates(xdg_runtime_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(run) = xdg_runtime_dir.filter(|p| p.is_absolute()) {
        out.push(run.join("mailsync").join("control.sock"));
    }
    out.push(PathBuf::from(SYSTEM_SOCKET));
    out
}

/// The first candidate that exists, else the first candidate (so the error names it).
pub fn default_socket() -> PathBuf {
    let run = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    pick(&candidates(run.as_deref()), |p| p.exists())
}

fn pick(candidates: &[PathBuf], exists: impl Fn(&Path) -> bool) -> PathBuf {
    candidates
        .iter()
        .find(|p| exists(p))
        .or_else(|| candidates.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_socket_first_then_system() {
        let c = candidates(Some(Path::new("/run/user/1000")));
        assert_eq!(
            c,
            vec![
                PathBuf::from("/run/user/1000/mailsync/control.sock"),
                PathBuf::from(SYSTEM_SOCKET)
            ]
        );
        assert_eq!(pick(&c, |p| p == Path::new(SYSTEM_SOCKET)), c[1]);
        assert_eq!(pick(&c, |_| false), c[0]);
        assert_eq!(candidates(None), vec![PathBuf::from(SYSTEM_SOCKET)]);
        assert_eq!(candidates(Some(Path::new("relative"))).len(), 1);
    }
}
