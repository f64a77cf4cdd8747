//! `ibwarden totp`: the "can I log in" drill. Prints the current 6-digit code on the first
//! line of stdout and how long it stays valid on the second, so a person can compare it with
//! the code their Mobile Authenticator app shows. `--at` computes the code for another time.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use ibwarden::config::Config;
use ibwarden::secret;
use ibwarden::totp;

use super::ConfigArg;

/// `ibwarden totp` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
    /// Compute the code for this time (Unix seconds) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.config.path()?;
    let config = Config::load(&path)?;
    let Some(source) = &config.account.totp else {
        bail!(
            "{}: no activation code configured (account.totp_file, totp_credential or totp_env); \
             paper accounts have no second factor",
            path.display()
        );
    };
    let code = secret::load_activation_code(source)?;
    let now = match args.at {
        Some(t) => t,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the system clock is before 1970")?
            .as_secs(),
    };
    let step = totp::step_at(now);
    let left = totp::remaining_secs(now);
    // The code itself is the purpose of this command; it is valid for at most 30 s.
    println!("{}", code.code_at_step(step).expose());
    let until = jiff::Timestamp::from_second(i64::try_from(now + left).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_default();
    println!("valid for {left} s (step {step}, until {until})");
    Ok(ExitCode::SUCCESS)
}
