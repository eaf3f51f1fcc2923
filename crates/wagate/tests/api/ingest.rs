use axum::http::Method;

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
    assert_eq!(status().await, MessageStatus::Read);
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Delivered, None).await.unwrap(), 0);
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Failed, Some("x")).await.unwrap(), 0);
    assert_eq!(status().await, MessageStatus::Read);
    assert_eq!(app.store.update_message_status(&sid, &chat, &ids, MessageStatus::Played, None).await.unwrap(), 1);
    assert_eq!(status().await, MessageStatus::Played);
    // Unknown chat or id: nothing happens, nothing fails.
    assert_eq!(app.store.update_message_status(&sid, &jid("999@s.whatsapp.net"), &ids, MessageStatus::Read, None).await.unwrap(), 0);
    let from_me = app.get(&format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net")).await.json();
    assert_eq!(from_me["unreadCount"], 0, "own messages are not unread");
});

dual!(async fn receipts_of_many_sessions_at_once_each_move_their_message(backend) {
    // On SQLite these share transactions of the group-commit writer: each must still count
    // its own messages and write its own event, and a receipt may name a chat by its other
    // address (a DM stored under the phone number, acknowledged by the LID).
    let app = TestApp::new(backend).await;
    let mut sids = Vec::new();
    for i in 0..8 {
        let sid = app.session().await;
        let dm = jid(&format!("62811000000{i}@s.whatsapp.net"));
        app.store.record_chat(&sid, &ChatSettings { chat_alt: Some(jid(&format!("77{i}@lid"))), ..ChatSettings::new(dm.clone()) }).await.unwrap();
        let mut m = text(&dm.to_string(), &format!("R{i}"), true, 1_000);
        m.status = MessageStatus::Pending;
        app.store.record_message(&sid, m, RecordOptions::default()).await.unwrap();
        sids.push((sid, dm, jid(&format!("77{i}@lid"))));
    }
    let after = app.get("/api/v1/events?limit=1000").await.json()["next"].as_i64().unwrap_or(0);
    let moved = futures::future::join_all(sids.iter().enumerate().map(|(i, (sid, dm, lid))| {
        let store = app.store.clone();
        async move {
            let by = if i % 2 == 0 { dm } else { lid };
            let ids = vec![format!("R{i}")];
            let a = store.update_message_status(sid, by, &ids, MessageStatus::Delivered, None).await.unwrap();
            let b = store.update_message_status(sid, by, &ids, MessageStatus::Delivered, None).await.unwrap();
            (a, b)
        }
    }))
    .await;
    assert_eq!(moved, vec![(1, 0); 8], "each receipt moves its own message once");
    for (i, (sid, dm, _)) in sids.iter().enumerate() {
        let m = app.store.get_message(sid, dm, &format!("R{i}")).await.unwrap().unwrap();
        assert_eq!(m.status, MessageStatus::Delivered);
    }
    let v = app.get(&format!("/api/v1/events?after={after}&event=message.status&limit=100")).await.json();
    let mut seen: Vec<String> = v["data"].as_array().unwrap().iter().map(|e| e["payload"]["waMessageId"].as_str().unwrap().to_owned()).collect();
    seen.sort();
    assert_eq!(seen, (0..8).map(|i| format!("R{i}")).collect::<Vec<_>>(), "one message.status event per moved message");
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

dual!(async fn edits_revokes_and_reactions_change_the_stored_copy_once(backend) {
    use wagate::store::{ChangeKind, MediaInfo, MessageChange};
    let app = TestApp::new(backend).await;
    let ev = app.key("org-a", "events").await;
    let sid = app.session().await;
    let dm = "6281230000001@s.whatsapp.net";
    let g = "120363000000000009@g.us";
    app.msg(&sid, dm, "E1", false, 1_000).await;
    app.msg(&sid, dm, "MINE", true, 1_100).await;
    let mut img = text(dm, "R1", false, 1_200);
    img.kind = "image".into();
    img.body = Some("caption".into());
    img.media = Some(MediaInfo { mimetype: Some("image/jpeg".into()), size: Some(10), filename: None, reference: None });
    img.mentions = vec!["6281230000009@s.whatsapp.net".into()];
    app.store.record_message(&sid, img, RecordOptions::default()).await.unwrap();
    app.msg(&sid, g, "G1", true, 1_300).await;
    let after = app.call(Method::GET, "/api/v1/events?limit=1000", Some(&ev), None).await.json()["next"].as_i64().unwrap();

    let change = |chat: &str, target: &str, from_me: bool, kind: ChangeKind| MessageChange {
        chat: jid(chat),
        chat_alt: None,
        target: target.into(),
        from_me,
        kind,
    };
    let edit = |body: &str| ChangeKind::Edit { body: Some(body.into()) };
    // A reaction in the same batch as an edit of the message it reacts to.
    let mut react = text(dm, "RX", false, 1_400);
    react.kind = "reaction".into();
    react.body = Some("👍".into());
    react.quoted_message_id = Some("E1".into());
    let changes = vec![
        change(dm, "E1", false, edit("fixed")),
        change(dm, "E1", false, edit("fixed")), // repeated: no second event
        change(dm, "MINE", false, edit("not theirs to edit")),
        change(dm, "R1", false, ChangeKind::Revoke),
        change(dm, "NOPE", false, ChangeKind::Revoke), // not stored: ignored
        change("6281239999999@s.whatsapp.net", "E1", false, ChangeKind::Revoke), // unknown chat
        change(g, "G1", false, ChangeKind::Revoke), // a group admin's revoke
    ];
    app.store.record_inbound(&sid, &[react], &changes, RecordOptions::default()).await.unwrap();

    let get = |id: &'static str, _chat: &'static str| {
        let app = &app;
        let sid = sid.clone();
        async move { app.get(&format!("/api/v1/sessions/{sid}/messages/{id}")).await.json() }
    };
    let e1 = get("E1", dm).await;
    assert_eq!((e1["body"].as_str(), e1["edited"].as_bool(), e1["deleted"].as_bool()), (Some("fixed"), Some(true), Some(false)), "{e1}");
    let mine = get("MINE", dm).await;
    assert_eq!((mine["body"].as_str(), mine["edited"].as_bool()), (Some("body of MINE"), Some(false)), "{mine}");
    let r1 = get("R1", dm).await;
    assert_eq!(r1["deleted"], true, "{r1}");
    assert!(r1.get("body").is_none_or(|b| b.is_null()), "{r1}");
    assert_eq!(r1["hasMedia"], false, "{r1}");
    assert!(r1.get("mentions").is_none_or(|m| m.is_null() || m.as_array().is_some_and(|a| a.is_empty())), "{r1}");
    assert_eq!(r1["type"], "image", "the kind stays");
    assert_eq!(get("G1", g).await["deleted"], true);
    // A revoked message can no longer be edited.
    app.store.record_inbound(&sid, &[], &[change(dm, "R1", false, edit("again"))], RecordOptions::default()).await.unwrap();
    assert!(get("R1", dm).await.get("body").is_none_or(|b| b.is_null()));
    // The reaction is a message of its own, not unread; the chat counts only the 2 messages.
    let rx = get("RX", dm).await;
    assert_eq!((rx["type"].as_str(), rx["body"].as_str(), rx["quotedMessageId"].as_str()), (Some("reaction"), Some("👍"), Some("E1")));
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/chats/{dm}")).await.json()["unreadCount"], 2);

    let feed = app.call(Method::GET, &format!("/api/v1/events?after={after}&limit=1000"), Some(&ev), None).await.json();
    let got: Vec<(String, String)> = feed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"].as_str().unwrap().starts_with("message"))
        .map(|e| (e["event"].as_str().unwrap().to_owned(), e["payload"]["waMessageId"].as_str().unwrap().to_owned()))
        .collect();
    let want: Vec<(String, String)> = [("message.reaction", "RX"), ("message.edited", "E1"), ("message.revoked", "R1"), ("message.revoked", "G1")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got, want);
});

dual!(async fn concurrent_inbound_of_many_sessions_is_stored_whole_and_stays_in_its_org(backend) {
    // On SQLite concurrent callers share transactions (group commit); on PostgreSQL they run
    // side by side. Either way each caller gets its own rows, counts and events, and a job of
    // a deleted session records nothing without failing the jobs it shares a commit with.
    let app = std::sync::Arc::new(TestApp::new(backend).await);
    let a = app.session().await;
    let b = app.session_of("org-b").await;
    let gone = app.session().await;
    app.delete(&format!("/api/v1/sessions/{gone}")).await.expect(204);
    let mut tasks = Vec::new();
    for (w, sid) in [(0, &a), (1, &a), (2, &b), (3, &b), (4, &gone)] {
        let (app, sid) = (app.clone(), sid.clone());
        tasks.push(tokio::spawn(async move {
            let chat = format!("10{w}@s.whatsapp.net");
            let mut n = 0;
            for i in 0..30 {
                let m = text(&chat, &format!("W{w}-{i}"), false, 100 + i);
                let again = text(&chat, &format!("W{w}-{i}"), false, 100 + i);
                let r = app
                    .store
                    .record_inbound(&sid, &[m, again], &[], RecordOptions::default())
                    .await
                    .unwrap();
                n += r.iter().filter(|r| r.inserted).count();
            }
            n
        }));
    }
    let mut inserted = Vec::new();
    for t in tasks {
        inserted.push(t.await.unwrap());
    }
    assert_eq!(inserted, vec![30, 30, 30, 30, 0]);
    for (w, sid) in [(0, &a), (1, &a)] {
        let c = app.get(&format!("/api/v1/sessions/{sid}/chats/10{w}@s.whatsapp.net")).await.json();
        assert_eq!(c["unreadCount"], 30, "{c}");
    }
    let key_b = app.key("org-b", "read,events").await;
    for (sid, token) in [(&b, Some(key_b.as_str())), (&a, None)] {
        let url = "/api/v1/events?event=message&limit=200";
        let v = match token {
            Some(t) => app.call(Method::GET, url, Some(t), None).await.json(),
            None => app.get(url).await.json(),
        };
        let events = v["data"].as_array().unwrap();
        assert_eq!(events.len(), 60, "{v}");
        assert!(events.iter().all(|e| e["session"] == sid.as_str()), "{v}");
    }
    let c = app.get(&format!("/api/v1/sessions/{b}/chats/102@s.whatsapp.net")).await;
    assert_ne!(c.status, 200, "org-a's key never sees org-b's chat");
});
