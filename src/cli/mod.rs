//! The client commands of `posthorn`: they speak the HTTP API of a running server through
//! `posthorn_client` (in the server's own wire types, `posthorn_wire`), print tables for people
//! and JSON for scripts (`--json`), and exit with a code a script can branch on ([`Exit`]). `listen` and `verify`
//! are the receiving side: they check Standard Webhooks signatures with `core::signing::verify`.

pub mod feed;
pub mod listen;
pub mod publish;
pub mod resources;

use std::process::ExitCode;

use clap::Args;
use comfy_table::{presets, ContentArrangement, Table};
use posthorn_client::{Client, Error};
use serde::Serialize;

/// Where the server is and who is asking; shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The server's base URL
    #[arg(
        long,
        env = "POSTHORN_URL",
        default_value = "http://127.0.0.1:8525",
        global = true
    )]
    pub url: String,
    /// Bearer token: the admin token, or an application's access token
    #[arg(long, env = "POSTHORN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the server's JSON instead of a table (for scripts)
    #[arg(long, global = true)]
    pub json: bool,
}

impl Remote {
    pub fn client(&self) -> Client {
        Client::new(&self.url, self.token.clone())
    }
}

/// Exit codes, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The server refused the request (400, 409, 413, 422), a local input was wrong, or a
    /// signature did not verify.
    Refused = 1,
    // 2 is clap's: the command line itself is wrong.
    /// No server answered at the URL.
    Unreachable = 3,
    /// 401 or 403: no token, a wrong one, or a scope missing.
    Denied = 4,
    /// 404: no such object (or one the caller may not see).
    NotFound = 5,
    /// The server failed (5xx) or answered what the API does not document.
    ServerError = 6,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Prints an error as the problem+json's title, detail and field messages, and says which exit
/// code it is.
pub fn report(e: &Error) -> Exit {
    match e {
        Error::Api(p) => {
            eprintln!("error: {} ({}): {}", p.title, p.status, p.detail);
            for f in &p.errors {
                if f.field.is_empty() {
                    eprintln!("  - {}", f.message);
                } else {
                    eprintln!("  - {}: {}", f.field, f.message);
                }
            }
            if p.status == 401 {
                eprintln!(
                    "hint: give the admin token (`posthorn admin-token` prints it, where the server's \
                     database is) or an application's access token, as POSTHORN_TOKEN or --token"
                );
            }
            match p.status {
                401 | 403 => Exit::Denied,
                404 => Exit::NotFound,
                s if s >= 500 => Exit::ServerError,
                _ => Exit::Refused,
            }
        }
        Error::Unreachable { .. } => {
            // reqwest's own message repeats the URL; the cause (refused, timed out, no such
            // name) is further down its chain.
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e).and_then(|s| s.source());
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            eprintln!("error: {msg}");
            Exit::Unreachable
        }
        Error::Protocol { .. } => {
            eprintln!("error: {e}");
            Exit::ServerError
        }
    }
}

/// A local mistake (a file that cannot be read, JSON that does not parse).
pub fn refuse(msg: impl std::fmt::Display) -> Exit {
    eprintln!("error: {msg}");
    Exit::Refused
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print the answer: {e}"),
    }
}

/// A table with a header row, as people read it.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    t
}

/// Reads a JSON argument: inline, or `@PATH` for a file's content (`@-` for standard input).
pub fn json_arg(arg: &str, what: &str) -> Result<serde_json::Value, Exit> {
    let text = text_arg(arg, what)?;
    serde_json::from_str(&text).map_err(|e| refuse(format!("{what} is not JSON: {e}")))
}

/// Reads an argument: inline, or `@PATH` for a file's content (`@-` for standard input).
pub fn text_arg(arg: &str, what: &str) -> Result<String, Exit> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| refuse(format!("{what}: cannot read standard input: {e}")))?;
            Ok(s)
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| refuse(format!("{what}: cannot read {path}: {e}"))),
        None => Ok(arg.to_owned()),
    }
}

/// Short for tables: the first `n` characters, with an ellipsis when cut.
pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
