//! Training cost on synthetic data: 10k, 100k and 1M rows × (20 numeric + 3 categorical)
//! columns, preprocessing + ridge fit: through the chunked design (`train_ridge`) and as `train`
//! runs it, from the raw rows on one thread and on every core (`train_ridge_streaming`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use modelcast::data::spool::SpoolWriter;
use modelcast::data::{Blocks, CategoricalColumn, ColumnSpec, Rows, Table};
use modelcast::features::{Preprocessing, TableDesign};
use modelcast::params::Params;
use modelcast::stats;

const LEVELS: [usize; 3] = [5, 20, 50];

fn params() -> Params {
    let num: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let yaml = format!(
        "name: synth\ndata: {{train: synth.csv}}\ntarget: y\nfeatures: {{numeric: {num:?}, categorical: [c0, c1, c2]}}\n\
         model: {{kind: ridge, alpha: 1.0}}\n"
    );
    let p = std::env::temp_dir().join("modelcast-bench-synth.yaml");
    std::fs::write(&p, yaml).expect("write params");
    Params::load(&p).expect("params")
}

/// A deterministic synthetic table (xorshift), ~1% missing values.
fn table(rows: usize) -> Table {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut t = Table {
        numeric: (0..20).map(|_| Vec::with_capacity(rows)).collect(),
        categorical: vec![CategoricalColumn::default(); 3],
        target: Vec::with_capacity(rows),
    };
    for _ in 0..rows {
        let mut y = 0.0;
        for (j, col) in t.numeric.iter_mut().enumerate() {
            let v = (next() % 10_000) as f64 / 1000.0;
            y += v * (j as f64 - 10.0) * 0.1;
            col.push(if next() % 100 == 0 { f64::NAN } else { v });
        }
        for (j, col) in t.categorical.iter_mut().enumerate() {
            let level = (next() % LEVELS[j] as u64) as usize;
            y += level as f64 * 0.01;
            let name = format!("l{level}");
            col.push(if next() % 100 == 0 { None } else { Some(&name) });
        }
        t.target.push(y + (next() % 1000) as f64 / 1000.0);
    }
    t
}

fn bench(c: &mut Criterion) {
    let params = params();
    let mut g = c.benchmark_group("train_ridge");
    g.sample_size(10);
    for rows in [10_000usize, 100_000, 1_000_000] {
        let t = table(rows);
        g.throughput(Throughput::Elements(rows as u64));
        g.bench_with_input(BenchmarkId::from_parameter(rows), &t, |b, t| {
            b.iter(|| {
                let rows: Vec<usize> = (0..t.len()).collect();
                let prep = Preprocessing::fit(&params, t, &rows).expect("prep");
                let design = TableDesign { prep: &prep, table: t, rows: &rows };
                let fit = modelcast::model::fit(params.model(), &design).expect("fit");
                black_box(fit.predict_row(&[0.0; 11]))
            })
        });
    }
    g.finish();
    // what `train` runs: preprocessing and the Gram matrix straight from the raw rows, in
    // segments merged in order, on one thread and on every core
    let mut g = c.benchmark_group("train_ridge_streaming");
    g.sample_size(10);
    for rows in [100_000usize, 1_000_000] {
        // the rows in a spool, as `train` holds them (blocks the threads share out)
        let mut w = SpoolWriter::new(&ColumnSpec::of(&params)).expect("spool");
        w.push_table(&table(rows)).expect("spool");
        let spool = w.finish().expect("spool");
        g.throughput(Throughput::Elements(rows as u64));
        for threads in [1, modelcast::util::threads::default_threads()] {
            g.bench_with_input(BenchmarkId::new(format!("{threads}-threads"), rows), &spool, |b, s| {
                b.iter(|| {
                    let all = Rows::All(s.rows());
                    let prep = stats::fit_preprocessing(&params, s, all, threads).expect("prep");
                    let gram = stats::gram(&prep, s, all, threads).expect("gram");
                    let fit = modelcast::model::fit_gram(params.model(), &gram).expect("fit");
                    black_box(fit.intercept)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
