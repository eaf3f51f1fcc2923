//! One client socket: Noise handshake, login or registration, then the
//! stanza loop.

use anyhow::{anyhow, bail, Result};
use axum::extract::ws::{Message, WebSocket};
use tokio::sync::mpsc;
use tracing::{debug, info};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;
use wacore_noise::framing::FrameDecoder;
use waproto::whatsapp as wa;

use crate::nodes::{self, now_secs, SERVER};
use crate::noise::{self, Hello, Transport};
use crate::state::{ConnEntry, Outbound, Registration, Sim};

/// Entry point for an upgraded WebSocket.
pub async fn run(sim: Sim, ws: WebSocket) {
    let id = sim.next_conn_id();
    let mut conn = Conn {
        sim: sim.clone(),
        id,
        ws,
        decoder: FrameDecoder::new(),
        transport: None,
        device: None,
    };
    match conn.serve().await {
        Ok(()) => debug!(conn = id, "connection closed"),
        Err(e) => debug!(conn = id, "connection ended: {e:#}"),
    }
    let mut w = sim.world();
    if let Some(entry) = w.conns.remove(&id) {
        for r in entry.refs {
            w.qr_refs.remove(&r);
        }
    }
    w.pending_pairs.remove(&id);
    w.pending_codes.retain(|p| p.conn != id);
}

pub(crate) struct Conn {
    pub sim: Sim,
    pub id: u64,
    ws: WebSocket,
    decoder: FrameDecoder,
    transport: Option<Transport>,
    /// `(phone, device)` once logged in.
    pub device: Option<(String, u16)>,
}

/// Whether the stanza loop goes on after a handler.
pub(crate) enum HandleFlow {
    Continue,
    Close,
}

impl Conn {
    async fn recv_raw(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            match self.ws.recv().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(anyhow!("websocket read: {e}")),
                Some(Ok(Message::Binary(b))) => return Ok(Some(b.to_vec())),
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(f) = self.decoder.decode_frame() {
                return Ok(Some(f.to_vec()));
            }
            match self.recv_raw().await? {
                Some(b) => self.decoder.feed(&b),
                None => return Ok(None),
            }
        }
    }

    async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| anyhow!("websocket write: {e}"))
    }

    pub async fn send_node(&mut self, node: &Node) -> Result<()> {
        debug!(conn = self.id, "--> {}", nodes::render(node));
        let plain = wacore_binary::marshal(node).map_err(|e| anyhow!("marshal: {e}"))?;
        let t = self
            .transport
            .as_mut()
            .ok_or_else(|| anyhow!("no transport yet"))?;
        let framed = t.encrypt_frame(&plain)?;
        self.send_raw(framed).await
    }

    /// After a stream error the client closes the socket itself; give it a
    /// moment so it reads the error before it sees the socket go away (a
    /// close racing the last frame would make it reconnect instead).
    async fn drain_then_close(&mut self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while let Ok(Ok(Some(_))) = tokio::time::timeout_at(deadline, self.next_frame()).await {}
        self.close().await;
    }

    async fn close(&mut self) {
        let _ = self.ws.send(Message::Close(None)).await;
    }

    async fn handshake(&mut self) -> Result<Option<(wa::ClientPayload, [u8; 32])>> {
        // The first bytes carry the WA prologue before the first frame.
        let mut head = Vec::new();
        let skip = loop {
            match self.recv_raw().await? {
                Some(b) => head.extend_from_slice(&b),
                None => return Ok(None),
            }
            if let Some(n) = noise::prologue_len(&head)? {
                break n;
            }
        };
        self.decoder.feed(&head[skip..]);
        let Some(hello) = self.next_frame().await? else {
            return Ok(None);
        };
        match noise::respond_hello(self.sim.identity(), &hello)? {
            Hello::Ik {
                server_hello,
                transport,
                client_static,
                payload,
            } => {
                debug!(
                    conn = self.id,
                    "handshake: IK (resumed with cached server key)"
                );
                self.sim.world().handshakes.ik += 1;
                self.send_raw(wacore_noise::framing::encode_frame(&server_hello, None)?)
                    .await?;
                self.transport = Some(transport);
                Ok(Some((
                    noise::decode_client_payload(&payload)?,
                    client_static,
                )))
            }
            Hello::Xx {
                state,
                server_hello,
                fallback,
            } => {
                self.send_raw(wacore_noise::framing::encode_frame(&server_hello, None)?)
                    .await?;
                let Some(fin) = self.next_frame().await? else {
                    return Ok(None);
                };
                let (transport, client_static, payload) = state.finish(&fin)?;
                debug!(conn = self.id, fallback, "handshake: XX");
                {
                    let mut w = self.sim.world();
                    if fallback {
                        w.handshakes.xx_fallback += 1;
                    } else {
                        w.handshakes.xx += 1;
                    }
                }
                self.transport = Some(transport);
                Ok(Some((
                    noise::decode_client_payload(&payload)?,
                    client_static,
                )))
            }
        }
    }

    async fn serve(&mut self) -> Result<()> {
        let Some((payload, client_static)) = self.handshake().await? else {
            return Ok(());
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let entry = ConnEntry {
            tx,
            device: None,
            registration: None,
            refs: Vec::new(),
            refs_issued_ms: 0,
            connected_at: now_secs(),
            ignore_pings: false,
            available: false,
            pings: 0,
            subscribed: Vec::new(),
        };
        self.sim.world().conns.insert(self.id, entry);

        let proceed = if let Some(user) = payload.username {
            self.login(
                user.to_string(),
                payload.device.unwrap_or(0) as u16,
                client_static,
            )
            .await?
        } else {
            self.register(&payload, client_static).await?
        };
        if !proceed {
            self.close().await;
            return Ok(());
        }

        loop {
            tokio::select! {
                frame = self.next_frame() => {
                    let Some(frame) = frame? else { return Ok(()) };
                    let node = self.decode_node(&frame)?;
                    debug!(conn = self.id, "<-- {}", nodes::render(&node));
                    if let HandleFlow::Close = crate::iq::handle(self, node).await? {
                        self.close().await;
                        return Ok(());
                    }
                }
                out = rx.recv() => {
                    match out {
                        Some(Outbound::Node(n)) => self.send_node(&n).await?,
                        Some(Outbound::NodeThenClose(n)) => {
                            self.send_node(&n).await?;
                            self.drain_then_close().await;
                            return Ok(());
                        }
                        Some(Outbound::Close) | None => {
                            self.close().await;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    fn decode_node(&mut self, frame: &[u8]) -> Result<Node> {
        let t = self
            .transport
            .as_mut()
            .ok_or_else(|| anyhow!("no transport"))?;
        let plain = t.decrypt(frame)?;
        let unpacked = wacore_binary::util::unpack(&plain).map_err(|e| anyhow!("unpack: {e}"))?;
        let node = wacore_binary::marshal::unmarshal_ref(&unpacked)
            .map_err(|e| anyhow!("unmarshal: {e}"))?
            .to_owned();
        Ok(node)
    }

    /// A registered device logging in. Returns whether to keep the socket.
    async fn login(&mut self, phone: String, device: u16, noise_pub: [u8; 32]) -> Result<bool> {
        let (verdict, lid, old) = {
            let mut w = self.sim.world();
            let ban = w
                .faults
                .get_mut(&(phone.clone(), device))
                .filter(|f| f.ban_logins > 0)
                .map(|f| {
                    f.ban_logins -= 1;
                })
                .is_some();
            let known = w
                .accounts
                .get(&phone)
                .and_then(|a| a.devices.get(&device).map(|d| (d.noise_pub, a.lid.clone())));
            let ignore_pings = w
                .faults
                .get(&(phone.clone(), device))
                .is_some_and(|f| f.ignore_pings);
            match known {
                _ if ban => (Verdict::Banned, String::new(), None),
                Some((stored, lid)) if stored == noise_pub => {
                    let old = w.conn_of_device(&phone, device);
                    if let Some(e) = w.conns.get_mut(&self.id) {
                        e.device = Some((phone.clone(), device));
                        e.ignore_pings = ignore_pings;
                    }
                    (Verdict::Ok, lid, old)
                }
                _ => (Verdict::Unknown, String::new(), None),
            }
        };
        match verdict {
            Verdict::Banned => {
                info!(
                    conn = self.id,
                    "login {phone}:{device} refused: temporary ban"
                );
                let n = NodeBuilder::new("failure")
                    .attr("reason", "402")
                    .attr("code", "101")
                    .attr("expire", "3600")
                    .attr("location", "sim")
                    .build();
                self.send_node(&n).await?;
                Ok(false)
            }
            Verdict::Unknown => {
                info!(
                    conn = self.id,
                    "login {phone}:{device} refused: unknown device"
                );
                let n = NodeBuilder::new("failure")
                    .attr("reason", "401")
                    .attr("location", "sim")
                    .build();
                self.send_node(&n).await?;
                Ok(false)
            }
            Verdict::Ok => {
                if let Some(old) = old {
                    // One socket per device, as on WhatsApp: the older is replaced.
                    self.sim.world().send(
                        old,
                        Outbound::NodeThenClose(nodes::stream_error(None, Some("replaced"))),
                    );
                }
                info!(conn = self.id, "login {phone}:{device} ok");
                self.device = Some((phone.clone(), device));
                let n = NodeBuilder::new("success")
                    .attr("t", now_secs().to_string())
                    .attr("lid", format!("{lid}:{device}@lid"))
                    .attr("location", "sim")
                    .attr("creation", now_secs().to_string())
                    .attr("props", "1")
                    .attr("abprops", "1")
                    .build();
                self.send_node(&n).await?;
                Ok(true)
            }
        }
    }

    /// A new device: remember its keys and hand it QR refs.
    async fn register(&mut self, payload: &wa::ClientPayload, noise_pub: [u8; 32]) -> Result<bool> {
        let reg = payload
            .device_pairing_data
            .as_option()
            .ok_or_else(|| anyhow!("login payload has neither username nor registration data"))?;
        let identity_pub: [u8; 32] = reg
            .e_ident
            .as_deref()
            .unwrap_or_default()
            .try_into()
            .map_err(|_| anyhow!("registration identity key is not 32 bytes"))?;
        if !noise::valid_public_key(&identity_pub) {
            bail!("registration identity key is not a curve25519 key");
        }
        let registration_id = reg
            .e_regid
            .as_deref()
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0);
        let platform = payload
            .user_agent
            .as_option()
            .and_then(|u| u.platform.map(|p| format!("{p:?}")))
            .unwrap_or_default();
        let registration = Registration {
            noise_pub,
            identity_pub,
            registration_id,
            platform,
        };
        let refs: Vec<String> = (0..self.sim.config().qr_refs)
            .map(|_| crate::iq::random_ref())
            .collect();
        {
            let mut w = self.sim.world();
            for r in &refs {
                w.qr_refs.insert(r.clone(), self.id);
            }
            if let Some(e) = w.conns.get_mut(&self.id) {
                e.registration = Some(registration);
                e.refs = refs.clone();
                e.refs_issued_ms = crate::state::now_ms();
            }
        }
        info!(conn = self.id, "new device: {} QR refs issued", refs.len());
        let n = NodeBuilder::new("iq")
            .attr("from", SERVER)
            .attr("type", "set")
            .attr("id", crate::iq::random_id())
            .attr("xmlns", "md")
            .children([NodeBuilder::new("pair-device")
                .children(
                    refs.iter()
                        .map(|r| NodeBuilder::new("ref").bytes(r.as_bytes().to_vec()).build()),
                )
                .build()])
            .build();
        self.send_node(&n).await?;
        Ok(true)
    }
}

enum Verdict {
    Ok,
    Unknown,
    Banned,
}

pub(crate) fn keep() -> HandleFlow {
    HandleFlow::Continue
}

pub(crate) fn close() -> HandleFlow {
    HandleFlow::Close
}
