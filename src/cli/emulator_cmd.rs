//! `mailsync emulator`: serves the Google API emulator on loopback until Ctrl-C, printing the
//! base URL and the pre-provisioned credentials a client needs.

use clap::{Args, ValueEnum};
use mailsync_emulator::{Emulator, EmulatorConfig, QuotaMode, QuotaProfile};
use std::time::Duration;

/// Flags of `mailsync emulator`.
#[derive(Clone, Debug, Args)]
pub struct EmulatorArgs {
    /// Seed of every generated thing (mailbox, ids, faults, mutations).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Messages in the default account's seeded mailbox.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Address to bind (loopback only by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one).
    #[arg(long, default_value_t = 8025)]
    pub port: u16,
    /// Quota enforcement.
    #[arg(long, value_enum, default_value_t = QuotaArg::On)]
    pub quota: QuotaArg,
    /// Cost table and limits.
    #[arg(long, value_enum, default_value_t = ProfileArg::P2026)]
    pub quota_profile: ProfileArg,
    /// Multiplies the per-user per-minute limit (costs stay real).
    #[arg(long, default_value_t = 1.0)]
    pub user_rate_scale: f64,
    /// Background mutations per second (deliver, read, label, archive, delete).
    #[arg(long)]
    pub mutation_rate: Option<f64>,
    /// Official Pub/Sub emulator base URL to publish Gmail notifications to.
    #[arg(long)]
    pub pubsub_endpoint: Option<String>,
    /// Push notifications directly (signed, in Pub/Sub's push shape) to this URL.
    #[arg(long)]
    pub push_endpoint: Option<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub access_token_ttl_secs: u64,
    /// The status of a rate-limit refusal: 429 or 403 (Google uses both).
    #[arg(long, default_value_t = 429, value_parser = parse_rate_limit_status)]
    pub rate_limit_status: u16,
    /// Send no `Retry-After` with rate-limit refusals (tests the client's own pacing).
    #[arg(long)]
    pub no_retry_after: bool,
    /// Strict mode: the per-second sub-limit as a share of the per-minute limit.
    #[arg(long, default_value_t = 1.0 / 6.0)]
    pub strict_second_share: f64,
    /// Requests in flight per user before 429 "Too many concurrent requests for user".
    #[arg(long, default_value_t = 50)]
    pub max_concurrent: usize,
}

fn parse_rate_limit_status(v: &str) -> Result<u16, String> {
    match v {
        "429" => Ok(429),
        "403" => Ok(403),
        other => Err(format!("{other}: the rate-limit status is 429 or 403")),
    }
}

/// `--quota`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QuotaArg {
    /// Enforce quotas (429/403 with Retry-After).
    On,
    /// No quota (raw-speed benchmarks).
    Off,
    /// Sliding windows of actual request times with a per-second sub-limit, refused
    /// requests counted (independent of the client's limiter).
    Strict,
}

/// `--quota-profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// 6,000 units/user/min, messages.get 20 (Google's limits since 1 May 2026).
    #[value(name = "2026")]
    P2026,
    /// 15,000 units/user/min, messages.get 5.
    Legacy,
}

impl EmulatorArgs {
    /// The emulator config these flags describe.
    pub fn config(&self) -> EmulatorConfig {
        EmulatorConfig {
            seed: self.seed,
            messages: self.messages,
            quota: match self.quota {
                QuotaArg::On => QuotaMode::On,
                QuotaArg::Off => QuotaMode::Off,
                QuotaArg::Strict => QuotaMode::Strict,
            },
            quota_profile: match self.quota_profile {
                ProfileArg::P2026 => QuotaProfile::Y2026,
                ProfileArg::Legacy => QuotaProfile::Legacy,
            },
            user_rate_scale: self.user_rate_scale,
            mutation_rate: self.mutation_rate,
            pubsub_endpoint: self.pubsub_endpoint.clone(),
            push_endpoint: self.push_endpoint.clone(),
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            rate_limit_status: self.rate_limit_status,
            send_retry_after: !self.no_retry_after,
            strict_second_share: self.strict_second_share,
            max_concurrent_per_user: self.max_concurrent.max(1),
            ..EmulatorConfig::default()
        }
    }
}

/// Runs the emulator until Ctrl-C or SIGTERM.
pub async fn run(args: EmulatorArgs) -> Result<(), String> {
    let config = args.config();
    let account = config.account.clone();
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot bind {}:{}: {e}", args.host, args.port))?;
    let handle = Emulator::start(config, listener)
        .await
        .map_err(|e| e.to_string())?;
    let refresh = handle.refresh_token(&account).unwrap_or_default();
    println!("mailsync emulator serving {}", handle.base_url());
    println!(
        "  account        {account} ({} messages, seed {})",
        args.messages, args.seed
    );
    println!("  client_id      {}", mailsync_emulator::DEFAULT_CLIENT_ID);
    println!(
        "  client_secret  {}",
        mailsync_emulator::DEFAULT_CLIENT_SECRET
    );
    println!("  refresh_token  {refresh}");
    println!("  token_url      {}/token", handle.base_url());
    println!("  api_base       {}", handle.base_url());
    println!("Point a gmail account's api_base and token_url at it (see README). Ctrl-C stops.");
    wait_for_stop().await;
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_stop() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    #[test]
    fn rate_limit_status_and_retry_after_flags() {
        let c = Cmd::parse_from(["x", "--rate-limit-status", "403", "--no-retry-after"]);
        let config = c.args.config();
        assert_eq!(config.rate_limit_status, 403);
        assert!(!config.send_retry_after);
        let c = Cmd::parse_from(["x"]);
        assert_eq!(c.args.config().rate_limit_status, 429);
        assert!(c.args.config().send_retry_after);
        assert!(Cmd::try_parse_from(["x", "--rate-limit-status", "500"]).is_err());
    }

    #[test]
    fn strict_quota_and_concurrency_flags() {
        let c = Cmd::parse_from([
            "x",
            "--quota",
            "strict",
            "--no-retry-after",
            "--max-concurrent",
            "3",
        ]);
        let config = c.args.config();
        assert_eq!(config.quota, QuotaMode::Strict);
        assert!(!config.send_retry_after);
        assert_eq!(config.max_concurrent_per_user, 3);
        let d = Cmd::parse_from(["x"]).args.config();
        assert_eq!(d.quota, QuotaMode::On);
        assert_eq!(d.max_concurrent_per_user, 50);
    }
}
