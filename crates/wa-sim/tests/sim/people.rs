//! Simulated people: driven over the control API, with their own identity
//! and Signal keys, talking to real whatsapp-rust clients.

use crate::common::*;
use serde_json::json;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore::types::presence::ChatPresence;
use whatsapp_rust::Jid;

const ALICE: &str = "15554000001";
const PAT: &str = "15554000099";

/// A person is created with a stable LID and is in the directory like any
/// account; bad input is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_is_created_and_listed() {
    let sim = sim().await;
    let (jid, lid) = person(&sim, PAT, "Pat").await;
    assert_eq!(jid, format!("{PAT}@s.whatsapp.net"));
    assert!(lid.ends_with("@lid"));
    let again = post(
        &sim,
        "/control/people",
        json!({"phone": PAT, "name": "Pat"}),
    )
    .await;
    assert_eq!(again.1["lid"], lid, "stable LID");
    let dir = get(&sim, "/control/directory").await;
    assert!(dir.to_string().contains(PAT));
    let (status, _) = post(
        &sim,
        "/control/people",
        json!({"phone": "+12", "name": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get_status(&sim, "/control/people/15554000098/received").await;
    assert_eq!(status, 404);
}

/// Person → linked device: the client decrypts the text (with the person's
/// push name and LID); the person gets the delivery and read receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_texts_a_linked_device_and_sees_receipts() {
    let sim = sim().await;
    let (_, pat_lid) = person(&sim, PAT, "Pat").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;

    let id = person_send(&sim, PAT, json!({"to": ALICE, "text": "hi from pat"})).await;
    let m = wait_text(&alice, "hi from pat").await;
    assert_eq!(m.info.id, id);
    assert_eq!(m.info.source.sender.user, PAT);
    assert_eq!(m.info.push_name, "Pat");
    assert_eq!(
        m.info
            .source
            .sender_alt
            .as_ref()
            .map(|j| format!("{}@lid", j.user)),
        Some(pat_lid)
    );
    wait_json(
        &sim,
        &format!("/control/people/{PAT}/receipts"),
        "delivery receipt",
        |v| {
            v.as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == id.as_str() && r["type"] == "delivery")
        },
    )
    .await;
    alice
        .client
        .mark_as_read(&Jid::pn(PAT), None, &[id.as_str()])
        .await
        .unwrap();
    let r = wait_json(
        &sim,
        &format!("/control/people/{PAT}/receipts"),
        "read receipt",
        |v| {
            v.as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == id.as_str() && r["type"] == "read")
        },
    )
    .await;
    assert!(
        r.to_string().contains(ALICE),
        "receipt names the reader: {r}"
    );
    alice.shutdown().await;
}

/// Linked device → person: the person decrypts it; its read receipt and
/// chat state reach the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_texts_a_person_who_reads_and_types() {
    let sim = sim().await;
    person(&sim, PAT, "Pat").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let sent = alice
        .client
        .send_text(Jid::pn(PAT), "hello pat")
        .await
        .unwrap();
    let got = person_received(&sim, PAT, "alice's text", |m| m["text"] == "hello pat").await;
    assert_eq!(got["id"], sent.message_id.as_str());
    assert_eq!(got["from"], format!("{ALICE}@s.whatsapp.net"));
    assert_eq!(got["chat"], format!("{ALICE}@s.whatsapp.net"));
    assert_eq!(got["type"], "text");
    assert_eq!(got["push_name"], "Alice");
    assert!(got["timestamp"].as_u64().unwrap() > 0);
    alice
        .events
        .wait("delivered", WAIT, |e| {
            matches!(e, Event::Receipt(r) if r.r#type == ReceiptType::Delivered && r.message_ids.contains(&sent.message_id))
        })
        .await;

    let (status, body) = post(
        &sim,
        &format!("/control/people/{PAT}/read"),
        json!({"chat": ALICE, "ids": [sent.message_id]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    alice
        .events
        .wait("read", WAIT, |e| {
            matches!(e, Event::Receipt(r) if r.r#type == ReceiptType::Read && r.message_ids.contains(&sent.message_id))
        })
        .await;

    let (status, body) = post(
        &sim,
        &format!("/control/people/{PAT}/chatstate"),
        json!({"to": ALICE, "state": "composing"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered_to"], 1);
    alice
        .events
        .wait("composing", WAIT, |e| {
            matches!(e, Event::ChatPresence(c) if c.state == ChatPresence::Composing && c.source.sender.user == PAT)
        })
        .await;
    alice.shutdown().await;
}

/// Replies, reactions, edits and revokes from a person arrive as the
/// protobufs WhatsApp uses for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_replies_reacts_edits_and_revokes() {
    use whatsapp_rust::waproto::whatsapp::message::protocol_message::Type as P;
    let sim = sim().await;
    person(&sim, PAT, "Pat").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let original = alice
        .client
        .send_text(Jid::pn(PAT), "original")
        .await
        .unwrap()
        .message_id;
    person_received(&sim, PAT, "original", |m| m["text"] == "original").await;

    person_send(
        &sim,
        PAT,
        json!({"to": ALICE, "text": "a reply", "replyTo": original}),
    )
    .await;
    let reply = wait_text(&alice, "a reply").await;
    let ctx = reply
        .message
        .extended_text_message
        .as_option()
        .and_then(|x| x.context_info.as_option())
        .expect("context info");
    assert_eq!(ctx.stanza_id.as_deref(), Some(original.as_str()));
    assert_eq!(
        ctx.participant.as_deref(),
        Some(format!("{ALICE}@s.whatsapp.net").as_str())
    );

    person_send(
        &sim,
        PAT,
        json!({"to": ALICE, "reactTo": {"id": original, "emoji": "👍"}}),
    )
    .await;
    let ev = alice
        .events
        .wait("reaction", WAIT, |e| {
            e.messages().any(|m| m.message.reaction_message.is_set())
        })
        .await;
    let r = ev
        .messages()
        .find_map(|m| m.message.reaction_message.as_option().cloned())
        .unwrap();
    assert_eq!(r.text.as_deref(), Some("👍"));
    let key = r.key.as_option().unwrap();
    assert_eq!(key.id.as_deref(), Some(original.as_str()));
    assert_eq!(key.from_me, Some(false), "alice's message, not pat's");

    let first = person_send(&sim, PAT, json!({"to": ALICE, "text": "typo"})).await;
    wait_text(&alice, "typo").await;
    person_send(
        &sim,
        PAT,
        json!({"to": ALICE, "editOf": first, "text": "fixed"}),
    )
    .await;
    let ev = alice
        .events
        .wait("edit", WAIT, |e| {
            e.messages().any(|m| {
                m.message
                    .protocol_message
                    .as_option()
                    .is_some_and(|p| p.r#type == Some(P::MESSAGE_EDIT))
            })
        })
        .await;
    let edit = ev
        .messages()
        .find_map(|m| m.message.protocol_message.as_option().cloned())
        .unwrap();
    assert_eq!(
        edit.key.as_option().unwrap().id.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        edit.edited_message
            .as_option()
            .unwrap()
            .conversation
            .as_deref(),
        Some("fixed")
    );

    person_send(&sim, PAT, json!({"to": ALICE, "revoke": first})).await;
    alice
        .events
        .wait("revoke", WAIT, |e| {
            e.messages().any(|m| {
                m.message.protocol_message.as_option().is_some_and(|p| {
                    p.r#type == Some(P::REVOKE)
                        && p.key.as_option().and_then(|k| k.id.as_deref()) == Some(first.as_str())
                })
            })
        })
        .await;
    alice.shutdown().await;
}

/// A person's image and document are uploaded encrypted to the simulator;
/// the client downloads and decrypts them byte for byte; a location arrives
/// too. The client's own media upload reaches the person, who decrypts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_both_ways_byte_for_byte() {
    use whatsapp_rust::download::MediaType;
    use whatsapp_rust::upload::UploadOptions;
    use whatsapp_rust::waproto::whatsapp as wa;
    let sim = sim().await;
    person(&sim, PAT, "Pat").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let image: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let doc = b"%PDF-1.4 pretend document\n".repeat(300);

    person_send(
        &sim,
        PAT,
        json!({"to": ALICE, "image": {"base64": b64(&image), "mimetype": "image/png", "caption": "a picture"}}),
    )
    .await;
    let ev = alice
        .events
        .wait("image", WAIT, |e| {
            e.messages().any(|m| m.message.image_message.is_set())
        })
        .await;
    let img = ev
        .messages()
        .find_map(|m| m.message.image_message.as_option().cloned())
        .unwrap();
    assert_eq!(img.caption.as_deref(), Some("a picture"));
    assert_eq!(img.mimetype.as_deref(), Some("image/png"));
    let bytes = alice.client.download(&img).await.expect("download image");
    assert_eq!(bytes, image);

    person_send(
        &sim,
        PAT,
        json!({"to": ALICE, "document": {"base64": b64(&doc), "mimetype": "application/pdf", "fileName": "a.pdf"}}),
    )
    .await;
    let ev = alice
        .events
        .wait("document", WAIT, |e| {
            e.messages().any(|m| m.message.document_message.is_set())
        })
        .await;
    let d = ev
        .messages()
        .find_map(|m| m.message.document_message.as_option().cloned())
        .unwrap();
    assert_eq!(d.file_name.as_deref(), Some("a.pdf"));
    assert_eq!(alice.client.download(&d).await.expect("download doc"), doc);

    person_send(
        &sim,
        PAT,
        json!({"to": ALICE, "location": {"latitude": 52.52, "longitude": 13.405, "name": "Berlin"}}),
    )
    .await;
    let ev = alice
        .events
        .wait("location", WAIT, |e| {
            e.messages().any(|m| m.message.location_message.is_set())
        })
        .await;
    let loc = ev
        .messages()
        .find_map(|m| m.message.location_message.as_option().cloned())
        .unwrap();
    assert_eq!(loc.degrees_latitude, Some(52.52));

    // Client → person: upload, send, the person decrypts the same bytes.
    let up = alice
        .client
        .upload(image.clone(), MediaType::Image, UploadOptions::default())
        .await
        .expect("upload");
    let msg = wa::Message {
        image_message: whatsapp_rust::waproto::buffa::MessageField::some(
            wa::message::ImageMessage {
                url: Some(up.url.clone()),
                direct_path: Some(up.direct_path.clone()),
                media_key: Some(up.media_key.to_vec()),
                file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
                file_sha256: Some(up.file_sha256.to_vec()),
                file_length: Some(up.file_length),
                mimetype: Some("image/png".into()),
                caption: Some("from alice".into()),
                ..Default::default()
            },
        ),
        ..Default::default()
    };
    alice.client.send_message(Jid::pn(PAT), msg).await.unwrap();
    let got = person_received(&sim, PAT, "alice's image", |m| m["type"] == "image").await;
    assert_eq!(got["caption"], "from alice");
    assert_eq!(got["media"]["base64"], b64(&image));
    alice.shutdown().await;
}

/// Addressing by LID: a person writes to the client's LID (the client sees
/// the sender by LID with the phone number as alternate), and the client
/// writes to the person's LID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lid_addressing_both_ways() {
    let sim = sim().await;
    let (_, pat_lid) = person(&sim, PAT, "Pat").await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let alice_lid = format!("{}@lid", sim.sim.world().directory[ALICE]);

    person_send(&sim, PAT, json!({"to": alice_lid, "text": "by lid"})).await;
    let m = wait_text(&alice, "by lid").await;
    assert_eq!(
        format!("{}@lid", m.info.source.sender.user),
        pat_lid,
        "sender by LID"
    );
    assert_eq!(
        m.info
            .source
            .sender_alt
            .as_ref()
            .map(|j| j.user.to_string()),
        Some(PAT.to_string()),
        "sender_pn carried"
    );
    // The client learned the pair from the stanza.
    let learned = alice
        .client
        .get_lid_pn_entry(&Jid::pn(PAT))
        .await
        .unwrap()
        .expect("lid-pn entry");
    assert_eq!(format!("{}@lid", learned.lid), pat_lid);

    let lid_user = pat_lid.trim_end_matches("@lid").to_string();
    alice
        .client
        .send_text(Jid::lid(lid_user), "to your lid")
        .await
        .unwrap();
    let got = person_received(&sim, PAT, "text to lid", |m| m["text"] == "to your lid").await;
    assert_eq!(got["from"], format!("{ALICE}@s.whatsapp.net"));
    alice.shutdown().await;
}
