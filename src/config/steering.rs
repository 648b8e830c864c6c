//! `[steering]` and `[[region]]` → [`Steering`], the input of `outpost dns-zone`.
//!
//! A node ignores both tables; they live in the same file so that one file describes a
//! deployment, and so that they get the same file:line:col errors. Everything the zone
//! generator writes into the zone (names, URLs, subnets) is checked here, since PowerDNS would
//! report a bad record only when it loads the zone, and a bad Lua string only on a query.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::ctx::Ctx;
use crate::config::error::ConfigError;
use crate::config::file::SpannedList;
use crate::config::units::HumanDuration;
use crate::steering::{Node, Region, Steering, Subnet};

pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// `[steering]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SteeringFile {
    pub(crate) zone: Spanned<String>,
    pub(crate) names: Option<SpannedList>,
    pub(crate) ttl: Option<Spanned<HumanDuration>>,
    pub(crate) check_interval: Option<Spanned<HumanDuration>>,
    pub(crate) default_region: Option<Spanned<String>>,
    pub(crate) nameservers: Option<SpannedList>,
}

/// One `[[region]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegionFile {
    pub(crate) name: Spanned<String>,
    pub(crate) subnets: Option<SpannedList>,
    pub(crate) next: Option<SpannedList>,
    pub(crate) nodes: Spanned<Vec<NodeFile>>,
}

/// `nodes = [{ name = "edge-1", address = "10.1.0.5", ready = "http://10.1.0.5:9090/readyz" }]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeFile {
    pub(crate) name: Spanned<String>,
    pub(crate) address: Spanned<String>,
    pub(crate) ready: Spanned<String>,
}

pub(crate) fn steering(
    f: Option<&Spanned<SteeringFile>>,
    regions: &[Spanned<RegionFile>],
    cx: &Ctx<'_>,
) -> Result<Option<Steering>, ConfigError> {
    let f = match (f, regions.first()) {
        (None, None) => return Ok(None),
        (None, Some(first)) => {
            let message = "[[region]] needs a [steering] table (with the zone's name)";
            return Err(cx.invalid(first.span(), "region", message));
        }
        (Some(f), None) => {
            let message = "needs at least one [[region]] table";
            return Err(cx.invalid(f.span(), "steering", message));
        }
        (Some(f), Some(_)) => f.get_ref(),
    };
    let names: Vec<String> = regions
        .iter()
        .map(|r| r.get_ref().name.get_ref().clone())
        .collect();
    let mut checked = Vec::with_capacity(regions.len());
    for (i, region) in regions.iter().enumerate() {
        checked.push(region_table(i, region.get_ref(), &names, cx)?);
    }
    unique_across_regions(regions, &checked, cx)?;
    Ok(Some(Steering {
        zone: dns_name(&f.zone, "steering.zone", cx)?,
        names: answered_names(f.names.as_ref(), cx)?,
        ttl: seconds(&f.ttl, DEFAULT_TTL, "steering.ttl", cx)?,
        check_interval: seconds(
            &f.check_interval,
            DEFAULT_CHECK_INTERVAL,
            "steering.check_interval",
            cx,
        )?,
        default_region: match &f.default_region {
            Some(v) => region_named(v, &names, "steering.default_region", cx)?,
            None => 0,
        },
        nameservers: nameservers(f.nameservers.as_ref(), cx)?,
        regions: checked,
    }))
}

fn region_table(
    i: usize,
    f: &RegionFile,
    names: &[String],
    cx: &Ctx<'_>,
) -> Result<Region, ConfigError> {
    let key = format!("region[{i}]");
    let name = label_like(&f.name, &format!("{key}.name"), cx)?;
    if let Some(first) = names[..i].iter().position(|n| *n == name) {
        let message = format!("{name:?} is already the name of region[{first}]");
        return Err(cx.invalid(f.name.span(), &format!("{key}.name"), message));
    }
    let mut subnets = Vec::new();
    for (j, item) in list(f.subnets.as_ref()).iter().enumerate() {
        let here = format!("{key}.subnets[{j}]");
        let subnet: Subnet = item
            .get_ref()
            .parse()
            .map_err(|e: String| cx.invalid(item.span(), &here, e))?;
        subnets.push(subnet);
    }
    let mut next = Vec::new();
    for (j, item) in list(f.next.as_ref()).iter().enumerate() {
        next.push(region_named(item, names, &format!("{key}.next[{j}]"), cx)?);
    }
    if f.nodes.get_ref().is_empty() {
        let message = "must list at least one node";
        return Err(cx.invalid(f.nodes.span(), &format!("{key}.nodes"), message));
    }
    let mut nodes = Vec::with_capacity(f.nodes.get_ref().len());
    for (j, node) in f.nodes.get_ref().iter().enumerate() {
        nodes.push(node_entry(node, &format!("{key}.nodes[{j}]"), cx)?);
    }
    Ok(Region {
        name,
        subnets,
        next,
        nodes,
    })
}

fn node_entry(f: &NodeFile, key: &str, cx: &Ctx<'_>) -> Result<Node, ConfigError> {
    let name = label_like(&f.name, &format!("{key}.name"), cx)?;
    let address: IpAddr = f.address.get_ref().parse().map_err(|_| {
        let message = format!(
            "{:?} is not an IP address (the DNS answers hold it; host names are not resolved)",
            f.address.get_ref()
        );
        cx.invalid(f.address.span(), &format!("{key}.address"), message)
    })?;
    let ready = ready_url(&f.ready, &format!("{key}.ready"), cx)?;
    Ok(Node {
        name,
        address,
        ready,
    })
}

/// Node names, addresses and subnets each belong to one region: the answers for a client
/// must not depend on which of two entries PowerDNS reads first.
fn unique_across_regions(
    files: &[Spanned<RegionFile>],
    regions: &[Region],
    cx: &Ctx<'_>,
) -> Result<(), ConfigError> {
    let mut names: Vec<(&str, String)> = Vec::new();
    let mut addresses: Vec<(IpAddr, String)> = Vec::new();
    let mut subnets: Vec<(Subnet, String)> = Vec::new();
    for (i, (file, region)) in files.iter().zip(regions).enumerate() {
        let file = file.get_ref();
        for (j, (f, node)) in file.nodes.get_ref().iter().zip(&region.nodes).enumerate() {
            let here = format!("region[{i}].nodes[{j}]");
            if let Some((_, first)) = names.iter().find(|(n, _)| *n == node.name) {
                let message = format!("{:?} is already the name of {first}", node.name);
                return Err(cx.invalid(f.name.span(), &format!("{here}.name"), message));
            }
            if let Some((_, first)) = addresses.iter().find(|(a, _)| *a == node.address) {
                let message = format!("{} is already the address of {first}", node.address);
                return Err(cx.invalid(f.address.span(), &format!("{here}.address"), message));
            }
            names.push((&node.name, here.clone()));
            addresses.push((node.address, here));
        }
        for (j, (f, subnet)) in list(file.subnets.as_ref())
            .iter()
            .zip(&region.subnets)
            .enumerate()
        {
            let here = format!("region[{i}].subnets[{j}]");
            if let Some((_, first)) = subnets.iter().find(|(s, _)| s == subnet) {
                let message = format!("{subnet} is already listed at {first}");
                return Err(cx.invalid(f.span(), &here, message));
            }
            subnets.push((*subnet, here));
        }
    }
    Ok(())
}

fn list(v: Option<&SpannedList>) -> &[Spanned<String>] {
    v.map_or(&[][..], |l| l.get_ref().as_slice())
}

/// The index of the region `v` names.
fn region_named(
    v: &Spanned<String>,
    names: &[String],
    key: &str,
    cx: &Ctx<'_>,
) -> Result<usize, ConfigError> {
    names.iter().position(|n| n == v.get_ref()).ok_or_else(|| {
        let known: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        let message = format!(
            "{:?} is not a region (the regions are {})",
            v.get_ref(),
            known.join(", ")
        );
        cx.invalid(v.span(), key, message)
    })
}

/// Region and node names: they appear in the zone's comments and as Lua strings.
fn label_like(v: &Spanned<String>, key: &str, cx: &Ctx<'_>) -> Result<String, ConfigError> {
    let name = v.get_ref();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        let message = format!("{name:?} must be letters, digits, '-', '_' or '.'");
        return Err(cx.invalid(v.span(), key, message));
    }
    Ok(name.clone())
}

/// An http(s) URL that can sit in a single-quoted Lua string inside a zone-file string.
fn ready_url(v: &Spanned<String>, key: &str, cx: &Ctx<'_>) -> Result<String, ConfigError> {
    let text = v.get_ref();
    let uri: Option<http::Uri> = text.parse().ok();
    let scheme = uri.as_ref().and_then(|u| u.scheme_str());
    let problem = if !matches!(scheme, Some("http" | "https")) {
        format!("{text:?} is not an http:// or https:// URL (like \"http://10.1.0.5:9090/readyz\")")
    } else if uri
        .as_ref()
        .and_then(http::Uri::host)
        .is_none_or(str::is_empty)
    {
        format!("{text:?} has no host")
    } else if text
        .bytes()
        .any(|b| matches!(b, b'\'' | b'"' | b'\\') || !b.is_ascii_graphic())
    {
        format!("{text:?} must not contain quotes, backslashes or spaces")
    } else {
        return Ok(text.clone());
    };
    Err(cx.invalid(v.span(), key, problem))
}

/// Letters, digits and hyphens per label, at most 63 per label and 253 in all; lowercase,
/// without the final dot.
fn dns_name(v: &Spanned<String>, key: &str, cx: &Ctx<'_>) -> Result<String, ConfigError> {
    let text = v.get_ref();
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.len() > 253 || !name.split('.').all(is_label) {
        let message = format!("{text:?} is not a DNS name like \"cdn.example.com\"");
        return Err(cx.invalid(v.span(), key, message));
    }
    Ok(name)
}

fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// `names`: `@` or names relative to the zone, a leading `*.` allowed; default `["@"]`.
fn answered_names(v: Option<&SpannedList>, cx: &Ctx<'_>) -> Result<Vec<String>, ConfigError> {
    let Some(v) = v else {
        return Ok(vec!["@".to_owned()]);
    };
    if v.get_ref().is_empty() {
        return Err(cx.invalid(v.span(), "steering.names", "must list at least one name"));
    }
    let mut names: Vec<String> = Vec::new();
    for (i, item) in v.get_ref().iter().enumerate() {
        let key = format!("steering.names[{i}]");
        let text = item.get_ref();
        let name = text.to_ascii_lowercase();
        let rest = name.strip_prefix("*.").unwrap_or(&name);
        if name != "@" && name != "*" && !(rest.len() <= 200 && rest.split('.').all(is_label)) {
            let message = format!(
                "{text:?} is not a name relative to steering.zone (like \"www\", \"*.img\" or \"@\" for the zone itself)"
            );
            return Err(cx.invalid(item.span(), &key, message));
        }
        if let Some(first) = names.iter().position(|n| *n == name) {
            let message = format!("{text:?} is already listed at steering.names[{first}]");
            return Err(cx.invalid(item.span(), &key, message));
        }
        names.push(name);
    }
    Ok(names)
}

fn nameservers(v: Option<&SpannedList>, cx: &Ctx<'_>) -> Result<Vec<String>, ConfigError> {
    let mut servers: Vec<String> = Vec::new();
    for (i, item) in list(v).iter().enumerate() {
        let key = format!("steering.nameservers[{i}]");
        let name = dns_name(item, &key, cx)?;
        if servers.contains(&name) {
            return Err(cx.invalid(item.span(), &key, format!("{name} is listed twice")));
        }
        servers.push(name);
    }
    Ok(servers)
}

/// DNS TTLs and PowerDNS's check interval are whole seconds.
fn seconds(
    v: &Option<Spanned<HumanDuration>>,
    default: Duration,
    key: &str,
    cx: &Ctx<'_>,
) -> Result<Duration, ConfigError> {
    let Some(v) = v else {
        return Ok(default);
    };
    let d = v.get_ref().0;
    if d.subsec_nanos() != 0 || d.is_zero() || d.as_secs() > u64::from(i32::MAX as u32) {
        let message = format!("{d:?} is not a whole number of seconds, at least 1s");
        return Err(cx.invalid(v.span(), key, message));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::parse;
    use crate::steering::Subnet;

    const SITE: &str = "[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://127.0.0.1:1\"]\n";

    #[test]
    fn a_file_without_steering_has_none() {
        let config = parse(SITE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.steering, None);
    }

    #[test]
    fn defaults_and_values() {
        let text = format!(
            "{SITE}[steering]\nzone = \"CDN.example.com.\"\n\
             [[region]]\nname = \"eu-west\"\nsubnets = [\"10.1.0.0/16\", \"2001:db8:1::/48\"]\nnext = [\"us-east\"]\n\
             nodes = [{{ name = \"edge-1\", address = \"10.1.0.5\", ready = \"http://10.1.0.5:9090/readyz\" }},\n\
                      {{ name = \"edge-2\", address = \"2001:db8:1::5\", ready = \"https://[2001:db8:1::5]:9090/readyz\" }}]\n\
             [[region]]\nname = \"us-east\"\n\
             [[region.nodes]]\nname = \"edge-3\"\naddress = \"10.2.0.5\"\nready = \"http://10.2.0.5:9090/readyz\"\n"
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let s = config.steering.unwrap_or_else(|| panic!("no steering"));
        assert_eq!(s.zone, "cdn.example.com");
        assert_eq!(s.names, vec!["@"]);
        assert_eq!(
            (s.ttl, s.check_interval),
            (Duration::from_secs(30), Duration::from_secs(2))
        );
        assert_eq!(s.default_region, 0);
        assert!(s.nameservers.is_empty());
        let eu = &s.regions[0];
        let subnets: Vec<String> = eu.subnets.iter().map(Subnet::to_string).collect();
        assert_eq!(subnets, ["10.1.0.0/16", "2001:db8:1::/48"]);
        assert_eq!(eu.next, vec![1]);
        let nodes: Vec<(&str, String)> = s
            .regions
            .iter()
            .flat_map(|r| {
                r.nodes
                    .iter()
                    .map(|n| (n.name.as_str(), n.address.to_string()))
            })
            .collect();
        assert_eq!(
            nodes,
            [
                ("edge-1", "10.1.0.5".to_owned()),
                ("edge-2", "2001:db8:1::5".to_owned()),
                ("edge-3", "10.2.0.5".to_owned())
            ]
        );
        assert_eq!(s.regions[1].nodes[0].ready, "http://10.2.0.5:9090/readyz");
    }

    #[test]
    fn every_key_given() {
        let text = format!(
            "{SITE}[steering]\nzone = \"cdn.example.com\"\nnames = [\"www\", \"*.img\", \"@\"]\nttl = \"1m\"\n\
             check_interval = 5\ndefault_region = \"b\"\nnameservers = [\"ns1.example.net.\"]\n\
             [[region]]\nname = \"a\"\nnodes = [{{ name = \"n1\", address = \"192.0.2.1\", ready = \"http://192.0.2.1/\" }}]\n\
             [[region]]\nname = \"b\"\nnodes = [{{ name = \"n2\", address = \"192.0.2.2\", ready = \"http://192.0.2.2/\" }}]\n"
        );
        let s = parse(&text)
            .unwrap_or_else(|e| panic!("{e}"))
            .steering
            .unwrap_or_else(|| panic!("no steering"));
        assert_eq!(s.names, vec!["www", "*.img", "@"]);
        assert_eq!(
            (s.ttl, s.check_interval),
            (Duration::from_secs(60), Duration::from_secs(5))
        );
        assert_eq!(s.default_region, 1);
        assert_eq!(s.nameservers, vec!["ns1.example.net"]);
    }
}
