//! Standalone emulator: `mailsync-emulator --seed 1 --messages 10000 --port 8080 --quota on`.
//! Prints the base URL and the default credentials, serves until Ctrl-C.

use std::process::ExitCode;
use std::time::Duration;

use mailsync_emulator::{Emulator, EmulatorConfig, QuotaMode, QuotaProfile};

const USAGE: &str = "usage: mailsync-emulator [--host 127.0.0.1] [--port 0] [--seed N] [--messages N] [--account EMAIL]
  [--quota on|off|strict] [--strict-second-share F] [--quota-profile 2026|legacy]
  [--user-rate-scale F] [--max-concurrent N]
  [--rate-limit-status 429|403] [--calendar-rate-limit-status 403|429] [--retry-after on|off]
  [--access-token-ttl SECS] [--history-retention-records N]
  [--pubsub-endpoint URL] [--push-endpoint URL] [--push-audience AUD] [--mutation-rate PER_SEC]
  [--no-auto-consent]";

fn parse(args: &[String]) -> Result<(EmulatorConfig, String, u16), String> {
    let mut c = EmulatorConfig::default();
    let mut host = "127.0.0.1".to_string();
    let mut port = 0u16;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--no-auto-consent" {
            c.auto_consent = false;
            i += 1;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let v = args
            .get(i + 1)
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?
            .clone();
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag {
            "--host" => host = v,
            "--port" => port = v.parse().map_err(|_| format!("bad port {v}"))?,
            "--seed" => c.seed = v.parse().map_err(|_| format!("bad seed {v}"))?,
            "--messages" => c.messages = v.parse().map_err(|_| format!("bad count {v}"))?,
            "--account" => c.account = v,
            "--quota" => {
                c.quota = match v.as_str() {
                    "on" => QuotaMode::On,
                    "off" => QuotaMode::Off,
                    "strict" => QuotaMode::Strict,
                    _ => return Err("--quota on|off|strict".into()),
                }
            }
            "--quota-profile" => {
                c.quota_profile = match v.as_str() {
                    "2026" => QuotaProfile::Y2026,
                    "legacy" => QuotaProfile::Legacy,
                    _ => return Err("--quota-profile 2026|legacy".into()),
                }
            }
            "--user-rate-scale" => c.user_rate_scale = num(&v)?,
            "--strict-second-share" => c.strict_second_share = num(&v)?,
            "--max-concurrent" => c.max_concurrent_per_user = num(&v)? as usize,
            "--rate-limit-status" => c.rate_limit_status = num(&v)? as u16,
            "--calendar-rate-limit-status" => c.calendar_rate_limit_status = num(&v)? as u16,
            "--retry-after" => {
                c.send_retry_after = match v.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err("--retry-after on|off".into()),
                }
            }
            "--access-token-ttl" => c.access_token_ttl = Duration::from_secs_f64(num(&v)?),
            "--history-retention-records" => c.history_retention_records = num(&v)? as usize,
            "--pubsub-endpoint" => c.pubsub_endpoint = Some(v),
            "--push-endpoint" => c.push_endpoint = Some(v),
            "--push-audience" => c.push_audience = Some(v),
            "--mutation-rate" => c.mutation_rate = Some(num(&v)?),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
        i += 2;
    }
    Ok((c, host, port))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, host, port) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let account = config.account.clone();
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot bind {host}:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let emu = match Emulator::start(config, listener).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mailsync emulator listening on {}", emu.base_url());
    println!("account        {account}");
    println!("client_id      {}", mailsync_emulator::DEFAULT_CLIENT_ID);
    println!(
        "client_secret  {}",
        mailsync_emulator::DEFAULT_CLIENT_SECRET
    );
    println!(
        "refresh_token  {}",
        emu.refresh_token(&account).unwrap_or_default()
    );
    println!("token endpoint {}/token", emu.base_url());
    if tokio::signal::ctrl_c().await.is_err() {
        eprintln!("cannot wait for Ctrl-C");
    }
    emu.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn strict_mode_without_retry_after_and_a_concurrency_cap() {
        let (c, _, _) = parse(&args(&[
            "--quota",
            "strict",
            "--retry-after",
            "off",
            "--max-concurrent",
            "4",
            "--strict-second-share",
            "0.25",
        ]))
        .expect("flags");
        assert_eq!(c.quota, QuotaMode::Strict);
        assert!(!c.send_retry_after);
        assert_eq!(c.max_concurrent_per_user, 4);
        assert_eq!(c.strict_second_share, 0.25);
        assert!(parse(&args(&["--quota", "loose"])).is_err());
        assert!(parse(&args(&["--retry-after", "maybe"])).is_err());
    }
}
