//! The serde mirror of an architecture file. Sizes, bandwidths, clocks and energies are unit
//! strings ("16 MiB", "400 GiB/s", "940 MHz", "17.16 pJ"); [`crate::Arch::from_spec`] resolves them.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchFile {
    pub arch: ArchSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub clock: String,
    #[serde(default = "two")]
    pub word_bytes: i64,
    /// Storage levels, each after its parent; the first is a root (off-chip memory).
    pub levels: Vec<LevelSpec>,
    pub compute: Vec<ComputeSpec>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    /// How many identical copies of a device the system has (a level's `device`); one when absent.
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Execution resources, for GPUs whose library kernels `sim::gpu` predicts.
    #[serde(default)]
    pub gpu: Option<crate::gpu::GpuSpec>,
}

fn two() -> i64 {
    2
}

/// Copies of one device: every level, unit and peer link of the device is replicated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub name: String,
    #[serde(default = "one")]
    pub count: i64,
}

/// What a storage level is built from; decides which organisation table it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelKind {
    RegisterFile,
    Sram,
    Dram,
    Hbm,
    Nand,
    Ssd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelSpec {
    pub name: String,
    pub kind: LevelKind,
    /// The level this one is filled from; defaults to the level listed just before it.
    pub parent: Option<String>,
    /// Marks a second (or later) root: an off-chip memory with no parent.
    #[serde(default)]
    pub root: bool,
    /// The device or chiplet the level belongs to (systems of several devices).
    pub device: Option<String>,
    /// Per instance; omitted means unbounded (a backing store).
    pub capacity: Option<String>,
    /// Instances arranged as `[x, y]`; spatial loops above this level fan out over them.
    #[serde(default = "one_by_one")]
    pub mesh: [i64; 2],
    /// Per instance; omitted means unbounded.
    pub read_bandwidth: Option<String>,
    /// Per instance; defaults to the read bandwidth.
    pub write_bandwidth: Option<String>,
    /// Per word read.
    pub read_energy: Option<String>,
    /// Per word written; defaults to the read energy.
    pub write_energy: Option<String>,
    pub latency: Option<String>,
    /// A link between this level and its parent that also limits the bandwidth between them.
    pub link: Option<String>,
    pub dram: Option<DramSpec>,
    pub nand: Option<NandSpec>,
    /// Silicon area per KiB of capacity, in µm² (on-chip levels); for area sweeps.
    pub area_um2_per_kib: Option<f64>,
}

fn one_by_one() -> [i64; 2] {
    [1, 1]
}

/// DRAM/HBM organisation and timing, in clock cycles of `t_ck` (the cycle-approximate engine's input).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DramSpec {
    pub standard: String,
    pub channels: i64,
    /// Ranks per channel (1 when absent); more than one needs `tRTRS` in the timing.
    pub ranks: Option<i64>,
    pub bank_groups: i64,
    pub banks_per_group: i64,
    pub rows: i64,
    pub row_bytes: String,
    pub bus_bits: i64,
    /// Clock period, e.g. "1 ns".
    pub t_ck: String,
    /// Named timings in cycles of `t_ck`: CL, tRCD, tRP, tRAS, tRC, tCCD_S, tCCD_L, tRRD_S, tRRD_L, tFAW, tREFI, tRFC, BL.
    pub timing: BTreeMap<String, f64>,
    /// How addresses spread over channels, bank groups, banks, rows and columns, most
    /// significant field first (`RoBaCoBgCh`); Strata's own interleaving when left out.
    #[serde(default)]
    pub address_mapping: Option<String>,
    /// Supply voltage and IDD currents of the devices (datasheet values), for energy per
    /// command as DRAMsim3 and DRAMPower compute it.
    #[serde(default)]
    pub power: Option<DramPowerSpec>,
}

/// A DRAM device's datasheet power figures: `vdd` in volts, currents in mA, `devices` per channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DramPowerSpec {
    pub vdd: f64,
    pub idd0: f64,
    pub idd2n: f64,
    pub idd3n: f64,
    pub idd4r: f64,
    pub idd4w: f64,
    pub idd5b: f64,
    pub devices: i64,
}

/// NAND flash organisation and timing: a `[nand]` preset or a level's `[arch.levels.nand]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NandSpec {
    /// A name for reports (presets carry one).
    #[serde(default)]
    pub name: String,
    pub channels: i64,
    pub chips_per_channel: i64,
    pub dies_per_chip: i64,
    pub planes_per_die: i64,
    pub page_bytes: String,
    /// The block as a page count; or give `block_bytes`.
    pub pages_per_block: Option<i64>,
    /// The block in bytes, a whole number of pages.
    pub block_bytes: Option<String>,
    pub t_read: String,
    pub t_program: String,
    pub t_erase: String,
    /// Channel transfer rate per channel, e.g. "1 GB/s" (1000 MT/s × 8 bit).
    pub channel_bandwidth: String,
    /// Command and address cycles of a one-plane page read on the channel; MQSim's NV-DDR2
    /// default t_CS + 6·t_WC + t_WB + t_RR = 290 ns when absent.
    pub t_command: Option<String>,
    /// Extra command cycles per additional plane of a multi-plane read (t_DBSY + 6·t_WC = 650 ns).
    pub t_plane_command: Option<String>,
    /// Whether a die may start its next array read while the cache register still sends the
    /// previous page (cache read); true when absent.
    pub cache_read: Option<bool>,
    /// Controller time per host request (command fetch, FTL lookup, completion), served one at a
    /// time; zero when absent.
    pub request_overhead: Option<String>,
    /// The host interface (e.g. PCIe 4.0 ×4, "7 GB/s"); unbounded when absent.
    pub host_bandwidth: Option<String>,
    /// Array read times by page type, e.g. `["37 us", "46 us", "37 us"]` (TLC's LSB, CSB, MSB).
    pub t_read_by_page: Option<Vec<String>>,
    /// `die` (each die on its own; default) or `chip` (a chip's dies start together when it is idle).
    pub scheduling: Option<String>,
    /// Host-side time per NVMe command; zero when absent.
    pub command_latency: Option<String>,
    /// Blocks per plane (the drive's capacity); required by `[nand.ftl]`.
    pub blocks_per_plane: Option<i64>,
    /// A page-level flash translation layer.
    pub ftl: Option<FtlSpec>,
}

/// `[nand.ftl]`: over-provisioning, the garbage-collection threshold and the mapping table's cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtlSpec {
    /// Share of the blocks held back from the logical capacity (MQSim: 0.07).
    pub over_provisioning: f64,
    /// Collect while free blocks are below this share of a plane's blocks (MQSim: 0.05).
    pub gc_threshold: Option<f64>,
    /// Bytes of the cached mapping table (MQSim: "2 MiB"); absent: the whole table is cached.
    pub mapping_cache: Option<String>,
    /// Bytes of one mapping entry (4 when absent).
    pub mapping_entry_bytes: Option<i64>,
    /// Host operations go ahead of garbage collection's on a die (MQSim: true); false when absent.
    pub gc_preemptible: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeSpec {
    pub name: String,
    /// The innermost storage level feeding the array's PEs.
    pub level: String,
    #[serde(default = "one")]
    pub rows: i64,
    pub cols: i64,
    /// Cycles to fill and drain the array once (paid per hand-off when Einsums do not interleave).
    #[serde(default)]
    pub pipeline_latency: i64,
    /// Operation name → cost per element on one PE.
    pub ops: BTreeMap<String, OpSpec>,
    /// Silicon area of one PE (its registers included), in µm²; for area sweeps.
    pub pe_area_um2: Option<f64>,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpSpec {
    /// Cycles one PE is occupied per element.
    #[serde(default = "one_f")]
    pub cycles: f64,
    pub energy: String,
}

fn one_f() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Pcie,
    DieToDie,
    Nvlink,
    FlashChannel,
    Dma,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub name: String,
    /// A link preset (`arch/presets/links/`) whose values the keys below override.
    pub preset: Option<String>,
    pub kind: Option<LinkKind>,
    /// Per lane group (one link); `count` links run in parallel.
    pub bandwidth: Option<String>,
    pub count: Option<i64>,
    pub latency: Option<String>,
    pub energy_per_bit: Option<String>,
    /// Two levels of different trees the link joins (peer-to-peer DMA, an NVMe drive on the
    /// host); a level's own `link` joins it to its parent instead.
    pub connects: Option<[String; 2]>,
}

/// A link preset file: `[link]` with the keys of `LinkSpec` but the name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkPresetFile {
    pub link: LinkPreset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkPreset {
    pub kind: LinkKind,
    pub bandwidth: String,
    pub count: Option<i64>,
    pub latency: Option<String>,
    pub energy_per_bit: Option<String>,
}
