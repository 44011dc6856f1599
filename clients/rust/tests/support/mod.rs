//! What the tests run against: a real tokend daemon, started from `TOKEND_BIN` (the path of
//! the repository's bin/tokend, or an installed `tokend`) in a temporary TOKEND_HOME, and a
//! small OAuth provider with an API behind it, served here on 127.0.0.1 (plain http to a
//! loopback host is what the daemon allows). The provider speaks RFC 6749: a token endpoint
//! (refresh_token and authorization_code grants), a revocation endpoint (RFC 7009), and an
//! API that shows what it received.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokend_client::{Client, WriteFlags};

/// The redirect URI of the test app's browser logins (a private-use scheme, RFC 8252 §7.1).
pub const REDIRECT_URI: &str = "com.example.app:/oauth2redirect";

#[derive(Default)]
pub struct ProviderState {
    /// Refresh tokens the provider honours.
    pub refresh_tokens: HashSet<String>,
    /// Authorization codes it will exchange once.
    pub codes: HashSet<String>,
    /// Every access token it issued, in order.
    pub issued: Vec<String>,
    pub refresh_grants: usize,
    pub revoked: Vec<String>,
    /// Answer the token endpoint with 503 (an outage).
    pub down: bool,
}

pub struct Provider {
    pub base: String,
    pub state: Arc<Mutex<ProviderState>>,
}

impl Provider {
    pub fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProviderState::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let conn = match conn {
                    Ok(c) => c,
                    Err(_) => continue,
                };
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &state);
                });
            }
        });
        Provider { base, state }
    }

    /// A refresh token the provider will honour.
    pub fn grant(&self, refresh_token: &str) {
        self.state.lock().unwrap().refresh_tokens.insert(refresh_token.to_string());
    }

    pub fn code(&self, code: &str) {
        self.state.lock().unwrap().codes.insert(code.to_string());
    }

    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    /// The account config of an OAuth 2.0 account at this provider.
    pub fn account_config(&self) -> Value {
        json!({
            "driver": "oauth2",
            "token_endpoint": format!("{}/token", self.base),
            "authorization_endpoint": format!("{}/authorize", self.base),
            "revocation_endpoint": format!("{}/revoke", self.base),
            "client_id": "app",
            "client_secret": "app-secret",
            "scopes": ["api"],
            "flow": "browser",
            "redirect_uri": REDIRECT_URI,
            "api_base": format!("{}/api", self.base),
        })
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut req = Request { method, path, headers, body: Vec::new() };
    if req.header("transfer-encoding").map_or(false, |v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                while r.read_line(&mut end)? > 0 && !end.trim_end().is_empty() {
                    end.clear();
                }
                break;
            }
            let start = req.body.len();
            req.body.resize(start + n, 0);
            r.read_exact(&mut req.body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = req.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        req.body.resize(n, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

fn respond(w: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\n", status, body.len());
    for (n, v) in headers {
        head.push_str(&format!("{}: {}\r\n", n, v));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%2F", "/").replace("%3A", ":").replace('+', " ")))
        .collect()
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn serve(conn: TcpStream, state: &Mutex<ProviderState>) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r)? {
        let json_type = [("Content-Type", "application/json".to_string())];
        let path = req.path.split('?').next().unwrap_or("").to_string();
        if path == "/token" {
            let f = form(&req.body);
            let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
            let mut s = state.lock().unwrap();
            if s.down {
                respond(&mut w, 503, &[("Retry-After", "30".into())], b"down")?;
                continue;
            }
            let (ok, refresh) = match get("grant_type").as_str() {
                "refresh_token" => {
                    s.refresh_grants += 1;
                    let rt = get("refresh_token");
                    (s.refresh_tokens.contains(&rt), rt)
                }
                "authorization_code" => (s.codes.remove(&get("code")), "rt-from-login".to_string()),
                _ => (false, String::new()),
            };
            if !ok {
                respond(&mut w, 400, &json_type, br#"{"error":"invalid_grant","error_description":"unknown grant"}"#)?;
                continue;
            }
            s.refresh_tokens.insert(refresh.clone());
            let at = format!("at-{}", SEQ.fetch_add(1, Ordering::SeqCst));
            s.issued.push(at.clone());
            let body = json!({"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": refresh, "scope": "api"});
            respond(&mut w, 200, &json_type, body.to_string().as_bytes())?;
        } else if path == "/revoke" {
            let f = form(&req.body);
            if let Some((_, t)) = f.iter().find(|(n, _)| n == "token") {
                let mut s = state.lock().unwrap();
                s.refresh_tokens.remove(t);
                s.revoked.push(t.clone());
            }
            respond(&mut w, 200, &[], b"")?;
        } else if path == "/api/stream" {
            // A chunked answer, as a streaming API sends it.
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            for i in 0..100 {
                let line = format!("line {}\n", i);
                w.write_all(format!("{:x}\r\n{}\r\n", line.len(), line).as_bytes())?;
            }
            w.write_all(b"0\r\n\r\n")?;
        } else if path == "/api/me" {
            let me = json!({"name": "Ada", "bearer": req.header("authorization").map_or(false, |a| a.starts_with("Bearer at-"))});
            respond(&mut w, 200, &json_type, me.to_string().as_bytes())?;
        } else if path.starts_with("/api/") {
            // The API: what it received, and the body back.
            let sum: u64 = req.body.iter().map(|b| *b as u64).sum();
            let seen = json!({
                "method": req.method,
                "path": req.path,
                "authorization": req.header("authorization"),
                "x_app": req.header("x-app"),
                "body_len": req.body.len(),
                "body_sum": sum,
            });
            let status = if path == "/api/missing" { 404 } else { 200 };
            respond(&mut w, status, &[("X-Seen", seen.to_string())], &req.body)?;
        } else {
            respond(&mut w, 404, &[], b"no such endpoint")?;
        }
    }
    Ok(())
}

static HOMES: AtomicUsize = AtomicUsize::new(0);

/// A real daemon under a temporary TOKEND_HOME.
pub struct Daemon {
    pub home: PathBuf,
    pub socket: PathBuf,
    child: Option<Child>,
}

/// The daemon's command: `TOKEND_BIN`, never a path relative to this crate.
pub fn tokend_bin() -> PathBuf {
    match std::env::var_os("TOKEND_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("set TOKEND_BIN to the tokend command (the repository's bin/tokend, built): these tests run a real daemon"),
    }
}

impl Daemon {
    pub fn start() -> Daemon {
        // Short: a Unix socket path has at most 107 bytes.
        let home = std::env::temp_dir().join(format!("tkr-{}-{}", std::process::id(), HOMES.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).unwrap();
        let socket = home.join("run").join("tokend.sock");
        let mut d = Daemon { home, socket, child: None };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.home.join("daemon.log")).unwrap();
        let child = Command::new(tokend_bin())
            .arg("daemon")
            .env("TOKEND_HOME", &self.home)
            .env("TOKEND_NO_AUTOSTART", "1")
            .env_remove("TOKEND_SOCKET")
            .env_remove("TOKEND_CONFIG_DIR")
            .env_remove("TOKEND_DATA_DIR")
            .env_remove("TOKEND_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {}", tokend_bin().display(), e));
        let pid = child.id() as i64;
        self.child = Some(child);
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(h) = client.health() {
                if h.pid == pid {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the daemon exited ({}) during start-up:\n{}", status, self.log());
            }
            if Instant::now() > deadline {
                panic!("the daemon did not answer /v1/health within 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// A client of this daemon, by its socket.
    pub fn client(&self) -> Client {
        Client::with_socket(&self.socket).user_agent("tokend-client-tests")
    }

    /// SIGKILL, then a new daemon on the same home.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Account `name` at `provider`, saved without contacting it.
    pub fn add_account(&self, name: &str, provider: &Provider) {
        self.client()
            .put_account(name, &provider.account_config(), WriteFlags { no_check: true, ..Default::default() })
            .unwrap_or_else(|e| panic!("adding {}: {}\n{}", name, e, self.log()));
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The `state` parameter of an authorization URL.
pub fn state_of(authorization_url: &str) -> String {
    let query = authorization_url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query.split('&').find_map(|kv| kv.strip_prefix("state=")).expect("the authorization URL has a state").to_string()
}
