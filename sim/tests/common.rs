//! Shared helpers of the sim tests: a 4-level test architecture, random valid mappings, inputs.

#![allow(dead_code)]

use std::collections::BTreeMap;

use strata_arch::Arch;
use strata_mappings::spec::{EinsumMappingSpec, GroupSpec, LevelSpec, MappingSpec, Pipelining};
use strata_workloads::interp::{Dense, external_tensors};
use strata_workloads::{Cascade, Role};

/// DRAM → L2 → Buf (2 instances) → RF (4×2 instances, one PE each): every kind of fan-out.
pub const ARCH: &str = r#"
[arch]
name = "test4"
clock = "1 GHz"
[[arch.levels]]
name = "DRAM"
kind = "dram"
read_bandwidth = "8 GB/s"
read_energy = "60 pJ"
[[arch.levels]]
name = "L2"
kind = "sram"
capacity = "1 MiB"
read_bandwidth = "64 B/cycle"
read_energy = "5 pJ"
[[arch.levels]]
name = "Buf"
kind = "sram"
capacity = "64 KiB"
mesh = [2, 1]
read_bandwidth = "16 B/cycle"
read_energy = "2 pJ"
[[arch.levels]]
name = "RF"
kind = "register_file"
capacity = "4 KiB"
mesh = [4, 2]
read_energy = "0.5 pJ"
[[arch.compute]]
name = "pe"
level = "RF"
rows = 2
cols = 4
pipeline_latency = 8
ops = { mac = { energy = "1 pJ" }, add = { energy = "0.5 pJ" }, max = { energy = "0.1 pJ" }, exp = { cycles = 4, energy = "4 pJ" }, div = { energy = "3 pJ" } }
"#;

/// The plain GEMM `Z[m,n] = A[k,m] · B[k,n]` at the given sizes.
pub fn gemm(m: u64, n: u64, k: u64) -> Cascade {
    let text = format!(
        "[cascade]\nname = \"gemm\"\nranks = {{ m = {m}, n = {n}, k = {k} }}\n[[cascade.einsums]]\nexpr = \"Z[m,n] = A[k,m] * B[k,n]\"\n"
    );
    strata_workloads::CascadeSpec::from_toml(&text).unwrap().build().unwrap()
}

pub fn arch() -> Arch {
    Arch::from_toml(ARCH).unwrap()
}

/// [`ARCH`] with a chip-to-chip link between DRAM and L2 and an on-chip link above each Buf, so
/// that bytes crossing links cost energy.
pub fn arch_with_links() -> Arch {
    let text = ARCH
        .replace("name = \"L2\"\n", "name = \"L2\"\nlink = \"d2d\"\n")
        .replace("name = \"Buf\"\n", "name = \"Buf\"\nlink = \"noc\"\n")
        + "[[arch.links]]\nname = \"d2d\"\npreset = \"ucie-standard\"\n[[arch.links]]\nname = \"noc\"\nkind = \"dma\"\nbandwidth = \"64 GB/s\"\nenergy_per_bit = \"0.1 pJ/bit\"\n";
    let a = Arch::from_toml(&text).unwrap();
    assert_eq!(a.links.len(), 2);
    a
}

pub const LEVELS: [&str; 4] = ["DRAM", "L2", "Buf", "RF"];

/// A deterministic stream of random numbers (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Loop slots in nest order: (level, dim, fan-out limit).
const SLOTS: [(usize, Option<&str>, u64); 7] =
    [(0, None, 0), (1, None, 0), (1, Some("x"), 2), (2, None, 0), (2, Some("x"), 2), (2, Some("y"), 2), (3, None, 0)];

/// A random valid mapping of one Einsum: ranks split over random slots with small inner
/// bounds and a `*` outermost loop, loops shuffled within a level, random keep sets.
fn einsum_mapping(c: &Cascade, e: usize, skip: &[&str], min_level: usize, rng: &mut Rng) -> EinsumMappingSpec {
    let einsum = &c.einsums()[e];
    let mut per_level: Vec<Vec<String>> = vec![Vec::new(); 4];
    let mut spatial: Vec<Vec<String>> = vec![Vec::new(); 4];
    let mut used = [1u64; SLOTS.len()];
    for &r in &einsum.iteration_ranks {
        let name = &c.rank(r).name;
        if skip.contains(&name.as_str()) {
            continue;
        }
        let n = 1 + rng.below(3) as usize;
        let n = n.min(SLOTS.iter().filter(|s| s.0 >= min_level).count());
        let mut slots: Vec<usize> = (0..SLOTS.len()).filter(|&s| SLOTS[s].0 >= min_level).collect();
        for i in (1..slots.len()).rev() {
            slots.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut chosen: Vec<usize> = slots[..n].to_vec();
        chosen.sort_unstable();
        for (j, &s) in chosen.iter().enumerate() {
            let (level, dim, limit) = SLOTS[s];
            let bound = if j == 0 { "*".to_string() } else { (1 + rng.below(3)).to_string() };
            let spatial_ok = dim.is_some() && j > 0 && used[s] * bound.parse::<u64>().unwrap_or(1) <= limit;
            if spatial_ok {
                used[s] *= bound.parse::<u64>().unwrap();
                spatial[level].push(format!("{name}={bound}@{}", dim.unwrap()));
            } else {
                per_level[level].push(format!("{name}={bound}"));
            }
        }
    }
    let tensors: Vec<String> =
        std::iter::once(&einsum.output).chain(&einsum.inputs).map(|a| c.tensor(a.tensor).name.clone()).collect();
    let mut levels = Vec::new();
    for lv in 0..4 {
        let mut loops = per_level[lv].clone();
        // The outermost loop of a rank must stay first among that rank's loops: shuffle only
        // loops of distinct ranks relative to each other by rotating, keeping rank order stable.
        if loops.len() > 1 && rng.chance(50) {
            let ranks: Vec<String> = loops.iter().map(|l| l.split('=').next().unwrap().to_string()).collect();
            let mut order: Vec<usize> = (0..loops.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            // Stable within a rank: re-sort each rank's occurrences back into original order.
            let mut shuffled: Vec<String> = order.iter().map(|&i| loops[i].clone()).collect();
            for r in ranks.iter().collect::<std::collections::BTreeSet<_>>() {
                let pos: Vec<usize> =
                    (0..shuffled.len()).filter(|&i| shuffled[i].starts_with(&format!("{r}="))).collect();
                let orig: Vec<String> = loops.iter().filter(|l| l.starts_with(&format!("{r}="))).cloned().collect();
                for (p, o) in pos.into_iter().zip(orig) {
                    shuffled[p] = o;
                }
            }
            loops = shuffled;
        }
        loops.extend(spatial[lv].clone());
        let keep =
            if lv == 0 { None } else { Some(tensors.iter().filter(|_| rng.chance(55)).cloned().collect::<Vec<_>>()) };
        levels.push(LevelSpec { level: LEVELS[lv].to_string(), loops, keep, bypass: None });
    }
    EinsumMappingSpec { einsum: einsum.name.clone(), unit: "pe".into(), levels }
}

/// A random valid mapping of a whole cascade. 1-pass attention runs its recurrence in a group
/// stepping through m1; other cascades get a random group sharing an outer loop over `b`.
pub fn random_mapping(c: &Cascade, seed: u64) -> MappingSpec {
    let mut rng = Rng(seed);
    let mut groups = Vec::new();
    let mut skip: Vec<Vec<&str>> = vec![Vec::new(); c.einsums().len()];
    let mut min_level = vec![0usize; c.einsums().len()];
    let recurrence: Vec<usize> = (0..c.einsums().len()).filter(|&e| c.einsums()[e].iterative.is_some()).collect();
    if let Some(&first) = recurrence.first() {
        let m1 = c.rank_id("m1").unwrap();
        let members: Vec<String> = recurrence.iter().map(|&e| c.einsums()[e].name.clone()).collect();
        // The recurrence's shared loop sits in DRAM or, like FuseMax's p1 loop, one level down.
        let at_l2 = rng.chance(50);
        for &e in &recurrence {
            skip[e].push("m1");
            if at_l2 {
                min_level[e] = 1;
            }
        }
        let pipelining = if rng.chance(50) { Pipelining::Interleaved } else { Pipelining::Sequential };
        let m1_loop = format!("{}m1={}", if at_l2 { "L2:" } else { "" }, c.rank(m1).size);
        groups.push(GroupSpec { name: "rec".into(), prefix: vec![m1_loop], members, pipelining, shared: vec![] });
        // Sometimes share the batch loop between the recurrence and the final division.
        if rng.chance(50) && c.rank_id("b").is_some() {
            let mut members = vec!["rec".to_string()];
            members.extend((recurrence.last().unwrap() + 1..c.einsums().len()).map(|e| c.einsums()[e].name.clone()));
            let _ = first;
            groups.push(GroupSpec {
                name: "outer".into(),
                prefix: vec!["b=*".into()],
                members,
                pipelining: Pipelining::Sequential,
                shared: vec![],
            });
            for s in skip.iter_mut().skip(recurrence[0]) {
                s.push("b");
            }
        }
    } else if c.einsums().len() > 1 && rng.chance(50) {
        // A run of consecutive Einsums that all have rank b shares it.
        if let Some(b) = c.rank_id("b") {
            let start = rng.below(c.einsums().len() as u64) as usize;
            let mut end = start;
            while end + 1 < c.einsums().len()
                && c.einsums()[end + 1].iteration_ranks.contains(&b)
                && !reads_selection(c, end + 1, start)
            {
                end += 1;
            }
            if c.einsums()[start].iteration_ranks.contains(&b) && end > start {
                let members = (start..=end).map(|e| c.einsums()[e].name.clone()).collect();
                groups.push(GroupSpec {
                    name: "shared-b".into(),
                    prefix: vec!["b=*".into()],
                    members,
                    pipelining: Pipelining::Interleaved,
                    shared: vec![],
                });
                for s in skip.iter_mut().take(end + 1).skip(start) {
                    s.push("b");
                }
            }
        }
    }
    let einsums = (0..c.einsums().len()).map(|e| einsum_mapping(c, e, &skip[e], min_level[e], &mut rng)).collect();
    MappingSpec { name: format!("random-{seed}"), description: String::new(), einsums, groups }
}

/// Whether Einsum `e` reads a `top(..)` output or a gather index produced at or after `from`:
/// a selection is read only once complete, so the two may not share a group.
fn reads_selection(c: &Cascade, e: usize, from: usize) -> bool {
    let einsum = &c.einsums()[e];
    einsum.inputs.iter().any(|a| {
        let indexes = einsum.inputs.iter().any(|g| g.gather().is_some_and(|(_, _, i)| einsum.inputs[i] == *a));
        c.producer(a.tensor)
            .is_some_and(|p| p >= from && (indexes || c.einsums()[p].reduce == strata_workloads::ReduceOp::Top))
    })
}

/// Random inputs in [-2, 2) for every tensor the cascade reads from outside.
pub fn inputs(c: &Cascade, seed: u64) -> BTreeMap<String, Dense<f64>> {
    let mut rng = Rng(seed ^ 0xABCD);
    external_tensors(c)
        .map(|(name, shape)| {
            let n: u64 = shape.iter().product();
            (name.to_string(), Dense { shape: shape.to_vec(), data: (0..n).map(|_| rng.unit() * 4.0 - 2.0).collect() })
        })
        .collect()
}

/// Tensors whose values the executor must reproduce: everything produced inside the cascade.
pub fn produced(c: &Cascade) -> Vec<String> {
    c.tensors().iter().filter(|t| !t.role.is_external() && t.role != Role::Input).map(|t| t.name.clone()).collect()
}

/// The low-rank layer `Y = (P · B) · W` (FlashSVD's rebuild fused into its consumer): `T[m,f] =
/// P[m,r] · B[r,f]`, then `Y[m,n] = T[m,f] · W[f,n]`.
pub fn low_rank_chain(m: u64, r: u64, f: u64, n: u64) -> Cascade {
    let text = format!(
        "[cascade]\nname = \"low-rank\"\nranks = {{ m = {m}, r = {r}, f = {f}, n = {n} }}\n[[cascade.einsums]]\nexpr = \"T[m,f] = P[m,r] * B[r,f]\"\n[[cascade.einsums]]\nexpr = \"Y[m,n] = T[m,f] * W[f,n]\"\n"
    );
    strata_workloads::CascadeSpec::from_toml(&text).unwrap().build().unwrap()
}

/// A random mapping of [`low_rank_chain`] that fuses both Einsums in a group looping over `n`
/// (which the rebuild `T` lacks, so it is recomputed at every step) and sometimes `m` and `f`,
/// in a random order, at DRAM or one level down; the members' own loops are random below it.
pub fn recompute_mapping(c: &Cascade, seed: u64) -> MappingSpec {
    let mut rng = Rng(seed);
    let mut prefix = vec!["n"];
    if rng.chance(50) {
        prefix.insert(rng.below(2) as usize, "m");
    }
    // `f`, which `Y` reduces: innermost, `Y` accumulates across the steps (FlashSVD's stream
    // over the FFN's width); elsewhere its partial sums drain at every step.
    if rng.chance(60) {
        let at = if rng.chance(60) { prefix.len() } else { rng.below(prefix.len() as u64) as usize };
        prefix.insert(at, "f");
    }
    let at_l2 = rng.chance(50);
    let min_level = usize::from(at_l2);
    let loops: Vec<String> = prefix.iter().map(|r| format!("{}{r}=*", if at_l2 { "L2:" } else { "" })).collect();
    let einsums = (0..2).map(|e| einsum_mapping(c, e, &prefix, min_level, &mut rng)).collect();
    let groups = vec![GroupSpec {
        name: "fused".into(),
        prefix: loops,
        members: vec!["T".into(), "Y".into()],
        pipelining: if rng.chance(50) { Pipelining::Interleaved } else { Pipelining::Sequential },
        shared: vec![],
    }];
    MappingSpec { name: format!("recompute-{seed}"), description: String::new(), einsums, groups }
}
