//! QR rotation and expiry, long-lived connections, and the log of queries
//! the simulator does not understand.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use wa_sim::SimConfig;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::Jid;

fn qr_ref(qr: &str) -> String {
    qr.split(',').next().unwrap().to_string()
}

/// Refs rotate (60 s for the first, 20 s after, as the client times them)
/// and a rotated code can be scanned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_refs_rotate_and_rotated_code_pairs() {
    let sim = sim_with(SimConfig {
        qr_refs: 3,
        ..Default::default()
    })
    .await;
    let c = client(&sim, new_backend()).await;
    let first = qr_code(&c.events.wait("QR 1", WAIT, is_qr).await);
    let listed = get(&sim, "/control/qr").await;
    assert_eq!(listed["refs"].as_array().unwrap().len(), 3, "{listed}");
    let second = qr_code(
        &c.events
            .wait_nth("QR 2", 2, Duration::from_secs(90), is_qr)
            .await,
    );
    assert_ne!(qr_ref(&first), qr_ref(&second), "ref rotated");
    // Same device keys, new ref.
    assert_eq!(first.split(',').nth(1), second.split(',').nth(1));

    // The first ref expired with its 60 s: the phone cannot use it any more.
    let (status, body) = post(
        &sim,
        "/control/scan",
        json!({"qr": first, "phone": "15553000001"}),
    )
    .await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "qr_expired");
    let (status, body) = post(
        &sim,
        "/control/scan",
        json!({"qr": second, "phone": "15553000001", "name": "Rot"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    c.events.wait("Connected", WAIT, is_connected).await;
    c.shutdown().await;
}

/// After the last ref the client reports PairingQrCodesExhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_refs_exhaust() {
    let sim = sim_with(SimConfig {
        qr_refs: 1,
        ..Default::default()
    })
    .await;
    let c = client(&sim, new_backend()).await;
    c.events.wait("QR 1", WAIT, is_qr).await;
    let ev = c
        .events
        .wait("PairingQrCodesExhausted", Duration::from_secs(90), |e| {
            matches!(e, Event::PairingQrCodesExhausted(_))
        })
        .await;
    match &*ev {
        Event::PairingQrCodesExhausted(x) => assert!(x.disconnected),
        _ => unreachable!(),
    }
    assert_eq!(c.events.count(is_qr), 1);
    c.shutdown().await;
}

/// A connected client stays connected across several keepalive rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stays_connected_for_minutes() {
    let sim = sim().await;
    let c = paired_client(&sim, "15553000002", "Long").await;
    let ids = conn_ids(&sim, "15553000002", 1);
    assert_eq!(ids.len(), 1);
    let id = ids[0];
    wait_until(
        "four keepalive pings answered",
        Duration::from_secs(180),
        || sim.sim.world().conns.get(&id).is_some_and(|e| e.pings >= 4),
    )
    .await;
    assert_eq!(conn_ids(&sim, "15553000002", 1), vec![id], "same socket");
    assert_eq!(
        c.events.count(|e| matches!(e, Event::Disconnected(_))),
        0,
        "never disconnected"
    );
    c.shutdown().await;
}

/// A query the simulator does not implement is answered with an error and
/// listed by `GET /control/unhandled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_queries_are_logged() {
    let sim = sim().await;
    let c = paired_client(&sim, "15553000003", "Curious").await;
    let res = c
        .client
        .contacts()
        .get_profile_picture(&Jid::pn("15553000003"), true)
        .await;
    assert!(res.is_err() || res.as_ref().unwrap().is_none(), "{res:?}");
    let unhandled = get(&sim, "/control/unhandled").await;
    let text = unhandled.to_string();
    assert!(text.contains("w:profile:picture"), "{text}");
    c.shutdown().await;
}

/// (Here rather than in `faults.rs`: it waits on the client's keepalive
/// timers, so it runs in parallel with the other timer-bound tests.)
async fn ping_fault(sim: &wa_sim::Running, jid: &str, kind: &str) {
    let (status, body) = post(sim, "/control/fault", json!({"jid": jid, "kind": kind})).await;
    assert_eq!(status, 200, "fault {kind}: {body}");
}

/// Unanswered pings: the client declares the socket dead and closes it;
/// once pings are answered again it reconnects and reaches Connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_pings_make_client_reconnect() {
    let sim = sim().await;
    let c = paired_client(&sim, "15551000006", "Pings").await;
    let d = c.client.persistence_manager().get_device_snapshot();
    let pn = d.pn.clone().expect("paired");
    let jid = format!("{}:{}@s.whatsapp.net", pn.user, pn.device);
    let first = conn_ids(&sim, &pn.user, pn.device);
    assert_eq!(first.len(), 1);
    let before = c.events.count(is_connected);
    ping_fault(&sim, &jid, "ignore_pings").await;
    wait_until(
        "the client gives up on the silent socket",
        Duration::from_secs(150),
        || !conn_ids(&sim, &pn.user, pn.device).contains(&first[0]),
    )
    .await;
    ping_fault(&sim, &jid, "answer_pings").await;
    c.events
        .wait_nth("Connected again", before + 1, WAIT, is_connected)
        .await;
    c.shutdown().await;
}
