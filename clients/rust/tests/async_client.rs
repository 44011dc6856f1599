//! The async client (feature `tokio`) against a real daemon (TOKEND_BIN).
#![cfg(feature = "tokio")]

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{state_of, Daemon, Provider, REDIRECT_URI};
use tokend_client::{AsyncClient, Error, ErrorCode, ImportTokens, LoginOptions};

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn tokens_errors_logins_events_and_the_proxy_on_tokio() {
    let p = Provider::start();
    let d = Daemon::start();
    d.add_account("work", &p);
    let c = AsyncClient::from(d.client());
    run(async {
        let err = c.token("work").await.unwrap_err();
        assert_eq!(err.code(), Some(&ErrorCode::ReauthRequired), "{}", err);
        let err = c.info("nope").await.unwrap_err();
        assert_eq!((err.code(), err.status()), (Some(&ErrorCode::NotFound), Some(404)));

        // A browser login, completed by its callback URL while another task waits for it.
        let mut events = c.events().await.unwrap();
        let login = c.login("work", &LoginOptions { flow: Some("browser".into()), ..Default::default() }).await.unwrap();
        let waiter = {
            let c = c.clone();
            let id = login.id.clone();
            tokio::spawn(async move { c.wait_for_login(&id, Some(Duration::from_secs(120))).await })
        };
        p.code("code-a");
        let url = login.authorization_url.unwrap();
        let done = c.complete_login(&format!("{}?code=code-a&state={}", REDIRECT_URI, state_of(&url))).await.unwrap();
        assert_eq!(done.status, "active");
        assert_eq!(waiter.await.unwrap().unwrap().status, "active");
        loop {
            let ev = events.next().await.unwrap().unwrap();
            if ev.kind == "login.succeeded" {
                assert_eq!(ev.account(), Some("work"));
                break;
            }
        }

        let token = c.token("work").await.unwrap();
        assert!(p.issued().contains(&token.access_token));
        let refreshed = c.refresh("work", None).await.unwrap();
        assert_ne!(c.token("work").await.unwrap().access_token, token.access_token);
        assert!(refreshed.generation >= 1);
        assert!(c.reject("work", Some("not-a-token-it-served")).await.unwrap().ok);

        // A streamed upload of unknown length, and the answer read as it streams.
        let body = vec![7u8; 200_000];
        let mut res = c.proxy_reader("work", "POST", "/up", &[("X-App", "async")], &body[..], None).await.unwrap();
        let seen: Value = serde_json::from_str(res.header("x-seen").unwrap()).unwrap();
        assert_eq!((seen["body_len"].clone(), seen["x_app"].clone()), (json!(200_000), json!("async")));
        let mut back = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = res.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
        assert!(back == body);
        let streamed = c.proxy("work", "GET", "/stream", &[]).await.unwrap().bytes(1 << 20).await.unwrap();
        assert_eq!(String::from_utf8(streamed).unwrap().lines().count(), 100);
        let err = c.proxy("nope", "GET", "/x", &[]).await.unwrap_err();
        assert_eq!(err.code(), Some(&ErrorCode::NotFound));

        // Refused tokens: import_refused, nothing changed.
        let bad = ImportTokens { refresh_token: Some("never-issued".into()), ..Default::default() };
        assert_eq!(c.import_tokens("work", &bad).await.unwrap_err().code(), Some(&ErrorCode::ImportRefused));
        assert_eq!(c.info("work").await.unwrap().status, "active");
        assert!(c.logout("work").await.unwrap().revoked);
    });
}

#[test]
fn a_daemon_that_is_not_running_is_said_so() {
    let c = AsyncClient::with_socket(std::env::temp_dir().join("tkr-async-none.sock"));
    let err = run(c.health()).unwrap_err();
    assert!(matches!(err, Error::NotRunning { .. }), "{:?}", err);
    assert!(err.to_string().contains("`tokend daemon`"));
}
