//! Owns the control socket file: creating its directory (0700), binding it (0600), detecting a
//! live daemon on it, replacing a stale one, and removing it at shutdown.
//!
//! The socket is chmod-ed right after `bind`; between the two the file briefly has the
//! umask's mode, which is why the directory we create is 0700: nobody else can reach the
//! socket through it in that window. An existing directory is left as it is (it may be
//! `$XDG_RUNTIME_DIR`, which is already private).

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

use super::ControlError;

/// Binds the control socket at `path`. Must be called inside a tokio runtime.
///
/// - Creates the parent directory with mode 0700 if it does not exist.
/// - If a socket file exists and a daemon accepts a connection on it: `AlreadyRunning`.
/// - If it exists but nobody listens (a crashed daemon left it): it is removed and replaced.
/// - Anything other than a socket at `path` is refused (`NotASocket`), never deleted.
/// - The new socket file gets mode 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| ControlError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => remove_if_stale(path)?,
        Ok(_) => {
            return Err(ControlError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ControlError::Bind {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| match source.kind() {
        // Another daemon bound the path between our probe and our bind.
        ErrorKind::AddrInUse => ControlError::AlreadyRunning {
            path: path.to_path_buf(),
        },
        _ => ControlError::Bind {
            path: path.to_path_buf(),
            source,
        },
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ControlError::Bind {
            path: path.to_path_buf(),
            source,
        }
    })?;
    tracing::debug!(socket = %path.display(), "Control socket bound.");
    Ok(listener)
}

/// Probes an existing socket file: a live listener means another daemon; a refused
/// connection means a stale file, which is removed.
fn remove_if_stale(path: &Path) -> Result<(), ControlError> {
    // A blocking connect is fine here: connecting to a Unix socket either succeeds or fails
    // at once, it never waits on a network.
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ControlError::AlreadyRunning {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused || e.kind() == ErrorKind::NotFound => {
            tracing::info!(socket = %path.display(), "Replacing a stale control socket.");
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(source) => Err(ControlError::Bind {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        Err(source) => Err(ControlError::Bind {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes the socket file at shutdown. Only a socket is removed; failures are logged, since
/// a leftover socket is replaced at the next start anyway.
pub fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(socket = %path.display(), %error, "Cannot remove the control socket.");
            }
        }
        Ok(_) => {
            tracing::warn!(socket = %path.display(), "Not removing the control socket path: it is not a socket.");
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn mode(path: &Path) -> std::io::Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[tokio::test]
    async fn socket_bind_creates_private_dir_and_socket() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("run/mailsync/control.sock");
        let _listener = bind(&path)?;
        assert_eq!(mode(&path)?, 0o600);
        assert_eq!(mode(tmp.path().join("run/mailsync").as_path())?, 0o700);
        Ok(())
    }

    #[tokio::test]
    async fn socket_live_daemon_is_already_running() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("control.sock");
        let _live = bind(&path)?;
        match bind(&path) {
            Err(ControlError::AlreadyRunning { path: p }) => assert_eq!(p, path),
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        // The live socket was left alone.
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn socket_stale_file_is_replaced() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("control.sock");
        // A std listener dropped without unlinking leaves exactly what a crash leaves.
        drop(std::os::unix::net::UnixListener::bind(&path)?);
        assert!(path.exists());
        let listener = bind(&path)?;
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        accepted?;
        connected?;
        Ok(())
    }

    #[tokio::test]
    async fn socket_regular_file_is_not_deleted() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("control.sock");
        std::fs::write(&path, "precious")?;
        assert!(matches!(bind(&path), Err(ControlError::NotASocket { .. })));
        assert_eq!(std::fs::read_to_string(&path)?, "precious");
        remove(&path);
        assert!(path.exists());
        Ok(())
    }

    #[tokio::test]
    async fn socket_remove_deletes_the_socket() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("control.sock");
        let listener = bind(&path)?;
        remove(&path);
        assert!(!path.exists());
        drop(listener);
        remove(&path);
        Ok(())
    }
}
