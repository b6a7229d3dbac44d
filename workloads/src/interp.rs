//! The reference interpreter: runs any cascade on real numbers, following the Einsum semantics
//! literally. It is the ground truth that attention algorithms, tiled executors and cost models
//! are checked against, so it favours obviousness over speed.
//!
//! Each access is an affine function of the iteration coordinates (row-major strides, a `+1`
//! shift for `r+1`, `tile` for a partition's outer rank), so an Einsum runs as one odometer walk
//! over its iteration ranks: output ranks outside, reduced ranks inside, folding each output
//! element with the reduce operator. Einsums that step through an iterative rank run as one
//! loop: for each value of the rank, each of them in cascade order.

use std::collections::BTreeMap;

use crate::einsum::{Cascade, Einsum, Index, MapOp, RankId, ReduceOp};

/// The element types the interpreter runs in.
pub trait Scalar: Copy + PartialOrd + std::fmt::Debug + Send + Sync + 'static {
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn zero() -> Self;
    fn neg_infinity() -> Self;
    fn exp(self) -> Self;
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
}

macro_rules! impl_scalar {
    ($t:ty) => {
        impl Scalar for $t {
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn zero() -> Self {
                0.0
            }
            fn neg_infinity() -> Self {
                <$t>::NEG_INFINITY
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Self {
                self / o
            }
        }
    };
}
impl_scalar!(f64);
impl_scalar!(f32);

/// A dense row-major tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense<T> {
    pub shape: Vec<u64>,
    pub data: Vec<T>,
}

impl<T: Scalar> Dense<T> {
    pub fn filled(shape: &[u64], value: T) -> Self {
        let n: u64 = shape.iter().product();
        Dense { shape: shape.to_vec(), data: vec![value; n as usize] }
    }

    /// Row-major element at a multi-index.
    pub fn at(&self, index: &[u64]) -> T {
        let mut flat = 0u64;
        for (i, (&ix, &n)) in index.iter().zip(&self.shape).enumerate() {
            assert!(ix < n, "index {ix} out of range {n} at position {i}");
            flat = flat * n + ix;
        }
        self.data[flat as usize]
    }
}

/// What the interpreter counted while running: the independent check of [`Cascade::counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunCounts {
    pub points: u64,
    pub outputs: u64,
}

/// The result of a run: every tensor's final contents and what each Einsum did.
#[derive(Debug, Clone)]
pub struct Run<T> {
    pub tensors: BTreeMap<String, Dense<T>>,
    pub counts: Vec<RunCounts>,
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("input tensor `{0}` was not supplied")]
    MissingInput(String),
    #[error("tensor `{name}` has shape {got:?}, the cascade needs {want:?}")]
    Shape { name: String, got: Vec<u64>, want: Vec<u64> },
    #[error("einsum `{einsum}` gathers at index {value} of `{tensor}`, whose position spans 0..{extent}")]
    Index { einsum: String, tensor: String, value: String, extent: u64 },
}

/// An access compiled to `offset = base + Σ coeff[k] · coord[k]` over the Einsum's iteration
/// ranks, plus `stride × value` for a gathered position (value read through input `input`).
struct Affine {
    base: i64,
    coeff: Vec<i64>,
    gather: Option<Gathered>,
}

/// A gathered position: its stride, the input holding the index access and the position's extent.
#[derive(Clone, Copy)]
struct Gathered {
    stride: i64,
    input: usize,
    extent: u64,
}

fn compile(c: &Cascade, e: &Einsum, shape: &[u64], indices: &[Index]) -> Affine {
    let mut stride = vec![0i64; shape.len()];
    let mut s = 1i64;
    for k in (0..shape.len()).rev() {
        stride[k] = s;
        s *= shape[k] as i64;
    }
    let slot = |r: RankId| e.iteration_ranks.iter().position(|&x| x == r).expect("rank is in the iteration space");
    let mut a = Affine { base: 0, coeff: vec![0; e.iteration_ranks.len()], gather: None };
    for (k, ix) in indices.iter().enumerate() {
        match *ix {
            Index::Var(r) => a.coeff[slot(r)] += stride[k],
            Index::Next(r) => {
                a.coeff[slot(r)] += stride[k];
                a.base += stride[k];
            }
            Index::Last(r) => a.base += c.rank(r).size as i64 * stride[k],
            Index::Joined { outer, inner, tile } => {
                a.coeff[slot(outer)] += tile as i64 * stride[k];
                a.coeff[slot(inner)] += stride[k];
            }
            Index::Gather { input, .. } => a.gather = Some(Gathered { stride: stride[k], input, extent: shape[k] }),
            // A select writes its slots itself; the access names the record's first.
            Index::Slot(_) => {}
        }
    }
    a
}

/// The stride of an access's slot position (a `top(..)` output): where its record's slots lie.
fn slot_stride(shape: &[u64], indices: &[Index]) -> i64 {
    let p = indices.iter().position(|ix| matches!(ix, Index::Slot(_))).expect("a select's output has a slot");
    shape[p + 1..].iter().product::<u64>() as i64
}

/// Evaluates a coordinate expression (a mask's key or query) at an iteration point.
fn coordinate(e: &Einsum, ix: &Index, coord: &[u64]) -> u64 {
    let at = |r: RankId| coord[e.iteration_ranks.iter().position(|&x| x == r).expect("rank in space")];
    match *ix {
        Index::Var(r) | Index::Next(r) => at(r),
        Index::Joined { outer, inner, tile } => at(outer) * tile + at(inner),
        Index::Last(_) | Index::Gather { .. } | Index::Slot(_) => unreachable!("masks index plain ranks"),
    }
}

/// Applies a map operator (unary operators ignore `b`).
pub fn apply<T: Scalar>(op: MapOp, a: T, b: T) -> T {
    match op {
        MapOp::Mul => a.mul(b),
        MapOp::Add => a.add(b),
        MapOp::Sub => a.sub(b),
        MapOp::Div => a.div(b),
        MapOp::Max => {
            if b > a {
                b
            } else {
                a
            }
        }
        MapOp::SubExp => {
            if a == T::neg_infinity() {
                T::zero()
            } else {
                a.sub(b).exp()
            }
        }
        MapOp::Exp => a.exp(),
        MapOp::Copy => a,
        MapOp::Relu => {
            if a > T::zero() {
                a
            } else {
                T::zero()
            }
        }
        MapOp::Gelu => {
            let x = a.to_f64();
            T::from_f64(0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044_715 * x * x * x)).tanh()))
        }
        MapOp::Silu => {
            let x = a.to_f64();
            T::from_f64(x / (1.0 + (-x).exp()))
        }
    }
}

/// Runs a cascade on the given external tensors (by name). Unsupplied running tensors start at their init.
pub fn run<T: Scalar>(c: &Cascade, inputs: &BTreeMap<String, Dense<T>>) -> Result<Run<T>, RunError> {
    let mut store: Vec<Dense<T>> = Vec::new();
    for t in c.tensors() {
        if t.role.is_external() {
            let d = inputs.get(&t.name).ok_or_else(|| RunError::MissingInput(t.name.clone()))?;
            if d.shape != t.shape {
                return Err(RunError::Shape { name: t.name.clone(), got: d.shape.clone(), want: t.shape.clone() });
            }
            store.push(d.clone());
        } else {
            store.push(Dense::filled(&t.shape, T::from_f64(t.init.unwrap_or(0.0))));
        }
    }
    let mut counts = vec![RunCounts::default(); c.einsums().len()];
    let mut i = 0;
    while i < c.einsums().len() {
        match c.einsums()[i].iterative {
            None => {
                counts[i] = run_einsum(c, i, None, &mut store)?;
                i += 1;
            }
            Some(r) => {
                let end =
                    (i..c.einsums().len()).find(|&j| c.einsums()[j].iterative != Some(r)).unwrap_or(c.einsums().len());
                for v in 0..c.rank(r).size {
                    for (j, count) in counts.iter_mut().enumerate().take(end).skip(i) {
                        let k = run_einsum(c, j, Some((r, v)), &mut store)?;
                        count.points += k.points;
                        count.outputs += k.outputs;
                    }
                }
                i = end;
            }
        }
    }
    let tensors = c.tensors().iter().zip(store).map(|(t, d)| (t.name.clone(), d)).collect();
    Ok(Run { tensors, counts })
}

/// Runs one Einsum, optionally with its iterative rank pinned to one value.
fn run_einsum<T: Scalar>(
    c: &Cascade,
    ix: usize,
    pinned: Option<(RankId, u64)>,
    store: &mut [Dense<T>],
) -> Result<RunCounts, RunError> {
    let e = &c.einsums()[ix];
    let out_t = e.output.tensor.0;
    let out = compile(c, e, &store[out_t].shape, &e.output.indices);
    let ins: Vec<(usize, Affine)> =
        e.inputs.iter().map(|a| (a.tensor.0, compile(c, e, &store[a.tensor.0].shape, &a.indices))).collect();
    let n = e.iteration_ranks.len();
    let lo: Vec<u64> = e
        .iteration_ranks
        .iter()
        .map(|&r| if pinned.is_some_and(|p| p.0 == r) { pinned.unwrap().1 } else { 0 })
        .collect();
    let hi: Vec<u64> = e
        .iteration_ranks
        .iter()
        .map(|&r| if pinned.is_some_and(|p| p.0 == r) { pinned.unwrap().1 + 1 } else { c.rank(r).size })
        .collect();
    // Ragged partitions: (outer slot, inner slot, tile, parent size) for pairs inside the space.
    let ragged: Vec<(usize, usize, u64, u64)> = c
        .partitions()
        .iter()
        .filter_map(|p| {
            let o = e.iteration_ranks.iter().position(|&r| r == p.outer)?;
            let i = e.iteration_ranks.iter().position(|&r| r == p.inner)?;
            Some((o, i, p.tile, c.rank(p.parent).size))
        })
        .collect();
    let exists = |coord: &[u64]| ragged.iter().all(|&(o, i, tile, size)| coord[o] * tile + coord[i] < size);
    let affine = |a: &Affine, coord: &[u64]| -> i64 {
        a.base + a.coeff.iter().zip(coord).map(|(k, &x)| k * x as i64).sum::<i64>()
    };
    // Where an operand's element lies; a gathered position reads its index first.
    let offset = |store: &[Dense<T>], a: &Affine, coord: &[u64]| -> Result<usize, RunError> {
        let mut at = affine(a, coord);
        if let Some(g) = a.gather {
            let (t, index) = &ins[g.input];
            let value = store[*t].data[affine(index, coord) as usize].to_f64();
            if !(value >= 0.0 && value.fract() == 0.0 && value < g.extent as f64) {
                return Err(RunError::Index {
                    einsum: e.name.clone(),
                    tensor: c.tensors()[*t].name.clone(),
                    value: value.to_string(),
                    extent: g.extent,
                });
            }
            at += g.stride * value as i64;
        }
        Ok(at as usize)
    };
    let n_out = e.n_output_ranks;
    let mut counts = RunCounts::default();
    let mut coord = lo.clone();
    if lo.iter().zip(&hi).any(|(a, b)| a >= b) {
        return Ok(counts);
    }
    if e.reduce == ReduceOp::Top {
        let k = c.rank(e.slot().expect("a select has a slot")).size;
        let stride = slot_stride(&store[out_t].shape, &e.output.indices);
        let (t, input) = &ins[0];
        loop {
            // One record: every candidate's score and coordinate along the reduced rank.
            let mut candidates = Vec::new();
            let mut red = coord.clone();
            loop {
                if exists(&red) {
                    candidates.push((store[*t].data[affine(input, &red) as usize], red[n_out]));
                    counts.points += 1;
                }
                if !advance(&mut red[n_out..], &lo[n_out..], &hi[n_out..]) {
                    break;
                }
            }
            rank_candidates(&mut candidates);
            let base = affine(&out, &coord);
            for (slot, &(_, index)) in candidates.iter().take(k as usize).enumerate() {
                store[out_t].data[(base + slot as i64 * stride) as usize] = T::from_f64(index as f64);
                counts.outputs += 1;
            }
            if !advance(&mut coord[..n_out], &lo[..n_out], &hi[..n_out]) {
                break;
            }
            coord[n_out..n].copy_from_slice(&lo[n_out..n]);
        }
        return Ok(counts);
    }
    let identity = match e.reduce {
        ReduceOp::Sum => T::zero(),
        ReduceOp::Max | ReduceOp::Top => T::neg_infinity(),
    };
    loop {
        // One output element: fold over the reduced sub-space.
        let mut acc = identity;
        let mut any = false;
        let mut red = coord.clone();
        loop {
            if exists(&red) {
                let masked =
                    e.mask.is_some_and(|m| coordinate(e, &m.key, &red) > coordinate(e, &m.query, &red) + m.offset);
                let v = if masked {
                    T::neg_infinity()
                } else {
                    let a = store[ins[0].0].data[offset(store, &ins[0].1, &red)?];
                    let b = match ins.get(1) {
                        Some((t, aff)) if e.map.arity() == 2 => store[*t].data[offset(store, aff, &red)?],
                        _ => a,
                    };
                    apply(e.map, a, b)
                };
                acc = if !any {
                    v
                } else {
                    match e.reduce {
                        ReduceOp::Sum => acc.add(v),
                        ReduceOp::Max | ReduceOp::Top => apply(MapOp::Max, acc, v),
                    }
                };
                any = true;
                counts.points += 1;
            }
            if !advance(&mut red[n_out..], &lo[n_out..], &hi[n_out..]) {
                break;
            }
        }
        if any {
            let o = affine(&out, &coord) as usize;
            store[out_t].data[o] = acc;
            counts.outputs += 1;
        }
        if !advance(&mut coord[..n_out], &lo[..n_out], &hi[..n_out]) {
            break;
        }
        coord[n_out..n].copy_from_slice(&lo[n_out..n]);
    }
    Ok(counts)
}

/// The order a `top(..)` keeps its candidates (score, index) in: largest score first, equal
/// scores by lower index (a total order, so every run selects the same set).
pub fn rank_candidates<T: Scalar>(candidates: &mut [(T, u64)]) {
    candidates.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(&b.1)));
}

/// Odometer step over `[lo, hi)` per slot; false when it wraps around.
fn advance(coord: &mut [u64], lo: &[u64], hi: &[u64]) -> bool {
    for k in (0..coord.len()).rev() {
        coord[k] += 1;
        if coord[k] < hi[k] {
            return true;
        }
        coord[k] = lo[k];
    }
    false
}

/// The tensors a caller must supply to [`run`], with their shapes.
pub fn external_tensors(c: &Cascade) -> impl Iterator<Item = (&str, &[u64])> {
    c.tensors().iter().filter(|t| t.role.is_external()).map(|t| (t.name.as_str(), t.shape.as_slice()))
}
