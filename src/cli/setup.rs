//! `ibwarden setup`: first-time set-up in a terminal (or from a pipe, one answer per line).
//!
//! Asks for the trading mode, the username, the password (no echo), the activation code in
//! live mode (no echo), and the install directory; writes the secret files and then the
//! config (mode 0600, atomically, so the config never names a missing file); re-reads both
//! the way the daemon will; and finally shows the current code and asks the person to
//! compare it with their authenticator app.
//!
//! Secret files are written next to the config as `<stem>.password` and `<stem>.totp` and
//! referenced by relative path (relative paths in the config are relative to its directory).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use ibwarden::config::{Config, TradingMode};
use ibwarden::secret::{Secret, Secrets};
use ibwarden::state;
use ibwarden::totp::{self, ActivationCode};

use super::input::Prompter;
use super::ConfigArg;

/// `ibwarden setup` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Replace an existing config file without asking.
    #[arg(long)]
    force: bool,
}

/// How many times a person at a terminal may retry a rejected answer.
const ATTEMPTS: usize = 3;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.config.path()?;
    let mut ask = Prompter::new();
    eprintln!("ibwarden setup: writes {}", path.display());
    if path.exists() && !args.force {
        let replace = ask.confirm(
            &format!(
                "{} exists. Replace it (and its secret files)?",
                path.display()
            ),
            false,
        )?;
        if !replace {
            eprintln!("Nothing written.");
            return Ok(ExitCode::FAILURE);
        }
    }

    let mode = retry(&mut ask, |ask| {
        match ask
            .line("Trading mode, live or paper", Some("live"))?
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "live" => Ok(TradingMode::Live),
            "paper" => Ok(TradingMode::Paper),
            _ => bail!("answer live or paper"),
        }
    })?;
    let username = retry(&mut ask, |ask| {
        let u = ask.line("IBKR username", None)?;
        if u.is_empty() || u.chars().any(char::is_control) {
            bail!("the username cannot be empty");
        }
        Ok(u)
    })?;
    let password = retry(&mut ask, |ask| {
        let p = ask.secret("IBKR password (not shown)")?;
        if p.is_empty() {
            bail!("the password cannot be empty");
        }
        // Asked from a pipe too: a script answers the same questions a person does.
        let again = ask.secret("Password again")?;
        if again.expose() != p.expose() {
            bail!("the two passwords differ");
        }
        Ok(p)
    })?;
    let code = if mode == TradingMode::Live {
        eprintln!(
            "The activation code is the long base32 secret IBKR shows under the QR code when you \
             enrol the Mobile Authenticator app (e.g. \"ABCD EFGH IJKL ...\"), not a 6-digit code."
        );
        Some(retry(&mut ask, |ask| {
            let raw = ask.secret("Activation code (not shown)")?;
            Ok(ActivationCode::parse(raw.expose())?)
        })?)
    } else {
        None
    };
    let install_dir = ask.line(
        "Gateway install directory (empty: find it in ~/Jts/ibgateway or /opt/ibgateway)",
        None,
    )?;
    // Looked for now, as `run` will; not finding it is said, not refused (the gateway may
    // be installed after setup).
    let query = ibwarden::gateway::install::InstallQuery {
        program: Some(ibwarden::core::Program::Gateway),
        install_dir: (!install_dir.trim().is_empty()).then(|| PathBuf::from(install_dir.trim())),
        home: std::env::var_os("HOME").map(PathBuf::from),
        path_env: std::env::var_os("PATH"),
        ..Default::default()
    };
    match ibwarden::gateway::install::discover(&query) {
        Ok(found) => eprintln!("Found the gateway in {}.", found.dir.display()),
        Err(e) => eprintln!(
            "Note: {e}. The config is written anyway; install IB Gateway there (or fix \
             gateway.install_dir) before `ibwarden run`."
        ),
    }

    let files = Files::for_config(&path);
    // A config switched to paper must not leave the live activation code behind.
    if code.is_none() && files.totp.exists() {
        std::fs::remove_file(&files.totp)
            .with_context(|| format!("cannot remove the old {}", files.totp.display()))?;
        eprintln!(
            "Removed {} (paper mode needs no activation code).",
            files.totp.display()
        );
    }
    write_files(
        &files,
        mode,
        &username,
        &password,
        code.as_ref(),
        &install_dir,
    )?;
    drop(password);

    // Read everything back the way `ibwarden run` will.
    let config = Config::load(&path)?;
    let secrets = Secrets::load(&config).context("reading back the secret files")?;
    eprintln!(
        "Wrote {} and {}{}.",
        path.display(),
        files.password.display(),
        if code.is_some() {
            format!(" and {}", files.totp.display())
        } else {
            String::new()
        }
    );

    if let Some(code) = &secrets.totp {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs();
        let step = totp::step_at(now);
        eprintln!(
            "Current code: {}  (valid for {} s)",
            code.code_at_step(step).expose(),
            totp::remaining_secs(now)
        );
        let same = ask.confirm(
            "Does your authenticator app show the same code (or the next one)?",
            false,
        )?;
        if !same {
            eprintln!(
                "The codes differ. Either the activation code is not the one your app was \
                 enrolled with (re-enter it: ibwarden secret set totp --config {}), or this \
                 machine's clock is off (ibwarden check --config {} reports it).",
                path.display(),
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    }
    eprintln!("Done. Next: ibwarden check --config {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` until it succeeds; at a terminal up to [`ATTEMPTS`] times (printing why an
/// answer was rejected), from a pipe once.
fn retry<T>(
    ask: &mut Prompter,
    mut f: impl FnMut(&mut Prompter) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let attempts = if ask.is_terminal() { ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        match f(ask) {
            Ok(t) => return Ok(t),
            Err(e) => {
                if ask.is_terminal() {
                    eprintln!("{e:#}");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no answer")))
}

/// The files setup writes.
struct Files {
    config: PathBuf,
    password: PathBuf,
    totp: PathBuf,
}

impl Files {
    fn for_config(config: &Path) -> Files {
        let stem = config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "config".into());
        Files {
            config: config.to_path_buf(),
            password: config.with_file_name(format!("{stem}.password")),
            totp: config.with_file_name(format!("{stem}.totp")),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes the secrets, then the config that names them.
fn write_files(
    files: &Files,
    mode: TradingMode,
    username: &str,
    password: &Secret,
    code: Option<&ActivationCode>,
    install_dir: &str,
) -> anyhow::Result<()> {
    let dir = match files.config.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        state::create_private_dir(&dir)?;
    }
    let mut pw = password.expose().as_bytes().to_vec();
    pw.push(b'\n');
    let written = state::write_atomic(&files.password, &pw);
    zeroize::Zeroize::zeroize(&mut pw);
    written?;
    if let Some(code) = code {
        let mut text = code.to_base32().expose().as_bytes().to_vec();
        text.push(b'\n');
        let written = state::write_atomic(&files.totp, &text);
        zeroize::Zeroize::zeroize(&mut text);
        written?;
    }
    let config = config_text(
        mode,
        username,
        &file_name(&files.password),
        code.map(|_| file_name(&files.totp)).as_deref(),
        install_dir,
    );
    state::write_atomic(&files.config, config.as_bytes())?;
    Ok(())
}

/// The config file setup writes: only what was asked, the rest documented as defaults.
fn config_text(
    mode: TradingMode,
    username: &str,
    password_file: &str,
    totp_file: Option<&str>,
    install_dir: &str,
) -> String {
    let mut t = String::new();
    t.push_str(
        "# ibwarden config, written by `ibwarden setup`.\n\
         # Every key, with its default and meaning: config.toml.example.\n\
         # Relative paths are relative to this file's directory.\n\n\
         [gateway]\n\
         program = \"gateway\"\n",
    );
    let _ = writeln!(t, "trading_mode = {}", toml_string(mode.as_str()));
    if install_dir.is_empty() {
        t.push_str(
            "# install_dir: found automatically (~/Jts/ibgateway/<newest>, /opt/ibgateway)\n",
        );
    } else {
        let _ = writeln!(t, "install_dir = {}", toml_string(install_dir));
    }
    t.push_str("\n[account]\n");
    let _ = writeln!(t, "username = {}", toml_string(username));
    let _ = writeln!(t, "password_file = {}", toml_string(password_file));
    if let Some(f) = totp_file {
        let _ = writeln!(t, "totp_file = {}", toml_string(f));
    }
    t
}

/// A TOML basic string with the necessary escapes.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
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

    #[test]
    fn written_config_parses() {
        let text = config_text(
            TradingMode::Live,
            "j\"doe\\x",
            "c.password",
            Some("c.totp"),
            "/opt/ib gw",
        );
        let c = Config::from_str(&text, Path::new("/etc/ibwarden/c.toml")).expect(&text);
        assert_eq!(c.account.username, "j\"doe\\x");
        assert_eq!(c.gateway.install_dir, Some(PathBuf::from("/opt/ib gw")));
        let text = config_text(TradingMode::Paper, "u", "c.password", None, "");
        let c = Config::from_str(&text, Path::new("/etc/ibwarden/c.toml")).expect(&text);
        assert_eq!(c.gateway.trading_mode, TradingMode::Paper);
        assert!(c.account.totp.is_none());
    }

    #[test]
    fn file_names_follow_the_config() {
        let f = Files::for_config(Path::new("/etc/ibwarden/main.toml"));
        assert_eq!(f.password, PathBuf::from("/etc/ibwarden/main.password"));
        assert_eq!(f.totp, PathBuf::from("/etc/ibwarden/main.totp"));
    }
}
