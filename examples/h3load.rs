//! A small load generator speaking HTTP/2 over TLS or HTTP/3, the same way for both, so the
//! two protocols of one node can be compared (h2load here has no HTTP/3). Used by
//! `bench/h3.py`.
//!
//!     h3load --proto h3 --addr 127.0.0.1:8443 --sni alpha.test --ca ca.pem \
//!         --url https://alpha.test/f/1k -c 32 -m 8 -d 10
//!
//! Opens `-c` connections with `-m` requests in flight on each, for `-d` seconds after a
//! one-second warm-up, on one thread; prints requests/s and the mean latency.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    proto: String,
    addr: SocketAddr,
    sni: String,
    ca: String,
    url: http::Uri,
    connections: usize,
    streams: usize,
    duration: Duration,
}

fn args() -> Result<Args, Error> {
    let mut a = std::env::args().skip(1);
    let mut args = Args {
        proto: "h3".into(),
        addr: "127.0.0.1:8443".parse()?,
        sni: "localhost".into(),
        ca: String::new(),
        url: "https://localhost/".parse()?,
        connections: 32,
        streams: 8,
        duration: Duration::from_secs(10),
    };
    while let Some(flag) = a.next() {
        let value = a.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--proto" => args.proto = value,
            "--addr" => args.addr = value.parse()?,
            "--sni" => args.sni = value,
            "--ca" => args.ca = value,
            "--url" => args.url = value.parse()?,
            "-c" => args.connections = value.parse()?,
            "-m" => args.streams = value.parse()?,
            "-d" => args.duration = Duration::from_secs(value.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

fn tls(ca: &str, alpn: &[u8]) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Requests completed (after the warm-up) and their summed latency.
#[derive(Default)]
struct Tally {
    measuring: AtomicBool,
    done: AtomicU64,
    micros: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn record(&self, started: Instant, ok: bool) {
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        if ok {
            self.done.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.micros.fetch_add(micros, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn h3_connection(args: Arc<Args>, tally: Arc<Tally>, stop: Instant) -> Result<(), Error> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls(&args.ca, b"h3")?)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint.connect(args.addr, &args.sni)?.await?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut streams = Vec::new();
    for _ in 0..args.streams {
        let mut send = send.clone();
        let (args, tally) = (args.clone(), tally.clone());
        streams.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let started = Instant::now();
                let one = async {
                    let req = http::Request::get(args.url.clone()).body(())?;
                    let mut stream = send.send_request(req).await?;
                    stream.finish().await?;
                    let response = stream.recv_response().await?;
                    while let Some(mut chunk) = stream.recv_data().await? {
                        chunk.advance(chunk.remaining());
                    }
                    Ok::<_, Error>(response.status().is_success())
                };
                tally.record(started, matches!(one.await, Ok(true)));
            }
        }));
    }
    for s in streams {
        let _ = s.await;
    }
    endpoint.close(0u32.into(), b"done");
    Ok(())
}

async fn h2_connection(args: Arc<Args>, tally: Arc<Tally>, stop: Instant) -> Result<(), Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls(&args.ca, b"h2")?));
    let tcp = tokio::net::TcpStream::connect(args.addr).await?;
    tcp.set_nodelay(true)?;
    let stream = connector
        .connect(ServerName::try_from(args.sni.clone())?, tcp)
        .await?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for _ in 0..args.streams {
        let mut sender = sender.clone();
        let (args, tally) = (args.clone(), tally.clone());
        streams.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let started = Instant::now();
                let one = async {
                    let req = http::Request::get(args.url.clone()).body(Empty::<Bytes>::new())?;
                    let response = sender.send_request(req).await?;
                    let ok = response.status().is_success();
                    response.into_body().collect().await?;
                    Ok::<_, Error>(ok)
                };
                tally.record(started, matches!(one.await, Ok(true)));
            }
        }));
    }
    for s in streams {
        let _ = s.await;
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    let args = Arc::new(args()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let tally = Arc::new(Tally::default());
        let warm_up = Duration::from_secs(1);
        let stop = Instant::now() + warm_up + args.duration;
        let mut connections = Vec::new();
        for _ in 0..args.connections {
            let (args, tally) = (args.clone(), tally.clone());
            connections.push(tokio::spawn(async move {
                let result = match args.proto.as_str() {
                    "h2" => h2_connection(args, tally, stop).await,
                    _ => h3_connection(args, tally, stop).await,
                };
                if let Err(e) = result {
                    eprintln!("connection failed: {e}");
                }
            }));
        }
        tokio::time::sleep(warm_up).await;
        tally.measuring.store(true, Ordering::Relaxed);
        let measured = Instant::now();
        for c in connections {
            let _ = c.await;
        }
        let secs = measured.elapsed().as_secs_f64();
        let done = tally.done.load(Ordering::Relaxed);
        let mean_ms = tally.micros.load(Ordering::Relaxed) as f64 / done.max(1) as f64 / 1000.0;
        println!(
            "proto {} requests {done} failed {} req/s {:.0} mean_ms {mean_ms:.3}",
            args.proto,
            tally.failed.load(Ordering::Relaxed),
            done as f64 / secs
        );
    });
    Ok(())
}
