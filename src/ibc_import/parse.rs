//! Readers of IBC's `config.ini` (Java properties) and of Docker env files.

use super::*;

/// One `key=value` of a properties file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The key.
    pub key: String,
    /// The value, unescaped, not trimmed at the end (as Java reads it).
    pub value: String,
    /// 1-based line where the logical line starts.
    pub line: usize,
}

/// Parses a Java properties file (the format of IBC's `config.ini`): `#`/`!` comments,
/// `key=value`, `key:value` or `key value`, backslash line continuations, `\uXXXX` escapes.
pub fn parse_properties(text: &str, file: &str) -> Result<Vec<Property>, ImportError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i + 1;
        let first = lines[i].trim_start_matches([' ', '\t', '\x0c']);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        // Join continuation lines: an odd number of trailing backslashes continues.
        let mut logical = String::from(first);
        while ends_with_odd_backslashes(&logical) && i <= lines.len() {
            logical.pop();
            if i == lines.len() {
                break;
            }
            logical.push_str(lines[i].trim_start_matches([' ', '\t', '\x0c']));
            i += 1;
        }
        let (key_raw, value_raw) = split_key_value(&logical);
        let syntax = |message: String| ImportError::Syntax {
            file: file.to_string(),
            line: start,
            message,
        };
        let key = unescape(key_raw).map_err(syntax)?;
        let value = unescape(value_raw).map_err(syntax)?;
        out.push(Property {
            key,
            value,
            line: start,
        });
    }
    Ok(out)
}

pub(super) fn ends_with_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or whitespace (Java rules).
pub(super) fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut k = 0;
    let mut escaped = false;
    while k < bytes.len() {
        let b = bytes[k];
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'=' || b == b':' || b == b' ' || b == b'\t' || b == b'\x0c' {
            break;
        }
        k += 1;
    }
    let key = &line[..k];
    let mut rest = line[k..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t', '\x0c']);
    }
    (key, rest)
}

pub(super) fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| "malformed \\uXXXX escape".to_string())?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// One `NAME=value` of an env file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable name.
    pub name: String,
    /// The value (quotes removed).
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// Parses a Docker/Compose env file: `NAME=value` lines, `#` comments, optional `export `,
/// optional matching quotes around the value, ` #` comments after unquoted values.
pub fn parse_env_file(text: &str, file: &str) -> Result<Vec<EnvVar>, ImportError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let syntax = |message: &str| ImportError::Syntax {
            file: file.to_string(),
            line: n + 1,
            message: message.to_string(),
        };
        let Some((name, value)) = line.split_once('=') else {
            return Err(syntax("expected NAME=VALUE"));
        };
        let name = name.trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(syntax(
                "expected NAME=VALUE with a variable name of letters, digits and _",
            ));
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) if value.len() >= 2 && value.ends_with(q) => {
                value[1..value.len() - 1].to_string()
            }
            Some('"' | '\'') => return Err(syntax("unterminated quoted value")),
            _ => match value.find(" #") {
                Some(i) => value[..i].trim_end().to_string(),
                None => value.to_string(),
            },
        };
        out.push(EnvVar {
            name: name.to_string(),
            value,
            line: n + 1,
        });
    }
    Ok(out)
}
