//! The README's migration table from gnzsnz/ib-gateway-docker holds: for every variable it
//! lists, `ibwarden container --print-config` with that variable set does what the table
//! says (maps it to the named key, refuses it, builds it in, or reports it as not mapped).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_ibwarden");

/// A value each listed variable is tried with.
fn sample(var: &str) -> &'static str {
    match var {
        "TWS_USERID" => "jdoe123",
        "TRADING_MODE" => "live",
        "EXISTING_SESSION_DETECTED_ACTION" => "primary",
        "TWOFA_DEVICE" => "IB Key",
        "AUTO_RESTART_TIME" => "11:59 PM",
        "TWS_COLD_RESTART" => "07:05",
        "JAVA_HEAP_SIZE" => "1024",
        "TWS_SETTINGS_PATH" => "/home/ibgateway/tws_settings",
        "TWS_PATH" => "/home/ibgateway/Jts",
        "TWOFA_TIMEOUT_ACTION" => "restart",
        "RELOGIN_AFTER_TWOFA_TIMEOUT" => "yes",
        "TWOFA_EXIT_INTERVAL" => "60",
        "READ_ONLY_API" | "BYPASS_WARNING" => "yes",
        "TWS_MASTER_CLIENT_ID" => "0",
        "TWS_ACCEPT_INCOMING" => "accept",
        "VNC_SERVER_PASSWORD" => "vnc-secret-value",
        "SSH_*" => "yes",
        "HEALTHCHECK_CLIENT_ID" => "998",
        "TWS_PASSWORD" => "hunter2-in-env",
        "TIME_ZONE" | "TZ" => "Europe/Zurich",
        other => panic!("the README lists {other}: give it a sample value here"),
    }
}

fn print_config(dir: &Path, var: &str, value: &str) -> Output {
    let pw = dir.join("tws_password");
    let name = if var == "SSH_*" { "SSH_TUNNEL" } else { var };
    let mut cmd = Command::new(BIN);
    cmd.args(["container", "--print-config"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("STATE_DIRECTORY", dir.join("state"))
        .env("IBWARDEN_CONFIG", dir.join("none.toml"))
        .env("TWS_USERID", "base-user")
        .env("TRADING_MODE", "paper")
        .env("IBWARDEN_TOTP_FILE", dir.join("code"));
    if var != "TWS_PASSWORD_FILE" {
        cmd.env("TWS_PASSWORD_FILE", &pw);
    }
    cmd.env(name, value);
    cmd.output().expect("run ibwarden container --print-config")
}

/// (variables, claim) rows of the README table under "Moving from gnzsnz".
fn table() -> Vec<(Vec<String>, String)> {
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let start = readme
        .find("**Moving from gnzsnz/ib-gateway-docker:**")
        .expect("the migration paragraph");
    let mut rows = Vec::new();
    for line in readme[start..].lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 2 || cells[0].starts_with("---") || cells[0] == "gnzsnz variable" {
            continue;
        }
        let vars = cells[0]
            .split(',')
            .map(|v| v.trim().trim_matches('`').to_string())
            .collect();
        rows.push((vars, cells[1].to_string()));
    }
    rows
}

#[test]
fn every_row_of_the_readme_migration_table_is_what_the_entrypoint_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("tws_password");
    fs::write(&pw, "pw\n").expect("write");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).expect("chmod");
    let rows = table();
    assert!(rows.len() >= 15, "the table was not found whole: {rows:?}");
    for (vars, claim) in rows {
        for var in vars {
            let value = if var == "TWS_PASSWORD_FILE" {
                pw.display().to_string()
            } else {
                sample(&var).to_string()
            };
            let out = print_config(dir.path(), &var, &value);
            let toml = String::from_utf8_lossy(&out.stdout).into_owned();
            let report = String::from_utf8_lossy(&out.stderr).into_owned();
            let ctx = format!("{var} ({claim}):\n{toml}\n{report}");
            if var.contains("PASSWORD") || var.contains("VNC") {
                assert!(
                    !toml.contains(&value) || var == "TWS_PASSWORD_FILE",
                    "{ctx}"
                );
                assert!(
                    !report.contains("hunter2") && !report.contains("vnc-secret"),
                    "{ctx}"
                );
            }
            if claim.starts_with("refused") {
                assert_eq!(out.status.code(), Some(78), "{ctx}");
                continue;
            }
            assert!(out.status.success(), "{ctx}");
            if let Some(key) = claim.strip_prefix('`').and_then(|c| c.split('`').next()) {
                let (section, name) = key.split_once('.').expect("section.key");
                let body = toml
                    .split(&format!("[{section}]\n"))
                    .nth(1)
                    .map(|b| b.split("\n[").next().unwrap_or(""))
                    .unwrap_or_else(|| panic!("no [{section}] in {ctx}"));
                assert!(
                    body.lines().any(|l| l.starts_with(&format!("{name} = "))),
                    "{key} not set: {ctx}"
                );
            } else if claim.starts_with("built in") {
                let built = report
                    .split("Nothing to set")
                    .nth(1)
                    .and_then(|r| r.split("\n\n").next())
                    .unwrap_or("");
                assert!(built.contains(&format!(": {var}")), "{ctx}");
            } else if claim.starts_with("not mapped") {
                let not = report.split("NOT mapped").nth(1).unwrap_or("");
                let name = if var == "SSH_*" { "SSH_TUNNEL" } else { &var };
                assert!(not.contains(&format!(": {name}")), "{ctx}");
            } else if claim.starts_with("the zone") {
                assert!(
                    report.contains(&format!(": {var} = \"Europe/Zurich\"")),
                    "{ctx}"
                );
            } else {
                panic!("a claim this test does not know how to check: {ctx}");
            }
        }
    }
}
