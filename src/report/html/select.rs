//! One pass over the rows: the summary counts, and which faces the pages show. Memory is
//! bounded by the page sizes, not by the number of rows: each gallery keeps its least
//! confident faces in a heap and a seeded random sample of the rest in a reservoir.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::read::FaceRow;

/// A gallery: its `least` least confident rows, and a uniform sample of `random` others.
#[derive(Debug)]
pub struct Gallery {
    least: usize,
    random: usize,
    heap: BinaryHeap<ByKey>,
    reservoir: Vec<FaceRow>,
    /// Rows offered that fell out of the heap (the reservoir samples from these).
    others: u64,
    /// Every row offered.
    pub total: u64,
}

#[derive(Debug)]
struct ByKey(f32, FaceRow);

impl PartialEq for ByKey {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for ByKey {}
impl PartialOrd for ByKey {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByKey {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.id.cmp(&o.1.id))
    }
}

impl Gallery {
    pub fn new(least: usize, random: usize) -> Gallery {
        Gallery {
            least,
            random,
            heap: BinaryHeap::new(),
            reservoir: Vec::new(),
            others: 0,
            total: 0,
        }
    }

    /// Offers a row; `key` orders it (lowest first: the least confident).
    pub fn offer(&mut self, key: f32, row: FaceRow, rng: &mut ChaCha8Rng) {
        self.total += 1;
        let out = if self.heap.len() < self.least {
            self.heap.push(ByKey(key, row));
            None
        } else if self.heap.peek().is_some_and(|top| key < top.0) {
            let top = self.heap.pop().map(|t| t.1);
            self.heap.push(ByKey(key, row));
            top
        } else {
            Some(row)
        };
        if let Some(row) = out {
            // Reservoir sampling (algorithm R) over the rows outside the heap.
            self.others += 1;
            if self.reservoir.len() < self.random {
                self.reservoir.push(row);
            } else if self.random > 0 {
                let j = rng.random_range(0..self.others);
                if (j as usize) < self.random {
                    self.reservoir[j as usize] = row;
                }
            }
        }
    }

    /// The kept rows: the least confident first (lowest key), then the random sample in
    /// input order.
    pub fn finish(self) -> Vec<FaceRow> {
        let mut least: Vec<ByKey> = self.heap.into_vec();
        least.sort();
        let mut rest = self.reservoir;
        rest.sort_by_key(|r| r.id);
        least.into_iter().map(|k| k.1).chain(rest).collect()
    }
}

/// Counts of one accuracy group (eval predictions).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupCount {
    pub n: u64,
    pub correct: u64,
}

/// The most groups a chart draws: a column with more distinct values is binned when they
/// are numbers (as `eval --group-by COL:EDGES` bins), else not drawn.
pub const MAX_GROUPS: usize = 30;

/// The most distinct values counted per column; past it the column is not drawn, and its
/// counts are dropped, so a unique column (`sha256`) costs no memory per row.
const MAX_DISTINCT: usize = 2000;

/// The name of the group of faces with an empty value.
pub const EMPTY_GROUP: &str = "(empty)";

/// One accuracy chart: a column's groups, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GroupChart {
    pub column: String,
    /// The bin edges used, when the column's numbers were binned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    pub groups: Vec<(String, GroupCount)>,
    /// Why the column is not drawn (its groups are then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A column's counts during the pass.
#[derive(Debug, Default)]
struct ColumnCounts {
    values: BTreeMap<String, GroupCount>,
    /// More than [`MAX_DISTINCT`] values: counting stopped.
    overflow: bool,
}

impl ColumnCounts {
    fn add(&mut self, value: &str, correct: bool) {
        if self.overflow {
            return;
        }
        let value = if value.trim().is_empty() {
            EMPTY_GROUP
        } else {
            value
        };
        if !self.values.contains_key(value) && self.values.len() >= MAX_DISTINCT {
            self.overflow = true;
            self.values.clear();
            return;
        }
        let g = self.values.entry(value.to_string()).or_default();
        g.n += 1;
        g.correct += u64::from(correct);
    }

    /// The chart: every value in natural order (numbers by value, then text, the empty
    /// group last); binned at quartile edges when there are too many numbers; skipped when
    /// there are too many of anything else.
    fn chart(self, column: String) -> GroupChart {
        let mut chart = GroupChart {
            column,
            ..Default::default()
        };
        if self.overflow {
            chart.skipped = Some(format!("more than {MAX_DISTINCT} distinct values"));
            return chart;
        }
        if self.values.len() <= MAX_GROUPS {
            let mut groups: Vec<(String, GroupCount)> = self.values.into_iter().collect();
            groups.sort_by(|(a, _), (b, _)| natural(a, b));
            chart.groups = groups;
            return chart;
        }
        // A column of numbers: at least 4 in 5 of its faces' values are numbers (the rest,
        // such as FairFace's age bands "20-29" or "unknown", go where `bin` puts them).
        let numbers: Vec<(f64, u64)> = self
            .values
            .iter()
            .filter_map(|(v, c)| v.trim().parse::<f64>().ok().map(|x| (x, c.n)))
            .collect();
        let numeric: u64 = numbers.iter().map(|n| n.1).sum();
        let valued: u64 = self
            .values
            .iter()
            .filter(|(v, _)| v.as_str() != EMPTY_GROUP)
            .map(|(_, c)| c.n)
            .sum();
        let is_numeric = numeric > 0 && numeric * 5 >= valued * 4;
        let Some(numbers) = is_numeric.then_some(numbers) else {
            chart.skipped = Some(format!(
                "{} distinct values, more than {MAX_GROUPS}",
                self.values.len()
            ));
            return chart;
        };
        let binning = crate::eval::GroupBy {
            column: chart.column.clone(),
            edges: quartile_edges(numbers),
        };
        let mut bins: BTreeMap<String, GroupCount> = BTreeMap::new();
        for (v, c) in self.values {
            let key = if v == EMPTY_GROUP { v } else { binning.bin(&v) };
            let b = bins.entry(key).or_default();
            b.n += c.n;
            b.correct += c.correct;
        }
        let mut groups: Vec<(String, GroupCount)> = bins.into_iter().collect();
        groups.sort_by_key(|(g, _)| (g == EMPTY_GROUP, binning.bin_order(g)));
        chart.edges = binning.edges;
        chart.groups = groups;
        chart
    }
}

/// Natural order of group names: numbers by value first, then text, the empty group last.
fn natural(a: &str, b: &str) -> Ordering {
    let key = |s: &str| (s == EMPTY_GROUP, s.trim().parse::<f64>().ok());
    match (key(a), key(b)) {
        ((ea, Some(x)), (eb, Some(y))) => ea.cmp(&eb).then(x.total_cmp(&y)),
        ((ea, Some(_)), (eb, None)) => ea.cmp(&eb).then(Ordering::Less),
        ((ea, None), (eb, Some(_))) => ea.cmp(&eb).then(Ordering::Greater),
        ((ea, None), (eb, None)) => ea.cmp(&eb).then(a.cmp(b)),
    }
}

/// Edges at the quartiles of weighted values, rounded to whole numbers when the values
/// span more than 10 (ages: `<26, 26-35, 35-50, >=50`), distinct and rising.
fn quartile_edges(mut values: Vec<(f64, u64)>) -> Vec<f64> {
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = values.iter().map(|v| v.1).sum();
    let span = values.last().map_or(0.0, |l| l.0) - values.first().map_or(0.0, |f| f.0);
    let mut edges: Vec<f64> = Vec::new();
    for q in [1, 2, 3] {
        let want = total * q / 4;
        let mut seen = 0;
        let at = values.iter().find(|(_, n)| {
            seen += n;
            seen > want
        });
        if let Some(&(v, _)) = at {
            let v = if span > 10.0 { v.round() } else { v };
            if edges.last().is_none_or(|l| v > *l) && values.first().is_some_and(|f| v > f.0) {
                edges.push(v);
            }
        }
    }
    edges
}

/// Everything the summary page shows, counted over all rows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub rows: u64,
    pub photos: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_label: BTreeMap<String, u64>,
    /// Photos by how many faces were classified in them (0: no face or error).
    pub faces_per_photo: BTreeMap<u32, u64>,
    /// Per label, a histogram of the confidence of its faces: 20 bins over [0, 1].
    pub confidence_histogram: BTreeMap<String, Vec<u64>>,
    /// Error rows by their `error_kind` (in older outputs: the message with numbers and
    /// quoted names blanked).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Eval predictions: `confusion[true][predicted]` counts, in label order.
    pub confusion: Vec<Vec<u64>>,
    /// Eval predictions: per group column, its groups in their natural order with images
    /// and correct answers (or why the column is not drawn).
    pub groups: Vec<GroupChart>,
    /// Eval predictions: (confidence, correct) in 15 equal bins, for the reliability diagram.
    pub reliability: Vec<(u64, f64, u64)>,
}

/// What the pages show: a gallery per key (`label:female`, `near`, `no_face`, `error`,
/// `cell:female:male`), each already ordered.
pub struct Selected {
    pub summary: Summary,
    pub galleries: BTreeMap<String, Vec<FaceRow>>,
    /// Per gallery, how many of its rows it could not keep (over [`Limits::limit`]).
    pub left_out: BTreeMap<String, u64>,
}

impl Selected {
    /// Rows shown in no gallery: what the primary galleries could not keep.
    pub fn left_out_rows(&self) -> u64 {
        self.left_out
            .iter()
            .filter(|(k, _)| is_primary(k))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Page sizes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most faces kept per gallery: every face of a gallery that has no more; of a
    /// larger one, the least confident half and a seeded random sample of the rest.
    pub limit: usize,
    pub seed: u64,
}

impl Limits {
    /// The least confident faces kept per gallery.
    fn least(self) -> usize {
        self.limit - self.limit / 2
    }

    /// The randomly sampled other faces kept per gallery.
    fn random(self) -> usize {
        self.limit / 2
    }
}

/// The galleries every row is offered to exactly once (by its label, or as no face or
/// error): what they could not keep is what the report leaves out.
pub fn is_primary(key: &str) -> bool {
    key.starts_with("label:") || key == "no_face" || key == "error"
}

/// An error message as a group, for outputs without an `error_kind` column: digits and
/// quoted or path-like parts blanked, so that "file is 3000000000 bytes" and "file is 2
/// bytes" are one group.
pub fn message_pattern(message: &str) -> String {
    let mut out = String::new();
    let mut last_digit = false;
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if word.contains('/') || word.starts_with('"') || word.starts_with('\'') {
            out.push('…');
            continue;
        }
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !last_digit {
                    out.push('N');
                }
                last_digit = true;
            } else {
                out.push(c);
                last_digit = false;
            }
        }
    }
    out.chars().take(120).collect()
}

/// A face's place in a gallery ordered least confident first: its confidence, and first of
/// all (before any number) when it has none, or one that is NaN or infinite, so that a
/// face the model said nothing sensible about is never left out of the page.
fn order_of(confidence: Option<f32>) -> f32 {
    confidence
        .filter(|c| c.is_finite())
        .unwrap_or(f32::NEG_INFINITY)
}

/// Counts and selects over all rows, in one pass.
pub fn select(
    labels: &[String],
    limits: Limits,
    rows: impl FnOnce(&mut dyn FnMut(FaceRow)) -> crate::Result<()>,
) -> crate::Result<Selected> {
    let mut selector = Selector {
        labels,
        limits,
        rng: ChaCha8Rng::seed_from_u64(limits.seed),
        summary: Summary {
            confusion: vec![vec![0; labels.len()]; labels.len()],
            reliability: vec![(0, 0.0, 0); 15],
            ..Default::default()
        },
        galleries: BTreeMap::new(),
        groups: BTreeMap::new(),
        photo: None,
    };
    rows(&mut |row: FaceRow| selector.take(row))?;
    Ok(selector.finish())
}

/// The state of the pass: the counts so far, the galleries, and the photo being read.
struct Selector<'a> {
    labels: &'a [String],
    limits: Limits,
    rng: ChaCha8Rng,
    summary: Summary,
    galleries: BTreeMap<String, Gallery>,
    /// Eval predictions: per group column, its values' counts.
    groups: BTreeMap<String, ColumnCounts>,
    /// The current photo's path and how many of its rows are classified faces.
    photo: Option<(String, u32)>,
}

impl Selector<'_> {
    /// Counts one row and offers it to its galleries.
    fn take(&mut self, row: FaceRow) {
        let s = &mut self.summary;
        s.rows += 1;
        *s.by_status.entry(row.status.clone()).or_default() += 1;
        // Rows of one photo are consecutive, in face order.
        let ok = row.status == "ok";
        match &mut self.photo {
            Some((p, n)) if *p == row.path => *n += u32::from(ok),
            _ => {
                if let Some((_, n)) = self.photo.take() {
                    *s.faces_per_photo.entry(n).or_default() += 1;
                }
                s.photos += 1;
                self.photo = Some((row.path.clone(), u32::from(ok)));
            }
        }
        if let Some(truth) = &row.truth {
            self.score(&row, truth, ok);
        }
        match row.status.as_str() {
            "ok" => self.take_face(row),
            "error" => {
                let kind = row
                    .error_kind
                    .clone()
                    .unwrap_or_else(|| message_pattern(row.error.as_deref().unwrap_or("")));
                *self.summary.errors_by_kind.entry(kind).or_default() += 1;
                let id = row.id as f32;
                self.offer("error".into(), id, row);
            }
            _ => {
                let id = row.id as f32;
                self.offer("no_face".into(), id, row);
            }
        }
    }

    /// An eval prediction against its true label: groups, confusion, reliability, and the
    /// gallery of its confusion cell.
    fn score(&mut self, row: &FaceRow, truth: &str, ok: bool) {
        let s = &mut self.summary;
        let correct = ok && row.label.as_deref() == Some(truth);
        for (column, value) in &row.groups {
            self.groups
                .entry(column.clone())
                .or_default()
                .add(value, correct);
        }
        let index = |l: &str| self.labels.iter().position(|x| x == l);
        if let (Some(t), Some(p)) = (index(truth), row.label.as_deref().and_then(index)) {
            s.confusion[t][p] += 1;
        }
        if let Some(c) = row.confidence.filter(|c| ok && c.is_finite()) {
            let bin = ((c as f64 * 15.0) as usize).min(14);
            let b = &mut s.reliability[bin];
            b.0 += 1;
            b.1 += c as f64;
            b.2 += u64::from(correct);
        }
        if let (Some(p), true) = (&row.label, ok) {
            let key = format!("cell:{truth}:{p}");
            self.offer(key, order_of(row.confidence), row.clone());
        }
    }

    /// A classified face: its label's counts and gallery, and the `near` gallery when its
    /// two most likely labels are close.
    fn take_face(&mut self, row: FaceRow) {
        let s = &mut self.summary;
        let label = row.label.clone().unwrap_or_default();
        *s.by_label.entry(label.clone()).or_default() += 1;
        let histogram = s
            .confidence_histogram
            .entry(label.clone())
            .or_insert_with(|| vec![0; 20]);
        // A confidence that is not a number (NaN, infinite, null) is in no bin.
        if let Some(c) = row.confidence.filter(|c| c.is_finite()) {
            histogram[((c * 20.0) as usize).min(19)] += 1;
        }
        // Near the threshold: the two most likely labels within 0.2 of each other.
        let mut p = row.probs.clone();
        p.sort_by(|a, b| b.total_cmp(a));
        let margin = p.first().copied().unwrap_or(1.0) - p.get(1).copied().unwrap_or(0.0);
        if margin < 0.2 {
            self.offer("near".into(), margin, row.clone());
        }
        // An ensemble's members apart by 0.2 or more on some label, furthest apart first.
        if let Some(d) = row.disagreement().filter(|d| *d >= 0.2) {
            self.offer("disagree".into(), -d, row.clone());
        }
        self.offer(format!("label:{label}"), order_of(row.confidence), row);
    }

    /// Offers `row` to gallery `key` (made on first use), ordered by `order`.
    fn offer(&mut self, key: String, order: f32, row: FaceRow) {
        let limits = self.limits;
        self.galleries
            .entry(key)
            .or_insert_with(|| Gallery::new(limits.least(), limits.random()))
            .offer(order, row, &mut self.rng);
    }

    /// The counts with the last photo's, and each gallery's kept rows.
    fn finish(mut self) -> Selected {
        if let Some((_, n)) = self.photo {
            *self.summary.faces_per_photo.entry(n).or_default() += 1;
        }
        self.summary.groups = std::mem::take(&mut self.groups)
            .into_iter()
            .map(|(column, counts)| counts.chart(column))
            .collect();
        let mut left_out = BTreeMap::new();
        let galleries = self
            .galleries
            .into_iter()
            .map(|(k, g)| {
                let total = g.total;
                let kept = g.finish();
                let n = total - kept.len() as u64;
                if n > 0 {
                    left_out.insert(k.clone(), n);
                }
                (k, kept)
            })
            .collect();
        Selected {
            summary: self.summary,
            galleries,
            left_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, conf: f32) -> FaceRow {
        FaceRow {
            id,
            path: format!("p{id}.jpg"),
            status: "ok".into(),
            label: Some("female".into()),
            confidence: Some(conf),
            probs: vec![conf, 1.0 - conf],
            ..Default::default()
        }
    }

    #[test]
    fn a_gallery_keeps_the_least_confident_and_a_bounded_sample() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut g = Gallery::new(3, 5);
        for i in 0..10_000u64 {
            let conf = 0.5 + (i as f32 * 0.618).fract() * 0.5;
            g.offer(conf, row(i, conf), &mut rng);
        }
        let kept = g.finish();
        assert_eq!(kept.len(), 8);
        let least: Vec<f32> = kept[..3].iter().map(|r| r.confidence.unwrap()).collect();
        assert!(least.windows(2).all(|w| w[0] <= w[1]), "{least:?}");
        assert!(least[2] < 0.5005, "the three lowest of 10,000: {least:?}");
    }

    #[test]
    fn faces_whose_members_disagree_get_their_gallery_furthest_apart_first() {
        let with = |id: u64, a: f32, b: f32| {
            let mut r = row(id, 0.9);
            r.members = BTreeMap::from([
                ("v4".to_string(), vec![a, 1.0 - a]),
                ("dlib".to_string(), vec![b, 1.0 - b]),
            ]);
            r
        };
        let labels = vec!["female".to_string(), "male".to_string()];
        let limits = Limits { limit: 10, seed: 0 };
        let picked = select(&labels, limits, |f| {
            f(with(0, 0.9, 0.85)); // agree
            f(with(1, 0.9, 0.3)); // 0.6 apart
            f(with(2, 0.7, 0.4)); // 0.3 apart
            f(row(3, 0.6)); // a single network
            Ok(())
        })
        .unwrap();
        let ids: Vec<u64> = picked.galleries["disagree"].iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert!(row(3, 0.6).disagreement().is_none());
    }

    #[test]
    fn a_face_without_a_sensible_confidence_is_shown_first_and_in_no_histogram_bin() {
        let labels = vec!["female".to_string(), "male".to_string()];
        let limits = Limits { limit: 3, seed: 0 };
        let picked = select(&labels, limits, |f| {
            f(row(0, 0.9));
            f(row(1, f32::NAN));
            f(row(2, 0.7));
            f(row(3, f32::INFINITY));
            f(row(4, 0.8));
            Ok(())
        })
        .unwrap();
        let ids: Vec<u64> = picked.galleries["label:female"]
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ids[..2],
            [1, 3],
            "NaN and infinity first, before any number"
        );
        assert_eq!(
            ids.len(),
            3,
            "limit 3: the two least confident and one sampled"
        );
        assert_eq!(picked.left_out["label:female"], 2);
        assert_eq!(picked.left_out_rows(), 2);
        let bins: u64 = picked.summary.confidence_histogram["female"].iter().sum();
        assert_eq!(bins, 3, "only the finite confidences are binned");
        assert_eq!(picked.summary.by_label["female"], 5);
    }

    #[test]
    fn every_face_is_kept_up_to_the_limit_and_nothing_is_left_out() {
        let labels = vec!["female".to_string(), "male".to_string()];
        let limits = Limits { limit: 7, seed: 3 };
        let picked = select(&labels, limits, |f| {
            for i in 0..7 {
                f(row(i, 0.5 + i as f32 / 20.0));
            }
            Ok(())
        })
        .unwrap();
        let mut ids: Vec<u64> = picked.galleries["label:female"]
            .iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        assert_eq!(ids, (0..7).collect::<Vec<_>>());
        assert!(picked.left_out.is_empty());
        assert_eq!(picked.left_out_rows(), 0);
    }

    #[test]
    fn group_charts_sort_naturally_bin_many_numbers_and_skip_unique_text() {
        let chart = |values: &[String]| {
            let mut c = ColumnCounts::default();
            for v in values {
                c.add(v, true);
            }
            c.chart("c".into())
        };
        let names = |c: &GroupChart| c.groups.iter().map(|g| g.0.clone()).collect::<Vec<_>>();
        let few: Vec<String> = ["10", "9", "", "b", "a", "100"].map(String::from).into();
        assert_eq!(names(&chart(&few)), ["9", "10", "100", "a", "b", "(empty)"]);
        let ages: Vec<String> = (1..=90)
            .map(|a| a.to_string())
            .chain([String::new(), "20-29".into(), "unknown".into()])
            .collect();
        let binned = chart(&ages);
        assert!(binned.skipped.is_none());
        assert_eq!(binned.edges.len(), 3, "{:?}", binned.edges);
        let got = names(&binned);
        assert!(
            got[0].starts_with('<') && got[3].starts_with(">="),
            "{got:?}"
        );
        assert_eq!(got[4..], ["unknown", EMPTY_GROUP], "{got:?}");
        assert_eq!(binned.groups.iter().map(|g| g.1.n).sum::<u64>(), 93);
        let hashes: Vec<String> = (0..400).map(|i| format!("h{i:x}")).collect();
        let skipped = chart(&hashes);
        assert!(skipped.groups.is_empty());
        assert!(skipped.skipped.unwrap().contains("400 distinct"));
        let unique: Vec<String> = (0..MAX_DISTINCT + 5).map(|i| format!("u{i}")).collect();
        assert!(chart(&unique).skipped.unwrap().contains("more than"));
    }

    #[test]
    fn errors_of_one_kind_group_together() {
        assert_eq!(
            message_pattern("file is 3000 bytes, over the limit of 100 (--max-file-bytes)"),
            message_pattern("file is 99999 bytes, over the limit of 100 (--max-file-bytes)")
        );
        assert_eq!(
            message_pattern("--save-crops: writing /a/b.png: No space left"),
            "--save-crops: writing … No space left"
        );
    }
}
