//! The validated architecture: a tree of storage levels, compute arrays attached to levels, and
//! the links between devices.
//!
//! A single accelerator is a chain (DRAM → global buffer → PE registers); FuseMax's global
//! buffer feeds two arrays, so it has two children; a GPU + host + SSD system is a chain whose
//! upper edges are PCIe links. Levels are stored parents-first, so a `LevelId` order is a
//! topological order.

use std::collections::BTreeMap;

use crate::error::{SpecError, SpecResult, from_toml};
use crate::spec::{ArchFile, ArchSpec, DramSpec, LevelKind, LinkKind, NandSpec};
use crate::units::{
    Bytes, BytesPerSecond, Hertz, Picojoules, Seconds, parse_bandwidth, parse_bytes, parse_energy,
    parse_energy_per_bit, parse_frequency, parse_time,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LevelId(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId(pub usize);

#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub name: String,
    pub kind: LevelKind,
    pub parent: Option<LevelId>,
    pub device: String,
    /// Per instance; `None` is unbounded.
    pub capacity: Option<Bytes>,
    pub mesh: (u64, u64),
    /// Bytes per cycle per instance (the link between this level and its parent included); `None` is unbounded.
    pub read_bandwidth: Option<f64>,
    /// The memory's own read bandwidth in bytes per cycle per instance, before its link limits
    /// fills: what a unit reading data already resident in the level sees.
    pub port_bandwidth: Option<f64>,
    pub write_bandwidth: Option<f64>,
    pub read_energy: Picojoules,
    pub write_energy: Picojoules,
    pub latency: Option<Seconds>,
    pub link: Option<usize>,
    pub dram: Option<DramOrg>,
    pub nand: Option<NandOrg>,
    pub area_um2_per_kib: Option<f64>,
}

impl Level {
    pub fn instances(&self) -> u64 {
        self.mesh.0 * self.mesh.1
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DramOrg {
    pub standard: String,
    pub channels: u64,
    /// Ranks sharing a channel's buses (each with every bank group and bank).
    pub ranks: u64,
    pub bank_groups: u64,
    pub banks_per_group: u64,
    pub rows: u64,
    pub row_bytes: Bytes,
    pub bus_bits: u64,
    pub t_ck: Seconds,
    pub timing: BTreeMap<String, f64>,
    pub address_mapping: crate::dram_map::AddressMapping,
    pub power: Option<DramPower>,
}

/// A DRAM device's datasheet power figures (validated): volts, amperes, devices per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DramPower {
    pub vdd: f64,
    pub idd0: f64,
    pub idd2n: f64,
    pub idd3n: f64,
    pub idd4r: f64,
    pub idd4w: f64,
    pub idd5b: f64,
    pub devices: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NandOrg {
    pub name: String,
    pub channels: u64,
    pub chips_per_channel: u64,
    pub dies_per_chip: u64,
    pub planes_per_die: u64,
    pub page_bytes: Bytes,
    pub pages_per_block: u64,
    pub t_read: Seconds,
    pub t_program: Seconds,
    pub t_erase: Seconds,
    pub channel_bandwidth: BytesPerSecond,
    pub t_command: Seconds,
    pub t_plane_command: Seconds,
    pub cache_read: bool,
    pub request_overhead: Seconds,
    pub host_bandwidth: Option<BytesPerSecond>,
    /// Array read time by page type (MLC's LSB, MSB; TLC's LSB, CSB, MSB), the types taking
    /// turns along a block's pages; empty: `t_read` for every page.
    pub t_read_by_page: Vec<Seconds>,
    /// Whether a die starts work on its own or a chip's dies start together when the chip is idle.
    pub scheduling: FlashScheduling,
    /// Host-side time per NVMe command (submission, doorbell, interrupt and completion) that
    /// delays the request without occupying the controller.
    pub command_latency: Seconds,
    /// Blocks per plane: the drive's capacity, which a flash translation layer needs.
    pub blocks_per_plane: Option<u64>,
    /// A page-level flash translation layer; absent: logical pages sit where striping puts them
    /// and are rewritten in place.
    pub ftl: Option<Ftl>,
}

/// When a flash die may start an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlashScheduling {
    /// Each die on its own, as soon as it is idle (Strata's default).
    #[default]
    Die,
    /// A chip's dies start together, and only when none of them is busy or still sending
    /// (MQSim's transaction scheduling).
    Chip,
}

/// A page-level flash translation layer: out-of-place writes, greedy garbage collection, and
/// optionally a cached mapping table whose misses read a translation page from flash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ftl {
    /// Share of each plane's blocks held back from the logical capacity.
    pub over_provisioning: f64,
    /// Garbage collection runs while a plane's free blocks are below this share of its blocks
    /// (at least two blocks).
    pub gc_threshold: f64,
    /// Bytes of the cached mapping table in the controller; absent: the whole table is cached.
    pub mapping_cache: Option<Bytes>,
    /// Bytes of one logical page's mapping entry.
    pub mapping_entry_bytes: u64,
    /// Host reads and writes waiting on a die go ahead of garbage collection's copies and
    /// erases (MQSim's preemptible GC); otherwise a die serves its queue in order.
    pub gc_preemptible: bool,
}

impl NandOrg {
    pub fn planes(&self) -> u64 {
        self.dies() * self.planes_per_die
    }

    pub fn dies(&self) -> u64 {
        self.channels * self.chips_per_channel * self.dies_per_chip
    }

    /// Parses and validates a `[nand]` table on its own.
    pub fn from_toml(text: &str) -> SpecResult<NandOrg> {
        let f: NandFile = from_toml(text)?;
        nand("nand", &f.nand)
    }

    /// A NAND preset by name.
    pub fn preset(name: &str) -> Option<SpecResult<NandOrg>> {
        NAND_PRESETS.iter().find(|p| p.0 == name).map(|p| NandOrg::from_toml(p.1))
    }
}

/// NAND flash drives for the engine, by name.
pub const NAND_PRESETS: &[(&str, &str)] = &[
    ("mqsim-mlc", include_str!("../presets/nand/mqsim-mlc.toml")),
    ("mqsim-mlc-shipped", include_str!("../presets/nand/mqsim-mlc-shipped.toml")),
    ("tlc-client", include_str!("../presets/nand/tlc-client.toml")),
    ("cambricon-flash", include_str!("../presets/nand/cambricon-flash.toml")),
    ("m1-max-ssd", include_str!("../presets/nand/m1-max-ssd.toml")),
];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NandFile {
    nand: NandSpec,
}

/// Cost of one operation on one PE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpCost {
    pub cycles: f64,
    pub energy: Picojoules,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComputeUnit {
    pub name: String,
    pub level: LevelId,
    pub rows: u64,
    pub cols: u64,
    pub pipeline_latency: u64,
    pub ops: BTreeMap<String, OpCost>,
    pub pe_area_um2: Option<f64>,
}

impl ComputeUnit {
    pub fn pes(&self) -> u64 {
        self.rows * self.cols
    }

    /// Operations `op` per second over all PEs at `clock` (`None` when the unit lacks `op`).
    pub fn rate(&self, op: &str, clock: Hertz) -> Option<f64> {
        self.ops.get(op).map(|c| self.pes() as f64 / c.cycles * clock.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    pub kind: LinkKind,
    pub bandwidth: BytesPerSecond,
    pub count: u64,
    pub latency: Option<Seconds>,
    pub energy_per_bit: Picojoules,
    /// The two levels a peer link joins; `None` for a link between a level and its parent.
    pub connects: Option<[LevelId; 2]>,
}

/// A device (a GPU, a host, a drive, a chiplet) and how many identical copies the system has.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    pub name: String,
    pub description: String,
    pub clock: Hertz,
    pub word_bytes: u64,
    pub levels: Vec<Level>,
    pub units: Vec<ComputeUnit>,
    pub links: Vec<Link>,
    /// Every device a level belongs to, in order of first appearance.
    pub devices: Vec<Device>,
    pub gpu: Option<crate::gpu::Gpu>,
}

/// What a GPU's kernels see of its levels, found by what they are: the SMs are the instances of
/// the level its widest unit (the tensor cores) attaches to, whose capacity is the shared memory
/// per SM; L2 is that level's parent; device memory is the outermost DRAM or HBM level above it
/// on the same device (a host's DRAM above it is another device).
fn gpu_memories(levels: &[Level], units: &[ComputeUnit], clock: Hertz) -> SpecResult<crate::gpu::GpuMemories> {
    let widest = units
        .iter()
        .max_by_key(|u| u.pes())
        .ok_or_else(|| SpecError::new("arch.gpu", "a GPU needs compute units (its SMs' tensor cores)"))?;
    let sm = &levels[widest.level.0];
    let at = |k: &str| format!("arch.levels.{}.{k}", sm.name);
    let shared = sm.capacity.ok_or_else(|| SpecError::new(at("capacity"), "the GPU's shared memory per SM"))?;
    let l2 = sm
        .parent
        .map(|p| &levels[p.0])
        .ok_or_else(|| SpecError::new(at("parent"), "the GPU's SM level needs a parent (its L2)"))?;
    let per_s = |l: &Level, what: &str| {
        l.port_bandwidth.map(|b| BytesPerSecond(b * clock.0)).ok_or_else(|| {
            SpecError::new(format!("arch.levels.{}.read_bandwidth", l.name), format!("the GPU's {what} bandwidth"))
        })
    };
    let memory = device_memory(levels, widest.level).map(|m| &levels[m.0]).ok_or_else(|| {
        SpecError::new("arch.levels", format!("no DRAM or HBM level above `{}` on the GPU's device", sm.name))
    })?;
    Ok(crate::gpu::GpuMemories {
        sms: sm.instances(),
        shared_memory_per_sm: shared.0,
        l2_bandwidth: per_s(l2, "L2")?,
        l2_capacity: l2
            .capacity
            .ok_or_else(|| SpecError::new(format!("arch.levels.{}.capacity", l2.name), "the GPU's L2 capacity"))?
            .0,
        memory_bandwidth: per_s(memory, "device memory")?,
    })
}

/// The outermost DRAM or HBM level above `level` on its device (a GPU's memory under its host):
/// shared by the GPU model and anything that places tensors in a device's memory.
fn device_memory(levels: &[Level], level: LevelId) -> Option<LevelId> {
    let device = &levels[level.0].device;
    let mut memory = None;
    let mut here = levels[level.0].parent;
    while let Some(p) = here {
        let l = &levels[p.0];
        if &l.device != device {
            break;
        }
        if matches!(l.kind, LevelKind::Dram | LevelKind::Hbm) {
            memory = Some(p);
        }
        here = l.parent;
    }
    memory
}

/// Most of any one organisational count (rows, banks, channels, mesh sides, PE rows, ...): far
/// beyond any real part, and small enough that products of a few never leave 64 bits.
const MAX_COUNT: i64 = 1 << 20;

fn positive(path: &str, v: i64) -> SpecResult<u64> {
    match v {
        v if v <= 0 => Err(SpecError::new(path, format!("must be positive (got {v})"))),
        v if v > MAX_COUNT => Err(SpecError::new(path, format!("must be at most {MAX_COUNT} (got {v})"))),
        v => Ok(v as u64),
    }
}

fn nonneg(path: &str, v: Option<f64>) -> SpecResult<Option<f64>> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => {
            Err(SpecError::new(path, format!("must be a non-negative area (got {x})")))
        }
        v => Ok(v),
    }
}

fn unit<T>(path: &str, s: &str, parse: fn(&str) -> Result<T, String>) -> SpecResult<T> {
    parse(s).map_err(|e| SpecError::new(path, e))
}

impl Arch {
    /// Parses and validates an architecture file's text.
    pub fn from_toml(text: &str) -> SpecResult<Arch> {
        let file: ArchFile = from_toml(text)?;
        Arch::from_spec(&file.arch)
    }

    pub fn from_spec(spec: &ArchSpec) -> SpecResult<Arch> {
        if spec.name.trim().is_empty() {
            return Err(SpecError::new("arch.name", "must not be empty"));
        }
        let clock = unit("arch.clock", &spec.clock, parse_frequency)?;
        if clock.0 <= 0.0 {
            return Err(SpecError::new("arch.clock", "must be positive"));
        }
        let word_bytes = positive("arch.word_bytes", spec.word_bytes)?;
        let mut links = Vec::new();
        for (i, l) in spec.links.iter().enumerate() {
            let p = format!("arch.links[{i}]");
            if links.iter().any(|x: &Link| x.name == l.name) {
                return Err(SpecError::new(format!("{p}.name"), format!("duplicate link name `{}`", l.name)));
            }
            let preset = match &l.preset {
                None => None,
                Some(name) => {
                    let text = LINK_PRESETS.iter().find(|x| x.0 == name).map(|x| x.1).ok_or_else(|| {
                        let names: Vec<&str> = LINK_PRESETS.iter().map(|x| x.0).collect();
                        SpecError::new(
                            format!("{p}.preset"),
                            format!("`{name}` is not a link preset ({})", names.join(", ")),
                        )
                    })?;
                    let f: crate::spec::LinkPresetFile = crate::error::from_toml(text)
                        .map_err(|e| SpecError::new(format!("{p}.preset"), format!("preset `{name}`: {}", e.reason)))?;
                    Some(f.link)
                }
            };
            let missing = |k: &str| SpecError::new(format!("{p}.{k}"), "is required (or name a link `preset`)");
            let kind = l.kind.or(preset.as_ref().map(|x| x.kind)).ok_or_else(|| missing("kind"))?;
            let bw_text = l
                .bandwidth
                .clone()
                .or(preset.as_ref().map(|x| x.bandwidth.clone()))
                .ok_or_else(|| missing("bandwidth"))?;
            let bandwidth = unit(&format!("{p}.bandwidth"), &bw_text, parse_bandwidth)?;
            if bandwidth.0 <= 0.0 {
                return Err(SpecError::new(format!("{p}.bandwidth"), "must be positive"));
            }
            let latency = l.latency.clone().or(preset.as_ref().and_then(|x| x.latency.clone()));
            let energy = l.energy_per_bit.clone().or(preset.as_ref().and_then(|x| x.energy_per_bit.clone()));
            let count = l.count.or(preset.as_ref().and_then(|x| x.count)).unwrap_or(1);
            links.push(Link {
                name: l.name.clone(),
                kind,
                bandwidth,
                count: positive(&format!("{p}.count"), count)?,
                latency: latency.as_deref().map(|s| unit(&format!("{p}.latency"), s, parse_time)).transpose()?,
                energy_per_bit: energy
                    .as_deref()
                    .map(|s| unit(&format!("{p}.energy_per_bit"), s, parse_energy_per_bit))
                    .transpose()?
                    .unwrap_or_default(),
                connects: None,
            });
        }
        if spec.levels.is_empty() {
            return Err(SpecError::new("arch.levels", "an architecture needs at least one storage level"));
        }
        let mut levels: Vec<Level> = Vec::new();
        for (i, l) in spec.levels.iter().enumerate() {
            let p = format!("arch.levels[{i}]");
            if levels.iter().any(|x| x.name == l.name) {
                return Err(SpecError::new(format!("{p}.name"), format!("duplicate level name `{}`", l.name)));
            }
            if l.root && l.parent.is_some() {
                return Err(SpecError::new(format!("{p}.root"), "a root level cannot also name a parent"));
            }
            let parent = match (&l.parent, i) {
                _ if l.root => None,
                (Some(name), _) => Some(LevelId(levels.iter().position(|x| &x.name == name).ok_or_else(|| {
                    SpecError::new(format!("{p}.parent"), format!("`{name}` is not a level listed before this one"))
                })?)),
                (None, 0) => None,
                (None, _) => Some(LevelId(i - 1)),
            };
            let mesh = (positive(&format!("{p}.mesh[0]"), l.mesh[0])?, positive(&format!("{p}.mesh[1]"), l.mesh[1])?);
            if let Some(pa) = parent {
                let pm = levels[pa.0].mesh;
                if mesh.0 % pm.0 != 0 || mesh.1 % pm.1 != 0 {
                    return Err(SpecError::new(
                        format!("{p}.mesh"),
                        format!(
                            "[{}, {}] must be a multiple of the parent's mesh [{}, {}]",
                            mesh.0, mesh.1, pm.0, pm.1
                        ),
                    ));
                }
            }
            let capacity = match &l.capacity {
                Some(s) => {
                    let c = unit(&format!("{p}.capacity"), s, parse_bytes)?;
                    if c.0 == 0 {
                        return Err(SpecError::new(
                            format!("{p}.capacity"),
                            "must be positive (omit it for unbounded)",
                        ));
                    }
                    Some(c)
                }
                None => None,
            };
            let bw = |key: &str, s: &Option<String>| -> SpecResult<Option<f64>> {
                match s {
                    None => Ok(None),
                    Some(s) => {
                        // "512 B/cycle" is per clock; "400 GiB/s" is converted with the arch clock.
                        let per_cycle = match s.trim().strip_suffix("/cycle") {
                            Some(b) => unit(&format!("{p}.{key}"), b, parse_bytes)?.0 as f64,
                            None => unit(&format!("{p}.{key}"), s, parse_bandwidth)?.0 / clock.0,
                        };
                        if per_cycle <= 0.0 {
                            return Err(SpecError::new(
                                format!("{p}.{key}"),
                                "must be positive (omit it for unbounded)",
                            ));
                        }
                        Ok(Some(per_cycle))
                    }
                }
            };
            let link = match &l.link {
                Some(name) => Some(
                    links
                        .iter()
                        .position(|x| &x.name == name)
                        .ok_or_else(|| SpecError::new(format!("{p}.link"), format!("unknown link `{name}`")))?,
                ),
                None => None,
            };
            let link_bw =
                link.map(|k| links[k].bandwidth.0 * links[k].count as f64 / clock.0 / mesh.0 as f64 / mesh.1 as f64);
            let limit = |b: Option<f64>| match (b, link_bw) {
                (Some(b), Some(l)) => Some(b.min(l)),
                (b, l) => b.or(l),
            };
            let port_bandwidth = bw("read_bandwidth", &l.read_bandwidth)?;
            let read_bandwidth = limit(port_bandwidth);
            let write_bandwidth = match &l.write_bandwidth {
                Some(_) => limit(bw("write_bandwidth", &l.write_bandwidth)?),
                None => read_bandwidth,
            };
            let energy = |key: &str, s: &Option<String>| -> SpecResult<Option<Picojoules>> {
                s.as_deref().map(|s| unit(&format!("{p}.{key}"), s, parse_energy)).transpose()
            };
            let read_energy = energy("read_energy", &l.read_energy)?.unwrap_or_default();
            let write_energy = energy("write_energy", &l.write_energy)?.unwrap_or(read_energy);
            let dram = l.dram.as_ref().map(|d| dram(&format!("{p}.dram"), d)).transpose()?;
            let nand = l.nand.as_ref().map(|n| nand(&format!("{p}.nand"), n)).transpose()?;
            if dram.is_some() && !matches!(l.kind, LevelKind::Dram | LevelKind::Hbm) {
                return Err(SpecError::new(
                    format!("{p}.dram"),
                    "only dram and hbm levels carry a [dram] organisation",
                ));
            }
            if nand.is_some() && !matches!(l.kind, LevelKind::Nand | LevelKind::Ssd) {
                return Err(SpecError::new(
                    format!("{p}.nand"),
                    "only nand and ssd levels carry a [nand] organisation",
                ));
            }
            levels.push(Level {
                name: l.name.clone(),
                kind: l.kind,
                parent,
                // A level belongs to its parent's device unless it names its own.
                device: l
                    .device
                    .clone()
                    .unwrap_or_else(|| parent.map_or_else(|| "main".into(), |p: LevelId| levels[p.0].device.clone())),
                capacity,
                mesh,
                read_bandwidth,
                port_bandwidth,
                write_bandwidth,
                read_energy,
                write_energy,
                latency: l.latency.as_deref().map(|s| unit(&format!("{p}.latency"), s, parse_time)).transpose()?,
                link,
                dram,
                nand,
                area_um2_per_kib: nonneg(&format!("{p}.area_um2_per_kib"), l.area_um2_per_kib)?,
            });
        }
        if spec.compute.is_empty() {
            return Err(SpecError::new("arch.compute", "an architecture needs at least one compute unit"));
        }
        let mut units: Vec<ComputeUnit> = Vec::new();
        for (i, c) in spec.compute.iter().enumerate() {
            let p = format!("arch.compute[{i}]");
            if units.iter().any(|x| x.name == c.name) {
                return Err(SpecError::new(format!("{p}.name"), format!("duplicate compute unit name `{}`", c.name)));
            }
            let level = levels
                .iter()
                .position(|x| x.name == c.level)
                .ok_or_else(|| SpecError::new(format!("{p}.level"), format!("unknown level `{}`", c.level)))?;
            let (rows, cols) = (positive(&format!("{p}.rows"), c.rows)?, positive(&format!("{p}.cols"), c.cols)?);
            let mesh = levels[level].mesh;
            if cols % mesh.0 != 0 || rows % mesh.1 != 0 {
                return Err(SpecError::new(
                    p.clone(),
                    format!(
                        "a {rows}×{cols} array cannot be split evenly over the {}×{} instances of `{}`",
                        mesh.1, mesh.0, c.level
                    ),
                ));
            }
            if c.ops.is_empty() {
                return Err(SpecError::new(format!("{p}.ops"), "a compute unit needs at least one operation"));
            }
            let mut ops = BTreeMap::new();
            for (name, op) in &c.ops {
                let op_path = format!("{p}.ops.{name}");
                if !(op.cycles.is_finite() && op.cycles > 0.0) {
                    return Err(SpecError::new(
                        format!("{op_path}.cycles"),
                        format!("must be positive (got {})", op.cycles),
                    ));
                }
                ops.insert(
                    name.clone(),
                    OpCost { cycles: op.cycles, energy: unit(&format!("{op_path}.energy"), &op.energy, parse_energy)? },
                );
            }
            if c.pipeline_latency < 0 {
                return Err(SpecError::new(format!("{p}.pipeline_latency"), "must not be negative"));
            }
            units.push(ComputeUnit {
                name: c.name.clone(),
                level: LevelId(level),
                rows,
                cols,
                pipeline_latency: c.pipeline_latency as u64,
                ops,
                pe_area_um2: nonneg(&format!("{p}.pe_area_um2"), c.pe_area_um2)?,
            });
        }
        for (i, l) in spec.links.iter().enumerate() {
            let Some(ends) = &l.connects else { continue };
            let p = format!("arch.links[{i}].connects");
            let id = |k: usize| -> SpecResult<LevelId> {
                levels
                    .iter()
                    .position(|x| x.name == ends[k])
                    .map(LevelId)
                    .ok_or_else(|| SpecError::new(format!("{p}[{k}]"), format!("`{}` is not a level", ends[k])))
            };
            let (a, b) = (id(0)?, id(1)?);
            if a == b {
                return Err(SpecError::new(&p, "a link joins two different levels"));
            }
            if levels.iter().any(|x| x.link == Some(i)) {
                return Err(SpecError::new(&p, format!("`{}` is also a level's link to its parent", l.name)));
            }
            links[i].connects = Some([a, b]);
        }
        let mut devices: Vec<Device> = Vec::new();
        for l in &levels {
            if !devices.iter().any(|d| d.name == l.device) {
                devices.push(Device { name: l.device.clone(), count: 1 });
            }
        }
        for (i, d) in spec.devices.iter().enumerate() {
            let p = format!("arch.devices[{i}]");
            if spec.devices[..i].iter().any(|x| x.name == d.name) {
                return Err(SpecError::new(format!("{p}.name"), format!("duplicate device `{}`", d.name)));
            }
            let count = positive(&format!("{p}.count"), d.count)?;
            let known = devices.iter_mut().find(|x| x.name == d.name).ok_or_else(|| {
                SpecError::new(format!("{p}.name"), format!("no level belongs to a device `{}`", d.name))
            })?;
            known.count = count;
        }
        let gpu = match &spec.gpu {
            None => None,
            Some(g) => Some(crate::gpu::Gpu::from_spec(g, gpu_memories(&levels, &units, clock)?)?),
        };
        Ok(Arch {
            name: spec.name.clone(),
            description: spec.description.clone(),
            clock,
            word_bytes,
            levels,
            units,
            links,
            devices,
            gpu,
        })
    }

    /// Silicon area in µm² of the arrays and the on-chip levels that declare their area; `None`
    /// when no part declares one.
    pub fn area_um2(&self) -> Option<f64> {
        let arrays = self.units.iter().filter_map(|u| u.pe_area_um2.map(|a| a * u.pes() as f64));
        let levels = self.levels.iter().filter_map(|l| {
            let (a, cap) = (l.area_um2_per_kib?, l.capacity?);
            Some(a * cap.0 as f64 / 1024.0 * l.instances() as f64)
        });
        let parts: Vec<f64> = arrays.chain(levels).collect();
        (!parts.is_empty()).then(|| parts.iter().sum())
    }

    /// The outermost DRAM or HBM level above `level` on the same device, if any.
    pub fn device_memory(&self, level: LevelId) -> Option<LevelId> {
        device_memory(&self.levels, level)
    }

    /// Copies of the device `name` (one for a device no level names).
    pub fn device_count(&self, name: &str) -> u64 {
        self.devices.iter().find(|d| d.name == name).map_or(1, |d| d.count)
    }

    pub fn level_id(&self, name: &str) -> Option<LevelId> {
        self.levels.iter().position(|l| l.name == name).map(LevelId)
    }

    pub fn level(&self, id: LevelId) -> &Level {
        &self.levels[id.0]
    }

    pub fn unit_id(&self, name: &str) -> Option<UnitId> {
        self.units.iter().position(|u| u.name == name).map(UnitId)
    }

    pub fn unit(&self, id: UnitId) -> &ComputeUnit {
        &self.units[id.0]
    }

    /// The chain of levels from the root down to `level`, outermost first.
    pub fn path_to(&self, level: LevelId) -> Vec<LevelId> {
        let mut path = vec![level];
        while let Some(p) = self.levels[path.last().expect("non-empty").0].parent {
            path.push(p);
        }
        path.reverse();
        path
    }

    /// Spatial fan-out in (x, y) from one instance of `level` to the next stage: the
    /// instances of `child`, or the PEs of `unit` when `level` is the unit's own level.
    pub fn fanout(&self, level: LevelId, child: Option<LevelId>, unit: UnitId) -> (u64, u64) {
        let m = self.levels[level.0].mesh;
        match child {
            Some(c) => {
                let cm = self.levels[c.0].mesh;
                (cm.0 / m.0, cm.1 / m.1)
            }
            None => {
                let u = &self.units[unit.0];
                (u.cols / m.0, u.rows / m.1)
            }
        }
    }
}

/// DRAM standards as `[dram]` tables (one channel each), for the cycle-approximate engine.
/// Link presets (name, TOML `[link]`): PCIe, NVLink, die-to-die, DMA, each with its source.
pub const LINK_PRESETS: &[(&str, &str)] = &[
    ("dma-engine", include_str!("../presets/links/dma-engine.toml")),
    ("nvlink4", include_str!("../presets/links/nvlink4.toml")),
    ("pcie4-x4", include_str!("../presets/links/pcie4-x4.toml")),
    ("pcie4-x16", include_str!("../presets/links/pcie4-x16.toml")),
    ("pcie5-x16", include_str!("../presets/links/pcie5-x16.toml")),
    ("ucie-advanced", include_str!("../presets/links/ucie-advanced.toml")),
    ("ucie-standard", include_str!("../presets/links/ucie-standard.toml")),
];

pub const DRAM_PRESETS: &[(&str, &str)] = &[
    ("hbm2", include_str!("../presets/dram/hbm2.toml")),
    ("hbm3", include_str!("../presets/dram/hbm3.toml")),
    ("ddr4-3200", include_str!("../presets/dram/ddr4-3200.toml")),
    ("ddr5-4800", include_str!("../presets/dram/ddr5-4800.toml")),
    ("lpddr5-6400", include_str!("../presets/dram/lpddr5-6400.toml")),
];

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DramFile {
    dram: DramSpec,
}

impl DramOrg {
    /// Parses and validates a `[dram]` table on its own.
    pub fn from_toml(text: &str) -> SpecResult<DramOrg> {
        let f: DramFile = from_toml(text)?;
        dram("dram", &f.dram)
    }

    /// A DRAM standard preset by name.
    pub fn preset(name: &str) -> Option<SpecResult<DramOrg>> {
        DRAM_PRESETS.iter().find(|p| p.0 == name).map(|p| DramOrg::from_toml(p.1))
    }

    /// A named timing in clock cycles, if given.
    pub fn cycles(&self, name: &str) -> Option<f64> {
        self.timing.get(name).copied()
    }
}

fn dram(p: &str, d: &DramSpec) -> SpecResult<DramOrg> {
    let org = DramOrg {
        standard: d.standard.clone(),
        channels: positive(&format!("{p}.channels"), d.channels)?,
        ranks: positive(&format!("{p}.ranks"), d.ranks.unwrap_or(1))?,
        bank_groups: positive(&format!("{p}.bank_groups"), d.bank_groups)?,
        banks_per_group: positive(&format!("{p}.banks_per_group"), d.banks_per_group)?,
        rows: positive(&format!("{p}.rows"), d.rows)?,
        row_bytes: unit(&format!("{p}.row_bytes"), &d.row_bytes, parse_bytes)?,
        bus_bits: positive(&format!("{p}.bus_bits"), d.bus_bits)?,
        t_ck: unit(&format!("{p}.t_ck"), &d.t_ck, parse_time)?,
        timing: d.timing.clone(),
        address_mapping: crate::dram_map::AddressMapping::default_for(1, 1),
        power: match &d.power {
            Some(w) => Some(dram_power(&format!("{p}.power"), w)?),
            None => None,
        },
    };
    let org = DramOrg {
        address_mapping: match &d.address_mapping {
            Some(name) => {
                crate::dram_map::AddressMapping::parse(name, org.channels, org.ranks, &format!("{p}.address_mapping"))?
            }
            None => crate::dram_map::AddressMapping::default_for(org.channels, org.ranks),
        },
        ..org
    };
    for (k, v) in &org.timing {
        if !(v.is_finite() && *v >= 0.0) {
            return Err(SpecError::new(
                format!("{p}.timing.{k}"),
                format!("must be a non-negative number of cycles (got {v})"),
            ));
        }
    }
    let t = |k: &str| org.timing.get(k).copied();
    if let (Some(ras), Some(rcd)) = (t("tRAS"), t("tRCD"))
        && ras < rcd
    {
        return Err(SpecError::new(format!("{p}.timing.tRAS"), format!("tRAS ({ras}) must be at least tRCD ({rcd})")));
    }
    if let (Some(rc), Some(ras), Some(rp)) = (t("tRC"), t("tRAS"), t("tRP"))
        && rc < ras + rp
    {
        return Err(SpecError::new(
            format!("{p}.timing.tRC"),
            format!("tRC ({rc}) must be at least tRAS + tRP ({})", ras + rp),
        ));
    }
    if org.row_bytes.0 == 0 || org.t_ck.0 <= 0.0 {
        return Err(SpecError::new(p, "row_bytes and t_ck must be positive"));
    }
    Ok(org)
}

/// Checks a `[dram.power]` table: every figure positive and the currents ordered as the
/// energy formulas need (each command's current at least the active standby current, which is
/// at least the precharge standby current).
fn dram_power(p: &str, w: &crate::spec::DramPowerSpec) -> SpecResult<DramPower> {
    let figures = [
        ("vdd", w.vdd),
        ("idd0", w.idd0),
        ("idd2n", w.idd2n),
        ("idd3n", w.idd3n),
        ("idd4r", w.idd4r),
        ("idd4w", w.idd4w),
        ("idd5b", w.idd5b),
    ];
    for (k, v) in figures {
        if !(v.is_finite() && v > 0.0) {
            return Err(SpecError::new(format!("{p}.{k}"), format!("must be a positive number (got {v})")));
        }
    }
    if w.idd3n < w.idd2n {
        return Err(SpecError::new(
            format!("{p}.idd3n"),
            "active standby (idd3n) draws at least precharge standby (idd2n)",
        ));
    }
    for (k, v) in [("idd0", w.idd0), ("idd4r", w.idd4r), ("idd4w", w.idd4w), ("idd5b", w.idd5b)] {
        if v < w.idd3n {
            return Err(SpecError::new(format!("{p}.{k}"), format!("must be at least idd3n ({})", w.idd3n)));
        }
    }
    let ma = 1e-3;
    Ok(DramPower {
        vdd: w.vdd,
        idd0: w.idd0 * ma,
        idd2n: w.idd2n * ma,
        idd3n: w.idd3n * ma,
        idd4r: w.idd4r * ma,
        idd4w: w.idd4w * ma,
        idd5b: w.idd5b * ma,
        devices: positive(&format!("{p}.devices"), w.devices)?,
    })
}

/// A `[nand.ftl]` table of the drive `org` at `p`.
fn ftl(p: &str, f: &crate::spec::FtlSpec, org: &NandOrg) -> SpecResult<Ftl> {
    let key = |k: &str| format!("{p}.{k}");
    if org.blocks_per_plane.is_none() {
        return Err(SpecError::new(p, "a flash translation layer needs the drive's `blocks_per_plane`"));
    }
    if !(0.0..0.9).contains(&f.over_provisioning) {
        return Err(SpecError::new(
            key("over_provisioning"),
            format!("must be a share in [0, 0.9) (got {})", f.over_provisioning),
        ));
    }
    let gc_threshold = f.gc_threshold.unwrap_or(0.05);
    if !(gc_threshold > 0.0 && gc_threshold < 0.5) {
        return Err(SpecError::new(key("gc_threshold"), format!("must be a share in (0, 0.5) (got {gc_threshold})")));
    }
    let mapping_entry_bytes = positive(&key("mapping_entry_bytes"), f.mapping_entry_bytes.unwrap_or(4))?;
    if mapping_entry_bytes > org.page_bytes.0 {
        return Err(SpecError::new(key("mapping_entry_bytes"), "an entry must fit a page"));
    }
    let mapping_cache = f.mapping_cache.as_deref().map(|s| unit(&key("mapping_cache"), s, parse_bytes)).transpose()?;
    if mapping_cache.is_some_and(|c| c.0 < org.page_bytes.0) {
        return Err(SpecError::new(key("mapping_cache"), "must hold at least one translation page (a page's bytes)"));
    }
    Ok(Ftl {
        over_provisioning: f.over_provisioning,
        gc_threshold,
        mapping_cache,
        mapping_entry_bytes,
        gc_preemptible: f.gc_preemptible.unwrap_or(false),
    })
}

fn nand(p: &str, n: &NandSpec) -> SpecResult<NandOrg> {
    let key = |k: &str| format!("{p}.{k}");
    let page_bytes = unit(&key("page_bytes"), &n.page_bytes, parse_bytes)?;
    if page_bytes.0 == 0 {
        return Err(SpecError::new(key("page_bytes"), "must be positive"));
    }
    let pages_per_block = match (n.pages_per_block, &n.block_bytes) {
        (Some(k), None) => positive(&key("pages_per_block"), k)?,
        (None, Some(b)) => {
            let block = unit(&key("block_bytes"), b, parse_bytes)?;
            if block.0 < page_bytes.0 || !block.0.is_multiple_of(page_bytes.0) {
                return Err(SpecError::new(
                    key("block_bytes"),
                    format!("a block of {} B must hold a whole number of {}-byte pages", block.0, page_bytes.0),
                ));
            }
            block.0 / page_bytes.0
        }
        _ => return Err(SpecError::new(key("pages_per_block"), "give exactly one of pages_per_block and block_bytes")),
    };
    let time = |k: &str, v: &Option<String>, default: f64| -> SpecResult<Seconds> {
        let t = v.as_deref().map(|s| unit(&key(k), s, parse_time)).transpose()?.unwrap_or(Seconds(default));
        if !(t.0.is_finite() && t.0 >= 0.0) {
            return Err(SpecError::new(key(k), "must be a non-negative time"));
        }
        Ok(t)
    };
    let org = NandOrg {
        name: n.name.clone(),
        channels: positive(&key("channels"), n.channels)?,
        chips_per_channel: positive(&key("chips_per_channel"), n.chips_per_channel)?,
        dies_per_chip: positive(&key("dies_per_chip"), n.dies_per_chip)?,
        planes_per_die: positive(&key("planes_per_die"), n.planes_per_die)?,
        page_bytes,
        pages_per_block,
        t_read: unit(&key("t_read"), &n.t_read, parse_time)?,
        t_program: unit(&key("t_program"), &n.t_program, parse_time)?,
        t_erase: unit(&key("t_erase"), &n.t_erase, parse_time)?,
        channel_bandwidth: unit(&key("channel_bandwidth"), &n.channel_bandwidth, parse_bandwidth)?,
        t_command: time("t_command", &n.t_command, 290e-9)?,
        t_plane_command: time("t_plane_command", &n.t_plane_command, 650e-9)?,
        cache_read: n.cache_read.unwrap_or(true),
        request_overhead: time("request_overhead", &n.request_overhead, 0.0)?,
        host_bandwidth: n
            .host_bandwidth
            .as_deref()
            .map(|s| unit(&key("host_bandwidth"), s, parse_bandwidth))
            .transpose()?,
        t_read_by_page: match &n.t_read_by_page {
            None => Vec::new(),
            Some(v) => {
                if v.is_empty() || v.len() > 4 {
                    return Err(SpecError::new(
                        key("t_read_by_page"),
                        "give one to four read times, one per page type",
                    ));
                }
                let mut times = Vec::new();
                for (i, s) in v.iter().enumerate() {
                    let t = unit(&format!("{}[{i}]", key("t_read_by_page")), s, parse_time)?;
                    if !(t.0.is_finite() && t.0 > 0.0) {
                        return Err(SpecError::new(format!("{}[{i}]", key("t_read_by_page")), "must be positive"));
                    }
                    times.push(t);
                }
                times
            }
        },
        scheduling: match n.scheduling.as_deref() {
            None | Some("die") => FlashScheduling::Die,
            Some("chip") => FlashScheduling::Chip,
            Some(other) => {
                return Err(SpecError::new(key("scheduling"), format!("`{other}` is not `die` or `chip`")));
            }
        },
        command_latency: time("command_latency", &n.command_latency, 0.0)?,
        blocks_per_plane: n.blocks_per_plane.map(|b| positive(&key("blocks_per_plane"), b)).transpose()?,
        ftl: None,
    };
    let org = NandOrg { ftl: n.ftl.as_ref().map(|f| ftl(&key("ftl"), f, &org)).transpose()?, ..org };
    if org.t_read.0 <= 0.0 {
        return Err(SpecError::new(key("t_read"), "must be positive"));
    }
    if org.channel_bandwidth.0 <= 0.0 {
        return Err(SpecError::new(key("channel_bandwidth"), "must be positive"));
    }
    if org.host_bandwidth.is_some_and(|b| b.0 <= 0.0) {
        return Err(SpecError::new(key("host_bandwidth"), "must be positive"));
    }
    Ok(org)
}
