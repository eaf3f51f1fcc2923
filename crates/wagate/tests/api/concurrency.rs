//! Ingest from many tasks at once, in any order and any number of times, ends in one exact
//! state: one contact and one direct chat per person, each message once.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::dual;
use crate::support::{jid, text, TestApp};
use wagate::store::{GroupInfo, GroupMember, PersonNames, RecordOptions};

const PEOPLE: usize = 6;
const MSGS: usize = 4;

fn lid(p: usize) -> String {
    format!("{}@lid", 900_000 + p)
}
fn phone(p: usize) -> String {
    format!("62811000{:04}@s.whatsapp.net", p)
}

/// Everything WhatsApp tells about person `p`, as separate ingest calls.
async fn by_lid(app: &TestApp, sid: &str, p: usize) {
    for i in 0..MSGS {
        let mut m = text(&lid(p), &format!("L{p}-{i}"), false, 1_000 + i as i64);
        m.sender_name = Some(format!("Person {p}"));
        app.store
            .record_message(sid, m, RecordOptions::default())
            .await
            .unwrap();
    }
}
async fn by_phone(app: &TestApp, sid: &str, p: usize) {
    for i in 0..MSGS {
        app.store
            .record_message(
                sid,
                text(
                    &phone(p),
                    &format!("P{p}-{i}"),
                    i % 2 == 0,
                    2_000 + i as i64,
                ),
                RecordOptions::default(),
            )
            .await
            .unwrap();
    }
}
async fn link(app: &TestApp, sid: &str, p: usize) {
    app.store
        .link_lid_pn(sid, &jid(&lid(p)), &jid(&phone(p)))
        .await
        .unwrap();
}
async fn extras(app: &TestApp, sid: &str, p: usize) {
    let g = GroupInfo {
        jid: jid("120363000000000077@g.us"),
        subject: None,
        members: None,
    };
    app.store.record_group(sid, &g).await.unwrap();
    app.store
        .record_participants(
            sid,
            &g.jid,
            wagate::store::ParticipantChange::Add,
            &[GroupMember {
                jid: jid(&lid(p)),
                alt: None,
                role: "member".into(),
            }],
        )
        .await
        .unwrap();
    app.store
        .record_names(
            sid,
            &[PersonNames::push(jid(&phone(p)), format!("Person {p}"))],
        )
        .await
        .unwrap();
    // A redelivery of what was already sent.
    by_lid(app, sid, p).await;
}

async fn state(app: &TestApp, sid: &str) -> Value {
    let contacts = app
        .get(&format!("/api/v1/sessions/{sid}/contacts?limit=200"))
        .await
        .json();
    let chats = app
        .get(&format!("/api/v1/sessions/{sid}/chats?limit=200"))
        .await
        .json();
    let mut dms = Vec::new();
    for c in chats["data"].as_array().unwrap() {
        let jid = c["jid"].as_str().unwrap();
        let msgs = app
            .get(&format!(
                "/api/v1/sessions/{sid}/chats/{jid}/messages?limit=200"
            ))
            .await
            .json();
        let mut ids: Vec<String> = msgs["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["waMessageId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        dms.push(json!({"jid": jid, "type": c["type"], "aliases": c["aliases"], "unread": c["unreadCount"], "last": c["lastMessageAt"], "ids": ids}));
    }
    dms.sort_by_key(|v| v["jid"].as_str().unwrap().to_owned());
    let mut people: Vec<Value> = contacts["data"].as_array().unwrap().clone();
    people.sort_by_key(|v| v["lid"].as_str().unwrap_or("").to_owned());
    json!({"contacts": people, "chats": dms})
}

fn expected() -> Value {
    let mut chats = vec![
        json!({"jid": "120363000000000077@g.us", "type": "group", "aliases": null, "unread": 0, "last": null, "ids": []}),
    ];
    let mut contacts = Vec::new();
    for p in 0..PEOPLE {
        let mut ids: Vec<String> = (0..MSGS)
            .flat_map(|i| [format!("L{p}-{i}"), format!("P{p}-{i}")])
            .collect();
        ids.sort();
        // Incoming: every L message, and the odd P ones.
        let unread = MSGS + MSGS / 2;
        chats.push(json!({"jid": phone(p), "type": "dm", "aliases": [lid(p)], "unread": unread, "last": 2_000 + MSGS as i64 - 1, "ids": ids}));
        contacts.push(json!({"lid": lid(p), "source": "dm", "name": format!("Person {p}"), "phoneNumber": phone(p).trim_end_matches("@s.whatsapp.net")}));
    }
    chats.sort_by_key(|v| v["jid"].as_str().unwrap().to_owned());
    json!({"contacts": contacts, "chats": chats})
}

async fn run_all(app: Arc<TestApp>, sid: String, link_when: usize) {
    if link_when == 0 {
        for p in 0..PEOPLE {
            link(&app, &sid, p).await;
        }
    }
    let mut tasks = Vec::new();
    for p in 0..PEOPLE {
        for part in 0..4 {
            let (app, sid) = (app.clone(), sid.clone());
            tasks.push(tokio::spawn(async move {
                match part {
                    0 => by_lid(&app, &sid, p).await,
                    1 => by_phone(&app, &sid, p).await,
                    2 if link_when == 1 => link(&app, &sid, p).await,
                    2 => {}
                    _ => extras(&app, &sid, p).await,
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    if link_when == 2 {
        for p in 0..PEOPLE {
            link(&app, &sid, p).await;
        }
    }
}

dual!(async fn interleaved_ingest_ends_in_one_exact_state_whatever_the_order(backend) {
    // The link arrives first, in the middle of the traffic, or last.
    for link_when in 0..3 {
        let app = Arc::new(TestApp::new(backend).await);
        let sid = app.session().await;
        run_all(app.clone(), sid.clone(), link_when).await;
        assert_eq!(state(&app, &sid).await, expected(), "link_when = {link_when}");
        // Running everything again changes nothing.
        run_all(app.clone(), sid.clone(), 1).await;
        assert_eq!(state(&app, &sid).await, expected(), "again, link_when = {link_when}");
    }
});

dual!(async fn sessions_meeting_the_same_new_person_at_once_do_not_collide(backend) {
    let app = Arc::new(TestApp::new(backend).await);
    let mut sessions = Vec::new();
    for i in 0..4 {
        sessions.push(app.session_of(&format!("org-{i}")).await);
    }
    let mut tasks = Vec::new();
    for sid in &sessions {
        for p in 0..PEOPLE {
            let (app, sid) = (app.clone(), sid.clone());
            tasks.push(tokio::spawn(async move {
                link(&app, &sid, p).await;
                by_phone(&app, &sid, p).await;
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for sid in &sessions {
        let c = app.rows_of("contacts", sid).await;
        assert_eq!(c, PEOPLE as i64, "one contact per person in each session");
        assert_eq!(app.rows_of("chats", sid).await, PEOPLE as i64);
        assert_eq!(app.rows_of("messages", sid).await, (PEOPLE * MSGS) as i64);
    }
});
