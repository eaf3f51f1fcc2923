//! `/api/v1/sessions/{sid}/contacts...`: people the session has seen, and the live number check.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::check_session;
use super::extract::{JsonBody, PathParams, QueryMap};
use super::models::{Contact, ContactPage, OnWhatsApp};
use super::AppState;
use crate::auth::{Auth, CapRead};
use crate::domain::{Jid, Phone};
use crate::engine;
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
/// How long a number check is answered from memory before WhatsApp is asked again.
pub const CHECK_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// The most numbers one batch check takes.
pub const CHECK_MAX: usize = 50;

/// Recent answers of number checks, per session: repeated lookups (a CRM checking the same
/// list every few minutes) do not reach WhatsApp, which rate-limits and watches such queries.
#[derive(Default)]
pub struct NumberCache(
    std::sync::Mutex<
        std::collections::HashMap<
            (crate::domain::SessionId, String),
            (engine::OnWhatsApp, std::time::Instant),
        >,
    >,
);

impl NumberCache {
    fn get(&self, sid: &crate::domain::SessionId, phone: &Phone) -> Option<engine::OnWhatsApp> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(*sid, phone.digits().to_owned()))
            .filter(|(_, at)| at.elapsed() < CHECK_TTL)
            .map(|(answer, _)| answer.clone())
    }

    fn put(&self, sid: &crate::domain::SessionId, answers: &[engine::OnWhatsApp]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, at)| at.elapsed() < CHECK_TTL);
        }
        let now = std::time::Instant::now();
        for a in answers {
            map.insert((*sid, a.phone.digits().to_owned()), (a.clone(), now));
        }
    }
}

/// Answers for `phones` (already parsed), from the cache where fresh, the rest from WhatsApp in
/// one query. A number WhatsApp leaves out of its answer is reported as not registered.
async fn check_numbers(
    st: &AppState,
    sid: &crate::domain::SessionId,
    phones: &[Phone],
) -> ApiResult<Vec<engine::OnWhatsApp>> {
    let cache = st.numbers();
    let mut missing: Vec<Phone> = phones
        .iter()
        .filter(|p| cache.get(sid, p).is_none())
        .cloned()
        .collect();
    missing.sort_by(|a, b| a.digits().cmp(b.digits()));
    missing.dedup();
    if !missing.is_empty() {
        let client = st.engine().client(sid).ok_or_else(ApiError::no_client)?;
        let mut answers = client.is_on_whatsapp(&missing).await?;
        for p in &missing {
            if !answers.iter().any(|a| a.phone == *p) {
                answers.push(engine::OnWhatsApp {
                    phone: p.clone(),
                    registered: false,
                    jid: None,
                });
            }
        }
        cache.put(sid, &answers);
    }
    Ok(phones
        .iter()
        .map(|p| {
            cache.get(sid, p).unwrap_or(engine::OnWhatsApp {
                phone: p.clone(),
                registered: false,
                jid: None,
            })
        })
        .collect())
}

fn on_whatsapp(query: &str, answer: engine::OnWhatsApp) -> OnWhatsApp {
    OnWhatsApp {
        query: query.to_owned(),
        is_on_whatsapp: answer.registered,
        jid: answer
            .jid
            .filter(|_| answer.registered)
            .map(|j| j.to_string()),
    }
}

/// GET /api/v1/sessions/{sid}/contacts/check — is this number on WhatsApp?
#[utoipa::path(
    get, path = "/sessions/{sid}/contacts/check", tag = "contacts",
    summary = "Check whether a number is on WhatsApp",
    description = "Asks WhatsApp, through the session's connected client, whether `phone` has an account, and \
returns its JID when it does. Nothing is stored and the other person is not notified. Answers are kept for five \
minutes per session, so repeating a check does not query WhatsApp again. 501 when the session has no connected \
client. Needs `read`.",
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
        (status = 503, description = "WhatsApp did not answer, or the database cannot be reached.", body = ErrorEnvelope),
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
    let answer = check_numbers(&st, &sid, std::slice::from_ref(&phone)).await?;
    let answer = answer.into_iter().next().expect("one answer per number");
    Ok(Json(on_whatsapp(raw, answer)))
}

/// Numbers to check in one go.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckNumbers {
    /// 1 to 50 international numbers, country code first.
    #[schema(min_items = 1, max_items = 50, example = json!(["6281234567890", "+44 7700 900123"]))]
    pub phones: Vec<String>,
}

/// The answers of a batch check, in the order asked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckNumbersAnswer {
    pub data: Vec<OnWhatsApp>,
}

/// POST /api/v1/sessions/{sid}/contacts/check — several numbers at once.
#[utoipa::path(
    post, path = "/sessions/{sid}/contacts/check", tag = "contacts",
    summary = "Check up to 50 numbers at once",
    description = "The batch form of the number check: one WhatsApp query for all the numbers not answered in the \
last five minutes. The answers come in the order of `phones`. Read-only, like the single check. 501 when the \
session has no connected client. Needs `read`.",
    params(("sid" = String, Path, description = "Session id (ULID).")),
    request_body = CheckNumbers,
    responses(
        (status = 200, description = "One answer per number, in order.", body = CheckNumbersAnswer),
        (status = 422, description = "No numbers, more than 50, or one that is not a plausible international number (`details` names its index).", body = ErrorEnvelope),
        (status = 501, description = "No connected WhatsApp client for the session.", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp did not answer, or the database cannot be reached.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn check_numbers_batch(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<CheckNumbers>,
) -> ApiResult<Json<CheckNumbersAnswer>> {
    let sid = path.session()?;
    if body.phones.is_empty() || body.phones.len() > CHECK_MAX {
        return Err(ApiError::bad_body(
            Some("phones"),
            format!("1 to {CHECK_MAX} numbers"),
        ));
    }
    let phones = body
        .phones
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            raw.parse::<Phone>()
                .map_err(|m| ApiError::bad_body(Some(&format!("phones[{i}]")), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_session(&st, &auth, &sid).await?;
    let answers = check_numbers(&st, &sid, &phones).await?;
    Ok(Json(CheckNumbersAnswer {
        data: body
            .phones
            .iter()
            .zip(answers)
            .map(|(raw, a)| on_whatsapp(raw, a))
            .collect(),
    }))
}

/// A person's profile picture.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Picture {
    /// Where to download it (WhatsApp's CDN; the link expires after a while). `null` when the person
    /// has no picture or their privacy settings hide it from this account.
    pub url: Option<String>,
    /// WhatsApp's id of the picture; it changes when the picture does.
    pub id: Option<String>,
}

/// A person's about text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AboutText {
    /// `null` when there is none or privacy hides it.
    pub about: Option<String>,
    /// When it was set, epoch ms, if known.
    pub set_at: Option<i64>,
}

fn person(path: &PathParams) -> ApiResult<Jid> {
    let jid = path.jid("jid")?;
    if !jid.is_person() {
        return Err(ApiError::bad_parameter(
            "jid",
            "a person's JID (…@s.whatsapp.net or …@lid)",
        ));
    }
    Ok(jid)
}

/// GET /api/v1/sessions/{sid}/contacts/{jid}/picture — a person's profile picture.
#[utoipa::path(
    get, path = "/sessions/{sid}/contacts/{jid}/picture", tag = "contacts",
    summary = "Get a person's profile picture",
    description = "Asks WhatsApp, through the session's connected client, for the download link of a person's \
profile picture, as this account is allowed to see it. 501 when the session has no connected client. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("jid" = String, Path, description = "The person: `<digits>@s.whatsapp.net` or `<digits>@lid`."),
    ),
    responses(
        (status = 200, description = "The picture, or nulls when none is visible.", body = Picture),
        (status = 501, description = "No connected WhatsApp client for the session.", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp did not answer, or the database cannot be reached.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn picture(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<Picture>> {
    let (sid, jid) = (path.session()?, person(&path)?);
    check_session(&st, &auth, &sid).await?;
    let client = st.engine().client(&sid).ok_or_else(ApiError::no_client)?;
    let pic = client.profile_picture(&jid).await?;
    Ok(Json(Picture {
        url: pic.as_ref().map(|p| p.url.clone()),
        id: pic.map(|p| p.id),
    }))
}

/// GET /api/v1/sessions/{sid}/contacts/{jid}/about — a person's about text.
#[utoipa::path(
    get, path = "/sessions/{sid}/contacts/{jid}/about", tag = "contacts",
    summary = "Get a person's about text",
    description = "Asks WhatsApp, through the session's connected client, for a person's about text as this \
account is allowed to see it. 501 when the session has no connected client. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("jid" = String, Path, description = "The person: `<digits>@s.whatsapp.net` or `<digits>@lid`."),
    ),
    responses(
        (status = 200, description = "The about text, or null when none is visible.", body = AboutText),
        (status = 501, description = "No connected WhatsApp client for the session.", body = ErrorEnvelope),
        (status = 503, description = "WhatsApp did not answer, or the database cannot be reached.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn about(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<AboutText>> {
    let (sid, jid) = (path.session()?, person(&path)?);
    check_session(&st, &auth, &sid).await?;
    let client = st.engine().client(&sid).ok_or_else(ApiError::no_client)?;
    let about = client.about(&jid).await?;
    Ok(Json(AboutText {
        about: about.as_ref().map(|a| a.text.clone()),
        set_at: about.and_then(|a| a.set_at),
    }))
}
