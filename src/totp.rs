//! IBKR Mobile Authenticator codes: RFC 6238 TOTP (SHA-1, 6 digits, 30 s steps) and the
//! policy that picks which code to type.
//!
//! The activation code is the base32 secret IBKR shows under the QR code at enrolment.
//! [`ActivationCode::parse`] accepts it the way people copy it (spaces, dashes, lower case,
//! with or without `=` padding) and rejects bad input by position, never echoing it.
//!
//! [`plan`] is pure (the time is a parameter) so the core can call it: IBKR rejects a code
//! that expires while it is being checked, and a code that was already used, so a login
//! types a code with at least `min_validity` left and a step never typed before. The last
//! step used is persisted by [`crate::state`] so a restart cannot replay it.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::secret::value::Secret;

/// Length of one TOTP time step, in seconds (RFC 6238 default, used by IBKR).
pub const STEP_SECS: u64 = 30;
const STEP_MS: u64 = STEP_SECS * 1000;
/// Digits in an IBKR code.
pub const DIGITS: u8 = 6;
/// Shortest activation code accepted, in base32 characters (80 bits, the minimum common
/// authenticator apps accept). RFC 4226 recommends 160 bits; IBKR's codes are long enough.
pub const MIN_CODE_CHARS: usize = 16;

/// The TOTP time step containing `unix_secs`.
pub fn step_at(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// Seconds a code computed at `unix_secs` stays valid (1..=30).
pub fn remaining_secs(unix_secs: u64) -> u64 {
    STEP_SECS - unix_secs % STEP_SECS
}

/// Why an activation code was rejected. Never contains the code or any character of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActivationCodeError {
    /// Nothing left after removing spaces and dashes.
    #[error("activation code is empty")]
    Empty,
    /// A character outside the base32 alphabet.
    #[error(
        "character {position} of the activation code is not base32 (allowed: letters A-Z and \
         digits 2-7; a 0 is probably the letter O, a 1 the letter I or L, an 8 the letter B)"
    )]
    InvalidChar {
        /// 1-based position in the input as given (spaces and dashes counted).
        position: usize,
    },
    /// Only digits, as many as a one-time code has: the code from an app, not the key.
    #[error(
        "that is a {digits}-digit one-time code, not the activation code: paste the long code \
         of letters and digits shown under the QR code when the Mobile Authenticator app was \
         enrolled"
    )]
    OneTimeCode {
        /// How many digits were given.
        digits: usize,
    },
    /// `=` padding followed by more characters.
    #[error("character {position} of the activation code: '=' padding is only allowed at the end")]
    PaddingInside {
        /// 1-based position in the input.
        position: usize,
    },
    /// Too few characters to be a real activation code.
    #[error(
        "activation code is too short: {chars} base32 characters, at least {MIN_CODE_CHARS} \
         expected (it is the long code shown under the QR code at enrolment, not the 6-digit code)"
    )]
    TooShort {
        /// Number of base32 characters found.
        chars: usize,
    },
    /// A base32 length that cannot occur (a character is missing or extra).
    #[error(
        "activation code has {chars} base32 characters, which is not a valid base32 length \
         (a character is probably missing or extra)"
    )]
    BadLength {
        /// Number of base32 characters found.
        chars: usize,
    },
}

/// A parsed activation code: the raw HMAC key. Redacted in `Debug`, wiped on drop.
#[derive(Clone)]
pub struct ActivationCode {
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ActivationCode([redacted])")
    }
}

impl ActivationCode {
    /// Parses a base32 activation code, ignoring spaces, tabs, dashes, case and `=` padding.
    pub fn parse(input: &str) -> Result<ActivationCode, ActivationCodeError> {
        let digits = input.chars().filter(|c| !c.is_whitespace() && *c != '-');
        if digits.clone().all(|c| c.is_ascii_digit()) && matches!(digits.clone().count(), 6 | 8) {
            return Err(ActivationCodeError::OneTimeCode {
                digits: digits.count(),
            });
        }
        let mut bits: u64 = 0;
        let mut nbits: u32 = 0;
        let mut chars = 0usize;
        let mut key = Zeroizing::new(Vec::with_capacity(input.len() * 5 / 8 + 1));
        let mut padding_at: Option<usize> = None;
        for (i, c) in input.chars().enumerate() {
            let position = i + 1;
            if c.is_whitespace() || c == '-' {
                continue;
            }
            if c == '=' {
                padding_at.get_or_insert(position);
                continue;
            }
            if padding_at.is_some() {
                return Err(ActivationCodeError::PaddingInside { position });
            }
            let v = match c.to_ascii_uppercase() {
                u @ 'A'..='Z' => u as u64 - 'A' as u64,
                d @ '2'..='7' => d as u64 - '2' as u64 + 26,
                _ => return Err(ActivationCodeError::InvalidChar { position }),
            };
            chars += 1;
            bits = (bits << 5) | v;
            nbits += 5;
            if nbits >= 8 {
                nbits -= 8;
                key.push((bits >> nbits) as u8);
                bits &= (1 << nbits) - 1;
            }
        }
        // The leftover bits (fewer than 8) are padding; wipe them like the rest.
        zeroize::Zeroize::zeroize(&mut bits);
        if chars == 0 {
            return Err(ActivationCodeError::Empty);
        }
        // Base32 groups 8 characters per 5 bytes; a final group of 1, 3 or 6 characters
        // cannot be produced by any byte string.
        if matches!(chars % 8, 1 | 3 | 6) {
            return Err(ActivationCodeError::BadLength { chars });
        }
        if chars < MIN_CODE_CHARS {
            return Err(ActivationCodeError::TooShort { chars });
        }
        Ok(ActivationCode { key })
    }

    /// The key length in bytes (for diagnostics; not secret).
    pub fn key_len(&self) -> usize {
        self.key.len()
    }

    /// The canonical spelling (upper-case base32, no spaces, no padding), for writing the
    /// code back to a secret file.
    pub fn to_base32(&self) -> Secret {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = String::with_capacity(self.key.len() * 8 / 5 + 1);
        let mut bits: u32 = 0;
        let mut nbits = 0;
        for &b in self.key.iter() {
            bits = (bits << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 5 {
                nbits -= 5;
                out.push(char::from(ALPHABET[((bits >> nbits) & 31) as usize]));
            }
        }
        if nbits > 0 {
            out.push(char::from(ALPHABET[((bits << (5 - nbits)) & 31) as usize]));
        }
        zeroize::Zeroize::zeroize(&mut bits);
        Secret::new(out)
    }

    fn code(&self, step: u64, digits: u8) -> Secret {
        // `build_noncompliant`: IBKR codes may be shorter than the RFC's 128-bit minimum,
        // and the other parameters are constants known to be valid.
        let totp = totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(digits)
            .with_step_duration(STEP_SECS)
            .with_secret(totp_rs::Secret::new(self.key.to_vec().into_boxed_slice()))
            .build_noncompliant();
        let token = totp.generate(step.saturating_mul(STEP_SECS));
        Secret::new(token.to_string())
    }

    /// The 6-digit code of a time step.
    pub fn code_at_step(&self, step: u64) -> Secret {
        self.code(step, DIGITS)
    }

    /// The 6-digit code valid at `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> Secret {
        self.code_at_step(step_at(unix_secs))
    }
}

/// Which code to type and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotpPlan {
    /// The time step whose code to type.
    pub step: u64,
    /// How long to wait before typing it: zero for the current step, else the time until
    /// `step` starts.
    pub wait: Duration,
}

/// Chooses the code for a login at `now_unix_ms`.
///
/// The current step is chosen if at least `min_validity` of it is left and it is newer than
/// `last_used_step`; otherwise the earliest later step that was not used, with `wait` the time
/// until it begins. The result is always `> last_used_step`, even if the wall clock went
/// backwards (then `wait` can be long; the caller decides whether to wait or give up).
pub fn plan(now_unix_ms: u64, min_validity: Duration, last_used_step: Option<u64>) -> TotpPlan {
    let current = now_unix_ms / STEP_MS;
    let left_ms = (current + 1) * STEP_MS - now_unix_ms;
    let min_ms = u64::try_from(min_validity.as_millis()).unwrap_or(u64::MAX);
    let mut step = if left_ms >= min_ms {
        current
    } else {
        current + 1
    };
    if let Some(last) = last_used_step {
        if step <= last {
            step = last.saturating_add(1);
        }
    }
    let start_ms = step.saturating_mul(STEP_MS);
    TotpPlan {
        step,
        wait: Duration::from_millis(start_ms.saturating_sub(now_unix_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B SHA-1 key "12345678901234567890" in base32.
    const RFC_KEY: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc6238_sha1_vectors() {
        let code = ActivationCode::parse(RFC_KEY).expect("valid");
        assert_eq!(&code.key[..], b"12345678901234567890");
        let vectors: [(u64, &str); 6] = [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
            (20000000000, "65353130"),
        ];
        for (t, expected8) in vectors {
            assert_eq!(
                code.code(step_at(t), 8).expose(),
                expected8,
                "t={t} 8 digits"
            );
            // A 6-digit code is the 8-digit value mod 10^6.
            assert_eq!(code.code_at(t).expose(), &expected8[2..], "t={t} 6 digits");
        }
        assert_eq!(code.code_at(59).expose(), "287082");
    }

    #[test]
    fn parse_normalises() {
        let a = ActivationCode::parse(RFC_KEY).expect("plain");
        for variant in [
            "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
            "GEZD-GNBV-GY3T-QOJQ-GEZD-GNBV-GY3T-QOJQ",
            " gezdgnbvgy3tqojqgezdgnbvgy3tqojq\n",
        ] {
            let b = ActivationCode::parse(variant).expect(variant);
            assert_eq!(a.key, b.key);
        }
        // 26 characters need padding to a multiple of 8; with or without it is the same.
        let unpadded = "JBSWY3DPEHPK3PXPJBSWY3DPEE";
        let padded = "JBSWY3DPEHPK3PXPJBSWY3DPEE======";
        let x = ActivationCode::parse(unpadded).expect("unpadded");
        let y = ActivationCode::parse(padded).expect("padded");
        assert_eq!(x.key, y.key);
        assert_eq!(x.key_len(), 16);
        assert_eq!(x.to_base32().expose(), unpadded);
        assert_eq!(
            ActivationCode::parse("gezd gnbv gy3t qojq gezd gnbv gy3t qojq")
                .expect("valid")
                .to_base32()
                .expose(),
            RFC_KEY
        );
    }

    #[test]
    fn a_six_digit_code_is_named_for_what_it_is() {
        for code in ["123456", "123 456", "12345678"] {
            let err = ActivationCode::parse(code).expect_err(code);
            assert!(
                matches!(err, ActivationCodeError::OneTimeCode { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("under the QR code"), "{err}");
            assert!(!err.to_string().contains("123"), "no echo: {err}");
        }
        let err = ActivationCode::parse("GEZDGNBVGY3TQOJ8").expect_err("8");
        assert!(err.to_string().contains("an 8 the letter B"), "{err}");
    }

    #[test]
    fn parse_rejects_by_position_without_echo() {
        let err = ActivationCode::parse("GEZD GNB0 GY3TQOJQGEZDGNBV").expect_err("0 is bad");
        assert_eq!(err, ActivationCodeError::InvalidChar { position: 9 });
        assert!(err.to_string().contains("character 9"));
        assert!(!err.to_string().contains("GEZD"));
        assert_eq!(
            ActivationCode::parse("GEZDGNBV").err(),
            Some(ActivationCodeError::TooShort { chars: 8 })
        );
        assert_eq!(
            ActivationCode::parse(" - ").err(),
            Some(ActivationCodeError::Empty)
        );
        assert_eq!(
            ActivationCode::parse("GEZDGNBVGY3TQOJQG").err(),
            Some(ActivationCodeError::BadLength { chars: 17 })
        );
        assert_eq!(
            ActivationCode::parse("GEZDGNBVGY3TQOJQ==AB").err(),
            Some(ActivationCodeError::PaddingInside { position: 19 })
        );
        assert!(format!("{:?}", ActivationCode::parse(RFC_KEY).expect("ok")).contains("redacted"));
    }

    #[test]
    fn step_arithmetic() {
        assert_eq!(step_at(59), 1);
        assert_eq!(step_at(60), 2);
        assert_eq!(remaining_secs(59), 1);
        assert_eq!(remaining_secs(60), 30);
    }

    const MIN: Duration = Duration::from_secs(8);

    #[test]
    fn plan_uses_current_step_when_fresh() {
        // 10 s into step 100: 20 s left.
        let p = plan(100 * STEP_MS + 10_000, MIN, None);
        assert_eq!(
            p,
            TotpPlan {
                step: 100,
                wait: Duration::ZERO
            }
        );
        // Exactly 8 s left is enough.
        let p = plan(100 * STEP_MS + 22_000, MIN, Some(99));
        assert_eq!(
            p,
            TotpPlan {
                step: 100,
                wait: Duration::ZERO
            }
        );
    }

    #[test]
    fn plan_skips_a_code_with_5s_left() {
        let p = plan(100 * STEP_MS + 25_000, MIN, None);
        assert_eq!(p.step, 101);
        assert_eq!(p.wait, Duration::from_secs(5));
        // 7.999 s left is not enough either.
        let p = plan(100 * STEP_MS + 22_001, MIN, None);
        assert_eq!(p.step, 101);
        assert_eq!(p.wait, Duration::from_millis(7_999));
    }

    #[test]
    fn plan_never_repeats_a_step() {
        // Current step already used: wait for the next one.
        let p = plan(100 * STEP_MS + 1_000, MIN, Some(100));
        assert_eq!(
            p,
            TotpPlan {
                step: 101,
                wait: Duration::from_secs(29)
            }
        );
        // The next step is used too (clock went back): go past it.
        let p = plan(100 * STEP_MS + 25_000, MIN, Some(101));
        assert_eq!(p.step, 102);
        assert_eq!(p.wait, Duration::from_secs(35));
        // Simulated logins every 3 s for 10 minutes: strictly increasing steps, each typed
        // with at least MIN left when typed after its wait.
        let mut last = None;
        let mut now = 1_700_000_000_000u64;
        for _ in 0..200 {
            let p = plan(now, MIN, last);
            assert!(last.is_none_or(|l| p.step > l));
            let typed_at = now + p.wait.as_millis() as u64;
            assert_eq!(typed_at / STEP_MS, p.step);
            assert!((p.step + 1) * STEP_MS - typed_at >= 8_000);
            last = Some(p.step);
            now = typed_at + 3_000;
        }
    }
}
