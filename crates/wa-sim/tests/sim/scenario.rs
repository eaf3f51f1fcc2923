//! Scenario files: people, contacts, groups and a timed script of inbound
//! messages, loaded at run time (the same format `wa-sim --scenario` reads).

use crate::common::*;
use serde_json::json;
use whatsapp_rust::Jid;

const ALICE: &str = "15559000001";
const PAT: &str = "15559000099";
const QUINN: &str = "15559000098";
const CONTACT: &str = "15559000050";
const GROUP: &str = "120363000000000777";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_script_sends_over_time() {
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let (status, body) = post(
        &sim,
        "/control/scenario",
        json!({
            "people": [{"phone": PAT, "name": "Pat"}, {"phone": QUINN, "name": "Quinn"}],
            "contacts": [CONTACT],
            "groups": [{"id": GROUP, "creator": PAT, "subject": "Club", "participants": [ALICE, QUINN]}],
            "script": [
                {"at": 0, "from": PAT, "to": ALICE, "text": "one"},
                {"at": 300, "from": QUINN, "to": ALICE, "text": "two"},
                {"at": 600, "from": PAT, "to": format!("{GROUP}@g.us"), "text": "three"}
            ]
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["groups"][0]["jid"], format!("{GROUP}@g.us"));
    assert_eq!(body["script"], 3);
    let started = std::time::Instant::now();
    let one = wait_text(&alice, "one").await;
    assert_eq!(one.info.source.sender.user, PAT);
    let two = wait_text(&alice, "two").await;
    assert_eq!(two.info.source.sender.user, QUINN);
    let three = wait_text(&alice, "three").await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(550),
        "steps wait for their time"
    );
    assert_eq!(three.info.source.chat, Jid::group(GROUP));
    assert_eq!(three.info.source.sender.user, PAT);
    let order: Vec<String> = alice
        .events
        .all()
        .iter()
        .flat_map(|e| texts(e))
        .filter(|t| ["one", "two", "three"].contains(&t.as_str()))
        .collect();
    assert_eq!(order, ["one", "two", "three"]);
    let dir = get(&sim, "/control/directory").await;
    assert!(dir.to_string().contains(CONTACT), "{dir}");
    // The group exists as the scenario says.
    let meta = alice
        .client
        .groups()
        .get_metadata(&Jid::group(GROUP))
        .await
        .unwrap();
    assert_eq!(meta.subject, "Club");
    assert_eq!(meta.participants.len(), 3);

    let (status, body) = post(&sim, "/control/scenario", json!({"peoples": []})).await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    let (status, _) = post(
        &sim,
        "/control/scenario",
        json!({"groups": [{"id": GROUP, "creator": PAT, "subject": "again"}]}),
    )
    .await;
    assert_eq!(status, 400, "group id taken");
    alice.shutdown().await;
}
