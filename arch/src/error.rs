//! Spec errors carry the key path (`arch.levels[1].capacity`) and the reason.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub path: String,
    pub reason: String,
    /// 1-based line and column, where the TOML parser knows them.
    pub location: Option<(usize, usize)>,
}

impl SpecError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError { path: path.into(), reason: reason.into(), location: None }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((l, c)) = self.location {
            write!(f, "line {l}, column {c}: ")?;
        }
        if self.path.is_empty() { write!(f, "{}", self.reason) } else { write!(f, "{}: {}", self.path, self.reason) }
    }
}

impl std::error::Error for SpecError {}

pub type SpecResult<T> = Result<T, SpecError>;

/// Parses TOML into `T`, naming the key path, line and column of any error.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> SpecResult<T> {
    let locate = |e: &toml::de::Error| {
        e.span().map(|s| {
            let before = &text[..s.start.min(text.len())];
            (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
        })
    };
    let de = toml::Deserializer::parse(text).map_err(|e| SpecError {
        path: String::new(),
        reason: e.message().trim().into(),
        location: locate(&e),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        SpecError {
            path: if path == "." { String::new() } else { path },
            reason: e.inner().message().trim().into(),
            location: locate(e.inner()),
        }
    })
}
