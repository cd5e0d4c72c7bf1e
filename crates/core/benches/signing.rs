//! What signing one delivery costs (`posthorn_core::signing::signature_header`, Standard
//! Webhooks: HMAC-SHA-256 of `{id}.{timestamp}.{body}`), on the harness's ~300-byte event in its
//! envelope and on a 4 KB body, under one secret and under two (a rotation).
//! Run: `cargo bench -p posthorn-core --bench signing`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use posthorn_core::signing::{signature_header, Secret};

fn body(len: usize) -> Vec<u8> {
    let mut b =
        br#"{"type":"ftrack.update","timestamp":"2026-05-02T10:15:00Z","data":{"x":""#.to_vec();
    b.resize(len - 3, b'a');
    b.extend_from_slice(br#""}}"#);
    b
}

fn bench(c: &mut Criterion) {
    let one = Secret::generate();
    let two = [Secret::generate(), Secret::generate()];
    let id = "msg_01JE7ZK3Q2V6X0WQ8R1M5T9HB4";
    for (name, body) in [
        ("envelope of 400 bytes", body(400)),
        ("body of 4 KB", body(4096)),
    ] {
        let mut group = c.benchmark_group(name);
        group.bench_function("one secret", |b| {
            b.iter(|| signature_header([&one], black_box(id), 1_765_000_000, black_box(&body)))
        });
        group.bench_function("two secrets", |b| {
            b.iter(|| signature_header(&two, black_box(id), 1_765_000_000, black_box(&body)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
