//! `posthorn feed SUB_ID`: follows a poll subscription's feed, printing each event as it comes
//! (long polling), and acknowledges what it printed. With `--secret`, each entry's Standard
//! Webhooks signature is checked first: one that does not verify stops the command, unacknowledged.

use posthorn_core::signing::{verify, Secret};
use posthorn_core::time::now_ms;

use super::{refuse, report, Exit, Remote};

#[derive(Debug, clap::Args)]
pub struct FeedArgs {
    /// The poll subscription
    pub subscription: String,
    /// Its signing secret: verify every entry before printing it
    #[arg(long, env = "POSTHORN_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Print what is waiting, acknowledge it, and stop (rather than follow the feed)
    #[arg(long)]
    pub once: bool,
    /// Print without acknowledging (the entries stay in the feed)
    #[arg(long)]
    pub no_ack: bool,
    /// Most entries per read
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
}

pub async fn feed(remote: &Remote, args: FeedArgs) -> Exit {
    let secret = match args.secret.as_deref().map(Secret::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return refuse(format!("--secret: {e}")),
    };
    let c = remote.client();
    let mut after: Option<String> = None;
    loop {
        let wait = if args.once { 0 } else { 25 };
        let page = match c
            .feed(
                &args.subscription,
                after.as_deref(),
                args.batch.into(),
                wait,
            )
            .await
        {
            Ok(p) => p,
            Err(e) => return report(&e),
        };
        for item in &page.items {
            if let Some(secret) = &secret {
                let h = |n: &str| item.headers.get(n).map(String::as_str);
                if let Err(why) = verify(
                    secret,
                    h("webhook-id"),
                    h("webhook-timestamp"),
                    h("webhook-signature"),
                    item.body.as_bytes(),
                    now_ms() / 1000,
                    Some(300),
                ) {
                    eprintln!(
                        "error: entry {} ({}) does not verify: {why}",
                        item.cursor, item.event_name
                    );
                    return Exit::Refused;
                }
            }
            if remote.json {
                println!("{}", item.body);
            } else {
                println!(
                    "{}  {}  {}  {}",
                    item.cursor,
                    item.event_name,
                    item.headers
                        .get("webhook-id")
                        .map(String::as_str)
                        .unwrap_or_default(),
                    item.body
                );
            }
        }
        if let (Some(cursor), false) = (&page.cursor, page.items.is_empty()) {
            if !args.no_ack {
                if let Err(e) = c.acknowledge(&args.subscription, cursor).await {
                    return report(&e);
                }
            }
            after = Some(cursor.clone());
        }
        if args.once && page.items.len() < usize::from(args.batch) {
            return Exit::Ok;
        }
    }
}
