//! `outpost purge URL… [--tag T] [--soft]`: `POST /purge` on a node, and its answer as a
//! person reads it: what each URL and tag purged, every node's confirmation, and the nodes
//! that did not confirm. Exit status 1 unless every node confirmed.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{Method, StatusCode};

use super::OpsError;
use super::client::{AdminClient, refused};

/// What to purge.
#[derive(Debug, Default, Clone)]
pub struct Purge {
    pub urls: Vec<String>,
    pub tags: Vec<String>,
    pub soft: bool,
}

/// Send the purge; the node's answer.
pub async fn send(client: &AdminClient, purge: &Purge) -> Result<serde_json::Value, OpsError> {
    if purge.urls.is_empty() && purge.tags.is_empty() {
        return Err(OpsError::Usage(
            "give URLs (absolute: https://example.com/a) or --tag TAG to purge".to_owned(),
        ));
    }
    let body = serde_json::json!({ "urls": purge.urls, "tags": purge.tags, "soft": purge.soft });
    let (status, answer) = client
        .exchange(Method::POST, "/purge", Bytes::from(body.to_string()))
        .await?;
    if status != StatusCode::OK {
        return Err(refused(status, &answer));
    }
    serde_json::from_slice(&answer).map_err(|e| OpsError::Answer(e.to_string()))
}

/// The answer as lines; and whether every node confirmed.
pub fn render(answer: &serde_json::Value) -> (String, bool) {
    let mut out = String::new();
    let soft = if answer["soft"] == true {
        " (soft)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "purge {}{soft}: {}",
        answer["id"].as_str().unwrap_or("-"),
        entries(answer["purged"].as_u64().unwrap_or(0))
    );
    for url in answer["urls"].as_array().into_iter().flatten() {
        let what = match (&url["purged"], &url["error"]) {
            (_, serde_json::Value::String(e)) => format!("error: {e}"),
            (serde_json::Value::Bool(true), _) => "purged".to_owned(),
            _ => "not cached".to_owned(),
        };
        let _ = writeln!(out, "  url  {}  {what}", url["url"].as_str().unwrap_or("?"));
    }
    for tag in answer["tags"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  tag  {}  {}",
            tag["tag"].as_str().unwrap_or("?"),
            entries(tag["purged"].as_u64().unwrap_or(0))
        );
    }
    let groups = [("node", &answer["nodes"]), ("shield", &answer["shields"])];
    for (kind, list) in groups {
        for node in list.as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {kind}  {}", node_line(node));
        }
    }
    if let Some(regions) = answer["regions"].as_object() {
        for (region, list) in regions {
            for node in list.as_array().into_iter().flatten() {
                let _ = writeln!(out, "  region {region}  {}", node_line(node));
            }
        }
    }
    // A node that was not in a cluster answers for itself alone.
    let complete = answer.get("complete").is_none_or(|c| *c == true);
    if !complete {
        let names: Vec<String> = answer["unconfirmed"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                format!(
                    "{} ({})",
                    n["node"].as_str().unwrap_or("?"),
                    n["address"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let _ = writeln!(out, "NOT CONFIRMED by: {}", names.join(", "));
    }
    (out, complete)
}

fn node_line(node: &serde_json::Value) -> String {
    let name = node["node"].as_str().unwrap_or("?");
    let address = node["address"].as_str().unwrap_or("?");
    match node["error"].as_str() {
        Some(error) => format!("{name} ({address})  did not confirm: {error}"),
        None => format!(
            "{name} ({address})  ok, {}",
            entries(node["result"]["purged"].as_u64().unwrap_or(0))
        ),
    }
}

/// `1 entry`, `2 entries`.
fn entries(n: u64) -> String {
    if n == 1 {
        "1 entry".to_owned()
    } else {
        format!("{n} entries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfirmed_node_is_named_and_fails_the_command() {
        let answer = serde_json::json!({
            "id": "1@a", "purged": 2, "soft": false, "complete": false,
            "urls": [{"url": "http://x/a", "purged": true}],
            "tags": [],
            "nodes": [
                {"node": "a", "address": "10.0.0.1:80", "result": {"purged": 2}},
                {"node": "b", "address": "10.0.0.2:80", "error": "timed out"}
            ],
            "unconfirmed": [{"node": "b", "address": "10.0.0.2:80", "timed_out": true}]
        });
        let (text, complete) = render(&answer);
        assert!(!complete);
        assert!(text.contains("url  http://x/a  purged"), "{text}");
        assert!(
            text.contains("b (10.0.0.2:80)  did not confirm: timed out"),
            "{text}"
        );
        assert!(text.contains("NOT CONFIRMED by: b (10.0.0.2:80)"), "{text}");
    }
}
