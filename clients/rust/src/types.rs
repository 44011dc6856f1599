//! The bodies of the socket API (the repository's src/protocol/api.ts), as far as a client
//! reads or writes them. Fields a daemon may not send (older or newer) are `Option` with a
//! default, and unknown fields are ignored, so one crate works with daemons before and after.

use serde::{Deserialize, Serialize};

/// `POST /v1/token`: a valid access token.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Token {
    pub account: String,
    pub access_token: String,
    /// `Bearer`, or the scheme the provider's driver says.
    pub token_type: String,
    /// ISO 8601, or `None` when the provider did not say.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Seconds left.
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub scope: Option<String>,
}

// The token never goes to a log through `{:?}`.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("account", &self.account)
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What to ask `POST /v1/token` for, beyond the account.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TokenOptions {
    /// At least this many seconds of validity left (a refresh first if needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ttl: Option<u32>,
    /// A narrower scope than the account's (space-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// An interactive login (`POST /v1/accounts/:name/login`, `GET /v1/logins/:id`). Never a secret.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct LoginView {
    pub id: String,
    pub account: String,
    /// `device` or `browser`.
    pub flow: String,
    #[serde(default)]
    pub task: Option<String>,
    /// `pending`, then `active`, `failed` or `expired`.
    pub status: String,
    /// Device flow: what the user enters, and where.
    #[serde(default)]
    pub user_code: Option<String>,
    #[serde(default)]
    pub verification_uri: Option<String>,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Browser flow: the URL to open (while pending).
    #[serde(default)]
    pub authorization_url: Option<String>,
    /// A pending device login's QR code, as lines of Unicode half blocks.
    #[serde(default)]
    pub qr: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    pub expires_at: String,
    /// Why it failed or expired (the provider's OAuth error code when it sent one).
    #[serde(default)]
    pub error: Option<LoginError>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct LoginError {
    pub code: String,
    pub message: String,
}

/// The last finished login of an account.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct LastLogin {
    pub id: String,
    pub flow: String,
    pub status: String,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub error: Option<LoginError>,
}

/// What the daemon shows of an account: its config without secrets, and its grant's state.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct AccountView {
    pub name: String,
    pub driver: String,
    /// `active`, `refresh_failing`, `expired`, `no_grant`, `reauth_required` or `login_pending`
    /// (docs/api.md, Account status).
    pub status: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Seconds left on the cached token (daemons from issue 24 on).
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// When the grant was obtained (login, import), when it was last refreshed (daemons from issue 24 on).
    #[serde(default)]
    pub obtained_at: Option<String>,
    #[serde(default)]
    pub refreshed_at: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub has_client_secret: bool,
    #[serde(default)]
    pub has_password: Option<bool>,
    #[serde(default)]
    pub has_refresh_token: bool,
    #[serde(default)]
    pub refresh_expires_at: Option<String>,
    #[serde(default)]
    pub flow: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub api_base: Option<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub retry_at: Option<String>,
    #[serde(default)]
    pub generation: i64,
    /// The pending login, if one runs.
    #[serde(default)]
    pub login: Option<LoginView>,
    #[serde(default)]
    pub last_login: Option<LastLogin>,
    /// Only in the answer to an account write: what it did besides saving.
    #[serde(default)]
    pub notices: Option<Vec<String>>,
}

/// `POST /v1/accounts/:name/login` options.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoginOptions {
    /// `device` or `browser`; default the account's flow, else the daemon's guess.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Your label for this login (a task or user id), returned with it and searchable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// How long the login waits, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
}

/// `POST /v1/accounts/:name/import`: tokens an app already holds. Proven by the daemon
/// (one refresh, or the driver's check) before anything is replaced.
#[derive(Clone, Default, Serialize)]
pub struct ImportTokens {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Epoch milliseconds or an ISO time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<serde_json::Value>,
    /// The client the refresh token was issued to, with its secret (both or neither).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for ImportTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("ImportTokens")
            .field("refresh_token", &redact(&self.refresh_token))
            .field("access_token", &redact(&self.access_token))
            .field("expires_at", &self.expires_at)
            .field("client_id", &self.client_id)
            .field("client_secret", &redact(&self.client_secret))
            .finish()
    }
}

/// `POST /v1/accounts/:name/refresh` (and `recover`).
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Refreshed {
    pub account: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    pub generation: i64,
    /// With `if_token` (daemons from issue 24 on): the token to use now, the one the daemon
    /// already held or the new one, as [`Token`] has it.
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub scope: Option<String>,
    /// With `if_token`: false when the daemon already held another token and called nobody.
    #[serde(default)]
    pub refreshed: Option<bool>,
}

impl std::fmt::Debug for Refreshed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshed")
            .field("account", &self.account)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .field("access_token", &self.access_token.as_ref().map(|_| "<redacted>"))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refreshed", &self.refreshed)
            .finish()
    }
}

/// `logout`, `remove_account`: whether the provider revoked the grant.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Revoked {
    pub ok: bool,
    pub revoked: bool,
}

/// `POST /v1/credential/reject`: how many cached tokens were dropped.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Rejected {
    pub ok: bool,
    pub dropped: i64,
}

/// `GET /v1/health`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub pid: i64,
    pub uptime_s: f64,
    pub accounts: i64,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Query flags of an account write (`PUT /v1/accounts/:name`).
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteFlags {
    /// Move the account to another provider or client: its old grant is revoked and dropped.
    pub replace_grant: bool,
    /// Save without contacting the provider (offline setup).
    pub no_check: bool,
}

#[derive(Deserialize)]
pub(crate) struct AccountList {
    pub accounts: Vec<AccountView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_holds_a_token() {
        let t = Token {
            account: "a".into(),
            access_token: "secret-at".into(),
            token_type: "Bearer".into(),
            expires_at: None,
            expires_in: None,
            scope: None,
        };
        assert!(!format!("{:?}", t).contains("secret-at"));
        let i = ImportTokens { refresh_token: Some("secret-rt".into()), ..Default::default() };
        let r: Refreshed = serde_json::from_str(r#"{"account":"a","generation":1,"access_token":"secret-at","refreshed":false}"#).unwrap();
        assert!(!format!("{:?}", r).contains("secret-at") && r.refreshed == Some(false));
        assert!(!format!("{:?}", i).contains("secret-rt"));
    }

    #[test]
    fn an_account_view_without_the_newer_fields_parses() {
        let v: AccountView = serde_json::from_str(
            r#"{"name":"w","driver":"oauth2","status":"no_grant","expires_at":null,"scopes":[],"hosts":[],
               "has_client_secret":true,"has_refresh_token":false,"last_error":null,"generation":0,"some_future_field":1}"#,
        )
        .unwrap();
        assert_eq!(v.expires_in, None);
        assert_eq!(v.obtained_at, None);
        let v: AccountView = serde_json::from_str(
            r#"{"name":"w","driver":"oauth2","status":"active","expires_in":300,"obtained_at":"2026-12-07T00:00:00Z",
               "refreshed_at":null,"generation":2}"#,
        )
        .unwrap();
        assert_eq!(v.expires_in, Some(300));
    }
}
