//! `mailsync auth ACCOUNT`: the desktop loopback OAuth flow with PKCE for a gmail account of
//! the config. Prints the authorization URL (and tries to open a browser), waits for the
//! redirect on 127.0.0.1, exchanges the code and stores the refresh token in the file the
//! account's `refresh_token = { file = ... }` names, with mode 0600. Then `mailsync ctl resume`
//! (or a reload) makes a disconnected account use it.

use crate::config::{AccountSettings, Config, CredentialRef};
use crate::google::{LoopbackFlow, store_refresh_token};
use clap::Args;
use std::time::Duration;

/// Flags of `mailsync auth`.
#[derive(Clone, Debug, Args)]
pub struct AuthArgs {
    /// The account id from the config.
    pub account: String,
    /// Do not try to open a browser; only print the URL.
    #[arg(long)]
    pub no_browser: bool,
    /// Give up after this many seconds without a redirect.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// Runs the flow; returns a message for the person or an error.
pub async fn run(config: &Config, args: &AuthArgs) -> Result<String, String> {
    let account = config.account(&args.account).ok_or_else(|| {
        format!(
            "no account {:?} in {}",
            args.account,
            config.source.display()
        )
    })?;
    let AccountSettings::Gmail(gmail) = &account.settings else {
        return Err(format!(
            "account {:?} is of kind {}; `mailsync auth` is for gmail accounts",
            account.id, account.kind
        ));
    };
    let CredentialRef::File(token_path) = &gmail.auth.refresh_token else {
        return Err(format!(
            "account {:?}: refresh_token must be `{{ file = \"...\" }}` so `mailsync auth` can store it (now: {})",
            account.id,
            gmail.auth.refresh_token.describe()
        ));
    };
    let secret_ref = gmail.auth.client_secret.clone();
    let client_secret = tokio::task::spawn_blocking(move || secret_ref.resolve())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut flow = LoopbackFlow::new(gmail.auth.client_id.clone(), Some(client_secret));
    flow.auth_url = gmail.auth.auth_url.clone();
    flow.token_url = gmail.auth.token_url.clone();
    flow.login_hint = Some(gmail.email.clone());
    flow.timeout = Duration::from_secs(args.timeout_secs);
    let no_browser = args.no_browser;
    let token = flow
        .run(|url| {
            println!(
                "Open this URL in a browser to let mailsync read {}:",
                gmail.email
            );
            println!("{url}");
            if !no_browser {
                let opener = if cfg!(target_os = "macos") {
                    "open"
                } else {
                    "xdg-open"
                };
                let _ = std::process::Command::new(opener)
                    .arg(url)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    store_refresh_token(token_path, &token).map_err(|e| {
        format!(
            "cannot store the refresh token in {}: {e}",
            token_path.display()
        )
    })?;
    let stored = format!(
        "Stored the refresh token for {} in {} (mode 0600).",
        account.id,
        token_path.display()
    );
    // A running daemon is told at once: `resume` re-reads the credentials and continues.
    let resume = crate::control::protocol::Request::Resume {
        account: account.id.clone(),
    };
    let told = crate::control::client::request(
        &config.socket_path,
        &resume,
        crate::control::client::DEFAULT_TIMEOUT,
    )
    .await;
    Ok(match told {
        Ok(crate::control::protocol::Response::Ok(_)) => {
            format!("{stored} The running daemon re-read it and resumed the account.")
        }
        Ok(crate::control::protocol::Response::Error(e)) => format!(
            "{stored} The running daemon refused to resume the account: {}",
            e.message
        ),
        Err(_) => format!("{stored} No daemon is running; it will use the token when it starts."),
    })
}
