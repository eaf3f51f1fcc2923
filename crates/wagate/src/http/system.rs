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
    description = "Request counts and latency histograms by method, route template and status.",
    responses((status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics().render(),
    )
}
