//! Classification metrics, computed as scikit-learn's functions of the same names compute them
//! (`accuracy_score`, `balanced_accuracy_score`, `log_loss`, `roc_auc_score` (one-vs-rest macro
//! for more than two classes), `average_precision_score` (PR AUC, two classes), `f1_score`
//! (macro), `brier_score_loss` (two classes: of class 1's probability; more: the sum over
//! classes, mean per row), `confusion_matrix`).
//!
//! [`ClassAcc::new`] keeps each row's scores because the AUCs rank them: the model's held-out rows
//! only, as float32, in a buffer sized once when the row count is known
//! ([`ClassAcc::with_capacity`]). Two classes keep class 1's probability and the truth in one
//! `u32` a row (a probability's float32 bits have the sign bit clear, so the bits shifted left
//! by one, with the truth in the low bit, sort as the probabilities do), sorted in place by
//! [`ClassAcc::finish`]: 4 bytes a row in all. More classes keep every class's probability and
//! the truth (4·K + 2 bytes a row), and rank one class at a time through a packed copy (4 bytes a
//! row while it lives). Rounding to float32 can tie two probabilities that differ by less than
//! one part in 2²⁴; a tie counts half, as scikit-learn counts exact ties. The training rows and the baseline are summed in
//! constant memory ([`ClassAcc::streaming`]; the baseline's AUC is 0.5 by definition).

use serde::{Deserialize, Serialize};

use super::logistic::{decide, EPS};
use super::{Metrics, MetricsAcc};
use crate::params::Decision;

/// The classification metrics of a model on some rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassMetrics {
    /// Share of rows whose predicted class is the true one.
    pub accuracy: f64,
    /// Mean recall over the classes present in the truth.
    pub balanced_accuracy: f64,
    /// Mean negative log-probability of the true class (probabilities clipped at 2⁻⁵²).
    pub log_loss: f64,
    /// ROC AUC (one-vs-rest macro mean for more than two classes; classes absent from the truth
    /// are left out). `None` when fewer than two classes are present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// Average precision of class 1 (two classes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_auc: Option<f64>,
    /// Macro F1 over the classes present in the truth or the predictions.
    pub f1: f64,
    /// Brier score.
    pub brier: f64,
    /// Confusion matrix: `confusion[true][predicted]` row counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Rows of (true class, probabilities), accumulated for [`ClassAcc::finish`]: every metric but the
/// AUCs as running sums; the rows themselves only when `scores` is set (the AUCs rank them).
#[derive(Debug, Clone, Default)]
pub struct ClassAcc {
    k: usize,
    threshold: f64,
    scores: bool,
    rows: usize,
    acc: MetricsAcc,
    confusion: Vec<Vec<u64>>,
    ll: f64,
    brier: f64,
    /// Two classes: class 1's probability and the truth, [`pack`]ed.
    packed: Vec<u32>,
    /// More classes: the truth and every class's probability, row after row.
    truth: Vec<u16>,
    probs: Vec<f32>,
}

/// A probability's float32 bits shifted left by one, `positive` in the low bit: the order of the
/// packed values is the order of the probabilities (negative zero and anything below 0 count as
/// 0), and `packed >> 1` is equal exactly when the float32 probabilities are.
#[inline]
fn pack(p: f64, positive: bool) -> u32 {
    let p = p as f32;
    let bits = if p > 0.0 || p.is_nan() { p.to_bits() & 0x7fff_ffff } else { 0 };
    (bits << 1) | u32::from(positive)
}

impl ClassAcc {
    /// An accumulator for `k` classes and a binary decision `threshold` that keeps each row's
    /// scores for the AUCs.
    pub fn new(k: usize, threshold: f64) -> ClassAcc {
        ClassAcc { k, threshold, scores: true, confusion: vec![vec![0; k]; k], ..ClassAcc::default() }
    }

    /// [`ClassAcc::new`] for `rows` rows: the scores' buffers are allocated once, at their size.
    pub fn with_capacity(k: usize, threshold: f64, rows: usize) -> ClassAcc {
        let mut a = ClassAcc::new(k, threshold);
        if k == 2 {
            a.packed.reserve_exact(rows);
        } else {
            a.truth.reserve_exact(rows);
            a.probs.reserve_exact(rows * k);
        }
        a
    }

    /// An accumulator in constant memory: every metric but the AUCs (left `None`).
    pub fn streaming(k: usize, threshold: f64) -> ClassAcc {
        ClassAcc { scores: false, ..ClassAcc::new(k, threshold) }
    }

    /// Add one row: its true class and the model's probabilities (`k` of them).
    pub fn add(&mut self, truth: usize, probs: &[f64]) {
        let p = &probs[..self.k];
        self.rows += 1;
        self.confusion[truth][decide(p, self.threshold)] += 1;
        self.ll -= p[truth].clamp(EPS, 1.0 - EPS).ln();
        if self.k == 2 {
            let y = truth as f64;
            self.acc.add(y, p[1]);
            self.brier += (p[1] - y) * (p[1] - y);
        } else {
            for (c, pc) in p.iter().enumerate() {
                let y = f64::from(u8::from(c == truth));
                self.acc.add(y, *pc);
                self.brier += (pc - y) * (pc - y);
            }
        }
        if self.scores {
            if self.k == 2 {
                self.packed.push(pack(p[1], truth == 1));
            } else {
                self.truth.push(truth as u16);
                self.probs.extend(p.iter().map(|v| *v as f32));
            }
        }
    }

    /// Rows added.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The metrics: the regression fields over the probabilities against the one-hot truth
    /// (class 1's probability against 0/1 for two classes; `r2` is then the Brier skill score
    /// against the truth's own mean), and the classification ones. Sorts the kept scores in place.
    pub fn finish(&mut self) -> Metrics {
        let (k, n) = (self.k, self.rows);
        let confusion = self.confusion.clone();
        let nf = n.max(1) as f64;
        let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
        let present: Vec<usize> = (0..k).filter(|&c| confusion[c].iter().sum::<u64>() > 0).collect();
        let recall = |c: usize| confusion[c][c] as f64 / confusion[c].iter().sum::<u64>().max(1) as f64;
        let balanced = present.iter().map(|&c| recall(c)).sum::<f64>() / present.len().max(1) as f64;
        let f1_classes: Vec<usize> =
            (0..k).filter(|&c| confusion[c].iter().sum::<u64>() > 0 || (0..k).any(|t| confusion[t][c] > 0)).collect();
        let f1 = f1_classes
            .iter()
            .map(|&c| {
                let tp = confusion[c][c] as f64;
                let predicted: u64 = (0..k).map(|t| confusion[t][c]).sum();
                let actual: u64 = confusion[c].iter().sum();
                let denom = predicted as f64 + actual as f64;
                if denom == 0.0 {
                    0.0
                } else {
                    2.0 * tp / denom
                }
            })
            .sum::<f64>()
            / f1_classes.len().max(1) as f64;
        let (auc, pr_auc) = if present.len() < 2 || !self.scores {
            (None, None)
        } else if k == 2 {
            self.packed.sort_unstable();
            (roc_auc_packed(&self.packed), average_precision_packed(&self.packed))
        } else {
            let mut packed = Vec::with_capacity(self.truth.len());
            let mut aucs = Vec::with_capacity(present.len());
            for &c in &present {
                packed.clear();
                packed.extend(
                    self.truth
                        .iter()
                        .enumerate()
                        .map(|(i, &t)| pack(f64::from(self.probs[i * k + c]), t as usize == c)),
                );
                packed.sort_unstable();
                aucs.extend(roc_auc_packed(&packed));
            }
            ((!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64), None)
        };
        let mut m = self.acc.finish();
        m.rows = n;
        m.classification = Some(ClassMetrics {
            accuracy: correct as f64 / nf,
            balanced_accuracy: balanced,
            log_loss: self.ll / nf,
            auc,
            pr_auc,
            f1,
            brier: self.brier / nf,
            confusion,
        });
        m
    }
}

/// The runs of equal scores of sorted packed values, lowest first: (positives, negatives) each.
fn tie_groups(sorted: &[u32]) -> impl DoubleEndedIterator<Item = (f64, f64)> + '_ {
    sorted.chunk_by(|a, b| a >> 1 == b >> 1).map(|g| {
        let pos = g.iter().filter(|v| *v & 1 == 1).count();
        (pos as f64, (g.len() - pos) as f64)
    })
}

/// [`roc_auc`] of sorted [`pack`]ed values.
fn roc_auc_packed(sorted: &[u32]) -> Option<f64> {
    let pos = sorted.iter().filter(|v| *v & 1 == 1).count() as f64;
    let neg = sorted.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let (mut rank_sum, mut before) = (0.0, 0.0);
    for (p, n) in tie_groups(sorted) {
        // the group's mean rank (1-based)
        rank_sum += (before + 1.0 + before + p + n) / 2.0 * p;
        before += p + n;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// [`average_precision`] of sorted [`pack`]ed values.
fn average_precision_packed(sorted: &[u32]) -> Option<f64> {
    let pos = sorted.iter().filter(|v| *v & 1 == 1).count() as f64;
    if pos == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    for (p, n) in tie_groups(sorted).rev() {
        tp += p;
        fp += n;
        let recall = tp / pos;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
    }
    Some(ap)
}

/// ROC AUC of (score, positive) pairs: the Mann-Whitney statistic with tied scores counted half.
/// `None` without both a positive and a negative.
pub fn roc_auc(mut pairs: Vec<(f64, bool)>) -> Option<f64> {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = pairs.iter().filter(|p| p.1).count() as f64;
    let neg = pairs.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    // sum of the positives' ranks (1-based, ties get their mean rank)
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Average precision (scikit-learn's `average_precision_score`): Σ (Rₙ − Rₙ₋₁)·Pₙ over the
/// distinct scores, highest first. `None` without a positive.
pub fn average_precision(mut pairs: Vec<(f64, bool)>) -> Option<f64> {
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = pairs.iter().filter(|p| p.1).count() as f64;
    if pos == 0.0 {
        return None;
    }
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            if pairs[j].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            j += 1;
        }
        let recall = tp / pos;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
        i = j;
    }
    Some(ap)
}

/// The decision threshold `rule` picks from held-out `(class 1's probability, is class 1)` pairs
/// (sorted here, highest first): class 1 is predicted when its probability is at least the
/// threshold, and the candidates are the probabilities that occur. Ties between candidates go to
/// the higher threshold.
pub fn choose_threshold(scored: &mut [(f64, bool)], rule: Decision) -> std::result::Result<f64, String> {
    if let Decision::Fixed(t) = rule {
        return Ok(t);
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let positives = scored.iter().filter(|s| s.1).count() as f64;
    if positives == 0.0 || positives == scored.len() as f64 {
        return Err(format!("the {} held-out rows need both classes to choose a threshold", scored.len()));
    }
    let (mut tp, mut fp, mut i) = (0.0, 0.0, 0);
    let (mut best, mut best_precision) = (None::<(f64, f64)>, 0.0f64);
    while i < scored.len() {
        let t = scored[i].0;
        while i < scored.len() && scored[i].0 == t {
            if scored[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let (precision, recall) = (tp / (tp + fp), tp / positives);
        best_precision = best_precision.max(precision);
        let value = match rule {
            Decision::MaxF1 => Some(2.0 * tp / (2.0 * tp + fp + (positives - tp))),
            Decision::Precision(p) => (precision >= p).then_some(recall),
            Decision::Recall(r) => (recall >= r).then_some(precision),
            Decision::Fixed(_) => None,
        };
        if let Some(v) = value {
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, t));
            }
        }
    }
    best.map(|(_, t)| t).ok_or_else(|| match rule {
        Decision::Precision(p) => {
            format!("no threshold reaches precision {p} on the held-out rows (the best is {best_precision:.4})")
        }
        _ => "no threshold qualifies on the held-out rows".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_average_precision_match_hand_computation() {
        // scikit-learn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) = 0.75
        let pairs = vec![(0.1, false), (0.4, false), (0.35, true), (0.8, true)];
        assert!((roc_auc(pairs.clone()).unwrap() - 0.75).abs() < 1e-15);
        // average_precision_score of the same = 0.8333…
        assert!((average_precision(pairs).unwrap() - 5.0 / 6.0).abs() < 1e-15);
        // ties count half
        assert!((roc_auc(vec![(0.5, false), (0.5, true)]).unwrap() - 0.5).abs() < 1e-15);
        assert_eq!(roc_auc(vec![(0.5, true)]), None);
    }

    #[test]
    fn packed_scores_rank_as_the_pairs_do() {
        // pseudo-random probabilities on a coarse grid (many ties), 0 and 1 included
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pairs: Vec<(f64, bool)> = (0..5000)
            .map(|_| ((next() % 41) as f64 / 40.0, next() % 3 == 0))
            .chain([(0.0, true), (1.0, false)])
            .collect();
        let mut packed: Vec<u32> = pairs.iter().map(|&(p, t)| pack(p, t)).collect();
        packed.sort_unstable();
        let rounded: Vec<(f64, bool)> = pairs.iter().map(|&(p, t)| (f64::from(p as f32), t)).collect();
        let (a, b) = (roc_auc_packed(&packed).unwrap(), roc_auc(rounded.clone()).unwrap());
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        let (a, b) = (average_precision_packed(&packed).unwrap(), average_precision(rounded).unwrap());
        assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        // the packed order is the probabilities' order; -0.0 is 0
        assert!(pack(0.25, false) < pack(0.5, false) && pack(0.5, true) < pack(0.75, false));
        assert_eq!(pack(-0.0, true), pack(0.0, true));
        assert_eq!(pack(0.3, true) >> 1, pack(0.3, false) >> 1);
    }

    #[test]
    fn binary_metrics_match_hand_computation() {
        let mut acc = ClassAcc::new(2, 0.5);
        for (t, p1) in [(0, 0.2), (1, 0.7), (1, 0.4), (0, 0.6)] {
            acc.add(t, &[1.0 - p1, p1]);
        }
        let m = acc.finish();
        let c = m.classification.unwrap();
        assert_eq!(c.confusion, vec![vec![1, 1], vec![1, 1]]);
        assert!((c.accuracy - 0.5).abs() < 1e-15);
        let ll = -(0.8f64.ln() + 0.7f64.ln() + 0.4f64.ln() + 0.4f64.ln()) / 4.0;
        assert!((c.log_loss - ll).abs() < 1e-15);
        let brier = (0.04 + 0.09 + 0.36 + 0.36) / 4.0;
        assert!((c.brier - brier).abs() < 1e-15);
        assert!((m.rmse - brier.sqrt()).abs() < 1e-12);
        assert!((c.f1 - 0.5).abs() < 1e-15);
        assert!((c.auc.unwrap() - 0.75).abs() < 1e-15);
        assert_eq!(m.rows, 4);
    }

    #[test]
    fn multiclass_uses_argmax_and_one_vs_rest() {
        let mut acc = ClassAcc::new(3, 0.5);
        acc.add(0, &[0.7, 0.2, 0.1]);
        acc.add(1, &[0.1, 0.6, 0.3]);
        acc.add(2, &[0.2, 0.5, 0.3]);
        let c = acc.finish().classification.unwrap();
        assert_eq!(c.confusion, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 0]]);
        assert!((c.accuracy - 2.0 / 3.0).abs() < 1e-15);
        assert!((c.balanced_accuracy - 2.0 / 3.0).abs() < 1e-15);
        // f1 per class: 1, 2/3, 0
        assert!((c.f1 - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-15);
        assert_eq!(c.pr_auc, None);
        // one-vs-rest: class 0 1.0, class 1 1.0 (0.6 > 0.5 > 0.2? positives {0.6} vs {0.2, 0.5}) , class 2 (0.3 vs 0.1, 0.3) 0.75
        assert!((c.auc.unwrap() - (1.0 + 1.0 + 0.75) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn thresholds_are_chosen_from_the_held_out_probabilities() {
        use crate::params::Decision;
        // positives at 0.9, 0.8, 0.4; negatives at 0.7, 0.3, 0.2
        let rows = [(0.9, true), (0.7, false), (0.8, true), (0.3, false), (0.4, true), (0.2, false)];
        let pick = |rule| choose_threshold(&mut rows.to_vec(), rule);
        // F1 at 0.8: 2·2/(4+0+1) = 0.8; at 0.4: 2·3/(6+1+0) = 0.857: the best
        assert_eq!(pick(Decision::MaxF1), Ok(0.4));
        // precision 1 holds down to 0.8 (recall 2/3); at 0.4 it is 3/4
        assert_eq!(pick(Decision::Precision(0.9)), Ok(0.8));
        assert_eq!(pick(Decision::Precision(0.75)), Ok(0.4));
        // recall ≥ 0.6: 0.8 (precision 1) beats 0.4 (0.75)
        assert_eq!(pick(Decision::Recall(0.6)), Ok(0.8));
        assert_eq!(pick(Decision::Recall(1.0)), Ok(0.4));
        assert_eq!(pick(Decision::Fixed(0.3)), Ok(0.3));
        let e = choose_threshold(&mut [(0.9, false), (0.8, true)], Decision::Precision(0.99)).unwrap_err();
        assert!(e.contains("precision 0.99") && e.contains("the best is 0.5"), "{e}");
        assert!(choose_threshold(&mut [(0.9, true)], Decision::MaxF1).is_err(), "one class");
    }
}
