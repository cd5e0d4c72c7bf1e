//! Matching one event against 10,000 and 100,000 subscriptions with filters, and building the
//! index (what a refresh costs).
//!
//! The subscriptions are spread as a large platform's would be: 60 % name one of 1,000 event names,
//! 35 % a prefix (`tenant17.*`) of one of 100, 5 % `*`; every other one has a filter over the data.
//! Run: `cargo bench -p posthorn-core --bench matching`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use posthorn_core::{EventView, Secret, Subscription, SubscriptionIndex};
use serde_json::json;

fn subscriptions(n: usize) -> Vec<Subscription> {
    (0..n)
        .map(|i| {
            let pattern = match i % 20 {
                0 => "*".to_owned(),
                1..=7 => format!("tenant{}.*", i % 100),
                _ => format!("tenant{}.event{}", i % 100, i % 10),
            };
            let filter = match i % 4 {
                0 => Some(format!(
                    r#"entity.operation = "update" and entity.new.status_id != entity.old.status_id and entity.new.version > {}"#,
                    i % 5
                )),
                1 => Some(format!("survey = \"{}\" or $event.origin startswith 'studio'", i % 50)),
                _ => None,
            };
            Subscription {
                id: posthorn_core::SubscriptionId::stored(format!("sub_{i:08}")),
                owner: "admin".into(),
                spec: serde_json::from_value(json!({"name": "bench", "service": "test",
                    "config": {"to": "https://example.com/hook"}, "events": [pattern], "filter": filter}))
                .expect("spec"),
                disabled_reason: None,
                secret: Secret::generate(),
                previous_secret: None,
                created_at: 0,
                updated_at: 0,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = json!({"survey": 7, "entity": {"entity_type": "AssetVersion", "operation": "update",
        "new": {"status_id": "a", "version": 3}, "old": {"status_id": "b", "version": 3}}});
    let event = EventView {
        name: "tenant7.event7",
        id: "evt_1",
        origin: Some("studio-a"),
        attributes: &Default::default(),
        data: &data,
    };
    let mut group = c.benchmark_group("match one event");
    for n in [10_000usize, 100_000] {
        let (index, _) = SubscriptionIndex::build(
            subscriptions(n),
            &posthorn_core::service::testing::registry(),
        );
        let matched = index.matching(&event, None).len();
        println!("{n} subscriptions: {matched} match the event");
        group.bench_with_input(BenchmarkId::from_parameter(n), &index, |b, index| {
            b.iter(|| black_box(index.matching(black_box(&event), None)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("build the index");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let subs = subscriptions(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &subs, |b, subs| {
            b.iter(|| {
                black_box(SubscriptionIndex::build(
                    subs.clone(),
                    &posthorn_core::service::testing::registry(),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
