//! Where results live: a journal of finished points, the result files made from it, and the
//! manifest that lets shards merge.
//!
//! Invariants:
//! - A point is committed by appending one line to `points.jsonl` holding all of its rows; a
//!   line cut short by a kill does not parse and is dropped on the next open, so a point's rows
//!   are kept together or not at all.
//! - Each journal line carries the point's content hash (every input that determines it and the
//!   model's version); a rerun reuses a point only when its key and hash both match.
//! - `results.csv`, `results.jsonl`, `summary.md`, the plots and the journal itself are written
//!   from the journal in point order, each to a temporary file renamed into place, so a kill at
//!   any moment leaves files that a rerun turns into the same bytes as an uninterrupted run,
//!   whatever the thread or shard count.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, Point, Row};
use crate::sweep::Shard;

/// Bumped whenever a change to the models moves any number, so that resumed runs recompute.
pub const MODEL_REVISION: u32 = 2;

/// The journal's file name in an output folder.
pub const JOURNAL: &str = "points.jsonl";
/// The manifest's file name in an output folder.
pub const MANIFEST: &str = "manifest.json";

/// The first 16 bytes of SHA-256 of `text`, in hex.
pub fn content_hash(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the binary contributes to every point's hash: its version, the model revision and every
/// embedded preset (a preset's numbers determine the points that name it, directly or not).
fn model_fingerprint() -> &'static str {
    static F: OnceLock<String> = OnceLock::new();
    F.get_or_init(|| {
        let mut text = format!("strata {} model {MODEL_REVISION}\n", env!("CARGO_PKG_VERSION"));
        for table in crate::catalog::preset_tables() {
            for (name, body) in table.presets {
                text += &format!("{} {name}\n{body}\n", table.kind);
            }
        }
        content_hash(&text)
    })
}

/// The hash of everything that determines a point's rows: the kind, the point's axes, the
/// system it runs (with its architecture and mapping as resolved), the mapper settings, the
/// content of every file the point or its system names, and the model's version.
pub fn point_hash(x: &Experiment, p: &Point) -> String {
    let mut text = format!("{}\nkind {}\npoint {}\n", model_fingerprint(), x.kind.name(), p.key);
    text += &format!("mapper {:?}\n", x.spec.mapper);
    let mut names: Vec<String> = p.values.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    if let Some((_, s)) = x.system(&p.text("system")) {
        text += &format!("system {s:?}\n");
        names.extend([&s.arch, &s.attention].iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    for name in names {
        let path = x.path(&name);
        if let Ok(body) = std::fs::read_to_string(&path) {
            text += &format!("file {path}\n{body}\n");
        }
    }
    content_hash(&text)
}

/// A cell as the journal keeps it: floats as their shortest exact text, so they read back bit
/// for bit (JSON numbers would lose NaN and infinities).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum Stored {
    #[serde(rename = "s")]
    Text(String),
    #[serde(rename = "i")]
    Int(u64),
    #[serde(rename = "f")]
    Float(String),
}

impl Stored {
    fn of(c: &Cell) -> Stored {
        match c {
            Cell::Text(s) => Stored::Text(s.clone()),
            Cell::Int(v) => Stored::Int(*v),
            Cell::Float(v) => Stored::Float(v.to_string()),
        }
    }
    fn cell(&self) -> Option<Cell> {
        Some(match self {
            Stored::Text(s) => Cell::Text(s.clone()),
            Stored::Int(v) => Cell::Int(*v),
            Stored::Float(s) => Cell::Float(s.parse().ok()?),
        })
    }
}

/// One committed point.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    index: u64,
    key: String,
    hash: String,
    rows: Vec<Vec<(String, Stored)>>,
}

impl Entry {
    fn rows(&self) -> Option<Vec<Row>> {
        self.rows
            .iter()
            .map(|r| Some(Row { cells: r.iter().map(|(k, c)| Some((k.clone(), c.cell()?))).collect::<Option<_>>()? }))
            .collect()
    }
}

/// What an output folder holds besides results: which experiment, which shard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub strata: String,
    pub source: String,
    pub base: String,
    pub experiment_hash: String,
    pub shard: Option<(u64, u64)>,
    pub text: String,
}

impl Manifest {
    pub fn of(x: &Experiment, shard: Shard) -> Manifest {
        Manifest {
            strata: env!("CARGO_PKG_VERSION").into(),
            source: x.source.clone(),
            base: x.base.display().to_string(),
            experiment_hash: content_hash(&format!("{}\n{}", model_fingerprint(), x.text)),
            shard: (shard != Shard::WHOLE).then_some((shard.index, shard.count)),
            text: x.text.clone(),
        }
    }

    pub fn read(dir: &Path) -> CliResult<Manifest> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| CliError::read(&path, &e))?;
        serde_json::from_str(&text)
            .map_err(|e| CliError::input(format!("{}: not a Strata manifest: {e}", path.display())))
    }
}

/// A write that failed: a run-time failure (exit 1).
pub fn write_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::runtime(format!("{}: cannot write: {e}", path.display()))
}

/// Writes `text` to `dir/name` through a temporary file and a rename.
pub fn replace(dir: &Path, name: &str, text: &[u8]) -> CliResult<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| write_err(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| write_err(&dir.join(name), e))
}

/// Where a committed point lies: which journal file, its line's byte offset and length, and
/// what identifies it (a digest of its key, its content hash). The run keeps only these, never
/// the rows, so its memory does not grow with what the points hold.
#[derive(Debug, Clone, Copy)]
struct Loc {
    file: usize,
    offset: u64,
    len: usize,
    key: u128,
    hash: u128,
}

impl Loc {
    /// Where entry `e`'s line of `len` bytes lies: file `file`, byte `offset`.
    fn of(e: &Entry, file: usize, offset: u64, len: usize) -> Loc {
        Loc { file, offset, len, key: digest(&e.key), hash: hash_value(&e.hash) }
    }
}

/// A key or content hash as a number (16 bytes of SHA-256).
fn digest(text: &str) -> u128 {
    let d = Sha256::digest(text.as_bytes());
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

/// A content hash's hex text as a number (a malformed one never matches anything).
fn hash_value(hex: &str) -> u128 {
    u128::from_str_radix(hex, 16).unwrap_or(u128::MAX)
}

/// Reads a journal line by line, calling `each` with every complete entry whose rows parse, its
/// line and the line's byte offset in the file (a line cut short by a kill, or otherwise
/// unreadable, is dropped but still counts towards the offsets).
fn scan_journal(path: &Path, mut each: impl FnMut(Entry, &[u8], u64) -> CliResult<()>) -> CliResult<()> {
    let Ok(f) = File::open(path) else { return Ok(()) };
    let mut offset = 0u64;
    for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
        if let Ok(e) = serde_json::from_slice::<Entry>(&line)
            && e.rows().is_some()
        {
            each(e, &line, offset)?;
        }
        offset += line.len() as u64 + 1;
    }
    Ok(())
}

/// The journal of a run in progress.
pub struct Journal {
    dir: PathBuf,
    /// The append handle and the journal's length in bytes.
    file: Mutex<(File, u64)>,
    /// Finished points: point index → where its line lies.
    done: Mutex<BTreeMap<u64, Loc>>,
    /// What the folder held when the run started, by key digest.
    before: HashMap<u128, Loc>,
}

/// What a rerun found in its folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resumed {
    /// Points whose key and hash matched: taken as they were.
    pub reused: u64,
    /// Points whose key matched but whose inputs changed: computed again.
    pub recomputed: u64,
}

impl Journal {
    /// Opens (or resumes) the journal in `dir`, keeping only complete lines.
    pub fn open(dir: &Path) -> CliResult<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
        let path = dir.join(JOURNAL);
        // Rewrite the complete lines, so that the next append starts on a fresh line.
        let tmp = dir.join(format!(".{JOURNAL}.tmp"));
        let mut out = BufWriter::new(File::create(&tmp).map_err(|e| write_err(&tmp, e))?);
        let mut before = HashMap::new();
        // Offsets in the rewritten file, which holds only the complete lines.
        let mut offset = 0u64;
        scan_journal(&path, |e, line, _| {
            out.write_all(line).and_then(|_| out.write_all(b"\n")).map_err(|err| write_err(&tmp, err))?;
            let loc = Loc::of(&e, 0, offset, line.len());
            before.insert(loc.key, loc);
            offset += line.len() as u64 + 1;
            Ok(())
        })?;
        out.into_inner().map_err(|e| write_err(&tmp, e.error()))?;
        std::fs::rename(&tmp, &path).map_err(|e| write_err(&path, e))?;
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| write_err(&path, e))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            file: Mutex::new((file, offset)),
            done: Mutex::new(BTreeMap::new()),
            before,
        })
    }

    /// Whether `p` finished in an earlier run with the same inputs; if so it is taken as it was.
    pub fn reuse(&self, p: &Point, hash: &str, resumed: &Mutex<Resumed>) -> bool {
        let Some(loc) = self.before.get(&digest(&p.key)) else { return false };
        let mut r = resumed.lock().expect("lock");
        if loc.hash != hash_value(hash) {
            r.recomputed += 1;
            return false;
        }
        r.reused += 1;
        self.done.lock().expect("lock").insert(p.index, *loc);
        true
    }

    /// Commits a finished point: one line, all of its rows.
    pub fn commit(&self, p: &Point, hash: String, rows: &[Row]) -> CliResult<()> {
        let e = Entry {
            index: p.index,
            key: p.key.clone(),
            hash,
            rows: rows.iter().map(|r| r.cells.iter().map(|(k, c)| (k.clone(), Stored::of(c))).collect()).collect(),
        };
        let line = serde_json::to_string(&e).expect("entries serialise");
        let loc = {
            let mut f = self.file.lock().expect("lock");
            let (file, length) = &mut *f;
            file.write_all(format!("{line}\n").as_bytes())
                .and_then(|_| file.flush())
                .map_err(|err| write_err(&self.dir.join(JOURNAL), err))?;
            let loc = Loc::of(&e, 0, *length, line.len());
            *length += line.len() as u64 + 1;
            loc
        };
        self.done.lock().expect("lock").insert(p.index, loc);
        Ok(())
    }

    /// The finished points in index order.
    pub fn finished(self) -> Finished {
        Finished { files: vec![self.dir.join(JOURNAL)], entries: self.done.into_inner().expect("lock") }
    }
}

/// Finished points in index order, as places in journal files: what results, summaries and
/// merges are made from, reading one point at a time.
pub struct Finished {
    files: Vec<PathBuf>,
    entries: BTreeMap<u64, Loc>,
}

/// Reads the lines of a journal at the places asked for.
struct Lines {
    files: Vec<File>,
    paths: Vec<PathBuf>,
}

impl Lines {
    fn open(paths: &[PathBuf]) -> CliResult<Lines> {
        let files = paths.iter().map(|p| File::open(p).map_err(|e| CliError::read(p, &e))).collect::<CliResult<_>>()?;
        Ok(Lines { files, paths: paths.to_vec() })
    }

    fn entry(&mut self, loc: &Loc) -> CliResult<Entry> {
        let path = &self.paths[loc.file];
        let f = &mut self.files[loc.file];
        let mut buf = vec![0u8; loc.len];
        f.seek(SeekFrom::Start(loc.offset))
            .and_then(|_| f.read_exact(&mut buf))
            .map_err(|e| CliError::runtime(format!("{}: cannot read back a committed point: {e}", path.display())))?;
        serde_json::from_slice(&buf).map_err(|e| {
            CliError::runtime(format!("{}: a committed point changed on disk during the run: {e}", path.display()))
        })
    }
}

impl Finished {
    /// The points of several shards' folders, checked to be the shards of one experiment.
    pub fn merge(dirs: &[PathBuf]) -> CliResult<(Manifest, Finished)> {
        let mut manifests = Vec::new();
        for d in dirs {
            manifests.push((d, Manifest::read(d)?));
        }
        let Some((first_dir, first)) = manifests.first().cloned() else {
            return Err(CliError::input("merge: name at least one shard folder"));
        };
        let count = first.shard.map_or(1, |s| s.1);
        let mut seen: BTreeMap<u64, &Path> = BTreeMap::new();
        for (d, m) in &manifests {
            if m.experiment_hash != first.experiment_hash {
                return Err(CliError::input(format!(
                    "merge: {} and {} hold different experiments (or were run by different Strata builds)",
                    first_dir.display(),
                    d.display()
                )));
            }
            let (i, n) = m.shard.unwrap_or((0, 1));
            if n != count {
                return Err(CliError::input(format!(
                    "merge: {} is shard {i}/{n} but {} is one of {count}",
                    d.display(),
                    first_dir.display()
                )));
            }
            if let Some(other) = seen.insert(i, d) {
                return Err(CliError::input(format!(
                    "merge: {} and {} are both shard {i}/{n}",
                    other.display(),
                    d.display()
                )));
            }
        }
        if let Some(missing) = (0..count).find(|i| !seen.contains_key(i)) {
            return Err(CliError::input(format!("merge: shard {missing}/{count} is missing")));
        }
        let files: Vec<PathBuf> = dirs.iter().map(|d| d.join(JOURNAL)).collect();
        let mut entries = BTreeMap::new();
        for (file, path) in files.iter().enumerate() {
            scan_journal(path, |e, line, offset| {
                entries.insert(e.index, Loc::of(&e, file, offset, line.len()));
                Ok(())
            })?;
        }
        Ok((first, Finished { files, entries }))
    }

    /// Checks that every point of the experiment is here with its current hash; names the first
    /// that is not and the shard (of `shards`) that should have computed it.
    pub fn check_complete(&self, x: &Experiment, shards: u64, dirs: &str) -> CliResult<u64> {
        let mut n = 0;
        for p in x.sweep.points(Shard::WHOLE) {
            let p = p?;
            match self.entries.get(&p.index) {
                Some(e) if e.key == digest(&p.key) && e.hash == hash_value(&point_hash(x, &p)) => n += 1,
                Some(_) => {
                    return Err(CliError::input(format!(
                        "merge: point `{}` in {dirs} was computed from other inputs: rerun shard {}/{shards}",
                        p.key,
                        p.index % shards
                    )));
                }
                None => {
                    return Err(CliError::input(format!(
                        "merge: point `{}` of shard {}/{} is missing in {dirs}: rerun that shard",
                        p.key,
                        p.index % shards,
                        shards
                    )));
                }
            }
        }
        Ok(n)
    }

    /// Writes the journal, `results.csv` and `results.jsonl` into `dir` (each replaced whole),
    /// one point at a time, checking every row against the kind's column schema.
    pub fn write(&self, x: &Experiment, dir: &Path) -> CliResult<()> {
        let columns = x.kind.columns(x);
        let mut lines = Lines::open(&self.files)?;
        let tmp = |name: &str| dir.join(format!(".{name}.tmp"));
        let create = |name: &str| -> CliResult<BufWriter<File>> {
            File::create(tmp(name)).map(BufWriter::new).map_err(|e| write_err(&tmp(name), e))
        };
        let (mut journal, mut jsonl) = (create(JOURNAL)?, create("results.jsonl")?);
        let mut csv = csv::WriterBuilder::new().from_writer(create("results.csv")?);
        let csv_err = |e: csv::Error| write_err(&dir.join("results.csv"), e);
        csv.write_record(&columns).map_err(csv_err)?;
        for (&index, loc) in &self.entries {
            let e = Entry { index, ..lines.entry(loc)? };
            for r in e.rows().unwrap_or_default() {
                let cols: Vec<&str> = r.cells.iter().map(|c| c.0.as_str()).collect();
                if cols != columns {
                    return Err(CliError::runtime(format!(
                        "point `{}`: its row has columns {} but a `{}` experiment writes {}",
                        e.key,
                        cols.join(","),
                        x.kind.name(),
                        columns.join(",")
                    )));
                }
                csv.write_record(r.cells.iter().map(|c| c.1.csv())).map_err(csv_err)?;
                writeln!(jsonl, "{}", r.json()).map_err(|err| write_err(&tmp("results.jsonl"), err))?;
            }
            writeln!(journal, "{}", serde_json::to_string(&e).expect("entries serialise"))
                .map_err(|err| write_err(&tmp(JOURNAL), err))?;
        }
        let csv = csv.into_inner().map_err(|e| write_err(&tmp("results.csv"), e))?;
        for (name, w) in [(JOURNAL, journal), ("results.csv", csv), ("results.jsonl", jsonl)] {
            w.into_inner().map_err(|e| write_err(&tmp(name), e.error()))?;
            std::fs::rename(tmp(name), dir.join(name)).map_err(|e| write_err(&dir.join(name), e))?;
        }
        Ok(())
    }
}

/// The rows of a finished folder's journal, in point order, if there are at most `most`:
/// what summaries and plots read (they hold every row, so their memory is bounded by `most`).
pub fn rows(dir: &Path, most: usize) -> CliResult<Option<Vec<Row>>> {
    let mut rows = Vec::new();
    let mut over = false;
    scan_journal(&dir.join(JOURNAL), |e, _, _| {
        if !over {
            rows.extend(e.rows().unwrap_or_default());
            over = rows.len() > most;
        }
        Ok(())
    })?;
    Ok((!over).then_some(rows))
}
