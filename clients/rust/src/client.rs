//! The blocking client: one connection per call over the daemon's Unix socket.

use std::io::{self, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::calls::{self, Call};
use crate::error::Error;
use crate::events::{Events, EventsOptions};
use crate::paths::{default_socket_path, untrusted_socket};
use crate::proxy::ProxyRequest;
use crate::types::*;
use crate::wire::{read_head, request_head, write_chunked, Body, BodyLength, Head};

/// The default `User-Agent`: what the daemon's audit log records for calls of this crate.
pub const DEFAULT_USER_AGENT: &str = concat!("tokend-client-rust/", env!("CARGO_PKG_VERSION"));

/// Largest JSON answer read (the daemon's are a few KiB; an account list of thousands more).
const MAX_JSON_ANSWER: u64 = 32 * 1024 * 1024;

/// An answer body on its connection.
pub(crate) type Stream = Body<BufReader<UnixStream>>;

/// What a request sends as its body.
pub(crate) enum SendBody<'a> {
    None,
    Bytes(&'a [u8]),
    /// A reader, with its length when known (else it goes in chunks).
    Reader(&'a mut dyn Read, Option<u64>),
}

/// A client of the daemon's socket API. Cheap to clone; every call opens its own connection,
/// so one `Client` serves any number of threads.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
    user_agent: String,
    timeout: Option<Duration>,
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// A client of the daemon at the socket the CLI would use ([`default_socket_path`]:
    /// `TOKEND_SOCKET`, `TOKEND_HOME`, `XDG_RUNTIME_DIR`, …).
    pub fn new() -> Client {
        Client::with_socket(default_socket_path())
    }

    /// A client of the daemon listening on `socket`.
    pub fn with_socket<P: Into<PathBuf>>(socket: P) -> Client {
        Client { socket: socket.into(), user_agent: DEFAULT_USER_AGENT.to_string(), timeout: Some(Duration::from_secs(120)) }
    }

    /// Who your app is, for the daemon's audit log (`User-Agent`).
    pub fn user_agent<S: Into<String>>(mut self, user_agent: S) -> Client {
        self.user_agent = user_agent.into();
        self
    }

    /// How long a call waits for the daemon's answer (default 120 s; `None`: no limit). The
    /// daemon has its own limits for providers; this one is for a daemon that hangs. A
    /// proxied request's body and the event stream are not limited by it.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Client {
        self.timeout = timeout;
        self
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn user_agent_str(&self) -> &str {
        &self.user_agent
    }

    pub(crate) fn call_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    // --- transport -------------------------------------------------------------------------

    /// Connects, after checking the socket is the user's own (nothing is sent otherwise).
    pub(crate) fn connect(&self) -> Result<UnixStream, Error> {
        check_socket(&self.socket)?;
        UnixStream::connect(&self.socket).map_err(|e| connect_error(&self.socket, e))
    }

    /// Sends one request and reads the answer's head; the body is left on the connection.
    pub(crate) fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: SendBody<'_>,
        timeout: Option<Duration>,
    ) -> Result<(Head, Stream), Error> {
        let length = match &body {
            SendBody::None => BodyLength::None,
            SendBody::Bytes(b) => BodyLength::Known(b.len() as u64),
            SendBody::Reader(_, Some(n)) => BodyLength::Known(*n),
            SendBody::Reader(_, None) => BodyLength::Chunked,
        };
        let head = request_head(method, target, &self.user_agent, headers, length)?;
        let mut stream = self.connect()?;
        stream.set_read_timeout(timeout)?;
        stream.set_write_timeout(timeout)?;
        let written = write_request(&mut stream, &head, body);
        if let Err(e) = &written {
            // A body that could not be read, or a daemon that did not take it: no answer comes.
            if !matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                return Err(Error::Io(written.unwrap_err()));
            }
        }
        let mut reader = BufReader::new(stream);
        match read_head(&mut reader) {
            Ok(head) => {
                let framing = head.framing()?;
                Ok((head, Body::new(reader, framing)))
            }
            // The daemon may answer before it took the whole body (413, an unknown account):
            // that answer is the news; otherwise the write's failure is.
            Err(e) => Err(written.err().map(Error::Io).unwrap_or(e)),
        }
    }

    /// A JSON call: the answer's body as `T`, or the daemon's error.
    pub(crate) fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        let (headers, bytes) = calls::json_request(&call);
        let send = match &bytes {
            Some(b) => SendBody::Bytes(b),
            None => SendBody::None,
        };
        let (head, body) = self.send(call.method, &call.target, &headers, send, self.timeout)?;
        let answer = read_all(body, MAX_JSON_ANSWER)?;
        calls::json_answer(&call, head.status, head.header("retry-after"), &answer)
    }

    // --- the API ---------------------------------------------------------------------------

    /// `GET /v1/health`: the daemon's version, pid, and its warnings.
    pub fn health(&self) -> Result<Health, Error> {
        self.call(calls::health())
    }

    /// A valid access token of `account` (`POST /v1/token`), refreshed first when needed.
    pub fn token(&self, account: &str) -> Result<Token, Error> {
        self.token_with(account, &TokenOptions::default())
    }

    /// [`Client::token`] with a minimum time to live, a narrower scope or an audience.
    pub fn token_with(&self, account: &str, options: &TokenOptions) -> Result<Token, Error> {
        self.call(calls::token(account, options)?)
    }

    /// `GET /v1/accounts/:name`: the account's status, expiry, pending login, last error.
    pub fn info(&self, account: &str) -> Result<AccountView, Error> {
        self.call(calls::info(account))
    }

    /// `GET /v1/accounts`: every account.
    pub fn accounts(&self) -> Result<Vec<AccountView>, Error> {
        self.accounts_labeled(&[])
    }

    /// The accounts carrying every label given (`[("user", "123")]`).
    pub fn accounts_labeled(&self, labels: &[(&str, &str)]) -> Result<Vec<AccountView>, Error> {
        Ok(self.call::<AccountList>(calls::accounts(labels))?.accounts)
    }

    /// `PUT /v1/accounts/:name`: add or replace an account (its config as the daemon's
    /// `AccountConfig`, with `client_secret` or `password` when it needs one; see docs/api.md).
    pub fn put_account(&self, account: &str, config: &serde_json::Value, flags: WriteFlags) -> Result<AccountView, Error> {
        self.call(calls::put_account(account, config, flags))
    }

    /// `DELETE /v1/accounts/:name`: revoke where possible, then forget the account.
    pub fn remove_account(&self, account: &str) -> Result<Revoked, Error> {
        self.call(calls::remove_account(account))
    }

    /// Start an interactive login (`POST /v1/accounts/:name/login`): show the user its
    /// `user_code` and `verification_uri` (device) or open its `authorization_url` (browser),
    /// then [`Client::wait_for_login`]. A second call joins the pending login.
    pub fn login(&self, account: &str, options: &LoginOptions) -> Result<LoginView, Error> {
        self.call(calls::login(account, options)?)
    }

    /// `GET /v1/logins/:id`.
    pub fn get_login(&self, id: &str) -> Result<LoginView, Error> {
        self.call(calls::get_login(id))
    }

    /// `POST /v1/logins/:id/cancel`.
    pub fn cancel_login(&self, id: &str) -> Result<LoginView, Error> {
        self.call(calls::cancel_login(id))
    }

    /// Hand the daemon the redirect URL a browser login came back to (a deep link your app
    /// received: `com.example.app:/oauth2redirect?code=…&state=…`). The daemon finds the login
    /// by its `state` and exchanges the code; the answer is the login, `active` when it worked.
    pub fn complete_login(&self, callback_url: &str) -> Result<LoginView, Error> {
        self.call(calls::complete_login(callback_url))
    }

    /// Waits until login `id` ends: the login once `active`, [`Error::LoginFailed`] when it
    /// failed, was cancelled or expired. It listens to the event stream and asks for the login
    /// when an event says it changed (polling each second when there is no stream); a daemon
    /// restart meanwhile is waited out. `timeout`: give up (an `Io` error of kind `TimedOut`;
    /// the login goes on in the daemon).
    pub fn wait_for_login(&self, id: &str, timeout: Option<Duration>) -> Result<LoginView, Error> {
        crate::login_wait::wait_for_login(self, id, timeout)
    }

    /// Revoke the account's grant at the provider and forget it (the config stays).
    pub fn logout(&self, account: &str) -> Result<Revoked, Error> {
        self.call(calls::logout(account))
    }

    /// Start the account from tokens your app already holds. The daemon proves them first
    /// (one refresh, or the provider's check) and replaces nothing when they are refused
    /// (`import_refused`) or the provider is down (`upstream_unavailable`).
    pub fn import_tokens(&self, account: &str, tokens: &ImportTokens) -> Result<AccountView, Error> {
        self.call(calls::import_tokens(account, tokens)?)
    }

    /// Say that a token the daemon served was refused (a 401 from the API): it is dropped,
    /// and the next [`Client::token`] refreshes. `token`: the one refused (a newer one the
    /// daemon holds already is kept).
    pub fn reject(&self, account: &str, token: Option<&str>) -> Result<Rejected, Error> {
        self.call(calls::reject(account, token))
    }

    /// Refresh now. `if_token`: the token your app saw refused; when the daemon already holds
    /// another valid one it answers with that (in `access_token`, `refreshed: false`) without
    /// asking the provider, and a refresh in flight is joined (a daemon from before issue 24
    /// ignores it and refreshes).
    pub fn refresh(&self, account: &str, if_token: Option<&str>) -> Result<Refreshed, Error> {
        self.call(calls::refresh(account, if_token))
    }

    /// The driver's recover step now (Cal.com's force-refresh, AMP's obtain): a new grant
    /// without the user. Daemons from issue 24 on; an older one answers `not_found`.
    pub fn recover(&self, account: &str) -> Result<Refreshed, Error> {
        self.call(calls::recover(account))
    }

    /// A request to the account's API through the daemon (`/v1/proxy/ACCOUNT/PATH`), which
    /// adds the token: your app never holds it. `path` is below the account's `api_base`,
    /// with its query (`/users/me?x=1`).
    pub fn proxy(&self, account: &str, method: &str, path: &str) -> ProxyRequest<'_> {
        ProxyRequest::new(self, account, method, path)
    }

    /// The daemon's events (`GET /v1/events`), from now on: returns once the daemon holds the
    /// subscription (its `ready`). Reconnects by itself when the stream breaks (see [`EventsOptions`]).
    pub fn events(&self) -> Result<Events, Error> {
        self.events_with(EventsOptions::default())
    }

    /// [`Client::events`] with options: resume after an event id you saw (`Last-Event-ID`),
    /// or no reconnecting.
    pub fn events_with(&self, options: EventsOptions) -> Result<Events, Error> {
        Events::open(self.clone(), options)
    }
}

/// Before connecting: the socket must be the user's own, else another user may be listening.
pub(crate) fn check_socket(socket: &Path) -> Result<(), Error> {
    match untrusted_socket(socket) {
        Some(reason) => Err(Error::Untrusted { socket: socket.to_path_buf(), reason }),
        None => Ok(()),
    }
}

/// A failed connect: nothing listening there is "not running" (with how to start it).
pub(crate) fn connect_error(socket: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Error::NotRunning { socket: socket.to_path_buf(), source: e },
        _ => Error::Io(io::Error::new(e.kind(), format!("connecting to {}: {}", socket.display(), e))),
    }
}

fn write_request(stream: &mut UnixStream, head: &[u8], body: SendBody<'_>) -> io::Result<()> {
    match body {
        SendBody::None => stream.write_all(head),
        SendBody::Bytes(b) => {
            let mut all = Vec::with_capacity(head.len() + b.len());
            all.extend_from_slice(head);
            all.extend_from_slice(b);
            stream.write_all(&all)
        }
        SendBody::Reader(r, Some(n)) => {
            stream.write_all(head)?;
            let copied = io::copy(&mut (&mut *r).take(n), stream)?;
            if copied < n {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the body ended after {} of {} bytes", copied, n)));
            }
            Ok(())
        }
        SendBody::Reader(r, None) => {
            stream.write_all(head)?;
            let mut w = io::BufWriter::new(&mut *stream);
            write_chunked(&mut w, r)?;
            w.flush()
        }
    }
}

/// The whole body, refusing one larger than `max`.
pub(crate) fn read_all<R: Read>(body: R, max: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    body.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(Error::Protocol(format!("an answer over {} bytes", max)));
    }
    Ok(out)
}
