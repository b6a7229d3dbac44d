//! The command line: argument parsing and printing over the library. Only this module and the
//! library's run and file functions touch files; exit code 2 for bad input, 1 for run-time
//! failures.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliResult;
use crate::sweep::Shard;
use crate::{
    bench, capacity, catalog, dram, eval, flash_compute, load, nand, offload, run as runner, show, slurm, step, trace,
    validate_gpu,
};

/// Strata: a simulator and design-space explorer for memory-bound AI accelerators.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment (a file or an embedded name; `default` when omitted): results, summary, plots.
    Run {
        experiment: Option<String>,
        /// Output directory (the experiment's own by default).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Worker threads (all cores by default); results do not depend on it.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        jobs: Option<u64>,
        /// Compute only shard I of N (points whose index is I modulo N); `strata merge` combines shards.
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<Shard>,
        /// No progress output on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Most points a sweep may have.
        #[arg(long, default_value_t = crate::sweep::DEFAULT_MAX_POINTS)]
        max_points: u64,
        /// Most rows the summary and plots are made from (they hold every row in memory).
        #[arg(long, default_value_t = crate::run::SUMMARY_ROWS)]
        summary_rows: usize,
    },
    /// Combine the output folders of an experiment's shards into results, summary and plots.
    Merge {
        /// The shards' output folders.
        #[arg(required = true)]
        dirs: Vec<std::path::PathBuf>,
        /// Where the merged results go.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Most rows the summary and plots are made from (they hold every row in memory).
        #[arg(long, default_value_t = crate::run::SUMMARY_ROWS)]
        summary_rows: usize,
    },
    /// Write (and with --submit, submit) a Slurm job array that runs an experiment in shards and merges them.
    Slurm {
        experiment: String,
        /// Array tasks, one shard each.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        array: u64,
        /// Folder for the scripts, the shards, the logs and the merged results.
        #[arg(long, default_value = "strata-slurm")]
        out: std::path::PathBuf,
        /// Submit with sbatch (the merge job depends on the array).
        #[arg(long)]
        submit: bool,
        /// Extra `#SBATCH` option for both scripts, e.g. `--sbatch=--partition=cpu` (repeatable).
        #[arg(long, allow_hyphen_values = true)]
        sbatch: Vec<String>,
    },
    /// List every embedded preset by kind.
    List,
    /// Check Strata files (architectures, workloads, mappings, experiments, DRAM, NAND, link and offload presets; Hugging Face config.json) with the checks the commands that read them run.
    Validate {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Evaluate a mapping of a workload on an architecture with the analytical model.
    Eval {
        #[command(flatten)]
        target: eval::EvalArgs,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Find mappings of a workload (every Einsum, or those named) on an architecture; write the mapping file.
    Map {
        /// Architecture preset or file.
        #[arg(long)]
        arch: String,
        /// Workload preset or file (a model's layer, an attention shape, a cascade).
        #[arg(long)]
        workload: String,
        #[command(flatten)]
        shape: load::Shape,
        /// Map only this Einsum (repeatable).
        #[arg(long)]
        einsum: Vec<String>,
        /// `latency`, `energy` or `edp`.
        #[arg(long, default_value = "edp")]
        objective: String,
        /// `auto`, `exhaustive`, `random`, `greedy` or `milp`.
        #[arg(long, default_value = "auto")]
        search: String,
        /// Mappings sampled by `auto` and `random` (1 to 10⁷).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        samples: u64,
        /// Seconds after which no further mapping is evaluated (the best so far is kept).
        #[arg(long, value_parser = seconds)]
        time_limit: Option<f64>,
        /// Constraints per level: fixed factors, loop order, keep lists (`[[constraints]]` TOML).
        #[arg(long)]
        constraints: Option<String>,
        /// Where to write the mapping file.
        #[arg(long, default_value = "mapping.toml")]
        out: std::path::PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Run a mapping on the cycle-approximate engine as a tile task graph; write a Chrome trace.
    Trace {
        #[command(flatten)]
        target: eval::EvalArgs,
        /// Trace event JSON to write (Perfetto, chrome://tracing).
        #[arg(long, default_value = "trace.json")]
        out: std::path::PathBuf,
        /// Also write the outermost memory's loads and drains as a DRAM trace
        /// (`time_ns R|W address bytes`) that `strata dram --trace` replays.
        #[arg(long)]
        dram_trace: Option<std::path::PathBuf>,
        /// `ideal` (bandwidth only) or `real` (latencies, DRAM channel timing).
        #[arg(long, default_value = "ideal")]
        memory: String,
        /// `auto` (double when two tile sets fit), `single` or `double`.
        #[arg(long, default_value = "auto")]
        buffering: String,
        /// Most tasks and events the run may take.
        #[arg(long, default_value_t = 50_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        max_events: u64,
        /// Most steps per Einsum; longer ones run in coarser steps (0: no limit).
        #[arg(long, default_value_t = 65_536)]
        max_steps: u64,
    },
    /// Measure how many mappings per second the analytical model evaluates on one core.
    Bench {
        /// Seconds spent on each measurement (more than 0, at most 3600).
        #[arg(long, default_value_t = 1.0, value_parser = seconds)]
        seconds: f64,
    },
    /// Predict every kernel measured on a real GPU (embedded H100 set by default) and report errors.
    ValidateGpu {
        /// A directory with measurements.csv (and environment.json) from validation/gpu/measure.py.
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Architecture preset or file with an [arch.gpu] section.
        #[arg(long, default_value = "h100")]
        arch: String,
        /// Output directory.
        #[arg(long, default_value = "strata-out/validate-gpu")]
        out: std::path::PathBuf,
        /// Use the architecture's datasheet rates instead of the measured calibration rows.
        #[arg(long)]
        datasheet: bool,
    },
    /// Long-context serving on one GPU: KV per request, requests that fit, prefill, decode, context switch.
    Capacity {
        /// Model preset or file.
        #[arg(long, default_value = "yi-34b")]
        model: String,
        /// Architecture preset or file with an [arch.gpu] section and a PCIe link.
        #[arg(long, default_value = "a100")]
        arch: String,
        /// Context lengths (repeatable; 1 to 2³²).
        #[arg(long, default_values_t = [4096u64, 50000], value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
        context: Vec<u64>,
        /// Tokens generated after the prompt (each decode step is simulated: at most 100,000).
        #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        generate: u64,
        /// Sequences served together (1 to 65,536).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65_536))]
        batch: u64,
        /// GPUs the model is tensor-parallel over (1 to 64; needs an NVLink in the architecture).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
        gpus: u64,
    },
    /// FlexGen's offloading policy (block size; weights, KV cache, activations over GPU, CPU, disk).
    Offload {
        /// Model preset or file.
        #[arg(long, default_value = "opt-175b")]
        model: String,
        /// FlexGen's profile of its runtime: a preset or file of `[offload]` constants, each left
        /// out taken from `--arch`'s sheet, or `sheet` for the architecture alone.
        #[arg(long, default_value = "flexgen-t4")]
        costs: String,
        /// Prompt tokens (1 to 2²⁰).
        #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        prompt: u64,
        /// Generated tokens (1 to 2²⁰).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        generate: u64,
        /// Overlap rule(s): `code` (the released code) and/or `paper` (Eq. 1).
        #[arg(long, default_values_t = ["code".to_string(), "paper".to_string()])]
        overlap: Vec<String>,
        /// Write the first overlap rule's policy as a `[system]` file for `--arch`, to run on the
        /// one system model (the `serving` experiment kind).
        #[arg(long)]
        system_out: Option<std::path::PathBuf>,
        /// The machine: its GPU, host and disk memories, links and units (found by what they are)
        /// price what the profile leaves out, and the system file places tensors on them.
        #[arg(long, default_value = "t4-host-ssd")]
        arch: String,
    },
    /// One step of a model run by a system file on an architecture (the one system model):
    /// time per stage, device, link and memory, energy, and a Chrome trace of one layer.
    Step(step::Args),
    /// Run the cycle-approximate DRAM channels on a microbenchmark: bandwidth against peak,
    /// request latency (queued at once, closed loop, open loop or a sweep of offered loads), energy.
    Dram(dram::Args),
    /// Run the cycle-approximate flash drive on host reads or writes (throughput, latency, and
    /// with a translation layer write amplification, garbage collection and mapping-table misses).
    Nand(nand::Args),
    /// LLM decode on an NPU + in-flash-compute machine (Cambricon-LLM): tokens/s, GeMVs, channel use.
    FlashCompute {
        /// Architecture preset or file with a NAND level, per-die cores and an NPU.
        #[arg(long, default_value = "cambricon-llm-s")]
        arch: String,
        /// System preset or file: where weights and cache live, which Einsums the drive's cores
        /// take with which split, the read-compute policies. The flags below override it.
        #[arg(long, default_value = "cambricon")]
        system: String,
        #[arg(long, default_value = "opt-6.7b")]
        model: String,
        /// Tokens in the KV cache (1 to 2²⁴).
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
        context: u64,
        /// Request tiles: `aware` (least channel traffic), `naive`, or HxW such as 256x2048.
        #[arg(long)]
        tile: Option<String>,
        /// How each GeMV is split between read-compute and normal reads: `balanced` (where both
        /// finish together, on the simulated timing), `alpha` (the paper's α), or a share of weight
        /// bytes in flash within 0 and 1.
        #[arg(long)]
        split: Option<String>,
        /// Turn Slice Control off (first come, first served at page granularity).
        #[arg(long)]
        no_slicing: bool,
        /// Slices per normal page read (1 to 64).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
        slices: Option<u64>,
        /// Turn the on-die outlier ECC off.
        #[arg(long)]
        no_ecc: bool,
        /// Stop with an error after this many events.
        #[arg(long, default_value_t = 200_000_000, value_parser = clap::value_parser!(u64).range(1..))]
        max_events: u64,
    },
    /// Inspect workloads.
    Workload {
        #[command(subcommand)]
        command: WorkloadCommand,
    },
}

#[derive(Subcommand)]
enum WorkloadCommand {
    /// Show the Einsums of a workload with ranks, shapes, op counts and bytes.
    Show {
        /// A preset name (see `strata list`) or a file.
        workload: String,
        #[command(flatten)]
        shape: load::Shape,
        /// Mask attention causally (attention and cascade files).
        #[arg(long)]
        causal: bool,
        /// Override a cascade parameter, e.g. `--set M0=128` (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = show::parse_set)]
        set: Vec<(String, i64)>,
    },
}

fn run(cli: Cli) -> CliResult<String> {
    match cli.command {
        Command::Run { experiment, out, jobs, shard, quiet, max_points, summary_rows } => {
            let options = runner::RunOptions {
                out,
                jobs: jobs.map(|j| j as usize),
                shard: shard.unwrap_or(Shard::WHOLE),
                quiet,
                max_points,
                summary_rows,
            };
            Ok(runner::run(experiment.as_deref().unwrap_or("default"), &options)?.message())
        }
        Command::Merge { dirs, out, summary_rows } => Ok(runner::merge(&dirs, &out, summary_rows)?.message()),
        Command::Slurm { experiment, array, out, submit, sbatch } => {
            slurm::run(&slurm::Args { experiment, array, out, submit, sbatch })
        }
        Command::List => Ok(catalog::list()),
        Command::Validate { files } => {
            let (out, errors) = catalog::validate(&files);
            print(&out);
            match errors.into_iter().reduce(|mut a, b| {
                a.message = format!("{}\nerror: {}", a.message, b.message);
                a
            }) {
                Some(e) => Err(e),
                None => Ok(String::new()),
            }
        }
        Command::Bench { seconds } => bench::run(seconds),
        Command::Eval { target, json } => eval::run(&target, json),
        Command::Map {
            arch,
            workload,
            shape,
            einsum,
            objective,
            search,
            samples,
            time_limit,
            constraints,
            out,
            json,
        } => {
            let m = crate::experiment::MapperSpec {
                strategy: search,
                objective,
                samples: samples as usize,
                ..Default::default()
            };
            crate::map::run(&crate::map::Args {
                arch,
                workload,
                shape,
                einsum,
                mapper: m,
                time_limit,
                constraints,
                out,
                json,
            })
        }
        Command::Trace { target, out, dram_trace, memory, buffering, max_events, max_steps } => {
            trace::run(&trace::Args { eval: target, out, dram_trace, memory, buffering, max_events, max_steps })
        }
        Command::ValidateGpu { data, arch, out, datasheet } => {
            validate_gpu::run(&validate_gpu::Args { data, arch, out, datasheet })
        }
        Command::Capacity { model, arch, context, generate, batch, gpus } => {
            capacity::run(&capacity::Args { model, arch, context, generate, batch, gpus })
        }
        Command::Offload { model, costs, prompt, generate, overlap, system_out, arch } => {
            offload::run(&offload::Args { model, costs, prompt, generate, overlap, system_out, arch })
        }
        Command::Step(a) => step::run(&a),
        Command::Dram(a) => dram::run(&a),
        Command::Nand(a) => nand::run(&a),
        Command::FlashCompute { arch, system, model, context, tile, split, no_slicing, slices, no_ecc, max_events } => {
            flash_compute::run(&flash_compute::Args {
                arch,
                system,
                model,
                context,
                tile,
                split,
                no_slicing,
                slices,
                no_ecc,
                max_events,
            })
        }
        Command::Workload { command: WorkloadCommand::Show { workload, shape, causal, set } } => {
            let loaded = load::workload(&workload)?;
            show::show(&loaded, &show::ShowArgs { shape, causal, set })
        }
    }
}

/// Writes to stdout, treating a closed pipe (`strata list | head`) as success rather than a panic.
fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|_| out.flush());
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s)
}

/// A finite number of seconds in (0, 3600].
fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not within (0, 3600] seconds")),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// A whole number within `lo..=hi`.
fn bounded(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a whole number from {lo} to {hi}")),
    }
}

pub(crate) fn window(s: &str) -> Result<usize, String> {
    bounded(s, 1, 4096)
}

pub(crate) fn queue_depth(s: &str) -> Result<usize, String> {
    bounded(s, 1, 65_536)
}

/// Parses the command line, runs it, prints the result; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(out) => {
            print(&out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
