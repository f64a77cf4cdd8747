//! A walker over the spanned TOML tree (`toml::de::DeTable`) that reads typed values and
//! records every problem with its span instead of stopping at the first.
//!
//! serde's derive stops at the first error and `deny_unknown_fields` gives no position or
//! suggestion, so the schema is read by hand here: each section's known keys come from the
//! key table ([`super::keys`]), unknown ones are reported with a "did you mean", and each getter reports a
//! wrong type or value at the value's position and returns `None` so reading goes on.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::Diagnostic;
use super::keys;

/// Accumulates diagnostics while reading; knows how to resolve relative paths.
pub(crate) struct Ctx<'s> {
    pub source: &'s str,
    /// The config file, for messages.
    pub path: PathBuf,
    /// Directory relative paths are resolved against (the config file's directory).
    pub base_dir: PathBuf,
    /// `$HOME`, for `~/` in paths.
    pub home: Option<PathBuf>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// One `[section]` of the file (possibly absent).
pub(crate) struct Section<'t, 'i> {
    pub name: &'static str,
    pub table: Option<&'t DeTable<'i>>,
    /// Where to point for "missing key" errors: the section header, or the file start.
    pub span: Range<usize>,
}

type Val<'t, 'i> = &'t Spanned<DeValue<'i>>;

impl<'s> Ctx<'s> {
    pub(super) fn error(&mut self, span: Range<usize>, key: Option<String>, message: String) {
        let d = Diagnostic::at(self.source, &self.path, span, key, message);
        self.errors.push(d);
    }

    pub(super) fn warn(&mut self, span: Range<usize>, key: Option<String>, message: String) {
        let d = Diagnostic::at(self.source, &self.path, span, key, message);
        self.warnings.push(d);
    }

    /// Checks the top level: only known sections, each a table. Returns nothing; sections are
    /// fetched with [`Ctx::section`].
    pub(super) fn check_top_level(&mut self, root: &DeTable<'_>) {
        let names: Vec<&str> = keys::SECTIONS.to_vec();
        for (key, value) in root.iter() {
            let name: &str = key.get_ref();
            if names.contains(&name) {
                if !matches!(value.get_ref(), DeValue::Table(_)) {
                    self.error(
                        key.span(),
                        Some(name.to_string()),
                        format!(
                            "must be a section ([{name}]), found a {}",
                            value.get_ref().type_str()
                        ),
                    );
                }
                continue;
            }
            let mut msg = if matches!(value.get_ref(), DeValue::Table(_)) {
                "unknown section".to_string()
            } else {
                "unknown key at the top level (keys belong in a [section])".to_string()
            };
            if let Some(s) = suggest(name, &names) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            } else if let Some(section) = section_of(name) {
                msg.push_str(&format!("; `{name}` belongs in [{section}]"));
            }
            self.error(key.span(), Some(name.to_string()), msg);
        }
    }

    /// Fetches a section and reports its unknown keys.
    pub(super) fn section<'t, 'i>(
        &mut self,
        root: &'t DeTable<'i>,
        name: &'static str,
    ) -> Section<'t, 'i> {
        let known_names = keys::names_in(name);
        let known: &[&str] = &known_names;
        let entry = root.get_key_value(name);
        let (table, span) = match entry {
            Some((k, v)) => match v.get_ref() {
                DeValue::Table(t) => (Some(t), k.span()),
                _ => (None, k.span()),
            },
            None => (None, 0..0),
        };
        if let Some(t) = table {
            for (key, _) in t.iter() {
                let k: &str = key.get_ref();
                if known.contains(&k) {
                    continue;
                }
                let mut msg = "unknown key".to_string();
                if name == "account" && is_secret_key(k) {
                    msg.push_str(
                        "; secrets are never written in the config: use password_file, \
                         password_credential or password_env (and totp_* likewise)",
                    );
                } else if let Some(s) = suggest(k, known) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                } else if let Some(other) = section_of(k) {
                    msg.push_str(&format!("; `{k}` belongs in [{other}]"));
                }
                if !msg.contains(';') {
                    msg.push_str(&format!(" (known keys: {})", known.join(", ")));
                }
                self.error(key.span(), Some(format!("{name}.{k}")), msg);
            }
        }
        Section { name, table, span }
    }

    fn type_error(&mut self, sec: &Section<'_, '_>, key: &str, v: Val<'_, '_>, expected: &str) {
        self.error(
            v.span(),
            Some(sec.key(key)),
            format!("expected {expected}, found {}", v.get_ref().type_str()),
        );
    }

    /// Reports a missing required key at the section header (or the file start).
    pub(super) fn missing(&mut self, sec: &Section<'_, '_>, key: &str, hint: &str) {
        let where_ = if sec.table.is_some() {
            String::new()
        } else {
            format!(" (section [{}] is missing)", sec.name)
        };
        self.error(
            sec.span.clone(),
            Some(sec.key(key)),
            format!("required key is missing{where_}{hint}"),
        );
    }

    /// A string value.
    pub(super) fn string(&mut self, sec: &Section<'_, '_>, key: &str) -> Option<Spanned<String>> {
        self.string_as(sec, key, "a string")
    }

    /// A string value; `expected` describes it in the type error (`a duration like "8s"`).
    fn string_as(
        &mut self,
        sec: &Section<'_, '_>,
        key: &str,
        expected: &str,
    ) -> Option<Spanned<String>> {
        let v = sec.raw(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Spanned::new(v.span(), s.to_string())),
            _ => {
                self.type_error(sec, key, v, expected);
                None
            }
        }
    }

    /// A boolean value.
    pub(super) fn boolean(&mut self, sec: &Section<'_, '_>, key: &str) -> Option<bool> {
        let v = sec.raw(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_error(sec, key, v, "true or false");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(super) fn integer(
        &mut self,
        sec: &Section<'_, '_>,
        key: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let v = sec.raw(key)?;
        let DeValue::Integer(i) = v.get_ref() else {
            self.type_error(sec, key, v, "an integer");
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    v.span(),
                    Some(sec.key(key)),
                    format!("must be between {min} and {max}"),
                );
                None
            }
        }
    }

    /// A string parsed by `parse`, whose error message is reported at the value. `expected`
    /// describes the value for a type error (`a duration like "8s"`).
    pub(super) fn parsed<T>(
        &mut self,
        sec: &Section<'_, '_>,
        key: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string_as(sec, key, expected)?;
        match parse(s.get_ref()) {
            Ok(t) => Some(t),
            Err(msg) => {
                self.error(s.span(), Some(sec.key(key)), msg);
                None
            }
        }
    }

    /// One of a fixed set of strings.
    pub(super) fn choice<T: Copy>(
        &mut self,
        sec: &Section<'_, '_>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(sec, key)?;
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == s.get_ref()) {
            return Some(*t);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let list = names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut msg = format!("{:?} is not one of {list}", s.get_ref());
        if let Some(sug) = suggest(&s.get_ref().to_ascii_lowercase(), &names) {
            msg.push_str(&format!("; did you mean \"{sug}\"?"));
        }
        self.error(s.span(), Some(sec.key(key)), msg);
        None
    }

    /// A list of strings.
    pub(super) fn string_list(&mut self, sec: &Section<'_, '_>, key: &str) -> Option<Vec<String>> {
        let v = sec.raw(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.type_error(sec, key, v, "a list of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            match item.get_ref() {
                DeValue::String(s) => out.push(s.to_string()),
                other => {
                    ok = false;
                    self.error(
                        item.span(),
                        Some(sec.key(key)),
                        format!(
                            "expected a list of strings, found a {} in it",
                            other.type_str()
                        ),
                    );
                }
            }
        }
        ok.then_some(out)
    }

    /// A path; relative paths are resolved against the config file's directory and a
    /// leading `~/` against `$HOME`.
    pub(super) fn path(&mut self, sec: &Section<'_, '_>, key: &str) -> Option<Spanned<PathBuf>> {
        let s = self.string(sec, key)?;
        if s.get_ref().is_empty() {
            self.error(s.span(), Some(sec.key(key)), "path is empty".into());
            return None;
        }
        match resolve_path(s.get_ref(), &self.base_dir, self.home.as_deref()) {
            Ok(p) => Some(Spanned::new(s.span(), p)),
            Err(msg) => {
                self.error(s.span(), Some(sec.key(key)), msg);
                None
            }
        }
    }
}

impl Section<'_, '_> {
    /// The raw value of a key, if present.
    pub(super) fn raw(&self, key: &str) -> Option<Val<'_, '_>> {
        self.table?.get(key)
    }

    /// True if the key is present.
    pub(super) fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// Span of a key's value, or the section header.
    pub(super) fn span_of(&self, key: &str) -> Range<usize> {
        self.raw(key).map_or(self.span.clone(), |v| v.span())
    }

    /// `section.key`.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }
}

/// Resolves `~/x` against `$HOME` and relative paths against `base`.
pub(crate) fn resolve_path(
    text: &str,
    base: &Path,
    home: Option<&Path>,
) -> Result<PathBuf, String> {
    if let Some(rest) = text.strip_prefix("~/") {
        return match home {
            Some(h) => Ok(h.join(rest)),
            None => Err("`~/` used but $HOME is not set".into()),
        };
    }
    if text == "~" || (text.starts_with('~') && !text.starts_with("~/")) {
        return Err(
            "only `~/` (the current user's home) is supported at the start of a path".into(),
        );
    }
    let p = Path::new(text);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    })
}

/// Which section a key belongs to, if exactly one section has it.
fn section_of(key: &str) -> Option<&'static str> {
    let mut found = keys::sections_of(key);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn is_secret_key(key: &str) -> bool {
    [
        "password",
        "totp",
        "secret",
        "activation_code",
        "code",
        "pass",
    ]
    .contains(&key)
}

/// The closest candidate to `word` if it is plausibly a typo of it (edit distance at most a
/// third of the word's length, minimum 1, or one is a prefix of the other).
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(&w, c);
        let limit = (w.chars().count().max(c.len()) / 3).max(1);
        let prefix = w.len() >= 3 && (c.starts_with(&w) || w.starts_with(c));
        if (d <= limit || prefix) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["min_code_validity", "max_code_rejections", "login_timeout"];
        assert_eq!(
            suggest("min_code_valdity", &keys),
            Some("min_code_validity")
        );
        assert_eq!(suggest("login_timeut", &keys), Some("login_timeout"));
        assert_eq!(suggest("LOGIN_TIMEOUT", &keys), Some("login_timeout"));
        assert_eq!(suggest("zzz", &keys), None);
        assert_eq!(suggest("gatway", &["gateway", "login"]), Some("gateway"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn key_sections() {
        assert_eq!(section_of("totp_file"), Some("account"));
        assert_eq!(section_of("timeout"), Some("probe"));
        assert_eq!(section_of("nope"), None);
    }

    #[test]
    fn paths() {
        let base = Path::new("/etc/ibwarden");
        let home = Some(Path::new("/home/u"));
        assert_eq!(
            resolve_path("pw", base, home),
            Ok(PathBuf::from("/etc/ibwarden/pw"))
        );
        assert_eq!(resolve_path("/x/y", base, home), Ok(PathBuf::from("/x/y")));
        assert_eq!(
            resolve_path("~/Jts", base, home),
            Ok(PathBuf::from("/home/u/Jts"))
        );
        assert!(resolve_path("~bob/x", base, home).is_err());
        assert!(resolve_path("~/x", base, None).is_err());
    }
}
