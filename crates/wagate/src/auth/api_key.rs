//! API keys: `wag_` followed by 43 base64url characters (32 random bytes). Only the SHA-256
//! of the whole key is stored; a lookup hashes the presented key and compares in constant time.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, Principal};
use crate::domain::{now_ms, CapSet};
use crate::error::ApiError;
use crate::store::{ApiKeyRecord, NewApiKey, Store};

pub const PREFIX: &str = "wag_";
/// `last_used_at` is written at most this often per key (ms).
const TOUCH_EVERY_MS: i64 = 60_000;
/// A verified key is trusted this long without asking the database again. Revoking through
/// this node's API evicts it at once; a revocation made elsewhere (CLI, another node) takes
/// effect within this time.
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(10);

struct Verified {
    caller: Caller,
    expires_at: Option<i64>,
    at: std::time::Instant,
}

/// Hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh random key.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates, verifies and revokes API keys.
pub struct ApiKeyService {
    store: Store,
    touched: Mutex<HashMap<String, i64>>,
    /// Keyed by the key's hash.
    verified: Mutex<HashMap<String, Verified>>,
}

impl ApiKeyService {
    pub fn new(store: Store) -> Self {
        ApiKeyService {
            store,
            touched: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a key; returns its record and the secret (shown once, never stored).
    pub async fn create(
        &self,
        org: &str,
        name: &str,
        caps: CapSet,
        expires_at: Option<i64>,
        created_by: Option<String>,
    ) -> anyhow::Result<(ApiKeyRecord, String)> {
        anyhow::ensure!(!caps.is_empty(), "a key needs at least one capability");
        let secret = generate_key();
        let record = self
            .store
            .insert_api_key(NewApiKey {
                id: ulid::Ulid::new().to_string(),
                org_id: org.to_owned(),
                name: name.to_owned(),
                key_hash: hash_key(&secret),
                key_prefix: secret[..PREFIX.len() + 6].to_owned(),
                capabilities: caps.to_string(),
                created_by,
                expires_at,
            })
            .await?;
        Ok((record, secret))
    }

    /// Resolves a presented key to its caller.
    pub async fn verify(&self, presented: &str) -> Result<Caller, ApiError> {
        let invalid = || ApiError::Unauthorized("invalid API key".into());
        let hash = hash_key(presented);
        let now = now_ms();
        if let Some(caller) = self.cached(&hash, now) {
            return Ok(caller);
        }
        let rec = self
            .store
            .find_api_key_by_hash(&hash)
            .await?
            .ok_or_else(invalid)?;
        if !bool::from(rec.key_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(invalid());
        }
        if rec.revoked_at.is_some() {
            return Err(ApiError::Unauthorized(
                "this API key has been revoked".into(),
            ));
        }
        if rec.expires_at.is_some_and(|e| e <= now) {
            return Err(ApiError::Unauthorized("this API key has expired".into()));
        }
        let caps = CapSet::parse_list(&rec.capabilities)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
        self.touch(&rec.id, rec.last_used_at, now);
        let caller = Caller {
            org_id: rec.org_id,
            caps,
            principal: Principal::ApiKey { id: rec.id },
            expires_at: rec.expires_at,
        };
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 10_000 {
            cache.retain(|_, v| v.at.elapsed() < VERIFIED_TTL);
        }
        cache.insert(
            hash,
            Verified {
                caller: caller.clone(),
                expires_at: rec.expires_at,
                at: std::time::Instant::now(),
            },
        );
        Ok(caller)
    }

    fn cached(&self, hash: &str, now: i64) -> Option<Caller> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let v = cache.get(hash)?;
        let fresh = v.at.elapsed() < VERIFIED_TTL && v.expires_at.is_none_or(|e| e > now);
        if !fresh {
            return None;
        }
        if let Principal::ApiKey { id } = &v.caller.principal {
            self.touch(id, None, now);
        }
        Some(v.caller.clone())
    }

    /// Forgets a key's cached verification (call after revoking it).
    pub fn evict(&self, key_id: &str) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(
            |_, v| !matches!(&v.caller.principal, Principal::ApiKey { id } if id == key_id),
        );
    }

    /// Records the last use in the background, at most once a minute per key.
    fn touch(&self, id: &str, stored: Option<i64>, now: i64) {
        {
            let mut t = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            let last = t.get(id).copied().or(stored).unwrap_or(0);
            if now - last < TOUCH_EVERY_MS {
                return;
            }
            t.insert(id.to_owned(), now);
        }
        let store = self.store.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.touch_api_key(&id, now).await {
                tracing::warn!(error = %e, key = %id, "could not record API key use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hash_stably() {
        let a = generate_key();
        let b = generate_key();
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
        assert_eq!(hash_key(&a).len(), 64);
    }
}
