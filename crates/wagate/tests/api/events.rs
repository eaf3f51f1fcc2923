//! The outbox feed: each visible change once, in commit order, per organization.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::Method;
use serde_json::{json, Value};

use crate::dual;
use crate::support::{jid, text, Backend, TestApp};
use wagate::store::{MessageStatus, RecordOptions};

fn kinds(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

dual!(async fn each_change_is_one_event_in_order(backend) {
    let app = TestApp::new(backend).await;
    let ev = app.key("org-a", "events").await;
    let feed = |q: String| {
        let ev = ev.clone();
        let app = &app;
        async move {
            let r = app.call(Method::GET, &format!("/api/v1/events{q}"), Some(&ev), None).await;
            r.expect(200);
            r.json()
        }
    };
    let sid = app.session().await;
    let start = feed(String::new()).await;
    let after = start["next"].as_i64().unwrap();
    assert_eq!(kinds(&start).last().unwrap(), "session.created");

    let chat = "6281230000001@s.whatsapp.net";
    app.msg(&sid, chat, "m1", false, 1_000).await;
    app.msg(&sid, chat, "m1", false, 1_000).await; // redelivered: no event
    let mut own = text(chat, "m2", true, 2_000);
    own.status = MessageStatus::Sent;
    app.store.record_message(&sid, own, RecordOptions::default()).await.unwrap();
    app.store.update_message_status(&sid, &jid(chat), &["m2".into()], MessageStatus::Read, None).await.unwrap();
    app.store.update_message_status(&sid, &jid(chat), &["m2".into()], MessageStatus::Delivered, None).await.unwrap(); // no change
    let base = format!("/api/v1/sessions/{sid}/chats/{chat}");
    app.patch(&base, json!({"pinned": true})).await.expect(200);
    app.post(&format!("{base}/read"), json!(null)).await.expect(200);
    app.post(&format!("{base}/read"), json!(null)).await.expect(200); // already read: no event
    app.delete(&base).await.expect(204);

    let page = feed(format!("?after={after}")).await;
    assert_eq!(kinds(&page), ["chat.update", "contact.update", "message", "message.from_me", "message.status", "chat.update", "chat.update", "chat.deleted"]);
    let data = page["data"].as_array().unwrap();
    let seqs: Vec<i64> = data.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "increasing: {seqs:?}");
    assert_eq!(page["next"], json!(seqs.last().unwrap()));
    assert_eq!(page["gap"], false);
    let m1 = &data[2];
    assert_eq!((m1["schema"].as_str(), m1["session"].as_str(), m1["organization"].as_str()), (Some("v1"), Some(sid.as_str()), Some("org-a")));
    assert_eq!(m1["payload"]["waMessageId"], "m1");
    assert_eq!(m1["payload"]["direction"], "in");
    assert_eq!(data[4]["payload"]["status"], "read");
    assert_eq!(data[5]["payload"]["pinned"], true);
    assert_eq!(data[6]["payload"]["unreadCount"], 0);
    let ids: BTreeSet<&str> = data.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), data.len(), "event ids are unique");

    // Paging with `next`, and the filters.
    let p1 = feed(format!("?after={after}&limit=3")).await;
    assert_eq!(kinds(&p1).len(), 3);
    let p2 = feed(format!("?after={}&limit=100", p1["next"])).await;
    assert_eq!(kinds(&p2).len(), 5);
    assert_eq!(kinds(&feed(format!("?after={after}&event=message,message.from_me")).await), ["message", "message.from_me"]);
    let other = app.session().await;
    assert_eq!(kinds(&feed(format!("?session={other}")).await), ["session.created"]);
    let empty = feed(format!("?after={}", page["next"].as_i64().unwrap() + 1000)).await;
    assert_eq!((empty["data"].clone(), empty["next"].as_i64()), (json!([]), Some(page["next"].as_i64().unwrap() + 1000)));

    // Other organizations see nothing of it; without `events` the feed is closed.
    let theirs = app.key("org-b", "events").await;
    let r = app.call(Method::GET, "/api/v1/events", Some(&theirs), None).await.json();
    assert!(kinds(&r).iter().all(|k| k.starts_with("api_key")), "{r}");
    let reader = app.key("org-a", "read").await;
    app.call(Method::GET, "/api/v1/events", Some(&reader), None).await.expect_error(403, "forbidden");
    for bad in ["after=-1", "after=x", "limit=ten", "event=nope", "session=123"] {
        app.call(Method::GET, &format!("/api/v1/events?{bad}"), Some(&ev), None).await.expect_error(400, "validation_error");
    }

    // Retention: a consumer behind the sweep is told it missed events.
    app.store.sweep_events(wagate::domain::now_ms() + 1).await.unwrap();
    let behind = feed(format!("?after={after}")).await;
    assert_eq!((behind["data"].clone(), behind["gap"].clone()), (json!([]), json!(true)));
});

/// Concurrent writers on PostgreSQL commit in any order; a reader polling the feed must still
/// see every event exactly once (sequence numbers become visible in increasing order).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_polling_reader_misses_nothing_under_concurrent_writers() {
    let app = Arc::new(TestApp::new(Backend::Postgres).await);
    let ev = app.key("org-a", "events").await;
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(app.session().await);
    }
    let start = app
        .call(Method::GET, "/api/v1/events?limit=1000", Some(&ev), None)
        .await
        .json()["next"]
        .as_i64()
        .unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for sid in sessions.clone() {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                app.msg(
                    &sid,
                    &format!("62812000{:04}@s.whatsapp.net", i % 5),
                    &format!("x{i}"),
                    false,
                    i,
                )
                .await;
            }
        }));
    }
    let reader = {
        let (app, ev, done) = (app.clone(), ev.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = start;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = app
                    .call(
                        Method::GET,
                        &format!("/api/v1/events?after={after}&limit=50"),
                        Some(&ev),
                        None,
                    )
                    .await
                    .json();
                for e in page["data"].as_array().unwrap() {
                    seen.push(e["seq"].as_i64().unwrap());
                }
                after = page["next"].as_i64().unwrap();
                if finished && page["data"].as_array().unwrap().is_empty() {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let all = app
        .call(
            Method::GET,
            &format!("/api/v1/events?after={start}&limit=1000"),
            Some(&ev),
            None,
        )
        .await
        .json();
    let all: Vec<i64> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seen, all,
        "the polling reader saw every event once, in order"
    );
    assert!(
        all.len() >= 6 * 40,
        "one message event per message at least: {}",
        all.len()
    );
}

dual!(async fn pairing_qr_rotations_and_codes_are_events(backend) {
    let app = TestApp::new(backend).await;
    let sid = app.session().await;
    let s: wagate::domain::SessionId = sid.parse().unwrap();
    app.store.record_qr(&s, "2@first", 1000).await.unwrap();
    app.store.record_qr(&s, "2@second", 2000).await.unwrap();
    app.store.record_pairing_code(&s, "ABCD1234").await.unwrap();
    let ev = app.key("org-a", "events").await;
    let r = app.call(Method::GET, "/api/v1/events?event=auth.qr,auth.code", Some(&ev), None).await;
    r.expect(200);
    let data = r.json()["data"].as_array().unwrap().clone();
    let got: Vec<(String, Value)> = data.iter().map(|e| (e["event"].as_str().unwrap().to_owned(), e["payload"].clone())).collect();
    assert_eq!(got, vec![
        ("auth.qr".to_owned(), json!({"qr": "2@first", "expiresAt": 1000})),
        ("auth.qr".to_owned(), json!({"qr": "2@second", "expiresAt": 2000})),
        ("auth.code".to_owned(), json!({"code": "ABCD1234"})),
    ]);
    assert!(data.iter().all(|e| e["session"] == sid.as_str()));
    // Another organization sees none of them.
    let other = app.key("org-b", "events").await;
    let theirs = app.call(Method::GET, "/api/v1/events?event=auth.qr", Some(&other), None).await.json();
    assert_eq!(theirs["data"], json!([]));
});
