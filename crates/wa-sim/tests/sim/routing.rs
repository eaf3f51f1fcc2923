//! Number lookup, chat state and presence between two paired accounts.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::types::presence::{ChatPresence, ChatPresenceMedia};
use whatsapp_rust::Jid;

const ALICE: &str = "15552000001";
const BOB: &str = "15552000002";

/// `is_on_whatsapp` answers from the directory (paired accounts plus numbers
/// added over the control API) with a stable LID; unknown numbers are not
/// registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_lookup_from_directory() {
    let sim = sim().await;
    let (status, body) = post(
        &sim,
        "/control/directory",
        json!({"phones": ["15552000009"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let extra_lid = body["added"][0]["lid"].as_str().unwrap().to_string();
    let (status, _) = post(&sim, "/control/directory", json!({"phones": ["+1 bad"]})).await;
    assert_eq!(status, 400);

    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;

    let query = [Jid::pn(BOB), Jid::pn("15552000009"), Jid::pn("15552999999")];
    let res = alice
        .client
        .contacts()
        .is_on_whatsapp(&query)
        .await
        .expect("is_on_whatsapp");
    assert_eq!(res.len(), 3, "{res:?}");
    let find = |user: &str| res.iter().find(|r| r.jid.user == user).unwrap();
    let bob_lid = bob
        .client
        .persistence_manager()
        .get_device_snapshot()
        .lid
        .clone()
        .expect("bob has a lid");
    assert!(find(BOB).is_registered);
    assert_eq!(find(BOB).lid.as_ref().unwrap().user, bob_lid.user);
    assert!(find("15552000009").is_registered);
    assert_eq!(
        format!("{}@lid", find("15552000009").lid.as_ref().unwrap().user),
        extra_lid
    );
    assert!(!find("15552999999").is_registered);
    assert!(find("15552999999").lid.is_none());

    // Stable: asking again gives the same LID.
    let again = alice
        .client
        .contacts()
        .is_on_whatsapp(&[Jid::pn("15552000009")])
        .await
        .unwrap();
    assert_eq!(again[0].lid, find("15552000009").lid);

    alice.shutdown().await;
    bob.shutdown().await;
}

/// Chat states reach the other account's device as ChatPresence events and
/// are listed by the control API; availability reaches a subscriber as a
/// Presence event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_state_and_presence_are_routed_and_recorded() {
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    let bob_jid = Jid::pn(BOB);

    let cs = alice.client.chatstate();
    cs.send_composing(&bob_jid).await.expect("composing");
    let ev = bob
        .events
        .wait("ChatPresence composing", WAIT, |e| {
            matches!(e, Event::ChatPresence(c) if c.state == ChatPresence::Composing && c.media == ChatPresenceMedia::Text)
        })
        .await;
    match &*ev {
        Event::ChatPresence(c) => assert_eq!(c.source.sender.user, ALICE),
        _ => unreachable!(),
    }
    cs.send_recording(&bob_jid).await.expect("recording");
    bob.events
        .wait(
            "ChatPresence recording",
            WAIT,
            |e| matches!(e, Event::ChatPresence(c) if c.media == ChatPresenceMedia::Audio),
        )
        .await;
    cs.send_paused(&bob_jid).await.expect("paused");
    bob.events
        .wait(
            "ChatPresence paused",
            WAIT,
            |e| matches!(e, Event::ChatPresence(c) if c.state == ChatPresence::Paused),
        )
        .await;

    let listed = get(&sim, "/control/chatstates").await;
    let states: Vec<&str> = listed["chatstates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["composing", "recording", "paused"], "{listed}");
    assert!(listed["chatstates"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["delivered_to"] == 1));

    // Presence: Bob subscribes to Alice, Alice goes unavailable then available.
    bob.client
        .presence()
        .subscribe(Jid::pn(ALICE))
        .await
        .expect("subscribe");
    wait_until(
        "bob's subscription is recorded",
        Duration::from_secs(10),
        || {
            sim.sim
                .world()
                .conns
                .values()
                .any(|c| c.subscribed.iter().any(|p| p == ALICE))
        },
    )
    .await;
    alice
        .client
        .presence()
        .set_unavailable()
        .await
        .expect("unavailable");
    bob.events
        .wait(
            "Presence unavailable",
            WAIT,
            |e| matches!(e, Event::Presence(p) if p.from.user == ALICE && p.unavailable),
        )
        .await;
    alice
        .client
        .presence()
        .set_available()
        .await
        .expect("available");
    bob.events
        .wait(
            "Presence available",
            WAIT,
            |e| matches!(e, Event::Presence(p) if p.from.user == ALICE && !p.unavailable),
        )
        .await;
    // The client may already be available (and Bob's subscription answered
    // with that), so wait for the record of the explicit change.
    wait_json(
        &sim,
        "/control/presences",
        "available delivered to bob",
        |pres| {
            pres["presences"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["kind"] == "available" && p["delivered_to"] == 1)
        },
    )
    .await;

    alice.shutdown().await;
    bob.shutdown().await;
}

/// Pre-key bundles: another account fetches a companion's uploaded keys
/// (with its countersigned device identity, which the client validates);
/// each fetch consumes one one-time key; the phone (device 0) has its own
/// keys; an unknown device is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prekey_bundles_are_served_from_uploads() {
    use whatsapp_rust::wacore::iq::prekeys::PreKeyFetchSpec;
    let sim = sim().await;
    let alice = paired_client(&sim, ALICE, "Alice").await;
    let bob = paired_client(&sim, BOB, "Bob").await;
    let held = || {
        sim.sim.world().accounts[BOB]
            .devices
            .get(&1)
            .map_or(0, |d| d.prekeys)
    };
    // The phone's key share to Bob's device consumes one key first.
    wait_until("bob uploaded pre-keys and got the key share", WAIT, || {
        sim.sim.world().accounts[BOB]
            .devices
            .get(&1)
            .is_some_and(|d| d.key_shared && d.prekeys > 0)
    })
    .await;
    let before = held();

    let bob_dev = Jid::pn_device(BOB, 1);
    let out = alice
        .client
        .execute(PreKeyFetchSpec::new(vec![
            bob_dev.clone(),
            Jid::pn(BOB),
            Jid::pn_device(BOB, 9),
        ]))
        .await
        .expect("pre-key fetch");
    assert!(out.bundles.contains_key(&bob_dev), "bundle for {bob_dev}");
    assert!(
        out.bundles.contains_key(&Jid::pn(BOB)),
        "the phone's bundle"
    );
    assert_eq!(out.rejected.len(), 1, "device 9 does not exist");
    assert_eq!(out.rejected[0].code, 404);
    assert_eq!(held(), before - 1, "one one-time key consumed");
    let unhandled = get(&sim, "/control/unhandled").await;
    assert!(
        !unhandled.to_string().contains("<key>"),
        "fetch is understood: {unhandled}"
    );
    alice.shutdown().await;
    bob.shutdown().await;
}
