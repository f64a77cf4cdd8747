//! `ibwarden container`: the entrypoint of the container image (PID 1 there).
//!
//! The configuration is either a mounted TOML file (`$IBWARDEN_CONFIG`, default
//! `/etc/ibwarden/ibwarden.toml`), used as it is, or the container's environment: the
//! variables of the common IBC images (`TWS_USERID`, `TWS_PASSWORD_FILE`, `TRADING_MODE`,
//! `EXISTING_SESSION_DETECTED_ACTION`, `TIME_ZONE`, ...) converted by the same rules as
//! `ibwarden import-ibc --env-file`, plus a few of ibwarden's own (`IBWARDEN_*`, see
//! [`VARS`]). The converted config is written to `$RUNTIME_DIRECTORY/ibwarden.toml`
//! (private) and its report to the log, then ibwarden runs it.
//!
//! Secrets come as files (`TWS_PASSWORD_FILE`, `IBWARDEN_TOTP_FILE`: Docker and Compose
//! secrets under `/run/secrets`) or, when `$CREDENTIALS_DIRECTORY` is set, as systemd-style
//! credentials named `password` and `totp` in that directory (a Kubernetes secret volume).
//! A password in the environment itself (`TWS_PASSWORD`) is refused: `docker inspect`, the
//! orchestrator's API and every child process would see it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use ibwarden::ibc_import::{self, EnvVar, Options};

/// Arguments of `ibwarden container` (none: the environment is the configuration).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the config the environment converts to (and the report) instead of running.
    #[arg(long)]
    print_config: bool,
}

/// ibwarden's own variables in environment mode: name, default, meaning.
pub const VARS: &[(&str, &str, &str)] = &[
    (
        "IBWARDEN_CONFIG",
        "/etc/ibwarden/ibwarden.toml",
        "a mounted config file; when it exists the environment is not read",
    ),
    (
        "IBWARDEN_TOTP_FILE",
        "/run/secrets/ibkr_totp",
        "the activation code file (live accounts)",
    ),
    (
        "IBWARDEN_API_PORT",
        "4001 live, 4002 paper (TWS: 7496, 7497)",
        "the gateway's own API port, on loopback",
    ),
    (
        "IBWARDEN_RELAY_LISTEN",
        "0.0.0.0:4003 live, 0.0.0.0:4004 paper",
        "where API clients connect (`off`: no relay)",
    ),
    (
        "IBWARDEN_RELAY_ALLOW",
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,fc00::/7,::1/128",
        "client address blocks the relay accepts, comma-separated",
    ),
    (
        "IBWARDEN_HEALTH_LISTEN",
        "0.0.0.0:9187",
        "/livez, /readyz, /metrics (`off`: none)",
    ),
];

/// The default of one of [`VARS`].
fn default_of(name: &str) -> &'static str {
    VARS.iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, d, _)| d)
}

/// Password variables that would put the secret in the environment.
const CLEAR_PASSWORDS: &[&str] = &["TWS_PASSWORD", "TWS_PASSWORD_PAPER", "TWSPASSWORD"];

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mounted = std::env::var_os("IBWARDEN_CONFIG")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from(default_of("IBWARDEN_CONFIG")),
            PathBuf::from,
        );
    if mounted.exists() {
        tracing::info!(config = %mounted.display(), "container: using the mounted config");
        if args.print_config {
            print!("{}", std::fs::read_to_string(&mounted)?);
            return Ok(ExitCode::SUCCESS);
        }
        return super::run::run_config(&mounted);
    }
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let toml = match from_environment(&vars) {
        Ok(t) => t,
        Err(msg) => {
            eprintln!("ibwarden: {msg}");
            return Ok(ExitCode::from(super::EXIT_CONFIG));
        }
    };
    if args.print_config {
        print!("{}", toml.text);
        eprint!("{}", toml.report);
        return Ok(ExitCode::SUCCESS);
    }
    for line in toml.report.lines().filter(|l| !l.trim().is_empty()) {
        tracing::info!(report = line, "container: from the environment");
    }
    let dir = std::env::var_os("RUNTIME_DIRECTORY")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/run/ibwarden"), PathBuf::from);
    ibwarden::state::create_private_dir(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("ibwarden.toml");
    ibwarden::state::write_atomic(&path, toml.text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(config = %path.display(), "container: config written from the environment");
    super::run::run_config(&path)
}

/// A config made from the environment.
#[derive(Debug)]
pub struct FromEnv {
    /// The TOML.
    pub text: String,
    /// import-ibc's report: what each variable became.
    pub report: String,
}

/// Converts the image variables in `vars` (name, value) into a config. Pure, for tests.
pub fn from_environment(vars: &[(String, String)]) -> Result<FromEnv, String> {
    let get = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    for name in CLEAR_PASSWORDS {
        if get(name).is_some() {
            return Err(format!(
                "{name} holds the password in the container's environment, where `docker \
                 inspect`, the orchestrator and every child process can read it; put it in a \
                 secret file and set {name}_FILE instead (e.g. TWS_PASSWORD_FILE=/run/secrets/\
                 tws_password)"
            ));
        }
    }
    let image_vars: Vec<EnvVar> = vars
        .iter()
        .filter(|(k, _)| ibc_import::is_image_variable(k))
        .enumerate()
        .map(|(i, (k, v))| EnvVar {
            name: k.clone(),
            value: v.clone(),
            line: i + 1,
        })
        .collect();
    let credentials = get("CREDENTIALS_DIRECTORY").is_some();
    let opts = Options {
        password_file: "/run/secrets/tws_password".into(),
        totp_file: get("IBWARDEN_TOTP_FILE")
            .unwrap_or_else(|| default_of("IBWARDEN_TOTP_FILE").to_string()),
        token_file: "/run/secrets/ibc_command_token".into(),
        credentials,
        today: jiff::Zoned::now().date(),
        ini_name: "config.ini".into(),
        env_name: "environment".into(),
    };
    let conversion = ibc_import::convert(None, &image_vars, &opts).map_err(|e| e.to_string())?;
    let mut text = conversion.toml;
    let mut report = conversion.report.to_string();
    let live = !matches!(get("TRADING_MODE").as_deref(), Some("paper"));

    // Without TWS_PASSWORD_FILE the converter points at its default file; say so.
    if get("TWS_PASSWORD_FILE").is_none() && !credentials {
        text = text.replace(
            "password_file = \"/run/secrets/tws_password\"",
            "password_file = \"/run/secrets/tws_password\" # TWS_PASSWORD_FILE was not set",
        );
    }

    let mut extra = String::new();
    let mut gateway = Vec::new();
    if let Some(port) = get("IBWARDEN_API_PORT") {
        let n: u16 = port
            .parse()
            .map_err(|_| format!("IBWARDEN_API_PORT={port:?} is not a port number"))?;
        gateway.push(format!("api_port = {n}"));
    }
    let relay = get("IBWARDEN_RELAY_LISTEN")
        .unwrap_or_else(|| if live { "0.0.0.0:4003" } else { "0.0.0.0:4004" }.to_string());
    let health = get("IBWARDEN_HEALTH_LISTEN")
        .unwrap_or_else(|| default_of("IBWARDEN_HEALTH_LISTEN").into());
    if health != "off" {
        let _ = writeln!(extra, "\n[health]\nlisten = {}", toml_str(&health));
    }
    if relay != "off" {
        let allow = get("IBWARDEN_RELAY_ALLOW")
            .unwrap_or_else(|| default_of("IBWARDEN_RELAY_ALLOW").to_string());
        let blocks: Vec<String> = allow
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(toml_str)
            .collect();
        let _ = writeln!(
            extra,
            "\n[relay]\nlisten = {}\nallow = [{}]",
            toml_str(&relay),
            blocks.join(", ")
        );
    }
    for section in ["[health]", "[relay]"] {
        if text.lines().any(|l| l.trim() == section) {
            return Err(format!(
                "the converted config already has {section} (a bug; please report it)"
            ));
        }
    }
    if !gateway.is_empty() {
        text = insert_into_section(&text, "[gateway]", &gateway);
    }
    text.push_str(&extra);
    let _ = writeln!(
        report,
        "ibwarden's own: api port {}, relay {relay}, health {health}",
        get("IBWARDEN_API_PORT").unwrap_or_else(|| "default".into())
    );

    // It must load here, with the errors pointing at the variables, not at a file the user
    // never wrote.
    let env = ibwarden::config::Env::from_process();
    let path = Path::new("environment.toml");
    if let Err(e) = ibwarden::config::Config::from_str_with_env(&text, path, &env) {
        return Err(format!(
            "the environment does not make a valid config:\n{e}\n(the converted config was:\n{})",
            text
        ));
    }
    Ok(FromEnv { text, report })
}

/// Adds `lines` at the end of `section` (which must exist), or opens it at the end.
fn insert_into_section(text: &str, section: &str, lines: &[String]) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    let mut done = false;
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('[') && inside && !done {
            out.extend(lines.iter().cloned());
            out.push(String::new());
            done = true;
        }
        if t.starts_with('[') {
            inside = t == section;
        }
        out.push(l.to_string());
    }
    if !done {
        if !inside {
            out.push(section.to_string());
        }
        out.extend(lines.iter().cloned());
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_gnzsnz_environment_converts_with_the_relay_and_health_on() {
        let v = vars(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/home/ibwarden"),
            ("STATE_DIRECTORY", "/var/lib/ibwarden"),
            ("TWS_USERID", "jdoe123"),
            ("TWS_PASSWORD_FILE", "/run/secrets/tws_password"),
            ("TRADING_MODE", "paper"),
            ("EXISTING_SESSION_DETECTED_ACTION", "primary"),
            ("TIME_ZONE", "Europe/Zurich"),
            ("USERNAME", "someone-else"),
        ]);
        let c = from_environment(&v).expect("converts");
        assert!(c.text.contains("username = \"jdoe123\""), "{}", c.text);
        assert!(c.text.contains("trading_mode = \"paper\""), "{}", c.text);
        assert!(
            c.text
                .contains("password_file = \"/run/secrets/tws_password\""),
            "{}",
            c.text
        );
        assert!(
            c.text.contains("[relay]\nlisten = \"0.0.0.0:4004\""),
            "{}",
            c.text
        );
        assert!(
            c.text.contains("[health]\nlisten = \"0.0.0.0:9187\""),
            "{}",
            c.text
        );
        assert!(
            !c.text.contains("someone-else"),
            "generic USERNAME is not read"
        );
        assert!(
            !c.text.contains("totp"),
            "paper needs no activation code: {}",
            c.text
        );
        assert!(
            c.report.contains("EXISTING_SESSION_DETECTED_ACTION"),
            "{}",
            c.report
        );
    }

    #[test]
    fn live_reads_the_activation_code_file_and_credentials_when_present() {
        let v = vars(&[
            ("STATE_DIRECTORY", "/var/lib/ibwarden"),
            ("TWS_USERID", "jdoe123"),
            ("TWS_PASSWORD_FILE", "/run/secrets/pw"),
            ("IBWARDEN_TOTP_FILE", "/run/secrets/code"),
            ("IBWARDEN_RELAY_ALLOW", "10.1.0.0/16, 127.0.0.1"),
            ("IBWARDEN_API_PORT", "4101"),
        ]);
        let c = from_environment(&v).expect("converts");
        assert!(
            c.text.contains("totp_file = \"/run/secrets/code\""),
            "{}",
            c.text
        );
        assert!(c.text.contains("listen = \"0.0.0.0:4003\""), "{}", c.text);
        assert!(
            c.text.contains("allow = [\"10.1.0.0/16\", \"127.0.0.1\"]"),
            "{}",
            c.text
        );
        assert!(c.text.contains("api_port = 4101"), "{}", c.text);

        let mut k8s = v.clone();
        k8s.retain(|(k, _)| k != "TWS_PASSWORD_FILE");
        k8s.push((
            "CREDENTIALS_DIRECTORY".into(),
            "/run/credentials/ibwarden".into(),
        ));
        let c = from_environment(&k8s).expect("converts");
        assert!(
            c.text.contains("password_credential = \"password\""),
            "{}",
            c.text
        );
        assert!(c.text.contains("totp_credential = \"totp\""), "{}", c.text);
    }

    #[test]
    fn a_password_in_the_environment_is_refused_without_being_shown() {
        let v = vars(&[
            ("STATE_DIRECTORY", "/var/lib/ibwarden"),
            ("TWS_USERID", "jdoe123"),
            ("TWS_PASSWORD", "hunter2-secret"),
        ]);
        let e = from_environment(&v).expect_err("refused");
        assert!(e.contains("TWS_PASSWORD_FILE"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn bad_ibwarden_values_are_named() {
        let base = [
            ("STATE_DIRECTORY", "/var/lib/ibwarden"),
            ("TWS_USERID", "jdoe123"),
            ("TWS_PASSWORD_FILE", "/run/secrets/pw"),
            ("TRADING_MODE", "paper"),
        ];
        let mut v = vars(&base);
        v.push(("IBWARDEN_API_PORT".into(), "40x1".into()));
        assert!(from_environment(&v)
            .expect_err("port")
            .contains("IBWARDEN_API_PORT"));
        let mut v = vars(&base);
        v.push(("IBWARDEN_RELAY_ALLOW".into(), "10.0.0.1/8".into()));
        let e = from_environment(&v).expect_err("block");
        assert!(e.contains("relay.allow") && e.contains("10.0.0.0/8"), "{e}");
        let mut v = vars(&base);
        v.push(("IBWARDEN_RELAY_LISTEN".into(), "off".into()));
        v.push(("IBWARDEN_HEALTH_LISTEN".into(), "off".into()));
        let c = from_environment(&v).expect("off");
        assert!(
            !c.text.contains("[relay]") && !c.text.contains("[health]"),
            "{}",
            c.text
        );
    }
}
