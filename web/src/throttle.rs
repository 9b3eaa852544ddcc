//! Failed authentication, counted per client address: past the limit in a
//! minute, that address is answered 429 without its key being looked at,
//! so guessing keys costs the guesser, not the store.
//!
//! With Redis (`[coordination]`) the nodes also count together: a failure
//! that brings the shared count over the limit blocks the address here too.
//!
//! The address is the connection's peer. Behind a reverse proxy every
//! client shares the proxy's address; such a deployment throttles at the
//! proxy (forwarded headers are not trusted here: a client writes them).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Addresses tracked at once. Past it, expired windows are dropped; if the
/// map is still full, a new address goes uncounted until room frees up
/// (refusing everyone instead would let many addresses lock all out).
const MAX_TRACKED: usize = 100_000;

const WINDOW: Duration = Duration::from_secs(60);

/// Failures per address in the current window.
pub struct AuthThrottle {
    per_minute: u32,
    seen: DashMap<IpAddr, (Instant, u32)>,
    /// When the full map was last swept: at most once a second, so a flood
    /// from many addresses does not buy a walk of the whole map each.
    swept: std::sync::Mutex<Option<Instant>>,
}

impl AuthThrottle {
    pub fn new(per_minute: u32) -> AuthThrottle {
        AuthThrottle {
            per_minute,
            seen: DashMap::new(),
            swept: std::sync::Mutex::new(None),
        }
    }

    /// `Err(seconds)` while `ip` is over its failures: the time left in its
    /// window.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(e) = self.seen.get(&ip) else {
            return Ok(());
        };
        let (start, n) = *e;
        let elapsed = start.elapsed();
        if n >= self.per_minute && elapsed < WINDOW {
            return Err((WINDOW - elapsed).as_secs().max(1));
        }
        Ok(())
    }

    /// Refuses `ip` for the rest of its window: the nodes together counted
    /// it over the limit (see `auth.rs`).
    pub fn block(&self, ip: IpAddr) {
        self.failed(ip);
        if let Some(mut e) = self.seen.get_mut(&ip) {
            e.1 = e.1.max(self.per_minute);
        }
    }

    /// Counts one failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        if self.seen.len() >= MAX_TRACKED && !self.seen.contains_key(&ip) {
            let due = self.swept.lock().is_ok_and(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    *last = Some(Instant::now());
                }
                due
            });
            if due {
                self.seen.retain(|_, (start, _)| start.elapsed() < WINDOW);
            }
            if self.seen.len() >= MAX_TRACKED {
                return;
            }
        }
        let mut e = self.seen.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_and_others_are_not() {
        let t = AuthThrottle::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check(a).is_ok());
            t.failed(a);
        }
        let wait = t.check(a).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(t.check(b).is_ok());
    }
}
