//! Just enough HTTP/1.1 (RFC 9112) for a fixed-body server and a GET load
//! generator: incremental request-head parsing with a size bound,
//! keep-alive rules, and a response parser that frames by Content-Length.

use thiserror::Error;

/// Largest request or response head accepted.
pub const MAX_HEAD: usize = 8192;

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HttpError {
    /// Head larger than [`MAX_HEAD`].
    #[error("HTTP head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// Request or status line malformed.
    #[error("malformed HTTP start line")]
    BadStartLine,
    /// A request body is announced; this server takes none.
    #[error("HTTP request bodies are not supported")]
    BodyNotSupported,
    /// Response without a usable Content-Length.
    #[error("HTTP response without Content-Length")]
    NoContentLength,
}

/// A complete request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the head, CRLFCRLF included.
    pub len: usize,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
}

/// Parses the request head at the start of `buf`: `Ok(None)` when more bytes
/// are needed.
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
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HttpError::BadStartLine)?;
    let mut lines = head.split("\r\n");
    let start = lines.next().ok_or(HttpError::BadStartLine)?;
    let mut parts = start.split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadStartLine);
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(HttpError::BadStartLine);
    }
    // HTTP/1.1 defaults to persistent, HTTP/1.0 to close (RFC 9112 §9.3).
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        if let Some(v) = header_value(line, "connection") {
            for token in v.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
        if let Some(v) = header_value(line, "content-length") {
            if v != "0" {
                return Err(HttpError::BodyNotSupported);
            }
        }
        if header_value(line, "transfer-encoding").is_some() {
            return Err(HttpError::BodyNotSupported);
        }
    }
    Ok(Some(Request {
        len: end,
        keep_alive,
    }))
}

/// A response with `body_len` bytes of body ('x'), keep-alive or close.
pub fn response(body_len: usize, keep_alive: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: xstack\r\nContent-Type: text/plain\r\nContent-Length: {body_len}\r\n{}\r\n",
        if keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        }
    )
    .into_bytes();
    r.resize(r.len() + body_len, b'x');
    r
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
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Err(HttpError::BodyNotSupported)
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
}
