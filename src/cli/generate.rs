//! `ibwarden generate man|completions`: the man pages and shell completion scripts,
//! generated from the clap definition ([`super::Cli`]) so they never drift from `--help`.
//!
//! Hidden: it is for packagers. `scripts/build-deb` runs it on the freshly built binary to
//! produce `ibwarden.1` (plus `ibwarden-<subcommand>.1`), `ibwarden.toml.5` and the
//! bash/zsh/fish completions. A `build.rs` could not do this: the CLI lives in the binary
//! crate, not in the library.
//!
//! `ibwarden.1` is clap_mangen's page plus what the options cannot say: CONFIGURATION (each
//! section's keys and defaults, from the config key table), EXIT STATUS (from the exit-code
//! constants), ENVIRONMENT, FILES (the paths `--instance` and the packaged unit use) and SEE
//! ALSO. The unit tests below hold those sections to the code.

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
            std::io::stdout()
                .write_all(main_page(cli)?.as_bytes())
                .context("cannot write to stdout")?;
        }
        Command::Man { out: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cli.clone(), &dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
            // clap_mangen's ibwarden.1 gives way to the one with the sections below.
            for (name, text) in [
                ("ibwarden.1", main_page(cli)?),
                (
                    "ibwarden.toml.5",
                    ibwarden::config::reference_man(env!("CARGO_PKG_VERSION")),
                ),
            ] {
                let page = dir.join(name);
                std::fs::write(&page, text)
                    .with_context(|| format!("cannot write {}", page.display()))?;
            }
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

/// `ibwarden.1`: clap_mangen's rendering of the CLI (without the `help` pseudo-subcommand,
/// which has no page, as in `clap_mangen::generate_to`), with [`sections`] before VERSION.
fn main_page(cli: clap::Command) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cli.disable_help_subcommand(true))
        .render(&mut buf)
        .context("cannot render the man page")?;
    let mut page = String::from_utf8(buf).context("the man page is not UTF-8")?;
    let at = page.find("\n.SH VERSION\n").map_or(page.len(), |i| i + 1);
    page.insert_str(at, &sections());
    Ok(page)
}

/// CONFIGURATION, EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO of `ibwarden.1` (roff).
fn sections() -> String {
    use ibwarden::driver::exit;
    let usage = clap::error::ErrorKind::UnknownArgument;
    let usage = super::Cli::command().error(usage, "").exit_code();
    // No hyphenation from here: a path broken at "ibwar-den" is copied wrong.
    let mut s = String::from(".nh\n");
    s.push_str(
        ".SH CONFIGURATION\n\
         One TOML file per gateway: \\fB\\-\\-config\\fR FILE, \\fB\\-\\-instance\\fR NAME \
         (\\fI/etc/ibwarden/NAME.toml\\fR), $IBWARDEN_CONFIG, else the default under FILES. \
         Unknown keys, wrong types and values out of range are refused with the file, line \
         and key; \\fBibwarden check\\fR validates a file without starting anything, and a \
         SIGHUP makes \\fBibwarden run\\fR read it again and apply what can change while it \
         runs. Secrets are never values in the file: it names the files, systemd credentials \
         or environment variables that hold them.\n\
         .P\n\
         The sections and their keys, with their defaults; \\fBibwarden.toml\\fR(5) has each \
         key's meaning, type and range:\n",
    );
    s.push_str(&ibwarden::config::summary_man());
    s.push_str(&format!(
        ".SH \"EXIT STATUS\"\n\
         .TP\n.B {ok}\n\
         Success. For \\fBrun\\fR: stopped on request (SIGTERM, SIGINT, \\fBibwarden stop\\fR, \
         \\fBschedule.closedown\\fR), after the gateway was closed through its own window.\n\
         .TP\n.B {failure}\n\
         Failure: a check failed (\\fBcheck\\fR), the running instance could not be reached \
         or gave an unexpected reply, an input or output error. For \\fBrun\\fR: a runtime \
         failure it cannot recover from, such as another ibwarden holding the control socket, \
         a state directory that cannot be created, or state that cannot be saved.\n\
         .TP\n.B {usage}\n\
         Usage error: an unknown option or subcommand, a missing or malformed argument.\n\
         .TP\n.B {config}\n\
         The configuration is unusable (EX_CONFIG): the config file cannot be read or is \
         invalid, or a secret cannot be read. For \\fBrun\\fR also: the gateway install is \
         unusable, the state file is refused, or \\fBcontrol.ibc_command_auth_file\\fR cannot \
         be read. For \\fBcheck\\fR: a config or secret check failed. The packaged unit sets \
         \\fBRestartPreventExitStatus={config}\\fR: restarting cannot fix a typo.\n",
        ok = exit::OK,
        failure = exit::FAILURE,
        config = exit::CONFIG,
    ));
    s.push_str(
        ".SH ENVIRONMENT\n\
         .TP\nIBWARDEN_CONFIG\n\
         The config file when neither \\fB\\-\\-config\\fR nor \\fB\\-\\-instance\\fR is given.\n\
         .TP\nXDG_CONFIG_HOME, HOME\n\
         The default config file of users other than root: \
         $XDG_CONFIG_HOME/ibwarden/config.toml, else ~/.config/ibwarden/config.toml. HOME also \
         expands ~/ in config paths and is where the gateway install (~/Jts/ibgateway) is \
         looked for.\n\
         .TP\nSTATE_DIRECTORY, XDG_STATE_HOME\n\
         The state directory when \\fBstate.dir\\fR is not set: $STATE_DIRECTORY (systemd \
         \\fBStateDirectory=\\fR; the first of several), else $XDG_STATE_HOME/ibwarden, else \
         ~/.local/state/ibwarden. \\fB\\-\\-instance\\fR NAME sets STATE_DIRECTORY to \
         /var/lib/ibwarden/NAME unless it is set.\n\
         .TP\nRUNTIME_DIRECTORY\n\
         The control socket is $RUNTIME_DIRECTORY/control.sock (systemd \
         \\fBRuntimeDirectory=\\fR) when \\fBcontrol.socket\\fR is not set, else \
         <state dir>/control.sock. \\fB\\-\\-instance\\fR NAME sets RUNTIME_DIRECTORY to \
         /run/ibwarden/NAME unless it is set.\n\
         .TP\nCREDENTIALS_DIRECTORY\n\
         Where systemd put the unit's credentials (\\fBLoadCredential=\\fR): \
         \\fBpassword_credential\\fR and \\fBtotp_credential\\fR are read from it. Without \
         it, \\fB\\-\\-instance\\fR NAME reads credential C from \
         /etc/credstore/ibwarden\\-NAME\\-C, else decrypts \
         /etc/credstore.encrypted/ibwarden\\-NAME\\-C with \\fBsystemd\\-creds\\fR(1).\n\
         .TP\nIBWARDEN_SYSTEM_ROOT\n\
         A directory every path of \\fB\\-\\-instance\\fR is taken under (default /): tests, a \
         chroot, an image being built.\n\
         .TP\nNOTIFY_SOCKET\n\
         systemd's notification socket (\\fBType=notify\\fR): READY=1 once the first TWS API \
         handshake passes, STATUS= on every change, RELOADING=1 around a reload.\n\
         .TP\nWATCHDOG_USEC, WATCHDOG_PID\n\
         systemd's watchdog (\\fBWatchdogSec=\\fR): WATCHDOG=1 is sent every half interval.\n\
         .TP\nJOURNAL_STREAM, INVOCATION_ID\n\
         \\fB\\-\\-log\\-format\\fR auto writes journald lines when stderr is the journal \
         (JOURNAL_STREAM), or under systemd (INVOCATION_ID) when stderr is not a terminal.\n\
         .TP\nRUST_LOG\n\
         Log filter directives; they override \\fB\\-v\\fR.\n\
         .TP\nDBUS_SESSION_BUS_ADDRESS\n\
         The session bus desktop notifications go to, unless \\fBnotify.desktop_user\\fR \
         names whose bus to use.\n\
         .TP\nXAUTHORITY\n\
         \\fBibwarden vnc\\fR on a display without an Xauthority file of its own \
         (\\fBdisplay.mode\\fR = \"existing\" without \\fBdisplay.xauthority\\fR): the file \
         given to x11vnc, else ~/.Xauthority.\n\
         .TP\nPATH\n\
         Where java (when the install brings no JRE), Xvfb, tesseract, x11vnc and \
         systemd\\-creds are found.\n\
         .P\n\
         The variables named by \\fBaccount.password_env\\fR and \\fBaccount.totp_env\\fR hold \
         secrets; \\fBrun\\fR removes them from its environment before anything starts. The \
         \\fBnotify.command\\fR hook runs with IBWARDEN_EVENT, IBWARDEN_SEVERITY, \
         IBWARDEN_TITLE, IBWARDEN_MESSAGE and IBWARDEN_INSTANCE set, and of the rest of the \
         environment only PATH, HOME, USER, LOGNAME, LANG, LC_ALL, TZ, XDG_RUNTIME_DIR and \
         DBUS_SESSION_BUS_ADDRESS.\n",
    );
    s.push_str(
        ".SH FILES\n\
         .TP\n/etc/ibwarden/NAME.toml\n\
         The config of the systemd unit ibwarden@NAME.service \
         (\\fBrun \\-\\-config /etc/ibwarden/%i.toml\\fR) and of \\fB\\-\\-instance\\fR NAME.\n\
         .TP\n/etc/ibwarden/config.toml\n\
         The default config file for root.\n\
         .TP\n$XDG_CONFIG_HOME/ibwarden/config.toml\n.TQ\n~/.config/ibwarden/config.toml\n\
         The default config file for other users.\n\
         .TP\n/etc/ibwarden/example.toml\n\
         A config for the unit, shipped by the package: secrets from credentials, state and \
         control socket from the unit's directories.\n\
         .TP\n/etc/credstore/ibwarden\\-NAME\\-password\n.TQ\n/etc/credstore/ibwarden\\-NAME\\-totp\n\
         The password and the activation code of instance NAME, loaded by the unit as the \
         credentials \\fBpassword\\fR and \\fBtotp\\fR (\\fBLoadCredential=\\fR); root only, \
         mode 600 in a directory of mode 700. \\fBibwarden secret set \\-\\-instance\\fR NAME \
         writes them.\n\
         .TP\n/etc/credstore.encrypted/ibwarden\\-NAME\\-password\n\
         .TQ\n/etc/credstore.encrypted/ibwarden\\-NAME\\-totp\n\
         The same, encrypted with \\fBsystemd\\-creds encrypt\\fR (\\fBLoadCredentialEncrypted=\\fR, \
         see the unit's header).\n\
         .TP\n/var/lib/ibwarden/NAME\n\
         The state of instance NAME (\\fBStateDirectory=\\fR): state.json (the last TOTP step \
         typed, recent failed logins), jts/ (the gateway's settings: API settings, the \
         autorestart token), screenshots/, gateway.pid.\n\
         .TP\n/run/ibwarden/NAME/control.sock\n\
         The control socket of instance NAME (\\fBRuntimeDirectory=\\fR), which \
         \\fBstatus\\fR, \\fBrestart\\fR, \\fBstop\\fR, \\fBtotp\\-now\\fR, \\fBscreenshot\\fR, \
         \\fBinspect\\fR and \\fBvnc\\fR talk to.\n\
         .TP\n~/.local/state/ibwarden\n\
         The state directory outside systemd (see STATE_DIRECTORY).\n\
         .TP\n/lib/systemd/system/ibwarden@.service\n\
         The unit template: one instance per account, \\fBsystemctl enable \\-\\-now \
         ibwarden@NAME\\fR.\n\
         .TP\n/usr/share/doc/ibwarden/config.toml.example\n\
         Every config key with its default and a comment.\n",
    );
    s.push_str(
        ".SH \"SEE ALSO\"\n\
         \\fBibwarden.toml\\fR(5), \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \
         \\fBsystemd\\-creds\\fR(1), \\fBsystemd.exec\\fR(5)\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn page() -> String {
        main_page(super::super::Cli::command()).expect("renders")
    }

    /// The text of section `name` (up to the next `.SH`).
    fn section<'a>(page: &'a str, name: &str) -> &'a str {
        let heading = if name.contains(' ') {
            format!(".SH \"{name}\"\n")
        } else {
            format!(".SH {name}\n")
        };
        let at = page
            .find(&heading)
            .unwrap_or_else(|| panic!("no {name} section"));
        let body = &page[at + heading.len()..];
        &body[..body.find("\n.SH ").map_or(body.len(), |i| i + 1)]
    }

    #[test]
    fn the_page_has_the_sections_man_pages_need_in_order() {
        let page = page();
        let order = [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "CONFIGURATION",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "SEE ALSO",
            "VERSION",
        ];
        let mut last = 0;
        for name in order {
            let _ = section(&page, name);
            let at = page
                .find(&format!(".SH {name}"))
                .or_else(|| page.find(&format!(".SH \"{name}\"")))
                .expect(name);
            assert!(at > last || last == 0, "{name} out of order");
            last = at;
        }
        // Once each: clap_mangen's page and ours are not both in it.
        assert_eq!(page.matches(".TH ").count(), 1);
        assert_eq!(page.matches(".SH NAME").count(), 1);
        // No page for `help`: it is not listed.
        assert!(!page.contains("ibwarden\\-help(1)"), "{page}");
        // Every line starting with a dot or a quote is a request we mean.
        for line in page.lines().filter(|l| l.starts_with(['.', '\''])) {
            let request = line.split_whitespace().next().unwrap_or("");
            assert!(
                [
                    ".TH", ".SH", ".TP", ".B", ".br", ".P", ".PP", ".ie", ".el", ".RS", ".RE",
                    ".IP", ".nh", ".TQ"
                ]
                .contains(&request),
                "stray roff request: {line}"
            );
        }
    }

    #[test]
    fn exit_status_is_what_the_code_returns() {
        use ibwarden::driver::exit;
        let page = page();
        let body = section(&page, "EXIT STATUS");
        let usage = super::super::Cli::try_parse_from(["ibwarden", "--no-such-option"])
            .expect_err("refused")
            .exit_code();
        let codes = [exit::OK, exit::FAILURE, usage, exit::CONFIG];
        for code in codes {
            assert!(
                body.contains(&format!(".B {code}\n")),
                "{code} missing: {body}"
            );
        }
        assert_eq!(body.matches(".TP\n").count(), codes.len(), "{body}");
        // The CLI's own constant for an invalid config is the driver's, and the unit's.
        assert_eq!(i32::from(super::super::EXIT_CONFIG), exit::CONFIG);
        // The CLI's other failures are `ExitCode::FAILURE`, which is EXIT_FAILURE on Unix.
        assert_eq!(exit::FAILURE, libc::EXIT_FAILURE);
        let unit = include_str!("../../packaging/systemd/ibwarden@.service");
        let prevent = format!("RestartPreventExitStatus={}", exit::CONFIG);
        assert!(
            unit.lines().any(|l| l == prevent),
            "the unit lacks {prevent}"
        );
        assert!(body.contains(&prevent));
    }

    #[test]
    fn files_are_the_paths_the_code_and_the_unit_use() {
        let page = page();
        let body = section(&page, "FILES").replace("\\-", "-");
        let unit = include_str!("../../packaging/systemd/ibwarden@.service");
        // The instance paths, as `--instance NAME` computes them (under the default root).
        if std::env::var_os("IBWARDEN_SYSTEM_ROOT").is_none() {
            let i = ibwarden::instance::Instance::new("NAME").expect("name");
            for p in [
                i.config(),
                i.state_dir(),
                i.runtime_dir().join("control.sock"),
            ] {
                assert!(
                    body.contains(&format!("\n{}\n", p.display())),
                    "{}",
                    p.display()
                );
            }
            for cred in ["password", "totp"] {
                for p in i.credential_paths(cred) {
                    assert!(body.contains(&p.display().to_string()), "{}", p.display());
                }
            }
        }
        // Every credential the unit loads is one of those files.
        for line in unit.lines().filter(|l| l.starts_with("LoadCredential=")) {
            let (id, file) = line["LoadCredential=".len()..]
                .split_once(':')
                .expect("ID:NAME");
            let file = file.replace("%i", "NAME");
            assert!(body.contains(&format!("/etc/credstore/{file}")), "{line}");
            assert!(body.contains(&format!("\\fB{id}\\fR")), "{line}");
        }
        assert!(unit.contains("ExecStart=/usr/bin/ibwarden run --config /etc/ibwarden/%i.toml"));
        assert!(unit.contains("StateDirectory=ibwarden/%i"));
        assert!(unit.contains("RuntimeDirectory=ibwarden/%i"));
        // The default config files (ConfigArg) and the state file's name.
        assert!(body.contains("/etc/ibwarden/config.toml\n"));
        assert!(body.contains("~/.config/ibwarden/config.toml"));
        assert!(body.contains(ibwarden::state::STATE_FILE));
    }

    #[test]
    fn environment_lists_what_the_code_reads() {
        let page = page();
        let body = section(&page, "ENVIRONMENT");
        // Every variable ibwarden reads (grep src for env::var / var_os / `env =`).
        for var in [
            "IBWARDEN_CONFIG",
            "XDG_CONFIG_HOME",
            "HOME",
            "STATE_DIRECTORY",
            "XDG_STATE_HOME",
            "RUNTIME_DIRECTORY",
            "CREDENTIALS_DIRECTORY",
            "IBWARDEN_SYSTEM_ROOT",
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "JOURNAL_STREAM",
            "INVOCATION_ID",
            "RUST_LOG",
            "DBUS_SESSION_BUS_ADDRESS",
            "XAUTHORITY",
            "PATH",
            "IBWARDEN_EVENT",
            "IBWARDEN_INSTANCE",
        ] {
            assert!(body.contains(var), "{var} missing");
        }
        // --config's variable is clap's.
        let cli = super::super::Cli::command();
        let run = cli.find_subcommand("run").expect("run");
        let config = run
            .get_arguments()
            .find(|a| a.get_id() == "config")
            .expect("--config");
        assert_eq!(
            config.get_env().and_then(|e| e.to_str()),
            Some("IBWARDEN_CONFIG")
        );
    }

    #[test]
    fn configuration_summarises_every_key_and_points_to_section_5() {
        let page = page();
        let body = section(&page, "CONFIGURATION");
        assert!(body.contains(&ibwarden::config::summary_man()));
        assert!(body.contains("\\fBibwarden.toml\\fR(5)"));
        for key in [
            "trading_mode",
            "stop_grace",
            "max_failed_logins_per_hour",
            "[probe]",
        ] {
            assert!(body.contains(&key.replace('-', "\\-")), "{key}");
        }
    }

    #[test]
    fn the_out_dir_gets_the_same_main_page_and_the_config_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        run(Command::Man {
            out: Some(dir.path().to_path_buf()),
        })
        .expect("generates");
        let main = std::fs::read_to_string(dir.path().join("ibwarden.1")).expect("ibwarden.1");
        assert_eq!(main, page());
        let five = std::fs::read_to_string(dir.path().join("ibwarden.toml.5")).expect("5");
        assert!(five.starts_with(".TH IBWARDEN.TOML 5"));
        assert!(dir.path().join("ibwarden-run.1").is_file());
        assert!(!dir.path().join("ibwarden-help.1").exists());
    }
}
