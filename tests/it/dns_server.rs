//! A tiny in-process authoritative DNS responder for tests (RFC 1035 subset, UDP only).
//!
//! It answers one-question queries from a zone the test can change at runtime. Unknown names
//! get NXDOMAIN, known names without records of the asked type get an empty NOERROR answer.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;

#[derive(Debug, Clone)]
pub enum Record {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
}

impl Record {
    fn rtype(&self) -> u16 {
        match self {
            Record::A(_) => TYPE_A,
            Record::Aaaa(_) => TYPE_AAAA,
            Record::Srv { .. } => TYPE_SRV,
        }
    }

    fn rdata(&self) -> Vec<u8> {
        match self {
            Record::A(ip) => ip.octets().to_vec(),
            Record::Aaaa(ip) => ip.octets().to_vec(),
            Record::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                let mut out = Vec::new();
                for v in [priority, weight, port] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                encode_name(target, &mut out);
                out
            }
        }
    }
}

pub type Zone = Arc<Mutex<HashMap<(String, u16), Vec<Record>>>>;

pub struct DnsServer {
    pub addr: SocketAddr,
    pub zone: Zone,
    /// TTL put on every answer record.
    pub ttl: Arc<AtomicU32>,
    /// When false, queries are read and dropped (simulates an outage).
    pub answering: Arc<AtomicBool>,
    /// Queries received (answered or not).
    pub queries: Arc<AtomicU64>,
    /// Query types answered with REFUSED (as dnsmasq does for AAAA of a hosts-file name with
    /// no upstream).
    refused: Arc<Mutex<Vec<u16>>>,
    task: JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in normalize(name).split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

impl DnsServer {
    pub async fn start(ttl: u32) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let addr = socket.local_addr().expect("local addr");
        let zone: Zone = Arc::default();
        let ttl = Arc::new(AtomicU32::new(ttl));
        let answering = Arc::new(AtomicBool::new(true));
        let queries = Arc::new(AtomicU64::new(0));
        let refused: Arc<Mutex<Vec<u16>>> = Arc::default();
        let (z, t, a, q, r) = (
            zone.clone(),
            ttl.clone(),
            answering.clone(),
            queries.clone(),
            refused.clone(),
        );
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                let refused = r.lock().map(|r| r.clone()).unwrap_or_default();
                let ttl = t.load(Ordering::SeqCst);
                if let Some(resp) = respond(&buf[..n], &z, &a, ttl, &refused) {
                    let _ = socket.send_to(&resp, peer).await;
                }
            }
        });
        Self {
            addr,
            zone,
            ttl,
            answering,
            queries,
            refused,
            task,
        }
    }

    /// Answer queries of `qtype` with REFUSED from now on.
    pub fn refuse(&self, qtype: u16) {
        self.refused.lock().expect("refused lock").push(qtype);
    }

    /// Replace all records of `name` (every type) with `records`.
    pub fn set(&self, name: &str, records: Vec<Record>) {
        let name = normalize(name);
        let mut zone = self.zone.lock().expect("zone lock");
        zone.retain(|(n, _), _| *n != name);
        for r in records {
            zone.entry((name.clone(), r.rtype())).or_default().push(r);
        }
    }

    /// Taken under the zone lock, so no answer built after this returns uses a later zone
    /// while `answering` was still true.
    pub fn set_answering(&self, on: bool) {
        let _zone = self.zone.lock().expect("zone lock");
        self.answering.store(on, Ordering::SeqCst);
    }
}

/// Parse the header and the single question; build the response.
fn respond(
    query: &[u8],
    zone: &Zone,
    answering: &AtomicBool,
    ttl: u32,
    refused: &[u16],
) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    if flags & 0x8000 != 0 || qdcount != 1 {
        return None; // not a query, or not exactly one question
    }
    // QNAME: length-prefixed labels, no compression in questions.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xC0 != 0 {
            return None;
        }
        labels.push(std::str::from_utf8(query.get(pos..pos + len)?).ok()?);
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4; // QTYPE + QCLASS
    let question = query.get(12..question_end)?;
    let name = labels.join(".").to_ascii_lowercase();

    let zone = zone.lock().ok()?;
    if !answering.load(Ordering::SeqCst) {
        return None; // simulated outage: drop the query
    }
    let known = zone.keys().any(|(n, _)| *n == name);
    let mut answers = zone.get(&(name, qtype)).cloned().unwrap_or_default();
    drop(zone);

    let rcode: u16 = if refused.contains(&qtype) {
        answers.clear();
        5 // REFUSED
    } else if known {
        0 // NOERROR
    } else {
        3 // NXDOMAIN
    };
    // QR | opcode (copied) | AA | RD (copied) | rcode
    let resp_flags = 0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | rcode;
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&header[0..2]); // ID
    out.extend_from_slice(&resp_flags.to_be_bytes());
    for count in [1, answers.len() as u16, 0, 0] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(question);
    for record in &answers {
        out.extend_from_slice(&0xC00Cu16.to_be_bytes()); // pointer to QNAME
        out.extend_from_slice(&record.rtype().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes()); // class IN
        out.extend_from_slice(&ttl.to_be_bytes());
        let rdata = record.rdata();
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}
