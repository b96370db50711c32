//! The fingerprint index of incremental job runs (`facebatch run`): what earlier successful
//! runs classified, read in step with the walk, so that a run's memory does not grow with
//! the number of files earlier runs saw.
//!
//! `OUTPUT/_index/seen-KKKKK-of-NNNNN.index` (Parquet, named so that `OUTPUT/*/*.parquet`
//! reaches only the rows) holds, for shard K of N of a job, one row per
//! file that a successful run of that shard classified: `root`, `path` and the fingerprint
//! (`bytes`, `modified`) its newest row records. Error rows count as they always did: a
//! row with a size and a time is an entry (the file is not retried while unchanged), a row
//! without (an unreadable file) is not. The rows come in sections, one per root, each a
//! run of row groups; inside a section the paths are in walk order ([`walk_order`]).
//!
//! A run reads the section of each input it walks with a cursor that only moves forward
//! (a merge join, [`Join`]): a walked file whose fingerprint equals its entry is skipped as
//! unchanged. As it walks, the run streams the new index into its staging area: the
//! fingerprint of every file it gives a row, and every earlier entry the cursor passes
//! without a match (files gone from the inputs, files not read, roots not walked), so the
//! index keeps "every file ever classified". When the shard's part and marker are
//! published, the new index is renamed into place (`dataset.rs`); an interrupted or failed
//! run publishes neither.
//!
//! The index's metadata lists the parts it covers (path under `OUTPUT`, run id). A part with
//! a success marker that it does not cover (written by an older facebatch, by a run that
//! crashed between its marker and its index, or under another shard count) is read as
//! before, into memory, and merged with the index (it is newer, so its fingerprint wins);
//! the next index covers it. The index is set aside (with a warning) and every part read
//! instead when it is damaged, of another format or shard, when a part it covers is gone or
//! was replaced (a deleted partition: its files are classified again, as before), or when
//! a part it does not cover finished before one it does (runs of one shard that overlapped).
//!
//! Whatever goes wrong with the index (damage, an unexpected order, a lost write), the
//! result is only that files are classified again: an entry skips a file only on an equal
//! path and an equal fingerprint, and the entry of a file is always its newest row's.

mod index;

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use self::index::{Cover, Index, IndexCursor, IndexWriter};
pub use self::index::{INDEX_DIR, index_path, meta};
use super::output::{self, Fingerprint};
use super::shard::Shard;
use crate::error::{Error, Result};

/// Orders two path keys ([`crate::fsutil::path_key`]) as the walk meets them: walkdir sorts
/// the names in each folder by their bytes and goes depth first, so paths compare component
/// by component (`a/x` before `a-b`, though `/` is above `-`). That is the byte order of the
/// unescaped paths with the separator ranked below every other byte.
pub fn walk_order(a: &str, b: &str) -> Ordering {
    let rank = |c: u8| if c == b'/' { 0 } else { u16::from(c) + 1 };
    if !a.contains('\\') && !b.contains('\\') {
        // Keys without an escape are the paths themselves.
        return a.bytes().map(rank).cmp(b.bytes().map(rank));
    }
    crate::fsutil::key_bytes(a)
        .map(rank)
        .cmp(crate::fsutil::key_bytes(b).map(rank))
}

/// Where a run writing `out` (the staged part, in dataset mode) writes its new index until
/// the part is published.
pub fn staged(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".seen.index");
    out.with_file_name(name)
}

/// What earlier successful runs of one shard of a job classified: the shard's index, and
/// the files of the parts it does not cover, in memory.
pub struct Seen {
    output: PathBuf,
    shard: Shard,
    /// This run's part, as a key under `output`: the new index covers it.
    part: String,
    index: Option<Index>,
    /// The files of the parts the index does not cover that this shard takes.
    extra: Extras,
    /// The parts the new index covers, besides this run's.
    covers: Vec<Cover>,
    /// With `--retry-errors`: by root, the paths whose newest earlier row is an error row;
    /// they are classified again even when unchanged.
    retry: HashMap<String, HashSet<String>>,
}

/// The files of the parts an index does not cover, one entry per file (its newest), by
/// root and then in walk order.
#[derive(Default)]
struct Extras {
    entries: Vec<Extra>,
    /// Each root, with its range in `entries`.
    roots: Vec<(String, Range<usize>)>,
}

/// An entry of a part the index does not cover.
struct Extra {
    root: u32,
    /// The part's position in reading order (later parts are newer).
    part: u32,
    key: String,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seen")
            .field("output", &self.output)
            .field("shard", &self.shard)
            .field("index", &self.index.as_ref().map(|i| &i.path))
            .field("extra", &self.extra.entries.len())
            .field("covers", &self.covers.len())
            .finish()
    }
}

/// A part file with its success marker, somewhere under the output.
struct Published {
    path: PathBuf,
    /// Its path under the output, as a key.
    rel: String,
    /// The shard its name gives (`part-KKKKK-of-NNNNN.parquet`).
    shard: Option<Shard>,
    run_id: Option<String>,
    finished_at: Option<String>,
}

/// What a marker says of its run (read leniently: a marker this build cannot read leaves
/// its part uncovered, so it is read every time, as before).
#[derive(Default, Deserialize)]
struct MarkerIds {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    finished_at: Option<String>,
}

/// `KKKKK-of-NNNNN` as a shard.
fn parse_tag(tag: &str) -> Option<Shard> {
    let (k, n) = tag.split_once("-of-")?;
    let (index, count) = (k.parse().ok()?, n.parse().ok()?);
    (index < count).then_some(Shard { index, count })
}

/// Every part file under `output` with its success marker, in any partition
/// (`_`-prefixed folders, such as staging areas and the index, are not looked into).
fn published(output: &Path) -> Result<Vec<Published>> {
    let mut found = Vec::new();
    if !output.is_dir() {
        return Ok(found);
    }
    let walker = walkdir::WalkDir::new(output)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !e.file_name().to_string_lossy().starts_with(['_', '.'])
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            Error::io(
                format!("listing {}", output.display()),
                std::io::Error::other(e.to_string()),
            )
        })?;
        let name = entry.file_name().to_string_lossy();
        let Some(tag) = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
        else {
            continue;
        };
        let marker = entry.path().with_file_name(format!("_SUCCESS-{tag}.json"));
        if !marker.is_file() {
            continue;
        }
        let ids = super::staging::read_json::<MarkerIds>(&marker)
            .ok()
            .flatten()
            .unwrap_or_default();
        let rel = entry.path().strip_prefix(output).unwrap_or(entry.path());
        found.push(Published {
            rel: crate::fsutil::path_key(rel),
            shard: parse_tag(tag),
            run_id: ids.run_id,
            finished_at: ids.finished_at,
            path: entry.into_path(),
        });
    }
    Ok(found)
}

impl Seen {
    /// Reads what earlier successful runs of `shard` under `output` classified: the shard's
    /// index when it can be trusted, and the parts it does not cover. `part` is the part
    /// this run will publish. A missing, damaged or stale index is not an error: it is set
    /// aside with a warning, and the parts are read instead.
    pub fn open(output: &Path, shard: Shard, part: &Path, retry: Retry) -> Result<Seen> {
        let parts = published(output)?;
        // Parts of another shard of the same count hold only files this shard never takes
        // (the shard of a path is fixed: `shard::path_hash`).
        let relevant: Vec<&Published> = parts
            .iter()
            .filter(|p| {
                p.shard
                    .is_none_or(|s| s.count != shard.count || s.index == shard.index)
            })
            .collect();
        let path = index_path(output, shard);
        let index = match Index::open(&path, shard).and_then(|i| match i {
            Some(i) => i.check(&relevant).map(|()| Some(i)),
            None => Ok(None),
        }) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(index = %path.display(), error = %e, "the fingerprint index is set aside: reading every earlier part instead (this run needs more memory; its own index replaces it)");
                None
            }
        };
        let retry = match retry {
            Retry::Errors => error_files(&relevant, shard)?,
            Retry::None => HashMap::new(),
        };
        let covered: HashSet<&str> = index
            .iter()
            .flat_map(|i| i.covers.iter().map(|c| c.part.as_str()))
            .collect();
        let mut uncovered: Vec<&Published> = relevant
            .into_iter()
            .filter(|p| !covered.contains(p.rel.as_str()))
            .collect();
        if index.is_none() && uncovered.iter().any(|p| p.shard == Some(shard)) && !path.exists() {
            tracing::warn!(index = %path.display(), parts = uncovered.len(), "no fingerprint index for this shard yet: reading every earlier part instead (this run needs more memory; its own index replaces it)");
        }
        // Oldest first, so that a newer part's fingerprint of a file replaces an older one.
        oldest_first(&mut uncovered);
        let extra = read_parts(&uncovered, shard)?;

        let part_key = crate::fsutil::path_key(part.strip_prefix(output).unwrap_or(part));
        let mut covers: Vec<Cover> = index.as_ref().map(|i| i.covers.clone()).unwrap_or_default();
        covers.extend(uncovered.iter().filter_map(|p| {
            Some(Cover {
                part: p.rel.clone(),
                run_id: p.run_id.clone()?,
            })
        }));
        covers.retain(|c| c.part != part_key);
        tracing::info!(
            index = %index.as_ref().map_or("none".into(), |i| i.path.display().to_string()),
            parts_indexed = covered.len(),
            parts_read = uncovered.len(),
            files_in_memory = extra.entries.len(),
            "what earlier runs classified"
        );
        Ok(Seen {
            output: output.to_path_buf(),
            shard,
            part: part_key,
            index,
            extra,
            covers,
            retry,
        })
    }

    /// Where this shard's index lives.
    pub fn index_path(&self) -> PathBuf {
        index_path(&self.output, self.shard)
    }

    /// Where an older version kept this shard's index (removed once a new one is in place).
    pub fn legacy_index_path(&self) -> PathBuf {
        index::legacy_index_path(&self.output, self.shard)
    }
}

/// Sorts parts oldest first, so that a newer part's row of a file wins over an older one's.
fn oldest_first(parts: &mut [&Published]) {
    parts.sort_by(|a, b| (&a.finished_at, &a.rel).cmp(&(&b.finished_at, &b.rel)));
}

/// Which unchanged files an incremental run classifies again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retry {
    /// None: an unchanged file keeps its earlier rows, error rows included.
    #[default]
    None,
    /// Files whose newest earlier row is an error row (`facebatch run --retry-errors`).
    Errors,
}

/// The files of `parts` that `shard` takes whose newest row is an error row. Reads every
/// part (the index holds no status); holds only the error files.
fn error_files(parts: &[&Published], shard: Shard) -> Result<HashMap<String, HashSet<String>>> {
    let mut parts = parts.to_vec();
    oldest_first(&mut parts);
    let mut errors: HashMap<String, HashSet<String>> = HashMap::new();
    for p in parts {
        output::for_each_file(&p.path, |root, path, _, error| {
            if !shard.takes(path) {
                return;
            }
            if error {
                errors
                    .entry(root.to_string())
                    .or_default()
                    .insert(path.to_string());
            } else if let Some(paths) = errors.get_mut(root) {
                paths.remove(path);
            }
        })?;
    }
    tracing::info!(
        files = errors.values().map(HashSet::len).sum::<usize>(),
        "--retry-errors: the files whose newest row is an error are classified again"
    );
    Ok(errors)
}

/// The files of `parts` (oldest first) that `shard` takes, one entry per file (its newest
/// fingerprint), sorted by root and then in walk order; and each root's range.
fn read_parts(parts: &[&Published], shard: Shard) -> Result<Extras> {
    let mut roots: Vec<String> = Vec::new();
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut extra = Vec::new();
    for (n, p) in parts.iter().enumerate() {
        output::for_each_file(&p.path, |root, path, fingerprint, _| {
            let Some(fingerprint) = fingerprint.filter(|_| shard.takes(path)) else {
                return;
            };
            let root = *ids.entry(root.to_string()).or_insert_with(|| {
                roots.push(root.to_string());
                roots.len() as u32 - 1
            });
            extra.push(Extra {
                root,
                part: n as u32,
                key: path.to_string(),
                fingerprint,
            });
        })?;
    }
    // By root, then path; on one path the newest part first, and only it is kept.
    extra.sort_by(|a, b| {
        (roots[a.root as usize].as_str(), a.root)
            .cmp(&(roots[b.root as usize].as_str(), b.root))
            .then_with(|| walk_order(&a.key, &b.key))
            .then_with(|| b.part.cmp(&a.part))
    });
    extra.dedup_by(|later, kept| later.root == kept.root && later.key == kept.key);
    let mut ranges: Vec<(String, Range<usize>)> = Vec::new();
    for (i, e) in extra.iter().enumerate() {
        match ranges.last_mut() {
            Some((r, range)) if *r == roots[e.root as usize] => range.end = i + 1,
            _ => ranges.push((roots[e.root as usize].clone(), i..i + 1)),
        }
    }
    Ok(Extras {
        entries: extra,
        roots: ranges,
    })
}

/// The earlier entries of one root, in walk order: the index's section merged with the
/// entries of the parts it does not cover (newer: on the same path, theirs wins).
struct Old {
    seen: Arc<Seen>,
    index: Option<IndexCursor>,
    extra: Range<usize>,
    /// The head entry, once loaded (`head` is `None` at the end).
    key: String,
    head: Option<Fingerprint>,
    loaded: bool,
}

impl Old {
    fn new(seen: &Arc<Seen>, root: &str) -> Old {
        let index = seen.index.as_ref().and_then(|ix| {
            let section = ix.sections.iter().find(|s| s.root == root)?;
            IndexCursor::open(ix, section)
                .inspect_err(|e| {
                    tracing::warn!(index = %ix.path.display(), root, error = %e, "the fingerprint index cannot be read: this root's files are classified again");
                })
                .ok()
        });
        let extra = seen
            .extra
            .roots
            .iter()
            .find(|(r, _)| r == root)
            .map_or(0..0, |(_, range)| range.clone());
        Old {
            seen: seen.clone(),
            index,
            extra,
            key: String::new(),
            head: None,
            loaded: false,
        }
    }

    fn peek(&mut self) -> Option<(&str, Fingerprint)> {
        if !self.loaded {
            self.load();
        }
        Some((self.key.as_str(), self.head?))
    }

    fn pop(&mut self) {
        self.loaded = false;
    }

    fn load(&mut self) {
        self.loaded = true;
        self.head = None;
        let extra = self.seen.extra.entries[self.extra.clone()].first();
        let index = self.index.as_mut().and_then(IndexCursor::peek);
        let (key, fingerprint, from_index, from_extra) = match (index, extra) {
            (None, None) => return,
            (Some((k, f)), None) => (k, f, true, false),
            (None, Some(e)) => (e.key.as_str(), e.fingerprint, false, true),
            (Some((k, f)), Some(e)) => match walk_order(k, &e.key) {
                Ordering::Less => (k, f, true, false),
                Ordering::Greater => (e.key.as_str(), e.fingerprint, false, true),
                Ordering::Equal => (e.key.as_str(), e.fingerprint, true, true),
            },
        };
        self.key.clear();
        self.key.push_str(key);
        self.head = Some(fingerprint);
        if from_index && let Some(c) = self.index.as_mut() {
            c.advance();
        }
        if from_extra {
            self.extra.start += 1;
        }
    }
}

/// The merge join of a run's walk with what earlier runs classified (see the module's
/// documentation). The walk calls [`Join::find`] for each file of its shard, in walk
/// order, then [`Join::keep`] with the fingerprint the new index keeps for it, and
/// [`Join::finish`] once it has walked everything.
pub struct Join {
    seen: Arc<Seen>,
    /// `None` when the new index could not be started: the run goes on without one.
    writer: Option<IndexWriter>,
    current: Option<Current>,
    /// The roots whose section the new index holds.
    written: HashSet<String>,
}

/// The input being walked.
struct Current {
    input: usize,
    old: Old,
    /// The new index gets this root's entries (not when the root was walked before: an
    /// input given twice).
    write: bool,
    /// The last key looked up: what [`Join::keep`] keeps.
    key: String,
}

impl Join {
    /// Starts the join of this run (`run_id`), writing the new index to `staged`. A stale
    /// index left there by an earlier attempt is removed first, so only this run's can be
    /// published.
    pub fn new(seen: Arc<Seen>, staged: PathBuf, run_id: &str) -> Join {
        let mut covers = seen.covers.clone();
        covers.push(Cover {
            part: seen.part.clone(),
            run_id: run_id.to_string(),
        });
        let writer = match fs_err::remove_file(&staged) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => IndexWriter::create(staged, seen.shard, covers),
        };
        let writer = writer
            .inspect_err(|e| tracing::warn!(error = %e, "cannot write a new fingerprint index: the next run reads this run's part instead"))
            .ok();
        Join {
            seen,
            writer,
            current: None,
            written: HashSet::new(),
        }
    }

    /// The fingerprint earlier runs recorded for `key` in `root` (input number `input`),
    /// if any. The earlier entries before it that the walk passed are carried into the new
    /// index.
    pub fn find(&mut self, input: usize, root: &str, key: &str) -> Option<Fingerprint> {
        if self.current.as_ref().is_none_or(|c| c.input != input) {
            self.enter(input, root);
        }
        let cur = self.current.as_mut()?;
        cur.key.clear();
        cur.key.push_str(key);
        loop {
            let (k, fingerprint) = cur.old.peek()?;
            match walk_order(k, key) {
                Ordering::Less => {
                    if cur.write
                        && let Some(w) = self.writer.as_mut()
                    {
                        w.push(k, fingerprint);
                    }
                    cur.old.pop();
                }
                Ordering::Equal => {
                    cur.old.pop();
                    let retry = self.seen.retry.get(root).is_some_and(|p| p.contains(key));
                    return (!retry).then_some(fingerprint);
                }
                Ordering::Greater => return None,
            }
        }
    }

    /// What the new index keeps for the file last found: the fingerprint of the row this
    /// run gives it, else (unchanged, or a row without one) the earlier one; `None`: no
    /// entry.
    pub fn keep(&mut self, fingerprint: Option<Fingerprint>) {
        if let (Some(cur), Some(w), Some(f)) =
            (self.current.as_ref(), self.writer.as_mut(), fingerprint)
            && cur.write
        {
            w.push(&cur.key, f);
        }
    }

    /// After the whole walk: carries the rest of the entries (roots not walked included)
    /// and writes the new index to its staged name.
    pub fn finish(mut self) -> Result<()> {
        self.close_section();
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let seen = self.seen.clone();
        let roots = seen
            .index
            .iter()
            .flat_map(|i| i.sections.iter().map(|s| s.root.as_str()))
            .chain(seen.extra.roots.iter().map(|(r, _)| r.as_str()));
        for root in roots {
            if self.written.insert(root.to_string()) {
                writer.start_section(root);
                drain(&mut Old::new(&seen, root), &mut writer);
            }
        }
        writer.close()
    }

    fn enter(&mut self, input: usize, root: &str) {
        self.close_section();
        let write = self.writer.is_some() && self.written.insert(root.to_string());
        if write && let Some(w) = self.writer.as_mut() {
            w.start_section(root);
        }
        self.current = Some(Current {
            input,
            old: Old::new(&self.seen, root),
            write,
            key: String::new(),
        });
    }

    /// Carries what is left of the current root's earlier entries.
    fn close_section(&mut self) {
        if let Some(mut cur) = self.current.take()
            && cur.write
            && let Some(w) = self.writer.as_mut()
        {
            drain(&mut cur.old, w);
        }
    }
}

fn drain(old: &mut Old, w: &mut IndexWriter) {
    while let Some((k, fingerprint)) = old.peek() {
        w.push(k, fingerprint);
        old.pop();
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use arrow::array::{
        ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
    };
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    use super::index::schema;
    use super::*;

    #[test]
    fn walk_order_compares_component_by_component_on_the_unescaped_bytes() {
        use Ordering::*;
        for (a, b, want) in [
            ("a/x.jpg", "a-b.jpg", Less),   // `/` is above `-`, but `a` ends first
            ("a/b/c.jpg", "a/b.jpg", Less), // the folder `b` before the file `b.jpg`
            ("a", "a/b", Less),
            ("A.jpg", "a.jpg", Less),             // bytes: upper case first
            ("z.jpg", "\u{e9}.jpg", Less),        // é is 0xc3 0xa9
            ("\\xff.jpg", "\u{e9}.jpg", Greater), // the byte 0xff, escaped
            ("\\\\.jpg", "].jpg", Less),          // a backslash (0x5c), escaped, before 0x5d
            ("a\\xff/b", "a\\xff-c", Less),
            ("x\\x41.jpg", "x\\x41.jpg", Equal),
            ("same", "same", Equal),
        ] {
            assert_eq!(walk_order(a, b), want, "{a} vs {b}");
            assert_eq!(walk_order(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    /// The comparator against the walk itself, on names that byte order of the whole path,
    /// or of the escaped key, would put elsewhere.
    #[cfg(unix)]
    #[test]
    fn walk_order_is_the_order_in_which_the_walk_meets_files() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let names: &[&[u8]] = &[
            b"a-b/x.jpg",
            b"a/x.jpg",
            b"a/b/c.jpg",
            b"a/b.jpg",
            b"a.jpg",
            b"a b.jpg",
            b"A.jpg",
            b"B/c.jpg",
            b"e.jpg",
            "\u{e9}.jpg".as_bytes(),
            "\u{e9}t\u{e9}/\u{1f600}.jpg".as_bytes(),
            b"z.jpg",
            b"\xff.jpg",
            b"\xfe/y.jpg",
            b"back\\slash.jpg",
            b"back.jpg",
            b"back]s.jpg",
            b"lit\\x41.jpg",
            b"litA.jpg",
        ];
        for n in names {
            let p = tmp.path().join(std::ffi::OsStr::from_bytes(n));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
        }
        let config = super::super::stages::walk::SourceConfig {
            inputs: vec![crate::classify::Input::Path(tmp.path().to_path_buf())],
            follow_symlinks: false,
        };
        let keys: Vec<String> = super::super::stages::walk::walk(&config)
            .map(|w| crate::fsutil::path_key(&w.unwrap().rel))
            .collect();
        assert_eq!(keys.len(), names.len());
        for pair in keys.windows(2) {
            assert_eq!(walk_order(&pair[0], &pair[1]), Ordering::Less, "{pair:?}");
        }
    }

    const ALL: Shard = Shard::ALL;

    /// A walked file: input number, root, path key, its fingerprint now (`None`: unreadable).
    type Walked<'a> = (usize, &'a str, &'a str, Option<Fingerprint>);

    /// A job run of shard `shard` on `day` as the walk stage and dataset mode do it: the
    /// join over `walked`, a part with the rows of the files it classifies, the marker, and
    /// (when `index`) the new index renamed into place. Returns the files it classified.
    fn run_as(out: &Path, shard: Shard, day: &str, walked: &[Walked], index: bool) -> Vec<String> {
        let dir = out.join(format!("dt={day}"));
        let part = dir.join(format!("part-{}.parquet", shard.tag()));
        let seen = Arc::new(Seen::open(out, shard, &part, Retry::None).unwrap());
        std::fs::create_dir_all(dir.join("_staging")).unwrap();
        let staged = staged(&dir.join("_staging").join("part.parquet"));
        let mut join = Join::new(seen.clone(), staged.clone(), day);
        let mut rows = Vec::new();
        for &(input, root, key, now) in walked {
            if !shard.takes(key) {
                continue;
            }
            let earlier = join.find(input, root, key);
            if earlier.is_some() && now == earlier {
                join.keep(now);
                continue;
            }
            join.keep(now.or(earlier));
            rows.push((root, key, now));
        }
        join.finish().unwrap();
        write_part(&part, &rows);
        let marker = serde_json::json!({"run_id": day, "finished_at": format!("{day}T00:00:00Z")});
        std::fs::write(
            dir.join(format!("_SUCCESS-{}.json", shard.tag())),
            marker.to_string(),
        )
        .unwrap();
        if index {
            std::fs::create_dir_all(out.join(INDEX_DIR)).unwrap();
            std::fs::rename(&staged, seen.index_path()).unwrap();
        }
        rows.iter().map(|(r, k, _)| format!("{r}:{k}")).collect()
    }

    fn run(out: &Path, day: &str, walked: &[Walked]) -> Vec<String> {
        run_as(out, ALL, day, walked, true)
    }

    /// A part file with the columns incremental runs read.
    fn write_part(path: &Path, rows: &[(&str, &str, Option<Fingerprint>)]) {
        let column = |a: ArrayRef| a;
        let batch = RecordBatch::try_from_iter([
            (
                "root",
                column(Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0),
                ))),
            ),
            (
                "path",
                column(Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1),
                ))),
            ),
            (
                "bytes",
                column(Arc::new(UInt64Array::from_iter(
                    rows.iter().map(|r| r.2.map(|f| f.0)),
                ))),
            ),
            (
                "modified",
                column(Arc::new(
                    TimestampMicrosecondArray::from_iter(rows.iter().map(|r| r.2.map(|f| f.1)))
                        .with_timezone("UTC"),
                )),
            ),
        ])
        .unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    /// The entries of shard `shard`'s index, as `root:path=bytes`.
    fn entries(out: &Path, shard: Shard) -> Vec<String> {
        let mut all = Vec::new();
        output::for_each_file(&index_path(out, shard), |root, path, f, _| {
            all.push(format!("{root}:{path}={}", f.unwrap().0));
        })
        .unwrap();
        all
    }

    fn fp(bytes: u64) -> Option<Fingerprint> {
        Some((bytes, 1_000_000))
    }

    /// Day 1 of the join tests: two roots, five files, one unreadable.
    const DAY1: &[Walked] = &[
        (0, "/r1", "a.jpg", Some((1, 1_000_000))),
        (0, "/r1", "b/c.jpg", Some((2, 1_000_000))),
        (0, "/r1", "b-d.jpg", Some((3, 1_000_000))),
        (0, "/r1", "gone.jpg", Some((4, 1_000_000))),
        (0, "/r1", "locked.jpg", None),
        (1, "/r2", "x.jpg", Some((5, 1_000_000))),
    ];

    #[test]
    fn the_join_skips_unchanged_files_and_carries_what_it_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        assert_eq!(
            run(out, "2026-01-01", DAY1).len(),
            6,
            "the first run classifies all"
        );
        assert_eq!(
            entries(out, ALL),
            [
                "/r1:a.jpg=1",
                "/r1:b/c.jpg=2",
                "/r1:b-d.jpg=3",
                "/r1:gone.jpg=4",
                "/r2:x.jpg=5"
            ],
            "a file without a size and time has no entry"
        );
        // Day 2: the inputs in the other order; b/c changed, gone.jpg deleted, new.jpg new.
        let day2: &[Walked] = &[
            (0, "/r2", "x.jpg", fp(5)),
            (1, "/r1", "a.jpg", fp(1)),
            (1, "/r1", "b/c.jpg", fp(20)),
            (1, "/r1", "b-d.jpg", fp(3)),
            (1, "/r1", "locked.jpg", None),
            (1, "/r1", "new.jpg", fp(6)),
        ];
        assert_eq!(
            run(out, "2026-01-02", day2),
            ["/r1:b/c.jpg", "/r1:locked.jpg", "/r1:new.jpg"]
        );
        assert_eq!(
            entries(out, ALL),
            [
                "/r2:x.jpg=5",
                "/r1:a.jpg=1",
                "/r1:b/c.jpg=20",
                "/r1:b-d.jpg=3",
                "/r1:gone.jpg=4",
                "/r1:new.jpg=6"
            ],
            "sections in walk order, the deleted file carried over"
        );
        // Day 3: only /r1 is walked, and gone.jpg is back unchanged: /r2 is carried whole.
        let day3: &[Walked] = &[
            (0, "/r1", "a.jpg", fp(1)),
            (0, "/r1", "gone.jpg", fp(4)),
            (0, "/r1", "new.jpg", fp(7)),
        ];
        assert_eq!(run(out, "2026-01-03", day3), ["/r1:new.jpg"]);
        let e = entries(out, ALL);
        assert!(
            e.contains(&"/r2:x.jpg=5".into()) && e.contains(&"/r1:new.jpg=7".into()),
            "{e:?}"
        );
        assert_eq!(e.len(), 6);
        // An input given twice: the second walk finds the same entries, the index is the same.
        let twice: Vec<Walked> = day3.iter().chain(day3).copied().collect();
        let twice: Vec<Walked> = twice
            .into_iter()
            .enumerate()
            .map(|(i, (_, r, k, f))| (i / 3, r, k, f))
            .collect();
        assert!(run(out, "2026-01-04", &twice).is_empty());
        assert_eq!(entries(out, ALL).len(), 6);
    }

    #[test]
    fn without_its_index_a_run_reads_the_parts_and_writes_one_that_covers_them() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        run(out, "2026-01-01", DAY1);
        let day2: &[Walked] = &[(0, "/r1", "a.jpg", fp(10))];
        // Day 2 stops between its marker and its index: the index does not cover its part.
        assert_eq!(run_as(out, ALL, "2026-01-02", day2, false), ["/r1:a.jpg"]);
        // Day 3: a.jpg, as day 2 saw it, is unchanged (day 2's part is newer than the index).
        let mut day3 = DAY1.to_vec();
        day3[0].3 = fp(10);
        let locked = ["/r1:locked.jpg"]; // no fingerprint: tried every run
        assert_eq!(run(out, "2026-01-03", &day3), locked);
        assert_eq!(entries(out, ALL)[0], "/r1:a.jpg=10");
        let md = output::read_metadata(&index_path(out, ALL)).unwrap();
        let covers: Vec<Cover> = serde_json::from_str(&md[meta::COVERS]).unwrap();
        let parts: Vec<&str> = covers.iter().map(|c| c.part.as_str()).collect();
        assert_eq!(
            parts,
            [
                "dt=2026-01-01/part-00000-of-00001.parquet",
                "dt=2026-01-02/part-00000-of-00001.parquet",
                "dt=2026-01-03/part-00000-of-00001.parquet"
            ]
        );
        // No index at all (deleted), or a damaged one: the parts are read, nothing is lost.
        for damage in [None, Some(&b"not parquet"[..])] {
            std::fs::remove_file(index_path(out, ALL)).unwrap();
            if let Some(bytes) = damage {
                std::fs::write(index_path(out, ALL), bytes).unwrap();
            }
            let day = if damage.is_none() {
                "2026-01-04"
            } else {
                "2026-01-05"
            };
            assert_eq!(run(out, day, &day3), locked, "{damage:?}");
            assert_eq!(entries(out, ALL).len(), 5);
        }
    }

    #[test]
    fn an_index_whose_parts_are_gone_or_older_than_an_uncovered_one_is_set_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        run(out, "2026-01-01", &DAY1[..1]);
        run(out, "2026-01-02", &DAY1[1..2]);
        // A deleted partition: its files are new again, as when every part was read.
        std::fs::remove_dir_all(out.join("dt=2026-01-01")).unwrap();
        assert_eq!(run(out, "2026-01-03", &DAY1[..2]), ["/r1:a.jpg"]);
        // An uncovered part that finished before a covered one (runs that overlapped): its
        // a.jpg (9 bytes) is older than day 3's (1 byte), which the index holds. Trusted,
        // the index would let the uncovered part win, and skip a.jpg at 9 bytes; the parts
        // read in the order they finished say that a.jpg changed.
        let day = out.join("dt=2026-01-04");
        std::fs::create_dir_all(&day).unwrap();
        write_part(
            &day.join("part-00000-of-00001.parquet"),
            &[("/r1", "a.jpg", fp(9))],
        );
        let marker = serde_json::json!({"run_id": "early", "finished_at": "2026-01-02T12:00:00Z"});
        std::fs::write(day.join("_SUCCESS-00000-of-00001.json"), marker.to_string()).unwrap();
        let walked: &[Walked] = &[(0, "/r1", "a.jpg", fp(9)), (0, "/r1", "b/c.jpg", fp(2))];
        assert_eq!(run(out, "2026-01-05", walked), ["/r1:a.jpg"]);
    }

    #[test]
    fn other_shards_parts_are_not_read_and_another_count_is_filtered() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        let walked: Vec<(String, Option<Fingerprint>)> =
            (0..40).map(|i| (format!("f{i:02}.jpg"), fp(i))).collect();
        let walked: Vec<Walked> = walked
            .iter()
            .map(|(k, f)| (0, "/r", k.as_str(), *f))
            .collect();
        let (s0, s1) = (Shard { index: 0, count: 2 }, Shard { index: 1, count: 2 });
        let n0 = run_as(out, s0, "2026-01-01", &walked, true).len();
        let n1 = run_as(out, s1, "2026-01-01", &walked, true).len();
        assert_eq!(n0 + n1, 40);
        assert_eq!(
            entries(out, s0).len(),
            n0,
            "each shard's index holds its own files"
        );
        // Shard 0's index covers only shard 0's parts, and is still trusted.
        let seen = Seen::open(
            out,
            s0,
            &out.join("dt=2026-01-02/part-00000-of-00002.parquet"),
            Retry::None,
        )
        .unwrap();
        assert!(seen.index.is_some() && seen.extra.entries.is_empty());
        // A new count: the old parts are read, each shard keeps only its own files.
        let s = Shard { index: 1, count: 3 };
        assert!(run_as(out, s, "2026-01-02", &walked, true).is_empty());
        let seen = Seen::open(
            out,
            s,
            &out.join("dt=2026-01-03/part-00001-of-00003.parquet"),
            Retry::None,
        )
        .unwrap();
        assert_eq!(seen.extra.entries.len(), 0, "its index covers them now");
        assert_eq!(
            entries(out, s).len(),
            walked.iter().filter(|w| s.takes(w.2)).count()
        );
    }

    #[test]
    fn a_section_out_of_walk_order_ends_where_the_order_breaks() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        run(out, "2026-01-01", &DAY1[..4]);
        // Rewrite the index with the same metadata and b-d.jpg before b/c.jpg.
        let path = index_path(out, ALL);
        let md = output::read_metadata(&path).unwrap();
        let rows = [
            ("a.jpg", 1),
            ("b-d.jpg", 3),
            ("b/c.jpg", 2),
            ("gone.jpg", 4),
        ];
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "/r1"))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|_| 1_000_000))
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let kv: Vec<KeyValue> = md
            .iter()
            .filter(|(k, _)| k.starts_with("facebatch."))
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect();
        let props = WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .build();
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        // The parts are still covered: a.jpg and b-d.jpg are found; from b/c.jpg on the
        // section is unknown, so those files are classified again.
        assert_eq!(
            run(out, "2026-01-02", &DAY1[..4]),
            ["/r1:b/c.jpg", "/r1:gone.jpg"]
        );
    }
}
