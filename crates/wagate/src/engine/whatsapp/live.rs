//! Live actions through a connected whatsapp-rust client.

use std::sync::Arc;

use async_trait::async_trait;
use whatsapp_rust::send::SendOptions;
use whatsapp_rust::waproto::whatsapp as wa;
use whatsapp_rust::Client;

use super::convert;
use crate::domain::{Jid, Phone};
use crate::engine::send::{MediaKind, OutgoingContent, OutgoingMessage, SendError, SentAck};
use crate::engine::{
    About, ChatPresence, ChatSettingChange, EngineError, LiveClient, OnWhatsApp, ProfilePicture,
};

pub struct WaLive(pub Arc<Client>);

fn wa_jid(j: &Jid) -> Result<whatsapp_rust::Jid, EngineError> {
    j.to_string()
        .parse()
        .map_err(|e| EngineError::Upstream(format!("unusable JID {j}: {e:?}")))
}

fn upstream(e: impl std::fmt::Display) -> EngineError {
    if e.to_string().to_lowercase().contains("not connected") {
        EngineError::NotConnected
    } else {
        EngineError::Upstream(e.to_string())
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

impl WaLive {
    async fn build(&self, content: &OutgoingContent) -> Result<wa::Message, SendError> {
        use buffa::MessageField;
        Ok(match content {
            OutgoingContent::Text {
                body,
                reply_to,
                mentions,
                ..
            } => match context(reply_to, mentions) {
                None => wa::Message {
                    conversation: Some(body.clone()),
                    ..Default::default()
                },
                Some(ctx) => wa::Message {
                    extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                        text: Some(body.clone()),
                        context_info: MessageField::some(ctx),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            },
            OutgoingContent::Location {
                latitude,
                longitude,
                name,
                address,
            } => wa::Message {
                location_message: MessageField::some(wa::message::LocationMessage {
                    degrees_latitude: Some(*latitude),
                    degrees_longitude: Some(*longitude),
                    name: name.clone(),
                    address: address.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            OutgoingContent::Contact {
                display_name,
                vcard,
            } => wa::Message {
                contact_message: MessageField::some(wa::message::ContactMessage {
                    display_name: Some(display_name.clone()),
                    vcard: Some(vcard.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            OutgoingContent::Poll { .. } => {
                return Err(SendError::Refused(
                    "sending polls is not supported by this gateway version yet".into(),
                ))
            }
            OutgoingContent::Media {
                kind,
                data,
                mimetype,
                filename,
                caption,
                voice,
            } => {
                use whatsapp_rust::download::MediaType;
                let media_type = match kind {
                    MediaKind::Image => MediaType::Image,
                    MediaKind::Video => MediaType::Video,
                    MediaKind::Audio => MediaType::Audio,
                    MediaKind::Document => MediaType::Document,
                    MediaKind::Sticker => MediaType::Sticker,
                };
                let up = self
                    .0
                    .upload(data.clone(), media_type, Default::default())
                    .await
                    .map_err(|e| SendError::Retry(format!("media upload failed: {e}")))?;
                let (url, path) = (Some(up.url.clone()), Some(up.direct_path.clone()));
                let (key, enc, sha) = (
                    Some(up.media_key.to_vec()),
                    Some(up.file_enc_sha256.to_vec()),
                    Some(up.file_sha256.to_vec()),
                );
                let len = Some(up.file_length);
                let ts = Some(up.media_key_timestamp);
                let mime = Some(mimetype.clone());
                match kind {
                    MediaKind::Image => wa::Message {
                        image_message: MessageField::some(wa::message::ImageMessage {
                            url,
                            direct_path: path,
                            media_key: key,
                            file_enc_sha256: enc,
                            file_sha256: sha,
                            file_length: len,
                            media_key_timestamp: ts,
                            mimetype: mime,
                            caption: caption.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    MediaKind::Video => wa::Message {
                        video_message: MessageField::some(wa::message::VideoMessage {
                            url,
                            direct_path: path,
                            media_key: key,
                            file_enc_sha256: enc,
                            file_sha256: sha,
                            file_length: len,
                            media_key_timestamp: ts,
                            mimetype: mime,
                            caption: caption.clone(),
                            streaming_sidecar: up.streaming_sidecar.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    MediaKind::Audio => wa::Message {
                        audio_message: MessageField::some(wa::message::AudioMessage {
                            url,
                            direct_path: path,
                            media_key: key,
                            file_enc_sha256: enc,
                            file_sha256: sha,
                            file_length: len,
                            media_key_timestamp: ts,
                            mimetype: mime,
                            ptt: Some(*voice),
                            streaming_sidecar: up.streaming_sidecar.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    MediaKind::Document => wa::Message {
                        document_message: MessageField::some(wa::message::DocumentMessage {
                            url,
                            direct_path: path,
                            media_key: key,
                            file_enc_sha256: enc,
                            file_sha256: sha,
                            file_length: len,
                            media_key_timestamp: ts,
                            mimetype: mime,
                            caption: caption.clone(),
                            file_name: filename.clone(),
                            title: filename.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    MediaKind::Sticker => wa::Message {
                        sticker_message: MessageField::some(wa::message::StickerMessage {
                            url,
                            direct_path: path,
                            media_key: key,
                            file_enc_sha256: enc,
                            file_sha256: sha,
                            file_length: len,
                            media_key_timestamp: ts,
                            mimetype: mime,
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                }
            }
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

    async fn send_message(&self, msg: &OutgoingMessage) -> Result<SentAck, SendError> {
        if !self.0.is_connected() {
            return Err(SendError::NotConnected);
        }
        let to: whatsapp_rust::Jid = msg
            .to
            .to_string()
            .parse()
            .map_err(|e| SendError::Refused(format!("unusable recipient {}: {e:?}", msg.to)))?;
        let message = self.build(&msg.content).await?;
        let options = SendOptions::default().with_message_id(msg.id.clone());
        match self.0.send_message_with_options(to, message, options).await {
            Ok(_) => Ok(SentAck {
                timestamp: crate::domain::now_ms(),
            }),
            Err(e) if !self.0.is_connected() => Err(SendError::Retry(format!(
                "connection lost while sending: {e}"
            ))),
            Err(e) => Err(SendError::Retry(e.to_string())),
        }
    }
}
