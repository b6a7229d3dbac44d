//! The engines' one interface to memories: a [`Device`] serves a stream of read requests (a
//! [`Pattern`]: request size, requests outstanding, in order or scattered, how many) and says
//! what rate it sustained. A NAND drive runs the stream on the flash engine (`nand`), a DRAM or
//! HBM with a `[dram]` organisation on the channel engine (`dram`), anything else at its port's
//! bandwidth. The step engine (`step`) reads weights and KV caches through it and the tile
//! engine (`tiles`) its memories' sustained rates, so a memory behaves the same under both.
//!
//! Rates are pure functions of a device's organisation and the pattern: [`rate`] simulates each
//! (device, pattern) once per process, so a sweep measures each drive and pattern once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use strata_arch::arch::{DramOrg, Level, NandOrg};

use super::{EngineError, dram, nand};

/// Random reads fall anywhere in this many bytes of a drive (a model's worth).
const SPAN: u64 = 64 << 30;

/// Most pages (a drive) or bursts (a DRAM channel) one measurement simulates: a stream of large
/// requests reaches its steady rate well within them.
const MOST_UNITS: u64 = 1 << 18;
/// Most bursts of one DRAM request simulated: beyond a few rows a request is a stream.
const MOST_BURSTS: u64 = 1 << 14;
/// Reads a DRAM controller holds at once (its read queue).
const MOST_QUEUED: usize = 128;

/// How a reader streams a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pattern {
    /// Bytes per request.
    pub block: u64,
    /// Requests outstanding.
    pub queue: usize,
    /// Requests at pseudo-random aligned offsets (else back to back).
    pub scattered: bool,
    /// Requests in the stream (a short one pays the queue's ramp and tail).
    pub requests: u64,
}

/// A memory that serves request streams.
pub trait Device: Send + Sync {
    /// Everything its rate depends on, as text: the cache key.
    fn key(&self) -> String;
    /// Bytes per second it sustains on `p`, simulated within `budget` events.
    fn serve(&self, p: &Pattern, budget: u64) -> Result<f64, EngineError>;
}

/// A NAND drive: channels, chips, dies and planes behind a controller (and, read from outside
/// its device, its host interface).
pub struct Drive(pub NandOrg);

impl Device for Drive {
    fn key(&self) -> String {
        format!("nand {:?}", self.0)
    }
    fn serve(&self, p: &Pattern, budget: u64) -> Result<f64, EngineError> {
        let t = nand::Timing::of(&self.0)?;
        // At most `MOST_UNITS` pages: large requests reach their steady rate in fewer of them.
        let pages = p.block.div_ceil(t.page_bytes).max(1);
        let requests = p.requests.min((MOST_UNITS / pages).max(1));
        // A drive with a translation layer offers its logical capacity: requests stay inside it
        // (a sequential stream wraps to its start).
        let span = nand::logical_bytes(&t).map_or(SPAN, |c| c.min(SPAN));
        let mut reqs =
            if p.scattered { nand::random(p.block, requests, span, 5) } else { nand::sequential(p.block, requests) };
        let whole = span - span % p.block.max(1);
        for r in &mut reqs {
            if whole > 0 {
                r.offset %= whole;
            }
        }
        Ok(nand::run(&t, &reqs, p.queue, budget)?.bandwidth())
    }
}

/// A DRAM or HBM of `org.channels` channels whose interface peaks at `peak` bytes per second:
/// it sustains the share of its peak that one channel reaches on the stream (every channel sees
/// the same interleaved share of it).
pub struct Channels {
    pub org: DramOrg,
    pub peak: f64,
}

impl Channels {
    /// A long sequential stream of single bursts with 32 outstanding: what the memory sustains
    /// when nothing says how it is read (the tile engine's and the step engine's default).
    pub fn stream(org: &DramOrg) -> Result<Pattern, EngineError> {
        let burst = dram::Timing::of(&DramOrg { channels: 1, ..org.clone() })?.burst_bytes;
        Ok(Pattern { block: burst, queue: 32, scattered: false, requests: 20_000 })
    }
}

impl Device for Channels {
    fn key(&self) -> String {
        format!("dram {:?} {}", self.org, self.peak)
    }
    fn serve(&self, p: &Pattern, budget: u64) -> Result<f64, EngineError> {
        let one = DramOrg { channels: 1, ..self.org.clone() };
        let t = dram::Timing::of(&one)?;
        // A request of many rows streams: simulate at most `MOST_BURSTS` of its bursts, and at
        // most `MOST_UNITS` bursts in all; the controller holds at most `MOST_QUEUED` reads.
        let bursts = p.block.div_ceil(t.burst_bytes).clamp(1, MOST_BURSTS);
        let requests = p.requests.min((MOST_UNITS / bursts).max(1));
        let reads = if p.scattered {
            // Each request: `bursts` consecutive bursts from a random burst-aligned start.
            dram::random(&t, requests, 5)
                .into_iter()
                .flat_map(|r| (0..bursts).map(move |b| dram::Request { addr: r.addr + b * t.burst_bytes, ..r }))
                .collect()
        } else {
            dram::sequential(&t, requests * bursts)
        };
        let window = p.queue.saturating_mul(bursts as usize).clamp(1, MOST_QUEUED);
        let s = dram::run(&t, &reads, window, budget)?;
        Ok((s.bandwidth() / t.peak_bandwidth()).min(1.0) * self.peak)
    }
}

/// A link of `peak` bytes per second (all its lanes) that takes `latency` seconds per request:
/// a closed loop of `queue` requests of `block` bytes keeps queue·block bytes in flight per
/// latency plus transfer time (Little's law), at most the peak.
pub struct Link {
    pub peak: f64,
    pub latency: f64,
}

impl Device for Link {
    fn key(&self) -> String {
        format!("link {} {}", self.peak, self.latency)
    }
    fn serve(&self, p: &Pattern, _budget: u64) -> Result<f64, EngineError> {
        let block = p.block as f64;
        Ok((p.queue as f64 * block / (self.latency + block / self.peak)).min(self.peak))
    }
}

/// A memory known only by its bandwidth (SRAM, a DRAM without an organisation).
pub struct Port(pub f64);

impl Device for Port {
    fn key(&self) -> String {
        format!("port {}", self.0)
    }
    fn serve(&self, _p: &Pattern, _budget: u64) -> Result<f64, EngineError> {
        Ok(self.0)
    }
}

/// The device a level is, as a reader sees it: a drive (its host interface only when read from
/// another device), DRAM channels peaking at its port, else its port (`peak` bytes per second,
/// unbounded when `None`).
pub fn of(level: &Level, peak: Option<f64>, outside: bool) -> Box<dyn Device> {
    let peak = peak.unwrap_or(f64::INFINITY);
    match (&level.nand, &level.dram) {
        (Some(org), _) => {
            let org = if outside { org.clone() } else { NandOrg { host_bandwidth: None, ..org.clone() } };
            Box::new(Drive(org))
        }
        (None, Some(org)) if peak.is_finite() => Box::new(Channels { org: org.clone(), peak }),
        _ => Box::new(Port(peak)),
    }
}

/// What `d` sustains on `p`: simulated once per process per device and pattern.
pub fn rate(d: &dyn Device, p: &Pattern, budget: u64) -> Result<f64, EngineError> {
    static RATES: OnceLock<Mutex<HashMap<String, f64>>> = OnceLock::new();
    let rates = RATES.get_or_init(Default::default);
    let key = format!("{} {p:?}", d.key());
    if let Some(&r) = rates.lock().expect("lock").get(&key) {
        return Ok(r);
    }
    let r = d.serve(p, budget)?;
    rates.lock().expect("lock").insert(key, r);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddr4() -> DramOrg {
        DramOrg::preset("ddr4-3200").unwrap().unwrap()
    }

    /// A DRAM sustains less than its peak on a stream, less still on scattered single bursts,
    /// and the rate is the channel engine's efficiency times the peak; a port is its bandwidth.
    #[test]
    fn dram_channels_serve_at_the_engines_efficiency() {
        let org = ddr4();
        let peak = 25.6e9;
        let d = Channels { org: org.clone(), peak };
        let t = dram::Timing::of(&DramOrg { channels: 1, ..org.clone() }).unwrap();
        let seq = Channels::stream(&org).unwrap();
        let s = dram::run(&t, &dram::sequential(&t, 20_000), 32, 1 << 24).unwrap();
        let want = s.bandwidth() / t.peak_bandwidth() * peak;
        assert!((rate(&d, &seq, 1 << 24).unwrap() / want - 1.0).abs() < 1e-12);
        let random = Pattern { scattered: true, ..seq };
        assert!(rate(&d, &random, 1 << 24).unwrap() < 0.8 * want);
        assert_eq!(rate(&Port(7.0), &seq, 1).unwrap(), 7.0);
    }

    /// A link reaches its peak with enough requests in flight and, with one request of a small
    /// block at a time, only block / (latency + block / peak).
    #[test]
    fn links_need_requests_in_flight_to_cover_their_latency() {
        let link = Link { peak: 16e9, latency: 10e-6 };
        let p = Pattern { block: 128 << 10, queue: 1, scattered: false, requests: 64 };
        let one = link.serve(&p, 1).unwrap();
        let block = (128 << 10) as f64;
        assert!((one - block / (10e-6 + block / 16e9)).abs() < 1e-3, "{one}");
        assert_eq!(link.serve(&Pattern { queue: 64, ..p }, 1).unwrap(), 16e9);
    }

    /// A drive read from its own device skips the host interface: never slower than from
    /// outside.
    #[test]
    fn drives_read_inside_skip_the_host_interface() {
        let a = strata_arch::Arch::from_toml(strata_arch::presets::text("a6000-csd").unwrap()).unwrap();
        let ssd = a.level(a.level_id("SSD").unwrap());
        let p = Pattern { block: 1 << 20, queue: 32, scattered: false, requests: 512 };
        let inside = rate(&*of(ssd, None, false), &p, 1 << 26).unwrap();
        let outside = rate(&*of(ssd, None, true), &p, 1 << 26).unwrap();
        assert!(inside >= outside && outside > 0.0, "{inside} {outside}");
    }

    /// A drive with a translation layer serves through the same interface: scattered reads
    /// pay the mapping cache's misses (two flash reads each), so MQSim's drive as shipped
    /// sustains less than the same drive with the whole table cached.
    #[test]
    fn a_drive_with_a_translation_layer_is_a_device() {
        let shipped = NandOrg::preset("mqsim-mlc-shipped").unwrap().unwrap();
        let mut cached = shipped.clone();
        cached.ftl.as_mut().unwrap().mapping_cache = None;
        let p = Pattern { block: 4096, queue: 32, scattered: true, requests: 4000 };
        let (misses, hits) = (Drive(shipped).serve(&p, 1 << 26).unwrap(), Drive(cached).serve(&p, 1 << 26).unwrap());
        assert!(misses < 0.75 * hits, "{misses} vs {hits}");
    }
}
