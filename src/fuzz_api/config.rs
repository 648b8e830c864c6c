//! `config`: a whole TOML file through [`Config::parse`]: syntax, types, validation, and the
//! `FILE:LINE:COL: key: message` errors operators read.

use std::path::Path;

use crate::config::{Config, ConfigError};

const LABEL: &str = "fuzz.toml";

pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths resolve here; absent, so only absolute ones can name a file.
    let base_dir = Path::new("/nonexistent-outpost-fuzz");
    let error = match Config::parse(text, LABEL, base_dir) {
        Ok(_) => return,
        Err(error) => error,
    };
    let ConfigError::Invalid {
        file, line, col, ..
    } = &error
    else {
        panic!("parsing text cannot fail to read: {error}");
    };
    assert_eq!(file, LABEL);
    // The position is inside the text (or just past its end).
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        *line >= 1 && *line <= lines.len(),
        "line {line} of {}",
        lines.len()
    );
    let width = lines[*line - 1].chars().count();
    assert!(
        *col >= 1 && *col <= width + 1,
        "col {col} of {width} on line {line}"
    );
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("{LABEL}:{line}:{col}: ")),
        "{shown}"
    );
}
