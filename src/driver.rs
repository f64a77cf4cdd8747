//! The driver: one loop that feeds adapter events to the core and executes its actions.
//!
//! ```text
//!   Xvfb ─┐  window watcher ─┐  JVM wait ─┐  probe ─┐  typist ─┐  signals ─┐
//!         └──────────────────┴────────────┴────────┴──────────┴───────────┴─► mpsc<Input>
//!                                                                              │
//!                         Supervisor::handle / handle_timeout  ◄──────────────┘
//!                                      │
//!                         poll_action ─┴─► execute (spawn, type, probe, save, notify, ...)
//! ```
//!
//! The driver decides nothing: every policy lives in [`crate::core`]. Blocking X11 work
//! (typing, screenshots, OCR) runs on the typist thread or the blocking pool, never on the
//! loop. Each adapter task only sends [`Input`]s; the loop owns all state.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{self, Config};
use crate::control::{self, ControlCommand, ControlReply, ControlRequest, ControlSocket};
use crate::core::{
    self, Action, CoreConfig, Input, Now, Persisted, SecretRef, Supervisor, TypeResult,
};
use crate::gateway::{install, launch, process};
use crate::notify::Notifier;
use crate::reader::ContentReader;
use crate::secret::{Secret, Secrets};
use crate::state::{self, PersistedState};
use crate::status::{self as st, SharedStatus};
use crate::x11::display::Xvfb;
use crate::x11::input::{InputError, TypingOptions, Typist};
use crate::x11::{DisplayTarget, Watcher, WindowEvent};

/// Exit codes of `ibwarden run` (also in the README and the systemd unit).
pub mod exit {
    /// Stopped on request.
    pub const OK: i32 = 0;
    /// A runtime failure ibwarden could not recover from (display, state directory).
    pub const FAILURE: i32 = 1;
    /// The configuration or the install is unusable (`EX_CONFIG`); systemd must not restart.
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

/// A keyboard job for the typist thread.
struct TypeJob {
    ticket: u64,
    window: u32,
    steps: Vec<crate::core::KeyStep>,
}

/// The display and the two X clients on it; recreated when Xvfb dies.
struct Screen {
    target: DisplayTarget,
    xvfb: Option<Xvfb>,
    _watcher: Watcher,
    typist: Arc<Typist>,
    jobs: std::sync::mpsc::Sender<TypeJob>,
}

/// The JVM we run.
struct Jvm {
    pid: u32,
    pidfd: Arc<process::PidFd>,
}

struct Driver {
    cfg: Config,
    /// The current secrets. Re-read on `restart` and SIGHUP, so a rotated password or
    /// activation code is used without restarting ibwarden; the typist reads the slot at
    /// each job. A std lock: held for a clone of the `Arc`, never across an await.
    secrets: SecretSlot,
    install: install::Install,
    inputs: launch::LaunchInputs,
    state_dir: PathBuf,
    work_dir: PathBuf,
    reader: ContentReader,
    tx: mpsc::UnboundedSender<Input>,
    screen: Option<Screen>,
    /// The current JVM's pid, shared with the window-event filter.
    jvm_pid: Arc<AtomicU32>,
    jvm: Option<Jvm>,
    ready_sent: bool,
    sd: crate::sdnotify::Notifier,
    /// When the current launch began (for the time-to-ready figure).
    launched_at: Instant,
    /// What `status`, `/readyz` and `/metrics` read.
    status: SharedStatus,
    /// True between a passing probe and the next state change.
    ready: bool,
    /// Desktop, command and webhook notifications (deduplicated).
    notifier: Notifier,
    /// The next calendar event, for `status`.
    next_scheduled: Option<(String, u64)>,
    /// A person is connected over VNC: the typist sends nothing (shared with its thread).
    human: Arc<std::sync::atomic::AtomicBool>,
    /// Stops the running takeover server, if any.
    takeover_stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The private session bus of the AT-SPI reader (kept for the JVM's lifetime).
    atspi_bus: Option<crate::reader::AtspiBus>,
    /// Window titles as the watcher last saw them (the AT-SPI reader looks windows up by
    /// title). A std mutex: held for an insert or a clone, never across an await.
    titles: Arc<std::sync::Mutex<std::collections::HashMap<u32, String>>>,
}

fn now() -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now {
        mono: Instant::now(),
        unix_ms,
    }
}

/// Maps the user's configuration onto the core's plain values.
pub fn core_config(cfg: &Config, content_reader: bool) -> CoreConfig {
    let d = CoreConfig::default();
    CoreConfig {
        program: cfg.gateway.program,
        trading_mode: cfg.gateway.trading_mode,
        second_factor: cfg.login.second_factor.clone(),
        existing_session: cfg.login.existing_session,
        max_failed_logins_per_hour: cfg.login.max_failed_logins_per_hour,
        min_code_validity: cfg.login.min_code_validity,
        max_code_rejections: cfg.login.max_code_rejections,
        ib_key_wait: cfg.login.ib_key_wait,
        relogin_backoff: cfg.login.relogin_backoff,
        login_timeout: cfg.login.login_timeout,
        probe_interval: cfg.probe.interval,
        failures_before_restart: cfg.probe.failures_before_restart,
        link_lost_grace: cfg.probe.link_lost_grace,
        content_reader,
        seed: std::process::id() as u64 ^ now().unix_ms,
        schedule: Some(crate::core::schedule::Schedule::new(&cfg.schedule)),
        ..d
    }
}

/// Runs the supervisor until it is stopped. Returns the process exit code.
pub async fn run(opts: RunOptions) -> anyhow::Result<i32> {
    let RunOptions {
        config: cfg,
        secrets,
        status,
    } = opts;
    let instance = cfg
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ibwarden".into());
    let status = status.unwrap_or_else(|| st::shared(&instance, now().unix_ms));

    // The control socket doubles as the instance lock: a second `ibwarden run` for the same
    // socket refuses to start instead of launching a second gateway for the account.
    let control = match ControlSocket::bind(&cfg.control.socket) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ibwarden: {e}");
            return Ok(exit::FAILURE);
        }
    };
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlRequest>(16);
    let mut tasks = tokio::task::JoinSet::new();
    {
        let status = status.clone();
        let tx = ctl_tx.clone();
        tasks.spawn(async move {
            if let Err(e) = control.serve(status, tx).await {
                warn!(error = %e, "control socket stopped");
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
                tasks.spawn(control::serve_ibc(listener, auth, tx));
                info!(port, "IBC-compatible command server listening on 127.0.0.1");
            }
            Err(e) => warn!(error = %e, "IBC command server not started"),
        }
    }
    if let Some(addr) = cfg.health.listen {
        match crate::health::bind(addr).await {
            Ok(listener) => {
                let status = status.clone();
                tasks.spawn(async move {
                    let opts = crate::health::HealthOptions::default();
                    if let Err(e) = crate::health::serve_listener(listener, status, opts).await {
                        warn!(error = %e, "health endpoint stopped");
                    }
                });
            }
            Err(e) => warn!(error = %e, %addr, "health endpoint not started"),
        }
    }
    let notifier = Notifier::new(&cfg.notify, &instance);
    let state_dir = cfg.state.dir.clone();
    state::create_private_dir(&state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let work_dir = state_dir.join("jvm");
    state::create_private_dir(&work_dir)?;
    std::fs::create_dir_all(&cfg.gateway.settings_dir).with_context(|| {
        format!(
            "cannot create the gateway settings directory {}",
            cfg.gateway.settings_dir.display()
        )
    })?;
    if let Err(e) = process::become_subreaper() {
        warn!(error = %e, "cannot become a subreaper; a forking launcher could escape");
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

    // AT-SPI is opt-in only (a peer saw the ATK bridge deadlock the real gateway):
    // `auto` means OCR when tesseract is installed, else titles only.
    let mut atspi_bus = None;
    let reader = match cfg.login.content_reader {
        config::ContentReader::None => ContentReader::None,
        config::ContentReader::Auto => ContentReader::auto(),
        config::ContentReader::Ocr => {
            let r = ContentReader::auto();
            if !r.available() {
                warn!("content_reader = \"ocr\" but tesseract is not installed; titles only");
            }
            r
        }
        config::ContentReader::Atspi => {
            // The session bus must exist before the JVM starts.
            let dir = state_dir.join("atspi");
            let _ = state::create_private_dir(&dir);
            match crate::reader::AtspiBus::start(&dir) {
                Ok(bus) => {
                    let r = ContentReader::Atspi(crate::reader::AtspiReader::new(bus.address()));
                    atspi_bus = Some(bus);
                    r
                }
                Err(e) => {
                    warn!(error = %e, "AT-SPI unavailable; falling back to OCR");
                    ContentReader::auto()
                }
            }
        }
    };
    let persisted = match PersistedState::load(&state_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ibwarden: {e}");
            return Ok(exit::FAILURE);
        }
    };
    let mut sv = Supervisor::new(
        core_config(&cfg, reader.available()),
        Persisted {
            last_totp_step: persisted.last_totp_step,
            failed_logins: persisted.failed_logins.clone(),
            credentials_rejected: persisted.credentials_rejected,
        },
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut d = Driver {
        cfg,
        secrets: Arc::new(std::sync::RwLock::new(Arc::new(secrets))),
        install,
        inputs,
        state_dir,
        work_dir,
        reader,
        tx,
        screen: None,
        jvm_pid: Arc::new(AtomicU32::new(0)),
        jvm: None,
        ready_sent: false,
        sd: crate::sdnotify::Notifier::from_env(),
        launched_at: Instant::now(),
        status,
        ready: false,
        notifier,
        next_scheduled: None,
        human: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        takeover_stop: None,
        atspi_bus,
        titles: Arc::new(std::sync::Mutex::new(std::collections::HashMap::new())),
    };
    d.follow_launcher_log();
    d.stop_stray_gateway().await;
    d.ensure_screen().await?;

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let watchdog = crate::sdnotify::watchdog_interval().map(|i| i / 2);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut stop_requests = 0u32;
    // Publish the snapshot even when nothing happens (Halted has no timers), so `/livez`
    // sees a live loop.
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));

    let wall = || crate::core::schedule::timestamp_from_unix_ms(now().unix_ms);
    let mut scheduler = crate::core::schedule::Scheduler::new(
        crate::core::schedule::Schedule::new(&d.cfg.schedule),
        wall(),
    );

    sv.handle(now(), Input::Start);
    loop {
        // The calendar is polled from wall time on every turn (DST, clock jumps), not only
        // when its own wake-up fires: other inputs keep re-creating the select below.
        let polled = scheduler.poll(wall());
        for m in &polled.missed {
            warn!(event = %m.event, "scheduled event missed (clock jump or suspend)");
        }
        if let Some(f) = polled.fired {
            info!(event = %f.event, "scheduled event");
            sv.handle(now(), Input::Scheduled(f.event));
        }
        d.next_scheduled = scheduler.upcoming_for_status(wall());
        while let Some(action) = sv.poll_action() {
            if let Some(code) = d.execute(action, &sv).await {
                d.publish(&sv);
                d.shutdown().await;
                return Ok(code);
            }
        }
        d.publish(&sv);
        // Check the deadline before awaiting (quinn `drive_timer`): tokio's sleep may
        // report a passed deadline late under the cooperative budget.
        let deadline = sv.poll_timeout();
        if let Some(at) = deadline {
            if at <= Instant::now() {
                sv.handle_timeout(now());
                continue;
            }
        }
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            Some(input) = rx.recv() => {
                if let Input::DisplayLost = input {
                    d.screen_lost();
                }
                sv.handle(now(), input);
            }
            _ = sleep => sv.handle_timeout(now()),
            _ = sigterm.recv() => {
                stop_requests += 1;
                info!("SIGTERM: stopping");
                if stop_requests > 1 { d.kill_jvm(); }
                sv.handle(now(), Input::Stop);
            }
            _ = sigint.recv() => {
                stop_requests += 1;
                info!("interrupted: stopping");
                if stop_requests > 1 { d.kill_jvm(); }
                sv.handle(now(), Input::Stop);
            }
            _ = heartbeat.tick() => {}
            _ = sighup.recv() => {
                d.reload(&sv);
                scheduler.set_schedule(crate::core::schedule::Schedule::new(&d.cfg.schedule));
            }
            _ = tokio::time::sleep(scheduler.next_check(wall())) => {}
            Some(req) = ctl_rx.recv() => d.control(req, &mut sv).await,
            _ = watchdog_tick.tick(), if watchdog.is_some() => { d.sd.send("WATCHDOG=1"); }
        }
    }
}

impl Driver {
    /// Starts Xvfb (or connects to the configured display), the watcher and the typist.
    async fn ensure_screen(&mut self) -> anyhow::Result<()> {
        if self.screen.is_some() {
            return Ok(());
        }
        let (target, xvfb) = match self.cfg.display.mode {
            config::DisplayMode::Xvfb => {
                let dir = self.state_dir.join("display");
                state::create_private_dir(&dir)?;
                let geometry = self.cfg.display.geometry.to_string();
                let xvfb = Xvfb::start(&dir, &geometry)
                    .await
                    .context("cannot start Xvfb")?;
                info!(display = xvfb.display(), pid = xvfb.pid(), "Xvfb started");
                (xvfb.target().clone(), Some(xvfb))
            }
            config::DisplayMode::Existing => {
                let name =
                    self.cfg.display.display.clone().ok_or_else(|| {
                        anyhow!("display.mode = \"existing\" needs display.display")
                    })?;
                (
                    DisplayTarget::existing(name, self.cfg.display.xauthority.clone()),
                    None,
                )
            }
        };
        let (watcher, mut events) = Watcher::spawn(&target).context("cannot watch windows")?;
        let typist = Arc::new(
            Typist::connect(&target, TypingOptions::default()).context("cannot open XTest")?,
        );
        // Window events: keep only the JVM's windows (its pid or a descendant's).
        let tx = self.tx.clone();
        let jvm_pid = self.jvm_pid.clone();
        let titles = self.titles.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                match &ev {
                    WindowEvent::Mapped(info) => {
                        if let Ok(mut t) = titles.lock() {
                            t.insert(info.id, info.title.clone());
                        }
                    }
                    WindowEvent::TitleChanged { id, title } => {
                        if let Ok(mut t) = titles.lock() {
                            t.insert(*id, title.clone());
                        }
                    }
                    _ => {}
                }
                let input = match ev {
                    WindowEvent::Mapped(info) => {
                        let jvm = jvm_pid.load(Ordering::SeqCst);
                        match info.pid {
                            Some(p) if jvm != 0 && is_same_or_descendant(p, jvm) => {
                                Input::Mapped(info)
                            }
                            _ => {
                                debug!(window = info.id, title = %info.title, pid = ?info.pid,
                                    "ignoring a window that is not the gateway's");
                                continue;
                            }
                        }
                    }
                    WindowEvent::Unmapped { id } => Input::Unmapped(id),
                    WindowEvent::Destroyed { id } => Input::Destroyed(id),
                    WindowEvent::TitleChanged { id, title } => Input::TitleChanged { id, title },
                    WindowEvent::ConnectionLost { reason } => {
                        warn!(%reason, "X connection lost");
                        Input::DisplayLost
                    }
                };
                if tx.send(input).is_err() {
                    break;
                }
            }
        });
        // The typist thread: one job at a time, focus verified before every key.
        let (jobs, job_rx) = std::sync::mpsc::channel::<TypeJob>();
        let secrets = self.secrets.clone();
        let tx = self.tx.clone();
        let t = typist.clone();
        let human = self.human.clone();
        std::thread::Builder::new()
            .name("typist".into())
            .spawn(move || typist_thread(t, secrets, job_rx, tx, human))
            .context("cannot start the typist thread")?;
        self.screen = Some(Screen {
            target,
            xvfb,
            _watcher: watcher,
            typist,
            jobs,
        });
        Ok(())
    }

    fn screen_lost(&mut self) {
        // Dropping the screen stops the watcher and the typist; the next launch starts a new
        // display (`ensure_screen`).
        self.screen = None;
    }

    fn kill_jvm(&mut self) {
        if let Some(j) = &self.jvm {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(j.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    fn pidfile(&self) -> PathBuf {
        self.state_dir.join("gateway.pid")
    }

    fn identity(&self) -> process::JvmIdentity {
        process::JvmIdentity {
            main_class: self.install.program.main_class().to_string(),
            settings_dir: self.cfg.gateway.settings_dir.clone(),
        }
    }

    /// Never two gateways for one account: a JVM left by an earlier ibwarden (found through
    /// the pid file and confirmed by its command line) is stopped before we launch ours.
    ///
    /// It is not adopted: its X display died with the ibwarden that started it (Xvfb has a
    /// parent-death signal), and a Java GUI whose display is gone cannot be driven; under
    /// systemd the whole cgroup is stopped with the main process anyway.
    async fn stop_stray_gateway(&mut self) {
        let pidfile = self.pidfile();
        if let Some(pid) = process::find_adoptable(&pidfile, &self.identity()) {
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

    /// Re-reads the secrets (after `ibwarden secret set`, or a rotated systemd credential).
    /// On failure the ones in memory stay, and the error (never a value) is logged.
    fn reload_secrets(&mut self) {
        match Secrets::load(&self.cfg) {
            Ok(new) => {
                if let Ok(mut slot) = self.secrets.write() {
                    *slot = Arc::new(new);
                }
                info!("secrets re-read");
            }
            Err(e) => warn!(error = %e, "cannot re-read the secrets; keeping the loaded ones"),
        }
    }

    /// SIGHUP: re-read the config file. A broken file is refused with every error logged,
    /// and the running config stays; a good one replaces it. Probe, launch and display
    /// settings take effect from their next use; the login policy from the next start.
    fn reload(&mut self, sv: &Supervisor) {
        self.sd.reloading("reloading the configuration");
        let path = self.cfg.path.clone();
        let mut outcome = "configuration reloaded";
        match Config::load(&path) {
            Ok(new) => {
                let login_changed = format!("{:?}", new.login) != format!("{:?}", self.cfg.login)
                    || format!("{:?}", new.account) != format!("{:?}", self.cfg.account);
                if login_changed {
                    warn!(
                        "the [login]/[account] changes take effect at the next start of ibwarden"
                    );
                }
                self.cfg = new;
                info!(config = %path.display(), "configuration reloaded");
                self.reload_secrets();
            }
            Err(e) => {
                outcome = "configuration reload refused: the file has errors";
                for line in e.to_string().lines() {
                    tracing::error!(problem = %line, "configuration reload refused; keeping the running configuration");
                }
            }
        }
        // systemd expects READY=1 to end a reload; it is only ever sent while the API probe
        // passes (fail closed), else the status says what it waits for.
        if sv.phase() == &core::Phase::Ready && self.ready {
            self.sd.ready(&format!("ready ({outcome})"));
        } else {
            self.sd.status(sv.reason());
        }
    }

    /// A command from the control socket or the IBC command server.
    async fn control(&mut self, req: ControlRequest, sv: &mut Supervisor) {
        let reply = match req.cmd {
            ControlCommand::Vnc => self.start_takeover().await,
            ControlCommand::VncStop => match self.takeover_stop.take() {
                Some(stop) => {
                    let _ = stop.send(());
                    ControlReply::ok("takeover server stopped")
                }
                None => ControlReply::error("no takeover server is running"),
            },
            ControlCommand::Restart => {
                info!("restart requested over the control socket");
                self.reload_secrets();
                sv.handle(now(), Input::Restart);
                ControlReply::ok("restarting the gateway")
            }
            ControlCommand::Stop => {
                info!("stop requested over the control socket");
                sv.handle(now(), Input::Stop);
                ControlReply::ok("stopping: the gateway is closed first, then ibwarden exits")
            }
            ControlCommand::TotpNow => {
                let secrets = current_secrets(&self.secrets);
                control::totp_reply(secrets.totp.as_ref(), now().unix_ms / 1000)
            }
            ControlCommand::Screenshot { out } => {
                let Some(s) = &self.screen else {
                    let _ = req.reply.send(ControlReply::error("no display is running"));
                    return;
                };
                let target = s.target.clone();
                let reply = req.reply;
                tokio::task::spawn_blocking(move || {
                    let png = crate::x11::screenshot::screenshot(&target, None)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(control::screenshot_reply(&out, png));
                });
                return;
            }
        };
        let _ = req.reply.send(reply);
    }

    /// Follows the gateway's `launcher.log` (inotify) and feeds its events to the core.
    fn follow_launcher_log(&self) {
        let path = self.cfg.gateway.settings_dir.join("launcher.log");
        let (log_tx, mut log_rx) = mpsc::channel(64);
        match crate::launcher_log::follow(path, log_tx) {
            Ok(task) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    while let Some(ev) = log_rx.recv().await {
                        if tx.send(Input::GatewayLog(ev)).is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    if let Ok(Err(e)) = task.await {
                        warn!(error = %e, "launcher.log no longer followed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "launcher.log not followed; silent drops are seen from titles only")
            }
        }
    }

    /// Starts the human-takeover VNC server on the gateway's display (loopback only, one
    /// session, one-time password). While a person is connected nothing is typed.
    async fn start_takeover(&mut self) -> ControlReply {
        if self.takeover_stop.is_some() {
            return ControlReply::error(
                "a takeover server is already running; `ibwarden vnc --stop` first",
            );
        }
        let Some(screen) = &self.screen else {
            return ControlReply::error("no display is running");
        };
        let (mut takeover, port, password) =
            match crate::takeover::Takeover::start(&screen.target, &self.state_dir).await {
                Ok(t) => t,
                Err(e) => {
                    return ControlReply::error(format!("cannot start the takeover server: {e}"))
                }
            };
        let Some(mut events) = takeover.events() else {
            return ControlReply::error("takeover events unavailable");
        };
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        self.takeover_stop = Some(stop_tx);
        let human = self.human.clone();
        let tx = self.tx.clone();
        info!(port, "takeover server listening on 127.0.0.1 (one session)");
        tokio::spawn(async move {
            let mut tk = Some(takeover);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(crate::takeover::TakeoverEvent::Connected) => {
                            human.store(true, Ordering::SeqCst);
                            info!("a person connected to the display; typing paused");
                            let _ = tx.send(Input::HumanConnected);
                        }
                        Some(crate::takeover::TakeoverEvent::Disconnected) => {
                            human.store(false, Ordering::SeqCst);
                            info!("the person disconnected; typing resumes");
                            let _ = tx.send(Input::HumanLeft);
                            if let Some(t) = tk.take() {
                                t.stop().await;
                            }
                        }
                        Some(crate::takeover::TakeoverEvent::Ended { reason }) => {
                            info!(%reason, "takeover server ended");
                            if human.swap(false, Ordering::SeqCst) {
                                let _ = tx.send(Input::HumanLeft);
                            }
                            break;
                        }
                        None => break,
                    },
                    _ = &mut stop_rx, if tk.is_some() => {
                        if let Some(t) = tk.take() {
                            t.stop().await;
                        }
                    }
                }
            }
        });
        ControlReply::Vnc {
            port,
            password: password.expose().to_string(),
        }
    }

    /// Publishes the core's state for `status`, `/readyz` and `/metrics`.
    fn publish(&mut self, sv: &Supervisor) {
        let n = now();
        let mut snap = st::read(&self.status);
        snap.phase = format!("{:?}", sv.phase());
        snap.ready = self.ready && *sv.phase() == core::Phase::Ready;
        snap.reason = sv.reason().to_string();
        snap.jvm_pid = sv.pid();
        snap.last_ready_unix_ms = sv.stats.last_ready_unix_ms;
        snap.logins = sv.stats.logins;
        snap.readies = sv.stats.readies;
        snap.restarts = sv.stats.restarts.clone();
        snap.login_budget_left = sv.login_budget_left(n);
        snap.heartbeat_unix_ms = n.unix_ms;
        snap.next_scheduled = self.next_scheduled.clone();
        snap.human_connected = self.human.load(Ordering::SeqCst);
        st::publish(&self.status, snap);
    }

    async fn shutdown(&mut self) {
        self.sd.send("STOPPING=1");
        if let Some(stop) = self.takeover_stop.take() {
            let _ = stop.send(());
        }
        // Give queued notifications (e.g. "login failed") a moment to leave.
        self.notifier.flush(Duration::from_secs(5)).await;
        if let Some(mut s) = self.screen.take() {
            if let Some(x) = s.xvfb.as_mut() {
                let _ = x.stop().await;
            }
        }
    }

    /// Executes one action. Returns an exit code when the process should end.
    async fn execute(&mut self, action: Action, sv: &Supervisor) -> Option<i32> {
        match action {
            Action::Launch { use_restart_token } => self.launch(use_restart_token).await,
            Action::Type {
                ticket,
                window,
                steps,
            } => {
                debug!(ticket, window, ?steps, "typing");
                let sent = self.screen.as_ref().map(|s| {
                    s.jobs.send(TypeJob {
                        ticket,
                        window,
                        steps,
                    })
                });
                if !matches!(sent, Some(Ok(()))) {
                    let _ = self.tx.send(Input::Typed {
                        ticket,
                        result: TypeResult::Failed("no display".into()),
                    });
                }
            }
            Action::ReadText { window } => {
                let Some(s) = &self.screen else {
                    let _ = self.tx.send(Input::WindowText { window, text: None });
                    return None;
                };
                let target = s.target.clone();
                let reader = self.reader.clone();
                let tx = self.tx.clone();
                let pid = self.jvm_pid.load(Ordering::SeqCst);
                let title = self
                    .titles
                    .lock()
                    .ok()
                    .and_then(|t| t.get(&window).cloned())
                    .unwrap_or_default();
                tokio::task::spawn_blocking(move || {
                    let text = match reader {
                        ContentReader::Atspi(_) => read_accessible_text(&reader, pid, &title),
                        _ => read_window_text(&target, window, &reader),
                    };
                    debug!(window, text = ?text, "dialog text");
                    let _ = tx.send(Input::WindowText { window, text });
                });
            }
            Action::Screenshot { window, reason } => {
                if let Some(s) = &self.screen {
                    let target = s.target.clone();
                    let dir = self.state_dir.join("screenshots");
                    tokio::task::spawn_blocking(move || {
                        match save_screenshot(&target, window, &dir, reason) {
                            Ok(p) => info!(path = %p.display(), reason, "screenshot saved"),
                            Err(e) => warn!(error = %e, reason, "screenshot failed"),
                        }
                    });
                }
            }
            Action::Probe => {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.cfg.gateway.api_port));
                let client_id = self.cfg.probe.client_id;
                let timeout = self.cfg.probe.timeout;
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let outcome = crate::probe::probe(addr, client_id, timeout).await;
                    debug!(?outcome, "probe");
                    let _ = tx.send(Input::Probe(outcome));
                });
            }
            Action::CloseGateway { main_window } => self.close_gateway(main_window),
            Action::KillGateway => self.kill_jvm(),
            Action::SaveState(p) => {
                let mut st = PersistedState::load(&self.state_dir).unwrap_or_default();
                st.last_totp_step = p.last_totp_step;
                st.failed_logins = p.failed_logins;
                st.credentials_rejected = p.credentials_rejected;
                if let Err(e) = st.save(&self.state_dir) {
                    // Without durable state a TOTP step or a login attempt could be
                    // replayed after a crash: stop instead of risking the account.
                    tracing::error!(error = %e, "cannot persist state; stopping");
                    self.kill_jvm();
                    return Some(exit::FAILURE);
                }
            }
            Action::Notify {
                kind,
                severity,
                message,
            } => {
                // The core's decision, before deduplication (tests and people grep it).
                warn!(?kind, ?severity, %message, "notify");
                self.notifier.notify(kind, severity, &message);
            }
            Action::Status { ready, text } => {
                self.ready = ready;
                if ready {
                    // A ready gateway clears every active notification (a fixed password
                    // after "login failed", ...), so the next failure is told again.
                    self.notifier.ready();
                    let secs = self.launched_at.elapsed().as_secs_f64();
                    info!(status = %text, took = %format!("{secs:.1}s"), "ready");
                    if !self.ready_sent {
                        self.ready_sent = true;
                        self.sd.send(&format!("READY=1\nSTATUS={text}"));
                    } else {
                        self.sd.send(&format!("STATUS={text}"));
                    }
                } else {
                    info!(status = %text, phase = ?sv.phase(), "status");
                    self.sd.send(&format!("STATUS={text}"));
                }
            }
            Action::Exit(code) => return Some(code),
        }
        None
    }

    async fn launch(&mut self, use_restart_token: bool) {
        if let Err(e) = self.ensure_screen().await {
            let _ = self.tx.send(Input::SpawnFailed {
                reason: format!("{e:#}"),
            });
            return;
        }
        let Some(screen) = &self.screen else {
            return;
        };
        let restart: Option<std::ffi::OsString> = if use_restart_token {
            match launch::find_autorestart_token(&self.cfg.gateway.settings_dir) {
                launch::AutorestartScan::None => None,
                scan => {
                    let arg = scan.restart_arg();
                    if arg.is_some() {
                        info!("auto-restart token found: relaunching without credentials");
                    }
                    arg
                }
            }
        } else {
            None
        };
        let with_token = restart.is_some();
        let params = launch::LaunchParams {
            settings_dir: self.cfg.gateway.settings_dir.clone(),
            work_dir: self.work_dir.clone(),
            restart,
            extra_jvm_args: {
                let mut args = self.cfg.gateway.jvm_args.clone();
                if self.atspi_bus.is_some() {
                    match crate::reader::AtspiBus::jvm_args() {
                        Ok(a) => args.extend(a),
                        Err(e) => warn!(error = %e, "ATK wrapper missing; AT-SPI reads nothing"),
                    }
                }
                args
            },
            display: screen.target.name.clone(),
            xauthority: screen.target.xauthority.clone(),
            dbus_session_bus_address: self
                .atspi_bus
                .as_ref()
                .map(|b| std::ffi::OsString::from(b.address())),
            path_env: std::env::var_os("PATH"),
            home: std::env::var_os("HOME"),
        };
        let cmd = match launch::build_command(&self.install, &self.inputs, &params) {
            Ok(c) => c,
            Err(e) => {
                let _ = self.tx.send(Input::SpawnFailed {
                    reason: e.to_string(),
                });
                return;
            }
        };
        let opts = process::SpawnOptions::new(self.work_dir.join("gateway.log"));
        let mut child = match process::spawn(&cmd, &opts) {
            Ok(c) => c,
            Err(e) => {
                let _ = self.tx.send(Input::SpawnFailed {
                    reason: e.to_string(),
                });
                return;
            }
        };
        let pid = child.pid();
        let started = child.started();
        if let Err(e) = process::write_pidfile(&self.pidfile(), pid) {
            warn!(error = %e, "cannot write the gateway pid file");
        }
        info!(pid, "gateway JVM started");
        self.launched_at = Instant::now();
        self.jvm_pid.store(pid, Ordering::SeqCst);
        self.jvm = Some(Jvm {
            pid,
            pidfd: child.pidfd(),
        });
        let _ = self.tx.send(Input::Spawned { pid, with_token });
        let tx = self.tx.clone();
        let work_dir = self.work_dir.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let (code, signal) = match &status {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    (s.code(), s.signal())
                }
                Err(_) => (None, None),
            };
            let hs = process::find_hs_err(&work_dir, pid, started);
            process::reap_group_orphans(pid);
            info!(pid, ?code, ?signal, hs_err = ?hs, "gateway JVM exited");
            let _ = tx.send(Input::Exited {
                code,
                signal,
                hs_err: hs.map(|p| p.display().to_string()),
            });
        });
    }

    fn close_gateway(&mut self, main_window: Option<u32>) {
        let Some(jvm) = &self.jvm else {
            return;
        };
        let pidfd = jvm.pidfd.clone();
        let typist = self.screen.as_ref().map(|s| s.typist.clone());
        tokio::spawn(async move {
            // Close it the way a user would: a hard-killed JVM can strand the server-side
            // session for hours (`reference/peers.md` §16).
            if let (Some(t), Some(w)) = (typist, main_window) {
                let _ = tokio::task::spawn_blocking(move || t.close_window(w)).await;
                if tokio::time::timeout(Duration::from_secs(15), pidfd.exited())
                    .await
                    .is_ok()
                {
                    return;
                }
                warn!("gateway did not close from its window; sending SIGTERM");
            }
            if let Err(e) = process::terminate_pidfd(&pidfd, Duration::from_secs(10)).await {
                warn!(error = %e, "could not terminate the gateway");
            }
        });
    }
}

/// Shared, replaceable secrets.
type SecretSlot = Arc<std::sync::RwLock<Arc<Secrets>>>;

fn current_secrets(slot: &SecretSlot) -> Arc<Secrets> {
    match slot.read() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn typist_thread(
    typist: Arc<Typist>,
    slot: SecretSlot,
    jobs: std::sync::mpsc::Receiver<TypeJob>,
    tx: mpsc::UnboundedSender<Input>,
    human: Arc<std::sync::atomic::AtomicBool>,
) {
    while let Ok(job) = jobs.recv() {
        let secrets = current_secrets(&slot);
        let resolve = |r: SecretRef| -> Option<Secret> {
            match r {
                SecretRef::Username => Some(Secret::new(secrets.username.clone())),
                SecretRef::Password => Some(Secret::new(secrets.password.expose().to_string())),
                SecretRef::TotpCode { step } => secrets.totp.as_ref().map(|c| c.code_at_step(step)),
            }
        };
        // A person on the display owns the keyboard: send nothing (the core holds the
        // action and retries once they leave).
        if human.load(Ordering::SeqCst) {
            let _ = tx.send(Input::Typed {
                ticket: job.ticket,
                result: TypeResult::FocusLost,
            });
            continue;
        }
        let result = match typist
            .focus(job.window)
            .and_then(|()| typist.type_steps(job.window, &job.steps, &resolve))
        {
            Ok(()) => TypeResult::Done,
            Err(InputError::FocusLost { .. }) | Err(InputError::FocusNotTaken { .. }) => {
                TypeResult::FocusLost
            }
            Err(e) => TypeResult::Failed(e.to_string()),
        };
        debug!(ticket = job.ticket, ?result, "typed");
        if tx
            .send(Input::Typed {
                ticket: job.ticket,
                result,
            })
            .is_err()
        {
            break;
        }
    }
}

/// Reads a window over AT-SPI, retrying while the Java bridge has not registered it yet
/// (the accessible tree follows the X map by tens of milliseconds).
fn read_accessible_text(reader: &ContentReader, pid: u32, title: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(text) = reader.read_accessible(pid, title) {
            if text.split_whitespace().count() >= 2 {
                return Some(text);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Captures a window and reads its text, retrying while Swing has not painted it yet.
fn read_window_text(target: &DisplayTarget, window: u32, reader: &ContentReader) -> Option<String> {
    for attempt in 0..4 {
        if attempt > 0 {
            // The window was mapped before Swing painted it; give the EDT a moment.
            std::thread::sleep(Duration::from_millis(150));
        }
        let png = crate::x11::screenshot::screenshot_painted(
            target,
            Some(window),
            Duration::from_millis(500),
        )
        .ok()?;
        if let Some(text) = reader.read_png(&png) {
            if text.split_whitespace().count() >= 2 {
                return Some(text);
            }
        }
    }
    None
}

fn save_screenshot(
    target: &DisplayTarget,
    window: Option<u32>,
    dir: &Path,
    reason: &str,
) -> anyhow::Result<PathBuf> {
    state::create_private_dir(dir)?;
    // Swing paints ~30 ms after the window maps; a capture before that is blank.
    let png = crate::x11::screenshot::screenshot_painted(target, window, Duration::from_secs(2))?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let path = dir.join(format!("{stamp}-{reason}.png"));
    state::write_atomic(&path, &png)?;
    prune_screenshots(dir, 20);
    Ok(path)
}

/// Keeps the newest `keep` screenshots.
fn prune_screenshots(dir: &Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    if files.len() > keep {
        for p in &files[..files.len() - keep] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// True if `pid` is `ancestor` or one of its descendants (a launcher script may fork the
/// JVM). Reads `/proc/<pid>/stat` parent links; bounded depth.
fn is_same_or_descendant(pid: u32, ancestor: u32) -> bool {
    let mut p = pid;
    for _ in 0..16 {
        if p == ancestor {
            return true;
        }
        if p <= 1 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            return false;
        };
        // The command name is in parentheses and may contain spaces: parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
            return false;
        };
        p = ppid;
    }
    false
}
