//! `ibwarden import-ibc [config.ini] [--env-file FILE] [--out FILE]`: converts an IBC setup
//! (its `config.ini` and/or a Docker image's env file) into an ibwarden config, with a report
//! on stderr of what mapped, what did not and why, and what needs a person. The conversion
//! itself is [`ibwarden::ibc_import`]; this module reads the files and writes the results.
//!
//! The password IBC kept in clear text goes to a chmod 600 file next to `--out`
//! (`<stem>.password`), referenced by `password_file`; it is never printed. Without `--out`
//! the config goes to stdout and the password is not written anywhere: the report says how
//! to store it with `ibwarden secret set password`. With `--systemd` the config references
//! systemd credentials and the password goes to `/etc/credstore/ibwarden-NAME-password`,
//! where `ibwarden@NAME.service` loads it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use ibwarden::config::{Config, Env};
use ibwarden::ibc_import::{self, Options};
use ibwarden::state;

/// `ibwarden import-ibc` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// IBC's config.ini.
    #[arg(
        value_name = "CONFIG_INI",
        required_unless_present_any = ["env_file", "settings_table"]
    )]
    ini: Option<PathBuf>,
    /// Print what import-ibc does with each IBC setting (a markdown table) and exit.
    #[arg(long, conflicts_with_all = ["ini", "env_file", "out"])]
    settings_table: bool,
    /// The env file of an IBC Docker image (gnzsnz/ib-gateway-docker's .env, ...); its
    /// values override config.ini's.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    /// Write the config to FILE (and the password to FILE's directory as <stem>.password,
    /// chmod 600) instead of printing the config.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write for the systemd unit ibwarden@NAME, NAME being --out's file stem: the config
    /// references systemd credentials, and the password goes to
    /// /etc/credstore/ibwarden-NAME-password (root only, chmod 600), where the unit loads it.
    #[arg(long, requires = "out")]
    systemd: bool,
    /// The credential store for --systemd.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/etc/credstore",
        hide = true
    )]
    credstore: PathBuf,
    /// Overwrite existing output files.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.settings_table {
        print!("{}", ibc_import::settings_table());
        return Ok(ExitCode::SUCCESS);
    }
    let ini_text = match &args.ini {
        Some(p) => Some(read_text(p)?),
        None => None,
    };
    let env = match &args.env_file {
        Some(p) => ibc_import::parse_env_file(&read_text(p)?, &p.display().to_string())?,
        None => Vec::new(),
    };
    let (password_file, totp_file) = match &args.out {
        Some(out) => {
            let stem = out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty())
                .context("--out needs a file name")?;
            if args.systemd {
                // The names ibwarden@.service's LoadCredential= lines look up.
                let at = |which: &str| {
                    args.credstore
                        .join(format!("ibwarden-{stem}-{which}"))
                        .display()
                        .to_string()
                };
                (at("password"), at("totp"))
            } else {
                (format!("{stem}.password"), format!("{stem}.totp"))
            }
        }
        None => ("secrets/password".to_string(), "secrets/totp".to_string()),
    };
    // The command server's token lives next to the config in both modes: it is read as a
    // file (not a credential) by the service user.
    let token_file = match &args.out {
        Some(out) => format!(
            "{}.ibc-token",
            out.file_stem().unwrap_or_default().to_string_lossy()
        ),
        None => "secrets/ibc-command-token".to_string(),
    };
    let opts = Options {
        password_file,
        totp_file,
        token_file,
        credentials: args.systemd,
        today: jiff::Zoned::now().date(),
        ini_name: args
            .ini
            .as_ref()
            .map_or_else(|| "config.ini".into(), |p| p.display().to_string()),
        env_name: args
            .env_file
            .as_ref()
            .map_or_else(|| "env".into(), |p| p.display().to_string()),
    };
    let conversion = ibc_import::convert(ini_text.as_deref(), &env, &opts)?;

    // The result must load; a failure here is a bug in the converter, not the user's.
    let check_path = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("ibwarden.toml"));
    let pinned = Env {
        state_directory: Some(PathBuf::from("/var/lib/ibwarden/import")),
        ..Env::from_process()
    };
    Config::from_str_with_env(&conversion.toml, &check_path, &pinned)
        .context("the converted config does not load (a bug in import-ibc; please report it)")?;

    eprint!("{}", conversion.report);
    match &args.out {
        None => {
            std::io::stdout()
                .write_all(conversion.toml.as_bytes())
                .context("cannot write to stdout")?;
            if conversion.password.is_some() {
                eprintln!(
                    "\nThe password from the IBC files was NOT written anywhere (no --out). Save \
                     the config, then store it with: ibwarden secret set password --config FILE"
                );
            }
            if conversion.token_needed {
                eprintln!(
                    "\nThe command server needs a token in {} (relative to the config): \
                     (umask 077; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE)",
                    opts.token_file
                );
            }
        }
        Some(out) => {
            let dir = match out.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            // Relative to the config (file mode) or absolute (credential store).
            let password_path = dir.join(&opts.password_file);
            let token_path = dir.join(&opts.token_file);
            if args.systemd && conversion.password.is_some() {
                create_private_dir(&args.credstore)?;
            }
            if !args.force {
                for p in [out, &password_path, &token_path] {
                    let written = p == out
                        || (p == &password_path && conversion.password.is_some())
                        || (p == &token_path && conversion.token_needed);
                    if p.exists() && written {
                        bail!("{} exists; use --force to overwrite it", p.display());
                    }
                }
            }
            write_config(out, &conversion.toml)?;
            eprintln!("\nWrote {}.", out.display());
            if let Some(password) = &conversion.password {
                let mut bytes = password.expose().as_bytes().to_vec();
                bytes.push(b'\n');
                let written = state::write_atomic(&password_path, &bytes);
                zeroize::Zeroize::zeroize(&mut bytes);
                written.with_context(|| {
                    format!("cannot write the password file {}", password_path.display())
                })?;
                eprintln!(
                    "Wrote the password to {} (chmod 600).",
                    password_path.display()
                );
                if args.systemd {
                    eprintln!(
                        "ibwarden@{} loads it as the credential \"password\" (LoadCredential=).",
                        out.file_stem().unwrap_or_default().to_string_lossy()
                    );
                } else if nix::unistd::Uid::effective().is_root() {
                    eprintln!(
                        "It is owned by root: for the systemd unit run `chown ibwarden: {}` (or \
                         move it into a credential, see ibwarden@.service).",
                        password_path.display()
                    );
                }
            }
            if conversion.token_needed {
                let mut token = random_token()?;
                token.push('\n');
                let written = state::write_atomic(&token_path, token.as_bytes());
                zeroize::Zeroize::zeroize(&mut token);
                written.with_context(|| {
                    format!(
                        "cannot write the command-server token {}",
                        token_path.display()
                    )
                })?;
                eprintln!(
                    "Wrote a random IBC command-server token to {} (chmod 600); clients send \
                     `AUTH <token>` first.",
                    token_path.display()
                );
            }
            let stem = out.file_stem().unwrap_or_default().to_string_lossy();
            if args.systemd && out.parent() == Some(std::path::Path::new("/etc/ibwarden")) {
                // What the unit ibwarden@STEM will see: its config, credentials and state.
                eprintln!("Next: ibwarden check --instance {stem}");
            } else {
                eprintln!("Next: ibwarden check --config {}", out.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// 128 random bits from the kernel, as 32 hex digits.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the command-server token")?;
    let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
    zeroize::Zeroize::zeroize(&mut bytes);
    Ok(token)
}

/// Reads a text file; IBC's ini is read by Java as ISO-8859-1, so bytes that are not UTF-8
/// are taken as Latin-1 rather than refused.
fn read_text(path: &Path) -> anyhow::Result<String> {
    // IBC's config.ini is a few KiB; 1 MiB is far beyond any real one.
    let bytes = ibwarden::state::read_regular_file_following(path, 1024 * 1024)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    })
}

/// Creates a directory readable by its owner only (the credential store), if missing.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes the config (not secret: 0644 so the service user can read it) via a temp file.
fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
