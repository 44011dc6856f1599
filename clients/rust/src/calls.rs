//! Each call of the API as a request (method, target, JSON body), built once for the
//! blocking and the async client.

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::Error;
use crate::types::{ImportTokens, LoginOptions, TokenOptions, WriteFlags};
use crate::wire::encode_component;

pub(crate) struct Call {
    pub method: &'static str,
    pub target: String,
    pub body: Option<Value>,
}

fn get(target: String) -> Call {
    Call { method: "GET", target, body: None }
}

fn post(target: String, body: Value) -> Call {
    Call { method: "POST", target, body: Some(body) }
}

fn to_value<B: Serialize>(body: &B) -> Result<Value, Error> {
    serde_json::to_value(body).map_err(|e| Error::InvalidInput(e.to_string()))
}

pub(crate) fn account_path(account: &str, rest: &str) -> String {
    format!("/v1/accounts/{}{}", encode_component(account), rest)
}

fn login_path(id: &str, rest: &str) -> String {
    format!("/v1/logins/{}{}", encode_component(id), rest)
}

pub(crate) fn health() -> Call {
    get("/v1/health".into())
}

pub(crate) fn token(account: &str, options: &TokenOptions) -> Result<Call, Error> {
    let mut body = to_value(options)?;
    body["account"] = json!(account);
    Ok(post("/v1/token".into(), body))
}

pub(crate) fn info(account: &str) -> Call {
    get(account_path(account, ""))
}

pub(crate) fn accounts(labels: &[(&str, &str)]) -> Call {
    let query: Vec<String> = labels.iter().map(|(k, v)| format!("label={}", encode_component(&format!("{}={}", k, v)))).collect();
    get(if query.is_empty() { "/v1/accounts".to_string() } else { format!("/v1/accounts?{}", query.join("&")) })
}

pub(crate) fn put_account(account: &str, config: &Value, flags: WriteFlags) -> Call {
    let mut query = Vec::new();
    if flags.replace_grant {
        query.push("replace_grant=true");
    }
    if flags.no_check {
        query.push("check=false");
    }
    let mut target = account_path(account, "");
    if !query.is_empty() {
        target = format!("{}?{}", target, query.join("&"));
    }
    Call { method: "PUT", target, body: Some(config.clone()) }
}

pub(crate) fn remove_account(account: &str) -> Call {
    Call { method: "DELETE", target: account_path(account, ""), body: None }
}

pub(crate) fn login(account: &str, options: &LoginOptions) -> Result<Call, Error> {
    Ok(post(account_path(account, "/login"), to_value(options)?))
}

pub(crate) fn get_login(id: &str) -> Call {
    get(login_path(id, ""))
}

pub(crate) fn cancel_login(id: &str) -> Call {
    post(login_path(id, "/cancel"), json!({}))
}

pub(crate) fn complete_login(callback_url: &str) -> Call {
    post("/v1/logins/callback".into(), json!({ "url": callback_url }))
}

pub(crate) fn logout(account: &str) -> Call {
    post(account_path(account, "/logout"), json!({}))
}

pub(crate) fn import_tokens(account: &str, tokens: &ImportTokens) -> Result<Call, Error> {
    Ok(post(account_path(account, "/import"), to_value(tokens)?))
}

pub(crate) fn reject(account: &str, token: Option<&str>) -> Call {
    let mut body = json!({ "account": account });
    if let Some(t) = token {
        body["access_token"] = json!(t);
    }
    post("/v1/credential/reject".into(), body)
}

pub(crate) fn refresh(account: &str, if_token: Option<&str>) -> Call {
    let body = match if_token {
        Some(t) => json!({ "if_token": t }),
        None => json!({}),
    };
    post(account_path(account, "/refresh"), body)
}

pub(crate) fn recover(account: &str) -> Call {
    post(account_path(account, "/recover"), json!({}))
}

/// `/v1/proxy/ACCOUNT/PATH`: `path` below the account's `api_base`, with its query.
pub(crate) fn proxy_target(account: &str, path: &str) -> String {
    format!("/v1/proxy/{}/{}", encode_component(account), path.trim_start_matches('/'))
}

/// The headers of a JSON call, with its body's bytes.
pub(crate) fn json_request(call: &Call) -> (Vec<(String, String)>, Option<Vec<u8>>) {
    let mut headers = vec![("Accept".to_string(), "application/json".to_string())];
    let body = call.body.as_ref().map(|b| {
        headers.push(("Content-Type".to_string(), "application/json".to_string()));
        serde_json::to_vec(b).expect("a JSON value serializes")
    });
    (headers, body)
}

/// A JSON answer: the body as `T` on 2xx, the daemon's error otherwise.
pub(crate) fn json_answer<T: serde::de::DeserializeOwned>(
    call: &Call,
    status: u16,
    retry_after: Option<&str>,
    answer: &[u8],
) -> Result<T, Error> {
    if !(200..300).contains(&status) {
        return Err(crate::error::api_error(status, retry_after, answer));
    }
    let path = call.target.split('?').next().unwrap_or("");
    serde_json::from_slice(answer).map_err(|e| Error::Protocol(format!("{} {}: {}", call.method, path, e)))
}
