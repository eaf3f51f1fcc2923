//! Fills one session with a large stored copy through the store's ingest operations (the same
//! calls the WhatsApp engine makes) and reports the message ingest rate. Used by `bench/run.sh`.
//!
//! cargo run --release -p wagate --example bench_seed -- <database-url> <out.json> [messages] [chats] [contacts]

use std::time::Instant;

use wagate::domain::{CapSet, Cursor, Jid};
use wagate::store::{
    GroupInfo, GroupMember, MessageStatus, NewMessage, NewSession, PersonNames, RecordOptions,
    Store,
};

const WORDS: [&str; 20] = [
    "amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "iris", "jade",
    "kestrel", "lagoon", "maple", "nectar", "onyx", "pearl", "quartz", "raven", "sage", "tundra",
];

fn lid(i: usize) -> Jid {
    format!("{}@lid", 100_000_000_000_000u64 + i as u64)
        .parse()
        .unwrap()
}

fn phone(i: usize) -> Jid {
    Jid::phone(&format!("{}", 62_800_000_000u64 + i as u64))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 3,
        "usage: bench_seed <database-url> <out.json> [messages] [chats] [contacts]"
    );
    let n_msgs: usize = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let n_chats: usize = args
        .get(4)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let n_contacts: usize = args
        .get(5)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let n_groups = n_chats / 10;
    let n_dms = n_chats - n_groups;
    let members_per_group = (n_contacts / n_groups.max(1)).max(1);

    let store = Store::connect(&args[1], 4).await?;
    store.migrate().await?;
    let session = store
        .create_session(NewSession {
            org_id: "bench".into(),
            label: Some("benchmark".into()),
            auto_read: false,
            presence_typing: false,
            rate_per_min: 20,
            rate_per_hour: 600,
            download_media: false,
        })
        .await?;
    let sid = session.id.clone();
    let key = wagate::auth::ApiKeyService::new(store.clone())
        .create("bench", "bench", CapSet::all(), None, None)
        .await?
        .1;

    // People: LID ↔ phone links and push names, in history-sync sized batches.
    let t = Instant::now();
    for start in (0..n_contacts).step_by(1000) {
        let end = (start + 1000).min(n_contacts);
        let pairs: Vec<(Jid, Jid)> = (start..end).map(|i| (lid(i), phone(i))).collect();
        store.link_lid_pns(&sid, &pairs).await?;
        let names: Vec<PersonNames> = (start..end)
            .map(|i| PersonNames::push(lid(i), format!("Person {i} {}", WORDS[i % WORDS.len()])))
            .collect();
        store.record_names(&sid, &names).await?;
    }
    for g in 0..n_groups {
        let gj: Jid = format!("1203630{:08}@g.us", g)
            .parse()
            .map_err(anyhow::Error::msg)?;
        let members: Vec<GroupMember> = (g * members_per_group
            ..((g + 1) * members_per_group).min(n_contacts))
            .map(|i| GroupMember {
                jid: lid(i),
                alt: None,
                role: "member".into(),
            })
            .collect();
        store
            .record_group(
                &sid,
                &GroupInfo {
                    jid: gj,
                    subject: Some(format!("Group {g}")),
                    members: Some(members),
                },
            )
            .await?;
    }
    let people_secs = t.elapsed().as_secs_f64();

    // Messages: chat 0 is a big DM (10% of all messages); the rest are spread evenly.
    let big = n_msgs / 10;
    let per_chat = (n_msgs - big) / (n_chats - 1).max(1);
    let chat_jid = |c: usize| -> Jid {
        if c < n_dms {
            phone(c)
        } else {
            format!("1203630{:08}@g.us", c - n_dms).parse().unwrap()
        }
    };
    let base_ts: i64 = 1_700_000_000_000;
    let mut batch: Vec<NewMessage> = Vec::with_capacity(1000);
    let mut total = 0usize;
    let mut big_chat_deep_ts = 0i64;
    let t = Instant::now();
    for c in 0..n_chats {
        let count = if c == 0 { big } else { per_chat };
        let jid = chat_jid(c);
        let is_group = c >= n_dms;
        for k in 0..count {
            let from_me = k % 3 == 0;
            let ts = base_ts + (k as i64) * 60_000 + c as i64;
            if c == 0 && k == count / 10 {
                big_chat_deep_ts = ts;
            }
            let sender = if is_group && !from_me {
                let g = c - n_dms;
                Some(lid(g * members_per_group + k % members_per_group))
            } else {
                None
            };
            batch.push(NewMessage {
                chat: jid.clone(),
                chat_alt: None,
                wa_message_id: format!("3EB0{c:06}{k:08}"),
                from_me,
                sender,
                sender_lid: None,
                sender_name: None,
                kind: "text".into(),
                body: Some(format!(
                    "message {k} in chat {c}: {}",
                    WORDS[k % WORDS.len()]
                )),
                media: None,
                quoted_message_id: None,
                mentions: Vec::new(),
                status: if from_me {
                    MessageStatus::Read
                } else {
                    MessageStatus::Delivered
                },
                timestamp: ts,
                poll: None,
            });
            if batch.len() == 1000 {
                store
                    .record_messages(
                        &sid,
                        &batch,
                        RecordOptions {
                            count_unread: false,
                            // Live ingest writes one outbox event per message: measure that.
                            emit_events: std::env::var_os("BENCH_NO_EVENTS").is_none(),
                        },
                    )
                    .await?;
                total += batch.len();
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        total += batch.len();
        store
            .record_messages(
                &sid,
                &batch,
                RecordOptions {
                    count_unread: false,
                    emit_events: std::env::var_os("BENCH_NO_EVENTS").is_none(),
                },
            )
            .await?;
    }
    let msg_secs = t.elapsed().as_secs_f64();
    // Refresh planner statistics after the bulk load, as autovacuum (PostgreSQL) or an
    // operator would; without them PostgreSQL plans the contacts search as a full sort.
    store.analyze().await?;
    // A page 90% of the way back in the big chat.
    let deep = Cursor::new('m', vec![big_chat_deep_ts, i64::MAX]).encode();
    let out = serde_json::json!({
        "sessionId": sid,
        "key": key,
        "bigChat": chat_jid(0).to_string(),
        "deepCursor": deep,
        "searchWord": WORDS[7],
        "messages": total,
        "chats": n_chats,
        "contacts": n_contacts,
        "peopleSeconds": people_secs,
        "messageSeconds": msg_secs,
        "messagesPerSecond": total as f64 / msg_secs,
    });
    std::fs::write(&args[2], serde_json::to_vec_pretty(&out)?)?;
    println!("{out}");
    store.close().await;
    Ok(())
}
