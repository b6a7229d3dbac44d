//! Running an experiment: its points in parallel (or one shard of them), committed to the
//! journal as they finish, then results, summary and plots; and merging shards.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use strata_workloads::{Model, WorkloadSpec};

use crate::error::{CliError, CliResult};
use crate::experiment::{Experiment, Point};
use crate::store::{Finished, Journal, Manifest, Resumed, point_hash};
use crate::sweep::{DEFAULT_MAX_POINTS, Shard};

/// How to run an experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder (the experiment's own `output`, else `strata-out`, when `None`).
    pub out: Option<PathBuf>,
    /// Worker threads (all cores when `None`); results do not depend on it.
    pub jobs: Option<usize>,
    /// The slice of points to compute; a shard writes its journal and results, not the summary.
    pub shard: Shard,
    /// No progress output on stderr.
    pub quiet: bool,
    /// Most points a sweep may have.
    pub max_points: u64,
    /// Most rows the summary and plots are made from (they hold every row in memory; the
    /// results files and the run do not): above it they say so and point to the results.
    pub summary_rows: usize,
}

/// The default of [`RunOptions::summary_rows`]: about a gigabyte of rows.
pub const SUMMARY_ROWS: usize = 1_000_000;

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out: None,
            jobs: None,
            shard: Shard::WHOLE,
            quiet: true,
            max_points: DEFAULT_MAX_POINTS,
            summary_rows: SUMMARY_ROWS,
        }
    }
}

/// What a run did and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub experiment: String,
    pub out: PathBuf,
    /// The shard computed (`None` for the whole experiment or a merge).
    pub shard: Option<(u64, u64)>,
    /// Points of this run (after the filter; of the shard when sharded).
    pub points: u64,
    /// Points computed in this run.
    pub computed: u64,
    /// Points taken from the folder's journal, and points found there whose inputs had changed.
    pub resumed: Resumed,
    /// Plot files written.
    pub plots: Vec<String>,
    /// The summary (empty for a shard).
    pub summary: String,
}

impl RunReport {
    /// What the command line prints.
    pub fn message(&self) -> String {
        let out = self.out.display();
        let mut msg = match self.shard {
            Some((i, n)) => format!("shard {i}/{n}: {} points -> {out}\n", self.points),
            None => format!("{} points -> {out}\n", self.points),
        };
        msg += &format!(
            "computed {}, reused {}, recomputed {} whose inputs changed\n",
            self.computed - self.resumed.recomputed,
            self.resumed.reused,
            self.resumed.recomputed
        );
        msg += &format!("results: {out}/results.csv, {out}/results.jsonl\n");
        if self.shard.is_some() {
            return msg + "merge the shards with `strata merge DIR... --out DIR`\n";
        }
        msg += &format!("summary: {out}/summary.md\nplots:   {}\n", self.plots.join(", "));
        msg + "\n" + &self.summary
    }
}

/// Loads and runs an experiment (an embedded name or a file).
pub fn run(experiment: &str, o: &RunOptions) -> CliResult<RunReport> {
    let x = crate::experiment::load(experiment)?;
    run_prepared(&x, o)
}

/// Runs a loaded experiment.
pub fn run_prepared(x: &Experiment, o: &RunOptions) -> CliResult<RunReport> {
    check_points(x, o.max_points)?;
    let out =
        o.out.clone().unwrap_or_else(|| PathBuf::from(x.spec.output.clone().unwrap_or_else(|| "strata-out".into())));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(o.jobs.unwrap_or(0))
        .build()
        .map_err(|e| CliError::runtime(format!("thread pool: {e}")))?;
    pool.install(|| execute(x, &out, o))
}

/// A sweep of more than `most` points is refused before anything runs (`validate` checks it too).
pub fn check_points(x: &Experiment, most: u64) -> CliResult<()> {
    if x.sweep.len() > most {
        return Err(CliError::input(format!(
            "{}: the sweep has {} points, more than {most} (raise --max-points to run it)",
            x.at("experiment.sweep"),
            x.sweep.len()
        )));
    }
    Ok(())
}

/// Progress on stderr: a bar on a terminal once a run passes a second, else a line per finished
/// system (or shard).
struct Progress {
    bar: ProgressBar,
    started: Instant,
    shown: AtomicBool,
    terminal: bool,
    quiet: bool,
    /// Per system: points left.
    left: Mutex<Vec<(String, u64)>>,
    /// Points of the run.
    total: u64,
}

impl Progress {
    /// Counts the shard's points (per system too) in one pass over the lazy sweep.
    fn new(x: &Experiment, shard: Shard, quiet: bool) -> CliResult<Progress> {
        let mut total = 0u64;
        let mut left: Vec<(String, u64)> = Vec::new();
        for p in x.sweep.points(shard) {
            let p = p?;
            total += 1;
            if p.values.contains_key("system") {
                let s = p.text("system");
                match left.iter_mut().find(|l| l.0 == s) {
                    Some(l) => l.1 += 1,
                    None => left.push((s, 1)),
                }
            }
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} points, {per_sec}, {elapsed} elapsed, ETA {eta}")
                .expect("valid template"),
        );
        Ok(Progress {
            bar,
            started: Instant::now(),
            shown: AtomicBool::new(false),
            terminal: std::io::stderr().is_terminal(),
            quiet,
            left: Mutex::new(left),
            total,
        })
    }

    fn done(&self, p: &Point) {
        self.bar.inc(1);
        if self.quiet {
            return;
        }
        if self.terminal {
            if self.started.elapsed().as_secs_f64() > 1.0 && !self.shown.swap(true, Ordering::Relaxed) {
                self.bar.set_draw_target(ProgressDrawTarget::stderr());
            }
            return;
        }
        // Lines only for runs long enough to want them.
        let long = self.started.elapsed().as_secs_f64() > 1.0;
        if let Some(s) = p.values.get("system").filter(|_| long).map(|_| p.text("system")) {
            let mut left = self.left.lock().expect("lock");
            if let Some(l) = left.iter_mut().find(|l| l.0 == s) {
                l.1 -= 1;
                if l.1 == 0 {
                    eprintln!("system {s}: done after {:.1} s", self.started.elapsed().as_secs_f64());
                }
            }
        }
    }

    fn finish(&self, label: &str) {
        let n = self.total;
        self.bar.finish_and_clear();
        if !self.quiet && !self.terminal && self.started.elapsed().as_secs_f64() > 1.0 {
            eprintln!("{label}: {n} points in {:.1} s", self.started.elapsed().as_secs_f64());
        }
    }
}

/// Points decoded and evaluated at a time: the sweep is never held whole.
const CHUNK: usize = 4096;

fn execute(x: &Experiment, out: &Path, o: &RunOptions) -> CliResult<RunReport> {
    let progress = Progress::new(x, o.shard, o.quiet)?;
    let journal = Journal::open(out)?;
    let manifest = Manifest::of(x, o.shard);
    crate::store::replace(out, crate::store::MANIFEST, manifest_json(&manifest).as_bytes())?;
    let resumed = Mutex::new(Resumed::default());
    // Points that finished are written even when another point failed; the first failure in
    // point order is reported.
    let (mut computed, mut failure): (u64, Option<(u64, CliError)>) = (0, None);
    let mut points = x.sweep.points(o.shard);
    loop {
        let chunk: Vec<Point> = points.by_ref().take(CHUNK).collect::<CliResult<_>>()?;
        if chunk.is_empty() {
            break;
        }
        let results: Vec<(u64, CliResult<bool>)> = chunk
            .par_iter()
            .map(|p| {
                let hash = point_hash(x, p);
                let r = match journal.reuse(p, &hash, &resumed) {
                    true => Ok(false),
                    false => x.kind.point(x, p).and_then(|rows| journal.commit(p, hash, &rows)).map(|_| true),
                };
                progress.done(p);
                (p.index, r)
            })
            .collect();
        for (index, r) in results {
            match r {
                Ok(fresh) => computed += u64::from(fresh),
                Err(e) if failure.as_ref().is_none_or(|f| index < f.0) => failure = Some((index, e)),
                Err(_) => {}
            }
        }
    }
    let label = if o.shard == Shard::WHOLE { x.spec.name.clone() } else { format!("shard {}", o.shard) };
    progress.finish(&label);
    let finished = journal.finished();
    let failure = failure.map(|f| f.1);
    let shard = (o.shard != Shard::WHOLE).then_some((o.shard.index, o.shard.count));
    let mut report = RunReport {
        experiment: x.spec.name.clone(),
        out: out.to_path_buf(),
        shard,
        points: progress.total,
        computed,
        resumed: resumed.into_inner().expect("lock"),
        plots: Vec::new(),
        summary: String::new(),
    };
    finished.write(x, out)?;
    if let Some(e) = failure {
        return Err(e);
    }
    if shard.is_none() {
        (report.summary, report.plots) = publish(x, out, o.summary_rows)?;
    }
    Ok(report)
}

fn manifest_json(m: &Manifest) -> String {
    serde_json::to_string_pretty(m).expect("manifests serialise") + "\n"
}

/// Writes the summary and the plots of a complete experiment from the rows its journal holds.
fn publish(x: &Experiment, out: &Path, most_rows: usize) -> CliResult<(String, Vec<String>)> {
    let title = format!("# {}\n\n{}\n\n", x.spec.name, x.spec.description);
    let Some(rows) = &crate::store::rows(out, most_rows)? else {
        let summary = title
            + &format!(
                "This experiment has more than {most_rows} rows. A summary and plots hold every row in memory, \
                 so they are made up to --summary-rows rows; every row is in results.csv and results.jsonl.\n"
            );
        crate::store::replace(out, "summary.md", summary.as_bytes())?;
        return Ok((summary, Vec::new()));
    };
    let summary = title + &x.kind.summary(x, rows);
    crate::store::replace(out, "summary.md", summary.as_bytes())?;
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| crate::store::write_err(&plots, e))?;
    let written = x.kind.plots(x, rows, &plots).map_err(|e| CliError::runtime(format!("plots: {e}")))?;
    Ok((summary, written))
}

/// Combines the folders of an experiment's shards into results, summary and plots in `out`,
/// byte-identical to a run of the whole experiment.
pub fn merge(dirs: &[PathBuf], out: &Path, summary_rows: usize) -> CliResult<RunReport> {
    let (manifest, finished) = Finished::merge(dirs)?;
    let x = Experiment::prepare(&manifest.text, &manifest.source, Path::new(&manifest.base))?;
    let shards = manifest.shard.map_or(1, |s| s.1);
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let points = finished.check_complete(&x, shards, &names.join(", "))?;
    std::fs::create_dir_all(out).map_err(|e| crate::store::write_err(out, e))?;
    crate::store::replace(out, crate::store::MANIFEST, manifest_json(&Manifest::of(&x, Shard::WHOLE)).as_bytes())?;
    finished.write(&x, out)?;
    let (summary, plots) = publish(&x, out, summary_rows)?;
    Ok(RunReport {
        experiment: x.spec.name.clone(),
        out: out.to_path_buf(),
        shard: None,
        points,
        computed: 0,
        resumed: Resumed { reused: points, recomputed: 0 },
        plots,
        summary,
    })
}

/// A model by preset name or file (Strata TOML or a Hugging Face `config.json`).
pub fn model(name: &str) -> CliResult<Model> {
    let loaded = crate::load::workload(name)?;
    match loaded.spec {
        WorkloadSpec::Model(m) => m.build().map_err(|e| CliError::spec(&loaded.source, &e)),
        _ => Err(CliError::input(format!("{}: is not a model (experiments sweep whole models)", loaded.source))),
    }
}
