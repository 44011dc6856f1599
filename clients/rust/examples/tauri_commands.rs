//! A Tauri app's authentication commands, as plain Rust (no Tauri dependency): in the app
//! each `pub fn` below becomes a `#[tauri::command]` taking `tauri::State<'_, Auth>`, and
//! `main` registers them:
//!
//! ```ignore
//! tauri::Builder::default()
//!     .manage(Auth::new("work"))
//!     .invoke_handler(tauri::generate_handler![get_auth_status, login, complete_login, logout, api_get])
//! ```
//!
//! The token never reaches the webview: it stays in tokend, and the webview's API calls go
//! through `api_get`, which sends them through the daemon's proxy (the daemon adds the token).
//! Errors reach the webview as `{code, message, retry_after_s}`, never with a secret.
//!
//! Run it as a small CLI against a daemon (TOKEND_SOCKET or the default socket):
//! `cargo run --example tauri_commands -- ACCOUNT status|login|complete URL|wait ID|logout|api PATH`;
//! it prints what each command would hand the webview, as JSON.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokend_client::{Client, Error, LoginOptions, LoginView};

/// The app's state (`app.manage(...)`): the daemon client and the account the app uses.
pub struct Auth {
    tokend: Client,
    account: String,
}

impl Auth {
    pub fn new(account: &str) -> Auth {
        Auth { tokend: Client::new().user_agent("example-tauri-app/1.0"), account: account.to_string() }
    }
}

/// What the webview gets when a command fails.
#[derive(Debug, Serialize)]
pub struct CommandError {
    /// The daemon's code (`reauth_required`, `upstream_unavailable`, …), or `daemon_not_running`,
    /// `login_failed`, `io`.
    pub code: String,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl From<Error> for CommandError {
    fn from(err: Error) -> CommandError {
        let code = match &err {
            Error::Api(e) => e.code.as_str().to_string(),
            Error::NotRunning { .. } => "daemon_not_running".into(),
            Error::LoginFailed(l) => l.error.as_ref().map(|e| e.code.clone()).unwrap_or_else(|| "login_failed".into()),
            _ => "io".into(),
        };
        CommandError { code, retry_after_s: err.retry_after().map(|d| d.as_secs()), message: err.to_string() }
    }
}

/// A login in progress, as the webview shows it: a URL to open, or a code to enter.
#[derive(Debug, Serialize)]
pub struct PendingLogin {
    pub id: String,
    pub url: Option<String>,
    pub user_code: Option<String>,
}

impl From<LoginView> for PendingLogin {
    fn from(l: LoginView) -> PendingLogin {
        let url = l.authorization_url.or(l.verification_uri_complete).or(l.verification_uri);
        PendingLogin { id: l.id, url, user_code: l.user_code }
    }
}

#[derive(Debug, Serialize)]
pub struct AuthStatus {
    pub signed_in: bool,
    /// The daemon's account status (`active`, `no_grant`, `reauth_required`, …).
    pub status: String,
    pub expires_at: Option<String>,
    pub login: Option<PendingLogin>,
    pub last_error: Option<String>,
}

/// `get_auth_status`: whether the app can call its API now, and the login in progress if any.
pub fn get_auth_status(auth: &Auth) -> Result<AuthStatus, CommandError> {
    let view = auth.tokend.info(&auth.account)?;
    Ok(AuthStatus {
        signed_in: view.status == "active",
        status: view.status,
        expires_at: view.expires_at,
        login: view.login.map(PendingLogin::from),
        last_error: view.last_error,
    })
}

/// `login`: starts a browser login (or joins the pending one); the webview opens `url` with
/// the opener plugin. A deep link back to the app calls [`complete_login`].
pub fn login(auth: &Auth) -> Result<PendingLogin, CommandError> {
    Ok(auth.tokend.login(&auth.account, &LoginOptions::default())?.into())
}

/// The deep-link handler (tauri-plugin-deep-link's `on_open_url`): hands the redirect to the
/// daemon, which exchanges the code. Returns the status afterwards.
pub fn complete_login(auth: &Auth, url: &str) -> Result<AuthStatus, CommandError> {
    auth.tokend.complete_login(url)?;
    get_auth_status(auth)
}

/// Waits (in a command, off the UI thread) until login `id` ended.
pub fn wait_for_login(auth: &Auth, id: &str) -> Result<AuthStatus, CommandError> {
    auth.tokend.wait_for_login(id, Some(Duration::from_secs(600)))?;
    get_auth_status(auth)
}

/// `logout`: revokes the grant at the provider and forgets it.
pub fn logout(auth: &Auth) -> Result<(), CommandError> {
    auth.tokend.logout(&auth.account)?;
    Ok(())
}

/// `api_get`: the webview's API call, through the daemon's proxy: the token is added by
/// tokend and never seen by the app or the webview. A non-2xx answer of the API is an error
/// with code `api_<status>`.
pub fn api_get(auth: &Auth, path: &str) -> Result<Value, CommandError> {
    let res = auth.tokend.proxy(&auth.account, "GET", path).header("Accept", "application/json").send()?;
    let status = res.status;
    if !(200..300).contains(&status) {
        let message = res.text(64 * 1024).unwrap_or_default();
        return Err(CommandError { code: format!("api_{}", status), message, retry_after_s: None });
    }
    Ok(res.json()?)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tauri_commands ACCOUNT status|login|complete URL|wait ID|logout|api PATH";
    if args.len() < 2 {
        eprintln!("{}", usage);
        std::process::exit(2);
    }
    let auth = Auth::new(&args[0]);
    let arg = || args.get(2).map(String::as_str).unwrap_or("");
    let out: Result<Value, CommandError> = match args[1].as_str() {
        "status" => get_auth_status(&auth).map(|s| serde_json::to_value(s).unwrap()),
        "login" => login(&auth).map(|l| serde_json::to_value(l).unwrap()),
        "complete" => complete_login(&auth, arg()).map(|s| serde_json::to_value(s).unwrap()),
        "wait" => wait_for_login(&auth, arg()).map(|s| serde_json::to_value(s).unwrap()),
        "logout" => logout(&auth).map(|_| Value::Null),
        "api" => api_get(&auth, arg()),
        _ => {
            eprintln!("{}", usage);
            std::process::exit(2);
        }
    };
    match out {
        Ok(v) => println!("{}", v),
        Err(e) => {
            println!("{}", serde_json::to_value(&e).unwrap());
            std::process::exit(1);
        }
    }
}
