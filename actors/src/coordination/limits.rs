//! Rate limits shared by every node: the generic cell rate algorithm
//! (GCRA), one stored time per limit, all the limits of one call checked
//! and charged in one script so that a call refused by one limit spends
//! none of the others.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{CoordError, Coordinator};

/// One rate limit: `rate` units per `period`, of which `burst` may go at
/// once (a bucket of `burst` that refills at the rate). Over any window of
/// length `w` at most `burst + rate * w / period` units pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Names the limit in its key, e.g. `rps`, `rpm`, `tpm`.
    pub name: &'static str,
    /// 0 means no limit.
    pub rate: u32,
    pub period: Duration,
    /// At least 1 is used.
    pub burst: u32,
}

/// Whether a call may go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// Nothing was charged; ask again after this long.
    RetryIn(Duration),
}

/// KEYS: one per limit, its theoretical arrival time (TAT) in µs of Redis
/// time. ARGV: per limit, the µs between two units, the burst, the cost.
/// Answers 0 (charged) or the µs to wait (nothing charged). A cost above
/// the burst is cut to the burst, or it could never pass; such a call goes
/// alone on a full bucket. A key lives until its bucket is full again:
/// then it says nothing a missing key would not.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local wait = 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[i * 3 - 2])
  local burst = tonumber(ARGV[i * 3 - 1])
  local cost = math.min(tonumber(ARGV[i * 3]), burst)
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0)
  if tat < now then tat = now end
  local next_tat = tat + cost * interval
  local allow_at = next_tat - burst * interval
  if allow_at - now > wait then wait = allow_at - now end
  tats[i] = next_tat
end
if wait > 0 then return math.ceil(wait) end
for i = 1, #KEYS do
  local ttl = math.max(1, math.ceil((tats[i] - now) / 1000))
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', ttl)
end
return 0
",
    )
});

impl Coordinator {
    /// Checks and charges, at once and for every node, each limit with its
    /// cost (1 for a request, the tokens for a token limit): all are
    /// charged or, if any says no, none.
    pub async fn admit(
        &self,
        provider: &str,
        limits: &[(Limit, u32)],
    ) -> Result<Admit, CoordError> {
        let mut inv = GCRA.prepare_invoke();
        let mut any = false;
        for (l, cost) in limits {
            if l.rate == 0 || *cost == 0 {
                continue;
            }
            any = true;
            let interval = l.period.as_secs_f64() * 1e6 / f64::from(l.rate);
            inv.key(self.inner.shared.key(&format!("rl:{provider}:{}", l.name)))
                .arg(interval)
                .arg(l.burst.max(1))
                .arg(*cost);
        }
        if !any {
            return Ok(Admit::Go);
        }
        let wait: u64 = self.eval(&inv).await?;
        Ok(match wait {
            0 => Admit::Go,
            us => Admit::RetryIn(Duration::from_micros(us)),
        })
    }
}
