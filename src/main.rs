//! `posthorn`: the command line. `serve` runs the API and the dispatcher in one process;
//! `migrate` applies the database migrations. All the work is in the library crates under
//! `crates/`; this binary reads the configuration and wires them together.

mod config;
mod serve;

use anyhow::Context;
use clap::{Parser, Subcommand};

use config::{database_url, DatabaseArgs, ServeArgs};

/// Every request, event and attempt allocates short-lived buffers from several threads at once;
/// glibc's allocator spent ~15 % of the server's CPU on them (docs/benchmarks.md).
/// Built without transparent huge pages (feature `no_thp`): with them, every burst of new memory
/// (a cold fan-out opening a thousand connections) faulted in and zeroed 2 MiB at a time, and the
/// resident set was half as large again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "posthorn", version, about = "Webhook dispatch service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the dispatcher and ingest in one process
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit
    Migrate(DatabaseArgs),
    /// Print the OpenAPI document of the HTTP API (what GET /openapi.json serves)
    Openapi,
    /// Print the generated admin token (a lost one), or replace it with --rotate
    AdminToken(AdminTokenArgs),
    /// Compile and render templates for a server, in a process of their own (started by it)
    #[command(hide = true, name = "template-worker")]
    TemplateWorker,
}

#[derive(Debug, clap::Args)]
struct AdminTokenArgs {
    #[command(flatten)]
    db: DatabaseArgs,
    /// The database's master key [default: the key file beside the SQLite file, or in ./posthorn-data]
    #[arg(long, env = "POSTHORN_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// Replace the token with a new one (running servers take it at their next start)
    #[arg(long)]
    rotate: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::TemplateWorker = cli.command {
        // No runtime, no threads: a small process that a hostile template may take down.
        return posthorn_dispatch::sandbox::run_worker().context("template worker");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve(args) => {
            let config = config::Config::resolve(*args)?;
            runtime.block_on(serve::serve(config))
        }
        Command::AdminToken(args) => {
            let url = database_url(&args.db)?;
            runtime.block_on(serve::admin_token_command(
                &url,
                args.master_key.as_deref(),
                args.rotate,
            ))
        }
        Command::TemplateWorker => Ok(()),
        Command::Openapi => {
            let doc = serde_json::to_string_pretty(&posthorn_api::openapi_document())?;
            println!("{doc}");
            Ok(())
        }
        Command::Migrate(args) => {
            let url = database_url(&args)?;
            runtime.block_on(serve::migrate(&url))
        }
    }
}
