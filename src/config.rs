//! Configuration: the TOML file plus MAILSYNC_* overrides, validated into `Config`.
