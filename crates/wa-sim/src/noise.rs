//! Server side of the WhatsApp Noise handshake (XX, IK and XX-fallback) and
//! the encrypted frame transport that follows it.
//!
//! The client side lives in `wacore-noise`; this module plays the responder
//! with the same primitives (`NoiseHandshake`, `NoiseCipher`, framing).

use anyhow::{anyhow, bail, Context, Result};
use wacore_binary::consts::WA_CONN_HEADER;
use wacore_binary::consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, NOISE_PATTERN_XXFALLBACK};
use wacore_libsignal::protocol::{KeyPair, PublicKey};
use wacore_noise::{NoiseCipher, NoiseHandshake};
use waproto::buffa::{Message as _, MessageField};
use waproto::whatsapp::{self as wa, handshake_message::ServerHello, HandshakeMessage};

/// The simulator's long-term Noise identity: a static key and the
/// certificate chain whose leaf names it.
pub struct ServerIdentity {
    pub static_kp: KeyPair,
    pub cert_chain: Vec<u8>,
}

impl ServerIdentity {
    pub fn generate() -> Self {
        let static_kp = KeyPair::generate(&mut rand::rng());
        let pub_bytes: [u8; 32] = static_kp
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("curve25519 public key is 32 bytes");
        let cert_chain = wacore_noise::test_util::build_cert_chain_bytes(&pub_bytes);
        Self {
            static_kp,
            cert_chain,
        }
    }
}

/// Strips the connection prologue the client puts in front of its first
/// frame: an optional edge-routing pre-intro (`ED\0\1` + 3-byte length +
/// routing bytes) followed by the 4-byte `WA` header. Returns how many bytes
/// to skip, or `None` when more data is needed.
pub fn prologue_len(data: &[u8]) -> Result<Option<usize>> {
    let mut off = 0;
    if data.len() < 4 {
        return Ok(None);
    }
    if data.starts_with(b"ED\x00\x01") {
        if data.len() < 7 {
            return Ok(None);
        }
        let len = ((data[4] as usize) << 16) | ((data[5] as usize) << 8) | data[6] as usize;
        off = 7 + len;
    }
    if data.len() < off + 4 {
        return Ok(None);
    }
    if data[off..off + 2] != *b"WA" {
        bail!("connection does not start with the WA header");
    }
    Ok(Some(off + 4))
}

/// Result of reading the client's first handshake message.
pub enum Hello {
    /// XX (or an IK the server cannot decrypt, answered with XX-fallback):
    /// send `server_hello`, then feed the client finish to `finish_xx`.
    Xx {
        state: XxResponder,
        server_hello: Vec<u8>,
        /// The client tried IK with a key we could not match (XX-fallback).
        fallback: bool,
    },
    /// IK accepted: the handshake is complete after sending `server_hello`.
    Ik {
        server_hello: Vec<u8>,
        transport: Transport,
        client_static: [u8; 32],
        payload: Vec<u8>,
    },
}

pub struct XxResponder {
    noise: NoiseHandshake,
    ephemeral: KeyPair,
}

fn dh_pub(kp: &KeyPair) -> &[u8] {
    kp.public_key.public_key_bytes()
}

fn encode_server_hello(ephemeral: &[u8], r#static: Option<Vec<u8>>, payload: Vec<u8>) -> Vec<u8> {
    HandshakeMessage {
        server_hello: MessageField::some(ServerHello {
            ephemeral: Some(ephemeral.to_vec()),
            r#static,
            payload: Some(payload),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Reads the client hello and builds the server hello.
pub fn respond_hello(id: &ServerIdentity, client_hello_frame: &[u8]) -> Result<Hello> {
    let msg = HandshakeMessage::decode_from_slice(client_hello_frame)
        .context("client hello is not a HandshakeMessage")?;
    let hello = msg
        .client_hello
        .into_option()
        .ok_or_else(|| anyhow!("handshake message without client hello"))?;
    let client_eph: [u8; 32] = hello
        .ephemeral
        .as_deref()
        .ok_or_else(|| anyhow!("client hello without ephemeral"))?
        .try_into()
        .map_err(|_| anyhow!("client ephemeral is not 32 bytes"))?;

    if let (Some(enc_static), Some(enc_payload)) = (hello.r#static.as_ref(), hello.payload.as_ref())
    {
        if let Ok(done) = try_ik(id, &client_eph, enc_static, enc_payload) {
            return Ok(done);
        }
        // Could not open the IK hello (the client cached another server
        // key): answer with XX-fallback, reusing its ephemeral.
        return start_xx(id, NOISE_PATTERN_XXFALLBACK, &client_eph);
    }
    start_xx(id, NOISE_PATTERN_XX, &client_eph)
}

fn start_xx(id: &ServerIdentity, pattern: &str, client_eph: &[u8; 32]) -> Result<Hello> {
    let mut noise = NoiseHandshake::new(pattern, &WA_CONN_HEADER)?;
    noise.authenticate(client_eph);
    let ephemeral = KeyPair::generate(&mut rand::rng());
    noise.authenticate(dh_pub(&ephemeral));
    // ee
    noise.mix_shared_secret(ephemeral.private_key.serialize(), client_eph)?;
    let enc_static = noise.encrypt(dh_pub(&id.static_kp))?;
    // es (client's view): DH(client e, server s)
    noise.mix_shared_secret(id.static_kp.private_key.serialize(), client_eph)?;
    let enc_cert = noise.encrypt(&id.cert_chain)?;
    let server_hello = encode_server_hello(dh_pub(&ephemeral), Some(enc_static), enc_cert);
    Ok(Hello::Xx {
        state: XxResponder { noise, ephemeral },
        server_hello,
        fallback: pattern == NOISE_PATTERN_XXFALLBACK,
    })
}

fn try_ik(
    id: &ServerIdentity,
    client_eph: &[u8; 32],
    enc_static: &[u8],
    enc_payload: &[u8],
) -> Result<Hello> {
    let mut noise = NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER)?;
    noise.authenticate(dh_pub(&id.static_kp));
    noise.authenticate(client_eph);
    let s_priv = id.static_kp.private_key.serialize();
    noise.mix_shared_secret(s_priv, client_eph)?;
    let client_static: [u8; 32] = noise
        .decrypt(enc_static)?
        .try_into()
        .map_err(|_| anyhow!("client static is not 32 bytes"))?;
    noise.mix_shared_secret(s_priv, &client_static)?;
    let payload = noise.decrypt(enc_payload)?;

    let ephemeral = KeyPair::generate(&mut rand::rng());
    noise.authenticate(dh_pub(&ephemeral));
    let e_priv = ephemeral.private_key.serialize();
    noise.mix_shared_secret(e_priv, client_eph)?;
    noise.mix_shared_secret(e_priv, &client_static)?;
    let enc_cert = noise.encrypt(&id.cert_chain)?;
    let server_hello = encode_server_hello(dh_pub(&ephemeral), None, enc_cert);
    let (first, second) = noise.finish()?;
    Ok(Hello::Ik {
        server_hello,
        transport: Transport::new(first, second),
        client_static,
        payload,
    })
}

impl XxResponder {
    /// Reads the client finish; returns the transport, the client's static
    /// Noise key and its (decrypted) login payload.
    pub fn finish(mut self, frame: &[u8]) -> Result<(Transport, [u8; 32], Vec<u8>)> {
        let msg = HandshakeMessage::decode_from_slice(frame).context("client finish decode")?;
        let fin = msg
            .client_finish
            .into_option()
            .ok_or_else(|| anyhow!("expected client finish"))?;
        let enc_static = fin
            .r#static
            .ok_or_else(|| anyhow!("finish without static"))?;
        let enc_payload = fin
            .payload
            .ok_or_else(|| anyhow!("finish without payload"))?;
        let client_static: [u8; 32] = self
            .noise
            .decrypt(&enc_static)?
            .try_into()
            .map_err(|_| anyhow!("client static is not 32 bytes"))?;
        // se (client's view): DH(client s, server e)
        self.noise
            .mix_shared_secret(self.ephemeral.private_key.serialize(), &client_static)?;
        let payload = self.noise.decrypt(&enc_payload)?;
        let (first, second) = self.noise.finish()?;
        Ok((Transport::new(first, second), client_static, payload))
    }
}

/// Decodes the login payload the client sent in the handshake.
pub fn decode_client_payload(bytes: &[u8]) -> Result<wa::ClientPayload> {
    wa::ClientPayload::decode_from_slice(bytes).context("ClientPayload decode")
}

/// Checks that a 32-byte value is a usable curve25519 public key.
pub fn valid_public_key(bytes: &[u8]) -> bool {
    PublicKey::from_djb_public_key_bytes(bytes).is_ok()
}

/// Per-direction AES-GCM ciphers with their frame counters.
pub struct Transport {
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl Transport {
    /// `first`/`second` are the split keys in initiator order: the client
    /// writes with the first, so the server reads with it.
    fn new(first: NoiseCipher, second: NoiseCipher) -> Self {
        Self {
            read: first,
            write: second,
            read_counter: 0,
            write_counter: 0,
        }
    }

    pub fn decrypt(&mut self, frame: &[u8]) -> Result<Vec<u8>> {
        let mut buf = frame.to_vec();
        self.read
            .decrypt_in_place_with_counter(self.read_counter, &mut buf)
            .map_err(|e| anyhow!("frame decrypt failed: {e}"))?;
        self.read_counter = self.read_counter.wrapping_add(1);
        Ok(buf)
    }

    /// Encrypts `plaintext` and returns the framed bytes for the wire.
    pub fn encrypt_frame(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let ct = self
            .write
            .encrypt_with_counter(self.write_counter, plaintext)
            .map_err(|e| anyhow!("frame encrypt failed: {e}"))?;
        self.write_counter = self.write_counter.wrapping_add(1);
        wacore_noise::framing::encode_frame(&ct, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_plain_and_edge_routed() {
        assert_eq!(prologue_len(b"WA\x06\x03rest").unwrap(), Some(4));
        assert_eq!(prologue_len(b"WA").unwrap(), None);
        let mut edge = b"ED\x00\x01\x00\x00\x02xy".to_vec();
        edge.extend_from_slice(b"WA\x06\x03");
        assert_eq!(prologue_len(&edge).unwrap(), Some(13));
        assert!(prologue_len(b"GET / HTTP").is_err());
    }

    fn pub32(kp: &KeyPair) -> [u8; 32] {
        kp.public_key.public_key_bytes().try_into().unwrap()
    }

    /// Both transports agree: client->server and server->client frames open.
    fn check_transport(
        mut server: Transport,
        client_write: &NoiseCipher,
        client_read: &NoiseCipher,
    ) {
        let ct = client_write
            .encrypt_with_counter(0, b"hello server")
            .unwrap();
        assert_eq!(server.decrypt(&ct).unwrap(), b"hello server");
        let framed = server.encrypt_frame(b"hello client").unwrap();
        let mut body = framed[3..].to_vec();
        client_read
            .decrypt_in_place_with_counter(0, &mut body)
            .unwrap();
        assert_eq!(body, b"hello client");
    }

    #[test]
    fn xx_handshake_with_the_client_state_machine() {
        let id = ServerIdentity::generate();
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut client = wacore_noise::XxHandshakeState::new(
            client_static.clone(),
            b"payload".to_vec(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let hello = client.build_client_hello().unwrap();
        let Hello::Xx {
            state,
            server_hello,
            fallback: false,
        } = respond_hello(&id, &hello).unwrap()
        else {
            panic!("expected XX");
        };
        let finish = client
            .read_server_hello_and_build_client_finish(&server_hello)
            .unwrap();
        let (server, cs, payload) = state.finish(&finish).unwrap();
        assert_eq!(payload, b"payload");
        assert_eq!(cs, pub32(&client_static));
        let out = client.finish().unwrap();
        assert_eq!(out.server_cert_chain.leaf_key, pub32(&id.static_kp));
        check_transport(server, &out.write_cipher, &out.read_cipher);
    }

    #[test]
    fn ik_handshake_with_the_client_state_machine() {
        let id = ServerIdentity::generate();
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut client = wacore_noise::IkHandshakeState::new(
            client_static.clone(),
            pub32(&id.static_kp),
            b"login".to_vec(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let hello = client.build_client_hello().unwrap();
        let Hello::Ik {
            server_hello,
            transport,
            client_static: cs,
            payload,
        } = respond_hello(&id, &hello).unwrap()
        else {
            panic!("expected IK");
        };
        assert_eq!(payload, b"login");
        assert_eq!(cs, pub32(&client_static));
        let wacore_noise::IkServerHelloOutcome::Continue(out) =
            client.read_server_hello(&server_hello).unwrap()
        else {
            panic!("client fell back");
        };
        check_transport(transport, &out.write_cipher, &out.read_cipher);
    }

    /// A client that cached another server key gets XX-fallback and completes.
    #[test]
    fn ik_with_stale_server_key_falls_back() {
        let id = ServerIdentity::generate();
        let stale = ServerIdentity::generate();
        let client_static = KeyPair::generate(&mut rand::rng());
        let mut client = wacore_noise::IkHandshakeState::new(
            client_static,
            pub32(&stale.static_kp),
            b"login".to_vec(),
            &WA_CONN_HEADER,
        )
        .unwrap();
        let hello = client.build_client_hello().unwrap();
        let Hello::Xx {
            state,
            server_hello,
            fallback: true,
        } = respond_hello(&id, &hello).unwrap()
        else {
            panic!("expected fallback");
        };
        let wacore_noise::IkServerHelloOutcome::Fallback(inputs) =
            client.read_server_hello(&server_hello).unwrap()
        else {
            panic!("client should fall back");
        };
        let mut fb =
            wacore_noise::XxFallbackHandshakeState::from_ik_failure(*inputs, &WA_CONN_HEADER)
                .unwrap();
        let finish = fb.build_client_finish().unwrap();
        let (server, _, payload) = state.finish(&finish).unwrap();
        assert_eq!(payload, b"login");
        let out = fb.finish().unwrap();
        check_transport(server, &out.write_cipher, &out.read_cipher);
    }
}
