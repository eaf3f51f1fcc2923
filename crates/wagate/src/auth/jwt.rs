//! Login JWTs minted by the frontend, verified against its JWKS.
//!
//! Accepted algorithms: EdDSA (Ed25519), ES256 and RS256. `alg: none` and the HMAC family are
//! refused outright (an HMAC "signature" made with a public key is a classic forgery). `iss`,
//! `aud` and `exp` are required; `nbf` is enforced when present. Keys are cached by `kid`; a
//! token naming an unknown `kid` triggers at most one JWKS fetch per `refresh_interval`, so forged
//! headers cannot turn the gateway into a hammer against the identity service.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::{Caller, Principal};
use crate::config::JwtConfig;
use crate::domain::{CapSet, Capability};
use crate::error::ApiError;

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// The key to use for tokens without `kid`, when the set has exactly one.
    only: Option<DecodingKey>,
    fetched_at: Option<Instant>,
}

pub struct JwtVerifier {
    cfg: JwtConfig,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// Serialises fetches and remembers when the last one was tried.
    last_fetch: Mutex<Option<Instant>>,
}

impl JwtVerifier {
    pub fn new(cfg: JwtConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        JwtVerifier {
            cfg,
            http,
            keys: RwLock::new(KeySet {
                keys: HashMap::new(),
                only: None,
                fetched_at: None,
            }),
            last_fetch: Mutex::new(None),
        }
    }

    /// Fetches the JWKS unless one was fetched less than `refresh_interval` ago.
    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.cfg.refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => *self.keys.write().await = set,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), url = %self.cfg.jwks_url, "JWKS fetch failed")
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<KeySet> {
        let set: JwkSet = self
            .http
            .get(&self.cfg.jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        let mut all = Vec::new();
        for jwk in &set.keys {
            match DecodingKey::from_jwk(jwk) {
                Ok(k) => {
                    if let Some(kid) = &jwk.common.key_id {
                        keys.insert(kid.clone(), k.clone());
                    }
                    all.push(k);
                }
                Err(e) => {
                    tracing::warn!(error = %e, kid = ?jwk.common.key_id, "skipping a JWKS key the gateway cannot use")
                }
            }
        }
        let only = if all.len() == 1 { all.pop() } else { None };
        Ok(KeySet {
            keys,
            only,
            fetched_at: Some(Instant::now()),
        })
    }

    async fn key_for(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let lookup = |set: &KeySet| match kid {
            Some(k) => set.keys.get(k).cloned(),
            None => set.only.clone(),
        };
        {
            let set = self.keys.read().await;
            let fresh = set
                .fetched_at
                .is_some_and(|t| t.elapsed() < self.cfg.max_age);
            if fresh {
                if let Some(k) = lookup(&set) {
                    return Some(k);
                }
            }
        }
        self.refresh().await;
        lookup(&*self.keys.read().await)
    }

    /// Verifies a token and maps its claims to a caller.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let unauthorized =
            |why: &str| ApiError::Unauthorized(format!("invalid login token: {why}"));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("unreadable or unsupported header"))?;
        if !matches!(
            header.alg,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256
        ) {
            return Err(unauthorized("the algorithm must be EdDSA, ES256 or RS256"));
        }
        let key = self
            .key_for(header.kid.as_deref())
            .await
            .ok_or_else(|| unauthorized("unknown signing key"))?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        v.leeway = 30;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &v)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind::*;
                match e.kind() {
                    ExpiredSignature => unauthorized("expired"),
                    ImmatureSignature => unauthorized("not valid yet (nbf)"),
                    InvalidIssuer => unauthorized("wrong issuer"),
                    InvalidAudience => unauthorized("wrong audience"),
                    MissingRequiredClaim(c) => unauthorized(&format!("missing claim `{c}`")),
                    _ => unauthorized("bad signature or claims"),
                }
            })?;
        let claims = data.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let sub = text(&self.cfg.claim_sub).ok_or_else(|| unauthorized("missing subject"))?;
        let org = text(&self.cfg.claim_org)
            .filter(|o| !o.is_empty())
            .ok_or_else(|| {
                ApiError::Forbidden("the login token names no active organization".into())
            })?;
        let org_role = text(&self.cfg.claim_org_role);
        let caps = caps_for_role(org_role.as_deref());
        Ok(Caller {
            org_id: org,
            caps,
            principal: Principal::User {
                id: sub,
                org_role,
                platform_role: text(&self.cfg.claim_role),
            },
            // A login ends, the person does not: keys they create are not bound to the token.
            expires_at: None,
        })
    }
}

/// Owners and admins hold every capability; members read and send; anyone else nothing.
pub fn caps_for_role(role: Option<&str>) -> CapSet {
    match role {
        Some("owner") | Some("admin") => CapSet::all(),
        Some("member") => [Capability::Read, Capability::Send].into_iter().collect(),
        _ => CapSet::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_capabilities() {
        assert_eq!(caps_for_role(Some("owner")), CapSet::all());
        assert_eq!(caps_for_role(Some("admin")), CapSet::all());
        let m = caps_for_role(Some("member"));
        assert!(
            m.contains(Capability::Read)
                && m.contains(Capability::Send)
                && !m.contains(Capability::Manage)
        );
        assert!(caps_for_role(Some("guest")).is_empty());
        assert!(caps_for_role(None).is_empty());
    }
}
