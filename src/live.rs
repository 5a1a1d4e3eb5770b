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
//!
//! A classifier's prediction carries its class and every class's probability. Its label is a
//! class, matched by text or by number (`1` is the class `"1"` and `"1.0"`); a label that is no
//! class of the version (or, for a regressor, not a number) is counted as unusable. Its sums are
//! [`ClassSums`]: accuracy, log loss and the confusion matrix exactly, and the ROC AUC from
//! histograms of the scores in [`AUC_BINS`] bins, which are mergeable across buckets and bounded
//! in memory. Pairs of scores in different bins are ranked exactly; a pair in the same bin counts
//! half, as a tie would, so the reported AUC is within `auc_bound` = Σ_bins pos·neg / (2·P·N) of
//! the exact one (for several classes, the mean of the per-class bounds), computed from the
//! same histograms and published beside it.
//!
//! About 750 lines of code, one job: the join and the sums it feeds. The classifier's sums ride
//! the same buckets, windows and pairs as the regressor's, so they stay in this file.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::logistic::EPS;

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

/// What a prediction said.
#[derive(Debug, Clone, PartialEq)]
pub enum Said {
    /// A regressor's value.
    Value(f64),
    /// A classifier's answer: its classes in the artifact's order, each one's probability, and
    /// the index of the class it predicted (after its decision threshold).
    Classes {
        /// The version's classes.
        classes: Vec<String>,
        /// One probability per class.
        probabilities: Vec<f64>,
        /// Index of the predicted class.
        class: usize,
    },
}

/// A label's value as it arrived: its text, and its number when it reads as one.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// The text (a JSON number's shortest form).
    pub text: String,
    /// The value, when the text is a finite number.
    pub number: Option<f64>,
}

impl Truth {
    /// A label from its text.
    pub fn text(text: &str) -> Truth {
        Truth { text: text.to_string(), number: text.trim().parse::<f64>().ok().filter(|v| v.is_finite()) }
    }

    /// A numeric label.
    pub fn number(value: f64) -> Truth {
        Truth { text: value.to_string(), number: Some(value).filter(|v| v.is_finite()) }
    }

    /// The index of this label among `classes`: the same text, else the same number.
    fn class_in(&self, classes: &[String]) -> Option<usize> {
        classes.iter().position(|c| *c == self.text).or_else(|| {
            let v = self.number?;
            classes.iter().position(|c| c.trim().parse::<f64>().ok() == Some(v))
        })
    }
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
        Some(LiveMetrics {
            count: self.n,
            rmse: (self.sq / n).sqrt(),
            mae: self.abs / n,
            r2,
            bias: self.err / n,
            classification: None,
        })
    }
}

/// Bins of the score histograms behind the live AUC (width 1/`AUC_BINS` of probability).
pub const AUC_BINS: usize = 1000;

/// Mergeable sums of a classifier's labelled predictions: exact accuracy, log loss and confusion
/// matrix; the regression sums of its probabilities against the one-hot truth (class 1's against
/// 0/1 for two classes), as training reports them; and per scored class (class 1 only for two
/// classes) a histogram of the scores of its positives and of its negatives, for the AUC.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSums {
    k: usize,
    n: u64,
    correct: u64,
    log_loss: f64,
    /// `confusion[truth · k + predicted]`.
    confusion: Vec<u64>,
    values: Sums,
    /// `hist[(scored class · AUC_BINS + bin)]` = [negatives, positives]; empty until the first row.
    hist: Vec<[u64; 2]>,
}

impl ClassSums {
    /// Empty sums for `k` classes.
    pub fn new(k: usize) -> ClassSums {
        ClassSums {
            k,
            n: 0,
            correct: 0,
            log_loss: 0.0,
            confusion: vec![0; k * k],
            values: Sums::default(),
            hist: vec![],
        }
    }

    fn scored(&self) -> usize {
        if self.k == 2 {
            1
        } else {
            self.k
        }
    }

    /// Add one labelled prediction: the true class, the probabilities, the predicted class.
    pub fn add(&mut self, truth: usize, probabilities: &[f64], predicted: usize) {
        let (k, p) = (self.k, probabilities);
        if truth >= k || predicted >= k || p.len() != k {
            return;
        }
        self.n += 1;
        self.correct += u64::from(truth == predicted);
        self.confusion[truth * k + predicted] += 1;
        self.log_loss -= p[truth].clamp(EPS, 1.0 - EPS).ln();
        if self.hist.is_empty() {
            self.hist = vec![[0, 0]; self.scored() * AUC_BINS];
        }
        let first = if k == 2 { 1 } else { 0 };
        for (slot, c) in (first..k).enumerate() {
            let y = usize::from(c == truth);
            self.values.add(p[c], y as f64);
            let bin = ((p[c] * AUC_BINS as f64) as usize).min(AUC_BINS - 1);
            self.hist[slot * AUC_BINS + bin][y] += 1;
        }
    }

    /// Add another set of sums of the same classes.
    pub fn merge(&mut self, o: &ClassSums) {
        if o.n == 0 || o.k != self.k {
            return;
        }
        self.n += o.n;
        self.correct += o.correct;
        self.log_loss += o.log_loss;
        for (a, b) in self.confusion.iter_mut().zip(&o.confusion) {
            *a += b;
        }
        self.values.merge(&o.values);
        if self.hist.is_empty() {
            self.hist = o.hist.clone();
        } else {
            for (a, b) in self.hist.iter_mut().zip(&o.hist) {
                a[0] += b[0];
                a[1] += b[1];
            }
        }
    }

    /// The AUC of one scored class from its histogram, and its bound; `None` without both a
    /// positive and a negative.
    fn auc_of(&self, slot: usize) -> Option<(f64, f64)> {
        let h = &self.hist[slot * AUC_BINS..(slot + 1) * AUC_BINS];
        let (neg, pos) = h.iter().fold((0u64, 0u64), |(n, p), b| (n + b[0], p + b[1]));
        if neg == 0 || pos == 0 {
            return None;
        }
        let (mut below, mut wins, mut ties) = (0f64, 0f64, 0f64);
        for b in h {
            let (n, p) = (b[0] as f64, b[1] as f64);
            wins += p * below;
            ties += p * n;
            below += n;
        }
        let pairs = pos as f64 * neg as f64;
        Some(((wins + 0.5 * ties) / pairs, 0.5 * ties / pairs))
    }

    /// The metrics (`None` without rows).
    pub fn metrics(&self, classes: &[String]) -> Option<LiveMetrics> {
        if self.n == 0 {
            return None;
        }
        let aucs: Vec<(f64, f64)> = (0..self.scored()).filter_map(|s| self.auc_of(s)).collect();
        let (auc, auc_bound) = if aucs.is_empty() {
            (None, None)
        } else {
            let m = aucs.len() as f64;
            (Some(aucs.iter().map(|a| a.0).sum::<f64>() / m), Some(aucs.iter().map(|a| a.1).sum::<f64>() / m))
        };
        let n = self.n as f64;
        let mut m = self.values.metrics()?;
        m.count = self.n;
        m.classification = Some(LiveClassMetrics {
            accuracy: self.correct as f64 / n,
            log_loss: self.log_loss / n,
            auc,
            auc_bound,
            classes: classes.to_vec(),
            confusion: self.confusion.chunks(self.k).map(<[u64]>::to_vec).collect(),
        });
        Some(m)
    }
}

/// The sums of one version and stream: a regressor's or a classifier's.
#[derive(Debug, Clone, PartialEq)]
enum Acc {
    Values(Sums),
    Classes(ClassSums),
}

impl Acc {
    fn for_outcome(o: &Outcome) -> Acc {
        match o {
            Outcome::Value(..) => Acc::Values(Sums::default()),
            Outcome::Class { probabilities, .. } => Acc::Classes(ClassSums::new(probabilities.len())),
        }
    }

    fn add(&mut self, o: &Outcome) {
        match (self, o) {
            (Acc::Values(s), Outcome::Value(p, y)) => s.add(*p, *y),
            (Acc::Classes(s), Outcome::Class { truth, probabilities, predicted }) => {
                s.add(*truth, probabilities, *predicted)
            }
            _ => {}
        }
    }

    fn merge(&mut self, o: &Acc) {
        match (self, o) {
            (Acc::Values(a), Acc::Values(b)) => a.merge(b),
            (Acc::Classes(a), Acc::Classes(b)) => a.merge(b),
            _ => {}
        }
    }

    fn metrics(&self, classes: &[String]) -> Option<LiveMetrics> {
        match self {
            Acc::Values(s) => s.metrics(),
            Acc::Classes(s) => s.metrics(classes),
        }
    }
}

/// A labelled prediction, ready to add.
enum Outcome<'a> {
    /// (prediction, label)
    Value(f64, f64),
    Class {
        truth: usize,
        probabilities: &'a [f64],
        predicted: usize,
    },
}

/// Accuracy on live labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveMetrics {
    /// Labelled predictions.
    pub count: u64,
    /// Root mean squared error (a classifier's: of its probabilities against the one-hot truth).
    pub rmse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination on these labels (`null` when they are all equal).
    pub r2: Option<f64>,
    /// Mean of prediction − label.
    pub bias: f64,
    /// A classifier's metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<LiveClassMetrics>,
}

/// A classifier's accuracy on live labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveClassMetrics {
    /// Share of labelled predictions whose class is the label.
    pub accuracy: f64,
    /// Mean negative log-probability of the labelled class (clipped at 2⁻⁵², as training).
    pub log_loss: f64,
    /// ROC AUC from the score histograms (class 1's for two classes, the one-vs-rest macro mean
    /// over the classes with both positives and negatives for more); `null` without them.
    pub auc: Option<f64>,
    /// The exact AUC is within `auc ± auc_bound`.
    pub auc_bound: Option<f64>,
    /// The classes, in the order of the confusion matrix.
    pub classes: Vec<String>,
    /// `confusion[label][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
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

/// A prediction as kept: a value, or a class index and the probabilities.
#[derive(Debug, Clone, PartialEq)]
enum Scored {
    Value(f64),
    Class { class: usize, probabilities: Box<[f64]> },
}

#[derive(Debug, Clone)]
struct Waiting {
    version: VersionId,
    scored: Scored,
    at_ms: i64,
}

#[derive(Debug, Clone)]
struct Label {
    truth: Truth,
    /// Streams already joined with this label, and what they predicted.
    joined: [Option<(VersionId, Scored)>; 2],
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
    /// Joins whose label is no class of the version that predicted (or, for a regressor, not a
    /// number): not counted in the version's metrics.
    #[serde(default)]
    pub labels_unusable: u64,
}

/// Sums per version and stream.
type PerVersion = BTreeMap<(VersionId, Stream), Acc>;

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
    /// A classifier version's classes (from its first prediction).
    classes: HashMap<VersionId, Vec<String>>,
    since_start: PerVersion,
    expired: BTreeMap<(VersionId, Stream), u64>,
    buckets: VecDeque<(i64, PerVersion)>,
    /// Champion and challenger on the same labels: (served, shadow) → (served sums, shadow sums).
    pairs: BTreeMap<(VersionId, VersionId), (Acc, Acc)>,
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
            classes: HashMap::new(),
            since_start: BTreeMap::new(),
            expired: BTreeMap::new(),
            buckets: VecDeque::new(),
            pairs: BTreeMap::new(),
            counts: Counts::default(),
        }
    }

    /// A prediction of `key` read from `stream`, made at `at_ms`; `now_ms` is the join time.
    pub fn prediction(&mut self, key: &str, stream: Stream, version: VersionId, said: Said, at_ms: i64, now_ms: i64) {
        let scored = match said {
            Said::Value(v) => Scored::Value(v),
            Said::Classes { classes, probabilities, class } => {
                if !self.classes.contains_key(&version) {
                    self.classes.insert(version.clone(), classes);
                }
                Scored::Class { class, probabilities: probabilities.into_boxed_slice() }
            }
        };
        if let Some(label) = self.labels.get(key) {
            if label.joined[slot(stream)].is_some() {
                self.counts.duplicates += 1;
                return;
            }
            let truth = label.truth.clone();
            self.join(key, stream, version, scored, &truth, now_ms);
            return;
        }
        let w = Waiting { version, scored, at_ms };
        if self.waiting.insert((key.to_string(), stream), w).is_some() {
            // the newer prediction of a key and stream replaces the older one (whose expiry
            // entry no longer matches and is skipped); it expires by its own time
            self.counts.duplicates += 1;
        }
        self.push(at_ms, key, Some(stream));
        self.bound();
    }

    /// A label of `key` that arrived at `at_ms`; `now_ms` is the join time.
    pub fn label(&mut self, key: &str, truth: Truth, at_ms: i64, now_ms: i64) {
        if self.labels.contains_key(key) {
            self.counts.duplicates += 1;
            return;
        }
        self.counts.labels += 1;
        self.labels.insert(key.to_string(), Label { truth: truth.clone(), joined: [None, None] });
        self.push(at_ms, key, None);
        for stream in [Stream::Served, Stream::Shadow] {
            if let Some(w) = self.waiting.remove(&(key.to_string(), stream)) {
                self.join(key, stream, w.version, w.scored, &truth, now_ms);
            }
        }
        self.bound();
    }

    /// What a prediction and its label add up to, or `None` when the label does not fit it.
    fn outcome<'a>(&self, version: &VersionId, scored: &'a Scored, truth: &Truth) -> Option<Outcome<'a>> {
        match scored {
            Scored::Value(p) => Some(Outcome::Value(*p, truth.number?)),
            Scored::Class { class, probabilities } => {
                let t = truth.class_in(self.classes.get(version)?)?;
                Some(Outcome::Class { truth: t, probabilities, predicted: *class })
            }
        }
    }

    fn join(&mut self, key: &str, stream: Stream, version: VersionId, scored: Scored, truth: &Truth, now_ms: i64) {
        self.counts.joined += 1;
        let id = (version.clone(), stream);
        match self.outcome(&version, &scored, truth) {
            Some(o) => {
                self.since_start.entry(id.clone()).or_insert_with(|| Acc::for_outcome(&o)).add(&o);
                let start = now_ms - now_ms.rem_euclid(self.cfg.bucket_ms.max(1));
                if self.buckets.back().is_none_or(|(s, _)| *s < start) {
                    self.buckets.push_back((start, BTreeMap::new()));
                }
                if let Some((_, b)) = self.buckets.iter_mut().rev().find(|(s, _)| *s <= start) {
                    b.entry(id).or_insert_with(|| Acc::for_outcome(&o)).add(&o);
                }
            }
            None => self.counts.labels_unusable += 1,
        }
        let Some(l) = self.labels.get_mut(key) else { return };
        l.joined[slot(stream)] = Some((version, scored));
        let [Some((served, a)), Some((shadow, b))] = &l.joined else { return };
        let (served, shadow) = (served.clone(), shadow.clone());
        let (a, b, truth) = (a.clone(), b.clone(), l.truth.clone());
        if let (Some(oa), Some(ob)) = (self.outcome(&served, &a, &truth), self.outcome(&shadow, &b, &truth)) {
            let e =
                self.pairs.entry((served, shadow)).or_insert_with(|| (Acc::for_outcome(&oa), Acc::for_outcome(&ob)));
            e.0.add(&oa);
            e.1.add(&ob);
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
                match window.get_mut(id) {
                    Some(w) => w.merge(s),
                    None => {
                        window.insert(id.clone(), s.clone());
                    }
                }
            }
        }
        let no_classes = Vec::new();
        let classes = |v: &VersionId| self.classes.get(v).unwrap_or(&no_classes);
        let mut ids: Vec<&(VersionId, Stream)> = self.since_start.keys().chain(self.expired.keys()).collect();
        ids.sort();
        ids.dedup();
        let versions = ids
            .into_iter()
            .map(|id| VersionMetrics {
                model_name: id.0.model_name.clone(),
                model_version: id.0.model_version.clone(),
                stream: id.1,
                since_start: self.since_start.get(id).and_then(|s| s.metrics(classes(&id.0))),
                window: window.get(id).and_then(|s| s.metrics(classes(&id.0))),
                expired: self.expired.get(id).copied().unwrap_or(0),
            })
            .collect();
        let pairs = self
            .pairs
            .iter()
            .filter_map(|((served, shadow), (a, b))| {
                let (ma, mb) = (a.metrics(classes(served))?, b.metrics(classes(shadow))?);
                let (ca, cb) = (ma.classification.as_ref(), mb.classification.as_ref());
                Some(PairMetrics {
                    model_name: served.model_name.clone(),
                    champion: served.model_version.clone(),
                    challenger: shadow.model_version.clone(),
                    shared_labels: ma.count,
                    champion_rmse: ma.rmse,
                    challenger_rmse: mb.rmse,
                    champion_mae: ma.mae,
                    challenger_mae: mb.mae,
                    champion_log_loss: ca.map(|c| c.log_loss),
                    challenger_log_loss: cb.map(|c| c.log_loss),
                    champion_accuracy: ca.map(|c| c.accuracy),
                    challenger_accuracy: cb.map(|c| c.accuracy),
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
    /// Classifiers: the champion's log loss on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_log_loss: Option<f64>,
    /// Classifiers: the challenger's log loss on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger_log_loss: Option<f64>,
    /// Classifiers: the champion's accuracy on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion_accuracy: Option<f64>,
    /// Classifiers: the challenger's accuracy on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger_accuracy: Option<f64>,
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
        j.prediction("a", Stream::Served, v("1"), Said::Value(5.0), 0, 0);
        j.label("b", Truth::number(7.0), 1, 1); // before its prediction
        j.label("a", Truth::number(6.0), 2, 2);
        j.prediction("b", Stream::Served, v("2"), Said::Value(6.5), 3, 3);
        j.prediction("b", Stream::Served, v("2"), Said::Value(6.5), 4, 4); // redelivered: not counted again
        let s = j.snapshot();
        assert_eq!(s.counts.joined, 2);
        assert_eq!(s.counts.duplicates, 1);
        let m1 = s.versions.iter().find(|m| m.model_version == "1").unwrap().since_start.clone().unwrap();
        assert_eq!((m1.count, m1.rmse, m1.bias), (1, 1.0, -1.0));
        let m2 = s.versions.iter().find(|m| m.model_version == "2").unwrap().since_start.clone().unwrap();
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
        j.prediction("a", Stream::Served, v("1"), Said::Value(1.0), 0, 0);
        j.prediction("b", Stream::Served, v("1"), Said::Value(1.0), 10, 10);
        j.prediction("c", Stream::Shadow, v("2"), Said::Value(1.0), 20, 20);
        j.label("z", Truth::number(3.0), 30, 30);
        j.label("b", Truth::number(1.0), 40, 40);
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
        j.prediction("a", Stream::Served, v("1"), Said::Value(1.0), 0, 0);
        j.prediction("b", Stream::Served, v("1"), Said::Value(1.0), 1, 1);
        j.prediction("c", Stream::Served, v("1"), Said::Value(1.0), 2, 2);
        let s = j.snapshot();
        assert_eq!((s.counts.evicted, s.versions[0].expired, s.pending_predictions), (1, 1, 2));
    }

    #[test]
    fn a_prediction_made_again_expires_by_its_own_time() {
        // an at-least-once redelivery: the same key scored again, later
        let mut j = joiner(100, 1000);
        j.prediction("a", Stream::Served, v("1"), Said::Value(1.0), 10, 10);
        j.prediction("a", Stream::Served, v("1"), Said::Value(1.0), 50, 50);
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
        j.label("tick", Truth::number(0.0), 500, 500);
        j.prediction("a", Stream::Served, v("1"), Said::Value(1.0), 10, 10);
        j.prediction("b", Stream::Served, v("1"), Said::Value(1.0), 20, 20);
        j.label("later", Truth::number(0.0), 450, 450);
        j.expire(500); // the limit is 400: a and b are past, both labels are not
        let s = j.snapshot();
        assert_eq!((s.pending_predictions, s.versions[0].expired), (0, 2));
        assert_eq!(s.pending_labels, 2);
        // and the bound evicts the oldest by time, not the first to arrive
        let mut j = joiner(1_000_000, 2);
        j.label("tick", Truth::number(0.0), 500, 500);
        j.prediction("a", Stream::Served, v("1"), Said::Value(1.0), 10, 10);
        j.prediction("b", Stream::Served, v("1"), Said::Value(1.0), 20, 20);
        let s = j.snapshot();
        assert_eq!((s.counts.evicted, s.versions[0].expired, s.pending_labels), (1, 1, 1));
    }

    #[test]
    fn served_and_shadow_on_the_same_label_make_a_pair_and_the_window_slides() {
        let mut j = joiner(1_000_000, 1000);
        j.prediction("a", Stream::Served, v("1"), Said::Value(5.0), 0, 0);
        j.prediction("a", Stream::Shadow, v("2"), Said::Value(6.0), 0, 0);
        j.prediction("b", Stream::Served, v("1"), Said::Value(5.0), 0, 0);
        j.label("a", Truth::number(6.0), 500, 500);
        j.label("b", Truth::number(5.0), 2500, 2500);
        let s = j.snapshot();
        assert_eq!(s.pairs.len(), 1);
        let p = &s.pairs[0];
        assert_eq!((p.champion.as_str(), p.challenger.as_str(), p.shared_labels), ("1", "2", 1));
        assert_eq!((p.champion_rmse, p.challenger_rmse), (1.0, 0.0));
        // window of 2 one-second buckets at t=2.5 s: the join at 0.5 s has left it
        j.expire(2500);
        let s = j.snapshot();
        let served = s.versions.iter().find(|m| m.stream == Stream::Served).unwrap();
        assert_eq!(served.since_start.as_ref().unwrap().count, 2);
        assert_eq!(served.window.as_ref().unwrap().count, 1);
        assert!(s.versions.iter().find(|m| m.stream == Stream::Shadow).unwrap().window.is_none());
    }

    fn said(classes: &[&str], probabilities: &[f64], class: usize) -> Said {
        Said::Classes {
            classes: classes.iter().map(|c| c.to_string()).collect(),
            probabilities: probabilities.to_vec(),
            class,
        }
    }

    fn unit(rng: &mut crate::util::rng::SplitMix64) -> f64 {
        (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exact ROC AUC by counting every (positive, negative) pair, ties half.
    fn exact_auc(scores: &[(f64, bool)]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (p, _) in scores.iter().filter(|s| s.1) {
            for (n, _) in scores.iter().filter(|s| !s.1) {
                pairs += 1.0;
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        wins / pairs
    }

    #[test]
    fn class_labels_join_by_text_or_number_with_exact_accuracy_and_log_loss_and_a_bounded_auc() {
        let mut j = joiner(1_000_000, 100_000);
        let mut rng = crate::util::rng::SplitMix64::new(7);
        let (mut expect, mut scores) = (Vec::new(), Vec::new());
        for i in 0..3000 {
            // a noisy score: positives lean high; coarse values make exact ties too
            let y = unit(&mut rng) < 0.3;
            let raw = (unit(&mut rng) + if y { 0.35 } else { 0.0 }).min(0.999);
            let p1 = if i % 3 == 0 { (raw * 20.0).round() / 20.0 } else { raw };
            let predicted = usize::from(p1 >= 0.5);
            let key = format!("k{i}");
            j.prediction(&key, Stream::Served, v("1"), said(&["no", "1"], &[1.0 - p1, p1], predicted), 0, 0);
            // the label as text for class "no", as the number 1 for class "1"
            let truth = if y { Truth::number(1.0) } else { Truth::text("no") };
            j.label(&key, truth, 1, 1);
            expect.push((usize::from(y), p1, predicted));
            scores.push((p1, y));
        }
        j.prediction("odd", Stream::Served, v("1"), said(&["no", "1"], &[0.5, 0.5], 1), 0, 0);
        j.label("odd", Truth::text("maybe"), 1, 1);
        let s = j.snapshot();
        assert_eq!((s.counts.joined, s.counts.labels_unusable), (3001, 1));
        let m = s.versions[0].since_start.clone().unwrap();
        let c = m.classification.unwrap();
        let n = expect.len() as f64;
        let accuracy = expect.iter().filter(|(t, _, p)| t == p).count() as f64 / n;
        let log_loss = -expect
            .iter()
            .map(|&(t, p1, _)| if t == 1 { p1 } else { 1.0 - p1 }.clamp(EPS, 1.0 - EPS).ln())
            .sum::<f64>()
            / n;
        assert_eq!(m.count, 3000);
        assert!((c.accuracy - accuracy).abs() < 1e-12, "{} vs {accuracy}", c.accuracy);
        assert!((c.log_loss - log_loss).abs() < 1e-9, "{} vs {log_loss}", c.log_loss);
        let confusion_total: u64 = c.confusion.iter().flatten().sum();
        assert_eq!((confusion_total, c.classes.clone()), (3000, vec!["no".to_string(), "1".to_string()]));
        let (auc, bound, exact) = (c.auc.unwrap(), c.auc_bound.unwrap(), exact_auc(&scores));
        assert!((auc - exact).abs() <= bound + 1e-12, "auc {auc} ± {bound} misses {exact}");
        assert!(bound > 0.0 && bound < 0.01, "the coarse scores tie within bins: bound {bound}");
    }

    #[test]
    fn class_sums_merge_as_if_added_at_once_and_the_macro_auc_bound_holds() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut rng = crate::util::rng::SplitMix64::new(11);
        let (mut all, mut a, mut b) = (ClassSums::new(3), ClassSums::new(3), ClassSums::new(3));
        let mut rows = Vec::new();
        for i in 0..2000 {
            let t = (unit(&mut rng) * 3.0) as usize;
            let mut p = [unit(&mut rng), unit(&mut rng), unit(&mut rng)];
            p[t] += 0.8;
            let sum: f64 = p.iter().sum();
            let p = p.map(|x| x / sum);
            let pred = (0..3).max_by(|&x, &y| p[x].total_cmp(&p[y])).unwrap();
            all.add(t, &p, pred);
            if i % 2 == 0 { &mut a } else { &mut b }.add(t, &p, pred);
            rows.push((t, p));
        }
        a.merge(&b);
        let (ma, mall) = (a.metrics(&classes).unwrap(), all.metrics(&classes).unwrap());
        let (ca, call) = (ma.classification.unwrap(), mall.classification.unwrap());
        assert_eq!((ca.accuracy, &ca.confusion, ca.auc), (call.accuracy, &call.confusion, call.auc));
        assert!((ca.log_loss - call.log_loss).abs() < 1e-12);
        let exact: f64 =
            (0..3).map(|c| exact_auc(&rows.iter().map(|(t, p)| (p[c], *t == c)).collect::<Vec<_>>())).sum::<f64>()
                / 3.0;
        let (auc, bound) = (call.auc.unwrap(), call.auc_bound.unwrap());
        assert!((auc - exact).abs() <= bound + 1e-12, "macro auc {auc} ± {bound} misses {exact}");
        assert!(bound < 0.002, "fine scores rarely share a bin: {bound}");
    }

    #[test]
    fn a_classifier_pair_compares_log_loss_on_shared_labels() {
        let mut j = joiner(1_000_000, 1000);
        j.prediction("a", Stream::Served, v("1"), said(&["0", "1"], &[0.4, 0.6], 1), 0, 0);
        j.prediction("a", Stream::Shadow, v("2"), said(&["0", "1"], &[0.1, 0.9], 1), 0, 0);
        j.label("a", Truth::text("1"), 1, 1);
        let s = j.snapshot();
        let p = &s.pairs[0];
        assert_eq!(p.shared_labels, 1);
        assert!((p.champion_log_loss.unwrap() + 0.6f64.ln()).abs() < 1e-15);
        assert!((p.challenger_log_loss.unwrap() + 0.9f64.ln()).abs() < 1e-15);
        assert_eq!((p.champion_accuracy, p.challenger_accuracy), (Some(1.0), Some(1.0)));
        // a regressor's label that is not a number is unusable, and counted
        j.prediction("r", Stream::Served, v("3"), Said::Value(1.0), 0, 0);
        j.label("r", Truth::text("high"), 1, 1);
        assert_eq!(j.snapshot().counts.labels_unusable, 1);
    }
}
