//! Groups: membership, metadata, and the fan-out of group messages.

use serde::Serialize;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::Node;

use crate::nodes::{attr, child, children, iq_error, iq_result, now_secs, text};
use crate::route::{deliver, devices_of, Routed};
use crate::state::World;

#[derive(Clone, Debug, Serialize)]
pub struct Participant {
    pub phone: String,
    /// `None`, `admin` or `superadmin`.
    pub admin: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    /// The user part of the group JID (`120363...`).
    pub id: String,
    pub subject: String,
    pub subject_owner: String,
    pub subject_time: u64,
    pub description: Option<String>,
    pub description_id: Option<String>,
    pub creator: String,
    pub created: u64,
    pub participants: Vec<Participant>,
    /// LID addressing mode: members see each other by LID.
    pub lid_mode: bool,
    pub invite_code: Option<String>,
}

impl Group {
    pub fn jid(&self) -> String {
        format!("{}@g.us", self.id)
    }

    pub fn is_member(&self, phone: &str) -> bool {
        self.participants.iter().any(|p| p.phone == phone)
    }
}

/// Fans a group `<message>` out to every member device but the sender's:
/// the skmsg for all, plus the pairwise `<enc>` (sender key distribution)
/// addressed to that device, if any.
pub fn route_group_message(
    w: &mut World,
    sender: (&str, u16),
    node: &Node,
    id: &str,
    to: &str,
    t: u64,
) -> Routed {
    let gid = crate::nodes::split_jid(to).0.to_string();
    let ack = |error: Option<&str>| {
        let mut b = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id.to_string())
            .attr("from", to.to_string())
            .attr("t", t.to_string());
        if let Some(e) = error {
            b = b.attr("error", e.to_string());
        }
        b.build()
    };
    let Some(group) = w.groups.get(&gid).cloned() else {
        return Routed {
            ack: ack(Some("404")),
            delivered: 0,
            t,
        };
    };
    let (sphone, sdev) = sender;
    if !group.is_member(sphone) {
        return Routed {
            ack: ack(Some("403")),
            delivered: 0,
            t,
        };
    }
    let mut pairwise: Vec<((String, u16), Vec<Node>)> = Vec::new();
    if let Some(parts) = child(node, "participants") {
        for to_node in children(parts).iter().filter(|n| n.tag == "to") {
            let Some(jid) = attr(to_node, "jid") else {
                continue;
            };
            if let Some((p, d, _)) = w.resolve_jid(&jid) {
                pairwise.push((
                    (p, d),
                    children(to_node)
                        .iter()
                        .filter(|n| n.tag == "enc")
                        .cloned()
                        .collect(),
                ));
            }
        }
    }
    let skmsg: Vec<Node> = children(node)
        .iter()
        .filter(|n| n.tag == "enc")
        .cloned()
        .collect();
    let identity = child(node, "device-identity").cloned();
    let push_name = w
        .accounts
        .get(sphone)
        .map(|a| a.push_name.clone())
        .unwrap_or_default();
    let lid = group.lid_mode;
    let mut delivered = 0;
    for member in &group.participants {
        for d in devices_of(w, &member.phone) {
            if member.phone == sphone && d == sdev {
                continue;
            }
            let mut encs: Vec<Node> = pairwise
                .iter()
                .filter(|((p, dd), _)| *p == member.phone && *dd == d)
                .flat_map(|(_, e)| e.clone())
                .collect();
            encs.extend(skmsg.iter().cloned());
            if encs.is_empty() {
                continue;
            }
            let mut b = NodeBuilder::new("message")
                .attr("from", group.jid())
                .attr("participant", w.jid_of(sphone, sdev, lid))
                .attr("id", id.to_string())
                .attr("t", t.to_string())
                .attr("addressing_mode", if lid { "lid" } else { "pn" });
            // In LID mode members see each other by LID only, unless they
            // have another reason to know the number (a 1:1 exchange).
            if !lid {
                b = b.attr("participant_lid", w.jid_of(sphone, 0, true));
            } else if w
                .knows
                .contains(&(member.phone.clone(), sphone.to_string()))
            {
                b = b.attr("participant_pn", w.jid_of(sphone, 0, false));
            }
            for a in ["type", "edit", "mediatype"] {
                if let Some(v) = attr(node, a) {
                    b = b.attr(a, v);
                }
            }
            if !push_name.is_empty() && member.phone != sphone {
                b = b.attr("notify", push_name.clone());
            }
            if let Some(i) = &identity {
                encs.push(i.clone());
            }
            if deliver(w, &member.phone, d, b.children(encs).build()) {
                delivered += 1;
            }
        }
    }
    w.routed += 1;
    Routed {
        ack: ack(None),
        delivered,
        t,
    }
}

/// A new group id in WhatsApp's shape (`120363` + 12 digits).
fn new_group_id(w: &World) -> String {
    loop {
        let n: u64 = rand::random::<u64>() % 1_000_000_000_000;
        let id = format!("120363{n:012}");
        if !w.groups.contains_key(&id) {
            return id;
        }
    }
}

/// Creates a group; `creator` becomes superadmin. Members are told with a
/// `<create>` notification (except the creating device, which gets the IQ
/// answer).
pub fn create(
    w: &mut World,
    creator: &str,
    creator_device: Option<u16>,
    subject: &str,
    members: &[String],
    lid_mode: bool,
    fixed_id: Option<String>,
) -> Group {
    let id = fixed_id.unwrap_or_else(|| new_group_id(w));
    let mut participants = vec![Participant {
        phone: creator.to_string(),
        admin: Some("superadmin".into()),
    }];
    for m in members {
        if m != creator && !participants.iter().any(|p| &p.phone == m) {
            w.lid_for(m);
            participants.push(Participant {
                phone: m.clone(),
                admin: None,
            });
        }
    }
    let now = now_secs();
    let g = Group {
        id: id.clone(),
        subject: subject.to_string(),
        subject_owner: creator.to_string(),
        subject_time: now,
        description: None,
        description_id: None,
        creator: creator.to_string(),
        created: now,
        participants,
        lid_mode,
        invite_code: None,
    };
    w.groups.insert(id.clone(), g.clone());
    for p in g.participants.clone() {
        let node = group_node(w, &g, &p.phone);
        let create = NodeBuilder::new("create").children([node]).build();
        let n = notification(w, &g, creator, vec![create]);
        for d in devices_of(w, &p.phone) {
            if p.phone == creator && Some(d) == creator_device {
                continue;
            }
            deliver(w, &p.phone, d, n.clone());
        }
    }
    g
}

/// The `<group>` metadata node as `viewer` sees it.
pub fn group_node(w: &World, g: &Group, viewer: &str) -> Node {
    let lid = g.lid_mode;
    let mut kids: Vec<Node> = g
        .participants
        .iter()
        .map(|p| {
            let mut b = NodeBuilder::new("participant").attr("jid", w.jid_of(&p.phone, 0, lid));
            if let Some(a) = &p.admin {
                b = b.attr("type", a.clone());
            }
            if lid {
                if p.phone == viewer || w.knows.contains(&(viewer.to_string(), p.phone.clone())) {
                    b = b.attr("phone_number", w.jid_of(&p.phone, 0, false));
                }
            } else {
                b = b.attr("lid", w.jid_of(&p.phone, 0, true));
            }
            b.build()
        })
        .collect();
    if let (Some(d), Some(id)) = (&g.description, &g.description_id) {
        kids.push(
            NodeBuilder::new("description")
                .attr("id", id.clone())
                .children([NodeBuilder::new("body").string_content(d.clone()).build()])
                .build(),
        );
    }
    NodeBuilder::new("group")
        .attr("id", g.id.clone())
        .attr("subject", g.subject.clone())
        .attr("s_t", g.subject_time.to_string())
        .attr("s_o", w.jid_of(&g.subject_owner, 0, lid))
        .attr("creator", w.jid_of(&g.creator, 0, lid))
        .attr("creation", g.created.to_string())
        .attr("size", g.participants.len().to_string())
        .attr("addressing_mode", if lid { "lid" } else { "pn" })
        .children(kids)
        .build()
}

/// A `w:gp2` notification from `actor`.
fn notification(w: &World, g: &Group, actor: &str, kids: Vec<Node>) -> Node {
    let mut b = NodeBuilder::new("notification")
        .attr("from", g.jid())
        .attr("type", "w:gp2")
        .attr("id", crate::iq::random_id())
        .attr("t", now_secs().to_string())
        .attr("participant", w.jid_of(actor, 0, g.lid_mode));
    if g.lid_mode {
        b = b.attr("addressing_mode", "lid");
    } else {
        b = b.attr("participant_lid", w.jid_of(actor, 0, true));
    }
    b.children(kids).build()
}

/// Sends `kids` as a `w:gp2` notification to every device of `to`.
fn notify(w: &mut World, g: &Group, actor: &str, to: &[String], kids: Vec<Node>) {
    let n = notification(w, g, actor, kids);
    for p in to {
        for d in devices_of(w, p) {
            deliver(w, p, d, n.clone());
        }
    }
}

fn member_phones(g: &Group) -> Vec<String> {
    g.participants.iter().map(|p| p.phone.clone()).collect()
}

/// `<iq xmlns="w:g2">` from `phone:device`.
pub fn handle_iq(w: &mut World, phone: &str, device: u16, id: &str, node: &Node) -> Node {
    let to = attr(node, "to").unwrap_or_default();
    let Some(op) = children(node).first() else {
        return iq_error(id, 400, "bad-request");
    };
    let gid = crate::nodes::split_jid(&to).0.to_string();
    match op.tag.as_ref() {
        "create" => {
            let subject = attr(op, "subject").unwrap_or_default();
            let members: Vec<String> = children(op)
                .iter()
                .filter(|n| n.tag == "participant")
                .filter_map(|n| attr(n, "jid"))
                .filter_map(|j| w.resolve_jid(&j).map(|(p, _, _)| p))
                .collect();
            let g = create(w, phone, Some(device), &subject, &members, false, None);
            if let Some(d) = child(op, "description")
                .and_then(|d| child(d, "body"))
                .and_then(text)
            {
                let g = w.groups.get_mut(&g.id).expect("just created");
                g.description = Some(d);
                g.description_id = Some(crate::iq::random_id());
            }
            let g = w.groups[&g.id].clone();
            iq_result(id, vec![group_node(w, &g, phone)])
        }
        "participating" => {
            let gs: Vec<Node> = w
                .groups
                .values()
                .filter(|g| g.is_member(phone))
                .map(|g| group_node(w, g, phone))
                .collect();
            iq_result(id, vec![NodeBuilder::new("groups").children(gs).build()])
        }
        "leave" => {
            for g in children(op).iter().filter(|n| n.tag == "group") {
                let gid = attr(g, "id").unwrap_or_default();
                let gid = crate::nodes::split_jid(&gid).0.to_string();
                if let Some(group) = w.groups.get(&gid).cloned() {
                    if group.is_member(phone) {
                        let kids = vec![NodeBuilder::new("remove")
                            .children([NodeBuilder::new("participant")
                                .attr("jid", w.jid_of(phone, 0, group.lid_mode))
                                .build()])
                            .build()];
                        notify(w, &group, phone, &member_phones(&group), kids);
                        if let Some(g) = w.groups.get_mut(&gid) {
                            g.participants.retain(|p| p.phone != phone);
                        }
                    }
                }
            }
            iq_result(id, vec![])
        }
        tag => {
            let Some(g) = w.groups.get(&gid).cloned() else {
                return iq_error(id, 404, "item-not-found");
            };
            let me = g.participants.iter().find(|p| p.phone == phone).cloned();
            let Some(me) = me else {
                return iq_error(id, 403, "forbidden");
            };
            let is_admin = me.admin.is_some();
            match tag {
                "query" => iq_result(id, vec![group_node(w, &g, phone)]),
                "add" | "remove" | "promote" | "demote" => {
                    let tag: &'static str = match tag {
                        "add" => "add",
                        "remove" => "remove",
                        "promote" => "promote",
                        _ => "demote",
                    };
                    if !is_admin {
                        return iq_error(id, 403, "forbidden");
                    }
                    let targets: Vec<(String, String)> = children(op)
                        .iter()
                        .filter(|n| n.tag == "participant")
                        .filter_map(|n| attr(n, "jid"))
                        .filter_map(|j| w.resolve_jid(&j).map(|(p, _, _)| (j, p)))
                        .collect();
                    let before = member_phones(&g);
                    let mut results = Vec::new();
                    let mut changed = Vec::new();
                    {
                        let known: Vec<String> = targets
                            .iter()
                            .filter(|(_, p)| w.directory.contains_key(p))
                            .map(|(_, p)| p.clone())
                            .collect();
                        let group = w.groups.get_mut(&gid).expect("exists");
                        for (jid, p) in &targets {
                            let member = group.participants.iter().position(|x| &x.phone == p);
                            let ok = match (tag, member) {
                                ("add", None) if known.contains(p) => {
                                    group.participants.push(Participant {
                                        phone: p.clone(),
                                        admin: None,
                                    });
                                    true
                                }
                                ("remove", Some(i)) => {
                                    group.participants.remove(i);
                                    true
                                }
                                ("promote", Some(i)) => {
                                    group.participants[i].admin = Some("admin".into());
                                    true
                                }
                                ("demote", Some(i)) => {
                                    group.participants[i].admin = None;
                                    true
                                }
                                _ => false,
                            };
                            let mut b = NodeBuilder::new("participant").attr("jid", jid.clone());
                            if ok {
                                b = b.attr("type", "200");
                                changed.push(p.clone());
                            } else {
                                b = b.attr("error", if tag == "add" { "409" } else { "404" });
                            }
                            results.push(b.build());
                        }
                    }
                    let g2 = w.groups[&gid].clone();
                    if !changed.is_empty() {
                        let parts: Vec<Node> = changed
                            .iter()
                            .map(|p| {
                                NodeBuilder::new("participant")
                                    .attr("jid", w.jid_of(p, 0, g2.lid_mode))
                                    .build()
                            })
                            .collect();
                        let kids = vec![NodeBuilder::new(tag).children(parts).build()];
                        let mut to = before;
                        for p in member_phones(&g2) {
                            if !to.contains(&p) {
                                to.push(p);
                            }
                        }
                        notify(w, &g2, phone, &to, kids);
                    }
                    iq_result(id, vec![NodeBuilder::new(tag).children(results).build()])
                }
                "subject" => {
                    let subject = text(op).unwrap_or_default();
                    let now = now_secs();
                    let g2 = {
                        let group = w.groups.get_mut(&gid).expect("exists");
                        group.subject = subject.clone();
                        group.subject_owner = phone.to_string();
                        group.subject_time = now;
                        group.clone()
                    };
                    let kids = vec![NodeBuilder::new("subject")
                        .attr("subject", subject)
                        .attr("s_o", w.jid_of(phone, 0, g2.lid_mode))
                        .attr("s_t", now.to_string())
                        .build()];
                    notify(w, &g2, phone, &member_phones(&g2), kids);
                    iq_result(id, vec![])
                }
                "description" => {
                    let new_id = attr(op, "id").unwrap_or_else(crate::iq::random_id);
                    let body = child(op, "body").and_then(text);
                    let g2 = {
                        let group = w.groups.get_mut(&gid).expect("exists");
                        group.description = body.clone();
                        group.description_id = Some(new_id.clone());
                        group.clone()
                    };
                    let inner = match body {
                        Some(b) => NodeBuilder::new("body").string_content(b).build(),
                        None => NodeBuilder::new("delete").build(),
                    };
                    let kids = vec![NodeBuilder::new("description")
                        .attr("id", new_id)
                        .children([inner])
                        .build()];
                    notify(w, &g2, phone, &member_phones(&g2), kids);
                    iq_result(id, vec![])
                }
                "invite" => {
                    let reset = attr(node, "type").as_deref() == Some("set");
                    if !is_admin {
                        return iq_error(id, 403, "forbidden");
                    }
                    let group = w.groups.get_mut(&gid).expect("exists");
                    if reset || group.invite_code.is_none() {
                        let code: String = (0..22)
                            .map(|_| {
                                let n = rand::random::<u8>() % 62;
                                (match n {
                                    0..=9 => b'0' + n,
                                    10..=35 => b'A' + n - 10,
                                    _ => b'a' + n - 36,
                                }) as char
                            })
                            .collect();
                        group.invite_code = Some(code);
                    }
                    let code = group.invite_code.clone().expect("set");
                    iq_result(
                        id,
                        vec![NodeBuilder::new("invite").attr("code", code).build()],
                    )
                }
                _ => {
                    w.record_unhandled(Some(phone.to_string()), crate::nodes::render(node));
                    iq_error(id, 501, "feature-not-implemented")
                }
            }
        }
    }
}
