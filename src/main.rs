//! The `mailsync` binary: parses the command line, sets up logging, and hands over to the
//! library. The only place errors become exit codes: 0 ok, 1 runtime failure, 2 bad config or
//! usage, 3 the store cannot be used (damaged, newer schema), 4 the data directory's disk is full.

use clap::Parser;
use mailsync::cli::{Cli, Command, LogFormatArg};
use mailsync::config::{self, LogFormat};
use mailsync::telemetry::{self, LogStyle};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // sled may panic while it reads a damaged store; that panic is contained and reported as
    // a clear error (exit 3), so it must not also print a panic message and backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(mailsync_actors::store_open::STORE_OPEN_THREAD) {
            return;
        }
        default_hook(info);
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailsync: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(dispatch(cli))
}

fn style(cli: &Cli, configured: Option<LogFormat>) -> LogStyle {
    match (cli.log_format, configured) {
        (Some(LogFormatArg::Json), _) | (None, Some(LogFormat::Json)) => LogStyle::Json,
        _ => LogStyle::Pretty,
    }
}

async fn dispatch(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::CheckConfig => check_config(&cli),
        Command::Store { command } => {
            let (_, cfg) = match load_config(&cli) {
                Ok(v) => v,
                Err(code) => return code,
            };
            telemetry::init(style(&cli, Some(cfg.log_format)), "warn");
            ExitCode::from(mailsync::cli::store_cmd::run(&cfg, command))
        }
        Command::Daemon => daemon(&cli).await,
        Command::Ctl {
            socket,
            json,
            request,
        } => ctl(&cli, socket.clone(), *json, request.clone()).await,
        Command::Auth(args) => {
            let (_, cfg) = match load_config(&cli) {
                Ok(v) => v,
                Err(code) => return code,
            };
            telemetry::init(style(&cli, Some(cfg.log_format)), "warn");
            match mailsync::cli::auth::run(&cfg, args).await {
                Ok(msg) => {
                    println!("{msg}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("mailsync auth: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Emulator(args) => {
            telemetry::init(style(&cli, None), "info");
            match mailsync::cli::emulator_cmd::run(args.clone()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mailsync emulator: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Service(args) => match mailsync::cli::service::run(args) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mailsync service: {e}");
                ExitCode::from(1)
            }
        },
        Command::Completions(args) => {
            mailsync::cli::docs::completions(args.shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => match mailsync::cli::docs::man(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mailsync man: {e}");
                ExitCode::from(1)
            }
        },
        Command::Demo(args) => {
            telemetry::init(style(&cli, None), "warn");
            match mailsync::cli::demo::run(args.clone()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mailsync demo: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn load_config(cli: &Cli) -> Result<(std::path::PathBuf, config::Config), ExitCode> {
    let path = match config::locate(cli.config.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mailsync: {e}");
            return Err(ExitCode::from(2));
        }
    };
    match config::load(&path) {
        Ok(c) => Ok((path, c)),
        Err(e) => {
            eprintln!("mailsync: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn check_config(cli: &Cli) -> ExitCode {
    match load_config(cli) {
        Ok((path, cfg)) => {
            for w in &cfg.warnings {
                println!("warning: {}: {}", w.key, w.reason);
            }
            // Credentials resolve and the data dir is writable (`config/deep_check.rs`).
            let issues = config::deep_check(&cfg);
            if !issues.is_empty() {
                for i in &issues {
                    eprintln!("mailsync: {}: {}: {}", path.display(), i.key, i.reason);
                }
                return ExitCode::from(2);
            }
            println!(
                "{}: ok ({} account(s), data dir {}, socket {})",
                path.display(),
                cfg.accounts.len(),
                cfg.data_dir.display(),
                cfg.socket_path.display()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn daemon(cli: &Cli) -> ExitCode {
    let (path, cfg) = match load_config(cli) {
        Ok(v) => v,
        Err(code) => return code,
    };
    telemetry::init(style(cli, Some(cfg.log_format)), &cfg.log_level);
    let opts = mailsync::daemon::RunOptions {
        config_path: path,
        gmail: mailsync::gmail_port::builder(),
        on_ready: None,
        cancel: tokio_util::sync::CancellationToken::new(),
    };
    match mailsync::daemon::run(cfg, opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mailsync daemon failed.");
            eprintln!("mailsync: {e}");
            let (code, help) = match &e {
                mailsync::daemon::DaemonError::Store(se) => mailsync::cli::store_cmd::exit_for(se),
                _ => (1, None),
            };
            if let Some(help) = help {
                eprintln!("{help}");
            }
            ExitCode::from(code)
        }
    }
}

async fn ctl(
    cli: &Cli,
    socket: Option<std::path::PathBuf>,
    json: bool,
    request: mailsync::control::client::CtlArgs,
) -> ExitCode {
    let socket = match socket {
        Some(s) => s,
        // No config anywhere: a newcomer's `mailsync ctl status` still finds the daemon.
        None if cli.config.is_none()
            && matches!(
                config::locate(None),
                Err(config::ConfigError::NotFound { .. })
            ) =>
        {
            mailsync::control::discover::default_socket()
        }
        None => match load_config(cli) {
            Ok((_, cfg)) => cfg.socket_path,
            Err(code) => return code,
        },
    };
    let mut out = std::io::stdout();
    match mailsync::control::client::run_ctl(&socket, request, json, &mut out).await {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("mailsync ctl: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}
