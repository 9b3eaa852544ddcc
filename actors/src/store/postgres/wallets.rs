//! The statements that keep two nodes from spending the same money: a
//! wallet row is changed only under its row lock, in the same transaction
//! as the rows that record the change, and a node sends its changes in
//! batches (the shared wallets, `wallet/shared.rs`), one transaction for every change
//! ready meanwhile.
//!
//! Idempotency keys are claimed here too: one row per key, inserted by the
//! first node to see it, so a key sent to two nodes at once runs once.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::GenericClient;
use tokio_postgres::types::Json;

use oneflow::budget::BudgetConfig;
use oneflow::ledger::Wallet;
use oneflow::time::Millis;

use super::{PgStore, pg_err};
use crate::store::{IdempotencyRecord, OpenHold, StoreError, WriteOp};

/// Users whose wallet row a node remembers having seen, at most; past it
/// the memory starts again (the cost is one statement per batch).
const WALLET_ROWS_KEPT: usize = 100_000;

/// Told whether the batch a change was in committed.
pub type Answer = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;

/// One change to one user's wallet in a batch: given the wallet (`None`
/// if the user has none), it changes it and returns the rows that record
/// the change (`None` if it changed nothing: a refusal) and how to answer
/// once the batch ends.
pub type Change = Box<dyn FnOnce(Option<&mut Wallet>) -> (Option<Vec<WriteOp>>, Answer) + Send>;

/// What claiming an idempotency key found.
#[derive(Debug)]
pub enum Claim {
    /// The key is this node's to run.
    Won,
    /// Another request holds it and has not answered yet.
    Running,
    /// Its first answer.
    Answered(Box<IdempotencyRecord>),
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Puts each user's open holds and budget into their wallet: the wallet's
/// row keeps neither (as the redb snapshot does not), the `holds` and
/// `budgets` tables do.
async fn attach(
    c: &impl GenericClient,
    users: &[String],
    wallets: &mut HashMap<String, &mut Wallet>,
) -> Result<HashMap<(String, u64), OpenHold>, StoreError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&users];
    let holds = c.query(
        "SELECT user_id, data FROM holds WHERE user_id = ANY($1)",
        &params,
    );
    let budgets = c.query(
        "SELECT user_id, data FROM budgets WHERE user_id = ANY($1)",
        &params,
    );
    let (holds, budgets) = futures_util::future::try_join(holds, budgets)
        .await
        .map_err(pg_err)?;
    let mut open_holds = HashMap::with_capacity(holds.len());
    for row in holds {
        let Json(open): Json<OpenHold> = row.try_get(1).map_err(corrupt)?;
        if let Some(w) = wallets.get_mut(row.get::<_, &str>(0)) {
            w.holds.insert(open.hold.id, open.hold.clone());
        }
        open_holds.insert((open.hold.user_id.clone(), open.hold.id), open);
    }
    for row in budgets {
        let Json(b): Json<BudgetConfig> = row.try_get(1).map_err(corrupt)?;
        if let Some(w) = wallets.get_mut(row.get::<_, &str>(0)) {
            w.budget = b;
        }
    }
    Ok(open_holds)
}

impl PgStore {
    /// The user's wallet as it is now, with its open holds and budget;
    /// `None` if there is no such user (or they never had money moved).
    pub async fn load_wallet(&self, user_id: &str) -> Result<Option<Wallet>, StoreError> {
        let c = self.pg.get().await?;
        let users = [user_id.to_string()];
        let row = c
            .query_opt("SELECT state FROM wallets WHERE user_id = $1", &[&user_id])
            .await
            .map_err(pg_err)?;
        let mut w = match row {
            Some(row) => row.try_get::<_, Json<Wallet>>(0).map_err(corrupt)?.0,
            None => {
                let user = c
                    .query_opt("SELECT 1 FROM users WHERE id = $1", &[&user_id])
                    .await
                    .map_err(pg_err)?;
                if user.is_none() {
                    return Ok(None);
                }
                Wallet::new(user_id)
            }
        };
        let mut one = HashMap::from([(user_id.to_string(), &mut w)]);
        attach(&*c, &users, &mut one).await?;
        Ok(Some(w))
    }

    /// Applies a batch of wallet changes in one transaction: locks every
    /// wallet the batch touches (in user order, the same order on every
    /// node, so two nodes' batches never deadlock), runs each change on
    /// its wallet in the order given, writes the changed wallets and every
    /// row the changes made, commits, and only then answers each change.
    /// A change given no wallet (no such user) or that refuses writes
    /// nothing; the rest of the batch goes on without it.
    pub async fn commit_changes(
        &self,
        batch: Vec<(String, Change)>,
    ) -> Result<(), Arc<StoreError>> {
        let mut users: Vec<String> = batch.iter().map(|(u, _)| u.clone()).collect();
        users.sort();
        users.dedup();
        let result = self.commit_locked(&users, batch).await;
        let (answers, result) = match result {
            Ok(answers) => (answers, Ok(())),
            Err((answers, e)) => (answers, Err(Arc::new(e))),
        };
        for answer in answers {
            answer(result.clone());
        }
        result
    }

    async fn commit_locked(
        &self,
        users: &[String],
        batch: Vec<(String, Change)>,
    ) -> Result<Vec<Answer>, (Vec<Answer>, StoreError)> {
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut pending = batch.into_iter();
        let fail = |answers: Vec<Answer>, rest: std::vec::IntoIter<(String, Change)>, e| {
            // Changes never run are answered too: with the batch's error.
            let mut answers = answers;
            for (_, change) in rest {
                answers.push(change(None).1);
            }
            (answers, e)
        };
        if let Err(e) = self.make_missing(users).await {
            return Err(fail(answers, pending, e));
        }
        let mut c = match self.pg.get().await {
            Ok(c) => c,
            Err(e) => return Err(fail(answers, pending, e)),
        };
        let txn = match c.transaction().await {
            Ok(t) => t,
            Err(e) => return Err(fail(answers, pending, pg_err(e))),
        };
        let rows = txn
            .query(
                "SELECT user_id, state FROM wallets WHERE user_id = ANY($1)
                 ORDER BY user_id FOR UPDATE",
                &[&users],
            )
            .await;
        let rows = match rows {
            Ok(r) => r,
            Err(e) => return Err(fail(answers, pending, pg_err(e))),
        };
        let mut wallets: HashMap<String, (Wallet, bool)> = HashMap::with_capacity(rows.len());
        for row in rows {
            match row.try_get::<_, Json<Wallet>>(1) {
                Ok(Json(w)) => {
                    wallets.insert(row.get(0), (w, false));
                }
                Err(e) => return Err(fail(answers, pending, corrupt(e))),
            }
        }
        // Read under the wallets' locks: every node changes a user's holds
        // and budget only while holding that user's wallet row. A statement
        // of its own, after the lock: in READ COMMITTED a statement reads
        // from a snapshot taken when it starts, so folding this read into
        // the locking statement would read holds as they were before the
        // batch it waited for committed.
        let mut refs: HashMap<String, &mut Wallet> = wallets
            .iter_mut()
            .map(|(u, (w, _))| (u.clone(), w))
            .collect();
        let before = match attach(&txn, users, &mut refs).await {
            Ok(b) => b,
            Err(e) => return Err(fail(answers, pending, e)),
        };
        drop(refs);
        let mut ops = Vec::new();
        for (user, change) in pending.by_ref() {
            let slot = wallets.get_mut(&user);
            let (made, answer) = match slot {
                Some((w, changed)) => {
                    let (made, answer) = change(Some(w));
                    *changed |= made.is_some();
                    (made, answer)
                }
                None => change(None),
            };
            ops.extend(made.into_iter().flatten());
            answers.push(answer);
        }
        let (ids, states): (Vec<&str>, Vec<Json<&Wallet>>) = wallets
            .iter()
            .filter(|(_, (_, changed))| *changed)
            .map(|(u, (w, _))| (u.as_str(), Json(w)))
            .unzip();
        // A hold moved to another provider (a fallback) keeps its row, with
        // the hold as it now is.
        let moved: Vec<(String, i64, Json<OpenHold>)> = wallets
            .values()
            .flat_map(|(w, _)| w.holds.values())
            .filter_map(|h| {
                let old = before.get(&(h.user_id.clone(), h.id))?;
                (old.hold != *h).then(|| {
                    let mut open = old.clone();
                    open.hold = h.clone();
                    (h.user_id.clone(), h.id as i64, Json(open))
                })
            })
            .collect();
        let write = async {
            if !ids.is_empty() {
                txn.execute(
                    "UPDATE wallets SET state = v.state, version = wallets.version + 1
                     FROM unnest($1::text[], $2::json[]) AS v(user_id, state)
                     WHERE wallets.user_id = v.user_id",
                    &[&ids, &states],
                )
                .await
                .map_err(pg_err)?;
            }
            for (user, id, hold) in &moved {
                txn.execute(
                    "UPDATE holds SET data = $3 WHERE user_id = $1 AND hold_id = $2",
                    &[user, id, hold],
                )
                .await
                .map_err(pg_err)?;
            }
            if !ops.is_empty() {
                self.apply(&txn, ops).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(e) = write.await {
            return Err((answers, e));
        }
        drop((ids, states, moved));
        match txn.commit().await {
            Ok(()) => Ok(answers),
            Err(e) => Err((answers, pg_err(e))),
        }
    }

    /// Makes the wallet rows of users who have none yet (users with no
    /// row in `users` get none: their changes find no wallet). Another
    /// node may make one at the same moment: the first one wins. Users
    /// this node saw a row for are not asked about again.
    async fn make_missing(&self, users: &[String]) -> Result<(), StoreError> {
        let new: Vec<&String> = users
            .iter()
            .filter(|u| !self.wallet_rows.contains(u.as_str()))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let states: Vec<Json<Wallet>> = new.iter().map(|u| Json(Wallet::new(u.as_str()))).collect();
        let c = self.pg.get().await?;
        c.execute(
            "INSERT INTO wallets (user_id, version, state)
             SELECT v.user_id, 0, v.state FROM unnest($1::text[], $2::json[]) AS v(user_id, state)
             WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = v.user_id)
             ON CONFLICT (user_id) DO NOTHING",
            &[&new, &states],
        )
        .await
        .map_err(pg_err)?;
        // Only users that have a row now: one created later gets its row
        // then.
        let have = c
            .query(
                "SELECT user_id FROM wallets WHERE user_id = ANY($1)",
                &[&new],
            )
            .await
            .map_err(pg_err)?;
        if self.wallet_rows.len() > WALLET_ROWS_KEPT {
            self.wallet_rows.clear();
        }
        for row in have {
            self.wallet_rows.insert(row.get(0));
        }
        Ok(())
    }

    /// Claims `key` for this node, or says who has it. An answer older
    /// than `expired_before` no longer stands: its key is claimed anew.
    pub async fn claim_key(
        &self,
        user_id: &str,
        key: &str,
        now: Millis,
        expired_before: Millis,
    ) -> Result<Claim, StoreError> {
        // Twice at most: a row freed between the insert and the read is
        // claimed again once.
        for _ in 0..2 {
            if let Some(claim) = self.try_claim(user_id, key, now, expired_before).await? {
                return Ok(claim);
            }
        }
        Ok(Claim::Running)
    }

    async fn try_claim(
        &self,
        user_id: &str,
        key: &str,
        now: Millis,
        expired_before: Millis,
    ) -> Result<Option<Claim>, StoreError> {
        let key = &*super::pg_key(key);
        let c = self.pg.get().await?;
        let won = c
            .execute(
                "INSERT INTO idempotency (user_id, key, answered_at, node_id, record)
                 VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (user_id, key) DO NOTHING",
                &[&user_id, &key, &now, &self.node_id],
            )
            .await
            .map_err(pg_err)?;
        if won == 1 {
            return Ok(Some(Claim::Won));
        }
        let row = c
            .query_opt(
                "SELECT answered_at, record FROM idempotency WHERE user_id = $1 AND key = $2",
                &[&user_id, &key],
            )
            .await
            .map_err(pg_err)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let at: i64 = row.get(0);
        let record: Option<Json<IdempotencyRecord>> = row.try_get(1).map_err(corrupt)?;
        let claim = match record {
            None => Claim::Running,
            Some(Json(r)) if r.answered_at() >= expired_before => Claim::Answered(Box::new(r)),
            Some(_) => {
                let taken = c
                    .execute(
                        "UPDATE idempotency SET record = NULL, node_id = $4, answered_at = $5
                         WHERE user_id = $1 AND key = $2 AND answered_at = $3
                           AND record IS NOT NULL",
                        &[&user_id, &key, &at, &self.node_id, &now],
                    )
                    .await
                    .map_err(pg_err)?;
                if taken == 1 {
                    Claim::Won
                } else {
                    Claim::Running
                }
            }
        };
        Ok(Some(claim))
    }

    /// Frees a claim this node made whose request failed or never held
    /// money, so the key may be used again.
    pub async fn drop_claim(&self, user_id: &str, key: &str) -> Result<(), StoreError> {
        let key = &*super::pg_key(key);
        let c = self.pg.get().await?;
        c.execute(
            "DELETE FROM idempotency WHERE user_id = $1 AND key = $2
             AND record IS NULL AND node_id = $3",
            &[&user_id, &key, &self.node_id],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    /// The key's row now: `Ok(None)` if it is gone (its request failed).
    pub async fn key_state(&self, user_id: &str, key: &str) -> Result<Option<Claim>, StoreError> {
        let key = &*super::pg_key(key);
        let c = self.pg.get().await?;
        let row = c
            .query_opt(
                "SELECT record FROM idempotency WHERE user_id = $1 AND key = $2",
                &[&user_id, &key],
            )
            .await
            .map_err(pg_err)?;
        Ok(match row {
            None => None,
            Some(row) => match row
                .try_get::<_, Option<Json<IdempotencyRecord>>>(0)
                .map_err(corrupt)?
            {
                Some(Json(r)) => Some(Claim::Answered(Box::new(r))),
                None => Some(Claim::Running),
            },
        })
    }
}
