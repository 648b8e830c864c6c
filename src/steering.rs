//! DNS steering: the `[steering]` and `[[region]]` tables as a PowerDNS zone file.
//!
//! Clients reach Outpost through DNS, so the name server decides which nodes a client uses.
//! [`zone_file`] turns the validated regions into a zone for PowerDNS Authoritative (4.7+,
//! bind backend) whose names are LUA records:
//!
//! ```text
//!  query (ECS subnet, else the resolver's address)
//!     │  longest matching [[region]] subnet, else steering.default_region
//!     ▼
//!  that region, then its `next` regions, in order
//!     │  ifurlextup: each node's `ready` URL (200 = ready) checked every check_interval
//!     ▼
//!  every ready node of the first region that has one
//!  (none ready anywhere: every node of the chain, since an empty answer helps nobody)
//! ```
//!
//! `ifurlextup` rather than `ifurlup`: `ifurlup` fetches one URL from each candidate address,
//! whereas a node's readiness lives on its admin listener, with its own address and port.
//! The region tables and the selection function are written once, in a `LUA LUA` record
//! included by every name (`include()`), so a name's records stay one line.
//!
//! Pure text generation, no I/O: the serial is a parameter, so the output is reproducible.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

/// The name of the record holding the shared Lua code. Names in `[steering] names` are
/// letters, digits and hyphens, so none can clash with it.
pub const CODE_RECORD: &str = "_outpost";

/// TTL of the SOA and NS records: they do not move with node health.
const INFRA_TTL: u32 = 3600;

/// A validated `[steering]` table with its regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Steering {
    /// The zone's apex, lowercase, without the final dot.
    pub zone: String,
    /// Names answered with nodes, relative to the zone (`@` is the apex); never empty.
    pub names: Vec<String>,
    /// TTL of the answers.
    pub ttl: Duration,
    /// How often PowerDNS checks each node (whole seconds, at least one).
    pub check_interval: Duration,
    /// Index into `regions` for clients that match no region's subnets.
    pub default_region: usize,
    /// The zone's name servers (absolute names without the final dot); may be empty.
    pub nameservers: Vec<String>,
    /// Never empty; names and node names unique, addresses unique.
    pub regions: Vec<Region>,
}

/// One `[[region]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
    /// Client networks steered here.
    pub subnets: Vec<Subnet>,
    /// Indices into [`Steering::regions`]: where clients go when no node here is ready.
    pub next: Vec<usize>,
    /// Never empty.
    pub nodes: Vec<Node>,
}

/// One node of a region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// What the DNS answers hold.
    pub address: IpAddr,
    /// An http(s) URL that answers 200 when the node takes traffic (its admin `/readyz`);
    /// holds no quote, backslash or whitespace.
    pub ready: String,
}

/// A network: an address with its host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub network: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl std::str::FromStr for Subnet {
    type Err = String;

    /// `ADDRESS/PREFIX` with the host bits zero (`10.1.0.0/16`, `2001:db8::/32`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a subnet like \"10.1.0.0/16\" or \"2001:db8:1::/48\"");
        let (address, prefix) = s.split_once('/').ok_or_else(bad)?;
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let network = mask(address, prefix).ok_or_else(bad)?;
        if network != address {
            return Err(format!(
                "{s:?} has host bits set; the network is {network}/{prefix}"
            ));
        }
        Ok(Subnet { network, prefix })
    }
}

/// `address` with the bits after `prefix` cleared; `None` when the prefix is too long.
fn mask(address: IpAddr, prefix: u8) -> Option<IpAddr> {
    match address {
        IpAddr::V4(a) if prefix <= 32 => {
            let bits = u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V4(bits.into()))
        }
        IpAddr::V6(a) if prefix <= 128 => {
            let shift = 128 - u32::from(prefix);
            let bits = u128::from(a) & u128::MAX.checked_shl(shift).unwrap_or(0);
            Some(IpAddr::V6(bits.into()))
        }
        _ => None,
    }
}

/// The settings the zone relies on, as `pdns.conf` lines (for a file in `include-dir`).
pub fn pdns_settings(steering: &Steering) -> String {
    format!(
        "# Written by `outpost dns-zone --pdns-settings` for the zone {zone}.\n\
         # LUA records answer the names; ECS gives them the client's subnet.\n\
         enable-lua-records=yes\n\
         edns-subnet-processing=yes\n\
         # [steering] check_interval: how often every node's ready URL is fetched.\n\
         lua-health-checks-interval={interval}\n",
        zone = steering.zone,
        interval = steering.check_interval.as_secs().max(1),
    )
}

/// The zone file for `steering`, with SOA serial `serial`.
pub fn zone_file(steering: &Steering, serial: u32) -> String {
    let mut out = String::new();
    header(&mut out, steering, serial);
    let _ = writeln!(
        out,
        "; The regions, and how a query picks its nodes (Lua, shared)."
    );
    let code: Vec<String> = lua_code(steering)
        .iter()
        .map(|line| format!("\"{line} \""))
        .collect();
    let ttl = steering.ttl.as_secs();
    let _ = writeln!(out, "{CODE_RECORD} {ttl} IN LUA LUA {}", code.join(" "));
    let families = [
        ("A", "v4", IpAddr::is_ipv4 as fn(&IpAddr) -> bool),
        ("AAAA", "v6", IpAddr::is_ipv6),
    ];
    let _ = writeln!(out, "; The names answered with nodes.");
    for name in &steering.names {
        for (rtype, table, family) in families {
            if nodes(steering).any(|n| family(&n.address)) {
                let _ = writeln!(
                    out,
                    "{name} {ttl} IN LUA {rtype} \";include('{CODE_RECORD}') return steer({table})\""
                );
            }
        }
    }
    out
}

fn nodes(steering: &Steering) -> impl Iterator<Item = &Node> {
    steering.regions.iter().flat_map(|r| r.nodes.iter())
}

fn header(out: &mut String, steering: &Steering, serial: u32) {
    let zone = &steering.zone;
    let ttl = steering.ttl.as_secs();
    let _ = writeln!(
        out,
        "; {zone}: written by `outpost dns-zone`; regenerate it rather than edit it.\n\
         ; Needs the pdns.conf settings of `outpost dns-zone --pdns-settings`.\n\
         ;\n\
         ; region (subnets) -> fall-over order: nodes"
    );
    for (i, region) in steering.regions.iter().enumerate() {
        let subnets: Vec<String> = region.subnets.iter().map(Subnet::to_string).collect();
        let order: Vec<&str> = chain(steering, i)
            .map(|i| steering.regions[i].name.as_str())
            .collect();
        let members: Vec<String> = region
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.address))
            .collect();
        let _ = writeln!(
            out,
            ";   {} ({}) -> {}: {}",
            region.name,
            subnets.join(", "),
            order.join(", "),
            members.join(", ")
        );
    }
    let default = &steering.regions[steering.default_region].name;
    let _ = writeln!(out, ";   any other client -> {default}\n");
    let _ = writeln!(out, "$ORIGIN {zone}.");
    let mname = steering
        .nameservers
        .first()
        .map_or_else(|| format!("{zone}."), |ns| format!("{ns}."));
    let _ = writeln!(
        out,
        "@ {INFRA_TTL} IN SOA {mname} hostmaster.{zone}. {serial} 3600 600 604800 {ttl}"
    );
    for ns in &steering.nameservers {
        let _ = writeln!(out, "@ {INFRA_TTL} IN NS {ns}.");
    }
}

/// Region `start`, then its `next` regions, each once.
fn chain(steering: &Steering, start: usize) -> impl Iterator<Item = usize> {
    let mut seen = vec![start];
    for &next in &steering.regions[start].next {
        if !seen.contains(&next) {
            seen.push(next);
        }
    }
    seen.into_iter()
}

/// The shared Lua, one statement per element (PowerDNS joins the strings with spaces, so
/// no statement may rely on a line break, and no `--` comments).
fn lua_code(steering: &Steering) -> Vec<String> {
    let mut lines = Vec::new();
    for (table, family) in [("v4", true), ("v6", false)] {
        let regions: Vec<String> = steering
            .regions
            .iter()
            .map(|r| {
                let members: Vec<String> = r
                    .nodes
                    .iter()
                    .filter(|n| n.address.is_ipv4() == family)
                    .map(|n| format!("['{}']='{}'", n.address, n.ready))
                    .collect();
                format!("['{}']={{{}}}", r.name, members.join(","))
            })
            .collect();
        lines.push(format!("{table}={{{}}}", regions.join(",")));
    }
    let orders: Vec<String> = (0..steering.regions.len())
        .map(|i| {
            let names: Vec<String> = chain(steering, i)
                .map(|j| format!("'{}'", steering.regions[j].name))
                .collect();
            format!("['{}']={{{}}}", steering.regions[i].name, names.join(","))
        })
        .collect();
    lines.push(format!("order={{{}}}", orders.join(",")));
    // Longest prefix first, so a more specific subnet wins over the network around it.
    let mut subnets: Vec<(&Subnet, &str)> = steering
        .regions
        .iter()
        .flat_map(|r| r.subnets.iter().map(move |s| (s, r.name.as_str())))
        .collect();
    subnets.sort_by_key(|(s, _)| std::cmp::Reverse(s.prefix));
    let subnets: Vec<String> = subnets
        .iter()
        .map(|(s, region)| format!("{{'{s}','{region}'}}"))
        .collect();
    lines.push(format!("subnets={{{}}}", subnets.join(",")));
    lines.push(format!(
        "default='{}'",
        steering.regions[steering.default_region].name
    ));
    // ifurlextup's timeout is whole seconds; half the interval keeps a round of checks
    // within the interval.
    let timeout = (steering.check_interval.as_secs() / 2).max(1);
    lines.push(format!(
        "opts={{selector='all',backupSelector='all',timeout='{timeout}'}}"
    ));
    lines.extend(
        [
            "function steer(nodes)",
            "local region=default",
            "for _,s in ipairs(subnets) do if netmask({s[1]}) then region=s[2] break end end",
            "local groups={}",
            "for _,r in ipairs(order[region]) do if next(nodes[r]) then table.insert(groups,nodes[r]) end end",
            "return ifurlextup(groups,opts)",
            "end",
        ]
        .map(str::to_owned),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, address: &str) -> Node {
        Node {
            name: name.into(),
            address: address.parse().expect("address"),
            ready: format!("http://{name}.internal:9090/readyz"),
        }
    }

    fn subnet(s: &str) -> Subnet {
        s.parse().expect("subnet")
    }

    fn two_regions() -> Steering {
        Steering {
            zone: "cdn.example.com".into(),
            names: vec!["www".into(), "@".into()],
            ttl: Duration::from_secs(30),
            check_interval: Duration::from_secs(2),
            default_region: 1,
            nameservers: vec!["ns1.example.net".into(), "ns2.example.net".into()],
            regions: vec![
                Region {
                    name: "eu-west".into(),
                    subnets: vec![subnet("10.1.0.0/16"), subnet("2001:db8:1::/48")],
                    next: vec![1],
                    nodes: vec![node("edge-1", "10.1.0.5"), node("edge-2", "2001:db8:1::5")],
                },
                Region {
                    name: "us-east".into(),
                    subnets: vec![subnet("10.0.0.0/8")],
                    next: vec![],
                    nodes: vec![node("edge-3", "10.2.0.5")],
                },
            ],
        }
    }

    #[test]
    fn subnets_parse_and_refuse_host_bits() {
        let cases = [
            ("10.1.0.0/16", Ok("10.1.0.0/16")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("192.0.2.7/32", Ok("192.0.2.7/32")),
            ("2001:db8:1::/48", Ok("2001:db8:1::/48")),
            ("::/0", Ok("::/0")),
            (
                "10.1.0.5/16",
                Err("host bits set; the network is 10.1.0.0/16"),
            ),
            ("10.1.0.0/33", Err("is not a subnet")),
            ("2001:db8::/129", Err("is not a subnet")),
            ("10.1.0.0", Err("is not a subnet")),
            ("10.1.0.0/", Err("is not a subnet")),
            ("eu/16", Err("is not a subnet")),
        ];
        for (text, want) in cases {
            match (text.parse::<Subnet>(), want) {
                (Ok(s), Ok(shown)) => assert_eq!(s.to_string(), shown, "{text}"),
                (Err(e), Err(says)) => assert!(e.contains(says), "{text}: {e}"),
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    #[test]
    fn the_zone_of_two_regions() {
        let zone = zone_file(&two_regions(), 7);
        let want = concat!(
            "; cdn.example.com: written by `outpost dns-zone`; regenerate it rather than edit it.\n",
            "; Needs the pdns.conf settings of `outpost dns-zone --pdns-settings`.\n",
            ";\n",
            "; region (subnets) -> fall-over order: nodes\n",
            ";   eu-west (10.1.0.0/16, 2001:db8:1::/48) -> eu-west, us-east: edge-1 10.1.0.5, edge-2 2001:db8:1::5\n",
            ";   us-east (10.0.0.0/8) -> us-east: edge-3 10.2.0.5\n",
            ";   any other client -> us-east\n",
            "\n",
            "$ORIGIN cdn.example.com.\n",
            "@ 3600 IN SOA ns1.example.net. hostmaster.cdn.example.com. 7 3600 600 604800 30\n",
            "@ 3600 IN NS ns1.example.net.\n",
            "@ 3600 IN NS ns2.example.net.\n",
            "; The regions, and how a query picks its nodes (Lua, shared).\n",
            "_outpost 30 IN LUA LUA ",
            "\"v4={['eu-west']={['10.1.0.5']='http://edge-1.internal:9090/readyz'},['us-east']={['10.2.0.5']='http://edge-3.internal:9090/readyz'}} \" ",
            "\"v6={['eu-west']={['2001:db8:1::5']='http://edge-2.internal:9090/readyz'},['us-east']={}} \" ",
            "\"order={['eu-west']={'eu-west','us-east'},['us-east']={'us-east'}} \" ",
            "\"subnets={{'2001:db8:1::/48','eu-west'},{'10.1.0.0/16','eu-west'},{'10.0.0.0/8','us-east'}} \" ",
            "\"default='us-east' \" ",
            "\"opts={selector='all',backupSelector='all',timeout='1'} \" ",
            "\"function steer(nodes) \" ",
            "\"local region=default \" ",
            "\"for _,s in ipairs(subnets) do if netmask({s[1]}) then region=s[2] break end end \" ",
            "\"local groups={} \" ",
            "\"for _,r in ipairs(order[region]) do if next(nodes[r]) then table.insert(groups,nodes[r]) end end \" ",
            "\"return ifurlextup(groups,opts) \" ",
            "\"end \"\n",
            "; The names answered with nodes.\n",
            "www 30 IN LUA A \";include('_outpost') return steer(v4)\"\n",
            "www 30 IN LUA AAAA \";include('_outpost') return steer(v6)\"\n",
            "@ 30 IN LUA A \";include('_outpost') return steer(v4)\"\n",
            "@ 30 IN LUA AAAA \";include('_outpost') return steer(v6)\"\n",
        );
        assert_eq!(zone, want);
    }

    #[test]
    fn no_aaaa_without_ipv6_nodes_and_a_soa_without_name_servers() {
        let mut steering = two_regions();
        steering.regions[0].nodes.truncate(1);
        steering.nameservers.clear();
        steering.names = vec!["www".into()];
        let zone = zone_file(&steering, 1);
        assert!(zone.contains("\nwww 30 IN LUA A "), "{zone}");
        assert!(!zone.contains(" AAAA "), "{zone}");
        assert!(!zone.contains(" IN NS "), "{zone}");
        let soa = "@ 3600 IN SOA cdn.example.com. hostmaster.cdn.example.com. 1 ";
        assert!(zone.contains(soa), "{zone}");
    }

    #[test]
    fn a_fall_over_chain_names_each_region_once() {
        let mut steering = two_regions();
        steering.regions[0].next = vec![1, 0, 1];
        let order: Vec<usize> = chain(&steering, 0).collect();
        assert_eq!(order, vec![0, 1]);
    }

    #[test]
    fn the_settings_carry_the_check_interval() {
        let mut steering = two_regions();
        steering.check_interval = Duration::from_secs(5);
        let settings = pdns_settings(&steering);
        for line in [
            "enable-lua-records=yes",
            "edns-subnet-processing=yes",
            "lua-health-checks-interval=5",
        ] {
            assert!(settings.lines().any(|l| l == line), "{line}: {settings}");
        }
        let zone = zone_file(&steering, 1);
        assert!(zone.contains("timeout='2'"), "{zone}");
    }
}
