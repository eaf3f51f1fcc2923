//! A scripted engine for tests: sessions get a "connected" client only when a test says so,
//! and every live call is recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use wagate::domain::{Jid, Phone, SessionId};
use wagate::engine::send::{OutgoingContent, OutgoingMessage, SendError, SentAck};
use wagate::engine::{
    About, ChatPresence, ChatSettingChange, Engine, EngineError, LiveClient, MediaRef, OnWhatsApp,
    ProfilePicture, QrCode,
};
use wagate::store::{SessionRecord, SessionStatus, Store};

#[derive(Default)]
pub struct ScriptedClient {
    pub presences: Mutex<Vec<(String, ChatPresence)>>,
    /// Numbers (digits) that are "on WhatsApp".
    pub directory: Mutex<Vec<String>>,
    /// Each number lookup that reached the "engine", as the numbers asked.
    pub lookups: Mutex<Vec<Vec<String>>>,
    /// Account presence calls (`true` = online).
    pub available: Mutex<Vec<bool>>,
    /// Chat settings sent to "WhatsApp".
    pub settings: Mutex<Vec<(String, ChatSettingChange)>>,
    /// When true, WhatsApp "refuses" chat settings.
    pub refuse_settings: Mutex<bool>,
    /// Messages "WhatsApp" accepted, in order.
    pub sent: Mutex<Vec<OutgoingMessage>>,
    /// Failures the next sends meet (popped from the end).
    pub send_failures: Mutex<Vec<SendError>>,
    /// "WhatsApp's media servers": files by direct path.
    pub media: Mutex<HashMap<String, Vec<u8>>>,
    /// The next this many sends panic (a bug in the send path, injected).
    pub panics: std::sync::atomic::AtomicUsize,
    /// Keep no file bytes of sent attachments (tests that send hundreds of MiB).
    pub forget_files: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl LiveClient for ScriptedClient {
    async fn send_chat_presence(&self, chat: &Jid, state: ChatPresence) -> Result<(), EngineError> {
        self.presences
            .lock()
            .unwrap()
            .push((chat.to_string(), state));
        Ok(())
    }

    async fn is_on_whatsapp(&self, phones: &[Phone]) -> Result<Vec<OnWhatsApp>, EngineError> {
        self.lookups
            .lock()
            .unwrap()
            .push(phones.iter().map(|p| p.digits().to_owned()).collect());
        let directory = self.directory.lock().unwrap();
        Ok(phones
            .iter()
            .map(|phone| {
                let registered = directory.iter().any(|d| d == phone.digits());
                OnWhatsApp {
                    phone: phone.clone(),
                    registered,
                    jid: registered.then(|| Jid::phone(phone.digits())),
                }
            })
            .collect())
    }

    async fn set_available(&self, available: bool) -> Result<(), EngineError> {
        self.available.lock().unwrap().push(available);
        Ok(())
    }

    async fn profile_picture(&self, who: &Jid) -> Result<Option<ProfilePicture>, EngineError> {
        Ok(self
            .directory
            .lock()
            .unwrap()
            .iter()
            .any(|d| d == who.user())
            .then(|| ProfilePicture {
                url: format!("https://pps.example/{}.jpg", who.user()),
                id: "1700000000".into(),
            }))
    }

    async fn push_chat_setting(
        &self,
        chat: &Jid,
        change: ChatSettingChange,
    ) -> Result<(), EngineError> {
        if *self.refuse_settings.lock().unwrap() {
            return Err(EngineError::Upstream("refused".into()));
        }
        self.settings
            .lock()
            .unwrap()
            .push((chat.to_string(), change));
        Ok(())
    }

    async fn send_message(&self, msg: &OutgoingMessage) -> Result<SentAck, SendError> {
        use std::sync::atomic::Ordering;
        if self
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("injected panic in the send path");
        }
        if let Some(e) = self.send_failures.lock().unwrap().pop() {
            return Err(e);
        }
        if self.forget_files.load(Ordering::SeqCst) {
            let mut kept = msg.clone();
            if let OutgoingContent::Media { data, .. } = &mut kept.content {
                let n = data.len() as u64;
                *data = Vec::new();
                self.sent.lock().unwrap().push(kept);
                return Ok(SentAck {
                    timestamp: 1_700_000_000_000,
                    media: Some(MediaRef {
                        kind: "document".into(),
                        direct_path: format!("/scripted/{}", msg.id),
                        media_key: vec![1; 32],
                        file_sha256: vec![2; 32],
                        file_enc_sha256: vec![3; 32],
                        file_length: n,
                    }),
                });
            }
        }
        self.sent.lock().unwrap().push(msg.clone());
        let media = match &msg.content {
            OutgoingContent::Media { kind, data, .. } => {
                let path = format!("/scripted/{}", msg.id);
                self.media
                    .lock()
                    .unwrap()
                    .insert(path.clone(), data.clone());
                Some(MediaRef {
                    kind: kind.as_str().to_owned(),
                    direct_path: path,
                    media_key: vec![1; 32],
                    file_sha256: vec![2; 32],
                    file_enc_sha256: vec![3; 32],
                    file_length: data.len() as u64,
                })
            }
            _ => None,
        };
        Ok(SentAck {
            timestamp: 1_700_000_000_000,
            media,
        })
    }

    async fn download_media(&self, media: &MediaRef) -> Result<Vec<u8>, EngineError> {
        self.media
            .lock()
            .unwrap()
            .get(&media.direct_path)
            .cloned()
            .ok_or_else(|| EngineError::Upstream("media not found (404)".into()))
    }

    async fn about(&self, who: &Jid) -> Result<Option<About>, EngineError> {
        Ok(self
            .directory
            .lock()
            .unwrap()
            .iter()
            .any(|d| d == who.user())
            .then(|| About {
                text: format!("about {}", who.user()),
                set_at: Some(1_700_000_000_000),
            }))
    }
}

pub struct ScriptedEngine {
    store: Store,
    clients: Mutex<HashMap<SessionId, Arc<ScriptedClient>>>,
    /// Sessions `start` was called for.
    pub started: Mutex<Vec<SessionId>>,
    pub stopped: Mutex<Vec<SessionId>>,
    connections: tokio::sync::broadcast::Sender<SessionId>,
}

impl ScriptedEngine {
    pub fn new(store: Store) -> Self {
        ScriptedEngine {
            store,
            clients: Mutex::default(),
            started: Mutex::default(),
            stopped: Mutex::default(),
            connections: tokio::sync::broadcast::channel(64).0,
        }
    }

    /// Gives the session a connected client.
    /// The session loses its client.
    pub fn disconnect(&self, sid: &str) {
        self.clients.lock().unwrap().remove(&sid.parse().unwrap());
    }

    pub fn connect(&self, sid: &str) -> Arc<ScriptedClient> {
        let c = Arc::new(ScriptedClient::default());
        self.clients
            .lock()
            .unwrap()
            .insert(sid.parse().unwrap(), c.clone());
        let _ = self.connections.send(sid.parse().unwrap());
        c
    }
}

#[async_trait]
impl Engine for ScriptedEngine {
    async fn start(&self, session: &SessionRecord) -> Result<(), EngineError> {
        let sid: SessionId = session.id.parse().unwrap();
        self.started.lock().unwrap().push(sid);
        Ok(())
    }

    async fn stop(&self, session: &SessionId) -> Result<(), EngineError> {
        self.clients.lock().unwrap().remove(session);
        self.stopped.lock().unwrap().push(*session);
        Ok(())
    }

    async fn logout(&self, session: &SessionId) -> Result<(), EngineError> {
        self.clients
            .lock()
            .unwrap()
            .remove(session)
            .map(|_| ())
            .ok_or(EngineError::NotConnected)
    }

    async fn qr(&self, session: &SessionId) -> Result<QrCode, EngineError> {
        let s = self
            .store
            .get_session_any_org(session)
            .await
            .unwrap()
            .unwrap();
        match s.status() {
            SessionStatus::Starting | SessionStatus::ScanQrCode => Ok(QrCode {
                code: format!("2@scripted-ref-{session},pubkey,identity,adv"),
                expires_at: 1_900_000_000_000,
            }),
            other => Err(EngineError::Conflict(format!(
                "the session is {} and shows no QR code",
                other.as_str()
            ))),
        }
    }

    async fn pairing_code(
        &self,
        session: &SessionId,
        phone: &Phone,
    ) -> Result<String, EngineError> {
        let s = self
            .store
            .get_session_any_org(session)
            .await
            .unwrap()
            .unwrap();
        if !s.status().is_active() {
            return Err(EngineError::Conflict("start the session first".into()));
        }
        Ok(format!("{}CODE", &phone.digits()[..4]))
    }

    fn client(&self, session: &SessionId) -> Option<Arc<dyn LiveClient>> {
        self.clients
            .lock()
            .unwrap()
            .get(session)
            .map(|c| c.clone() as Arc<dyn LiveClient>)
    }

    fn connections(&self) -> tokio::sync::broadcast::Receiver<SessionId> {
        self.connections.subscribe()
    }
}
