//! Plain-text tables and number formatting for reports a person reads in a terminal.

/// Left-aligned text columns, right-aligned numeric columns, two spaces apart.
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `columns`: (title, right-aligned?).
    pub fn new(columns: &[(&str, bool)]) -> Self {
        Table {
            header: columns.iter().map(|c| c.0.to_string()).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                std::iter::once(&self.header[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| -> String {
            let parts: Vec<String> =
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if self.right[i] {
                            format!("{c:>w$}", w = widths[i])
                        } else {
                            format!("{c:<w$}", w = widths[i])
                        }
                    })
                    .collect();
            parts.join("  ").trim_end().to_string() + "\n"
        };
        let mut out = line(&self.header);
        for r in &self.rows {
            out += &line(r);
        }
        out
    }
}

/// A count with an SI suffix, three significant digits: `52.4 G`.
pub fn si(x: u64) -> String {
    let v = x as f64;
    for (scale, suffix) in [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v >= scale {
            return format!("{} {suffix}", sig3(v / scale));
        }
    }
    x.to_string()
}

fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Bytes exactly, then in binary units: `13476298752 B (12.55 GiB)`.
pub fn bytes(x: u64) -> String {
    format!("{x} B ({})", binary(x))
}

/// Bytes in binary units only: `12.55 GiB`.
pub fn binary(x: u64) -> String {
    let v = x as f64;
    for (scale, suffix) in [(1u64 << 50, "PiB"), (1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    {
        if x >= scale {
            return format!("{:.2} {suffix}", v / scale as f64);
        }
    }
    format!("{x} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(si(999), "999");
        assert_eq!(si(52_400_000_000), "52.4 G");
        assert_eq!(si(6_738_000_000), "6.74 G");
        assert_eq!(binary(524_288), "512.00 KiB");
        assert_eq!(bytes(100), "100 B (100 B)");
    }

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&[("name", false), ("n", true)]);
        t.row(vec!["a".into(), "10".into()]);
        t.row(vec!["bbb".into(), "2".into()]);
        assert_eq!(t.render(), "name   n\na     10\nbbb    2\n");
    }
}
