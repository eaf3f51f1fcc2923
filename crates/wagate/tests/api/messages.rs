use serde_json::Value;

use crate::dual;
use crate::support::{text, TestApp};
use wagate::store::{MediaInfo, RecordOptions};

fn ids(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["waMessageId"].as_str().unwrap().to_owned())
        .collect()
}

dual!(async fn messages_are_newest_first_with_null_end_cursor(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let chat = "6281234567890@s.whatsapp.net";
    // Two messages share a timestamp: the later-stored one comes first.
    for (id, ts) in [("a", 1_000), ("b", 3_000), ("c", 2_000), ("d", 3_000), ("e", 500)] {
        app.msg(&sid, chat, id, false, ts).await;
    }
    let uri = format!("/api/v1/sessions/{sid}/chats/{chat}/messages");
    let p1 = app.get(&format!("{uri}?limit=2")).await.json();
    assert_eq!(ids(&p1), ["d", "b"]);
    let c = p1["nextCursor"].as_str().unwrap();
    let p2 = app.get(&format!("{uri}?limit=2&cursor={c}")).await.json();
    assert_eq!(ids(&p2), ["c", "a"]);
    let c = p2["nextCursor"].as_str().unwrap();
    let p3 = app.get(&format!("{uri}?limit=2&cursor={c}")).await.json();
    assert_eq!(ids(&p3), ["e"]);
    assert!(p3["nextCursor"].is_null());
    let m = &p1["data"][0];
    assert_eq!(m["chatJid"], chat);
    assert_eq!(m["sessionId"], sid.as_str());
    assert_eq!(m["type"], "text");
    assert_eq!(m["direction"], "in");
    assert_eq!(m["fromMe"], false);
    assert_eq!(m["body"], "body of d");
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["timestamp"], 3_000);
    assert_eq!(m["hasMedia"], false);
    assert_eq!(m["edited"], false);
    assert_eq!(m["deleted"], false);
    assert!(m["createdAt"].is_i64());
    // An exact fit: nextCursor is null when nothing follows.
    let all = app.get(&format!("{uri}?limit=5")).await.json();
    assert_eq!(ids(&all).len(), 5);
    assert!(all["nextCursor"].is_null());
});

dual!(async fn message_pages_are_stable_while_messages_arrive(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let chat = "120363000000000001@g.us";
    let batch: Vec<_> = (0..30).map(|i| text(chat, &format!("old{i:02}"), i % 3 == 0, 10_000 + i)).collect();
    app.store.record_messages(&sid, &batch, RecordOptions::default()).await.unwrap();
    let uri = format!("/api/v1/sessions/{sid}/chats/{chat}/messages");
    let mut page = app.get(&format!("{uri}?limit=7")).await.json();
    let mut seen = ids(&page);
    let mut n = 0;
    while let Some(c) = page["nextCursor"].as_str().map(str::to_owned) {
        app.msg(&sid, chat, &format!("new{n}"), false, 50_000 + n).await;
        n += 1;
        page = app.get(&format!("{uri}?limit=7&cursor={c}")).await.json();
        seen.extend(ids(&page));
    }
    let expected: Vec<String> = (0..30).rev().map(|i| format!("old{i:02}")).collect();
    assert_eq!(seen, expected);
});

dual!(async fn messages_of_unknown_chat_are_404_and_bad_cursor_400(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.msg(&sid, "100@s.whatsapp.net", "a", false, 1).await;
    app.get(&format!("/api/v1/sessions/{sid}/chats/999@s.whatsapp.net/messages")).await.expect_error(404, "not_found");
    let c = wagate::domain::Cursor::new('c', vec![0, 1, 2]).encode();
    app.get(&format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net/messages?cursor={c}")).await.expect_error(400, "validation_error");
    app.get(&format!("/api/v1/sessions/{sid}/chats/100@s.whatsapp.net/messages?limit=x")).await.expect_error(400, "validation_error");
});

dual!(async fn media_mentions_and_quotes_round_trip(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let mut m = text("100-200@g.us", "img1", false, 5_000);
    m.kind = "image".into();
    m.body = Some("a caption".into());
    m.sender = Some(crate::support::jid("205227043110953@lid"));
    m.sender_name = Some("Alice".into());
    m.media = Some(MediaInfo { mimetype: Some("image/jpeg".into()), size: Some(12345), filename: None, reference: None });
    m.mentions = vec!["6281234567890@s.whatsapp.net".into()];
    m.quoted_message_id = Some("q1".into());
    app.store.record_message(&sid, m, RecordOptions::default()).await.unwrap();
    let v = app.get(&format!("/api/v1/sessions/{sid}/chats/100-200@g.us/messages")).await.json();
    let m = &v["data"][0];
    assert_eq!(m["type"], "image");
    assert_eq!(m["hasMedia"], true);
    assert_eq!(m["media"]["mimetype"], "image/jpeg");
    assert_eq!(m["media"]["size"], 12345);
    assert_eq!(m["mentions"][0], "6281234567890@s.whatsapp.net");
    assert_eq!(m["quotedMessageId"], "q1");
    assert_eq!(m["senderJid"], "205227043110953@lid");
    assert_eq!(m["senderName"], "Alice");
});

dual!(async fn one_message_by_id_or_whatsapp_id(backend) {
    use axum::http::Method;
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let a = app.msg(&sid, "100@s.whatsapp.net", "W1", false, 1_000).await;
    app.msg(&sid, "100@s.whatsapp.net", "DUP", false, 1_100).await;
    app.msg(&sid, "200@s.whatsapp.net", "DUP", false, 1_200).await;
    let by_id = app.get(&format!("/api/v1/sessions/{sid}/messages/{}", a.id)).await;
    by_id.expect(200);
    let by_wa = app.get(&format!("/api/v1/sessions/{sid}/messages/W1")).await;
    by_wa.expect(200);
    assert_eq!(by_id.json(), by_wa.json());
    assert_eq!(by_wa.json()["chatJid"], "100@s.whatsapp.net");
    app.get(&format!("/api/v1/sessions/{sid}/messages/NOPE")).await.expect_error(404, "not_found");
    app.get(&format!("/api/v1/sessions/{sid}/messages/99999999")).await.expect_error(404, "not_found");
    app.get(&format!("/api/v1/sessions/{sid}/messages/DUP")).await.expect_error(409, "conflict");
    app.get(&format!("/api/v1/sessions/{sid}/messages/a%20b")).await.expect_error(400, "validation_error");
    // Another organization's caller finds nothing, even with the right ids.
    let other = app.key("org-b", "read").await;
    app.call(Method::GET, &format!("/api/v1/sessions/{sid}/messages/{}", a.id), Some(&other), None)
        .await
        .expect_error(404, "not_found");
});
