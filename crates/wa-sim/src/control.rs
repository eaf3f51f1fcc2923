//! The JSON control API: the simulated phone and the test operator.

use anyhow::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;

use crate::conn::{keep, Conn, HandleFlow};
use crate::nodes::{self, iq_error, SERVER};
use crate::state::{ConfirmedCode, DeviceFaults, Outbound, PendingCode, PendingPair, Sim};

/// Errors are `{"error": {"code", "message"}}` with a matching status.
pub struct ApiError(StatusCode, &'static str, String);

impl ApiError {
    pub fn message(&self) -> &str {
        &self.2
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"error": {"code": self.1, "message": self.2}})),
        )
            .into_response()
    }
}

pub(crate) fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "bad_request", msg.into())
}

pub(crate) fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "not_found", msg.into())
}

pub(crate) fn valid_phone(phone: &str) -> Result<(), ApiError> {
    if phone.len() < 5 || phone.len() > 20 || !phone.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad_request("phone must be 5-20 digits, no '+'"));
    }
    Ok(())
}

/// `GET /control/health`: liveness plus handshake counters.
pub async fn health(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let w = sim.world();
    Json(json!({
        "ok": true,
        "handshakes": w.handshakes,
        "connections": w.conns.len(),
        "logged_in": w.conns.values().filter(|c| c.device.is_some()).count(),
    }))
}

#[derive(Deserialize)]
pub struct ScanRequest {
    pub qr: String,
    pub phone: String,
    /// Push name of the account (optional).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Serialize)]
pub struct ScanResponse {
    pub jid: String,
    pub lid: String,
    pub device: u16,
}

/// `POST /control/scan {"qr", "phone", "name"?}`: the phone of `phone`
/// scans the QR code a companion shows, and links it.
pub async fn scan(
    State(sim): State<Sim>,
    Json(req): Json<ScanRequest>,
) -> Result<Json<ScanResponse>, ApiError> {
    valid_phone(&req.phone)?;
    let qr = crate::pairing::parse_qr(&req.qr).map_err(|e| bad_request(format!("{e:#}")))?;
    let mut w = sim.world();
    let conn = *w
        .qr_refs
        .get(&qr.pairing_ref)
        .ok_or_else(|| not_found("no connected device shows this QR ref"))?;
    let entry = w
        .conns
        .get(&conn)
        .ok_or_else(|| not_found("device is gone"))?;
    let reg = entry
        .registration
        .clone()
        .ok_or_else(|| not_found("device is gone"))?;
    let index = entry
        .refs
        .iter()
        .position(|r| *r == qr.pairing_ref)
        .unwrap_or(0);
    let age = crate::state::now_ms().saturating_sub(entry.refs_issued_ms);
    if age > crate::state::qr_ref_deadline_ms(index) {
        return Err(ApiError(
            StatusCode::GONE,
            "qr_expired",
            format!(
                "QR ref #{} expired {} s ago",
                index + 1,
                (age - crate::state::qr_ref_deadline_ms(index)) / 1000
            ),
        ));
    }
    if reg.noise_pub != qr.noise_pub || reg.identity_pub != qr.identity_pub {
        return Err(bad_request("QR keys do not match the connected device"));
    }
    if w.pending_pairs.contains_key(&conn) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "conflict",
            "pairing already in progress".into(),
        ));
    }
    let resp = link_device(
        &mut w,
        conn,
        &req.phone,
        req.name.as_deref(),
        &qr.adv_secret,
        reg,
    )
    .map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{e:#}"),
        )
    })?;
    info!(
        "phone {} scanned a QR: linking device {}",
        req.phone, resp.device
    );
    Ok(Json(resp))
}

/// The phone links the companion on `conn`: signs its identity with the
/// account key (HMAC keyed by `adv_secret`) and sends `<pair-success>`.
/// The device is stored once the companion answers with its signature.
fn link_device(
    w: &mut crate::state::World,
    conn: u64,
    phone: &str,
    name: Option<&str>,
    adv_secret: &[u8; 32],
    reg: crate::state::Registration,
) -> Result<ScanResponse> {
    let account = w.account_mut(phone);
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        account.push_name = n.to_string();
    }
    let device = account.next_device;
    account.next_device += 1;
    let key_index = account.next_key_index;
    account.next_key_index += 1;
    let identity = crate::pairing::build_device_identity(
        &account.account_key,
        &reg.identity_pub,
        adv_secret,
        u32::from(device),
        key_index,
    )?;
    let lid = account.lid.clone();
    let push_name = account.push_name.clone();
    if !push_name.is_empty() && account.synced_push_name != push_name {
        // The phone syncs the push name to its companions as the
        // `setting_pushName` app-state mutation.
        account.synced_push_name = push_name.clone();
        crate::appstate::set_push_name(w, phone, &push_name)?;
    }
    let iq_id = crate::iq::random_id();
    let node = pair_success_node(&iq_id, phone, &lid, device, identity, &push_name);
    w.pending_pairs.insert(
        conn,
        PendingPair {
            iq_id,
            phone: phone.to_string(),
            device,
            key_index,
            registration: reg,
        },
    );
    if let Some(c) = w.conns.get_mut(&conn) {
        let refs = std::mem::take(&mut c.refs);
        for r in refs {
            w.qr_refs.remove(&r);
        }
    }
    w.send(conn, Outbound::Node(node));
    Ok(ScanResponse {
        jid: format!("{phone}:{device}@{SERVER}"),
        lid: format!("{lid}:{device}@lid"),
        device,
    })
}

fn pair_success_node(
    iq_id: &str,
    phone: &str,
    lid: &str,
    device: u16,
    identity: Vec<u8>,
    push_name: &str,
) -> Node {
    let kids = vec![
        NodeBuilder::new("device-identity").bytes(identity).build(),
        NodeBuilder::new("device")
            .attr("jid", format!("{phone}:{device}@{SERVER}"))
            .attr("lid", format!("{lid}:{device}@lid"))
            .build(),
        NodeBuilder::new("platform").attr("name", "smba").build(),
    ];
    let _ = push_name;
    NodeBuilder::new("iq")
        .attr("from", SERVER)
        .attr("type", "set")
        .attr("id", iq_id.to_string())
        .attr("xmlns", "md")
        .children([NodeBuilder::new("pair-success").children(kids).build()])
        .build()
}

/// `md` / `link_code_companion_reg`: the pairing-code flow, companion side.
/// `companion_hello` registers the code-wrapped ephemeral and returns a ref;
/// `companion_finish` carries the key bundle once the phone confirmed.
pub(crate) async fn pair_code_request(c: &mut Conn, id: &str, node: &Node) -> Result<HandleFlow> {
    let Some(reg) = nodes::child(node, "link_code_companion_reg") else {
        c.send_node(&iq_error(id, 400, "bad-request")).await?;
        return Ok(keep());
    };
    let stage = nodes::attr(reg, "stage").unwrap_or_default();
    let field = |tag: &str| {
        nodes::child(reg, tag)
            .and_then(nodes::bytes)
            .map(<[u8]>::to_vec)
    };
    let phone = nodes::jid_user(&nodes::attr(reg, "jid").unwrap_or_default()).to_string();
    match stage.as_str() {
        "companion_hello" => {
            let wrapped = field("link_code_pairing_wrapped_companion_ephemeral_pub");
            let noise = field("companion_server_auth_key_pub");
            let reply = {
                let mut w = c.sim.world();
                let reg_ok = w
                    .conns
                    .get(&c.id)
                    .and_then(|e| e.registration.as_ref())
                    .is_some_and(|r| noise.as_deref() == Some(&r.noise_pub[..]));
                match wrapped {
                    Some(wrapped) if reg_ok && wrapped.len() == 80 && phone.len() >= 5 => {
                        let pairing_ref = crate::iq::random_ref();
                        w.pending_codes.retain(|p| p.conn != c.id);
                        w.pending_codes.push(PendingCode {
                            conn: c.id,
                            phone: phone.clone(),
                            pairing_ref: pairing_ref.clone(),
                            wrapped_companion_ephemeral: wrapped,
                            confirmed: None,
                            created_at: nodes::now_secs(),
                        });
                        info!(conn = c.id, "pairing code requested for {phone}");
                        nodes::iq_result(
                            id,
                            vec![NodeBuilder::new("link_code_companion_reg")
                                .children([NodeBuilder::new("link_code_pairing_ref")
                                    .bytes(pairing_ref.into_bytes())
                                    .build()])
                                .build()],
                        )
                    }
                    _ => iq_error(id, 400, "bad-request"),
                }
            };
            c.send_node(&reply).await?;
        }
        "companion_finish" => {
            let bundle = field("link_code_pairing_wrapped_key_bundle").unwrap_or_default();
            let pairing_ref = field("link_code_pairing_ref").unwrap_or_default();
            let outcome = {
                let mut w = c.sim.world();
                finish_code_pairing(&mut w, c.id, &phone, &bundle, &pairing_ref)
            };
            match outcome {
                Ok(()) => c.send_node(&nodes::iq_result(id, vec![])).await?,
                Err(e) => {
                    tracing::warn!(conn = c.id, "companion_finish refused: {e:#}");
                    c.send_node(&iq_error(id, 400, "bad-request")).await?;
                }
            }
        }
        _ => {
            c.sim
                .world()
                .record_unhandled(None, format!("pairing code: {}", nodes::render(node)));
            c.send_node(&iq_error(id, 501, "feature-not-implemented"))
                .await?;
        }
    }
    Ok(keep())
}

fn finish_code_pairing(
    w: &mut crate::state::World,
    conn: u64,
    phone: &str,
    bundle: &[u8],
    pairing_ref: &[u8],
) -> Result<()> {
    let pos = w
        .pending_codes
        .iter()
        .position(|p| p.conn == conn && p.pairing_ref.as_bytes() == pairing_ref)
        .ok_or_else(|| anyhow::anyhow!("no pairing code with this ref on this socket"))?;
    if w.pending_codes[pos].phone != phone {
        anyhow::bail!("companion_finish names another phone");
    }
    let pending = w.pending_codes.remove(pos);
    let confirmed = pending
        .confirmed
        .ok_or_else(|| anyhow::anyhow!("the phone has not confirmed the code"))?;
    let reg = w
        .conns
        .get(&conn)
        .and_then(|c| c.registration.clone())
        .ok_or_else(|| anyhow::anyhow!("socket has no registration"))?;
    let account_key = w.account_mut(phone).account_key.clone();
    let (companion_identity, adv) = crate::pairing::open_key_bundle(
        bundle,
        &confirmed.primary_ephemeral,
        &confirmed.companion_ephemeral_pub,
        &account_key,
    )?;
    if companion_identity != reg.identity_pub {
        anyhow::bail!("key bundle identity differs from the registered one");
    }
    link_device(w, conn, phone, confirmed.name.as_deref(), &adv, reg)?;
    Ok(())
}

#[derive(Deserialize)]
pub struct PairCodeConfirm {
    pub phone: String,
    pub code: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /control/pair-code {"phone", "code", "name"?}`: the phone's user
/// types the code the companion shows ("Link with phone number instead").
pub async fn confirm_pair_code(
    State(sim): State<Sim>,
    Json(req): Json<PairCodeConfirm>,
) -> Result<Json<serde_json::Value>, ApiError> {
    valid_phone(&req.phone)?;
    let code: String = req.code.chars().filter(|c| *c != '-').collect();
    if code.len() != 8 {
        return Err(bad_request("code must be 8 characters"));
    }
    let (conn, wrapped, pairing_ref) = {
        let w = sim.world();
        let p = w
            .pending_codes
            .iter()
            .rev()
            .find(|p| p.phone == req.phone)
            .ok_or_else(|| not_found("no device is waiting for a code for this phone"))?;
        (
            p.conn,
            p.wrapped_companion_ephemeral.clone(),
            p.pairing_ref.clone(),
        )
    };
    // PBKDF2 with 131072 rounds, twice: keep it off the async workers.
    let code2 = code.clone();
    let (companion_pub, primary, wrapped_primary) = tokio::task::spawn_blocking(move || {
        let companion_pub = crate::pairing::unwrap_code_ephemeral(&wrapped, &code2)?;
        let primary = wacore_libsignal::protocol::KeyPair::generate(&mut rand::rng());
        let wrapped_primary =
            crate::pairing::wrap_code_ephemeral(primary.public_key.public_key_bytes(), &code2);
        anyhow::Ok((companion_pub, primary, wrapped_primary))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| bad_request(format!("{e:#}")))?;

    let mut w = sim.world();
    let account_pub = w
        .account_mut(&req.phone)
        .account_key
        .public_key
        .public_key_bytes()
        .to_vec();
    let p = w
        .pending_codes
        .iter_mut()
        .find(|p| p.conn == conn && p.pairing_ref == pairing_ref)
        .ok_or_else(|| not_found("the device went away"))?;
    p.confirmed = Some(ConfirmedCode {
        companion_ephemeral_pub: companion_pub,
        primary_ephemeral: primary,
        name: req.name.clone(),
    });
    let notif = NodeBuilder::new("notification")
        .attr("type", "link_code_companion_reg")
        .attr("from", SERVER)
        .attr("id", crate::iq::random_id())
        .attr("t", nodes::now_secs().to_string())
        .children([NodeBuilder::new("link_code_companion_reg")
            .attr("stage", "primary_hello")
            .children([
                NodeBuilder::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                    .bytes(wrapped_primary)
                    .build(),
                NodeBuilder::new("primary_identity_pub")
                    .bytes(account_pub)
                    .build(),
                NodeBuilder::new("link_code_pairing_ref")
                    .bytes(pairing_ref.into_bytes())
                    .build(),
            ])
            .build()])
        .build();
    w.send(conn, Outbound::Node(notif));
    info!("phone {} confirmed a pairing code", req.phone);
    Ok(Json(json!({"confirmed": true})))
}

#[derive(Deserialize)]
pub struct DirectoryAdd {
    pub phones: Vec<String>,
}

/// `POST /control/directory {"phones": [..]}`: numbers that are "on WhatsApp".
pub async fn add_directory(
    State(sim): State<Sim>,
    Json(req): Json<DirectoryAdd>,
) -> Result<Json<serde_json::Value>, ApiError> {
    for p in &req.phones {
        valid_phone(p)?;
    }
    let entries: Vec<_> = req
        .phones
        .iter()
        .map(|p| json!({"phone": p, "lid": format!("{}@lid", sim.add_number(p))}))
        .collect();
    Ok(Json(json!({ "added": entries })))
}

/// `GET /control/directory`
pub async fn list_directory(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let w = sim.world();
    let entries: Vec<_> = w
        .directory
        .iter()
        .map(|(p, l)| json!({"phone": p, "lid": format!("{l}@lid"), "account": w.accounts.contains_key(p)}))
        .collect();
    Json(json!({ "numbers": entries }))
}

/// `GET /control/accounts`
pub async fn list_accounts(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let w = sim.world();
    let accounts: Vec<_> = w
        .accounts
        .values()
        .map(|a| {
            json!({
                "phone": a.phone,
                "lid": format!("{}@lid", a.lid),
                "push_name": a.push_name,
                "devices": a.devices.values().collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "accounts": accounts }))
}

/// `GET /control/connections`
pub async fn list_connections(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let w = sim.world();
    let conns: Vec<_> = w
        .conns
        .iter()
        .map(|(id, c)| {
            json!({
                "id": id,
                "jid": c.device.as_ref().map(|(p, d)| format!("{p}:{d}@{SERVER}")),
                "pairing": c.registration.is_some() && c.device.is_none(),
                "connected_at": c.connected_at,
                "available": c.available,
                "pings": c.pings,
            })
        })
        .collect();
    Json(json!({ "connections": conns }))
}

/// `GET /control/qr`: refs currently issued to unpaired sockets.
pub async fn list_qr(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let w = sim.world();
    let refs: Vec<_> = w
        .qr_refs
        .iter()
        .map(|(r, c)| json!({"ref": r, "connection": c}))
        .collect();
    Json(json!({ "refs": refs }))
}

#[derive(Deserialize)]
pub struct FaultRequest {
    /// `PHONE:DEVICE@s.whatsapp.net` (or `PHONE:DEVICE`).
    pub jid: String,
    /// `close`, `restart` (515), `logout` (401), `replaced` (conflict),
    /// `ignore_pings`, `answer_pings`, `ban` (refuse next logins with 402),
    /// `corrupt_messages` (the next `count` messages to the device arrive
    /// undecryptable, so it sends retry receipts).
    pub kind: String,
    /// For `ban`: how many logins to refuse (default 1).
    #[serde(default)]
    pub count: Option<u32>,
}

fn parse_device(jid: &str) -> Option<(String, u16)> {
    let user = jid.split('@').next()?;
    let (phone, dev) = user.split_once(':')?;
    Some((phone.to_string(), dev.parse().ok()?))
}

/// `POST /control/fault {"jid", "kind", "count"?}`
pub async fn fault(
    State(sim): State<Sim>,
    Json(req): Json<FaultRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (phone, dev) =
        parse_device(&req.jid).ok_or_else(|| bad_request("jid must be PHONE:DEVICE@..."))?;
    let mut w = sim.world();
    let conn = w.conn_of_device(&phone, dev);
    let need_conn = |c: Option<u64>| c.ok_or_else(|| not_found("device is not connected"));
    let delivered = match req.kind.as_str() {
        "close" => w.send(need_conn(conn)?, Outbound::Close),
        "restart" => w.send(
            need_conn(conn)?,
            Outbound::NodeThenClose(nodes::stream_error(Some("515"), None)),
        ),
        "logout" => {
            if let Some(a) = w.accounts.get_mut(&phone) {
                a.devices.remove(&dev);
            }
            crate::route::device_notification(&mut w, &phone, dev, false);
            match conn {
                Some(c) => w.send(
                    c,
                    Outbound::NodeThenClose(nodes::stream_error(Some("401"), None)),
                ),
                None => false,
            }
        }
        "replaced" => w.send(
            need_conn(conn)?,
            Outbound::NodeThenClose(nodes::stream_error(None, Some("replaced"))),
        ),
        "ignore_pings" | "answer_pings" => {
            let on = req.kind == "ignore_pings";
            w.faults
                .entry((phone.clone(), dev))
                .or_insert_with(DeviceFaults::default)
                .ignore_pings = on;
            if let Some(c) = conn.and_then(|c| w.conns.get_mut(&c)) {
                c.ignore_pings = on;
            }
            conn.is_some()
        }
        "corrupt_messages" => {
            w.faults
                .entry((phone.clone(), dev))
                .or_insert_with(DeviceFaults::default)
                .corrupt_messages = req.count.unwrap_or(1);
            conn.is_some()
        }
        "ban" => {
            w.faults
                .entry((phone.clone(), dev))
                .or_insert_with(DeviceFaults::default)
                .ban_logins = req.count.unwrap_or(1);
            conn.is_some()
        }
        other => return Err(bad_request(format!("unknown fault kind {other:?}"))),
    };
    info!(
        "fault {} on {phone}:{dev} (connected: {delivered})",
        req.kind
    );
    Ok(Json(json!({"applied": req.kind, "connected": delivered})))
}

/// `GET /control/chatstates`
pub async fn list_chatstates(State(sim): State<Sim>) -> Json<serde_json::Value> {
    Json(json!({ "chatstates": sim.world().chatstates }))
}

/// `GET /control/presences`
pub async fn list_presences(State(sim): State<Sim>) -> Json<serde_json::Value> {
    Json(json!({ "presences": sim.world().presences }))
}

/// `GET /control/unhandled`: every stanza or query the simulator did not understand.
pub async fn list_unhandled(State(sim): State<Sim>) -> Json<serde_json::Value> {
    Json(json!({ "unhandled": sim.world().unhandled }))
}

/// `PUT /control/accounts/{phone}/history`: the history the phone pushes
/// to each device that links from now on.
pub async fn put_history(
    State(sim): State<Sim>,
    axum::extract::Path(phone): axum::extract::Path<String>,
    Json(h): Json<crate::history::History>,
) -> Result<Json<serde_json::Value>, ApiError> {
    valid_phone(&phone)?;
    let n = h.conversations.len();
    sim.world().account_mut(&phone).history = Some(h);
    Ok(Json(json!({"conversations": n})))
}

/// `POST /control/accounts/{phone}/chat-settings`: archive, pin, mute, mark
/// read or delete a chat "on the phone"; linked devices get app-state
/// mutations.
pub async fn post_chat_settings(
    State(sim): State<Sim>,
    axum::extract::Path(phone): axum::extract::Path<String>,
    Json(c): Json<crate::appstate::ChatSettingsChange>,
) -> Result<Json<serde_json::Value>, ApiError> {
    valid_phone(&phone)?;
    let mut w = sim.world();
    if !w.accounts.contains_key(&phone) {
        return Err(not_found(format!("no account {phone}")));
    }
    let n = crate::appstate::apply_change(&mut w, &phone, &c)
        .map_err(|e| bad_request(format!("{e:#}")))?;
    Ok(Json(json!({"mutations": n})))
}

/// `GET /control/accounts/{phone}/chat-settings`: every chat's settings as
/// the account's app state says (from the phone and from linked devices).
pub async fn get_chat_settings(
    State(sim): State<Sim>,
    axum::extract::Path(phone): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = sim.world();
    let a = w
        .accounts
        .get(&phone)
        .ok_or_else(|| not_found(format!("no account {phone}")))?;
    let versions: serde_json::Map<String, serde_json::Value> = a
        .app_state
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.version())))
        .collect();
    Ok(Json(
        json!({"chats": a.chat_settings, "versions": versions}),
    ))
}

/// `POST /control/scenario`: loads a scenario (the `--scenario` format).
pub async fn post_scenario(
    State(sim): State<Sim>,
    Json(v): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s: crate::scenario::Scenario =
        serde_json::from_value(v).map_err(|e| bad_request(format!("scenario: {e}")))?;
    let summary = crate::scenario::load(&sim, s).map_err(|e| bad_request(format!("{e:#}")))?;
    Ok(Json(summary))
}

/// `GET /control/stats`: routing counters (benchmarks).
pub async fn stats(State(sim): State<Sim>) -> Json<serde_json::Value> {
    let w = sim.world();
    Json(json!({
        "routed": w.routed,
        "script_sent": w.script_sent,
        "retry_receipts": w.retry_receipts,
        "accounts": w.accounts.len(),
        "groups": w.groups.len(),
        "media_blobs": w.media.len(),
    }))
}
