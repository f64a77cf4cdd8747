//! The Client Portal loop: the [`Machine`] fed by the real adapters (the gateway's JVM, its
//! HTTPS API, the browser login, the control socket, signals), with the same published
//! status, systemd notifications and notices as the IB Gateway path.
//!
//! Each action runs in its own task and reports back as an event; a `Save` is finished
//! before the next action starts (a crash right after cannot forget a halt or a used code).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::api::Api;
use super::browser::{self, LoginRequest};
use super::install::CpInstall;
use super::machine::{Action, ApiReply, Input, LoginOutcome, Machine, Phase, Settings};
use crate::config::Config;
use crate::control::{self, ControlCommand, ControlReply, ControlRequest};
use crate::core::Persisted;
use crate::gateway::launch::JvmCommand;
use crate::gateway::process::{self, GatewayProcess, PidFd, SpawnOptions};
use crate::notify::Notifier;
use crate::secret::Secrets;
use crate::status::{self as st, SharedStatus};

/// What the adapters report.
enum Ev {
    Input(Input),
    /// An API answer: the gateway run it was asked of, whether it was a tickle, its round
    /// trip.
    Api {
        run: u64,
        tickle: bool,
        rtt: Duration,
        reply: ApiReply,
    },
    Control(ControlRequest),
    Tick,
}

/// What the loop knows beside the machine, for the status.
#[derive(Default)]
struct View {
    jvm_pid: Option<u32>,
    last_tickle_unix_ms: Option<u64>,
    probe_latency_ms: Option<f64>,
}

/// What the loop needs from the wiring.
pub struct Parts {
    /// The config.
    pub cfg: Config,
    /// The loaded secrets.
    pub secrets: Secrets,
    /// The install.
    pub install: CpInstall,
    /// The persisted state.
    pub persisted: Persisted,
    /// The published status.
    pub status: SharedStatus,
    /// Notices to people.
    pub notifier: Notifier,
    /// Control requests.
    pub control: mpsc::Receiver<ControlRequest>,
    /// The adapters' tasks.
    pub tasks: TaskTracker,
    /// Cancels them.
    pub cancel: CancellationToken,
}

fn unix_ms() -> u64 {
    crate::driver::unix_ms()
}

/// Runs until stopped; the exit code.
pub async fn run(p: Parts) -> anyhow::Result<i32> {
    let Parts {
        cfg,
        secrets,
        install,
        persisted,
        status,
        notifier,
        control: mut ctl_rx,
        tasks,
        cancel,
    } = p;
    let Some(chromium) = browser::find_chromium(std::env::var_os("PATH").as_deref()) else {
        eprintln!(
            "ibwarden: Chromium not found on PATH: the Client Portal login needs it (Debian: \
             apt-get install chromium)"
        );
        return Ok(crate::driver::exit::CONFIG);
    };
    info!(install = %install.dir.display(), port = install.port, chromium = %chromium.display(), "Client Portal gateway found");
    let no_sandbox = match browser::sandbox_blocker(&chromium) {
        Some(why) => {
            info!(
                why,
                "Chromium runs with --no-sandbox (inside ibwarden's own confinement only)"
            );
            true
        }
        None => false,
    };
    let strays = super::stray::find(&install.dir);
    if !strays.is_empty() {
        warn!(
            pids = ?strays,
            "a Client Portal gateway of an earlier run is still running (that ibwarden was \
             killed before it could stop it); stopping it first"
        );
        super::stray::stop(&install.dir, &strays, Duration::from_secs(20)).await;
    }
    if std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], install.port)),
        Duration::from_secs(1),
    )
    .is_ok()
    {
        warn!(
            port = install.port,
            "something already listens on the Client Portal gateway's port (root/conf.yaml \
             listenPort): the gateway ibwarden starts cannot bind it until it goes"
        );
    }
    let api = Api::new(install.port, install.ssl);
    let settings = Settings {
        // probe.interval is how often the session is looked at (a tickle answers with the
        // status); IBKR ends an idle session after about 6 minutes, so at most a minute.
        tickle_interval: cfg.probe.interval.min(Duration::from_secs(60)),
        login_timeout: cfg.login.login_timeout,
        max_failed_logins_per_hour: cfg.login.max_failed_logins_per_hour,
        max_code_rejections: cfg.login.max_code_rejections,
        min_code_validity: cfg.login.min_code_validity,
        existing_session: cfg.login.existing_session,
        failures_before_restart: cfg.probe.failures_before_restart,
        schedule: Some(crate::driver::schedule(&cfg.schedule)),
        ..Settings::default()
    };
    let mut machine = Machine::new(settings, persisted);
    let (tx, mut rx) = mpsc::unbounded_channel::<Ev>();
    spawn_signals(&tx, &tasks, &cancel)?;
    {
        let tx = tx.clone();
        tasks.spawn(async move {
            while let Some(req) = ctl_rx.recv().await {
                if tx.send(Ev::Control(req)).is_err() {
                    break;
                }
            }
        });
    }
    let sd = crate::sdnotify::Systemd::from_env();
    let state_dir = cfg.state.dir.clone();
    let mut jvm: Option<Arc<PidFd>> = None;
    // The browser login running: its attempt, its cancel token, its task.
    let mut login: Option<(u64, CancellationToken, tokio::task::JoinHandle<()>)> = None;
    let cancel_all = cancel.clone();
    // Bumped at each launch: API answers are matched to the gateway run they asked.
    let mut jvm_run: u64 = 0;
    let mut view = View::default();
    let mut told_ready = false;
    let mut code = 0;
    let mut queue: std::collections::VecDeque<Action> = machine.on(Input::Start, unix_ms()).into();
    loop {
        // Run the actions, in order.
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Save(state) => {
                    let dir = state_dir.clone();
                    match tokio::task::spawn_blocking(move || state.save(&dir)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(error = %e, "cannot save the state"),
                        Err(e) => warn!(error = %e, "cannot save the state"),
                    }
                }
                Action::Launch => match launch(&cfg, &install) {
                    Ok(mut proc) => {
                        info!(pid = proc.pid(), "Client Portal gateway JVM started");
                        jvm = Some(proc.pidfd());
                        jvm_run += 1;
                        view.jvm_pid = Some(proc.pid());
                        let tx = tx.clone();
                        tasks.spawn(async move {
                            let code = proc.wait().await.ok().and_then(|s| s.code());
                            info!(code = ?code, "Client Portal gateway JVM exited");
                            let _ = tx.send(Ev::Input(Input::JvmExited { code }));
                        });
                        queue.extend(machine.on(Input::JvmStarted, unix_ms()));
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot start the Client Portal gateway");
                        queue.extend(machine.on(Input::JvmExited { code: None }, unix_ms()));
                    }
                },
                Action::Kill => {
                    if let Some(fd) = jvm.clone() {
                        tasks.spawn(async move {
                            let _ = process::terminate_pidfd(&fd, Duration::from_secs(5)).await;
                        });
                    }
                }
                Action::StopGateway => {
                    if let Some(fd) = jvm.clone() {
                        let api = api.clone();
                        let grace = cfg.gateway.stop_grace.min(Duration::from_secs(30));
                        tasks.spawn(async move {
                            // The session ends at IBKR first, so it is not left dangling.
                            let _ = tokio::task::spawn_blocking(move || api.logout()).await;
                            let _ = process::terminate_pidfd(&fd, grace).await;
                        });
                    }
                }
                Action::Status | Action::Tickle | Action::Reauthenticate => {
                    let api = api.clone();
                    let tx = tx.clone();
                    let which = action.clone();
                    let run = jvm_run;
                    tasks.spawn(async move {
                        let tickle = which == Action::Tickle;
                        let asked = std::time::Instant::now();
                        let reply = tokio::task::spawn_blocking(move || match which {
                            Action::Tickle => api.tickle(),
                            Action::Reauthenticate => api.reauthenticate(),
                            _ => api.status(),
                        })
                        .await
                        .unwrap_or_else(|e| ApiReply::Down(e.to_string()));
                        let _ = tx.send(Ev::Api {
                            run,
                            tickle,
                            rtt: asked.elapsed(),
                            reply,
                        });
                    });
                }
                Action::AbortLogin => {
                    if let Some((_, cancel, _)) = &login {
                        info!("abandoning the browser login in progress");
                        cancel.cancel();
                    }
                }
                Action::Login {
                    attempt,
                    step,
                    wait,
                } => {
                    let req = LoginRequest {
                        url: api.login_url(),
                        chromium: chromium.clone(),
                        profile_dir: state_dir.join("browser"),
                        username: secrets.username.clone(),
                        password: secrets.password.clone(),
                        code: secrets.totp.as_ref().map(|t| (t.code_at_step(step), wait)),
                        timeout: cfg.login.login_timeout + wait,
                        no_sandbox,
                    };
                    info!(
                        attempt,
                        step,
                        wait_ms = wait.as_millis() as u64,
                        "logging in through the Client Portal page"
                    );
                    // One browser at a time, on one profile dir: a previous login (there
                    // should be none) is cancelled and its clean-up awaited first.
                    let previous = login.take().map(|(_, cancel, done)| {
                        cancel.cancel();
                        done
                    });
                    let cancel = cancel_all.child_token();
                    let tx = tx.clone();
                    let token = cancel.clone();
                    let done = tasks.spawn(async move {
                        if let Some(done) = previous {
                            let _ = done.await;
                        }
                        let outcome = browser::login(req, token).await;
                        let _ = tx.send(Ev::Input(Input::Login { attempt, outcome }));
                    });
                    login = Some((attempt, cancel, done));
                }
                Action::Notify {
                    kind,
                    severity,
                    text,
                } => {
                    warn!("notify kind={kind:?} severity={severity:?} {text}");
                    notifier.notify(kind, severity, &text);
                }
                Action::Exit(c) => code = c,
            }
        }
        publish(&status, &machine, &view, login.is_some());
        if machine.is_ready() && !told_ready {
            told_ready = true;
            info!(status = machine.reason(), "ready");
            sd.ready("ready: Client Portal session authenticated");
        } else if !machine.is_ready() {
            told_ready = false;
            sd.status(machine.reason());
        }
        if *machine.phase() == Phase::Stopped {
            break;
        }
        let wake = machine.next_wake_ms();
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = sleep_until(wake) => Some(Ev::Input(Input::Timer)),
        };
        let Some(ev) = ev else { break };
        match ev {
            Ev::Input(input) => {
                if matches!(input, Input::JvmExited { .. }) {
                    view.jvm_pid = None;
                }
                if let Input::Login { attempt, outcome } = &input {
                    if login.as_ref().is_some_and(|(a, _, _)| a == attempt) {
                        login = None;
                    }
                    match outcome {
                        LoginOutcome::Failed(why) => {
                            warn!(attempt, why = %why, "the browser login failed after submitting")
                        }
                        LoginOutcome::NotSubmitted(why) => warn!(
                            attempt,
                            why = %why,
                            "the browser login stopped before submitting anything"
                        ),
                        _ => {}
                    }
                }
                queue.extend(machine.on(input, unix_ms()));
            }
            Ev::Control(req) => {
                let reply = match req.cmd {
                    ControlCommand::Restart => {
                        info!("restart requested over the control socket");
                        queue.extend(machine.on(Input::Restart, unix_ms()));
                        ControlReply::Ok {
                            message: "restarting the Client Portal gateway".into(),
                        }
                    }
                    ControlCommand::Stop => {
                        queue.extend(machine.on(Input::Stop, unix_ms()));
                        ControlReply::Ok {
                            message: "stopping: logout, then the gateway's JVM".into(),
                        }
                    }
                    ControlCommand::TotpNow => {
                        control::totp_reply(secrets.totp.as_ref(), unix_ms() / 1000)
                    }
                    _ => ControlReply::error(
                        "not available for the Client Portal gateway (it has no display)",
                    ),
                };
                let _ = req.reply.send(reply);
            }
            Ev::Api {
                run,
                tickle,
                rtt,
                reply,
            } => {
                if run != jvm_run {
                    // Asked of a gateway that has been replaced since: it says nothing of
                    // this one.
                    debug!(
                        run,
                        current = jvm_run,
                        "an API answer of a previous gateway run ignored"
                    );
                } else {
                    if tickle && matches!(reply, ApiReply::Status(_)) {
                        view.last_tickle_unix_ms = Some(unix_ms());
                        view.probe_latency_ms = Some(rtt.as_secs_f64() * 1000.0);
                    }
                    // IBKR's run.sh runs java as the shell's child: once the gateway
                    // answers, the pid shown is the JVM's, not the shell's.
                    if let Some(pid) = view.jvm_pid {
                        view.jvm_pid = Some(super::stray::java_of(pid));
                    }
                    queue.extend(machine.on(Input::Api(reply), unix_ms()));
                }
            }
            Ev::Tick => {
                if crate::sdnotify::watchdog_interval().is_some() {
                    sd.watchdog();
                }
            }
        }
    }
    sd.stopping("stopped");
    notifier.flush(Duration::from_secs(5)).await;
    cancel.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await;
    Ok(code)
}

async fn sleep_until(wake_ms: Option<u64>) {
    match wake_ms {
        Some(at) => {
            let now = unix_ms();
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))).await;
        }
        None => std::future::pending::<()>().await,
    }
}

fn publish(status: &SharedStatus, m: &Machine, view: &View, browser_open: bool) {
    let mut snap = st::read(status);
    snap.jvm_pid = view.jvm_pid;
    snap.logins = m.logins();
    snap.restarts = m.restarts().to_vec();
    snap.probe_latency_ms = view.probe_latency_ms;
    let last = m.last_status();
    snap.client_portal = Some(st::ClientPortal {
        authenticated: last.map(|(s, _)| s.authenticated),
        connected: last.map(|(s, _)| s.connected),
        competing: last.map(|(s, _)| s.competing),
        last_status_unix_ms: last.map(|(_, t)| t),
        last_tickle_unix_ms: view.last_tickle_unix_ms,
        reauthentications: m.reauthentications(),
        browser_open,
    });
    snap.phase = match m.phase() {
        Phase::Halted(_) => "Halted".into(),
        other => format!("{other:?}"),
    };
    snap.ready = m.is_ready();
    snap.reason = m.reason().to_string();
    snap.readies = m.readies();
    snap.login_budget_left = m.login_budget_left(unix_ms());
    snap.heartbeat_unix_ms = unix_ms();
    if m.is_ready() {
        snap.last_ready_unix_ms = Some(unix_ms());
    }
    st::publish(status, snap);
}

/// `bin/run.sh root/conf.yaml` in the install dir, with a minimal environment (no secret of
/// ibwarden's is in it).
fn launch(cfg: &Config, install: &CpInstall) -> anyhow::Result<GatewayProcess> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    for k in ["PATH", "HOME", "LANG", "JAVA_HOME", "TZ"] {
        if let Some(v) = std::env::var_os(k) {
            env.push((k.into(), v));
        }
    }
    if !cfg.gateway.jvm_args.is_empty() {
        env.push(("JAVA_OPTS".into(), cfg.gateway.jvm_args.join(" ").into()));
    }
    let cmd = JvmCommand {
        program: install.run_sh.clone(),
        args: vec![OsString::from("root/conf.yaml")],
        env,
        cwd: install.dir.clone(),
    };
    let log: PathBuf = cfg.state.dir.join("clientportal.log");
    Ok(process::spawn(&cmd, &SpawnOptions::new(log))?)
}

fn spawn_signals(
    tx: &mpsc::UnboundedSender<Ev>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(Duration::from_secs(10));
    let tx = tx.clone();
    let cancel = cancel.clone();
    tasks.spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = sigterm.recv() => { info!("SIGTERM: stopping"); Ev::Input(Input::Stop) }
                _ = sigint.recv() => { info!("interrupted: stopping"); Ev::Input(Input::Stop) }
                _ = ticker.tick() => Ev::Tick,
                _ = cancel.cancelled() => break,
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(())
}
