//! Shards: a stable split of the inputs into N disjoint parts, so N machines (Ray tasks,
//! Kubernetes Indexed Job pods, Slurm array tasks) can share one run.

use std::fmt;

use crate::error::{Error, Result};

/// One shard of N: the files whose [`path_hash`] mod `count` equals `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// A `--shard` value as given: `K/N`, or `auto` (read from the scheduler's environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardSpec {
    Fixed(Shard),
    Auto,
}

impl std::str::FromStr for ShardSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(ShardSpec::Auto);
        }
        let bad = || format!("expected K/N with 0 <= K < N (for example 3/8), or auto; got {s:?}");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k >= n {
            return Err(bad());
        }
        Ok(ShardSpec::Fixed(Shard { index: k, count: n }))
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardSpec::Fixed(s) => s.fmt(f),
            ShardSpec::Auto => f.write_str("auto"),
        }
    }
}

impl ShardSpec {
    /// Resolves `auto` from environment variables (looked up through `var`):
    /// Kubernetes Indexed Jobs set `JOB_COMPLETION_INDEX` (our manifest also sets
    /// `JOB_COMPLETIONS`); Slurm job arrays set `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`
    /// and `SLURM_ARRAY_TASK_COUNT`.
    pub fn resolve(self, var: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let ShardSpec::Fixed(shard) = self else {
            return shard_from_env(var);
        };
        Ok(shard)
    }
}

fn shard_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Shard> {
    let num = |name: &str| -> Result<Option<u32>> {
        match var(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                Error::InvalidOption(format!("--shard auto: {name}={v:?} is not a number"))
            }),
        }
    };
    let (index, count, from) = if let Some(k) = num("JOB_COMPLETION_INDEX")? {
        let n = num("JOB_COMPLETIONS")?.ok_or_else(|| {
            Error::InvalidOption(
                "--shard auto: JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not; set it \
                 in the Job's env to the same number as spec.completions (see \
                 pipelines/k8s/indexed-job.yaml)"
                    .into(),
            )
        })?;
        (k, n, "JOB_COMPLETION_INDEX/JOB_COMPLETIONS")
    } else if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let n = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
            Error::InvalidOption(
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into(),
            )
        })?;
        (
            id.checked_sub(min).ok_or_else(|| {
                Error::InvalidOption(format!(
                    "--shard auto: SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })?,
            n,
            "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT",
        )
    } else {
        return Err(Error::InvalidOption(
            "--shard auto: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor \
             SLURM_ARRAY_TASK_ID (Slurm job array) is set; pass --shard K/N"
                .into(),
        ));
    };
    if count == 0 || index >= count {
        return Err(Error::InvalidOption(format!(
            "--shard auto: {from} give shard {index} of {count}, which does not exist \
             (index must be below the count; Slurm arrays must be contiguous)"
        )));
    }
    Ok(Shard { index, count })
}

/// FNV-1a, 64 bits, of the path relative to its input root (with `/` separators), then
/// MurmurHash3's 64-bit finaliser. Stable across machines, platforms and versions
/// (documented in docs/operations.md), and independent of where the photos are mounted.
///
/// The finaliser matters: FNV-1a's low k bits depend only on the low k bits of each byte,
/// so without it `mod 4` or `mod 8` would put `a.jpg`, `e.jpg`, `i.jpg`... in one shard.
pub fn path_hash(rel: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rel.bytes() {
        let b = if b == b'\\' { b'/' } else { b };
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Shard {
    /// The whole run as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Does this shard take the file at `rel` (relative to its input root)?
    pub fn takes(&self, rel: &str) -> bool {
        self.count <= 1 || path_hash(rel) % u64::from(self.count) == u64::from(self.index)
    }

    /// `KKKKK-of-NNNNN`, used in part-file and marker names.
    pub fn tag(&self) -> String {
        format!("{:05}-of-{:05}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k_of_n_and_refuses_nonsense() {
        assert_eq!(
            "3/8".parse::<ShardSpec>(),
            Ok(ShardSpec::Fixed(Shard { index: 3, count: 8 }))
        );
        assert_eq!("AUTO".parse::<ShardSpec>(), Ok(ShardSpec::Auto));
        for bad in ["8/8", "1/0", "x/2", "3", "-1/4", ""] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_path_lands_in_exactly_one_shard() {
        let n = 7;
        let mut sizes = vec![0; n as usize];
        for i in 0..7000 {
            let rel = format!("2026/11/{:02}/IMG_{i:05}.jpg", i % 30);
            let owners: Vec<u32> = (0..n)
                .filter(|&k| Shard { index: k, count: n }.takes(&rel))
                .collect();
            assert_eq!(owners.len(), 1, "{rel}");
            sizes[owners[0] as usize] += 1;
        }
        // Balanced within 15% of the mean.
        for s in sizes {
            assert!((850..=1150).contains(&s), "{s}");
        }
    }

    #[test]
    fn the_hash_is_pinned_and_separator_independent() {
        // Changing these values reshuffles every running sharded job: don't.
        assert_eq!(path_hash(""), 0xefd0_1f60_ba99_2926);
        assert_eq!(path_hash("a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(path_hash("dir/x.jpg"), path_hash("dir\\x.jpg"));
    }

    #[test]
    fn names_differing_in_high_bits_spread_over_power_of_two_shard_counts() {
        // Regression: plain FNV-1a put all of these in shard 1 of 4 (its low bits depend
        // only on the low bits of each byte, and a e i m q u y share theirs).
        let names: Vec<String> = "aeimquy".chars().map(|c| format!("{c}.jpg")).collect();
        let shards: std::collections::BTreeSet<u64> =
            names.iter().map(|n| path_hash(n) % 4).collect();
        assert!(shards.len() >= 3, "{shards:?}");
    }

    #[test]
    fn auto_reads_kubernetes_then_slurm() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2"), ("JOB_COMPLETIONS", "5")]);
        assert_eq!(
            ShardSpec::Auto.resolve(k8s).unwrap(),
            Shard { index: 2, count: 5 }
        );
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "11"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            ShardSpec::Auto.resolve(slurm).unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert!(ShardSpec::Auto.resolve(env(&[])).is_err());
        assert!(
            ShardSpec::Auto
                .resolve(env(&[("JOB_COMPLETION_INDEX", "1")]))
                .is_err()
        );
        assert!(
            ShardSpec::Auto
                .resolve(env(&[
                    ("SLURM_ARRAY_TASK_ID", "4"),
                    ("SLURM_ARRAY_TASK_COUNT", "4")
                ]))
                .is_err()
        );
    }
}
