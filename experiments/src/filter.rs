//! The `filter` of a sweep: a boolean expression over a point's axes that skips points.
//!
//! `seq * batch <= 65536 && system != "FLAT"`: numbers, strings in single or double quotes,
//! `true`/`false`, axis names (spec paths such as `arch.levels.GlobalBuffer.capacity` included;
//! any other name in backticks), `+ - * /`, comparisons, `!`, `&&`, `||` and parentheses.
//! Strings compare with `==`, `!=` and in order; a size string such as `"4 MiB"` compares with
//! a number as its bytes. (evalexpr, the usual crate for this, is AGPL-licensed since version
//! 12, which this MIT/Apache project cannot take.)

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    Axis(String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Bin(Box<Expr>, Op, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Num(f64),
    Str(String),
    Bool(bool),
}

/// A parsed filter whose axis names are known to exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter(Expr);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Name(String),
    Sym(&'static str),
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, String> {
    let b: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == '.'
                    || ((b[i] == '-' || b[i] == '+') && matches!(b[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = b[start..i].iter().collect();
            let v = text.parse::<f64>().map_err(|_| format!("`{text}` at column {} is not a number", start + 1))?;
            out.push((start, Tok::Num(v)));
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < b.len() && b[i] != c {
                i += 1;
            }
            if i == b.len() {
                return Err(format!("unclosed {c} at column {}", start + 1));
            }
            let text: String = b[start + 1..i].iter().collect();
            i += 1;
            out.push((start, if c == '`' { Tok::Name(text) } else { Tok::Str(text) }));
        } else if c.is_alphabetic() || c == '_' {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
            out.push((start, Tok::Name(b[start..i].iter().collect())));
        } else {
            let two: String = b[i..(i + 2).min(b.len())].iter().collect();
            let sym = ["&&", "||", "==", "!=", "<=", ">="]
                .into_iter()
                .find(|s| *s == two)
                .or_else(|| ["<", ">", "!", "+", "-", "*", "/", "(", ")"].into_iter().find(|s| s.starts_with(c)))
                .ok_or_else(|| format!("unexpected `{c}` at column {}", start + 1))?;
            i += sym.len();
            out.push((start, Tok::Sym(sym)));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    at: usize,
    axes: &'a [String],
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.1)
    }
    fn eat(&mut self, sym: &'static str) -> bool {
        let hit = self.peek() == Some(&Tok::Sym(sym));
        if hit {
            self.at += 1;
        }
        hit
    }
    fn where_(&self) -> String {
        self.toks.get(self.at).map_or_else(|| "at the end".into(), |t| format!("at column {}", t.0 + 1))
    }
    fn binary(
        &mut self,
        ops: &[(&'static str, Op)],
        next: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut lhs = next(self)?;
        'outer: loop {
            for (sym, op) in ops {
                if self.peek() == Some(&Tok::Sym(sym)) {
                    self.at += 1;
                    lhs = Expr::Bin(Box::new(lhs), *op, Box::new(next(self)?));
                    continue 'outer;
                }
            }
            return Ok(lhs);
        }
    }
    fn or(&mut self) -> Result<Expr, String> {
        self.binary(&[("||", Op::Or)], Self::and)
    }
    fn and(&mut self) -> Result<Expr, String> {
        self.binary(&[("&&", Op::And)], Self::cmp)
    }
    fn cmp(&mut self) -> Result<Expr, String> {
        let ops = [("==", Op::Eq), ("!=", Op::Ne), ("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)];
        self.binary(&ops, Self::sum)
    }
    fn sum(&mut self) -> Result<Expr, String> {
        self.binary(&[("+", Op::Add), ("-", Op::Sub)], Self::product)
    }
    fn product(&mut self) -> Result<Expr, String> {
        self.binary(&[("*", Op::Mul), ("/", Op::Div)], Self::unary)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        let here = self.where_();
        let tok = self.peek().cloned().ok_or_else(|| "the expression ends too early".to_string())?;
        self.at += 1;
        match tok {
            Tok::Num(v) => Ok(Expr::Num(v)),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Name(n) if n == "true" || n == "false" => Ok(Expr::Bool(n == "true")),
            Tok::Name(n) if self.axes.contains(&n) => Ok(Expr::Axis(n)),
            Tok::Name(n) => Err(format!("`{n}` {here} is not an axis (axes: {})", self.axes.join(", "))),
            Tok::Sym("(") => {
                let e = self.or()?;
                if !self.eat(")") {
                    return Err(format!("expected `)` {}", self.where_()));
                }
                Ok(e)
            }
            Tok::Sym(s) => Err(format!("unexpected `{s}` {here}")),
        }
    }
}

fn value(v: &toml::Value) -> Val {
    match v {
        toml::Value::Integer(i) => Val::Num(*i as f64),
        toml::Value::Float(f) => Val::Num(*f),
        toml::Value::Boolean(b) => Val::Bool(*b),
        toml::Value::String(s) => Val::Str(s.clone()),
        other => Val::Str(other.to_string()),
    }
}

/// A size string as bytes, so that `"4 MiB" > 1048576` means what it says.
fn as_num(v: &Val) -> Option<f64> {
    match v {
        Val::Num(n) => Some(*n),
        Val::Str(s) => strata_arch::units::parse_bytes(s).ok().map(|b| b.0 as f64),
        Val::Bool(_) => None,
    }
}

impl Filter {
    /// Parses `text`; every name must be one of `axes`.
    pub fn parse(text: &str, axes: &[String]) -> Result<Filter, String> {
        let mut p = Parser { toks: lex(text)?, at: 0, axes };
        let e = p.or()?;
        if p.at != p.toks.len() {
            return Err(format!("unexpected text {}", p.where_()));
        }
        Ok(Filter(e))
    }

    /// Whether a point with these axis values is kept.
    pub fn keeps(&self, values: &BTreeMap<String, toml::Value>) -> Result<bool, String> {
        match eval(&self.0, values)? {
            Val::Bool(b) => Ok(b),
            other => Err(format!("the filter gives {other:?}, not true or false")),
        }
    }
}

fn eval(e: &Expr, vals: &BTreeMap<String, toml::Value>) -> Result<Val, String> {
    Ok(match e {
        Expr::Num(v) => Val::Num(*v),
        Expr::Str(s) => Val::Str(s.clone()),
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Axis(n) => value(vals.get(n).ok_or_else(|| format!("axis `{n}` has no value"))?),
        Expr::Not(x) => match eval(x, vals)? {
            Val::Bool(b) => Val::Bool(!b),
            v => return Err(format!("`!` needs true or false, not {v:?}")),
        },
        Expr::Neg(x) => Val::Num(-as_num(&eval(x, vals)?).ok_or("`-` needs a number")?),
        Expr::Bin(a, op, b) => {
            let (x, y) = (eval(a, vals)?, eval(b, vals)?);
            match op {
                Op::And | Op::Or => match (x, y) {
                    (Val::Bool(p), Val::Bool(q)) => Val::Bool(if *op == Op::And { p && q } else { p || q }),
                    (x, y) => return Err(format!("`&&` and `||` need true or false, not {x:?} and {y:?}")),
                },
                Op::Eq | Op::Ne => {
                    let same = match (&x, &y) {
                        (Val::Str(p), Val::Str(q)) if p == q => true,
                        (Val::Bool(p), Val::Bool(q)) => p == q,
                        _ => matches!((as_num(&x), as_num(&y)), (Some(p), Some(q)) if p == q),
                    };
                    Val::Bool(same == (*op == Op::Eq))
                }
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let ord = match (&x, &y) {
                        (Val::Str(p), Val::Str(q)) if as_num(&x).is_none() || as_num(&y).is_none() => p.partial_cmp(q),
                        _ => match (as_num(&x), as_num(&y)) {
                            (Some(p), Some(q)) => p.partial_cmp(&q),
                            _ => return Err(format!("cannot order {x:?} and {y:?}")),
                        },
                    };
                    let ord = ord.ok_or_else(|| format!("cannot order {x:?} and {y:?}"))?;
                    Val::Bool(match op {
                        Op::Lt => ord.is_lt(),
                        Op::Le => ord.is_le(),
                        Op::Gt => ord.is_gt(),
                        _ => ord.is_ge(),
                    })
                }
                Op::Add | Op::Sub | Op::Mul | Op::Div => {
                    let (p, q) = match (as_num(&x), as_num(&y)) {
                        (Some(p), Some(q)) => (p, q),
                        _ => return Err(format!("arithmetic needs numbers, not {x:?} and {y:?}")),
                    };
                    Val::Num(match op {
                        Op::Add => p + q,
                        Op::Sub => p - q,
                        Op::Mul => p * q,
                        _ => p / q,
                    })
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeps(f: &str, vals: &[(&str, toml::Value)]) -> Result<bool, String> {
        let axes: Vec<String> = vals.iter().map(|v| v.0.to_string()).collect();
        let map = vals.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Filter::parse(f, &axes)?.keeps(&map)
    }

    #[test]
    fn filters_evaluate_as_written() {
        let v = [
            ("seq", toml::Value::Integer(4096)),
            ("batch", toml::Value::Integer(64)),
            ("system", toml::Value::String("FLAT".into())),
            ("arch.levels.GlobalBuffer.capacity", toml::Value::String("4 MiB".into())),
        ];
        assert_eq!(keeps("seq * batch <= 262144", &v), Ok(true));
        assert_eq!(keeps("seq * batch < 262144", &v), Ok(false));
        assert_eq!(keeps("system != 'FLAT' || seq < 8192", &v), Ok(true));
        assert_eq!(keeps("!(system == \"FLAT\") && true", &v), Ok(false));
        assert_eq!(keeps("arch.levels.GlobalBuffer.capacity > 2 * 1048576", &v), Ok(true));
        assert_eq!(keeps("arch.levels.GlobalBuffer.capacity == \"4MiB\"", &v), Ok(true));
        assert_eq!(keeps("-seq + 1e4 > 0", &v), Ok(true));
        assert!(keeps("seqs > 1", &v).unwrap_err().contains("`seqs` at column 1 is not an axis"));
        assert!(keeps("seq >", &v).unwrap_err().contains("ends too early"));
        assert!(keeps("seq > 1 )", &v).unwrap_err().contains("column 9"));
        assert!(keeps("seq + 1", &v).unwrap_err().contains("not true or false"));
        assert!(keeps("system < 3", &v).unwrap_err().contains("cannot order"));
        assert!(keeps("seq == 'a", &v).unwrap_err().contains("unclosed"));
    }
}
