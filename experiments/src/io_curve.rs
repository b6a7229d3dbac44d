//! The `io-curve` kind: off-chip traffic of 1-pass attention as on-chip memory grows, against
//! FlashAttention's count and the I/O bounds.

use std::fmt::Write as _;
use std::path::Path;

use strata_sim::evaluate;
use strata_workloads::Phase;
use strata_workloads::attention::AttentionShape;

use crate::error::{CliError, CliResult};
use crate::experiment::{Cell, Experiment, Point, Row};
use crate::kind::{Axis, Kind, Values, required};

pub struct IoCurve;

const AXES: &[Axis] = &[
    required("seq", Values::PositiveInt),
    required("head_dim", Values::PositiveInt),
    required("memory_words", Values::PositiveInt),
];

impl Kind for IoCurve {
    fn name(&self) -> &'static str {
        "io-curve"
    }
    fn about(&self) -> &'static str {
        "off-chip traffic of 1-pass attention as on-chip memory grows, against the I/O bounds"
    }
    fn axes(&self) -> &'static [Axis] {
        AXES
    }
    fn columns(&self, _x: &Experiment) -> Vec<String> {
        [
            "point",
            "seq_len",
            "head_dim",
            "memory_words",
            "queries_on_chip",
            "strata_words",
            "flash_alg1_words",
            "bound_n2d2_over_m",
            "floor_4nd",
            "ratio_to_bound",
        ]
        .map(str::to_string)
        .to_vec()
    }
    fn point(&self, _x: &Experiment, p: &Point) -> CliResult<Vec<Row>> {
        io_point(p)
    }
    fn summary(&self, _x: &Experiment, rows: &[Row]) -> String {
        let mut s = String::new();
        s += "| N | d | on-chip words M | queries on chip | Strata words | Algorithm 1 words | N²d²/M | 4Nd floor | Strata / bound |\n|---|---|---|---|---|---|---|---|---|\n";
        for r in rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {:.3e} | {} | {:.2} |",
                r.s("seq_len"),
                r.s("head_dim"),
                r.s("memory_words"),
                r.s("queries_on_chip"),
                r.s("strata_words"),
                r.s("flash_alg1_words"),
                r.f("bound_n2d2_over_m"),
                r.s("floor_4nd"),
                r.f("ratio_to_bound")
            );
        }
        let ratios: Vec<f64> = rows.iter().map(|r| r.f("ratio_to_bound")).filter(|x| x.is_finite()).collect();
        let below = rows.iter().filter(|r| r.f("strata_words") < r.f("floor_4nd")).count();
        let _ = writeln!(
            s,
            "\nStrata's traffic / (N²d²/M): min {:.2}, max {:.2}; points below the 4Nd floor: {below}.",
            ratios.iter().cloned().fold(f64::MAX, f64::min),
            ratios.iter().cloned().fold(f64::MIN, f64::max)
        );
        s
    }
    fn plots(&self, x: &Experiment, rows: &[Row], dir: &Path) -> Result<Vec<String>, String> {
        crate::plots::io_curve(&x.spec, rows, dir)
    }
}

fn io_point(p: &Point) -> CliResult<Vec<Row>> {
    let (n, d, words) = (p.int("seq", 0), p.int("head_dim", 0), p.int("memory_words", 0));
    let block = 64.min(n);
    let shape = AttentionShape {
        passes: 1,
        phase: Phase::Prefill { seq: n },
        batch: 1,
        heads: 1,
        kv_heads: 1,
        head_dim: d,
        value_dim: d,
        block,
        causal: false,
        elem_bytes: 2,
    };
    let c = shape.cascade_spec("attention", "").build().map_err(|e| CliError::input(format!("attention: {e}")))?;
    let arch = strata_arch::presets::io_machine(words).map_err(|e| CliError::input(format!("io machine: {e}")))?;
    // The mapper's choice: the largest query block (a divisor of N) whose tiles fit.
    let mut found = None;
    for queries in (1..=n.min(words)).rev().filter(|q| n.is_multiple_of(*q)) {
        let m = strata_mappings::CascadeMapping::from_toml(
            &strata_mappings::presets::one_pass_query_block(queries),
            &c,
            &arch,
        )
        .map_err(|e| CliError::input(format!("io mapping: {e}")))?;
        let ev = evaluate(&arch, &c, &m);
        if ev.violations.is_empty() {
            found = Some((queries, ev.offchip_bytes / 2));
            break;
        }
    }
    let (queries, words_moved) = found.ok_or_else(|| {
        CliError::input(format!("flash-io: no 1-pass mapping of N = {n}, d = {d} fits {words} words"))
    })?;
    // FlashAttention Algorithm 1's literal access count (io-bounds.md §1) and the bounds.
    let bc = words.div_ceil(4 * d);
    let tc = n.div_ceil(bc);
    let alg1 = 2 * n * d + tc * (3 * n * d + 4 * n);
    let bound = (n * n * d * d) as f64 / words as f64;
    Ok(vec![Row {
        cells: vec![
            ("point".into(), Cell::Text(p.key.clone())),
            ("seq_len".into(), Cell::Int(n)),
            ("head_dim".into(), Cell::Int(d)),
            ("memory_words".into(), Cell::Int(words)),
            ("queries_on_chip".into(), Cell::Int(queries)),
            ("strata_words".into(), Cell::Int(words_moved)),
            ("flash_alg1_words".into(), Cell::Int(alg1)),
            ("bound_n2d2_over_m".into(), Cell::Float(bound)),
            ("floor_4nd".into(), Cell::Int(4 * n * d)),
            ("ratio_to_bound".into(), Cell::Float(words_moved as f64 / bound)),
        ],
    }])
}
