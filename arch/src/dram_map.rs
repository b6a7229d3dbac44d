//! How a DRAM's controller spreads addresses over its channels, ranks, bank groups, banks, rows
//! and columns: a mixed-radix split of the burst index, named the way Ramulator and DRAMsim3 name
//! their mappers (most significant field first: `RoBaCoBgCh` puts consecutive bursts on
//! consecutive channels, then bank groups, then columns of one row).

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

/// An address mapping: the fields from least to most significant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressMapping {
    pub lsb_first: Vec<AddressField>,
}

impl AddressMapping {
    /// Strata's own (and the engine's before mappings were named): consecutive bursts rotate over
    /// channels, then bank groups, then walk a row's columns, then the next bank, then the next
    /// rank, then the next row.
    pub fn default_for(channels: u64, ranks: u64) -> AddressMapping {
        let name = format!("Ro{}BaCoBg{}", if ranks > 1 { "Ra" } else { "" }, if channels > 1 { "Ch" } else { "" });
        AddressMapping::parse(&name, channels, ranks, "").expect("the default mapping is valid")
    }

    /// Parses a name such as `RoBaCoBgCh` (fields most significant first: `Ch`, `Ra`, `Bg`,
    /// `Ba`, `Ro`, `Co`; each once; `Ch` and `Ra` may be left out of a device with one channel
    /// or one rank, `Bg` folds into `Ba` when left out). `key` locates errors.
    pub fn parse(name: &str, channels: u64, ranks: u64, key: &str) -> SpecResult<AddressMapping> {
        let fields = [
            AddressField::Channel,
            AddressField::Rank,
            AddressField::BankGroup,
            AddressField::Bank,
            AddressField::Row,
            AddressField::Column,
        ];
        let mut msb_first = Vec::new();
        let mut rest = name;
        while !rest.is_empty() {
            let Some(f) = fields.iter().copied().find(|f| rest.starts_with(f.token())) else {
                return Err(SpecError::new(
                    key,
                    format!(
                        "`{name}`: `{}` is not a field (Ch, Ra, Bg, Ba, Ro, Co, most significant first)",
                        rest.chars().take(2).collect::<String>()
                    ),
                ));
            };
            if msb_first.contains(&f) {
                return Err(SpecError::new(key, format!("`{name}` names `{}` twice", f.token())));
            }
            msb_first.push(f);
            rest = &rest[2..];
        }
        for f in [AddressField::Bank, AddressField::Row, AddressField::Column] {
            if !msb_first.contains(&f) {
                return Err(SpecError::new(
                    key,
                    format!("`{name}` does not cover the address: `{}` is missing", f.token()),
                ));
            }
        }
        if channels > 1 && !msb_first.contains(&AddressField::Channel) {
            return Err(SpecError::new(
                key,
                format!("`{name}` does not cover the address: {channels} channels need `Ch`"),
            ));
        }
        if ranks > 1 && !msb_first.contains(&AddressField::Rank) {
            return Err(SpecError::new(key, format!("`{name}` does not cover the address: {ranks} ranks need `Ra`")));
        }
        msb_first.reverse();
        Ok(AddressMapping { lsb_first: msb_first })
    }

    /// The name, most significant field first.
    pub fn name(&self) -> String {
        self.lsb_first.iter().rev().map(|f| f.token()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_round_trip_and_bad_ones_are_located() {
        for (name, channels, ranks) in
            [("RoBaCoBg", 1, 1), ("RoBaCoBgCh", 2, 1), ("ChRoBaBgCo", 8, 1), ("RoCoBa", 1, 1), ("RoBaRaCoCh", 2, 2)]
        {
            assert_eq!(AddressMapping::parse(name, channels, ranks, "k").unwrap().name(), name);
        }
        assert_eq!(AddressMapping::default_for(1, 1).name(), "RoBaCoBg");
        assert_eq!(AddressMapping::default_for(2, 2).name(), "RoRaBaCoBgCh");
        for (name, channels, expect) in [
            ("RoBaCo", 2, "2 channels need `Ch`"),
            ("RoBaBg", 1, "`Co` is missing"),
            ("RoBaCoCo", 1, "names `Co` twice"),
            ("RoBaCoBg", 1, "2 ranks need `Ra`"),
            ("RoRkBaCo", 1, "`Rk` is not a field"),
        ] {
            let e = AddressMapping::parse(name, channels, 2, "dram.address_mapping").unwrap_err();
            assert_eq!(e.path, "dram.address_mapping");
            assert!(e.reason.contains(expect), "{name}: {e}");
        }
    }
}
