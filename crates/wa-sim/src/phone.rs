//! The simulated phone's Signal side: after a companion uploads its
//! pre-keys, the phone opens a session from that bundle and shares the
//! account's app-state sync key, as WhatsApp's primary does after linking.

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use async_trait::async_trait;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;
use wacore_libsignal::protocol::{
    message_encrypt, process_prekey_bundle, CiphertextMessageType, DeviceId, Direction,
    IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle,
    ProtocolAddress, PublicKey, SessionRecord, SessionStore, SignalProtocolError, UsePQRatchet,
};
use waproto::buffa::{Message as _, MessageField};
use waproto::whatsapp::{self as wa, message as wm};

use crate::nodes::{now_secs, SERVER};
use crate::state::KeyBundle;

type SResult<T> = std::result::Result<T, SignalProtocolError>;

/// A throw-away Signal store for one phone → companion session.
struct PhoneStore {
    identity: IdentityKeyPair,
    registration_id: u32,
    sessions: HashMap<String, SessionRecord>,
    identities: HashMap<String, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for PhoneStore {
    async fn get_identity_key_pair(&self) -> SResult<IdentityKeyPair> {
        Ok(self.identity.clone())
    }
    async fn get_local_registration_id(&self) -> SResult<u32> {
        Ok(self.registration_id)
    }
    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SResult<IdentityChange> {
        let changed = self
            .identities
            .insert(address.to_string(), *identity)
            .is_some_and(|old| old != *identity);
        Ok(IdentityChange::from_changed(changed))
    }
    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SResult<bool> {
        Ok(true)
    }
    async fn get_identity(&self, address: &ProtocolAddress) -> SResult<Option<IdentityKey>> {
        Ok(self.identities.get(&address.to_string()).copied())
    }
}

#[async_trait]
impl SessionStore for PhoneStore {
    async fn load_session(&self, address: &ProtocolAddress) -> SResult<Option<SessionRecord>> {
        Ok(self.sessions.get(&address.to_string()).cloned())
    }
    async fn has_session(&self, address: &ProtocolAddress) -> SResult<bool> {
        Ok(self.sessions.contains_key(&address.to_string()))
    }
    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SResult<()> {
        self.sessions.insert(address.to_string(), record);
        Ok(())
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

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

/// Builds the `<message>` carrying the app-state key share from the phone
/// (device 0 of `phone`) to companion `device`, encrypted with a fresh
/// session from `bundle` (one one-time pre-key consumed by the caller).
pub async fn key_share_message(
    phone: &str,
    device: u16,
    account_key: &KeyPair,
    bundle: &KeyBundle,
    one_time: Option<(Vec<u8>, Vec<u8>)>,
    key: &AppStateKey,
) -> Result<Node> {
    let mut store = PhoneStore {
        identity: IdentityKeyPair::from(account_key.clone()),
        registration_id: 1,
        sessions: HashMap::new(),
        identities: HashMap::new(),
    };
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
    let address = ProtocolAddress::new(phone, DeviceId::from(u32::from(device)));
    let mut identities = PhoneStore {
        identity: store.identity.clone(),
        registration_id: 1,
        sessions: HashMap::new(),
        identities: HashMap::new(),
    };
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    process_prekey_bundle(
        &address,
        &mut store,
        &mut identities,
        &signal_bundle,
        &mut rng,
        UsePQRatchet::No,
    )
    .await?;

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
    let mut plain = share.encode_to_vec();
    let pad = 1 + (rand::random::<u8>() & 0x0F);
    plain.resize(plain.len() + pad as usize, pad);
    let ct = message_encrypt(&plain, &address, &mut store, &mut identities).await?;
    let kind = match ct.message_type() {
        CiphertextMessageType::PreKey => "pkmsg",
        _ => "msg",
    };
    Ok(NodeBuilder::new("message")
        .attr("from", format!("{phone}@{SERVER}"))
        .attr("type", "text")
        .attr("id", crate::iq::random_id())
        .attr("t", now_secs().to_string())
        .attr("category", "peer")
        .children([NodeBuilder::new("enc")
            .attr("v", "2")
            .attr("type", kind)
            .bytes(ct.serialize().to_vec())
            .build()])
        .build())
}
