//! An in-memory Signal store for the simulated phones (device 0 of every
//! account, and the simulated people): identity, pre-keys, sessions and
//! sender keys. Addresses are the simulator's canonical `phone.device`
//! names, whatever form (phone number or LID) a stanza used.

use std::collections::HashMap;

use async_trait::async_trait;
use wacore_libsignal::protocol::{
    Direction, GenericSignedPreKey, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore,
    KeyPair, PreKeyId, PreKeyRecord, PreKeyStore, ProtocolAddress, SenderKeyName, SenderKeyRecord,
    SenderKeyStore, SessionRecord, SessionStore, SignalProtocolError, SignedPreKeyId,
    SignedPreKeyRecord, SignedPreKeyStore, Timestamp,
};

use crate::state::KeyBundle;

type SResult<T> = std::result::Result<T, SignalProtocolError>;

/// The stores libsignal takes as separate arguments, as separate fields.
pub struct MemStore {
    pub ids: Ids,
    pub sessions: Sessions,
    pub prekeys: PreKeys,
    pub signed: SignedPreKeys,
    pub sender_keys: SenderKeys,
}

pub struct Ids {
    pub identity: IdentityKeyPair,
    pub registration_id: u32,
    identities: HashMap<String, IdentityKey>,
}

#[derive(Default)]
pub struct Sessions(HashMap<String, SessionRecord>);
#[derive(Default)]
pub struct PreKeys(HashMap<u32, PreKeyRecord>);
#[derive(Default)]
pub struct SignedPreKeys(HashMap<u32, SignedPreKeyRecord>);
#[derive(Default)]
pub struct SenderKeys(HashMap<String, SenderKeyRecord>);

/// How many one-time pre-keys a simulated phone publishes.
pub const PHONE_PREKEYS: u32 = 16;

fn id3(id: u32) -> Vec<u8> {
    id.to_be_bytes()[1..].to_vec()
}

impl MemStore {
    /// A fresh store for `identity` with a signed pre-key and `PHONE_PREKEYS`
    /// one-time pre-keys; returns the public bundle the server hands out.
    pub fn generate(identity: &KeyPair) -> (MemStore, KeyBundle) {
        let mut rng = rand::rng();
        let registration_id: u32 = 1 + (rand::random::<u32>() % 16380);
        let signed_pair = KeyPair::generate(&mut rng);
        let signature = identity
            .private_key
            .calculate_signature(&signed_pair.public_key.serialize(), &mut rng)
            .expect("sign pre-key");
        let signed_id = 1u32;
        let mut store = MemStore {
            ids: Ids {
                identity: IdentityKeyPair::from(identity.clone()),
                registration_id,
                identities: HashMap::new(),
            },
            sessions: Sessions::default(),
            prekeys: PreKeys::default(),
            signed: SignedPreKeys::default(),
            sender_keys: SenderKeys::default(),
        };
        store.signed.0.insert(
            signed_id,
            SignedPreKeyRecord::new(
                SignedPreKeyId::from(signed_id),
                Timestamp::from_epoch_millis(crate::state::now_ms()),
                &signed_pair,
                &signature,
            ),
        );
        let mut bundle = KeyBundle {
            registration: registration_id.to_be_bytes().to_vec(),
            identity: identity.public_key.public_key_bytes().to_vec(),
            one_time: Default::default(),
            signed: (
                id3(signed_id),
                signed_pair.public_key.public_key_bytes().to_vec(),
                signature.to_vec(),
            ),
        };
        for id in 1..=PHONE_PREKEYS {
            let pair = KeyPair::generate(&mut rng);
            store
                .prekeys
                .0
                .insert(id, PreKeyRecord::new(PreKeyId::from(id), &pair));
            bundle
                .one_time
                .push_back((id3(id), pair.public_key.public_key_bytes().to_vec()));
        }
        (store, bundle)
    }

    pub fn has_session_with(&self, address: &ProtocolAddress) -> bool {
        self.sessions.0.contains_key(&address.to_string())
    }

    pub fn forget_session(&mut self, address: &ProtocolAddress) {
        self.sessions.0.remove(&address.to_string());
    }
}

#[async_trait]
impl IdentityKeyStore for Ids {
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
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SResult<Option<SessionRecord>> {
        Ok(self.0.get(&address.to_string()).cloned())
    }
    async fn has_session(&self, address: &ProtocolAddress) -> SResult<bool> {
        Ok(self.0.contains_key(&address.to_string()))
    }
    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SResult<()> {
        self.0.insert(address.to_string(), record);
        Ok(())
    }
}

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> SResult<PreKeyRecord> {
        self.0
            .get(&u32::from(prekey_id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }
    async fn save_pre_key(&mut self, prekey_id: PreKeyId, record: &PreKeyRecord) -> SResult<()> {
        self.0.insert(u32::from(prekey_id), record.clone());
        Ok(())
    }
    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> SResult<()> {
        self.0.remove(&u32::from(prekey_id));
        Ok(())
    }
}

#[async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SResult<SignedPreKeyRecord> {
        self.0
            .get(&u32::from(id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidSignedPreKeyId)
    }
    async fn save_signed_pre_key(
        &mut self,
        id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SResult<()> {
        self.0.insert(u32::from(id), record.clone());
        Ok(())
    }
}

#[async_trait]
impl SenderKeyStore for SenderKeys {
    async fn store_sender_key(
        &mut self,
        name: &SenderKeyName,
        record: SenderKeyRecord,
    ) -> SResult<()> {
        self.0.insert(name.cache_key().to_string(), record);
        Ok(())
    }
    async fn load_sender_key(&self, name: &SenderKeyName) -> SResult<Option<SenderKeyRecord>> {
        Ok(self.0.get(name.cache_key()).cloned())
    }
}
