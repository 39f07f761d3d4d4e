//! The bridge's CPU work per event: decode the events-list page, map (E.164 normalisation,
//! SHA-256, time formatting) and serialise the request body. `make bench` records the figures in BENCHMARKS.md.

use std::collections::HashSet;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctwa_operator::api::SignalsEventType;
use ctwa_operator::bridge::event::SignalsEvent;
use ctwa_operator::bridge::mapping::{EventFilter, Mapped, Mapper};
use ctwa_operator::upstream::signals::EventsPage;
use ctwa_operator::upstream::x_ads::conversions_body;
use serde_json::{Value, json};

fn events(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "id": format!("ev-{i:08}"), "app_id": "app", "ad_id": "120210000000000001",
                "campaign_id": "120210000000000000", "phone": format!("+49 151 {:08}", 10_000_000 + i),
                "type": "converted", "type_id": "kw-1", "type_value": "order confirmed",
                "date": format!("2026-11-02T10:{:02}:{:02}.{:03}", (i / 60) % 60, i % 60, i % 1000)
            })
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let filter = EventFilter {
        app_id: "app".into(),
        types: HashSet::from([SignalsEventType::Converted]),
        ad_ids: HashSet::new(),
        time_zone: None,
    };
    let mapper = Mapper::new(filter, "o87ne");
    let one = EventsPage::from_json(&json!({"data": events(1)}), 0, None);
    let one = one.decode::<SignalsEvent>().unwrap().data.remove(0);
    let mut group = c.benchmark_group("map_event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        b.iter(|| mapper.map(std::hint::black_box(&one)))
    });
    group.finish();

    // What the bridge does with a page: decode it (events borrow from the body), map every
    // event, serialise the X request body.
    let page = EventsPage::from_json(&json!({"data": events(500)}), 0, None);
    let mut group = c.benchmark_group("map_and_serialise_batch_500");
    group.throughput(Throughput::Elements(500));
    group.bench_function("batch", |b| {
        b.iter(|| {
            let events = page.decode::<SignalsEvent>().unwrap();
            let conversions: Vec<_> = events
                .data
                .iter()
                .filter_map(|e| match mapper.map(e) {
                    Mapped::Convert { conversion, .. } => Some(conversion),
                    _ => None,
                })
                .collect();
            conversions_body(&conversions)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
