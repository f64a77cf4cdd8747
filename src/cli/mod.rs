//! The command line: argument parsing (clap derive), logging set-up, and the mapping from
//! errors to messages and exit codes. Each subcommand is a module with an `Args` struct and
//! a `run(args) -> anyhow::Result<ExitCode>`.
//!
//! To add a subcommand: a variant in [`Command`] holding `name::Args`, a `src/cli/name.rs`,
//! and one arm in [`run`].
//!
//! Exit codes: 0 success; 1 failure (a check failed, a code was not confirmed, an IO error);
//! 2 usage error (clap); 78 (`EX_CONFIG`) the config file is invalid, so a systemd unit
//! with `RestartPreventExitStatus=78` does not restart-loop on a typo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use ibwarden::config::ConfigError;
use ibwarden::logging::{self, LogFormat};

mod check;
mod container;
mod control;
mod generate;
mod import_ibc;
mod input;
mod run;
mod secret;
mod setup;
mod totp;
mod vnc;

/// Exit code for an invalid config file (sysexits.h `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// Keeps an Interactive Brokers IB Gateway (or TWS) logged in, unattended.
#[derive(Debug, Parser)]
#[command(name = "ibwarden", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options accepted by every subcommand.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Log lines: auto (journald under systemd, human otherwise), human, journald, json.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Auto,
        hide_possible_values = true,
        hide_default_value = true,
        value_name = "FORMAT",
        help_heading = "Global options"
    )]
    log_format: LogFormat,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    verbose: u8,
}

/// The `--config FILE` / `--instance NAME` options shared by the subcommands that read a
/// config.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Config file [default: /etc/ibwarden/config.toml for root,
    /// ~/.config/ibwarden/config.toml otherwise].
    #[arg(short, long, value_name = "FILE", env = "IBWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The systemd instance ibwarden@NAME: its config /etc/ibwarden/NAME.toml, its state
    /// /var/lib/ibwarden/NAME, its control socket in /run/ibwarden/NAME and its
    /// credentials in /etc/credstore (or /etc/credstore.encrypted), as the unit sees them.
    #[arg(short, long, value_name = "NAME", conflicts_with = "config")]
    pub instance: Option<String>,
}

impl ConfigArg {
    /// The file to use: the instance's, the option, else the default location. With
    /// `--instance`, also makes the instance's directories and credentials the process's
    /// (see `ibwarden::instance`); called before any thread exists.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(name) = &self.instance {
            return Ok(ibwarden::instance::Instance::new(name)?.activate());
        }
        let path = self.default_path();
        // `--config /etc/ibwarden/NAME.toml` from a shell while the unit ibwarden@NAME has
        // its runtime directory: the same instance, so the same state, socket and
        // credentials (the unit itself has its directories set and is not affected).
        if std::env::var_os("STATE_DIRECTORY").is_none() {
            if let Some(inst) = ibwarden::instance::Instance::for_config(&path) {
                if inst.runtime_dir().is_dir() {
                    return Ok(inst.activate());
                }
            }
        }
        Ok(path)
    }

    fn default_path(&self) -> PathBuf {
        if let Some(p) = &self.config {
            return p.clone();
        }
        if nix::unistd::Uid::effective().is_root() {
            return PathBuf::from("/etc/ibwarden/config.toml");
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("ibwarden/config.toml")
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: own Xvfb, log in (password + TOTP), answer dialogs, keep it up.
    /// Ready (systemd READY=1) only after a passing TWS API handshake.
    Run(run::Args),
    /// Validate the config and the machine: secrets, activation code, java, the gateway
    /// install, Xvfb, the clock. One line per check; exits non-zero if any fails.
    Check(check::Args),
    /// Print the current Mobile Authenticator code (to compare with the phone).
    Totp(totp::Args),
    /// Interactive first-time setup: writes the config and the secret files.
    Setup(setup::Args),
    /// Manage secret files.
    #[command(subcommand)]
    Secret(secret::Command),
    /// Show the running instance's state: ready or not and why, uptime, last login, next
    /// planned restart, restart counts, failed-login budget left.
    Status(control::StatusArgs),
    /// Restart the gateway of the running instance (without a new login if its auto-restart
    /// token allows).
    Restart(control::SocketArgs),
    /// Stop the running instance: the gateway closes through its own exit path.
    Stop(control::SocketArgs),
    /// Print the TOTP code the running instance would type now (uses its loaded secret).
    TotpNow(control::SocketArgs),
    /// Save a PNG of the running instance's display.
    Screenshot(control::ScreenshotArgs),
    /// For every window of the running gateway: title, class, pid, geometry, the kind
    /// ibwarden recognised, the screen model (fields, masks, OCR words; secrets masked) and a
    /// PNG, into one directory. Attach it to a bug report about a gateway version.
    Inspect(control::InspectArgs),
    /// Let a person take over: start a loopback-only VNC server on the running instance's
    /// display and print the SSH tunnel command and a one-time password (typing pauses
    /// while they are connected). `--stop` ends it.
    Vnc(vnc::Args),
    /// The container image's entrypoint: runs a mounted /etc/ibwarden/ibwarden.toml, or
    /// a config made from the environment (the IBC images' TWS_USERID, TWS_PASSWORD_FILE,
    /// TRADING_MODE, ... and IBWARDEN_*), with the API relay and the health endpoint on.
    Container(container::Args),
    /// Convert an IBC config.ini (and/or an IBC Docker image's env file) into an ibwarden
    /// config, with a report of what mapped and what did not.
    ImportIbc(import_ibc::Args),
    /// Man pages and shell completions (for packagers).
    #[command(subcommand, hide = true)]
    Generate(generate::Command),
}

/// Parses arguments, runs the subcommand, prints any error once, returns the exit code.
pub fn main() -> ExitCode {
    // No core dumps and no ptrace by the same user: this process holds the password and the
    // activation code in memory.
    // SAFETY: prctl with PR_SET_DUMPABLE takes an integer argument and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let cli = Cli::parse();
    logging::init(cli.global.log_format, cli.global.verbose);
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args),
        Command::Totp(args) => totp::run(args),
        Command::Setup(args) => setup::run(args),
        Command::Secret(cmd) => secret::run(cmd),
        Command::Status(args) => control::status(args),
        Command::Restart(args) => control::restart(args),
        Command::Stop(args) => control::stop(args),
        Command::TotpNow(args) => control::totp_now(args),
        Command::Screenshot(args) => control::screenshot(args),
        Command::Inspect(args) => control::inspect(args),
        Command::Vnc(args) => vnc::run(args),
        Command::ImportIbc(args) => import_ibc::run(args),
        Command::Container(args) => container::run(args),
        Command::Generate(cmd) => generate::run(cmd),
    }
}

/// Prints an error (config errors one per line, others with their context chain on one
/// line) and picks the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    if let Some(cfg) = err.downcast_ref::<ConfigError>() {
        if let ConfigError::Invalid { .. } = cfg {
            eprintln!("ibwarden: invalid config:");
            eprintln!("{cfg}");
        } else {
            eprintln!("ibwarden: {cfg}");
        }
        return ExitCode::from(EXIT_CONFIG);
    }
    eprintln!("ibwarden: {err:#}");
    // A secret that cannot be used is a configuration problem too: restarting won't fix it.
    if err.chain().any(|e| e.is::<ibwarden::secret::SecretError>()) {
        return ExitCode::from(EXIT_CONFIG);
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = Cli::try_parse_from([
            "ibwarden",
            "totp",
            "--config",
            "c.toml",
            "-vv",
            "--log-format",
            "json",
        ])
        .expect("parses");
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(cli.global.log_format, LogFormat::Json);
        assert!(Cli::try_parse_from(["ibwarden", "--log-format", "xml", "check"]).is_err());
    }
}
