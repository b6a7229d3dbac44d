//! Read-compute on a NAND drive (Cambricon-LLM, MICRO'24): the drive's dies each have a compute
//! core, and a host unit (the NPU) beside the drive's channels. This is the NAND engine serving a
//! GeMV instead of a read stream: the same organisation and timing, with read-compute requests
//! and Slice Control as policies of its channel bus.
//!
//! Each GeMV is split by rows: a share goes to *read-compute* requests (the input strip is
//! broadcast over the channel to the cores, each die reads one page of weights into its
//! registers, its core multiplies, the partial sums come back), the rest to *normal reads* that
//! stream raw weights over the channels to the NPU. On each die one plane serves read-compute and
//! the other normal reads. Everything that moves shares the channel bus: commands, input
//! strips, partial sums and page data.
//!
//! A NAND die queues no commands: a request's command (with its input strip) can go only
//! once every read-compute plane of the channel has finished its read and moved the page on
//! to the cache register, where the core works on it while the next page is read. So every
//! wait for the bus is time the arrays stand idle. With Slice Control the bus serves
//! read-compute traffic first and sends normal pages in slices that fill the gaps: as tR is
//! known, the controller holds back normal traffic that would not end before a request is
//! due and cuts the last slice to the gap, so that none delays one. A slice that does not
//! follow its own page's previous one pays a column-change command. Without Slice Control the
//! bus is first come, first served at page granularity, and a request waits behind whole
//! pages. A core's 2 KB buffer holds inputs and partial sums together: a
//! request goes only if its input fits beside the partial sums the core still holds.
//!
//! Time is the engine's event queue, and the drive's timing is the NAND engine's (`Timing`,
//! derived and checked from the same organisation): host reads and read-compute GeMVs are two
//! request schedulers over one drive model. The step engine (`engine::step`) runs a system's GeMVs here
//! when it assigns linear Einsums to a drive's cores with a split.

use std::collections::VecDeque;

use strata_arch::arch::{Arch, NandOrg};
use strata_mappings::flash_tiling::{Tile, cores_per_channel};

use super::Timing;
use crate::engine::{EngineError, Queue, Time};

/// A drive whose dies compute, and the host unit that takes the rest of each GeMV.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadCompute {
    pub nand: NandOrg,
    /// Bytes per weight and activation (INT8: 1).
    pub elem_bytes: u64,
    pub core_macs_per_s: f64,
    /// One core's input and output buffers.
    pub core_buffer_bytes: u64,
    pub npu_macs_per_s: f64,
    /// Spare bytes per page (out-of-band area) for the outlier ECC.
    pub spare_bytes: u64,
}

fn err(key: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Config { key: key.into(), reason: reason.into() }
}

impl ReadCompute {
    /// The drive above unit `core`'s level (the per-die cores: the level's instances), with
    /// unit `npu` beside it, at `elem_bytes` per element.
    pub fn new(
        a: &Arch,
        core: strata_arch::UnitId,
        npu: strata_arch::UnitId,
        elem_bytes: u64,
    ) -> Result<ReadCompute, EngineError> {
        let (core, npu) = (a.unit(core), a.unit(npu));
        let level = &a.levels[core.level.0];
        let flash = level.parent.map(|p| &a.levels[p.0]).filter(|l| l.nand.is_some()).ok_or_else(|| {
            err(
                &format!("arch.compute.{}", core.name),
                "read-compute needs the cores on a level directly under a drive (a level with a [nand] organisation)",
            )
        })?;
        let nand = flash.nand.clone().expect("checked");
        if nand.planes_per_die < 2 {
            return Err(err(
                &format!("arch.levels.{}.nand.planes_per_die", flash.name),
                "in-flash compute needs two planes per die (one read-computes, one serves normal reads)",
            ));
        }
        let rate =
            |u: &strata_arch::arch::ComputeUnit, op: &str| u.rate(op, a.clock).filter(|r| r.is_finite() && *r > 0.0);
        Ok(ReadCompute {
            elem_bytes,
            // The unit spans every die's core (its level's instances); one core's share.
            core_macs_per_s: rate(core, "mac")
                .ok_or_else(|| err(&format!("arch.compute.{}.ops.mac", core.name), "the cores need a mac cost"))?
                / level.instances() as f64,
            core_buffer_bytes: level.capacity.map_or(u64::MAX, |c| c.0),
            npu_macs_per_s: rate(npu, "mac")
                .ok_or_else(|| err(&format!("arch.compute.{}.ops.mac", npu.name), "the NPU needs a mac cost"))?,
            spare_bytes: nand.page_bytes.0 / 16 * 13 / 8, // 1664 B per 16 KiB page, the paper's spare area
            nand,
        })
    }

    pub fn cores(&self) -> u64 {
        self.nand.dies()
    }

    fn page_weights(&self) -> u64 {
        self.nand.page_bytes.0 / self.elem_bytes
    }

    /// The outlier ECC of §VI per page: the top 1% of values each keep a 14-bit address, a
    /// 5-bit Hamming code and two 8-bit copies; the threshold is stored 9 times.
    pub fn ecc_bytes(&self) -> u64 {
        let protected = self.page_weights().div_ceil(100);
        (8 * 9 + (14 + 5 + 16) * protected).div_ceil(8)
    }
}

/// How the weights are tiled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tiling {
    /// Read-compute requests of this shape, the input strip broadcast to a channel's cores.
    Broadcast(Tile),
    /// Prior in-storage compute: each die's page holds whole rows and each core gets the whole
    /// input vector.
    Naive,
}

/// The knobs of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub tiling: Tiling,
    /// Share of each GeMV's weight bytes computed in flash, rounded to whole requests (the rest
    /// is streamed to the NPU).
    pub flash_share: f64,
    /// Slice Control: read-compute traffic first, normal pages in `slices` pieces.
    pub slicing: bool,
    pub slices: u64,
    /// The outlier ECC: checked per page in the core, carried with every normal page.
    pub ecc: bool,
}

/// One GeMV's simulated run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gemv {
    pub seconds: f64,
    /// Share of the channel time spent sending data (pages, inputs, partial sums), and spent
    /// busy at all (commands included), averaged over channels.
    pub data_utilisation: f64,
    pub busy_utilisation: f64,
    pub flash_bytes: u64,
    pub npu_bytes: u64,
    /// When the last partial sum and the last normal page's NPU work finished: which side
    /// bounds the GeMV.
    pub read_compute_seconds: f64,
    pub normal_seconds: f64,
    pub events: u64,
}

#[derive(Debug, Clone, Copy)]
enum Grant {
    /// A read-compute request's command and input strip, broadcast to a channel's cores; it
    /// starts their page reads. A NAND die queues no commands, so the controller sends it
    /// once every read-compute plane of the channel is idle with its data register free: the
    /// arrays idle while it waits for the bus.
    Input {
        ch: usize,
    },
    Output {
        die: usize,
    },
    NormalCommand {
        die: usize,
    },
    /// One piece of a normal page; `last` frees the die's cache register.
    Slice {
        die: usize,
        bytes: u64,
        last: bool,
    },
}

impl Grant {
    fn priority(self) -> bool {
        matches!(self, Grant::Input { .. } | Grant::Output { .. })
    }
}

enum Event {
    BusDone(usize, Grant),
    ReadComputeArray(usize),
    ComputeDone(usize),
    NormalArray(usize),
    /// A channel's next read-compute request is due: Slice Control left the gap before it.
    Due(usize),
}

#[derive(Default)]
struct Channel {
    busy: bool,
    high: VecDeque<Grant>,
    low: VecDeque<Grant>,
    busy_time: Time,
    data_time: Time,
    /// Read-compute requests sent to the channel, in order.
    sent: u32,
    /// When the next request can go (its planes finish their reads: tR is known), while it
    /// is pending; Slice Control fits normal slices into the gap before it.
    due: Option<Time>,
    /// The die whose page data the bus carried last, if the last grant was a slice.
    streaming: Option<usize>,
}

/// A die: the read-compute plane's page pipeline (array → data register → cache register →
/// core), the core's buffer, and the normal-read plane's.
#[derive(Default)]
struct Die {
    command_queued: bool,
    array_busy: bool,
    /// A read page waits in the data register; the cache register holds the page the core
    /// works on.
    data_register: bool,
    cache_register: bool,
    core_busy: bool,
    /// Inputs in the core's buffer (sent, not yet computed) and partial sums not yet sent.
    inputs: u64,
    outputs: u64,
    /// The normal-read plane: pages still to read, an array read under way, a page in its
    /// cache register going out, and a read page held until that register frees.
    normal_left: u64,
    normal_busy: bool,
    cache_full: bool,
    held: bool,
}

struct Run<'a> {
    s: &'a ReadCompute,
    /// The drive's timing, as the NAND engine derives and checks it from the organisation.
    t: Timing,
    o: &'a Options,
    ch: Vec<Channel>,
    dies: Vec<Die>,
    q: Queue<Event>,
    cores: usize,
    input_bytes: u64,
    output_bytes: u64,
    compute: Time,
    /// Core buffer bytes; inputs and partial sums share it.
    buffer: u64,
    tiles: u32,
    npu_free: Time,
    npu_per_byte: f64,
    end: Time,
    read_compute_end: Time,
}

impl Run<'_> {
    fn bytes(&self, b: u64) -> Time {
        self.t.channel_time(b)
    }

    fn cmd(&self) -> Time {
        self.t.t_command
    }

    /// The command that addresses a grant on channel `c`: every transfer has one, but a slice
    /// that goes on from the same die's previous one (nothing else crossed the bus between)
    /// continues its data-out; any other slice resumes it with a column change.
    fn command(&self, c: usize, g: Grant) -> Time {
        match g {
            Grant::Slice { die, .. } if self.ch[c].streaming == Some(die) => Time(0),
            _ => self.cmd(),
        }
    }

    fn data(&self, g: Grant) -> Time {
        match g {
            Grant::Input { .. } => self.bytes(self.input_bytes),
            Grant::Output { .. } => self.bytes(self.output_bytes),
            Grant::Slice { bytes, .. } => self.bytes(bytes),
            Grant::NormalCommand { .. } => Time(0),
        }
    }

    fn ask(&mut self, now: Time, c: usize, g: Grant) {
        if self.o.slicing && g.priority() {
            self.ch[c].high.push_back(g);
        } else {
            self.ch[c].low.push_back(g);
        }
        self.serve(now, c);
    }

    fn serve(&mut self, now: Time, c: usize) {
        if self.ch[c].busy {
            return;
        }
        let Some(mut g) = self.ch[c].high.pop_front().or_else(|| self.ch[c].low.pop_front()) else { return };
        // Slice Control never lets normal traffic delay a read-compute request: what does not
        // fit the gap before one waits, but the last slice is cut to the gap.
        if let Some(due) = self.ch[c].due
            && due > now
            && !g.priority()
        {
            let start = now + self.command(c, g);
            let fit = if due > start { ((due - start).0 as f64 / self.t.channel_ps_per_byte) as u64 } else { 0 };
            match g {
                Grant::Slice { die, bytes, last } if fit > 0 => {
                    if fit < bytes {
                        self.ch[c].low.push_front(Grant::Slice { die, bytes: bytes - fit, last });
                        g = Grant::Slice { die, bytes: fit, last: false };
                    }
                }
                // A normal read's command carries no data.
                Grant::NormalCommand { .. } if due >= start => {}
                _ => {
                    self.ch[c].low.push_front(g);
                    self.q.push(due, Event::Due(c));
                    return;
                }
            }
        }
        let data = self.data(g);
        let len = self.command(c, g) + data;
        let chan = &mut self.ch[c];
        chan.streaming = match g {
            Grant::Slice { die, .. } => Some(die),
            _ => None,
        };
        chan.busy = true;
        chan.busy_time = chan.busy_time + len;
        chan.data_time = chan.data_time + data;
        self.q.push(now + len, Event::BusDone(c, g));
    }

    fn channel_of(&self, die: usize) -> usize {
        die / self.cores
    }

    fn fits(&self, inputs: u64, outputs: u64) -> bool {
        // Every core holds the whole broadcast strip.
        inputs.saturating_mul(self.input_bytes).saturating_add(outputs * self.output_bytes) <= self.buffer
    }

    /// Sends the channel's next request once every read-compute plane on it is idle with its
    /// data register free and every core has room for the input beside the partial sums it
    /// holds (at least one request's, so that a core never holds inputs it cannot compute).
    fn feed(&mut self, now: Time, c: usize) {
        if self.ch[c].sent >= self.tiles {
            return;
        }
        let dies = c * self.cores..(c + 1) * self.cores;
        let ready = self.dies[dies.clone()].iter().all(|d| {
            !d.command_queued && !d.array_busy && !d.data_register && self.fits(d.inputs + 1, d.outputs.max(1))
        });
        if !ready {
            return;
        }
        self.ch[c].due = None;
        for d in &mut self.dies[dies] {
            d.command_queued = true;
            d.inputs += 1;
        }
        self.ch[c].sent += 1;
        self.ask(now, c, Grant::Input { ch: c });
    }

    /// Moves a read page into the free cache register, starts the core on it once its
    /// partial sums have buffer room, and lets the channel send the next request.
    fn advance(&mut self, now: Time, d: usize) {
        let room = {
            let die = &self.dies[d];
            self.fits(die.inputs, die.outputs + 1)
        };
        let die = &mut self.dies[d];
        if !die.cache_register {
            die.cache_register = std::mem::take(&mut die.data_register);
        }
        if die.cache_register && !die.core_busy && room {
            die.core_busy = true;
            die.outputs += 1;
            self.q.push(now + self.compute, Event::ComputeDone(d));
        }
        self.feed(now, self.channel_of(d));
    }

    fn start_normal(&mut self, now: Time, d: usize) {
        let die = &mut self.dies[d];
        if die.normal_busy || die.held || die.normal_left == 0 {
            return;
        }
        die.normal_busy = true;
        die.normal_left -= 1;
        self.ask(now, self.channel_of(d), Grant::NormalCommand { die: d });
    }

    fn send_page(&mut self, now: Time, d: usize) {
        self.dies[d].cache_full = true;
        let page = self.t.page_bytes + if self.o.ecc { self.s.ecc_bytes() } else { 0 };
        let n = if self.o.slicing { self.o.slices.max(1) } else { 1 };
        for i in 0..n {
            let bytes = page * (i + 1) / n - page * i / n;
            self.ask(now, self.channel_of(d), Grant::Slice { die: d, bytes, last: i + 1 == n });
        }
    }

    fn done(&mut self, now: Time, c: usize, g: Grant) {
        self.ch[c].busy = false;
        self.end = self.end.max(now);
        let t_read = self.t.t_read;
        match g {
            Grant::Input { ch } => {
                if self.o.slicing && self.ch[ch].sent < self.tiles {
                    self.ch[ch].due = Some(now + t_read);
                }
                for die in ch * self.cores..(ch + 1) * self.cores {
                    let d = &mut self.dies[die];
                    d.command_queued = false;
                    d.array_busy = true;
                    self.q.push(now + t_read, Event::ReadComputeArray(die));
                }
            }
            Grant::Output { die } => {
                self.read_compute_end = now;
                self.dies[die].outputs -= 1;
                self.advance(now, die);
            }
            Grant::NormalCommand { die } => {
                self.q.push(now + t_read, Event::NormalArray(die));
            }
            Grant::Slice { die, bytes, last } => {
                let start = self.npu_free.max(now);
                self.npu_free = start + Time((bytes as f64 * self.npu_per_byte).round() as u64);
                self.end = self.end.max(self.npu_free);
                if last {
                    let d = &mut self.dies[die];
                    d.cache_full = false;
                    if d.held {
                        d.held = false;
                        self.send_page(now, die);
                    }
                    self.start_normal(now, die);
                }
            }
        }
        self.serve(now, c);
    }
}

/// A read-compute request: rows and columns, and the elements a channel carries in (per
/// request) and out (per core).
struct Shape {
    tile_h: u64,
    tile_w: u64,
    input_elems: u64,
    output_elems: u64,
}

fn shape(s: &ReadCompute, tiling: Tiling, cols: u64) -> Result<Shape, EngineError> {
    let org = &s.nand;
    let cores = cores_per_channel(org);
    Ok(match tiling {
        Tiling::Broadcast(t) => {
            let t = t.check(org, s.elem_bytes).map_err(|e| err("tile", e.0))?;
            let w = t.w.min(cols);
            Shape { tile_h: t.h, tile_w: w, input_elems: w / org.channels, output_elems: t.h / cores }
        }
        Tiling::Naive => {
            let r = (s.page_weights() / cols.max(1)).max(1);
            // Each core's page holds `r` whole rows; a request covers them on every die; each
            // core is sent the whole input vector, which a channel carries once per core.
            Shape { tile_h: r * org.dies(), tile_w: cols, input_elems: cols * cores, output_elems: r }
        }
    })
}

/// Simulates one `rows × cols` GeMV (outputs × inputs).
pub fn gemv(s: &ReadCompute, o: &Options, rows: u64, cols: u64, budget: u64) -> Result<Gemv, EngineError> {
    let org = &s.nand;
    let channels = org.channels as usize;
    let cores = cores_per_channel(org) as usize;
    let page = s.page_weights();
    if !(0.0..=1.0).contains(&o.flash_share) {
        return Err(err("flash_share", format!("must be within 0 and 1 (got {})", o.flash_share)));
    }
    let Shape { tile_h, tile_w, input_elems, output_elems } = shape(s, o.tiling, cols)?;
    // Whole requests in flash, row-major over the tile grid (edge tiles are partly filled);
    // the NPU adds its own dot products over the rest to their partial sums.
    let grid = cols.div_ceil(tile_w);
    let tiles = (o.flash_share * (rows.div_ceil(tile_h) * grid) as f64).round() as u64;
    if tiles > u32::MAX as u64 {
        return Err(err("tile", "more than 2^32 read-compute requests in one GeMV"));
    }
    let full_rows = (tiles / grid * tile_h).min(rows);
    let flash_weights = full_rows * cols + tile_h.min(rows - full_rows) * (tiles % grid * tile_w).min(cols);
    let npu_weights = rows * cols - flash_weights;
    let npu_pages = (npu_weights * s.elem_bytes).div_ceil(org.page_bytes.0);
    let ecc = if o.ecc { s.ecc_bytes() } else { 0 };
    if o.ecc && ecc > s.spare_bytes {
        return Err(err("ecc", format!("{ecc} B of outlier ECC do not fit the {} B spare area", s.spare_bytes)));
    }
    let macs_per_page = page as f64 + if o.ecc { page.div_ceil(100) as f64 } else { 0.0 };
    let in_out =
        (input_elems / if matches!(o.tiling, Tiling::Naive) { cores as u64 } else { 1 } + output_elems) * s.elem_bytes;
    let mut run = Run {
        s,
        t: Timing::of(org)?,
        o,
        ch: (0..channels).map(|_| Channel::default()).collect(),
        dies: (0..channels * cores).map(|_| Die::default()).collect(),
        q: Queue::new(budget),
        cores,
        input_bytes: input_elems * s.elem_bytes,
        output_bytes: output_elems * s.elem_bytes,
        compute: Time::from_seconds(macs_per_page / s.core_macs_per_s),
        // Naive tiling streams the whole input vector through the core.
        buffer: if matches!(o.tiling, Tiling::Naive) { u64::MAX } else { s.core_buffer_bytes },
        tiles: tiles as u32,
        npu_free: Time(0),
        npu_per_byte: 1e12 / s.elem_bytes as f64 / s.npu_macs_per_s,
        end: Time(0),
        read_compute_end: Time(0),
    };
    // Naive tiling streams the whole input vector through the core (no reuse, no overlap).
    if in_out > s.core_buffer_bytes && !matches!(o.tiling, Tiling::Naive) {
        return Err(err(
            "tile",
            format!(
                "a request needs {in_out} B of core buffer (input and partial sums); the core has {}",
                s.core_buffer_bytes
            ),
        ));
    }
    // Normal pages go round the channels, then the dies of each.
    for p in 0..npu_pages {
        let c = (p % channels as u64) as usize;
        let d = (p / channels as u64 % cores as u64) as usize;
        run.dies[c * cores + d].normal_left += 1;
    }
    for c in 0..channels {
        run.feed(Time(0), c);
        for k in 0..cores {
            run.start_normal(Time(0), c * cores + k);
        }
    }
    while let Some((now, ev)) = run.q.pop()? {
        match ev {
            Event::BusDone(c, g) => run.done(now, c, g),
            Event::ReadComputeArray(d) => {
                let die = &mut run.dies[d];
                die.array_busy = false;
                die.data_register = true;
                run.advance(now, d);
            }
            Event::ComputeDone(d) => {
                let die = &mut run.dies[d];
                die.core_busy = false;
                die.cache_register = false;
                die.inputs -= 1;
                run.ask(now, run.channel_of(d), Grant::Output { die: d });
                run.advance(now, d);
            }
            Event::Due(c) => {
                if run.ch[c].due.is_some_and(|t| t <= now) {
                    run.ch[c].due = None;
                }
                run.serve(now, c);
            }
            Event::NormalArray(d) => {
                run.dies[d].normal_busy = false;
                if run.dies[d].cache_full {
                    run.dies[d].held = true;
                } else {
                    run.send_page(now, d);
                    run.start_normal(now, d);
                }
            }
        }
    }
    // The NPU adds the channels' partial sums of every request.
    let reduce = (tiles * org.channels * tile_h) as f64 / s.npu_macs_per_s;
    let seconds = run.end.seconds() + reduce;
    let mean = |f: &dyn Fn(&Channel) -> Time| {
        run.ch.iter().map(|c| f(c).seconds()).sum::<f64>() / channels as f64 / seconds.max(1e-30)
    };
    Ok(Gemv {
        seconds,
        data_utilisation: mean(&|c| c.data_time),
        busy_utilisation: mean(&|c| c.busy_time),
        flash_bytes: flash_weights * s.elem_bytes,
        npu_bytes: npu_weights * s.elem_bytes,
        read_compute_seconds: run.read_compute_end.seconds(),
        normal_seconds: run.npu_free.seconds(),
        events: run.q.events(),
    })
}

/// Simulates a GeMV split where it runs fastest, as a controller that knows the timing
/// would: the request count in flash is bisected for where the read-compute requests and the
/// normal reads finish together, and the fastest split seen (everything on either side
/// included) is kept. With Slice Control the crossing is the optimum, as normal reads never
/// delay a request; without it whole pages delay every request, and the best split can be
/// everything in flash. `o.flash_share` is ignored; the result's events count every run.
pub fn balanced(s: &ReadCompute, o: &Options, rows: u64, cols: u64, budget: u64) -> Result<Gemv, EngineError> {
    let t = shape(s, o.tiling, cols)?;
    let total = rows.div_ceil(t.tile_h) * cols.div_ceil(t.tile_w);
    let at = |n: u64| gemv(s, &Options { flash_share: n as f64 / total as f64, ..*o }, rows, cols, budget);
    let mut best = at(0)?;
    let mut events = best.events;
    let mut keep = |g: Gemv, best: &mut Gemv| {
        events += g.events;
        let crossed = g.read_compute_seconds >= g.normal_seconds;
        if g.seconds < best.seconds {
            *best = g;
        }
        crossed
    };
    keep(at(total)?, &mut best);
    let (mut a, mut b) = (0, total);
    while b - a > 1 {
        let mid = a + (b - a) / 2;
        if keep(at(mid)?, &mut best) {
            b = mid;
        } else {
            a = mid;
        }
    }
    Ok(Gemv { events, ..best })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_arch::presets;

    fn system(name: &str) -> ReadCompute {
        let a = presets::load(name).unwrap().unwrap();
        ReadCompute::new(&a, a.unit_id("flash-core").unwrap(), a.unit_id("npu").unwrap(), 1).unwrap()
    }

    fn opts(tile: Tile, share: f64) -> Options {
        Options { tiling: Tiling::Broadcast(tile), flash_share: share, slicing: true, slices: 4, ecc: false }
    }

    const S_TILE: Tile = Tile { h: 256, w: 2048 };

    /// All weights over the channels to the NPU: the channels' data rate bounds the time from
    /// below, and commands (a read and a data-out per page) are all that separates them.
    #[test]
    fn normal_reads_alone_run_at_the_channel_rate() {
        let s = system("cambricon-llm-s");
        let g = gemv(&s, &opts(S_TILE, 0.0), 4096, 4096, u64::MAX).unwrap();
        let bytes = 4096.0 * 4096.0;
        let floor = bytes / (8.0 * 1e9);
        let per_page = 16384.0 / 1e9 + 2.0 * 290e-9;
        assert!(g.seconds >= floor, "{} < {floor}", g.seconds);
        assert!(g.seconds <= floor * per_page / (16384.0 / 1e9) + 2.0 * 30e-6, "{}", g.seconds);
        assert_eq!(g.flash_bytes, 0);
    }

    /// All weights read-computed: each die reads one page per tR, so 32 pages (one request) take
    /// at least one tR; the channels stay nearly idle (the paper: ≤ 6%).
    #[test]
    fn read_compute_alone_is_array_bound_and_leaves_the_channels_idle() {
        let s = system("cambricon-llm-s");
        let g = gemv(&s, &opts(S_TILE, 1.0), 4096, 4096, u64::MAX).unwrap();
        let requests = (4096.0 * 4096.0) / (256.0 * 2048.0);
        assert!(g.seconds >= requests * 30e-6, "{}", g.seconds);
        assert!(g.seconds <= (requests + 1.0) * 30e-6 + 20e-6, "{}", g.seconds);
        assert!(g.data_utilisation < 0.06, "{}", g.data_utilisation);
    }

    /// Splitting beats either side alone, and Slice Control never loses to first come first
    /// served; runs are deterministic.
    #[test]
    fn split_and_slicing_help_and_runs_repeat() {
        let s = system("cambricon-llm-s");
        let t = |share: f64, slicing: bool| {
            gemv(&s, &Options { slicing, ..opts(S_TILE, share) }, 16384, 4096, u64::MAX).unwrap().seconds
        };
        let split = t(0.69, true);
        assert!(split < t(0.0, true) && split < t(1.0, true));
        assert!(split <= t(0.69, false));
        assert_eq!(t(0.69, true), split);
    }

    /// Slice Control never delays a read-compute request: beside normal reads that keep every
    /// channel busy, the requests finish when they do alone (but for the last partial sums,
    /// which may wait for one slice and its command). First come, first served makes the
    /// requests wait behind whole pages, and the arrays idle meanwhile.
    #[test]
    fn slices_never_delay_read_compute_and_whole_pages_do() {
        let s = system("cambricon-llm-s");
        let alone = gemv(&s, &opts(S_TILE, 1.0), 8192, 4096, u64::MAX).unwrap();
        assert_eq!(alone.npu_bytes, 0);
        let shared = gemv(&s, &opts(S_TILE, 0.5), 16384, 4096, u64::MAX).unwrap();
        assert_eq!(shared.flash_bytes, alone.flash_bytes);
        assert!(shared.normal_seconds > alone.read_compute_seconds, "the normal reads outlast the requests");
        let slice = 16384.0 / 4.0 / 1e9 + 290e-9;
        let late = shared.read_compute_seconds - alone.read_compute_seconds;
        assert!((0.0..=slice).contains(&late), "{late}");
        let fcfs = gemv(&s, &Options { slicing: false, ..opts(S_TILE, 0.5) }, 16384, 4096, u64::MAX).unwrap();
        assert!(fcfs.read_compute_seconds > 1.3 * alone.read_compute_seconds, "{fcfs:?}");
    }

    /// Inputs and partial sums share a core's 2 KB: a 4096×128 request's 1 KB of partial sums
    /// per core leaves room for the next input, so the next page is read while they go out and
    /// read-compute alone stays array-bound, as with 256×2048; a 1 KB buffer cannot hold it.
    #[test]
    fn partial_sums_drain_while_the_next_page_is_read() {
        let s = system("cambricon-llm-s");
        let tall = Tile { h: 4096, w: 128 };
        let wide = gemv(&s, &opts(S_TILE, 1.0), 4096, 4096, u64::MAX).unwrap().seconds;
        let t = gemv(&s, &opts(tall, 1.0), 4096, 4096, u64::MAX).unwrap().seconds;
        let requests = 4096.0 * 4096.0 / (32.0 * 16384.0);
        assert!(t < (requests + 1.0) * 30e-6 + 20e-6, "{t}");
        assert!((t / wide - 1.0).abs() < 0.05, "{t} vs {wide}");
        let small = ReadCompute { core_buffer_bytes: 1024, ..s };
        let e = gemv(&small, &opts(tall, 1.0), 4096, 4096, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("core buffer"), "{e}");
    }

    /// With Slice Control the balanced split is where the two sides cross: its requests and
    /// normal reads finish within about a request's time of each other. With or without, no
    /// share on a grid beats it by more than the step it cannot resolve (one request).
    #[test]
    fn the_balanced_split_is_where_both_sides_finish_together() {
        let s = system("cambricon-llm-s");
        for slicing in [true, false] {
            let o = Options { slicing, ..opts(S_TILE, 0.0) };
            let b = balanced(&s, &o, 16384, 4096, u64::MAX).unwrap();
            let gap = (b.read_compute_seconds - b.normal_seconds).abs();
            assert!(!slicing || gap < 2.0 * 50e-6, "{b:?}");
            for k in 0..=20 {
                let g = gemv(&s, &Options { flash_share: k as f64 / 20.0, ..o }, 16384, 4096, u64::MAX).unwrap();
                assert!(
                    b.seconds <= g.seconds + 50e-6,
                    "slicing {slicing}, share {}: {} > {}",
                    k,
                    b.seconds,
                    g.seconds
                );
            }
        }
    }

    #[test]
    fn bad_tiles_and_shares_are_errors() {
        let s = system("cambricon-llm-s");
        let e = gemv(&s, &opts(Tile { h: 256, w: 1024 }, 0.5), 4096, 4096, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("not one 16384-weight page"), "{e}");
        assert!(gemv(&s, &opts(S_TILE, 1.5), 4096, 4096, u64::MAX).unwrap_err().to_string().starts_with("flash_share"));
        let e = gemv(&s, &opts(Tile { h: 4, w: 32768 }, 0.5), 4096, 4096, u64::MAX);
        assert!(e.is_err());
        assert!(matches!(gemv(&s, &opts(S_TILE, 0.5), 4096, 4096, 10), Err(EngineError::Budget { .. })));
    }

    #[test]
    fn ecc_fits_the_spare_area() {
        let s = system("cambricon-llm-s");
        // 164 protected values × 35 bits + 72 bits of thresholds (the paper's 163 gives 722 B).
        assert_eq!(s.ecc_bytes(), (72 + 35 * 164_u64).div_ceil(8));
        assert!(s.ecc_bytes() <= s.spare_bytes);
    }
}
