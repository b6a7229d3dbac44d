//! How a DRAM's controller spreads addresses over its channels, ranks, bank groups, banks, rows
//! and columns: a mixed-radix split of the burst index, named the way Ramulator and DRAMsim3 name
//! their mappers (most significant field first: `RoBaCoBgCh` puts consecutive bursts on
//! consecutive channels, then bank groups, then columns of one row). A field may be split into
//! chunks laid out apart, each but one with its width in bits: `RoBaCoBgCo1` keeps two
//! consecutive bursts in one bank group before moving to the next (a bit layout, as controllers
//! that interleave above the lowest column bits have it).

use crate::error::{SpecError, SpecResult};

/// One field of a burst address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressField {
    Channel,
    Rank,
    BankGroup,
    /// The bank within its group, or, when the mapping names no bank group, the bank over all
    /// groups (the group its least significant digit, so that consecutive banks alternate groups).
    Bank,
    Row,
    Column,
}

impl AddressField {
    fn token(self) -> &'static str {
        match self {
            AddressField::Channel => "Ch",
            AddressField::Rank => "Ra",
            AddressField::BankGroup => "Bg",
            AddressField::Bank => "Ba",
            AddressField::Row => "Ro",
            AddressField::Column => "Co",
        }
    }
}

/// A run of address digits that belongs to one field: `bits` wide, or (`None`) whatever the
/// field's other chunks leave of its count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub field: AddressField,
    pub bits: Option<u32>,
}

/// An address mapping: the fields' chunks from least to most significant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressMapping {
    pub lsb_first: Vec<Chunk>,
}

impl AddressMapping {
    /// Strata's own (and the engine's before mappings were named): consecutive bursts rotate over
    /// channels, then bank groups, then walk a row's columns, then the next bank, then the next
    /// rank, then the next row.
    pub fn default_for(channels: u64, ranks: u64) -> AddressMapping {
        let name = format!("Ro{}BaCoBg{}", if ranks > 1 { "Ra" } else { "" }, if channels > 1 { "Ch" } else { "" });
        AddressMapping::parse(&name, channels, ranks, "").expect("the default mapping is valid")
    }

    /// Whether the mapping places `field`.
    pub fn has(&self, field: AddressField) -> bool {
        self.lsb_first.iter().any(|c| c.field == field)
    }

    /// Parses a name such as `RoBaCoBgCh` (fields most significant first: `Ch`, `Ra`, `Bg`,
    /// `Ba`, `Ro`, `Co`; `Ch` and `Ra` may be left out of a device with one channel or one rank,
    /// `Bg` folds into `Ba` when left out). A field named more than once is split: every chunk
    /// but one carries its width in bits (`RoBaCoBgCo1`); the engine checks the widths against
    /// the device's counts. `key` locates errors.
    pub fn parse(name: &str, channels: u64, ranks: u64, key: &str) -> SpecResult<AddressMapping> {
        let fields = [
            AddressField::Channel,
            AddressField::Rank,
            AddressField::BankGroup,
            AddressField::Bank,
            AddressField::Row,
            AddressField::Column,
        ];
        let mut msb_first: Vec<Chunk> = Vec::new();
        let mut rest = name;
        while !rest.is_empty() {
            let Some(field) = fields.iter().copied().find(|f| rest.starts_with(f.token())) else {
                return Err(SpecError::new(
                    key,
                    format!(
                        "`{name}`: `{}` is not a field (Ch, Ra, Bg, Ba, Ro, Co, most significant first)",
                        rest.chars().take(2).collect::<String>()
                    ),
                ));
            };
            rest = &rest[2..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let bits = match &rest[..digits] {
                "" => None,
                d => match d.parse::<u32>() {
                    Ok(b @ 1..=40) => Some(b),
                    _ => {
                        return Err(SpecError::new(
                            key,
                            format!("`{name}`: `{}{d}`: a chunk is 1 to 40 bits wide", field.token()),
                        ));
                    }
                },
            };
            rest = &rest[digits..];
            msb_first.push(Chunk { field, bits });
        }
        for f in fields {
            if msb_first.iter().filter(|c| c.field == f && c.bits.is_none()).count() > 1 {
                return Err(SpecError::new(
                    key,
                    format!(
                        "`{name}` names `{}` twice: give every chunk of a split field but one its width in bits (`{}1`)",
                        f.token(),
                        f.token()
                    ),
                ));
            }
        }
        let has = |f: AddressField| msb_first.iter().any(|c| c.field == f);
        for f in [AddressField::Bank, AddressField::Row, AddressField::Column] {
            if !has(f) {
                return Err(SpecError::new(
                    key,
                    format!("`{name}` does not cover the address: `{}` is missing", f.token()),
                ));
            }
        }
        if channels > 1 && !has(AddressField::Channel) {
            return Err(SpecError::new(
                key,
                format!("`{name}` does not cover the address: {channels} channels need `Ch`"),
            ));
        }
        if ranks > 1 && !has(AddressField::Rank) {
            return Err(SpecError::new(key, format!("`{name}` does not cover the address: {ranks} ranks need `Ra`")));
        }
        msb_first.reverse();
        Ok(AddressMapping { lsb_first: msb_first })
    }

    /// The name, most significant field first.
    pub fn name(&self) -> String {
        self.lsb_first
            .iter()
            .rev()
            .map(|c| format!("{}{}", c.field.token(), c.bits.map_or(String::new(), |b| b.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_round_trip_and_bad_ones_are_located() {
        for (name, channels, ranks) in [
            ("RoBaCoBg", 1, 1),
            ("RoBaCoBgCh", 2, 1),
            ("ChRoBaBgCo", 8, 1),
            ("RoCoBa", 1, 1),
            ("RoBaRaCoCh", 2, 2),
            ("RoBaCoBgCo1", 1, 1),
            ("RoCo2BaCoBg1Bg1", 1, 1),
        ] {
            assert_eq!(AddressMapping::parse(name, channels, ranks, "k").unwrap().name(), name);
        }
        assert_eq!(AddressMapping::default_for(1, 1).name(), "RoBaCoBg");
        assert_eq!(AddressMapping::default_for(2, 2).name(), "RoRaBaCoBgCh");
        for (name, channels, expect) in [
            ("RoBaCo", 2, "2 channels need `Ch`"),
            ("RoBaBg", 1, "`Co` is missing"),
            ("RoBaCoCo", 1, "names `Co` twice: give every chunk of a split field but one its width"),
            ("RoBaCo0Bg", 1, "`Co0`: a chunk is 1 to 40 bits wide"),
            ("RoBaCo41Bg", 1, "`Co41`: a chunk is 1 to 40 bits wide"),
            ("RoBaCoBg", 1, "2 ranks need `Ra`"),
            ("RoRkBaCo", 1, "`Rk` is not a field"),
        ] {
            let e = AddressMapping::parse(name, channels, 2, "dram.address_mapping").unwrap_err();
            assert_eq!(e.path, "dram.address_mapping");
            assert!(e.reason.contains(expect), "{name}: {e}");
        }
    }
}
