//! App state (syncd): per account, per collection, a list of patches
//! encrypted with the account's app-state key. The phone writes mutations
//! (the push name, chat settings done "on the phone"); linked devices push
//! their own patches, which are stored, announced to the account's other
//! devices (`<notification type="server_sync">`) and served on sync.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};
use wacore_appstate::hash::{generate_patch_mac, HashState};
use wacore_appstate::keys::{expand_app_state_keys, ExpandedAppStateKeys};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;
use waproto::buffa::{Message as _, MessageField};
use waproto::whatsapp::{self as wa, sync_action_value as sav, syncd_mutation::SyncdOperation};

use crate::nodes::{attr, bytes, child, children, now_secs, SERVER};
use crate::state::{Account, World};

/// One collection's server-side state.
#[derive(Default)]
pub struct Collection {
    /// Encoded `SyncdPatch`es; patch `i` has version `i + 1`.
    pub patches: Vec<Vec<u8>>,
    hash: HashState,
    /// Index MAC → value MAC of every live entry.
    values: HashMap<Vec<u8>, Vec<u8>>,
}

impl Collection {
    pub fn version(&self) -> u64 {
        self.patches.len() as u64
    }
}

/// What the account's chats look like after every mutation so far:
/// chat JID → `{"archived", "pinned", "mutedUntil", "read", "deleted"}`.
pub type ChatSettings = BTreeMap<String, Map<String, Value>>;

fn keys(a: &Account) -> ExpandedAppStateKeys {
    expand_app_state_keys(&a.app_state_key.data)
}

/// Applies a patch to the collection's hash and the account's decoded
/// view; stores it.
fn apply(a: &mut Account, name: &str, patch: wa::SyncdPatch) -> Result<()> {
    let k = keys(a);
    let key_id = a.app_state_key.id.clone();
    let col = a.app_state.entry(name.to_string()).or_default();
    let version = patch
        .version
        .as_option()
        .and_then(|v| v.version)
        .ok_or_else(|| anyhow!("patch without version"))?;
    if version != col.version() + 1 {
        bail!("patch version {version} does not follow {}", col.version());
    }
    let values = &col.values;
    let (_, r) = col.hash.update_hash(&patch.mutations, |index_mac, _| {
        Ok(values.get(index_mac).cloned())
    });
    r?;
    col.hash.version = version;
    for m in &patch.mutations {
        let op = m
            .operation
            .and_then(|o| o.as_known())
            .unwrap_or(SyncdOperation::SET);
        let Some(record) = m.record.as_option() else {
            continue;
        };
        let index_mac = record.index.blob.clone().unwrap_or_default();
        let value_mac = record
            .value
            .blob
            .as_ref()
            .filter(|b| b.len() >= 32)
            .map(|b| b[b.len() - 32..].to_vec())
            .unwrap_or_default();
        match op {
            SyncdOperation::REMOVE => {
                col.values.remove(&index_mac);
            }
            _ => {
                col.values.insert(index_mac, value_mac);
            }
        }
        if let Ok((decoded, _)) =
            wacore_appstate::decode::decode_record(op, record, &k, &key_id, false)
        {
            record_setting(
                &mut a.chat_settings,
                &decoded.index,
                decoded.action_value.as_ref(),
            );
        }
    }
    col.patches.push(patch.encode_to_vec());
    Ok(())
}

/// Updates the decoded chat-settings view from one mutation.
fn record_setting(
    settings: &mut ChatSettings,
    index: &[String],
    value: Option<&wa::SyncActionValue>,
) {
    let (Some(kind), Some(chat), Some(v)) = (index.first(), index.get(1), value) else {
        return;
    };
    let e = settings.entry(chat.clone()).or_default();
    match kind.as_str() {
        "archive" => {
            if let Some(x) = v.archive_chat_action.as_option() {
                e.insert("archived".into(), json!(x.archived.unwrap_or(false)));
            }
        }
        "pin_v1" => {
            if let Some(x) = v.pin_action.as_option() {
                e.insert("pinned".into(), json!(x.pinned.unwrap_or(false)));
            }
        }
        "mute" => {
            if let Some(x) = v.mute_action.as_option() {
                let until = if x.muted.unwrap_or(false) {
                    x.mute_end_timestamp.unwrap_or(-1)
                } else {
                    0
                };
                e.insert("mutedUntil".into(), json!(until));
            }
        }
        "markChatAsRead" => {
            if let Some(x) = v.mark_chat_as_read_action.as_option() {
                e.insert("read".into(), json!(x.read.unwrap_or(false)));
            }
        }
        "deleteChat" => {
            e.insert("deleted".into(), json!(true));
        }
        _ => {}
    }
}

/// The phone writes one patch of `mutations` `(index, value, action version)`
/// into `name`, then tells the account's linked devices.
pub fn phone_patch(
    w: &mut World,
    phone: &str,
    name: &str,
    mutations: Vec<(Vec<String>, wa::SyncActionValue, i32)>,
) -> Result<u64> {
    let a = w
        .accounts
        .get_mut(phone)
        .ok_or_else(|| anyhow!("no account {phone}"))?;
    let k = keys(a);
    let key_id = a.app_state_key.id.clone();
    let mut muts = Vec::new();
    for (index, value, version) in mutations {
        let index_json = serde_json::to_vec(&index)?;
        let iv: [u8; 16] = rand::random();
        let (m, _) = wacore_appstate::encode::encode_record(
            SyncdOperation::SET,
            &index_json,
            &value,
            &k,
            &key_id,
            &iv,
            version,
        );
        muts.push(m);
    }
    let col = a.app_state.entry(name.to_string()).or_default();
    let version = col.version() + 1;
    let mut hash = col.hash.clone();
    let values = col.values.clone();
    let (_, r) = hash.update_hash(&muts, |index_mac, _| Ok(values.get(index_mac).cloned()));
    r?;
    hash.version = version;
    let mut patch = wa::SyncdPatch {
        version: MessageField::some(wa::SyncdVersion {
            version: Some(version),
        }),
        mutations: muts,
        key_id: MessageField::some(wa::KeyId {
            id: Some(key_id.clone()),
        }),
        snapshot_mac: Some(hash.generate_snapshot_mac(name, &k.snapshot_mac)),
        ..Default::default()
    };
    patch.patch_mac = Some(generate_patch_mac(&patch, name, &k.patch_mac, version));
    apply(a, name, patch)?;
    notify(w, phone, None, name, version);
    Ok(version)
}

/// `<notification type="server_sync">` to every linked device of `phone`
/// except `except`.
fn notify(w: &mut World, phone: &str, except: Option<u16>, name: &str, version: u64) {
    let devices: Vec<u16> = w
        .accounts
        .get(phone)
        .map(|a| a.devices.keys().copied().collect())
        .unwrap_or_default();
    for d in devices {
        if Some(d) == except {
            continue;
        }
        let n = NodeBuilder::new("notification")
            .attr("from", SERVER)
            .attr("type", "server_sync")
            .attr("id", crate::iq::random_id())
            .attr("t", now_secs().to_string())
            .children([NodeBuilder::new("collection")
                .attr("name", name.to_string())
                .attr("version", version.to_string())
                .build()])
            .build();
        crate::route::deliver(w, phone, d, n);
    }
}

/// Answers `<iq xmlns="w:sync:app:state"><sync>`: pushed patches are
/// stored (409 when based on an old version), and each collection gets the
/// patches after the version the device has.
pub fn sync(w: &mut World, phone: &str, device: u16, id: &str, sync: &Node) -> Node {
    let mut out = Vec::new();
    for c in children(sync).iter().filter(|n| n.tag == "collection") {
        let Some(name) = attr(c, "name") else {
            continue;
        };
        let have: u64 = attr(c, "version").and_then(|v| v.parse().ok()).unwrap_or(0);
        if let Some(p) = child(c, "patch").and_then(bytes) {
            let result = w
                .accounts
                .get_mut(phone)
                .ok_or_else(|| anyhow!("no account"))
                .and_then(|a| {
                    let current = a.app_state.get(&name).map_or(0, Collection::version);
                    if have != current {
                        return Err(anyhow!("conflict"));
                    }
                    let mut patch = wa::SyncdPatch::decode_from_slice(p)?;
                    // The server stamps the version the patch becomes.
                    patch.version = MessageField::some(wa::SyncdVersion {
                        version: Some(current + 1),
                    });
                    apply(a, &name, patch)?;
                    Ok(current + 1)
                });
            match result {
                Ok(v) => {
                    notify(w, phone, Some(device), &name, v);
                    out.push(
                        NodeBuilder::new("collection")
                            .attr("name", name.clone())
                            .attr("version", v.to_string())
                            .build(),
                    );
                }
                Err(e) => {
                    tracing::info!(
                        "app-state patch for {name} from {phone}:{device} refused: {e:#}"
                    );
                    out.push(
                        NodeBuilder::new("collection")
                            .attr("name", name.clone())
                            .attr("type", "error")
                            .children([NodeBuilder::new("error")
                                .attr("code", "409")
                                .attr("text", "conflict")
                                .build()])
                            .build(),
                    );
                }
            }
            continue;
        }
        let col = w.accounts.get(phone).and_then(|a| a.app_state.get(&name));
        let version = col.map_or(0, Collection::version);
        let mut b = NodeBuilder::new("collection")
            .attr("name", name.clone())
            .attr("version", version.to_string());
        if let Some(col) = col {
            let newer: Vec<Node> = col
                .patches
                .iter()
                .skip(have as usize)
                .map(|p| NodeBuilder::new("patch").bytes(p.clone()).build())
                .collect();
            if !newer.is_empty() {
                b = b
                    .attr("has_more_patches", "false")
                    .children([NodeBuilder::new("patches").children(newer).build()]);
            }
        }
        out.push(b.build());
    }
    crate::nodes::iq_result(id, vec![NodeBuilder::new("sync").children(out).build()])
}

/// The push name as the phone syncs it (`setting_pushName`, critical_block).
pub fn set_push_name(w: &mut World, phone: &str, name: &str) -> Result<()> {
    let value = wa::SyncActionValue {
        timestamp: Some(crate::state::now_ms() as i64),
        push_name_setting: MessageField::some(sav::PushNameSetting {
            name: Some(name.to_string()),
        }),
        ..Default::default()
    };
    phone_patch(
        w,
        phone,
        "critical_block",
        vec![(vec!["setting_pushName".into()], value, 1)],
    )?;
    Ok(())
}

/// A chat-settings change made on the phone (control API).
#[derive(serde::Deserialize, Default)]
pub struct ChatSettingsChange {
    pub chat: String,
    #[serde(default)]
    pub archived: Option<bool>,
    #[serde(default)]
    pub pinned: Option<bool>,
    /// Milliseconds since the epoch; 0 unmutes, -1 mutes forever.
    #[serde(default, rename = "mutedUntil")]
    pub muted_until: Option<i64>,
    #[serde(default)]
    pub read: Option<bool>,
    #[serde(default)]
    pub deleted: Option<bool>,
}

fn range() -> MessageField<sav::SyncActionMessageRange> {
    MessageField::some(sav::SyncActionMessageRange {
        last_message_timestamp: Some(now_secs() as i64),
        ..Default::default()
    })
}

/// Writes the change as the mutations WhatsApp uses, one patch per
/// collection. Returns how many mutations were written.
pub fn apply_change(w: &mut World, phone: &str, c: &ChatSettingsChange) -> Result<usize> {
    let chat = crate::people::chat_jid(&c.chat);
    let ts = Some(crate::state::now_ms() as i64);
    let mut low = Vec::new();
    let mut high = Vec::new();
    if let Some(archived) = c.archived {
        low.push((
            vec!["archive".into(), chat.clone()],
            wa::SyncActionValue {
                timestamp: ts,
                archive_chat_action: MessageField::some(sav::ArchiveChatAction {
                    archived: Some(archived),
                    message_range: range(),
                }),
                ..Default::default()
            },
            3,
        ));
    }
    if let Some(pinned) = c.pinned {
        low.push((
            vec!["pin_v1".into(), chat.clone()],
            wa::SyncActionValue {
                timestamp: ts,
                pin_action: MessageField::some(sav::PinAction {
                    pinned: Some(pinned),
                }),
                ..Default::default()
            },
            5,
        ));
    }
    if let Some(read) = c.read {
        low.push((
            vec!["markChatAsRead".into(), chat.clone()],
            wa::SyncActionValue {
                timestamp: ts,
                mark_chat_as_read_action: MessageField::some(sav::MarkChatAsReadAction {
                    read: Some(read),
                    message_range: range(),
                }),
                ..Default::default()
            },
            3,
        ));
    }
    if let Some(until) = c.muted_until {
        high.push((
            vec!["mute".into(), chat.clone()],
            wa::SyncActionValue {
                timestamp: ts,
                mute_action: MessageField::some(sav::MuteAction {
                    muted: Some(until != 0),
                    mute_end_timestamp: (until != 0).then_some(until),
                    ..Default::default()
                }),
                ..Default::default()
            },
            2,
        ));
    }
    if c.deleted == Some(true) {
        high.push((
            vec!["deleteChat".into(), chat.clone(), "1".into()],
            wa::SyncActionValue {
                timestamp: ts,
                delete_chat_action: MessageField::some(sav::DeleteChatAction {
                    message_range: range(),
                }),
                ..Default::default()
            },
            6,
        ));
    }
    let n = low.len() + high.len();
    if n == 0 {
        bail!("nothing to change: give archived, pinned, mutedUntil, read or deleted");
    }
    if !low.is_empty() {
        phone_patch(w, phone, "regular_low", low)?;
    }
    if !high.is_empty() {
        phone_patch(w, phone, "regular_high", high)?;
    }
    Ok(n)
}
