//! The `oneflow` command line besides `serve`: a client of a running broker
//! over HTTP. Tables for people, `--json` for scripts (the API's body,
//! byte for byte), a spinner while a request runs, and `oneflow shell`.

pub mod backup;
pub mod client;
pub mod render;
pub mod shell;
pub mod table;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use client::{Answer, CliError, Client};

/// Where the broker is and who is asking; global, so they may come before
/// or after the subcommand.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The broker's base URL.
    #[arg(
        long,
        global = true,
        env = "ONEFLOW_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The API key to send (an admin key for `user`, `credits`).
    #[arg(long, global = true, env = "ONEFLOW_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print the API's JSON answers instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create and list users (admin).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Create, list and revoke API keys.
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// Top up a user's wallet (admin).
    Credits {
        #[command(subcommand)]
        cmd: CreditsCmd,
    },
    /// Send an AI request and wait for the answer.
    Request(RequestArgs),
    /// Past requests (or, with --transactions, the ledger), newest first.
    History(HistoryArgs),
    /// Totals and per-provider figures.
    Analytics(ForUser),
    /// Balance, holds and provider health.
    Status(ForUser),
    /// Download a consistent copy of the running broker's redb file
    /// (admin), check that its ledger balances, and save it as FILE.
    Backup {
        /// Where to save it; must not exist.
        file: std::path::PathBuf,
    },
    /// Whether the broker answers: exit 0 if `/health` does, 1 if not. No
    /// key needed (the container image's health check).
    Health,
    /// An interactive session (reads commands from stdin when it is not a
    /// terminal).
    Shell,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user; prints their first API key once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// Opening balance in credits, e.g. 10 or 2.5.
        #[arg(long)]
        initial_balance: Option<String>,
    },
    /// List every user.
    List,
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Make a new key (for yourself, or, as admin, for --user); the secret
    /// is printed once.
    Create {
        #[arg(long)]
        user: Option<String>,
    },
    /// List keys (ids and prefixes only; secrets are never stored).
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum CreditsCmd {
    /// Add credits to a user's wallet.
    Add {
        user: String,
        /// Credits, e.g. 10 or 0.000001.
        amount: String,
        #[arg(long)]
        note: Option<String>,
    },
}

/// A modality, to pick its default model when `--model` is not given.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ModalityArg {
    Text,
    Image,
    Audio,
    Video,
}

impl ModalityArg {
    /// The name the default configuration gives each modality's provider.
    fn default_model(self) -> &'static str {
        match self {
            ModalityArg::Text => "gpt",
            ModalityArg::Image => "image",
            ModalityArg::Audio => "audio",
            ModalityArg::Video => "video",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RequestArgs {
    /// The prompt; several words are joined with spaces.
    #[arg(required_unless_present = "prompt")]
    pub words: Vec<String>,
    /// The prompt, as one argument.
    #[arg(long, conflicts_with = "words")]
    pub prompt: Option<String>,
    /// A model or provider name; the broker infers the modality from it.
    #[arg(long)]
    pub model: Option<String>,
    /// Without --model: use this modality's default model.
    #[arg(long, value_enum, default_value = "text")]
    pub modality: ModalityArg,
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Image size, e.g. 1024x1024.
    #[arg(long)]
    pub size: Option<String>,
    /// Number of images.
    #[arg(long)]
    pub n: Option<u32>,
    /// Audio or video length.
    #[arg(long)]
    pub seconds: Option<u32>,
    /// Only this provider may serve it.
    #[arg(long)]
    pub provider: Option<String>,
    /// us, eu or ru.
    #[arg(long)]
    pub region: Option<String>,
    /// cost, latency, quality or balanced.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Only providers quoting at most this many credits.
    #[arg(long)]
    pub max_price: Option<String>,
    /// Sent as `Idempotency-Key`: a repeat is answered, not charged, again.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Rows per page (1 to 1000).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Continue from a previous page's cursor.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Show the ledger instead of requests.
    #[arg(long)]
    pub transactions: bool,
    /// Admin: another user's history.
    #[arg(long)]
    pub user: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct ForUser {
    /// Admin: another user (analytics: all users when absent).
    #[arg(long)]
    pub user: Option<String>,
}

/// A client and how to show its answers.
pub struct Session {
    pub client: Client,
    pub json: bool,
}

/// Percent-encodes a query or path value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A credits figure as typed: a JSON number with the same decimal text when
/// it is one (never through f64), else the text, for the broker to reject
/// with its own message.
fn credits(s: &str) -> Value {
    match serde_json::from_str::<Value>(s.trim()) {
        Ok(n @ Value::Number(_)) => n,
        _ => Value::String(s.to_string()),
    }
}

fn user_query(user: Option<&str>) -> String {
    user.map(|u| format!("?user_id={}", enc(u)))
        .unwrap_or_default()
}

impl RequestArgs {
    /// The body of `POST /api/request`.
    pub fn body(&self) -> Value {
        let prompt = self.prompt.clone().unwrap_or_else(|| self.words.join(" "));
        let model = self
            .model
            .clone()
            .unwrap_or_else(|| self.modality.default_model().to_string());
        let mut b = Map::new();
        b.insert("model".into(), json!(model));
        b.insert("prompt".into(), json!(prompt));
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                b.insert(k.into(), v);
            }
        };
        put("max_tokens", self.max_tokens.map(Value::from));
        put("size", self.size.clone().map(Value::from));
        put("n", self.n.map(Value::from));
        put("seconds", self.seconds.map(Value::from));
        put("provider", self.provider.clone().map(Value::from));
        put("region", self.region.clone().map(Value::from));
        put("strategy", self.strategy.clone().map(Value::from));
        put("max_price", self.max_price.as_deref().map(credits));
        Value::Object(b)
    }
}

impl Session {
    /// `--json`: the body as sent; otherwise the rendering.
    fn show(&self, a: Answer, render: fn(&Value) -> String) -> String {
        if self.json {
            let mut t = a.text;
            t.push('\n');
            t
        } else {
            render(&a.value)
        }
    }

    pub fn request(&self, r: &RequestArgs) -> Result<String, CliError> {
        let a = self
            .client
            .request(&r.body(), r.idempotency_key.as_deref())?;
        Ok(self.show(a, render::request))
    }

    pub fn history(&self, h: &HistoryArgs) -> Result<String, CliError> {
        let what = if h.transactions {
            "transactions"
        } else {
            "requests"
        };
        let mut path = format!("/api/history/{what}?limit={}", h.limit);
        if let Some(c) = &h.cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        if let Some(u) = &h.user {
            path.push_str(&format!("&user_id={}", enc(u)));
        }
        let a = self.client.get(&path)?;
        Ok(self.show(
            a,
            if h.transactions {
                render::transactions
            } else {
                render::requests
            },
        ))
    }

    pub fn analytics(&self, u: &ForUser) -> Result<String, CliError> {
        let a = self
            .client
            .get(&format!("/api/analytics{}", user_query(u.user.as_deref())))?;
        Ok(self.show(a, render::analytics))
    }

    pub fn status(&self, u: &ForUser) -> Result<String, CliError> {
        let a = self
            .client
            .get(&format!("/api/status{}", user_query(u.user.as_deref())))?;
        Ok(self.show(a, render::status))
    }

    pub fn add_credits(
        &self,
        user: &str,
        amount: &str,
        note: Option<&str>,
    ) -> Result<String, CliError> {
        let mut body = json!({"user_id": user, "amount": credits(amount)});
        if let Some(n) = note {
            body["note"] = json!(n);
        }
        let a = self.client.post("/api/credits/add", &body)?;
        Ok(self.show(a, render::credits_added))
    }

    fn run(&self, cmd: ClientCommand) -> Result<String, CliError> {
        match cmd {
            ClientCommand::User { cmd } => match cmd {
                UserCmd::Create {
                    name,
                    email,
                    initial_balance,
                } => {
                    let mut body = json!({"name": name, "email": email});
                    if let Some(b) = initial_balance {
                        body["initial_balance"] = credits(&b);
                    }
                    let a = self.client.post("/api/users", &body)?;
                    Ok(self.show(a, render::user_created))
                }
                UserCmd::List => Ok(self.show(self.client.get("/api/users")?, render::users)),
            },
            ClientCommand::Key { cmd } => match cmd {
                KeyCmd::Create { user } => {
                    let body = match user {
                        Some(u) => json!({"user_id": u}),
                        None => json!({}),
                    };
                    let a = self.client.post("/api/keys", &body)?;
                    Ok(self.show(a, render::key_created))
                }
                KeyCmd::List { user } => {
                    let a = self
                        .client
                        .get(&format!("/api/keys{}", user_query(user.as_deref())))?;
                    Ok(self.show(a, render::keys))
                }
                KeyCmd::Revoke { id } => {
                    let a = self.client.delete(&format!("/api/keys/{}", enc(&id)))?;
                    Ok(self.show(a, render::key_revoked))
                }
            },
            ClientCommand::Credits {
                cmd: CreditsCmd::Add { user, amount, note },
            } => self.add_credits(&user, &amount, note.as_deref()),
            ClientCommand::Request(r) => self.request(&r),
            ClientCommand::History(h) => self.history(&h),
            ClientCommand::Analytics(u) => self.analytics(&u),
            ClientCommand::Status(u) => self.status(&u),
            ClientCommand::Backup { file } => backup::run(&self.client, &file),
            ClientCommand::Health => {
                let a = self.client.health()?;
                Ok(if self.json {
                    a.text + "\n"
                } else {
                    "ok\n".into()
                })
            }
            // `run` starts the shell before coming here: it answers with
            // an exit status, not a text.
            ClientCommand::Shell => Err(CliError::Usage(
                "`shell` cannot run inside another command".into(),
            )),
        }
    }
}

/// Prints to stdout, ignoring a closed pipe (`oneflow history | head`).
pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

/// Prints an error to stderr; with `--json`, the broker's error body (if
/// any) also goes to stdout for scripts.
pub fn report(e: &CliError, json: bool) {
    if json {
        if let CliError::Api { body, .. } = e {
            if !body.is_empty() {
                out(&format!("{body}\n"));
            }
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "oneflow: error: {e}");
}

/// Runs one client subcommand; the exit status says whether it worked.
pub fn run(conn: &Conn, cmd: ClientCommand) -> ExitCode {
    let session = match Client::new(&conn.url, conn.key.clone()) {
        Ok(client) => Session {
            client,
            json: conn.json,
        },
        Err(e) => {
            report(&e, false);
            return ExitCode::from(e.exit_code());
        }
    };
    if let ClientCommand::Shell = cmd {
        return shell::run(&session);
    }
    match session.run(cmd) {
        Ok(text) => {
            out(&text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&e, conn.json);
            ExitCode::from(e.exit_code())
        }
    }
}
