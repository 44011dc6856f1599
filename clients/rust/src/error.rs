//! One error type for every call: the daemon's own errors (`{"error":{"code","message"}}`,
//! codes as in docs/api.md), and what can go wrong before or around them.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::LoginView;

/// The daemon's error codes (docs/api.md, Errors). `Other` keeps a code this crate does not
/// know yet (a newer daemon), so matching on it never fails to compile or to parse.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: malformed JSON, a wrong type, an invalid account name, a proxy path leaving `api_base`.
    InvalidRequest,
    /// 400: the provider refused the imported tokens; nothing was changed.
    ImportRefused,
    /// 401: the loopback listener without the right key.
    Unauthorized,
    /// 403: the loopback listener refused an `Origin` or `Host`.
    Forbidden,
    /// 404: unknown account, login or route.
    NotFound,
    /// 404: no pending login has the `state` of a callback URL.
    LoginNotFound,
    /// 409: the grant was refused and nothing could recover it: a login is needed.
    ReauthRequired,
    /// 409: a login is in progress ([`ApiError::login`] shows it).
    LoginPending,
    /// 409: a change would move a grant or a secret to another provider or client.
    Conflict,
    /// 413: a request body over 64 KiB.
    PayloadTooLarge,
    /// 429: the account's refresh budget is spent ([`Error::retry_after`]).
    RateLimited,
    /// 502: the provider refused the client or a stored password (a configuration error).
    ProviderRejected,
    /// 502: the proxy could not reach the account's API.
    UpstreamFailed,
    /// 504: the account's API did not start answering in time.
    UpstreamTimeout,
    /// 503: the provider is down and no valid cached token is left ([`Error::retry_after`]).
    UpstreamUnavailable,
    /// 500: a bug in the daemon (details in its log).
    Internal,
    /// A code this version of the crate does not know.
    Other(String),
}

const CODES: &[(&str, ErrorCode)] = &[
    ("invalid_request", ErrorCode::InvalidRequest),
    ("import_refused", ErrorCode::ImportRefused),
    ("unauthorized", ErrorCode::Unauthorized),
    ("forbidden", ErrorCode::Forbidden),
    ("not_found", ErrorCode::NotFound),
    ("login_not_found", ErrorCode::LoginNotFound),
    ("reauth_required", ErrorCode::ReauthRequired),
    ("login_pending", ErrorCode::LoginPending),
    ("conflict", ErrorCode::Conflict),
    ("payload_too_large", ErrorCode::PayloadTooLarge),
    ("rate_limited", ErrorCode::RateLimited),
    ("provider_rejected", ErrorCode::ProviderRejected),
    ("upstream_failed", ErrorCode::UpstreamFailed),
    ("upstream_timeout", ErrorCode::UpstreamTimeout),
    ("upstream_unavailable", ErrorCode::UpstreamUnavailable),
    ("internal", ErrorCode::Internal),
];

impl ErrorCode {
    /// The code as it is on the wire (`reauth_required`).
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(s) => s,
            known => CODES.iter().find(|(_, c)| c == known).map(|(s, _)| *s).unwrap_or("internal"),
        }
    }

    /// The code of a wire name; unknown names become [`ErrorCode::Other`].
    pub fn parse(s: &str) -> ErrorCode {
        CODES.iter().find(|(name, _)| *name == s).map(|(_, c)| c.clone()).unwrap_or_else(|| ErrorCode::Other(s.to_string()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error the daemon answered with.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// The HTTP status it came with.
    pub status: u16,
    /// The daemon's message: it says what to do (`run \`tokend login work\``), never a secret.
    pub message: String,
    /// The account it is about, when there is one.
    pub account: Option<String>,
    /// When to try again: the body's `retry_after`, else the `Retry-After` header.
    pub retry_after: Option<Duration>,
    /// `login_pending`: the login in progress (its user code and URL).
    pub login: Option<Box<LoginView>>,
}

/// Everything a call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The daemon answered with an error.
    Api(ApiError),
    /// Nothing listens on the socket: the daemon is not running. The message says how to start it.
    NotRunning { socket: PathBuf, source: io::Error },
    /// The socket, or its folder, is another user's or writable by others: another user may
    /// be listening there. Nothing was sent.
    Untrusted { socket: PathBuf, reason: String },
    /// [`Client::wait_for_login`](crate::Client::wait_for_login): the login failed or expired
    /// (its `error` says why: `access_denied`, `cancelled`, `expired_token`, …).
    LoginFailed(Box<LoginView>),
    /// The connection broke, or timed out, after it was made (a daemon restarting, a timeout).
    Io(io::Error),
    /// The daemon's answer was not what the API says (not HTTP, not the expected JSON).
    Protocol(String),
    /// An argument this crate refuses before sending anything (a header with a line break).
    InvalidInput(String),
}

impl Error {
    /// The daemon's error code, for [`Error::Api`].
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// When the same call may work: from the daemon's `retry_after` (or `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_after,
            _ => None,
        }
    }

    /// The HTTP status of an [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// True when the same call may work later unchanged: the daemon not running or the
    /// connection broken, the provider or API unreachable, the refresh budget spent. Any other
    /// error needs a change first (a login, the config).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::NotRunning { .. } | Error::Io(_) => true,
            Error::Api(e) => matches!(
                e.code,
                ErrorCode::UpstreamUnavailable | ErrorCode::UpstreamTimeout | ErrorCode::UpstreamFailed | ErrorCode::RateLimited
            ),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(e) => f.write_str(&e.message),
            Error::NotRunning { socket, source } => write!(
                f,
                "tokend is not running (nothing listens on {}: {}); start it with `tokend daemon`, or `tokend service install` to have it start at login",
                socket.display(),
                source
            ),
            Error::Untrusted { reason, .. } => f.write_str(reason),
            Error::LoginFailed(login) => {
                let why = login.error.as_ref().map(|e| e.message.as_str()).unwrap_or("the login did not succeed");
                write!(f, "login to \"{}\" {}: {}", login.account, login.status, why)
            }
            Error::Io(e) => write!(f, "the connection to tokend failed: {}", e),
            Error::Protocol(m) => write!(f, "tokend answered something unexpected: {}", m),
            Error::InvalidInput(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NotRunning { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// The error of a non-2xx answer: the daemon's `{"error": {...}}`, or a description of
/// whatever else came (a proxy in the way, a daemon too old for the route).
pub(crate) fn api_error(status: u16, retry_after_header: Option<&str>, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Wire {
        error: WireError,
    }
    #[derive(serde::Deserialize)]
    struct WireError {
        code: String,
        message: String,
        #[serde(default)]
        account: Option<String>,
        #[serde(default)]
        retry_after: Option<f64>,
        #[serde(default)]
        login: Option<serde_json::Value>,
    }
    let header = retry_after_header.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    match serde_json::from_slice::<Wire>(body) {
        Ok(Wire { error: e }) => Error::Api(ApiError {
            code: ErrorCode::parse(&e.code),
            status,
            message: e.message,
            account: e.account,
            retry_after: e.retry_after.filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64).or(header),
            login: e.login.and_then(|l| serde_json::from_value(l).ok()).map(Box::new),
        }),
        Err(_) => Error::Protocol(format!(
            "HTTP {} without an error body ({} bytes){}",
            status,
            body.len(),
            if status == 404 { ": is the daemon older than this route?" } else { "" }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_and_the_header_give_retry_after() {
        let body = br#"{"error":{"code":"rate_limited","message":"wait","account":"w","retry_after":7}}"#;
        let e = api_error(429, Some("9"), body);
        assert_eq!(e.code(), Some(&ErrorCode::RateLimited));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable());
        let body = br#"{"error":{"code":"upstream_unavailable","message":"down"}}"#;
        assert_eq!(api_error(503, Some("12"), body).retry_after(), Some(Duration::from_secs(12)));
        assert_eq!(api_error(503, None, body).retry_after(), None);
    }

    #[test]
    fn every_code_round_trips_and_unknown_ones_are_kept() {
        for (name, code) in CODES {
            assert_eq!(ErrorCode::parse(name), *code);
            assert_eq!(code.as_str(), *name);
        }
        assert_eq!(ErrorCode::parse("brand_new"), ErrorCode::Other("brand_new".into()));
        assert_eq!(ErrorCode::Other("brand_new".into()).as_str(), "brand_new");
    }

    #[test]
    fn a_body_that_is_not_the_error_shape_is_a_protocol_error() {
        let e = api_error(502, None, b"<html>bad gateway</html>");
        assert!(matches!(e, Error::Protocol(_)), "{:?}", e);
    }
}
