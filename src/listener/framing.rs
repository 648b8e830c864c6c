//! Request framing as the bytes of an HTTP/1.1 connection show it, for the one thing hyper
//! hides: a request whose head has both `Transfer-Encoding` and `Content-Length`
//! (RFC 9112 §6.1, the request-smuggling shape). hyper frames such a request by
//! Transfer-Encoding and leaves Content-Length out of the head it hands over, so the handler
//! cannot tell it from a plain chunked request. [`Framing`] follows the byte stream with
//! hyper's own rules (httparse for heads, hyper's chunked grammar for bodies) and names the
//! request whose head carried both.
//!
//! It only watches. Wherever it could disagree with hyper about where the next request
//! starts (a malformed head or chunk, an upgrade, `Expect: 100-continue`, HTTP/2) it stops
//! for the rest of the connection, and hyper's own handling stands, which RFC 9112 §6.1
//! also allows: frame by Transfer-Encoding, close the connection afterwards.
//!
//! Pure: bytes in, verdicts out; `listener::watched` feeds it what the socket reads.

/// Where the next byte of the connection belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A request head, collected in `Framing::head`.
    Head,
    /// This many body bytes of a `Content-Length` body.
    Fixed(u64),
    Chunked(Chunk),
    /// Not followed any more.
    Stopped,
}

/// hyper's chunked decoder states (`proto::h1::decode::ChunkedState`), minus the data it
/// keeps: the same bytes are accepted and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// The first hex digit of a chunk size.
    Start,
    Size(u64),
    SizeSpace(u64),
    Extension {
        size: u64,
        bytes: u64,
    },
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: a trailer field, or the final CRLF.
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// hyper refuses chunk extensions this long (`CHUNKED_EXTENSIONS_LIMIT`).
const MAX_EXTENSION_BYTES: u64 = 16 * 1024;

/// One connection's framing.
pub struct Framing {
    state: State,
    /// The head being read, until it is complete.
    head: Vec<u8>,
    /// Request heads completed so far; the next is number `requests + 1`.
    requests: u64,
    /// hyper's limits: a longer head or more fields than this is refused by hyper, which
    /// then closes the connection.
    max_head_bytes: usize,
    max_headers: usize,
}

impl Framing {
    pub fn new(max_head_bytes: usize, max_headers: usize) -> Self {
        Self {
            state: State::Head,
            head: Vec::new(),
            requests: 0,
            max_head_bytes,
            max_headers,
        }
    }

    /// Follows the next bytes read from the client. Returns the number (1-based, in
    /// connection order) of a request whose head had both `Transfer-Encoding` and
    /// `Content-Length`; after that request nothing more is followed (hyper closes the
    /// connection after it anyway).
    pub fn feed(&mut self, mut input: &[u8]) -> Option<u64> {
        while !input.is_empty() {
            match self.state {
                State::Stopped => return None,
                State::Head => {
                    let (used, found) = self.head_bytes(input);
                    if found.is_some() {
                        return found;
                    }
                    input = input.get(used..).unwrap_or_default();
                }
                State::Fixed(left) => {
                    let n = left.min(input.len() as u64);
                    // `n` is at most `input.len()`, so it fits in a usize.
                    input = input.get(n as usize..).unwrap_or_default();
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Fixed(left - n)
                    };
                }
                State::Chunked(Chunk::Data(left)) => {
                    let n = left.min(input.len() as u64);
                    input = input.get(n as usize..).unwrap_or_default();
                    self.state = State::Chunked(if n == left {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n)
                    });
                }
                State::Chunked(chunk) => {
                    let (&byte, rest) = input.split_first()?;
                    input = rest;
                    self.state = match chunk_step(chunk, byte) {
                        Some(Step::Next(next)) => State::Chunked(next),
                        Some(Step::Done) => State::Head,
                        None => State::Stopped,
                    };
                }
            }
        }
        None
    }

    /// Takes head bytes from `input`; returns how many it used, and a request number when
    /// the completed head has both framing fields.
    fn head_bytes(&mut self, input: &[u8]) -> (usize, Option<u64>) {
        if self.head.is_empty() {
            // Most heads arrive whole in one read: parsed where they are, not copied.
            return match parse_head(input, self.max_headers) {
                Parsed::Complete(len, body) if len <= self.max_head_bytes => {
                    (len, self.completed(body))
                }
                Parsed::Partial if input.len() <= self.max_head_bytes => {
                    self.head.extend_from_slice(input);
                    (input.len(), None)
                }
                // Malformed, too long, too many fields: hyper refuses it and closes.
                _ => {
                    self.stop();
                    (input.len(), None)
                }
            };
        }
        // Only look for the end of the head where it can be: in the new bytes, or across
        // their boundary with the old ones. Reparsing on every byte of a slowly dripped head
        // would be quadratic.
        let seen = self.head.len();
        self.head.extend_from_slice(input);
        let from = seen.saturating_sub(3);
        let tail = self.head.get(from..).unwrap_or_default();
        let may_end =
            tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
        if !may_end {
            if self.head.len() > self.max_head_bytes {
                self.stop();
            }
            return (input.len(), None);
        }
        match parse_head(&self.head, self.max_headers) {
            Parsed::Complete(len, body) if len <= self.max_head_bytes => {
                // The head ends inside `input` (it was not complete before it), so this is
                // within it.
                let used = len.saturating_sub(seen).min(input.len());
                self.head.clear();
                (used, self.completed(body))
            }
            Parsed::Partial if self.head.len() <= self.max_head_bytes => (input.len(), None),
            _ => {
                self.stop();
                (input.len(), None)
            }
        }
    }

    /// A head is complete and its body is framed as `body`: what follows it. Returns the
    /// request's number if its head had both framing fields.
    fn completed(&mut self, body: Body) -> Option<u64> {
        self.requests += 1;
        self.state = match body {
            // A zero-length fixed body is no body at all.
            Body::None | Body::Fixed(0) => State::Head,
            Body::Fixed(len) => State::Fixed(len),
            Body::Chunked => State::Chunked(Chunk::Start),
            Body::Ambiguous => {
                self.stop();
                return Some(self.requests);
            }
            Body::Unknown => {
                self.stop();
                return None;
            }
        };
        None
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.head = Vec::new();
    }
}

/// What httparse made of a head.
enum Parsed {
    /// Its length, and how its body is framed.
    Complete(usize, Body),
    Partial,
    /// Malformed, or more than `max_headers` fields.
    Refused,
}

/// hyper's most fields on its stack; more are parsed into a heap array.
const STACK_FIELDS: usize = 128;

/// Parse a head as hyper does, into uninitialised field slots (as hyper does too: cleared
/// slots would cost more than the parse).
fn parse_head(bytes: &[u8], max_headers: usize) -> Parsed {
    let mut stack =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    let mut heap = Vec::new();
    let fields = if max_headers <= STACK_FIELDS {
        stack.get_mut(..max_headers).unwrap_or_default()
    } else {
        heap.resize_with(max_headers, std::mem::MaybeUninit::uninit);
        heap.as_mut_slice()
    };
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(bytes, fields) {
        Ok(httparse::Status::Complete(len)) => Parsed::Complete(len, body_framing(&request)),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Refused,
    }
}

/// How a request's body is delimited, by the rules hyper applies (RFC 9112 §6.3).
#[derive(Debug, PartialEq, Eq)]
enum Body {
    None,
    Fixed(u64),
    Chunked,
    /// Both Transfer-Encoding and Content-Length.
    Ambiguous,
    /// Not one hyper would frame the same way next: refused, upgraded, or waiting on a
    /// `100 Continue` that may never come.
    Unknown,
}

fn body_framing(request: &httparse::Request<'_, '_>) -> Body {
    // hyper: HTTP/1.0 cannot have Transfer-Encoding; CONNECT and Upgrade leave HTTP.
    let http11 = request.version == Some(1);
    if request.method == Some("CONNECT") {
        return Body::Unknown;
    }
    let mut chunked = None;
    // The first Content-Length, and whether every later one has the same value.
    let mut length: Option<Option<u64>> = None;
    let mut same_lengths = true;
    for field in request.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // hyper reads each line on its own; the last one decides.
            chunked = Some(ends_in_chunked(field.value));
        } else if name.eq_ignore_ascii_case("content-length") {
            let value = digits(field.value);
            match length {
                None => length = Some(value),
                Some(first) => same_lengths &= value.is_some() && value == first,
            }
        } else if name.eq_ignore_ascii_case("upgrade")
            || (name.eq_ignore_ascii_case("expect")
                && field.value.eq_ignore_ascii_case(b"100-continue"))
        {
            return Body::Unknown;
        }
    }
    match (chunked, length) {
        (Some(_), Some(_)) if http11 => Body::Ambiguous,
        (Some(true), None) if http11 => Body::Chunked,
        (Some(_), _) => Body::Unknown,
        (None, None) => Body::None,
        (None, Some(Some(len))) if same_lengths => Body::Fixed(len),
        (None, Some(_)) => Body::Unknown,
    }
}

/// hyper's `is_chunked_`: the last comma-separated coding is `chunked`.
fn ends_in_chunked(value: &[u8]) -> bool {
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// A Content-Length value: digits only, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let d = u64::from(b.checked_sub(b'0').filter(|d| *d < 10)?);
        n.checked_mul(10)?.checked_add(d)
    })
}

enum Step {
    Next(Chunk),
    /// The body ended with this byte.
    Done,
}

/// One byte of a chunked body; `None` where hyper refuses it.
fn chunk_step(chunk: Chunk, byte: u8) -> Option<Step> {
    use Chunk::*;
    let next = match chunk {
        Start => Size(hex_digit(0, byte)?),
        Size(size) => match byte {
            b'\t' | b' ' => SizeSpace(size),
            b';' => Extension { size, bytes: 0 },
            b'\r' => SizeLf(size),
            _ => Size(hex_digit(size, byte)?),
        },
        // No more digits after whitespace.
        SizeSpace(size) => match byte {
            b'\t' | b' ' => SizeSpace(size),
            b';' => Extension { size, bytes: 0 },
            b'\r' => SizeLf(size),
            _ => return None,
        },
        Extension { size, bytes } => match byte {
            b'\r' => SizeLf(size),
            b'\n' => return None,
            _ if bytes + 1 >= MAX_EXTENSION_BYTES => return None,
            _ => Extension {
                size,
                bytes: bytes + 1,
            },
        },
        SizeLf(size) => match byte {
            b'\n' if size == 0 => EndCr,
            b'\n' => Data(size),
            _ => return None,
        },
        Data(1) => DataCr,
        Data(left) => Data(left.saturating_sub(1)),
        DataCr if byte == b'\r' => DataLf,
        DataLf if byte == b'\n' => Start,
        EndCr if byte == b'\r' => EndLf,
        Trailer if byte == b'\r' => TrailerLf,
        EndCr | Trailer => Trailer,
        TrailerLf if byte == b'\n' => EndCr,
        EndLf if byte == b'\n' => return Some(Step::Done),
        DataCr | DataLf | TrailerLf | EndLf => return None,
    };
    Some(Step::Next(next))
}

/// `size` with one more hex digit, `None` for a non-digit or an overflow.
fn hex_digit(size: u64, byte: u8) -> Option<u64> {
    let digit = char::from(byte).to_digit(16)?;
    size.checked_mul(16)?.checked_add(u64::from(digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "Host: a.test\r\n";

    /// What `Framing` reports for `stream`, fed whole, a byte at a time, and split at every
    /// position: the verdict must not depend on how the socket cut the bytes.
    fn verdict(stream: &[u8]) -> Option<u64> {
        let whole = Framing::new(8192, 100).feed(stream);
        let mut bytewise = Framing::new(8192, 100);
        let by_byte = stream.chunks(1).find_map(|b| bytewise.feed(b));
        assert_eq!(
            by_byte,
            whole,
            "byte at a time: {:?}",
            String::from_utf8_lossy(stream)
        );
        for cut in 0..stream.len() {
            let mut split = Framing::new(8192, 100);
            let (a, b) = stream.split_at(cut);
            let got = split.feed(a).or_else(|| split.feed(b));
            assert_eq!(
                got,
                whole,
                "cut at {cut}: {:?}",
                String::from_utf8_lossy(stream)
            );
        }
        whole
    }

    fn request(method: &str, fields: &str, body: &str) -> String {
        format!("{method} / HTTP/1.1\r\n{HOST}{fields}\r\n{body}")
    }

    #[test]
    fn both_fields_in_one_head_are_found_in_either_order() {
        let cases = [
            request(
                "POST",
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            request(
                "POST",
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                "0\r\n\r\n",
            ),
            request(
                "GET",
                "transfer-encoding: gzip, chunked\r\ncontent-length: 0\r\n",
                "",
            ),
            request(
                "POST",
                "Transfer-Encoding: chunked\r\nContent-Length: x\r\n",
                "",
            ),
        ];
        for stream in cases {
            assert_eq!(verdict(stream.as_bytes()), Some(1), "{stream:?}");
        }
    }

    #[test]
    fn requests_are_counted_across_every_kind_of_body() {
        let smuggle = request(
            "POST",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        );
        // (requests before the ambiguous one, and the number it gets)
        let before: &[(&str, u64)] = &[
            ("", 1),
            ("\r\n", 1),
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 2),
            ("GET / HTTP/1.1\nHost: a\n\n", 2),
            ("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 2),
            ("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 2),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
                2,
            ),
            // A body that looks like a request is a body.
            (
                "POST / HTTP/1.1\r\nContent-Length: 37\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\n\r\n",
                2,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                2,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nA;ext=1\r\n0123456789\r\n1 \t\r\nx\r\n0\r\nTrailer: t\r\nMore: m\r\n\r\n",
                2,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n\
                 GET / HTTP/1.1\r\n\r\n",
                3,
            ),
            (
                "GET / HTTP/1.0\r\n\r\nHEAD / HTTP/1.1\r\n\r\nDELETE / HTTP/1.1\r\n\r\n",
                4,
            ),
        ];
        for (earlier, number) in before {
            let stream = format!("{earlier}{smuggle}");
            assert_eq!(verdict(stream.as_bytes()), Some(*number), "{stream:?}");
        }
    }

    #[test]
    fn plain_requests_report_nothing() {
        let cases = [
            request("GET", "", ""),
            request("POST", "Content-Length: 5\r\n", "hello"),
            request(
                "POST",
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            // Field names that only contain the framing names.
            request(
                "GET",
                "X-Content-Length: 5\r\nX-Transfer-Encoding: chunked\r\n",
                "",
            ),
            request(
                "GET",
                "Content-Type: text/plain\r\nTransfer-Encodings: chunked\r\n",
                "",
            ),
        ];
        for stream in cases {
            assert_eq!(verdict(stream.as_bytes()), None, "{stream:?}");
        }
    }

    #[test]
    fn anything_not_followed_exactly_stops_the_watch() {
        let smuggle = request(
            "POST",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        );
        // After each of these, hyper refuses, closes or leaves HTTP/1.1, or framing could
        // differ: the ambiguous request after it is not reported (hyper's handling stands).
        let stoppers = [
            "GARBAGE\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "CONNECT a.test:443 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            // Chunked bodies hyper refuses.
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 1\r\nx\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rx",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: t\rx",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        ];
        for stopper in stoppers {
            let stream = format!("{stopper}{smuggle}");
            assert_eq!(verdict(stream.as_bytes()), None, "{stream:?}");
        }
        // Too many fields, or a head longer than hyper's buffer.
        let mut few = Framing::new(8192, 4);
        let many =
            format!("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n{smuggle}");
        assert_eq!(few.feed(many.as_bytes()), None);
        let mut small = Framing::new(64, 100);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n{smuggle}", "v".repeat(64));
        assert_eq!(small.feed(long.as_bytes()), None);
        let mut small = Framing::new(64, 100);
        assert_eq!(small.feed(&[b'G'; 65]), None);
        assert_eq!(small.state, State::Stopped);
        assert!(small.head.capacity() == 0, "the buffer is released");
    }

    #[test]
    fn nothing_is_followed_after_the_ambiguous_request() {
        let smuggle = request(
            "POST",
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            "0\r\n\r\n",
        );
        let mut framing = Framing::new(8192, 100);
        assert_eq!(framing.feed(smuggle.as_bytes()), Some(1));
        assert_eq!(framing.feed(smuggle.as_bytes()), None);
    }

    #[test]
    fn content_length_digits() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"007", Some(7)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"-1", None),
            (b"1 ", None),
            (b"0x1", None),
        ];
        for (value, want) in cases {
            assert_eq!(digits(value), *want, "{value:?}");
        }
    }
}
