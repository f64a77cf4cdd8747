//! The product's [`World`]: the adapters that carry out the core's actions for real.
//!
//! Each effect either completes at once (a signal, a datagram, a channel send) or runs in a
//! tracked task that answers with an [`Event`]; [`World::shutdown`] cancels and waits for
//! all of them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::screen::{self, current_secrets, Job, Screen, SecretSlot, TypeJob};
use super::{Event, World};
use crate::config::Config;
use crate::control::{self, ControlCommand, ControlReply, ControlRequest};
use crate::core::{Action, Input, Now, Supervisor, TypeResult};
use crate::dialog_text::{AtspiBus, ContentReader};
use crate::gateway::{install, launch, process};
use crate::notify::Notifier;
use crate::secret::Secrets;
use crate::status::{self as st, SharedStatus};

/// Adapter results that change what the world holds.
#[derive(Debug)]
pub(crate) enum Msg {
    /// [`Action::StartDisplay`] finished.
    DisplayUp(Result<Box<Screen>, String>),
    /// The X connection died: the screen is dropped, the next launch starts a new one.
    DisplayLost,
    /// The JVM `pid` exited.
    Exited {
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
        hs_err: Option<String>,
    },
    /// SIGHUP's re-read of the configuration (boxed: large).
    Reloaded(Result<Box<Config>, String>),
    /// The takeover server ended (or never started).
    TakeoverEnded,
}

/// The JVM we run.
struct Jvm {
    pid: u32,
}

/// Everything [`RealWorld`] is built from (see `wiring`).
pub(crate) struct Parts {
    pub(crate) cfg: Config,
    pub(crate) secrets: Secrets,
    pub(crate) install: install::Install,
    pub(crate) inputs: launch::LaunchInputs,
    pub(crate) reader: ContentReader,
    pub(crate) atspi_bus: Option<AtspiBus>,
    pub(crate) status: SharedStatus,
    /// Whether the gateway serves, for the API relay.
    pub(crate) serving: tokio::sync::watch::Sender<crate::relay::Serving>,
    pub(crate) notifier: Notifier,
    pub(crate) tx: mpsc::UnboundedSender<Event<Msg>>,
    pub(crate) tasks: TaskTracker,
    pub(crate) cancel: CancellationToken,
}

/// The real adapters.
pub(crate) struct RealWorld {
    cfg: Config,
    secrets: SecretSlot,
    install: install::Install,
    inputs: launch::LaunchInputs,
    state_dir: PathBuf,
    work_dir: PathBuf,
    reader: ContentReader,
    atspi_bus: Option<AtspiBus>,
    tx: mpsc::UnboundedSender<Event<Msg>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    screen: Option<Screen>,
    /// The core's windows and their kinds, as last published (for `inspect`).
    windows_seen: Vec<(crate::core::WindowInfo, crate::core::dialog::DialogKind)>,
    display_starting: bool,
    jvm: Option<Jvm>,
    sd: crate::sdnotify::Systemd,
    /// When the current launch began (for the time-to-ready figure).
    launched_at: Instant,
    status: SharedStatus,
    serving: tokio::sync::watch::Sender<crate::relay::Serving>,
    notifier: Notifier,
    /// A person is connected over VNC: the typist sends nothing (shared with its thread).
    human: Arc<AtomicBool>,
    takeover_stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Keys changed on reload that wait for a restart of ibwarden (shown by `status`).
    restart_pending: Vec<String>,
    /// Gateway launches so far (the first is never replaced by a re-exec).
    launches: u32,
    /// The "upgraded but cannot re-exec" warning was given.
    upgrade_warned: bool,
    /// Round-trip of the last probe in microseconds while it passed; [`NO_LATENCY`] after a
    /// failed one (written by the probe task, read when publishing).
    probe_latency_us: Arc<AtomicU64>,
}

/// [`RealWorld::probe_latency_us`] when the last probe failed.
const NO_LATENCY: u64 = u64::MAX;

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RealWorld {
    pub(crate) fn new(p: Parts) -> RealWorld {
        let state_dir = p.cfg.state.dir.clone();
        RealWorld {
            work_dir: state_dir.join("jvm"),
            state_dir,
            cfg: p.cfg,
            secrets: Arc::new(std::sync::RwLock::new(Arc::new(p.secrets))),
            install: p.install,
            inputs: p.inputs,
            reader: p.reader,
            atspi_bus: p.atspi_bus,
            tx: p.tx,
            tasks: p.tasks,
            cancel: p.cancel,
            screen: None,
            windows_seen: Vec::new(),
            display_starting: false,
            jvm: None,
            sd: crate::sdnotify::Systemd::from_env(),
            launched_at: Instant::now(),
            status: p.status,
            serving: p.serving,
            notifier: p.notifier,
            human: Arc::new(AtomicBool::new(false)),
            takeover_stop: None,
            restart_pending: Vec::new(),
            probe_latency_us: Arc::new(AtomicU64::new(NO_LATENCY)),
            launches: 0,
            upgrade_warned: false,
        }
    }

    fn signal_jvm(&self, sig: Signal) {
        if let Some(j) = &self.jvm {
            let pgid = Pid::from_raw(i32::try_from(j.pid).unwrap_or(i32::MAX));
            let _ = killpg(pgid, sig);
            if sig == Signal::SIGTERM {
                let _ = killpg(pgid, Signal::SIGCONT);
            }
        }
    }

    /// Re-reads the secrets (after `ibwarden secret set`, or a rotated systemd credential)
    /// on the blocking pool, then sends `then` (if any), so what follows sees the new ones.
    /// On failure the ones in memory stay, and the error (never a value) is logged.
    fn reload_secrets(&self, then: Option<Input>) {
        let cfg = self.cfg.clone();
        let slot = self.secrets.clone();
        let tx = self.tx.clone();
        let task = tokio::task::spawn_blocking(move || {
            match Secrets::load(&cfg) {
                Ok(new) => {
                    if let Ok(mut s) = slot.write() {
                        *s = Arc::new(new);
                    }
                    info!("secrets re-read");
                }
                Err(e) => warn!(error = %e, "cannot re-read the secrets; keeping the loaded ones"),
            }
            if let Some(input) = then {
                let _ = tx.send(Event::Input(input));
            }
        });
        self.tasks.spawn(task);
    }

    fn launch(&mut self, use_restart_token: bool) -> Option<Input> {
        if self.launches > 0 {
            if let Some(new) = super::upgrade::replaced_binary() {
                if self.cfg.account.has_env_secret() {
                    if !self.upgrade_warned {
                        self.upgrade_warned = true;
                        warn!(
                            binary = %new.display(),
                            "ibwarden was upgraded, but a secret comes from the environment and \
                             would not survive a re-exec: restart the service to run the new binary"
                        );
                    }
                } else {
                    info!(
                        binary = %new.display(),
                        "ibwarden was upgraded: starting the new binary before the gateway"
                    );
                    super::upgrade::request(new);
                    return Some(Input::Stop);
                }
            }
        }
        self.launches += 1;
        let Some(screen) = &self.screen else {
            return Some(Input::SpawnFailed {
                reason: "no display".into(),
            });
        };
        let restart = if use_restart_token {
            let arg = launch::find_autorestart_token(&self.cfg.gateway.settings_dir).restart_arg();
            if arg.is_some() {
                info!("auto-restart token found: relaunching without credentials");
            }
            arg
        } else {
            None
        };
        let with_token = restart.is_some();
        crate::launcher_log::clear_blocking(&self.cfg.gateway.settings_dir.join("launcher.log"));
        let mut extra_jvm_args = self.cfg.gateway.jvm_args.clone();
        if self.atspi_bus.is_some() {
            match AtspiBus::jvm_args() {
                Ok(a) => extra_jvm_args.extend(a),
                Err(e) => warn!(error = %e, "ATK wrapper missing; AT-SPI reads nothing"),
            }
        }
        let params = launch::LaunchParams {
            settings_dir: self.cfg.gateway.settings_dir.clone(),
            work_dir: self.work_dir.clone(),
            restart,
            extra_jvm_args,
            display: screen.target.name.clone(),
            xauthority: screen.target.xauthority.clone(),
            dbus_session_bus_address: self
                .atspi_bus
                .as_ref()
                .map(|b| std::ffi::OsString::from(b.address())),
            path_env: std::env::var_os("PATH"),
            home: std::env::var_os("HOME"),
        };
        let spawned = launch::build_command(&self.install, &self.inputs, &params)
            .map_err(|e| e.to_string())
            .and_then(|cmd| {
                let opts = process::SpawnOptions::new(self.work_dir.join("gateway.log"));
                process::spawn(&cmd, &opts).map_err(|e| e.to_string())
            });
        let mut child = match spawned {
            Ok(c) => c,
            Err(reason) => return Some(Input::SpawnFailed { reason }),
        };
        let pid = child.pid();
        let started = child.started();
        if let Err(e) = process::write_pidfile(&self.state_dir.join("gateway.pid"), pid) {
            warn!(error = %e, "cannot write the gateway pid file");
        }
        info!(pid, "gateway JVM started");
        self.launched_at = Instant::now();
        self.jvm = Some(Jvm { pid });
        let tx = self.tx.clone();
        let work_dir = self.work_dir.clone();
        self.tasks.spawn(async move {
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
            let _ = tx.send(Event::World(Msg::Exited {
                pid,
                code,
                signal,
                hs_err: hs.map(|p| p.display().to_string()),
            }));
        });
        Some(Input::Spawned { pid, with_token })
    }

    fn start_display(&mut self) -> Option<Input> {
        if self.screen.is_some() {
            return Some(Input::DisplayReady);
        }
        if self.display_starting {
            return None;
        }
        self.display_starting = true;
        let cfg = self.cfg.clone();
        let state_dir = self.state_dir.clone();
        let secrets = self.secrets.clone();
        let human = self.human.clone();
        let tx = self.tx.clone();
        let tasks = self.tasks.clone();
        self.tasks.spawn(async move {
            let r = screen::start(&cfg, &state_dir, secrets, human, tx.clone(), &tasks).await;
            let _ = tx.send(Event::World(Msg::DisplayUp(
                r.map(Box::new).map_err(|e| format!("{e:#}")),
            )));
        });
        None
    }

    /// Starts the human-takeover VNC server on the gateway's display (loopback only, one
    /// session, one-time password) in a task that answers the request itself.
    fn start_takeover(&mut self, reply: tokio::sync::oneshot::Sender<ControlReply>) {
        if self.takeover_stop.is_some() {
            let _ = reply.send(ControlReply::error(
                "a takeover server is already running; `ibwarden vnc --stop` first",
            ));
            return;
        }
        let Some(screen) = &self.screen else {
            let _ = reply.send(ControlReply::error("no display is running"));
            return;
        };
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        self.takeover_stop = Some(stop_tx);
        let target = screen.target.clone();
        let state_dir = self.state_dir.clone();
        let human = self.human.clone();
        let tx = self.tx.clone();
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            let started = crate::takeover::Takeover::start(&target, &state_dir).await;
            let (mut takeover, port, password) = match started {
                Ok(t) => t,
                Err(e) => {
                    let _ = reply.send(ControlReply::error(format!(
                        "cannot start the takeover server: {e}"
                    )));
                    let _ = tx.send(Event::World(Msg::TakeoverEnded));
                    return;
                }
            };
            let Some(mut events) = takeover.events() else {
                let _ = reply.send(ControlReply::error("takeover events unavailable"));
                takeover.stop().await;
                let _ = tx.send(Event::World(Msg::TakeoverEnded));
                return;
            };
            info!(port, "takeover server listening on 127.0.0.1 (one session)");
            let _ = reply.send(ControlReply::Vnc {
                port,
                password: password.expose().to_string(),
            });
            let mut tk = Some(takeover);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(crate::takeover::TakeoverEvent::Connected) => {
                            human.store(true, Ordering::SeqCst);
                            info!("a person connected to the display; typing paused");
                            let _ = tx.send(Event::Input(Input::HumanConnected));
                        }
                        Some(crate::takeover::TakeoverEvent::Disconnected) => {
                            human.store(false, Ordering::SeqCst);
                            info!("the person disconnected; typing resumes");
                            let _ = tx.send(Event::Input(Input::HumanLeft));
                            if let Some(t) = tk.take() {
                                t.stop().await;
                            }
                        }
                        Some(crate::takeover::TakeoverEvent::Ended { reason }) => {
                            info!(%reason, "takeover server ended");
                            if human.swap(false, Ordering::SeqCst) {
                                let _ = tx.send(Event::Input(Input::HumanLeft));
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
                    _ = cancel.cancelled() => {
                        if let Some(t) = tk.take() {
                            t.stop().await;
                        }
                        break;
                    }
                }
            }
            let _ = tx.send(Event::World(Msg::TakeoverEnded));
        });
    }
}

impl World for RealWorld {
    type Msg = Msg;

    fn now(&self) -> Now {
        Now {
            mono: tokio::time::Instant::now().into_std(),
            unix_ms: unix_ms(),
        }
    }

    async fn execute(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::StartDisplay => return self.start_display(),
            Action::Launch { use_restart_token } => return self.launch(use_restart_token),
            Action::Type {
                ticket,
                window,
                steps,
            } => {
                debug!(ticket, window, ?steps, "typing");
                let sent = self.screen.as_ref().map(|s| {
                    s.jobs.send(Job::Type(TypeJob {
                        ticket,
                        window,
                        steps,
                    }))
                });
                if !matches!(sent, Some(Ok(()))) {
                    return Some(Input::Typed {
                        ticket,
                        result: TypeResult::Failed("no display".into()),
                    });
                }
            }
            Action::CheckForm {
                ticket,
                window,
                form,
            } => {
                let job = super::seeing::CheckJob {
                    ticket,
                    window,
                    form,
                    device: self.cfg.login.second_factor.label().to_string(),
                };
                let sent = self.screen.as_ref().map(|s| s.jobs.send(Job::Check(job)));
                if !matches!(sent, Some(Ok(()))) {
                    return Some(Input::FormChecked {
                        ticket,
                        verdict: crate::core::FormVerdict::Unseen("no display".into()),
                        targets: Default::default(),
                    });
                }
            }
            Action::ReadText { window, title } => {
                let Some(s) = &self.screen else {
                    return Some(Input::WindowText { window, text: None });
                };
                let target = s.target.clone();
                let reader = self.reader.clone();
                let tx = self.tx.clone();
                let pid = self.jvm.as_ref().map_or(0, |j| j.pid);
                let task = tokio::task::spawn_blocking(move || {
                    let text = screen::read_text(&reader, &target, window, pid, &title);
                    debug!(window, text = ?text, "dialog text");
                    let _ = tx.send(Event::Input(Input::WindowText { window, text }));
                });
                self.tasks.spawn(task);
            }
            Action::Screenshot { window, reason } => {
                if let Some(s) = &self.screen {
                    let target = s.target.clone();
                    let dir = self.state_dir.join("screenshots");
                    let task = tokio::task::spawn_blocking(move || {
                        match screen::save_screenshot(&target, window, &dir, reason) {
                            Ok(p) => info!(path = %p.display(), reason, "screenshot saved"),
                            Err(e) => warn!(error = %e, reason, "screenshot failed"),
                        }
                    });
                    self.tasks.spawn(task);
                }
            }
            Action::Probe => {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.cfg.gateway.api_port));
                let client_id = self.cfg.probe.client_id;
                let timeout = self.cfg.probe.timeout;
                let tx = self.tx.clone();
                let latency = self.probe_latency_us.clone();
                self.tasks.spawn(async move {
                    let started = Instant::now();
                    let outcome = crate::probe::probe(addr, client_id, timeout).await;
                    let us = match &outcome {
                        crate::core::ProbeOutcome::Up { .. } => {
                            u64::try_from(started.elapsed().as_micros()).unwrap_or(NO_LATENCY - 1)
                        }
                        _ => NO_LATENCY,
                    };
                    latency.store(us, Ordering::SeqCst);
                    debug!(?outcome, "probe");
                    let _ = tx.send(Event::Input(Input::Probe(outcome)));
                });
            }
            Action::CloseGateway { main_window } => {
                if let Some(s) = &self.screen {
                    let typist = s.typist.clone();
                    let task = tokio::task::spawn_blocking(move || {
                        if let Err(e) = typist.close_window(main_window) {
                            warn!(error = %e, "cannot ask the gateway's window to close");
                        }
                    });
                    self.tasks.spawn(task);
                }
            }
            Action::TerminateGateway => self.signal_jvm(Signal::SIGTERM),
            Action::KillGateway => self.signal_jvm(Signal::SIGKILL),
            Action::SaveState(p) => {
                // Durable before the next action: awaited here, written off the runtime.
                let dir = self.state_dir.clone();
                let saved = tokio::task::spawn_blocking(move || p.save(&dir)).await;
                let err = match saved {
                    Ok(Ok(())) => return None,
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return Some(Input::StateNotSaved { reason: err });
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
            Action::Status {
                ready,
                text,
                sd_ready,
            } => {
                if ready {
                    // A ready gateway clears every active notification (a fixed password
                    // after "login failed", ...), so the next failure is told again.
                    self.notifier.ready();
                    let secs = self.launched_at.elapsed().as_secs_f64();
                    info!(status = %text, took = %format!("{secs:.1}s"), "ready");
                } else {
                    info!(status = %text, "status");
                }
                if sd_ready {
                    self.sd.ready(&text);
                } else {
                    self.sd.status(&text);
                }
            }
            Action::Exit(_) => {}
        }
        None
    }

    fn absorb(&mut self, msg: Msg) -> Option<Input> {
        match msg {
            Msg::DisplayUp(r) => {
                self.display_starting = false;
                match r {
                    Ok(s) => {
                        self.screen = Some(*s);
                        Some(Input::DisplayReady)
                    }
                    Err(reason) => Some(Input::DisplayFailed { reason }),
                }
            }
            Msg::DisplayLost => {
                // Dropping the screen stops the watcher and the typist.
                self.screen = None;
                Some(Input::DisplayLost)
            }
            Msg::Exited {
                pid,
                code,
                signal,
                hs_err,
            } => {
                if self.jvm.as_ref().is_some_and(|j| j.pid == pid) {
                    self.jvm = None;
                }
                Some(Input::Exited {
                    code,
                    signal,
                    hs_err,
                })
            }
            Msg::Reloaded(Ok(new)) => {
                let path = new.path.clone();
                let r = super::wiring::apply_reload(&self.cfg, *new, self.reader.available());
                if r.restart_needed.is_empty() {
                    info!(config = %path.display(), "configuration reloaded");
                } else {
                    warn!(config = %path.display(), restart_needed = %r.restart_needed.join(", "),
                        "configuration reloaded; these keys take effect at the next start of ibwarden");
                }
                self.notifier =
                    Notifier::new(&r.config.notify, &super::wiring::instance_name(&r.config));
                self.restart_pending = r.restart_needed;
                self.cfg = r.config;
                self.reload_secrets(Some(Input::Reconfigure(Box::new(r.core))));
                None
            }
            Msg::Reloaded(Err(errors)) => {
                for line in errors.lines() {
                    tracing::error!(problem = %line, "configuration reload refused; keeping the running configuration");
                }
                Some(Input::ReloadRefused)
            }
            Msg::TakeoverEnded => {
                self.takeover_stop = None;
                None
            }
        }
    }

    fn reload(&mut self) {
        self.sd.reloading("reloading the configuration");
        let path = self.cfg.path.clone();
        let tx = self.tx.clone();
        let task = tokio::task::spawn_blocking(move || {
            let r = Config::load(&path).map(Box::new).map_err(|e| e.to_string());
            let _ = tx.send(Event::World(Msg::Reloaded(r)));
        });
        self.tasks.spawn(task);
    }

    fn control(&mut self, req: ControlRequest) -> Option<Input> {
        let reply = match req.cmd {
            ControlCommand::Vnc => {
                self.start_takeover(req.reply);
                return None;
            }
            ControlCommand::VncStop => match self.takeover_stop.take() {
                Some(stop) => {
                    let _ = stop.send(());
                    ControlReply::ok("takeover server stopped")
                }
                None => ControlReply::error("no takeover server is running"),
            },
            ControlCommand::Restart => {
                info!("restart requested over the control socket");
                let _ = req.reply.send(ControlReply::ok("restarting the gateway"));
                // The person may have just replaced a secret: the restart uses the new one.
                self.reload_secrets(Some(Input::Restart));
                return None;
            }
            ControlCommand::Stop => {
                info!("stop requested over the control socket");
                let _ = req.reply.send(ControlReply::ok(
                    "stopping: the gateway is closed first, then ibwarden exits",
                ));
                return Some(Input::Stop);
            }
            ControlCommand::TotpNow => {
                let secrets = current_secrets(&self.secrets);
                control::totp_reply(secrets.totp.as_ref(), unix_ms() / 1000)
            }
            ControlCommand::Inspect { out } => {
                let Some(s) = &self.screen else {
                    let _ = req.reply.send(ControlReply::error("no display is running"));
                    return None;
                };
                if !out.is_absolute() {
                    let _ = req.reply.send(ControlReply::error(format!(
                        "{} is not an absolute path",
                        out.display()
                    )));
                    return None;
                }
                let target = s.target.clone();
                let windows: Vec<crate::screen::inspect::Seen> = self
                    .windows_seen
                    .iter()
                    .map(|(info, kind)| crate::screen::inspect::Seen {
                        info: info.clone(),
                        kind: format!("{kind:?}"),
                    })
                    .collect();
                let secrets = current_secrets(&self.secrets);
                let reply = req.reply;
                let task = tokio::task::spawn_blocking(move || {
                    let ocr = crate::screen::ocr::Ocr::find();
                    let r = crate::screen::inspect::write(
                        &out,
                        &target,
                        &windows,
                        ocr.as_ref(),
                        secrets.password.expose(),
                    );
                    let _ = reply.send(match r {
                        Ok(files) => ControlReply::Inspected { files },
                        Err(e) => ControlReply::error(format!("inspect failed: {e}")),
                    });
                });
                self.tasks.spawn(task);
                return None;
            }
            ControlCommand::Screenshot { out } => {
                let Some(s) = &self.screen else {
                    let _ = req.reply.send(ControlReply::error("no display is running"));
                    return None;
                };
                let target = s.target.clone();
                let reply = req.reply;
                let task = tokio::task::spawn_blocking(move || {
                    let png = crate::x11::screenshot::screenshot(&target, None)
                        .map_err(|e| e.to_string());
                    let _ = reply.send(control::screenshot_reply(&out, png));
                });
                self.tasks.spawn(task);
                return None;
            }
        };
        let _ = req.reply.send(reply);
        None
    }

    fn publish(&mut self, core: &Supervisor, now: Now) {
        self.windows_seen = core.windows_seen();
        let mut snap = st::read(&self.status);
        snap.phase = core.phase().name().to_string();
        snap.ready = core.is_ready();
        snap.reason = core.reason().to_string();
        snap.jvm_pid = core.pid();
        snap.last_ready_unix_ms = core.stats.last_ready_unix_ms;
        snap.logins = core.stats.logins;
        snap.readies = core.stats.readies;
        snap.restarts = core.stats.restarts.clone();
        snap.login_budget_left = core.login_budget_left(now);
        snap.heartbeat_unix_ms = now.unix_ms;
        snap.next_scheduled = core
            .next_scheduled(now)
            .map(|(what, at_unix_ms)| st::Scheduled { what, at_unix_ms });
        snap.human_connected = self.human.load(Ordering::SeqCst);
        snap.restart_pending = self.restart_pending.clone();
        snap.probe_latency_ms = match self.probe_latency_us.load(Ordering::SeqCst) {
            NO_LATENCY => None,
            us => Some(us as f64 / 1000.0),
        };
        let serving = crate::relay::Serving {
            ready: snap.ready,
            epoch: snap.readies,
        };
        st::publish(&self.status, snap);
        self.serving.send_if_modified(|s| {
            let changed = *s != serving;
            *s = serving;
            changed
        });
    }

    fn tick(&mut self) {
        if crate::sdnotify::watchdog_interval().is_some() {
            self.sd.watchdog();
        }
    }

    async fn shutdown(&mut self) {
        if super::upgrade::requested() {
            // The same pid comes back as the new binary: systemd must not see a stop.
            self.sd.send("STATUS=starting the upgraded ibwarden");
        } else {
            self.sd.send("STOPPING=1");
        }
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
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some adapter tasks did not end within 5 s of the stop");
        }
    }
}
