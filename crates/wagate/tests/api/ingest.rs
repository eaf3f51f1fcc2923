use crate::dual;
use crate::support::{jid, text, TestApp};
use wagate::store::{ChatSettings, MessageStatus, RecordOptions};

dual!(async fn same_whatsapp_id_twice_is_one_row(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let a = app.msg(&sid, "100@s.whatsapp.net", "X1", false, 1_000).await;
    let b = app.msg(&sid, "100@s.whatsapp.net", "X1", false, 1_000).await;
    assert!(a.inserted && !b.inserted);
    assert_eq!(a.id, b.id);
    // A batch repeating an id, and repeating a stored one.
    let batch = vec![text("100@s.whatsapp.net", "X2", false, 2_000), text("100@s.whatsapp.net", "X2", false, 2_000), text("100@s.whatsapp.net", "X1", false, 1_000)];
    let out = app.store.record_messages(&sid, &batch, RecordOptions::default()).await.unwrap();
    assert_eq!(out.iter().map(|r| r.inserted).collect::<Vec<_>>(), [true, false, false]);
    assert_eq!(out[0].id, out[1].id);
    assert_eq!(out[2].id, a.id);
    let v = app.get(&format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net/messages")).await.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    // The same WhatsApp id in another chat is another message.
    assert!(app.msg(&sid, "200@s.whatsapp.net", "X1", false, 1_000).await.inserted);
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net")).await.json()["unreadCount"], 2);
});

dual!(async fn status_only_moves_forward(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let chat = jid("100@s.whatsapp.net");
    let mut m = text("100@s.whatsapp.net", "S1", true, 1_000);
    m.status = MessageStatus::Pending;
    app.store.record_message(&sid, m, RecordOptions::default()).await.unwrap();
    let status = || async { app.store.get_message(&sid, &chat, "S1").await.unwrap().unwrap().status };
    let ids = vec!["S1".to_string()];
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Sent, None).await.unwrap(), 1);
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Read, None).await.unwrap(), 1);
    assert_eq!(status().await, "read");
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Delivered, None).await.unwrap(), 0);
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Failed, Some("x")).await.unwrap(), 0);
    assert_eq!(status().await, "read");
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Played, None).await.unwrap(), 1);
    assert_eq!(status().await, "played");
    // Unknown chat or id: nothing happens, nothing fails.
    assert_eq!(app.store.update_message_status(&sid, &jid("999@s.whatsapp.net"), &ids, MessageStatus::Read, None).await.unwrap(), 0);
    let from_me = app.get(&format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net")).await.json();
    assert_eq!(from_me["unreadCount"], 0, "own messages are not unread");
});

dual!(async fn upsert_chat_takes_whatsapp_state_and_history_does_not_count_unread(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let g = jid("120363000000000009@g.us");
    let c = app.store.record_chat(&sid, &ChatSettings { name: Some("Team".into()), archived: Some(true), unread_count: Some(7), muted_until: Some(Some(i64::MAX / 2)), last_message_at: Some(5_000), ..ChatSettings::new(g.clone()) }).await.unwrap().unwrap();
    assert_eq!((c.archived, c.unread_count, c.last_message_at, c.kind.as_str()), (true, 7, 5_000, "group"));
    // History sync: old messages do not bump the counter or move activity backwards.
    let history = vec![text(&g.to_string(), "h1", false, 1_000), text(&g.to_string(), "h2", false, 2_000)];
    app.store.record_messages(&sid, &history, RecordOptions { count_unread: false, emit_events: false }).await.unwrap();
    let c = app.get(&format!("/api/v1/sessions/{sid}/chats/{g}")).await.json();
    assert_eq!(c["unreadCount"], 7);
    assert_eq!(c["lastMessageAt"], 5_000);
    assert_eq!(c["name"], "Team");
    // Clearing the mute through the ingest surface.
    app.store.record_chat(&sid, &ChatSettings { muted_until: Some(None), ..ChatSettings::new(g.clone()) }).await.unwrap();
    assert!(app.get(&format!("/api/v1/sessions/{sid}/chats/{g}")).await.json()["mutedUntil"].is_null());
});

dual!(async fn concurrent_ingest_and_patches_lose_nothing(backend) {
    let app = std::sync::Arc::new(TestApp::new(backend).await);
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "seed", false, 1).await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let (app, sid) = (app.clone(), sid.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                app.msg(&sid, "100@s.whatsapp.net", &format!("w{w}-{i}"), false, 10 + i).await;
            }
        }));
    }
    // Each patch flips both flags and moves the mute; the answer of each must be exactly what
    // it wrote, and the end state exactly the last patch. An ingest that wrote back a stale
    // chat row, or a patch answered from a re-read, would show here.
    let uri = format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net");
    let far = 4_000_000_000_000_i64;
    for i in 0..12_i64 {
        let want = (i % 2 == 0, i % 2 == 1, far + i);
        let r = app.patch(&uri, serde_json::json!({"pinned": want.0, "archived": want.1, "mutedUntil": want.2})).await;
        r.expect(200);
        let v = r.json();
        assert_eq!((v["pinned"].as_bool(), v["archived"].as_bool(), v["mutedUntil"].as_i64()), (Some(want.0), Some(want.1), Some(want.2)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = app.get(&uri).await.json();
    assert_eq!(c["unreadCount"], 101, "every incoming message counted once");
    assert_eq!((c["pinned"].clone(), c["archived"].clone(), c["mutedUntil"].clone()), (serde_json::json!(false), serde_json::json!(true), serde_json::json!(far + 11)));
});
