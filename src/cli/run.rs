//! `ibwarden run`: the main job. Starts the gateway on its own display, logs in, keeps it
//! logged in, and reports ready (systemd `READY=1`) only after a passing API handshake.

use std::process::ExitCode;

use anyhow::Context;

use ibwarden::config::Config;
use ibwarden::driver::{self, RunOptions};
use ibwarden::secret::Secrets;

use super::ConfigArg;

/// Arguments of `ibwarden run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    config: ConfigArg,
}

/// Loads the config and the secrets, then runs the supervisor until it is stopped.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Whatever ibwarden, Xvfb and the gateway create (state, settings, logs, screenshots)
    // is the account's business only, whatever umask the shell or unit had.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let path = args.config.path()?;
    run_config(&path)
}

/// Runs the supervisor for the config file at `path` (`run`, and `container` once it has
/// its config).
pub fn run_config(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let config = Config::load(path)?;
    for w in &config.warnings {
        tracing::warn!(warning = %w.display_with(&config.path), "config");
    }
    let secrets = Secrets::load(&config).context("cannot load the secrets")?;
    // Drop `*_env` secrets from our own environment before any thread or child exists.
    ibwarden::secret::scrub_environment(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ibwarden")
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(driver::run(RunOptions {
        config,
        secrets,
        status: None,
    }))?;
    // Every adapter has stopped; no thread but this one may remain for an exec.
    drop(runtime);
    driver::exec_if_requested().context("cannot start the upgraded ibwarden")?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
