//! `ibwarden secret set password|totp`: replace one secret file atomically, e.g. after a
//! password change or a re-enrolment of the authenticator app. The new value is read from
//! the terminal without echo, or as one line from stdin.
//!
//! Only `*_file` sources can be written; for a systemd credential or an environment
//! variable the error says where the value lives instead.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use ibwarden::config::Config;
use ibwarden::secret::{Secret, SecretSource};
use ibwarden::state;
use ibwarden::totp::{self, ActivationCode};

use super::input::Prompter;
use super::ConfigArg;

/// `ibwarden secret` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replace the password or the activation code in its secret file.
    Set(SetArgs),
}

/// Which secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The IBKR password (account.password_file).
    Password,
    /// The Mobile Authenticator activation code (account.totp_file).
    Totp,
}

/// `ibwarden secret set` options.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The secret to replace.
    #[arg(value_enum)]
    which: Which,
    #[command(flatten)]
    config: ConfigArg,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Set(args) => set(args),
    }
}

fn set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.path()?;
    let config = Config::load(&path)?;
    let (key, source) = match args.which {
        Which::Password => ("password", Some(&config.account.password)),
        Which::Totp => ("totp", config.account.totp.as_ref()),
    };
    let instance = ibwarden::instance::active();
    let file = match source {
        Some(SecretSource::File(f)) => f.clone(),
        // `--instance NAME` from a root shell: the credstore file the unit loads.
        Some(SecretSource::Credential(name))
            if instance.is_some() && std::env::var_os("CREDENTIALS_DIRECTORY").is_none() =>
        {
            let inst = instance.context("the instance")?;
            let [plain, encrypted] = inst.credential_paths(name);
            if encrypted.exists() && !plain.exists() {
                bail!(
                    "the {key} is the encrypted credential {}; replace it with \
                     `systemd-creds encrypt --name={name} - {}` (reads the value on stdin)",
                    encrypted.display(),
                    encrypted.display()
                );
            }
            if let Some(dir) = plain.parent() {
                state::create_private_dir(dir)?;
            }
            plain
        }
        Some(other) => bail!(
            "{}: the {key} comes from the {other}, not a file; update it there (or switch the \
             config to {key}_file)",
            path.display()
        ),
        None => bail!(
            "{}: no {key}_file in [account]; add `{key}_file = \"...\"` first",
            path.display()
        ),
    };
    let mut ask = Prompter::new();
    let mut content: Vec<u8> = match args.which {
        Which::Password => {
            let p = ask.secret("New IBKR password (not shown)")?;
            if p.is_empty() {
                bail!("the password cannot be empty; nothing written");
            }
            if ask.is_terminal() {
                let again = ask.secret("Again")?;
                if again.expose() != p.expose() {
                    bail!("the two passwords differ; nothing written");
                }
            }
            p.expose().as_bytes().to_vec()
        }
        Which::Totp => {
            let raw: Secret = ask.secret("New activation code (not shown)")?;
            let code = ActivationCode::parse(raw.expose()).context("nothing written")?;
            show_code(&code)?;
            code.to_base32().expose().as_bytes().to_vec()
        }
    };
    content.push(b'\n');
    let written = state::write_atomic(&file, &content);
    zeroize::Zeroize::zeroize(&mut content);
    written?;
    eprintln!("Replaced {}.", file.display());
    if key == "password" {
        // A new password lifts the "IBKR rejected the password" stop (persisted so that no
        // restart retries a wrong password).
        let dir = &config.state.dir;
        if let Ok(mut st) = state::PersistedState::load(dir) {
            if st.credentials_rejected.take().is_some() {
                st.save(dir)?;
                eprintln!(
                    "Logins were stopped after IBKR rejected the old password; run `ibwarden \
                     restart` to log in with the new one."
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the current code of a new activation code so the person can compare.
fn show_code(code: &ActivationCode) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    eprintln!(
        "Current code for it: {} (valid for {} s); it should match your authenticator app.",
        code.code_at(now).expose(),
        totp::remaining_secs(now)
    );
    Ok(())
}
