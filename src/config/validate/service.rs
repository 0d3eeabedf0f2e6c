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

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, load_str_with_env};

    fn env() -> Vec<(&'static str, &'static str)> {
        vec![("HOME", "/home/t")]
    }

    #[test]
    fn metrics_listen_is_parsed_and_checked() {
        let c = load_str_with_env("[metrics]\nlisten = \"127.0.0.1:9464\"\n", "/c.toml", env())
            .expect("valid");
        assert_eq!(
            c.metrics.map(|m| m.listen.to_string()),
            Some("127.0.0.1:9464".into())
        );
        assert!(c.warnings.is_empty());
        assert!(!c.debug.allow_wedge);

        let wide = load_str_with_env("[metrics]\nlisten = \"0.0.0.0:9464\"\n", "/c.toml", env())
            .expect("valid");
        assert!(wide.warnings.iter().any(|w| w.key == "metrics.listen"));

        match load_str_with_env("[metrics]\nlisten = \"localhost\"\n", "/c.toml", env()) {
            Err(ConfigError::Invalid { issues, .. }) => {
                assert_eq!(issues[0].key, "metrics.listen");
                assert!(issues[0].reason.contains("127.0.0.1:9464"), "{issues:?}");
            }
            other => panic!("expected an invalid config, got {other:?}"),
        }
        let d =
            load_str_with_env("[debug]\nallow_wedge = true\n", "/c.toml", env()).expect("valid");
        assert!(d.debug.allow_wedge && d.metrics.is_none());
    }
}
