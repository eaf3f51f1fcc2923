//! The simulated phone of every account (device 0), which is also what a
//! simulated person is: its own identity and Signal keys, a task that
//! receives what the server routes to device 0 (decrypts, records, answers
//! with receipts) and sends on request (encrypts per device, routes like
//! any client). After a companion links and uploads its pre-keys, the phone
//! shares the account's app-state sync key with it over a Signal session.

use std::collections::HashMap;
use std::sync::Weak;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;
use wacore_libsignal::protocol::{
    create_sender_key_distribution_message, group_decrypt, group_encrypt, message_decrypt,
    message_encrypt, process_prekey_bundle, process_sender_key_distribution_message,
    CiphertextMessage, CiphertextMessageType, DeviceId, IdentityKey, PreKeyBundle,
    PreKeySignalMessage, ProtocolAddress, PublicKey, SenderKeyDistributionMessage, SenderKeyName,
    SignalMessage, UsePQRatchet,
};
use waproto::buffa::{Message as _, MessageField};
use waproto::whatsapp::{self as wa, message as wm};

use crate::nodes::{attr, bytes, children, now_secs, split_jid, SERVER};
use crate::signal::MemStore;
use crate::state::{Inner, KeyBundle, Sim};

/// The account's app-state sync key: `(key id, key data)`.
#[derive(Clone, Debug)]
pub struct AppStateKey {
    pub id: Vec<u8>,
    pub data: [u8; 32],
}

impl AppStateKey {
    pub fn generate() -> Self {
        use rand::RngExt;
        let mut id = vec![0u8; 6];
        let mut data = [0u8; 32];
        rand::rng().fill(&mut id[..]);
        rand::rng().fill(&mut data[..]);
        Self { id, data }
    }
}

/// What the phone's task is asked to do.
pub enum PhoneInput {
    /// A stanza the server routed to device 0.
    Stanza(Node),
    /// Share the app-state key with a newly linked device.
    ShareKey { device: u16 },
    /// Send a message (the control API's `send`).
    Send {
        to: String,
        message: Box<wa::Message>,
        edit: Option<&'static str>,
        reply: oneshot::Sender<Result<(String, u64)>>,
    },
    /// Send a stanza as this phone (receipts, chat states).
    Raw(Node),
}

/// Starts the phone's task (when inside a runtime) and returns its inbox.
pub(crate) fn spawn(
    sim: Weak<Inner>,
    phone: String,
    store: MemStore,
) -> mpsc::UnboundedSender<PhoneInput> {
    let (tx, rx) = mpsc::unbounded_channel();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(run(sim, phone, store, rx));
    }
    tx
}

struct Phone {
    phone: String,
    store: MemStore,
    /// Messages this phone sent, by id: `(chat, message)` (retries, edits).
    sent: HashMap<String, (String, wa::Message)>,
    /// Groups whose sender key this phone already distributed, per device.
    skd_sent: HashMap<String, std::collections::HashSet<(String, u16)>>,
}

async fn run(
    sim: Weak<Inner>,
    phone: String,
    store: MemStore,
    mut rx: mpsc::UnboundedReceiver<PhoneInput>,
) {
    let mut p = Phone {
        phone,
        store,
        sent: HashMap::new(),
        skd_sent: HashMap::new(),
    };
    while let Some(input) = rx.recv().await {
        let Some(sim) = Sim::from_weak(&sim) else {
            return;
        };
        match input {
            PhoneInput::Stanza(node) => {
                if let Err(e) = p.on_stanza(&sim, &node).await {
                    warn!(phone = %p.phone, "phone could not handle {}: {e:#}", crate::nodes::render(&node));
                }
            }
            PhoneInput::ShareKey { device } => {
                if let Err(e) = p.share_key(&sim, device).await {
                    warn!(phone = %p.phone, "app-state key share to device {device} failed: {e:#}");
                }
            }
            PhoneInput::Send {
                to,
                message,
                edit,
                reply,
            } => {
                let r = p.send(&sim, &to, *message, edit, None).await;
                let _ = reply.send(r);
            }
            PhoneInput::Raw(node) => {
                let mut w = sim.world();
                match node.tag.as_ref() {
                    "receipt" => crate::route::route_receipt(&mut w, (&p.phone, 0), &node),
                    "chatstate" => crate::iq::route_chatstate(&mut w, &p.phone, &node),
                    _ => {}
                }
            }
        }
    }
}

/// A one-time pre-key: `(3-byte id, public key)`.
type OneTimeKey = (Vec<u8>, Vec<u8>);

fn be_u32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

fn address(phone: &str, device: u16) -> ProtocolAddress {
    ProtocolAddress::new(phone, DeviceId::from(u32::from(device)))
}

/// WhatsApp's plaintext padding: 1–16 bytes, each the pad length.
pub fn pad(mut plain: Vec<u8>) -> Vec<u8> {
    let n = 1 + (rand::random::<u8>() & 0x0F);
    plain.resize(plain.len() + n as usize, n);
    plain
}

pub fn unpad(plain: &[u8]) -> Result<&[u8]> {
    let n = *plain.last().ok_or_else(|| anyhow!("empty plaintext"))? as usize;
    if n == 0 || n > plain.len() {
        bail!("bad padding");
    }
    Ok(&plain[..plain.len() - n])
}

/// A session to `phone:device` from its published bundle (one one-time
/// key consumed), built into `store`.
async fn open_session(
    store: &mut MemStore,
    bundle: &KeyBundle,
    one_time: Option<(Vec<u8>, Vec<u8>)>,
    phone: &str,
    device: u16,
) -> Result<()> {
    let pk = |b: &[u8]| PublicKey::from_djb_public_key_bytes(b).map_err(|e| anyhow!("key: {e}"));
    let pre_key = match &one_time {
        Some((id, val)) => Some((be_u32(id).into(), pk(val)?)),
        None => None,
    };
    let signal_bundle = PreKeyBundle::new(
        be_u32(&bundle.registration),
        DeviceId::from(u32::from(device)),
        pre_key,
        be_u32(&bundle.signed.0).into(),
        pk(&bundle.signed.1)?,
        bundle.signed.2.clone(),
        IdentityKey::new(pk(&bundle.identity)?),
    )?;
    let addr = address(phone, device);
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    process_prekey_bundle(
        &addr,
        &mut store.sessions,
        &mut store.ids,
        &signal_bundle,
        &mut rng,
        UsePQRatchet::No,
    )
    .await?;
    Ok(())
}

impl Phone {
    /// Takes `phone:device`'s bundle from the server's store (consuming a
    /// one-time key), as a pre-key fetch would.
    fn fetch_bundle(
        &self,
        sim: &Sim,
        phone: &str,
        device: u16,
    ) -> Option<(KeyBundle, Option<OneTimeKey>)> {
        let mut w = sim.world();
        let a = w.accounts.get_mut(phone)?;
        let keys = if device == 0 {
            &mut a.phone_keys
        } else {
            a.devices.get_mut(&device)?.keys.as_mut()?
        };
        let one = keys.one_time.pop_front();
        let out = (keys.clone(), one);
        if device != 0 {
            if let Some(d) = a.devices.get_mut(&device) {
                d.prekeys = d.keys.as_ref().map_or(0, |k| k.one_time.len() as u32);
            }
        }
        Some(out)
    }

    async fn ensure_session(&mut self, sim: &Sim, phone: &str, device: u16) -> Result<()> {
        if self.store.has_session_with(&address(phone, device)) {
            return Ok(());
        }
        let (bundle, one) = self
            .fetch_bundle(sim, phone, device)
            .ok_or_else(|| anyhow!("no keys for {phone}:{device}"))?;
        open_session(&mut self.store, &bundle, one, phone, device).await
    }

    async fn encrypt_for(
        &mut self,
        sim: &Sim,
        phone: &str,
        device: u16,
        plain: &[u8],
    ) -> Result<(&'static str, Vec<u8>)> {
        self.ensure_session(sim, phone, device).await?;
        let addr = address(phone, device);
        let ct =
            message_encrypt(plain, &addr, &mut self.store.sessions, &mut self.store.ids).await?;
        let kind = match ct.message_type() {
            CiphertextMessageType::PreKey => "pkmsg",
            _ => "msg",
        };
        Ok((kind, ct.serialize().to_vec()))
    }

    async fn decrypt_from(
        &mut self,
        phone: &str,
        device: u16,
        kind: &str,
        ct: &[u8],
    ) -> Result<Vec<u8>> {
        let addr = address(phone, device);
        let msg = match kind {
            "pkmsg" => CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(ct)?),
            "msg" => CiphertextMessage::SignalMessage(SignalMessage::try_from(ct)?),
            other => bail!("cannot decrypt enc type {other}"),
        };
        let mut rng: rand::rngs::StdRng = rand::make_rng();
        let st = &mut self.store;
        let out = message_decrypt(
            &msg,
            &addr,
            &mut st.sessions,
            &mut st.ids,
            &mut st.prekeys,
            &st.signed,
            &mut rng,
            UsePQRatchet::No,
        )
        .await?;
        Ok(out.plaintext)
    }

    async fn share_key(&mut self, sim: &Sim, device: u16) -> Result<()> {
        let (key, history) = {
            let mut w = sim.world();
            let (key, history) = w
                .accounts
                .get(&self.phone)
                .map(|a| (a.app_state_key.clone(), a.history.clone()))
                .ok_or_else(|| anyhow!("no account"))?;
            let phone = self.phone.clone();
            (
                key,
                history.map(|h| crate::history::build(&mut w, &phone, &h)),
            )
        };
        let share = wa::Message {
            protocol_message: MessageField::some(wm::ProtocolMessage {
                r#type: Some(wm::protocol_message::Type::APP_STATE_SYNC_KEY_SHARE),
                app_state_sync_key_share: MessageField::some(wm::AppStateSyncKeyShare {
                    keys: vec![wm::AppStateSyncKey {
                        key_id: MessageField::some(wm::AppStateSyncKeyId {
                            key_id: Some(key.id.clone()),
                        }),
                        key_data: MessageField::some(wm::AppStateSyncKeyData {
                            key_data: Some(key.data.to_vec()),
                            fingerprint: MessageField::some(wm::AppStateSyncKeyFingerprint {
                                raw_id: Some(1),
                                current_index: Some(0),
                                device_indexes: vec![0, u32::from(device)],
                            }),
                            timestamp: Some(now_secs() as i64 * 1000),
                        }),
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.send_peer(sim, device, &share).await?;
        if let Some(sync) = history {
            let note = crate::history::notification(sim, &sync);
            self.send_peer(sim, device, &note).await?;
        }
        Ok(())
    }

    /// A `category="peer"` message from the phone to one of its companions.
    pub async fn send_peer(&mut self, sim: &Sim, device: u16, msg: &wa::Message) -> Result<()> {
        let phone = self.phone.clone();
        let (kind, ct) = self
            .encrypt_for(sim, &phone, device, &pad(msg.encode_to_vec()))
            .await?;
        let node = NodeBuilder::new("message")
            .attr("from", format!("{phone}@{SERVER}"))
            .attr("type", "text")
            .attr("id", crate::iq::random_id())
            .attr("t", now_secs().to_string())
            .attr("category", "peer")
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", kind)
                .bytes(ct)
                .build()])
            .build();
        crate::route::deliver(&mut sim.world(), &phone, device, node);
        Ok(())
    }

    /// Sends `message` to `to` (phone, phone JID, LID JID or group JID):
    /// one `<enc>` per recipient device and per own linked device, routed
    /// like a client's stanza. Returns `(id, server timestamp)`.
    async fn send(
        &mut self,
        sim: &Sim,
        to: &str,
        message: wa::Message,
        edit: Option<&'static str>,
        id: Option<String>,
    ) -> Result<(String, u64)> {
        let id = id.unwrap_or_else(crate::iq::random_id);
        let to_jid = if to.contains('@') {
            to.to_string()
        } else {
            format!("{to}@{SERVER}")
        };
        if split_jid(&to_jid).2 == "g.us" {
            return self.send_group(sim, &to_jid, message, edit, id).await;
        }
        let (target, _, lid) = sim
            .world()
            .resolve_jid(&to_jid)
            .ok_or_else(|| anyhow!("unknown recipient {to}"))?;
        let (target_devs, own_devs, chat) = {
            let w = sim.world();
            if !w.directory.contains_key(&target) {
                bail!("{to} is not on WhatsApp");
            }
            let with_keys = |phone: &str| -> Vec<u16> {
                crate::route::devices_of(&w, phone)
                    .into_iter()
                    .filter(|d| {
                        *d == 0
                            || w.accounts[phone]
                                .devices
                                .get(d)
                                .is_some_and(|x| x.keys.is_some())
                    })
                    .collect()
            };
            let t = if w.accounts.contains_key(&target) {
                with_keys(&target)
            } else {
                vec![]
            };
            let o: Vec<u16> = with_keys(&self.phone)
                .into_iter()
                .filter(|d| *d != 0)
                .collect();
            (t, o, w.jid_of(&target, 0, lid))
        };
        if target_devs.is_empty() {
            bail!("{to} has no devices (a number in the directory without an account)");
        }
        let plain = pad(message.encode_to_vec());
        let dsm = wa::Message {
            device_sent_message: MessageField::some(wm::DeviceSentMessage {
                destination_jid: Some(chat.clone()),
                message: MessageField::some(message.clone()),
                phash: None,
            }),
            ..Default::default()
        };
        let dsm_plain = pad(dsm.encode_to_vec());
        let mut parts = Vec::new();
        for d in target_devs {
            let (kind, ct) = self.encrypt_for(sim, &target, d, &plain).await?;
            parts.push(to_node(
                &sim.world().jid_of(&target, d, lid),
                kind,
                ct,
                &message,
            ));
        }
        let me = self.phone.clone();
        if target != me {
            for d in own_devs {
                let (kind, ct) = self.encrypt_for(sim, &me, d, &dsm_plain).await?;
                parts.push(to_node(
                    &sim.world().jid_of(&me, d, lid),
                    kind,
                    ct,
                    &message,
                ));
            }
        }
        let mut b = NodeBuilder::new("message")
            .attr("to", chat.clone())
            .attr("id", id.clone())
            .attr("type", stanza_type(&message));
        if let Some(e) = edit {
            b = b.attr("edit", e);
        }
        let node = b
            .children([NodeBuilder::new("participants").children(parts).build()])
            .build();
        let routed = crate::route::route_message(&mut sim.world(), (&me, 0), &node);
        if let Some(e) = attr(&routed.ack, "error") {
            bail!("server refused the message: {e}");
        }
        self.sent.insert(id.clone(), (chat, message));
        Ok((id, routed.t))
    }

    async fn send_group(
        &mut self,
        sim: &Sim,
        group_jid: &str,
        message: wa::Message,
        edit: Option<&'static str>,
        id: String,
    ) -> Result<(String, u64)> {
        let me = self.phone.clone();
        let (members, lid_mode) = {
            let w = sim.world();
            let g = w
                .groups
                .get(split_jid(group_jid).0)
                .ok_or_else(|| anyhow!("no group {group_jid}"))?;
            if !g.participants.iter().any(|p| p.phone == me) {
                bail!("{me} is not a member of {group_jid}");
            }
            let mut devs = Vec::new();
            for p in &g.participants {
                for d in crate::route::devices_of(&w, &p.phone) {
                    if p.phone == me && d == 0 {
                        continue;
                    }
                    let has_keys = d == 0
                        || w.accounts
                            .get(&p.phone)
                            .and_then(|a| a.devices.get(&d))
                            .is_some_and(|x| x.keys.is_some());
                    if has_keys && w.accounts.contains_key(&p.phone) {
                        devs.push((p.phone.clone(), d));
                    }
                }
            }
            (devs, g.lid_mode)
        };
        let own_name = sim.world().jid_of(&me, 0, lid_mode);
        let skn = SenderKeyName::new(group_jid.to_string(), own_name);
        let mut rng: rand::rngs::StdRng = rand::make_rng();
        let skdm =
            create_sender_key_distribution_message(&skn, &mut self.store.sender_keys, &mut rng)
                .await?;
        let skmsg = group_encrypt(
            &mut self.store.sender_keys,
            &skn,
            &pad(message.encode_to_vec()),
            &mut rng,
        )
        .await?;
        let already = self
            .skd_sent
            .entry(group_jid.to_string())
            .or_default()
            .clone();
        let mut parts = Vec::new();
        let skd_msg = wa::Message {
            sender_key_distribution_message: MessageField::some(wm::SenderKeyDistributionMessage {
                group_id: Some(group_jid.to_string()),
                axolotl_sender_key_distribution_message: Some(skdm.serialized().to_vec()),
            }),
            ..Default::default()
        };
        let skd_plain = pad(skd_msg.encode_to_vec());
        let mut newly = Vec::new();
        for (p, d) in members {
            if already.contains(&(p.clone(), d)) {
                continue;
            }
            let (kind, ct) = self.encrypt_for(sim, &p, d, &skd_plain).await?;
            parts.push(to_node(
                &sim.world().jid_of(&p, d, lid_mode),
                kind,
                ct,
                &message,
            ));
            newly.push((p, d));
        }
        self.skd_sent
            .entry(group_jid.to_string())
            .or_default()
            .extend(newly);
        let mut b = NodeBuilder::new("message")
            .attr("to", group_jid.to_string())
            .attr("id", id.clone())
            .attr("type", stanza_type(&message))
            .attr("addressing_mode", if lid_mode { "lid" } else { "pn" });
        if let Some(e) = edit {
            b = b.attr("edit", e);
        }
        let mut kids = Vec::new();
        if !parts.is_empty() {
            kids.push(NodeBuilder::new("participants").children(parts).build());
        }
        kids.push(
            NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", "skmsg")
                .bytes(skmsg.serialized().to_vec())
                .build(),
        );
        let node = b.children(kids).build();
        let routed = crate::route::route_message(&mut sim.world(), (&me, 0), &node);
        if let Some(e) = attr(&routed.ack, "error") {
            bail!("server refused the message: {e}");
        }
        self.sent
            .insert(id.clone(), (group_jid.to_string(), message));
        Ok((id, routed.t))
    }

    async fn on_stanza(&mut self, sim: &Sim, node: &Node) -> Result<()> {
        match node.tag.as_ref() {
            "message" => self.on_message(sim, node).await,
            "receipt" => {
                self.on_receipt(sim, node).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn on_receipt(&mut self, sim: &Sim, node: &Node) {
        let kind = attr(node, "type").unwrap_or_else(|| "delivery".into());
        let from = attr(node, "from").unwrap_or_default();
        let participant = attr(node, "participant");
        let sender_jid = participant.clone().unwrap_or_else(|| from.clone());
        let mut ids = vec![attr(node, "id").unwrap_or_default()];
        for list in children(node).iter().filter(|n| n.tag == "list") {
            ids.extend(children(list).iter().filter_map(|i| attr(i, "id")));
        }
        if kind == "retry" {
            let resolved = sim.world().resolve_jid(&sender_jid);
            if let Some((p, d, _)) = resolved {
                for id in &ids {
                    if let Err(e) = self.resend(sim, id, &p, d, node).await {
                        warn!(phone = %self.phone, "retry of {id} for {p}:{d} failed: {e:#}");
                    }
                }
            }
        }
        let (phone_from, _) = {
            let w = sim.world();
            match w.resolve_jid(&sender_jid) {
                Some((p, d, _)) => (w.jid_of(&p, d, false), ()),
                None => (sender_jid.clone(), ()),
            }
        };
        let t: u64 = attr(node, "t")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(now_secs);
        let keep = sim.config().keep_received;
        let mut w = sim.world();
        if let Some(a) = w.accounts.get_mut(&self.phone) {
            trim(&mut a.receipts, keep, ids.len());
            for id in ids {
                a.receipts.push(json!({
                    "id": id, "type": kind, "from": phone_from, "chat": from, "timestamp": t,
                }));
            }
        }
    }

    /// Answers a retry receipt: a fresh session from the device's bundle
    /// and the message again, to that device alone.
    async fn resend(
        &mut self,
        sim: &Sim,
        id: &str,
        phone: &str,
        device: u16,
        receipt: &Node,
    ) -> Result<()> {
        let (chat, message) = self
            .sent
            .get(id)
            .cloned()
            .ok_or_else(|| anyhow!("unknown message {id}"))?;
        let count = crate::nodes::child(receipt, "retry")
            .and_then(|r| attr(r, "count"))
            .unwrap_or_else(|| "1".into());
        // Fresh session: the device lost ours.
        self.store.forget_session(&address(phone, device));
        let is_group = split_jid(&chat).2 == "g.us";
        let plain = if is_group {
            // Pairwise copy of the group message (WhatsApp resends group
            // retries as a direct message to the device, with the group
            // as the chat).
            message.clone()
        } else if phone == self.phone {
            wa::Message {
                device_sent_message: MessageField::some(wm::DeviceSentMessage {
                    destination_jid: Some(chat.clone()),
                    message: MessageField::some(message.clone()),
                    phash: None,
                }),
                ..Default::default()
            }
        } else {
            message.clone()
        };
        let (kind, ct) = self
            .encrypt_for(sim, phone, device, &pad(plain.encode_to_vec()))
            .await?;
        let me = self.phone.clone();
        let mut w = sim.world();
        let lid = false;
        let mut b = NodeBuilder::new("message")
            .attr("id", id.to_string())
            .attr("t", now_secs().to_string())
            .attr("type", stanza_type(&message));
        if is_group {
            b = b
                .attr("from", chat.clone())
                .attr("participant", w.jid_of(&me, 0, lid));
        } else {
            b = b
                .attr("from", w.jid_of(&me, 0, lid))
                .attr("sender_lid", w.jid_of(&me, 0, true));
        }
        let node = b
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", kind)
                .attr("count", count)
                .bytes(ct)
                .build()])
            .build();
        crate::route::deliver(&mut w, phone, device, node);
        Ok(())
    }

    async fn on_message(&mut self, sim: &Sim, node: &Node) -> Result<()> {
        let from = attr(node, "from").unwrap_or_default();
        let id = attr(node, "id").unwrap_or_default();
        let is_group = split_jid(&from).2 == "g.us";
        let sender_jid = if is_group {
            attr(node, "participant").unwrap_or_default()
        } else {
            from.clone()
        };
        let (sphone, sdev, sender_pn_jid, sender_lid_jid) = {
            let w = sim.world();
            let (p, d, _) = w
                .resolve_jid(&sender_jid)
                .ok_or_else(|| anyhow!("unknown sender {sender_jid}"))?;
            let pn = w.jid_of(&p, 0, false);
            let lid = w.jid_of(&p, 0, true);
            (p, d, pn, lid)
        };
        let mut message: Option<wa::Message> = None;
        let mut failed = false;
        for enc in children(node).iter().filter(|n| n.tag == "enc") {
            let kind = attr(enc, "type").unwrap_or_default();
            let ct = bytes(enc).unwrap_or_default();
            let plain = match kind.as_str() {
                "pkmsg" | "msg" => self.decrypt_from(&sphone, sdev, &kind, ct).await,
                "skmsg" => {
                    let sender_name = {
                        let w = sim.world();
                        let lid_mode = w.groups.get(split_jid(&from).0).is_some_and(|g| g.lid_mode);
                        w.jid_of(&sphone, sdev, lid_mode)
                    };
                    let skn = SenderKeyName::new(from.clone(), sender_name);
                    group_decrypt(ct, &mut self.store.sender_keys, &skn)
                        .await
                        .map_err(Into::into)
                }
                other => Err(anyhow!("unknown enc type {other}")),
            };
            let plain = match plain {
                Ok(p) => p,
                Err(e) => {
                    warn!(phone = %self.phone, "cannot decrypt {kind} {id} from {sender_jid}: {e:#}");
                    failed = true;
                    continue;
                }
            };
            let msg = wa::Message::decode_from_slice(unpad(&plain)?)?;
            if let Some(skdm) = msg.sender_key_distribution_message.as_option() {
                let group = skdm.group_id.clone().unwrap_or_else(|| from.clone());
                let raw = skdm
                    .axolotl_sender_key_distribution_message
                    .as_deref()
                    .unwrap_or_default();
                let parsed = SenderKeyDistributionMessage::try_from(raw)?;
                let sender_name = {
                    let w = sim.world();
                    let lid_mode = w
                        .groups
                        .get(split_jid(&group).0)
                        .is_some_and(|g| g.lid_mode);
                    w.jid_of(&sphone, sdev, lid_mode)
                };
                let skn = SenderKeyName::new(group, sender_name);
                process_sender_key_distribution_message(&skn, &parsed, &mut self.store.sender_keys)
                    .await?;
            }
            if has_content(&msg) {
                message = Some(msg);
            }
        }
        let t: u64 = attr(node, "t")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(now_secs);
        if failed && message.is_none() {
            // Ask the sender's device to send again with a fresh session.
            let retry = NodeBuilder::new("receipt")
                .attr("to", sender_jid.clone())
                .attr("id", id.clone())
                .attr("type", "retry")
                .children([NodeBuilder::new("retry")
                    .attr("count", "1")
                    .attr("id", id.clone())
                    .attr("t", t.to_string())
                    .attr("v", "1")
                    .build()])
                .build();
            let mut w = sim.world();
            crate::route::route_receipt(&mut w, (&self.phone, 0), &retry);
            return Ok(());
        }
        let Some(mut msg) = message else {
            return Ok(());
        };
        let own = sphone == self.phone;
        let mut chat = if is_group {
            from.clone()
        } else {
            sender_pn_jid.clone()
        };
        if let Some(dsm) = msg.device_sent_message.as_option() {
            chat = dsm.destination_jid.clone().unwrap_or(chat);
            let inner = dsm.message.as_option().cloned().unwrap_or_default();
            msg = inner;
        } else if own && !is_group {
            chat = attr(node, "recipient").unwrap_or(chat);
        }
        // Normalize the chat to the phone-number form for people's logs.
        if !is_group {
            let w = sim.world();
            if let Some((p, _, _)) = w.resolve_jid(&chat) {
                chat = w.jid_of(&p, 0, false);
            }
        }
        let mut entry = describe(sim, &msg);
        entry.insert("id".into(), json!(id));
        entry.insert("chat".into(), json!(chat));
        entry.insert("from".into(), json!(sender_pn_jid));
        entry.insert("from_lid".into(), json!(sender_lid_jid));
        entry.insert("from_device".into(), json!(sdev));
        entry.insert("from_me".into(), json!(own));
        entry.insert("timestamp".into(), json!(t));
        if let Some(n) = attr(node, "notify") {
            entry.insert("push_name".into(), json!(n));
        }
        if attr(node, "category").as_deref() == Some("peer") {
            entry.insert("peer".into(), json!(true));
        }
        debug!(phone = %self.phone, "phone received {entry:?}");
        let mut w = sim.world();
        if let Some(a) = w.accounts.get_mut(&self.phone) {
            // A phone shows a message once: a repeat of the same id from the same sender in the
            // same chat (a sender retrying after a crash) is not a new message.
            let k = received_key(&entry);
            if a.received_keys.contains(&k) {
                debug!(phone = %self.phone, id, "repeated message id: shown once");
            } else {
                let over = (a.received.len() + 1).saturating_sub(sim.config().keep_received.max(1));
                for old in a.received.drain(..over.min(a.received.len())) {
                    if let Some(o) = old.as_object() {
                        a.received_keys.remove(&received_key(o));
                    }
                }
                a.received_keys.insert(k);
                a.received.push(Value::Object(entry));
            }
        }
        // Delivery receipt, as a phone sends once it has the message.
        let mut b = NodeBuilder::new("receipt")
            .attr(
                "to",
                if is_group {
                    from.clone()
                } else {
                    sender_jid.clone()
                },
            )
            .attr("id", id.clone());
        if is_group {
            b = b.attr("participant", sender_jid.clone());
        }
        if own {
            b = b.attr(
                "type",
                if attr(node, "category").as_deref() == Some("peer") {
                    "peer_msg"
                } else {
                    "sender"
                },
            );
        }
        crate::route::route_receipt(&mut w, (&self.phone, 0), &b.build());
        Ok(())
    }
}

/// What makes a received message the same message: its chat, sender and id.
fn received_key(entry: &serde_json::Map<String, Value>) -> String {
    let f = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or_default();
    format!("{}|{}|{}", f("chat"), f("from"), f("id"))
}

/// Makes room for `adding` more entries under `keep`.
fn trim(list: &mut Vec<Value>, keep: usize, adding: usize) {
    let over = (list.len() + adding).saturating_sub(keep.max(1));
    if over > 0 {
        list.drain(..over.min(list.len()));
    }
}

fn has_content(msg: &wa::Message) -> bool {
    let mut m = msg.clone();
    m.sender_key_distribution_message = MessageField::none();
    m.message_context_info = MessageField::none();
    !m.encode_to_vec().is_empty()
}

fn to_node(jid: &str, kind: &str, ct: Vec<u8>, message: &wa::Message) -> Node {
    let mut enc = NodeBuilder::new("enc").attr("v", "2").attr("type", kind);
    if let Some(mt) = media_type(message) {
        enc = enc.attr("mediatype", mt);
    }
    NodeBuilder::new("to")
        .attr("jid", jid.to_string())
        .children([enc.bytes(ct).build()])
        .build()
}

fn media_type(m: &wa::Message) -> Option<&'static str> {
    if m.image_message.is_set() {
        Some("image")
    } else if m.document_message.is_set() {
        Some("document")
    } else if m.location_message.is_set() {
        Some("location")
    } else {
        None
    }
}

/// The stanza `type` WhatsApp uses for a message body.
pub fn stanza_type(m: &wa::Message) -> &'static str {
    if m.reaction_message.is_set() {
        "reaction"
    } else if m.image_message.is_set() || m.document_message.is_set() || m.location_message.is_set()
    {
        "media"
    } else {
        "text"
    }
}

/// The JSON the control API shows for a received message.
pub fn describe(sim: &Sim, m: &wa::Message) -> Map<String, Value> {
    let mut e = Map::new();
    let mut put = |k: &str, v: Value| {
        e.insert(k.to_string(), v);
    };
    let ctx_of =
        |c: &MessageField<wa::ContextInfo>| c.as_option().and_then(|c| c.stanza_id.clone());
    if let Some(t) = &m.conversation {
        put("type", json!("text"));
        put("text", json!(t));
    } else if let Some(x) = m.extended_text_message.as_option() {
        put("type", json!("text"));
        put("text", json!(x.text.clone().unwrap_or_default()));
        if x.context_info
            .as_option()
            .is_some_and(|c| c.is_forwarded == Some(true))
        {
            put("forwarded", json!(true));
        }
        if let Some(r) = ctx_of(&x.context_info) {
            put("replyTo", json!(r));
        }
    } else if let Some(x) = m.image_message.as_option() {
        put("type", json!("image"));
        put("mimetype", json!(x.mimetype));
        if let Some(c) = &x.caption {
            put("caption", json!(c));
        }
        put("media", crate::media::describe_image(sim, x));
        if let Some(r) = ctx_of(&x.context_info) {
            put("replyTo", json!(r));
        }
    } else if let Some(x) = m.document_message.as_option() {
        put("type", json!("document"));
        put("mimetype", json!(x.mimetype));
        put("fileName", json!(x.file_name));
        if let Some(c) = &x.caption {
            put("caption", json!(c));
        }
        put("media", crate::media::describe_document(sim, x));
    } else if let Some(x) = m.video_message.as_option() {
        put("type", json!("video"));
        put("mimetype", json!(x.mimetype));
        if let Some(c) = &x.caption {
            put("caption", json!(c));
        }
        put(
            "media",
            crate::media::describe_file(
                sim,
                "video",
                x.direct_path.as_deref(),
                x.media_key.as_deref(),
                x.file_length,
            ),
        );
    } else if let Some(x) = m.audio_message.as_option() {
        put("type", json!("audio"));
        put("mimetype", json!(x.mimetype));
        put("voice", json!(x.ptt == Some(true)));
        put(
            "media",
            crate::media::describe_file(
                sim,
                "audio",
                x.direct_path.as_deref(),
                x.media_key.as_deref(),
                x.file_length,
            ),
        );
    } else if let Some(x) = m.sticker_message.as_option() {
        put("type", json!("sticker"));
        put("mimetype", json!(x.mimetype));
        put(
            "media",
            crate::media::describe_file(
                sim,
                "sticker",
                x.direct_path.as_deref(),
                x.media_key.as_deref(),
                x.file_length,
            ),
        );
    } else if let Some(x) = m.contact_message.as_option() {
        put("type", json!("contact"));
        put(
            "contact",
            json!({"displayName": x.display_name, "vcard": x.vcard}),
        );
    } else if let Some(x) = m.location_message.as_option() {
        put("type", json!("location"));
        put(
            "location",
            json!({"latitude": x.degrees_latitude, "longitude": x.degrees_longitude, "name": x.name, "address": x.address}),
        );
    } else if let Some(x) = m.reaction_message.as_option() {
        put("type", json!("reaction"));
        put(
            "reactTo",
            json!({"id": x.key.as_option().and_then(|k| k.id.clone()), "emoji": x.text}),
        );
    } else if let Some(x) = m
        .poll_creation_message_v3
        .as_option()
        .or(m.poll_creation_message.as_option())
    {
        put("type", json!("poll"));
        let options: Vec<_> = x.options.iter().map(|o| json!(o.option_name)).collect();
        put(
            "poll",
            json!({"name": x.name, "options": options, "selectableCount": x.selectable_options_count, "hasSecret": m.message_context_info.as_option().is_some_and(|c| c.message_secret.as_ref().is_some_and(|s| s.len() == 32))}),
        );
    } else if let Some(x) = m.poll_update_message.as_option() {
        put("type", json!("poll_vote"));
        put(
            "pollVote",
            json!({
                "pollId": x.poll_creation_message_key.as_option().and_then(|k| k.id.clone()),
                "encrypted": x.vote.as_option().is_some_and(|v| v.enc_payload.as_ref().is_some_and(|p| !p.is_empty())),
            }),
        );
    } else if let Some(x) = m.protocol_message.as_option() {
        let target = x.key.as_option().and_then(|k| k.id.clone());
        match x.r#type {
            Some(wm::protocol_message::Type::REVOKE) => {
                put("type", json!("revoke"));
                put("revoke", json!(target));
            }
            Some(wm::protocol_message::Type::MESSAGE_EDIT) => {
                put("type", json!("edit"));
                put("editOf", json!(target));
                if let Some(inner) = x.edited_message.as_option() {
                    if let Some(t) = describe(sim, inner).get("text") {
                        put("text", t.clone());
                    }
                }
            }
            other => {
                put("type", json!("protocol"));
                put("protocol", json!(format!("{other:?}")));
            }
        }
    } else {
        put("type", json!("other"));
    }
    e
}

/// The simulator-side view of a send request (control API).
pub fn text_message(text: &str, reply_to: Option<(&str, &str)>) -> wa::Message {
    match reply_to {
        None => wa::Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        },
        Some((id, participant)) => wa::Message {
            extended_text_message: MessageField::some(wm::ExtendedTextMessage {
                text: Some(text.to_string()),
                context_info: MessageField::some(wa::ContextInfo {
                    stanza_id: Some(id.to_string()),
                    participant: Some(participant.to_string()),
                    quoted_message: MessageField::some(wa::Message {
                        conversation: Some(String::new()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// Asks `phone`'s task to send; waits for the routed result.
pub async fn send_as(
    sim: &Sim,
    phone: &str,
    to: &str,
    message: wa::Message,
    edit: Option<&'static str>,
) -> Result<(String, u64)> {
    let (reply, rx) = oneshot::channel();
    let tx = sim
        .world()
        .accounts
        .get(phone)
        .map(|a| a.phone_tx.clone())
        .ok_or_else(|| anyhow!("no account {phone}"))?;
    tx.send(PhoneInput::Send {
        to: to.to_string(),
        message: Box::new(message),
        edit,
        reply,
    })
    .map_err(|_| anyhow!("phone task gone"))?;
    rx.await.map_err(|_| anyhow!("phone task gone"))?
}
