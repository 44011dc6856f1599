//! Waiting for an interactive login to end. The daemon announces the end of every login on
//! its event stream (`login.succeeded`, `login.failed`), so the wait subscribes first and
//! asks for the login only when an event says it changed; without a stream it polls. Either
//! way the answer is the login as `GET /v1/logins/:id` shows it, never the event alone.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::error::Error;
use crate::events::{EventsCloser, EventsOptions};
use crate::types::LoginView;

/// How often to ask when there is no event stream.
const POLL: Duration = Duration::from_secs(1);
/// With a stream, look anyway this often: an event could be lost.
const SAFETY_CHECK: Duration = Duration::from_secs(30);

/// Stops the event thread when the wait ends, however it ends.
struct StopEvents(Option<EventsCloser>);

impl Drop for StopEvents {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.close();
        }
    }
}

pub(crate) fn wait_for_login(client: &Client, id: &str, timeout: Option<Duration>) -> Result<LoginView, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let (tx, rx) = mpsc::channel::<()>();
    // Subscribed before the first look: an end after that look is seen as an event.
    let stop = match client.events_with(EventsOptions { last_event_id: None, reconnect: false }) {
        Ok(events) => {
            let closer = events.closer();
            let wanted = id.to_string();
            std::thread::spawn(move || {
                for ev in events {
                    let ends = match &ev {
                        Ok(ev) => {
                            matches!(ev.kind.as_str(), "login.succeeded" | "login.failed") && ev.str_field("login_id") == Some(&wanted)
                        }
                        Err(_) => false,
                    };
                    if ends && tx.send(()).is_err() {
                        return;
                    }
                }
                // The stream ended: dropping `tx` tells the waiter to poll.
            });
            StopEvents(Some(closer))
        }
        Err(_) => {
            drop(tx);
            StopEvents(None)
        }
    };
    let mut alive_until: Option<Instant> = None;
    loop {
        if let Some(outcome) = judge(client.get_login(id), &mut alive_until) {
            return outcome;
        }
        let now = Instant::now();
        if let Some(err) = timed_out(id, deadline, now) {
            return Err(err);
        }
        let pause = if stop.0.is_some() { SAFETY_CHECK } else { POLL };
        let pause = deadline.map_or(pause, |d| pause.min(d.saturating_duration_since(now)));
        match rx.recv_timeout(pause) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(pause.min(POLL)),
        }
    }
}

/// What one look at the login says: `Some` when the wait is over (the login `active`, or
/// ended otherwise, or an error that is not a daemon restarting), `None` to wait on.
/// `alive_until`: the login's expiry, once seen; until then a daemon restarting is waited out.
pub(crate) fn judge(look: Result<LoginView, Error>, alive_until: &mut Option<Instant>) -> Option<Result<LoginView, Error>> {
    match look {
        Ok(login) if login.status == "active" => Some(Ok(login)),
        Ok(login) if login.status != "pending" => Some(Err(Error::LoginFailed(Box::new(login)))),
        Ok(login) => {
            if alive_until.is_none() {
                // Past its expiry (with a second's grace) the daemon has ended it.
                let left = seconds_until(&login.expires_at).unwrap_or(600);
                *alive_until = Some(Instant::now() + Duration::from_secs(left + 1));
            }
            None
        }
        // A daemon restarting is not the end of a login with time left: it survives the restart.
        Err(Error::NotRunning { .. }) | Err(Error::Io(_)) if alive_until.map_or(false, |t| Instant::now() < t) => None,
        Err(e) => Some(Err(e)),
    }
}

/// The caller's own limit passed: the error to give up with.
pub(crate) fn timed_out(id: &str, deadline: Option<Instant>, now: Instant) -> Option<Error> {
    if deadline.map_or(true, |d| now < d) {
        return None;
    }
    let msg = format!("login {} is still pending (it goes on in the daemon)", id);
    Some(Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, msg)))
}

/// Whole seconds from now until an ISO 8601 UTC time (`2026-12-07T16:00:00.000Z`), 0 when
/// past; `None` when it is not one. The daemon writes its times so (JavaScript's toISOString).
pub(crate) fn seconds_until(iso: &str) -> Option<u64> {
    let b = iso.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| iso.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let then = days * 86400 + hh * 3600 + mm * 60 + ss;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some((then - now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::seconds_until;

    #[test]
    fn iso_times_convert() {
        assert_eq!(seconds_until("1970-01-01T00:00:00.000Z"), Some(0));
        let in_a_while = seconds_until("2400-03-01T00:00:00Z").unwrap();
        assert!(in_a_while > 365 * 86400 * 300);
        assert_eq!(seconds_until("yesterday"), None);
    }
}
