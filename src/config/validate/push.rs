//! Validation of the `[push]` section: the endpoint (authentication required), the JWT
//! settings, the shared token and `[push.pull]`.

#[allow(unused_imports)]
use super::*;

pub(super) const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub(super) const GOOGLE_PUBSUB_URL: &str = "https://pubsub.googleapis.com";

pub(super) fn push(
    c: &mut Check<'_>,
    rp: &RawPush,
    accounts: &[AccountConfig],
) -> Option<PushConfig> {
    let bind = rp.bind.as_deref().map(str::trim).unwrap_or("127.0.0.1");
    let bind_ip = match bind.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            c.issue(
                "push.bind",
                format!("must be an IP address such as 127.0.0.1 or ::1, got {bind:?}"),
            );
            None
        }
    };
    let listen = rp
        .port
        .map(|p| c.int("push.port", Some(p), 0, 1, 65_535) as u16)
        .and_then(|port| bind_ip.map(|ip| std::net::SocketAddr::new(ip, port)));
    if rp.bind.is_some() && rp.port.is_none() {
        c.issue("push.bind", "needs push.port (the endpoint's port)");
    }
    let audience = c.optional("push.audience", rp.audience.as_ref());
    let service_account = c.optional("push.service_account", rp.service_account.as_ref());
    let jwks_url = c.url("push.jwks_url", rp.jwks_url.as_ref(), GOOGLE_JWKS_URL);
    let jwt = match (audience, service_account) {
        (Some(audience), Some(service_account)) => Some(PushJwt {
            audience,
            service_account,
            jwks_url,
        }),
        (None, None) => None,
        (Some(_), None) => {
            c.issue(
                "push.service_account",
                "is required with push.audience (JWT verification needs both)",
            );
            None
        }
        (None, Some(_)) => {
            c.issue(
                "push.audience",
                "is required with push.service_account (JWT verification needs both)",
            );
            None
        }
    };
    let verification_token = match &rp.verification_token {
        Some(t) => c.credential("push.verification_token", Some(t)),
        None => None,
    };
    if listen.is_some() && jwt.is_none() && rp.verification_token.is_none() {
        c.issue(
            "push.port",
            "an open push endpoint needs authentication: set push.audience and \
             push.service_account (OIDC JWT) and/or push.verification_token",
        );
    }
    let pull = rp.pull.as_ref().and_then(|rl| {
        let subscription = c.required("push.pull.subscription", rl.subscription.as_ref())?;
        if !valid_resource(&subscription, "subscriptions") {
            c.issue(
                "push.pull.subscription",
                format!(
                    "must look like projects/<project>/subscriptions/<name>, got {subscription:?}"
                ),
            );
        }
        let endpoint = c.url(
            "push.pull.endpoint",
            rl.endpoint.as_ref(),
            GOOGLE_PUBSUB_URL,
        );
        let token_account = c.optional("push.pull.token_account", rl.token_account.as_ref());
        if let Some(id) = &token_account
            && !accounts
                .iter()
                .any(|a| &a.id == id && a.kind == AccountKind::Gmail)
        {
            c.issue(
                "push.pull.token_account",
                format!("no gmail account with id {id:?}"),
            );
        }
        if token_account.is_none() && endpoint.starts_with("https://") {
            c.issue(
                "push.pull.token_account",
                "is required to pull from Google's Pub/Sub (only an http:// emulator needs no credentials)",
            );
        }
        Some(PullConfig {
            subscription,
            endpoint,
            max_messages: c.int("push.pull.max_messages", rl.max_messages, 100, 1, 1000) as u32,
            ack_deadline: Duration::from_secs(c.int(
                "push.pull.ack_deadline_secs",
                rl.ack_deadline_secs,
                60,
                10,
                600,
            )),
            token_account,
            test_hold_before_ack: Duration::from_millis(c.int(
                "push.pull.test_hold_before_ack_ms",
                rl.test_hold_before_ack_ms,
                0,
                0,
                600_000,
            )),
        })
    });
    if listen.is_none() && rp.pull.is_none() {
        c.issue(
            "push",
            "needs push.port (an endpoint for a push subscription) or [push.pull]",
        );
    }
    Some(PushConfig {
        listen,
        jwt,
        verification_token,
        max_body_bytes: c.int(
            "push.max_body_bytes",
            rp.max_body_bytes,
            65_536,
            1_024,
            16 * 1024 * 1024,
        ) as usize,
        silence: Duration::from_secs(c.int("push.silence_secs", rp.silence_secs, 600, 1, 86_400)),
        stop_watch_on_shutdown: rp.stop_watch_on_shutdown.unwrap_or(false),
        pull,
        calendar_address: rp.calendar_address.as_ref().map(|a| {
            c.url(
                "push.calendar_address",
                Some(a),
                "https://invalid.example/push/calendar",
            )
        }),
        calendar_debounce: Duration::from_millis(c.int(
            "push.calendar_debounce_ms",
            rp.calendar_debounce_ms,
            2_000,
            0,
            60_000,
        )),
        calendar_renew_before: Duration::from_secs(c.int(
            "push.calendar_renew_before_secs",
            rp.calendar_renew_before_secs,
            86_400,
            1,
            30 * 86_400,
        )),
        calendar_channel_ttl: Duration::from_secs(c.int(
            "push.calendar_channel_ttl_secs",
            rp.calendar_channel_ttl_secs,
            604_800,
            1,
            30 * 86_400,
        )),
    })
}
