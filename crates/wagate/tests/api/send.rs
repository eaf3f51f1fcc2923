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
        json!({"to": "6281234567890", "type": "image", "media": {"url": "https://example.com/a.png", "mimetype": "\u{1c} "}}),
        json!({"to": "6281234567890", "type": "poll", "poll": {"question": "q", "options": ["a", "\u{c}"]}}),
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
    let backlog = || async {
        let text = String::from_utf8(app.call(Method::GET, "/metrics", None, None).await.body).unwrap();
        text.lines().find_map(|l| l.strip_prefix("wagate_outbox_queued ").map(str::to_owned))
    };
    assert_eq!(backlog().await.as_deref(), Some("1"), "the backlog shows in /metrics");
    let client = app.engine.connect(&sid);
    eventually(10, "the queued message is sent once connected", || async { client.sent.lock().unwrap().len() == 1 }).await;
    eventually(10, "the backlog is empty", || async { backlog().await.as_deref() == Some("0") }).await;
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
        app.store.next_sends(&sid, 1).await.unwrap().first().is_some_and(|j| j.not_before > wagate::domain::now_ms() + 30_000)
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

dual!(async fn edit_revoke_react_and_forward_existing_messages(backend) {
    use wagate::engine::send::MessageKey;
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    let dm = "6281234567890@s.whatsapp.net";
    let call = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move { app.call(method, &path, Some(&app.admin_key), body).await }
    };
    let base = format!("/api/v1/sessions/{sid}/messages");
    let mine = app.send(&sid, "", None, json!({"to": dm, "type": "text", "text": "typo"})).await.json();
    let mid = mine["id"].as_i64().unwrap();
    let wa = mine["waMessageId"].as_str().unwrap().to_owned();
    app.msg(&sid, dm, "THEIRS", false, wagate::domain::now_ms()).await;
    app.msg(&sid, "120363000000000001@g.us", "GROUPMSG", false, wagate::domain::now_ms()).await;

    // Edit: by id; the engine gets an edit of that WhatsApp id; the stored copy changes.
    let r = call(Method::PATCH, format!("{base}/{mid}"), Some(json!({"text": "fixed"}))).await;
    r.expect(200);
    let edited = r.json();
    assert_eq!((edited["body"].as_str(), edited["edited"].as_bool(), edited["id"].as_i64()), (Some("fixed"), Some(true), Some(mid)), "{edited}");
    let last = client.sent.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.content, OutgoingContent::Edit { target: MessageKey { id: wa.clone(), from_me: true, participant: None }, text: "fixed".into() });
    assert_ne!(last.id, wa, "an edit travels under its own id");
    // Only one's own text can be edited; bad bodies are refused before anything is queued.
    call(Method::PATCH, format!("{base}/THEIRS"), Some(json!({"text": "x"}))).await.expect_error(422, "validation_error");
    call(Method::PATCH, format!("{base}/{mid}"), Some(json!({"text": "  "}))).await.expect_error(422, "validation_error");
    call(Method::PATCH, format!("{base}/{mid}"), Some(json!({"txt": "x"}))).await.expect_error(422, "validation_error");
    call(Method::PATCH, format!("{base}/NOPE"), Some(json!({"text": "x"}))).await.expect_error(404, "not_found");

    // React to their message, by WhatsApp id: a reaction message of its own.
    let r = call(Method::POST, format!("{base}/THEIRS/reaction"), Some(json!({"emoji": "👍"}))).await;
    r.expect(201);
    let reaction = r.json();
    assert_eq!((reaction["type"].as_str(), reaction["body"].as_str(), reaction["quotedMessageId"].as_str(), reaction["status"].as_str()), (Some("reaction"), Some("👍"), Some("THEIRS"), Some("sent")), "{reaction}");
    assert!(matches!(&client.sent.lock().unwrap().last().unwrap().content, OutgoingContent::Reaction { target, emoji } if target.id == "THEIRS" && !target.from_me && emoji == "👍"));
    call(Method::POST, format!("{base}/THEIRS/reaction"), Some(json!({"emoji": "a b"}))).await.expect_error(422, "validation_error");

    // Forward their text to a group: a new message, marked forwarded for the engine.
    let r = call(Method::POST, format!("{base}/THEIRS/forward"), Some(json!({"to": "120363000000000001@g.us"}))).await;
    r.expect(201);
    assert_eq!(r.json()["body"], "body of THEIRS");
    assert!(matches!(&client.sent.lock().unwrap().last().unwrap().content, OutgoingContent::Forward { content } if matches!(**content, OutgoingContent::Text { ref body, .. } if body == "body of THEIRS")));
    call(Method::POST, format!("{base}/THEIRS/forward"), Some(json!({"to": "not a number"}))).await.expect_error(422, "validation_error");

    // Revoke: their DM message is not ours to delete; a group member's is (as an admin).
    call(Method::DELETE, format!("{base}/THEIRS"), None).await.expect_error(422, "validation_error");
    let r = call(Method::DELETE, format!("{base}/GROUPMSG"), None).await;
    r.expect(200);
    assert!(matches!(&client.sent.lock().unwrap().last().unwrap().content, OutgoingContent::Revoke { target } if target.id == "GROUPMSG" && !target.from_me));
    let r = call(Method::DELETE, format!("{base}/{wa}"), None).await;
    r.expect(200);
    let gone = r.json();
    assert_eq!(gone["deleted"], true, "{gone}");
    assert!(gone.get("body").is_none_or(|b| b.is_null()), "{gone}");
    // A deleted message takes no more actions.
    call(Method::DELETE, format!("{base}/{wa}"), None).await.expect_error(409, "conflict");
    call(Method::PATCH, format!("{base}/{wa}"), Some(json!({"text": "again"}))).await.expect_error(409, "conflict");

    // The feed tells each change once.
    let ev = app.key("org-a", "events").await;
    let feed = app.call(Method::GET, "/api/v1/events?event=message.edited,message.revoked,message.reaction&limit=100", Some(&ev), None).await.json();
    let kinds: Vec<&str> = feed["data"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message.edited", "message.reaction", "message.revoked", "message.revoked"]);

    // Without a connected client: 501 synchronously; async waits and is applied after connecting.
    let other = app.send(&sid, "", None, json!({"to": dm, "type": "text", "text": "second"})).await.json();
    app.engine.disconnect(&sid);
    let path = format!("{base}/{}", other["id"]);
    call(Method::PATCH, path.clone(), Some(json!({"text": "later"}))).await.expect_error(501, "not_implemented");
    let r = call(Method::PATCH, format!("{path}?async=true"), Some(json!({"text": "later"}))).await;
    r.expect(202);
    assert_eq!(r.json()["body"], "second", "not applied before WhatsApp took it");
    app.engine.connect(&sid);
    eventually(10, "the queued edit is applied", || async {
        app.get(&path).await.json()["body"] == "later"
    })
    .await;
});

dual!(async fn a_sent_attachment_can_be_downloaded_again(backend) {
    use base64::Engine as _;
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.engine.connect(&sid);
    let pdf = b"%PDF-1.4 not really".to_vec();
    let data = base64::engine::general_purpose::STANDARD.encode(&pdf);
    let r = app.send(&sid, "", None, json!({"to": "6281234567890", "type": "document", "media": {"data": data, "mimetype": "application/pdf", "filename": "Rechnung März.pdf"}})).await;
    r.expect(201);
    let id = r.json()["id"].as_i64().unwrap();
    let got = app.get(&format!("/api/v1/sessions/{sid}/messages/{id}/media")).await;
    got.expect(200);
    assert_eq!(got.body, pdf);
    assert_eq!(got.headers["content-type"], "application/pdf");
    let cd = got.headers["content-disposition"].to_str().unwrap().to_owned();
    assert!(cd.contains("filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf"), "{cd}");
    // A text has no attachment; without a connected client the file cannot be fetched.
    let text = app.send(&sid, "", None, json!({"to": "6281234567890", "type": "text", "text": "hi"})).await.json();
    app.get(&format!("/api/v1/sessions/{sid}/messages/{}/media", text["id"])).await.expect_error(404, "not_found");
    app.engine.disconnect(&sid);
    app.get(&format!("/api/v1/sessions/{sid}/messages/{id}/media")).await.expect_error(501, "not_implemented");
});

/// A file server on loopback: `/ok.pdf` (a PDF), `/big` (over the cap), `/slow` (never ends),
/// `/moved` (a redirect).
async fn file_server() -> String {
    use axum::response::IntoResponse;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/files/ok.pdf",
            get(|| async {
                (
                    [("content-type", "application/pdf")],
                    b"%PDF-1.4 fetched".to_vec(),
                )
            }),
        )
        .route(
            "/big",
            get(|| async { ([("content-type", "image/png")], vec![0u8; 4096]) }),
        )
        .route(
            "/slow",
            get(|| async {
                let s = futures::stream::unfold(0u8, |n| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                    Some((Ok::<_, std::io::Error>(vec![n; 10]), n.wrapping_add(1)))
                });
                (
                    [("content-type", "image/png")],
                    axum::body::Body::from_stream(s),
                )
                    .into_response()
            }),
        )
        .route(
            "/moved",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "/files/ok.pdf")],
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

dual!(async fn media_from_a_url_is_downloaded_within_limits(backend) {
    let files = file_server().await;
    let app = TestApp::builder()
        .config(|c| {
            c.media_url_allow_private = true;
            c.media_url_max_bytes = 1024;
            c.media_url_timeout_secs = 1;
        })
        .build(backend)
        .await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    let r = app.send(&sid, "", None, json!({"to": "6281234567890", "type": "document", "media": {"url": format!("{files}/files/ok.pdf")}})).await;
    r.expect(201);
    let m = r.json();
    assert_eq!((m["media"]["mimetype"].as_str(), m["media"]["filename"].as_str(), m["media"]["size"].as_i64()), (Some("application/pdf"), Some("ok.pdf"), Some(16)), "{m}");
    assert!(matches!(&client.sent.lock().unwrap().last().unwrap().content, OutgoingContent::Media { data, .. } if data == b"%PDF-1.4 fetched"));
    // Too large, too slow, redirected, not http, both data and url: refused, nothing stored.
    let before = app.rows_of("messages", &sid).await;
    let bad = |url: String| json!({"to": "6281234567890", "type": "image", "media": {"url": url}});
    app.send(&sid, "", None, bad(format!("{files}/big"))).await.expect_error(413, "payload_too_large");
    app.send(&sid, "", None, bad(format!("{files}/slow"))).await.expect_error(422, "validation_error");
    app.send(&sid, "", None, bad(format!("{files}/moved"))).await.expect_error(422, "validation_error");
    app.send(&sid, "", None, bad("ftp://example.com/x.png".into())).await.expect_error(422, "validation_error");
    app.send(&sid, "", None, json!({"to": "6281234567890", "type": "image", "media": {"url": format!("{files}/big"), "data": "AAAA", "mimetype": "image/png"}})).await.expect_error(422, "validation_error");
    assert_eq!(app.rows_of("messages", &sid).await, before);
});

dual!(async fn media_urls_of_internal_addresses_are_refused_by_default(backend) {
    let files = file_server().await;
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.engine.connect(&sid);
    for url in [format!("{files}/files/ok.pdf"), "http://[::1]:9/x.pdf".into(), "http://10.1.2.3/x.pdf".into(), "http://169.254.169.254/latest".into()] {
        let e = app.send(&sid, "", None, json!({"to": "6281234567890", "type": "document", "media": {"url": url}})).await.expect_error(422, "validation_error");
        assert!(e["error"]["message"].as_str().unwrap().contains("private") || e["error"]["details"].to_string().contains("private"), "{e}");
    }
});

/// A multipart/form-data body: text fields, then optionally a file part.
fn form(fields: &[(&str, &str)], file: Option<(&str, Option<&str>, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "wagate-test-boundary-7d1f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, ctype, bytes)) = file {
        body.extend_from_slice(format!("--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n").as_bytes());
        if let Some(t) = ctype {
            body.extend_from_slice(format!("content-type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

dual!(async fn media_as_multipart_form_data(backend) {
    let app = TestApp::builder().body_limit(64 * 1024).build(backend).await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    let post = |(ctype, body): (String, Vec<u8>)| {
        let app = &app;
        let sid = sid.clone();
        async move {
            app.raw(
                Request::builder()
                    .method(Method::POST)
                    .uri(format!("/api/v1/sessions/{sid}/messages"))
                    .header(header::AUTHORIZATION, format!("Bearer {}", app.admin_key))
                    .header(header::CONTENT_TYPE, ctype)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
        }
    };
    let photo: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    let r = post(form(&[("to", "6281234567890"), ("type", "image"), ("caption", "from a form")], Some(("cat.jpg", Some("image/jpeg"), &photo)))).await;
    r.expect(201);
    let m = r.json();
    assert_eq!((m["type"].as_str(), m["body"].as_str(), m["media"]["mimetype"].as_str(), m["media"]["size"].as_i64()), (Some("image"), Some("from a form"), Some("image/jpeg"), Some(20_000)), "{m}");
    assert!(matches!(&client.sent.lock().unwrap().last().unwrap().content, OutgoingContent::Media { data, caption: Some(c), .. } if *data == photo && c == "from a form"));
    // A voice note, with the type given as a field.
    let r = post(form(&[("to", "6281234567890"), ("type", "audio"), ("voice", "true"), ("mimetype", "audio/ogg; codecs=opus")], Some(("v.ogg", None, b"OggS....")))).await;
    r.expect(201);
    assert!(matches!(&client.sent.lock().unwrap().last().unwrap().content, OutgoingContent::Media { voice: true, mimetype, .. } if mimetype == "audio/ogg; codecs=opus"));
    // Without a type anywhere the file is opaque.
    let r = post(form(&[("to", "6281234567890"), ("type", "document")], Some(("x", None, b"abc")))).await;
    r.expect(201);
    assert_eq!(r.json()["media"]["mimetype"], "application/octet-stream");
    // Refused: no file, a text type, an unknown field, too large.
    let before = app.rows_of("messages", &sid).await;
    post(form(&[("to", "6281234567890"), ("type", "image")], None)).await.expect_error(422, "validation_error");
    post(form(&[("to", "6281234567890"), ("type", "text")], Some(("x.txt", Some("text/plain"), b"abc")))).await.expect_error(422, "validation_error");
    post(form(&[("to", "6281234567890"), ("type", "image"), ("colour", "red")], Some(("x.png", Some("image/png"), b"abc")))).await.expect_error(422, "validation_error");
    post(form(&[("to", "6281234567890"), ("type", "image")], Some(("x.png", Some("image/png"), &vec![7u8; 100_000])))).await.expect_error(413, "payload_too_large");
    assert_eq!(app.rows_of("messages", &sid).await, before);
});

dual!(async fn votes_in_polls_are_checked_and_sent(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    // A vote names the poll's creator: this account, once paired.
    app.store.set_session_account(&sid.parse().unwrap(), Some("6281100000000@s.whatsapp.net"), None, Some("6281100000000"), None).await.unwrap();
    let poll = app.send(&sid, "", None, json!({"to": "6281234567890", "type": "poll", "poll": {"question": "Lunch?", "options": ["Rice", "Noodles", "Soup"], "selectableCount": 2}})).await.json();
    let text = app.send(&sid, "", None, json!({"to": "6281234567890", "type": "text", "text": "hi"})).await.json();
    let vote = |mid: String, body: Value| {
        let app = &app;
        let sid = sid.clone();
        async move { app.call(Method::POST, &format!("/api/v1/sessions/{sid}/messages/{mid}/vote"), Some(&app.admin_key), Some(body)).await }
    };
    let pid = poll["id"].to_string();
    let r = vote(pid.clone(), json!({"options": ["Soup", "Rice"]})).await;
    r.expect(200);
    assert_eq!(r.json()["waMessageId"], poll["waMessageId"]);
    let sent = client.sent.lock().unwrap().last().cloned().unwrap();
    let OutgoingContent::Poll { secret: Some(poll_secret), .. } = client.sent.lock().unwrap().iter().find(|m| m.id == poll["waMessageId"].as_str().unwrap()).unwrap().content.clone() else { panic!("the poll was sent with its secret") };
    assert!(matches!(sent.content, OutgoingContent::Vote { ref options, ref secret, ref creator, .. } if *options == ["Soup", "Rice"] && *secret == poll_secret && creator == "6281100000000@s.whatsapp.net"));
    // Withdrawing is an empty vote; wrong options, too many, twice the same, or not a poll: 422.
    vote(pid.clone(), json!({"options": []})).await.expect(200);
    vote(pid.clone(), json!({"options": ["Pizza"]})).await.expect_error(422, "validation_error");
    vote(pid.clone(), json!({"options": ["Rice", "Noodles", "Soup"]})).await.expect_error(422, "validation_error");
    vote(pid.clone(), json!({"options": ["Rice", "Rice"]})).await.expect_error(422, "validation_error");
    vote(text["id"].to_string(), json!({"options": ["Rice"]})).await.expect_error(422, "validation_error");
});

dual!(async fn a_name_of_a_loopback_address_is_refused_when_connecting(backend) {
    // `localhost` is a name, not an IP literal: the check happens in the client's resolver,
    // after DNS and before any connection (nothing listens for it to reach).
    let files = file_server().await;
    let port = files.rsplit(':').next().unwrap().to_owned();
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    app.engine.connect(&sid);
    let e = app.send(&sid, "", None, json!({"to": "6281234567890", "type": "document", "media": {"url": format!("http://localhost:{port}/files/ok.pdf")}})).await.expect_error(422, "validation_error");
    let text = e.to_string();
    assert!(text.contains("not a public address") && text.contains("media.url"), "{e}");
    assert_eq!(app.rows_of("messages", &sid).await, 0);
});

dual!(async fn a_panic_in_the_send_path_does_not_freeze_the_queue(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let client = app.engine.connect(&sid);
    client.panics.store(1, std::sync::atomic::Ordering::SeqCst);
    let text = json!({"to": "6281234567890", "type": "text", "text": "first"});
    app.send(&sid, "?async=true", None, text).await.expect(202);
    eventually(10, "the send that met the panic goes out on a fresh worker", || async {
        client.sent.lock().unwrap().len() == 1
    }).await;
    assert_eq!(client.panics.load(std::sync::atomic::Ordering::SeqCst), 0, "the panic happened");
    // The queue keeps moving: a later send goes too, synchronously.
    app.send(&sid, "", None, json!({"to": "6281234567890", "type": "text", "text": "second"})).await.expect(201);
    let sent: Vec<String> = client.sent.lock().unwrap().iter().map(|m| match &m.content {
        OutgoingContent::Text { body, .. } => body.clone(),
        _ => String::new(),
    }).collect();
    assert_eq!(sent, ["first", "second"]);
});

/// Bytes the database takes on disk (SQLite: the file and its write-ahead log; PostgreSQL: the
/// outbox table with its TOAST and indexes, after the vacuum autovacuum would run).
async fn outbox_bytes(app: &TestApp) -> u64 {
    match app.store.db() {
        wagate::store::Db::Sqlite(_) => {
            let url = &app.state.config().database_url;
            let path = url.trim_start_matches("sqlite://").to_owned();
            [path.clone(), format!("{path}-wal")]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum()
        }
        wagate::store::Db::Postgres(p) => {
            sqlx::query("VACUUM outgoing").execute(p).await.unwrap();
            let n: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('outgoing')")
                .fetch_one(p)
                .await
                .unwrap();
            n as u64
        }
    }
}

// The same at full size (100 files of 5 MiB against the release build): bench/outbox.sh.
dual!(async fn sent_attachments_leave_the_outbox_small(backend) {
    const MIB: usize = 1 << 20;
    const FILES: usize = 20;
    let app = TestApp::builder().body_limit(2 * MIB).build(backend).await;
    let sid = app.session().await;
    let before = outbox_bytes(&app).await;
    let file: Vec<u8> = (0..MIB as u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let (ctype, body) = form(&[("to", "6281234567890"), ("type", "document")], Some(("big.bin", None, &file)));
    // The sends queue while the session is offline: the outbox holds every file (base64).
    for _ in 0..FILES {
        let r = app.raw(
            Request::builder()
                .method(Method::POST)
                .uri(format!("/api/v1/sessions/{sid}/messages?async=true"))
                .header(header::AUTHORIZATION, format!("Bearer {}", app.admin_key))
                .header(header::CONTENT_TYPE, ctype.clone())
                .body(Body::from(body.clone()))
                .unwrap(),
        ).await;
        r.expect(202);
    }
    let queued = outbox_bytes(&app).await;
    assert!(queued > before + (FILES * MIB) as u64, "the queue holds the files: {before} -> {queued}");
    let client = app.engine.connect(&sid);
    client.forget_files.store(true, std::sync::atomic::Ordering::SeqCst);
    eventually(120, "all sent", || async { client.sent.lock().unwrap().len() == FILES }).await;
    eventually(30, "every job settled", || async {
        app.store.next_sends(&sid, 1).await.unwrap().is_empty()
    }).await;
    let after = outbox_bytes(&app).await;
    assert!(after <= before + 3 * MIB as u64, "sent jobs keep their payload: {before} -> {queued} -> {after} bytes");
    // The settled jobs stay (a retry by idempotency key is answered from them), without content.
    assert_eq!(app.rows_of("outgoing", &sid).await, FILES as i64);
});
