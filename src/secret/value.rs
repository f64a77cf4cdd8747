//! [`Secret`]: a string that is redacted in `Debug`/`Display` and wiped on drop.
//!
//! A leaf module (no crate imports): [`crate::totp`] makes its codes out of it, and
//! [`crate::secret`] loads the configured secrets into it.

use std::fmt;

use zeroize::Zeroize;

/// A secret string. Redacted in `Debug`/`Display`, zeroed on drop.
///
/// Deliberately not `PartialEq` (no accidental non-constant-time comparisons) and not
/// `Serialize`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value. The caller's `String` moves in; no copy is left behind.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value. Call this only at the last moment (typing it, hashing it).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True if the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_debug_and_display() {
        let s = Secret::new("hunter2-value".into());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-value");
        assert!(!s.is_empty());
        assert!(Secret::default().is_empty());
    }
}
