//! Every operator-facing error: exact line, column and key path, plus a
//! fragment of the message. Positions are 1-based; columns count chars.

use crate::config::ConfigError;
use crate::config::tests::{config_dir, parse};

/// A valid site, three lines long, appended where sites are not the point.
macro_rules! site {
    () => {
        "[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://127.0.0.1:1\"]\n"
    };
}

/// `(what, file text, line, col, key, message fragment)`.
type Case = (
    &'static str,
    &'static str,
    usize,
    usize,
    &'static str,
    &'static str,
);

fn run(cases: &[Case]) {
    for &(what, text, line, col, key, says) in cases {
        let err = parse(text).map(|_| ()).expect_err(what);
        let shown = err.to_string();
        let ConfigError::Invalid {
            file,
            line: l,
            col: c,
            key: k,
            message,
        } = err
        else {
            panic!("{what}: not Invalid: {shown}");
        };
        assert_eq!((l, c, k.as_str()), (line, col, key), "{what}: {shown}");
        assert!(message.contains(says), "{what}: {shown}");
        assert!(!message.contains('\n'), "{what}: multi-line: {shown}");
        assert_eq!(shown, format!("{file}:{l}:{c}: {k}: {message}"), "{what}");
        assert_eq!(file, "test.toml", "{what}");
    }
}

#[test]
fn syntax_errors() {
    run(SYNTAX_ERRORS);
}

#[test]
fn unknown_keys() {
    run(UNKNOWN_KEYS);
}

#[test]
fn missing_keys_and_types() {
    run(MISSING_KEYS_AND_TYPES);
}

#[test]
fn sizes_and_durations() {
    run(SIZES_AND_DURATIONS);
}

#[test]
fn listeners_and_admin() {
    run(LISTENERS_AND_ADMIN);
}

#[test]
fn sites_and_origins() {
    run(SITES_AND_ORIGINS);
}

#[test]
fn certificate_files() {
    run(CERTIFICATE_FILES);
    let text = concat!(
        "[[tls.certificates]]\ncert = \"certs/missing.pem\"\nkey = \"k\"\n",
        site!()
    );
    let shown = parse(text).map(|_| ()).expect_err("missing").to_string();
    let resolved = config_dir().join("certs/missing.pem");
    assert!(
        shown.ends_with(&format!("file not found: {}", resolved.display())),
        "{shown}"
    );
}

// One case per line: rustfmt would spread each over seven.

#[rustfmt::skip]
const SYNTAX_ERRORS: &[Case] = &[
    ("no value", concat!("[cache]\nmemory = \n", site!()), 2, 10, "cache.memory", "expected"),
    ("no comma", "[listen]\nhttp = [\"a\" \"b\"]\n", 2, 13, "listen.http[1]", "comma"),
    ("unclosed string", "[node]\nname = \"x\n", 2, 10, "node.name", "expected"),
    ("duplicate key", "[cache]\nmemory = 1\nmemory = 2\n", 3, 1, "cache.memory", "duplicate key"),
    ("bad header", "[[site]]\n[site.origin\n", 2, 13, "site[0].origin", "expected `]`"),
];

#[rustfmt::skip]
const UNKNOWN_KEYS: &[Case] = &[
    ("top level", concat!("colour = 1\n", site!()), 1, 1, "colour", "unknown key `colour`"),
    ("in listen", concat!("[listen]\nhttp_port = 80\n", site!()), 2, 1, "listen.http_port", "unknown key"),
    ("dotted", concat!("cache.size = 1\n", site!()), 1, 7, "cache.size", "unknown key"),
    ("second site", concat!(site!(), "[[site]]\nhosts = [\"b.test\"]\norigin = [\"http://x\"]\ncolor = 1\n"), 7, 1, "site[1].color", "unknown key"),
    ("origin table", "[[site]]\nhosts = [\"a\"]\n[site.origin]\nservers = [\"http://x\"]\ntimeout = 5\n", 5, 1, "site[0].origin.timeout", "expected one of"),
    ("inline tls", "[[site]]\nhosts = [\"a\"]\norigin = { servers = [\"http://x\"], tls = { verfy = false } }\n", 3, 44, "site[0].origin.tls.verfy", "unknown key"),
    ("certificate", concat!("[[tls.certificates]]\ncert = \"a\"\nkey = \"b\"\nchain = \"c\"\n", site!()), 4, 1, "tls.certificates[0].chain", "unknown key"),
];

#[rustfmt::skip]
const MISSING_KEYS_AND_TYPES: &[Case] = &[
    ("no site", "", 1, 1, "site", "at least one [[site]]"),
    ("no site, other tables", "[node]\nname = \"x\"\n", 1, 1, "site", "at least one [[site]]"),
    ("no origin", "[[site]]\nhosts = [\"a.test\"]\n", 1, 1, "site[0].origin", "missing required key"),
    ("no origin, 2nd site", concat!(site!(), "\n[[site]]\nhosts = [\"b.test\"]\n"), 5, 1, "site[1].origin", "missing required key"),
    ("no hosts", "[[site]]\norigin = [\"http://x\"]\n", 1, 1, "site[0].hosts", "missing required key"),
    ("no servers", "[[site]]\nhosts = [\"a\"]\n[site.origin]\nidle_timeout = 5\n", 3, 1, "site[0].origin.servers", "missing required key"),
    ("no cert key", concat!("[[tls.certificates]]\ncert = \"a\"\n", site!()), 1, 1, "tls.certificates[0].key", "missing required key"),
    ("string for int", concat!("[listen]\nmax_headers = \"many\"\n", site!()), 2, 15, "listen.max_headers", "invalid type"),
    ("negative int", concat!("[listen]\nmax_connections = -1\n", site!()), 2, 19, "listen.max_connections", "-1"),
    ("int in hosts", "[[site]]\nhosts = [\"a.test\", 5]\norigin = [\"http://x\"]\n", 2, 20, "site[0].hosts[1]", "invalid type"),
    ("origin number", "[[site]]\nhosts = [\"a\"]\norigin = 5\n", 3, 10, "site[0].origin", "a list of origin URLs"),
    ("site not a table", "site = \"x\"\n", 1, 8, "site", "invalid type"),
];

#[rustfmt::skip]
const SIZES_AND_DURATIONS: &[Case] = &[
    ("memory lots", concat!("[cache]\nmemory = \"lots\"\n", site!()), 2, 10, "cache.memory", "\"lots\" is not a size; use"),
    ("dotted memory", concat!("cache.memory = \"lots\"\n", site!()), 1, 16, "cache.memory", "is not a size"),
    ("memory too small", concat!("[cache]\nmemory = 1000\nmax_object = 1\n", site!()), 2, 10, "cache.memory", "minimum is 1MiB"),
    ("max_object 2TiB", concat!("[cache]\nmemory = \"8GiB\"\nmax_object = \"2TiB\"\n", site!()), 3, 14, "cache.max_object", "the maximum is 1TiB"),
    ("chunk_size tiny", concat!("[cache]\nchunk_size = \"4KiB\"\n", site!()), 2, 14, "cache.chunk_size", "use 64KiB to 64MiB"),
    ("chunk_size > memory", concat!("[cache]\nmemory = \"2MiB\"\nchunk_size = \"4MiB\"\n", site!()), 3, 14, "cache.chunk_size", "4MiB is larger than cache.memory (2MiB)"),
    ("chunk_above < chunk_size", concat!("[cache]\nchunk_above = \"64KiB\"\n", site!()), 2, 15, "cache.chunk_above", "below cache.chunk_size (1MiB)"),
    ("compress_max_size < min", "[[site]]\nhosts = [\"a.test\"]\norigin = [\"http://x\"]\ncompress = [\"br\"]\ncompress_max_size = \"100B\"\n", 5, 21, "site[0].compress_max_size", "must not be below compress_min_size"),
    ("purge_lease <= probe_interval", concat!("[cluster]\nadvertise = \"10.0.0.1:80\"\nsecret = \"0123456789abcdef\"\npurge_lease = \"1s\"\n", site!()), 4, 15, "cluster.purge_lease", "longer than cluster.probe_interval"),
    ("max_object zero", concat!("[cache]\nmax_object = 0\n", site!()), 2, 14, "cache.max_object", "greater than zero"),
    ("fraction", concat!("[cache]\nheuristic_fraction = 101\n", site!()), 2, 22, "cache.heuristic_fraction", "between 0 and 100"),
    ("header bytes", concat!("[listen]\nmax_header_bytes = \"1KiB\"\n", site!()), 2, 20, "listen.max_header_bytes", "minimum is 8KiB"),
    ("persist a file", concat!("[cache]\npersist = \"/dev/null\"\n", site!()), 2, 11, "cache.persist", "/dev/null is not a directory"),
    ("persist empty", concat!("[cache]\npersist = \"\"\n", site!()), 2, 11, "cache.persist", "must name a directory"),
    ("bad duration", concat!("[cache]\nheuristic_max = \"1 week\"\n", site!()), 2, 17, "cache.heuristic_max", "is not a duration"),
    ("zero timeout", concat!("[listen]\nidle_timeout = \"0s\"\n", site!()), 2, 16, "listen.idle_timeout", "greater than zero"),
    ("zero count", concat!("[listen]\nmax_headers = 0\n", site!()), 2, 15, "listen.max_headers", "at least 1"),
    ("body timeout", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nrequest_body_timeout = \"0s\"\n", 4, 24, "site[0].request_body_timeout", "greater than zero"),
    ("origin timeout", "[[site]]\nhosts = [\"a\"]\n[site.origin]\nservers = [\"http://x\"]\nconnect_timeout = \"5 s\"\nfirst_byte_timeout = \"0ms\"\n", 6, 22, "site[0].origin.first_byte_timeout", "greater than zero"),
];

#[rustfmt::skip]
const LISTENERS_AND_ADMIN: &[Case] = &[
    ("bad address", concat!("[listen]\nhttp = [\"localhost:abc\"]\n", site!()), 2, 9, "listen.http[0]", "\"localhost:abc\" is not an IP:PORT"),
    ("bad second https", concat!("[listen]\nhttps = [\"[::]:1\", \"::1\"]\n", site!()), 2, 20, "listen.https[1]", "IP:PORT"),
    ("https without certs", concat!("[listen]\nhttps = [\"0.0.0.0:8443\"]\n", site!()), 2, 9, "listen.https", "[[tls.certificates]]"),
    ("no listeners", concat!("[listen]\nhttp = []\n", site!()), 2, 8, "listen.http", "no listeners"),
    ("same address twice", concat!("[listen]\nhttp = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n", site!()), 2, 25, "listen.http[1]", "already listed at listen.http[0]"),
    ("admin clashes", concat!("[admin]\nlisten = \"127.0.0.1:8080\"\n", site!()), 2, 10, "admin.listen", "also a listen"),
    ("admin bad", concat!("[admin]\nlisten = \"9090\"\n", site!()), 2, 10, "admin.listen", "IP:PORT"),
    ("empty token", concat!("[admin]\ntoken = \"\"\n", site!()), 2, 9, "admin.token", "must not be empty"),
    ("token space", concat!("[admin]\ntoken = \"a b\"\n", site!()), 2, 9, "admin.token", "printable ASCII"),
    ("node name", concat!("[node]\nname = \"edge 1\"\n", site!()), 2, 8, "node.name", "without spaces"),
    ("empty node name", concat!("[node]\nname = \"\"\n", site!()), 2, 8, "node.name", "must not be empty"),
];

#[rustfmt::skip]
const SITES_AND_ORIGINS: &[Case] = &[
    ("https shield", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"https://10.0.0.1:80\"]\n", 4, 11, "site[0].shield[0]", "https shields are not supported"),
    ("shield by name", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"http://shield.example:80\"]\n", 4, 11, "site[0].shield[0]", "not an IP address and port"),
    ("shield with a path", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"http://10.0.0.1:80/x\"]\n", 4, 11, "site[0].shield[0]", "has a path"),
    ("shield twice", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"http://10.0.0.1\", \"http://10.0.0.1:80\"]\n", 4, 30, "site[0].shield[1]", "listed twice"),
    ("shield without cluster", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"http://10.0.0.1:80\"]\n", 4, 10, "site[0].shield", "[cluster]"),
    ("shield ftp", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"ftp://10.0.0.1:80\"]\n", 4, 11, "site[0].shield[0]", "unsupported scheme"),
    ("shield without scheme", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"10.0.0.1:80\"]\n", 4, 11, "site[0].shield[0]", "no scheme"),
    ("shield is a peer", "[cluster]\nadvertise = \"10.0.0.1:8080\"\npeers = [\"10.0.0.2:8080\"]\nsecret = \"0123456789abcdef01234567\"\n[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"http://10.0.0.2:8080\"]\n", 8, 11, "site[0].shield[0]", "own cluster"),
    ("shield is this node", "[cluster]\nadvertise = \"10.0.0.1:8080\"\nsecret = \"0123456789abcdef01234567\"\n[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\"]\nshield = [\"http://10.0.0.1:8080\"]\n", 7, 11, "site[0].shield[0]", "own listener"),
    ("dup host in site", "[[site]]\nhosts = [\"a.test\", \"A.test\"]\norigin = [\"http://x\"]\n", 2, 20, "site[0].hosts[1]", "already listed at site[0].hosts[0]"),
    ("dup host across", concat!(site!(), "[[site]]\nhosts = [\"b.test\", \"a.test\"]\norigin = [\"http://y\"]\n"), 5, 20, "site[1].hosts[1]", "\"a.test\" is already listed at site[0].hosts[0]"),
    ("bad host", "[[site]]\nhosts = [\"a.*.com\"]\norigin = [\"http://x\"]\n", 2, 10, "site[0].hosts[0]", "leading \"*.\""),
    ("host with port", "[[site]]\nhosts = [\"a.test:80\"]\norigin = [\"http://x\"]\n", 2, 10, "site[0].hosts[0]", "port"),
    ("no hosts", "[[site]]\nhosts = []\norigin = [\"http://x\"]\n", 2, 9, "site[0].hosts", "at least one host"),
    ("ftp origin", "[[site]]\nhosts = [\"a\"]\norigin = [\"ftp://x\"]\n", 3, 11, "site[0].origin[0]", "unsupported scheme \"ftp\""),
    ("origin path", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x/app\"]\n", 3, 11, "site[0].origin[0]", "must not have a path"),
    ("long form path", "[[site]]\nhosts = [\"a\"]\n[site.origin]\nservers = [\"http://x\", \"http://x/app\"]\n", 4, 24, "site[0].origin.servers[1]", "must not have a path"),
    ("empty origin", "[[site]]\nhosts = [\"a\"]\norigin = []\n", 3, 10, "site[0].origin", "at least one origin server"),
    ("origin twice", "[[site]]\nhosts = [\"a\"]\norigin = [\"http://x\", \"http://x/\"]\n", 3, 23, "site[0].origin[1]", "listed twice"),
    ("dup site name", concat!("[[site]]\nname = \"a.test\"\nhosts = [\"b.test\"]\norigin = [\"http://x\"]\n", site!()), 6, 10, "site[1].hosts[0]", "already used by site[0]"),
    ("bad sni", "[[site]]\nhosts = [\"a\"]\norigin = { servers = [\"https://x\"], tls = { sni = \"*.x\" } }\n", 3, 51, "site[0].origin.tls.sni", "not a DNS name"),
    ("missing ca", "[[site]]\nhosts = [\"a\"]\norigin = { servers = [\"https://x\"], tls = { ca = \"ca.pem\" } }\n", 3, 50, "site[0].origin.tls.ca", "file not found"),
];

#[rustfmt::skip]
const CERTIFICATE_FILES: &[Case] = &[
    ("missing cert", concat!("[[tls.certificates]]\ncert = \"certs/missing.pem\"\nkey = \"outpost.toml\"\n", site!()), 2, 8, "tls.certificates[0].cert", "file not found"),
    ("missing 2nd key", concat!("[[tls.certificates]]\ncert = \"outpost.toml\"\nkey = \"outpost.toml\"\n[[tls.certificates]]\ncert = \"outpost.toml\"\nkey = \"k.pem\"\n", site!()), 6, 7, "tls.certificates[1].key", "file not found"),
    ("directory", concat!("[[tls.certificates]]\ncert = \".\"\nkey = \"outpost.toml\"\n", site!()), 2, 8, "tls.certificates[0].cert", "not a regular file"),
];

#[test]
fn site_cache_policy_errors() {
    run(SITE_CACHE);
}

const SITE_CACHE: &[Case] = &[
    (
        "targeted field with a space",
        concat!(site!(), "[site.cache]\ntargeted_field = \"Outpost CC\"\n"),
        5,
        18,
        "site[0].cache.targeted_field",
        "not a valid header field name",
    ),
    (
        "zero variants",
        concat!(site!(), "[site.cache]\nmax_variants = 0\n"),
        5,
        16,
        "site[0].cache.max_variants",
        "between 1 and 1024",
    ),
    (
        "status ttl for 304",
        concat!(site!(), "[site.cache.status_ttl]\n304 = \"1m\"\n"),
        5,
        7,
        "site[0].cache.status_ttl.304",
        "a final code 200-599 other than 206 and 304",
    ),
    (
        "status ttl key not a number",
        concat!(site!(), "[site.cache.status_ttl]\nmissing = \"1m\"\n"),
        5,
        11,
        "site[0].cache.status_ttl.missing",
        "is not a status",
    ),
    (
        "only and drop together",
        concat!(
            site!(),
            "[site.cache_key]\ndrop_query = [\"a\"]\nonly_query = [\"b\"]\n"
        ),
        6,
        14,
        "site[0].cache_key.only_query",
        "cannot be combined",
    ),
    (
        "bad cookie name",
        concat!(site!(), "[site.cache_key]\ncookies = [\"a;b\"]\n"),
        5,
        12,
        "site[0].cache_key.cookies[0]",
        "not a valid cookie name",
    ),
    (
        "unknown key in site.cache",
        concat!(site!(), "[site.cache]\nmax_variant = 3\n"),
        5,
        1,
        "site[0].cache.max_variant",
        "unknown",
    ),
];

#[test]
fn cluster_errors() {
    run(CLUSTER);
}

const CLUSTER: &[Case] = &[
    (
        "advertise not an address",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"edge-1\"\npeers = []\nsecret = \"0123456789abcdef\"\n"
        ),
        5,
        13,
        "cluster.advertise",
        "not an IP:PORT address",
    ),
    (
        "short secret",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"10.0.0.1:80\"\npeers = []\nsecret = \"short\"\n"
        ),
        7,
        10,
        "cluster.secret",
        "at least 16",
    ),
    (
        "peers and discovery",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"10.0.0.1:80\"\npeers = []\ndiscovery = \"dns:a:80\"\nsecret = \"0123456789abcdef\"\n"
        ),
        6,
        9,
        "cluster.peers",
        "not both",
    ),
    (
        "bad discovery",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"10.0.0.1:80\"\ndiscovery = \"edge.internal\"\nsecret = \"0123456789abcdef\"\n"
        ),
        6,
        13,
        "cluster.discovery",
        "dns:NAME:PORT",
    ),
    (
        "unknown replicate",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"10.0.0.1:80\"\npeers = []\nsecret = \"0123456789abcdef\"\nreplicate = \"some\"\n"
        ),
        8,
        13,
        "cluster.replicate",
        "not one of",
    ),
    (
        "too many replicas",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"10.0.0.1:80\"\npeers = []\nsecret = \"0123456789abcdef\"\nreplicas = 4\n"
        ),
        8,
        12,
        "cluster.replicas",
        "4 is out of range: each object is held by 1 to 3 nodes",
    ),
    (
        "no replicas",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"10.0.0.1:80\"\npeers = []\nsecret = \"0123456789abcdef\"\nreplicas = 0\n"
        ),
        8,
        12,
        "cluster.replicas",
        "0 is out of range",
    ),
    (
        "duplicate peer",
        concat!(
            site!(),
            "[cluster]\nadvertise = \"10.0.0.1:80\"\npeers = [\"10.0.0.2:80\", \"10.0.0.2:80\"]\nsecret = \"0123456789abcdef\"\n"
        ),
        6,
        25,
        "cluster.peers[1]",
        "listed twice",
    ),
    (
        "dns ttl bounds",
        concat!(site!(), "[dns]\nmin_ttl = \"10s\"\nmax_ttl = \"5s\"\n"),
        6,
        11,
        "dns.max_ttl",
        "must not be below",
    ),
];

#[test]
fn origin_balance_and_health_errors() {
    run(ORIGIN_HEALTH);
}

const ORIGIN_HEALTH: &[Case] = &[
    (
        "unknown balance",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nbalance = \"fastest\"\n",
        5,
        11,
        "site[0].origin.balance",
        "not one of",
    ),
    (
        "health path not a path",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nhealth = { path = \"health\" }\n",
        5,
        19,
        "site[0].origin.health.path",
        "not a path",
    ),
    (
        "health rise zero",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nhealth = { path = \"/h\", rise = 0 }\n",
        5,
        32,
        "site[0].origin.health.rise",
        "at least 1",
    ),
    (
        "passive status not a server error",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nhealth = { passive_statuses = [502, 404] }\n",
        5,
        37,
        "site[0].origin.health.passive_statuses",
        "404 is not a server error status (500-599)",
    ),
    (
        "probe timing without a probe path",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nhealth = { interval = \"1s\", passive_statuses = [503] }\n",
        5,
        23,
        "site[0].origin.health.interval",
        "applies to active probes only",
    ),
    (
        "unknown http2",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nhttp2 = \"yes\"\n",
        5,
        9,
        "site[0].origin.http2",
        "not one of",
    ),
    (
        "max_connections zero",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nmax_connections = 0\n",
        5,
        19,
        "site[0].origin.max_connections",
        "at least 1",
    ),
    (
        "queue_timeout not a duration",
        "[[site]]\nhosts = [\"a.test\"]\n[site.origin]\nservers = [\"http://127.0.0.1:1\"]\nqueue_timeout = \"soon\"\n",
        5,
        17,
        "site[0].origin.queue_timeout",
        "",
    ),
];

#[test]
fn steering_errors() {
    run(STEERING);
}

/// A valid `[steering]` table and two regions, for the cases to break one key of.
macro_rules! steering {
    ($steering:expr, $eu:expr, $us:expr) => {
        concat!(
            site!(),
            "[steering]\nzone = \"cdn.example.com\"\n",
            $steering,
            "[[region]]\nname = \"eu-west\"\nsubnets = [\"10.1.0.0/16\"]\nnext = [\"us-east\"]\n",
            $eu,
            "[[region]]\nname = \"us-east\"\nnodes = [{ name = \"edge-2\", address = \"10.2.0.5\", ready = \"http://10.2.0.5:9090/readyz\" }]\n",
            $us,
        )
    };
}

/// The eu-west region's nodes line, with one node.
macro_rules! eu_nodes {
    ($name:literal, $address:literal, $ready:literal) => {
        concat!(
            "nodes = [{ name = \"",
            $name,
            "\", address = \"",
            $address,
            "\", ready = \"",
            $ready,
            "\" }]\n"
        )
    };
}

#[rustfmt::skip]
const STEERING: &[Case] = &[
    ("region without steering", concat!(site!(), "[[region]]\nname = \"eu\"\nnodes = []\n"), 4, 1, "region", "needs a [steering] table"),
    ("steering without region", concat!(site!(), "[steering]\nzone = \"cdn.example.com\"\n"), 4, 1, "steering", "at least one [[region]]"),
    ("no zone", concat!(site!(), "[steering]\nnames = [\"www\"]\n[[region]]\nname = \"eu\"\nnodes = []\n"), 4, 1, "steering.zone", "missing"),
    ("unknown default region", steering!("default_region = \"ap-south\"\n", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/readyz"), ""), 6, 18, "steering.default_region", "\"ap-south\" is not a region (the regions are \"eu-west\", \"us-east\")"),
    ("unknown next", concat!(site!(), "[steering]\nzone = \"cdn.example.com\"\n[[region]]\nname = \"eu-west\"\nnext = [\"us-west\"]\n", eu_nodes!("edge-1", "10.1.0.5", "http://x/readyz")), 8, 9, "region[0].next[0]", "\"us-west\" is not a region"),
    ("duplicate region", steering!("", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/readyz"), "[[region]]\nname = \"eu-west\"\nnodes = [{ name = \"edge-3\", address = \"10.3.0.5\", ready = \"http://x/\" }]\n"), 15, 8, "region[2].name", "already the name of region[0]"),
    ("duplicate node", steering!("", eu_nodes!("edge-2", "10.1.0.5", "http://10.1.0.5:9090/readyz"), ""), 13, 19, "region[1].nodes[0].name", "\"edge-2\" is already the name of region[0].nodes[0]"),
    ("duplicate address", steering!("", eu_nodes!("edge-1", "10.2.0.5", "http://10.1.0.5:9090/readyz"), ""), 13, 39, "region[1].nodes[0].address", "10.2.0.5 is already the address of region[0].nodes[0]"),
    ("address not an IP", steering!("", eu_nodes!("edge-1", "edge-1.internal", "http://10.1.0.5:9090/readyz"), ""), 10, 39, "region[0].nodes[0].address", "\"edge-1.internal\" is not an IP address"),
    ("ready not http", steering!("", eu_nodes!("edge-1", "10.1.0.5", "tcp://10.1.0.5:9090"), ""), 10, 59, "region[0].nodes[0].ready", "not an http:// or https:// URL"),
    ("ready with a quote", steering!("", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/ready'z"), ""), 10, 59, "region[0].nodes[0].ready", "must not contain quotes"),
    ("bad subnet", concat!(site!(), "[steering]\nzone = \"cdn.example.com\"\n[[region]]\nname = \"eu-west\"\nsubnets = [\"10.1.0.0/16\", \"10.1/16\"]\n", eu_nodes!("edge-1", "10.1.0.5", "http://x/")), 8, 27, "region[0].subnets[1]", "\"10.1/16\" is not a subnet"),
    ("subnet with host bits", concat!(site!(), "[steering]\nzone = \"cdn.example.com\"\n[[region]]\nname = \"eu-west\"\nsubnets = [\"10.1.0.5/16\"]\n", eu_nodes!("edge-1", "10.1.0.5", "http://x/")), 8, 12, "region[0].subnets[0]", "the network is 10.1.0.0/16"),
    ("subnet in two regions", steering!("", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/readyz"), "subnets = [\"10.1.0.0/16\"]\n"), 14, 12, "region[1].subnets[0]", "10.1.0.0/16 is already listed at region[0].subnets[0]"),
    ("no nodes", steering!("", "nodes = []\n", ""), 10, 9, "region[0].nodes", "at least one node"),
    ("bad zone", concat!(site!(), "[steering]\nzone = \"cdn..example.com\"\n[[region]]\nname = \"eu\"\n", eu_nodes!("edge-1", "10.1.0.5", "http://x/")), 5, 8, "steering.zone", "not a DNS name"),
    ("bad name", steering!("names = [\"www\", \"web site\"]\n", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/readyz"), ""), 6, 17, "steering.names[1]", "not a name relative to steering.zone"),
    ("fractional ttl", steering!("ttl = \"1500ms\"\n", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/readyz"), ""), 6, 7, "steering.ttl", "whole number of seconds"),
    ("zero interval", steering!("check_interval = \"0s\"\n", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/readyz"), ""), 6, 18, "steering.check_interval", "whole number of seconds"),
    ("unknown key", steering!("interval = \"2s\"\n", eu_nodes!("edge-1", "10.1.0.5", "http://10.1.0.5:9090/readyz"), ""), 6, 1, "steering.interval", "unknown"),
    ("unknown node key", steering!("", "nodes = [{ name = \"e\", address = \"10.1.0.5\", ready = \"http://x/\", weight = 2 }]\n", ""), 10, 67, "region[0].nodes[0].weight", "unknown"),
];

#[test]
fn compression_errors() {
    run(COMPRESSION);
}

const COMPRESSION: &[Case] = &[
    (
        "a coding Outpost does not apply",
        concat!(site!(), "compress = [\"br\", \"deflate\"]\n"),
        4,
        19,
        "site[0].compress[1]",
        "not a coding Outpost applies (br, zstd, gzip)",
    ),
    (
        "a coding twice",
        concat!(site!(), "compress = [\"gzip\", \"gzip\"]\n"),
        4,
        21,
        "site[0].compress[1]",
        "listed twice",
    ),
    (
        "x-gzip is what clients may say, not a coding to offer",
        concat!(site!(), "compress = [\"x-gzip\"]\n"),
        4,
        13,
        "site[0].compress[0]",
        "not a coding",
    ),
    (
        "not a media type",
        concat!(
            site!(),
            "compress = [\"br\"]\ncompress_types = [\"html\"]\n"
        ),
        5,
        19,
        "site[0].compress_types[0]",
        "not a media type pattern",
    ),
    (
        "types without codings",
        concat!(site!(), "compress_types = [\"text/*\"]\n"),
        4,
        18,
        "site[0].compress_types",
        "has no effect without compress",
    ),
    (
        "brotli level past 11",
        concat!(
            site!(),
            "compress = [\"br\"]\ncompress_levels = { br = 12 }\n"
        ),
        5,
        26,
        "site[0].compress_levels.br",
        "between 0 and 11",
    ),
    (
        "gzip level 0 stores, not compresses",
        concat!(
            site!(),
            "compress = [\"gzip\"]\ncompress_levels = { gzip = 0 }\n"
        ),
        5,
        28,
        "site[0].compress_levels.gzip",
        "between 1 and 9",
    ),
];
