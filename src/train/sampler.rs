//! The order training images are drawn in each epoch.
//!
//! `uniform` shuffles the training split. `balanced` draws with replacement so that each
//! source gets a share of the epoch proportional to its size raised to `source_power`
//! (1 = every source alike, 0 = as the data comes), and inside each source every class
//! gets the same share. Small collections and the rarer class in a source are seen more
//! often, which is what moves recall on the populations the largest source lacks.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// How each epoch's images are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sampling {
    /// Every training image once per epoch, shuffled.
    Uniform,
    /// Source- and class-balanced draws with replacement.
    Balanced { source_power: f64 },
}

/// Draws each epoch's order of training items.
pub struct Sampler {
    items: Vec<usize>,
    /// Cumulative draw weights of `items` (balanced only).
    cumulative: Option<Vec<f64>>,
    /// Expected share of an epoch per (source, label), for the log and the card.
    pub shares: BTreeMap<String, f64>,
}

impl Sampler {
    /// `items` are the training indices; `groups[i]` is item i's (source, label name).
    pub fn new(sampling: Sampling, items: &[usize], groups: &[(String, String)]) -> Sampler {
        let mut count: BTreeMap<&(String, String), usize> = BTreeMap::new();
        let mut per_source: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for &i in items {
            let c = count.entry(&groups[i]).or_default();
            *c += 1;
            let s = per_source.entry(groups[i].0.as_str()).or_default();
            s.0 += 1;
            if *c == 1 {
                s.1 += 1; // a class seen for the first time in this source
            }
        }
        let power = match sampling {
            Sampling::Uniform => 0.0,
            Sampling::Balanced { source_power } => source_power,
        };
        let total: f64 = per_source
            .values()
            .map(|(n, _)| (*n as f64).powf(power))
            .sum();
        let weight_of = |g: &(String, String)| -> f64 {
            match sampling {
                Sampling::Uniform => 1.0 / items.len().max(1) as f64,
                Sampling::Balanced { source_power } => {
                    let (n_s, classes) = per_source[g.0.as_str()];
                    let share = (n_s as f64).powf(source_power) / total;
                    share / classes as f64 / count[g] as f64
                }
            }
        };
        let shares = count
            .iter()
            .map(|(g, n)| (format!("{}/{}", g.0, g.1), weight_of(g) * *n as f64))
            .collect();
        let cumulative = match sampling {
            Sampling::Uniform => None,
            Sampling::Balanced { .. } => {
                let mut acc = 0.0;
                Some(
                    items
                        .iter()
                        .map(|&i| {
                            acc += weight_of(&groups[i]);
                            acc
                        })
                        .collect(),
                )
            }
        };
        Sampler {
            items: items.to_vec(),
            cumulative,
            shares,
        }
    }

    /// The items of one epoch (as many draws as there are training items), seeded.
    pub fn epoch(&self, seed: u64) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match &self.cumulative {
            None => {
                let mut order = self.items.clone();
                order.shuffle(&mut rng);
                order
            }
            Some(cum) => {
                let total = cum.last().copied().unwrap_or(0.0);
                (0..self.items.len())
                    .map(|_| {
                        let r = rng.random::<f64>() * total;
                        let k = cum.partition_point(|&c| c <= r).min(cum.len() - 1);
                        self.items[k]
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<(String, String)> {
        // Source "big": 100 f / 900 m; source "small": 50 f / 50 m.
        let mut g = Vec::new();
        for i in 0..1000 {
            g.push(("big".into(), if i < 100 { "f" } else { "m" }.into()));
        }
        for i in 0..100 {
            g.push(("small".into(), if i < 50 { "f" } else { "m" }.into()));
        }
        g
    }

    #[test]
    fn uniform_is_a_permutation() {
        let g = groups();
        let items: Vec<usize> = (0..g.len()).collect();
        let s = Sampler::new(Sampling::Uniform, &items, &g);
        let mut e = s.epoch(1);
        assert_ne!(e, items);
        e.sort();
        assert_eq!(e, items);
    }

    #[test]
    fn balanced_evens_classes_within_a_source_and_shares_between_sources() {
        let g = groups();
        let items: Vec<usize> = (0..g.len()).collect();
        let s = Sampler::new(Sampling::Balanced { source_power: 0.5 }, &items, &g);
        let e = s.epoch(7);
        assert_eq!(e.len(), items.len());
        assert_eq!(e, s.epoch(7), "seeded");
        let frac = |src: &str, label: &str| {
            e.iter()
                .filter(|&&i| g[i].0 == src && g[i].1 == label)
                .count() as f64
                / e.len() as f64
        };
        // Shares: big sqrt(1000)=31.6, small sqrt(100)=10 -> 0.76 / 0.24, halved per class.
        let big = 1000f64.sqrt() / (1000f64.sqrt() + 10.0);
        for (src, share) in [("big", big), ("small", 1.0 - big)] {
            for label in ["f", "m"] {
                let got = frac(src, label);
                assert!((got - share / 2.0).abs() < 0.03, "{src}/{label}: {got}");
                assert!((s.shares[&format!("{src}/{label}")] - share / 2.0).abs() < 1e-9);
            }
        }
    }
}
