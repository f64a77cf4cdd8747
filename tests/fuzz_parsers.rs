//! Property tests for the parsers that read untrusted input: the config file
//! (`Config::from_str`), the activation code (`ActivationCode::parse`) and the TWS API frame
//! decoder (`probe::decode_frames`). Random and mutated inputs from a seeded xorshift
//! generator (no extra dependency); a failure prints the seed and the input so it can be
//! replayed. Properties: no panic, errors never echo the input (activation code), decoded
//! frames account for exactly the bytes they used.

use std::path::Path;

use ibwarden::config::Config;
use ibwarden::probe::{decode_frames, encode_frame, MAX_FRAME_LEN};
use ibwarden::totp::ActivationCode;

/// xorshift64*: small, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// Seeds: a fixed base (reproducible in CI) mixed with `IBW_FUZZ_SEED` when set, so a
/// person can explore further (`IBW_FUZZ_SEED=$RANDOM cargo test --test fuzz_parsers`).
fn base_seed() -> u64 {
    std::env::var("IBW_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1B3A_7D00_5EED)
}

fn iterations() -> usize {
    std::env::var("IBW_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10000)
}

// ------------------------------------------------------------------------------ config

/// Fragments that exercise the TOML grammar and ibwarden's schema.
const TOML_ATOMS: &[&str] = &[
    "[gateway]",
    "[account]",
    "[login]",
    "[probe]",
    "[state]",
    "[display]",
    "[schedule]",
    "[control]",
    "[notify]",
    "[health]",
    "[[gateway]]",
    "[a.b.c]",
    "trading_mode = \"paper\"",
    "trading_mode = \"live\"",
    "trading_mode = 3",
    "api_port = 70000",
    "api_port = -1",
    "api_port = 4002",
    "username = \"\"",
    "username = \"u\"",
    "password_file = \"\"",
    "password_file = \"/nonexistent/x\"",
    "password_env = \"X\"",
    "password_credential = \"c\"",
    "totp_file = \"t\"",
    "interval = \"0s\"",
    "interval = \"99999999999999h\"",
    "interval = \"1.5s\"",
    "interval = \"5\"",
    "timeout = \"-3s\"",
    "min_code_validity = \"30s\"",
    "max_code_rejections = 0",
    "max_failed_logins_per_hour = 4294967296",
    "geometry = \"1x1x1\"",
    "geometry = \"99999999999x99999999999x24\"",
    "daily_restart = \"25:61\"",
    "weekly_cold_restart = \"Xyz 01:30\"",
    "timezone = \"Mars/Olympus\"",
    "listen = \"999.1.1.1:80\"",
    "jvm_args = [1, \"a\", [2]]",
    "command = []",
    "dir = \"~/\"",
    "dir = \"~\"",
    "install_dir = \"\\u0000\"",
    "x = { a = 1, b = [ ] }",
    "= \"nokey\"",
    "\"quoted key\" = 1",
    "k = '''multi\nline'''",
    "k = \"\"\"\nunterminated",
    "k = 1979-05-27T07:32:00Z",
    "k = inf",
    "k = nan",
    "k = 0x7fffffffffffffff",
    "k = 1e400",
    "# comment",
    "\u{feff}",
    "\u{0}",
    "é = \"ü\"",
    "",
];

fn random_toml(rng: &mut Rng, base: &str) -> String {
    let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
    let ops = 1 + rng.below(6);
    for _ in 0..ops {
        match rng.below(7) {
            0 if !lines.is_empty() => {
                let i = rng.below(lines.len());
                lines.remove(i);
            }
            1 => {
                let i = rng.below(lines.len() + 1);
                lines.insert(i, rng.pick(TOML_ATOMS).to_string());
            }
            2 if !lines.is_empty() => {
                // Uncomment an example line (keys with their defaults or examples).
                let i = rng.below(lines.len());
                if let Some(rest) = lines[i].strip_prefix("# ") {
                    lines[i] = rest.to_string();
                }
            }
            3 if !lines.is_empty() => {
                // Flip, drop or duplicate one byte of a line (keeping UTF-8 valid).
                let i = rng.below(lines.len());
                let mut b = lines[i].clone().into_bytes();
                if !b.is_empty() {
                    let j = rng.below(b.len());
                    match rng.below(3) {
                        0 => b[j] ^= 1 << rng.below(7),
                        1 => {
                            b.remove(j);
                        }
                        _ => b.insert(j, b[j]),
                    }
                }
                lines[i] = String::from_utf8_lossy(&b).into_owned();
            }
            4 if !lines.is_empty() => {
                // Truncate the whole text somewhere.
                let i = rng.below(lines.len());
                lines.truncate(i);
            }
            5 => {
                let i = rng.below(lines.len() + 1);
                let junk: String = (0..rng.below(40))
                    .map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?'))
                    .collect();
                lines.insert(i, junk);
            }
            _ if lines.len() > 1 => {
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
            }
            _ => {}
        }
    }
    lines.join("\n")
}

#[test]
fn config_parser_never_panics_on_mutated_files() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example"))
            .expect("config.toml.example");
    let minimal = "[account]\nusername = \"u\"\npassword_file = \"p\"\n";
    let path = Path::new("/nonexistent-dir/ibwarden-fuzz.toml");
    let seed = base_seed();
    let mut rng = Rng::new(seed);
    let mut ok = 0usize;
    let mut errors = 0usize;
    for i in 0..iterations() {
        let base = if rng.chance(50) {
            &example[..]
        } else {
            minimal
        };
        let text = random_toml(&mut rng, base);
        let result = std::panic::catch_unwind(|| Config::from_str(&text, path));
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                // The error names where: a message, never empty.
                assert!(
                    !e.to_string().trim().is_empty(),
                    "empty error for iteration {i} (seed {seed}):\n{text}"
                );
                errors += 1;
            }
            Err(_) => {
                panic!("Config::from_str panicked at iteration {i} (seed {seed}) on:\n{text}")
            }
        }
    }
    // The mutations must reach both sides of the parser, or the test proves little.
    assert!(ok > 0 && errors > 0, "ok {ok}, errors {errors}");
}

#[test]
fn config_parser_never_panics_on_random_bytes() {
    let path = Path::new("fuzz.toml");
    let mut rng = Rng::new(base_seed() ^ 0x00C0_FFEE);
    for i in 0..iterations() {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len)
            .map(|_| *rng.pick(b"[]=\"'#.\n abc_123\\{},-:xyz\t\r"))
            .collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let r = std::panic::catch_unwind(|| Config::from_str(&text, path));
        assert!(r.is_ok(), "panic at iteration {i} on {text:?}");
    }
}

// ------------------------------------------------------------------------------ TOTP

const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Runs of 6+ characters from the input that an error message must not contain.
fn echo_windows(input: &str) -> Vec<String> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    for w in chars.windows(6) {
        if w.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            out.push(w.iter().collect());
        }
    }
    out
}

#[test]
fn activation_code_parser_never_panics_and_never_echoes_input() {
    let mut rng = Rng::new(base_seed() ^ 0x7077);
    let mut accepted = 0usize;
    let mut rejected = 0usize;
    for i in 0..iterations() * 3 {
        let len = rng.below(80);
        let mut s = String::new();
        for _ in 0..len {
            let c = match rng.below(20) {
                0 => ' ',
                1 => '-',
                2 => '=',
                3 => *rng.pick(&['0', '1', '8', '9', '!', 'é', '\u{0}', '\n', 'ß', '€']),
                4 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('x'),
                5 => (*rng.pick(B32) as char).to_ascii_lowercase(),
                _ => *rng.pick(B32) as char,
            };
            s.push(c);
        }
        let r = std::panic::catch_unwind(|| ActivationCode::parse(&s));
        let r = r.unwrap_or_else(|_| panic!("ActivationCode::parse panicked at {i} on {s:?}"));
        match r {
            Ok(code) => {
                accepted += 1;
                // Debug is redacted.
                let dbg = format!("{code:?}");
                for w in echo_windows(&s) {
                    assert!(!dbg.contains(&w), "Debug echoes the input: {dbg}");
                }
            }
            Err(e) => {
                rejected += 1;
                let msg = format!("{e} / {e:?}");
                for w in echo_windows(&s) {
                    assert!(
                        !msg.contains(&w),
                        "error echoes input run {w:?}: {msg} (input {s:?})"
                    );
                }
            }
        }
    }
    assert!(
        accepted > 0 && rejected > 0,
        "accepted {accepted}, rejected {rejected}"
    );
}

#[test]
fn activation_code_round_trips_through_base32() {
    let mut rng = Rng::new(base_seed() ^ 0xB32);
    for _ in 0..500 {
        let len = 16 + rng.below(48);
        let len = len - len % 8; // valid base32 lengths without padding
        let s: String = (0..len).map(|_| *rng.pick(B32) as char).collect();
        let code = ActivationCode::parse(&s).expect("valid base32");
        let back = code.to_base32();
        let again = ActivationCode::parse(back.expose()).expect("round trip");
        assert_eq!(
            code.code_at_step(12345).expose(),
            again.code_at_step(12345).expose()
        );
    }
}

// ------------------------------------------------------------------------------ frames

#[test]
fn frame_decoder_never_panics_on_random_bytes() {
    let mut rng = Rng::new(base_seed() ^ 0xF4A3);
    for i in 0..iterations() * 3 {
        let len = rng.below(64);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias the length prefix towards small values so payloads are actually parsed.
        if buf.len() >= 4 && rng.chance(70) {
            let l = rng.below(buf.len()) as u32;
            buf[..4].copy_from_slice(&l.to_be_bytes());
        }
        let r = std::panic::catch_unwind(|| decode_frames(&buf));
        let r = r.unwrap_or_else(|_| panic!("decode_frames panicked at {i} on {buf:?}"));
        if let Ok((frames, used)) = r {
            assert!(used <= buf.len(), "used {used} > {} on {buf:?}", buf.len());
            // Frames never account for more bytes than their headers announced.
            let announced: usize = frames.iter().map(|_| 4).sum();
            assert!(announced <= used || frames.is_empty());
        }
    }
}

#[test]
fn frame_decoder_round_trips_and_splits_anywhere() {
    let mut rng = Rng::new(base_seed() ^ 0x5EA1);
    for _ in 0..500 {
        let n = 1 + rng.below(5);
        let msgs: Vec<Vec<String>> = (0..n)
            .map(|_| {
                (0..1 + rng.below(6))
                    .map(|_| {
                        (0..rng.below(12))
                            .map(|_| (b'!' + rng.below(90) as u8) as char)
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend(encode_frame(m));
        }
        let (frames, used) = decode_frames(&stream).expect("valid stream");
        assert_eq!(used, stream.len());
        let got: Vec<Vec<String>> = frames.into_iter().map(|f| f.fields).collect();
        assert_eq!(got, msgs);
        // Any prefix decodes to a prefix of the messages and leaves the rest unused.
        let cut = rng.below(stream.len() + 1);
        let (frames, used) = decode_frames(&stream[..cut]).expect("prefix");
        assert!(used <= cut);
        assert!(frames.len() <= msgs.len());
        for (f, m) in frames.iter().zip(&msgs) {
            assert_eq!(&f.fields, m);
        }
    }
}

#[test]
fn frame_decoder_refuses_absurd_lengths() {
    for len in [MAX_FRAME_LEN as u32 + 1, u32::MAX, 0x8000_0000] {
        let mut buf = len.to_be_bytes().to_vec();
        buf.extend_from_slice(b"abc\0");
        assert!(decode_frames(&buf).is_err(), "length {len} accepted");
    }
    // Exactly the limit is a partial frame (not an error) while its bytes are missing.
    let buf = (MAX_FRAME_LEN as u32).to_be_bytes();
    let (frames, used) = decode_frames(&buf).expect("at the limit");
    assert!(frames.is_empty());
    assert_eq!(used, 0);
}
