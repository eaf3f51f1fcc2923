//! What the phone does when it links a companion device: read the QR, build
//! and sign the ADV device identity, and check the companion's signature.

use anyhow::{anyhow, bail, Result};
use base64::prelude::*;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wacore_libsignal::protocol::{KeyPair, PublicKey};
use waproto::buffa::Message as _;
use waproto::whatsapp::{self as wa, ADVEncryptionType};

const ADV_PREFIX_ACCOUNT_SIGNATURE: &[u8] = &[6, 0];
const ADV_PREFIX_DEVICE_SIGNATURE: &[u8] = &[6, 1];

/// The fields of a companion QR code:
/// `ref,noise_pub,identity_pub,adv_secret[,client_type]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QrData {
    pub pairing_ref: String,
    pub noise_pub: [u8; 32],
    pub identity_pub: [u8; 32],
    pub adv_secret: [u8; 32],
}

fn b64_32(field: &str, what: &str) -> Result<[u8; 32]> {
    BASE64_STANDARD
        .decode(field)
        .map_err(|e| anyhow!("{what}: bad base64: {e}"))?
        .try_into()
        .map_err(|_| anyhow!("{what}: not 32 bytes"))
}

pub fn parse_qr(qr: &str) -> Result<QrData> {
    let body = qr
        .strip_prefix("https://wa.me/settings/linked_devices#")
        .unwrap_or(qr);
    let parts: Vec<&str> = body.split(',').collect();
    if parts.len() < 4 || parts[..4].iter().any(|p| p.is_empty()) {
        bail!("QR must have at least 4 non-empty comma-separated fields");
    }
    Ok(QrData {
        pairing_ref: parts[0].to_string(),
        noise_pub: b64_32(parts[1], "noise key")?,
        identity_pub: b64_32(parts[2], "identity key")?,
        adv_secret: b64_32(parts[3], "adv secret")?,
    })
}

/// Builds the `ADVSignedDeviceIdentityHMAC` the phone sends in
/// `<pair-success><device-identity>`: device details signed with the
/// account (phone) identity key, wrapped in an HMAC keyed by the companion's
/// ADV secret.
pub fn build_device_identity(
    account_key: &KeyPair,
    companion_identity_pub: &[u8; 32],
    adv_secret: &[u8; 32],
    raw_id: u32,
    key_index: u32,
) -> Result<Vec<u8>> {
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(raw_id),
        timestamp: Some(crate::nodes::now_secs()),
        key_index: Some(key_index),
        account_type: Some(ADVEncryptionType::E2EE),
        device_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut msg = Vec::with_capacity(2 + details.len() + 32);
    msg.extend_from_slice(ADV_PREFIX_ACCOUNT_SIGNATURE);
    msg.extend_from_slice(&details);
    msg.extend_from_slice(companion_identity_pub);
    let signature = account_key
        .private_key
        .calculate_signature(&msg, &mut rand::rng())
        .map_err(|e| anyhow!("account signature: {e}"))?;
    let signed = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account_key.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(adv_secret).map_err(|e| anyhow!("hmac key: {e}"))?;
    mac.update(&signed);
    let hmac = mac.finalize().into_bytes().to_vec();
    Ok(wa::ADVSignedDeviceIdentityHMAC {
        details: Some(signed),
        hmac: Some(hmac),
        account_type: Some(ADVEncryptionType::E2EE),
    }
    .encode_to_vec())
}

/// Checks the identity the companion sent back in `<pair-device-sign>`:
/// the details still carry our account signature, and the device signature
/// verifies with the companion's identity key. The account key itself may
/// be left out (whatsmeow and Baileys strip `accountSignatureKey` before
/// sending; WhatsApp accepts that, it knows the account key); when present
/// it must be ours. Returns the key index.
pub fn verify_device_sign(
    signed_identity: &[u8],
    account_key: &KeyPair,
    companion_identity_pub: &[u8; 32],
) -> Result<u32> {
    let signed = wa::ADVSignedDeviceIdentity::decode_from_slice(signed_identity)?;
    let details = signed
        .details
        .as_deref()
        .ok_or_else(|| anyhow!("identity without details"))?;
    let account_pub = account_key.public_key.public_key_bytes();
    match signed.account_signature_key.as_deref() {
        None | Some([]) => {}
        Some(k) if k == account_pub => {}
        Some(_) => bail!("identity names another account key"),
    }
    let account_sig = signed
        .account_signature
        .as_deref()
        .ok_or_else(|| anyhow!("identity without account signature"))?;
    let mut acct_msg = Vec::with_capacity(2 + details.len() + 32);
    acct_msg.extend_from_slice(ADV_PREFIX_ACCOUNT_SIGNATURE);
    acct_msg.extend_from_slice(details);
    acct_msg.extend_from_slice(companion_identity_pub);
    if !account_key
        .public_key
        .verify_signature(&acct_msg, account_sig)
    {
        bail!("account signature does not verify (details changed?)");
    }
    let device_sig = signed
        .device_signature
        .as_deref()
        .ok_or_else(|| anyhow!("identity without device signature"))?;
    let mut msg = Vec::with_capacity(2 + details.len() + 64);
    msg.extend_from_slice(ADV_PREFIX_DEVICE_SIGNATURE);
    msg.extend_from_slice(details);
    msg.extend_from_slice(companion_identity_pub);
    msg.extend_from_slice(account_pub);
    let companion = PublicKey::from_djb_public_key_bytes(companion_identity_pub)
        .map_err(|e| anyhow!("companion identity key: {e}"))?;
    if !companion.verify_signature(&msg, device_sig) {
        bail!("device signature does not verify");
    }
    let identity = wa::ADVDeviceIdentity::decode_from_slice(details)?;
    identity
        .key_index
        .ok_or_else(|| anyhow!("identity without key index"))
}

const PAIR_CODE_PBKDF2_ROUNDS: u32 = 131_072;

fn code_key(code: &str, salt: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(code.as_bytes(), salt, PAIR_CODE_PBKDF2_ROUNDS, &mut key);
    key
}

fn ctr(key: &[u8; 32], iv: &[u8], data: &mut [u8]) {
    use aes::cipher::{KeyIvInit, StreamCipher};
    let iv = iv.try_into().expect("a 16-byte iv");
    let mut c = ctr::Ctr128BE::<aes::Aes256>::new(key.into(), iv);
    c.apply_keystream(data);
}

/// Opens a code-wrapped ephemeral key: `salt(32) || iv(16) || aes-ctr(32)`,
/// key = PBKDF2-SHA256(code, salt, 131072). Slow (by design): call from a
/// blocking thread.
pub fn unwrap_code_ephemeral(wrapped: &[u8], code: &str) -> Result<[u8; 32]> {
    if wrapped.len() != 80 {
        bail!("wrapped ephemeral must be 80 bytes, got {}", wrapped.len());
    }
    let key = code_key(code, &wrapped[..32]);
    let mut out: [u8; 32] = wrapped[48..80].try_into().expect("32 bytes");
    ctr(&key, &wrapped[32..48], &mut out);
    Ok(out)
}

/// Wraps `pub_key` with `code` the same way (fresh salt and IV).
pub fn wrap_code_ephemeral(pub_key: &[u8], code: &str) -> Vec<u8> {
    use rand::RngExt;
    let mut salt = [0u8; 32];
    let mut iv = [0u8; 16];
    rand::rng().fill(&mut salt[..]);
    rand::rng().fill(&mut iv[..]);
    let key = code_key(code, &salt);
    let mut ct = [0u8; 32];
    ct.copy_from_slice(pub_key);
    ctr(&key, &iv, &mut ct);
    let mut out = Vec::with_capacity(80);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    out
}

fn dh(private: &KeyPair, public: &[u8]) -> Result<[u8; 32]> {
    let pk =
        PublicKey::from_djb_public_key_bytes(public).map_err(|e| anyhow!("public key: {e}"))?;
    private
        .private_key
        .calculate_agreement(&pk)
        .map_err(|e| anyhow!("agreement: {e}"))
}

/// The phone's side of `companion_finish`: opens the companion's key bundle
/// and derives the ADV secret both sides then share. Returns
/// `(companion_identity_pub, adv_secret)`.
pub fn open_key_bundle(
    wrapped_bundle: &[u8],
    primary_ephemeral: &KeyPair,
    companion_ephemeral_pub: &[u8; 32],
    account_key: &KeyPair,
) -> Result<([u8; 32], [u8; 32])> {
    use aes_gcm::aead::{Aead, KeyInit};
    if wrapped_bundle.len() < 32 + 12 + 16 {
        bail!("key bundle too short");
    }
    let eph_shared = dh(primary_ephemeral, companion_ephemeral_pub)?;
    let mut enc_key = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(&wrapped_bundle[..32]), &eph_shared)
        .expand(b"link_code_pairing_key_bundle_encryption_key", &mut enc_key)
        .map_err(|_| anyhow!("hkdf"))?;
    let cipher = aes_gcm::Aes256Gcm::new((&enc_key).into());
    let bundle = cipher
        .decrypt(
            wrapped_bundle[32..44].try_into().expect("12 bytes"),
            &wrapped_bundle[44..],
        )
        .map_err(|_| anyhow!("key bundle does not decrypt (wrong code?)"))?;
    if bundle.len() != 96 {
        bail!("key bundle must be 96 bytes, got {}", bundle.len());
    }
    let companion_identity: [u8; 32] = bundle[..32].try_into().expect("32");
    if bundle[32..64] != *account_key.public_key.public_key_bytes() {
        bail!("key bundle names another primary identity");
    }
    let id_shared = dh(account_key, &companion_identity)?;
    let mut ikm = Vec::with_capacity(96);
    ikm.extend_from_slice(&eph_shared);
    ikm.extend_from_slice(&id_shared);
    ikm.extend_from_slice(&bundle[64..96]);
    let mut adv = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, &ikm)
        .expand(b"adv_secret", &mut adv)
        .map_err(|_| anyhow!("hkdf"))?;
    Ok((companion_identity, adv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_round_trip_and_rejects() {
        let k = [7u8; 32];
        let b = BASE64_STANDARD.encode(k);
        let qr = format!("2@abc,{b},{b},{b},1");
        let d = parse_qr(&qr).unwrap();
        assert_eq!(d.pairing_ref, "2@abc");
        assert_eq!(d.adv_secret, k);
        assert!(parse_qr("a,b,c").is_err());
        assert!(parse_qr(&format!("r,{b},{b},short")).is_err());
    }

    #[test]
    fn identity_signed_by_account_and_countersigned() {
        let account = KeyPair::generate(&mut rand::rng());
        let companion = KeyPair::generate(&mut rand::rng());
        let cpub: [u8; 32] = companion.public_key.public_key_bytes().try_into().unwrap();
        let secret = [9u8; 32];
        let bytes = build_device_identity(&account, &cpub, &secret, 3, 1).unwrap();
        let container = wa::ADVSignedDeviceIdentityHMAC::decode_from_slice(&bytes).unwrap();
        let mut signed =
            wa::ADVSignedDeviceIdentity::decode_from_slice(container.details.as_deref().unwrap())
                .unwrap();
        // Companion side: countersign as whatsapp-rust does.
        let details = signed.details.clone().unwrap();
        let mut msg = ADV_PREFIX_DEVICE_SIGNATURE.to_vec();
        msg.extend_from_slice(&details);
        msg.extend_from_slice(&cpub);
        msg.extend_from_slice(account.public_key.public_key_bytes());
        let sig = companion
            .private_key
            .calculate_signature(&msg, &mut rand::rng())
            .unwrap();
        signed.device_signature = Some(sig.to_vec());
        let back = signed.encode_to_vec();
        assert_eq!(verify_device_sign(&back, &account, &cpub).unwrap(), 1);
        // A wrong companion key must not verify.
        assert!(verify_device_sign(&back, &account, &[1u8; 32]).is_err());
        // whatsmeow and Baileys send it without the account key: accepted.
        let mut stripped = signed.clone();
        stripped.account_signature_key = None;
        assert_eq!(
            verify_device_sign(&stripped.encode_to_vec(), &account, &cpub).unwrap(),
            1
        );
        // Another account's key, or changed details, are refused.
        let other = KeyPair::generate(&mut rand::rng());
        let mut foreign = signed.clone();
        foreign.account_signature_key = Some(other.public_key.public_key_bytes().to_vec());
        assert!(verify_device_sign(&foreign.encode_to_vec(), &account, &cpub).is_err());
        let mut changed = stripped.clone();
        let mut d = wa::ADVDeviceIdentity::decode_from_slice(&details).unwrap();
        d.key_index = Some(9);
        changed.details = Some(d.encode_to_vec());
        assert!(verify_device_sign(&changed.encode_to_vec(), &account, &cpub).is_err());
        let mut unsigned = stripped;
        unsigned.device_signature = None;
        assert!(verify_device_sign(&unsigned.encode_to_vec(), &account, &cpub).is_err());
    }

    #[test]
    fn code_wrapping_round_trips() {
        let k = [5u8; 32];
        let w = wrap_code_ephemeral(&k, "ABCD1234");
        assert_eq!(w.len(), 80);
        assert_eq!(unwrap_code_ephemeral(&w, "ABCD1234").unwrap(), k);
        assert_ne!(unwrap_code_ephemeral(&w, "ABCD1235").unwrap(), k);
    }
}
