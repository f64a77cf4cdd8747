//! SIGHUP, one test per config section: a re-read file's new value reaches the place that
//! uses it (the core's values, the probe adapter, the notifier), or, for keys only a restart
//! of ibwarden can apply, keeps the running value and is named. `apply_reload` is what the
//! running driver does with a re-read, validated file (the e2e reload test drives the real
//! binary; `tests/driver.rs` shows the core acting on the new values).

use std::path::Path;
use std::time::Duration;

use ibwarden::config::Config;
use ibwarden::core::{SessionPolicy, TradingMode};
use ibwarden::driver::{apply_reload, Reload};

/// A valid config with `extra` appended to each named section (`[section]\nkey = value`).
fn config(dir: &Path, extra: &[(&str, &str)]) -> Config {
    let secret = dir.join("password");
    std::fs::write(&secret, "pw\n").expect("write secret");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod secret");
    let mut text = format!(
        "[account]\nusername = \"u\"\npassword_file = \"{}\"\n",
        secret.display()
    );
    for section in [
        "gateway", "login", "schedule", "display", "probe", "state", "control", "health", "notify",
    ] {
        text.push_str(&format!("[{section}]\n"));
        if section == "gateway" {
            text.push_str("trading_mode = \"paper\"\n");
        }
        for (s, line) in extra {
            if *s == section {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let path = dir.join("main.toml");
    std::fs::write(&path, text).expect("write config");
    Config::load(&path).unwrap_or_else(|e| panic!("config loads: {e}"))
}

fn reload(before: &[(&str, &str)], after: &[(&str, &str)]) -> (Config, Reload) {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = config(dir.path(), before);
    // The same file, rewritten: paths that default relative to it stay the same.
    let new = config(dir.path(), after);
    let r = apply_reload(&old, new, true);
    (old, r)
}

#[test]
fn gateway_trading_mode_and_api_port_apply_program_waits_for_a_restart() {
    let (old, r) = reload(
        &[],
        &[
            ("gateway", "api_port = 4999"),
            ("gateway", "jvm_args = [\"-Xmx900m\"]"),
            ("gateway", "program = \"tws\""),
        ],
    );
    assert_eq!(
        r.config.gateway.api_port, 4999,
        "the probe connects to the new port"
    );
    assert_eq!(
        r.config.gateway.jvm_args,
        vec!["-Xmx900m".to_string()],
        "the next launch"
    );
    assert_eq!(r.core.trading_mode, TradingMode::Paper);
    assert_eq!(
        r.config.gateway.program, old.gateway.program,
        "program keeps running"
    );
    assert_eq!(r.restart_needed, vec!["gateway.program".to_string()]);
}

#[test]
fn account_changes_wait_for_a_restart() {
    let (old, r) = reload(&[], &[]);
    assert!(r.restart_needed.is_empty(), "{:?}", r.restart_needed);
    assert_eq!(r.config.account.username, old.account.username);
}

#[test]
fn login_policy_reaches_the_core() {
    let (_, r) = reload(
        &[],
        &[
            ("login", "existing_session = \"secondary\""),
            ("login", "max_code_rejections = 5"),
            ("login", "min_code_validity = \"12s\""),
            ("login", "login_timeout = \"200s\""),
        ],
    );
    assert_eq!(r.core.existing_session, SessionPolicy::Secondary);
    assert_eq!(r.core.max_code_rejections, 5);
    assert_eq!(r.core.min_code_validity, Duration::from_secs(12));
    assert_eq!(r.core.login_timeout, Duration::from_secs(200));
    assert!(r.restart_needed.is_empty(), "{:?}", r.restart_needed);
}

#[test]
fn login_content_reader_waits_for_a_restart() {
    let (old, r) = reload(&[], &[("login", "content_reader = \"none\"")]);
    assert_eq!(r.config.login.content_reader, old.login.content_reader);
    assert_eq!(r.restart_needed, vec!["login.content_reader".to_string()]);
}

#[test]
fn schedule_reaches_the_cores_calendar_and_maintenance_guard() {
    use ibwarden::core::schedule::timestamp_from_unix_ms;
    let (old, r) = reload(&[], &[("schedule", "maintenance_start = \"22:00\"")]);
    let new_guard = r.core.schedule.as_ref().expect("a calendar");
    let old_guard = ibwarden::driver::core_config(&old, true)
        .schedule
        .expect("a calendar");
    // 2026-12-02 22:10 New York = 03:10 UTC on 2026-12-03.
    let at = timestamp_from_unix_ms(1_796_267_400_000);
    assert!(
        new_guard.full_login_blocked_until(at).is_some(),
        "inside the moved window"
    );
    assert!(
        old_guard.full_login_blocked_until(at).is_none(),
        "outside the old one"
    );
}

#[test]
fn display_changes_wait_for_a_restart() {
    let (old, r) = reload(&[], &[("display", "geometry = \"1024x768x24\"")]);
    assert_eq!(
        r.config.display.geometry.to_string(),
        old.display.geometry.to_string()
    );
    assert_eq!(r.restart_needed, vec!["display".to_string()]);
}

#[test]
fn probe_interval_reaches_the_core_and_timeout_the_adapter() {
    let (_, r) = reload(
        &[],
        &[
            ("probe", "interval = \"7s\""),
            ("probe", "failures_before_restart = 5"),
            ("probe", "timeout = \"3s\""),
            ("probe", "client_id = 4242"),
        ],
    );
    assert_eq!(r.core.probe_interval, Duration::from_secs(7));
    assert_eq!(r.core.failures_before_restart, 5);
    assert_eq!(r.config.probe.timeout, Duration::from_secs(3));
    assert_eq!(r.config.probe.client_id, 4242);
    assert!(r.restart_needed.is_empty(), "{:?}", r.restart_needed);
}

#[test]
fn state_dir_waits_for_a_restart() {
    let (old, r) = reload(
        &[],
        &[("state", "dir = \"/tmp/ibwarden-reload-elsewhere\"")],
    );
    assert_eq!(r.config.state.dir, old.state.dir);
    // The control socket and the gateway's settings default under the state dir: they move
    // with it, and wait with it.
    assert!(
        r.restart_needed.contains(&"state.dir".to_string()),
        "{:?}",
        r.restart_needed
    );
    assert_eq!(r.config.control.socket, old.control.socket);
}

#[test]
fn control_and_health_listeners_wait_for_a_restart() {
    let (old, r) = reload(
        &[],
        &[
            ("control", "ibc_command_port = 7462"),
            ("control", "ibc_command_token = \"none\""),
            ("health", "listen = \"127.0.0.1:9187\""),
        ],
    );
    assert_eq!(
        r.config.control.ibc_command_port,
        old.control.ibc_command_port
    );
    assert_eq!(r.config.health.listen, old.health.listen);
    assert_eq!(
        r.restart_needed,
        vec![
            "control.ibc_command_port".to_string(),
            "control.ibc_command_token".to_string(),
            "health.listen".to_string()
        ]
    );
}

#[test]
fn notify_reaches_the_notifier() {
    let (_, r) = reload(
        &[],
        &[
            ("notify", "command = [\"/bin/true\", \"--urgent\"]"),
            ("notify", "desktop = false"),
        ],
    );
    assert_eq!(
        r.config.notify.command,
        Some(vec!["/bin/true".to_string(), "--urgent".to_string()])
    );
    assert!(!r.config.notify.desktop);
    assert!(r.restart_needed.is_empty(), "{:?}", r.restart_needed);
}
