//! Sending through the durable outbox, against the scripted engine.

use axum::body::Body;
use axum::http::{header, Method, Request};
use serde_json::{json, Value};

use crate::dual;
use crate::support::{eventually, TestApp};
use wagate::engine::send::{OutgoingContent, SendError};

impl TestApp {
    async fn send(
        &self,
        sid: &str,
        query: &str,
        key: Option<&str>,
        body: Value,
    ) -> crate::support::Resp {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/v1/sessions/{sid}/messages{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.admin_key))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        self.raw(
            req.body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        )
        .await
    }
}

dual!(async fn a_text_is_stored_sent_and_tracked(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    let r = app.send(&sid, "", None, json!({"to": "+62 812-3456-7890", "type": "text", "text": "hello", "replyTo": "ABC"})).await;
    r.expect(201);
    let m = r.json();
    assert_eq!((m["direction"].as_str(), m["fromMe"].as_bool(), m["type"].as_str()), (Some("out"), Some(true), Some("text")));
    assert_eq!((m["status"].as_str(), m["body"].as_str(), m["quotedMessageId"].as_str()), (Some("sent"), Some("hello"), Some("ABC")));
    assert_eq!(m["chatJid"], "6281234567890@s.whatsapp.net");
    let sent = client.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, m["waMessageId"].as_str().unwrap());
    assert_eq!(sent[0].to.to_string(), "6281234567890@s.whatsapp.net");
    assert!(matches!(&sent[0].content, OutgoingContent::Text { body, reply_to: Some(r), link_preview: false, .. } if body == "hello" && r == "ABC"));
    // The stored copy shows it, and the feed has it and its status change.
    let list = app.get(&format!("/api/v1/sessions/{sid}/chats/6281234567890@s.whatsapp.net/messages")).await.json();
    assert_eq!(list["data"][0]["waMessageId"], m["waMessageId"]);
    let ev = app.key("org-a", "events").await;
    let feed = app.call(Method::GET, "/api/v1/events?event=message.from_me,message.status", Some(&ev), None).await.json();
    let kinds: Vec<&str> = feed["data"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message.from_me", "message.status"]);
    // Every kind is accepted and reaches the engine with its content.
    for body in [
        json!({"to": "123-456@g.us", "type": "location", "location": {"latitude": -6.2, "longitude": 106.8, "name": "Monas"}}),
        json!({"to": "777@lid", "type": "contact", "contact": {"displayName": "Ann", "vcard": "BEGIN:VCARD\nVERSION:3.0\nFN:Ann\nEND:VCARD"}}),
        json!({"to": "6281234567890", "type": "poll", "poll": {"question": "Lunch?", "options": ["yes", "no"], "selectableCount": 1}}),
        json!({"to": "6281234567890", "type": "image", "media": {"data": "iVBORw0KGgo=", "mimetype": "image/png"}, "caption": "pic"}),
        json!({"to": "6281234567890", "type": "audio", "media": {"data": "T2dnUw==", "mimetype": "audio/ogg; codecs=opus"}, "voice": true}),
    ] {
        let r = app.send(&sid, "", None, body.clone()).await;
        r.expect(201);
        assert_eq!(r.json()["type"], body["type"]);
    }
    let sent = client.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 6);
    assert!(matches!(&sent[4].content, OutgoingContent::Media { data, caption: Some(c), .. } if data == &b"\x89PNG\r\n\x1a\n".to_vec() && c == "pic"));
    assert!(matches!(&sent[5].content, OutgoingContent::Media { voice: true, .. }));
});

dual!(async fn bad_requests_are_refused_before_anything_is_stored(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.engine.connect(&sid);
    for body in [
        json!({"to": "12", "type": "text", "text": "x"}),
        json!({"to": "status@broadcast", "type": "text", "text": "x"}),
        json!({"to": "6281234567890", "type": "text"}),
        json!({"to": "6281234567890", "type": "text", "text": "  "}),
        json!({"to": "6281234567890", "type": "text", "text": "x", "mentions": ["nobody"]}),
        json!({"to": "6281234567890", "type": "image"}),
        json!({"to": "6281234567890", "type": "image", "media": {"data": "***", "mimetype": "image/png"}}),
        json!({"to": "6281234567890", "type": "location", "location": {"latitude": 91, "longitude": 0}}),
        json!({"to": "6281234567890", "type": "poll", "poll": {"question": "q", "options": ["a", "a"]}}),
        json!({"to": "6281234567890", "type": "poll", "poll": {"question": "q", "options": ["a", "b"], "selectableCount": 3}}),
        json!({"to": "6281234567890", "type": "gif"}),
        json!({"to": "6281234567890", "type": "text", "text": "x", "colour": "red"}),
    ] {
        app.send(&sid, "", None, body.clone()).await.expect_error(422, "validation_error");
    }
    app.send(&sid, "?async=maybe", None, json!({"to": "6281234567890", "type": "text", "text": "x"})).await.expect_error(400, "validation_error");
    app.send(&sid, "", Some(""), json!({"to": "6281234567890", "type": "text", "text": "x"})).await.expect_error(400, "validation_error");
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json()["data"], json!([]));
    // Another organization's session is not found; a reader cannot send.
    let other = app.session_of("org-b").await;
    app.send(&other, "", None, json!({"to": "6281234567890", "type": "text", "text": "x"})).await.expect_error(404, "not_found");
    let reader = app.key("org-a", "read").await;
    let r = app.call(Method::POST, &format!("/api/v1/sessions/{sid}/messages"), Some(&reader), Some(json!({"to": "6281234567890", "type": "text", "text": "x"}))).await;
    r.expect_error(403, "forbidden");
});

dual!(async fn without_a_client_sync_is_501_and_async_waits_for_the_connection(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let text = json!({"to": "6281234567890", "type": "text", "text": "later"});
    app.send(&sid, "", None, text.clone()).await.expect_error(501, "not_implemented");
    assert_eq!(app.get(&format!("/api/v1/sessions/{sid}/chats")).await.json()["data"], json!([]));
    let r = app.send(&sid, "?async=true", None, text).await;
    r.expect(202);
    assert_eq!(r.json()["status"], "pending");
    let client = app.engine.connect(&sid);
    eventually(10, "the queued message is sent once connected", || async { client.sent.lock().unwrap().len() == 1 }).await;
    let cid = "6281234567890@s.whatsapp.net";
    eventually(10, "its status is sent", || async {
        app.get(&format!("/api/v1/sessions/{sid}/chats/{cid}/messages")).await.json()["data"][0]["status"] == "sent"
    }).await;
    // The connection goes away: synchronous sends are refused again.
    app.engine.disconnect(&sid);
    app.send(&sid, "", None, json!({"to": "6281234567890", "type": "text", "text": "now"})).await.expect_error(501, "not_implemented");
});

dual!(async fn an_idempotency_key_answers_the_first_result_also_in_a_race(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    let text = json!({"to": "6281234567890", "type": "text", "text": "once"});
    let first = app.send(&sid, "", Some("order-17"), text.clone()).await;
    first.expect(201);
    let again = app.send(&sid, "", Some("order-17"), text.clone()).await;
    again.expect(201);
    assert_eq!(first.json()["waMessageId"], again.json()["waMessageId"]);
    assert_eq!(client.sent.lock().unwrap().len(), 1);
    app.send(&sid, "", Some("order-17"), json!({"to": "6281234567890", "type": "text", "text": "other"})).await.expect_error(422, "validation_error");
    // Eight concurrent requests with one new key: one message, one send, one answer.
    let results = futures::future::join_all((0..8).map(|_| app.send(&sid, "?async=true", Some("race-1"), text.clone()))).await;
    let ids: std::collections::BTreeSet<String> = results.iter().map(|r| {
        assert_eq!(r.status.as_u16(), 202, "{}", String::from_utf8_lossy(&r.body));
        r.json()["waMessageId"].as_str().unwrap().to_owned()
    }).collect();
    assert_eq!(ids.len(), 1);
    eventually(10, "the raced message is sent", || async { client.sent.lock().unwrap().len() == 2 }).await;
    let msgs = app.get(&format!("/api/v1/sessions/{sid}/chats/6281234567890@s.whatsapp.net/messages")).await.json();
    assert_eq!(msgs["data"].as_array().unwrap().len(), 2);
    // The same key in another session is another request.
    let sid2 = app.session().await;
    app.engine.connect(&sid2);
    app.send(&sid2, "", Some("order-17"), text).await.expect(201);
});

dual!(async fn rate_limits_protect_the_number(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.patch(&format!("/api/v1/sessions/{sid}"), json!({"ratePerMin": 2})).await.expect(200);
    let client = app.engine.connect(&sid);
    let text = json!({"to": "6281234567890", "type": "text", "text": "hi"});
    app.send(&sid, "", None, text.clone()).await.expect(201);
    app.send(&sid, "", None, text.clone()).await.expect(201);
    let r = app.send(&sid, "", None, text.clone()).await;
    r.expect_error(429, "rate_limited");
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // An async send is accepted and waits its turn.
    app.send(&sid, "?async=true", None, text).await.expect(202);
    eventually(10, "the sender holds it for the next minute", || async {
        app.store.next_send(&sid).await.unwrap().is_some_and(|j| j.not_before > wagate::domain::now_ms() + 30_000)
    }).await;
    assert_eq!(client.sent.lock().unwrap().len(), 2);
});

dual!(async fn refusals_fail_the_message_and_temporary_failures_retry(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    client.send_failures.lock().unwrap().push(SendError::Refused("not on WhatsApp".into()));
    let r = app.send(&sid, "", None, json!({"to": "6289999999999", "type": "text", "text": "x"})).await;
    r.expect(201);
    assert_eq!((r.json()["status"].as_str(), r.json()["error"].as_str()), (Some("failed"), Some("not on WhatsApp")));
    client.send_failures.lock().unwrap().push(SendError::Retry("timeout".into()));
    let r = app.send(&sid, "?async=true", None, json!({"to": "6281234567890", "type": "text", "text": "y"})).await;
    r.expect(202);
    let wa = r.json()["waMessageId"].as_str().unwrap().to_owned();
    eventually(15, "the retry goes out with the same id", || async {
        client.sent.lock().unwrap().iter().any(|m| m.id == wa)
    }).await;
});
