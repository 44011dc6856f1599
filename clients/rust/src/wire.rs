//! HTTP/1.1 as the daemon speaks it over its socket (RFC 9112), written by hand: a request
//! head, a response head, and a body framed by `Content-Length`, chunks, or the end of the
//! connection. Shared by the blocking and the async client (the async one parses the same
//! lines).

use std::io::{self, BufRead, Read};

use crate::error::Error;

/// Largest response head read (status line and headers together).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest chunk-size or trailer line.
const MAX_LINE_BYTES: usize = 8 * 1024;

/// `encodeURIComponent`: one path segment or query value.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' => out.push(b as char),
            _ => out.push_str(&format!("%{:02X}", b)),
        }
    }
    out
}

/// A request target or header may not hold anything that would end its line or field
/// early (CR, LF, NUL, other controls) or, for a target, a space: the daemon would read
/// the rest as another header or request.
pub(crate) fn check_field(what: &str, value: &str, allow_space: bool) -> Result<(), Error> {
    let bad = value.bytes().any(|b| b < 0x20 && !(allow_space && b == b'\t') || b == 0x7f || (!allow_space && b == b' '));
    if bad {
        return Err(Error::InvalidInput(format!("{} holds a control character or space: refused before sending", what)));
    }
    Ok(())
}

/// How the request body is framed.
pub(crate) enum BodyLength {
    None,
    Known(u64),
    Chunked,
}

/// The request line and headers, ending with the empty line. `Connection: close`: one
/// request per connection, so a response without a length ends with the connection.
pub(crate) fn request_head(
    method: &str,
    target: &str,
    user_agent: &str,
    headers: &[(String, String)],
    body: BodyLength,
) -> Result<Vec<u8>, Error> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Error::InvalidInput(format!("not an HTTP method: {:?}", method)));
    }
    check_field("the request path", target, false)?;
    if !target.starts_with('/') {
        return Err(Error::InvalidInput("the request path must begin with /".into()));
    }
    check_field("the User-Agent", user_agent, true)?;
    let mut head = format!("{} {} HTTP/1.1\r\nHost: tokend\r\nUser-Agent: {}\r\nConnection: close\r\n", method, target, user_agent);
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            return Err(Error::InvalidInput(format!("not an HTTP header name: {:?}", name)));
        }
        check_field(&format!("header {}", name), value, true)?;
        let lower = name.to_ascii_lowercase();
        // This client frames the body and the connection itself.
        if matches!(lower.as_str(), "host" | "user-agent" | "connection" | "content-length" | "transfer-encoding") {
            continue;
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    match body {
        BodyLength::None => {}
        BodyLength::Known(n) => head.push_str(&format!("Content-Length: {}\r\n", n)),
        BodyLength::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    Ok(head.into_bytes())
}

/// A response's status and headers (names lower-cased, in order).
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// How the body is framed (RFC 9112 §6.3): chunked wins over a length; no body for 204/304.
    pub(crate) fn framing(&self) -> Result<Framing, Error> {
        if self.status == 204 || self.status == 304 {
            return Ok(Framing::Length(0));
        }
        if let Some(te) = self.header("transfer-encoding") {
            if te.split(',').next_back().map(|s| s.trim().eq_ignore_ascii_case("chunked")) == Some(true) {
                return Ok(Framing::Chunked);
            }
            return Ok(Framing::Close);
        }
        match self.header("content-length") {
            Some(v) => v.trim().parse::<u64>().map(Framing::Length).map_err(|_| Error::Protocol(format!("a bad Content-Length: {:?}", v))),
            None => Ok(Framing::Close),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    Close,
}

/// Parses a response head line by line (the status line first, then headers, then the
/// empty line). Shared by the blocking and async readers.
pub(crate) struct HeadParser {
    status: Option<u16>,
    headers: Vec<(String, String)>,
    bytes: usize,
}

impl HeadParser {
    pub(crate) fn new() -> HeadParser {
        HeadParser { status: None, headers: Vec::new(), bytes: 0 }
    }

    /// Takes one line (with or without its CRLF); `Some(head)` once the head is complete.
    /// An interim 1xx answer (100 Continue) is skipped.
    pub(crate) fn line(&mut self, raw: &[u8]) -> Result<Option<Head>, Error> {
        self.bytes += raw.len();
        if raw.is_empty() {
            return Err(Error::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection before it answered")));
        }
        if self.bytes > MAX_HEAD_BYTES {
            return Err(Error::Protocol("a response head over 64 KiB".into()));
        }
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches(&['\r', '\n'][..]);
        match self.status {
            None => {
                let mut parts = line.splitn(3, ' ');
                let version = parts.next().unwrap_or("");
                let status = parts.next().and_then(|s| s.parse::<u16>().ok());
                match (version.starts_with("HTTP/1."), status) {
                    (true, Some(s)) => self.status = Some(s),
                    _ => return Err(Error::Protocol(format!("not an HTTP status line: {:?}", truncate(line)))),
                }
            }
            Some(status) if line.is_empty() => {
                if (100..200).contains(&status) {
                    *self = HeadParser { bytes: self.bytes, ..HeadParser::new() };
                    return Ok(None);
                }
                return Ok(Some(Head { status, headers: std::mem::take(&mut self.headers) }));
            }
            Some(_) => {
                let (name, value) =
                    line.split_once(':').ok_or_else(|| Error::Protocol(format!("not a header line: {:?}", truncate(line))))?;
                self.headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        Ok(None)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Reads a response head from a buffered stream.
pub(crate) fn read_head<R: BufRead>(r: &mut R) -> Result<Head, Error> {
    let mut parser = HeadParser::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        r.by_ref().take(MAX_LINE_BYTES as u64 * 8).read_until(b'\n', &mut line)?;
        if let Some(head) = parser.line(&line)? {
            return Ok(head);
        }
    }
}

/// The value of a chunk-size line (RFC 9112 §7.1: hex, optional extensions after `;`).
pub(crate) fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = String::from_utf8_lossy(line);
    let hex = text.split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("a bad chunk size: {:?}", truncate(hex))))
}

/// A response body, as `Read`: the framing is taken off, the end of the body is EOF.
pub struct Body<R: BufRead> {
    inner: R,
    framing: Framing,
    /// Bytes left in the current chunk, or of the whole body for `Length`.
    left: u64,
    /// Chunked: the CRLF after a chunk's data is still to be read.
    after_chunk: bool,
    done: bool,
}

impl<R: BufRead> Body<R> {
    pub(crate) fn new(inner: R, framing: Framing) -> Body<R> {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let done = matches!(framing, Framing::Length(0));
        Body { inner, framing, left, after_chunk: false, done }
    }

    /// The connection underneath, to set a timeout on it.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.inner.by_ref().take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(eof("the body ended inside a chunk header"));
        }
        Ok(line)
    }

    /// Chunked: the next chunk's size into `left`, or the end (and its trailers).
    fn next_chunk(&mut self) -> io::Result<()> {
        if self.after_chunk {
            self.line()?;
            self.after_chunk = false;
        }
        let size = chunk_size(&self.line()?)?;
        if size == 0 {
            while self.line()? != b"\r\n" {} // trailers: none are used
            self.done = true;
        }
        self.left = size;
        Ok(())
    }
}

fn eof(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what.to_string())
}

impl<R: BufRead> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::Close => {
                let n = self.inner.read(buf)?;
                self.done = n == 0;
                Ok(n)
            }
            Framing::Length(_) | Framing::Chunked => {
                if matches!(self.framing, Framing::Chunked) && self.left == 0 {
                    self.next_chunk()?;
                    if self.done {
                        return Ok(0);
                    }
                }
                let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(eof("the connection closed before the end of the body"));
                }
                self.left -= n as u64;
                match self.framing {
                    Framing::Length(_) => self.done = self.left == 0,
                    _ => self.after_chunk = self.left == 0,
                }
                Ok(n)
            }
        }
    }
}

/// Writes a request body in chunks (`Transfer-Encoding: chunked`) from a reader of unknown length.
pub(crate) fn write_chunked<W: io::Write>(w: &mut W, body: &mut dyn Read) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return w.write_all(b"0\r\n\r\n");
        }
        w.write_all(format!("{:x}\r\n", n).as_bytes())?;
        w.write_all(&buf[..n])?;
        w.write_all(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(raw: &[u8], framing: Framing) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Body::new(raw, framing).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn chunked_bodies_are_unframed_with_extensions_and_trailers() {
        let raw = b"5;x=y\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(body_of(raw, Framing::Chunked).unwrap(), b"hello world");
    }

    #[test]
    fn a_body_cut_short_is_an_error_not_a_short_answer() {
        assert!(body_of(b"5\r\nhel", Framing::Chunked).is_err());
        assert!(body_of(b"hel", Framing::Length(5)).is_err());
        assert_eq!(body_of(b"hello, more", Framing::Length(5)).unwrap(), b"hello");
        assert_eq!(body_of(b"till close", Framing::Close).unwrap(), b"till close");
    }

    #[test]
    fn heads_parse_and_100_continue_is_skipped() {
        let raw: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}";
        let mut r = raw;
        let head = read_head(&mut r).unwrap();
        assert_eq!(head.status, 429);
        assert_eq!(head.header("retry-after"), Some("3"));
        assert!(matches!(head.framing().unwrap(), Framing::Length(2)));
    }

    #[test]
    fn a_line_break_in_a_path_or_header_is_refused_before_sending() {
        assert!(request_head("GET", "/v1/x\r\nEvil: 1", "ua", &[], BodyLength::None).is_err());
        assert!(request_head("GET", "/v1/a b", "ua", &[], BodyLength::None).is_err());
        let h = vec![("X-A".to_string(), "v\r\nEvil: 1".to_string())];
        assert!(request_head("GET", "/v1/x", "ua", &h, BodyLength::None).is_err());
        let ok = request_head("POST", "/v1/x?a=1", "ua", &[("X-A".into(), "v".into())], BodyLength::Known(2)).unwrap();
        let ok = String::from_utf8(ok).unwrap();
        assert!(ok.starts_with("POST /v1/x?a=1 HTTP/1.1\r\n") && ok.contains("X-A: v\r\n") && ok.ends_with("Content-Length: 2\r\n\r\n"));
    }

    #[test]
    fn components_are_encoded_as_encode_uri_component_does() {
        assert_eq!(encode_component("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(encode_component("work-1.x_y"), "work-1.x_y");
    }

    #[test]
    fn chunked_writing_ends_with_the_last_chunk() {
        let mut out = Vec::new();
        write_chunked(&mut out, &mut &b"abc"[..]).unwrap();
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
    }
}
