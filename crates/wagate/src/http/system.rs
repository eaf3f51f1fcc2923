//! Unauthenticated endpoints: liveness, readiness, metrics, the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::{ApiError, ErrorEnvelope};

/// Health state.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// GET /healthz — the process is up.
#[utoipa::path(get, path = "/healthz", tag = "system", summary = "Liveness",
    description = "Answers 200 while the process serves HTTP.",
    responses((status = 200, description = "Alive.", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// GET /readyz — the database answers.
#[utoipa::path(get, path = "/readyz", tag = "system", summary = "Readiness",
    description = "200 when the database answers a query, else 503.",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "The database does not answer.", body = ErrorEnvelope),
    ))]
pub async fn readyz(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    if st.store().ping().await {
        Ok(Json(Health { status: "ok" }))
    } else {
        Err(ApiError::Unavailable("the database does not answer".into()))
    }
}

/// GET /metrics — Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "system", summary = "Prometheus metrics",
    description = "Request counts and latency histograms by method, route template and status; what the WhatsApp engine runs (sessions running and connected, engine events waiting per session, tasks, clients in memory, store retries); the outbox backlog and the sender's workers.",
    responses((status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let mut body = st.metrics().render() + &engine_metrics(&st.engine().stats());
    body.push_str(&sender_metrics(&st).await);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}

/// The outbox of messages to send: its backlog (from the database, so every node sees the
/// same) and the sender's workers.
async fn sender_metrics(st: &AppState) -> String {
    let mut out = String::new();
    match st.store().queued_sends().await {
        Ok(n) => out.push_str(&format!(
            "# HELP wagate_outbox_queued Messages accepted and not yet sent or failed, all sessions.\n\
             # TYPE wagate_outbox_queued gauge\nwagate_outbox_queued {n}\n"
        )),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "metrics: cannot count the outbox"),
    }
    out.push_str(&format!(
        "# HELP wagate_sender_workers Sessions whose sender is working now.\n\
         # TYPE wagate_sender_workers gauge\nwagate_sender_workers {}\n",
        st.sender().workers()
    ));
    out
}

/// The engine's snapshot in Prometheus' text format.
fn engine_metrics(s: &crate::engine::EngineStats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let gauges: [(&str, &str, &str, u64); 7] = [
        (
            "wagate_sessions_running",
            "gauge",
            "Sessions with a WhatsApp connection (connecting, connected or waiting for a scan).",
            s.running as u64,
        ),
        (
            "wagate_sessions_connected",
            "gauge",
            "Sessions with a connected, logged-in WhatsApp client.",
            s.connected as u64,
        ),
        (
            "wagate_engine_tasks",
            "gauge",
            "Background tasks the WhatsApp engine owns.",
            s.tasks as u64,
        ),
        (
            "wagate_engine_clients_alive",
            "gauge",
            "WhatsApp clients in memory (one per running session).",
            s.clients_alive as u64,
        ),
        (
            "wagate_engine_event_queue_depth_total",
            "gauge",
            "Engine events waiting to be handled, all sessions.",
            s.event_queues.iter().map(|(_, n)| *n as u64).sum(),
        ),
        (
            "wagate_engine_store_retries_total",
            "counter",
            "Writes of WhatsApp's changes tried again after a database error.",
            s.store_retries,
        ),
        (
            "wagate_engine_store_failures_total",
            "counter",
            "Writes of WhatsApp's changes given up after retrying.",
            s.store_failures,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let _ = writeln!(out, "# HELP wagate_engine_event_queue_depth Engine events waiting to be handled, per session (sessions with none are left out).\n# TYPE wagate_engine_event_queue_depth gauge");
    for (sid, n) in &s.event_queues {
        let _ = writeln!(
            out,
            "wagate_engine_event_queue_depth{{session=\"{sid}\"}} {n}"
        );
    }
    out
}
