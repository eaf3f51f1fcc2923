//! Conformance of the engine's key store: the same script of calls against the store on SQLite,
//! on PostgreSQL and against whatsapp-rust's own `InMemoryBackend` must give the same answers.

use std::sync::Arc;

use bytes::Bytes;
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::traits::*;
use wacore::store::InMemoryBackend;

use crate::dual;
use crate::support::TestApp;

fn sorted<T: std::fmt::Debug>(mut v: Vec<T>) -> String {
    let mut s: Vec<String> = v.drain(..).map(|x| format!("{x:?}")).collect();
    s.sort();
    format!("{s:?}")
}

fn entry(lid: &str, pn: &str, t: i64) -> LidPnMappingEntry {
    LidPnMappingEntry {
        lid: lid.into(),
        phone_number: pn.into(),
        created_at: t,
        updated_at: t,
        learning_source: "usync".into(),
    }
}

/// Every method group, with the edge cases the trait documents. Returns what was observed.
async fn script(b: &dyn Backend) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    macro_rules! see {
        ($e:expr) => {
            out.push(format!("{} => {:?}", stringify!($e), $e))
        };
    }
    // Identities and sessions.
    b.put_identity("111@s.whatsapp.net", [1; 32]).await.unwrap();
    b.put_identities_batch(&[
        (Arc::from("111:2@s.whatsapp.net"), [2; 32]),
        (Arc::from("222@lid"), [3; 32]),
    ])
    .await
    .unwrap();
    see!(b.load_identity("111:2@s.whatsapp.net").await.unwrap());
    b.delete_identity("222@lid").await.unwrap();
    see!(b.load_identity("222@lid").await.unwrap());
    b.put_session("333@s.whatsapp.net", b"s1").await.unwrap();
    b.put_sessions_batch(&[
        (Arc::from("333@s.whatsapp.net"), Bytes::from_static(b"s2")),
        (Arc::from("444:1@lid"), Bytes::from_static(b"s3")),
    ])
    .await
    .unwrap();
    see!(b.get_session("333@s.whatsapp.net").await.unwrap());
    see!(b.has_session("444:1@lid").await.unwrap());
    see!(b.has_signal_state_for_user("444").await.unwrap());
    see!(b.has_signal_state_for_user("111").await.unwrap());
    see!(b.has_signal_state_for_user("11").await.unwrap());
    see!(b.has_signal_state_for_user("%").await.unwrap());
    b.delete_session("444:1@lid").await.unwrap();
    see!(b.has_session("444:1@lid").await.unwrap());
    // Pre-keys: batch store, load, mark uploaded never inserts, max id.
    see!(b.get_max_prekey_id().await.unwrap());
    b.store_prekeys_batch(
        &[
            (5, Bytes::from_static(b"p5")),
            (9, Bytes::from_static(b"p9")),
        ],
        false,
    )
    .await
    .unwrap();
    b.store_prekey(7, b"p7", true).await.unwrap();
    b.remove_prekey(9).await.unwrap();
    b.mark_prekeys_uploaded(&[5, 9, 11]).await.unwrap();
    see!(b.load_prekey(9).await.unwrap());
    see!(b.load_prekey(11).await.unwrap());
    see!(b.load_prekeys_batch(&[5, 7, 9, 11]).await.unwrap());
    see!(b.get_max_prekey_id().await.unwrap());
    // Signed pre-keys and sender keys.
    b.store_signed_prekey(1, b"sp1").await.unwrap();
    b.store_signed_prekey(2, b"sp2").await.unwrap();
    b.remove_signed_prekey(1).await.unwrap();
    out.push(sorted(b.load_all_signed_prekeys().await.unwrap()));
    see!(b.load_signed_prekey(2).await.unwrap());
    b.put_sender_keys_batch(&[
        (Arc::from("g1::a"), Bytes::from_static(b"k1")),
        (Arc::from("g1::b"), Bytes::from_static(b"k2")),
    ])
    .await
    .unwrap();
    b.put_sender_key("g1::a", b"k1b").await.unwrap();
    b.delete_sender_key("g1::b").await.unwrap();
    see!((
        b.get_sender_key("g1::a").await.unwrap(),
        b.get_sender_key("g1::b").await.unwrap()
    ));
    // App state.
    see!(b.get_latest_sync_key_id().await.unwrap());
    b.set_sync_key(
        b"k-1",
        AppStateSyncKey {
            key_data: vec![1, 2],
            fingerprint: vec![3],
            timestamp: 10,
        },
    )
    .await
    .unwrap();
    b.set_sync_key(
        b"k-2",
        AppStateSyncKey {
            key_data: vec![4],
            fingerprint: vec![],
            timestamp: 20,
        },
    )
    .await
    .unwrap();
    b.set_sync_key(
        b"k-1",
        AppStateSyncKey {
            key_data: vec![9],
            fingerprint: vec![],
            timestamp: 30,
        },
    )
    .await
    .unwrap();
    see!(b.get_sync_key(b"k-1").await.unwrap());
    see!(b.get_latest_sync_key_id().await.unwrap());
    see!(b.get_version("regular").await.unwrap());
    let hs = HashState {
        version: 42,
        ..Default::default()
    };
    b.set_version("regular", hs).await.unwrap();
    see!(b.get_version("regular").await.unwrap());
    let mac = |i: u8, v: u8| AppStateMutationMAC {
        index_mac: vec![i; 32],
        value_mac: vec![v; 4],
    };
    b.put_mutation_macs("regular", 42, &[mac(1, 10), mac(2, 20), mac(3, 30)])
        .await
        .unwrap();
    b.put_mutation_macs("critical", 1, &[mac(1, 99)])
        .await
        .unwrap();
    b.delete_mutation_macs("regular", &[vec![2; 32]])
        .await
        .unwrap();
    see!(b.get_mutation_mac("regular", &[1; 32]).await.unwrap());
    see!(b.get_mutation_mac("regular", &[2; 32]).await.unwrap());
    let mut many: Vec<_> = b
        .get_mutation_macs("regular", &[[1; 32], [2; 32], [3; 32]])
        .await
        .unwrap()
        .into_iter()
        .collect();
    many.sort();
    see!(many);
    b.clear_mutation_macs("regular").await.unwrap();
    see!((
        b.get_mutation_mac("regular", &[3; 32]).await.unwrap(),
        b.get_mutation_mac("critical", &[1; 32]).await.unwrap()
    ));
    // Sender-key device tracking.
    b.set_sender_key_status("g1@g.us", &[("a:1@lid", true), ("b:2@lid", false)])
        .await
        .unwrap();
    b.set_sender_key_status("g2@g.us", &[("a:1@lid", true), ("c:3@lid", true)])
        .await
        .unwrap();
    b.set_sender_key_status("g1@g.us", &[("b:2@lid", true)])
        .await
        .unwrap();
    out.push(sorted(b.get_sender_key_devices("g1@g.us").await.unwrap()));
    b.delete_sender_key_device_rows(&["a:1@lid"]).await.unwrap();
    out.push(sorted(b.get_sender_key_devices("g2@g.us").await.unwrap()));
    b.clear_sender_key_devices("g1@g.us").await.unwrap();
    out.push(sorted(b.get_sender_key_devices("g1@g.us").await.unwrap()));
    b.clear_all_sender_key_devices().await.unwrap();
    out.push(sorted(b.get_sender_key_devices("g2@g.us").await.unwrap()));
    // LID ↔ phone mappings: a LID that moves to a new number drops the old reverse entry.
    b.put_lid_mapping(&entry("100", "621", 1)).await.unwrap();
    b.put_lid_mappings(&[entry("200", "622", 2), entry("100", "623", 3)])
        .await
        .unwrap();
    see!(b.get_pn_mapping("621").await.unwrap());
    see!(b.get_pn_mapping("623").await.unwrap().map(|e| e.lid));
    see!(b
        .get_lid_mapping("100")
        .await
        .unwrap()
        .map(|e| (e.phone_number, e.updated_at)));
    out.push(sorted(
        b.get_all_lid_mappings()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.lid, e.phone_number))
            .collect(),
    ));
    // Base keys, device lists, group metadata.
    b.save_base_key("a@lid", "m1", b"bk").await.unwrap();
    see!((
        b.has_same_base_key("a@lid", "m1", b"bk").await.unwrap(),
        b.has_same_base_key("a@lid", "m1", b"xx").await.unwrap(),
        b.has_same_base_key("a@lid", "m2", b"bk").await.unwrap()
    ));
    b.delete_base_key("a@lid", "m1").await.unwrap();
    see!(b.has_same_base_key("a@lid", "m1", b"bk").await.unwrap());
    let rec = |u: &str, n: u32| DeviceListRecord {
        user: u.into(),
        devices: vec![
            DeviceInfo::new(0, None),
            DeviceInfo::new(n, Some(n)).with_hosting(true),
        ],
        timestamp: 5,
        phash: Some("h".into()),
        raw_id: Some(7),
    };
    b.update_device_list(rec("u1", 1)).await.unwrap();
    b.update_device_lists(vec![rec("u2", 2), rec("u1", 3)])
        .await
        .unwrap();
    see!(b.get_devices("u1").await.unwrap());
    b.delete_devices("u2").await.unwrap();
    see!(b.get_devices("u2").await.unwrap());
    b.put_group_metadata("g@g.us", b"meta").await.unwrap();
    see!(b.get_group_metadata("g@g.us").await.unwrap());
    b.delete_group_metadata("g@g.us").await.unwrap();
    see!(b.get_group_metadata("g@g.us").await.unwrap());
    // Trusted-contact tokens: newer wins, touches keep the max, expiry keeps a live half.
    b.store_received_tc_token("t1", b"new", 100).await.unwrap();
    b.store_received_tc_token("t1", b"old", 50).await.unwrap();
    b.touch_tc_token_sender_timestamp("t1", 70).await.unwrap();
    b.touch_tc_token_sender_timestamp("t1", 60).await.unwrap();
    see!(b.get_tc_token("t1").await.unwrap());
    b.touch_tc_token_sender_timestamp("t2", 80).await.unwrap();
    b.put_tc_token(
        "t3",
        &TcTokenEntry {
            token: b"x".to_vec(),
            token_timestamp: 10,
            sender_timestamp: None,
        },
    )
    .await
    .unwrap();
    b.put_tc_token(
        "t4",
        &TcTokenEntry {
            token: Vec::new(),
            token_timestamp: 500,
            sender_timestamp: Some(10),
        },
    )
    .await
    .unwrap();
    out.push(sorted(b.get_all_tc_token_jids().await.unwrap()));
    see!(b.delete_expired_tc_tokens(90, 75).await.unwrap());
    out.push(sorted(b.get_all_tc_token_jids().await.unwrap()));
    b.delete_tc_token("t1").await.unwrap();
    see!(b.get_tc_token("t1").await.unwrap());
    // Sent messages: an atomic take.
    b.store_sent_message("c@s.whatsapp.net", "S1", b"payload")
        .await
        .unwrap();
    see!(b.take_sent_message("c@s.whatsapp.net", "S1").await.unwrap());
    see!(b.take_sent_message("c@s.whatsapp.net", "S1").await.unwrap());
    b.store_sent_message("c@s.whatsapp.net", "S2", b"p2")
        .await
        .unwrap();
    see!(b.delete_expired_sent_messages(0).await.unwrap());
    see!(b.delete_expired_sent_messages(i64::MAX).await.unwrap());
    // Pending inbound: idempotent writes, batch forms, expiry.
    b.store_pending_inbound("c", "s", "1", b"m1").await.unwrap();
    b.store_pending_inbound("c", "s", "1", b"m1").await.unwrap();
    b.store_pending_inbound_batch(&[
        PendingInboundRow {
            chat: "c",
            sender: "s",
            id: "2",
            message: b"m2",
        },
        PendingInboundRow {
            chat: "c",
            sender: "s",
            id: "3",
            message: b"m3",
        },
    ])
    .await
    .unwrap();
    see!(b.get_pending_inbound("c", "s", "1").await.unwrap());
    b.delete_pending_inbound_batch(&[PendingInboundKey {
        chat: "c",
        sender: "s",
        id: "2",
    }])
    .await
    .unwrap();
    b.delete_pending_inbound("c", "s", "3").await.unwrap();
    see!((
        b.get_pending_inbound("c", "s", "2").await.unwrap(),
        b.get_pending_inbound("c", "s", "3").await.unwrap()
    ));
    see!(b.delete_expired_pending_inbound(0).await.unwrap());
    see!(b.delete_expired_pending_inbound(i64::MAX).await.unwrap());
    // Message secrets: puts merge expiry (0 = never wins) and the parent time (max).
    let ms = |id: &str, secret: u8, exp: i64, ts: i64| MsgSecretEntry {
        chat: Arc::from("c@g.us"),
        sender: Arc::from("s@lid"),
        msg_id: Arc::from(id),
        secret: [secret; 32],
        expires_at: exp,
        message_ts: ts,
    };
    see!(b
        .put_msg_secrets(vec![
            ms("A", 1, 100, 10),
            ms("B", 2, 200, 0),
            ms("C", 3, 0, 5)
        ])
        .await
        .unwrap());
    see!(b
        .put_msg_secrets(vec![ms("A", 4, 150, 0), ms("B", 5, 0, 7)])
        .await
        .unwrap());
    see!(b
        .get_msg_secret_with_ts("c@g.us", "s@lid", "A")
        .await
        .unwrap());
    see!(b
        .get_msg_secret_with_ts("c@g.us", "s@lid", "B")
        .await
        .unwrap());
    see!(b.delete_expired_msg_secrets(160).await.unwrap());
    see!((
        b.get_msg_secret("c@g.us", "s@lid", "A")
            .await
            .unwrap()
            .is_some(),
        b.get_msg_secret("c@g.us", "s@lid", "B")
            .await
            .unwrap()
            .is_some(),
        b.get_msg_secret("c@g.us", "s@lid", "C")
            .await
            .unwrap()
            .is_some()
    ));
    b.put_msg_secret("c@g.us", "s@lid", "D", &[6; 32])
        .await
        .unwrap();
    see!(b
        .get_msg_secret_with_ts("c@g.us", "s@lid", "D")
        .await
        .unwrap());
    // The device.
    see!(b.exists().await.unwrap());
    see!(b.load().await.unwrap().is_none());
    see!(b.create().await.unwrap());
    see!(b.exists().await.unwrap());
    let mut d = b.load().await.unwrap().unwrap();
    d.push_name = "Gateway".into();
    b.save(&d).await.unwrap();
    let back = b.load().await.unwrap().unwrap();
    see!((
        back.push_name.clone(),
        serde_json::to_string(&back).unwrap() == serde_json::to_string(&d).unwrap()
    ));
    see!(b.create().await.unwrap());
    out
}

dual!(async fn the_key_store_answers_as_the_engines_in_memory_backend(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let expected = script(&InMemoryBackend::new()).await;
    let got = script(&app.store.key_store(&sid)).await;
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(g, e);
    }
    assert_eq!(got.len(), expected.len());
});

dual!(async fn a_sent_message_is_taken_once_and_sessions_never_share_keys(backend) {
    let app = Arc::new(TestApp::new(backend).await);
    let (a, b) = (app.session().await, app.session().await);
    let ka = app.store.key_store(&a);
    ka.store_sent_message("c@s.whatsapp.net", "X", b"payload").await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let k = ka.clone();
        tasks.push(tokio::spawn(async move { k.take_sent_message("c@s.whatsapp.net", "X").await.unwrap() }));
    }
    let mut got = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 1, "exactly one taker gets the message");

    let kb = app.store.key_store(&b);
    ka.put_identity("1@lid", [1; 32]).await.unwrap();
    kb.put_identity("1@lid", [2; 32]).await.unwrap();
    ka.create().await.unwrap();
    assert_eq!(ka.load_identity("1@lid").await.unwrap(), Some([1; 32]));
    assert_eq!(kb.load_identity("1@lid").await.unwrap(), Some([2; 32]));
    assert!(!kb.exists().await.unwrap(), "b has no device of its own");
    // Logout deletes one session's keys only; deleting a session deletes its keys.
    ka.delete_all().await.unwrap();
    assert_eq!(ka.load_identity("1@lid").await.unwrap(), None);
    assert_eq!(kb.load_identity("1@lid").await.unwrap(), Some([2; 32]));
    assert!(app.rows_of("wa_keys", &b).await > 0);
    app.delete(&format!("/api/v1/sessions/{b}")).await.expect(204);
    assert_eq!(app.rows_of("wa_keys", &b).await, 0);
});

dual!(async fn buffered_inbound_reaches_the_disk_before_any_signal_state_does(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let engine = app.store.key_store(&sid);
    let row = |id: &'static str| PendingInboundRow {
        chat: "c@s.whatsapp.net",
        sender: "p@s.whatsapp.net",
        id,
        message: b"m",
    };
    let at = |id: &'static str| PendingInboundKey {
        chat: "c@s.whatsapp.net",
        sender: "p@s.whatsapp.net",
        id,
    };
    // Committed by the hook before any Signal write: never written at all.
    engine.store_pending_inbound_batch(&[row("A")]).await.unwrap();
    assert!(engine.get_pending_inbound(at("A").chat, at("A").sender, "A").await.unwrap().is_some());
    engine.delete_pending_inbound_batch(&[at("A")]).await.unwrap();
    assert_eq!(app.rows_of("wa_keys", &sid).await, 0, "a row that was never needed is never written");
    // Not committed when the ratchet advance is written: the row is on disk first, where a
    // restarted gateway (a fresh store) finds it for the server's redelivery.
    engine.store_pending_inbound_batch(&[row("B"), row("C")]).await.unwrap();
    engine
        .put_sessions_batch(&[(Arc::from("p@s.whatsapp.net"), Bytes::from_static(b"ratchet"))])
        .await
        .unwrap();
    let after_restart = app.store.key_store(&sid);
    for id in ["B", "C"] {
        assert_eq!(
            after_restart.get_pending_inbound("c@s.whatsapp.net", "p@s.whatsapp.net", id).await.unwrap(),
            Some(b"m".to_vec()),
            "{id}"
        );
    }
    // A written row whose message is committed is gone for the engine at once and from the
    // disk with the next write (a crash before that only replays a stored message).
    engine.delete_pending_inbound_batch(&[at("B")]).await.unwrap();
    engine.delete_pending_inbound("c@s.whatsapp.net", "p@s.whatsapp.net", "C").await.unwrap();
    for id in ["B", "C"] {
        assert_eq!(engine.get_pending_inbound("c@s.whatsapp.net", "p@s.whatsapp.net", id).await.unwrap(), None, "{id}");
    }
    engine
        .put_sessions_batch(&[(Arc::from("p@s.whatsapp.net"), Bytes::from_static(b"ratchet 2"))])
        .await
        .unwrap();
    for id in ["B", "C"] {
        assert_eq!(
            after_restart.get_pending_inbound("c@s.whatsapp.net", "p@s.whatsapp.net", id).await.unwrap(),
            None,
            "{id}"
        );
    }
    assert_eq!(
        after_restart.get_session("p@s.whatsapp.net").await.unwrap().as_deref(),
        Some(&b"ratchet 2"[..])
    );
    // Every other kind of Signal write settles the buffer too.
    let mut n = 0;
    for write in 0..6 {
        n += 1;
        let id: &'static str = Box::leak(format!("W{n}").into_boxed_str());
        engine.store_pending_inbound_batch(&[row(id)]).await.unwrap();
        match write {
            0 => engine.put_identity("p@s.whatsapp.net", [1; 32]).await.unwrap(),
            1 => engine.put_session("p@s.whatsapp.net", b"s").await.unwrap(),
            2 => engine.remove_prekey(1).await.unwrap(),
            3 => engine.put_sender_key("g@g.us::p", b"k").await.unwrap(),
            4 => engine.save_base_key("p@s.whatsapp.net", "X", b"b").await.unwrap(),
            _ => engine
                .put_identities_batch(&[(Arc::from("q@lid"), [2; 32])])
                .await
                .unwrap(),
        }
        assert!(
            after_restart.get_pending_inbound("c@s.whatsapp.net", "p@s.whatsapp.net", id).await.unwrap().is_some(),
            "write {write}"
        );
    }
});
