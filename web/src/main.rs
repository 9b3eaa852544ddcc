//! The `oneflow` binary.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use oneflow_web::cli;
use oneflow_web::settings::{self, Overrides};
use oneflow_web::storage_cli::{self, Direction};

/// See the workspace Cargo.toml: glibc's malloc was a tenth of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "oneflow", version, about = "A self-hosted AI request broker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    conn: cli::Conn,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 (overrides config).
        #[arg(long)]
        bind: Option<String>,
        /// Directory of the data file (overrides config).
        #[arg(long)]
        data_dir: Option<String>,
        /// A TOML config file (default: ./oneflow.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Bring the PostgreSQL schema up to date (needs storage.backend =
    /// "postgres"); prints the versions applied.
    Migrate {
        /// A TOML config file (default: ./oneflow.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copy the redb file <data-dir>/oneflow.redb into the configured,
    /// empty PostgreSQL (storage.url, storage.schema), then check the copy.
    ExportStore {
        /// Directory of the redb file (overrides config).
        #[arg(long)]
        data_dir: Option<String>,
        /// A TOML config file (default: ./oneflow.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copy the configured PostgreSQL into a new redb file
    /// <data-dir>/oneflow.redb (made, or empty), then check the copy.
    ImportStore {
        /// Directory of the redb file (overrides config).
        #[arg(long)]
        data_dir: Option<String>,
        /// A TOML config file (default: ./oneflow.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Put a file made by `oneflow backup` in place of <data-dir>/oneflow.redb
    /// (the broker must be stopped); the file it replaces is kept beside it.
    Restore {
        /// The backup file.
        backup: PathBuf,
        /// Directory of the redb file (overrides config).
        #[arg(long)]
        data_dir: Option<String>,
        /// A TOML config file (default: ./oneflow.toml when present).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Client commands: talk to a running broker over HTTP.
    #[command(flatten)]
    Client(cli::ClientCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            bind,
            data_dir,
            config,
        } => serve(config, Overrides { bind, data_dir }),
        Command::Migrate { config } => storage_cli::run_migrate(config),
        Command::ExportStore { data_dir, config } => {
            storage_cli::run_transfer(config, data_dir, Direction::Export)
        }
        Command::ImportStore { data_dir, config } => {
            storage_cli::run_transfer(config, data_dir, Direction::Import)
        }
        Command::Restore {
            backup,
            data_dir,
            config,
        } => storage_cli::run_restore(config, data_dir, &backup),
        Command::Client(cmd) => cli::run(&cli.conn, cmd),
    }
}

fn serve(file: Option<PathBuf>, overrides: Overrides) -> std::process::ExitCode {
    let config = match settings::load(file.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oneflow: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if config.wallets.arbiters.is_some() {
        eprintln!(
            "oneflow: warning: wallets.arbiters is no longer used (wallets run on the caller's thread); remove it"
        );
    }
    let admin_key = std::env::var("ONEFLOW_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let started = oneflow_web::start(config, admin_key.as_deref())?;
        let mut out = std::io::stdout().lock();
        if let Some(k) = &started.admin_key {
            let _ = writeln!(
                out,
                "oneflow: created admin API key (shown once, keep it): {k}"
            );
        }
        let _ = writeln!(out, "oneflow listening on http://{}", started.addr);
        let _ = out.flush();
        drop(out);
        oneflow_web::run(started).await.map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oneflow: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
