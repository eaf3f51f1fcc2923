//! 1:1 messages between two real clients: end-to-end encryption through the
//! server, server acks, delivery and read receipts, the offline queue.

use crate::common::*;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::Jid;

const ALICE: &str = "15553000001";
const BOB: &str = "15553000002";

fn receipt_for(e: &Event, id: &str, ty: ReceiptType) -> bool {
    matches!(e, Event::Receipt(r) if r.r#type == ty && r.message_ids.iter().any(|m| m == id))
}

/// Alice → Bob and back: each decrypts the other's text; the sender gets
/// the server ack with the server's timestamp, then Bob's delivery receipt
/// and, after Bob reads it, the read receipt. The sender's alternate
/// address (LID) comes with the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_both_ways_with_acks_and_receipts() {
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;

    let sent = alice
        .client
        .send_text(Jid::pn(BOB), "hello bob")
        .await
        .expect("send");
    let id = sent.message_id.clone();

    let got = wait_text(&bob, "hello bob").await;
    assert_eq!(got.info.id, id);
    assert!(!got.info.source.is_from_me);
    assert_eq!(got.info.source.sender.user, ALICE);
    assert_eq!(got.info.push_name, "Alice");
    let alice_lid = sim.sim.world().directory[ALICE].clone();
    assert_eq!(
        got.info
            .source
            .sender_alt
            .as_ref()
            .map(|j| j.user.to_string()),
        Some(alice_lid),
        "sender_lid carried on the stanza"
    );

    let ack = alice
        .events
        .wait(
            "server ack",
            WAIT,
            |e| matches!(e, Event::ServerAck(a) if a.id == id),
        )
        .await;
    match &*ack {
        Event::ServerAck(a) => {
            assert!(a.error.is_none(), "{a:?}");
            let t = a.timestamp.expect("server timestamp").timestamp();
            assert!((t - got.info.timestamp.timestamp()).abs() <= 1);
        }
        _ => unreachable!(),
    }
    alice
        .events
        .wait("delivery receipt", WAIT, |e| {
            receipt_for(e, &id, ReceiptType::Delivered)
        })
        .await;

    bob.client
        .mark_as_read(&Jid::pn(ALICE), None, &[id.as_str()])
        .await
        .expect("mark read");
    let read = alice
        .events
        .wait("read receipt", WAIT, |e| {
            receipt_for(e, &id, ReceiptType::Read)
        })
        .await;
    match &*read {
        Event::Receipt(r) => assert_eq!(r.source.sender.user, BOB),
        _ => unreachable!(),
    }

    bob.client
        .send_text(Jid::pn(ALICE), "hi alice")
        .await
        .expect("reply");
    let back = wait_text(&alice, "hi alice").await;
    assert_eq!(back.info.source.sender.user, BOB);

    alice.shutdown().await;
    bob.shutdown().await;
}

/// Messages for a device that is away wait on the server and arrive at its
/// next login, marked offline, followed by the offline count the client
/// waits for; the sender then gets the delivery receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_arrive_at_next_login() {
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    // A first message sets up the sessions while both are online.
    alice
        .client
        .send_text(Jid::pn(BOB), "before")
        .await
        .unwrap();
    wait_text(&bob, "before").await;

    let backend = bob.backend.clone();
    bob.shutdown().await;
    wait_until("bob is offline", WAIT, || conn_ids(&sim, BOB, 1).is_empty()).await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let r = alice
            .client
            .send_text(Jid::pn(BOB), format!("while away {i}"))
            .await
            .unwrap();
        ids.push(r.message_id);
    }
    wait_until("3 messages queued for bob:1", WAIT, || {
        let w = sim.sim.world();
        w.unacked.get(&(BOB.to_string(), 1)).map_or(0, |l| l.len()) >= 3
    })
    .await;

    let bob = client(&sim, backend).await;
    for i in 0..3 {
        let m = wait_text(&bob, &format!("while away {i}")).await;
        assert!(m.info.is_offline, "delivered from the offline queue");
    }
    let done = bob
        .events
        .wait("offline sync completed", WAIT, |e| {
            matches!(e, Event::OfflineSyncCompleted(_))
        })
        .await;
    match &*done {
        Event::OfflineSyncCompleted(c) => assert!(c.count >= 3, "{c:?}"),
        _ => unreachable!(),
    }
    for id in &ids {
        alice
            .events
            .wait("delivery receipt", WAIT, |e| {
                receipt_for(e, id, ReceiptType::Delivered)
            })
            .await;
    }
    wait_until("bob acknowledged everything", WAIT, || {
        sim.sim
            .world()
            .unacked
            .get(&(BOB.to_string(), 1))
            .is_none_or(|l| l.is_empty())
    })
    .await;
    alice.shutdown().await;
    bob.shutdown().await;
}

/// A device that cannot decrypt a message sends a retry receipt; the
/// server routes it to the sender's device, which sends the message again,
/// and the recipient gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_receipt_gets_the_message_resent() {
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    alice.client.send_text(Jid::pn(BOB), "clear").await.unwrap();
    wait_text(&bob, "clear").await;
    // Bob's answer completes the session: Alice's next one is a plain
    // `msg`, whose last bytes are its MAC (what the fault flips).
    bob.client.send_text(Jid::pn(ALICE), "ok").await.unwrap();
    wait_text(&alice, "ok").await;
    let (status, body) = post(
        &sim,
        "/control/fault",
        serde_json::json!({"jid": format!("{BOB}:1@s.whatsapp.net"), "kind": "corrupt_messages", "count": 1}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = alice
        .client
        .send_text(Jid::pn(BOB), "garbled then resent")
        .await
        .unwrap()
        .message_id;
    let m = wait_text(&bob, "garbled then resent").await;
    assert_eq!(m.info.id, id);
    let stats = get(&sim, "/control/stats").await;
    assert!(stats["retry_receipts"].as_u64().unwrap() >= 1, "{stats}");
    alice.shutdown().await;
    bob.shutdown().await;
}

/// An image and a document one client uploads to the simulator are
/// downloaded and decrypted by the other byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_media_reaches_the_other_client() {
    use whatsapp_rust::download::MediaType;
    use whatsapp_rust::upload::UploadOptions;
    use whatsapp_rust::waproto::buffa::MessageField;
    use whatsapp_rust::waproto::whatsapp as wa;
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    let image: Vec<u8> = (0..70_000u32).map(|i| (i * 13 % 256) as u8).collect();
    let doc: Vec<u8> = b"quarterly numbers\n".repeat(2000);

    let up = alice
        .client
        .upload(image.clone(), MediaType::Image, UploadOptions::default())
        .await
        .expect("upload image");
    let img = wa::message::ImageMessage {
        url: Some(up.url),
        direct_path: Some(up.direct_path),
        media_key: Some(up.media_key.to_vec()),
        file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
        file_sha256: Some(up.file_sha256.to_vec()),
        file_length: Some(up.file_length),
        mimetype: Some("image/png".into()),
        ..Default::default()
    };
    alice
        .client
        .send_message(
            Jid::pn(BOB),
            wa::Message {
                image_message: MessageField::some(img),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let up = alice
        .client
        .upload(doc.clone(), MediaType::Document, UploadOptions::default())
        .await
        .expect("upload document");
    let d = wa::message::DocumentMessage {
        url: Some(up.url),
        direct_path: Some(up.direct_path),
        media_key: Some(up.media_key.to_vec()),
        file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
        file_sha256: Some(up.file_sha256.to_vec()),
        file_length: Some(up.file_length),
        mimetype: Some("text/plain".into()),
        file_name: Some("numbers.txt".into()),
        ..Default::default()
    };
    alice
        .client
        .send_message(
            Jid::pn(BOB),
            wa::Message {
                document_message: MessageField::some(d),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    let ev = bob
        .events
        .wait("image", WAIT, |e| {
            e.messages().any(|m| m.message.image_message.is_set())
        })
        .await;
    let got = ev
        .messages()
        .find_map(|m| m.message.image_message.as_option().cloned())
        .unwrap();
    assert_eq!(
        bob.client.download(&got).await.expect("download image"),
        image
    );
    let ev = bob
        .events
        .wait("document", WAIT, |e| {
            e.messages().any(|m| m.message.document_message.is_set())
        })
        .await;
    let got = ev
        .messages()
        .find_map(|m| m.message.document_message.as_option().cloned())
        .unwrap();
    assert_eq!(got.file_name.as_deref(), Some("numbers.txt"));
    assert_eq!(bob.client.download(&got).await.expect("download doc"), doc);
    alice.shutdown().await;
    bob.shutdown().await;
}

/// A message reaches every device of the recipient and the sender's other
/// devices (as the sender's own message, in the chat with the recipient).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_both_sides_gets_the_message() {
    let sim = sim().await;
    let alice1 = paired_client(&sim, ALICE, "Alice").await;
    let alice2 = paired_client(&sim, ALICE, "Alice").await;
    let bob1 = paired_client(&sim, BOB, "Bob").await;
    let bob2 = paired_client(&sim, BOB, "Bob").await;
    let id = alice1
        .client
        .send_text(Jid::pn(BOB), "to all your devices")
        .await
        .unwrap()
        .message_id;
    for b in [&bob1, &bob2] {
        let m = wait_text(b, "to all your devices").await;
        assert_eq!(m.info.id, id);
        assert!(!m.info.source.is_from_me);
    }
    let mine = wait_text(&alice2, "to all your devices").await;
    assert!(mine.info.source.is_from_me, "the sender's other device");
    assert_eq!(mine.info.source.chat.user, BOB);
    // Both phones got it too (the recipient's, and the sender's own).
    for phone in [BOB, ALICE] {
        person_received(&sim, phone, "the phone's copy", |m| {
            m["text"] == "to all your devices"
        })
        .await;
    }
    for c in [alice1, alice2, bob1, bob2] {
        c.shutdown().await;
    }
}
