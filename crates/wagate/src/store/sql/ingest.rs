//! The transactions of the ingest service (see `store::ingest` for the contract): each opens a
//! transaction, takes the session's lock, applies the change, writes one event per visible
//! change and commits; transient conflicts run it again.

use std::collections::BTreeSet;

use super::{Conn, Pool, Tx};
use crate::domain::Jid;
use crate::store::ingest::{
    ChatSettings, GroupInfo, GroupMember, HistoryCounts, HistoryPart, NewMessage,
    ParticipantChange, PersonNames, Receipt, RecordOptions, WriteJob, WriteOutcome,
};
use crate::store::outbox::{kind, Outbox, Touched};
use crate::store::records::{ChatPatch, ChatRecord};
use crate::store::retrying;
use crate::store::wire::{Chat, Contact};

/// Opens the transaction of a change to `session`'s stored copy: `None` when the session no
/// longer exists (its data went with it, so there is nothing to store).
async fn open(pool: &Pool, session: &str) -> sqlx::Result<Option<(Tx, Outbox)>> {
    let mut tx = super::begin(pool).await?;
    super::lock_session(&mut tx, session).await?;
    match super::sessions::org_of(&mut tx, session).await? {
        Some(org) => Ok(Some((tx, Outbox::new(org)))),
        None => {
            tracing::debug!(
                session,
                "ingest for a session that no longer exists: dropped"
            );
            Ok(None)
        }
    }
}

/// Puts a `chat.update` / `contact.update` event for each chat and contact in `t` before the
/// drafted events (chats and contacts come before the messages that mention them).
async fn with_touched(
    conn: &mut Conn,
    s: &str,
    t: Touched,
    mut out: Outbox,
) -> sqlx::Result<Outbox> {
    let mut first = Outbox::new(out.org.clone());
    for id in &t.chats {
        if let Some(c) = super::chats::by_id(&mut *conn, *id).await? {
            first.push(Some(s), kind::CHAT_UPDATE, &Chat::from(c));
        }
    }
    for id in &t.contacts {
        if let Some(c) = super::people::record(&mut *conn, *id).await? {
            first.push(Some(s), kind::CONTACT_UPDATE, &Contact::from(c));
        }
    }
    out.drafts.splice(0..0, first.drafts);
    Ok(out)
}

/// Writes a `chat.update` / `contact.update` event for each chat and contact the transaction
/// changed, then the drafted events, then commits.
async fn close(mut tx: Tx, s: &str, t: Touched, out: Outbox) -> sqlx::Result<()> {
    let out = with_touched(&mut tx, s, t, out).await?;
    super::events::flush(&mut tx, &out).await?;
    tx.commit().await
}

/// Several callers' writes in one transaction (see `Store::write`). The messages of one
/// session's jobs (with the same options) are recorded together, as one batch in job order;
/// then each job's changes, receipts and outbox settlement, in job order. A job of a session
/// that no longer exists writes nothing. Returns each job's outcome.
pub async fn apply_batch(pool: &Pool, jobs: &[&WriteJob]) -> sqlx::Result<Vec<WriteOutcome>> {
    // Groups of jobs: same session and options, in the order each group first appears.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let same = |g: &&mut Vec<usize>| {
            let first = &jobs[g[0]];
            first.session == job.session
                && first.opts.count_unread == job.opts.count_unread
                && first.opts.emit_events == job.opts.emit_events
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    // Each session once, in a fixed order (PostgreSQL locks them).
    let mut sessions: Vec<&str> = jobs.iter().map(|j| j.session.as_str()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    let any_messages = jobs.iter().any(|j| !j.msgs.is_empty());
    retrying!(
        async {
            let mut tx = super::begin(pool).await?;
            for s in &sessions {
                super::lock_session(&mut tx, s).await?;
            }
            let orgs = super::sessions::orgs_of(&mut tx, &sessions).await?;
            // The groups of sessions that still exist, each with its messages.
            let live: Vec<(&Vec<usize>, &String, Vec<NewMessage>)> = groups
                .iter()
                .filter_map(|g| {
                    let org = orgs.get(jobs[g[0]].session.as_str())?;
                    let msgs = g
                        .iter()
                        .flat_map(|&i| jobs[i].msgs.iter().cloned())
                        .collect();
                    Some((g, org, msgs))
                })
                .collect();
            let mut touched: Vec<(Touched, Outbox)> = live
                .iter()
                .map(|(_, org, _)| (Touched::default(), Outbox::new(org.as_str())))
                .collect();
            let recorded = if any_messages {
                let mut parts: Vec<super::messages::Part<'_>> = live
                    .iter()
                    .zip(touched.iter_mut())
                    .map(|((g, _, msgs), (t, out))| super::messages::Part {
                        session: &jobs[g[0]].session,
                        msgs,
                        opts: jobs[g[0]].opts,
                        t,
                        out,
                    })
                    .collect();
                super::messages::record_parts(&mut tx, &mut parts).await?
            } else {
                vec![Vec::new(); live.len()]
            };
            let mut results: Vec<WriteOutcome> = vec![WriteOutcome::default(); jobs.len()];
            // One outbox per organization, in the order the groups first name it.
            let mut outs: Vec<Outbox> = Vec::new();
            for (((group, _, _), (t, mut out)), recorded) in live.iter().zip(touched).zip(recorded)
            {
                let s = jobs[group[0]].session.as_str();
                let mut recorded = recorded.into_iter();
                for &i in group.iter() {
                    results[i].recorded = recorded.by_ref().take(jobs[i].msgs.len()).collect();
                }
                for &i in group.iter() {
                    let job = jobs[i];
                    for c in &job.changes {
                        super::messages::change(&mut tx, s, c, &mut out).await?;
                    }
                    for r in &job.receipts {
                        results[i].statuses += receipt(&mut tx, s, r, &mut out).await?;
                    }
                    if let Some((id, end)) = &job.settle {
                        super::outgoing::settle(&mut tx, id, end).await?;
                    }
                }
                let out = with_touched(&mut tx, s, t, out).await?;
                match outs.iter_mut().find(|o| o.org == out.org) {
                    Some(o) => o.drafts.extend(out.drafts),
                    None => outs.push(out),
                }
            }
            for out in &outs {
                super::events::flush(&mut tx, out).await?;
            }
            tx.commit().await?;
            Ok(results)
        }
        .await
    )
}

/// One caller's writes in a transaction of their own.
pub async fn apply(pool: &Pool, job: &WriteJob) -> sqlx::Result<WriteOutcome> {
    Ok(apply_batch(pool, &[job]).await?.pop().unwrap_or_default())
}

/// Moves the status of a receipt's messages forward; returns how many moved.
async fn receipt(conn: &mut Conn, s: &str, r: &Receipt, out: &mut Outbox) -> sqlx::Result<u64> {
    if r.ids.is_empty() {
        return Ok(0);
    }
    let Some((chat_id, jid)) = super::chats::find(&mut *conn, s, &r.chat.to_string()).await? else {
        return Ok(0);
    };
    super::messages::set_status(
        conn,
        chat_id,
        &jid,
        &r.ids,
        r.status,
        r.error.as_deref(),
        out,
    )
    .await
}

async fn apply_chat(
    conn: &mut Conn,
    s: &str,
    c: &ChatSettings,
    t: &mut Touched,
    out: &mut Outbox,
) -> sqlx::Result<Option<ChatRecord>> {
    if c.deleted {
        if let Some(gone) = super::chats::delete(&mut *conn, s, &c.chat).await? {
            t.chats.remove(&gone.id);
            out.push(Some(s), kind::CHAT_DELETED, &Chat::from(gone));
        }
        return Ok(None);
    }
    let (id, _) = super::chats::ensure(&mut *conn, s, &c.chat, c.chat_alt.as_ref(), t).await?;
    let row = super::chats::apply_settings(
        conn,
        id,
        c.name.as_deref(),
        c.archived,
        c.pinned,
        c.muted_until,
        c.unread_count,
        c.last_message_at,
    )
    .await?;
    if let (Some(at), Some(chat)) = (c.changed_at, &row) {
        // The phone's change, if newer, wins over one the API queued for it.
        let settings = [
            c.archived.map(|_| "archived"),
            c.pinned.map(|_| "pinned"),
            c.muted_until.map(|_| "muted_until"),
        ];
        for setting in settings.into_iter().flatten() {
            super::chats::superseded_by_phone(&mut *conn, s, &chat.jid, setting, at).await?;
        }
    }
    t.chats.insert(id);
    Ok(row)
}

pub async fn chat(pool: &Pool, s: &str, c: &ChatSettings) -> sqlx::Result<Option<ChatRecord>> {
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(None);
            };
            let mut t = Touched::default();
            let row = apply_chat(&mut tx, s, c, &mut t, &mut out).await?;
            close(tx, s, t, out).await?;
            Ok(row)
        }
        .await
    )
}

async fn apply_names(
    conn: &mut Conn,
    s: &str,
    names: &[PersonNames],
    t: &mut Touched,
) -> sqlx::Result<()> {
    for n in names {
        let id = super::people::person_with_alt(&mut *conn, s, &n.jid, n.alt.as_ref(), t).await?;
        super::people::set_names(
            &mut *conn,
            id,
            n.push_name.as_deref(),
            n.business_name.as_deref(),
            n.saved_name.as_ref().map(|x| x.as_deref()),
            t,
        )
        .await?;
    }
    Ok(())
}

pub async fn names(pool: &Pool, s: &str, names: &[PersonNames]) -> sqlx::Result<()> {
    retrying!(
        async {
            let Some((mut tx, out)) = open(pool, s).await? else {
                return Ok(());
            };
            let mut t = Touched::default();
            apply_names(&mut tx, s, names, &mut t).await?;
            close(tx, s, t, out).await
        }
        .await
    )
}

pub async fn pairs(pool: &Pool, s: &str, pairs: &[(Jid, Jid)]) -> sqlx::Result<()> {
    retrying!(
        async {
            let Some((mut tx, out)) = open(pool, s).await? else {
                return Ok(());
            };
            let mut t = Touched::default();
            for (lid, pn) in pairs {
                super::people::link(&mut tx, s, lid, pn, &mut t).await?;
            }
            close(tx, s, t, out).await
        }
        .await
    )
}

async fn member_contact(
    conn: &mut Conn,
    s: &str,
    m: &GroupMember,
    t: &mut Touched,
) -> sqlx::Result<i64> {
    let id = super::people::person_with_alt(&mut *conn, s, &m.jid, m.alt.as_ref(), t).await?;
    super::people::mark_in_group(conn, id, t).await?;
    Ok(id)
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupEvent<'a> {
    jid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<usize>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantEvent {
    group: String,
    action: ParticipantChange,
    participants: Vec<String>,
}

pub async fn group(pool: &Pool, s: &str, g: &GroupInfo) -> sqlx::Result<()> {
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(());
            };
            let mut t = Touched::default();
            let gid = super::people::ensure_group(&mut tx, s, &g.jid, g.subject.as_deref()).await?;
            // The session is in the group: it is one of its chats, named by the subject.
            let (chat, _) = super::chats::ensure(&mut tx, s, &g.jid, None, &mut t).await?;
            if g.subject.is_some() {
                super::chats::apply_settings(
                    &mut tx,
                    chat,
                    g.subject.as_deref(),
                    None,
                    None,
                    None,
                    None,
                    None,
                )
                .await?;
                t.chats.insert(chat);
            }
            if let Some(members) = &g.members {
                let mut kept = BTreeSet::new();
                for m in members {
                    let id = member_contact(&mut tx, s, m, &mut t).await?;
                    super::people::add_member(&mut tx, gid, id, &m.role).await?;
                    kept.insert(id);
                }
                for id in super::people::members(&mut tx, gid).await? {
                    if !kept.contains(&id) {
                        super::people::remove_member(&mut tx, gid, id).await?;
                    }
                }
            }
            out.push(
                Some(s),
                kind::GROUP_UPDATE,
                &GroupEvent {
                    jid: g.jid.to_string(),
                    subject: g.subject.as_deref(),
                    members: g.members.as_ref().map(Vec::len),
                },
            );
            close(tx, s, t, out).await
        }
        .await
    )
}

pub async fn participants(
    pool: &Pool,
    s: &str,
    group: &Jid,
    change: ParticipantChange,
    members: &[GroupMember],
) -> sqlx::Result<()> {
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(());
            };
            let mut t = Touched::default();
            let gid = super::people::ensure_group(&mut tx, s, group, None).await?;
            super::chats::ensure(&mut tx, s, group, None, &mut t).await?;
            for m in members {
                let id = member_contact(&mut tx, s, m, &mut t).await?;
                match change {
                    ParticipantChange::Remove => {
                        super::people::remove_member(&mut tx, gid, id).await?
                    }
                    ParticipantChange::Add => {
                        super::people::add_member(&mut tx, gid, id, &m.role).await?
                    }
                    ParticipantChange::Promote => {
                        super::people::add_member(&mut tx, gid, id, "admin").await?
                    }
                    ParticipantChange::Demote => {
                        super::people::add_member(&mut tx, gid, id, "member").await?
                    }
                }
            }
            out.push(
                Some(s),
                kind::GROUP_PARTICIPANT,
                &ParticipantEvent {
                    group: group.to_string(),
                    action: change,
                    participants: members.iter().map(|m| m.jid.to_string()).collect(),
                },
            );
            close(tx, s, t, out).await
        }
        .await
    )
}

/// One chunk of a history batch in one transaction; `finish` (the counts of the chunks before)
/// makes it the last, which writes the `history.sync` event with the batch's totals.
pub async fn history(
    pool: &Pool,
    s: &str,
    b: &HistoryPart<'_>,
    finish: Option<HistoryCounts>,
) -> sqlx::Result<HistoryCounts> {
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(HistoryCounts::default());
            };
            let mut t = Touched::default();
            for (lid, pn) in b.pairs {
                super::people::link(&mut tx, s, lid, pn, &mut t).await?;
            }
            apply_names(&mut tx, s, b.names, &mut t).await?;
            for c in b.chats {
                apply_chat(&mut tx, s, c, &mut t, &mut out).await?;
            }
            let opts = RecordOptions {
                count_unread: false,
                emit_events: false,
            };
            let recorded =
                super::messages::record(&mut tx, s, b.messages, opts, &mut t, &mut out).await?;
            let counts = HistoryCounts {
                chats: b.chats.len(),
                messages: recorded.len(),
                new_messages: recorded.iter().filter(|r| r.inserted).count(),
                contacts: t.contacts.len(),
            };
            if let Some(before) = finish {
                let total = HistoryCounts {
                    chats: before.chats + counts.chats,
                    messages: before.messages + counts.messages,
                    new_messages: before.new_messages + counts.new_messages,
                    contacts: before.contacts + counts.contacts,
                };
                out.push(Some(s), kind::HISTORY_SYNC, &total);
            }
            close(tx, s, t, out).await?;
            Ok(counts)
        }
        .await
    )
}

// Changes made through the API: the same transaction shape, the same events.

/// Accepts a send: the job and its stored message in one transaction, or the earlier job of the
/// same idempotency key (the session's lock makes concurrent retries wait for the first).
pub async fn enqueue_send(
    pool: &Pool,
    job: &crate::store::outgoing::OutgoingRecord,
    msg: Option<&NewMessage>,
) -> sqlx::Result<Option<crate::store::outgoing::Enqueued>> {
    use crate::store::outgoing::Enqueued;
    let s = job.session_id.as_str();
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(None);
            };
            if let Some(key) = &job.idempotency_key {
                if let Some(earlier) = super::outgoing::by_key(&mut tx, s, key).await? {
                    tx.rollback().await?;
                    return Ok(Some(Enqueued {
                        job: earlier,
                        created: false,
                    }));
                }
            }
            let mut t = Touched::default();
            let opts = RecordOptions {
                count_unread: false,
                emit_events: true,
            };
            let mut job = job.clone();
            if let Some(msg) = msg {
                let recorded = super::messages::record(
                    &mut tx,
                    s,
                    std::slice::from_ref(msg),
                    opts,
                    &mut t,
                    &mut out,
                )
                .await?;
                job.message_id = recorded.first().map(|r| r.id).unwrap_or_default();
            }
            super::outgoing::insert(&mut tx, &job).await?;
            close(tx, s, t, out).await?;
            Ok(Some(Enqueued { job, created: true }))
        }
        .await
    )
}

pub async fn api_patch_chat(
    pool: &Pool,
    s: &str,
    jid: &Jid,
    p: &ChatPatch,
) -> sqlx::Result<Option<ChatRecord>> {
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(None);
            };
            let row = super::chats::patch(&mut tx, s, jid, p).await?;
            if let Some(c) = &row {
                // What the API changed goes to the phone too, under the chat's own JID.
                super::chats::queue_for_phone(&mut tx, s, &c.jid, p).await?;
                out.push(Some(s), kind::CHAT_UPDATE, &Chat::from(c.clone()));
            }
            close(tx, s, Touched::default(), out).await?;
            Ok(row)
        }
        .await
    )
}

pub async fn api_mark_read(pool: &Pool, s: &str, jid: &Jid) -> sqlx::Result<Option<ChatRecord>> {
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(None);
            };
            let row = super::chats::mark_read(&mut tx, s, jid).await?;
            if let Some((c, true)) = &row {
                out.push(Some(s), kind::CHAT_UPDATE, &Chat::from(c.clone()));
            }
            close(tx, s, Touched::default(), out).await?;
            Ok(row.map(|(c, _)| c))
        }
        .await
    )
}

pub async fn api_delete_chat(pool: &Pool, s: &str, jid: &Jid) -> sqlx::Result<bool> {
    retrying!(
        async {
            let Some((mut tx, mut out)) = open(pool, s).await? else {
                return Ok(false);
            };
            let gone = super::chats::delete(&mut tx, s, jid).await?;
            let found = gone.is_some();
            if let Some(c) = gone {
                out.push(Some(s), kind::CHAT_DELETED, &Chat::from(c));
            }
            close(tx, s, Touched::default(), out).await?;
            Ok(found)
        }
        .await
    )
}
