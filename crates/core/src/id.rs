//! Prefixed, opaque, time-ordered identifiers (`sub_…`, `evt_…`, `dlv_…`, `app_…`).
//!
//! The part after the prefix is a lower-case ULID: ids made later sort after ids made earlier
//! (to the millisecond), which is what lets lists page newest-first on the id alone.

/// A new id with the given prefix, e.g. `new_id("sub")` → `sub_01j…`.
pub fn new_id(prefix: &str) -> String {
    let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
    format!("{prefix}_{ulid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id("sub");
        let b = new_id("sub");
        assert!(a.starts_with("sub_"));
        assert_eq!(a.len(), 4 + 26);
        assert_ne!(a, b);
    }
}
