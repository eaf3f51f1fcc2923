//! The HTTP API: the route table, middleware, and one module per resource.
//!
//! Routes are registered through `utoipa_axum::routes!`, so a handler and its OpenAPI entry
//! cannot drift apart; the document is served at `/api/v1/openapi.json`.

pub mod api_keys;
pub mod chats;
pub mod contacts;
pub mod contract;
pub mod events;
pub mod extract;
pub mod fetch;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod send;
pub mod sessions;
pub mod state;
pub mod system;

/// The JSON shapes of the API, defined below the store so event payloads and responses share
/// them without the store importing this layer.
pub use crate::store::wire as models;
pub use state::{AppState, HttpState};

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::domain::SessionId;
use crate::error::{ApiError, ApiResult};
use crate::store::SessionRecord;

/// The session `sid` if the caller's organization owns it; 404 otherwise (never 403).
pub async fn owned_session(
    st: &AppState,
    caller: &Caller,
    sid: &SessionId,
) -> ApiResult<SessionRecord> {
    let s = st
        .store()
        .get_session(&caller.org_id, sid)
        .await?
        .ok_or_else(ApiError::session_not_found)?;
    st.owners().remember(sid, &s.org_id);
    Ok(s)
}

/// Like [`owned_session`] for the stored-copy endpoints, which need only the ownership check:
/// answered from a short-lived cache (a session never changes owner; deleting it through this
/// node forgets it at once, through another node within `OWNER_TTL`).
pub async fn check_session(st: &AppState, caller: &Caller, sid: &SessionId) -> ApiResult<String> {
    if let Some(org) = st.owners().get(sid) {
        return if org == caller.org_id {
            Ok(sid.to_string())
        } else {
            Err(ApiError::session_not_found())
        };
    }
    Ok(owned_session(st, caller, sid).await?.id)
}

const OWNER_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Session → owning organization, for [`check_session`].
#[derive(Default)]
pub struct SessionOwners(
    std::sync::Mutex<std::collections::HashMap<SessionId, (String, std::time::Instant)>>,
);

impl SessionOwners {
    fn get(&self, sid: &SessionId) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(sid)
            .filter(|(_, at)| at.elapsed() < OWNER_TTL)
            .map(|(org, _)| org.clone())
    }

    fn remember(&self, sid: &SessionId, org: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 50_000 {
            map.retain(|_, (_, at)| at.elapsed() < OWNER_TTL);
        }
        map.insert(*sid, (org.to_owned(), std::time::Instant::now()));
    }

    pub fn forget(&self, sid: &SessionId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(sid);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wagate",
        description = "Self-hosted, multi-tenant WhatsApp gateway. Every endpoint under /api/v1 takes \
`Authorization: Bearer <token>` with either a login JWT from the frontend (verified against its JWKS) or an \
organization API key (`wag_...`, also accepted as `X-Api-Key`). Errors always have the body \
`{\"error\": {\"code\", \"message\", \"details\"}}`. Times are epoch milliseconds."
    ),
    servers((url = "/api/v1")),
    paths(sessions::start_doc, sessions::stop_doc, sessions::restart_doc, sessions::logout_doc),
    modifiers(&BearerAuth),
    tags(
        (name = "sessions", description = "Attach and control WhatsApp numbers."),
        (name = "chats", description = "The stored copy of chats and messages, and chat actions."),
        (name = "messages", description = "Sending, through a durable outbox."),
        (name = "contacts", description = "People a session has seen, and number checks."),
        (name = "api-keys", description = "Keys for scripts and services."),
        (name = "events", description = "The outbox of changes, as a pull feed."),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A login JWT minted by the frontend (organization and role read from its claims), or an API key \
(`wag_...`) carrying a fixed set of capabilities.",
                    ))
                    .build(),
            ),
        );
    }
}

/// What the document says of a text that may not be blank: it contains a character outside
/// [`blank`]'s set. The set is spelled out (no `\s`, whose meaning differs between ECMA-262,
/// Python and Rust regexes: U+001C–U+001F, U+FEFF), so every dialect reads the same class, and a
/// unit test keeps it equal to [`blank`] over every character.
pub const NOT_BLANK_PATTERN: &str =
    "[^\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// Whether a text is blank: only Unicode white space (`char::is_whitespace`) and the separators
/// U+001C–U+001F. Every field the document marks with [`NOT_BLANK_PATTERN`] is checked with
/// this, so a request the document allows is never refused as blank and a blank one always is.
pub(crate) fn blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// The `/api/v1` routes and their OpenAPI document.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(sessions::list_sessions, sessions::create_session))
        .routes(routes!(
            sessions::get_session,
            sessions::update_session,
            sessions::delete_session
        ))
        .routes(routes!(sessions::get_qr))
        .routes(routes!(sessions::pairing_code))
        .routes(routes!(sessions::get_me))
        .routes(routes!(sessions::set_account_presence))
        .routes(routes!(chats::list_chats))
        .routes(routes!(
            chats::get_chat,
            chats::patch_chat,
            chats::delete_chat
        ))
        .routes(routes!(chats::mark_read))
        .routes(routes!(chats::set_presence))
        .routes(routes!(chats::list_messages))
        .routes(routes!(send::send_message))
        .routes(routes!(
            messages::get_message,
            messages::edit_message,
            messages::revoke_message
        ))
        .routes(routes!(messages::get_media))
        .routes(routes!(messages::react))
        .routes(routes!(messages::forward))
        .routes(routes!(messages::vote))
        .routes(routes!(contacts::list_contacts))
        .routes(routes!(
            contacts::check_number,
            contacts::check_numbers_batch
        ))
        .routes(routes!(contacts::picture))
        .routes(routes!(contacts::about))
        .routes(routes!(api_keys::list_keys, api_keys::create_key))
        .routes(routes!(api_keys::revoke_key))
        .routes(routes!(events::list_events))
        .split_for_parts()
}

/// The API router: the documented routes plus `POST /sessions/{sid}:<action>`, which the
/// document lists under one path per action.
fn api_router() -> Router<AppState> {
    let (router, _) = api();
    router.route("/sessions/{sid}", post(sessions::session_action))
}

/// The full OpenAPI document as served: API routes under `/api/v1` plus the system
/// endpoints, completed by [`contract::complete`].
pub fn document() -> serde_json::Value {
    let (_, mut doc) = api();
    // Paths are documented relative to the `/api/v1` server; the system endpoints sit at the root.
    let (_, sys) = OpenApiRouter::<AppState>::new()
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .split_for_parts();
    let mut paths = utoipa::openapi::path::Paths::new();
    for (p, item) in doc.paths.paths {
        paths.paths.insert(format!("/api/v1{p}"), item);
    }
    for (p, item) in sys.paths.paths {
        paths.paths.insert(p, item);
    }
    doc.paths = paths;
    doc.servers = None;
    // The system endpoints' schemas (`Health`) join the API's.
    if let Some(sys_components) = sys.components {
        let components = doc.components.get_or_insert_with(Default::default);
        components.schemas.extend(sys_components.schemas);
    }
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    contract::complete(&mut doc);
    doc
}

/// Logs a failed request. 501 (no connected client) is an ordinary answer of the contract and
/// 503 a passing condition; only the rest are errors of this server.
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass as Class;
    let ms = latency.as_millis() as u64;
    match class {
        Class::StatusCode(s) if s == axum::http::StatusCode::NOT_IMPLEMENTED => {
            tracing::debug!(status = s.as_u16(), latency_ms = ms, "no connected client")
        }
        Class::StatusCode(s) if s == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
            tracing::warn!(status = s.as_u16(), latency_ms = ms, "service unavailable")
        }
        Class::StatusCode(s) if s == axum::http::StatusCode::GATEWAY_TIMEOUT => {
            tracing::warn!(status = s.as_u16(), latency_ms = ms, "request timed out")
        }
        other => tracing::error!(classification = %other, latency_ms = ms, "response failed"),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed(uri: axum::extract::OriginalUri) -> ApiError {
    // `/sessions/{sid}` (GET, PATCH, DELETE) and the actions `/sessions/{sid}:start` etc.
    // (POST) share one route: list what the addressed resource takes, not the union. Elsewhere
    // the router fills in `Allow` itself.
    let allow = match uri.path().strip_prefix("/api/v1/sessions/") {
        Some(rest) if !rest.contains('/') => match rest.split_once(':') {
            Some((_, "start" | "stop" | "restart" | "logout")) => "POST",
            _ => "GET, HEAD, PATCH, DELETE",
        },
        _ => "",
    };
    ApiError::MethodNotAllowed {
        message: "this method is not allowed on this route".into(),
        allow,
    }
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::Internal(anyhow::anyhow!("handler panicked: {msg}")).into_response()
}

/// The span of one request: its id, method and the route it matched (`/api/v1/sessions/{sid}/chats/{cid}`),
/// never the path itself or the query, which carry phone numbers and other personal data.
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(no route)", |m| m.as_str());
    tracing::info_span!("request", request_id = %id, method = %req.method(), route = %route)
}

/// Builds the application: routes, fallbacks and middleware.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with extra routes mounted inside the same middleware (errors, panics, metrics,
/// request ids apply to them too); later features and tests add routes this way.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let api = api_router();
    let doc = bytes::Bytes::from(
        serde_json::to_vec(&document()).expect("the OpenAPI document serializes"),
    );
    let request_id = HeaderName::from_static("x-request-id");
    let body_limit = state.config().body_limit_bytes;
    let limits = limits::RequestLimits::new(state.config());

    Router::new()
        .nest("/api/v1", api)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        doc,
                    )
                }
            }),
        )
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(system::metrics))
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(limits, limits::limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(
                            tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                        )
                        .on_failure(log_failure),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
}

#[cfg(test)]
mod blank_tests {
    /// Every character, against the pattern, in Rust's regex dialect (the same class in every
    /// dialect: it names its characters).
    #[test]
    fn the_pattern_and_the_check_agree_on_every_character() {
        let re = regex::Regex::new(super::NOT_BLANK_PATTERN).unwrap();
        for c in (0u32..=0x10FFFF).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(re.is_match(&s), !super::blank(&s), "U+{:04X}", c as u32);
        }
    }
}
