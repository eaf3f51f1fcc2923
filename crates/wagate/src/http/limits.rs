//! What bounds one request: a time limit (504 `gateway_timeout` when it passes) and a number of
//! API requests in progress (more are shed at once: 503 `gateway_unavailable` with
//! `Retry-After`, so a burst costs the gateway nothing but the refusal).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::Config;
use crate::error::ApiError;

/// When the request's time is up; handlers that wait (a synchronous send) answer before it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// The router's limits, owned by its middleware.
pub struct RequestLimits {
    timeout: Duration,
    slots: Arc<Semaphore>,
    max: usize,
}

impl RequestLimits {
    pub fn new(cfg: &Config) -> Arc<Self> {
        let max = cfg.max_concurrent_requests.max(1);
        Arc::new(RequestLimits {
            timeout: Duration::from_secs(cfg.request_timeout_secs.max(1)),
            slots: Arc::new(Semaphore::new(max)),
            max,
        })
    }
}

/// Only API requests count against the limit: health checks and metrics stay answerable
/// under load.
fn counted(path: &str) -> bool {
    path.starts_with("/api/") && path != "/api/v1/openapi.json"
}

/// The middleware.
pub async fn limit(
    State(limits): State<Arc<RequestLimits>>,
    mut req: Request,
    next: Next,
) -> Response {
    let _slot = if counted(req.uri().path()) {
        match limits.slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                return ApiError::Overloaded {
                    message: format!(
                        "the gateway is answering {} requests already (max_concurrent_requests); retry shortly",
                        limits.max
                    ),
                    retry_after_secs: 1,
                }
                .into_response()
            }
        }
    } else {
        None
    };
    let deadline = Instant::now() + limits.timeout;
    req.extensions_mut().insert(Deadline(deadline));
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout(format!(
            "the request took longer than {} s (request_timeout_secs); work it started may still complete",
            limits.timeout.as_secs()
        ))
        .into_response(),
    }
}
