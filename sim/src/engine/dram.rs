//! DRAM/HBM channels: banks with open rows, an FR-FCFS controller per channel and refresh.
//! An address mapping (named as the peers name theirs, `RoBaCoBgCh`) spreads bursts over the
//! channels, bank groups, banks, rows and columns; each channel runs on its own, on one event
//! queue, so that a closed loop spans them all.
//!
//! Each bank remembers its open row and when it may next be activated, precharged or read; each
//! rank its recent activations (tRRD_S/L, tFAW); the channel its last column command (tCCD_S/L
//! within a rank; another rank's data waits tRTRS after the last on the shared bus) and when the
//! data bus frees. The controller holds a window of requests and, at each decision,
//! serves the one whose column command can issue first (row hits and ready banks win; ties go to
//! the oldest), issuing PRE/ACT/RD/WR as early as every constraint allows. Writes put their data
//! on the bus CWL after the command, keep the row open tWR after their data (write recovery), and
//! turn the bus around: a read waits tWTR_S/L after a write's data, a write waits
//! CL + nBL + 2 − CWL cycles after a read's command. Every tREFI the channel precharges all banks
//! and refreshes for tRFC (or one bank for tRFCpb).

use std::collections::VecDeque;

use strata_arch::arch::DramOrg;
use strata_arch::dram_map::{AddressField, AddressMapping};

pub use super::{Arrivals, Latency};
use super::{EngineError, Queue, Time};

/// Timings of a channel in picoseconds, and its organisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Datasheet power figures, when the organisation gives them (energy per command).
    pub power: Option<strata_arch::arch::DramPower>,
    /// Close-page controller: a row is precharged after its access unless a waiting request
    /// hits it (open-page, the default, leaves it open for the next).
    pub close_page: bool,
    /// Per-bank refresh steps through the banks in index order (Ramulator's), instead of
    /// choosing a due bank that no waiting request needs.
    pub refresh_in_order: bool,
    pub channels: u64,
    pub ranks: u64,
    /// Rank-to-rank switch: the data bus's idle time between two ranks' bursts.
    pub rtrs: Time,
    pub mapping: AddressMapping,
    /// The mapping's chunks, least significant first, with the number of values each takes.
    layout: Vec<(AddressField, u64)>,
    pub tck: Time,
    pub burst_bytes: u64,
    pub bank_groups: u64,
    pub banks_per_group: u64,
    pub rows: u64,
    pub columns: u64,
    pub n_bl: Time,
    pub cl: Time,
    pub rcd: Time,
    pub rp: Time,
    pub ras: Time,
    pub rc: Time,
    pub ccd_s: Time,
    pub ccd_l: Time,
    pub rrd_s: Time,
    pub rrd_l: Time,
    pub faw: Time,
    pub refresh: Refresh,
    /// Write timing (CWL, tWR, tWTR_S, tWTR_L), when the organisation gives it.
    pub write: Option<WriteTiming>,
}

/// What writes add: command-to-data delay, write recovery, write-to-read turnarounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriteTiming {
    pub cwl: Time,
    pub wr: Time,
    pub wtr_s: Time,
    pub wtr_l: Time,
}

/// How a channel refreshes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refresh {
    None,
    /// Every `refi`, precharge all banks and refresh for `rfc`.
    AllBank {
        refi: Time,
        rfc: Time,
    },
    /// Every `refi`, the next bank in turn precharges and refreshes for `rfc`; the others work on.
    PerBank {
        refi: Time,
        rfc: Time,
    },
}

fn cfg(key: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Config { key: key.to_string(), reason: reason.into() }
}

/// The values each chunk of `org`'s address mapping takes, least significant first: a chunk of
/// `b` bits 2^b, the field's chunk without a width what the others leave of the field's count
/// (which their widths must divide), so that every chunk's values together make the count.
fn layout(org: &DramOrg, columns: u64) -> Result<Vec<(AddressField, u64)>, EngineError> {
    let m = &org.address_mapping;
    let count = |f: AddressField| match f {
        AddressField::Channel => (org.channels, "channels"),
        AddressField::Rank => (org.ranks, "ranks"),
        AddressField::BankGroup => (org.bank_groups, "bank groups"),
        AddressField::Bank if !m.has(AddressField::BankGroup) => (org.bank_groups * org.banks_per_group, "banks"),
        AddressField::Bank => (org.banks_per_group, "banks per group"),
        AddressField::Row => (org.rows, "rows"),
        AddressField::Column => (columns, "bursts per row"),
    };
    let mut out = Vec::with_capacity(m.lsb_first.len());
    for c in &m.lsb_first {
        let (n, what) = count(c.field);
        let chunks = m.lsb_first.iter().filter(|x| x.field == c.field);
        let bits: u32 = chunks.clone().filter_map(|x| x.bits).sum();
        // Sized chunks alone must make the count; beside an unsized one they must divide it.
        let sized = chunks.clone().all(|x| x.bits.is_some());
        let parts = 1u64.checked_shl(bits).filter(|&p| if sized { p == n } else { n % p == 0 });
        let Some(parts) = parts else {
            return Err(cfg(
                "dram.address_mapping",
                format!("`{}`: chunks of {bits} bits do not split the {n} {what} into whole parts", m.name()),
            ));
        };
        out.push((c.field, c.bits.map_or(n / parts, |b| 1 << b)));
    }
    Ok(out)
}

impl Timing {
    /// Converts an organisation's cycle counts; every timing the model uses must be present.
    pub fn of(org: &DramOrg) -> Result<Timing, EngineError> {
        let tck = super::timing("dram.t_ck", org.t_ck.0 * 1e12)?;
        if tck.0 == 0 {
            return Err(cfg("dram.t_ck", "must be positive"));
        }
        let cyc = |k: &str| -> Result<f64, EngineError> {
            org.cycles(k).ok_or_else(|| cfg(&format!("dram.timing.{k}"), "is required by the cycle-approximate engine"))
        };
        let t = |k: &str| -> Result<Time, EngineError> {
            super::timing(&format!("dram.timing.{k}"), cyc(k)? * tck.0 as f64)
        };
        let beats = cyc("BL")?;
        let n_bl = t("nBL")?;
        if beats <= 0.0 || n_bl.0 == 0 {
            return Err(cfg("dram.timing.BL", "BL (beats) and nBL (cycles) must be positive"));
        }
        let burst_bytes = (org.bus_bits as f64 / 8.0 * beats) as u64;
        if burst_bytes == 0 || org.row_bytes.0 < burst_bytes || !org.row_bytes.0.is_multiple_of(burst_bytes) {
            return Err(cfg("dram.row_bytes", format!("must be a whole number of {burst_bytes}-byte bursts")));
        }
        let rp = t("tRP")?;
        // Per-bank refresh steps through every bank of every rank.
        let banks = org.bank_groups * org.banks_per_group * org.ranks;
        let refresh = match (org.cycles("tRFCpb"), cyc("tREFI")?) {
            (_, r) if r <= 0.0 => Refresh::None,
            (Some(_), _) => {
                // Per-bank refresh: each bank once per tREFI, so one bank every tREFI / banks.
                Refresh::PerBank { refi: Time(t("tREFI")?.0 / banks), rfc: t("tRFCpb")? }
            }
            (None, _) => Refresh::AllBank { refi: t("tREFI")?, rfc: t("tRFC")? },
        };
        if let Refresh::AllBank { refi, rfc } = refresh
            && refi <= rfc + rp
        {
            return Err(cfg("dram.timing.tREFI", "must exceed tRFC + tRP, or the channel only refreshes"));
        }
        let columns = org.row_bytes.0 / burst_bytes;
        let layout = layout(org, columns)?;
        let timing = Timing {
            power: org.power,
            close_page: false,
            refresh_in_order: false,
            channels: org.channels,
            ranks: org.ranks,
            rtrs: if org.ranks > 1 { t("tRTRS")? } else { Time(0) },
            mapping: org.address_mapping.clone(),
            layout,
            tck,
            burst_bytes,
            bank_groups: org.bank_groups,
            banks_per_group: org.banks_per_group,
            rows: org.rows,
            columns,
            n_bl,
            cl: t("CL")?,
            rcd: t("tRCD")?,
            rp,
            ras: t("tRAS")?,
            rc: t("tRC")?,
            ccd_s: t("tCCD_S")?,
            ccd_l: t("tCCD_L")?,
            rrd_s: t("tRRD_S")?,
            rrd_l: t("tRRD_L")?,
            faw: t("tFAW")?,
            refresh,
            write: match org.cycles("CWL") {
                None => None,
                Some(_) => {
                    Some(WriteTiming { cwl: t("CWL")?, wr: t("tWR")?, wtr_s: t("tWTR_S")?, wtr_l: t("tWTR_L")? })
                }
            },
        };
        Ok(timing)
    }

    /// Bytes per second with every channel's data bus always busy.
    pub fn peak_bandwidth(&self) -> f64 {
        self.channels as f64 * self.burst_bytes as f64 / self.n_bl.seconds()
    }

    /// Banks of one rank.
    fn banks(&self) -> u64 {
        self.bank_groups * self.banks_per_group
    }

    /// Banks of a channel, every rank's.
    fn channel_banks(&self) -> u64 {
        self.banks() * self.ranks
    }

    /// Where a byte address lives: the burst index split in mixed radix by the address
    /// mapping's chunks, least significant first, each chunk a digit of its field (the row
    /// wraps past the device's end).
    pub fn locate(&self, addr: u64) -> Loc {
        let mut b = addr / self.burst_bytes;
        // Per field (in `AddressField` order): its value so far, and the weight of its next chunk.
        let mut value = [0u64; 6];
        let mut weight = [1u64; 6];
        for &(f, radix) in &self.layout {
            let i = f as usize;
            value[i] += b % radix * weight[i];
            weight[i] *= radix;
            b /= radix;
        }
        let [channel, rank, mut bg, mut bank, row, _] = value;
        if !self.mapping.has(AddressField::BankGroup) {
            // `Ba` counts over every group, the group its least significant digit.
            (bg, bank) = (bank % self.bank_groups, bank / self.bank_groups);
        }
        Loc { channel, rank, bg, bank: (rank * self.bank_groups + bg) * self.banks_per_group + bank, row }
    }
}

/// Where a burst lives: its channel, rank, bank group, bank (over the channel's banks, every
/// rank's) and row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub channel: u64,
    pub rank: u64,
    pub bg: u64,
    pub bank: u64,
    pub row: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bank {
    /// The open row, or `CLOSED` (a plain number, so that a decision compares it with a
    /// request's row without a branch).
    open: u64,
    act_ok: Time,
    pre_ok: Time,
    rd_ok: Time,
    /// The last column command: the bank a stream has just left is the one it needs last.
    used: Time,
    /// When its open row was activated.
    since: Time,
}

/// A bank's `open` row when none is: no row has this number.
const CLOSED: u64 = u64::MAX;

impl Default for Bank {
    fn default() -> Bank {
        Bank { open: CLOSED, act_ok: Time(0), pre_ok: Time(0), rd_ok: Time(0), used: Time(0), since: Time(0) }
    }
}

/// What a run did. `hits` are reads served without an activation of their own; `misses` and
/// `conflicts` count activations of a closed bank and of a bank holding another row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub bytes: u64,
    pub seconds: f64,
    pub hits: u64,
    pub misses: u64,
    pub conflicts: u64,
    pub refreshes: u64,
    pub writes: u64,
    pub events: u64,
    /// Per request, from its arrival at the controller to its last data beat (a read's data
    /// back, a write's data in).
    pub latency: Latency,
    /// Where the power figures are given: energy by command and in the background.
    pub energy: Option<Energy>,
    /// Where the power figures are given: seconds, summed over channels and ranks, that a rank
    /// had a row open or was refreshing (active standby; precharge standby the rest).
    pub active_seconds: f64,
}

/// DRAM energy of a run in joules, as DRAMsim3 and DRAMPower compute it from the datasheet's
/// IDD currents: each command the current above active standby for its duration, and in the
/// background each rank's active standby while it has a row open (or refreshes) and precharge
/// standby while all its banks are closed, times VDD and the devices of a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Energy {
    /// ACT (with its PRE): VDD · (IDD0 · tRC − IDD3N · tRAS − IDD2N · tRP) per activation.
    pub activate: f64,
    /// VDD · (IDD4R − IDD3N) · nBL per read burst.
    pub read: f64,
    /// VDD · (IDD4W − IDD3N) · nBL per write burst.
    pub write: f64,
    /// VDD · (IDD5B − IDD3N) · tRFC per refresh (tRFCpb for one bank).
    pub refresh: f64,
    /// VDD · (IDD3N · active + IDD2N · precharged) seconds, over every channel and rank.
    pub background: f64,
}

impl Energy {
    pub fn total(&self) -> f64 {
        self.activate + self.read + self.write + self.refresh + self.background
    }

    fn of(t: &Timing, s: &Stats) -> Option<Energy> {
        let w = t.power?;
        let k = w.vdd * w.devices as f64;
        let (rc, ras, rp, nbl) = (t.rc.seconds(), t.ras.seconds(), t.rp.seconds(), t.n_bl.seconds());
        let rfc = match t.refresh {
            Refresh::AllBank { rfc, .. } | Refresh::PerBank { rfc, .. } => rfc.seconds(),
            Refresh::None => 0.0,
        };
        let bursts = s.bytes / t.burst_bytes;
        Some(Energy {
            activate: (s.misses + s.conflicts) as f64 * k * (w.idd0 * rc - w.idd3n * ras - w.idd2n * rp),
            read: (bursts - s.writes) as f64 * k * (w.idd4r - w.idd3n) * nbl,
            write: s.writes as f64 * k * (w.idd4w - w.idd3n) * nbl,
            refresh: s.refreshes as f64 * k * (w.idd5b - w.idd3n) * rfc,
            background: k
                * (w.idd3n * s.active_seconds
                    + w.idd2n * ((t.channels * t.ranks) as f64 * s.seconds - s.active_seconds)),
        })
    }
}

impl Stats {
    pub fn bandwidth(&self) -> f64 {
        self.bytes as f64 / self.seconds
    }
}

/// A read or write of one burst at a byte address, arriving at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub addr: u64,
    pub at: Time,
    pub write: bool,
}

/// Events of the run; `Decide` and `Refresh` name their channel.
enum Event {
    Arrive(usize),
    Decide(usize),
    Refresh(usize),
}

/// How a read reaches its row, and when its commands issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Row {
    Hit,
    Closed,
    Conflict,
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    row: Row,
    pre: Time,
    act: Time,
    rd: Time,
}

struct Channel<'a> {
    t: &'a Timing,
    banks: Vec<Bank>,
    /// Per rank: its last four activations and their bank groups.
    acts: Vec<VecDeque<(Time, u64)>>,
    /// The last column command: when, its bank group, whether it wrote, its rank.
    last_col: Option<(Time, u64, bool, u64)>,
    /// When the last write's data left the bus, its bank group and rank.
    last_wr_data: Option<(Time, u64, u64)>,
    bus_free: Time,
    /// The latest activation of any rank.
    last_act: Time,
    blocked_until: Time,
    /// The channel-wide parts of the current decision's plans.
    bounds: Bounds,
    /// Where energy is reported: per rank, the spans it had a row open or refreshed.
    spans: Option<Vec<Vec<(Time, Time)>>>,
}

/// A request in a controller's window with where it goes: a decision reads these side by side.
#[derive(Debug, Clone, Copy)]
struct Slot {
    row: u64,
    req: u32,
    bank: u32,
    /// The bank's rank and bank group, as an index into `Bounds`.
    group: u32,
    write: bool,
}

/// The channel-wide parts of a decision's plans, per rank and bank group: a decision plans every
/// waiting request against the same channel state, so these are worked out once for it (the
/// activation bounds again after each activation).
#[derive(Debug, Clone, Default)]
struct Bounds {
    /// The decision's time, or later while a refresh blocks the channel.
    now: Time,
    /// The earliest column command of a read (`[0]`) or a write (`[1]`) to each rank and bank
    /// group: tCCD_S/L, tRTRS, the turnarounds and the data bus. Valid until the next issue.
    col: Vec<[Time; 2]>,
    /// The earliest activation in each rank and bank group: its rank's tRRD_S/L and tFAW, and
    /// the latest activation of any rank.
    act: Vec<Time>,
}

impl Channel<'_> {
    /// Works out the decision at `now`'s column bounds (`Bounds`; the activation bounds change
    /// only with an activation, which works them out).
    fn bound(&mut self, now: Time) {
        let t = self.t;
        self.bounds.now = now.max(self.blocked_until);
        let w = t.write.unwrap_or(WriteTiming { cwl: t.cl, wr: Time(0), wtr_s: Time(0), wtr_l: Time(0) });
        let last = self.last_col.map_or(Time(0), |r| r.0);
        // A write after a read waits until the read's data has cleared the bus.
        let turn_write =
            self.last_col.filter(|r| !r.2).map_or(Time(0), |(at, ..)| at + t.cl + t.n_bl + t.tck * 2 - w.cwl);
        let groups = (0..t.ranks).flat_map(|rank| (0..t.bank_groups).map(move |bg| (rank, bg)));
        for ((rank, bg), col) in groups.zip(self.bounds.col.iter_mut()) {
            // Column spacing within a rank; another rank's burst leaves the data bus idle tRTRS.
            let (ccd, switch) = match self.last_col {
                Some((at, g, _, r)) if r == rank => (at + if g == bg { t.ccd_l } else { t.ccd_s }, Time(0)),
                Some(_) => (Time(0), t.rtrs),
                None => (Time(0), Time(0)),
            };
            // A read after a write waits tWTR after the write's data (its own rank's) or tRTRS.
            let turn_read = self.last_wr_data.map_or(Time(0), |(end, g, r)| {
                end + if r != rank {
                    t.rtrs
                } else if g == bg {
                    w.wtr_l
                } else {
                    w.wtr_s
                }
            });
            let data = |latency: Time| (self.bus_free + switch - latency).max(ccd).max(last);
            *col = [data(t.cl).max(turn_read), data(w.cwl).max(turn_write)];
        }
    }

    /// The activation bounds of `Bounds`, from each rank's recent activations and the latest of
    /// all (one command bus: activations issue in time order across ranks too).
    fn bound_activations(&mut self) {
        let t = self.t;
        let mut act = self.bounds.act.iter_mut();
        for acts in &self.acts {
            for (bg, act) in (0..t.bank_groups).zip(&mut act) {
                let mut a = self.last_act;
                if let Some(&(last, g)) = acts.back() {
                    a = a.max(last + if g == bg { t.rrd_l } else { t.rrd_s });
                }
                if acts.len() == 4 {
                    a = a.max(acts[0].0 + t.faw);
                }
                *act = a;
            }
        }
    }

    /// The commands of `s` at the current decision, each as early as every constraint allows.
    /// Written as selects rather than a match: in a random stream which case applies is a coin
    /// toss, and the decision plans every request in the window.
    #[inline(always)]
    fn plan(&self, s: Slot) -> Plan {
        let t = self.t;
        let now = self.bounds.now;
        let b = &self.banks[s.bank as usize];
        let (open, hit) = (b.open != CLOSED, b.open == s.row);
        // A conflict precharges first; a hit needs neither command (both stand at `now`).
        let pre = if open && !hit { now.max(b.pre_ok) } else { now };
        let act = (if open { pre + t.rp } else { now }).max(b.act_ok).max(self.bounds.act[s.group as usize]);
        let act = if hit { now } else { act };
        let ready = if hit { now.max(b.rd_ok) } else { act + t.rcd };
        let row = if hit {
            Row::Hit
        } else if open {
            Row::Conflict
        } else {
            Row::Closed
        };
        Plan { row, pre, act, rd: ready.max(self.bounds.col[s.group as usize][usize::from(s.write)]) }
    }

    /// `plan(s).rd` where `s` hits its bank's open row; never otherwise (no branch: hits are a
    /// coin toss in a random stream).
    #[inline(always)]
    fn hit_rd(&self, s: Slot) -> Time {
        let b = &self.banks[s.bank as usize];
        let rd = self.bounds.now.max(b.rd_ok).max(self.bounds.col[s.group as usize][usize::from(s.write)]);
        if b.open == s.row { rd } else { Time(u64::MAX) }
    }

    /// The earliest a column command of any read could issue: after the same-group spacing is
    /// the only thing left, i.e. the bank-group-independent part of `plan`'s column bound.
    fn column_floor(&self, now: Time) -> Time {
        let t = self.t;
        // Another rank's column command owes nothing to tCCD.
        let ccd = self.last_col.filter(|_| t.ranks == 1).map_or(Time(0), |(at, ..)| at + t.ccd_s);
        now.max(self.blocked_until).max(ccd).max(self.bus_free - t.cl).max(self.last_col.map_or(Time(0), |r| r.0))
    }

    fn issue(&mut self, plan: Plan, l: Loc, write: bool) -> Time {
        let t = self.t;
        let rd = plan.rd;
        if plan.row != Row::Hit {
            self.open(plan.act, plan.pre, l);
        }
        let b = &mut self.banks[l.bank as usize];
        b.used = rd;
        self.last_col = Some((rd, l.bg, write, l.rank));
        let done = match (write, t.write) {
            (true, Some(w)) => {
                // Write recovery: the row stays open tWR after the data is in.
                let end = rd + w.cwl + t.n_bl;
                b.pre_ok = b.pre_ok.max(end + w.wr);
                self.last_wr_data = Some((end, l.bg, l.rank));
                end
            }
            _ => {
                // A precharge must wait for the read to leave the row.
                b.pre_ok = b.pre_ok.max(rd + t.n_bl);
                rd + t.cl + t.n_bl
            }
        };
        self.bus_free = done;
        done
    }

    /// Precharges `bank` as soon as its row may close (close-page policy).
    fn precharge(&mut self, bank: u64) {
        let t = self.t;
        self.close(bank as usize, self.banks[bank as usize].pre_ok);
        let b = &mut self.banks[bank as usize];
        if b.open != CLOSED {
            b.open = CLOSED;
            b.act_ok = b.act_ok.max(b.pre_ok + t.rp);
        }
    }

    /// Records that `bank`'s open row closes at `at` (for the background energy).
    fn close(&mut self, bank: usize, at: Time) {
        let b = self.banks[bank];
        if b.open != CLOSED {
            self.active(bank, b.since, at);
        }
    }

    /// Records that `bank`'s rank is active from `from` to `to` (where energy is reported).
    fn active(&mut self, bank: usize, from: Time, to: Time) {
        if let Some(spans) = &mut self.spans {
            spans[bank / self.t.banks() as usize].push((from, to));
        }
    }

    /// Records an activation of `l`'s row in its bank at `act`, the row it held (if any)
    /// precharged at `pre`.
    fn open(&mut self, act: Time, pre: Time, l: Loc) {
        let t = self.t;
        self.close(l.bank as usize, pre);
        let b = &mut self.banks[l.bank as usize];
        b.open = l.row;
        b.since = act;
        b.act_ok = act + t.rc;
        b.pre_ok = act + t.ras;
        b.rd_ok = act + t.rcd;
        self.last_act = self.last_act.max(act);
        let acts = &mut self.acts[l.rank as usize];
        acts.push_back((act, l.bg));
        if acts.len() > 4 {
            acts.pop_front();
        }
        self.bound_activations();
    }

    /// Precharges every bank and refreshes for `rfc`.
    fn refresh_all(&mut self, now: Time, rfc: Time) {
        let t = self.t;
        let start = self.banks.iter().map(|b| if b.open != CLOSED { b.pre_ok } else { Time(0) }).fold(now, Time::max);
        let end = start + t.rp + rfc;
        for i in 0..self.banks.len() {
            self.close(i, start);
        }
        if let Some(spans) = &mut self.spans {
            // DRAMPower's refresh energy is above active standby: a refreshing rank is active.
            spans.iter_mut().for_each(|s| s.push((start + t.rp, end)));
        }
        for b in &mut self.banks {
            *b = Bank { open: CLOSED, act_ok: end, pre_ok: end, rd_ok: end, ..*b };
        }
        self.blocked_until = end;
    }

    /// Precharges one bank and refreshes it for `rfc`; the other banks keep working.
    fn refresh_bank(&mut self, now: Time, bank: usize, rfc: Time) {
        let t = self.t;
        let b = self.banks[bank];
        let start = if b.open != CLOSED { now.max(b.pre_ok) } else { now };
        let end = start + t.rp + rfc;
        self.close(bank, start);
        self.active(bank, start + t.rp, end);
        self.banks[bank] = Bank { open: CLOSED, act_ok: end.max(b.act_ok), pre_ok: end, rd_ok: end, ..b };
    }
}

/// Simulates reads and writes on one channel with a controller window of `window` requests,
/// each arriving at its own time.
pub fn run(t: &Timing, reads: &[Request], window: usize, budget: u64) -> Result<Stats, EngineError> {
    simulate(t, reads, Arrivals::AsGiven, window, Writes::Window, budget)
}

/// How a channel's controller holds writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Reads and writes share the window and are served first-ready in stream order.
    Window,
    /// Writes wait in a queue of `capacity` of their own while reads are served; once it holds
    /// `high` writes (or no read waits) the controller drains writes until `low` remain (the
    /// peers' policy: Ramulator 2 drains its 32-entry queue between 80% and 20%).
    Drain { capacity: usize, high: usize, low: usize },
}

impl Writes {
    /// Ramulator 2's write queue: 32 entries, drained from 80% full down to 20%.
    pub const RAMULATOR: Writes = Writes::Drain { capacity: 32, high: 25, low: 6 };
}

/// Simulates reads and writes on the device's channels, arriving as `arrivals` says, each
/// controller holding writes as `writes` says.
pub fn simulate(
    t: &Timing,
    reads: &[Request],
    arrivals: Arrivals,
    window: usize,
    writes: Writes,
    budget: u64,
) -> Result<Stats, EngineError> {
    if let Writes::Drain { capacity, high, low } = writes
        && !(capacity > 0 && low < high && high <= capacity)
    {
        return Err(cfg("write_queue", "needs 0 <= low < high <= capacity, capacity positive"));
    }
    if window == 0 {
        return Err(cfg("window", "the controller needs room for at least one request"));
    }
    if u32::try_from(reads.len()).is_err() {
        return Err(cfg("requests", "at most 2³² − 1 requests in one run"));
    }
    if arrivals == (Arrivals::Closed { depth: 0 }) {
        return Err(cfg("depth", "a closed loop needs at least one request in flight"));
    }
    if t.write.is_none() && reads.iter().any(|r| r.write) {
        return Err(cfg("dram.timing.CWL", "writes need CWL, tWR, tWTR_S and tWTR_L"));
    }
    let banks = t.channel_banks() as usize;
    let mut ctrl: Vec<Controller> = (0..t.channels)
        .map(|_| Controller {
            ch: Channel {
                t,
                banks: vec![Bank::default(); banks],
                acts: vec![VecDeque::new(); t.ranks as usize],
                last_col: None,
                last_wr_data: None,
                bus_free: Time(0),
                last_act: Time(0),
                blocked_until: Time(0),
                bounds: Bounds {
                    now: Time(0),
                    col: vec![[Time(0); 2]; (t.ranks * t.bank_groups) as usize],
                    act: vec![Time(0); (t.ranks * t.bank_groups) as usize],
                },
                spans: t.power.map(|_| vec![Vec::new(); t.ranks as usize]),
            },
            waiting: VecDeque::new(),
            queue: Vec::new(),
            writes: Vec::new(),
            draining: false,
            deciding: false,
            due: vec![true; banks],
            stale: vec![true; banks],
            held: [vec![0; banks], vec![0; banks]],
        })
        .collect();
    let mut q: Queue<Event> = Queue::new(budget);
    // Arrivals enter the queue one at a time, in time order, so the heap stays small; in a
    // closed loop only the first `depth` are known up front, the rest follow completions.
    let mut arrive: Vec<Time> = reads.iter().map(|r| r.at).collect();
    let mut order: Vec<usize> = (0..reads.len()).collect();
    let mut next_closed = reads.len();
    match arrivals {
        Arrivals::AsGiven => order.sort_by_key(|&i| (reads[i].at, i)),
        Arrivals::Closed { depth } => {
            next_closed = depth.min(reads.len());
            order.truncate(next_closed);
            arrive[..next_closed].fill(Time(0));
        }
    }
    let mut arrivals = order.into_iter();
    if let Some(i) = arrivals.next() {
        q.push(arrive[i], Event::Arrive(i));
    }
    let mut latencies: Vec<Time> = Vec::with_capacity(reads.len());
    match t.refresh {
        Refresh::AllBank { refi, .. } | Refresh::PerBank { refi, .. } => {
            for c in 0..ctrl.len() {
                q.push(refi, Event::Refresh(c));
            }
        }
        Refresh::None => {}
    }
    let loc: Vec<Loc> = reads.iter().map(|r| t.locate(r.addr)).collect();
    let slot = |i: usize| {
        let l = loc[i];
        // In range: `simulate` refuses more requests than u32 counts, and banks and groups
        // are indices of vectors sized from u32-sized organisation fields.
        Slot {
            req: i as u32,
            bank: l.bank as u32,
            group: (l.rank * t.bank_groups + l.bg) as u32,
            row: l.row,
            write: reads[i].write,
        }
    };
    let mut hit_waiting = vec![false; banks];
    let mut first_miss = vec![u32::MAX; banks];
    let mut pending: Vec<u32> = Vec::with_capacity(banks);
    let mut stats = Stats::default();
    let mut served = 0usize;
    let mut end = Time(0);
    while let Some((now, ev)) = q.pop()? {
        match ev {
            Event::Arrive(i) => {
                let c = loc[i].channel as usize;
                let k = &mut ctrl[c];
                k.waiting.push_back(i);
                if let Some(n) = arrivals.next() {
                    q.push(arrive[n], Event::Arrive(n));
                }
                k.admit(slot, window, writes);
                if !k.deciding {
                    k.deciding = true;
                    q.push(now, Event::Decide(c));
                }
            }
            Event::Refresh(c) => {
                if served < reads.len() {
                    let k = &mut ctrl[c];
                    let refi = match t.refresh {
                        Refresh::AllBank { refi, rfc } => {
                            k.ch.refresh_all(now, rfc);
                            k.stale.fill(true);
                            refi
                        }
                        Refresh::PerBank { refi, rfc } => {
                            // The controller refreshes a due bank that no waiting read needs,
                            // preferring the one read most recently (a stream has just left it
                            // and needs it last); each bank once per round.
                            if !k.due.contains(&true) {
                                k.due.fill(true);
                            }
                            let busy = |b: usize| k.held[0][b] + k.held[1][b] > 0;
                            let bank = if t.refresh_in_order {
                                k.due.iter().position(|&d| d).expect("a round has a due bank")
                            } else {
                                (0..k.due.len())
                                    .filter(|&b| k.due[b] && !busy(b))
                                    .max_by_key(|&b| (k.ch.banks[b].used, std::cmp::Reverse(b)))
                                    .or_else(|| k.due.iter().position(|&d| d))
                                    .expect("a round has a due bank")
                            };
                            k.due[bank] = false;
                            k.ch.refresh_bank(now, bank, rfc);
                            k.stale[bank] = true;
                            refi
                        }
                        Refresh::None => unreachable!("no refresh events without refresh"),
                    };
                    stats.refreshes += 1;
                    q.push(now + refi, Event::Refresh(c));
                }
            }
            Event::Decide(c) => {
                let k = &mut ctrl[c];
                // With a write queue: drain it from the high watermark (or when no read waits)
                // down to the low one; serve reads otherwise.
                if let Writes::Drain { high, low, .. } = writes {
                    let was = k.draining;
                    if k.draining && (k.writes.len() <= low || k.writes.is_empty()) {
                        k.draining = false;
                    }
                    if !k.draining && (k.writes.len() >= high || k.queue.is_empty() && !k.writes.is_empty()) {
                        k.draining = true;
                    }
                    if k.draining != was {
                        // The other list's banks: every one may need a row command.
                        k.stale.fill(true);
                    }
                }
                let list = if k.draining { &mut k.writes } else { &mut k.queue };
                // First ready: the read whose data can start soonest; ties go to the oldest.
                if list.is_empty() {
                    k.deciding = false;
                    continue;
                }
                // No read can start its column command before the channel allows any: the first
                // (oldest) read that reaches that bound wins outright.
                let floor = k.ch.column_floor(now);
                k.ch.bound(now);
                // Hits first: a read that needs a row command cannot start before tRCD from now,
                // so a hit ready sooner than that wins without planning the rest.
                let (mut j, best) = first_ready(list, floor, |s| k.ch.hit_rd(s));
                if best >= k.ch.bounds.now + t.rcd {
                    j = first_ready(list, floor, |s| k.ch.plan(s).rd).0;
                }
                // Keep arrival order among the rest, so ties stay oldest-first.
                let s = list.remove(j);
                k.held[usize::from(k.draining)][s.bank as usize] -= 1;
                let plan = k.ch.plan(s);
                let (i, l) = (s.req as usize, loc[s.req as usize]);
                match plan.row {
                    Row::Hit => stats.hits += 1,
                    Row::Closed => stats.misses += 1,
                    Row::Conflict => stats.conflicts += 1,
                }
                let done = k.ch.issue(plan, l, reads[i].write);
                end = end.max(done);
                latencies.push(done - arrive[i]);
                stats.bytes += t.burst_bytes;
                stats.writes += u64::from(reads[i].write);
                served += 1;
                k.stale[s.bank as usize] = true;
                k.admit(slot, window, writes);
                if t.close_page && !k.queue.iter().chain(&k.writes).any(|x| x.bank == s.bank && x.row == s.row) {
                    k.ch.precharge(l.bank);
                }
                let list = if k.draining { &k.writes } else { &k.queue };
                // Row commands, oldest first, for waiting reads whose bank holds another row (or
                // none) and serves no waiting hit: activations overlap the column reads in flight.
                // Only a stale bank can need one (see `Controller::stale`); per stale bank, its
                // oldest such read (the window's order is age).
                pending.clear();
                hit_waiting.fill(false);
                first_miss.fill(u32::MAX);
                for (x, s) in list.iter().enumerate() {
                    let b = s.bank as usize;
                    if !k.stale[b] {
                        continue;
                    }
                    if k.ch.banks[b].open == s.row {
                        hit_waiting[b] = true;
                    } else if first_miss[b] == u32::MAX {
                        first_miss[b] = x as u32;
                        pending.push(x as u32);
                    }
                }
                k.stale.fill(false);
                for &x in &pending {
                    let next = list[x as usize];
                    let bi = next.bank as usize;
                    if hit_waiting[bi] {
                        continue;
                    }
                    let Plan { row, pre, act, .. } = k.ch.plan(next);
                    // Activations issue in time order; one far ahead (a bank still refreshing)
                    // would hold every later one back, so it waits for a later decision.
                    if act > now + t.rc {
                        k.stale[bi] = true;
                        continue;
                    }
                    if row == Row::Closed {
                        stats.misses += 1
                    } else {
                        stats.conflicts += 1
                    }
                    k.ch.open(act, pre, loc[next.req as usize]);
                }
                // The command bus takes the next decision one clock after this read's first command.
                let first = match plan.row {
                    Row::Hit => plan.rd,
                    Row::Closed => plan.act,
                    Row::Conflict => plan.pre,
                };
                q.push(first.max(now) + t.tck, Event::Decide(c));
                if next_closed < reads.len() {
                    arrive[next_closed] = done;
                    q.push(done, Event::Arrive(next_closed));
                    next_closed += 1;
                }
            }
        }
    }
    stats.seconds = end.seconds();
    stats.events = q.events();
    stats.latency = Latency::of(latencies);
    for k in &mut ctrl {
        for bank in 0..k.ch.banks.len() {
            k.ch.close(bank, end);
        }
        for spans in k.ch.spans.iter_mut().flatten() {
            stats.active_seconds += covered(spans, end).seconds();
        }
    }
    stats.energy = Energy::of(t, &stats);
    Ok(stats)
}

/// The request of `list` whose column command `rd` says can start soonest, the oldest among
/// equals, and that time; the first to reach `floor`, which none can beat, wins outright.
#[inline(always)]
fn first_ready(list: &[Slot], floor: Time, rd: impl Fn(Slot) -> Time) -> (usize, Time) {
    let (mut j, mut best) = (0, Time(u64::MAX));
    for (x, &s) in list.iter().enumerate() {
        let rd = rd(s);
        let sooner = rd < best;
        j = if sooner { x } else { j };
        best = best.min(rd);
        if sooner && rd <= floor {
            break;
        }
    }
    (j, best)
}

/// One channel's controller: the requests waiting for its window, the window, whether a
/// decision is pending, and the banks still to refresh in this round (per-bank refresh).
struct Controller<'a> {
    ch: Channel<'a>,
    waiting: VecDeque<usize>,
    queue: Vec<Slot>,
    /// The write queue (`Writes::Drain`), and whether it is draining.
    writes: Vec<Slot>,
    draining: bool,
    deciding: bool,
    due: Vec<bool>,
    /// Banks that may need a row command: one whose waiting requests or open row changed since
    /// the last decision settled it (a request served, a first request admitted, a refresh, a
    /// precharge, the other list chosen), or whose activation had to wait. Every other bank has
    /// no request or a hit waiting (its oldest miss's row is open by then), so a decision looks
    /// at stale banks only.
    stale: Vec<bool>,
    /// Requests per bank in the window (`[0]`) and the write queue (`[1]`).
    held: [Vec<u32>; 2],
}

impl Controller<'_> {
    /// Books `s` into its list's count. A settled bank that already holds a request has a hit
    /// waiting (its oldest miss's row is open, or a request hits), which another request does
    /// not change; only a bank that held none becomes stale.
    fn admitted(&mut self, s: Slot, write_queue: bool) {
        let b = s.bank as usize;
        let n = &mut self.held[usize::from(write_queue)][b];
        if *n == 0 {
            self.stale[b] = true;
        }
        *n += 1;
    }

    /// Moves waiting requests, in arrival order, into the window (or a write into the write
    /// queue) while there is room; a request that finds none holds back the ones behind it.
    fn admit(&mut self, slot: impl Fn(usize) -> Slot, window: usize, writes: Writes) {
        while let Some(&w) = self.waiting.front() {
            let s = slot(w);
            match writes {
                Writes::Drain { capacity, .. } if s.write => {
                    if self.writes.len() >= capacity {
                        break;
                    }
                    self.writes.push(s);
                    self.admitted(s, true);
                }
                _ => {
                    if self.queue.len() >= window {
                        break;
                    }
                    self.queue.push(s);
                    self.admitted(s, false);
                }
            }
            self.waiting.pop_front();
        }
    }
}

/// How long the union of `spans` covers of `[0, end]` (sorts them).
fn covered(spans: &mut [(Time, Time)], end: Time) -> Time {
    spans.sort_unstable();
    let (mut total, mut reach) = (Time(0), Time(0));
    for &(a, b) in spans.iter() {
        let (a, b) = (a.max(reach), b.min(end));
        if b > a {
            total = total + (b - a);
            reach = b;
        }
    }
    total
}

/// `reqs` re-timed to arrive at `rate` requests per second, evenly spaced from time 0 (an
/// open-loop stream at an offered load).
pub fn at_rate(reqs: &[Request], rate: f64) -> Vec<Request> {
    reqs.iter().enumerate().map(|(i, r)| Request { at: Time((i as f64 / rate * 1e12).round() as u64), ..*r }).collect()
}

/// `n` reads of consecutive bursts from address 0, all queued at time 0.
pub fn sequential(t: &Timing, n: u64) -> Vec<Request> {
    (0..n).map(|i| Request { addr: i * t.burst_bytes, at: Time(0), write: false }).collect()
}

/// `n` reads of bursts at pseudo-random addresses (a fixed-seed xorshift), all queued at time 0.
pub fn random(t: &Timing, n: u64, seed: u64) -> Vec<Request> {
    let span = t.channels * t.channel_banks() * t.rows * t.columns;
    super::xorshift(seed)
        .take(n as usize)
        .map(|x| Request { addr: (x % span) * t.burst_bytes, at: Time(0), write: false })
        .collect()
}

/// A sequential stream in which every `period`-th group of `run` bursts writes: `run` reads,
/// then `run` writes, and so on (period 0: all writes).
pub fn read_write(t: &Timing, n: u64, run: u64) -> Vec<Request> {
    (0..n).map(|i| Request { addr: i * t.burst_bytes, at: Time(0), write: run == 0 || (i / run) % 2 == 1 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(name: &str) -> Timing {
        Timing::of(&DramOrg::preset(name).unwrap().unwrap()).unwrap()
    }

    const BUDGET: u64 = 50_000_000;

    /// DDR4-3200 with `ranks` ranks, the address mapping named, and no refresh.
    fn ranked(ranks: u64, mapping: &str) -> Timing {
        let mut org = DramOrg::preset("ddr4-3200").unwrap().unwrap();
        org.ranks = ranks;
        org.address_mapping = AddressMapping::parse(mapping, 1, ranks, "m").unwrap();
        Timing { refresh: Refresh::None, ..Timing::of(&org).unwrap() }
    }

    /// DDR4-3200 with `rows` rows and the mapping named: small enough to place every burst.
    fn mapped(rows: u64, mapping: &str) -> Timing {
        let mut org = DramOrg::preset("ddr4-3200").unwrap().unwrap();
        org.rows = rows;
        org.address_mapping = AddressMapping::parse(mapping, 1, 1, "m").unwrap();
        Timing::of(&org).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any order of the fields with the columns split in two anywhere: every row of every
        /// bank receives exactly a row's bursts over the device (the layout is a permutation of
        /// the addresses), and with the two column chunks side by side every burst lands where
        /// the unsplit mapping puts it.
        #[test]
        fn bit_layouts_place_every_burst_once(
            order in proptest::strategy::Strategy::prop_shuffle(proptest::strategy::Just(vec!["Ro", "Ba", "Bg", "Co"])),
            bits in 1u32..7,
            at in 0usize..5,
        ) {
            let mut apart = order.clone();
            apart.insert(at, "Co*");
            let name = |v: &[&str]| v.concat().replace('*', &bits.to_string());
            let t = mapped(4, &name(&apart));
            let mut per_row = std::collections::HashMap::new();
            let bursts = t.channel_banks() * t.rows * t.columns;
            for b in 0..bursts {
                let l = t.locate(b * t.burst_bytes);
                *per_row.entry((l.bank, l.row)).or_insert(0u64) += 1;
            }
            proptest::prop_assert_eq!(per_row.len() as u64, t.channel_banks() * t.rows);
            proptest::prop_assert!(per_row.values().all(|&n| n == t.columns), "{}", name(&apart));
            let mut side = order.clone();
            let co = side.iter().position(|&f| f == "Co").unwrap();
            side.insert(co + 1, "Co*");
            let (whole, split) = (mapped(4, &order.concat()), mapped(4, &name(&side)));
            for b in 0..bursts {
                proptest::prop_assert_eq!(whole.locate(b * t.burst_bytes), split.locate(b * t.burst_bytes));
            }
        }
    }

    /// Bit layouts: a field split into contiguous chunks places every burst where the unsplit
    /// field does; a chunk of one column bit below the bank group keeps bursts in pairs per
    /// group, so an in-order stream pays tCCD_L + tCCD_S per pair where alternating groups pay
    /// 2 tCCD_S (DDR4-3200: 12 against 8 cycles, 2/3 of the bandwidth); widths that do not
    /// split a field's count are refused, naming the key.
    #[test]
    fn bit_layouts_split_fields_into_chunks() {
        let (whole, split) = (ranked(1, "RoBaCoBg"), ranked(1, "RoBaCo3Co4Bg"));
        let span = whole.channel_banks() * whole.columns * 4;
        for b in 0..span {
            let addr = b * whole.burst_bytes;
            assert_eq!(whole.locate(addr), split.locate(addr), "burst {b}");
        }
        let pairs = ranked(1, "RoBaCoBgCo1");
        assert_eq!(pairs.locate(pairs.burst_bytes).bg, 0);
        assert_eq!(pairs.locate(2 * pairs.burst_bytes).bg, 1);
        let rate = |t: &Timing| run(t, &sequential(t, 100_000), 1, BUDGET).unwrap().bandwidth();
        let expect = (whole.ccd_s * 2).seconds() / (whole.ccd_s + whole.ccd_l).seconds();
        let ratio = rate(&pairs) / rate(&whole);
        assert!((ratio / expect - 1.0).abs() < 0.01, "{ratio} against {expect}");
        for (mapping, why) in
            [("RoBaCo8Bg", "chunks of 8 bits"), ("RoBaCo3Co3Bg", "chunks of 6 bits"), ("RoBa3CoBg", "banks per group")]
        {
            let mut org = DramOrg::preset("ddr4-3200").unwrap().unwrap();
            org.address_mapping = AddressMapping::parse(mapping, 1, 1, "m").unwrap();
            match Timing::of(&org) {
                Err(EngineError::Config { key, reason }) => {
                    assert_eq!(key, "dram.address_mapping");
                    assert!(reason.contains(why), "{mapping}: {reason}");
                }
                other => panic!("{mapping}: {other:?}"),
            }
        }
    }

    /// Two ranks share the data bus: a row's bursts alternating ranks leave it idle tRTRS
    /// between them (a burst per nBL + tRTRS once both rows are open), where one rank's bursts
    /// to one bank group wait tCCD_L, exactly; scattered reads gain from the second rank's
    /// banks; an isolated read to either rank takes tRCD + CL + nBL; a second rank needs tRTRS.
    #[test]
    fn ranks_share_the_bus_and_add_banks() {
        let two = ranked(2, "RoBaCoRa");
        let one = ranked(1, "RoBaCo");
        // One row of each rank (two rows' worth of bursts), then one row of the single rank.
        let first = two.rcd + two.cl + two.n_bl;
        let n = 2 * two.columns;
        let alternating = run(&two, &sequential(&two, n), 32, BUDGET).unwrap();
        assert_eq!(alternating.seconds, (first + (two.n_bl + two.rtrs) * (n - 1)).seconds());
        let same = run(&one, &sequential(&one, one.columns), 32, BUDGET).unwrap();
        assert_eq!(same.seconds, (first + one.ccd_l * (one.columns - 1)).seconds());
        let scattered = |t: &Timing| run(t, &random(t, 20_000, 3), 32, BUDGET).unwrap().bandwidth();
        let (r2, r1) = (scattered(&ranked(2, "RoRaBaCoBg")), scattered(&ranked(1, "RoBaCoBg")));
        assert!(r2 > r1 * 1.02, "{r2} vs {r1}");
        for addr in [0, two.burst_bytes] {
            let s = run(&two, &[Request { addr, at: Time(0), write: false }], 1, BUDGET).unwrap();
            assert_eq!(s.latency.max, (two.rcd + two.cl + two.n_bl).seconds());
        }
        let mut org = DramOrg::preset("hbm2").unwrap().unwrap();
        org.ranks = 2;
        org.address_mapping = AddressMapping::default_for(org.channels, 2);
        let e = Timing::of(&org).unwrap_err();
        assert!(e.to_string().contains("dram.timing.tRTRS"), "{e}");
    }

    /// A stream of writes reaches the bus as reads do; strict read/write alternation (no
    /// reordering) pays both turnarounds on every pair, as the closed form says; a controller
    /// window that may reorder does better, and pure reads best.
    #[test]
    fn writes_stream_and_turnarounds_cost_what_the_timings_say() {
        for name in ["ddr4-3200", "hbm2", "ddr5-4800", "hbm3", "lpddr5-6400"] {
            let t = timing(name);
            let w = t.write.unwrap();
            let writes = run(&t, &read_write(&t, 100_000, 0), 32, BUDGET).unwrap();
            assert_eq!(writes.writes, 100_000);
            assert!(writes.bandwidth() >= 0.9 * t.peak_bandwidth(), "{name}: {writes:?}");
            let reads = run(&t, &sequential(&t, 100_000), 32, BUDGET).unwrap();
            let strict = run(&t, &read_write(&t, 20_000, 1), 1, BUDGET).unwrap();
            let batched = run(&t, &read_write(&t, 20_000, 1), 32, BUDGET).unwrap();
            assert!(
                strict.bandwidth() < batched.bandwidth() && batched.bandwidth() <= reads.bandwidth() * 1.001,
                "{name}"
            );
            // Closed form for strict alternation over rotating bank groups: read command → write
            // command CL + nBL + 2 − CWL, write command → read command CWL + nBL + tWTR_S (each at
            // least tCCD_S), two bursts per period; refresh takes its share of the time.
            let rw = (t.cl + t.n_bl + t.tck * 2 - w.cwl).max(t.ccd_s);
            let wr = (w.cwl + t.n_bl + w.wtr_s).max(t.ccd_s);
            let refresh = match t.refresh {
                Refresh::AllBank { refi, rfc } => 1.0 - (rfc + t.rp).seconds() / refi.seconds(),
                // Per-bank refresh blocks one bank most of the time (HBM3: tRFCpb 256 of every 390
                // cycles), which an in-order controller cannot route around: no closed form.
                Refresh::PerBank { .. } => continue,
                Refresh::None => 1.0,
            };
            let closed = 2.0 * t.burst_bytes as f64 / (rw + wr).seconds() * refresh;
            let ratio = strict.bandwidth() / closed;
            assert!((0.9..=1.02).contains(&ratio), "{name}: {} vs {closed} ({ratio})", strict.bandwidth());
        }
        let mut no_writes = DramOrg::preset("hbm2").unwrap().unwrap();
        no_writes.timing.remove("CWL");
        let t = Timing::of(&no_writes).unwrap();
        let e = run(&t, &read_write(&t, 10, 1), 4, BUDGET).unwrap_err();
        assert!(e.to_string().contains("dram.timing.CWL"), "{e}");
    }

    /// An isolated read to a closed bank takes tRCD + CL + nBL; one to the row it left open,
    /// CL + nBL, on every standard.
    #[test]
    fn an_isolated_read_takes_the_closed_form_command_sequence() {
        for (name, _) in strata_arch::arch::DRAM_PRESETS {
            let t = timing(name);
            let s = run(&t, &sequential(&t, 1), 1, BUDGET).unwrap();
            assert_eq!(s.latency.max, (t.rcd + t.cl + t.n_bl).seconds(), "{name}");
            // A second read of the same row, long after: a row hit.
            let later = Time(t.rc.0 * 100);
            let reqs = [
                Request { addr: 0, at: Time(0), write: false },
                Request { addr: t.burst_bytes * t.bank_groups, at: later, write: false },
            ];
            let mut quiet = t.clone();
            quiet.refresh = Refresh::None;
            let s = run(&quiet, &reqs, 1, BUDGET).unwrap();
            assert_eq!(s.hits, 1, "{name}");
            assert_eq!(s.latency.p50, (t.cl + t.n_bl).seconds(), "{name}");
        }
    }

    /// Little's law on closed loops: requests in flight = throughput × mean latency.
    #[test]
    fn closed_loops_obey_littles_law() {
        for name in ["ddr4-3200", "hbm2", "lpddr5-6400"] {
            let t = timing(name);
            for (reqs, pattern) in [(sequential(&t, 20_000), "sequential"), (random(&t, 20_000, 3), "random")] {
                for depth in [1usize, 4, 16, 64] {
                    let s = simulate(&t, &reqs, Arrivals::Closed { depth }, 32, Writes::Window, BUDGET).unwrap();
                    let throughput = reqs.len() as f64 / s.seconds;
                    let in_flight = throughput * s.latency.mean;
                    let err = (in_flight - depth as f64).abs() / depth as f64;
                    assert!(err < 0.02, "{name} {pattern} depth {depth}: {in_flight:.3} in flight");
                }
            }
        }
    }

    /// Open loop: latency stays near the unloaded figure at low offered load and grows as the
    /// load nears what the channel sustains.
    #[test]
    fn latency_grows_with_offered_load() {
        let t = timing("ddr4-3200");
        let reqs = random(&t, 20_000, 5);
        let peak = run(&t, &reqs, 32, BUDGET).unwrap();
        let rate = |share: f64| share * reqs.len() as f64 / peak.seconds;
        let at = |share: f64| run(&t, &at_rate(&reqs, rate(share)), 32, BUDGET).unwrap().latency;
        let (low, mid, high) = (at(0.1), at(0.6), at(0.95));
        let unloaded = (t.rp + t.rcd + t.cl + t.n_bl).seconds();
        assert!(low.mean < 1.5 * unloaded, "{low:?} vs {unloaded}");
        assert!(low.mean < mid.mean && mid.mean < high.mean && high.p99 > high.p50, "{low:?} {mid:?} {high:?}");
    }

    fn with_channels(name: &str, channels: u64, mapping: Option<&str>) -> Timing {
        let mut org = DramOrg::preset(name).unwrap().unwrap();
        org.channels = channels;
        org.address_mapping = match mapping {
            Some(m) => AddressMapping::parse(m, channels, 1, "m").unwrap(),
            None => AddressMapping::default_for(channels, 1),
        };
        Timing::of(&org).unwrap()
    }

    /// N channels under an interleaving mapping serve a sequential stream N times as fast as
    /// one (± 2%); with the channel as the most significant field the stream stays on one.
    #[test]
    fn channels_multiply_bandwidth_under_an_interleaving_mapping() {
        for name in ["ddr4-3200", "hbm2", "hbm3", "lpddr5-6400"] {
            let one = timing(name);
            let base = run(&one, &sequential(&one, 40_000), 32, BUDGET).unwrap().bandwidth();
            for n in [2u64, 4, 8] {
                let t = with_channels(name, n, None);
                let s = run(&t, &sequential(&t, 40_000 * n), 32, BUDGET).unwrap();
                let ratio = s.bandwidth() / (n as f64 * base);
                assert!((0.98..=1.02).contains(&ratio), "{name} × {n}: {ratio:.4}");
                let top = with_channels(name, n, Some("ChRoBaCoBg"));
                let s = run(&top, &sequential(&top, 40_000), 32, BUDGET).unwrap();
                assert!((s.bandwidth() / base - 1.0).abs() < 0.02, "{name} × {n} channel-major");
            }
        }
        // Strata's default mapping named is the default.
        let named = with_channels("ddr4-3200", 1, Some("RoBaCoBg"));
        assert_eq!(named, timing("ddr4-3200"));
    }

    /// Ramulator 2's write queue (32 entries, drained from 80% to 20%) on DDR4-3200 runs of 16
    /// reads then 16 writes: 21.94 GB/s in Ramulator 2.1 (shared/reference/memory-peers.md),
    /// within 1% here; every request served, the bad watermarks refused.
    #[test]
    fn a_write_queue_drained_between_watermarks_matches_ramulator() {
        let t = timing("ddr4-3200");
        let reqs = read_write(&t, 1_000_000, 16);
        let s = simulate(&t, &reqs, Arrivals::AsGiven, 32, Writes::RAMULATOR, BUDGET).unwrap();
        assert_eq!((s.bytes / t.burst_bytes, s.writes), (1_000_000, 500_000));
        assert!((s.bandwidth() / 21.94e9 - 1.0).abs() < 0.01, "{:.3} GB/s", s.bandwidth() / 1e9);
        let bad = Writes::Drain { capacity: 8, high: 4, low: 4 };
        let e = simulate(&t, &reqs[..10], Arrivals::AsGiven, 32, bad, BUDGET).unwrap_err();
        assert!(e.to_string().contains("write_queue"), "{e}");
    }

    /// `n` random bursts, every third a write, in runs of eight to one row.
    fn mixed(t: &Timing, n: u64, seed: u64) -> Vec<Request> {
        random(t, n / 8 + 1, seed)
            .iter()
            .flat_map(|r| (0..8).map(move |i| r.addr / (8 * t.burst_bytes) * (8 * t.burst_bytes) + i * t.burst_bytes))
            .take(n as usize)
            .enumerate()
            .map(|(i, addr)| Request { addr, at: Time(0), write: i % 3 == 2 })
            .collect()
    }

    /// The controller's decisions, fingerprinted on streams that exercise every path (hits and
    /// misses, refresh of both kinds, a write queue's drains, close page, two ranks, a closed
    /// loop, turnarounds that hold a hit back): its shortcuts (hits first, stale banks only) must
    /// choose exactly what planning and scanning the whole window chose. The numbers are those of
    /// commit 6d70928, before the shortcuts; choosing a hit whenever one waits, or marking a
    /// bank stale on the wrong admission, changes them. Change them only with an explained
    /// change of behaviour.
    #[test]
    fn decisions_are_those_of_the_full_window_scan() {
        let fingerprint = |s: &Stats| (s.hits, s.misses, s.conflicts, s.refreshes, s.writes, s.events, s.seconds);
        let mut close = timing("ddr4-3200");
        close.close_page = true;
        let mut in_order = timing("hbm3");
        in_order.refresh_in_order = true;
        let two = Timing { refresh: timing("ddr4-3200").refresh, ..ranked(2, "RoBaRaCoBgCh") };
        let cases = [
            run(&timing("ddr4-3200"), &random(&timing("ddr4-3200"), 6000, 3), 32, BUDGET),
            run(&timing("hbm2"), &random(&timing("hbm2"), 6000, 5), 32, BUDGET),
            simulate(
                &timing("hbm2"),
                &read_write(&timing("hbm2"), 6000, 16),
                Arrivals::AsGiven,
                32,
                Writes::RAMULATOR,
                BUDGET,
            ),
            run(&close, &random(&close, 6000, 7), 16, BUDGET),
            run(&in_order, &random(&in_order, 6000, 9), 32, BUDGET),
            simulate(&two, &random(&two, 6000, 11), Arrivals::Closed { depth: 8 }, 32, Writes::Window, BUDGET),
            // Reads and writes in one window on closed banks: a hit held back by a turnaround loses
            // to a read of a closed bank in another bank group.
            run(&close, &mixed(&close, 6000, 13), 32, BUDGET),
            run(&timing("ddr4-3200"), &mixed(&timing("ddr4-3200"), 6000, 17), 32, BUDGET),
        ];
        let got: Vec<_> = cases.iter().map(|c| fingerprint(c.as_ref().unwrap())).collect();
        // (hits, misses, conflicts, refreshes, writes, events, seconds)
        let want = [
            (5988, 80, 5960, 4, 0, 12006, 3.4196874999999996e-5),
            (5973, 208, 5876, 12, 0, 12014, 4.9548e-5),
            (5996, 64, 332, 3, 2992, 12005, 1.4862e-5),
            (5991, 6034, 0, 4, 0, 12006, 3.527875e-5),
            (5993, 122, 5954, 106, 0, 12108, 2.6115625e-5),
            (5986, 224, 5801, 6, 0, 12008, 5.3118125e-5),
            (5995, 3024, 0, 2, 2000, 12004, 2.315125e-5),
            (5995, 48, 2969, 2, 2000, 12004, 2.318875e-5),
        ];
        assert_eq!(got, want);
    }

    /// Close-page: an isolated read to a row other than the bank's last takes tRCD + CL + nBL
    /// (the bank precharged while idle) instead of tRP more; a stream of row hits is unharmed
    /// (waiting hits keep the row open). Per-bank refresh in index order visits every bank.
    #[test]
    fn close_page_and_in_order_refresh() {
        for name in ["ddr4-3200", "hbm2", "lpddr5-6400"] {
            let mut t = timing(name);
            t.refresh = Refresh::None;
            let far = t.burst_bytes * t.bank_groups * t.columns * t.banks_per_group; // same bank, next row
            let reqs = [
                Request { addr: 0, at: Time(0), write: false },
                Request { addr: far, at: Time(t.rc.0 * 50), write: false },
            ];
            assert_eq!(t.locate(0).bank, t.locate(far).bank, "{name}");
            let open = run(&t, &reqs, 4, BUDGET).unwrap();
            t.close_page = true;
            let closed = run(&t, &reqs, 4, BUDGET).unwrap();
            assert_eq!(open.latency.max, (t.rp + t.rcd + t.cl + t.n_bl).seconds(), "{name}");
            assert_eq!(closed.latency.max, (t.rcd + t.cl + t.n_bl).seconds(), "{name}");
            let seq = sequential(&t, 50_000);
            let a = run(&t, &seq, 32, BUDGET).unwrap().bandwidth();
            t.close_page = false;
            let b = run(&t, &seq, 32, BUDGET).unwrap().bandwidth();
            assert!(a > 0.97 * b, "{name}: close-page {a} vs open-page {b}");
        }
        let mut t = timing("hbm3");
        let seq = sequential(&t, 200_000);
        let idle_first = run(&t, &seq, 32, BUDGET).unwrap();
        t.refresh_in_order = true;
        let in_order = run(&t, &seq, 32, BUDGET).unwrap();
        // Refreshing a bank a stream is about to need costs bandwidth the idle-first choice keeps.
        assert!(in_order.bandwidth() < idle_first.bandwidth(), "{in_order:?} vs {idle_first:?}");
    }

    /// A DDR4-3200 x8 channel with datasheet-like currents (mA): the test's own figures.
    fn with_power(name: &str) -> Timing {
        let text = strata_arch::arch::DRAM_PRESETS.iter().find(|p| p.0 == name).unwrap().1.to_string()
            + "power = { vdd = 1.2, idd0 = 58, idd2n = 37, idd3n = 52, idd4r = 168, idd4w = 150, idd5b = 250, devices = 8 }\n";
        Timing::of(&DramOrg::from_toml(&text).unwrap()).unwrap()
    }

    /// Energy per read burst, per write burst and per activation equal the IDD closed forms;
    /// in the background a streaming rank is in active standby but for the tRP before each
    /// refresh (precharge standby).
    #[test]
    fn energy_per_command_is_the_idd_closed_form() {
        let t = with_power("ddr4-3200");
        let (vdd, dev, ma, ns) = (1.2, 8.0, 1e-3, 1e-9);
        let tck = t.tck.seconds() / ns;
        // Row hits only: a sequential stream; every burst one read.
        let s = run(&t, &sequential(&t, 100_000), 32, BUDGET).unwrap();
        let e = s.energy.unwrap();
        let per_read = e.read / (s.bytes / t.burst_bytes) as f64;
        let closed = vdd * (168.0 - 52.0) * ma * 4.0 * tck * ns * dev;
        assert!((per_read / closed - 1.0).abs() < 1e-12, "{per_read} vs {closed}");
        let per_act = e.activate / (s.misses + s.conflicts) as f64;
        let act = vdd * (58.0 * 74.0 - 52.0 * 52.0 - 37.0 * 22.0) * ma * tck * ns * dev;
        assert!((per_act / act - 1.0).abs() < 1e-12, "{per_act} vs {act}");
        let background = vdd * ma * dev * (52.0 * s.active_seconds + 37.0 * (s.seconds - s.active_seconds));
        assert!((e.background / background - 1.0).abs() < 1e-12, "{} vs {background}", e.background);
        let precharged = s.seconds - s.active_seconds;
        let (rp, rc) = (t.rp.seconds(), t.rc.seconds());
        let n = s.refreshes as f64;
        assert!(precharged >= n * rp * (1.0 - 1e-9) && precharged <= n * (rp + rc), "{precharged} s, {n} refreshes");
        let w = run(&t, &read_write(&t, 10_000, 0), 32, BUDGET).unwrap().energy.unwrap();
        assert!((w.write / 10_000.0 / (vdd * (150.0 - 52.0) * ma * 4.0 * tck * ns * dev) - 1.0).abs() < 1e-12);
        // Random reads pay an activation per burst: more energy per bit than a stream.
        let r = run(&t, &random(&t, 100_000, 3), 32, BUDGET).unwrap();
        assert!(r.energy.unwrap().total() > 2.0 * e.total(), "{r:?} vs {s:?}");
        // Currents out of order are refused, naming the key.
        let text = strata_arch::arch::DRAM_PRESETS.iter().find(|p| p.0 == "ddr4-3200").unwrap().1.to_string()
            + "power = { vdd = 1.2, idd0 = 58, idd2n = 37, idd3n = 52, idd4r = 40, idd4w = 150, idd5b = 250, devices = 8 }\n";
        let e = DramOrg::from_toml(&text).unwrap_err();
        assert_eq!(e.path, "dram.power.idd4r", "{e}");
    }

    /// Background states as DRAMsim3 and DRAMPower count them: two reads of one row 10 µs
    /// apart keep the rank in active standby throughout with an open-page controller (the second
    /// a row hit); a close-page one precharges after each (tRAS after its activation), so the
    /// rank is active for tRAS and then for the second read's tRCD + CL + nBL, and in precharge
    /// standby between.
    #[test]
    fn background_energy_follows_open_rows() {
        let (vdd, dev, ma) = (1.2, 8.0, 1e-3);
        let apart = Time(10_000_000);
        let reads = [Request { addr: 0, at: Time(0), write: false }, Request { addr: 0, at: apart, write: false }];
        for close_page in [false, true] {
            let t = Timing { refresh: Refresh::None, close_page, ..with_power("ddr4-3200") };
            let s = simulate(&t, &reads, Arrivals::AsGiven, 32, Writes::Window, BUDGET).unwrap();
            // Open page, the second read hits the open row; close page, it activates it again.
            let end = apart + if close_page { t.rcd } else { Time(0) } + t.cl + t.n_bl;
            assert_eq!(s.seconds, end.seconds());
            let active = if close_page { t.ras + t.rcd + t.cl + t.n_bl } else { end };
            assert_eq!(s.active_seconds, active.seconds(), "close page {close_page}");
            let background = vdd * ma * dev * (52.0 * active.seconds() + 37.0 * (end - active).seconds());
            let e = s.energy.unwrap().background;
            assert!((e / background - 1.0).abs() < 1e-12, "close page {close_page}: {e} vs {background}");
        }
    }

    #[test]
    fn sequential_streams_reach_ninety_percent_of_peak() {
        for name in ["hbm2", "hbm3", "ddr4-3200", "ddr5-4800", "lpddr5-6400"] {
            let t = timing(name);
            let s = run(&t, &sequential(&t, 200_000), 32, BUDGET).unwrap();
            let eff = s.bandwidth() / t.peak_bandwidth();
            assert!((0.90..=1.0).contains(&eff), "{name}: {eff:.3} of peak ({s:?})");
        }
    }

    #[test]
    fn random_reads_run_at_the_activation_limited_closed_form() {
        for name in ["hbm2", "hbm3", "ddr4-3200", "ddr5-4800", "lpddr5-6400"] {
            let mut t = timing(name);
            t.refresh = Refresh::None;
            let s = run(&t, &random(&t, 50_000, 7), 32, BUDGET).unwrap();
            // Every read opens a row: one activation per burst, limited by a bank's tRC over all
            // banks, four per tFAW, tRRD_S (the controller alternates bank groups) and the bus.
            let per =
                (t.rc.0 as f64 / t.banks() as f64).max(t.faw.0 as f64 / 4.0).max(t.rrd_s.0 as f64).max(t.n_bl.0 as f64);
            let closed = t.burst_bytes as f64 / (per * 1e-12);
            let ratio = s.bandwidth() / closed;
            assert!((0.8..=1.0).contains(&ratio), "{name}: {ratio:.3} of {closed:.3e} B/s ({s:?})");
            assert!(s.conflicts + s.misses > 49_000, "{s:?}");
        }
    }

    #[test]
    fn refresh_costs_trfc_over_trefi() {
        for name in ["hbm2", "ddr4-3200", "ddr5-4800"] {
            let t = timing(name);
            let mut none = t.clone();
            none.refresh = Refresh::None;
            let reads = sequential(&t, 200_000);
            let with = run(&t, &reads, 32, BUDGET).unwrap();
            let without = run(&none, &reads, 32, BUDGET).unwrap();
            let lost = 1.0 - without.seconds / with.seconds;
            let Refresh::AllBank { refi, rfc } = t.refresh else { panic!("{name} refreshes all banks") };
            let expect = rfc.0 as f64 / refi.0 as f64;
            assert!((lost - expect).abs() < 0.25 * expect, "{name}: lost {lost:.4}, tRFC/tREFI {expect:.4}");
        }
    }

    #[test]
    fn inconsistent_timings_and_budgets_are_errors() {
        let org = DramOrg::preset("hbm2").unwrap().unwrap();
        let mut o = org.clone();
        o.timing.remove("tFAW");
        assert!(matches!(Timing::of(&o), Err(EngineError::Config { key, .. }) if key == "dram.timing.tFAW"));
        let mut o = org.clone();
        o.timing.insert("tREFI".into(), 100.0);
        assert!(matches!(Timing::of(&o), Err(EngineError::Config { key, .. }) if key == "dram.timing.tREFI"));
        let t = Timing::of(&org).unwrap();
        assert_eq!(run(&t, &sequential(&t, 1000), 32, 100), Err(EngineError::Budget { events: 100 }));
        let text = crate::engine::dram::tests::hbm2_text().replace("tRAS = 34", "tRAS = 10");
        let e = DramOrg::from_toml(&text).unwrap_err();
        assert_eq!(e.path, "dram.timing.tRAS", "{e}");
    }

    fn hbm2_text() -> String {
        strata_arch::arch::DRAM_PRESETS.iter().find(|p| p.0 == "hbm2").unwrap().1.to_string()
    }
}
