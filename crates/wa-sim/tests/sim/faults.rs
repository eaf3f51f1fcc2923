//! Faults injected over the control API, each observed by a real client.

use crate::common::*;
use serde_json::json;
use whatsapp_rust::types::events::Event;

fn device_jid(c: &TestClient) -> String {
    let d = c.client.persistence_manager().get_device_snapshot();
    let pn = d.pn.clone().expect("paired");
    format!("{}:{}@s.whatsapp.net", pn.user, pn.device)
}

async fn fault(sim: &wa_sim::Running, jid: &str, kind: &str) {
    let (status, body) = post(sim, "/control/fault", json!({"jid": jid, "kind": kind})).await;
    assert_eq!(status, 200, "fault {kind}: {body}");
}

fn is_disconnected(e: &Event) -> bool {
    matches!(e, Event::Disconnected(_))
}

/// Closing the socket: the client notices and reconnects on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_socket_client_reconnects() {
    let sim = sim().await;
    let c = paired_client(&sim, "15551000001", "Close").await;
    let jid = device_jid(&c);
    let before = c.events.count(is_connected);
    fault(&sim, &jid, "close").await;
    c.events.wait("Disconnected", WAIT, is_disconnected).await;
    c.events
        .wait_nth("Connected again", before + 1, WAIT, is_connected)
        .await;
    assert_eq!(c.events.count(|e| matches!(e, Event::LoggedOut(_))), 0);
    c.shutdown().await;
}

/// Stream error 515: restart, the client reconnects without pairing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_515_client_reconnects() {
    let sim = sim().await;
    let c = paired_client(&sim, "15551000002", "Restart").await;
    let jid = device_jid(&c);
    let before = c.events.count(is_connected);
    fault(&sim, &jid, "restart").await;
    c.events
        .wait_nth("Connected after 515", before + 1, WAIT, is_connected)
        .await;
    assert_eq!(c.events.count(is_qr), 1, "no new QR after 515");
    c.shutdown().await;
}

/// Stream error 401: the device is logged out and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_error_401_logs_out() {
    let sim = sim().await;
    let c = paired_client(&sim, "15551000003", "Logout").await;
    let jid = device_jid(&c);
    fault(&sim, &jid, "logout").await;
    let ev = c
        .events
        .wait("LoggedOut", WAIT, |e| matches!(e, Event::LoggedOut(_)))
        .await;
    match &*ev {
        Event::LoggedOut(l) => assert!(!l.on_connect),
        _ => unreachable!(),
    }
    let accounts = get(&sim, "/control/accounts").await;
    assert_eq!(
        accounts["accounts"][0]["devices"].as_array().unwrap().len(),
        0,
        "device removed: {accounts}"
    );
    c.shutdown().await;
}

/// Conflict "replaced": the client reports StreamReplaced and stays off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_replaced_reports_stream_replaced() {
    let sim = sim().await;
    let c = paired_client(&sim, "15551000004", "Replaced").await;
    let jid = device_jid(&c);
    fault(&sim, &jid, "replaced").await;
    c.events
        .wait("StreamReplaced", WAIT, |e| {
            matches!(e, Event::StreamReplaced(_))
        })
        .await;
    c.shutdown().await;
}

/// Temporary ban: the next login is refused with 402 and the client reports
/// TemporaryBan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_refuses_next_login_with_temporary_ban() {
    let sim = sim().await;
    let c = paired_client(&sim, "15551000005", "Ban").await;
    let jid = device_jid(&c);
    fault(&sim, &jid, "ban").await;
    fault(&sim, &jid, "close").await;
    let ev = c
        .events
        .wait("TemporaryBan", WAIT, |e| {
            matches!(e, Event::TemporaryBan(_))
        })
        .await;
    match &*ev {
        Event::TemporaryBan(b) => assert_eq!(b.expire.num_seconds(), 3600),
        _ => unreachable!(),
    }
    c.shutdown().await;
}

/// The fault endpoint validates its input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_requests_are_validated() {
    let sim = sim().await;
    let (status, _) = post(
        &sim,
        "/control/fault",
        json!({"jid": "nope", "kind": "close"}),
    )
    .await;
    assert_eq!(status, 400);
    let jid = "15551000099:1@s.whatsapp.net";
    let (status, _) = post(&sim, "/control/fault", json!({"jid": jid, "kind": "close"})).await;
    assert_eq!(status, 404, "not connected");
    let (status, _) = post(
        &sim,
        "/control/fault",
        json!({"jid": jid, "kind": "explode"}),
    )
    .await;
    assert_eq!(status, 400);
    // A ban can be armed before the device connects.
    let (status, body) = post(
        &sim,
        "/control/fault",
        json!({"jid": jid, "kind": "ban", "count": 2}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["connected"], false);
    let faults = sim.sim.world().faults.clone();
    assert_eq!(faults[&("15551000099".to_string(), 1)].ban_logins, 2);
}
