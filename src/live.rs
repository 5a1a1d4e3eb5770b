//! Live accuracy: predictions joined with the labels that arrive later, per model version. Pure:
//! the caller feeds records and the clock; `evaluate --serve` is the edge around it.
//!
//! The join is by key within a horizon. A prediction waits for its label, and a label for its
//! prediction (labels may come first); each side is dropped when it is older than the horizon,
//! and a prediction dropped unlabelled is counted as expired, per version, never silently. A
//! label stays for the whole horizon, so it joins both the served and the shadow prediction of
//! its key; a second prediction of a key and stream that was already joined is a duplicate (an
//! at-least-once redelivery) and is counted, not joined again. When both the served and the
//! shadow prediction of a key are labelled, the pair counts toward the champion/challenger
//! comparison on shared labels.
//!
//! Statistics are sums (count, error, squared error, absolute error, and the label's shifted
//! moments for R²), kept since start and in time buckets of one `interval` for a sliding window.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Which output a prediction was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// `app_messages`: what the service answered.
    Served,
    /// The shadow topic: the challenger's predictions.
    Shadow,
}

/// A model version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionId {
    /// Model name.
    pub model_name: String,
    /// Version id.
    pub model_version: String,
}

/// Mergeable error sums of a set of (prediction, label) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    n: u64,
    err: f64,
    sq: f64,
    abs: f64,
    /// The first label seen: the shift of the label moments (stable R²).
    shift: Option<f64>,
    y: f64,
    yy: f64,
}

impl Sums {
    /// Add one labelled prediction.
    pub fn add(&mut self, prediction: f64, label: f64) {
        let e = prediction - label;
        self.n += 1;
        self.err += e;
        self.sq += e * e;
        self.abs += e.abs();
        let k = *self.shift.get_or_insert(label);
        self.y += label - k;
        self.yy += (label - k) * (label - k);
    }

    /// Add another set of sums.
    pub fn merge(&mut self, o: &Sums) {
        if o.n == 0 {
            return;
        }
        let k = *self.shift.get_or_insert(o.shift.unwrap_or(0.0));
        let d = o.shift.unwrap_or(0.0) - k;
        // re-shift o's moments from its shift to ours: y - k = (y - k_o) + d
        self.yy += o.yy + 2.0 * d * o.y + o.n as f64 * d * d;
        self.y += o.y + o.n as f64 * d;
        self.n += o.n;
        self.err += o.err;
        self.sq += o.sq;
        self.abs += o.abs;
    }

    /// Count, RMSE, MAE, R² and bias (`None` without pairs).
    pub fn metrics(&self) -> Option<LiveMetrics> {
        if self.n == 0 {
            return None;
        }
        let n = self.n as f64;
        let sst = self.yy - self.y * self.y / n;
        let r2 = if sst > 0.0 { Some(1.0 - self.sq / sst) } else { None };
        Some(LiveMetrics { count: self.n, rmse: (self.sq / n).sqrt(), mae: self.abs / n, r2, bias: self.err / n })
    }
}

/// Accuracy on live labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiveMetrics {
    /// Labelled predictions.
    pub count: u64,
    /// Root mean squared error.
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination on these labels (`null` when they are all equal).
    pub r2: Option<f64>,
    /// Mean of prediction − label.
    pub bias: f64,
}

/// How the join behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinConfig {
    /// How long a prediction waits for its label (and a label for its prediction), ms.
    pub horizon_ms: i64,
    /// Most predictions and labels waiting at once; beyond it the oldest are dropped (counted).
    pub max_pending: usize,
    /// Width of one window bucket, ms (the publishing interval).
    pub bucket_ms: i64,
    /// Buckets in the sliding window.
    pub window_buckets: usize,
}

#[derive(Debug, Clone)]
struct Waiting {
    version: VersionId,
    prediction: f64,
    at_ms: i64,
}

#[derive(Debug, Clone)]
struct Label {
    value: f64,
    /// Streams already joined with this label, and what they predicted.
    joined: [Option<(VersionId, f64)>; 2],
}

/// What the joiner has counted (besides the per-version sums).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Predictions joined with a label.
    pub joined: u64,
    /// Labels read.
    pub labels: u64,
    /// Labels dropped at the horizon without any prediction.
    pub labels_unmatched: u64,
    /// Predictions or labels repeated for a key (and stream) already seen: not counted again.
    pub duplicates: u64,
    /// Waiting entries dropped early because of `max_pending`.
    pub evicted: u64,
}

/// Sums per version and stream.
type PerVersion = BTreeMap<(VersionId, Stream), Sums>;

/// A waiting label or prediction in the expiry order: (at, arrival, key, its stream or None for
/// a label).
type Entry = (i64, u64, String, Option<Stream>);

/// The join state and the statistics.
#[derive(Debug)]
pub struct Joiner {
    cfg: JoinConfig,
    waiting: HashMap<(String, Stream), Waiting>,
    labels: HashMap<String, Label>,
    /// Waiting entries oldest first by their time (not their arrival: topics read out of step
    /// deliver them out of time order), for expiry and eviction.
    order: BinaryHeap<Reverse<Entry>>,
    /// Entries pushed so far: ties on time leave in arrival order.
    arrivals: u64,
    since_start: PerVersion,
    expired: BTreeMap<(VersionId, Stream), u64>,
    buckets: VecDeque<(i64, PerVersion)>,
    /// Champion and challenger on the same labels: (served, shadow) → (served sums, shadow sums).
    pairs: BTreeMap<(VersionId, VersionId), (Sums, Sums)>,
    counts: Counts,
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Served => 0,
        Stream::Shadow => 1,
    }
}

impl Joiner {
    /// An empty joiner.
    pub fn new(cfg: JoinConfig) -> Joiner {
        Joiner {
            cfg,
            waiting: HashMap::new(),
            labels: HashMap::new(),
            order: BinaryHeap::new(),
            arrivals: 0,
            since_start: BTreeMap::new(),
            expired: BTreeMap::new(),
            buckets: VecDeque::new(),
            pairs: BTreeMap::new(),
            counts: Counts::default(),
        }
    }

    /// A prediction of `key` read from `stream`, made at `at_ms`; `now_ms` is the join time.
    pub fn prediction(
        &mut self,
        key: &str,
        stream: Stream,
        version: VersionId,
        prediction: f64,
        at_ms: i64,
        now_ms: i64,
    ) {
        if let Some(label) = self.labels.get(key) {
            if label.joined[slot(stream)].is_some() {
                self.counts.duplicates += 1;
                return;
            }
            let value = label.value;
            self.join(key, stream, version, prediction, value, now_ms);
            return;
        }
        let w = Waiting { version, prediction, at_ms };
        if self.waiting.insert((key.to_string(), stream), w).is_some() {
            // the newer prediction of a key and stream replaces the older one (whose expiry
            // entry no longer matches and is skipped); it expires by its own time
            self.counts.duplicates += 1;
        }
        self.push(at_ms, key, Some(stream));
        self.bound();
    }

    /// A label of `key` that arrived at `at_ms`; `now_ms` is the join time.
    pub fn label(&mut self, key: &str, value: f64, at_ms: i64, now_ms: i64) {
        if self.labels.contains_key(key) {
            self.counts.duplicates += 1;
            return;
        }
        self.counts.labels += 1;
        self.labels.insert(key.to_string(), Label { value, joined: [None, None] });
        self.push(at_ms, key, None);
        for stream in [Stream::Served, Stream::Shadow] {
            if let Some(w) = self.waiting.remove(&(key.to_string(), stream)) {
                self.join(key, stream, w.version, w.prediction, value, now_ms);
            }
        }
        self.bound();
    }

    fn join(&mut self, key: &str, stream: Stream, version: VersionId, prediction: f64, label: f64, now_ms: i64) {
        self.counts.joined += 1;
        let id = (version.clone(), stream);
        self.since_start.entry(id.clone()).or_default().add(prediction, label);
        let start = now_ms - now_ms.rem_euclid(self.cfg.bucket_ms.max(1));
        if self.buckets.back().is_none_or(|(s, _)| *s < start) {
            self.buckets.push_back((start, BTreeMap::new()));
        }
        if let Some((_, b)) = self.buckets.iter_mut().rev().find(|(s, _)| *s <= start) {
            b.entry(id).or_default().add(prediction, label);
        }
        let Some(l) = self.labels.get_mut(key) else { return };
        l.joined[slot(stream)] = Some((version, prediction));
        if let [Some((served, p_served)), Some((shadow, p_shadow))] = &l.joined {
            let e = self.pairs.entry((served.clone(), shadow.clone())).or_default();
            e.0.add(*p_served, label);
            e.1.add(*p_shadow, label);
        }
    }

    /// Drop what is older than the horizon at `now_ms` (counting unlabelled predictions per
    /// version), and window buckets that left the window.
    pub fn expire(&mut self, now_ms: i64) {
        let limit = now_ms - self.cfg.horizon_ms;
        while self.order.peek().is_some_and(|Reverse((at, ..))| *at < limit) {
            self.drop_oldest(false);
        }
        let first = now_ms
            - now_ms.rem_euclid(self.cfg.bucket_ms.max(1))
            - (self.cfg.window_buckets.saturating_sub(1) as i64) * self.cfg.bucket_ms;
        while self.buckets.front().is_some_and(|(s, _)| *s < first) {
            self.buckets.pop_front();
        }
    }

    fn push(&mut self, at_ms: i64, key: &str, stream: Option<Stream>) {
        self.arrivals += 1;
        self.order.push(Reverse((at_ms, self.arrivals, key.to_string(), stream)));
    }

    fn bound(&mut self) {
        while self.waiting.len() + self.labels.len() > self.cfg.max_pending && !self.order.is_empty() {
            self.drop_oldest(true);
        }
    }

    fn drop_oldest(&mut self, evicted: bool) {
        let Some(Reverse((at, _, key, stream))) = self.order.pop() else { return };
        match stream {
            Some(s) => {
                // only if this entry is still the one waiting (not joined, not replaced)
                let k = (key, s);
                if self.waiting.get(&k).is_some_and(|w| w.at_ms == at) {
                    if let Some(w) = self.waiting.remove(&k) {
                        *self.expired.entry((w.version, s)).or_default() += 1;
                        if evicted {
                            self.counts.evicted += 1;
                        }
                    }
                }
            }
            None => {
                if let Some(l) = self.labels.remove(&key) {
                    if l.joined.iter().all(Option::is_none) {
                        self.counts.labels_unmatched += 1;
                    }
                    if evicted {
                        self.counts.evicted += 1;
                    }
                }
            }
        }
    }

    /// The state as published: per version and stream, since start and over the window.
    pub fn snapshot(&self) -> Snapshot {
        let mut window = PerVersion::new();
        for (_, b) in &self.buckets {
            for (id, s) in b {
                window.entry(id.clone()).or_default().merge(s);
            }
        }
        let mut ids: Vec<&(VersionId, Stream)> = self.since_start.keys().chain(self.expired.keys()).collect();
        ids.sort();
        ids.dedup();
        let versions = ids
            .into_iter()
            .map(|id| VersionMetrics {
                model_name: id.0.model_name.clone(),
                model_version: id.0.model_version.clone(),
                stream: id.1,
                since_start: self.since_start.get(id).and_then(Sums::metrics),
                window: window.get(id).and_then(Sums::metrics),
                expired: self.expired.get(id).copied().unwrap_or(0),
            })
            .collect();
        let pairs = self
            .pairs
            .iter()
            .filter_map(|((served, shadow), (a, b))| {
                Some(PairMetrics {
                    model_name: served.model_name.clone(),
                    champion: served.model_version.clone(),
                    challenger: shadow.model_version.clone(),
                    shared_labels: a.n,
                    champion_rmse: a.metrics()?.rmse,
                    challenger_rmse: b.metrics()?.rmse,
                    champion_mae: a.metrics()?.mae,
                    challenger_mae: b.metrics()?.mae,
                })
            })
            .collect();
        Snapshot {
            versions,
            pairs,
            counts: self.counts.clone(),
            pending_predictions: self.waiting.len() as u64,
            pending_labels: self.labels.len() as u64,
        }
    }
}

/// One version's live accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMetrics {
    /// Model name.
    pub model_name: String,
    /// Version id.
    pub model_version: String,
    /// Served or shadow.
    pub stream: Stream,
    /// Since the evaluator started (see the README for restarts).
    pub since_start: Option<LiveMetrics>,
    /// Over the sliding window.
    pub window: Option<LiveMetrics>,
    /// Predictions of this version dropped at the horizon without a label.
    pub expired: u64,
}

/// Champion (served) against challenger (shadow) on the keys both predicted and a label reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairMetrics {
    /// Model name.
    pub model_name: String,
    /// The served version.
    pub champion: String,
    /// The shadow version.
    pub challenger: String,
    /// Labels both were scored on.
    pub shared_labels: u64,
    /// Champion RMSE on them.
    pub champion_rmse: f64,
    /// Challenger RMSE on them.
    pub challenger_rmse: f64,
    /// Champion MAE on them.
    pub champion_mae: f64,
    /// Challenger MAE on them.
    pub challenger_mae: f64,
}

/// Everything the evaluator knows at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Per version and stream.
    pub versions: Vec<VersionMetrics>,
    /// Champion against challenger on shared labels.
    pub pairs: Vec<PairMetrics>,
    /// Join counters.
    pub counts: Counts,
    /// Predictions waiting for a label.
    pub pending_predictions: u64,
    /// Labels waiting (for a prediction, or for the horizon).
    pub pending_labels: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> VersionId {
        VersionId { model_name: "m".into(), model_version: s.into() }
    }

    fn joiner(horizon_ms: i64, max_pending: usize) -> Joiner {
        Joiner::new(JoinConfig { horizon_ms, max_pending, bucket_ms: 1000, window_buckets: 2 })
    }

    fn naive(pairs: &[(f64, f64)]) -> (f64, f64, f64, f64) {
        let n = pairs.len() as f64;
        let rmse = (pairs.iter().map(|(p, y)| (p - y) * (p - y)).sum::<f64>() / n).sqrt();
        let mae = pairs.iter().map(|(p, y)| (p - y).abs()).sum::<f64>() / n;
        let bias = pairs.iter().map(|(p, y)| p - y).sum::<f64>() / n;
        let mean = pairs.iter().map(|(_, y)| y).sum::<f64>() / n;
        let sst: f64 = pairs.iter().map(|(_, y)| (y - mean) * (y - mean)).sum();
        let r2 = 1.0 - pairs.iter().map(|(p, y)| (p - y) * (p - y)).sum::<f64>() / sst;
        (rmse, mae, r2, bias)
    }

    #[test]
    fn labels_before_or_after_their_prediction_join_once_per_version() {
        let mut j = joiner(10_000, 1000);
        j.prediction("a", Stream::Served, v("1"), 5.0, 0, 0);
        j.label("b", 7.0, 1, 1); // before its prediction
        j.label("a", 6.0, 2, 2);
        j.prediction("b", Stream::Served, v("2"), 6.5, 3, 3);
        j.prediction("b", Stream::Served, v("2"), 6.5, 4, 4); // redelivered: not counted again
        let s = j.snapshot();
        assert_eq!(s.counts.joined, 2);
        assert_eq!(s.counts.duplicates, 1);
        let m1 = s.versions.iter().find(|m| m.model_version == "1").unwrap().since_start.unwrap();
        assert_eq!((m1.count, m1.rmse, m1.bias), (1, 1.0, -1.0));
        let m2 = s.versions.iter().find(|m| m.model_version == "2").unwrap().since_start.unwrap();
        assert_eq!((m2.count, m2.mae), (1, 0.5));
    }

    #[test]
    fn sums_match_the_textbook_formulas_and_merge_exactly() {
        let pairs: Vec<(f64, f64)> =
            (0..1000).map(|i| (1e6 + (i % 13) as f64 * 0.3, 1e6 + (i % 7) as f64 * 0.5)).collect();
        let mut all = Sums::default();
        let (mut a, mut b) = (Sums::default(), Sums::default());
        for (i, &(p, y)) in pairs.iter().enumerate() {
            all.add(p, y);
            if i < 400 { &mut a } else { &mut b }.add(p, y);
        }
        a.merge(&b);
        let (rmse, mae, r2, bias) = naive(&pairs);
        for m in [all.metrics().unwrap(), a.metrics().unwrap()] {
            assert!((m.rmse - rmse).abs() < 1e-9 * rmse, "{m:?} {rmse}");
            assert!((m.mae - mae).abs() < 1e-9 * mae);
            assert!((m.r2.unwrap() - r2).abs() < 1e-9, "{:?} {r2}", m.r2);
            assert!((m.bias - bias).abs() < 1e-9);
        }
    }

    #[test]
    fn unlabelled_predictions_expire_per_version_and_labels_alone_are_counted() {
        let mut j = joiner(100, 1000);
        j.prediction("a", Stream::Served, v("1"), 1.0, 0, 0);
        j.prediction("b", Stream::Served, v("1"), 1.0, 10, 10);
        j.prediction("c", Stream::Shadow, v("2"), 1.0, 20, 20);
        j.label("z", 3.0, 30, 30);
        j.label("b", 1.0, 40, 40);
        j.expire(125); // a (0) and b's slot (10, joined) and c (20) are past; z (30) is not
        let s = j.snapshot();
        let exp: Vec<(String, Stream, u64)> =
            s.versions.iter().map(|m| (m.model_version.clone(), m.stream, m.expired)).collect();
        assert_eq!(exp, vec![("1".into(), Stream::Served, 1), ("2".into(), Stream::Shadow, 1)]);
        assert_eq!(s.counts.labels_unmatched, 0);
        j.expire(1000);
        let s = j.snapshot();
        assert_eq!(s.counts.labels_unmatched, 1, "z never met a prediction");
        assert_eq!((s.pending_predictions, s.pending_labels), (0, 0));
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_it() {
        let mut j = joiner(1_000_000, 2);
        j.prediction("a", Stream::Served, v("1"), 1.0, 0, 0);
        j.prediction("b", Stream::Served, v("1"), 1.0, 1, 1);
        j.prediction("c", Stream::Served, v("1"), 1.0, 2, 2);
        let s = j.snapshot();
        assert_eq!((s.counts.evicted, s.versions[0].expired, s.pending_predictions), (1, 1, 2));
    }

    #[test]
    fn a_prediction_made_again_expires_by_its_own_time() {
        // an at-least-once redelivery: the same key scored again, later
        let mut j = joiner(100, 1000);
        j.prediction("a", Stream::Served, v("1"), 1.0, 10, 10);
        j.prediction("a", Stream::Served, v("1"), 1.0, 50, 50);
        j.expire(120); // the first is past the horizon, the one waiting is not
        let s = j.snapshot();
        assert_eq!((s.pending_predictions, s.counts.duplicates), (1, 1));
        j.expire(200);
        let s = j.snapshot();
        assert_eq!((s.pending_predictions, s.versions[0].expired), (0, 1));
    }

    #[test]
    fn expiry_goes_by_time_when_topics_deliver_out_of_time_order() {
        // a restarted evaluator reads the labels topic ahead of the predictions: a label
        // stamped late arrives before predictions made earlier, which must still expire
        let mut j = joiner(100, 1000);
        j.label("tick", 0.0, 500, 500);
        j.prediction("a", Stream::Served, v("1"), 1.0, 10, 10);
        j.prediction("b", Stream::Served, v("1"), 1.0, 20, 20);
        j.label("later", 0.0, 450, 450);
        j.expire(500); // the limit is 400: a and b are past, both labels are not
        let s = j.snapshot();
        assert_eq!((s.pending_predictions, s.versions[0].expired), (0, 2));
        assert_eq!(s.pending_labels, 2);
        // and the bound evicts the oldest by time, not the first to arrive
        let mut j = joiner(1_000_000, 2);
        j.label("tick", 0.0, 500, 500);
        j.prediction("a", Stream::Served, v("1"), 1.0, 10, 10);
        j.prediction("b", Stream::Served, v("1"), 1.0, 20, 20);
        let s = j.snapshot();
        assert_eq!((s.counts.evicted, s.versions[0].expired, s.pending_labels), (1, 1, 1));
    }

    #[test]
    fn served_and_shadow_on_the_same_label_make_a_pair_and_the_window_slides() {
        let mut j = joiner(1_000_000, 1000);
        j.prediction("a", Stream::Served, v("1"), 5.0, 0, 0);
        j.prediction("a", Stream::Shadow, v("2"), 6.0, 0, 0);
        j.prediction("b", Stream::Served, v("1"), 5.0, 0, 0);
        j.label("a", 6.0, 500, 500);
        j.label("b", 5.0, 2500, 2500);
        let s = j.snapshot();
        assert_eq!(s.pairs.len(), 1);
        let p = &s.pairs[0];
        assert_eq!((p.champion.as_str(), p.challenger.as_str(), p.shared_labels), ("1", "2", 1));
        assert_eq!((p.champion_rmse, p.challenger_rmse), (1.0, 0.0));
        // window of 2 one-second buckets at t=2.5 s: the join at 0.5 s has left it
        j.expire(2500);
        let s = j.snapshot();
        let served = s.versions.iter().find(|m| m.stream == Stream::Served).unwrap();
        assert_eq!(served.since_start.unwrap().count, 2);
        assert_eq!(served.window.unwrap().count, 1);
        assert!(s.versions.iter().find(|m| m.stream == Stream::Shadow).unwrap().window.is_none());
    }
}
