//! Connections to PostgreSQL: a bounded pool of `tokio_postgres` clients
//! whose connections run on a thread of their own.
//!
//! The connections live on their own small runtime, not on an HTTP worker's:
//! actix stops its workers one by one at shutdown, and a connection driven
//! by a stopped worker would hang every query sent through it. A client is
//! only a handle to its connection (a channel), so it is awaited from any
//! thread; [`Pg::block`] runs a query for the synchronous [`Store`] reads.
//!
//! [`Store`]: crate::store::Store

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};

use crate::store::StoreError;

/// How long a new connection may take before the attempt is an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the pool is told to connect to and how.
#[derive(Clone, Debug)]
pub struct PgSettings {
    pub url: String,
    /// Every table lives in this schema (made when missing); `None` is the
    /// server's default (`public`).
    pub schema: Option<String>,
    pub pool_size: usize,
    pub statement_timeout_ms: u64,
}

struct Inner {
    config: tokio_postgres::Config,
    /// Run on every new connection before its first use.
    setup: String,
    rt: tokio::runtime::Handle,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
    /// Dropped with the pool: ends the connections' thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A pool of connections. Cheap to clone.
#[derive(Clone)]
pub struct Pg {
    inner: Arc<Inner>,
}

/// A connection taken from the pool; it goes back when dropped, unless it
/// broke.
pub struct Conn {
    client: Option<Client>,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Only `drop` takes it out.
        self.client.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(c);
                }
            }
        }
    }
}

/// Any driver failure is a backend failure to the layers above.
pub fn pg_err(e: tokio_postgres::Error) -> StoreError {
    // The driver's own text for a server error is only "db error": the
    // server's message and code are what an operator needs.
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "postgres: {} ({}){}",
            db.message(),
            db.code().code(),
            db.detail().map(|d| format!(": {d}")).unwrap_or_default()
        )),
        None => StoreError::Backend(format!("postgres: {e}")),
    }
}

impl Pg {
    /// Starts the connections' thread and opens a first connection, so a
    /// wrong URL or a server that is down fails the start.
    pub fn connect(s: &PgSettings) -> Result<Pg, StoreError> {
        let config: tokio_postgres::Config = s
            .url
            .parse()
            .map_err(|e| StoreError::Backend(format!("storage.url: {e}")))?;
        let mut setup = format!("SET statement_timeout = {};", s.statement_timeout_ms);
        if let Some(schema) = &s.schema {
            // A plain identifier (checked with the configuration).
            setup.push_str(&format!("SET search_path TO {schema};"));
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (rt_tx, rt_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("oneflow-postgres".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = rt_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = rt_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the postgres thread: {e}")))?;
        let rt = rt_rx
            .recv()
            .map_err(|_| StoreError::Backend("the postgres thread did not start".into()))?
            .map_err(StoreError::Backend)?;
        let pg = Pg {
            inner: Arc::new(Inner {
                config,
                setup,
                rt,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(s.pool_size.max(1))),
                _stop: stop,
            }),
        };
        let first = pg.clone();
        let schema = s.schema.clone();
        pg.block(async move {
            let c = first.get().await?;
            if let Some(schema) = schema {
                c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .await
                    .map_err(pg_err)?;
            }
            Ok::<_, StoreError>(())
        })??;
        Ok(pg)
    }

    /// A connection: an idle one, or a new one while the pool has room;
    /// otherwise waits for one to come back.
    pub async fn get(&self) -> Result<Conn, StoreError> {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let idle = self.inner.idle.lock().ok().and_then(|mut i| i.pop());
        let client = match idle {
            Some(c) => c,
            None => self.open().await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self.inner.clone(),
            _permit: permit,
        })
    }

    async fn open(&self) -> Result<Client, StoreError> {
        let inner = self.inner.clone();
        let made = self.inner.rt.spawn(async move {
            let (client, connection) =
                tokio::time::timeout(CONNECT_TIMEOUT, inner.config.connect(NoTls))
                    .await
                    .map_err(|_| StoreError::Backend("postgres: connecting timed out".into()))?
                    .map_err(pg_err)?;
            tokio::spawn(async move {
                // Ends when the client is dropped or the server goes away;
                // the client then reports itself closed.
                let _ = connection.await;
            });
            client.batch_execute(&inner.setup).await.map_err(pg_err)?;
            Ok::<_, StoreError>(client)
        });
        made.await
            .map_err(|e| StoreError::Backend(format!("postgres connect task: {e}")))?
    }

    /// Runs `fut` in the background on the connections' thread, which
    /// outlives the HTTP workers (the node's lease is renewed there).
    pub fn spawn(
        &self,
        fut: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.inner.rt.spawn(fut)
    }

    /// A connection of its own, outside the pool, for what must not wait
    /// behind the pool's users (the node's lease).
    pub async fn dedicated(&self) -> Result<Client, StoreError> {
        self.open().await
    }

    /// Runs `fut` on the connections' thread and waits for it: how the
    /// synchronous store methods query. Never call it from that thread.
    pub fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StoreError::Backend("the postgres thread stopped".into()))
    }
}
