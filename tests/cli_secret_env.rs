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

/// The kernel's copy of the environment (`/proc/<pid>/environ`, readable by the same user)
/// is what a process was started with; `remove_var` does not touch it. The child below is
/// this test binary started again with the secrets in its real environment block (values
/// of their own: the other test sets variables in this process meanwhile, which the child
/// inherits).
#[test]
fn env_secrets_are_overwritten_in_the_kernels_copy_of_the_environment() {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "scrub_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("IBW_SCRUB_CHILD", "1")
        .env("IBW_CHILD_PW", "Child-Secret-Pw-9931")
        .env("IBW_CHILD_TOTP", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
        .output()
        .expect("run the child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("scrubbed-and-checked"),
        "the child ran its check: {text}"
    );
}

#[test]
fn scrub_child() {
    if std::env::var_os("IBW_SCRUB_CHILD").is_none() {
        return; // Only meaningful as the child of the test above.
    }
    let before = std::fs::read("/proc/self/environ").expect("read environ");
    assert!(
        contains(&before, b"Child-Secret-Pw-9931"),
        "the secret starts in the block"
    );
    let c = Config::from_str(
        "[account]\nusername = \"u\"\npassword_env = \"IBW_CHILD_PW\"\ntotp_env = \"IBW_CHILD_TOTP\"\n",
        Path::new("/etc/ibwarden/c.toml"),
    )
    .expect("valid");
    let s = Secrets::load(&c).expect("loads from the environment");
    assert_eq!(s.password.expose(), "Child-Secret-Pw-9931");
    scrub_environment(&c);
    let after = std::fs::read("/proc/self/environ").expect("read environ");
    assert!(
        !contains(&after, b"Child-Secret-Pw-9931"),
        "password still in /proc/self/environ"
    );
    assert!(
        !contains(&after, b"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"),
        "activation code still in /proc/self/environ"
    );
    println!("scrubbed-and-checked");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
