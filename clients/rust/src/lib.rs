//! A client of [tokend](https://github.com/tokend/tokend) (the per-user daemon that keeps OAuth tokens
//! fresh) over its Unix socket, for Rust backends and Tauri apps: tokens, accounts, logins,
//! the daemon's events, and requests to an account's API through the daemon, so that the
//! app never holds the token.
//!
//! ```no_run
//! let tokend = tokend_client::Client::new(); // the socket the CLI would use
//! let token = tokend.token("work")?;
//! println!("{} expires at {:?}", token.token_type, token.expires_at);
//! # Ok::<(), tokend_client::Error>(())
//! ```
//!
//! Blocking calls on `std`; with the `tokio` feature, the same calls on tokio in
//! [`AsyncClient`]. HTTP/1.1 is written by hand: the only dependencies are serde and
//! serde_json (and tokio for the feature).
#![cfg(unix)]

mod calls;
mod client;
mod error;
mod events;
mod login_wait;
mod paths;
mod proxy;
mod types;
mod wire;

#[cfg(feature = "tokio")]
mod asynch;

pub use client::{Client, DEFAULT_USER_AGENT};
pub use error::{ApiError, Error, ErrorCode};
pub use events::{Event, Events, EventsCloser, EventsOptions};
pub use paths::default_socket_path;
pub use proxy::{ProxyRequest, ProxyResponse};
pub use types::{
    AccountView, Health, ImportTokens, LastLogin, LoginError, LoginOptions, LoginView, Refreshed, Rejected, Revoked, Token, TokenOptions,
    WriteFlags,
};
pub use wire::Body;

#[cfg(feature = "tokio")]
pub use asynch::{AsyncClient, AsyncEvents, AsyncProxyResponse};

/// What every call returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;
