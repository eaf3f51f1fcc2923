//! Authentication (who is calling, for which org) and authorization (which capabilities).
//!
//! A bearer token is tried as a login JWT (verified against the frontend's JWKS) and as an
//! API key (`wag_...`). Handlers never look at tokens: they take an [`Auth`] extractor whose
//! type names the capability the route needs. The extractor asks the router's state only for
//! the [`Authenticator`] (`Arc<Authenticator>: FromRef<S>`), so this module never sees the
//! application state.

pub mod api_key;
pub mod jwt;

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;

use crate::domain::{CapSet, Capability};
use crate::error::ApiError;

pub use crate::config::JwtConfig;
pub use api_key::ApiKeyService;
pub use jwt::JwtVerifier;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub org_id: String,
    pub caps: CapSet,
    pub principal: Principal,
    /// When the caller's own credential stops working (an expiring API key), epoch ms. A key
    /// this caller creates never outlives it.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum Principal {
    /// A person logged in through the frontend.
    User {
        id: String,
        org_role: Option<String>,
        platform_role: Option<String>,
    },
    /// A script or service holding an API key.
    ApiKey { id: String },
}

impl Caller {
    /// A short label recorded as the creator of keys this caller makes.
    pub fn label(&self) -> String {
        match &self.principal {
            Principal::User { id, .. } => format!("user:{id}"),
            Principal::ApiKey { id } => format!("key:{id}"),
        }
    }
}

/// Verifies bearer tokens.
pub struct Authenticator {
    pub jwt: Option<JwtVerifier>,
    pub keys: ApiKeyService,
}

impl Authenticator {
    /// Resolves a token to a caller, or `Unauthorized`.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(ApiError::Unauthorized("missing bearer token".into()));
        }
        if token.starts_with(api_key::PREFIX) {
            return self.keys.verify(token).await;
        }
        if token.split('.').count() == 3 {
            return match &self.jwt {
                Some(v) => v.verify(token).await,
                None => Err(ApiError::Unauthorized(
                    "login tokens are not accepted: no JWKS is configured".into(),
                )),
            };
        }
        Err(ApiError::Unauthorized(
            "the token is neither a login JWT nor an API key".into(),
        ))
    }
}

/// A capability a route requires, as a type.
pub trait Requirement: Send + Sync + 'static {
    const CAP: Capability;
}

macro_rules! requirement {
    ($name:ident, $cap:expr) => {
        #[doc = concat!("Route requirement `", stringify!($name), "`.")]
        pub struct $name;
        impl Requirement for $name {
            const CAP: Capability = $cap;
        }
    };
}
requirement!(CapRead, Capability::Read);
requirement!(CapSend, Capability::Send);
requirement!(CapManage, Capability::Manage);
requirement!(CapEvents, Capability::Events);

/// An authenticated caller holding capability `R`. 401 without a valid token, 403 without `R`.
pub struct Auth<R: Requirement>(pub Caller, PhantomData<R>);

impl<R: Requirement> std::ops::Deref for Auth<R> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

/// The bearer token of a request: `Authorization: Bearer <t>` or `X-Api-Key: <t>`.
fn token_of(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
        return None;
    }
    parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl<S, R> FromRequestParts<S> for Auth<R>
where
    S: Send + Sync,
    R: Requirement,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<Authenticator>::from_ref(state);
        let token = token_of(parts).ok_or_else(|| {
            ApiError::Unauthorized(
                "send `Authorization: Bearer <token>` with a login JWT or an API key".into(),
            )
        })?;
        let caller = auth.authenticate(token).await?;
        if !caller.caps.contains(R::CAP) {
            return Err(ApiError::Forbidden(format!(
                "this endpoint needs the `{}` capability",
                R::CAP
            )));
        }
        Ok(Auth(caller, PhantomData))
    }
}
