//! The cache on disk across a restart (`cache.persist`): a node writes its entries to a
//! snapshot file when it drains and loads them when it starts, so a rollout does not send
//! every node's share of the cache back to the origin.
//!
//! Why a format of our own, and what it promises:
//!
//! - **Every entry stands alone.** A record is `length | SHA-256 | payload`, and the payload
//!   is one entry whole (key, status, headers, body, the times behind `Age` and freshness,
//!   the parsed directives). A record whose digest does not match is skipped and the next one
//!   read; a file cut short keeps the records before the cut. No body is ever served from a
//!   record that did not verify, so a damaged file costs entries, never correctness.
//! - **Whole-file checks first.** The header names the format, the Outpost version and a
//!   fingerprint of what shapes cache keys and stored policy (each site's hosts, key rules
//!   and cache settings). A snapshot from another version or another configuration is skipped
//!   whole: its keys or its stored directives may mean something else now.
//! - **Hottest first.** Entries are written by hit count, most hit first, and writing stops
//!   at a deadline (what is left of `listen.shutdown_timeout`): a cut-off snapshot still holds
//!   the objects that matter most. Loading stops once the cache's memory is full, for the same
//!   reason.
//! - **Atomic replacement.** The file is written beside the last one, flushed to disk, and
//!   renamed over it: a node killed while writing leaves the previous snapshot.
//! - **Times are absolute.** `response_time` is wall-clock time, so a restarted node's `Age`
//!   includes the time it was down, and an entry whose retention ran out meanwhile is dropped
//!   at load.
//!
//! The encoding is a plain little-endian layout (lengths as `u32`, times as nanoseconds since
//! the Unix epoch). The payload functions are pure and unit-tested; the file functions are
//! synchronous (they run on a blocking thread) and report what they did for the caller to
//! log and count.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::entry::{Entry, EntryParts};
use crate::cache::chunk::ChunkMap;
use crate::cache::control::ResponseDirectives;
use crate::cache::vary::SecondaryKey;
use crate::config::SiteConfig;

/// The first bytes of every snapshot file.
const MAGIC: &[u8; 8] = b"OUTPOSTS";
/// The layout of records; a change makes old snapshots be skipped whole.
const FORMAT: u32 = 2;
const DIGEST_LEN: usize = 32;
/// The snapshot's name in the `cache.persist` directory.
pub(crate) const FILE_NAME: &str = "cache.snapshot";
const TEMP_NAME: &str = "cache.snapshot.tmp";

/// What a snapshot was made for: each site's name, hosts, cache-key rules and cache policy.
/// Two configurations with the same fingerprint key and store responses the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; DIGEST_LEN]);

pub(crate) fn fingerprint(sites: &[SiteConfig]) -> Fingerprint {
    let mut text = String::new();
    for site in sites {
        // `Debug` of the validated structs: stable within one version, and the version is
        // checked separately.
        text.push_str(&format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n",
            site.name, site.hosts, site.cache_key, site.cache
        ));
    }
    let mut out = [0; DIGEST_LEN];
    out.copy_from_slice(digest(&SHA256, text.as_bytes()).as_ref());
    Fingerprint(out)
}

/// The snapshot file in `dir`.
pub(crate) fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Whether a node can keep its snapshot in `dir`: created if missing, and writable.
pub(crate) fn prepare_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(TEMP_NAME);
    File::create(&probe)?;
    fs::remove_file(&probe)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotError {
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("{0}: not an Outpost cache snapshot")]
    NotASnapshot(PathBuf),
    #[error("{0}: written by Outpost {1} (snapshot format {2}); this is {3} (format {FORMAT})")]
    OtherVersion(PathBuf, String, u32, &'static str),
    #[error(
        "{0}: written for another configuration (sites, hosts, cache keys or cache policy changed)"
    )]
    OtherConfig(PathBuf),
}

impl SnapshotError {
    /// The `reason` label of the skipped-snapshot metric.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Io(..) => "io",
            Self::NotASnapshot(..) => "corrupt",
            Self::OtherVersion(..) => "version",
            Self::OtherConfig(..) => "config",
        }
    }
}

/// What [`save`] wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Saved {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
    /// Entries left out because the deadline came first (the coldest ones).
    pub(crate) left_out: u64,
}

/// Write `entries` (with their keys) to the snapshot in `dir`, most hit first, until
/// `deadline`; the previous snapshot stays in place until the new one is complete on disk.
pub(crate) fn save(
    dir: &Path,
    fingerprint: Fingerprint,
    mut entries: Vec<(Arc<String>, Arc<Entry>)>,
    deadline: Instant,
) -> Result<Saved, SnapshotError> {
    let temp = dir.join(TEMP_NAME);
    let io_error = |e| SnapshotError::Io(temp.clone(), e);
    entries.sort_by_key(|(_, e)| std::cmp::Reverse(e.hits()));
    let file = File::create(&temp).map_err(io_error)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&header(fingerprint)).map_err(io_error)?;
    let mut saved = Saved::default();
    let mut payload = Vec::new();
    let total = entries.len() as u64;
    for (key, entry) in &entries {
        if Instant::now() >= deadline {
            break;
        }
        payload.clear();
        encode(key, entry, &mut payload);
        let Ok(len) = u32::try_from(payload.len()) else {
            // Bodies are at most `max_object` (< 4 GiB) but headers come on top.
            continue;
        };
        out.write_all(&len.to_le_bytes()).map_err(io_error)?;
        out.write_all(digest(&SHA256, &payload).as_ref())
            .map_err(io_error)?;
        out.write_all(&payload).map_err(io_error)?;
        saved.entries += 1;
        saved.bytes += payload.len() as u64;
    }
    saved.left_out = total - saved.entries;
    // The end: a record of length 0 and the count, so a file cut short is told apart.
    out.write_all(&0u32.to_le_bytes()).map_err(io_error)?;
    out.write_all(&saved.entries.to_le_bytes())
        .map_err(io_error)?;
    let file = out.into_inner().map_err(|e| io_error(e.into_error()))?;
    file.sync_all().map_err(io_error)?;
    drop(file);
    let target = path_in(dir);
    fs::rename(&temp, &target).map_err(|e| SnapshotError::Io(target.clone(), e))?;
    // The rename itself is durable once the directory is; failing that only risks the old
    // snapshot coming back after a power cut.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(saved)
}

fn header(fingerprint: Fingerprint) -> Vec<u8> {
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FORMAT.to_le_bytes());
    h.extend_from_slice(&(version.len() as u32).to_le_bytes());
    h.extend_from_slice(version);
    h.extend_from_slice(&fingerprint.0);
    h
}

/// What [`load`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub(crate) entries: u64,
    /// Records whose digest or contents did not check out.
    pub(crate) corrupt: u64,
    /// Entries whose retention ran out while the node was down.
    pub(crate) expired: u64,
    /// Entries not read because `budget` bytes were loaded already.
    pub(crate) over_budget: u64,
    /// The file ended before its end record (the entries before the cut are loaded).
    pub(crate) truncated: bool,
}

/// Read the snapshot in `dir`, handing each verified, still useful entry to `keep` with its
/// key, hottest first, until `budget` bytes (entry weights) were handed over. `Ok(None)`: no
/// snapshot there.
pub(crate) fn load(
    dir: &Path,
    fingerprint: Fingerprint,
    now: SystemTime,
    budget: u64,
    mut keep: impl FnMut(String, Entry),
) -> Result<Option<Loaded>, SnapshotError> {
    let path = path_in(dir);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SnapshotError::Io(path, e)),
    };
    let mut input = BufReader::with_capacity(1 << 20, file);
    check_header(&mut input, &path, fingerprint)?;
    let mut loaded = Loaded::default();
    let mut weight = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut len = [0; 4];
        if read_exact_or_eof(&mut input, &mut len, &path)? {
            loaded.truncated = true;
            break;
        }
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 {
            // The end record; its count is informative only.
            break;
        }
        let mut expected = [0; DIGEST_LEN];
        payload.resize(len, 0);
        if read_exact_or_eof(&mut input, &mut expected, &path)?
            || read_exact_or_eof(&mut input, &mut payload, &path)?
        {
            loaded.truncated = true;
            break;
        }
        if digest(&SHA256, &payload).as_ref() != expected {
            loaded.corrupt += 1;
            continue;
        }
        let Ok((key, entry)) = decode(&payload) else {
            loaded.corrupt += 1;
            continue;
        };
        if entry.retained_for(now).is_zero() {
            loaded.expired += 1;
            continue;
        }
        if weight >= budget {
            loaded.over_budget += 1;
            continue;
        }
        weight += entry.weight();
        loaded.entries += 1;
        keep(key, entry);
    }
    Ok(Some(loaded))
}

fn check_header(
    input: &mut impl Read,
    path: &Path,
    fingerprint: Fingerprint,
) -> Result<(), SnapshotError> {
    let not_a_snapshot = || SnapshotError::NotASnapshot(path.to_owned());
    let mut fixed = [0; 16];
    if read_exact_or_eof(input, &mut fixed, path)? || &fixed[..8] != MAGIC {
        return Err(not_a_snapshot());
    }
    let format = u32::from_le_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]);
    let version_len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    if version_len > 64 {
        return Err(not_a_snapshot());
    }
    let mut version = vec![0; version_len];
    let mut theirs = [0; DIGEST_LEN];
    if read_exact_or_eof(input, &mut version, path)? || read_exact_or_eof(input, &mut theirs, path)?
    {
        return Err(not_a_snapshot());
    }
    let version = String::from_utf8_lossy(&version).into_owned();
    if format != FORMAT || version != env!("CARGO_PKG_VERSION") {
        return Err(SnapshotError::OtherVersion(
            path.to_owned(),
            version,
            format,
            env!("CARGO_PKG_VERSION"),
        ));
    }
    if theirs != fingerprint.0 {
        return Err(SnapshotError::OtherConfig(path.to_owned()));
    }
    Ok(())
}

/// Fill `buf`; `Ok(true)` when the input ended first.
fn read_exact_or_eof(
    input: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
) -> Result<bool, SnapshotError> {
    match input.read_exact(buf) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(true),
        Err(e) => Err(SnapshotError::Io(path.to_owned(), e)),
    }
}

/// One entry and its key as a record payload.
pub(crate) fn encode(key: &str, entry: &Entry, out: &mut Vec<u8>) {
    let mut w = Writer(out);
    w.bytes(key.as_bytes());
    w.u16(entry.status.as_u16());
    w.u32(entry.headers.len() as u32);
    for (name, value) in &entry.headers {
        w.bytes(name.as_str().as_bytes());
        w.bytes(value.as_bytes());
    }
    w.bytes(&entry.body);
    w.u32(entry.vary.len() as u32);
    for name in &entry.vary {
        w.bytes(name.as_str().as_bytes());
    }
    w.u32(entry.secondary.0.len() as u32);
    for value in &entry.secondary.0 {
        w.opt_bytes(value.as_deref().map(str::as_bytes));
    }
    w.time(entry.response_time);
    w.time(entry.fetched);
    w.duration(entry.corrected_initial_age);
    w.duration(entry.lifetime);
    directives(&mut w, &entry.directives);
    w.bool(entry.has_validators);
    w.u32(entry.tags.len() as u32);
    for tag in &entry.tags {
        w.bytes(tag.as_bytes());
    }
    w.bool(entry.replica);
    w.u64(entry.soft_purged_at());
    w.u32(entry.hits());
    w.bool(entry.chunks.is_some());
    if let Some(map) = &entry.chunks {
        w.u64(map.total);
        w.u64(map.size);
        w.bytes(map.validator.as_bytes());
    }
}

fn directives(w: &mut Writer<'_>, d: &ResponseDirectives) {
    // Destructured, so a directive added to the struct cannot be forgotten here.
    let ResponseDirectives {
        max_age,
        s_maxage,
        no_store,
        no_cache,
        no_cache_fields,
        private,
        private_fields,
        public,
        must_revalidate,
        proxy_revalidate,
        must_understand,
        no_transform,
        immutable,
        stale_while_revalidate,
        stale_if_error,
        targeted,
        default_ttl,
        stale_when_disconnected,
    } = d;
    for v in [max_age, s_maxage, stale_while_revalidate, stale_if_error] {
        w.opt_u64(*v);
    }
    for v in [default_ttl, stale_when_disconnected] {
        w.opt_u64(*v);
    }
    for b in [
        no_store,
        no_cache,
        private,
        public,
        must_revalidate,
        proxy_revalidate,
        must_understand,
        no_transform,
        immutable,
        targeted,
    ] {
        w.bool(*b);
    }
    for fields in [no_cache_fields, private_fields] {
        w.u32(fields.len() as u32);
        for f in fields {
            w.bytes(f.as_bytes());
        }
    }
}

/// A record's contents did not make an entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// [`encode`] read back.
pub(crate) fn decode(payload: &[u8]) -> Result<(String, Entry), Corrupt> {
    let mut r = Reader(payload);
    let key = r.string()?;
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| Corrupt)?;
    let mut headers = HeaderMap::new();
    for _ in 0..r.count()? {
        let name = HeaderName::from_bytes(r.bytes()?).map_err(|_| Corrupt)?;
        let value = HeaderValue::from_bytes(r.bytes()?).map_err(|_| Corrupt)?;
        headers.append(name, value);
    }
    let body = Bytes::copy_from_slice(r.bytes()?);
    let mut vary = Vec::new();
    for _ in 0..r.count()? {
        vary.push(HeaderName::from_bytes(r.bytes()?).map_err(|_| Corrupt)?);
    }
    let mut secondary = Vec::new();
    for _ in 0..r.count()? {
        secondary.push(match r.bool()? {
            true => Some(r.string()?),
            false => None,
        });
    }
    let response_time = r.time()?;
    let fetched = r.time()?;
    let corrected_initial_age = r.duration()?;
    let lifetime = r.duration()?;
    let directives = read_directives(&mut r)?;
    let has_validators = r.bool()?;
    let mut tags = Vec::new();
    for _ in 0..r.count()? {
        tags.push(r.string()?.into_boxed_str());
    }
    let replica = r.bool()?;
    let soft_purged = r.u64()?;
    let hits = r.u32()?;
    let chunks = match r.bool()? {
        false => None,
        true => {
            let (total, size) = (r.u64()?, r.u64()?);
            let validator = HeaderValue::from_bytes(r.bytes()?).map_err(|_| Corrupt)?;
            // A chunk size of 0 would divide by zero when the manifest is served.
            if size == 0 || total == 0 {
                return Err(Corrupt);
            }
            Some(ChunkMap {
                total,
                size,
                validator,
            })
        }
    };
    if !r.0.is_empty() {
        return Err(Corrupt);
    }
    let entry = Entry::new(EntryParts {
        status,
        headers,
        body,
        vary,
        secondary: SecondaryKey(secondary),
        response_time,
        fetched,
        corrected_initial_age,
        lifetime,
        directives,
        has_validators,
        tags: tags.into_boxed_slice(),
        replica,
        chunks,
    });
    entry.restore(soft_purged, hits);
    Ok((key, entry))
}

fn read_directives(r: &mut Reader<'_>) -> Result<ResponseDirectives, Corrupt> {
    let mut d = ResponseDirectives {
        max_age: r.opt_u64()?,
        s_maxage: r.opt_u64()?,
        stale_while_revalidate: r.opt_u64()?,
        stale_if_error: r.opt_u64()?,
        default_ttl: r.opt_u64()?,
        stale_when_disconnected: r.opt_u64()?,
        ..ResponseDirectives::default()
    };
    for b in [
        &mut d.no_store,
        &mut d.no_cache,
        &mut d.private,
        &mut d.public,
        &mut d.must_revalidate,
        &mut d.proxy_revalidate,
        &mut d.must_understand,
        &mut d.no_transform,
        &mut d.immutable,
        &mut d.targeted,
    ] {
        *b = r.bool()?;
    }
    for fields in [&mut d.no_cache_fields, &mut d.private_fields] {
        for _ in 0..r.count()? {
            fields.push(r.string()?);
        }
    }
    Ok(d)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn opt_bytes(&mut self, v: Option<&[u8]>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.bytes(v);
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.u64(v);
        }
    }
    fn duration(&mut self, d: Duration) {
        self.u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
    fn time(&mut self, t: SystemTime) {
        self.duration(t.duration_since(UNIX_EPOCH).unwrap_or_default());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, Corrupt> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, Corrupt> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, Corrupt> {
        self.array().map(u64::from_le_bytes)
    }
    /// A count of items that follow, each at least one byte: never more than what is left,
    /// so a corrupt count cannot make the reader reserve or loop for long.
    fn count(&mut self) -> Result<usize, Corrupt> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err(Corrupt);
        }
        Ok(n)
    }
    fn bool(&mut self) -> Result<bool, Corrupt> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Corrupt),
        }
    }
    fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, Corrupt> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Corrupt)
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, Corrupt> {
        Ok(match self.bool()? {
            true => Some(self.u64()?),
            false => None,
        })
    }
    fn duration(&mut self) -> Result<Duration, Corrupt> {
        self.u64().map(Duration::from_nanos)
    }
    fn time(&mut self) -> Result<SystemTime, Corrupt> {
        UNIX_EPOCH.checked_add(self.duration()?).ok_or(Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &str, hits: u32) -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.insert(
            "content-length",
            HeaderValue::from_str(&body.len().to_string()).expect("number"),
        );
        let entry = Entry::new(EntryParts {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body.to_owned()),
            vary: vec![HeaderName::from_static("accept-encoding")],
            secondary: SecondaryKey(vec![Some("gzip".into())]),
            response_time: UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789),
            fetched: UNIX_EPOCH + Duration::from_nanos(1_764_000_000_023_456_789),
            corrected_initial_age: Duration::from_millis(2500),
            lifetime: Duration::from_secs(600),
            directives: ResponseDirectives {
                max_age: Some(600),
                s_maxage: None,
                no_store: false,
                no_cache: true,
                no_cache_fields: vec!["set-cookie".into()],
                private: false,
                private_fields: vec!["x-user".into(), "x-id".into()],
                public: true,
                must_revalidate: true,
                proxy_revalidate: false,
                must_understand: true,
                no_transform: true,
                immutable: false,
                stale_while_revalidate: Some(30),
                stale_if_error: Some(0),
                targeted: true,
                default_ttl: Some(7),
                stale_when_disconnected: Some(86_400),
            },
            has_validators: true,
            tags: vec!["t1".into(), "t2".into()].into_boxed_slice(),
            replica: true,
            chunks: None,
        });
        entry.restore(1_764_000_100, hits);
        entry
    }

    fn same(a: &Entry, b: &Entry) {
        assert_eq!(a.status, b.status);
        assert_eq!(a.headers, b.headers);
        assert_eq!(a.body, b.body);
        assert_eq!(a.vary, b.vary);
        assert_eq!(a.secondary, b.secondary);
        assert_eq!(a.response_time, b.response_time);
        assert_eq!(a.fetched, b.fetched);
        assert_eq!(a.chunks, b.chunks);
        assert_eq!(a.corrected_initial_age, b.corrected_initial_age);
        assert_eq!(a.lifetime, b.lifetime);
        assert_eq!(a.directives, b.directives);
        assert_eq!(a.has_validators, b.has_validators);
        assert_eq!(a.tags, b.tags);
        assert_eq!(a.replica, b.replica);
        assert_eq!(a.soft_purged_at(), b.soft_purged_at());
        assert_eq!(a.hits(), b.hits());
    }

    #[test]
    fn an_entry_reads_back_as_it_was_written() {
        let entry = sample("hello", 9);
        let mut payload = Vec::new();
        encode("http://a.test/x", &entry, &mut payload);
        let (key, back) = decode(&payload).expect("decodes");
        assert_eq!(key, "http://a.test/x");
        same(&entry, &back);
    }

    #[test]
    fn a_manifest_reads_back_with_its_chunk_map() {
        let mut parts = sample("", 2).into_parts();
        parts.chunks = Some(ChunkMap {
            total: 10 << 20,
            size: 1 << 20,
            validator: HeaderValue::from_static("\"v1\""),
        });
        let entry = Entry::new(parts);
        let mut payload = Vec::new();
        encode("http://a.test/big", &entry, &mut payload);
        let (_, back) = decode(&payload).expect("decodes");
        same(&entry, &back);
        // A chunk size of zero is refused, not a division by zero later.
        let at = payload.len() - 4 - 4 - 8;
        payload[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(decode(&payload).err(), Some(Corrupt));
    }

    #[test]
    fn a_cut_or_extended_payload_is_corrupt() {
        let mut payload = Vec::new();
        encode("k", &sample("body", 1), &mut payload);
        for cut in 0..payload.len() {
            assert_eq!(decode(&payload[..cut]).err(), Some(Corrupt), "cut at {cut}");
        }
        payload.push(0);
        assert_eq!(decode(&payload).err(), Some(Corrupt));
    }

    #[test]
    fn any_byte_of_a_payload_may_change_without_a_panic() {
        let mut payload = Vec::new();
        encode("k", &sample("body", 1), &mut payload);
        for i in 0..payload.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut changed = payload.clone();
                changed[i] = v;
                let _ = decode(&changed);
            }
        }
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "outpost-snapshot-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            prepare_dir(&dir).expect("temp dir");
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const FP: Fingerprint = Fingerprint([7; DIGEST_LEN]);
    /// `sample`'s entries are from late 2025 with a 600 s lifetime.
    fn soon_after() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_764_000_100)
    }

    fn entries(n: u32) -> Vec<(Arc<String>, Arc<Entry>)> {
        (0..n)
            .map(|i| {
                let entry = sample(&format!("body {i}"), i);
                (Arc::new(format!("k{i}")), Arc::new(entry))
            })
            .collect()
    }

    fn load_all(
        dir: &Path,
        fp: Fingerprint,
    ) -> Result<Option<(Loaded, Vec<String>)>, SnapshotError> {
        let mut keys = Vec::new();
        let loaded = load(dir, fp, soon_after(), u64::MAX, |key, entry| {
            assert_eq!(entry.body, Bytes::from(format!("body {}", &key[1..])));
            keys.push(key);
        })?;
        Ok(loaded.map(|l| (l, keys)))
    }

    #[test]
    fn a_saved_snapshot_loads_hottest_first() {
        let dir = Dir::new("roundtrip");
        let far = Instant::now() + Duration::from_secs(60);
        let saved = save(&dir.0, FP, entries(5), far).expect("saved");
        assert_eq!((saved.entries, saved.left_out), (5, 0));
        let (loaded, keys) = load_all(&dir.0, FP).expect("loads").expect("a snapshot");
        assert_eq!(loaded.entries, 5);
        assert!(!loaded.truncated);
        assert_eq!(keys, ["k4", "k3", "k2", "k1", "k0"]);
    }

    #[test]
    fn no_snapshot_is_not_an_error() {
        let dir = Dir::new("none");
        assert!(load_all(&dir.0, FP).expect("no error").is_none());
    }

    #[test]
    fn a_past_deadline_writes_a_valid_empty_snapshot() {
        let dir = Dir::new("deadline");
        let saved = save(&dir.0, FP, entries(3), Instant::now()).expect("saved");
        assert_eq!((saved.entries, saved.left_out), (0, 3));
        let (loaded, _) = load_all(&dir.0, FP).expect("loads").expect("a snapshot");
        assert_eq!(loaded, Loaded::default());
    }

    #[test]
    fn another_config_or_version_or_junk_is_skipped_whole() {
        let dir = Dir::new("whole");
        let far = Instant::now() + Duration::from_secs(60);
        save(&dir.0, FP, entries(2), far).expect("saved");
        let other = Fingerprint([8; DIGEST_LEN]);
        assert!(matches!(
            load_all(&dir.0, other),
            Err(SnapshotError::OtherConfig(_))
        ));
        let path = path_in(&dir.0);
        let mut bytes = fs::read(&path).expect("read");
        bytes[8] = 99; // the format number
        fs::write(&path, &bytes).expect("write");
        let err = load_all(&dir.0, FP).expect_err("other format");
        assert_eq!(err.reason(), "version");
        fs::write(&path, b"GIF89a and so on").expect("write");
        assert_eq!(load_all(&dir.0, FP).expect_err("junk").reason(), "corrupt");
        fs::write(&path, b"").expect("write");
        assert_eq!(load_all(&dir.0, FP).expect_err("empty").reason(), "corrupt");
    }

    #[test]
    fn a_damaged_record_is_skipped_and_the_others_load() {
        let dir = Dir::new("damaged");
        let far = Instant::now() + Duration::from_secs(60);
        save(&dir.0, FP, entries(3), far).expect("saved");
        let path = path_in(&dir.0);
        let mut bytes = fs::read(&path).expect("read");
        // Change one byte of the middle entry's body ("body 1" is stored second).
        let at = bytes
            .windows(6)
            .position(|w| w == b"body 1")
            .expect("the body is in the file");
        bytes[at + 5] = b'X';
        fs::write(&path, &bytes).expect("write");
        let (loaded, keys) = load_all(&dir.0, FP).expect("loads").expect("a snapshot");
        assert_eq!((loaded.entries, loaded.corrupt), (2, 1));
        assert_eq!(keys, ["k2", "k0"]);
    }

    #[test]
    fn a_file_cut_short_keeps_the_whole_records_before_the_cut() {
        let dir = Dir::new("cut");
        let far = Instant::now() + Duration::from_secs(60);
        save(&dir.0, FP, entries(3), far).expect("saved");
        let path = path_in(&dir.0);
        let bytes = fs::read(&path).expect("read");
        let second = bytes
            .windows(6)
            .position(|w| w == b"body 1")
            .expect("the body is in the file");
        // Cut in the middle of the second record's body.
        fs::write(&path, &bytes[..second + 3]).expect("write");
        let (loaded, keys) = load_all(&dir.0, FP).expect("loads").expect("a snapshot");
        assert!(loaded.truncated);
        assert_eq!(keys, ["k2"]);
    }

    #[test]
    fn expired_entries_and_entries_past_the_budget_are_not_loaded() {
        let dir = Dir::new("expired");
        let far = Instant::now() + Duration::from_secs(60);
        save(&dir.0, FP, entries(3), far).expect("saved");
        let mut kept = 0;
        let later = soon_after() + Duration::from_secs(100_000);
        let loaded = load(&dir.0, FP, later, u64::MAX, |_, _| kept += 1)
            .expect("loads")
            .expect("a snapshot");
        assert_eq!((loaded.entries, loaded.expired, kept), (0, 3, 0));
        let loaded = load(&dir.0, FP, soon_after(), 1, |_, _| kept += 1)
            .expect("loads")
            .expect("a snapshot");
        assert_eq!((loaded.entries, loaded.over_budget, kept), (1, 2, 1));
    }
}
