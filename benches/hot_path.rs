//! The per-record hot path of `predict`: JSON record → cells → prediction → JSON message,
//! exactly what the service does for each Kafka record (minus the broker), for the wine model
//! and a model with categorical columns, in batches of 1, 64 and 1024; and the wine record through
//! a random forest (100 trees) and gradient boosting (100 trees of 31 leaves) at batch 1024, and
//! the classifiers (logistic regression, forest and boosting; binary and six classes) at 1024.
//!
//! Also: the split of a wine record's cost into decode / score / encode, a same-run baseline (the
//! JSON parse alone, skipping every value: what any consumer of the record pays), and the
//! allocations per record in the steady state (counted by `allocation-counter`).
//!
//! And drift (`drift` group): the wine rows and the categorical records scored with and without
//! the service's drift monitor counting each one, side by side.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modelcast::features::Cell;
use modelcast::messages::{OriginRef, Outbox, OutputTopics, PredictionRef};
use modelcast::params::Params;
use modelcast::predict::drift::{Monitor, WindowLimits, DEFAULT_DRIFT_WINDOW};
use modelcast::predict::{
    decode_ahead, score_ahead_into, score_into, Ahead, Incoming, Scratch, ServeOptions, Served, Verdict,
};

fn model(params: &str) -> Served {
    let params = Params::load(Path::new(params)).expect("params");
    let artifact = modelcast::train::fit_artifact(&params).expect("fit");
    Served::from_artifact(&artifact, ServeOptions::key("key")).expect("served")
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

/// The first `n` rows of the wine CSV as JSON records, as the throughput benchmark's load
/// generator writes them (Python's `json.dumps`): every field's digits vary from record to
/// record, unlike [`wine_records`], whose branches a CPU learns.
fn wine_rows(n: usize) -> Vec<Vec<u8>> {
    let mut r = csv::Reader::from_path("data/winequality-red.csv").expect("wine CSV");
    let header: Vec<String> = r.headers().expect("header").iter().map(str::to_string).collect();
    r.records()
        .take(n)
        .enumerate()
        .map(|(i, row)| {
            let row = row.expect("row");
            let fields: Vec<String> = header
                .iter()
                .zip(row.iter())
                .filter(|(h, _)| *h != "quality")
                .map(|(h, v)| {
                    // Python writes 11.0 where Rust writes 11
                    let v = v.parse::<f64>().expect("number").to_string();
                    let v = if v.contains(['.', 'e']) { v } else { v + ".0" };
                    format!("\"{h}\": {v}")
                })
                .collect();
            format!("{{\"key\": \"k{i}\", {}}}", fields.join(", ")).into_bytes()
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

/// The hot path's reused buffers.
#[derive(Default)]
struct Bufs<'a> {
    scratch: Scratch<'a>,
    ahead: Ahead<'a>,
}

/// Score a batch as the service does: one prediction time per batch, messages into a reused outbox.
fn score_batch<'a, 't>(m: &Served, batch: &'a [Vec<u8>], bufs: &mut Bufs<'a>, out: &mut Outbox<'t>) {
    score_counted(m, batch, bufs, out, None)
}

/// [`score_batch`], each record also counted into `drift`'s window as the service counts it
/// (closed windows taken, as the service takes them after each batch).
fn score_counted<'a, 't>(
    m: &Served,
    batch: &'a [Vec<u8>],
    bufs: &mut Bufs<'a>,
    out: &mut Outbox<'t>,
    mut drift: Option<&mut Monitor>,
) {
    let Bufs { scratch, ahead } = bufs;
    out.clear();
    let now = modelcast::util::time::now_ms();
    // as the service does: a tree model's rows walked together before the messages are written
    let together = m.scorer.scores_rows();
    if together {
        decode_ahead(m, batch.iter().map(|r| Some(&r[..])), ahead);
    }
    for (i, r) in batch.iter().enumerate() {
        let rec = Incoming {
            bytes: r,
            origin: OriginRef::Kafka { topic: "features", partition: 0, offset: i as i64 },
            transport_key: None,
            timestamp_ms: Some(1),
        };
        let msg = out.next(TOPICS.app_messages);
        let v = if together {
            score_ahead_into(m, &rec, i, ahead, now, scratch, msg, TOPICS.app_messages, &TOPICS)
        } else {
            score_into(m, &rec, now, scratch, msg, TOPICS.app_messages, &TOPICS)
        };
        let Verdict::Scored(p) = v.expect("encode") else { panic!("rejected") };
        if let Some(d) = drift.as_deref_mut() {
            d.record(if together { ahead.cells(i) } else { scratch.cells() }, Some(p));
        }
    }
    if let Some(d) = drift {
        black_box(d.take());
    }
}

/// A drift monitor following `m` with the service's default window.
fn monitor(m: &Served) -> Monitor {
    let limits = WindowLimits { records: DEFAULT_DRIFT_WINDOW, every: std::time::Duration::from_secs(300) };
    let mut d = Monitor::new(limits, Some("bench"), "records");
    d.follow(m);
    d
}

/// Allocations per record once the buffers have grown (after a warm-up batch).
fn allocations_per_record(m: &Served, records: &[Vec<u8>]) -> f64 {
    let mut scratch = Bufs::default();
    let mut out = Outbox::default();
    score_batch(m, records, &mut scratch, &mut out);
    let counted = allocation_counter::measure(|| score_batch(m, records, &mut scratch, &mut out));
    counted.count_total as f64 / records.len() as f64
}

/// The same with drift counted, over a run of batches short of a full window (a closing window
/// allocates its message: once per window, not per record).
fn allocations_per_record_drift(m: &Served, records: &[Vec<u8>]) -> f64 {
    let (mut scratch, mut out, mut d) = (Bufs::default(), Outbox::default(), monitor(m));
    score_counted(m, records, &mut scratch, &mut out, Some(&mut d));
    let counted = allocation_counter::measure(|| {
        for _ in 0..4 {
            score_counted(m, records, &mut scratch, &mut out, Some(&mut d));
        }
    });
    counted.count_total as f64 / (4 * records.len()) as f64
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
    let (good, grade) = (model("params/wine-good.yaml"), model("params/wine-grade.yaml"));
    // the shipped classifiers' params with a tree kind (scikit-learn's defaults: 100 trees, or
    // 100 rounds of one tree per class)
    let classifier = |base: &str, kind: &str| {
        let text = std::fs::read_to_string(format!("params/{base}.yaml")).expect("params");
        let (head, _) = text.split_once("\nmodel:").expect("a model section");
        let path = dir.join(format!("{base}-{kind}.yaml"));
        std::fs::write(&path, format!("{head}\nmodel: {{kind: {kind}}}\n")).expect("write");
        model(path.to_str().expect("utf8"))
    };
    let good_forest = classifier("wine-good", "random_forest_classifier");
    let grade_forest = classifier("wine-grade", "random_forest_classifier");
    let good_boosting = classifier("wine-good", "gradient_boosting_classifier");
    let grade_boosting = classifier("wine-grade", "gradient_boosting_classifier");
    for (name, m, records) in [
        ("wine_good_logistic", &good, wine_records(1024)),
        ("wine_grade_logistic", &grade, wine_records(1024)),
        ("wine_good_forest", &good_forest, wine_records(1024)),
        ("wine_grade_forest", &grade_forest, wine_records(1024)),
        ("wine_good_boosting", &good_boosting, wine_records(1024)),
        ("wine_grade_boosting", &grade_boosting, wine_records(1024)),
        ("wine", &wine, wine_records(1024)),
        ("categorical", &mixed, mixed_records(1024)),
        ("wine_random_forest", &forest, wine_records(1024)),
        ("wine_gradient_boosting", &boosting, wine_records(1024)),
    ] {
        eprintln!(
            "hot_path/{name}: {} allocations per record in the steady state",
            allocations_per_record(m, &records)
        );
    }
    for (name, m, records) in [("wine_rows", &wine, wine_rows(1024)), ("categorical", &mixed, mixed_records(1024))] {
        eprintln!(
            "hot_path/{name}: {} allocations per record in the steady state with drift counted",
            allocations_per_record_drift(m, &records)
        );
    }
    // The tree layout (issue 27): the stored ensemble's walk (the reference every export and
    // parity test is held to) against the packed layout the scorer walks, on the design rows of
    // the first 1,024 wine rows (all distinct), and the same predictions checked bit for bit.
    let mut g = c.benchmark_group("tree_layout");
    for kind in ["random_forest", "gradient_boosting"] {
        let params = Params::load(&dir.join(format!("{kind}.yaml"))).expect("params");
        let artifact = modelcast::train::fit_artifact(&params).expect("fit");
        let ensemble = artifact.estimator.fit.ensemble().expect("a tree model").clone();
        let spec = modelcast::data::ColumnSpec::of(&params);
        let (table, _) = modelcast::data::load_csv(&["data/winequality-red.csv"], &spec).expect("wine CSV");
        let design = artifact.preprocessing.design(&table).expect("design");
        let rows: Vec<Vec<f64>> = design.rows().into_iter().take(1024).map(|r| r.to_vec()).collect();
        let packed = modelcast::trees::Packed::new(&ensemble);
        for r in &rows {
            assert_eq!(ensemble.predict(r).to_bits(), packed.predict(r).to_bits(), "{kind}: the layouts disagree");
        }
        g.throughput(Throughput::Elements(rows.len() as u64));
        g.bench_function(BenchmarkId::new(kind, "stored_walk"), |b| {
            b.iter(|| rows.iter().map(|r| ensemble.predict(black_box(r))).sum::<f64>())
        });
        g.bench_function(BenchmarkId::new(kind, "packed"), |b| {
            b.iter(|| rows.iter().map(|r| packed.predict(black_box(r))).sum::<f64>())
        });
        let width = rows[0].len();
        let x32: Vec<f32> = rows.iter().flatten().map(|v| *v as f32).collect();
        let mut out = vec![0.0; rows.len()];
        packed.predict_rows(&x32, width, &mut out);
        for (r, got) in rows.iter().zip(&out) {
            assert_eq!(ensemble.predict(r).to_bits(), got.to_bits(), "{kind}: the batch walk disagrees");
        }
        g.bench_function(BenchmarkId::new(kind, "packed_rows"), |b| {
            b.iter(|| {
                packed.predict_rows(black_box(&x32), width, &mut out);
                out.iter().sum::<f64>()
            })
        });
    }
    g.finish();

    // Drift counted on the hot path (issue 26): the same records with and without a monitor,
    // side by side in one group; the ratio is what `--no-drift` saves per record.
    let mut g = c.benchmark_group("drift");
    for (name, m, records) in [("wine_rows", &wine, wine_rows(1024)), ("categorical", &mixed, mixed_records(1024))] {
        g.throughput(Throughput::Elements(records.len() as u64));
        for on in [false, true] {
            let (mut scratch, mut out, mut d) = (Bufs::default(), Outbox::default(), monitor(m));
            let id = BenchmarkId::new(name, if on { "drift_on" } else { "drift_off" });
            g.bench_with_input(id, &&records[..], |b, s| {
                b.iter(|| {
                    score_counted(m, s, &mut scratch, &mut out, on.then_some(&mut d));
                    black_box(out.len())
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("hot_path");
    for (name, m, records) in [
        ("wine", &wine, wine_records(1024)),
        ("wine_rows", &wine, wine_rows(1024)),
        ("categorical", &mixed, mixed_records(1024)),
    ] {
        for batch in [1usize, 64, 1024] {
            let slice = &records[..batch];
            let mut scratch = Bufs::default();
            let mut out = Outbox::default();
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_with_input(BenchmarkId::new(name, batch), &slice, |b, s| {
                b.iter(|| {
                    score_batch(m, s, &mut scratch, &mut out);
                    black_box(out.len())
                })
            });
        }
    }
    let records = wine_records(1024);
    let rows = wine_rows(1024);
    for (name, m) in [("wine_rows_random_forest", &forest), ("wine_rows_gradient_boosting", &boosting)] {
        let mut scratch = Bufs::default();
        let mut out = Outbox::default();
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::new(name, 1024), &&rows[..], |b, s| {
            b.iter(|| {
                score_batch(m, s, &mut scratch, &mut out);
                black_box(out.len())
            })
        });
    }
    for (name, m) in [
        ("wine_random_forest", &forest),
        ("wine_gradient_boosting", &boosting),
        ("wine_good_logistic", &good),
        ("wine_grade_logistic", &grade),
        ("wine_good_forest", &good_forest),
        ("wine_grade_forest", &grade_forest),
        ("wine_good_boosting", &good_boosting),
        ("wine_grade_boosting", &grade_boosting),
    ] {
        let mut scratch = Bufs::default();
        let mut out = Outbox::default();
        g.throughput(Throughput::Elements(1024));
        g.bench_with_input(BenchmarkId::new(name, 1024), &&records[..], |b, s| {
            b.iter(|| {
                score_batch(m, s, &mut scratch, &mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();

    // Where a wine record's time goes, and the same-run baseline.
    let mut g = c.benchmark_group("hot_path_split");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("baseline_parse_only", |b| {
        b.iter(|| {
            for r in &records {
                black_box(serde_json::from_slice::<serde::de::IgnoredAny>(r).expect("json"));
            }
        })
    });
    let mut cells: Vec<Cell<'_>> = Vec::new();
    g.bench_function("decode", |b| {
        b.iter(|| {
            for r in &records {
                black_box(wine.decoder.json_into(r, &mut cells).expect("decode"));
            }
        })
    });
    let rows = wine_rows(1024);
    g.bench_function("decode_wine_rows", |b| {
        b.iter(|| {
            for r in &rows {
                black_box(wine.decoder.json_into(r, &mut cells).expect("decode"));
            }
        })
    });
    let decoded: Vec<Vec<Cell<'_>>> = records.iter().map(|r| wine.decoder.json(r).expect("decode").cells).collect();
    g.bench_function("score", |b| {
        b.iter(|| {
            for c in &decoded {
                black_box(wine.scorer.score(c).expect("score"));
            }
        })
    });
    let mut msg = modelcast::messages::Outgoing::empty("app_messages");
    let now = modelcast::util::time::now_ms();
    g.bench_function("encode", |b| {
        b.iter(|| {
            for i in 0..records.len() {
                let p = PredictionRef {
                    schema_version: 1,
                    key: "k123",
                    prediction: 5.25 + i as f64 * 1e-3,
                    class: None,
                    probabilities: None,
                    model_name: &wine.name,
                    model_version: &wine.version,
                    origin: OriginRef::Kafka { topic: "features", partition: 0, offset: i as i64 },
                    input_timestamp_ms: Some(1),
                    predicted_at_ms: now,
                    shadow_prediction: None,
                    shadow_version: None,
                };
                msg.set_prediction(&p, "app_messages").expect("encode");
                black_box(msg.payload.len());
            }
        })
    });
    g.finish();

    // One Open Inference Protocol request, decoded, scored and answered in process (no socket):
    // the server's CPU per request, against the Kafka hot path's per record above.
    let mut g = c.benchmark_group("oip_request");
    let cols = wine.scorer.input_columns().to_vec();
    let row = [7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4];
    let named = serde_json::json!({"inputs": cols.iter().zip(row).map(|(c, v)| serde_json::json!({
        "name": c, "datatype": "FP64", "shape": [1], "data": [v]})).collect::<Vec<_>>()})
    .to_string();
    let matrix = |n: usize| {
        serde_json::json!({"inputs": [{"name": "m", "datatype": "FP64", "shape": [n, 11], "data": vec![row; n]}]})
            .to_string()
    };
    let (one, many) = (matrix(1), matrix(1024));
    g.bench_function("named_1_row", |b| {
        b.iter(|| black_box(modelcast::predict::oip::respond(&wine, named.as_bytes()).expect("answer")))
    });
    g.bench_function("matrix_1_row", |b| {
        b.iter(|| black_box(modelcast::predict::oip::respond(&wine, one.as_bytes()).expect("answer")))
    });
    g.throughput(Throughput::Elements(1024));
    g.bench_function("matrix_1024_rows", |b| {
        b.iter(|| black_box(modelcast::predict::oip::respond(&wine, many.as_bytes()).expect("answer")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
