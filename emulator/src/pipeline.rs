//! The request pipeline shared by direct calls and batch parts: routing, standard-parameter
//! checks, bearer authentication, per-user concurrency, fault injection, quota charging and
//! the handler call. Requests and responses are plain values ([`ApiRequest`],
//! [`ApiResponse`]) so the batch endpoint can run parts through exactly the same code.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::QuotaMode;
use crate::error::ApiError;
use crate::faults::FaultKind;
use crate::http::{ApiRequest, ApiResponse, Op, Route, TransportFault, segments};
use crate::oauth::Principal;
use crate::quota::{Api, LimitKind, Limits, SlotGuard};
use crate::state::EmulatorState;
use crate::util::{lock, rfc3339_ms};

const STANDARD_PARAMS: &[&str] = &[
    "alt",
    "fields",
    "prettyPrint",
    "quotaUser",
    "key",
    "access_token",
    "oauth_token",
    "$.xgafv",
    "callback",
    "uploadType",
    "upload_protocol",
];

/// A request that passed routing, auth and the concurrency check.
#[derive(Debug)]
pub struct Prepared {
    pub route: Route,
    pub principal: Principal,
    pub req: ApiRequest,
    _slot: Option<SlotGuard>,
}

fn route(req: &ApiRequest) -> Option<Route> {
    let segs = segments(&req.path);
    match segs.first().map(String::as_str) {
        Some("gmail") => crate::gmail::route(&req.method, &segs),
        Some("calendar") => crate::calendar::route(&req.method, &segs),
        _ => None,
    }
}

/// Routing, parameter validation, authentication and the in-flight slot.
pub fn prepare(st: &EmulatorState, req: ApiRequest) -> Result<Prepared, ApiResponse> {
    let Some(route) = route(&req) else {
        let mut e = ApiError::new(
            404,
            "notFound",
            "global",
            format!("Method not found: {} {}", req.method, req.path),
        );
        e.status = Some("NOT_FOUND");
        return Err(ApiResponse::error(&e));
    };
    st.count_request(route.name);
    for (k, _) in &req.query {
        if !STANDARD_PARAMS.contains(&k.as_str()) && !route.params.contains(&k.as_str()) {
            return Err(ApiResponse::error(&ApiError::invalid_argument(format!(
                "Invalid JSON payload received. Unknown name \"{k}\": Cannot bind query parameter. Field '{k}' could not be found in request message."
            ))));
        }
    }
    if let Some(alt) = req.param("alt")
        && alt != "json"
    {
        return Err(ApiResponse::error(&ApiError::invalid_param(
            "alt",
            format!("Invalid value '{alt}' for alt"),
        )));
    }
    let principal = {
        let token = req.bearer();
        let res = lock(&st.oauth).authenticate(token.as_deref(), st.clock.now_ms());
        match res {
            Ok(p) => p,
            Err(e) => {
                st.with_counters(|c| c.status_401 += 1);
                return Err(ApiResponse::error(&e));
            }
        }
    };
    let slot = if st.config.quota.enforced() {
        match st
            .quota
            .try_slot(&principal.email, st.config.max_concurrent_per_user)
        {
            Some(s) => Some(s),
            None => {
                st.with_counters(|c| {
                    c.status_429 += 1;
                    c.concurrency_refusals += 1;
                });
                let mut e = ApiError::new(
                    429,
                    "rateLimitExceeded",
                    "global",
                    "Too many concurrent requests for user.",
                );
                e.retry_after_secs = st.config.send_retry_after.then_some(1);
                return Err(ApiResponse::error(&e));
            }
        }
    } else {
        None
    };
    Ok(Prepared {
        route,
        principal,
        req,
        _slot: slot,
    })
}

fn rate_limit_error(st: &EmulatorState, api: Api, kind: LimitKind, retry_after: u64) -> ApiError {
    let wanted = match api {
        Api::Gmail => st.config.rate_limit_status,
        Api::Calendar => st.config.calendar_rate_limit_status,
    };
    let code = if wanted == 403 { 403 } else { 429 };
    let until = rfc3339_ms(st.clock.now_ms() + retry_after as i64 * 1000);
    let mut e = match kind {
        LimitKind::User => ApiError::new(
            code,
            "userRateLimitExceeded",
            "usageLimits",
            format!("User-rate limit exceeded.  Retry after {until}"),
        ),
        LimitKind::Project => ApiError::new(
            code,
            "rateLimitExceeded",
            "usageLimits",
            "Rate Limit Exceeded",
        ),
    };
    e.retry_after_secs = st.config.send_retry_after.then_some(retry_after);
    e
}

/// Units charged for a route under the current profile.
pub fn cost(st: &EmulatorState, route: &Route) -> u64 {
    match route.api {
        Api::Gmail => crate::quota::gmail_cost(route.name, st.config.quota_profile),
        Api::Calendar => 1,
    }
}

/// Faults, quota charge and the handler.
pub async fn run(st: &Arc<EmulatorState>, p: Prepared) -> ApiResponse {
    let name = p.route.name;
    let (latency, fault) = lock(&st.faults).decide(name);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if let Some(kind) = fault {
        st.with_counters(|c| {
            c.faults_injected += 1;
            *c.faults_by_kind.entry(kind.name().to_string()).or_insert(0) += 1;
        });
        tracing::debug!(method = name, fault = kind.name(), "injecting fault");
        match kind {
            FaultKind::Status429 => {
                st.with_counters(|c| c.status_429 += 1);
                let mut e = ApiError::new(
                    429,
                    "rateLimitExceeded",
                    "usageLimits",
                    "Rate Limit Exceeded",
                );
                e.retry_after_secs = st.config.send_retry_after.then_some(1);
                return ApiResponse::error(&e);
            }
            FaultKind::Status500 => return ApiResponse::error(&ApiError::backend_error()),
            FaultKind::Status503 => return ApiResponse::error(&ApiError::unavailable()),
            FaultKind::Timeout => {
                let mut r = ApiResponse::empty(200);
                r.fault = Some(TransportFault::Hang);
                return r;
            }
            FaultKind::Reset => {
                let mut r = ApiResponse::empty(200);
                r.fault = Some(TransportFault::Reset);
                return r;
            }
            FaultKind::Truncated | FaultKind::Malformed => {}
        }
    }
    if st.config.quota.enforced() {
        let units = cost(st, &p.route);
        let limits = match p.route.api {
            Api::Gmail => Limits {
                user_per_minute: st.config.quota_profile.user_units_per_minute() as f64
                    * st.config.user_rate_scale,
                project_per_minute: st.config.project_units_per_minute as f64,
            },
            Api::Calendar => Limits {
                user_per_minute: st.config.calendar_user_requests_per_minute as f64
                    * st.config.user_rate_scale,
                project_per_minute: st.config.calendar_project_requests_per_minute as f64,
            },
        };
        let (api, project, user) = (p.route.api, &p.principal.client_id, &p.principal.email);
        let decision = if st.config.quota == QuotaMode::Strict {
            st.strict_quota.charge(api, project, user, units, limits)
        } else {
            st.quota.charge(api, project, user, units, limits)
        };
        if let Err(refused) = decision {
            let e = rate_limit_error(st, p.route.api, refused.kind, refused.retry_after_secs);
            st.with_counters(|c| {
                c.rate_limit_refusals += 1;
                if e.code == 429 {
                    c.status_429 += 1
                } else {
                    c.status_403_rate_limit += 1
                }
            });
            return ApiResponse::error(&e);
        }
        st.count_units(name, units);
    } else {
        st.count_units(name, cost(st, &p.route));
    }
    let result = match &p.route.op {
        Op::Gmail(op) => crate::gmail::handle(st, &p.principal, op, &p.req),
        Op::Calendar(op) => crate::calendar::handle(st, &p.principal, op, &p.req),
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => ApiResponse::error(&e),
    };
    match fault {
        Some(FaultKind::Truncated) => {
            resp.status = 200;
            let cut = resp.body.len() / 2;
            resp.body = resp.body.slice(..cut);
            resp.headers.retain(|(k, _)| k != "Content-Type");
            resp.headers.push((
                "Content-Type".into(),
                "application/json; charset=UTF-8".into(),
            ));
        }
        Some(FaultKind::Malformed) => {
            resp.status = 200;
            resp.body = Bytes::from_static(b"{\"error\": <html>Internal proxy garbage</html>");
        }
        _ => {}
    }
    resp
}

/// Full pipeline for one request.
pub async fn execute(st: &Arc<EmulatorState>, req: ApiRequest) -> ApiResponse {
    match prepare(st, req) {
        Ok(p) => run(st, p).await,
        Err(r) => r,
    }
}
