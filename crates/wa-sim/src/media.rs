//! Media on loopback: the `w:m` media-connection answer names the
//! simulator itself as upload and download host; clients upload encrypted
//! blobs to `POST /mms/{type}/{token}` and download them from
//! `GET /v/...`. Simulated people encrypt their own media the way clients
//! do (HKDF-expanded media key, AES-256-CBC, truncated HMAC-SHA256).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::prelude::*;
use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;
use waproto::whatsapp::message as wm;

use crate::people::MediaBody;
use crate::state::Sim;

/// The `info` string of a media type's key expansion.
pub fn app_info(kind: &str) -> &'static str {
    match kind {
        "image" | "sticker" => "WhatsApp Image Keys",
        "video" => "WhatsApp Video Keys",
        "audio" | "ptt" => "WhatsApp Audio Keys",
        "history" => "WhatsApp History Keys",
        "app-state" | "md-app-state" => "WhatsApp App State Keys",
        _ => "WhatsApp Document Keys",
    }
}

/// `(iv, cipher key, mac key)` from a 32-byte media key.
fn expand(media_key: &[u8], kind: &str) -> ([u8; 16], [u8; 32], [u8; 32]) {
    let mut out = [0u8; 112];
    hkdf::Hkdf::<Sha256>::new(None, media_key)
        .expand(app_info(kind).as_bytes(), &mut out)
        .expect("112 bytes is a valid HKDF length");
    let mut iv = [0u8; 16];
    let mut ck = [0u8; 32];
    let mut mk = [0u8; 32];
    iv.copy_from_slice(&out[..16]);
    ck.copy_from_slice(&out[16..48]);
    mk.copy_from_slice(&out[48..80]);
    (iv, ck, mk)
}

/// An encrypted blob: what is uploaded, and what the message carries.
pub struct Encrypted {
    pub media_key: Vec<u8>,
    pub blob: Vec<u8>,
    pub file_sha256: Vec<u8>,
    pub file_enc_sha256: Vec<u8>,
}

pub fn encrypt(plain: &[u8], kind: &str) -> Encrypted {
    use rand::RngExt;
    let mut media_key = vec![0u8; 32];
    rand::rng().fill(&mut media_key[..]);
    let (iv, ck, mk) = expand(&media_key, kind);
    let mut blob = cbc::Encryptor::<aes::Aes256>::new((&ck).into(), (&iv).into())
        .encrypt_padded_vec::<Pkcs7>(plain);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&mk).expect("any key length");
    mac.update(&iv);
    mac.update(&blob);
    blob.extend_from_slice(&mac.finalize().into_bytes()[..10]);
    Encrypted {
        media_key,
        file_sha256: Sha256::digest(plain).to_vec(),
        file_enc_sha256: Sha256::digest(&blob).to_vec(),
        blob,
    }
}

/// Decrypts a blob (checks the MAC).
pub fn decrypt(blob: &[u8], media_key: &[u8], kind: &str) -> anyhow::Result<Vec<u8>> {
    if blob.len() < 10 {
        anyhow::bail!("blob too short");
    }
    let (iv, ck, mk) = expand(media_key, kind);
    let (ct, tag) = blob.split_at(blob.len() - 10);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&mk).expect("any key length");
    mac.update(&iv);
    mac.update(ct);
    if mac.finalize().into_bytes()[..10] != *tag {
        anyhow::bail!("media MAC mismatch");
    }
    cbc::Decryptor::<aes::Aes256>::new((&ck).into(), (&iv).into())
        .decrypt_padded_vec::<Pkcs7>(ct)
        .map_err(|_| anyhow::anyhow!("bad padding"))
}

/// Stores a blob; returns `(url, direct_path)`.
pub fn store(sim: &Sim, blob: Vec<u8>) -> (String, String) {
    let hash = hex::encode(&Sha256::digest(&blob)[..16]);
    let direct_path = format!("/v/t62.7118-24/{hash}.enc");
    let mut w = sim.world();
    let url = format!("https://{}{direct_path}", w.media_host);
    w.media.insert(direct_path.clone(), blob);
    (url, direct_path)
}

/// The `w:m` `<media_conn>` answer: the simulator is the only host.
pub fn media_conn(sim: &Sim, id: &str) -> Node {
    let host = sim.world().media_host.clone();
    crate::nodes::iq_result(
        id,
        vec![NodeBuilder::new("media_conn")
            .attr("auth", "wa-sim")
            .attr("ttl", "3600")
            .attr("auth_ttl", "21600")
            .attr("max_buckets", "12")
            .children([NodeBuilder::new("host")
                .attr("hostname", host)
                .attr("type", "primary")
                .build()])
            .build()],
    )
}

/// `POST /mms/{type}/{token}`: a client's encrypted upload.
pub async fn upload(
    State(sim): State<Sim>,
    Path((_kind, _token)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (url, direct_path) = store(&sim, body.to_vec());
    axum::Json(json!({"url": url, "direct_path": direct_path})).into_response()
}

/// `GET /v/...`: a stored blob.
pub async fn download(State(sim): State<Sim>, Path(rest): Path<String>) -> Response {
    let key = format!("/v/{rest}");
    match sim.world().media.get(&key) {
        Some(b) => (StatusCode::OK, b.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn decode_body(body: &MediaBody) -> Result<Vec<u8>, String> {
    BASE64_STANDARD
        .decode(body.base64.trim())
        .map_err(|e| format!("base64: {e}"))
}

pub fn image_message(sim: &Sim, body: &MediaBody) -> Result<wm::ImageMessage, String> {
    let plain = decode_body(body)?;
    let enc = encrypt(&plain, "image");
    let len = plain.len() as u64;
    let (url, direct_path) = store(sim, enc.blob);
    Ok(wm::ImageMessage {
        url: Some(url),
        direct_path: Some(direct_path),
        mimetype: Some(body.mimetype.clone().unwrap_or_else(|| "image/jpeg".into())),
        caption: body.caption.clone(),
        file_sha256: Some(enc.file_sha256),
        file_enc_sha256: Some(enc.file_enc_sha256),
        media_key: Some(enc.media_key),
        file_length: Some(len),
        media_key_timestamp: Some(crate::nodes::now_secs() as i64),
        ..Default::default()
    })
}

pub fn document_message(sim: &Sim, body: &MediaBody) -> Result<wm::DocumentMessage, String> {
    let plain = decode_body(body)?;
    let enc = encrypt(&plain, "document");
    let len = plain.len() as u64;
    let (url, direct_path) = store(sim, enc.blob);
    Ok(wm::DocumentMessage {
        url: Some(url),
        direct_path: Some(direct_path),
        mimetype: Some(
            body.mimetype
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        ),
        caption: body.caption.clone(),
        file_name: Some(body.file_name.clone().unwrap_or_else(|| "file".into())),
        file_sha256: Some(enc.file_sha256),
        file_enc_sha256: Some(enc.file_enc_sha256),
        media_key: Some(enc.media_key),
        file_length: Some(len),
        media_key_timestamp: Some(crate::nodes::now_secs() as i64),
        ..Default::default()
    })
}

/// The stored blob at `direct_path`, decrypted, base64 (for people's logs).
fn fetch_plain(
    sim: &Sim,
    direct_path: Option<&str>,
    media_key: Option<&[u8]>,
    kind: &str,
) -> Option<String> {
    let blob = sim.world().media.get(direct_path?)?.clone();
    decrypt(&blob, media_key?, kind)
        .ok()
        .map(|p| BASE64_STANDARD.encode(p))
}

pub fn describe_image(sim: &Sim, x: &wm::ImageMessage) -> Value {
    json!({"directPath": x.direct_path, "fileLength": x.file_length,
        "base64": fetch_plain(sim, x.direct_path.as_deref(), x.media_key.as_deref(), "image")})
}

/// A received attachment of any kind: where it is and its decrypted bytes.
pub fn describe_file(
    sim: &Sim,
    kind: &str,
    direct_path: Option<&str>,
    media_key: Option<&[u8]>,
    file_length: Option<u64>,
) -> Value {
    json!({"directPath": direct_path, "fileLength": file_length,
        "base64": fetch_plain(sim, direct_path, media_key, kind)})
}

pub fn describe_document(sim: &Sim, x: &wm::DocumentMessage) -> Value {
    json!({"directPath": x.direct_path, "fileLength": x.file_length,
        "base64": fetch_plain(sim, x.direct_path.as_deref(), x.media_key.as_deref(), "document")})
}
