//! The async client (feature `tokio`): the same calls as [`Client`] on tokio's `UnixStream`
//! (tokio 1.24's API: `net`, `io-util`, `time`). Requests are built by the same code
//! (calls.rs) and answers parsed by the same parsers (wire.rs, events.rs) as the blocking
//! client's; only the reading and writing differ.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::calls::{self, Call};
use crate::client::{check_socket, connect_error, Client};
use crate::error::{api_error, Error};
use crate::events::{reconnected_event, to_event, Event, EventsOptions, SseParser};
use crate::login_wait::{judge, timed_out};
use crate::types::*;
use crate::wire::{chunk_size, request_head, BodyLength, Framing, Head, HeadParser};

const MAX_JSON_ANSWER: u64 = 32 * 1024 * 1024;
const MAX_ERROR_ANSWER: u64 = 64 * 1024;
const MAX_LINE: usize = 8 * 1024;

/// An async client of the daemon's socket API. Cheap to clone; one connection per call.
#[derive(Clone, Debug)]
pub struct AsyncClient {
    config: Client,
}

impl Default for AsyncClient {
    fn default() -> AsyncClient {
        AsyncClient::new()
    }
}

impl From<Client> for AsyncClient {
    /// The same socket, user agent and timeout as `client`.
    fn from(client: Client) -> AsyncClient {
        AsyncClient { config: client }
    }
}

/// What an async request sends as its body.
enum AsyncSend<'a> {
    None,
    Bytes(&'a [u8]),
    Reader(&'a mut (dyn AsyncRead + Unpin + Send), Option<u64>),
}

impl AsyncClient {
    /// The socket the CLI would use ([`crate::default_socket_path`]).
    pub fn new() -> AsyncClient {
        Client::new().into()
    }

    pub fn with_socket<P: Into<PathBuf>>(socket: P) -> AsyncClient {
        Client::with_socket(socket).into()
    }

    /// Who your app is, for the daemon's audit log (`User-Agent`).
    pub fn user_agent<S: Into<String>>(self, user_agent: S) -> AsyncClient {
        self.config.user_agent(user_agent).into()
    }

    /// How long a call waits for its answer (default 120 s; `None`: no limit).
    pub fn timeout(self, timeout: Option<Duration>) -> AsyncClient {
        self.config.timeout(timeout).into()
    }

    pub fn socket(&self) -> &Path {
        self.config.socket()
    }

    /// The blocking client with the same settings.
    pub fn blocking(&self) -> Client {
        self.config.clone()
    }

    async fn connect(&self) -> Result<UnixStream, Error> {
        let socket = self.config.socket();
        check_socket(socket)?;
        UnixStream::connect(socket).await.map_err(|e| connect_error(socket, e))
    }

    /// Sends a request and reads the answer's head (within the client's timeout).
    async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: AsyncSend<'_>,
    ) -> Result<(Head, AsyncBody), Error> {
        let fut = self.send_untimed(method, target, headers, body);
        match self.config.call_timeout() {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::Io(io::Error::new(io::ErrorKind::TimedOut, format!("no answer from tokend within {:?}", t)))),
            },
            None => fut.await,
        }
    }

    async fn send_untimed(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: AsyncSend<'_>,
    ) -> Result<(Head, AsyncBody), Error> {
        let length = match &body {
            AsyncSend::None => BodyLength::None,
            AsyncSend::Bytes(b) => BodyLength::Known(b.len() as u64),
            AsyncSend::Reader(_, Some(n)) => BodyLength::Known(*n),
            AsyncSend::Reader(_, None) => BodyLength::Chunked,
        };
        let head = request_head(method, target, self.config.user_agent_str(), headers, length)?;
        let mut stream = self.connect().await?;
        let written = write_request(&mut stream, &head, body).await;
        if let Err(e) = &written {
            if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                return Err(Error::Io(written.unwrap_err()));
            }
        }
        let mut reader = BufReader::new(stream);
        match read_head(&mut reader).await {
            Ok(head) => {
                let framing = head.framing()?;
                Ok((head, AsyncBody::new(reader, framing)))
            }
            Err(e) => Err(written.err().map(Error::Io).unwrap_or(e)),
        }
    }

    async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let (headers, bytes) = calls::json_request(&call);
        let send = match &bytes {
            Some(b) => AsyncSend::Bytes(b),
            None => AsyncSend::None,
        };
        let work = async {
            let (head, body) = self.send_untimed(call.method, &call.target, &headers, send).await?;
            let answer = body.bytes(MAX_JSON_ANSWER).await?;
            calls::json_answer(&call, head.status, head.header("retry-after"), &answer)
        };
        match self.config.call_timeout() {
            Some(t) => tokio::time::timeout(t, work).await.unwrap_or_else(|_| {
                Err(Error::Io(io::Error::new(io::ErrorKind::TimedOut, format!("no answer from tokend within {:?}", t))))
            }),
            None => work.await,
        }
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, Error> {
        self.call(calls::health()).await
    }

    /// A valid access token of `account`.
    pub async fn token(&self, account: &str) -> Result<Token, Error> {
        self.token_with(account, &TokenOptions::default()).await
    }

    pub async fn token_with(&self, account: &str, options: &TokenOptions) -> Result<Token, Error> {
        self.call(calls::token(account, options)?).await
    }

    pub async fn info(&self, account: &str) -> Result<AccountView, Error> {
        self.call(calls::info(account)).await
    }

    pub async fn accounts(&self) -> Result<Vec<AccountView>, Error> {
        self.accounts_labeled(&[]).await
    }

    pub async fn accounts_labeled(&self, labels: &[(&str, &str)]) -> Result<Vec<AccountView>, Error> {
        Ok(self.call::<AccountList>(calls::accounts(labels)).await?.accounts)
    }

    pub async fn put_account(&self, account: &str, config: &serde_json::Value, flags: WriteFlags) -> Result<AccountView, Error> {
        self.call(calls::put_account(account, config, flags)).await
    }

    pub async fn remove_account(&self, account: &str) -> Result<Revoked, Error> {
        self.call(calls::remove_account(account)).await
    }

    pub async fn login(&self, account: &str, options: &LoginOptions) -> Result<LoginView, Error> {
        self.call(calls::login(account, options)?).await
    }

    pub async fn get_login(&self, id: &str) -> Result<LoginView, Error> {
        self.call(calls::get_login(id)).await
    }

    pub async fn cancel_login(&self, id: &str) -> Result<LoginView, Error> {
        self.call(calls::cancel_login(id)).await
    }

    pub async fn complete_login(&self, callback_url: &str) -> Result<LoginView, Error> {
        self.call(calls::complete_login(callback_url)).await
    }

    /// As [`Client::wait_for_login`]: woken by the event stream, polling without one.
    pub async fn wait_for_login(&self, id: &str, timeout: Option<Duration>) -> Result<LoginView, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut events = self.events_with(EventsOptions { last_event_id: None, reconnect: false }).await.ok();
        let mut alive_until: Option<Instant> = None;
        loop {
            if let Some(outcome) = judge(self.get_login(id).await, &mut alive_until) {
                return outcome;
            }
            let now = Instant::now();
            if let Some(err) = timed_out(id, deadline, now) {
                return Err(err);
            }
            let pause = if events.is_some() { Duration::from_secs(30) } else { Duration::from_secs(1) };
            let pause = deadline.map_or(pause, |d| pause.min(d.saturating_duration_since(now)));
            match events.as_mut() {
                Some(stream) => {
                    // Until an event ends this login (or the pause is over: look anyway).
                    let ended = async {
                        loop {
                            match stream.next().await {
                                Some(Ok(ev)) => {
                                    let ends = matches!(ev.kind.as_str(), "login.succeeded" | "login.failed");
                                    if ends && ev.str_field("login_id") == Some(id) {
                                        return true;
                                    }
                                }
                                _ => return false,
                            }
                        }
                    };
                    if let Ok(false) = tokio::time::timeout(pause, ended).await {
                        events = None; // the stream ended: poll
                    }
                }
                None => tokio::time::sleep(pause).await,
            }
        }
    }

    pub async fn logout(&self, account: &str) -> Result<Revoked, Error> {
        self.call(calls::logout(account)).await
    }

    pub async fn import_tokens(&self, account: &str, tokens: &ImportTokens) -> Result<AccountView, Error> {
        self.call(calls::import_tokens(account, tokens)?).await
    }

    pub async fn reject(&self, account: &str, token: Option<&str>) -> Result<Rejected, Error> {
        self.call(calls::reject(account, token)).await
    }

    pub async fn refresh(&self, account: &str, if_token: Option<&str>) -> Result<Refreshed, Error> {
        self.call(calls::refresh(account, if_token)).await
    }

    pub async fn recover(&self, account: &str) -> Result<Refreshed, Error> {
        self.call(calls::recover(account)).await
    }

    /// A request to the account's API through the daemon, without a body (see [`Client::proxy`]).
    pub async fn proxy(&self, account: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<AsyncProxyResponse, Error> {
        self.proxy_send(account, method, path, headers, AsyncSend::None).await
    }

    /// A proxied request with `body`.
    pub async fn proxy_bytes(
        &self,
        account: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<AsyncProxyResponse, Error> {
        self.proxy_send(account, method, path, headers, AsyncSend::Bytes(body)).await
    }

    /// A proxied request whose body streams from `body` (`length` when known, else chunked).
    pub async fn proxy_reader<R: AsyncRead + Unpin + Send>(
        &self,
        account: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        mut body: R,
        length: Option<u64>,
    ) -> Result<AsyncProxyResponse, Error> {
        self.proxy_send(account, method, path, headers, AsyncSend::Reader(&mut body, length)).await
    }

    async fn proxy_send(
        &self,
        account: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: AsyncSend<'_>,
    ) -> Result<AsyncProxyResponse, Error> {
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let target = calls::proxy_target(account, path);
        let (head, body) = self.send(&method.to_ascii_uppercase(), &target, &headers, body).await?;
        if head.header("x-tokend-error").is_some() {
            let answer = body.bytes(MAX_ERROR_ANSWER).await?;
            return Err(api_error(head.status, head.header("retry-after"), &answer));
        }
        Ok(AsyncProxyResponse { status: head.status, headers: head.headers, body })
    }

    /// The daemon's events from now on (see [`Client::events`]).
    pub async fn events(&self) -> Result<AsyncEvents, Error> {
        self.events_with(EventsOptions::default()).await
    }

    pub async fn events_with(&self, options: EventsOptions) -> Result<AsyncEvents, Error> {
        let mut events = AsyncEvents {
            client: self.clone(),
            reconnect: options.reconnect,
            body: None,
            parser: SseParser::default(),
            buf: Vec::new(),
            pending: std::collections::VecDeque::new(),
            last_id: options.last_event_id,
            ended: false,
            delay: Duration::from_secs(1),
        };
        events.subscribe().await?;
        Ok(events)
    }
}

async fn write_request(stream: &mut UnixStream, head: &[u8], body: AsyncSend<'_>) -> io::Result<()> {
    stream.write_all(head).await?;
    match body {
        AsyncSend::None => Ok(()),
        AsyncSend::Bytes(b) => stream.write_all(b).await,
        AsyncSend::Reader(r, Some(n)) => {
            let copied = tokio::io::copy(&mut r.take(n), stream).await?;
            if copied < n {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the body ended after {} of {} bytes", copied, n)));
            }
            Ok(())
        }
        AsyncSend::Reader(r, None) => {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    return stream.write_all(b"0\r\n\r\n").await;
                }
                let mut chunk = format!("{:x}\r\n", n).into_bytes();
                chunk.extend_from_slice(&buf[..n]);
                chunk.extend_from_slice(b"\r\n");
                stream.write_all(&chunk).await?;
            }
        }
    }
}

async fn read_head(r: &mut BufReader<UnixStream>) -> Result<Head, Error> {
    let mut parser = HeadParser::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        read_line(r, &mut line).await?;
        if let Some(head) = parser.line(&line)? {
            return Ok(head);
        }
    }
}

/// One line (or what came before the end), at most MAX_LINE bytes past what `line` holds.
async fn read_line(r: &mut BufReader<UnixStream>, line: &mut Vec<u8>) -> io::Result<()> {
    let limit = line.len() + MAX_LINE;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(());
        }
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        line.extend_from_slice(&available[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
        if line.len() > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "a line over 8 KiB"));
        }
    }
}

/// A response body on its connection, framing taken off. Every await point is one read
/// whose result is stored before the next, so a `read` dropped by a timeout loses nothing.
pub struct AsyncBody {
    r: BufReader<UnixStream>,
    framing: Framing,
    left: u64,
    after_chunk: bool,
    trailers: bool,
    done: bool,
    line: Vec<u8>,
}

impl AsyncBody {
    fn new(r: BufReader<UnixStream>, framing: Framing) -> AsyncBody {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let done = matches!(framing, Framing::Length(0));
        AsyncBody { r, framing, left, after_chunk: false, trailers: false, done, line: Vec::new() }
    }

    /// Up to `buf.len()` bytes of the body; 0 at its end.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            if let Framing::Close = self.framing {
                let n = self.r.read(buf).await?;
                self.done = n == 0;
                return Ok(n);
            }
            if matches!(self.framing, Framing::Chunked) && self.left == 0 {
                read_line(&mut self.r, &mut self.line).await?;
                if !self.line.ends_with(b"\n") {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended inside a chunk header"));
                }
                let line = std::mem::take(&mut self.line);
                if self.after_chunk {
                    self.after_chunk = false;
                } else if self.trailers {
                    self.done = line == b"\r\n";
                } else {
                    self.left = chunk_size(&line)?;
                    self.trailers = self.left == 0;
                }
                continue;
            }
            let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
            let n = self.r.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed before the end of the body"));
            }
            self.left -= n as u64;
            match self.framing {
                Framing::Length(_) => self.done = self.left == 0,
                _ => self.after_chunk = self.left == 0,
            }
            return Ok(n);
        }
    }

    /// The rest of the body, refusing more than `max` bytes.
    pub async fn bytes(mut self, max: u64) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() as u64 > max {
                return Err(Error::Protocol(format!("an answer over {} bytes", max)));
            }
        }
    }
}

/// The API's answer to a proxied request (any status); the body is read with `read`.
pub struct AsyncProxyResponse {
    pub status: u16,
    headers: Vec<(String, String)>,
    body: AsyncBody,
}

impl std::fmt::Debug for AsyncProxyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncProxyResponse").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

impl AsyncProxyResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::proxy::find_header(&self.headers, name)
    }

    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Up to `buf.len()` bytes of the body as they stream; 0 at its end.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.body.read(buf).await
    }

    /// The whole body (at most `max` bytes).
    pub async fn bytes(self, max: u64) -> Result<Vec<u8>, Error> {
        self.body.bytes(max).await
    }
}

/// The daemon's events: `next().await` until `None` (see [`crate::Events`]).
pub struct AsyncEvents {
    client: AsyncClient,
    reconnect: bool,
    body: Option<AsyncBody>,
    parser: SseParser,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<Event>,
    last_id: Option<String>,
    /// The stream ended and is not opened again.
    ended: bool,
    /// The wait before the next attempt to subscribe again.
    delay: Duration,
}

impl AsyncEvents {
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    async fn subscribe(&mut self) -> Result<(), Error> {
        let mut headers = vec![("Accept".to_string(), "text/event-stream".to_string())];
        if let Some(id) = &self.last_id {
            headers.push(("Last-Event-ID".to_string(), id.clone()));
        }
        let (head, body) = self.client.send("GET", "/v1/events", &headers, AsyncSend::None).await?;
        if !(200..300).contains(&head.status) {
            let answer = body.bytes(MAX_ERROR_ANSWER).await?;
            return Err(api_error(head.status, head.header("retry-after"), &answer));
        }
        self.body = Some(body);
        self.parser = SseParser::default();
        self.buf.clear();
        loop {
            match self.read_event().await? {
                None => return Err(Error::Protocol("the event stream ended before `ready`".into())),
                Some(ev) if ev.kind == "ready" => return Ok(()),
                Some(ev) => self.pending.push_back(ev),
            }
        }
    }

    /// The next event of the connection (`ready` included), `None` at its end.
    async fn read_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                if let Some(raw) = self.parser.line(text.trim_end_matches(&['\r', '\n'][..])) {
                    let ev = to_event(raw)?;
                    if ev.id.is_some() {
                        self.last_id = ev.id.clone();
                    }
                    return Ok(Some(ev));
                }
            }
            let body = match self.body.as_mut() {
                Some(b) => b,
                None => return Ok(None),
            };
            let mut chunk = [0u8; 8192];
            let n = body.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event; `None` once the stream ended (without `reconnect`). Cancel-safe: a
    /// `next()` dropped by a timeout loses no event, and the next call goes on where it was.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if self.ended {
                return None;
            }
            if self.body.is_none() {
                // Broken, with `reconnect` on: subscribe again until it works.
                let seen = self.last_id.clone();
                tokio::time::sleep(self.delay).await;
                let missed = self.pending.len();
                if self.subscribe().await.is_ok() {
                    self.pending.insert(missed, reconnected_event(seen.as_deref()));
                    self.delay = Duration::from_secs(1);
                } else {
                    self.body = None;
                    self.delay = (self.delay * 2).min(Duration::from_secs(30));
                }
                continue;
            }
            match self.read_event().await {
                Ok(Some(ev)) if ev.kind == "ready" => {}
                Ok(Some(ev)) => return Some(Ok(ev)),
                outcome => {
                    self.body = None;
                    if !self.reconnect {
                        self.ended = true;
                        if let Err(e) = outcome {
                            return Some(Err(e));
                        }
                    }
                }
            }
        }
    }
}
