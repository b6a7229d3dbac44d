//! Unit newtypes and the unit strings architects write in TOML ("16 MiB", "400 GiB/s").
//!
//! Quantities that are summed over millions of mappings are plain `f64`/`u64` inside newtypes:
//! the types keep bytes from being added to cycles, the representation keeps the hot loop fast.

use std::fmt;
use std::ops::{Add, AddAssign, Mul};

macro_rules! quantity {
    ($name:ident, $inner:ty, $unit:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
        pub struct $name(pub $inner);

        impl Add for $name {
            type Output = $name;
            fn add(self, o: $name) -> $name {
                $name(self.0 + o.0)
            }
        }

        impl AddAssign for $name {
            fn add_assign(&mut self, o: $name) {
                self.0 += o.0;
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

quantity!(Bytes, u64, "B", "A size in bytes.");
quantity!(Cycles, f64, "cycles", "A duration in clock cycles (fractional: analytical averages).");
quantity!(Seconds, f64, "s", "A duration in seconds.");
quantity!(Picojoules, f64, "pJ", "An energy in picojoules.");
quantity!(BytesPerSecond, f64, "B/s", "A bandwidth.");
quantity!(Hertz, f64, "Hz", "A clock frequency.");

impl Mul<f64> for Picojoules {
    type Output = Picojoules;
    fn mul(self, k: f64) -> Picojoules {
        Picojoules(self.0 * k)
    }
}

impl Cycles {
    pub fn at(self, clock: Hertz) -> Seconds {
        Seconds(self.0 / clock.0)
    }
}

impl Picojoules {
    pub fn joules(self) -> f64 {
        self.0 * 1e-12
    }
}

/// Splits "16 MiB" into (16.0, "MiB"); the number may be in exponent form.
fn number_and_unit(s: &str) -> Result<(f64, String), String> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || c == '_' || ((c == 'e' || c == 'E') && i > 0)))
        .map_or(s.len(), |(i, _)| i);
    // An exponent marker must be followed by a digit or sign, else it starts the unit ("1 EB" is not a thing here).
    let (num, unit) = s.split_at(end);
    let num = num.replace('_', "");
    let value: f64 = num.parse().map_err(|_| format!("`{s}` does not start with a number"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("`{s}` must be a finite, non-negative number"));
    }
    Ok((value, unit.trim().to_string()))
}

fn scale(unit: &str, table: &[(&str, f64)], what: &str, original: &str) -> Result<f64, String> {
    table.iter().find(|(u, _)| *u == unit).map(|(_, k)| *k).ok_or_else(|| {
        let known: Vec<&str> = table.iter().map(|(u, _)| *u).collect();
        format!("`{original}`: unknown {what} unit `{unit}` (use one of: {})", known.join(", "))
    })
}

const BYTE_UNITS: &[(&str, f64)] = &[
    ("B", 1.0),
    ("KB", 1e3),
    ("MB", 1e6),
    ("GB", 1e9),
    ("TB", 1e12),
    ("KiB", 1024.0),
    ("MiB", 1048576.0),
    ("GiB", 1073741824.0),
    ("TiB", 1099511627776.0),
];

/// "16 MiB" → 16777216 bytes. Rounds to whole bytes.
pub fn parse_bytes(s: &str) -> Result<Bytes, String> {
    let (v, u) = number_and_unit(s)?;
    let k = scale(&u, BYTE_UNITS, "size", s)?;
    Ok(Bytes((v * k).round() as u64))
}

/// "400 GiB/s" → bytes per second.
pub fn parse_bandwidth(s: &str) -> Result<BytesPerSecond, String> {
    let (v, u) = number_and_unit(s)?;
    let unit = u.strip_suffix("/s").ok_or_else(|| format!("`{s}`: a bandwidth ends in /s, e.g. \"400 GiB/s\""))?;
    Ok(BytesPerSecond(v * scale(unit, BYTE_UNITS, "bandwidth", s)?))
}

/// "940 MHz" → hertz.
pub fn parse_frequency(s: &str) -> Result<Hertz, String> {
    let (v, u) = number_and_unit(s)?;
    Ok(Hertz(v * scale(&u, &[("Hz", 1.0), ("kHz", 1e3), ("MHz", 1e6), ("GHz", 1e9)], "frequency", s)?))
}

/// "17.16 pJ" → picojoules.
pub fn parse_energy(s: &str) -> Result<Picojoules, String> {
    let (v, u) = number_and_unit(s)?;
    Ok(Picojoules(v * scale(&u, &[("fJ", 1e-3), ("pJ", 1.0), ("nJ", 1e3), ("uJ", 1e6), ("µJ", 1e6)], "energy", s)?))
}

/// "30 us" → seconds.
pub fn parse_time(s: &str) -> Result<Seconds, String> {
    let (v, u) = number_and_unit(s)?;
    // Divisors rather than multipliers, so "30 us" is exactly the double nearest 30e-6.
    let table = [("s", 1.0), ("ms", 1e3), ("us", 1e6), ("µs", 1e6), ("ns", 1e9), ("ps", 1e12)];
    Ok(Seconds(v / scale(&u, &table, "time", s)?))
}

/// "3.9 pJ/bit" → picojoules per bit.
pub fn parse_energy_per_bit(s: &str) -> Result<Picojoules, String> {
    let e = s.trim().strip_suffix("/bit").ok_or_else(|| format!("`{s}`: an energy per bit ends in /bit"))?;
    parse_energy(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_units_architects_write() {
        assert_eq!(parse_bytes("16 MiB"), Ok(Bytes(16 << 20)));
        assert_eq!(parse_bytes("512B"), Ok(Bytes(512)));
        assert_eq!(parse_bytes("1.5 TB"), Ok(Bytes(1_500_000_000_000)));
        assert_eq!(parse_bandwidth("400 GiB/s"), Ok(BytesPerSecond(400.0 * 1073741824.0)));
        assert_eq!(parse_bandwidth("1.4 GB/s"), Ok(BytesPerSecond(1.4e9)));
        assert_eq!(parse_frequency("940 MHz"), Ok(Hertz(940e6)));
        assert_eq!(parse_energy("17.16 pJ"), Ok(Picojoules(17.16)));
        assert_eq!(parse_time("30 us"), Ok(Seconds(30e-6)));
        assert_eq!(parse_energy_per_bit("3.9 pJ/bit"), Ok(Picojoules(3.9)));
        assert_eq!(parse_bytes("1e3 B"), Ok(Bytes(1000)));
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        assert!(parse_bytes("16 MeB").unwrap_err().contains("unknown size unit `MeB`"));
        assert!(parse_bandwidth("400 GiB").unwrap_err().contains("ends in /s"));
        assert!(parse_bytes("lots").unwrap_err().contains("does not start with a number"));
        assert!(parse_frequency("-5 MHz").is_err());
    }

    proptest! {
        #[test]
        fn byte_strings_round_trip(n in 0u64..1_000_000, unit in 0usize..BYTE_UNITS.len()) {
            let (u, k) = BYTE_UNITS[unit];
            prop_assert_eq!(parse_bytes(&format!("{n} {u}")), Ok(Bytes((n as f64 * k).round() as u64)));
        }
    }
}
