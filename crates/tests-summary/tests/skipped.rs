//! The last thing `cargo test` prints: how many of the integration tests (the root package's `it`
//! target) were skipped, and what to set to run them. Skipped tests are compiled as ignored with
//! their reason (see the root `build.rs`), so libtest reports each one; this adds the count and
//! the list of settings at the end, where a reader looks. It never fails: it only reports.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What each setting runs, and an example value (the services of README's "Run the tests").
const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "POSTHORN_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
        "the PostgreSQL half (every API, delivery and durability test on PostgreSQL, several processes)",
    ),
    (
        "POSTHORN_TEST_AMQP_URL",
        "'amqp://guest:guest@127.0.0.1:5672/%2f'",
        "the RabbitMQ tests (source, service, a real wazo bus)",
    ),
    (
        "POSTHORN_TEST_NATS_URL",
        "nats://127.0.0.1:4222",
        "the NATS and JetStream tests",
    ),
    (
        "POSTHORN_TEST_CHROMEDRIVER",
        "/usr/bin/chromedriver",
        "the dashboard's browser tests (headless Chromium)",
    ),
    (
        "POSTHORN_TEST_FAULTS",
        "1",
        "the fault tests (as root: a PostgreSQL cluster of their own, a full disk on a tmpfs)",
    ),
];

fn main() {
    let Some(it) = integration_binary() else {
        println!(
            "\nposthorn: the integration tests' binary was not found; no summary of skipped tests"
        );
        return;
    };
    let count = |ignored: bool| -> Option<usize> {
        let mut cmd = Command::new(&it);
        cmd.arg("--list");
        if ignored {
            cmd.arg("--ignored");
        }
        let out = cmd.output().ok().filter(|o| o.status.success())?;
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.ends_with(": test"))
                .count(),
        )
    };
    let (Some(total), Some(skipped)) = (count(false), count(true)) else {
        println!(
            "\nposthorn: the integration tests could not be listed; no summary of skipped tests"
        );
        return;
    };
    println!();
    if skipped == 0 {
        println!("posthorn: none of the {total} integration tests is skipped: every service they need is set.");
        return;
    }
    println!(
        "posthorn: {skipped} of {total} integration tests were SKIPPED (not run, not passed; each is \
         reported as ignored above with its reason)."
    );
    let unset: Vec<_> = SETTINGS
        .iter()
        .filter(|(var, _, _)| std::env::var(var).map_or(true, |v| v.is_empty()))
        .collect();
    if !unset.is_empty() {
        println!("To run them, start the services and set, then run `cargo test` again:");
        for (var, example, what) in unset {
            println!("  {var}={example}\n      {what}");
        }
    }
    for (program, arg, what) in [
        ("node", "--version", "the Node example receiver"),
        ("go", "version", "the Go example receiver"),
    ] {
        let runs = Command::new(program)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !runs {
            println!("  install {program} (on the PATH)\n      {what}");
        }
    }
}

/// The root package's `it` test binary beside this one (`target/<profile>/deps/it-<hash>`), the
/// newest if several builds left one.
fn integration_binary() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    let deps = me.parent()?;
    std::fs::read_dir(deps)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_it(p))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

fn is_it(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(hash) = name.strip_prefix("it-") else {
        return false;
    };
    hash.chars().all(|c| c.is_ascii_hexdigit()) && p.is_file()
}
