//! `secret::scrub_environment`: after loading, secrets given through `*_env` are gone from
//! the process environment, so no child inherits them. Alone in its own test binary because
//! it changes the process environment (nothing else runs concurrently here).

use std::path::Path;
use std::process::Command;

use ibwarden::config::Config;
use ibwarden::secret::{scrub_environment, Secrets};

#[test]
fn env_secrets_are_scrubbed_after_loading() {
    // Set before any other thread exists in this binary's only test.
    std::env::set_var("IBW_TEST_PW", "Env-Secret-Pw-4417");
    std::env::set_var("IBW_TEST_TOTP", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    let c = Config::from_str(
        "[account]\nusername = \"u\"\npassword_env = \"IBW_TEST_PW\"\ntotp_env = \"IBW_TEST_TOTP\"\n",
        Path::new("/etc/ibwarden/c.toml"),
    )
    .expect("valid");
    let s = Secrets::load(&c).expect("loads from the environment");
    assert_eq!(s.password.expose(), "Env-Secret-Pw-4417");
    assert!(s.totp.is_some());
    scrub_environment(&c);
    assert!(std::env::var_os("IBW_TEST_PW").is_none());
    assert!(std::env::var_os("IBW_TEST_TOTP").is_none());
    let out = Command::new("env").output().expect("run env");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Env-Secret-Pw-4417"));
    assert!(!text.contains("IBW_TEST_TOTP"));
}
