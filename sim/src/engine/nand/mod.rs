//! A NAND flash drive: channels of chips of dies of planes, page reads with command cycles,
//! array time and data-out on a shared channel bus, a queue per die, multi-plane reads, cache
//! reads, a controller that handles host requests one at a time, and a host link.
//!
//! A host keeps `queue_depth` requests outstanding (a closed loop, as `fio` or 32 reader
//! threads do). The controller spends `request_overhead` on each request, then splits it into
//! page reads placed channel first, then chip, die and plane (MQSim's CWDP striping), and
//! queues each on its die. An idle die takes the oldest read of its queue and, for each other
//! plane, the oldest read of that plane (a multi-plane read); sends the command on the channel
//! (`t_command`, plus `t_plane_command` per extra plane); reads the array for `t_read`; then each
//! page leaves over the channel at the channel rate and crosses the host link. With cache reads
//! the die starts its next array read while the cache register still sends the last pages.
//! The channel bus and the host link serve whoever asks first. Reads only: inference is.
//! [`read_compute`] runs GeMVs on the same organisation when the dies compute (Cambricon-LLM).

pub mod read_compute;

use std::collections::VecDeque;

use strata_arch::arch::NandOrg;

use super::{EngineError, Queue, Time};

/// A drive's timings in picoseconds and its geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub channels: u64,
    pub chips_per_channel: u64,
    pub dies_per_chip: u64,
    pub planes_per_die: u64,
    pub page_bytes: u64,
    pub t_read: Time,
    pub t_program: Time,
    pub t_erase: Time,
    pub pages_per_block: u64,
    pub t_command: Time,
    pub t_plane_command: Time,
    /// Picoseconds per byte on one channel.
    pub channel_ps_per_byte: f64,
    pub cache_read: bool,
    pub request_overhead: Time,
    /// Picoseconds per byte on the host link, if it is bounded.
    pub host_ps_per_byte: Option<f64>,
}

fn cfg(key: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Config { key: key.to_string(), reason: reason.into() }
}

impl Timing {
    pub fn of(org: &NandOrg) -> Result<Timing, EngineError> {
        if org.page_bytes.0 == 0 {
            return Err(cfg("nand.page_bytes", "must be positive"));
        }
        if org.channel_bandwidth.0 <= 0.0 {
            return Err(cfg("nand.channel_bandwidth", "must be positive"));
        }
        if org.planes_per_die > 64 {
            return Err(cfg("nand.planes_per_die", "at most 64 planes per die"));
        }
        let time = |key: &str, s: f64| super::timing(&format!("nand.{key}"), s * 1e12);
        Ok(Timing {
            channels: org.channels,
            chips_per_channel: org.chips_per_channel,
            dies_per_chip: org.dies_per_chip,
            planes_per_die: org.planes_per_die,
            page_bytes: org.page_bytes.0,
            t_read: time("t_read", org.t_read.0)?,
            t_program: time("t_program", org.t_program.0)?,
            t_erase: time("t_erase", org.t_erase.0)?,
            pages_per_block: org.pages_per_block,
            t_command: time("t_command", org.t_command.0)?,
            t_plane_command: time("t_plane_command", org.t_plane_command.0)?,
            channel_ps_per_byte: 1e12 / org.channel_bandwidth.0,
            cache_read: org.cache_read,
            request_overhead: time("request_overhead", org.request_overhead.0)?,
            host_ps_per_byte: org.host_bandwidth.map(|b| 1e12 / b.0),
        })
    }

    pub fn dies(&self) -> u64 {
        self.channels * self.chips_per_channel * self.dies_per_chip
    }

    /// Time to move `bytes` over one channel.
    pub fn channel_time(&self, bytes: u64) -> Time {
        Time((bytes as f64 * self.channel_ps_per_byte).round() as u64)
    }

    fn host_time(&self, bytes: u64) -> Option<Time> {
        self.host_ps_per_byte.map(|p| Time((bytes as f64 * p).round() as u64))
    }

    /// Where logical page `lpn` lives: (die index, plane).
    pub fn locate(&self, lpn: u64) -> (usize, u64) {
        let ch = lpn % self.channels;
        let w = lpn / self.channels;
        let chip = w % self.chips_per_channel;
        let w = w / self.chips_per_channel;
        let die = w % self.dies_per_chip;
        let plane = w / self.dies_per_chip % self.planes_per_die;
        (((ch * self.chips_per_channel + chip) * self.dies_per_chip + die) as usize, plane)
    }

    fn channel_of(&self, die: usize) -> usize {
        die / (self.chips_per_channel * self.dies_per_chip) as usize
    }

    /// Closed-form ceilings on throughput (bytes/s) for requests of `bytes` each, and the least
    /// of them. Channels: each page read costs its command plus its data on the bus. Array: every
    /// plane reads a page per tR. Controller: one request per `request_overhead`. Host: its rate.
    pub fn bounds(&self, bytes: u64) -> Bounds {
        let pages = bytes.div_ceil(self.page_bytes).max(1);
        let per_page = bytes as f64 / pages as f64;
        let bus = (self.t_command.0 as f64 + per_page * self.channel_ps_per_byte) * 1e-12;
        let channels = self.channels as f64 * per_page / bus;
        let array = (self.dies() * self.planes_per_die) as f64 * per_page / self.t_read.seconds();
        let controller =
            if self.request_overhead.0 == 0 { f64::INFINITY } else { bytes as f64 / self.request_overhead.seconds() };
        let host = self.host_ps_per_byte.map_or(f64::INFINITY, |p| 1e12 / p);
        Bounds { channels, array, controller, host }
    }
}

/// Throughput ceilings in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub channels: f64,
    pub array: f64,
    pub controller: f64,
    pub host: f64,
}

impl Bounds {
    pub fn least(&self) -> f64 {
        self.channels.min(self.array).min(self.controller).min(self.host)
    }
}

/// What a host request does to the flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Op {
    #[default]
    Read,
    /// Pages written: data in over the host link and the channel, then tPROG on the array.
    Program,
    /// The blocks holding the byte range erased: a command, then tBERS.
    Erase,
}

/// A host request of `bytes` at byte `offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub offset: u64,
    pub bytes: u64,
    pub op: Op,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub seconds: f64,
    pub bytes: u64,
    pub requests: u64,
    pub events: u64,
    /// Array reads issued, and how many of them read more than one plane.
    pub array_reads: u64,
    pub multi_plane_reads: u64,
    /// Busy fraction of each channel's bus (commands and data).
    pub channel_busy: Vec<f64>,
    /// Mean time from a request's issue to its last byte at the host.
    pub mean_latency: f64,
}

impl Stats {
    pub fn bandwidth(&self) -> f64 {
        self.bytes as f64 / self.seconds
    }
}

/// One page's (or, for an erase, one block's) share of a request on a die.
#[derive(Debug, Clone, Copy)]
struct PageOp {
    request: u32,
    plane: u64,
    bytes: u64,
    op: Op,
}

#[derive(Default)]
struct Die {
    queue: VecDeque<PageOp>,
    array_busy: bool,
    /// Pages (or blocks) the array is reading, programming or erasing.
    in_array: Vec<PageOp>,
    /// Pages read (never programs or erases), waiting in the data registers for the cache registers.
    held: Vec<PageOp>,
    /// Pages in the cache registers not yet sent.
    sending: usize,
}

enum Event {
    /// The controller has handled a request; its pages join the die queues.
    Dispatch(u32),
    ArrayDone(usize),
    /// A page has left the die over the channel.
    DataOut(usize, PageOp),
    /// A page to program has reached the die's cache register.
    DataIn(usize, PageOp),
    /// A page has crossed the host link.
    Delivered(u32),
}

struct Drive<'a> {
    t: &'a Timing,
    dies: Vec<Die>,
    bus_free: Vec<Time>,
    bus_busy: Vec<Time>,
    host_free: Time,
    controller_free: Time,
    q: Queue<Event>,
    array_reads: u64,
    multi_plane_reads: u64,
}

impl Drive<'_> {
    /// Reserves channel `ch` for `len` from `now` or when it frees; returns the end.
    fn bus(&mut self, ch: usize, now: Time, len: Time) -> Time {
        let start = self.bus_free[ch].max(now);
        self.bus_free[ch] = start + len;
        self.bus_busy[ch] = self.bus_busy[ch] + len;
        start + len
    }

    fn try_start(&mut self, now: Time, d: usize) {
        let die = &mut self.dies[d];
        if die.array_busy || !die.held.is_empty() || (!self.t.cache_read && die.sending > 0) || die.queue.is_empty() {
            return;
        }
        let mut group = vec![die.queue.pop_front().expect("non-empty")];
        let op = group[0].op;
        let mut planes = 1u64 << group[0].plane;
        let mut i = 0;
        // Multi-plane operations join pages of the same kind on distinct planes.
        while i < die.queue.len() && group.len() < self.t.planes_per_die as usize {
            let p = die.queue[i].plane;
            if planes & (1 << p) == 0 && die.queue[i].op == op {
                planes |= 1 << p;
                group.push(die.queue.remove(i).expect("in range"));
            } else {
                i += 1;
            }
        }
        let extra = group.len() as u64 - 1;
        die.array_busy = true;
        die.in_array = group;
        let array = match op {
            Op::Read => {
                self.array_reads += 1;
                self.multi_plane_reads += u64::from(extra > 0);
                self.t.t_read
            }
            Op::Program => self.t.t_program,
            Op::Erase => self.t.t_erase,
        };
        // A program's command and data went with its data-in; a read's or an erase's go now.
        let cmd = if op == Op::Program { Time(0) } else { self.t.t_command + self.t.t_plane_command * extra };
        let end = self.bus(self.t.channel_of(d), now, cmd);
        self.q.push(end + array, Event::ArrayDone(d));
    }

    /// Moves pages into the cache registers and books their data-out.
    fn send(&mut self, now: Time, d: usize, pages: Vec<PageOp>) {
        let ch = self.t.channel_of(d);
        self.dies[d].sending += pages.len();
        for p in pages {
            let end = self.bus(ch, now, self.t.channel_time(p.bytes));
            self.q.push(end, Event::DataOut(d, p));
        }
    }
}

/// Runs `requests` with `queue_depth` outstanding; requests are issued in order.
pub fn run(t: &Timing, requests: &[Request], queue_depth: usize, budget: u64) -> Result<Stats, EngineError> {
    if queue_depth == 0 {
        return Err(cfg("queue_depth", "must be at least 1"));
    }
    if requests.len() > u32::MAX as usize {
        return Err(cfg("requests", "at most 2^32 requests per run"));
    }
    if let Some(r) = requests.iter().find(|r| r.bytes == 0) {
        return Err(cfg("requests", format!("a request at offset {} moves no bytes", r.offset)));
    }
    let mut drive = Drive {
        t,
        dies: (0..t.dies()).map(|_| Die::default()).collect(),
        bus_free: vec![Time(0); t.channels as usize],
        bus_busy: vec![Time(0); t.channels as usize],
        host_free: Time(0),
        controller_free: Time(0),
        q: Queue::new(budget),
        array_reads: 0,
        multi_plane_reads: 0,
    };
    let mut remaining: Vec<u32> = vec![0; requests.len()];
    let mut issued_at = vec![Time(0); requests.len()];
    let mut next = 0usize;
    let mut latency = 0.0;
    let mut end = Time(0);
    let issue = |drive: &mut Drive, now: Time, r: usize| {
        // A program's data crosses the host link before the controller takes the request.
        let arrived = match (requests[r].op, t.host_time(requests[r].bytes)) {
            (Op::Program, Some(len)) => {
                let start = drive.host_free.max(now);
                drive.host_free = start + len;
                drive.host_free
            }
            _ => now,
        };
        let start = drive.controller_free.max(arrived);
        drive.controller_free = start + t.request_overhead;
        drive.q.push(drive.controller_free, Event::Dispatch(r as u32));
    };
    while next < requests.len().min(queue_depth) {
        issue(&mut drive, Time(0), next);
        next += 1;
    }
    while let Some((now, ev)) = drive.q.pop()? {
        match ev {
            Event::Dispatch(r) => {
                let req = requests[r as usize];
                // An erase acts on whole blocks: one unit per block (its first page places it).
                let unit = if req.op == Op::Erase { t.page_bytes * t.pages_per_block } else { t.page_bytes };
                let first = req.offset / unit;
                let last = (req.offset + req.bytes - 1) / unit;
                remaining[r as usize] = (last - first + 1) as u32;
                for k in first..=last {
                    let lo = req.offset.max(k * unit);
                    let hi = (req.offset + req.bytes).min((k + 1) * unit);
                    let lpn = if req.op == Op::Erase { k * t.pages_per_block } else { k };
                    let (d, plane) = t.locate(lpn);
                    let page = PageOp { request: r, plane, bytes: hi - lo, op: req.op };
                    if req.op == Op::Program {
                        // Command, address and data into the die's cache register.
                        let len = t.t_command + t.channel_time(page.bytes);
                        let end = drive.bus(t.channel_of(d), now, len);
                        drive.q.push(end, Event::DataIn(d, page));
                    } else {
                        drive.dies[d].queue.push_back(page);
                        drive.try_start(now, d);
                    }
                }
            }
            Event::DataIn(d, page) => {
                drive.dies[d].queue.push_back(page);
                drive.try_start(now, d);
            }
            Event::ArrayDone(d) => {
                let die = &mut drive.dies[d];
                die.array_busy = false;
                let pages = std::mem::take(&mut die.in_array);
                if pages[0].op != Op::Read {
                    // Programs and erases are done once the array is.
                    for p in pages {
                        drive.q.push(now, Event::Delivered(p.request));
                    }
                    drive.try_start(now, d);
                    continue;
                }
                if die.sending == 0 {
                    drive.send(now, d, pages);
                } else {
                    die.held = pages;
                }
                drive.try_start(now, d);
            }
            Event::DataOut(d, p) => {
                let die = &mut drive.dies[d];
                die.sending -= 1;
                if die.sending == 0 && !die.held.is_empty() {
                    let held = std::mem::take(&mut die.held);
                    drive.send(now, d, held);
                }
                drive.try_start(now, d);
                match t.host_time(p.bytes) {
                    Some(len) => {
                        let start = drive.host_free.max(now);
                        drive.host_free = start + len;
                        drive.q.push(drive.host_free, Event::Delivered(p.request));
                    }
                    None => drive.q.push(now, Event::Delivered(p.request)),
                }
            }
            Event::Delivered(r) => {
                remaining[r as usize] -= 1;
                if remaining[r as usize] == 0 {
                    latency += (now - issued_at[r as usize]).seconds();
                    end = end.max(now);
                    if next < requests.len() {
                        issued_at[next] = now;
                        issue(&mut drive, now, next);
                        next += 1;
                    }
                }
            }
        }
    }
    let seconds = end.seconds();
    Ok(Stats {
        seconds,
        bytes: requests.iter().map(|r| r.bytes).sum(),
        requests: requests.len() as u64,
        events: drive.q.events(),
        array_reads: drive.array_reads,
        multi_plane_reads: drive.multi_plane_reads,
        channel_busy: drive.bus_busy.iter().map(|b| b.seconds() / seconds).collect(),
        mean_latency: latency / requests.len().max(1) as f64,
    })
}

/// `n` requests of `bytes` each, back to back from offset 0.
pub fn sequential(bytes: u64, n: u64) -> Vec<Request> {
    (0..n).map(|i| Request { offset: i * bytes, bytes, op: Op::Read }).collect()
}

/// `n` requests of `bytes` each at pseudo-random `bytes`-aligned offsets within `span` bytes
/// (a fixed-seed xorshift).
pub fn random(bytes: u64, n: u64, span: u64, seed: u64) -> Vec<Request> {
    let slots = (span / bytes).max(1);
    super::xorshift(seed)
        .take(n as usize)
        .map(|x| Request { offset: (x % slots) * bytes, bytes, op: Op::Read })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(name: &str) -> Timing {
        Timing::of(&NandOrg::preset(name).unwrap().unwrap()).unwrap()
    }

    const SPAN: u64 = 64 << 30;

    fn random_bw(t: &Timing, bytes: u64, qd: usize) -> Stats {
        let n = (64 * qd as u64).max(4096 * 4096 / bytes).min(20_000);
        run(t, &random(bytes, n, SPAN, 11), qd, u64::MAX).unwrap()
    }

    /// A lone program costs the host link, the controller, command and data on the channel and
    /// tPROG; a lone erase a command and tBERS; deep queues of programs are bound by the planes'
    /// tPROG, within the closed-form ceiling; a read behind a program on its die waits for it.
    #[test]
    fn programs_and_erases_follow_their_timings() {
        let t = timing("tlc-client");
        let page = t.page_bytes;
        let prog = |offset: u64| Request { offset, bytes: page, op: Op::Program };
        let one = run(&t, &[prog(0)], 1, 1 << 20).unwrap();
        let want = t.host_time(page).unwrap() + t.request_overhead + t.t_command + t.channel_time(page) + t.t_program;
        assert!((one.seconds / want.seconds() - 1.0).abs() < 1e-6, "{} vs {}", one.seconds, want.seconds());
        let erase = run(&t, &[Request { offset: 0, bytes: page, op: Op::Erase }], 1, 1 << 20).unwrap();
        let want = t.request_overhead + t.t_command + t.t_erase;
        assert!((erase.seconds / want.seconds() - 1.0).abs() < 1e-6);
        // Deep queue of 1 MiB sequential programs: every plane programs a page per tPROG.
        let reqs: Vec<Request> =
            (0..256).map(|i| Request { offset: i << 20, bytes: 1 << 20, op: Op::Program }).collect();
        let s = run(&t, &reqs, 64, 1 << 26).unwrap();
        let array = (t.dies() * t.planes_per_die * page) as f64 / t.t_program.seconds();
        let ceiling = array.min(t.bounds(1 << 20).least());
        assert!(s.bandwidth() <= ceiling * 1.0001 && s.bandwidth() >= 0.85 * ceiling, "{} vs {ceiling}", s.bandwidth());
        // A read queued behind a program on the same die waits for tPROG.
        let alone = run(&t, &[Request { offset: 0, bytes: page, op: Op::Read }], 2, 1 << 20).unwrap();
        let behind = run(&t, &[prog(0), Request { offset: 0, bytes: page, op: Op::Read }], 2, 1 << 20).unwrap();
        assert!(behind.seconds > alone.seconds + t.t_program.seconds() * 0.99);
    }

    #[test]
    fn one_read_at_a_time_costs_command_array_and_transfer() {
        let t = timing("mqsim-mlc");
        let s = run(&t, &random(4096, 200, SPAN, 3), 1, u64::MAX).unwrap();
        // Command, tR, 4 KiB over the 333 MB/s channel and the 4 GB/s host link, back to back.
        let one = 290e-9 + 75e-6 + 4096.0 / 333e6 + 4096.0 / 4e9;
        assert!((s.mean_latency / one - 1.0).abs() < 1e-3, "{} vs {one}", s.mean_latency);
        assert!((s.bandwidth() / (4096.0 / one) - 1.0).abs() < 1e-3);
    }

    #[test]
    fn throughput_rises_with_size_and_depth_and_saturates_at_the_closed_form() {
        for name in ["mqsim-mlc", "tlc-client"] {
            let t = timing(name);
            for bytes in [4096u64, 16384, 65536, 262144, 1 << 20] {
                let mut last = 0.0;
                for qd in [1usize, 2, 4, 8, 16, 32, 64] {
                    let bw = random_bw(&t, bytes, qd).bandwidth();
                    let ceiling = t.bounds(bytes).least();
                    assert!(bw <= ceiling * 1.001, "{name} {bytes} B qd {qd}: {bw} above {ceiling}");
                    assert!(bw >= last * 0.97, "{name} {bytes} B: qd {qd} gives {bw} < {last}");
                    last = bw;
                }
                // Deep queues of large requests saturate the binding resource.
                if bytes >= 65536 {
                    let ceiling = t.bounds(bytes).least();
                    assert!(last >= 0.85 * ceiling, "{name} {bytes} B qd 64: {last} of {ceiling}");
                }
            }
            let mut last = 0.0;
            for bytes in [4096u64, 16384, 65536, 262144, 1 << 20] {
                let bw = random_bw(&t, bytes, 32).bandwidth();
                assert!(bw >= last * 0.97, "{name} qd 32: {bytes} B gives {bw} < {last}");
                last = bw;
            }
        }
    }

    #[test]
    fn mqsim_drive_is_channel_bound_and_uses_multi_plane_reads() {
        let t = timing("mqsim-mlc");
        let b = t.bounds(1 << 20);
        assert!(b.channels < b.host && b.channels < b.array);
        let s = random_bw(&t, 1 << 20, 64);
        assert!(s.multi_plane_reads > 0);
        assert!(s.channel_busy.iter().all(|&u| u > 0.9), "{:?}", s.channel_busy);
    }

    /// LLM in a flash, Fig. 2b's calibration points on the M1 Max, 32 reader threads: 1.25 GB/s
    /// at 16 KB scattered reads, 2.25 GB/s at 32 KB, 6.10 GB/s sequential. Only the controller's
    /// per-request time was fitted (to the first); each must come out within 20%.
    #[test]
    fn m1_max_reproduces_the_llm_in_a_flash_calibration_points() {
        let t = timing("m1-max-ssd");
        let scattered = |bytes| random_bw(&t, bytes, 32).bandwidth() / 1e9;
        let seq = run(&t, &sequential(1 << 20, 2048), 32, u64::MAX).unwrap().bandwidth() / 1e9;
        for (got, paper) in [(scattered(16 << 10), 1.25), (scattered(32 << 10), 2.25), (seq, 6.10)] {
            assert!((got / paper - 1.0).abs() < 0.20, "{got:.3} GB/s vs {paper}");
        }
    }

    #[test]
    fn no_cache_read_is_never_faster_and_runs_are_deterministic() {
        let mut t = timing("tlc-client");
        let reqs = random(16384, 4000, SPAN, 5);
        let a = run(&t, &reqs, 64, u64::MAX).unwrap();
        assert_eq!(a, run(&t, &reqs, 64, u64::MAX).unwrap());
        t.cache_read = false;
        let b = run(&t, &reqs, 64, u64::MAX).unwrap();
        assert!(b.seconds >= a.seconds);
    }

    #[test]
    fn bad_input_is_an_error() {
        let t = timing("mqsim-mlc");
        assert!(matches!(run(&t, &sequential(4096, 10), 0, 100), Err(EngineError::Config { .. })));
        assert!(matches!(
            run(&t, &[Request { offset: 0, bytes: 0, op: Op::Read }], 1, 100),
            Err(EngineError::Config { .. })
        ));
        assert_eq!(run(&t, &sequential(4096, 1000), 8, 50), Err(EngineError::Budget { events: 50 }));
    }
}
