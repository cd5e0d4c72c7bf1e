//! `posthorn`: the command line. `serve` runs the API and the dispatcher in one process;
//! `migrate` applies the database migrations; the client commands (`publish`, `subscriptions`,
//! `deliveries`, …, in `cli/`) speak the API of a running server, and `listen` and `verify` check
//! signed webhooks. All the work is in the library crates under `crates/`; this binary reads the
//! configuration and wires them together.

mod cli;
mod config;
mod serve;
mod supervise;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

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

/// The client commands: the server's URL and the caller's token (flags or `POSTHORN_URL`,
/// `POSTHORN_TOKEN`), `--json` for scripts.
#[derive(Debug, clap::Args)]
struct ClientCommand<T: clap::Subcommand> {
    #[command(flatten)]
    remote: cli::Remote,
    #[command(subcommand)]
    command: T,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the dispatcher and ingest in one process
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit
    Migrate(DatabaseArgs),
    /// Print the OpenAPI document of the HTTP API (what GET /openapi.json serves, less the names
    /// and config schemas of the configured delivery services)
    Openapi,
    /// Print the generated admin token (a lost one), or replace it with --rotate
    AdminToken(AdminTokenArgs),
    /// Publish an event, or a file of them
    Publish {
        #[command(flatten)]
        remote: cli::Remote,
        #[command(flatten)]
        args: cli::publish::PublishArgs,
    },
    /// Manage subscriptions
    Subscriptions(Box<ClientCommand<cli::resources::Subscriptions>>),
    /// Read delivery logs, retry deliveries
    Deliveries(ClientCommand<cli::resources::Deliveries>),
    /// Queue a subscription's dead deliveries again
    Recover {
        #[command(flatten)]
        remote: cli::Remote,
        /// The subscription
        subscription: String,
        /// Dead deliveries created since then are queued again: a time (RFC 3339) or how long
        /// ago (`30m`, `2h`, `7d`)
        #[arg(long, default_value = "30d")]
        since: String,
        /// Return once they are queued, without following them
        #[arg(long)]
        no_wait: bool,
    },
    /// Manage event types (names, descriptions, schemas)
    EventTypes(ClientCommand<cli::resources::EventTypes>),
    /// Manage applications (OAuth2 clients; admin)
    Applications(ClientCommand<cli::resources::Applications>),
    /// Follow a poll subscription's feed: print each event as it comes, and acknowledge it
    Feed {
        #[command(flatten)]
        remote: cli::Remote,
        #[command(flatten)]
        args: cli::feed::FeedArgs,
    },
    /// A local receiver: verifies each webhook's signature, prints it, optionally forwards it
    Listen(cli::listen::ListenArgs),
    /// Verify the signature of a saved request
    Verify(cli::listen::VerifyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
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
    /// Replace the token with a new one (running servers take it within about a second, and
    /// refuse the old one and its dashboard sessions)
    #[arg(long)]
    rotate: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::TemplateWorker => {
            // No runtime, no threads: a small process that a hostile template may take down.
            posthorn_dispatch::sandbox::run_worker().context("template worker")?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "posthorn",
                &mut std::io::stdout(),
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Verify(args) => return Ok(cli::listen::verify(args).into()),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let exit = |e: cli::Exit| Ok(ExitCode::from(e));
    match cli.command {
        Command::Publish { remote, args } => {
            exit(runtime.block_on(cli::publish::publish(&remote, args)))
        }
        Command::Subscriptions(c) => {
            exit(runtime.block_on(cli::resources::subscriptions(&c.remote, c.command)))
        }
        Command::Deliveries(c) => {
            exit(runtime.block_on(cli::resources::deliveries(&c.remote, c.command)))
        }
        Command::Recover {
            remote,
            subscription,
            since,
            no_wait,
        } => exit(runtime.block_on(cli::resources::recover(
            &remote,
            &subscription,
            &since,
            !no_wait,
        ))),
        Command::EventTypes(c) => {
            exit(runtime.block_on(cli::resources::event_types(&c.remote, c.command)))
        }
        Command::Applications(c) => {
            exit(runtime.block_on(cli::resources::applications(&c.remote, c.command)))
        }
        Command::Listen(args) => exit(runtime.block_on(cli::listen::listen(args))),
        Command::Feed { remote, args } => exit(runtime.block_on(cli::feed::feed(&remote, args))),
        Command::Verify(_) | Command::Completions { .. } | Command::TemplateWorker => {
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let config = config::Config::resolve(*args)?;
            let served = runtime.block_on(serve::serve(config));
            // Stopped: a blocking task still running (a template render, a file write) does not
            // hold the exit up for long.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            served?;
            Ok(ExitCode::SUCCESS)
        }
        Command::AdminToken(args) => {
            let url = database_url(&args.db)?;
            runtime.block_on(serve::admin_token_command(
                &url,
                args.master_key.as_deref(),
                args.rotate,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            let doc = serde_json::to_string_pretty(&posthorn_api::openapi_document())?;
            println!("{doc}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(args) => {
            let url = database_url(&args)?;
            runtime.block_on(serve::migrate(&url))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
