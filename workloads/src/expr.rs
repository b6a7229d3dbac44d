//! Parser for the text form of one extended Einsum, as written in cascade TOML files.
//!
//! The grammar follows the paper notation closely enough to read side by side with FuseMax:
//!
//! ```text
//! einsum  := access '=' rhs
//! rhs     := access [op access]            op: * + - /
//!          | 'max' '(' access ',' access ')'
//!          | 'exp' '(' access ['-' access] ')'       exp(a - b) is FuseMax's sub-then-exp
//!          | ('relu' | 'gelu' | 'silu') '(' access ')'
//!          | 'top' '(' access ')'                    top-k selection (see below)
//! access  := NAME '[' index {',' index} ']'
//! index   := rank | rank '+1' | 'last(' rank ')' | '(' outer ',' inner ')'
//!          | rank '=' access                         a gathered position
//! ```
//! `(m1,m0)` addresses the parent rank of a partition (`m1 × M0 + m0`); `m1+1` and `last(m1)`
//! address the next and the final value of an iterative rank. The reduction operator is not
//! part of the text: ranks missing from the output are reduced with the Einsum's `reduce` key.
//!
//! Selection and gather (Double Sparsity's label scores → top-k → gathered rows):
//! `I[b,h,j] = top(S[b,h,s])` keeps, for every `(b,h)`, the indices along `s` of the `k`
//! largest scores, `k` being the size of the output's one rank the input lacks (`j`); and
//! `KS[b,j,h,e] = K[b, s=I[b,h,j], h, e]` reads `K` at the position along `s` that `I` holds.

use crate::einsum::MapOp;

/// One index position of a tensor access, before rank names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexAst {
    Var(String),
    Next(String),
    Last(String),
    Joined(String, String),
    /// `rank=access`: the position spans `rank` and is addressed by the access's value.
    Gather(String, Box<AccessAst>),
}

/// A tensor access, before names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessAst {
    pub tensor: String,
    pub indices: Vec<IndexAst>,
}

/// A parsed Einsum: output, map operator and its operands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EinsumAst {
    pub output: AccessAst,
    pub map: MapOp,
    pub inputs: Vec<AccessAst>,
    /// Written as `top(..)`: a top-k selection.
    pub select: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Sym(char),
}

struct Lexer {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    len: usize,
}

/// Parses one Einsum; the error names the column (1-based) where parsing failed.
pub fn parse_einsum(text: &str) -> Result<EinsumAst, String> {
    let mut lx = Lexer::new(text)?;
    let output = lx.access()?;
    lx.expect('=')?;
    let select =
        lx.peek() == Some(&Tok::Ident("top".into())) && matches!(lx.toks.get(lx.pos + 1), Some((Tok::Sym('('), _)));
    let (map, inputs) = lx.rhs()?;
    if let Some((tok, col)) = lx.peek_full() {
        return Err(format!("unexpected {} at column {col}", describe(&tok)));
    }
    Ok(EinsumAst { output, map, inputs, select })
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) | Tok::Num(s) => format!("'{s}'"),
        Tok::Sym(c) => format!("'{c}'"),
    }
}

impl Lexer {
    fn new(text: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_alphabetic() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                toks.push((Tok::Ident(chars[start..i].iter().collect()), start + 1));
            } else if c.is_ascii_digit() {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                toks.push((Tok::Num(chars[start..i].iter().collect()), start + 1));
            } else if "[](),=*+-/×·÷".contains(c) {
                let sym = match c {
                    '×' | '·' => '*',
                    '÷' => '/',
                    other => other,
                };
                toks.push((Tok::Sym(sym), i + 1));
                i += 1;
            } else {
                return Err(format!("unexpected character '{c}' at column {}", i + 1));
            }
        }
        Ok(Lexer { toks, pos: 0, len: chars.len() })
    }

    fn peek_full(&self) -> Option<(Tok, usize)> {
        self.toks.get(self.pos).cloned()
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len + 1, |t| t.1)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }

    fn expect(&mut self, sym: char) -> Result<(), String> {
        let col = self.col();
        match self.next() {
            Some(Tok::Sym(c)) if c == sym => Ok(()),
            Some(t) => Err(format!("expected '{sym}' at column {col}, found {}", describe(&t))),
            None => Err(format!("expected '{sym}' at column {col}, found the end")),
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, String> {
        let col = self.col();
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            Some(t) => Err(format!("expected {what} at column {col}, found {}", describe(&t))),
            None => Err(format!("expected {what} at column {col}, found the end")),
        }
    }

    fn access(&mut self) -> Result<AccessAst, String> {
        let tensor = self.ident("a tensor name")?;
        self.expect('[')?;
        let mut indices = vec![self.index()?];
        while self.peek() == Some(&Tok::Sym(',')) {
            self.next();
            indices.push(self.index()?);
        }
        self.expect(']')?;
        Ok(AccessAst { tensor, indices })
    }

    fn index(&mut self) -> Result<IndexAst, String> {
        if self.peek() == Some(&Tok::Sym('(')) {
            self.next();
            let outer = self.ident("an outer rank")?;
            self.expect(',')?;
            let inner = self.ident("an inner rank")?;
            self.expect(')')?;
            return Ok(IndexAst::Joined(outer, inner));
        }
        let name = self.ident("a rank")?;
        if name == "last" && self.peek() == Some(&Tok::Sym('(')) {
            self.next();
            let rank = self.ident("a rank")?;
            self.expect(')')?;
            return Ok(IndexAst::Last(rank));
        }
        if self.peek() == Some(&Tok::Sym('=')) {
            self.next();
            return Ok(IndexAst::Gather(name, Box::new(self.access()?)));
        }
        if self.peek() == Some(&Tok::Sym('+')) {
            self.next();
            let col = self.col();
            return match self.next() {
                Some(Tok::Num(n)) if n == "1" => Ok(IndexAst::Next(name)),
                _ => Err(format!("only '+1' may follow a rank (column {col})")),
            };
        }
        Ok(IndexAst::Var(name))
    }

    fn rhs(&mut self) -> Result<(MapOp, Vec<AccessAst>), String> {
        let is_call = matches!(self.toks.get(self.pos + 1), Some((Tok::Sym('('), _)));
        if let (Some(Tok::Ident(name)), true) = (self.peek().cloned(), is_call) {
            self.next();
            self.expect('(')?;
            let a = self.access()?;
            let result = match name.as_str() {
                "max" => {
                    self.expect(',')?;
                    (MapOp::Max, vec![a, self.access()?])
                }
                "exp" if self.peek() == Some(&Tok::Sym('-')) => {
                    self.next();
                    (MapOp::SubExp, vec![a, self.access()?])
                }
                "exp" => (MapOp::Exp, vec![a]),
                "relu" => (MapOp::Relu, vec![a]),
                "gelu" => (MapOp::Gelu, vec![a]),
                "silu" => (MapOp::Silu, vec![a]),
                "top" => (MapOp::Copy, vec![a]),
                other => {
                    return Err(format!("unknown function '{other}' (known: max, exp, relu, gelu, silu, top)"));
                }
            };
            self.expect(')')?;
            return Ok(result);
        }
        let a = self.access()?;
        let op = match self.peek() {
            Some(Tok::Sym('*')) => MapOp::Mul,
            Some(Tok::Sym('+')) => MapOp::Add,
            Some(Tok::Sym('-')) => MapOp::Sub,
            Some(Tok::Sym('/')) => MapOp::Div,
            _ => return Ok((MapOp::Copy, vec![a])),
        };
        self.next();
        Ok((op, vec![a, self.access()?]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(s: &str) -> IndexAst {
        IndexAst::Var(s.into())
    }

    #[test]
    fn parses_fusemax_einsums() {
        let e = parse_einsum("BQK[m1,m0,p] = Q[e,p] × K[e,(m1,m0)]").unwrap();
        assert_eq!(e.map, MapOp::Mul);
        assert_eq!(e.inputs[1].indices[1], IndexAst::Joined("m1".into(), "m0".into()));
        let e = parse_einsum("RM[m1+1,p] = max(RM[m1,p], LM[m1,p])").unwrap();
        assert_eq!(e.output.indices, vec![IndexAst::Next("m1".into()), var("p")]);
        assert_eq!(e.map, MapOp::Max);
        let e = parse_einsum("SLN[m1,m0,p] = exp(BQK[m1,m0,p] - RM[m1+1,p])").unwrap();
        assert_eq!(e.map, MapOp::SubExp);
        let e = parse_einsum("AV[f,p] = RNV[f,last(m1),p] / RD[last(m1),p]").unwrap();
        assert_eq!(e.map, MapOp::Div);
        assert_eq!(e.inputs[1].indices[0], IndexAst::Last("m1".into()));
        let e = parse_einsum("LM[m1,p] = BQK[m1,m0,p]").unwrap();
        assert_eq!(e.map, MapOp::Copy);
        assert!(!e.select);
    }

    #[test]
    fn parses_select_and_gather() {
        let e = parse_einsum("I[b,h,j] = top(S[b,h,s])").unwrap();
        assert!(e.select);
        assert_eq!(e.map, MapOp::Copy);
        let e = parse_einsum("KS[b,j,h,e] = K[b, s=I[b,h,j], h, e]").unwrap();
        let index = AccessAst { tensor: "I".into(), indices: vec![var("b"), var("h"), var("j")] };
        assert_eq!(e.inputs[0].indices[1], IndexAst::Gather("s".into(), Box::new(index)));
        assert!(!e.select);
    }

    #[test]
    fn errors_name_the_column() {
        let err = parse_einsum("Z[m) = A[m]").unwrap_err();
        assert!(err.contains("column 4"), "{err}");
        let err = parse_einsum("Z[m] = A[m+2]").unwrap_err();
        assert!(err.contains("+1"), "{err}");
        let err = parse_einsum("Z[m] = tanh(A[m])").unwrap_err();
        assert!(err.contains("unknown function"), "{err}");
        let err = parse_einsum("Z[m] = A[m] B[m]").unwrap_err();
        assert!(err.contains("unexpected 'B'"), "{err}");
    }
}
