// History-sync blobs waiting to be processed (migration 0007, `store::history`).

use super::Pool;
use crate::store::history::PendingHistory;

pub async fn insert(pool: &Pool, h: &PendingHistory) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO history_pending (id, session_id, data, decompressed_size, sync_type, chunk_order, progress, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&h.id)
    .bind(&h.session_id)
    .bind(&h.data)
    .bind(h.decompressed_size)
    .bind(h.sync_type)
    .bind(h.chunk_order)
    .bind(h.progress)
    .bind(h.created_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn pending(pool: &Pool, s: &str) -> sqlx::Result<Vec<PendingHistory>> {
    sqlx::query_as::<_, PendingHistory>(
        "SELECT id, session_id, data, decompressed_size, sync_type, chunk_order, progress, created_at
         FROM history_pending WHERE session_id = $1 ORDER BY created_at, id",
    )
    .bind(s)
    .fetch_all(pool)
    .await
}

pub async fn delete(pool: &Pool, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM history_pending WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
