//! Logging setup: tracing with structured fields, `pretty` for terminals and `json` for
//! journald or log shippers. `RUST_LOG` overrides the configured level. Secrets never reach
//! this layer: they live in `Secret<T>`, whose Debug and Display print `[redacted]`.

use tracing_subscriber::EnvFilter;

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogStyle {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber (once; later calls are ignored). Logs go to stderr, which
/// systemd captures into the journal.
pub fn init(style: LogStyle, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match style {
        LogStyle::Pretty => builder.with_target(false).try_init(),
        LogStyle::Json => builder.json().flatten_event(true).try_init(),
    };
}
