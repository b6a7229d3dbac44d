//! Parsing TOML (and JSON) text into spec structs with the key path of every error.
//!
//! `serde_path_to_error` tracks the path through the document while serde walks it, so an
//! unknown key or a wrong type is reported as `model.heads` rather than only a line number.

use serde::de::DeserializeOwned;

use crate::{SpecError, SpecResult};

/// Deserializes TOML text into `T`, reporting the key path, line and column of any error.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> SpecResult<T> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, "", &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = path_string(e.path());
        toml_error(text, &path, e.inner())
    })
}

/// Deserializes JSON text into `T` with the key path of any error.
pub fn from_json<T: DeserializeOwned>(text: &str) -> SpecResult<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = path_string(e.path());
        let inner = e.inner();
        SpecError { path, reason: strip_position(&inner.to_string()), location: Some((inner.line(), inner.column())) }
    })
}

/// The top-level table names of a TOML document, used to tell a model file from a cascade file.
pub fn top_level_keys(text: &str) -> SpecResult<Vec<String>> {
    let table: toml::Table = from_toml(text)?;
    Ok(table.keys().cloned().collect())
}

fn toml_error(text: &str, path: &str, e: &toml::de::Error) -> SpecError {
    let location = e.span().map(|span| line_col(text, span.start));
    SpecError { path: path.to_string(), reason: e.message().trim().to_string(), location }
}

fn path_string(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." { String::new() } else { s }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        model: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        heads: i64,
    }

    #[test]
    fn unknown_key_names_its_path_and_line() {
        let err = from_toml::<Outer>("[model]\nheads = 4\nhedas = 3\n").unwrap_err();
        assert_eq!(err.path, "model.hedas");
        assert!(err.reason.contains("unknown field `hedas`"), "{err}");
        assert_eq!(err.location.map(|l| l.0), Some(3));
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err = from_toml::<Outer>("[model]\nheads = \"four\"\n").unwrap_err();
        assert_eq!(err.path, "model.heads");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = from_toml::<Outer>("[model\nheads = 4\n").unwrap_err();
        assert_eq!(err.location.map(|l| l.0), Some(1));
    }
}
