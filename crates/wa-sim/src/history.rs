//! History sync: what the phone pushes to a newly linked device. A scenario
//! set with `PUT /control/accounts/{phone}/history` before the device links
//! becomes a `HistorySync` blob (INITIAL_BOOTSTRAP): conversations with
//! names, archived/pinned/mute-until/unread count, messages with their
//! senders and timestamps, push names and LID↔phone pairs. The blob is
//! zlib-compressed, encrypted as history media, stored on the simulator and
//! announced by a `HISTORY_SYNC_NOTIFICATION` peer message.

use serde::{Deserialize, Serialize};
use waproto::buffa::MessageField;
use waproto::whatsapp::{self as wa, message as wm};

use crate::nodes::{split_jid, SERVER};
use crate::state::World;

/// The history of an account, as the scenario format writes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    #[serde(default)]
    pub conversations: Vec<HistoryConversation>,
    /// Extra push names: phone → name (senders' names are taken from
    /// their messages' `pushName` too).
    #[serde(default, rename = "pushNames")]
    pub push_names: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConversation {
    /// A phone number, phone JID, LID JID or group JID.
    pub chat: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub archived: bool,
    /// Pin timestamp (seconds); absent or 0 = not pinned.
    #[serde(default)]
    pub pinned: Option<u32>,
    /// Muted until (milliseconds since the epoch, as WhatsApp stores it).
    #[serde(default, rename = "mutedUntil")]
    pub muted_until: Option<u64>,
    #[serde(default, rename = "unreadCount")]
    pub unread_count: u32,
    #[serde(default)]
    pub messages: Vec<HistoryMessage>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryMessage {
    #[serde(default)]
    pub id: Option<String>,
    /// `"me"` or the sender's phone number / JID.
    pub from: String,
    pub text: String,
    /// Seconds since the epoch.
    pub timestamp: u64,
    #[serde(default, rename = "pushName")]
    pub push_name: Option<String>,
}

fn jid(to: &str) -> String {
    if to.contains('@') {
        to.to_string()
    } else {
        format!("{to}@{SERVER}")
    }
}

/// Builds the `HistorySync` protobuf for `phone` from `h`.
pub fn build(w: &mut World, phone: &str, h: &History) -> wa::HistorySync {
    let mut pushnames: Vec<wa::Pushname> = h
        .push_names
        .iter()
        .map(|(p, n)| wa::Pushname {
            id: Some(jid(p)),
            pushname: Some(n.clone()),
        })
        .collect();
    let mut phones: Vec<String> = Vec::new();
    let mut conversations = Vec::new();
    for c in &h.conversations {
        let chat = jid(&c.chat);
        let is_group = split_jid(&chat).2 == "g.us";
        if !is_group {
            if let Some((p, _, _)) = w.resolve_jid(&chat) {
                phones.push(p);
            }
        }
        let mut messages = Vec::new();
        for (i, m) in c.messages.iter().enumerate() {
            let from_me = m.from == "me";
            let sender = if from_me {
                phone.to_string()
            } else {
                split_jid(&jid(&m.from)).0.to_string()
            };
            phones.push(sender.clone());
            if let Some(n) = &m.push_name {
                if !pushnames
                    .iter()
                    .any(|p| p.id.as_deref() == Some(&jid(&sender)))
                {
                    pushnames.push(wa::Pushname {
                        id: Some(jid(&sender)),
                        pushname: Some(n.clone()),
                    });
                }
            }
            let id =
                m.id.clone()
                    .unwrap_or_else(|| format!("HIST{}{:04}", split_jid(&chat).0, i));
            messages.push(wa::HistorySyncMsg {
                message: MessageField::some(wa::WebMessageInfo {
                    key: MessageField::some(wa::MessageKey {
                        remote_jid: Some(chat.clone()),
                        from_me: Some(from_me),
                        id: Some(id),
                        participant: (is_group && !from_me).then(|| jid(&sender)),
                    }),
                    message: MessageField::some(wa::Message {
                        conversation: Some(m.text.clone()),
                        ..Default::default()
                    }),
                    message_timestamp: Some(m.timestamp),
                    push_name: m.push_name.clone(),
                    participant: (is_group && !from_me).then(|| jid(&sender)),
                    ..Default::default()
                }),
                msg_order_id: Some(i as u64 + 1),
            });
        }
        let last = c.messages.iter().map(|m| m.timestamp).max();
        conversations.push(wa::Conversation {
            id: chat.clone(),
            messages,
            name: c.name.clone(),
            archived: Some(c.archived),
            pinned: c.pinned.filter(|p| *p > 0),
            mute_end_time: c.muted_until,
            unread_count: Some(c.unread_count),
            conversation_timestamp: last,
            ..Default::default()
        });
    }
    phones.sort();
    phones.dedup();
    let mappings = phones
        .iter()
        .filter(|p| p.as_str() != phone)
        .map(|p| {
            let lid = w.lid_for(p);
            wa::PhoneNumberToLIDMapping {
                pn_jid: Some(format!("{p}@{SERVER}")),
                lid_jid: Some(format!("{lid}@lid")),
            }
        })
        .collect();
    wa::HistorySync {
        sync_type: wa::history_sync::HistorySyncType::INITIAL_BOOTSTRAP,
        conversations,
        chunk_order: Some(1),
        progress: Some(100),
        pushnames,
        phone_number_to_lid_mappings: mappings,
        ..Default::default()
    }
}

/// zlib-compresses `data`.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; zlib_rs::compress_bound(data.len())];
    let (done, rc) = zlib_rs::compress_slice(&mut out, data, zlib_rs::DeflateConfig::default());
    assert_eq!(rc, zlib_rs::ReturnCode::Ok, "zlib compress");
    let n = done.len();
    out.truncate(n);
    out
}

/// The notification that announces a stored, encrypted history blob.
pub fn notification(sim: &crate::state::Sim, sync: &wa::HistorySync) -> wa::Message {
    use waproto::buffa::Message as _;
    let compressed = compress(&sync.encode_to_vec());
    let enc = crate::media::encrypt(&compressed, "history");
    let len = compressed.len() as u64;
    let (_, direct_path) = crate::media::store(sim, enc.blob);
    wa::Message {
        protocol_message: MessageField::some(wm::ProtocolMessage {
            r#type: Some(wm::protocol_message::Type::HISTORY_SYNC_NOTIFICATION),
            history_sync_notification: MessageField::some(wm::HistorySyncNotification {
                file_sha256: Some(enc.file_sha256),
                file_length: Some(len),
                media_key: Some(enc.media_key),
                file_enc_sha256: Some(enc.file_enc_sha256),
                direct_path: Some(direct_path),
                sync_type: Some(wm::HistorySyncType::INITIAL_BOOTSTRAP),
                chunk_order: Some(1),
                progress: Some(100),
                original_message_id: Some(crate::iq::random_id()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
