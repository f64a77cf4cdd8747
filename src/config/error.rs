//! Config errors: every problem found in one pass, each as `path:line:col: key `k`: message`.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in the config file. `Display` gives `path:line:col: key `k`: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file (as given).
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path (`login.min_code_validity`), if the problem is about a key.
    pub key: Option<String>,
    /// What is wrong, and how to fix it when that is not obvious. Never a secret value.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at byte offset `span.start` of `source`, the text of `path`.
    pub fn at(
        source: &str,
        path: &Path,
        span: Range<usize>,
        key: Option<String>,
        message: String,
    ) -> Self {
        let (line, column) = line_col(source, span.start);
        Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }
}

impl Diagnostic {
    /// Formats as `path:line:col: key `k`: message` with `path` in place of
    /// [`Diagnostic::path`]. Plain `Display` is usually what you want.
    pub fn display_with<'a>(&'a self, path: &'a Path) -> impl fmt::Display + 'a {
        DisplayWith { d: self, path }
    }
}

struct DisplayWith<'a> {
    d: &'a Diagnostic,
    path: &'a Path,
}

impl fmt::Display for DisplayWith<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = Diagnostic {
            path: self.path.to_path_buf(),
            ..self.d.clone()
        };
        d.fmt(f)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.path.display(), self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// 1-based (line, column) of a byte offset; columns count characters, not bytes.
pub(super) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    // Step back to a char boundary so slicing cannot panic on a bad span.
    let mut offset = offset;
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Why a config could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file was read and has one or more problems (all of them are listed).
    Invalid {
        /// The config file (as given, for messages).
        path: PathBuf,
        /// Every problem, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// The problems found (empty for a read error).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

impl fmt::Display for ConfigError {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Invalid { diagnostics, .. } => {
                for (i, d) in diagnostics.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{d}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { source, .. } => Some(source),
            ConfigError::Invalid { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let s = "a = 1\nbé = 2\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 6), (2, 1));
        // After the two-byte 'é', column counts characters.
        assert_eq!(line_col(s, 9), (2, 3));
        assert_eq!(line_col(s, 999), (3, 1));
    }

    #[test]
    fn display_format() {
        let e = ConfigError::Invalid {
            path: PathBuf::from("c.toml"),
            diagnostics: vec![
                Diagnostic {
                    path: PathBuf::from("c.toml"),
                    line: 3,
                    column: 1,
                    key: Some("login.foo".into()),
                    message: "unknown key".into(),
                },
                Diagnostic {
                    path: PathBuf::from("c.toml"),
                    line: 9,
                    column: 5,
                    key: None,
                    message: "invalid TOML".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "c.toml:3:1: key `login.foo`: unknown key\nc.toml:9:5: invalid TOML"
        );
    }
}
