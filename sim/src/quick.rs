//! The cost of one Einsum's nest without building a report: what a mapper calls millions of
//! times. It agrees with [`crate::evaluate`] on a single-Einsum mapping (a test checks this).

use strata_arch::Arch;
use strata_mappings::EinsumNest;
use strata_workloads::Cascade;

use crate::counts::{MAX_LEVELS, Masks, visit};
use crate::space::Space;

/// Latency, energy, off-chip bytes and whether the tiles fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quick {
    pub cycles: f64,
    pub energy_pj: f64,
    pub offchip_bytes: u64,
    pub fits: bool,
}

pub fn quick(arch: &Arch, c: &Cascade, nest: &EinsumNest) -> Quick {
    assert!(nest.path.len() <= MAX_LEVELS, "at most {MAX_LEVELS} levels");
    let space = Space::new(c, nest);
    let masks = Masks::new(nest);
    let (mut rd, mut wr, mut held) = ([0u64; MAX_LEVELS], [0u64; MAX_LEVELS], [0u64; MAX_LEVELS]);
    let mut link_pj = 0.0;
    let (points, steps) = visit(
        nest,
        &space,
        &masks,
        |oi, lv, a| {
            let o = &nest.operands[oi];
            rd[lv] += o.bytes(a.reads);
            wr[lv] += o.bytes(a.fills + a.updates);
            link_pj += crate::evaluate::link_energy(arch, nest, oi, lv, a).map(|x| x.1).sum::<f64>();
        },
        |oi, lv, t| held[lv] += nest.operands[oi].bytes(t),
    );
    let unit = arch.unit(nest.unit);
    let word = arch.word_bytes as f64;
    let (mut point_cycles, mut point_energy) = (0.0, 0.0);
    for op in &nest.ops {
        point_cycles += unit.ops[*op].cycles;
        point_energy += unit.ops[*op].energy.0;
    }
    let mut cycles = steps as f64 * point_cycles;
    let mut energy = points as f64 * point_energy + link_pj;
    let mut fits = true;
    for (lv, &level_id) in nest.path.iter().enumerate() {
        let level = arch.level(level_id);
        energy += (rd[lv] as f64 * level.read_energy.0 + wr[lv] as f64 * level.write_energy.0) / word;
        if lv > 0 && level.capacity.is_some_and(|cap| held[lv] > cap.0) {
            fits = false;
        }
        let inst = level.instances() as f64;
        let t = level.read_bandwidth.map_or(0.0, |bw| rd[lv] as f64 / (bw * inst))
            + level.write_bandwidth.map_or(0.0, |bw| wr[lv] as f64 / (bw * inst));
        cycles = cycles.max(t);
    }
    Quick { cycles, energy_pj: energy, offchip_bytes: rd[0] + wr[0], fits }
}
