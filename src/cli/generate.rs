//! `ibwarden generate man|completions`: the man pages and shell completion scripts,
//! generated from the clap definition ([`super::Cli`]) so they never drift from `--help`.
//!
//! Hidden: it is for packagers. `scripts/build-deb` runs it on the freshly built binary to
//! produce `ibwarden.1` (plus `ibwarden-<subcommand>.1`) and the bash/zsh/fish completions.
//! A `build.rs` could not do this: the CLI lives in the binary crate, not in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

/// `ibwarden generate` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Man pages: ibwarden.1 on stdout, or every page (one per subcommand, and the config
    /// file's ibwarden.toml.5) into --out DIR.
    Man {
        /// Directory to write the pages to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// A shell completion script, on stdout or into --out DIR under the shell's usual name.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
        /// Directory to write the script to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let cli = super::Cli::command();
    match cmd {
        Command::Man { out: None } => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cli)
                .render(&mut buf)
                .context("cannot render the man page")?;
            std::io::stdout()
                .write_all(&buf)
                .context("cannot write to stdout")?;
        }
        Command::Man { out: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
            let page = dir.join("ibwarden.toml.5");
            std::fs::write(
                &page,
                ibwarden::config::reference_man(env!("CARGO_PKG_VERSION")),
            )
            .with_context(|| format!("cannot write {}", page.display()))?;
        }
        Command::Completions { shell, out: None } => {
            let mut cli = cli;
            clap_complete::generate(shell, &mut cli, "ibwarden", &mut std::io::stdout());
        }
        Command::Completions {
            shell,
            out: Some(dir),
        } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut cli = cli;
            let path = clap_complete::generate_to(shell, &mut cli, "ibwarden", &dir)
                .with_context(|| format!("cannot write completions to {}", dir.display()))?;
            eprintln!("Wrote {}.", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
