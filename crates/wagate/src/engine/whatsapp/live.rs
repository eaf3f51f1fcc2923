//! Live actions through a connected whatsapp-rust client.

use std::sync::Arc;

use async_trait::async_trait;
use whatsapp_rust::send::SendOptions;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::Client;

use super::convert;
use crate::domain::{Jid, Phone};
use crate::engine::send::{
    MediaKind, MessageKey, OutgoingContent, OutgoingMessage, SendError, SentAck,
};
use crate::engine::{
    About, ChatPresence, ChatSettingChange, EngineError, LiveClient, MediaRef, OnWhatsApp,
    ProfilePicture,
};

pub struct WaLive(pub Arc<Client>);

/// What the engine needs to fetch an attachment.
fn params(media: &MediaRef) -> whatsapp_rust::download::DownloadParams {
    use whatsapp_rust::download::{DownloadParams, MediaType};
    let media_type = match media.kind.as_str() {
        "image" => MediaType::Image,
        "video" => MediaType::Video,
        "audio" => MediaType::Audio,
        "sticker" => MediaType::Sticker,
        _ => MediaType::Document,
    };
    DownloadParams::encrypted(
        media.direct_path.clone(),
        &media.media_key,
        &media.file_sha256,
        &media.file_enc_sha256,
        media.file_length,
        media_type,
    )
}

/// Where an attachment is on WhatsApp's media servers: just uploaded, or (a forward) already
/// there.
struct Uploaded {
    url: String,
    direct_path: String,
    media_key: Vec<u8>,
    file_enc_sha256: Vec<u8>,
    file_sha256: Vec<u8>,
    file_length: u64,
    media_key_timestamp: i64,
    streaming_sidecar: Option<Vec<u8>>,
}

fn wa_jid(j: &Jid) -> Result<whatsapp_rust::Jid, EngineError> {
    j.to_string()
        .parse()
        .map_err(|e| EngineError::Upstream(format!("unusable JID {j}: {e:?}")))
}

/// The engine's error as the gateway's: "no connection" when any error in its chain says the
/// transport is gone (by the engine's own classification of its typed errors), otherwise an
/// upstream failure with the engine's message.
fn upstream(e: impl Into<anyhow::Error>) -> EngineError {
    use whatsapp_rust::ErrorChainExt as _;
    let e: anyhow::Error = e.into();
    if e.is_transport_unavailable() {
        EngineError::NotConnected
    } else {
        EngineError::Upstream(format!("{e:#}"))
    }
}

fn context(reply_to: &Option<String>, mentions: &[String]) -> Option<wa::ContextInfo> {
    if reply_to.is_none() && mentions.is_empty() {
        return None;
    }
    Some(wa::ContextInfo {
        stanza_id: reply_to.clone(),
        mentioned_jid: mentions.to_vec(),
        ..Default::default()
    })
}

/// The key of a message in the chat `to`, as a reaction, edit or revoke names it.
fn key_in(to: &whatsapp_rust::Jid, k: &MessageKey) -> wa::MessageKey {
    wa::MessageKey {
        remote_jid: Some(to.to_string()),
        from_me: Some(k.from_me),
        id: Some(k.id.clone()),
        participant: k.participant.clone().filter(|_| !k.from_me),
    }
}

fn text_message(body: &str, reply_to: &Option<String>, mentions: &[String]) -> wa::Message {
    use buffa::MessageField;
    match context(reply_to, mentions) {
        None => wa::Message {
            conversation: Some(body.to_owned()),
            ..Default::default()
        },
        Some(ctx) => wa::Message {
            extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                text: Some(body.to_owned()),
                context_info: MessageField::some(ctx),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

fn location_message(
    latitude: f64,
    longitude: f64,
    name: &Option<String>,
    address: &Option<String>,
) -> wa::Message {
    wa::Message {
        location_message: buffa::MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(latitude),
            degrees_longitude: Some(longitude),
            name: name.clone(),
            address: address.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn contact_message(display_name: &str, vcard: &str) -> wa::Message {
    wa::Message {
        contact_message: buffa::MessageField::some(wa::message::ContactMessage {
            display_name: Some(display_name.to_owned()),
            vcard: Some(vcard.to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn poll_message(
    question: &str,
    options: &[String],
    selectable_count: u32,
    secret: &Option<String>,
) -> Result<wa::Message, SendError> {
    use buffa::MessageField;
    let secret = secret
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| SendError::Refused("the poll has no usable secret".into()))?;
    let poll = wa::message::PollCreationMessage {
        name: Some(question.to_owned()),
        options: options
            .iter()
            .map(|o| wa::message::poll_creation_message::Option {
                option_name: Some(o.clone()),
                option_hash: None,
            })
            .collect(),
        selectable_options_count: Some(selectable_count),
        ..Default::default()
    };
    // WhatsApp Web: v3 for single choice, v1 for multiple choice.
    let mut m = if selectable_count == 1 {
        wa::Message {
            poll_creation_message_v3: MessageField::some(poll),
            ..Default::default()
        }
    } else {
        wa::Message {
            poll_creation_message: MessageField::some(poll),
            ..Default::default()
        }
    };
    m.message_context_info = MessageField::some(wa::MessageContextInfo {
        message_secret: Some(secret),
        ..Default::default()
    });
    Ok(m)
}

fn reaction_message(to: &whatsapp_rust::Jid, target: &MessageKey, emoji: &str) -> wa::Message {
    wa::Message {
        reaction_message: buffa::MessageField::some(wa::message::ReactionMessage {
            key: buffa::MessageField::some(key_in(to, target)),
            text: Some(emoji.to_owned()),
            sender_timestamp_ms: Some(crate::domain::now_ms()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn revoke_message(to: &whatsapp_rust::Jid, target: &MessageKey) -> wa::Message {
    use buffa::MessageField;
    wa::Message {
        protocol_message: MessageField::some(wa::message::ProtocolMessage {
            key: MessageField::some(key_in(to, target)),
            r#type: Some(wa::message::protocol_message::Type::REVOKE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Marks a built message as forwarded (a plain text becomes an extended one to carry it).
fn mark_forwarded(m: &mut wa::Message) {
    use buffa::MessageField;
    let forwarded = wa::ContextInfo {
        is_forwarded: Some(true),
        forwarding_score: Some(1),
        ..Default::default()
    };
    if let Some(text) = m.conversation.take() {
        m.extended_text_message = MessageField::some(wa::message::ExtendedTextMessage {
            text: Some(text),
            ..Default::default()
        });
    }
    if let Some(x) = m.extended_text_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    } else if let Some(x) = m.location_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    } else if let Some(x) = m.contact_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    } else if let Some(x) = m.image_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    } else if let Some(x) = m.video_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    } else if let Some(x) = m.audio_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    } else if let Some(x) = m.document_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    } else if let Some(x) = m.sticker_message.as_option_mut() {
        x.context_info = MessageField::some(forwarded);
    }
}

/// A media message of `kind` for a file already on WhatsApp's media servers.
fn media_message(
    kind: MediaKind,
    up: &Uploaded,
    mimetype: &str,
    filename: &Option<String>,
    caption: &Option<String>,
    voice: bool,
) -> wa::Message {
    use buffa::MessageField;
    let (url, path) = (
        Some(up.url.clone()).filter(|u| !u.is_empty()),
        Some(up.direct_path.clone()),
    );
    // The fields every kind of media message shares, then the kind's own.
    macro_rules! media_message {
        ($field:ident: $ty:ident { $($own:ident: $val:expr),* $(,)? }) => {
            wa::Message {
                $field: MessageField::some(wa::message::$ty {
                    url,
                    direct_path: path,
                    media_key: Some(up.media_key.to_vec()),
                    file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                    file_sha256: Some(up.file_sha256.to_vec()),
                    file_length: Some(up.file_length),
                    media_key_timestamp: Some(up.media_key_timestamp),
                    mimetype: Some(mimetype.to_owned()),
                    $($own: $val,)*
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
    }
    match kind {
        MediaKind::Image => media_message!(image_message: ImageMessage {
            caption: caption.clone(),
        }),
        MediaKind::Video => media_message!(video_message: VideoMessage {
            caption: caption.clone(),
            streaming_sidecar: up.streaming_sidecar.clone(),
        }),
        MediaKind::Audio => media_message!(audio_message: AudioMessage {
            ptt: Some(voice),
            streaming_sidecar: up.streaming_sidecar.clone(),
        }),
        MediaKind::Document => media_message!(document_message: DocumentMessage {
            caption: caption.clone(),
            file_name: filename.clone(),
            title: filename.clone(),
        }),
        MediaKind::Sticker => media_message!(sticker_message: StickerMessage {}),
    }
}

impl WaLive {
    /// The WhatsApp message for `content` to `to`, and where its attachment is when it has one
    /// (uploaded first, unless a forward names a file already there).
    async fn build(
        &self,
        to: &whatsapp_rust::Jid,
        content: &OutgoingContent,
    ) -> Result<(wa::Message, Option<MediaRef>), SendError> {
        let message = match content {
            OutgoingContent::Text {
                body,
                reply_to,
                mentions,
                ..
            } => text_message(body, reply_to, mentions),
            OutgoingContent::Location {
                latitude,
                longitude,
                name,
                address,
            } => location_message(*latitude, *longitude, name, address),
            OutgoingContent::Contact {
                display_name,
                vcard,
            } => contact_message(display_name, vcard),
            OutgoingContent::Poll {
                question,
                options,
                selectable_count,
                secret,
            } => poll_message(question, options, *selectable_count, secret)?,
            OutgoingContent::Reaction { target, emoji } => reaction_message(to, target, emoji),
            OutgoingContent::Forward { content } => {
                let (mut m, media) = Box::pin(self.build(to, content)).await?;
                mark_forwarded(&mut m);
                return Ok((m, media));
            }
            OutgoingContent::Edit { target, text } => self.edit_message(to, target, text),
            OutgoingContent::Vote { .. } => {
                return Err(SendError::Refused(
                    "a vote is sent through the poll API".into(),
                ))
            }
            OutgoingContent::Revoke { target } => revoke_message(to, target),
            OutgoingContent::Media {
                kind,
                data,
                mimetype,
                filename,
                caption,
                voice,
                reference,
            } => {
                let up = self.uploaded(*kind, data, reference.as_ref()).await?;
                let media = MediaRef {
                    kind: kind.as_str().to_owned(),
                    direct_path: up.direct_path.clone(),
                    media_key: up.media_key.to_vec(),
                    file_sha256: up.file_sha256.to_vec(),
                    file_enc_sha256: up.file_enc_sha256.to_vec(),
                    file_length: up.file_length,
                };
                let m = media_message(*kind, &up, mimetype, filename, caption, *voice);
                return Ok((m, Some(media)));
            }
        };
        Ok((message, None))
    }

    /// An edit of this account's message: in a group the key names the account as the author.
    fn edit_message(
        &self,
        to: &whatsapp_rust::Jid,
        target: &MessageKey,
        text: &str,
    ) -> wa::Message {
        use buffa::MessageField;
        let participant = if to.server == "g.us" {
            self.0.pn().map(|j| j.to_non_ad().to_string())
        } else {
            None
        };
        wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: MessageField::some(wa::MessageKey {
                    participant,
                    ..key_in(to, target)
                }),
                r#type: Some(wa::message::protocol_message::Type::MESSAGE_EDIT),
                edited_message: MessageField::some(wa::Message {
                    conversation: Some(text.to_owned()),
                    ..Default::default()
                }),
                timestamp_ms: Some(crate::domain::now_ms()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Where the attachment is on WhatsApp's media servers: uploaded now, or (a forward)
    /// already there.
    async fn uploaded(
        &self,
        kind: MediaKind,
        data: &[u8],
        reference: Option<&MediaRef>,
    ) -> Result<Uploaded, SendError> {
        use whatsapp_rust::download::MediaType;
        if let Some(r) = reference {
            return Ok(Uploaded {
                url: String::new(),
                direct_path: r.direct_path.clone(),
                media_key: r.media_key.clone(),
                file_enc_sha256: r.file_enc_sha256.clone(),
                file_sha256: r.file_sha256.clone(),
                file_length: r.file_length,
                media_key_timestamp: crate::domain::now_ms() / 1000,
                streaming_sidecar: None,
            });
        }
        let media_type = match kind {
            MediaKind::Image => MediaType::Image,
            MediaKind::Video => MediaType::Video,
            MediaKind::Audio => MediaType::Audio,
            MediaKind::Document => MediaType::Document,
            MediaKind::Sticker => MediaType::Sticker,
        };
        let up = self
            .0
            .upload(data.to_vec(), media_type, Default::default())
            .await
            .map_err(|e| SendError::Retry(format!("media upload failed: {e}")))?;
        Ok(Uploaded {
            url: up.url,
            direct_path: up.direct_path,
            media_key: up.media_key.to_vec(),
            file_enc_sha256: up.file_enc_sha256.to_vec(),
            file_sha256: up.file_sha256.to_vec(),
            file_length: up.file_length,
            media_key_timestamp: up.media_key_timestamp,
            streaming_sidecar: up.streaming_sidecar,
        })
    }
}

#[async_trait]
impl LiveClient for WaLive {
    async fn send_chat_presence(&self, chat: &Jid, state: ChatPresence) -> Result<(), EngineError> {
        let to = wa_jid(chat)?;
        let cs = self.0.chatstate();
        match state {
            ChatPresence::Composing => cs.send_composing(&to).await,
            ChatPresence::Recording => cs.send_recording(&to).await,
            ChatPresence::Paused => cs.send_paused(&to).await,
        }
        .map_err(upstream)
    }

    async fn is_on_whatsapp(&self, phones: &[Phone]) -> Result<Vec<OnWhatsApp>, EngineError> {
        let jids = phones
            .iter()
            .map(|p| wa_jid(&Jid::phone(p.digits())))
            .collect::<Result<Vec<_>, _>>()?;
        let answers = self
            .0
            .contacts()
            .is_on_whatsapp(&jids)
            .await
            .map_err(upstream)?;
        Ok(answers
            .into_iter()
            .filter_map(|a| {
                let pn = a.pn_jid.as_ref().unwrap_or(&a.jid);
                let user = convert::jid(pn)?.user().to_owned();
                let phone = phones.iter().find(|p| p.digits() == user)?.clone();
                Some(OnWhatsApp {
                    phone,
                    registered: a.is_registered,
                    jid: convert::jid(pn),
                })
            })
            .collect())
    }

    async fn set_available(&self, available: bool) -> Result<(), EngineError> {
        let p = self.0.presence();
        if available {
            p.set_available().await
        } else {
            p.set_unavailable().await
        }
        .map_err(upstream)
    }

    async fn profile_picture(&self, who: &Jid) -> Result<Option<ProfilePicture>, EngineError> {
        let pic = self
            .0
            .contacts()
            .get_profile_picture(&wa_jid(who)?, false)
            .await
            .map_err(upstream)?;
        Ok(pic.map(|p| ProfilePicture {
            url: p.url,
            id: p.id,
        }))
    }

    async fn about(&self, who: &Jid) -> Result<Option<About>, EngineError> {
        let j = wa_jid(who)?;
        let info = self
            .0
            .contacts()
            .get_user_info(std::slice::from_ref(&j))
            .await
            .map_err(upstream)?;
        Ok(info
            .into_values()
            .next()
            .and_then(|i| i.status)
            .filter(|s| !s.is_empty())
            .map(|text| About { text, set_at: None }))
    }

    async fn push_chat_setting(
        &self,
        chat: &Jid,
        change: ChatSettingChange,
    ) -> Result<(), EngineError> {
        let j = wa_jid(chat)?;
        let a = self.0.chat_actions();
        match change {
            ChatSettingChange::Archived(true) => a.archive_chat(&j, None).await,
            ChatSettingChange::Archived(false) => a.unarchive_chat(&j, None).await,
            ChatSettingChange::Pinned(true) => a.pin_chat(&j).await,
            ChatSettingChange::Pinned(false) => a.unpin_chat(&j).await,
            ChatSettingChange::MutedUntil(Some(until)) if until < i64::MAX / 2 => {
                a.mute_chat_until(&j, until).await
            }
            ChatSettingChange::MutedUntil(Some(_)) => a.mute_chat(&j).await,
            ChatSettingChange::MutedUntil(None) => a.unmute_chat(&j).await,
        }
        .map_err(upstream)
    }

    async fn download_media_to(
        &self,
        media: &MediaRef,
        file: std::fs::File,
    ) -> Result<std::fs::File, EngineError> {
        if !self.0.is_connected() {
            return Err(EngineError::NotConnected);
        }
        self.0
            .download_from_params_to_writer(&params(media), file)
            .await
            .map_err(upstream)
    }

    async fn download_media(&self, media: &MediaRef) -> Result<Vec<u8>, EngineError> {
        if !self.0.is_connected() {
            return Err(EngineError::NotConnected);
        }
        self.0
            .download_from_params(&params(media))
            .await
            .map_err(upstream)
    }

    async fn send_message(&self, msg: &OutgoingMessage) -> Result<SentAck, SendError> {
        if !self.0.is_connected() {
            return Err(SendError::NotConnected);
        }
        let to: whatsapp_rust::Jid = msg
            .to
            .to_string()
            .parse()
            .map_err(|e| SendError::Refused(format!("unusable recipient {}: {e:?}", msg.to)))?;
        if let OutgoingContent::Vote {
            target,
            creator,
            secret,
            options,
        } = &msg.content
        {
            let creator: whatsapp_rust::Jid = creator.parse().map_err(|e| {
                SendError::Refused(format!("unusable poll creator {creator}: {e:?}"))
            })?;
            let secret = hex::decode(secret)
                .map_err(|_| SendError::Refused("the poll's secret is unusable".into()))?;
            return match self
                .0
                .polls()
                .vote(to, &target.id, &creator, &secret, options)
                .await
            {
                Ok(_) => Ok(SentAck {
                    timestamp: crate::domain::now_ms(),
                    media: None,
                }),
                Err(e) if !self.0.is_connected() => Err(SendError::Retry(format!(
                    "connection lost while voting: {e}"
                ))),
                Err(e) => Err(SendError::Retry(e.to_string())),
            };
        }
        let (message, media) = self.build(&to, &msg.content).await?;
        let options = SendOptions::default().with_message_id(msg.id.clone());
        match self.0.send_message_with_options(to, message, options).await {
            Ok(_) => Ok(SentAck {
                timestamp: crate::domain::now_ms(),
                media,
            }),
            Err(e) if !self.0.is_connected() => Err(SendError::Retry(format!(
                "connection lost while sending: {e}"
            ))),
            Err(e) => Err(SendError::Retry(e.to_string())),
        }
    }
}
