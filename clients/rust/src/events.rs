//! `GET /v1/events` (Server-Sent Events, docs/api.md "Events") as an iterator: the
//! subscription stands once [`Client::events`](crate::Client::events) returns (the daemon's
//! `ready` came); a stream that breaks is opened again with the last id seen as
//! `Last-Event-ID`, and the iterator yields `reconnected`, then the missed events or `resync`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::client::{read_all, Client, SendBody, Stream};
use crate::error::{api_error, Error};

/// One event of the daemon (`data` is its JSON object, which repeats `id` and `type`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// `RUN-SEQ` (absent only on the client's own `reconnected`).
    pub id: Option<String>,
    /// The event's type: `login.succeeded`, `token.refreshed`, `account.removed`, `resync`, …,
    /// and `reconnected` (this crate's: the stream was cut and stands again).
    pub kind: String,
    pub data: Value,
}

impl Event {
    /// The account it is about (every event but `resync` and `reconnected` has one).
    pub fn account(&self) -> Option<&str> {
        self.data.get("account").and_then(Value::as_str)
    }

    /// A string field of the event (`login_id`, `reason`, `error`, …).
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.data.get(name).and_then(Value::as_str)
    }
}

/// Options of [`Client::events_with`](crate::Client::events_with).
#[derive(Clone, Debug)]
pub struct EventsOptions {
    /// Resume after this event id: the daemon first sends what was missed (or `resync`).
    pub last_event_id: Option<String>,
    /// Open the stream again when it breaks, 1 s later, then up to 30 s apart (default true).
    /// False: the iterator ends with the stream (an error when it broke).
    pub reconnect: bool,
}

impl Default for EventsOptions {
    fn default() -> EventsOptions {
        EventsOptions { last_event_id: None, reconnect: true }
    }
}

/// Server-Sent Events parsing (WHATWG HTML, "Event stream interpretation"), line by line.
#[derive(Default)]
pub(crate) struct SseParser {
    kind: String,
    id: Option<String>,
    data: String,
    has_data: bool,
}

/// One message as it came: type, id and data text.
pub(crate) struct RawEvent {
    pub kind: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseParser {
    /// Takes one line (without its line end); a blank line dispatches the message.
    pub(crate) fn line(&mut self, line: &str) -> Option<RawEvent> {
        if line.is_empty() {
            let kind = std::mem::take(&mut self.kind);
            let id = self.id.take();
            let data = std::mem::take(&mut self.data);
            if !std::mem::replace(&mut self.has_data, false) {
                return None;
            }
            return Some(RawEvent { kind: if kind.is_empty() { "message".into() } else { kind }, id, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.kind = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// A message as an [`Event`]; its data must be JSON.
pub(crate) fn to_event(raw: RawEvent) -> Result<Event, Error> {
    let data: Value =
        serde_json::from_str(&raw.data).map_err(|e| Error::Protocol(format!("an event's data is not JSON ({}): {}", raw.kind, e)))?;
    let id = raw.id.or_else(|| data.get("id").and_then(Value::as_str).map(String::from));
    Ok(Event { id, kind: raw.kind, data })
}

pub(crate) fn reconnected_event(last_event_id: Option<&str>) -> Event {
    Event { id: None, kind: "reconnected".into(), data: serde_json::json!({ "type": "reconnected", "last_event_id": last_event_id }) }
}

const RECONNECT_FIRST: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
const MAX_ERROR_ANSWER: u64 = 64 * 1024;
const MAX_EVENT_LINE: u64 = 4 * 1024 * 1024;

struct Conn {
    reader: BufReader<Stream>,
    parser: SseParser,
    line: Vec<u8>,
}

/// Stops an [`Events`] iterator from another thread: its blocked `next()` returns `None`.
#[derive(Clone)]
pub struct EventsCloser {
    closed: Arc<AtomicBool>,
    stream: Arc<Mutex<Option<UnixStream>>>,
}

impl EventsCloser {
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(s) = self.stream.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The daemon's events, as an iterator of `Result<Event, Error>`.
pub struct Events {
    client: Client,
    reconnect: bool,
    conn: Option<Conn>,
    pending: VecDeque<Event>,
    last_id: Option<String>,
    closer: EventsCloser,
}

impl Events {
    pub(crate) fn open(client: Client, options: EventsOptions) -> Result<Events, Error> {
        let closer = EventsCloser { closed: Arc::new(AtomicBool::new(false)), stream: Arc::new(Mutex::new(None)) };
        let mut events =
            Events { client, reconnect: options.reconnect, conn: None, pending: VecDeque::new(), last_id: options.last_event_id, closer };
        events.subscribe()?;
        Ok(events)
    }

    /// The id of the last event seen (or of `ready`): what a later [`EventsOptions::last_event_id`] resumes from.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// A handle that ends this iterator from another thread.
    pub fn closer(&self) -> EventsCloser {
        self.closer.clone()
    }

    /// Opens the stream and reads up to `ready`; what came before it (missed events, `resync`) is queued.
    fn subscribe(&mut self) -> Result<(), Error> {
        let mut headers = vec![("Accept".to_string(), "text/event-stream".to_string())];
        if let Some(id) = &self.last_id {
            headers.push(("Last-Event-ID".to_string(), id.clone()));
        }
        let (head, body) = self.client.send("GET", "/v1/events", &headers, SendBody::None, self.client.call_timeout())?;
        if !(200..300).contains(&head.status) {
            let answer = read_all(body, MAX_ERROR_ANSWER)?;
            return Err(api_error(head.status, head.header("retry-after"), &answer));
        }
        let stream = body.get_ref().get_ref();
        *self.closer.stream.lock().unwrap_or_else(|p| p.into_inner()) = stream.try_clone().ok();
        let mut conn = Conn { reader: BufReader::new(body), parser: SseParser::default(), line: Vec::new() };
        loop {
            match read_event(&mut conn)? {
                None => return Err(Error::Protocol("the event stream ended before `ready`".into())),
                Some(ev) => {
                    if ev.id.is_some() {
                        self.last_id = ev.id.clone();
                    }
                    if ev.kind == "ready" {
                        break;
                    }
                    self.pending.push_back(ev);
                }
            }
        }
        // From here on the stream may be quiet for as long as nothing happens.
        conn.reader.get_ref().get_ref().get_ref().set_read_timeout(None)?;
        self.conn = Some(conn);
        Ok(())
    }

    fn closed(&self) -> bool {
        self.closer.closed.load(Ordering::SeqCst)
    }

    /// Subscribes again until it works (or the iterator is closed); queues `reconnected`.
    fn resubscribe(&mut self) -> bool {
        let mut delay = RECONNECT_FIRST;
        let seen = self.last_id.clone();
        loop {
            let mut waited = Duration::ZERO;
            while waited < delay {
                if self.closed() {
                    return false;
                }
                let step = Duration::from_millis(100);
                std::thread::sleep(step);
                waited += step;
            }
            let missed = self.pending.len();
            if self.subscribe().is_ok() {
                self.pending.insert(missed, reconnected_event(seen.as_deref()));
                return true;
            }
            delay = (delay * 2).min(RECONNECT_MAX);
        }
    }
}

fn read_event(conn: &mut Conn) -> Result<Option<Event>, Error> {
    loop {
        let n = (&mut conn.reader).take(MAX_EVENT_LINE).read_until(b'\n', &mut conn.line)?;
        if n == 0 || !conn.line.ends_with(b"\n") {
            return Ok(None); // the stream ended (a partial line is dropped with it)
        }
        let text = String::from_utf8_lossy(&conn.line).into_owned();
        conn.line.clear();
        if let Some(raw) = conn.parser.line(text.trim_end_matches(&['\r', '\n'][..])) {
            return to_event(raw).map(Some);
        }
    }
}

impl Iterator for Events {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if self.closed() {
                return None;
            }
            let conn = self.conn.as_mut()?;
            let outcome = read_event(conn);
            match outcome {
                Ok(Some(ev)) => {
                    if ev.id.is_some() {
                        self.last_id = ev.id.clone();
                    }
                    if ev.kind != "ready" {
                        return Some(Ok(ev));
                    }
                }
                Ok(None) | Err(_) if self.closed() => return None,
                Ok(None) | Err(_) if self.reconnect => {
                    self.conn = None;
                    if !self.resubscribe() {
                        return None;
                    }
                }
                Ok(None) => {
                    self.conn = None;
                    return None;
                }
                Err(e) => {
                    self.conn = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<RawEvent> {
        let mut p = SseParser::default();
        text.split('\n').filter_map(|l| p.line(l.trim_end_matches('\r'))).collect()
    }

    #[test]
    fn messages_carry_type_id_and_joined_data() {
        let got = parse(": hi\r\nevent: ready\nid: r-1\ndata: {\"id\":\"r-1\",\ndata: \"at\":\"x\"}\n\nid: r-2\ndata:{}\n\n");
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].kind.as_str(), got[0].id.as_deref()), ("ready", Some("r-1")));
        assert_eq!(got[0].data, "{\"id\":\"r-1\",\n\"at\":\"x\"}");
        assert_eq!((got[1].kind.as_str(), got[1].data.as_str()), ("message", "{}"));
        let ev = to_event(got.into_iter().next().unwrap()).unwrap();
        assert_eq!(ev.data["at"], "x");
    }

    #[test]
    fn a_message_without_data_is_not_dispatched() {
        assert!(parse("event: x\nid: 1\n\n").is_empty());
    }
}
