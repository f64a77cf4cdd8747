//! Wiring: builds the core and the real adapters from a validated [`Config`], starts the
//! servers (control socket, IBC command server, health endpoint) and the signal task, then
//! hands everything to the loop ([`super::drive`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::real::{self, Msg, Parts, RealWorld};
use super::Event;
use crate::config::{self, Config, ScheduleConfig};
use crate::control::{self, ControlRequest, ControlSocket};
use crate::core::schedule::Schedule;
use crate::core::{CoreConfig, Supervisor};
use crate::dialog_text::{AtspiBus, AtspiReader, ContentReader};
use crate::gateway::{install, launch, process};
use crate::notify::Notifier;
use crate::secret::Secrets;
use crate::state::{self, PersistedState};
use crate::status::{self as st, SharedStatus};

/// Exit codes of `ibwarden run` (also in the README and the systemd unit).
pub mod exit {
    /// Stopped on request.
    pub const OK: i32 = 0;
    /// A runtime failure ibwarden could not recover from (display, state directory).
    pub const FAILURE: i32 = 1;
    /// The configuration, the install or the state file is unusable (`EX_CONFIG`); systemd
    /// must not restart.
    pub const CONFIG: i32 = 78;
}

/// Everything `run` needs, resolved by the CLI.
pub struct RunOptions {
    /// The validated configuration.
    pub config: Config,
    /// The loaded secrets.
    pub secrets: Secrets,
    /// The published status (the caller may serve it; `run` updates it).
    pub status: Option<SharedStatus>,
}

/// The core's plain values from the user's configuration: the one place they are mapped.
pub fn core_config(cfg: &Config, content_reader: bool) -> CoreConfig {
    CoreConfig {
        program: cfg.gateway.program,
        trading_mode: cfg.gateway.trading_mode,
        second_factor: cfg.login.second_factor.clone(),
        existing_session: cfg.login.existing_session,
        verify_form: cfg.login.verify_form,
        max_failed_logins_per_hour: cfg.login.max_failed_logins_per_hour,
        min_code_validity: cfg.login.min_code_validity,
        max_code_rejections: cfg.login.max_code_rejections,
        ib_key_wait: cfg.login.ib_key_wait,
        relogin_backoff: cfg.login.relogin_backoff,
        login_timeout: cfg.login.login_timeout,
        probe_interval: cfg.probe.interval,
        failures_before_restart: cfg.probe.failures_before_restart,
        link_lost_grace: cfg.probe.link_lost_grace,
        stop_grace: cfg.gateway.stop_grace,
        content_reader,
        seed: std::process::id() as u64 ^ real::unix_ms(),
        schedule: Some(schedule(&cfg.schedule)),
        ..CoreConfig::default()
    }
}

/// IBKR's calendar from a validated `[schedule]`.
pub fn schedule(cfg: &ScheduleConfig) -> Schedule {
    Schedule::new(
        cfg.timezone.clone(),
        cfg.daily_restart,
        cfg.weekly_cold_restart,
        cfg.closedown,
        cfg.maintenance_start,
        cfg.maintenance_delay,
    )
}

/// The instance name: the config file's stem (`/etc/ibwarden/NAME.toml`).
pub(crate) fn instance_name(cfg: &Config) -> String {
    cfg.path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ibwarden".into())
}

/// Keys whose new value only a restart of ibwarden can apply (sockets, directories, the
/// display, the account): named in the reload's log line.
pub(crate) fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_string());
        }
    };
    check(
        "account",
        format!("{:?}", old.account) != format!("{:?}", new.account),
    );
    check("state.dir", old.state.dir != new.state.dir);
    check("control.socket", old.control.socket != new.control.socket);
    check(
        "control.ibc_command_port",
        old.control.ibc_command_port != new.control.ibc_command_port,
    );
    // The token is read when the command server starts.
    check(
        "control.ibc_command_auth_file",
        old.control.ibc_command_auth_file != new.control.ibc_command_auth_file,
    );
    check(
        "control.ibc_command_token",
        old.control.ibc_command_open != new.control.ibc_command_open,
    );
    check("health.listen", old.health.listen != new.health.listen);
    check(
        "relay",
        format!("{:?}", old.relay) != format!("{:?}", new.relay),
    );
    check(
        "display",
        format!("{:?}", old.display) != format!("{:?}", new.display),
    );
    check(
        "gateway.program",
        old.gateway.program != new.gateway.program,
    );
    check(
        "gateway.install_dir",
        old.gateway.install_dir != new.gateway.install_dir,
    );
    check(
        "gateway.settings_dir",
        old.gateway.settings_dir != new.gateway.settings_dir,
    );
    check(
        "login.content_reader",
        old.login.content_reader != new.login.content_reader,
    );
    out
}

/// A reload as applied: the config that runs from now on, the core's new values, and the
/// keys whose new value waits for a restart of ibwarden.
#[derive(Debug)]
pub struct Reload {
    /// What the adapters use from now on (restart-only keys keep their running value).
    pub config: Config,
    /// What the core gets ([`crate::core::Input::Reconfigure`]).
    pub core: CoreConfig,
    /// Changed keys that need a restart of ibwarden.
    pub restart_needed: Vec<String>,
}

/// Applies a re-read config over the running one (pure: tested per section).
/// A JVM that cannot get its heap freezes or is OOM-killed mid-login; say so at the start
/// (`ibwarden check` shows the same line).
fn warn_if_memory_is_short(vm_options: &[String], jvm_args: &[String]) {
    use crate::gateway::memory;
    let Some(available) = memory::Available::read() else {
        return;
    };
    let options = vm_options.iter().chain(jvm_args).map(String::as_str);
    let verdict = memory::assess(options, &available);
    if !verdict.enough() {
        tracing::warn!(memory = %verdict, "the gateway may run out of memory");
    }
}

pub fn apply_reload(running: &Config, new: Config, content_reader: bool) -> Reload {
    let restart_needed = restart_only_changes(running, &new);
    let mut config = new;
    keep_restart_only(running, &mut config);
    let mut core = core_config(&config, content_reader);
    core.seed = 0;
    Reload {
        config,
        core,
        restart_needed,
    }
}

/// Puts the running values of the restart-only keys back into a reloaded config.
fn keep_restart_only(old: &Config, new: &mut Config) {
    new.account = old.account.clone();
    new.state = old.state.clone();
    new.control = old.control.clone();
    new.health = old.health.clone();
    new.relay = old.relay.clone();
    new.display = old.display.clone();
    new.gateway.program = old.gateway.program;
    new.gateway.install_dir = old.gateway.install_dir.clone();
    new.gateway.settings_dir = old.gateway.settings_dir.clone();
    new.login.content_reader = old.login.content_reader;
}

/// Runs the supervisor until it is stopped. Returns the process exit code.
pub async fn run(opts: RunOptions) -> anyhow::Result<i32> {
    let RunOptions {
        config: cfg,
        secrets,
        status,
    } = opts;
    let instance = instance_name(&cfg);
    let status = status.unwrap_or_else(|| st::shared(&instance, real::unix_ms()));
    let tasks = TaskTracker::new();
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Event<Msg>>();

    // The control socket doubles as the instance lock: a second `ibwarden run` for the same
    // socket refuses to start instead of launching a second gateway for the account.
    let control = match ControlSocket::bind(&cfg.control.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ibwarden: {e}");
            return Ok(exit::FAILURE);
        }
    };
    let (ctl_tx, ctl_rx) = mpsc::channel::<ControlRequest>(16);
    {
        let status = status.clone();
        let tx = ctl_tx.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            tokio::select! {
                r = control.serve(status, tx) => if let Err(e) = r {
                    warn!(error = %e, "control socket stopped");
                },
                _ = cancel.cancelled() => {}
            }
        });
    }
    if let Some(port) = cfg.control.ibc_command_port {
        let auth = match &cfg.control.ibc_command_auth_file {
            Some(p) => match crate::secret::SecretSource::File(p.clone()).load() {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("ibwarden: {e}");
                    return Ok(exit::CONFIG);
                }
            },
            None => None,
        };
        match control::bind_ibc(port).await {
            Ok(listener) => {
                let tx = ctl_tx.clone();
                tasks.spawn(
                    cancel
                        .clone()
                        .run_until_cancelled_owned(control::serve_ibc(listener, auth, tx)),
                );
                info!(port, "IBC-compatible command server listening on 127.0.0.1");
            }
            Err(e) => warn!(error = %e, "IBC command server not started"),
        }
    }
    drop(ctl_tx);
    // The relay follows what the driver publishes: listening only while ready.
    let (serving_tx, serving_rx) = tokio::sync::watch::channel(crate::relay::Serving::default());
    let relay_stats = match cfg.relay.listen {
        Some(listen) => {
            let stats = Arc::new(crate::relay::RelayStats::default());
            let opts = crate::relay::RelayOptions {
                listen,
                allow: cfg.relay.allow.clone(),
                max_connections: cfg.relay.max_connections,
                target: std::net::SocketAddr::from(([127, 0, 0, 1], cfg.gateway.api_port)),
            };
            info!(%listen, "API relay configured: it listens while the gateway is ready");
            tasks.spawn(cancel.clone().run_until_cancelled_owned(crate::relay::run(
                opts,
                serving_rx,
                stats.clone(),
            )));
            Some(stats)
        }
        None => None,
    };
    if let Some(addr) = cfg.health.listen {
        match crate::health::bind(addr).await {
            Ok(listener) => {
                let status = status.clone();
                let relay = relay_stats.clone();
                tasks.spawn(cancel.clone().run_until_cancelled_owned(async move {
                    let opts = crate::health::HealthOptions {
                        relay,
                        ..crate::health::HealthOptions::default()
                    };
                    if let Err(e) = crate::health::serve_listener(listener, status, opts).await {
                        warn!(error = %e, "health endpoint stopped");
                    }
                }));
            }
            Err(e) => warn!(error = %e, %addr, "health endpoint not started"),
        }
    }
    let notifier = Notifier::new(&cfg.notify, &instance);
    let state_dir = cfg.state.dir.clone();
    state::create_private_dir(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    state::create_private_dir(&state_dir.join("jvm"))?;
    state::create_private_dir(&cfg.gateway.settings_dir).with_context(|| {
        format!(
            "cannot create the gateway settings directory {}",
            cfg.gateway.settings_dir.display()
        )
    })?;
    if let Err(e) = process::become_subreaper() {
        warn!(error = %e, "cannot become a subreaper; a forking launcher could escape");
    }
    if cfg.gateway.client_portal {
        return run_client_portal(cfg, secrets, status, notifier, ctl_rx, tasks, cancel).await;
    }
    let query = install::InstallQuery {
        program: Some(cfg.gateway.program),
        install_dir: cfg.gateway.install_dir.clone(),
        java: match &cfg.gateway.java {
            config::Java::Auto => None,
            config::Java::Path(p) => Some(p.clone()),
        },
        home: std::env::var_os("HOME").map(PathBuf::from),
        path_env: std::env::var_os("PATH"),
    };
    let install = match install::discover(&query) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "gateway install not usable");
            eprintln!("ibwarden: {e}");
            return Ok(exit::CONFIG);
        }
    };
    let inputs = launch::read_inputs(&install).context("cannot read the gateway install")?;
    info!(install = %install.dir.display(), java = %install.java.display(), "gateway install found");
    warn_if_memory_is_short(&inputs.vm_options, &cfg.gateway.jvm_args);
    let (reader, atspi_bus) = content_reader(&cfg, &state_dir);
    let dir = state_dir.clone();
    let loaded = tokio::task::spawn_blocking(move || PersistedState::load(&dir))
        .await
        .context("loading the state file")?;
    let persisted = match loaded {
        Ok(p) => p,
        Err(e) => {
            // A person must look (a restart loop would only repeat this line).
            tracing::error!(error = %e, "state file refused");
            eprintln!("ibwarden: {e}");
            return Ok(exit::CONFIG);
        }
    };
    let mut core = Supervisor::new(core_config(&cfg, reader.available()), persisted);
    stop_stray_gateway(&cfg, &install).await;
    follow_launcher_log(&cfg, &tx, &tasks, &cancel).await;
    spawn_signals(&tx, &tasks, &cancel)?;
    forward_control(ctl_rx, &tx, &tasks);

    let mut world = RealWorld::new(Parts {
        cfg,
        secrets,
        install,
        inputs,
        reader,
        atspi_bus,
        status,
        serving: serving_tx,
        notifier,
        tx,
        tasks,
        cancel,
    });
    Ok(super::drive(&mut core, &mut world, &mut rx).await)
}

/// `program = "clientportal"`: the web session's own loop (no display, no windows).
async fn run_client_portal(
    cfg: Config,
    secrets: crate::secret::Secrets,
    status: SharedStatus,
    notifier: Notifier,
    ctl_rx: mpsc::Receiver<ControlRequest>,
    tasks: TaskTracker,
    cancel: CancellationToken,
) -> anyhow::Result<i32> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let install = match crate::clientportal::install::discover(
        cfg.gateway.install_dir.as_deref(),
        home.as_deref(),
    ) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "Client Portal gateway install not usable");
            eprintln!("ibwarden: {e}");
            return Ok(exit::CONFIG);
        }
    };
    let dir = cfg.state.dir.clone();
    let persisted = match tokio::task::spawn_blocking(move || PersistedState::load(&dir))
        .await
        .context("loading the state file")?
    {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "state file refused");
            eprintln!("ibwarden: {e}");
            return Ok(exit::CONFIG);
        }
    };
    crate::clientportal::driver::run(crate::clientportal::driver::Parts {
        cfg,
        secrets,
        install,
        persisted,
        status,
        notifier,
        control: ctl_rx,
        tasks,
        cancel,
    })
    .await
}

/// AT-SPI is opt-in only (a peer saw the ATK bridge deadlock the real gateway): `auto`
/// means OCR when tesseract is installed, else titles only.
fn content_reader(cfg: &Config, state_dir: &std::path::Path) -> (ContentReader, Option<AtspiBus>) {
    match cfg.login.content_reader {
        config::ContentReader::None => (ContentReader::None, None),
        config::ContentReader::Auto => (ContentReader::auto(), None),
        config::ContentReader::Ocr => {
            let r = ContentReader::auto();
            if !r.available() {
                warn!("content_reader = \"ocr\" but tesseract is not installed; titles only");
            }
            (r, None)
        }
        config::ContentReader::Atspi => {
            // The session bus must exist before the JVM starts.
            let dir = state_dir.join("atspi");
            let _ = state::create_private_dir(&dir);
            match AtspiBus::start(&dir) {
                Ok(bus) => (
                    ContentReader::Atspi(AtspiReader::new(bus.address())),
                    Some(bus),
                ),
                Err(e) => {
                    warn!(error = %e, "AT-SPI unavailable; falling back to OCR");
                    (ContentReader::auto(), None)
                }
            }
        }
    }
}

/// Never two gateways for one account: a JVM left by an earlier ibwarden (found through
/// the pid file and confirmed by its command line) is stopped before we launch ours.
///
/// It is not adopted: its X display died with the ibwarden that started it (Xvfb has a
/// parent-death signal), and a Java GUI whose display is gone cannot be driven; under
/// systemd the whole cgroup is stopped with the main process anyway.
async fn stop_stray_gateway(cfg: &Config, install: &install::Install) {
    let pidfile = cfg.state.dir.join("gateway.pid");
    let identity = process::JvmIdentity {
        main_class: install.program.main_class().to_string(),
        settings_dir: cfg.gateway.settings_dir.clone(),
    };
    if let Some(pid) = process::find_adoptable(&pidfile, &identity) {
        warn!(
            pid,
            "a gateway from an earlier run is still alive; stopping it"
        );
        if let Err(e) = process::terminate(pid, Duration::from_secs(20)).await {
            warn!(pid, error = %e, "could not stop the earlier gateway");
        }
    }
    let _ = process::remove_pidfile(&pidfile);
}

/// Follows the gateway's `launcher.log` (inotify) and feeds its events to the core.
async fn follow_launcher_log(
    cfg: &Config,
    tx: &mpsc::UnboundedSender<Event<Msg>>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) {
    let path = cfg.gateway.settings_dir.join("launcher.log");
    let (log_tx, mut log_rx) = mpsc::channel(64);
    match crate::launcher_log::follow(path, log_tx).await {
        Ok(task) => {
            let tx = tx.clone();
            tasks.spawn(async move {
                while let Some(ev) = log_rx.recv().await {
                    if tx
                        .send(Event::Input(crate::core::Input::GatewayLog(ev)))
                        .is_err()
                    {
                        break;
                    }
                }
            });
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let abort = task.abort_handle();
                tokio::select! {
                    r = task => if let Ok(Err(e)) = r {
                        warn!(error = %e, "launcher.log no longer followed");
                    },
                    _ = cancel.cancelled() => abort.abort(),
                }
            });
        }
        Err(e) => {
            warn!(error = %e, "launcher.log not followed; silent drops are seen from titles only")
        }
    }
}

/// SIGTERM and SIGINT are stop requests (the core counts them), SIGHUP a reload; a tick
/// proves the loop turns (systemd watchdog, status heartbeat).
fn spawn_signals(
    tx: &mpsc::UnboundedSender<Event<Msg>>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let tick = crate::sdnotify::watchdog_interval()
        .map(|i| i / 2)
        .unwrap_or(Duration::from_secs(10))
        .min(Duration::from_secs(10));
    let mut ticker = tokio::time::interval(tick);
    let tx = tx.clone();
    let cancel = cancel.clone();
    tasks.spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = sigterm.recv() => {
                    info!("SIGTERM: stopping");
                    Event::Input(crate::core::Input::Stop)
                }
                _ = sigint.recv() => {
                    info!("interrupted: stopping");
                    Event::Input(crate::core::Input::Stop)
                }
                _ = sighup.recv() => Event::Reload,
                _ = ticker.tick() => Event::Tick,
                _ = cancel.cancelled() => break,
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn forward_control(
    mut ctl_rx: mpsc::Receiver<ControlRequest>,
    tx: &mpsc::UnboundedSender<Event<Msg>>,
    tasks: &TaskTracker,
) {
    let tx = tx.clone();
    tasks.spawn(async move {
        while let Some(req) = ctl_rx.recv().await {
            if tx.send(Event::Control(req)).is_err() {
                break;
            }
        }
    });
}
