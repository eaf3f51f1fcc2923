//! API keys: only the SHA-256 of the secret is stored.

use sqlx::FromRow;

use super::Store;
use crate::domain::now_ms;

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub capabilities: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

const COLS: &str = "id, org_id, name, key_hash, key_prefix, capabilities, created_by, created_at, expires_at, revoked_at, last_used_at";

/// A key to insert; the caller has already hashed the secret.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub capabilities: String,
    pub created_by: Option<String>,
    pub expires_at: Option<i64>,
}

impl Store {
    pub async fn insert_api_key(&self, k: NewApiKey) -> anyhow::Result<ApiKeyRecord> {
        let _w = self.write_gate().await;
        Ok(sqlx::query_as::<_, ApiKeyRecord>(&format!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix, capabilities, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLS}"
        ))
        .bind(&k.id)
        .bind(&k.org_id)
        .bind(&k.name)
        .bind(&k.key_hash)
        .bind(&k.key_prefix)
        .bind(&k.capabilities)
        .bind(&k.created_by)
        .bind(now_ms())
        .bind(k.expires_at)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn find_api_key_by_hash(&self, hash: &str) -> anyhow::Result<Option<ApiKeyRecord>> {
        Ok(sqlx::query_as::<_, ApiKeyRecord>(&format!(
            "SELECT {COLS} FROM api_keys WHERE key_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// An org's keys, revoked ones included, oldest first.
    pub async fn list_api_keys(&self, org: &str) -> anyhow::Result<Vec<ApiKeyRecord>> {
        Ok(sqlx::query_as::<_, ApiKeyRecord>(&format!(
            "SELECT {COLS} FROM api_keys WHERE org_id = $1 ORDER BY id"
        ))
        .bind(org)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn count_api_keys(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Revokes a key. With `org`, only that org's key. True when a live key was revoked.
    pub async fn revoke_api_key(
        &self,
        org: Option<&str>,
        id: &str,
    ) -> anyhow::Result<Option<ApiKeyRecord>> {
        let _w = self.write_gate().await;
        let now = now_ms();
        Ok(sqlx::query_as::<_, ApiKeyRecord>(&format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
             WHERE id = $1 AND ($2 IS NULL OR org_id = $2) RETURNING {COLS}"
        ))
        .bind(id)
        .bind(org)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn touch_api_key(&self, id: &str, at: i64) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
