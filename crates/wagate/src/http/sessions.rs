//! `/api/v1/sessions...`: attach, inspect and control WhatsApp numbers.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{JsonBody, PathParams, QueryMap};
use super::models::{Session, SessionList};
use super::owned_session;
use super::AppState;
use crate::auth::{Auth, CapManage, CapSend};
use crate::domain::{Phone, SessionId};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::store::{NewSession, SessionPatch, SessionStatus};

/// Settings of a new session.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSession {
    /// A name for people, e.g. "Support line".
    #[schema(max_length = 200)]
    pub label: Option<String>,
    /// Mark incoming messages read on WhatsApp automatically (default false).
    pub auto_read: Option<bool>,
    /// Show "typing…" before each message sent through the API (default false).
    pub presence_typing: Option<bool>,
    /// Messages per minute this session may send (default from the configuration).
    #[schema(minimum = 1, maximum = 10000)]
    pub rate_per_min: Option<i64>,
    /// Messages per hour this session may send (default from the configuration).
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_per_hour: Option<i64>,
    /// Keep a copy of each incoming attachment in the gateway's media store on disk, so it
    /// can be fetched later without WhatsApp (default false).
    pub download_media: Option<bool>,
}

fn check_settings(
    label: Option<&str>,
    per_min: Option<i64>,
    per_hour: Option<i64>,
) -> ApiResult<()> {
    if label.is_some_and(|l| l.chars().count() > 200) {
        return Err(ApiError::bad_body(Some("label"), "at most 200 characters"));
    }
    if per_min.is_some_and(|v| !(1..=10_000).contains(&v)) {
        return Err(ApiError::bad_body(
            Some("ratePerMin"),
            "must be between 1 and 10000",
        ));
    }
    if per_hour.is_some_and(|v| !(1..=1_000_000).contains(&v)) {
        return Err(ApiError::bad_body(
            Some("ratePerHour"),
            "must be between 1 and 1000000",
        ));
    }
    Ok(())
}

/// The `sid` of `/sessions/{sid}`, whose GET, PATCH and DELETE share the route with the
/// POST-only actions `/sessions/{sid}:start` etc.: those answer 405 to other methods.
fn session_resource(path: &PathParams) -> ApiResult<SessionId> {
    let raw = path.text("sid")?;
    if let Some((_, action)) = raw.split_once(':') {
        if matches!(action, "start" | "stop" | "restart" | "logout") {
            return Err(ApiError::MethodNotAllowed {
                message: format!("`:{action}` takes POST only"),
                allow: "POST",
            });
        }
    }
    path.session()
}

/// POST /api/v1/sessions — create a session (not started).
#[utoipa::path(
    post, path = "/sessions", tag = "sessions",
    summary = "Create a session",
    description = "Creates a session for the caller's organization in status `stopped`. Start it with \
`POST /sessions/{sid}:start`, then pair it by QR code or pairing code. Needs `manage`.",
    request_body = CreateSession,
    responses(
        (status = 201, description = "Created.", body = Session),
        (status = 403, description = "The caller lacks `manage`.", body = ErrorEnvelope),
        (status = 422, description = "Invalid settings.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn create_session(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateSession>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    check_settings(body.label.as_deref(), body.rate_per_min, body.rate_per_hour)?;
    let cfg = st.config();
    let rec = st
        .store()
        .create_session(NewSession {
            org_id: auth.org_id.clone(),
            label: body.label,
            auto_read: body.auto_read.unwrap_or(false),
            presence_typing: body.presence_typing.unwrap_or(false),
            rate_per_min: body.rate_per_min.unwrap_or(cfg.default_rate_per_min),
            rate_per_hour: body.rate_per_hour.unwrap_or(cfg.default_rate_per_hour),
            download_media: body.download_media.unwrap_or(false),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

/// GET /api/v1/sessions — the organization's sessions.
#[utoipa::path(
    get, path = "/sessions", tag = "sessions",
    summary = "List sessions",
    description = "Every session of the caller's organization, oldest first. Needs `manage`.",
    responses(
        (status = 200, description = "The sessions.", body = SessionList),
        (status = 403, description = "The caller lacks `manage`.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list_sessions(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
) -> ApiResult<Json<SessionList>> {
    let rows = st.store().list_sessions(&auth.org_id).await?;
    Ok(Json(SessionList {
        data: rows.into_iter().map(Session::from).collect(),
    }))
}

/// GET /api/v1/sessions/{sid} — one session.
#[utoipa::path(
    get, path = "/sessions/{sid}", tag = "sessions",
    summary = "Get a session",
    description = "The session's status, account and settings. Needs `manage`.",
    params(("sid" = String, Path, description = "Session id (ULID).")),
    responses(
        (status = 200, description = "The session.", body = Session),
        (status = 400, description = "Malformed session id.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `manage`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or another organization's.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn get_session(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<Session>> {
    let sid = session_resource(&path)?;
    Ok(Json(owned_session(&st, &auth, &sid).await?.into()))
}

/// Settings to change; omitted fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSession {
    /// New label; `null` removes it.
    #[serde(default, deserialize_with = "some_value")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub label: Option<Option<String>>,
    pub auto_read: Option<bool>,
    pub presence_typing: Option<bool>,
    #[schema(minimum = 1, maximum = 10000)]
    pub rate_per_min: Option<i64>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_per_hour: Option<i64>,
    pub download_media: Option<bool>,
}

fn some_value<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// PATCH /api/v1/sessions/{sid} — change a session's settings.
#[utoipa::path(
    patch, path = "/sessions/{sid}", tag = "sessions",
    summary = "Update a session's settings",
    description = "Partial update of label, auto-read, typing indicator, rate limits and the media store. Needs `manage`.",
    params(("sid" = String, Path, description = "Session id (ULID).")),
    request_body = UpdateSession,
    responses(
        (status = 200, description = "The updated session.", body = Session),
        (status = 404, description = "Unknown session.", body = ErrorEnvelope),
        (status = 422, description = "Invalid settings.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn update_session(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<UpdateSession>,
) -> ApiResult<Json<Session>> {
    let sid = session_resource(&path)?;
    check_settings(
        body.label.clone().flatten().as_deref(),
        body.rate_per_min,
        body.rate_per_hour,
    )?;
    let patch = SessionPatch {
        label: body.label,
        auto_read: body.auto_read,
        presence_typing: body.presence_typing,
        rate_per_min: body.rate_per_min,
        rate_per_hour: body.rate_per_hour,
        download_media: body.download_media,
    };
    let rec = st
        .store()
        .update_session(&auth.org_id, &sid, patch)
        .await?
        .ok_or_else(ApiError::session_not_found)?;
    st.engine().settings_changed(&sid);
    st.sender().settings_changed(&sid);
    Ok(Json(rec.into()))
}

/// DELETE /api/v1/sessions/{sid} — stop a session and delete everything stored for it.
#[utoipa::path(
    delete, path = "/sessions/{sid}", tag = "sessions",
    summary = "Delete a session",
    description = "Disconnects the session if it runs and deletes it with its stored chats, messages and contacts. \
The device stays linked on the phone unless the session was logged out first. 204 with an empty body. Needs `manage`.",
    params(("sid" = String, Path, description = "Session id (ULID).")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "Unknown session or another organization's.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn delete_session(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<StatusCode> {
    let sid = session_resource(&path)?;
    owned_session(&st, &auth, &sid).await?;
    st.engine().stop(&sid).await?;
    st.owners().forget(&sid);
    if st.store().delete_session(&auth.org_id, &sid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::session_not_found())
    }
}

/// A lifecycle action named after the colon in `POST /sessions/{sid}:<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Stop,
    Restart,
    Logout,
}

/// POST /api/v1/sessions/{sid}:{action} — start, stop, restart or log out a session.
///
/// Routed as one handler because the router cannot match a suffix after a path parameter.
pub async fn session_action(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<Session>> {
    let raw = path.text("sid")?;
    let Some((sid_raw, action_raw)) = raw.split_once(':') else {
        return Err(ApiError::MethodNotAllowed {
            message: "POST is not allowed here; use POST /sessions/{sid}:start|stop|restart|logout"
                .into(),
            allow: "GET, PATCH, DELETE",
        });
    };
    let action = match action_raw {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "restart" => Action::Restart,
        "logout" => Action::Logout,
        _ => {
            return Err(ApiError::NotFound(format!(
                "unknown session action `{action_raw}` (start, stop, restart, logout)"
            )))
        }
    };
    let sid: SessionId = super::extract::session_id(sid_raw)?;
    let session = owned_session(&st, &auth, &sid).await?;
    let store = st.store();
    let org = auth.org_id.as_str();
    const IDLE: [SessionStatus; 3] = [
        SessionStatus::Stopped,
        SessionStatus::Failed,
        SessionStatus::LoggedOut,
    ];
    match action {
        Action::Start => {
            // One conditional update claims the start: of two concurrent starts one gets 409.
            let claimed = store
                .claim_session_status(org, &sid, &IDLE, SessionStatus::Starting, None)
                .await?
                .ok_or_else(ApiError::session_not_found)?;
            if !claimed.1 {
                return Err(ApiError::Conflict(format!(
                    "the session is already {}",
                    claimed.0.status().as_str()
                )));
            }
            if let Err(e) = st.engine().start(&session).await {
                // Give the claim back: the session is as it was before the call.
                store
                    .claim_session_status(
                        org,
                        &sid,
                        &[SessionStatus::Starting],
                        session.status(),
                        session.status_reason.as_deref(),
                    )
                    .await?;
                return Err(e.into());
            }
        }
        Action::Stop => {
            st.engine().stop(&sid).await?;
            store
                .set_session_status(
                    &sid,
                    SessionStatus::Stopped,
                    Some("stopped through the API"),
                )
                .await?;
        }
        Action::Restart => {
            st.engine().stop(&sid).await?;
            store
                .set_session_status(&sid, SessionStatus::Stopped, Some("restarting"))
                .await?;
            st.engine().start(&session).await?;
            store
                .set_session_status(&sid, SessionStatus::Starting, None)
                .await?;
        }
        Action::Logout => {
            st.engine().logout(&sid).await?;
            // The device is unlinked: its keys are of no further use. The stored copy stays.
            store
                .key_store(&sid.to_string())
                .delete_all()
                .await
                .map_err(|e| {
                    ApiError::Internal(anyhow::anyhow!("deleting the session's keys: {e}"))
                })?;
            store
                .set_session_status(
                    &sid,
                    SessionStatus::LoggedOut,
                    Some("logged out through the API"),
                )
                .await?;
        }
    }
    let rec = owned_session(&st, &auth, &sid).await?;
    Ok(Json(rec.into()))
}

macro_rules! action_doc {
    ($fn:ident, $path:literal, $summary:literal, $desc:literal) => {
        #[utoipa::path(
            post, path = $path, tag = "sessions", summary = $summary, description = $desc,
            params(("sid" = String, Path, description = "Session id (ULID).")),
            responses(
                (status = 200, description = "The session after the action.", body = Session),
                (status = 404, description = "Unknown session or another organization's.", body = ErrorEnvelope),
                (status = 409, description = "The action does not fit the session's state.", body = ErrorEnvelope),
                (status = 501, description = "No WhatsApp connection can be made by this gateway for the session.", body = ErrorEnvelope),
            ),
            security(("bearer" = []))
        )]
        #[allow(dead_code)]
        pub(crate) fn $fn() {}
    };
}
action_doc!(start_doc, "/sessions/{sid}:start", "Start a session",
    "Connects the session to WhatsApp; an unpaired session then shows QR codes (`GET /sessions/{sid}/qr`). 409 when it already runs. Needs `manage`.");
action_doc!(stop_doc, "/sessions/{sid}:stop", "Stop a session",
    "Disconnects the session and keeps its pairing, so a later start logs in without scanning. Stopping a stopped session is harmless. Needs `manage`.");
action_doc!(
    restart_doc,
    "/sessions/{sid}:restart",
    "Restart a session",
    "Stops then starts the session's connection. Needs `manage`."
);
action_doc!(logout_doc, "/sessions/{sid}:logout", "Log a session out",
    "Unlinks this device from the phone; the next start needs a new pairing. Stored data is kept. Needs `manage`.");

/// The QR code to scan with the phone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Qr {
    /// Text to encode in a QR image (WhatsApp's pairing payload).
    pub qr: String,
    /// When WhatsApp replaces this code (epoch ms); fetch again after it.
    pub expires_at: i64,
}

/// A QR code as a greyscale PNG: 8 pixels per module and the 4-module quiet zone phones need.
fn qr_png(code: &qrcode::QrCode) -> anyhow::Result<Vec<u8>> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let modules = code.width();
    let side = (modules + 2 * QUIET) * SCALE;
    let colors = code.to_colors();
    let mut pixels = vec![255u8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// GET /api/v1/sessions/{sid}/qr — the current pairing QR code.
#[utoipa::path(
    get, path = "/sessions/{sid}/qr", tag = "sessions",
    summary = "Get the pairing QR code",
    description = "While a started session waits to be paired, returns the QR payload and when WhatsApp rotates \
it. With `format=svg` or `format=png` the answer is the QR image itself, to show directly. Every rotation is \
also an `auth.qr` event, so a page can follow the feed instead of polling. 409 when the session is not waiting \
for a scan. Needs `manage`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("format" = Option<String>, Query, description = "`json` (default), `svg` or `png`."),
    ),
    responses(
        (status = 200, description = "The QR code: JSON, or the image when `format` asks for one.", content(
            (Qr = "application/json"),
            (String = "image/svg+xml"),
            (String = "image/png"),
        )),
        (status = 400, description = "Unknown format.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session.", body = ErrorEnvelope),
        (status = 409, description = "The session is not waiting for a QR scan.", body = ErrorEnvelope),
        (status = 501, description = "This gateway has no WhatsApp connection for the session.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn get_qr(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
    q: QueryMap,
) -> ApiResult<Response> {
    let sid = path.session()?;
    let format = match q.get("format").unwrap_or("json") {
        f @ ("json" | "svg" | "png") => f,
        other => {
            return Err(ApiError::bad_parameter(
                "format",
                format!("`{other}` is not json, svg or png"),
            ))
        }
    };
    owned_session(&st, &auth, &sid).await?;
    let qr = st.engine().qr(&sid).await?;
    if format != "json" {
        let code = qrcode::QrCode::new(qr.code.as_bytes())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
        let (content_type, image) = if format == "svg" {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(256, 256)
                .build();
            ("image/svg+xml", svg.into_bytes())
        } else {
            ("image/png", qr_png(&code).map_err(ApiError::Internal)?)
        };
        return Ok((
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            image,
        )
            .into_response());
    }
    Ok(Json(Qr {
        qr: qr.code,
        expires_at: qr.expires_at,
    })
    .into_response())
}

/// The phone number to link.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingCodeRequest {
    /// The number of the phone to link, country code first.
    #[schema(example = "6281234567890")]
    pub phone: String,
}

/// The code to type on the phone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PairingCode {
    /// Eight characters, entered on the phone under Linked devices → Link with phone number.
    #[schema(example = "ABCD1234")]
    pub code: String,
}

/// POST /api/v1/sessions/{sid}/pairing-code — link by phone number instead of QR.
#[utoipa::path(
    post, path = "/sessions/{sid}/pairing-code", tag = "sessions",
    summary = "Request a pairing code",
    description = "For a started, unpaired session: asks WhatsApp for a code that links the device when typed on \
the phone with that number. Needs `manage`.",
    params(("sid" = String, Path, description = "Session id (ULID).")),
    request_body = PairingCodeRequest,
    responses(
        (status = 200, description = "The code.", body = PairingCode),
        (status = 404, description = "Unknown session.", body = ErrorEnvelope),
        (status = 409, description = "The session is not waiting to be paired.", body = ErrorEnvelope),
        (status = 422, description = "`phone` missing or not a plausible international number.", body = ErrorEnvelope),
        (status = 501, description = "This gateway has no WhatsApp connection for the session.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn pairing_code(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<PairingCodeRequest>,
) -> ApiResult<Json<PairingCode>> {
    let sid = path.session()?;
    let phone: Phone = body
        .phone
        .parse()
        .map_err(|m: String| ApiError::bad_body(Some("phone"), m))?;
    owned_session(&st, &auth, &sid).await?;
    let code = st.engine().pairing_code(&sid, &phone).await?;
    Ok(Json(PairingCode { code }))
}

/// The WhatsApp account a session is paired with.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    /// The account's phone-number JID.
    pub jid: Option<String>,
    /// The account's LID.
    pub lid: Option<String>,
    pub phone_number: Option<String>,
    /// The account's own display name.
    pub push_name: Option<String>,
    /// Whether the session is connected right now.
    pub connected: bool,
}

/// GET /api/v1/sessions/{sid}/me — the paired account.
#[utoipa::path(
    get, path = "/sessions/{sid}/me", tag = "sessions",
    summary = "Get the paired account",
    description = "The WhatsApp account the session is linked to, as last reported by WhatsApp. 409 when the session \
has never been paired. Needs `manage`.",
    params(("sid" = String, Path, description = "Session id (ULID).")),
    responses(
        (status = 200, description = "The account.", body = Me),
        (status = 404, description = "Unknown session.", body = ErrorEnvelope),
        (status = 409, description = "The session is not paired.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn get_me(
    auth: Auth<CapManage>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<Me>> {
    let sid = path.session()?;
    let s = owned_session(&st, &auth, &sid).await?;
    if s.wa_jid.is_none() && s.wa_lid.is_none() {
        return Err(ApiError::Conflict(
            "the session is not paired with a WhatsApp account".into(),
        ));
    }
    Ok(Json(Me {
        jid: s.wa_jid,
        lid: s.wa_lid,
        phone_number: s.phone_number,
        push_name: s.push_name,
        connected: st.engine().client(&sid).is_some(),
    }))
}

/// The account's presence to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPresence {
    /// `online` shows the account as online to its contacts (and lets WhatsApp deliver
    /// presence updates of others); `offline` shows "last seen".
    pub state: AccountPresenceState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccountPresenceState {
    Online,
    Offline,
}

/// PUT /api/v1/sessions/{sid}/presence — online or offline.
#[utoipa::path(
    put, path = "/sessions/{sid}/presence", tag = "sessions",
    summary = "Set the account's presence",
    description = "Shows the account as online or offline to its contacts, through the session's connected \
client. WhatsApp needs the account to have a name before it accepts `online`. 204 with an empty body; 501 when \
the session has no connected client. Needs `send`.",
    params(("sid" = String, Path, description = "Session id (ULID).")),
    request_body = AccountPresence,
    responses(
        (status = 204, description = "Sent."),
        (status = 501, description = "No connected WhatsApp client for the session.", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp refused or did not answer, or the database cannot be reached.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn set_account_presence(
    auth: Auth<CapSend>,
    State(st): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<AccountPresence>,
) -> ApiResult<StatusCode> {
    let sid = path.session()?;
    super::check_session(&st, &auth, &sid).await?;
    let client = st.engine().client(&sid).ok_or_else(ApiError::no_client)?;
    client
        .set_available(body.state == AccountPresenceState::Online)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
