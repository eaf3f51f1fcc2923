//! Request extractors whose failures are already in the error envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::domain::{Cursor, Jid, Limit, SessionId};
use crate::error::ApiError;

/// A JSON body. Malformed JSON or invalid fields → 422; over the size limit → 413. The
/// `Content-Type` header is not required (curl's `-d` sends a form type by default).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(
                    "the request body is larger than this gateway accepts".into(),
                )
            } else {
                ApiError::bad_body(None, "the request body could not be read")
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ApiError::bad_body(None, e.to_string()))?;
        integral_floats_to_integers(&mut value);
        match serde_path_to_error::deserialize(value) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let msg = inner.to_string();
                let missing = msg
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next())
                    .map(str::to_owned);
                if let Some(field) = missing {
                    Err(ApiError::bad_body(Some(&field), "required"))
                } else if path == "." || path.is_empty() {
                    Err(ApiError::bad_body(None, msg))
                } else {
                    Err(ApiError::bad_body(Some(&path), msg))
                }
            }
        }
    }
}

/// JSON has one number type, and JSON Schema counts `5.0` as an integer; serde does not. Turns
/// every number with no fractional part that fits an `i64` into an integer, so an integer field
/// accepts `5.0` and `1e3` as the document promises (float fields still accept integers).
fn integral_floats_to_integers(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 {
                    *v = serde_json::Value::from(f as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// The query string as key/value pairs (first occurrence wins).
pub struct QueryMap(Vec<(String, String)>);

impl QueryMap {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn limit(&self) -> Result<Limit, ApiError> {
        Limit::parse(self.get("limit")).map_err(|m| ApiError::bad_parameter("limit", m))
    }

    /// The `cursor` parameter; empty means "first page".
    pub fn cursor(&self, kind: char, arity: usize) -> Result<Option<Cursor>, ApiError> {
        match self.get("cursor").filter(|c| !c.is_empty()) {
            None => Ok(None),
            Some(raw) => Cursor::decode(raw, kind, arity)
                .map(Some)
                .map_err(|m| ApiError::bad_parameter("cursor", m)),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        Ok(QueryMap(
            form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
        ))
    }
}

/// Parses a session id from the path.
pub fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse()
        .map_err(|m: String| ApiError::bad_parameter("sid", m))
}

/// Parses a chat JID from the path.
pub fn chat_jid(raw: &str) -> Result<Jid, ApiError> {
    raw.parse()
        .map_err(|m: String| ApiError::bad_parameter("cid", m))
}

/// The path's parameters, percent-decoded; a path that cannot be decoded is a 400.
pub struct PathParams(std::collections::HashMap<String, String>);

impl PathParams {
    fn raw(&self, name: &str) -> Result<&str, ApiError> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::bad_parameter(name, "missing"))
    }

    pub fn session(&self) -> Result<SessionId, ApiError> {
        session_id(self.raw("sid")?)
    }

    pub fn chat(&self) -> Result<Jid, ApiError> {
        chat_jid(self.raw("cid")?)
    }

    /// A JID in the path parameter `name`.
    pub fn jid(&self, name: &str) -> Result<Jid, ApiError> {
        self.raw(name)?
            .parse()
            .map_err(|m: String| ApiError::bad_parameter(name, m))
    }

    pub fn text(&self, name: &str) -> Result<&str, ApiError> {
        self.raw(name)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(
            parts, state,
        )
        .await
        .map(|p| PathParams(p.0))
        .map_err(|e| ApiError::bad_parameter("path", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::integral_floats_to_integers;

    /// Large integral floats parse exactly (serde_json's `float_roundtrip`): a value one unit
    /// off in the last place would have a fraction and be refused.
    #[test]
    fn large_integral_floats_become_exact_integers() {
        for (text, want) in [
            ("2251799813685247.0", 2251799813685247_i64),
            ("4503599627370495.0", 4503599627370495),
            ("1e3", 1000),
            ("-9007199254740991.0", -9007199254740991),
        ] {
            let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
            integral_floats_to_integers(&mut v);
            assert_eq!(v, serde_json::json!(want), "{text}");
        }
        let mut v: serde_json::Value = serde_json::from_str("2.5").unwrap();
        integral_floats_to_integers(&mut v);
        assert!(v.is_f64());
    }
}
