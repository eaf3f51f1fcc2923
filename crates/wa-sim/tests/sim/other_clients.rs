//! Pairing as WhatsApp accepts it from other clients: whatsmeow and Baileys
//! countersign their device identity and send it back without
//! `accountSignatureKey`. This test speaks the companion side of pairing
//! itself (Noise XX, registration payload, QR, pair-success, pair-device-sign)
//! the way those clients do.

use crate::common::*;
use base64::prelude::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::consts::WA_CONN_HEADER;
use wacore_binary::Node;
use wacore_libsignal::protocol::KeyPair;
use wacore_noise::framing::{encode_frame, FrameDecoder};
use waproto::buffa::{Message as _, MessageField};
use waproto::whatsapp as wa;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct RawCompanion {
    ws: Ws,
    decoder: FrameDecoder,
    write: wacore_noise::NoiseCipher,
    read: wacore_noise::NoiseCipher,
    wn: u32,
    rn: u32,
    noise: KeyPair,
    identity: KeyPair,
    adv_secret: [u8; 32],
}

impl RawCompanion {
    async fn frame(ws: &mut Ws, decoder: &mut FrameDecoder) -> Vec<u8> {
        loop {
            if let Some(f) = decoder.decode_frame() {
                return f.to_vec();
            }
            match tokio::time::timeout(WAIT, ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => decoder.feed(&b),
                Ok(Some(Ok(_))) => {}
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// Handshake with a registration payload, as a new companion does.
    async fn connect(url: &str) -> Self {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        let noise = KeyPair::generate(&mut rand::rng());
        let identity = KeyPair::generate(&mut rand::rng());
        let skey = KeyPair::generate(&mut rand::rng());
        let sig = identity
            .private_key
            .calculate_signature(&skey.public_key.serialize(), &mut rand::rng())
            .unwrap();
        let payload = wa::ClientPayload {
            passive: Some(false),
            device_pairing_data: MessageField::some(
                wa::client_payload::DevicePairingRegistrationData {
                    e_regid: Some(7u32.to_be_bytes().to_vec()),
                    e_keytype: Some(vec![5]),
                    e_ident: Some(identity.public_key.public_key_bytes().to_vec()),
                    e_skey_id: Some(vec![0, 0, 1]),
                    e_skey_val: Some(skey.public_key.public_key_bytes().to_vec()),
                    e_skey_sig: Some(sig.to_vec()),
                    build_hash: Some(vec![0; 16]),
                    device_props: Some(vec![]),
                },
            ),
            ..Default::default()
        }
        .encode_to_vec();
        let mut hs =
            wacore_noise::XxHandshakeState::new(noise.clone(), payload, &WA_CONN_HEADER).unwrap();
        let hello = hs.build_client_hello().unwrap();
        ws.send(Message::Binary(
            encode_frame(&hello, Some(&WA_CONN_HEADER)).unwrap().into(),
        ))
        .await
        .unwrap();
        let mut decoder = FrameDecoder::new();
        let server_hello = Self::frame(&mut ws, &mut decoder).await;
        let finish = hs
            .read_server_hello_and_build_client_finish(&server_hello)
            .unwrap();
        ws.send(Message::Binary(encode_frame(&finish, None).unwrap().into()))
            .await
            .unwrap();
        let out = hs.finish().unwrap();
        RawCompanion {
            ws,
            decoder,
            write: out.write_cipher,
            read: out.read_cipher,
            wn: 0,
            rn: 0,
            noise,
            identity,
            adv_secret: rand::random(),
        }
    }

    async fn recv(&mut self) -> Node {
        let mut body = Self::frame(&mut self.ws, &mut self.decoder).await;
        self.read
            .decrypt_in_place_with_counter(self.rn, &mut body)
            .unwrap();
        self.rn += 1;
        let unpacked = wacore_binary::util::unpack(&body).unwrap();
        wacore_binary::marshal::unmarshal_ref(&unpacked)
            .unwrap()
            .to_owned()
    }

    async fn send(&mut self, node: &Node) {
        let plain = wacore_binary::marshal(node).unwrap();
        let ct = self.write.encrypt_with_counter(self.wn, &plain).unwrap();
        self.wn += 1;
        self.ws
            .send(Message::Binary(encode_frame(&ct, None).unwrap().into()))
            .await
            .unwrap();
    }

    fn qr(&self, pairing_ref: &str) -> String {
        format!(
            "{pairing_ref},{},{},{}",
            BASE64_STANDARD.encode(self.noise.public_key.public_key_bytes()),
            BASE64_STANDARD.encode(self.identity.public_key.public_key_bytes()),
            BASE64_STANDARD.encode(self.adv_secret)
        )
    }
}

fn attr(n: &Node, k: &str) -> Option<String> {
    n.attrs.get(k).map(|v| v.as_str().into_owned())
}

/// Pairs a raw companion; `tamper` decides what it does to its answer.
/// Returns the stream error code the server answered with.
async fn pair_raw(
    sim: &wa_sim::Running,
    phone: &str,
    tamper: fn(&mut wa::ADVSignedDeviceIdentity),
) -> String {
    let mut c = RawCompanion::connect(&sim.ws_url()).await;
    let pair_device = c.recv().await;
    let first_ref = pair_device
        .get_optional_child("pair-device")
        .and_then(|p| p.get_optional_child("ref"))
        .and_then(|r| match &r.content {
            Some(wacore_binary::NodeContent::Bytes(b)) => String::from_utf8(b.clone()).ok(),
            _ => None,
        })
        .expect("a QR ref");
    let (status, body) = post(
        sim,
        "/control/scan",
        serde_json::json!({"qr": c.qr(&first_ref), "phone": phone, "name": "Meow"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let success = c.recv().await;
    let iq_id = attr(&success, "id").unwrap();
    let ps = success
        .get_optional_child("pair-success")
        .expect("pair-success");
    let container = match &ps.get_optional_child("device-identity").unwrap().content {
        Some(wacore_binary::NodeContent::Bytes(b)) => b.clone(),
        _ => panic!("no identity"),
    };
    let container = wa::ADVSignedDeviceIdentityHMAC::decode_from_slice(&container).unwrap();
    let mut signed =
        wa::ADVSignedDeviceIdentity::decode_from_slice(container.details.as_deref().unwrap())
            .unwrap();
    let details = signed.details.clone().unwrap();
    let account_key = signed.account_signature_key.clone().unwrap();
    let mut msg = vec![6u8, 1];
    msg.extend_from_slice(&details);
    msg.extend_from_slice(c.identity.public_key.public_key_bytes());
    msg.extend_from_slice(&account_key);
    let sig = c
        .identity
        .private_key
        .calculate_signature(&msg, &mut rand::rng())
        .unwrap();
    signed.device_signature = Some(sig.to_vec());
    // What whatsmeow and Baileys do: drop the account key before sending.
    signed.account_signature_key = None;
    tamper(&mut signed);
    let key_index = wa::ADVDeviceIdentity::decode_from_slice(&details)
        .unwrap()
        .key_index
        .unwrap_or(0);
    let answer = NodeBuilder::new("iq")
        .attr("to", "s.whatsapp.net")
        .attr("type", "result")
        .attr("id", iq_id)
        .children([NodeBuilder::new("pair-device-sign")
            .children([NodeBuilder::new("device-identity")
                .attr("key-index", key_index.to_string())
                .bytes(signed.encode_to_vec())
                .build()])
            .build()])
        .build();
    c.send(&answer).await;
    loop {
        let n = c.recv().await;
        if n.tag == "stream:error" {
            return attr(&n, "code").unwrap_or_default();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_without_account_key_is_accepted() {
    let sim = sim().await;
    let code = pair_raw(&sim, "15558000001", |_| {}).await;
    assert_eq!(code, "515", "paired: the server restarts the stream");
    let accounts = get(&sim, "/control/accounts").await;
    assert_eq!(
        accounts["accounts"][0]["devices"].as_array().unwrap().len(),
        1,
        "{accounts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_device_signature_is_answered_with_an_error() {
    let sim = sim().await;
    let code = pair_raw(&sim, "15558000002", |s| {
        let mut sig = s.device_signature.clone().unwrap();
        sig[0] ^= 1;
        s.device_signature = Some(sig);
    })
    .await;
    assert_eq!(code, "401", "refused, not silence");
    let accounts = get(&sim, "/control/accounts").await;
    assert!(
        accounts["accounts"][0]["devices"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{accounts}"
    );
}
