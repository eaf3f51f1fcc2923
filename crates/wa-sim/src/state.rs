//! The simulator's world: accounts and their devices, the number directory,
//! live connections, faults, and what was recorded for the control API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::mpsc;
use wacore_binary::Node;
use wacore_libsignal::protocol::KeyPair;

use crate::nodes::now_secs;
use crate::noise::ServerIdentity;

/// Tunables. `Default` matches WhatsApp where there is a known value.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many QR refs the server hands a new device (WhatsApp: 6).
    pub qr_refs: usize,
    /// Pre-keys the server claims to hold before the client uploads any.
    pub initial_prekey_count: u32,
    /// How many received messages and receipts each phone keeps for the
    /// control API (oldest dropped first).
    pub keep_received: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            qr_refs: 6,
            initial_prekey_count: 0,
            keep_received: 10_000,
        }
    }
}

/// What the connection task is asked to do from outside.
#[derive(Debug)]
pub enum Outbound {
    Node(Node),
    /// Send the node, then close the socket.
    NodeThenClose(Node),
    Close,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    pub id: u16,
    #[serde(skip)]
    pub noise_pub: [u8; 32],
    #[serde(skip)]
    pub identity_pub: [u8; 32],
    pub registration_id: u32,
    pub key_index: u32,
    pub platform: String,
    /// One-time pre-keys currently held (uploaded minus handed out).
    pub prekeys: u32,
    pub paired_at: u64,
    /// The identity the device countersigned at pairing (`<device-identity>`
    /// in pre-key bundles).
    #[serde(skip)]
    pub signed_identity: Vec<u8>,
    #[serde(skip)]
    pub keys: Option<KeyBundle>,
    /// Whether the phone already sent this device the app-state key.
    pub key_shared: bool,
}

/// What a device uploaded with `<iq xmlns="encrypt" type="set">`.
#[derive(Clone, Debug, Default)]
pub struct KeyBundle {
    pub registration: Vec<u8>,
    pub identity: Vec<u8>,
    /// `(id, public)`; ids are the 3-byte wire form.
    pub one_time: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    /// `(id, public, signature)`.
    pub signed: (Vec<u8>, Vec<u8>, Vec<u8>),
}

pub struct Account {
    pub phone: String,
    pub lid: String,
    pub push_name: String,
    /// The phone's identity key: signs companion device identities.
    pub account_key: KeyPair,
    pub devices: BTreeMap<u16, DeviceInfo>,
    pub next_device: u16,
    pub next_key_index: u32,
    /// The app-state sync key the phone shares with each linked device.
    pub app_state_key: crate::phone::AppStateKey,
    /// The phone's (device 0's) public pre-key bundle; its private half
    /// lives in the phone's task.
    pub phone_keys: KeyBundle,
    /// The phone's task: every stanza routed to device 0 goes here.
    pub phone_tx: mpsc::UnboundedSender<crate::phone::PhoneInput>,
    /// A person driven by the simulator (created with `POST /control/people`).
    pub person: bool,
    /// What the phone received (decrypted), oldest first.
    pub received: Vec<serde_json::Value>,
    /// `chat|from|id` of each entry of `received`, to show a repeated message once.
    pub received_keys: HashSet<String>,
    /// Receipts the phone got for what this account sent.
    pub receipts: Vec<serde_json::Value>,
    /// History the phone pushes to each newly linked device.
    pub history: Option<crate::history::History>,
    /// App-state collections by name.
    pub app_state: BTreeMap<String, crate::appstate::Collection>,
    /// The chat settings the app state describes (decoded).
    pub chat_settings: crate::appstate::ChatSettings,
    /// The push name last written as `setting_pushName`.
    pub synced_push_name: String,
}

/// Registration data a not-yet-paired client sent in its login payload.
#[derive(Clone, Debug)]
pub struct Registration {
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub registration_id: u32,
    pub platform: String,
}

/// A pair-success sent to a connection, waiting for its pair-device-sign.
#[derive(Clone, Debug)]
pub struct PendingPair {
    pub iq_id: String,
    pub phone: String,
    pub device: u16,
    pub key_index: u32,
    pub registration: Registration,
}

/// A pairing code the client registered with `pair_with_code`.
pub struct PendingCode {
    pub conn: u64,
    pub phone: String,
    pub pairing_ref: String,
    /// The companion's ephemeral key, wrapped with the code.
    pub wrapped_companion_ephemeral: Vec<u8>,
    /// Set when the phone confirmed the code.
    pub confirmed: Option<ConfirmedCode>,
    pub created_at: u64,
}

pub struct ConfirmedCode {
    pub companion_ephemeral_pub: [u8; 32],
    pub primary_ephemeral: KeyPair,
    pub name: Option<String>,
}

pub struct ConnEntry {
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// `(phone, device)` once logged in.
    pub device: Option<(String, u16)>,
    pub registration: Option<Registration>,
    pub refs: Vec<String>,
    /// When the refs were issued (ms since the epoch): ref `i` is shown by
    /// the client from 60 s + 20 s·(i-1) and expires 60 s + 20 s·i after.
    pub refs_issued_ms: u64,
    pub connected_at: u64,
    pub ignore_pings: bool,
    pub available: bool,
    /// Keepalive pings answered on this socket.
    pub pings: u64,
    /// Phones whose presence this socket subscribed to.
    pub subscribed: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceFaults {
    /// Refuse this many upcoming logins with a temporary ban (402).
    pub ban_logins: u32,
    /// Stop answering keepalive pings.
    pub ignore_pings: bool,
    /// Corrupt the ciphertext of this many upcoming messages to the device
    /// (it cannot decrypt them and must ask the sender with a retry receipt).
    pub corrupt_messages: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChatStateRecord {
    pub at: u64,
    pub from: String,
    pub to: String,
    /// `composing`, `recording` or `paused`.
    pub state: String,
    pub delivered_to: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PresenceRecord {
    pub at: u64,
    pub from: String,
    /// `available`, `unavailable`, `subscribe`...
    pub kind: String,
    pub name: Option<String>,
    pub delivered_to: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct UnhandledRecord {
    pub at: u64,
    pub from: Option<String>,
    pub node: String,
}

/// Completed Noise handshakes by pattern.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HandshakeStats {
    pub xx: u64,
    pub ik: u64,
    pub xx_fallback: u64,
}

#[derive(Default)]
pub struct World {
    /// The simulator itself, for the tasks the world spawns (phones).
    pub(crate) this: std::sync::Weak<Inner>,
    /// LID user → phone number (the reverse of `directory`).
    pub lids: HashMap<String, String>,
    /// Stanzas for devices that are not connected, delivered at next login.
    pub offline: HashMap<(String, u16), Vec<Node>>,
    /// Messages sent to a connected device and not yet acknowledged
    /// (`(id, stanza)`): delivered again, as offline, at the next login.
    pub unacked: HashMap<(String, u16), Vec<(String, Node)>>,
    /// Groups by JID user part (`120363...`).
    pub groups: BTreeMap<String, crate::groups::Group>,
    /// Every message the server routed (for the control API and benchmarks).
    pub routed: u64,
    /// Script steps of loaded scenarios that ran.
    pub script_sent: u64,
    /// Retry receipts routed (a device could not decrypt).
    pub retry_receipts: u64,
    /// `(viewer, other)`: `viewer` has a reason to know `other`'s number
    /// (they exchanged 1:1 messages), so LID-mode groups show it.
    pub knows: std::collections::HashSet<(String, String)>,
    /// Encrypted media blobs by direct path.
    pub media: HashMap<String, Vec<u8>>,
    /// The host the media-connection answer names (the simulator's own
    /// `127.0.0.1:PORT` once serving).
    pub media_host: String,
    pub handshakes: HandshakeStats,
    pub accounts: BTreeMap<String, Account>,
    /// Numbers on WhatsApp → LID user. Accounts are added on pairing.
    pub directory: BTreeMap<String, String>,
    pub conns: HashMap<u64, ConnEntry>,
    pub qr_refs: HashMap<String, u64>,
    pub pending_pairs: HashMap<u64, PendingPair>,
    pub pending_codes: Vec<PendingCode>,
    pub faults: HashMap<(String, u16), DeviceFaults>,
    pub chatstates: Vec<ChatStateRecord>,
    pub presences: Vec<PresenceRecord>,
    pub unhandled: Vec<UnhandledRecord>,
    next_lid: u64,
}

/// How long ref `index` (0-based) of a batch stays scannable, counted from
/// the batch's issue time: the client shows the first for 60 s, each next
/// one for 20 s (the client starts its clock after the server issued them).
pub fn qr_ref_deadline_ms(index: usize) -> u64 {
    (60 + 20 * index as u64) * 1000
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl World {
    /// The LID for `phone`, assigning a new stable one on first sight.
    pub fn lid_for(&mut self, phone: &str) -> String {
        if let Some(lid) = self.directory.get(phone) {
            return lid.clone();
        }
        self.next_lid += 1;
        let lid = format!("{}", 100_000_000_000_000u64 + self.next_lid * 7919);
        self.directory.insert(phone.to_string(), lid.clone());
        self.lids.insert(lid.clone(), phone.to_string());
        lid
    }

    pub fn phone_for_lid(&self, lid: &str) -> Option<String> {
        self.lids.get(lid).cloned()
    }

    /// `(phone, device, addressed_by_lid)` for a JID in either form
    /// (`PHONE[:DEV]@s.whatsapp.net` or `LID[:DEV]@lid`).
    pub fn resolve_jid(&self, jid: &str) -> Option<(String, u16, bool)> {
        let (user, device, server) = crate::nodes::split_jid(jid);
        match server {
            "lid" => self.phone_for_lid(user).map(|p| (p, device, true)),
            "s.whatsapp.net" | "c.us" | "" => Some((user.to_string(), device, false)),
            _ => None,
        }
    }

    /// The JID of `phone:device` in phone-number or LID form (`device` 0
    /// is written without a device part).
    pub fn jid_of(&self, phone: &str, device: u16, lid_form: bool) -> String {
        let user = if lid_form {
            self.directory
                .get(phone)
                .cloned()
                .unwrap_or_else(|| phone.to_string())
        } else {
            phone.to_string()
        };
        let server = if lid_form {
            "lid"
        } else {
            crate::nodes::SERVER
        };
        if device == 0 {
            format!("{user}@{server}")
        } else {
            format!("{user}:{device}@{server}")
        }
    }

    /// The account for `phone`, created (with a fresh phone identity and
    /// the phone's own Signal keys and task) if new.
    pub fn account_mut(&mut self, phone: &str) -> &mut Account {
        let lid = self.lid_for(phone);
        let this = self.this.clone();
        self.accounts.entry(phone.to_string()).or_insert_with(|| {
            let account_key = KeyPair::generate(&mut rand::rng());
            let (store, phone_keys) = crate::signal::MemStore::generate(&account_key);
            let phone_tx = crate::phone::spawn(this, phone.to_string(), store);
            Account {
                phone: phone.to_string(),
                lid,
                push_name: String::new(),
                account_key,
                devices: BTreeMap::new(),
                next_device: 1,
                next_key_index: 1,
                app_state_key: crate::phone::AppStateKey::generate(),
                phone_keys,
                phone_tx,
                person: false,
                received: Vec::new(),
                received_keys: HashSet::new(),
                receipts: Vec::new(),
                history: None,
                app_state: BTreeMap::new(),
                chat_settings: BTreeMap::new(),
                synced_push_name: String::new(),
            }
        })
    }

    /// Connections logged in as one of `phone`'s devices.
    pub fn conns_of(&self, phone: &str) -> Vec<(u64, &ConnEntry)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.device.as_ref().is_some_and(|(p, _)| p == phone))
            .map(|(id, c)| (*id, c))
            .collect()
    }

    pub fn conn_of_device(&self, phone: &str, device: u16) -> Option<u64> {
        self.conns
            .iter()
            .find(|(_, c)| {
                c.device
                    .as_ref()
                    .is_some_and(|(p, d)| p == phone && *d == device)
            })
            .map(|(id, _)| *id)
    }

    pub fn send(&self, conn: u64, out: Outbound) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.tx.send(out).is_ok())
    }

    pub fn record_unhandled(&mut self, from: Option<String>, node: String) {
        tracing::warn!(from = ?from, "query not understood: {node}");
        self.unhandled.push(UnhandledRecord {
            at: now_secs(),
            from,
            node,
        });
    }
}

pub(crate) struct Inner {
    pub identity: ServerIdentity,
    pub config: SimConfig,
    pub world: Mutex<World>,
    next_conn: AtomicU64,
}

/// A simulator instance; cheap to clone.
#[derive(Clone)]
pub struct Sim(pub(crate) Arc<Inner>);

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        Sim(Arc::new_cyclic(|this| Inner {
            identity: ServerIdentity::generate(),
            config,
            world: Mutex::new(World {
                this: this.clone(),
                ..World::default()
            }),
            next_conn: AtomicU64::new(1),
        }))
    }

    pub(crate) fn from_weak(w: &std::sync::Weak<Inner>) -> Option<Sim> {
        w.upgrade().map(Sim)
    }

    pub fn config(&self) -> &SimConfig {
        &self.0.config
    }

    pub(crate) fn identity(&self) -> &ServerIdentity {
        &self.0.identity
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.0.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.0.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds `phone` to the directory (as a number on WhatsApp); returns its LID.
    pub fn add_number(&self, phone: &str) -> String {
        self.world().lid_for(phone)
    }

    /// Number of sockets currently logged in as a device.
    pub fn logged_in_count(&self) -> usize {
        self.world()
            .conns
            .values()
            .filter(|c| c.device.is_some())
            .count()
    }
}
