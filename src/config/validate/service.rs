//! Validation of the service-facing sections: `[metrics]` (the opt-in loopback HTTP listener
//! for `/metrics` and the status page) and `[debug]` (test hooks that are off by default).

use super::super::raw::{RawDebug, RawMetrics};
use super::super::{DebugConfig, MetricsConfig};
use super::Check;

/// `[metrics]`: `listen` is required and must be `ip:port`; a non-loopback address is allowed
/// but warned about (the endpoint has no authentication).
pub(super) fn metrics(c: &mut Check<'_>, raw: Option<&RawMetrics>) -> Option<MetricsConfig> {
    let raw = raw?;
    let listen = c.required("metrics.listen", raw.listen.as_ref())?;
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => {
            if !addr.ip().is_loopback() {
                c.warnings.push(crate::config::ConfigIssue {
                    key: "metrics.listen".into(),
                    reason: format!(
                        "{addr} is not a loopback address; the metrics and status page have no authentication"
                    ),
                });
            }
            Some(MetricsConfig { listen: addr })
        }
        Err(_) => {
            c.issue(
                "metrics.listen",
                format!("must be an address with a port, like \"127.0.0.1:9464\", got {listen:?}"),
            );
            None
        }
    }
}

/// `[debug]`: every hook defaults to off.
pub(super) fn debug(raw: Option<&RawDebug>) -> DebugConfig {
    DebugConfig {
        allow_wedge: raw.and_then(|d| d.allow_wedge).unwrap_or(false),
    }
}
