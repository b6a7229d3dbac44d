//! Request traces for the memory engines: one request per line, `time_ns R|W address bytes`
//! (address decimal or 0x hex; `#` starts a comment). `strata dram --trace` splits each into
//! bursts, `strata nand --trace` issues each as a host read or write at its time, and
//! `strata trace --dram-trace` writes the tile engine's transfers in the same format.

use crate::error::{CliError, CliResult};

/// One request of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceRequest {
    /// When it arrives, in nanoseconds (0 to 10 s).
    pub ns: f64,
    pub write: bool,
    pub addr: u64,
    /// 1 B to 1 GiB, ending below 2^64.
    pub bytes: u64,
}

/// Reads a trace; a line that does not parse is an input error naming the file, the line and
/// the reason; a trace without requests is one too.
pub fn read(path: &std::path::Path) -> CliResult<Vec<TraceRequest>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| CliError::input(format!("{}: cannot read: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| {
            CliError::input(format!(
                "{}:{}: {why} (`{line}`; write `time_ns R|W address bytes`)",
                path.display(),
                i + 1
            ))
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let [time, op, addr, bytes] = f[..] else { return Err(bad("four fields expected")) };
        let ns: f64 = time.parse().map_err(|_| bad("the time is not a number of nanoseconds"))?;
        if !(ns.is_finite() && (0.0..=1e10).contains(&ns)) {
            return Err(bad("the time must be between 0 and 10 s"));
        }
        let write = match op {
            "R" | "r" => false,
            "W" | "w" => true,
            _ => return Err(bad("the operation is R or W")),
        };
        let addr = match addr.strip_prefix("0x").or_else(|| addr.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16),
            None => addr.parse(),
        }
        .map_err(|_| bad("the address is not a decimal or 0x-hex integer"))?;
        let bytes: u64 = bytes.parse().map_err(|_| bad("the size is not a whole number of bytes"))?;
        if bytes == 0 || bytes > 1 << 30 {
            return Err(bad("the size must be 1 B to 1 GiB"));
        }
        addr.checked_add(bytes - 1).ok_or_else(|| bad("the request runs past 2^64"))?;
        out.push(TraceRequest { ns, write, addr, bytes });
    }
    if out.is_empty() {
        return Err(CliError::input(format!("{}: the trace holds no requests", path.display())));
    }
    Ok(out)
}
