//! A small tmpfs mounted by a test (CI runs as root), grown on demand and unmounted when the
//! guard drops, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mb` MiB at `path` (created). `None` (with the reason printed) when
    /// mounting is not permitted here, so the caller can skip.
    pub fn mount(path: &Path, mb: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root): {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Grows (or shrinks) the file system to `mb` MiB.
    pub fn resize(&self, mb: u64) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={mb}m")])
            .arg(&self.path)
            .status()
            .expect("mount -o remount");
        assert!(st.success(), "remount to {mb} MiB failed");
    }

    /// Bytes available.
    pub fn available(&self) -> u64 {
        mailsync_actors::disk_space::read_space(&self.path, Default::default())
            .map(|r| r.available)
            .unwrap_or(0)
    }

    /// Fills the file system completely with a filler file; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}
