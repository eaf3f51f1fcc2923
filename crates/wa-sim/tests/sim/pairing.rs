//! Handshake, QR pairing, login and reconnect with real whatsapp-rust clients.

use crate::common::*;
use whatsapp_rust::types::events::Event;

/// A new device gets QR codes, the phone scans one over the control API, the
/// client verifies the signed identity, is told to restart, logs in as the
/// new device and reaches `Connected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_then_connected() {
    let sim = sim().await;
    let c = client(&sim, new_backend()).await;
    let qr = qr_code(&c.events.wait("first QR", WAIT, is_qr).await);
    assert!(qr.starts_with("2@"), "QR is ref,noise,identity,adv: {qr}");
    assert_eq!(qr.split(',').count(), 5);

    let (status, body) = post(
        &sim,
        "/control/scan",
        serde_json::json!({"qr": qr, "phone": "15550001111", "name": "Alice"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jid = body["jid"].as_str().unwrap().to_string();
    assert!(jid.starts_with("15550001111:"), "{jid}");

    let ps = c.events.wait("PairSuccess", WAIT, is_pair_success).await;
    let paired_at = std::time::Instant::now();
    match &*ps {
        Event::PairSuccess(p) => {
            assert_eq!(p.id.user, "15550001111");
            assert_eq!(p.lid.server, whatsapp_rust::Server::Lid);
        }
        _ => unreachable!(),
    }
    c.events.wait("Connected", WAIT, is_connected).await;
    // The phone shared the app-state key, so the client did not sit out its
    // 10 s key-share grace before the critical sync.
    assert!(
        paired_at.elapsed() < std::time::Duration::from_secs(8),
        "Connected {:?} after PairSuccess",
        paired_at.elapsed()
    );
    // PairSuccess strictly before Connected.
    let order: Vec<bool> = c
        .events
        .all()
        .iter()
        .filter(|e| is_pair_success(e) || is_connected(e))
        .map(|e| is_pair_success(e))
        .collect();
    assert_eq!(order.first(), Some(&true), "PairSuccess must come first");

    let device = c.client.persistence_manager().get_device_snapshot();
    assert_eq!(device.pn.as_ref().unwrap().user, "15550001111");
    assert_eq!(sim.sim.logged_in_count(), 1);
    let accounts = get(&sim, "/control/accounts").await;
    assert_eq!(accounts["accounts"][0]["phone"], "15550001111");
    assert_eq!(
        accounts["accounts"][0]["devices"].as_array().unwrap().len(),
        1
    );
    assert_eq!(accounts["accounts"][0]["push_name"], "Alice");
    assert_eq!(device.push_name, "Alice");
    // The client uploads its pre-keys after login; the simulator counts them.
    wait_until("pre-keys uploaded", WAIT, || {
        let w = sim.sim.world();
        w.accounts["15550001111"]
            .devices
            .values()
            .any(|d| d.prekeys > 0)
    })
    .await;
    c.shutdown().await;
}

/// A scan with a QR that no connected device shows is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_of_unknown_qr_is_refused() {
    let sim = sim().await;
    let k = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let (status, body) = post(
        &sim,
        "/control/scan",
        serde_json::json!({"qr": format!("2@nope,{k},{k},{k},1"), "phone": "15550001111"}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = post(
        &sim,
        "/control/scan",
        serde_json::json!({"qr": "garbage", "phone": "15550001111"}),
    )
    .await;
    assert_eq!(status, 400);
}

/// A paired client restarted with the same store logs in without pairing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_same_store_skips_pairing() {
    let sim = sim().await;
    let c = paired_client(&sim, "15550002222", "Bob").await;
    let backend = c.backend.clone();
    c.shutdown().await;

    let c2 = client(&sim, backend).await;
    c2.events.wait("Connected", WAIT, is_connected).await;
    assert_eq!(c2.events.count(is_qr), 0, "no QR on reconnect");
    assert_eq!(c2.events.count(is_pair_success), 0);
    assert_eq!(sim.sim.logged_in_count(), 1);
    // The restarted client resumed with Noise IK (it cached our key).
    let health = get(&sim, "/control/health").await;
    assert!(
        health["handshakes"]["ik"].as_u64().unwrap() >= 1,
        "{health}"
    );
    c2.shutdown().await;
}

/// A device the server does not know is refused with 401: the client
/// reports LoggedOut on connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_device_is_refused_with_401() {
    let sim = sim().await;
    let c = paired_client(&sim, "15550003333", "Carol").await;
    let backend = c.backend.clone();
    c.shutdown().await;

    // The same store against a fresh simulator that never paired it.
    let other = crate::common::sim().await;
    let c2 = client(&other, backend).await;
    let ev = c2
        .events
        .wait("LoggedOut", WAIT, |e| matches!(e, Event::LoggedOut(_)))
        .await;
    match &*ev {
        Event::LoggedOut(l) => assert!(l.on_connect, "refused at connect"),
        _ => unreachable!(),
    }
    assert_eq!(c2.events.count(is_connected), 0);
    // It tried IK with the first simulator's key and was answered XX-fallback.
    let health = get(&other, "/control/health").await;
    assert!(
        health["handshakes"]["xx_fallback"].as_u64().unwrap() >= 1,
        "{health}"
    );
    c2.shutdown().await;
}

/// Pairing code: the client asks for a code, the phone confirms it over the
/// control API, the client ends paired and connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_code_then_connected() {
    use whatsapp_rust::pair_code::PairCodeOptions;
    let sim = sim().await;
    let phone = "15550004444";
    let c = client_with(&sim, new_backend(), |b| {
        b.with_pair_code(PairCodeOptions {
            phone_number: phone.into(),
            ..Default::default()
        })
    })
    .await;
    let ev = c
        .events
        .wait("PairingCode", WAIT, |e| matches!(e, Event::PairingCode(_)))
        .await;
    let code = match &*ev {
        Event::PairingCode(p) => p.code.clone(),
        _ => unreachable!(),
    };
    assert_eq!(code.len(), 8, "{code}");

    // Another phone number has no waiting device.
    let (status, _) = post(
        &sim,
        "/control/pair-code",
        serde_json::json!({"phone": "15550009999", "code": code}),
    )
    .await;
    assert_eq!(status, 404);

    let (status, body) = post(
        &sim,
        "/control/pair-code",
        serde_json::json!({"phone": phone, "code": code, "name": "Dora"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ps = c.events.wait("PairSuccess", WAIT, is_pair_success).await;
    match &*ps {
        Event::PairSuccess(p) => assert_eq!(p.id.user, phone),
        _ => unreachable!(),
    }
    c.events.wait("Connected", WAIT, is_connected).await;
    let accounts = get(&sim, "/control/accounts").await;
    assert_eq!(accounts["accounts"][0]["phone"], phone);
    c.shutdown().await;
}
