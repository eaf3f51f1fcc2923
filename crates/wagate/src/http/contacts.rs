//! `/api/v1/sessions/{sid}/contacts...`: people the session has seen, and the live number check.

use axum::extract::State;
use axum::Json;

use super::check_session;
use super::extract::{PathParams, QueryMap};
use super::models::{Contact, ContactPage, OnWhatsApp};
use crate::app::AppState;
use crate::auth::{Auth, CapRead};
use crate::domain::{Jid, Phone};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::store::{ContactFilter, ContactSource};

/// GET /api/v1/sessions/{sid}/contacts — people this session has seen.
#[utoipa::path(
    get, path = "/sessions/{sid}/contacts", tag = "contacts",
    summary = "List contacts (people seen)",
    description = "People this session has met in a direct chat or in a group, read from stored data only (works \
while the session is disconnected). Filters combine: `source=dm|group`, `group=<group JID>` (members of that \
group), `q=` (case-insensitive substring of the name or the number). Ordered by when the session first saw the \
person. `nextCursor` is an empty string on the last page. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("source" = Option<String>, Query, description = "`dm`: people with a direct chat; `group`: people seen in a group."),
        ("group" = Option<String>, Query, description = "A group JID such as `12345-67890@g.us`: keep that group's members."),
        ("q" = Option<String>, Query, description = "Case-insensitive substring of the name or phone number."),
        ("limit" = Option<i64>, Query, description = "Page size, clamped to 1–200; omitted or 0 means 50."),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page; opaque."),
    ),
    responses(
        (status = 200, description = "A page of contacts.", body = ContactPage),
        (status = 400, description = "Malformed parameter (unknown source, non-numeric limit, bad group JID, bad cursor).", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `read`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or another organization's.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list_contacts(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
    q: QueryMap,
) -> ApiResult<Json<ContactPage>> {
    let sid = path.session()?;
    let limit = q.limit()?;
    let cursor = q.cursor('p', 1)?;
    let source = match q.get("source") {
        None => None,
        Some("dm") => Some(ContactSource::Dm),
        Some("group") => Some(ContactSource::Group),
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "source",
                format!("`{other}` is not one of dm, group"),
            ))
        }
    };
    let group = match q.get("group") {
        None => None,
        Some(raw) => {
            let jid: Jid = raw
                .parse()
                .map_err(|m: String| ApiError::bad_parameter("group", m))?;
            if !jid.is_group() {
                return Err(ApiError::bad_parameter(
                    "group",
                    format!("`{raw}` is not a group JID (…@g.us)"),
                ));
            }
            Some(jid)
        }
    };
    if q.get("q").is_some_and(|t| t.chars().count() > 100) {
        return Err(ApiError::bad_parameter("q", "at most 100 characters"));
    }
    let text = q
        .get("q")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let session = check_session(&st, &auth, &sid).await?;
    let filter = ContactFilter {
        source,
        group,
        q: text,
    };
    let (rows, next) = st
        .store()
        .list_contacts(&session, &filter, cursor.as_ref(), limit)
        .await?;
    Ok(Json(ContactPage {
        data: rows.into_iter().map(Contact::from).collect(),
        next_cursor: next.map(|c| c.encode()).unwrap_or_default(),
    }))
}

/// GET /api/v1/sessions/{sid}/contacts/check — is this number on WhatsApp?
#[utoipa::path(
    get, path = "/sessions/{sid}/contacts/check", tag = "contacts",
    summary = "Check whether a number is on WhatsApp",
    description = "Asks WhatsApp, through the session's connected client, whether `phone` has an account, and \
returns its JID when it does. Nothing is stored and the other person is not notified. 501 when the session has \
no connected client. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("phone" = String, Query, description = "International number, country code first: `6281234567890` or `+62 812-3456-7890`."),
    ),
    responses(
        (status = 200, description = "The answer.", body = OnWhatsApp),
        (status = 400, description = "`phone` missing or not a plausible international number.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `read`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or another organization's.", body = ErrorEnvelope),
        (status = 501, description = "No connected WhatsApp client for the session.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn check_number(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
    q: QueryMap,
) -> ApiResult<Json<OnWhatsApp>> {
    let sid = path.session()?;
    let raw = q
        .get("phone")
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| ApiError::bad_parameter("phone", "required"))?;
    let phone: Phone = raw
        .parse()
        .map_err(|m: String| ApiError::bad_parameter("phone", m))?;
    check_session(&st, &auth, &sid).await?;
    let client = st.engine().client(&sid).ok_or_else(ApiError::no_client)?;
    let answer = client.is_on_whatsapp(&phone).await?;
    Ok(Json(OnWhatsApp {
        query: raw.to_owned(),
        is_on_whatsapp: answer.registered,
        jid: answer
            .jid
            .filter(|_| answer.registered)
            .map(|j| j.to_string()),
    }))
}
