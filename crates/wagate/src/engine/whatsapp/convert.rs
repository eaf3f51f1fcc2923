//! WhatsApp's messages, as the engine decrypts them, turned into the store's typed inputs.

use whatsapp_rust::types::events::InboundMessage;
use whatsapp_rust::wacore::proto_helpers::MessageExt;
use whatsapp_rust::waproto::whatsapp as wa;

use crate::domain::Jid;
use crate::store::ingest::{ChangeKind, MediaInfo, MessageChange, NewMessage};
use crate::store::MessageStatus;

/// A JID of the engine as the gateway's type: device and agent dropped; `None` for addresses
/// the stored copy does not model.
pub fn jid(j: &impl std::fmt::Display) -> Option<Jid> {
    Jid::parse_user(&j.to_string()).ok()
}

/// Where an attachment lives and how to check and decrypt it: direct path, media key, SHA-256
/// of the file and of the encrypted file, length.
type Parts<'a> = (
    &'a Option<String>,
    &'a Option<Vec<u8>>,
    &'a Option<Vec<u8>>,
    &'a Option<Vec<u8>>,
    Option<u64>,
);

/// The fields every WhatsApp attachment message carries.
trait Attachment {
    fn parts(&self) -> Parts<'_>;
}

macro_rules! attachment {
    ($($t:ty),*) => {$(
        impl Attachment for $t {
            fn parts(&self) -> Parts<'_> {
                (
                    &self.direct_path,
                    &self.media_key,
                    &self.file_sha256,
                    &self.file_enc_sha256,
                    self.file_length,
                )
            }
        }
    )*};
}

attachment!(
    wa::message::ImageMessage,
    wa::message::VideoMessage,
    wa::message::AudioMessage,
    wa::message::DocumentMessage,
    wa::message::StickerMessage
);

fn media(
    kind: &str,
    x: &impl Attachment,
    mimetype: &Option<String>,
    filename: Option<String>,
) -> Option<MediaInfo> {
    let (path, key, sha, enc, len) = x.parts();
    let reference = match (path, key, sha, enc) {
        (Some(p), Some(k), Some(s), Some(e)) => Some(
            crate::engine::MediaRef {
                kind: kind.to_owned(),
                direct_path: p.clone(),
                media_key: k.clone(),
                file_sha256: s.clone(),
                file_enc_sha256: e.clone(),
                file_length: len.unwrap_or_default(),
            }
            .to_json(),
        ),
        _ => None,
    };
    Some(MediaInfo {
        mimetype: mimetype.clone(),
        size: len.map(|s| s as i64),
        filename,
        reference,
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
            media: media("image", x, &x.mimetype, None),
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.video_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "video",
            body: x.caption.clone(),
            media: media("video", x, &x.mimetype, None),
            quoted,
            mentions,
        };
    }
    if let Some(x) = m.audio_message.as_option() {
        let (quoted, mentions) = context(x.context_info.as_option());
        return Content {
            kind: "audio",
            body: None,
            media: media("audio", x, &x.mimetype, None),
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
                "document",
                x,
                &x.mimetype,
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
            media: media("sticker", x, &x.mimetype, None),
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

/// A poll's options, choice count and secret, for voting in it later.
fn poll_info(m: &wa::Message) -> Option<String> {
    let base = m.get_base_message();
    let p = base
        .poll_creation_message_v3
        .as_option()
        .or(base.poll_creation_message_v2.as_option())
        .or(base.poll_creation_message.as_option())?;
    let secret = [m, base]
        .iter()
        .find_map(|x| x.message_context_info.as_option()?.message_secret.clone())?;
    Some(
        crate::engine::PollInfo {
            options: p
                .options
                .iter()
                .filter_map(|o| o.option_name.clone())
                .collect(),
            selectable_count: p.selectable_options_count.unwrap_or(0),
            secret: hex::encode(secret),
        }
        .to_json(),
    )
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
        poll: poll_info(&m.message),
    })
}

/// An edit or revoke carried by a protocol message; `None` for every other message.
pub fn change(m: &InboundMessage) -> Option<MessageChange> {
    let p = m.message.get_base_message().protocol_message.as_option()?;
    let target = p.key.as_option()?.id.clone()?;
    let kind = match p.r#type {
        Some(wa::message::protocol_message::Type::REVOKE) => ChangeKind::Revoke,
        Some(wa::message::protocol_message::Type::MESSAGE_EDIT) => {
            let edited = p.edited_message.as_option()?;
            ChangeKind::Edit {
                body: content(edited).body,
            }
        }
        _ => return None,
    };
    let src = &m.info.source;
    let chat = jid(&src.chat)?;
    let chat_alt = if src.is_group || src.is_from_me {
        None
    } else {
        src.sender_alt.as_ref().and_then(jid)
    };
    Some(MessageChange {
        chat,
        chat_alt,
        target,
        from_me: src.is_from_me,
        kind,
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
                poll: None,
            });
        }
    }
    b
}

/// A chat setting changed on the phone (archive, pin, mute, mark read, delete), as the
/// stored copy's change; `None` for every other event.
pub fn chat_setting(
    event: &whatsapp_rust::types::events::Event,
) -> Option<crate::store::ingest::ChatSettings> {
    use crate::store::ingest::ChatSettings;
    use whatsapp_rust::types::events::Event;
    match event {
        Event::ArchiveUpdate(u) => Some(ChatSettings {
            archived: Some(u.action.archived.unwrap_or(false)),
            changed_at: Some(u.timestamp.timestamp_millis()),
            ..ChatSettings::new(jid(&u.jid)?)
        }),
        Event::PinUpdate(u) => Some(ChatSettings {
            pinned: Some(u.action.pinned.unwrap_or(false)),
            changed_at: Some(u.timestamp.timestamp_millis()),
            ..ChatSettings::new(jid(&u.jid)?)
        }),
        Event::MuteUpdate(u) => {
            let muted = u.action.muted.unwrap_or(false);
            let until = u.action.mute_end_timestamp.filter(|t| *t > 0);
            Some(ChatSettings {
                muted_until: Some(muted.then(|| until.unwrap_or(i64::MAX))),
                changed_at: Some(u.timestamp.timestamp_millis()),
                ..ChatSettings::new(jid(&u.jid)?)
            })
        }
        // Only "read": marking a chat unread on the phone does not change the gateway's count.
        Event::MarkChatAsReadUpdate(u) if u.action.read.unwrap_or(false) => Some(ChatSettings {
            unread_count: Some(0),
            ..ChatSettings::new(jid(&u.jid)?)
        }),
        Event::DeleteChatUpdate(u) => Some(ChatSettings {
            deleted: true,
            ..ChatSettings::new(jid(&u.jid)?)
        }),
        _ => None,
    }
}

/// A group's subject and members as WhatsApp lists them.
pub fn group_info(
    meta: &whatsapp_rust::features::GroupMetadata,
) -> Option<crate::store::ingest::GroupInfo> {
    use crate::store::ingest::{GroupInfo, GroupMember};
    let members = meta
        .participants
        .iter()
        .filter_map(|p| {
            let jid = jid(&p.jid)?;
            let other = if jid.is_lid() {
                p.phone_number.as_ref()
            } else {
                p.lid.as_ref()
            };
            Some(GroupMember {
                jid,
                alt: other.and_then(self::jid),
                role: if p.is_admin() {
                    "admin".into()
                } else {
                    "member".into()
                },
            })
        })
        .collect();
    Some(GroupInfo {
        jid: jid(&meta.id)?,
        subject: Some(meta.subject.clone()).filter(|x| !x.is_empty()),
        members: Some(members),
    })
}
