//! The random batches both stores are given.

use super::*;

// ---------------------------------------------------------------- workload

/// Mixed case, an underscore, a non-ASCII name: byte order differs from
/// most collations' order, and both stores must page in byte order.
pub(super) const USERS: [&str; 5] = ["alice", "Bob", "_z", "a", "\u{fc}ber"];
pub(super) const START: Millis = 1_764_000_000_000;

pub(super) fn key_hash(i: usize) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0] = i as u8;
    h[31] = 0xa5;
    h
}

/// A little deterministic generator (no dependency on proptest's RNG).
pub(super) struct Gen {
    pub(super) rng: u64,
    pub(super) now: Millis,
    pub(super) wallets: BTreeMap<String, Wallet>,
    /// Open holds: user, hold id, request id, provider, model.
    pub(super) open: Vec<(String, u64, String, String)>,
    pub(super) next: u64,
}

impl Gen {
    pub(super) fn roll(&mut self, n: u64) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.rng >> 33) % n.max(1)
    }

    pub(super) fn snapshot(&self, user: &str) -> WriteOp {
        WriteOp::PutWallet {
            user_id: user.into(),
            bytes: serde_json::to_vec(&self.wallets[user]).unwrap(),
        }
    }

    pub(super) fn record(
        &mut self,
        user: &str,
        id: &str,
        provider: &str,
        cost: Credits,
        ok: bool,
    ) -> RequestRecord {
        let latency = self.roll(5_000);
        RequestRecord {
            id: id.into(),
            user_id: user.into(),
            model: "m".into(),
            modality: Modality::Text,
            provider: provider.into(),
            status: if ok {
                RequestStatus::Succeeded
            } else {
                RequestStatus::Failed
            },
            // U+0000 in text a user controls: every store must keep it.
            prompt_preview: format!("prompt {id}\0"),
            response: ok.then(|| format!("answer to {id}\u{0}")),
            usage: Usage {
                input_tokens: self.roll(1000),
                output_tokens: self.roll(1000),
                ..Usage::default()
            },
            quote: cost,
            cost,
            shortfall: Credits::ZERO,
            error: (!ok).then(|| "upstream said no".to_string()),
            route: "cheapest".into(),
            created_at: self.now,
            latency_ms: latency,
            attempts: Vec::new(),
            usage_anomaly: false,
            member: None,
            cached: false,
            experiment: None,
            key_id: None,
        }
    }

    /// One random operation's writes.
    pub(super) fn op(&mut self, out: &mut Vec<WriteOp>) {
        // Mostly small steps, sometimes the same millisecond, sometimes a day.
        self.now += match self.roll(20) {
            0 => 0,
            1 => 86_400_000,
            _ => self.roll(200_000) as Millis,
        };
        let user = USERS[self.roll(USERS.len() as u64) as usize].to_string();
        let now = self.now;
        match self.roll(12) {
            0..=4 => {
                let id = format!("r{:05}", self.next);
                self.next += 1;
                let provider = format!("p{}", self.roll(3));
                let amount = Credits(1_000 + self.roll(100_000) as i64);
                let w = self.wallets.get_mut(&user).unwrap();
                let (hold, entry) = w.hold(&id, &provider, amount, now).unwrap();
                out.push(WriteOp::PutHold(Box::new(OpenHold {
                    hold: hold.clone(),
                    model: "m".into(),
                    modality: Modality::Text,
                    prompt_preview: format!("prompt \0{id}"),
                })));
                out.push(WriteOp::AppendEntry(entry));
                out.push(self.snapshot(&user));
                self.open.push((user, hold.id, id, provider));
            }
            5..=8 if !self.open.is_empty() => {
                let i = self.roll(self.open.len() as u64) as usize;
                let (user, hold_id, id, provider) = self.open.swap_remove(i);
                let ok = self.roll(6) != 0;
                let cost = if ok {
                    let held = self.wallets[&user].holds[&hold_id].amount;
                    let cost = Credits(self.roll(held.0 as u64 + 500) as i64);
                    let w = self.wallets.get_mut(&user).unwrap();
                    let s = w.settle(hold_id, cost, now).unwrap();
                    out.extend(s.entries.into_iter().map(WriteOp::AppendEntry));
                    s.charged
                } else {
                    let w = self.wallets.get_mut(&user).unwrap();
                    let e = w.release(hold_id, Some("failed"), now).unwrap();
                    out.push(WriteOp::AppendEntry(e));
                    Credits::ZERO
                };
                out.push(WriteOp::DeleteHold {
                    user_id: user.clone(),
                    id: hold_id,
                });
                let r = self.record(&user, &id, &provider, cost, ok);
                out.push(WriteOp::PutRequest(Box::new(r)));
                out.push(self.snapshot(&user));
            }
            9 => {
                let w = self.wallets.get_mut(&user).unwrap();
                let e = w.top_up(Credits(5_000_000), Some("more"), now).unwrap();
                out.push(WriteOp::AppendEntry(e));
                out.push(self.snapshot(&user));
            }
            10 => {
                let key = format!("k{}", self.roll(40));
                out.push(WriteOp::PutIdempotency {
                    user_id: user,
                    key,
                    record: Box::new(IdempotencyRecord {
                        body_hash: [self.roll(256) as u8; 32],
                        result: None,
                        answer: Some(format!("answer at {now}")),
                        at: now,
                    }),
                });
            }
            _ => match self.roll(4) {
                0 => out.push(WriteOp::PurgeIdempotency {
                    before: now - 3_600_000,
                    limit: 2,
                }),
                1 => out.push(WriteOp::DeleteKey {
                    hash: key_hash(self.roll(USERS.len() as u64) as usize),
                }),
                2 => out.push(WriteOp::PutBudget {
                    user_id: user,
                    budget: BudgetConfig {
                        daily: Some(Credits(self.roll(1_000_000) as i64)),
                        ..BudgetConfig::default()
                    },
                }),
                _ => {
                    // A request stored with no hold of ours, in the same
                    // millisecond as the previous one.
                    let id = format!("x{:05}", self.next);
                    self.next += 1;
                    let r = self.record(&user, &id, "p9", Credits(7), true);
                    out.push(WriteOp::PutRequest(Box::new(r)));
                }
            },
        }
    }
}

/// A deterministic run of batches over every kind of write: setup, then
/// `n` random operations in batches of random sizes (a hold may open and
/// close within one batch, a wallet be written several times in one).
pub(super) fn workload(seed: u64, n: usize) -> Vec<Vec<WriteOp>> {
    let mut g = Gen {
        rng: seed,
        now: START,
        wallets: BTreeMap::new(),
        open: Vec::new(),
        next: 0,
    };
    let mut setup = Vec::new();
    for (i, u) in USERS.iter().enumerate() {
        setup.push(WriteOp::PutUser(User {
            id: u.to_string(),
            name: format!("user {u}\0"),
            email: format!("{i}@example.com"),
            role: if i == 0 { Role::Admin } else { Role::Member },
            created_at: START,
            strategy: None,
        }));
        setup.push(WriteOp::PutKey {
            hash: key_hash(i),
            record: ApiKeyRecord {
                user_id: u.to_string(),
                role: if i == 0 { Role::Admin } else { Role::Member },
                prefix: format!("of_{i}"),
                created_at: START,
                team: None,
                scope: Default::default(),
            },
        });
        let mut w = Wallet::new(*u);
        let e = w.top_up(Credits(1_000_000_000), None, START).unwrap();
        setup.push(WriteOp::AppendEntry(e));
        g.wallets.insert(u.to_string(), w);
        setup.push(g.snapshot(u));
    }
    setup.push(WriteOp::PutProvider {
        name: "p0".into(),
        config: serde_json::json!({"name": "p0", "price": 1.25, "big": 12345678901234567890u64}),
    });
    let mut batches = vec![setup];
    let mut done = 0;
    while done < n {
        let size = 1 + g.roll(12) as usize;
        let mut b = Vec::new();
        for _ in 0..size {
            g.op(&mut b);
        }
        done += size;
        batches.push(b);
    }
    batches
}
