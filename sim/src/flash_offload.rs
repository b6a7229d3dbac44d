//! Weights on flash, streamed per token ("LLM in a flash", Alizadeh et al., ACL 2024): a model
//! larger than the DRAM budget decodes at batch 1 with part of its weights resident and the rest
//! read from a NAND drive every token.
//!
//! Per token the time is flash I/O, then DRAM management, then compute: the paper runs them in
//! that order because a layer's sparsity predictor must see the layer's attention output before
//! the neurons to load are known. The techniques change how many bytes cross the flash and in what
//! read sizes:
//! - *hybrid*: a fraction of the whole model stays resident, the rest is read sequentially;
//! - *selective persistence + predictor*: attention, embeddings and predictors stay resident, and
//!   only the FFN neurons predicted active are read, each a scattered read of `chunk` bytes;
//! - *windowing*: neurons active in the last k tokens stay cached, so only the incremental share
//!   is read;
//! - *row-column bundling*: a neuron's up-projection column and down-projection row lie together,
//!   doubling the read size.
//!
//! The read throughput is not a table: one layer's reads run on the engine's NAND drive
//! (`engine::nand`) with the host's queue depth, so it follows the drive's channels, dies,
//! command overheads and controller. Bytes then cross every link between the flash and the
//! memory holding the weights (pipelined, so the slower of the two sets the pace). Compute is a
//! batch-1 GeMV over every weight the token touches plus attention over the KV cache, at the
//! compute unit's MAC rate or the weight memory's bandwidth, whichever binds.

use strata_arch::arch::Arch;
use strata_arch::spec::LevelKind;
use strata_workloads::Model;

use crate::engine::nand::{self, Timing};
use crate::flash_compute::FlashError;

/// The machine, from an architecture: the first NAND level on the compute unit's path, the last
/// DRAM level on it (where resident weights live) and the unit.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The flash drive.
    pub timing: Timing,
    /// Bytes per second of the slowest link between the flash and the weight memory (`None`: no link).
    pub link: Option<f64>,
    /// Bytes per second of the weight memory.
    pub memory_bandwidth: f64,
    pub memory_bytes: Option<u64>,
    pub macs_per_s: f64,
}

fn err(key: &str, reason: impl Into<String>) -> FlashError {
    FlashError { key: key.into(), reason: reason.into(), budget_exceeded: false }
}

impl Machine {
    pub fn from_arch(a: &Arch, unit: &str) -> Result<Machine, FlashError> {
        let id = a.unit_id(unit).ok_or_else(|| {
            let names: Vec<&str> = a.units.iter().map(|u| u.name.as_str()).collect();
            err("unit", format!("`{unit}` is not a compute unit of `{}` ({})", a.name, names.join(", ")))
        })?;
        let u = a.unit(id);
        let path = a.path_to(u.level);
        let fi = path.iter().position(|l| a.levels[l.0].nand.is_some()).ok_or_else(|| {
            err("arch.levels", format!("no level on the path to `{unit}` carries a [nand] organisation (the flash)"))
        })?;
        let mi =
            path.iter().rposition(|l| a.levels[l.0].kind == LevelKind::Dram).filter(|&m| m > fi).ok_or_else(|| {
                err("arch.levels", format!("no DRAM level between the flash and `{unit}` holds the resident weights"))
            })?;
        let flash = a.levels[path[fi].0].nand.as_ref().expect("found");
        let timing = Timing::of(flash).map_err(|e| err("arch.levels.nand", e.to_string()))?;
        let mem = &a.levels[path[mi].0];
        let memory_bandwidth = mem.port_bandwidth.map(|b| b * a.clock.0).ok_or_else(|| {
            err(&format!("arch.levels.{}.read_bandwidth", mem.name), "the weight memory needs a bandwidth")
        })?;
        let link = path[fi + 1..=mi]
            .iter()
            .filter_map(|l| a.levels[l.0].link.map(|k| a.links[k].bandwidth.0 * a.links[k].count as f64))
            .reduce(f64::min);
        let macs_per_s = u
            .rate("mac", a.clock)
            .ok_or_else(|| err(&format!("arch.compute.{unit}.ops.mac"), "the unit must have a `mac` operation"))?;
        Ok(Machine { timing, link, memory_bandwidth, memory_bytes: mem.capacity.map(|c| c.0), macs_per_s })
    }
}

/// What stays in DRAM and what is read per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Streaming {
    /// Dense: this fraction of the whole model stays resident, the rest is read sequentially in
    /// requests of `read` bytes (0 = naive: everything is read).
    Dense { resident: f64, read: u64 },
    /// Attention, embeddings and the predictors stay resident; of the FFN's neurons a fraction
    /// `active` is needed per token, of which `loaded` must come from flash (1 without windowing;
    /// the incremental share with it), read in scattered requests of `chunk` bytes.
    Sparse { active: f64, loaded: f64, window_cache: f64, predictor: f64, chunk: u64 },
}

/// One decode step.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub flash_bytes: f64,
    pub read_bytes: u64,
    /// Bytes per second the drive sustained on one layer's reads.
    pub read_throughput: f64,
    pub io_s: f64,
    pub memory_s: f64,
    pub compute_s: f64,
    pub total_s: f64,
    /// Bytes the token's resident weights and caches hold in DRAM.
    pub dram_bytes: f64,
    pub events: u64,
}

/// Random scattered reads fall anywhere in this many bytes (an FFN's worth of a large model).
const SPAN: u64 = 64 << 30;

/// Simulates one decode step of `m` at `context` tokens of KV cache with queue depth `qd`.
pub fn token(mc: &Machine, m: &Model, s: Streaming, context: u64, qd: usize, budget: u64) -> Result<Token, FlashError> {
    let e = m.bytes_per_element as f64;
    let ffn = (m.layers * m.ffn_params_per_layer()) as f64;
    let all = m.params() as f64;
    // One FFN neuron: its column of every up (and gate) projection and its row of the down one.
    let neuron = m.ffn_params_per_layer() / m.ffn_dim * m.bytes_per_element;
    let (flash_bytes, read_bytes, reads_per_layer, random, touched, resident) = match s {
        Streaming::Dense { resident, read } => {
            if !(0.0..1.0).contains(&resident) {
                return Err(err("resident", format!("must be in [0, 1) (got {resident})")));
            }
            if read == 0 {
                return Err(err("read", "a sequential read must have at least one byte"));
            }
            let bytes = (1.0 - resident) * all * e;
            let per_layer = (bytes / m.layers as f64 / read as f64).ceil().max(1.0) as u64;
            (bytes, read, per_layer, false, all, resident * all)
        }
        Streaming::Sparse { active, loaded, window_cache, predictor, chunk } => {
            for (k, v) in [("active", active), ("loaded", loaded), ("window_cache", window_cache)] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(err(k, format!("must be a fraction in [0, 1] (got {v})")));
                }
            }
            if loaded > active {
                return Err(err("loaded", format!("cannot exceed the active fraction {active} (got {loaded})")));
            }
            if chunk == 0 {
                return Err(err("chunk", "a read must have at least one byte"));
            }
            let per_layer_neurons = (loaded * m.ffn_dim as f64).round() as u64;
            let bytes = (per_layer_neurons * m.layers * neuron) as f64;
            let per_layer = (per_layer_neurons * neuron).div_ceil(chunk);
            let pred = predictor * all;
            let touched = all - ffn + active * ffn + pred;
            (bytes, chunk, per_layer, true, touched, all - ffn + window_cache.max(active) * ffn + pred)
        }
    };
    let kv = (m.kv_bytes_per_token() * context) as f64;
    let dram_bytes = resident * e + kv;
    if let Some(cap) = mc.memory_bytes
        && dram_bytes > cap as f64
    {
        return Err(err(
            "memory",
            format!(
                "resident weights and caches need {:.2} GB, more than the {:.2} GB of the weight memory",
                dram_bytes / 1e9,
                cap as f64 / 1e9
            ),
        ));
    }
    let (read_throughput, events) = if flash_bytes > 0.0 {
        let reqs = if random {
            nand::random(read_bytes, reads_per_layer, SPAN, 7)
        } else {
            nand::sequential(read_bytes, reads_per_layer)
        };
        let st = nand::run(&mc.timing, &reqs, qd, budget)?;
        (st.bandwidth(), st.events)
    } else {
        (f64::INFINITY, 0)
    };
    let flash_s = flash_bytes / read_throughput;
    let io_s = mc.link.map_or(flash_s, |l| flash_s.max(flash_bytes / l));
    // Newly loaded neurons are appended to each layer's matrix and as many evicted ones are
    // overwritten by moving the last row into the hole: each loaded byte is written once and
    // moved once (a read and a write of the weight memory each).
    let memory_s = if random { 4.0 * flash_bytes / mc.memory_bandwidth } else { 0.0 };
    let macs = touched + (2 * m.layers * m.heads * m.head_dim * context) as f64;
    let weight_s = touched * e + kv;
    let compute_s = (macs / mc.macs_per_s).max(weight_s / mc.memory_bandwidth);
    Ok(Token {
        flash_bytes,
        read_bytes,
        read_throughput,
        io_s,
        memory_s,
        compute_s,
        total_s: io_s + memory_s + compute_s,
        dram_bytes,
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt() -> Model {
        let p = strata_workloads::presets::find("opt-6.7b").unwrap();
        strata_workloads::ModelSpec::from_toml(p.text).unwrap().build().unwrap()
    }

    fn machine(arch: &str, unit: &str) -> Machine {
        let a = Arch::from_toml(strata_arch::presets::text(arch).unwrap()).unwrap();
        Machine::from_arch(&a, unit).unwrap()
    }

    const SPARSE: Streaming =
        Streaming::Sparse { active: 0.1, loaded: 0.1, window_cache: 0.0, predictor: 0.0, chunk: 16 << 10 };

    /// Naive loading moves the whole model (2 bytes a weight) and, read in large requests, runs
    /// at the drive's channel ceiling; the I/O time is bytes over that throughput.
    #[test]
    fn naive_reads_the_whole_model_near_the_channel_ceiling() {
        let (mc, m) = (machine("m1-max", "cpu"), opt());
        let t = token(&mc, &m, Streaming::Dense { resident: 0.0, read: 1 << 20 }, 256, 32, 1 << 26).unwrap();
        assert_eq!(t.flash_bytes, m.weight_bytes() as f64);
        let ceiling = mc.timing.bounds(1 << 20).least();
        assert!(t.read_throughput <= ceiling * 1.0001 && t.read_throughput >= 0.9 * ceiling, "{t:?} {ceiling}");
        assert!((t.io_s - t.flash_bytes / t.read_throughput).abs() < 1e-12);
        let half = token(&mc, &m, Streaming::Dense { resident: 0.5, read: 1 << 20 }, 256, 32, 1 << 26).unwrap();
        assert!((half.flash_bytes / t.flash_bytes - 0.5).abs() < 1e-9);
    }

    /// Small scattered reads are slower per byte than large ones, and bundling (twice the read)
    /// is faster per byte but never more than twice; windowing moves only its incremental share.
    #[test]
    fn read_size_and_windowing_change_io_as_the_drive_says() {
        let (mc, m) = (machine("m1-max", "cpu"), opt());
        let dense = token(&mc, &m, Streaming::Dense { resident: 0.0, read: 1 << 20 }, 256, 32, 1 << 26).unwrap();
        let sparse = token(&mc, &m, SPARSE, 256, 32, 1 << 26).unwrap();
        assert!(sparse.read_throughput < 0.5 * dense.read_throughput, "{sparse:?}");
        let want = (0.1f64 * 16384.0).round() * 32.0 * 4096.0 * 2.0 * 2.0;
        assert!((sparse.flash_bytes - want).abs() < 1.0);
        let Streaming::Sparse { active, predictor, window_cache, .. } = SPARSE else { unreachable!() };
        let win = Streaming::Sparse { active, loaded: 0.024, window_cache, predictor, chunk: 16 << 10 };
        let w = token(&mc, &m, win, 256, 32, 1 << 26).unwrap();
        assert!((w.flash_bytes / sparse.flash_bytes - 0.024 / 0.1).abs() < 0.01);
        let Streaming::Sparse { loaded, .. } = win else { unreachable!() };
        let bundled = token(
            &mc,
            &m,
            Streaming::Sparse { active, loaded, window_cache, predictor, chunk: 32 << 10 },
            256,
            32,
            1 << 26,
        )
        .unwrap();
        assert!(bundled.read_throughput > w.read_throughput && bundled.read_throughput <= 2.0 * w.read_throughput);
        // A shallower queue never reads faster.
        let shallow = token(&mc, &m, win, 256, 4, 1 << 26).unwrap();
        assert!(shallow.read_throughput < w.read_throughput);
    }

    /// Sparsity shrinks compute to what the token touches: attention and embeddings in full,
    /// the active FFN share and the predictors.
    #[test]
    fn compute_follows_the_weights_touched() {
        let (mc, m) = (machine("rtx4090-host", "tensor"), opt());
        let dense = token(&mc, &m, Streaming::Dense { resident: 0.0, read: 1 << 20 }, 0, 32, 1 << 26).unwrap();
        // Memory-bound GeMV on the GPU: every weight read once from its memory.
        assert!((dense.compute_s - m.weight_bytes() as f64 / mc.memory_bandwidth).abs() < 1e-9);
        let sparse = token(&mc, &m, SPARSE, 0, 32, 1 << 26).unwrap();
        let ffn = 32.0 * 4096.0 * 16384.0 * 2.0;
        let all = m.params() as f64;
        assert!((sparse.compute_s / dense.compute_s - (all - 0.9 * ffn) / all).abs() < 1e-9);
    }

    #[test]
    fn bad_fractions_and_machines_are_named() {
        let (mc, m) = (machine("m1-max", "cpu"), opt());
        let e = token(&mc, &m, Streaming::Dense { resident: 1.0, read: 1 << 20 }, 0, 32, 1 << 26).unwrap_err();
        assert_eq!(e.key, "resident");
        let Streaming::Sparse { window_cache, predictor, chunk, .. } = SPARSE else { unreachable!() };
        let e = token(
            &mc,
            &m,
            Streaming::Sparse { active: 0.1, loaded: 0.2, window_cache, predictor, chunk },
            0,
            32,
            1 << 26,
        )
        .unwrap_err();
        assert_eq!(e.key, "loaded");
        let a = Arch::from_toml(strata_arch::presets::text("m1-max").unwrap()).unwrap();
        assert_eq!(Machine::from_arch(&a, "npu").unwrap_err().key, "unit");
        let a = Arch::from_toml(strata_arch::presets::text("a100").unwrap()).unwrap();
        assert_eq!(Machine::from_arch(&a, "tensor").unwrap_err().key, "arch.levels");
    }
}
