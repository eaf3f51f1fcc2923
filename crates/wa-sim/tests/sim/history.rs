//! History sync: the phone pushes a scenario's history to a device when it
//! links, as a downloadable, compressed `HistorySync` blob.

use crate::common::*;
use serde_json::json;
use whatsapp_rust::types::events::Event;

const ALICE: &str = "15555000001";
const BOB: &str = "15555000002";
const CAROL: &str = "15555000003";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_device_gets_the_scenario_history() {
    let sim = sim().await;
    let (status, body) = put(
        &sim,
        &format!("/control/accounts/{ALICE}/history"),
        json!({
            "conversations": [
                {"chat": BOB, "name": "Bob B.", "pinned": 1700000500, "mutedUntil": 1900000000000u64,
                 "unreadCount": 2, "messages": [
                    {"id": "H1", "from": BOB, "text": "hey alice", "timestamp": 1700000000, "pushName": "Bob"},
                    {"id": "H2", "from": "me", "text": "hey bob", "timestamp": 1700000060},
                    {"id": "H3", "from": BOB, "text": "lunch?", "timestamp": 1700000120, "pushName": "Bob"}
                 ]},
                {"chat": format!("{CAROL}@s.whatsapp.net"), "name": "Carol", "archived": true,
                 "messages": [{"id": "H4", "from": CAROL, "text": "old news", "timestamp": 1690000000}]}
            ],
            "pushNames": {CAROL: "Carol C."}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = put(&sim, "/control/accounts/12/history", json!({})).await;
    assert_eq!(status, 400);
    let (status, _) = put(
        &sim,
        &format!("/control/accounts/{ALICE}/history"),
        json!({"bogus": 1}),
    )
    .await;
    assert!(status >= 400, "unknown fields are refused");

    let alice = paired_client_with_history(&sim, ALICE, "Alice").await;
    let ev = alice
        .events
        .wait("HistorySync", WAIT, |e| matches!(e, Event::HistorySync(_)))
        .await;
    let Event::HistorySync(lazy) = &*ev else {
        unreachable!()
    };
    let h = lazy.get().expect("history decodes");
    assert_eq!(h.conversations.len(), 2);
    let bob = h
        .conversations
        .iter()
        .find(|c| c.id == format!("{BOB}@s.whatsapp.net"))
        .expect("bob's chat");
    assert_eq!(bob.name.as_deref(), Some("Bob B."));
    assert_eq!(bob.pinned, Some(1700000500));
    assert_eq!(bob.mute_end_time, Some(1900000000000));
    assert_eq!(bob.unread_count, Some(2));
    assert_eq!(bob.archived, Some(false));
    let msgs: Vec<(String, bool, String, u64)> = bob
        .messages
        .iter()
        .map(|m| {
            let w = m.message.as_option().unwrap();
            let k = w.key.as_option().unwrap();
            (
                k.id.clone().unwrap(),
                k.from_me.unwrap(),
                w.message.as_option().unwrap().conversation.clone().unwrap(),
                w.message_timestamp.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        msgs,
        vec![
            ("H1".into(), false, "hey alice".into(), 1700000000),
            ("H2".into(), true, "hey bob".into(), 1700000060),
            ("H3".into(), false, "lunch?".into(), 1700000120),
        ]
    );
    let carol = h
        .conversations
        .iter()
        .find(|c| c.id.starts_with(CAROL))
        .expect("carol's chat");
    assert_eq!(carol.archived, Some(true));
    assert_eq!(carol.pinned, None);
    let names: Vec<(String, String)> = h
        .pushnames
        .iter()
        .map(|p| (p.id.clone().unwrap(), p.pushname.clone().unwrap()))
        .collect();
    assert!(
        names.contains(&(format!("{BOB}@s.whatsapp.net"), "Bob".into())),
        "{names:?}"
    );
    assert!(
        names.contains(&(format!("{CAROL}@s.whatsapp.net"), "Carol C.".into())),
        "{names:?}"
    );
    let dir = sim.sim.world().directory.clone();
    for p in [BOB, CAROL] {
        assert!(
            h.phone_number_to_lid_mappings.iter().any(|m| {
                m.pn_jid.as_deref() == Some(format!("{p}@s.whatsapp.net").as_str())
                    && m.lid_jid.as_deref() == Some(format!("{}@lid", dir[p]).as_str())
            }),
            "LID pair for {p}"
        );
    }
    // The client learned the pairs.
    let entry = alice
        .client
        .get_lid_pn_entry(&whatsapp_rust::Jid::pn(BOB))
        .await
        .unwrap()
        .expect("bob's lid known from history");
    assert_eq!(&*entry.lid, dir[BOB].as_str());
    alice.shutdown().await;
}
