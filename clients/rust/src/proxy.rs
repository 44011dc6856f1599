//! A request to an account's API through the daemon (`ANY /v1/proxy/ACCOUNT/PATH`,
//! docs/api.md "The API proxy"): the daemon adds the account's token, so the app never
//! holds it. Bodies stream both ways.

use std::io::{self, Read};

use crate::client::{read_all, Client, SendBody, Stream};
use crate::error::{api_error, Error};

/// Set by the daemon on an answer it wrote itself (unknown account, no token, the API
/// unreachable), with the error code as its value; an API's own answers never carry it.
const PROXY_ERROR_HEADER: &str = "x-tokend-error";
const MAX_ERROR_ANSWER: u64 = 64 * 1024;

/// A proxied request being built: [`Client::proxy`](crate::Client::proxy), then headers,
/// then one of the `send` methods.
pub struct ProxyRequest<'c> {
    client: &'c Client,
    account: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl<'c> ProxyRequest<'c> {
    pub(crate) fn new(client: &'c Client, account: &str, method: &str, path: &str) -> ProxyRequest<'c> {
        ProxyRequest {
            client,
            account: account.to_string(),
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            headers: Vec::new(),
        }
    }

    /// A request header. `Authorization` and `Cookie` are dropped by the daemon (it sends
    /// the account's own), as are hop-by-hop and `x-tokend-*` headers.
    pub fn header(mut self, name: &str, value: &str) -> ProxyRequest<'c> {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends it without a body.
    pub fn send(self) -> Result<ProxyResponse, Error> {
        self.send_body(SendBody::None)
    }

    /// Sends it with `body`.
    pub fn send_bytes(self, body: &[u8]) -> Result<ProxyResponse, Error> {
        self.send_body(SendBody::Bytes(body))
    }

    /// Sends it with a body streamed from `body`: `length` when known (`Content-Length`),
    /// else in chunks. A body of at most 1 MiB is kept by the daemon, so a `401` can be
    /// retried once with a fresh token; a larger one is not retried.
    pub fn send_reader<R: Read>(self, mut body: R, length: Option<u64>) -> Result<ProxyResponse, Error> {
        self.send_body(SendBody::Reader(&mut body, length))
    }

    fn send_body(self, body: SendBody<'_>) -> Result<ProxyResponse, Error> {
        let target = crate::calls::proxy_target(&self.account, &self.path);
        let (head, stream) = self.client.send(&self.method, &target, &self.headers, body, self.client.call_timeout())?;
        if head.header(PROXY_ERROR_HEADER).is_some() {
            let answer = read_all(stream, MAX_ERROR_ANSWER)?;
            return Err(api_error(head.status, head.header("retry-after"), &answer));
        }
        // The API may stream for as long as it likes: no limit on the body's reads.
        stream.get_ref().get_ref().set_read_timeout(None)?;
        Ok(ProxyResponse { status: head.status, headers: head.headers, body: stream })
    }
}

/// A header's value by its name in any case (`headers` hold lower-case names).
pub(crate) fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    let name = name.to_ascii_lowercase();
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

/// The API's answer, as it came (any status: a `404` here is the API's own); its body is
/// read through `Read`.
pub struct ProxyResponse {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: Stream,
}

impl ProxyResponse {
    /// A header's value (the first, by its name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every header, names in lower case, in the order they came.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The whole body as text (at most `max` bytes).
    pub fn text(self, max: u64) -> Result<String, Error> {
        let bytes = read_all(self.body, max)?;
        String::from_utf8(bytes).map_err(|_| Error::Protocol("the API's answer is not UTF-8".into()))
    }

    /// The whole body as JSON (at most 16 MiB).
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = read_all(self.body, 16 * 1024 * 1024)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("the API's answer is not the JSON expected: {}", e)))
    }
}

impl std::fmt::Debug for ProxyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyResponse").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

impl Read for ProxyResponse {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf)
    }
}
