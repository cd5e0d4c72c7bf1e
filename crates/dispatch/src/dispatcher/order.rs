//! The order in which a fan-out or a claim starts its attempts: every destination gets its turn
//! early, so that the many subscriptions of one endpoint (which may hang) do not all go before
//! the few of another.

use std::collections::HashMap;

/// The order in which to start deliveries to these URLs (`None`: not known yet, a first): by
/// how many earlier ones went to the same URL, then to the same host, then as given.
pub(super) fn destination_order(urls: &[Option<&str>]) -> Vec<usize> {
    let mut per_url = HashMap::new();
    let mut per_host = HashMap::new();
    let mut keys: Vec<(usize, usize, usize)> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| match url {
            Some(url) => (
                next_rank(&mut per_url, url),
                next_rank(&mut per_host, host_of(url)),
                i,
            ),
            None => (0, 0, i),
        })
        .collect();
    keys.sort_unstable();
    keys.into_iter().map(|(_, _, i)| i).collect()
}

/// How many times `key` was seen before this one.
fn next_rank<'a>(seen: &mut HashMap<&'a str, usize>, key: &'a str) -> usize {
    let n = seen.entry(key).or_default();
    *n += 1;
    *n - 1
}

/// The `host[:port]` of a URL (the whole text if it has no scheme).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fan_out_starts_every_destination_early() {
        let hang = "http://hooks.example/hang";
        let ok = "http://hooks.example/ok";
        let other = "https://user@other.example:8443/in?x=1";
        // Three subscriptions to one endpoint, then two to another, then one to another host.
        let urls = [
            Some(hang),
            Some(hang),
            Some(hang),
            Some(ok),
            Some(ok),
            Some(other),
        ];
        // The first of each URL (by host among them: `other` is its host's first), then the
        // second of each, then the rest.
        assert_eq!(destination_order(&urls), vec![0, 5, 3, 1, 4, 2]);
        // Not cached yet: among the firsts; firsts keep their order.
        let unknown = [Some(hang), Some(hang), None, Some(ok)];
        assert_eq!(destination_order(&unknown), vec![0, 2, 3, 1]);
        assert_eq!(host_of(other), "other.example:8443");
        assert_eq!(host_of("http://a.example"), "a.example");
    }
}
