//! Just enough HTTP/1.1 (RFC 9112) for a fixed-body server and a GET load
//! generator: incremental request-head parsing with a size bound,
//! Content-Length request bodies streamed through without buffering them
//! (RFC 9112 §6), `Expect: 100-continue` (RFC 9110 §10.1.1), keep-alive
//! rules (RFC 9112 §9.3), and a response parser that frames by
//! Content-Length.
//!
//! [`ServerConn`] is the per-connection server: a sans-IO state machine fed
//! with received bytes, shared by the engine's `--app http` and `xstack
//! kserve`, so both answer byte for byte alike.

use thiserror::Error;

/// Largest request or response head accepted.
pub const MAX_HEAD: usize = 8192;

/// Default largest request body (`--max-body`): 64 MiB. Larger bodies get
/// 413 (RFC 9110 §15.5.14) and the connection is closed.
pub const DEFAULT_MAX_BODY: u64 = 64 << 20;

/// After an error response (400, 411, 413, 417, 431) the server half-closes
/// and reads and drops at most this many bytes more, until the client closes,
/// before closing itself (the "lingering close" of RFC 9112 §9.6): closing
/// at once with unread data would send RST, which can destroy the error
/// response before the client has read it (RFC 9293 §3.10.4).
pub const LINGER_BYTES: u64 = 4 << 20;

/// The lingering close also ends after this long (nginx's `lingering_time`
/// default): a client that neither closes nor stops sending is then closed
/// (an RST if it sent more), so no error response pins a connection.
pub const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a message could not be parsed, or a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HttpError {
    /// Head larger than [`MAX_HEAD`].
    #[error("HTTP head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// Request or status line malformed.
    #[error("malformed HTTP start line")]
    BadStartLine,
    /// A header line that is not `name: value` (whitespace before the colon,
    /// obsolete line folding: RFC 9112 §5.1, §5.2).
    #[error("malformed HTTP header line")]
    BadHeader,
    /// Content-Length not `1*DIGIT`, or several that differ (RFC 9112 §6.3
    /// rule 5, RFC 9110 §8.6).
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A Transfer-Encoding whose final coding is not chunked, or any in an
    /// HTTP/1.0 request (RFC 9112 §6.1, §6.3 rule 4).
    #[error("invalid Transfer-Encoding")]
    BadTransferEncoding,
    /// A chunked request body: this server reads Content-Length bodies only
    /// and asks for one (411, RFC 9110 §15.5.12).
    #[error("chunked request bodies are not supported: send Content-Length")]
    LengthRequired,
    /// An expectation other than 100-continue (417, RFC 9110 §10.1.1).
    #[error("unsupported Expect")]
    ExpectationFailed,
    /// Request body larger than the server's limit (413).
    #[error("request body larger than the limit")]
    BodyTooLarge,
    /// Response without a usable Content-Length.
    #[error("HTTP response without Content-Length")]
    NoContentLength,
}

impl HttpError {
    /// The complete response a server sends for this error before it closes
    /// the connection.
    pub fn response(self) -> &'static [u8] {
        match self {
            HttpError::HeadTooLarge => {
                b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpError::LengthRequired => {
                b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpError::ExpectationFailed => {
                b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpError::BodyTooLarge => {
                b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
            HttpError::BadStartLine
            | HttpError::BadHeader
            | HttpError::BadContentLength
            | HttpError::BadTransferEncoding
            | HttpError::NoContentLength => {
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            }
        }
    }
}

/// A complete request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the head, CRLFCRLF included.
    pub len: usize,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// Bytes of body after the head (Content-Length; 0 without one, RFC 9112
    /// §6.3 rule 6). Saturates at `u64::MAX`.
    pub body: u64,
    /// `Expect: 100-continue` in an HTTP/1.1 request.
    pub expect_continue: bool,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    k.eq_ignore_ascii_case(name).then(|| v.trim())
}

/// RFC 9110 §5.6.2 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Content-Length value: `1*DIGIT`, or a list of identical ones (RFC 9110
/// §8.6); saturates at `u64::MAX` (over any limit).
fn content_length(v: &str) -> Result<u64, HttpError> {
    let mut len = None;
    for item in v.split(',').map(str::trim) {
        if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::BadContentLength);
        }
        let n = item.bytes().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        });
        if len.is_some_and(|l| l != n) {
            return Err(HttpError::BadContentLength);
        }
        len = Some(n);
    }
    len.ok_or(HttpError::BadContentLength)
}

/// Parses the request head at the start of `buf`: `Ok(None)` when more bytes
/// are needed (then `buf` is at most [`MAX_HEAD`] long).
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, HttpError> {
    let Some(end) = find_head_end(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if end > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let head = std::str::from_utf8(&buf[..end - 4]).map_err(|_| HttpError::BadStartLine)?;
    let mut lines = head.split("\r\n");
    let start = lines.next().ok_or(HttpError::BadStartLine)?;
    let mut parts = start.split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadStartLine);
    };
    if !is_token(method) || !version.starts_with("HTTP/1.") {
        return Err(HttpError::BadStartLine);
    }
    let http11 = version == "HTTP/1.1";
    // HTTP/1.1 defaults to persistent, HTTP/1.0 to close (RFC 9112 §9.3).
    let mut keep_alive = http11;
    let mut body: Option<u64> = None;
    let mut chunked_last: Option<bool> = None;
    let mut expect_continue = false;
    for line in lines {
        // `name: value`, no whitespace before the colon, no obs-fold
        // (RFC 9112 §5.1, §5.2): a server MUST reject those with 400.
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::BadHeader);
        };
        if !is_token(name) {
            return Err(HttpError::BadHeader);
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(value)?;
            if body.is_some_and(|b| b != n) {
                return Err(HttpError::BadContentLength);
            }
            body = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                chunked_last = Some(coding.eq_ignore_ascii_case("chunked"));
            }
            if chunked_last.is_none() {
                return Err(HttpError::BadTransferEncoding);
            }
        } else if name.eq_ignore_ascii_case("expect") && http11 {
            // An HTTP/1.0 request's expectation is ignored (RFC 9110 §10.1.1).
            if value.eq_ignore_ascii_case("100-continue") {
                expect_continue = true;
            } else {
                return Err(HttpError::ExpectationFailed);
            }
        }
    }
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 rule 3);
    // the connection is closed after the answer either way, so a request
    // with both cannot be used for smuggling.
    match chunked_last {
        Some(_) if !http11 => return Err(HttpError::BadTransferEncoding),
        Some(true) => return Err(HttpError::LengthRequired),
        Some(false) => return Err(HttpError::BadTransferEncoding),
        None => {}
    }
    Ok(Some(Request {
        len: end,
        keep_alive,
        body: body.unwrap_or(0),
        expect_continue,
    }))
}

/// Appends `n` in decimal.
fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a 200 response head announcing `body_len` bytes of body.
pub fn put_response_head(out: &mut Vec<u8>, body_len: u64, keep_alive: bool) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nServer: xstack\r\nContent-Type: text/plain\r\nContent-Length: ",
    );
    put_decimal(out, body_len);
    out.extend_from_slice(if keep_alive {
        b"\r\nConnection: keep-alive\r\n\r\n"
    } else {
        b"\r\nConnection: close\r\n\r\n"
    });
}

/// A response with `body_len` bytes of body ('x'), keep-alive or close.
pub fn response(body_len: usize, keep_alive: bool) -> Vec<u8> {
    let mut r = Vec::with_capacity(128 + body_len);
    put_response_head(&mut r, body_len as u64, keep_alive);
    r.resize(r.len() + body_len, b'x');
    r
}

/// The interim response sent before reading a body the client holds back
/// with `Expect: 100-continue` (RFC 9110 §15.2.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Settings of the HTTP server application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Body size of the fixed ('x') responses.
    pub response_bytes: usize,
    /// Answer with the request's body instead (same Content-Length, streamed
    /// back as it arrives; a request without a body gets an empty one).
    pub echo_body: bool,
    /// Largest request body; a larger Content-Length gets 413 at once.
    pub max_body: u64,
}

impl Default for ServerConfig {
    /// 64-byte responses, no echo, [`DEFAULT_MAX_BODY`].
    fn default() -> Self {
        ServerConfig {
            response_bytes: 64,
            echo_body: false,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// What the caller does after [`ServerConn::input`], once the output is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// The last response said `Connection: close`: close (further input is
    /// ignored).
    Close,
    /// An error response was sent: half-close, read and drop up to
    /// [`LINGER_BYTES`] until the client closes, then close.
    Linger,
}

/// Requests a server connection answered and refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests answered with 200 (counted when the body has been read).
    pub requests: u64,
    /// Requests refused with an error status.
    pub errors: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// Reading a request head.
    #[default]
    Head,
    /// Reading `left` bytes of body.
    Body { left: u64, keep_alive: bool },
    /// No more requests on this connection.
    Done(Flow),
}

/// One server connection: feed it what arrives, send what it appends.
///
/// Memory is bounded whatever the client sends: a partial head is kept (at
/// most [`MAX_HEAD`] + 1 bytes), a body is never kept (dropped, or appended
/// to the output as it arrives with `echo_body`). A head that arrives whole
/// in one input is parsed where it lies, without a copy.
#[derive(Debug, Default)]
pub struct ServerConn {
    head: Vec<u8>,
    phase: Phase,
}

impl ServerConn {
    /// How many bytes to read next at most: the rest of the body, so that a
    /// body does not come with the next requests behind it, else up to
    /// 2 × [`MAX_HEAD`] of pipelined requests (bounds the responses one
    /// input produces). 0 when the connection is done.
    pub fn read_hint(&self) -> usize {
        match self.phase {
            Phase::Head => 2 * MAX_HEAD,
            Phase::Body { left, .. } => usize::try_from(left).unwrap_or(usize::MAX),
            Phase::Done(_) => 0,
        }
    }

    /// Whether a request body is being read.
    pub fn in_body(&self) -> bool {
        matches!(self.phase, Phase::Body { .. })
    }

    /// Consumes received bytes, appends the responses (and echoed body
    /// bytes) to `out`, counts into `tally`.
    pub fn input(
        &mut self,
        cfg: &ServerConfig,
        mut data: &[u8],
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) -> Flow {
        loop {
            match self.phase {
                Phase::Done(flow) => return flow,
                _ if data.is_empty() => return Flow::Continue,
                Phase::Body { left, keep_alive } => {
                    let k = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if cfg.echo_body {
                        out.extend_from_slice(&data[..k]);
                    }
                    data = &data[k..];
                    let left = left - k as u64;
                    if left == 0 {
                        self.finish(cfg, keep_alive, out, tally);
                    } else {
                        self.phase = Phase::Body { left, keep_alive };
                    }
                }
                Phase::Head => {
                    let parsed = if self.head.is_empty() {
                        match parse_request(data) {
                            Ok(Some(r)) => {
                                data = &data[r.len..];
                                Ok(r)
                            }
                            Ok(None) => {
                                self.head.extend_from_slice(data);
                                return Flow::Continue;
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        let old = self.head.len();
                        let take = data.len().min(MAX_HEAD + 1 - old.min(MAX_HEAD));
                        self.head.extend_from_slice(&data[..take]);
                        // Only a CRLFCRLF that ends in the new bytes is new.
                        let fresh = &self.head[old.saturating_sub(3)..];
                        if self.head.len() <= MAX_HEAD && find_head_end(fresh).is_none() {
                            return Flow::Continue;
                        }
                        match parse_request(&self.head) {
                            Ok(Some(r)) => {
                                // The head ends in the new bytes: the rest of
                                // `data` is body or the next request.
                                data = &data[r.len - old..];
                                // Released, not cleared: idle
                                // connections keep no buffer.
                                self.head = Vec::new();
                                Ok(r)
                            }
                            Ok(None) => return Flow::Continue,
                            Err(e) => Err(e),
                        }
                    };
                    match parsed.and_then(|r| {
                        if r.body > cfg.max_body {
                            Err(HttpError::BodyTooLarge)
                        } else {
                            Ok(r)
                        }
                    }) {
                        Ok(r) => self.start(cfg, r, out, tally),
                        Err(e) => {
                            out.extend_from_slice(e.response());
                            tally.errors += 1;
                            self.head = Vec::new();
                            self.phase = Phase::Done(Flow::Linger);
                        }
                    }
                }
            }
        }
    }

    fn start(&mut self, cfg: &ServerConfig, r: Request, out: &mut Vec<u8>, tally: &mut Tally) {
        if r.expect_continue && r.body > 0 {
            out.extend_from_slice(CONTINUE);
        }
        if cfg.echo_body {
            put_response_head(out, r.body, r.keep_alive);
        }
        if r.body == 0 {
            self.finish(cfg, r.keep_alive, out, tally);
        } else {
            self.phase = Phase::Body {
                left: r.body,
                keep_alive: r.keep_alive,
            };
        }
    }

    /// The request's body has been read: answer (unless echoing, where the
    /// answer went out with the body).
    fn finish(
        &mut self,
        cfg: &ServerConfig,
        keep_alive: bool,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) {
        if !cfg.echo_body {
            put_response_head(out, cfg.response_bytes as u64, keep_alive);
            out.resize(out.len() + cfg.response_bytes, b'x');
        }
        tally.requests += 1;
        self.phase = if keep_alive {
            Phase::Head
        } else {
            Phase::Done(Flow::Close)
        };
    }
}

/// A GET request for `path` on `host`.
pub fn get_request(host: &str, path: &str, keep_alive: bool) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: xstack-load\r\n{}\r\n",
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    )
    .into_bytes()
}

/// Length of the complete response at the start of `buf` (head plus
/// Content-Length body), `Ok(None)` when more bytes are needed.
pub fn response_len(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    let Some(end) = find_head_end(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::BadStartLine)?;
    if !head.starts_with("HTTP/1.") {
        return Err(HttpError::BadStartLine);
    }
    let len = head
        .split("\r\n")
        .find_map(|l| header_value(l, "content-length"))
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or(HttpError::NoContentLength)?;
    let total = end + len;
    Ok((buf.len() >= total).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http11_requests_keep_alive_unless_connection_close() {
        let r = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive);
        assert_eq!(r.len, 27);
        let c = parse_request(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!c.keep_alive);
        let old = parse_request(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
        let old_ka = parse_request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(old_ka.keep_alive);
    }

    #[test]
    fn partial_oversized_and_malformed_requests() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost"), Ok(None));
        assert_eq!(
            parse_request(&vec![b'a'; MAX_HEAD + 1]),
            Err(HttpError::HeadTooLarge)
        );
        assert_eq!(
            parse_request(b"GARBAGE\r\n\r\n"),
            Err(HttpError::BadStartLine)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            Err(HttpError::BadHeader),
            "whitespace before the colon (RFC 9112 §5.1)"
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"),
            Err(HttpError::BadHeader),
            "obs-fold (RFC 9112 §5.2)"
        );
    }

    #[test]
    fn responses_frame_by_content_length() {
        let r = response(100, true);
        assert_eq!(response_len(&r), Ok(Some(r.len())));
        assert_eq!(response_len(&r[..r.len() - 1]), Ok(None));
        let mut two = r.clone();
        two.extend_from_slice(&r);
        assert_eq!(response_len(&two), Ok(Some(r.len())));
        assert!(String::from_utf8_lossy(&response(0, false)).contains("Connection: close"));
        assert_eq!(
            response_len(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(HttpError::NoContentLength)
        );
    }

    const CFG: ServerConfig = ServerConfig {
        response_bytes: 3,
        echo_body: false,
        max_body: 1000,
    };

    /// Feeds `chunks` one after another; returns the output and the last flow.
    fn serve(cfg: &ServerConfig, chunks: &[&[u8]]) -> (Vec<u8>, Flow, Tally) {
        let mut c = ServerConn::default();
        let mut out = Vec::new();
        let mut tally = Tally::default();
        let mut flow = Flow::Continue;
        for ch in chunks {
            flow = c.input(cfg, ch, &mut out, &mut tally);
        }
        (out, flow, tally)
    }

    fn ok(body: &str, keep_alive: bool) -> String {
        String::from_utf8(response(0, keep_alive)).unwrap().replace(
            "Content-Length: 0",
            &format!("Content-Length: {}", body.len()),
        ) + body
    }

    #[test]
    fn requests_with_a_content_length_body_parse_and_are_answered() {
        let r = parse_request(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.len, r.body, r.keep_alive, r.expect_continue),
            (39, 5, true, false)
        );
        let (out, flow, t) = serve(
            &CFG,
            &[b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"],
        );
        assert_eq!(String::from_utf8(out).unwrap(), ok("xxx", true));
        assert_eq!((flow, t.requests, t.errors), (Flow::Continue, 1, 0));
        // Identical repeated lengths are one length (RFC 9110 §8.6).
        let r =
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7, 7\r\n\r\n");
        assert_eq!(r.unwrap().unwrap().body, 7);
    }

    /// A POST, a GET, a POST with `Connection: close`, and a request after
    /// it that is never answered.
    const PIPELINE: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 14\r\n\r\nGET / HTTP/1.1GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbodyGET / HTTP/1.1\r\n\r\n";

    #[test]
    fn pipelined_post_and_get_are_answered_in_order_from_the_right_offsets() {
        // The first body looks like a request line: it must not be parsed.
        let (out, flow, t) = serve(&CFG, &[PIPELINE]);
        let want = ok("xxx", true) + &ok("xxx", true) + &ok("xxx", false);
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!((flow, t.requests, t.errors), (Flow::Close, 3, 0));
        let echo = ServerConfig {
            echo_body: true,
            ..CFG
        };
        let (out, _, t) = serve(&echo, &[PIPELINE]);
        let want = ok("GET / HTTP/1.1", true) + &ok("", true) + &ok("body", false);
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!(t.requests, 3);
    }

    #[test]
    fn requests_split_across_reads_at_every_byte_boundary_give_the_same_answers() {
        for cfg in [
            CFG,
            ServerConfig {
                echo_body: true,
                ..CFG
            },
        ] {
            let whole = serve(&cfg, &[PIPELINE]);
            for i in 0..=PIPELINE.len() {
                for j in i..=PIPELINE.len() {
                    let split = serve(&cfg, &[&PIPELINE[..i], &PIPELINE[i..j], &PIPELINE[j..]]);
                    assert_eq!(split, whole, "split at {i} and {j}");
                }
            }
            let bytes: Vec<&[u8]> = PIPELINE.chunks(1).collect();
            assert_eq!(serve(&cfg, &bytes), whole, "one byte at a time");
        }
    }

    #[test]
    fn bodies_over_the_limit_get_413_and_a_lingering_close() {
        let (out, flow, t) = serve(
            &CFG,
            &[
                b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\nabc",
                b"more",
            ],
        );
        assert_eq!(out, HttpError::BodyTooLarge.response());
        assert!(out.starts_with(b"HTTP/1.1 413 "));
        assert_eq!((flow, t.requests, t.errors), (Flow::Linger, 0, 1));
        // A length past u64 is over any limit, not malformed.
        let (out, ..) = serve(
            &CFG,
            &[b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"],
        );
        assert!(out.starts_with(b"HTTP/1.1 413 "));
        // At the limit: accepted.
        let mut req = b"POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".to_vec();
        req.resize(req.len() + 1000, b'z');
        let (out, flow, _) = serve(&CFG, &[&req]);
        assert_eq!(String::from_utf8(out).unwrap(), ok("xxx", true));
        assert_eq!(flow, Flow::Continue);
    }

    #[test]
    fn bad_content_length_and_transfer_encoding_are_refused() {
        for v in ["abc", "-1", "+5", "5 5", "", "0x10", "5,6", "5, "] {
            let req = format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(
                parse_request(req.as_bytes()),
                Err(HttpError::BadContentLength),
                "Content-Length: {v:?}"
            );
        }
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(HttpError::BadContentLength)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::LengthRequired)
        );
        assert_eq!(
            parse_request(
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            ),
            Err(HttpError::LengthRequired)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        assert_eq!(
            parse_request(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::BadTransferEncoding)
        );
        let (out, flow, t) = serve(&CFG, &[b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"]);
        assert!(out.starts_with(b"HTTP/1.1 400 "));
        assert_eq!((flow, t.errors), (Flow::Linger, 1));
        let (out, ..) = serve(
            &CFG,
            &[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"],
        );
        assert!(out.starts_with(b"HTTP/1.1 411 "));
        let (out, ..) = serve(&CFG, &[&vec![b'a'; MAX_HEAD + 1]]);
        assert!(out.starts_with(b"HTTP/1.1 431 "));
    }

    #[test]
    fn expect_100_continue_gets_continue_before_the_body_or_413_at_once() {
        let head = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let (out, flow, _) = serve(&CFG, &[head]);
        assert_eq!(out, CONTINUE);
        assert_eq!(flow, Flow::Continue);
        let (out, _, t) = serve(&CFG, &[head, b"hi"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(CONTINUE.to_vec()).unwrap() + &ok("xxx", true)
        );
        assert_eq!(t.requests, 1);
        // Over the limit: 413 instead of 100, before any body is sent.
        let (out, flow, _) = serve(
            &CFG,
            &[b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"],
        );
        assert!(out.starts_with(b"HTTP/1.1 413 "));
        assert_eq!(flow, Flow::Linger);
        // No body, no 100; HTTP/1.0 expectations are ignored; others get 417.
        let (out, ..) = serve(&CFG, &[b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"]);
        assert_eq!(String::from_utf8(out).unwrap(), ok("xxx", true));
        let (out, ..) = serve(
            &CFG,
            &[b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz"],
        );
        assert_eq!(String::from_utf8(out).unwrap(), ok("xxx", false));
        let (out, ..) = serve(&CFG, &[b"GET / HTTP/1.1\r\nExpect: tea\r\n\r\n"]);
        assert!(out.starts_with(b"HTTP/1.1 417 "));
    }

    #[test]
    fn a_64_mib_body_streams_through_in_bounded_memory() {
        for echo_body in [false, true] {
            let cfg = ServerConfig {
                echo_body,
                max_body: 64 << 20,
                ..CFG
            };
            let mut c = ServerConn::default();
            let mut out = Vec::new();
            let mut tally = Tally::default();
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 64 << 20);
            assert_eq!(
                c.input(&cfg, head.as_bytes(), &mut out, &mut tally),
                Flow::Continue
            );
            out.clear();
            let chunk = vec![7u8; 65536];
            let mut echoed = 0;
            for _ in 0..1024 {
                assert!(c.read_hint() >= chunk.len());
                c.input(&cfg, &chunk, &mut out, &mut tally);
                // Nothing kept: dropped, or handed back to send right away.
                assert!(c.head.capacity() == 0 && out.len() <= chunk.len() + 200);
                echoed += out.len();
                out.clear();
            }
            assert_eq!(
                echoed,
                if echo_body {
                    64 << 20
                } else {
                    3 + response(0, true).len()
                }
            );
            assert_eq!((tally.requests, c.read_hint()), (1, 2 * MAX_HEAD));
        }
    }
}
