//! The per-record hot path of `predict`: JSON record → cells → prediction → JSON message,
//! exactly what the service does for each Kafka record (minus the broker), for the wine model
//! and a model with categorical columns, in batches of 1, 64 and 1024; and the wine record through
//! a random forest (100 trees) and gradient boosting (100 trees of 31 leaves) at batch 1024.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modelcast::bus::{Origin, Outgoing, OutputTopics};
use modelcast::config::params::Params;
use modelcast::predict::{score_json, Scored, Served};

fn model(params: &str) -> Served {
    let params = Params::load(Path::new(params)).expect("params");
    let artifact = modelcast::cmd::train::fit_artifact(&params).expect("fit");
    Served::from_artifact(&artifact, "key").expect("served")
}

fn wine_records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "{{\"key\":\"k{i}\",\"fixed acidity\":7.4,\"volatile acidity\":0.7,\"citric acid\":0,\
                 \"residual sugar\":1.9,\"chlorides\":0.076,\"free sulfur dioxide\":11,\
                 \"total sulfur dioxide\":34,\"density\":0.9978,\"pH\":3.51,\"sulphates\":0.56,\"alcohol\":{}}}",
                9.0 + (i % 50) as f64 * 0.1
            )
            .into_bytes()
        })
        .collect()
}

fn mixed_records(n: usize) -> Vec<Vec<u8>> {
    let colors = ["red", "green", "blue", "black", "purple"];
    let sizes = ["S", "M", "L", "XL"];
    (0..n)
        .map(|i| {
            format!(
                "{{\"key\":\"k{i}\",\"x1\":{},\"x2\":-0.5,\"x3\":0.25,\"color\":\"{}\",\"size\":\"{}\"}}",
                (i % 17) as f64 * 0.1,
                colors[i % colors.len()],
                sizes[i % sizes.len()]
            )
            .into_bytes()
        })
        .collect()
}

const TOPICS: OutputTopics<'static> =
    OutputTopics { app_messages: "app_messages", dead_letter: "dead_letter", dead_letter_max_bytes: 900_000 };

fn score_batch(m: &Served, batch: &[Vec<u8>], out: &mut Vec<Outgoing<'static>>) {
    out.clear();
    for (i, r) in batch.iter().enumerate() {
        let origin = Origin::Kafka { topic: "features".into(), partition: 0, offset: i as i64 };
        let scored = score_json(m, r, origin, String::new(), Some(1));
        assert!(matches!(scored, Scored::Ok(_)));
        out.push(Outgoing::of(scored, &TOPICS).expect("encode"));
    }
}

fn bench(c: &mut Criterion) {
    let wine = model("params/params.yaml");
    let dir = std::env::temp_dir().join("modelcast-bench-params");
    std::fs::create_dir_all(&dir).expect("dir");
    let mixed_params = dir.join("mixed.yaml");
    std::fs::write(
        &mixed_params,
        "name: mixed\ndata: {train: tests/fixtures/mixed.csv}\ntarget: y\n\
         features: {numeric: [x1, x2, x3], categorical: [color, size]}\nmodel: {kind: ridge, alpha: 0.5}\n",
    )
    .expect("write");
    let mixed = model(mixed_params.to_str().expect("utf8"));
    let shipped = std::fs::read_to_string("params/params.yaml").expect("params");
    let (head, _) = shipped.split_once("\nmodel:").expect("a model section");
    let tree = |kind: &str| {
        let path = dir.join(format!("{kind}.yaml"));
        std::fs::write(&path, format!("{head}\nmodel: {{kind: {kind}}}\n")).expect("write");
        model(path.to_str().expect("utf8"))
    };
    let (forest, boosting) = (tree("random_forest"), tree("gradient_boosting"));
    let mut g = c.benchmark_group("hot_path");
    for (name, m, records) in [("wine", &wine, wine_records(1024)), ("categorical", &mixed, mixed_records(1024))] {
        for batch in [1usize, 64, 1024] {
            let slice = &records[..batch];
            let mut out = Vec::with_capacity(batch);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new(name, batch), &slice, |b, s| {
                b.iter(|| {
                    score_batch(m, s, &mut out);
                    black_box(out.len())
                })
            });
        }
    }
    let records = wine_records(1024);
    for (name, m) in [("wine_random_forest", &forest), ("wine_gradient_boosting", &boosting)] {
        let mut out = Vec::with_capacity(1024);
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::new(name, 1024), &&records[..], |b, s| {
            b.iter(|| {
                score_batch(m, s, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
