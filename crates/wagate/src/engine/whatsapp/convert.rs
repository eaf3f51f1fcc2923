//! WhatsApp's messages, as the engine decrypts them, turned into the store's typed inputs.

use whatsapp_rust::types::events::InboundMessage;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::domain::Jid;
use crate::store::ingest::{MediaInfo, NewMessage};
use crate::store::MessageStatus;

/// A JID of the engine as the gateway's type: device and agent dropped; `None` for addresses
/// the stored copy does not model.
pub fn jid(j: &impl std::fmt::Display) -> Option<Jid> {
    Jid::parse_user(&j.to_string()).ok()
}

fn media(
    mimetype: &Option<String>,
    size: Option<u64>,
    filename: Option<String>,
) -> Option<MediaInfo> {
    Some(MediaInfo {
        mimetype: mimetype.clone(),
        size: size.map(|s| s as i64),
        filename,
    })
}

fn context(c: Option<&wa::ContextInfo>) -> (Option<String>, Vec<String>) {
    match c {
        Some(c) => (c.stanza_id.clone(), c.mentioned_jid.clone()),
        None => (None, Vec::new()),
    }
}

/// What kind of message this is, with its body, media, quote and mentions.
pub struct Content {
    pub kind: &'static str,
    pub body: Option<String>,
    pub media: Option<MediaInfo>,
    pub quoted: Option<String>,
    pub mentions: Vec<String>,
}

pub fn content(m: &wa::Message) -> Content {
    let m = m.get_base_message();
    let plain = |kind, body: Option<String>| Content {
        kind,
        body,
        media: None,
        quoted: None,
        mentions: Vec::new(),
    };
    if let Some(t) = m.conversation.as_ref().filter(|t| !t.is_empty()) {
        return plain("text", Some(t.clone()));
    }
    if let Some(x) = m.extended_text_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "text",
            body: x.text.clone(),
            media: None,
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.image_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "image",
            body: x.caption.clone(),
            media: media(&x.mimetype, x.file_length, None),
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.video_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "video",
            body: x.caption.clone(),
            media: media(&x.mimetype, x.file_length, None),
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.audio_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "audio",
            body: None,
            media: media(&x.mimetype, x.file_length, None),
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.document_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "document",
            body: x.caption.clone(),
            media: media(
                &x.mimetype,
                x.file_length,
                x.file_name.clone().or_else(|| x.title.clone()),
            ),
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.sticker_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "sticker",
            body: None,
            media: media(&x.mimetype, x.file_length, None),
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.location_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        let body = x.name.clone().or_else(|| {
            Some(format!(
                "{},{}",
                x.degrees_latitude.unwrap_or_default(),
                x.degrees_longitude.unwrap_or_default()
            ))
        });
        return Content {
            kind: "location",
            body,
            media: None,
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.contact_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "contact",
            body: x.display_name.clone(),
            media: None,
            quoted,
            mentions,
        };
    }
    for p in [
        &m.poll_creation_message,
        &m.poll_creation_message_v2,
        &m.poll_creation_message_v3,
    ] {
        if let Some(x) = p.as_option() {
            let (quoted, mentions) = context(x.context_info.as_option());
            return Content {
                kind: "poll",
                body: x.name.clone(),
                media: None,
                quoted,
                mentions,
            };
        }
    }
    if let Some(x) = m.reaction_message.as_option() {
        let target = x.key.as_option().and_then(|k| k.id.clone());
        return Content {
            kind: "reaction",
            body: x.text.clone(),
            media: None,
            quoted: target,
            mentions: Vec::new(),
        };
    }
    plain("unknown", None)
}

/// The row to store for an inbound (or own-device) message; `None` for what the stored copy
/// does not keep (protocol messages such as key shares, or chats it does not model).
pub fn new_message(m: &InboundMessage) -> Option<NewMessage> {
    let base = m.message.get_base_message();
    if base.protocol_message.is_set()
        || base.sender_key_distribution_message.is_set() && content(base).kind == "unknown"
    {
        return None;
    }
    let info = &m.info;
    let src = &info.source;
    let chat = jid(&src.chat)?;
    let c = content(&m.message);
    if c.kind == "unknown" {
        return None;
    }
    let sender = jid(&src.sender);
    let sender_alt = src.sender_alt.as_ref().and_then(jid);
    // For a direct chat the other address of the person is the chat's alias.
    let chat_alt = if src.is_group || src.is_from_me {
        None
    } else {
        sender_alt.clone()
    };
    let sender_lid = match (&sender, &sender_alt) {
        (Some(s), _) if s.is_lid() => Some(s.clone()),
        (_, Some(a)) if a.is_lid() => Some(a.clone()),
        _ => None,
    };
    let push = info.push_name.trim();
    Some(NewMessage {
        chat,
        chat_alt,
        wa_message_id: info.id.to_string(),
        from_me: src.is_from_me,
        sender,
        sender_lid,
        sender_name: (!push.is_empty() && !src.is_from_me).then(|| push.to_owned()),
        kind: c.kind.to_owned(),
        body: c.body,
        media: c.media,
        quoted_message_id: c.quoted,
        mentions: c.mentions,
        status: if src.is_from_me {
            MessageStatus::Sent
        } else {
            MessageStatus::Delivered
        },
        timestamp: info.timestamp.timestamp_millis(),
    })
}

/// Epoch seconds or milliseconds (WhatsApp uses both) as milliseconds.
fn ms(t: u64) -> i64 {
    if t > 100_000_000_000 {
        t as i64
    } else {
        t as i64 * 1000
    }
}

/// A decoded history sync as one batch for the store: chats with their settings, messages,
/// push names and LID↔phone pairs.
pub fn history(h: &wa::HistorySync) -> crate::store::ingest::HistoryBatch {
    use crate::store::ingest::{ChatSettings, HistoryBatch, PersonNames};
    let mut b = HistoryBatch::default();
    for m in &h.phone_number_to_lid_mappings {
        let pn = m.pn_jid.as_deref().and_then(|j| Jid::parse_user(j).ok());
        let lid = m.lid_jid.as_deref().and_then(|j| Jid::parse_user(j).ok());
        if let (Some(pn), Some(lid)) = (pn, lid) {
            if pn.is_phone() && lid.is_lid() {
                b.pairs.push((lid, pn));
            }
        }
    }
    for p in &h.pushnames {
        if let (Some(id), Some(name)) = (p.id.as_deref(), p.pushname.as_deref()) {
            if let Ok(j) = Jid::parse_user(id) {
                if j.is_person() && !name.trim().is_empty() {
                    b.names.push(PersonNames::push(j, name));
                }
            }
        }
    }
    for c in &h.conversations {
        let Ok(chat) = Jid::parse_user(&c.id) else {
            continue;
        };
        let mut s = ChatSettings::new(chat.clone());
        s.name = c.name.clone().filter(|n| !n.is_empty());
        s.archived = Some(c.archived.unwrap_or(false));
        s.pinned = Some(c.pinned.unwrap_or(0) > 0);
        s.muted_until = Some(c.mute_end_time.filter(|t| *t > 0).map(ms));
        s.unread_count = c.unread_count.map(i64::from);
        s.last_message_at = c
            .conversation_timestamp
            .or(c.last_msg_timestamp)
            .filter(|t| *t > 0)
            .map(ms);
        b.chats.push(s);
        for hm in &c.messages {
            let Some(w) = hm.message.as_option() else {
                continue;
            };
            let Some(msg) = w.message.as_option() else {
                continue;
            };
            let Some(key) = w.key.as_option() else {
                continue;
            };
            let Some(id) = key.id.clone() else { continue };
            let cont = content(msg);
            if cont.kind == "unknown" {
                continue;
            }
            let from_me = key.from_me.unwrap_or(false);
            let sender = if from_me {
                None
            } else if chat.is_group() {
                key.participant
                    .as_deref()
                    .or(w.participant.as_deref())
                    .and_then(|p| Jid::parse_user(p).ok())
            } else {
                Some(chat.clone())
            };
            b.messages.push(NewMessage {
                chat: chat.clone(),
                chat_alt: None,
                wa_message_id: id,
                from_me,
                sender_lid: sender.as_ref().filter(|s| s.is_lid()).cloned(),
                sender,
                sender_name: w.push_name.clone().filter(|n| !n.is_empty() && !from_me),
                kind: cont.kind.to_owned(),
                body: cont.body,
                media: cont.media,
                quoted_message_id: cont.quoted,
                mentions: cont.mentions,
                status: if from_me {
                    MessageStatus::Sent
                } else {
                    MessageStatus::Delivered
                },
                timestamp: w.message_timestamp.map(ms).unwrap_or_default(),
            });
        }
    }
    b
}
