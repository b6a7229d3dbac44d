//! Cambricon-LLM's hardware-aware tiling of a GeMV over in-flash compute cores (§V).
//!
//! A weight matrix of `rows × cols` (outputs × inputs) is cut into read-compute requests of
//! `h × w`: each of the C channels takes a strip of `w / C` input columns, and each of the
//! channel's `cores` dies (one compute core per die) takes `h / cores` rows of it, so one die's
//! share — its *atomic tile* — must be exactly one page. The input strip is broadcast once to all
//! cores of a channel and each core returns `h / cores` partial sums, so a request moves
//! `Trans = w + C·h` elements over the channels. Minimising Trans under `h·w = C·cores·page`
//! gives h* = √(cores·page), w* = C·h*; here the search runs over the page's whole-number
//! factorisations and never makes `w` wider than the matrix. The same timing sets the share α
//! of requests that compute in flash; the rest are normal page reads whose raw weights the NPU
//! multiplies.

use strata_arch::arch::NandOrg;

/// A read-compute request's shape: `h` output rows × `w` input columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub h: u64,
    pub w: u64,
}

/// Why a tile cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct TileError(pub String);

impl std::fmt::Display for TileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Compute cores (dies) on one channel.
pub fn cores_per_channel(org: &NandOrg) -> u64 {
    org.chips_per_channel * org.dies_per_chip
}

impl Tile {
    /// Checks that each die's share is one whole page of `elem_bytes`-byte weights.
    pub fn check(self, org: &NandOrg, elem_bytes: u64) -> Result<Tile, TileError> {
        let cores = cores_per_channel(org);
        let page = org.page_bytes.0 / elem_bytes.max(1);
        if self.h == 0 || self.w == 0 || !self.h.is_multiple_of(cores) || !self.w.is_multiple_of(org.channels) {
            return Err(TileError(format!(
                "tile {}×{}: h must be a positive multiple of the {cores} cores per channel and w of the {} channels",
                self.h, self.w, org.channels
            )));
        }
        let atomic = (self.h / cores) * (self.w / org.channels);
        if atomic != page {
            return Err(TileError(format!(
                "tile {}×{} gives each core {}×{} = {atomic} weights, not one {page}-weight page",
                self.h,
                self.w,
                self.h / cores,
                self.w / org.channels
            )));
        }
        Ok(self)
    }

    /// Elements the request moves over the channels: the broadcast input and the partial sums.
    pub fn trans(self, org: &NandOrg) -> u64 {
        self.w + org.channels * self.h
    }

    /// Weights one request covers.
    pub fn weights(self) -> u64 {
        self.h * self.w
    }
}

/// The tile with the least channel traffic among whole-page factorisations whose input strip
/// and partial sums fit a core's `buffer` bytes, no wider than `cols` where the matrix allows
/// (else the narrowest); ties keep the smaller `w`.
pub fn aware_tile(org: &NandOrg, elem_bytes: u64, cols: u64, buffer: u64) -> Tile {
    let cores = cores_per_channel(org);
    let page = org.page_bytes.0 / elem_bytes.max(1);
    let mut best: Option<(bool, bool, u64, u64, Tile)> = None;
    for a in crate::mapper::divisors(page) {
        let t = Tile { h: cores * a, w: org.channels * (page / a) };
        let fits = (page / a + a) * elem_bytes <= buffer;
        let key = (!fits, t.w > cols, t.trans(org), t.w, t);
        if best.is_none_or(|b| (key.0, key.1, key.2, key.3) < (b.0, b.1, b.2, b.3)) {
            best = Some(key);
        }
    }
    best.expect("a page has at least one factorisation").4
}

/// The naive tiling of prior in-storage compute: each die's page holds whole matrix rows
/// (`page / cols` of them) and every core is sent the whole input vector (no broadcast).
pub fn naive_rows_per_core(org: &NandOrg, elem_bytes: u64, cols: u64) -> u64 {
    (org.page_bytes.0 / elem_bytes.max(1) / cols.max(1)).max(1)
}

/// The paper's split: the share α of requests that are read-compute, from the time of one
/// read-compute request (tR plus its input strip) and of one normal page read on the channel
/// time that read-compute traffic leaves free.
pub fn alpha(org: &NandOrg, tile: Tile) -> f64 {
    let bw = org.channel_bandwidth.0;
    let t_r_array = org.t_read.0;
    let t_rc = t_r_array + tile.w as f64 / (org.channels as f64 * bw);
    let rate_rc = (tile.h as f64 + tile.w as f64 / org.channels as f64) / (t_r_array * bw);
    let t_r = org.page_bytes.0 as f64 / ((1.0 - rate_rc).max(1e-9) * bw);
    t_r / (t_r + t_rc)
}

/// The share of weight bytes computed in flash when a share α of requests is read-compute
/// (a read-compute request covers a tile; a normal request reads one page on every channel).
pub fn flash_share(org: &NandOrg, elem_bytes: u64, tile: Tile) -> f64 {
    let a = alpha(org, tile);
    let rc = a * (tile.weights() * elem_bytes) as f64;
    rc / (rc + (1.0 - a) * (org.channels * org.page_bytes.0) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_arch::units::{Bytes, BytesPerSecond, Seconds};

    fn org(channels: u64, chips: u64) -> NandOrg {
        NandOrg {
            name: String::new(),
            channels,
            chips_per_channel: chips,
            dies_per_chip: 2,
            planes_per_die: 2,
            page_bytes: Bytes(16384),
            pages_per_block: 1024,
            t_read: Seconds(30e-6),
            t_program: Seconds(600e-6),
            t_erase: Seconds(3e-3),
            channel_bandwidth: BytesPerSecond(1e9),
            t_command: Seconds(290e-9),
            t_plane_command: Seconds(650e-9),
            cache_read: true,
            request_overhead: Seconds(0.0),
            host_bandwidth: None,
            t_read_by_page: Vec::new(),
            scheduling: Default::default(),
            command_latency: Seconds(0.0),
            blocks_per_plane: None,
            ftl: None,
        }
    }

    /// §V's S configuration: H = √(4·16384) = 256, W = 8·256 = 2048, α between 0.35 and 0.36
    /// (the reproduction's test), and the AM-GM minimum 2·C·√(cores·page) of Trans.
    #[test]
    fn s_configuration_gives_the_papers_tile_and_alpha() {
        let s = org(8, 2);
        let t = aware_tile(&s, 1, 1 << 20, 2048);
        assert_eq!(t, Tile { h: 256, w: 2048 });
        assert_eq!(t.trans(&s), 2 * 8 * 256);
        let a = alpha(&s, t);
        assert!(a > 0.35 && a < 0.36, "{a}");
        let f = flash_share(&s, 1, t);
        assert!((f - 0.688).abs() < 0.005, "{f}");
        // L: 512 × 16384 without a width limit; a 4096-wide matrix forces 2048 × 4096.
        let l = org(32, 8);
        assert_eq!(aware_tile(&l, 1, 1 << 20, 2048), Tile { h: 512, w: 16384 });
        assert_eq!(aware_tile(&l, 1, 4096, 2048), Tile { h: 2048, w: 4096 });
    }

    #[test]
    fn tiles_must_be_whole_pages() {
        let s = org(8, 2);
        assert!(Tile { h: 128, w: 4096 }.check(&s, 1).is_ok());
        assert!(Tile { h: 4096, w: 128 }.check(&s, 1).is_ok());
        let e = Tile { h: 256, w: 1024 }.check(&s, 1).unwrap_err();
        assert!(e.0.contains("not one 16384-weight page"), "{e}");
        assert!(Tile { h: 250, w: 2048 }.check(&s, 1).is_err());
    }

    proptest::proptest! {
        /// The chosen tile is a whole-page tile and no whole-page tile that fits moves less.
        #[test]
        fn aware_tile_is_minimal(ch in 0u32..7, chips in 0u32..8, cols_log in 7u32..16) {
            let o = org(1 << ch, 1 << chips);
            let cols = 1u64 << cols_log;
            let t = aware_tile(&o, 1, cols, u64::MAX);
            proptest::prop_assert!(t.check(&o, 1).is_ok());
            let cores = cores_per_channel(&o);
            for a in (1..=16384u64).filter(|a| 16384 % a == 0) {
                let u = Tile { h: cores * a, w: o.channels * (16384 / a) };
                if u.w <= cols && t.w <= cols {
                    proptest::prop_assert!(t.trans(&o) <= u.trans(&o));
                }
            }
        }
    }
}
