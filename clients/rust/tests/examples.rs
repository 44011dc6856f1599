//! The examples, run as programs against a real daemon (TOKEND_BIN): `cargo test` builds
//! them next to the test binaries (target/debug/examples).

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use support::{state_of, Daemon, Provider, REDIRECT_URI};
use tokend_client::ImportTokens;

fn example(name: &str) -> PathBuf {
    // target/debug/deps/examples-HASH -> target/debug/examples/NAME
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is not built (cargo test builds the examples)", path.display());
    path
}

fn run(d: &Daemon, name: &str, args: &[&str]) -> Output {
    Command::new(example(name)).args(args).env("TOKEND_SOCKET", d.socket_path()).env_remove("TOKEND_HOME").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

#[test]
fn the_token_example_prints_the_token_or_the_daemon_s_error() {
    let p = Provider::start();
    let d = Daemon::start();
    d.add_account("work", &p);

    // No grant yet: the daemon's message, exit 3 (a login is needed).
    let out = run(&d, "token", &["work"]);
    let expected = d.client().token("work").unwrap_err().to_string();
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(3), expected));
    assert!(out.stdout.is_empty());

    p.grant("rt-1");
    let tokens = ImportTokens { refresh_token: Some("rt-1".into()), ..Default::default() };
    d.client().import_tokens("work", &tokens).unwrap();
    let out = run(&d, "token", &["work"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), d.client().token("work").unwrap().access_token);

    let out = run(&d, "token", &["nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));

    // Nothing listening: says so, and how to start it.
    let out = Command::new(example("token")).arg("work").env("TOKEND_SOCKET", d.home.join("nowhere.sock")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("tokend is not running"), "{}", text(&out.stderr));
}

#[test]
fn the_tauri_commands_sign_in_call_the_api_through_the_proxy_and_sign_out() {
    let p = Provider::start();
    let d = Daemon::start();
    d.add_account("work", &p);
    let json = |out: Output| -> Value { serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", text(&out.stderr))) };

    let status = json(run(&d, "tauri_commands", &["work", "status"]));
    assert_eq!((status["signed_in"].clone(), status["status"].clone()), (Value::Bool(false), Value::from("no_grant")));
    let err = json(run(&d, "tauri_commands", &["work", "api", "/me"]));
    assert_eq!(err["code"], "reauth_required");

    let pending = json(run(&d, "tauri_commands", &["work", "login"]));
    let url = pending["url"].as_str().unwrap().to_string();
    p.code("code-t");
    let done = json(run(&d, "tauri_commands", &["work", "complete", &format!("{}?code=code-t&state={}", REDIRECT_URI, state_of(&url))]));
    assert_eq!(done["signed_in"], Value::Bool(true));

    // The API answers the daemon's token; the webview sees the answer, never the token.
    let out = run(&d, "tauri_commands", &["work", "api", "/me"]);
    let me = text(&out.stdout);
    assert_eq!(serde_json::from_str::<Value>(&me).unwrap(), serde_json::json!({"name": "Ada", "bearer": true}));
    assert!(!me.contains("at-"), "no token in what the webview gets: {}", me);

    assert_eq!(run(&d, "tauri_commands", &["work", "logout"]).status.code(), Some(0));
    assert_eq!(json(run(&d, "tauri_commands", &["work", "status"]))["signed_in"], Value::Bool(false));
}
