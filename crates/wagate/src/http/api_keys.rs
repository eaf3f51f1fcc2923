//! `/api/v1/api-keys...`: keys for scripts and services.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{JsonBody, PathParams};
use super::models::{ApiKey, ApiKeyList, CreatedApiKey};
use super::AppState;
use crate::auth::{Auth, CapManage};
use crate::domain::{CapSet, Capability};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. "CRM sync": 1 to 100 characters, not only spaces.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// The capabilities the key carries; never more than the caller holds.
    #[schema(min_items = 1)]
    pub capabilities: Vec<Capability>,
    /// When the key stops working (epoch ms); omit for a key that does not expire. A time in the
    /// past makes a key that is expired from the start.
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    pub expires_at: Option<i64>,
}

/// GET /api/v1/api-keys — the organization's keys.
#[utoipa::path(
    get, path = "/api-keys", tag = "api-keys",
    summary = "List API keys",
    description = "The organization's API keys, revoked ones included, without their secrets. Needs `manage`.",
    responses(
        (status = 200, description = "The keys.", body = ApiKeyList),
        (status = 403, description = "The caller lacks `manage`.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list_keys(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
) -> ApiResult<Json<ApiKeyList>> {
    let keys = st.store().list_api_keys(&auth.org_id).await?;
    Ok(Json(ApiKeyList {
        data: keys.into_iter().map(ApiKey::from).collect(),
    }))
}

/// POST /api/v1/api-keys — create a key; the secret is in this answer only.
#[utoipa::path(
    post, path = "/api-keys", tag = "api-keys",
    summary = "Create an API key",
    description = "Creates a key for the caller's organization. The answer holds the secret `key`, which is not \
shown again. A key cannot carry a capability its creator lacks (403). Needs `manage`.",
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created.", body = CreatedApiKey),
        (status = 403, description = "Lacking `manage`, or asking for more than the caller holds.", body = ErrorEnvelope),
        (status = 422, description = "Invalid body.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn create_key(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let name = body.name.trim();
    if super::blank(&body.name) || body.name.chars().count() > 100 {
        return Err(ApiError::bad_body(Some("name"), "1 to 100 characters"));
    }
    let caps: CapSet = body.capabilities.iter().copied().collect();
    if caps.is_empty() {
        return Err(ApiError::bad_body(
            Some("capabilities"),
            "at least one of read, send, manage, events",
        ));
    }
    if body.expires_at.is_some_and(|e| e < 0) {
        return Err(ApiError::bad_body(
            Some("expiresAt"),
            "a time in epoch milliseconds, 0 or more",
        ));
    }
    if !caps.is_subset_of(auth.caps) {
        return Err(ApiError::Forbidden(
            "a key cannot carry capabilities its creator does not hold".into(),
        ));
    }
    // A key never outlives the key that created it.
    let expires_at = match (body.expires_at, auth.expires_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (rec, key) = st
        .auth()
        .keys
        .create(&auth.org_id, name, caps, expires_at, Some(auth.label()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            meta: rec.into(),
            key,
        }),
    ))
}

/// DELETE /api/v1/api-keys/{id} — revoke a key.
#[utoipa::path(
    delete, path = "/api-keys/{id}", tag = "api-keys",
    summary = "Revoke an API key",
    description = "The key stops working at once; it stays listed with `revokedAt`. 204 with an empty body. \
A key cannot revoke itself (409): rotate by creating the new key, then revoking the old one with it. \
Needs `manage`.",
    params(("id" = String, Path, description = "The key's id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "No such key in the caller's organization.", body = ErrorEnvelope),
        (status = 409, description = "The key tried to revoke itself.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_key(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<StatusCode> {
    let id = path.text("id")?;
    if matches!(&auth.principal, crate::auth::Principal::ApiKey { id: own } if own == id) {
        // Revoking the credential in hand could leave the organization without a way in.
        return Err(ApiError::Conflict(
            "a key cannot revoke itself; revoke it with another key or a login".into(),
        ));
    }
    match st.store().revoke_api_key(Some(&auth.org_id), id).await? {
        Some(_) => {
            st.auth().keys.evict(id);
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::not_found("API key")),
    }
}
