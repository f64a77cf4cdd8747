//! The public foundation API as the daemon uses it: `Config::load`, `Secrets::load`,
//! `totp::plan` with `PersistedState` across a restart.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ibwarden::config::{Config, ConfigError, TradingMode};
use ibwarden::secret::{SecretError, Secrets};
use ibwarden::state::PersistedState;
use ibwarden::totp;

fn write(dir: &Path, rel: &str, content: &str, mode: u32) -> PathBuf {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, content).expect("write");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    p
}

#[test]
fn example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.gateway.trading_mode, TradingMode::Live);
    assert_eq!(c.account.username, "your-ibkr-username");
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let err = Config::load(Path::new("/nonexistent/ibwarden.toml")).expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/ibwarden.toml"),
        "{err}"
    );
}

#[test]
fn every_error_one_per_line_with_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "c.toml",
        "[account]\nusername = \"u\"\npassword_file = \"pw\"\ntotp_file = \"t\"\n[probe]\nintervall = \"5s\"\nclient_id = -1\n[login]\nexisting_session = \"Primary\"\n",
        0o644,
    );
    let err = Config::load(&path).expect_err("invalid");
    let p = path.display();
    assert_eq!(
        err.to_string(),
        format!(
            "{p}:6:1: key `probe.intervall`: unknown key; did you mean `interval`?\n\
             {p}:7:13: key `probe.client_id`: must be between 0 and 2147483647\n\
             {p}:9:20: key `login.existing_session`: \"Primary\" is not one of \"primary\", \
             \"primaryoverride\", \"secondary\", \"manual\"; did you mean \"primary\"?"
        )
    );
    assert_eq!(err.diagnostics().len(), 3);
    assert_eq!(err.diagnostics()[0].line, 6);
}

#[test]
fn secrets_load_live_and_paper() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "pw", "s3cret\n", 0o600);
    write(
        dir.path(),
        "totp",
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n",
        0o400,
    );
    let live = write(
        dir.path(),
        "live.toml",
        "[account]\nusername = \"jdoe\"\npassword_file = \"pw\"\ntotp_file = \"totp\"\n",
        0o644,
    );
    let c = Config::load(&live).expect("valid");
    let s = Secrets::load(&c).expect("secrets");
    assert_eq!(s.username, "jdoe");
    assert_eq!(s.password.expose(), "s3cret");
    let code = s.totp.as_ref().expect("activation code");
    assert_eq!(code.code_at(59).expose(), "287082");
    // Debug of the whole bundle shows no value.
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("s3cret") && !dbg.contains("GEZD"), "{dbg}");

    let paper = write(
        dir.path(),
        "paper.toml",
        "[gateway]\ntrading_mode = \"paper\"\n[account]\nusername = \"p\"\npassword_file = \"pw\"\n",
        0o644,
    );
    let s = Secrets::load(&Config::load(&paper).expect("valid")).expect("secrets");
    assert!(s.totp.is_none());

    fs::set_permissions(dir.path().join("pw"), fs::Permissions::from_mode(0o660)).expect("chmod");
    let err = Secrets::load(&c).expect_err("group-readable");
    assert!(matches!(err, SecretError::TooOpen { .. }), "{err}");
}

/// The daemon's cycle: load state, plan a code, record the step, save; a new process (a new
/// load) never plans that step again, even one second later.
#[test]
fn totp_step_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let min = Duration::from_secs(8);
    let now_ms = 1_700_000_040_000; // the start of a step: 30 s left
    let st = PersistedState::load(&state_dir).expect("no file yet");
    let p1 = totp::plan(now_ms, min, st.last_totp_step);
    let mut st = st;
    st.record_totp_step(p1.step);
    st.save(&state_dir).expect("save");

    let reloaded = PersistedState::load(&state_dir).expect("reload");
    assert_eq!(reloaded.last_totp_step, Some(p1.step));
    let p2 = totp::plan(now_ms + 1_000, min, reloaded.last_totp_step);
    assert_eq!(p2.step, p1.step + 1);
    assert_eq!(p2.wait, Duration::from_secs(29));
}
