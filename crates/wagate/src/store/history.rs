//! History-sync blobs kept until processed (see migration 0007).

use sqlx::FromRow;

use super::{on_db, Store};

/// A history-sync blob as WhatsApp delivered it.
#[derive(Debug, Clone, FromRow)]
pub struct PendingHistory {
    pub id: String,
    pub session_id: String,
    /// zlib-compressed `HistorySync` protobuf.
    pub data: Vec<u8>,
    pub decompressed_size: i64,
    pub sync_type: i32,
    pub chunk_order: Option<i64>,
    pub progress: Option<i64>,
    pub created_at: i64,
}

impl Store {
    pub async fn save_history_blob(&self, h: &PendingHistory) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, history::insert(h))?)
    }

    /// A session's blobs not yet processed, oldest first.
    pub async fn pending_history_blobs(
        &self,
        session: &str,
    ) -> anyhow::Result<Vec<PendingHistory>> {
        Ok(on_db!(self, history::pending(session))?)
    }

    pub async fn history_blob_done(&self, id: &str) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, history::delete(id))?)
    }
}
