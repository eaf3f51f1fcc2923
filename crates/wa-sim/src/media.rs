//! Media: encrypted blobs uploaded to and downloaded from the simulator.

use serde_json::{json, Value};
use waproto::whatsapp::message as wm;

pub fn describe_image(x: &wm::ImageMessage) -> Value {
    json!({"url": x.url, "directPath": x.direct_path, "fileLength": x.file_length})
}

pub fn describe_document(x: &wm::DocumentMessage) -> Value {
    json!({"url": x.url, "directPath": x.direct_path, "fileLength": x.file_length})
}
