//! Shared by the bench binaries that compare sled cache sizes (`sync-bench`, `imap-bench`):
//! the config's `[store]` table from an environment variable.

/// `[store] cache_mb` (sled's page cache) from the environment variable `var`, or nothing, so
/// that the daemon's default is measured.
pub fn store_section(var: &str) -> String {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|mb| format!("\n[store]\ncache_mb = {mb}\n"))
        .unwrap_or_default()
}
