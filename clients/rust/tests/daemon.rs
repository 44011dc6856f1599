//! The blocking client against a real daemon (TOKEND_BIN) and a provider served here.

mod support;

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};
use support::{state_of, Daemon, Provider, REDIRECT_URI};
use tokend_client::{Client, Error, ErrorCode, EventsOptions, ImportTokens, LoginOptions, TokenOptions, WriteFlags};

fn api(e: &Error) -> &tokend_client::ApiError {
    match e {
        Error::Api(a) => a,
        other => panic!("expected an API error, got {:?}", other),
    }
}

fn import(d: &Daemon, p: &Provider, account: &str, refresh_token: &str) {
    p.grant(refresh_token);
    let tokens = ImportTokens { refresh_token: Some(refresh_token.into()), ..Default::default() };
    let view = d.client().import_tokens(account, &tokens).unwrap_or_else(|e| panic!("import: {}\n{}", e, d.log()));
    assert_eq!(view.status, "active");
}

#[test]
fn serves_tokens_refreshes_rejects_and_logs_out() {
    let p = Provider::start();
    let d = Daemon::start();
    let c = d.client();
    d.add_account("work", &p);
    assert_eq!(c.info("work").unwrap().status, "no_grant");
    import(&d, &p, "work", "rt-1");

    let first = c.token("work").unwrap();
    assert_eq!((first.account.as_str(), first.token_type.as_str()), ("work", "Bearer"));
    assert!(p.issued().contains(&first.access_token), "the provider issued {}", first.access_token);
    assert!(first.expires_in.unwrap() > 60);
    assert_eq!(c.token_with("work", &TokenOptions { min_ttl: Some(10), ..Default::default() }).unwrap().access_token, first.access_token);

    let accounts = c.accounts().unwrap();
    assert_eq!(accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), vec!["work"]);
    assert!(c.accounts_labeled(&[("user", "nobody")]).unwrap().is_empty());

    let before = c.info("work").unwrap().generation;
    let refreshed = c.refresh("work", None).unwrap();
    assert_eq!(refreshed.generation, before + 1);
    let second = c.token("work").unwrap();
    assert_ne!(second.access_token, first.access_token);
    // With the token it saw refused, a refresh is answered with the newer one (the daemon
    // knows it holds a newer token; an older daemon refreshes anyway): either way a newer token.
    let again = c.refresh("work", Some(&first.access_token)).unwrap();
    assert!(again.generation >= refreshed.generation);
    if again.refreshed == Some(false) {
        // A daemon with the coalesced refresh: the token it held, no provider call.
        assert_eq!(again.access_token.as_deref(), Some(second.access_token.as_str()));
    }

    // A rejected token is dropped: the next one is new.
    let current = c.token("work").unwrap();
    assert!(c.reject("work", Some(&current.access_token)).unwrap().ok);
    assert_ne!(c.token("work").unwrap().access_token, current.access_token);

    let out = c.logout("work").unwrap();
    assert!(out.ok && out.revoked);
    assert!(p.state.lock().unwrap().revoked.contains(&"rt-1".to_string()));
    let err = c.token("work").unwrap_err();
    let a = api(&err);
    assert_eq!((a.code.clone(), a.status, a.account.as_deref()), (ErrorCode::ReauthRequired, 409, Some("work")));
    assert!(err.to_string().contains("tokend login work"), "{}", err);
    assert_eq!(c.info("work").unwrap().status, "no_grant");
    assert!(c.remove_account("work").unwrap().ok);
}

#[test]
fn errors_carry_the_api_code_status_and_retry_after() {
    let p = Provider::start();
    let d = Daemon::start();
    let c = d.client();
    d.add_account("work", &p);

    // Refused tokens: import_refused, and nothing changed.
    let refused = ImportTokens { refresh_token: Some("never-issued".into()), ..Default::default() };
    let err = c.import_tokens("work", &refused).unwrap_err();
    assert_eq!((api(&err).code.clone(), api(&err).status), (ErrorCode::ImportRefused, 400));
    assert!(!err.to_string().contains("never-issued"), "no token in a message: {}", err);
    assert_eq!(c.info("work").unwrap().status, "no_grant");

    let err = c.info("nope").unwrap_err();
    assert_eq!((api(&err).code.clone(), api(&err).status), (ErrorCode::NotFound, 404));
    let err = c.token("bad name!").unwrap_err();
    assert_eq!(api(&err).code, ErrorCode::InvalidRequest);

    // The provider down: upstream_unavailable, with when to try again.
    import(&d, &p, "work", "rt-1");
    p.state.lock().unwrap().down = true;
    let err = c.refresh("work", None).unwrap_err();
    assert_eq!((api(&err).code.clone(), api(&err).status), (ErrorCode::UpstreamUnavailable, 503), "{}", err);
    assert!(err.retry_after().is_some(), "retry_after: {:?}", err);
    assert!(err.is_retryable());
}

#[test]
fn a_daemon_that_is_not_running_is_said_so_with_how_to_start_it() {
    // A daemon killed (its socket file left behind, nobody listening), and no socket at all.
    // (A socket bound and closed by this process would do, but a daemon that another test
    // spawns meanwhile could hold it open until its exec, and answer the connection.)
    let mut d = Daemon::start();
    d.kill();
    assert!(d.socket.exists());
    for socket in [d.socket.clone(), d.home.join("missing.sock")] {
        let err = Client::with_socket(&socket).token("work").unwrap_err();
        assert!(matches!(err, Error::NotRunning { .. }), "{:?}", err);
        let msg = err.to_string();
        assert!(msg.contains("tokend is not running") && msg.contains("`tokend daemon`"), "{}", msg);
        assert!(msg.contains(&socket.display().to_string()), "{}", msg);
        assert!(err.is_retryable());
    }
}

#[test]
fn a_browser_login_is_completed_by_its_callback_url() {
    let p = Provider::start();
    let d = Daemon::start();
    let c = d.client();
    d.add_account("work", &p);
    let mut events = c.events().unwrap();

    let login = c.login("work", &LoginOptions { flow: Some("browser".into()), task: Some("t-1".into()), ttl_s: None }).unwrap();
    assert_eq!((login.status.as_str(), login.flow.as_str(), login.task.as_deref()), ("pending", "browser", Some("t-1")));
    let url = login.authorization_url.clone().expect("a browser login has an authorization URL");
    assert!(url.starts_with(&format!("{}/authorize?", p.base)), "{}", url);
    let err = c.token("work").unwrap_err();
    assert_eq!(api(&err).code, ErrorCode::LoginPending);
    assert_eq!(api(&err).login.as_ref().map(|l| l.id.clone()), Some(login.id.clone()));

    // The app waits in one thread; its deep-link handler hands over the redirect in another.
    let waiter = {
        let c = c.clone();
        let id = login.id.clone();
        std::thread::spawn(move || c.wait_for_login(&id, Some(Duration::from_secs(120))))
    };
    p.code("code-1");
    let done = c.complete_login(&format!("{}?code=code-1&state={}", REDIRECT_URI, state_of(&url))).unwrap();
    assert_eq!(done.status, "active");
    assert_eq!(waiter.join().unwrap().unwrap().status, "active");
    assert!(p.issued().contains(&c.token("work").unwrap().access_token));

    let kinds: Vec<String> = events.by_ref().map(|e| e.unwrap()).take_while(|e| e.kind != "login.succeeded").map(|e| e.kind).collect();
    assert!(kinds.contains(&"login.pending".to_string()), "{:?}", kinds);

    // A login the user refused: wait_for_login says so with the provider's code.
    c.logout("work").unwrap();
    let login = c.login("work", &LoginOptions::default()).unwrap();
    let url = login.authorization_url.clone().unwrap();
    let _ = c.complete_login(&format!("{}?error=access_denied&state={}", REDIRECT_URI, state_of(&url)));
    match c.wait_for_login(&login.id, Some(Duration::from_secs(60))).unwrap_err() {
        Error::LoginFailed(l) => assert_eq!(l.error.map(|e| e.code), Some("access_denied".to_string())),
        other => panic!("expected LoginFailed, got {:?}", other),
    }
    // An unknown state: login_not_found.
    let err = c.complete_login(&format!("{}?code=x&state=nobody", REDIRECT_URI)).unwrap_err();
    assert_eq!(api(&err).code, ErrorCode::LoginNotFound);
}

/// A reader of `n` bytes of a pattern, whose length the client does not know.
struct Pattern {
    left: usize,
    i: u8,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left).min(7000);
        for b in &mut buf[..n] {
            *b = self.i;
            self.i = self.i.wrapping_add(1);
        }
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn the_proxy_streams_bodies_both_ways_and_adds_the_token() {
    let p = Provider::start();
    let d = Daemon::start();
    let c = d.client();
    d.add_account("work", &p);
    import(&d, &p, "work", "rt-1");
    let token = c.token("work").unwrap().access_token;

    // 3 MiB of unknown length: chunked up, echoed back.
    let size = 3 * 1024 * 1024;
    let mut res = c
        .proxy("work", "post", "/upload?x=1")
        .header("X-App", "test")
        .header("Authorization", "Bearer the-app-must-not-choose")
        .send_reader(Pattern { left: size, i: 0 }, None)
        .unwrap();
    assert_eq!(res.status, 200);
    let seen: Value = serde_json::from_str(res.header("x-seen").unwrap()).unwrap();
    assert_eq!(seen["authorization"], json!(format!("Bearer {}", token)));
    assert_eq!(
        (seen["method"].clone(), seen["path"].clone(), seen["x_app"].clone()),
        (json!("POST"), json!("/api/upload?x=1"), json!("test"))
    );
    assert_eq!(seen["body_len"], json!(size));
    let mut back = Vec::new();
    res.read_to_end(&mut back).unwrap();
    let mut expected = Vec::new();
    Pattern { left: size, i: 0 }.read_to_end(&mut expected).unwrap();
    assert!(back == expected, "the body came back changed ({} bytes)", back.len());

    // A known length goes as Content-Length; a chunked answer is read as it streams.
    let res = c.proxy("work", "PUT", "echo").send_bytes(b"hello").unwrap();
    assert_eq!(res.text(1024).unwrap(), "hello");
    let streamed = c.proxy("work", "GET", "/stream").send().unwrap().text(1 << 20).unwrap();
    assert_eq!(streamed.lines().count(), 100);

    // The API's own 404 is an answer; the daemon's own refusal is an error.
    assert_eq!(c.proxy("work", "GET", "/missing").send().unwrap().status, 404);
    let err = c.proxy("nope", "GET", "/x").send().unwrap_err();
    assert_eq!(api(&err).code, ErrorCode::NotFound);
    let err = c.proxy("work", "GET", "/a/../../token").send().unwrap_err();
    assert_eq!(api(&err).code, ErrorCode::InvalidRequest, "{}", err);
}

#[test]
fn events_resume_from_the_last_id_and_survive_a_daemon_restart() {
    let p = Provider::start();
    let mut d = Daemon::start();
    let c = d.client();
    let mut events = c.events().unwrap();
    d.add_account("a", &p);
    let added = events.next().unwrap().unwrap();
    assert_eq!((added.kind.as_str(), added.account()), ("account.added", Some("a")));
    let seen = events.last_event_id().unwrap().to_string();
    drop(events);

    // Missed while no one listened: delivered first on resume.
    d.add_account("b", &p);
    let mut resumed = c.events_with(EventsOptions { last_event_id: Some(seen), reconnect: false }).unwrap();
    let missed = resumed.next().unwrap().unwrap();
    assert_eq!((missed.kind.as_str(), missed.account()), ("account.added", Some("b")));
    drop(resumed);

    // The daemon killed and started again: the iterator reconnects by itself and says so,
    // then `resync` (the new run cannot tell what was missed).
    let mut events = c.events().unwrap();
    let closer = events.closer();
    d.restart();
    let next = events.next().unwrap().unwrap();
    assert_eq!(next.kind, "reconnected");
    let next = events.next().unwrap().unwrap();
    assert_eq!((next.kind.as_str(), next.str_field("reason")), ("resync", Some("restart")));
    // close() from another thread ends the iterator.
    std::thread::spawn(move || closer.close());
    assert!(events.next().is_none());
}

#[test]
fn account_writes_take_the_flags() {
    let p = Provider::start();
    let d = Daemon::start();
    let c = d.client();
    let mut config = p.account_config();
    config["token_endpoint"] = json!("http://127.0.0.1:9/token");
    config["flow"] = json!("client-credentials");
    // Checked by default: the provider is not there.
    let err = c.put_account("cc", &config, WriteFlags::default()).unwrap_err();
    assert_eq!(api(&err).code, ErrorCode::UpstreamUnavailable, "{}", err);
    let view = c.put_account("cc", &config, WriteFlags { no_check: true, ..Default::default() }).unwrap();
    assert!(view.has_client_secret);
    assert_eq!(c.health().unwrap().accounts, 1);
}

#[test]
fn a_login_waited_for_survives_a_daemon_restart() {
    let p = Provider::start();
    let mut d = Daemon::start();
    let c = d.client();
    d.add_account("work", &p);
    let login = c.login("work", &LoginOptions::default()).unwrap();
    let waiter = {
        let c = c.clone();
        let id = login.id.clone();
        std::thread::spawn(move || c.wait_for_login(&id, Some(Duration::from_secs(180))))
    };
    // The waiter has looked once (it knows the login's expiry) before the daemon goes away.
    std::thread::sleep(Duration::from_millis(500));
    d.restart();
    // A pending login survives the restart: its redirect completes it on the new daemon.
    p.code("code-r");
    let url = login.authorization_url.clone().unwrap();
    let done = c.complete_login(&format!("{}?code=code-r&state={}", REDIRECT_URI, state_of(&url))).unwrap();
    assert_eq!(done.status, "active", "{}", d.log());
    let waited = waiter.join().unwrap().unwrap_or_else(|e| panic!("wait_for_login: {:?}", e));
    assert_eq!((waited.id, waited.status.as_str()), (login.id, "active"));
}

#[test]
fn a_socket_in_a_folder_others_can_write_is_not_talked_to() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tkr-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("tokend.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let secret = ImportTokens { refresh_token: Some("rt-secret".into()), ..Default::default() };
    let err = Client::with_socket(&socket).import_tokens("work", &secret).unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{:?}", err);
    assert!(err.to_string().contains("can be written by others") && !err.to_string().contains("rt-secret"), "{}", err);
    // Nothing connected, so nothing was sent.
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    std::fs::remove_dir_all(&dir).unwrap();
}
