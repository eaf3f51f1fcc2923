//! Sessions: one attached WhatsApp number each, owned by one organization.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::Store;
use crate::domain::{now_ms, SessionId};

/// Lifecycle state of a session as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Starting,
    ScanQrCode,
    Working,
    Failed,
    Stopped,
    LoggedOut,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::ScanQrCode => "scan_qr_code",
            SessionStatus::Working => "working",
            SessionStatus::Failed => "failed",
            SessionStatus::Stopped => "stopped",
            SessionStatus::LoggedOut => "logged_out",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "starting" => SessionStatus::Starting,
            "scan_qr_code" => SessionStatus::ScanQrCode,
            "working" => SessionStatus::Working,
            "failed" => SessionStatus::Failed,
            "logged_out" => SessionStatus::LoggedOut,
            _ => SessionStatus::Stopped,
        }
    }

    /// True while the engine holds (or is building) a connection for the session.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            SessionStatus::Starting | SessionStatus::ScanQrCode | SessionStatus::Working
        )
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub org_id: String,
    pub label: Option<String>,
    pub status: String,
    pub phone_number: Option<String>,
    pub wa_jid: Option<String>,
    pub wa_lid: Option<String>,
    pub push_name: Option<String>,
    #[sqlx(try_from = "super::Flag")]
    pub auto_read: bool,
    #[sqlx(try_from = "super::Flag")]
    pub presence_typing: bool,
    pub rate_per_min: i64,
    pub rate_per_hour: i64,
    pub last_connected_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SessionRecord {
    pub fn status(&self) -> SessionStatus {
        SessionStatus::parse(&self.status)
    }
}

const COLS: &str = "id, org_id, label, status, phone_number, wa_jid, wa_lid, push_name, auto_read, presence_typing, rate_per_min, rate_per_hour, last_connected_at, created_at, updated_at";

/// Settings of a new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub org_id: String,
    pub label: Option<String>,
    pub auto_read: bool,
    pub presence_typing: bool,
    pub rate_per_min: i64,
    pub rate_per_hour: i64,
}

/// A partial update of a session's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SessionPatch {
    pub label: Option<Option<String>>,
    pub auto_read: Option<bool>,
    pub presence_typing: Option<bool>,
    pub rate_per_min: Option<i64>,
    pub rate_per_hour: Option<i64>,
}

impl Store {
    pub async fn create_session(&self, new: NewSession) -> anyhow::Result<SessionRecord> {
        let id = SessionId::new().to_string();
        let now = now_ms();
        let _w = self.write_gate().await;
        let row = sqlx::query_as::<_, SessionRecord>(&format!(
            "INSERT INTO sessions (id, org_id, label, status, auto_read, presence_typing, rate_per_min, rate_per_hour, created_at, updated_at)
             VALUES ($1, $2, $3, 'stopped', $4, $5, $6, $7, $8, $8) RETURNING {COLS}"
        ))
        .bind(&id)
        .bind(&new.org_id)
        .bind(&new.label)
        .bind(new.auto_read)
        .bind(new.presence_typing)
        .bind(new.rate_per_min)
        .bind(new.rate_per_hour)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// The session `id` if it belongs to `org` (`None` for another org's session: callers answer 404).
    pub async fn get_session(
        &self,
        org: &str,
        id: &SessionId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        Ok(sqlx::query_as::<_, SessionRecord>(&format!(
            "SELECT {COLS} FROM sessions WHERE id = $1 AND org_id = $2"
        ))
        .bind(id.to_string())
        .bind(org)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Any session by id, whatever its org (for the engine and the CLI).
    pub async fn get_session_any_org(
        &self,
        id: &SessionId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        Ok(sqlx::query_as::<_, SessionRecord>(&format!(
            "SELECT {COLS} FROM sessions WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// An org's sessions, oldest first (ULIDs sort by creation time).
    pub async fn list_sessions(&self, org: &str) -> anyhow::Result<Vec<SessionRecord>> {
        Ok(sqlx::query_as::<_, SessionRecord>(&format!(
            "SELECT {COLS} FROM sessions WHERE org_id = $1 ORDER BY id"
        ))
        .bind(org)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sessions the engine should bring back after a restart.
    pub async fn list_active_sessions(&self) -> anyhow::Result<Vec<SessionRecord>> {
        Ok(sqlx::query_as::<_, SessionRecord>(&format!(
            "SELECT {COLS} FROM sessions WHERE status IN ('starting', 'scan_qr_code', 'working') ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn update_session(
        &self,
        org: &str,
        id: &SessionId,
        p: SessionPatch,
    ) -> anyhow::Result<Option<SessionRecord>> {
        let _w = self.write_gate().await;
        Ok(sqlx::query_as::<_, SessionRecord>(&format!(
            "UPDATE sessions SET
                label = CASE WHEN $3 = 1 THEN $4 ELSE label END,
                auto_read = COALESCE($5, auto_read),
                presence_typing = COALESCE($6, presence_typing),
                rate_per_min = COALESCE($7, rate_per_min),
                rate_per_hour = COALESCE($8, rate_per_hour),
                updated_at = $9
             WHERE id = $1 AND org_id = $2 RETURNING {COLS}"
        ))
        .bind(id.to_string())
        .bind(org)
        .bind(p.label.is_some() as i64)
        .bind(p.label.flatten())
        .bind(p.auto_read)
        .bind(p.presence_typing)
        .bind(p.rate_per_min)
        .bind(p.rate_per_hour)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a lifecycle change reported by the engine.
    pub async fn set_session_status(
        &self,
        id: &SessionId,
        status: SessionStatus,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let _w = self.write_gate().await;
        sqlx::query(
            "UPDATE sessions SET status = $2, updated_at = $3,
                last_connected_at = CASE WHEN $2 = 'working' THEN $3 ELSE last_connected_at END
             WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(status.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the WhatsApp account a session is paired with.
    pub async fn set_session_account(
        &self,
        id: &SessionId,
        wa_jid: Option<&str>,
        wa_lid: Option<&str>,
        phone: Option<&str>,
        push_name: Option<&str>,
    ) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        sqlx::query(
            "UPDATE sessions SET wa_jid = $2, wa_lid = $3, phone_number = $4, push_name = COALESCE($5, push_name), updated_at = $6 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(wa_jid)
        .bind(wa_lid)
        .bind(phone)
        .bind(push_name)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes a session and, by cascade, everything stored for it. True when it existed.
    pub async fn delete_session(&self, org: &str, id: &SessionId) -> anyhow::Result<bool> {
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let sid = id.to_string();
        let owned: Option<String> =
            sqlx::query_scalar("SELECT id FROM sessions WHERE id = $1 AND org_id = $2")
                .bind(&sid)
                .bind(org)
                .fetch_optional(&mut *tx)
                .await?;
        if owned.is_none() {
            return Ok(false);
        }
        // Messages go first in one statement; the cascade would otherwise visit them chat by chat.
        sqlx::query("DELETE FROM messages WHERE session_id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(&sid)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
