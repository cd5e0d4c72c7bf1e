//! `posthorn publish NAME --data JSON` (one event), or `--file PATH` of JSON lines sent in
//! batches with a progress bar and a summary. Lines the server refuses are reported by line
//! number; the rest of their batch is sent again without them.

use std::io::BufRead;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use posthorn_client::{Client, Error};
use posthorn_wire::api::PublishRequest;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{json_arg, print_json, refuse, report, Exit, Remote};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event's name; with --file, lines that are only data get it (lines that are whole
    /// events, `{"name","data",…}`, name themselves)
    pub name: Option<String>,
    /// The event's data: a JSON object, inline or @FILE
    #[arg(long, conflicts_with = "file")]
    pub data: Option<String>,
    /// A file of JSON lines, one event (or one event's data) per line; `-` for standard input
    #[arg(long)]
    pub file: Option<String>,
    /// The event's id (a repeated id is answered as a duplicate, not published twice)
    #[arg(long, conflicts_with = "file")]
    pub id: Option<String>,
    /// A routing attribute, `NAME=VALUE` (repeatable): filters read it as
    /// `$event.attributes.NAME`; it is not part of the payload
    #[arg(long = "attribute", value_name = "NAME=VALUE", conflicts_with = "file")]
    pub attributes: Vec<String>,
    /// Events per request with --file (1 to 1000)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
}

pub async fn publish(remote: &Remote, args: PublishArgs) -> Exit {
    let client = remote.client();
    if let Some(file) = &args.file {
        return publish_file(
            remote,
            &client,
            args.name.as_deref(),
            file,
            args.batch.into(),
        )
        .await;
    }
    let Some(name) = args.name else {
        return refuse("give the event's NAME (and --data), or --file");
    };
    let data = match json_arg(args.data.as_deref().unwrap_or("{}"), "--data") {
        Ok(v) => v,
        Err(e) => return e,
    };
    let event = match request(name, &data, args.id).and_then(|mut r| {
        for pair in &args.attributes {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("--attribute {pair}: write it NAME=VALUE"))?;
            r.attributes.insert(k.to_owned(), v.to_owned());
        }
        Ok(r)
    }) {
        Ok(e) => e,
        Err(msg) => return refuse(format!("--data: {msg}")),
    };
    match client.publish(&event).await {
        Ok(accepted) => {
            if remote.json {
                print_json(&accepted);
            } else if accepted.duplicate {
                println!("{} was published before: nothing new", accepted.id);
            } else {
                println!(
                    "published {} ({}): {}",
                    accepted.id,
                    accepted.name,
                    deliveries(accepted.deliveries)
                );
            }
            Exit::Ok
        }
        Err(e) => report(&e),
    }
}

fn request(name: String, data: &Value, id: Option<String>) -> Result<PublishRequest, String> {
    if !data.is_object() {
        return Err("the data must be a JSON object".into());
    }
    Ok(PublishRequest {
        name,
        data: RawValue::from_string(data.to_string()).map_err(|e| e.to_string())?,
        id,
        origin: None,
        occurred_at: None,
        tenant: None,
        attributes: Default::default(),
        ordering_key: None,
    })
}

/// One line of the file as an event: a whole event, or data for `name`.
fn line_event(name: Option<&str>, line: &str) -> Result<PublishRequest, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    match name {
        Some(name) => request(name.to_owned(), &value, None),
        None => serde_json::from_value(value)
            .map_err(|e| format!("not an event ({{\"name\",\"data\",…}}) and no NAME given: {e}")),
    }
}

fn deliveries(n: u64) -> String {
    match n {
        1 => "1 delivery".into(),
        n => format!("{n} deliveries"),
    }
}

#[derive(Default)]
struct Tally {
    published: u64,
    duplicates: u64,
    deliveries: u64,
    refused: Vec<(usize, String)>,
}

async fn publish_file(
    remote: &Remote,
    client: &Client,
    name: Option<&str>,
    file: &str,
    batch: usize,
) -> Exit {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => return refuse(format!("cannot read {file}: {e}")),
        }
    };
    let total = if file == "-" {
        None
    } else {
        std::fs::read(file)
            .ok()
            .map(|b| b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count() as u64)
    };
    let bar = if remote.json {
        ProgressBar::hidden()
    } else {
        match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        }
    };
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut pending: Vec<(usize, PublishRequest)> = Vec::with_capacity(batch);
    for (i, line) in reader.lines().enumerate() {
        let number = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                bar.abandon();
                return refuse(format!("{file}: line {number}: {e}"));
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match line_event(name, &line) {
            Ok(event) => pending.push((number, event)),
            Err(msg) => {
                tally.refused.push((number, msg));
                bar.inc(1);
            }
        }
        if pending.len() >= batch {
            if let Err(exit) = send(client, std::mem::take(&mut pending), &mut tally, &bar).await {
                bar.abandon();
                return exit;
            }
        }
    }
    if !pending.is_empty() {
        if let Err(exit) = send(client, pending, &mut tally, &bar).await {
            bar.abandon();
            return exit;
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    if remote.json {
        print_json(&serde_json::json!({
            "published": tally.published,
            "duplicates": tally.duplicates,
            "deliveries": tally.deliveries,
            "refused": tally.refused.iter().map(|(line, why)| serde_json::json!({"line": line, "error": why})).collect::<Vec<_>>(),
            "seconds": elapsed,
        }));
    } else {
        for (line, why) in &tally.refused {
            eprintln!("line {line}: {why}");
        }
        println!(
            "published {} events ({} duplicates, {} refused) in {:.1} s, {:.0}/s; {}",
            tally.published,
            tally.duplicates,
            tally.refused.len(),
            elapsed,
            (tally.published + tally.duplicates) as f64 / elapsed.max(0.001),
            deliveries(tally.deliveries)
        );
    }
    if tally.refused.is_empty() {
        Exit::Ok
    } else {
        Exit::Refused
    }
}

/// Sends one batch. A 422 names the events at fault (`[i].data…`): those lines are refused and
/// the others sent again. Anything else (server down, bad token) ends the run.
async fn send(
    client: &Client,
    mut events: Vec<(usize, PublishRequest)>,
    tally: &mut Tally,
    bar: &ProgressBar,
) -> Result<(), Exit> {
    while !events.is_empty() {
        let batch: Vec<&PublishRequest> = events.iter().map(|(_, e)| e).collect();
        match client.publish_batch_refs(&batch).await {
            Ok(accepted) => {
                for a in &accepted.items {
                    if a.duplicate {
                        tally.duplicates += 1;
                    } else {
                        tally.published += 1;
                        tally.deliveries += a.deliveries;
                    }
                }
                bar.inc(events.len() as u64);
                return Ok(());
            }
            Err(Error::Api(p)) if p.status == 422 && !p.errors.is_empty() => {
                let mut bad = std::collections::BTreeMap::<usize, String>::new();
                for f in &p.errors {
                    // `[3].data.x` or `[3]`: the index in this batch.
                    let index = f
                        .field
                        .strip_prefix('[')
                        .and_then(|r| r.split_once(']'))
                        .and_then(|(n, _)| n.parse::<usize>().ok());
                    match index {
                        Some(i) if i < events.len() => {
                            let field = f.field.split_once(']').map_or("", |(_, r)| r);
                            let field = field.trim_start_matches('.');
                            let why = if field.is_empty() {
                                f.message.clone()
                            } else {
                                format!("{field}: {}", f.message)
                            };
                            bad.entry(i).or_insert(why);
                        }
                        // Not about one event: the batch as a whole is refused.
                        _ => return Err(report(&Error::Api(p.clone()))),
                    }
                }
                for (i, why) in bad.iter().rev() {
                    let (line, _) = events.remove(*i);
                    tally.refused.push((line, why.clone()));
                    bar.inc(1);
                }
                tally.refused.sort();
            }
            Err(e) => return Err(report(&e)),
        }
    }
    Ok(())
}
