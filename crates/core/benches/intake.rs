//! What reading a publish's body costs before anything else: the usability check every body
//! passes (`posthorn_core::json::check`: decoded strings, no duplicate key, bounded depth) beside
//! the well-formedness check it replaced (serde's `IgnoredAny`), on the harness's ~300-byte event
//! and on a batch of 1,000 of them.
//! Run: `cargo bench -p posthorn-core --bench intake`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;

fn event() -> String {
    json!({"name": "ftrack.update", "data": {
        "entity": {"entity_type": "AssetVersion", "operation": "update", "id": "c7f0a1b2",
                   "new": {"status_id": "a0b1-pending-approval", "version": 3},
                   "old": {"status_id": "f00d-in-progress", "version": 3}},
        "metadata": {"date": "2026-05-02T10:15:00Z", "server_url": "https://studio.example.com"}}})
    .to_string()
}

fn bench(c: &mut Criterion) {
    let one = event();
    let batch = format!("[{}]", vec![one.clone(); 1000].join(","));
    for (name, body) in [("one event", &one), ("batch of 1000", &batch)] {
        let mut group = c.benchmark_group(name);
        group.bench_function("well-formed only (IgnoredAny)", |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body.as_bytes())).is_ok()
            })
        });
        group.bench_function("usability check", |b| {
            b.iter(|| posthorn_core::json::check(black_box(body.as_bytes())).is_ok())
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
