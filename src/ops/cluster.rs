//! `outpost cluster`: a node's view of its cluster (`GET /cluster`) as a table. Exit status
//! 1 if a member is down.

use std::fmt::Write as _;

use super::OpsError;
use super::client::AdminClient;

pub async fn fetch(client: &AdminClient) -> Result<serde_json::Value, OpsError> {
    client.get_json("/cluster").await
}

/// A member entry of `GET /cluster` in one word: `self`, `leaving`, `up` or `DOWN`.
pub(super) fn member_state(m: &serde_json::Value) -> &'static str {
    if m["self"] == true {
        "self"
    } else if m["leaving"] == true {
        "leaving"
    } else if m["alive"] == true {
        "up"
    } else {
        "DOWN"
    }
}

/// The page as lines; and whether every member is up.
pub fn render(page: &serde_json::Value) -> (String, bool) {
    let mut out = String::new();
    let region = page["region"]
        .as_str()
        .map(|r| format!(" (region {r})"))
        .unwrap_or_default();
    let _ = writeln!(out, "node {}{region}", page["node"].as_str().unwrap_or("?"));
    if page["enabled"] == false {
        let _ = writeln!(out, "not in a cluster: it owns every key");
        return (out, true);
    }
    let _ = writeln!(
        out,
        "membership changed {}",
        page["membership_changed"].as_str().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "{:<24} {:<22} {:<8} {:>6}  since",
        "member", "address", "state", "share"
    );
    let mut all_up = true;
    for m in page["members"].as_array().into_iter().flatten() {
        let state = member_state(m);
        all_up &= state != "DOWN";
        let share = m["share"]
            .as_f64()
            .map_or("-".to_owned(), |s| format!("{:.1}%", s * 100.0));
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<8} {:>6}  {}",
            m["name"].as_str().unwrap_or("?"),
            m["address"].as_str().unwrap_or("?"),
            state,
            share,
            m["last_change"].as_str().unwrap_or("-")
        );
    }
    if let Some(shields) = page["shields"].as_object() {
        for (site, nodes) in shields {
            for n in nodes.as_array().into_iter().flatten() {
                let state = if n["alive"] == true { "up" } else { "DOWN" };
                let _ = writeln!(
                    out,
                    "shield of {site:<14} {:<22} {state}",
                    n["address"].as_str().unwrap_or("?")
                );
            }
        }
    }
    (out, all_up)
}
