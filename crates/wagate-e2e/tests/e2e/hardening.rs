//! Review findings of issue 17 that need the real engine: a session run leaves nothing behind,
//! changes from the phone survive a failing database, restarts pace their connects, history is
//! stored once and off the event path, a direct chat is named after its person.

use serde_json::json;

use crate::support::{eventually, World};

/// Every run of a session ends with its client and its tasks: 20 stop/start cycles of a
/// paired session leave no client and no task of the engine behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_run_leaves_no_client_and_no_task_behind() {
    let w = World::new().await;
    let sid = w.paired_session("6281100000401", "Cycles").await;
    assert_eq!(w.engine().clients_alive(), 1);
    for cycle in 0..20 {
        let (s, v) = w
            .post(&format!("/api/v1/sessions/{sid}:stop"), json!({}))
            .await;
        assert_eq!(s, 200, "cycle {cycle}: {v}");
        eventually(&format!("cycle {cycle}: the run is gone"), || async {
            let e = w.engine();
            (e.clients_alive() == 0 && e.task_count() == 0).then_some(())
        })
        .await;
        let (s, v) = w
            .post(&format!("/api/v1/sessions/{sid}:start"), json!({}))
            .await;
        assert_eq!(s, 200, "cycle {cycle}: {v}");
        w.wait_status(&sid, "working").await;
        assert_eq!(w.engine().clients_alive(), 1, "cycle {cycle}");
    }
    // A connect that never finishes (the simulator refuses the device) is stopped whole too.
    w.post(&format!("/api/v1/sessions/{sid}:stop"), json!({}))
        .await;
    eventually("the last run is gone", || async {
        let e = w.engine();
        (e.clients_alive() == 0 && e.task_count() == 0).then_some(())
    })
    .await;
}

/// A chat muted on the phone while the database refuses writes is stored once it accepts them
/// again (WhatsApp does not send app state twice: a write given up is a change lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_from_the_phone_survives_a_failing_database() {
    use sqlx::Connection;
    let w = World::new().await;
    let sid = w.paired_session("6281100000411", "Stubborn").await;
    w.person("6281200000412", "Gita").await;
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000412/send",
            json!({"to": "6281100000411", "text": "hi"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let cid = "6281200000412@s.whatsapp.net";
    let chat = format!("/api/v1/sessions/{sid}/chats/{cid}");
    eventually("the chat", || async {
        let (s, _) = w.call(reqwest::Method::GET, &chat, None).await;
        (s == 200).then_some(())
    })
    .await;

    // Every change to a chat fails from now on.
    let url = format!("sqlite://{}", w.db_path().display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_chats BEFORE UPDATE ON chats BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let retries_before = w.engine().store_retries();
    let until = 4_102_444_800_000_i64;
    let (s, v) = w
        .sim_post(
            "/control/accounts/6281100000411/chat-settings",
            json!({"chat": cid, "mutedUntil": until}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    eventually("the gateway tried and failed", || async {
        (w.engine().store_retries() > retries_before).then_some(())
    })
    .await;
    assert!(w.get(&chat).await["mutedUntil"].is_null());
    sqlx::query("DROP TRIGGER refuse_chats")
        .execute(&mut db)
        .await
        .unwrap();
    eventually(
        "the mute is stored once the database accepts it",
        || async { (w.get(&chat).await["mutedUntil"] == until).then_some(()) },
    )
    .await;
}

/// With `resume_concurrency` 1, a restart brings sessions back one after another: each holds
/// the slot until it is connected, so no second session starts connecting meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_connects_sessions_one_slot_at_a_time() {
    let mut w = World::new().await;
    let mut sids = Vec::new();
    for i in 0..3 {
        let phone = format!("628110000042{i}");
        sids.push(w.paired_session(&phone, &format!("Paced {i}")).await);
    }
    let after = w.get("/api/v1/events?limit=1000").await["next"]
        .as_i64()
        .unwrap();
    w.stop_gateway().await;
    w.resume_concurrency = 1;
    w.start_gateway().await;
    // The stored status says `working` from before the restart: wait for the feed instead.
    let seq: Vec<(String, String)> = eventually("every session working again", || async {
        let v = w
            .get(&format!(
                "/api/v1/events?after={after}&event=session.status&limit=1000"
            ))
            .await;
        let seq: Vec<(String, String)> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["payload"]["id"].as_str().unwrap().to_owned(),
                    e["payload"]["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (seq.iter().filter(|(_, s)| s == "working").count() >= 3).then_some(seq)
    })
    .await;
    // At most one session between `starting` and `working` at any point of the feed.
    let mut connecting: Option<&str> = None;
    for (sid, status) in &seq {
        match status.as_str() {
            "starting" => {
                assert!(
                    connecting.is_none_or(|c| c == sid),
                    "{sid} started connecting while {connecting:?} was: {seq:?}"
                );
                connecting = Some(sid);
            }
            "working" if connecting == Some(sid.as_str()) => connecting = None,
            _ => {}
        }
    }
    let working: std::collections::HashSet<&String> = seq
        .iter()
        .filter(|(_, s)| s == "working")
        .map(|(sid, _)| sid)
        .collect();
    assert_eq!(working.len(), 3, "{seq:?}");
}

/// The history a newly linked device gets is stored once, whatever the timing (and not again
/// after a restart): one `history.sync` event and one `chat.update` per chat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_stored_once() {
    let mut w = World::new().await;
    let scenario = json!({
        "accounts": [{"phone": "6281100000431", "name": "Once",
            "history": {
                "conversations": [
                    {"chat": "6281200000432", "name": "Hadi", "messages": [
                        {"id": "O1", "from": "6281200000432", "text": "one", "timestamp": 1700000000, "pushName": "Hadi"}
                    ]},
                    {"chat": "6281200000433", "name": "Indah", "messages": [
                        {"id": "O2", "from": "6281200000433", "text": "two", "timestamp": 1700000100, "pushName": "Indah"}
                    ]}
                ]
            }}],
        "people": [{"phone": "6281200000432", "name": "Hadi"}, {"phone": "6281200000433", "name": "Indah"}]
    });
    let (s, v) = w.sim_post("/control/scenario", scenario).await;
    assert_eq!(s, 200, "{v}");
    let sid = w.paired_session("6281100000431", "Once").await;
    eventually("the history is stored", || async {
        (!events(&w, "history.sync").await.is_empty()).then_some(())
    })
    .await;
    w.stop_gateway().await;
    w.start_gateway().await;
    w.wait_status(&sid, "working").await;
    // A later message proves the session's events after the history were handled.
    w.sim_post(
        "/control/people/6281200000432/send",
        json!({"to": "6281100000431", "text": "after"}),
    )
    .await;
    eventually("the message after the history", || async {
        (!events(&w, "message").await.is_empty()).then_some(())
    })
    .await;
    assert_eq!(events(&w, "history.sync").await.len(), 1);
    let updates = events(&w, "chat.update").await;
    let indah = updates
        .iter()
        .filter(|e| e["payload"]["jid"] == "6281200000433@s.whatsapp.net")
        .count();
    assert_eq!(
        indah, 1,
        "one chat.update for a chat the history alone touched"
    );
}

/// A person with a push name writes first: the direct chat is called by that name, and
/// follows when the person's name changes (with a `chat.update` event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_chat_is_named_after_its_person() {
    let w = World::new().await;
    let sid = w.paired_session("6281100000441", "Names").await;
    w.person("6281200000442", "Joko").await;
    let (s, v) = w
        .sim_post(
            "/control/people/6281200000442/send",
            json!({"to": "6281100000441", "text": "halo"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let chat = eventually("the chat, named", || async {
        let v = w.get(&format!("/api/v1/sessions/{sid}/chats")).await;
        let c = v["data"][0].clone();
        c["name"].is_string().then_some(c)
    })
    .await;
    assert_eq!(chat["name"], "Joko", "{chat}");
    assert_eq!(chat["type"], "dm");
}

/// The events of one type in the feed (the first 1,000).
async fn events(w: &World, event: &str) -> Vec<serde_json::Value> {
    let v = w
        .get(&format!("/api/v1/events?event={event}&limit=1000"))
        .await;
    v["data"].as_array().unwrap().clone()
}
