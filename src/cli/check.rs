//! `ibwarden check`: is this config, on this machine, ready to run? One line per check
//! (`ok`, `warn` or `FAIL` and a detail). Exit status 78 (`EX_CONFIG`, as `run`) if the
//! config or a secret is unusable, else 1 if another check failed.
//!
//! Checks: the config (every error); the secret files (password, activation code, webhook
//! URL, IBC command token: present, private, non-empty); the activation code (valid
//! base32); the gateway install; java; memory for the JVM's heap; Xvfb (with `display.mode = "xvfb"`); the state
//! directory; and the system clock.
//!
//! The clock: TOTP codes depend on the time, and a drifting clock is the most common cause
//! of rejected codes. The kernel knows whether an NTP daemon disciplines the clock
//! (`adjtimex`: `STA_UNSYNC` clear, no `TIME_ERROR`). An unsynchronised clock is a `warn`,
//! not a `FAIL`: containers and some VMs never see the flag cleared even though their host's
//! clock is fine, and `ibwarden totp` compared with the phone is the decisive test. A
//! synchronised clock with an estimated offset over 5 s is a `FAIL` (codes would be
//! rejected).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ibwarden::config::{Config, DisplayMode, Java, Program, TradingMode};
use ibwarden::gateway::install::{self, InstallQuery};
use ibwarden::secret::{self, SecretSource};

use super::ConfigArg;

/// `ibwarden check` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

/// Result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// Prints check lines and remembers whether any failed, and whether a failure is the
/// config's or a secret's (which `run` would refuse with 78 too).
struct Report {
    failed: bool,
    config_failed: bool,
}

/// The checks whose failure is a configuration error (exit 78, like `run`).
const CONFIG_CHECKS: &[&str] = &[
    "config",
    "password",
    "activation code",
    "webhook url",
    "ibc command token",
];

impl Report {
    fn line(&mut self, status: Status, name: &str, detail: impl std::fmt::Display) {
        if status == Status::Fail {
            self.failed = true;
            self.config_failed |= CONFIG_CHECKS.contains(&name);
        }
        println!("{:<4} {name}: {detail}", status.word());
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.config.path()?;
    let mut report = Report {
        failed: false,
        config_failed: false,
    };
    match Config::load(&path) {
        Ok(config) => {
            report.line(
                Status::Ok,
                "config",
                format!(
                    "{} ({}, {} mode, API port {})",
                    path.display(),
                    config.gateway.program.as_str(),
                    config.gateway.trading_mode.as_str(),
                    config.gateway.api_port
                ),
            );
            for w in &config.warnings {
                report.line(Status::Warn, "config", w);
            }
            check_secrets(&mut report, &config);
            check_other_secret_files(&mut report, &config);
            check_install(&mut report, &config);
            check_display(&mut report, &config);
            check_state_dir(&mut report, &config.state.dir);
            check_settings_dir(&mut report, &config);
        }
        Err(err) => {
            let diags = err.diagnostics();
            if diags.is_empty() {
                report.line(Status::Fail, "config", &err);
            }
            for d in diags {
                report.line(Status::Fail, "config", d);
            }
        }
    }
    let (status, detail) = clock_status();
    report.line(status, "clock", detail);
    Ok(if report.config_failed {
        ExitCode::from(super::EXIT_CONFIG)
    } else if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn check_secrets(report: &mut Report, config: &Config) {
    let account = &config.account;
    match check_source(&account.password) {
        Ok(detail) => report.line(Status::Ok, "password", detail),
        Err(e) => report.line(Status::Fail, "password", e),
    }
    match &account.totp {
        Some(source) => match secret::load_activation_code(source) {
            Ok(code) => report.line(
                Status::Ok,
                "activation code",
                format!("{source}: valid base32, {}-bit key", code.key_len() * 8),
            ),
            Err(e) => report.line(Status::Fail, "activation code", e),
        },
        None if config.gateway.trading_mode == TradingMode::Paper => {
            report.line(Status::Ok, "activation code", "not needed in paper mode")
        }
        None => report.line(
            Status::Ok,
            "activation code",
            format!(
                "not configured (second factor: {})",
                config.login.second_factor.label()
            ),
        ),
    }
}

/// The other secret files a config may name (webhook URL, IBC command token): present,
/// private, non-empty.
fn check_other_secret_files(report: &mut Report, config: &Config) {
    let files = [
        ("webhook url", config.notify.webhook_url_file.as_ref()),
        (
            "ibc command token",
            config.control.ibc_command_auth_file.as_ref(),
        ),
    ];
    for (name, file) in files {
        if let Some(path) = file {
            match check_source(&SecretSource::File(path.clone())) {
                Ok(detail) => report.line(Status::Ok, name, detail),
                Err(e) => report.line(Status::Fail, name, e),
            }
        }
    }
}

/// Loads a secret to prove it is readable and non-empty; describes the source, not the value.
fn check_source(source: &SecretSource) -> Result<String, secret::SecretError> {
    let value = source.load()?;
    drop(value);
    Ok(match source {
        SecretSource::File(p) => format!("file {} (private)", p.display()),
        other => other.to_string(),
    })
}

fn gateway_program(p: Program) -> install::Program {
    match p {
        Program::Gateway => install::Program::Gateway,
        Program::Tws => install::Program::Tws,
    }
}

/// Memory for the JVM's heap and native overhead (a warning: the estimate is rough, and
/// memory that is short now may be free later).
fn check_memory(report: &mut Report, jvm_options: &[String]) {
    use ibwarden::gateway::memory;
    match memory::Available::read() {
        Some(available) => {
            let verdict = memory::assess(jvm_options.iter().map(String::as_str), &available);
            let status = if verdict.enough() {
                Status::Ok
            } else {
                Status::Warn
            };
            report.line(status, "memory", verdict);
        }
        None => report.line(Status::Warn, "memory", "cannot read the machine's memory"),
    }
}

/// `program = "clientportal"`: the install (bin/run.sh, the port in root/conf.yaml) and
/// Chromium for the login page.
fn check_client_portal(report: &mut Report, config: &Config) {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match ibwarden::clientportal::install::discover(
        config.gateway.install_dir.as_deref(),
        home.as_deref(),
    ) {
        Ok(i) => report.line(
            Status::Ok,
            "client portal gateway",
            format!(
                "{} (port {}, {})",
                i.dir.display(),
                i.port,
                if i.ssl { "https" } else { "http" }
            ),
        ),
        Err(e) => report.line(Status::Fail, "client portal gateway", e),
    }
    match ibwarden::clientportal::browser::find_chromium(std::env::var_os("PATH").as_deref()) {
        Some(p) => {
            report.line(Status::Ok, "chromium", p.display().to_string());
            match ibwarden::clientportal::browser::sandbox_blocker(&p) {
                None => report.line(Status::Ok, "chromium sandbox", "available"),
                Some(why) => report.line(
                    Status::Warn,
                    "chromium sandbox",
                    format!("off (--no-sandbox): {why}"),
                ),
            }
        }
        None => report.line(
            Status::Fail,
            "chromium",
            "not found on PATH (Debian: apt-get install chromium)",
        ),
    }
}

fn check_install(report: &mut Report, config: &Config) {
    if config.gateway.client_portal {
        check_client_portal(report, config);
        return;
    }
    let g = &config.gateway;
    let program = gateway_program(g.program);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path_env = std::env::var_os("PATH");
    let configured_java = match &g.java {
        Java::Auto => None,
        Java::Path(p) => Some(p.clone()),
    };
    // `discover` searches the install first and then java. Hand it an executable we know
    // exists (ourselves) as the java so this line is about the install only; java gets its
    // own line below.
    let query = InstallQuery {
        program: Some(program),
        install_dir: g.install_dir.clone(),
        java: std::env::current_exe().ok(),
        home,
        path_env: path_env.clone(),
    };
    let mut jvm_options = Vec::new();
    let install_dir = match install::discover(&query) {
        Ok(found) => {
            report.line(
                Status::Ok,
                "install",
                format!("{} ({})", found.dir.display(), found.vmoptions.display()),
            );
            if let Ok(inputs) = ibwarden::gateway::read_inputs(&found) {
                jvm_options = inputs.vm_options;
            }
            Some(found.dir)
        }
        Err(e) => {
            report.line(Status::Fail, "install", e);
            None
        }
    };
    // The config's jvm_args come after the .vmoptions file's on the command line.
    jvm_options.extend(g.jvm_args.iter().cloned());
    check_memory(report, &jvm_options);
    // Without an install only a configured java or java on PATH can be found.
    let dir = install_dir.clone().unwrap_or_default();
    match install::find_java(&dir, configured_java.as_deref(), path_env.as_deref()) {
        Ok((java, source)) => {
            let version = install::java_major_version(&java)
                .map(|v| format!(", Java {v}"))
                .unwrap_or_default();
            let source = match source {
                install::JavaSource::Configured => "configured",
                install::JavaSource::Bundled => "bundled with the install",
                install::JavaSource::InstallerRecord => "recorded by the installer",
                install::JavaSource::Path => "from PATH",
            };
            report.line(
                Status::Ok,
                "java",
                format!("{} ({source}{version})", java.display()),
            )
        }
        Err(e) => report.line(Status::Fail, "java", e),
    }
}

fn check_display(report: &mut Report, config: &Config) {
    if config.gateway.client_portal {
        return; // no display: the login runs in headless Chromium
    }
    match config.display.mode {
        DisplayMode::Xvfb => match find_on_path("Xvfb", std::env::var_os("PATH")) {
            Some(p) => report.line(
                Status::Ok,
                "Xvfb",
                format!("{} ({})", p.display(), config.display.geometry),
            ),
            None => report.line(
                Status::Fail,
                "Xvfb",
                "not found on PATH (Debian/Ubuntu: apt-get install xvfb)",
            ),
        },
        DisplayMode::Existing => report.line(
            Status::Ok,
            "display",
            format!(
                "existing display {}",
                config.display.display.as_deref().unwrap_or("?")
            ),
        ),
    }
}

fn check_state_dir(report: &mut Report, dir: &Path) {
    use nix::unistd::{access, AccessFlags};
    if dir.is_dir() {
        match access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
            Ok(()) => report.line(Status::Ok, "state dir", dir.display()),
            Err(e) => report.line(
                Status::Fail,
                "state dir",
                format!("{} is not writable: {e}", dir.display()),
            ),
        }
    } else if dir.exists() {
        report.line(
            Status::Fail,
            "state dir",
            format!("{} exists and is not a directory", dir.display()),
        );
    } else {
        report.line(
            Status::Ok,
            "state dir",
            format!("{} (will be created)", dir.display()),
        );
    }
}

/// The gateway's settings dir. The default (inside the state dir) appears on the first
/// run; a configured one that is missing is more often a typo, which would start the
/// gateway with fresh settings (no jts.ini, no TrustedIPs) instead of the user's.
fn check_settings_dir(report: &mut Report, config: &Config) {
    let dir = &config.gateway.settings_dir;
    if dir.is_dir() {
        report.line(Status::Ok, "settings dir", dir.display());
    } else if dir.exists() {
        report.line(
            Status::Fail,
            "settings dir",
            format!("{} exists and is not a directory", dir.display()),
        );
    } else if dir.starts_with(&config.state.dir) {
        report.line(
            Status::Ok,
            "settings dir",
            format!("{} (will be created)", dir.display()),
        );
    } else {
        report.line(
            Status::Warn,
            "settings dir",
            format!(
                "{} does not exist: ibwarden will create it and the gateway will start there \
                 with fresh settings; check gateway.settings_dir for a typo",
                dir.display()
            ),
        );
    }
}

fn find_on_path(name: &str, path: Option<OsString>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(&path?)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Reads the kernel's clock discipline state.
fn clock_status() -> (Status, String) {
    // SAFETY: adjtimex with `modes = 0` only reads; `timex` is plain data and zero is a
    // valid value for every field.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    let errno = std::io::Error::last_os_error();
    classify_clock(state, tx.status, tx.offset as i64, &errno)
}

/// Turns `adjtimex`'s answer into a check line (pure, for tests).
fn classify_clock(
    state: i32,
    status: i32,
    offset: i64,
    errno: &std::io::Error,
) -> (Status, String) {
    const ADVICE: &str = "TOTP codes depend on the time: run an NTP client (systemd-timesyncd, \
                          chrony) and compare `ibwarden totp` with your phone";
    if state < 0 {
        return (
            Status::Warn,
            format!("cannot read the kernel clock state ({errno}); {ADVICE}"),
        );
    }
    if state == libc::TIME_ERROR || status & libc::STA_UNSYNC != 0 {
        return (
            Status::Warn,
            format!("the kernel reports the clock as not NTP-synchronised; {ADVICE}"),
        );
    }
    // `offset` is in nanoseconds with STA_NANO, else microseconds.
    let offset_us = if status & libc::STA_NANO != 0 {
        offset / 1000
    } else {
        offset
    };
    let offset_ms = offset_us / 1000;
    if offset_us.abs() > 5_000_000 {
        return (
            Status::Fail,
            format!("NTP-synchronised but {offset_ms} ms off; codes would be rejected"),
        );
    }
    (
        Status::Ok,
        format!("NTP-synchronised (offset {offset_ms} ms)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_classification() {
        let e = std::io::Error::from_raw_os_error(1);
        assert_eq!(classify_clock(0, 0, 1500, &e).0, Status::Ok);
        assert_eq!(classify_clock(libc::TIME_ERROR, 0, 0, &e).0, Status::Warn);
        assert_eq!(classify_clock(0, libc::STA_UNSYNC, 0, &e).0, Status::Warn);
        assert_eq!(classify_clock(-1, 0, 0, &e).0, Status::Warn);
        assert_eq!(classify_clock(0, 0, 6_000_000, &e).0, Status::Fail);
        // With STA_NANO the same number is 1000 times smaller.
        assert_eq!(
            classify_clock(0, libc::STA_NANO, 6_000_000, &e).0,
            Status::Ok
        );
        assert!(classify_clock(0, libc::STA_UNSYNC, 0, &e)
            .1
            .contains("ibwarden totp"));
    }
}
