//! The core's contract with the driver: the time it is given, the inputs it takes and the
//! actions it asks for. Plain `Debug` data; secrets only by reference
//! ([`SecretRef`](super::types::SecretRef)).

use std::time::Instant;

use super::notice::{NoticeKind, Severity};
use super::settings::{CoreConfig, Persisted};
use super::types::{
    FormCheck, FormTargets, FormVerdict, KeyStep, LauncherEvent, ProbeOutcome, WindowInfo,
};

/// The current time, monotonic and wall-clock, as read by the driver.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time, for deadlines.
    pub mono: Instant,
    /// Unix time in milliseconds, for TOTP steps and the persisted attempt history.
    pub unix_ms: u64,
}

/// What a keyboard action came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeResult {
    /// Every key was sent with the focus in the window.
    Done,
    /// The window did not have (or lost) the focus before any key of the job was sent; no
    /// key went elsewhere. Sending the same job again is safe.
    FocusLost,
    /// The focus went away after some of the job's keys were sent: the window's state is
    /// unknown (which component has the focus, what the fields hold). No key went elsewhere.
    Interrupted,
    /// The window is gone or X failed.
    Failed(String),
}

/// An event from the outside world.
#[derive(Clone, Debug)]
pub enum Input {
    /// Begin: launch the gateway.
    Start,
    /// The JVM was spawned.
    Spawned {
        /// Its pid.
        pid: u32,
        /// Launched with `-Drestart=`: the gateway should log itself in with its token.
        with_token: bool,
    },
    /// The JVM could not be spawned.
    SpawnFailed {
        /// Why.
        reason: String,
    },
    /// The JVM exited.
    Exited {
        /// Exit code, if it exited normally.
        code: Option<i32>,
        /// Signal number, if killed by one.
        signal: Option<i32>,
        /// The crash report, if one was written.
        hs_err: Option<String>,
    },
    /// A top-level window was mapped on the gateway's display (any client: the core keeps
    /// only the JVM's own windows, by [`WindowInfo::pid`] and [`WindowInfo::ancestry`]).
    Mapped(WindowInfo),
    /// A window was unmapped.
    Unmapped(u32),
    /// A window was destroyed.
    Destroyed(u32),
    /// A window's title changed.
    TitleChanged {
        /// The window.
        id: u32,
        /// The new title.
        title: String,
    },
    /// A keyboard action finished.
    Typed {
        /// The ticket of the [`Action::Type`].
        ticket: u64,
        /// How it went.
        result: TypeResult,
    },
    /// The screen model's view of a filled form ([`Action::CheckForm`]).
    FormChecked {
        /// The ticket of the [`Action::CheckForm`].
        ticket: u64,
        /// What it saw.
        verdict: FormVerdict,
        /// Where the form's parts are (for a refill by target).
        targets: FormTargets,
    },
    /// Text read from a window by the content reader (`None`: could not read).
    WindowText {
        /// The window.
        window: u32,
        /// Its text.
        text: Option<String>,
    },
    /// An API probe finished.
    Probe(ProbeOutcome),
    /// The X display died (the driver restarts it before the next launch).
    DisplayLost,
    /// A person or systemd asked to stop.
    Stop,
    /// A person asked for a restart.
    Restart,
    /// A scheduled event is due (daily restart, weekly cold restart, closedown).
    Scheduled(super::schedule::ScheduledEvent),
    /// A line of the gateway's `launcher.log` that means something.
    GatewayLog(LauncherEvent),
    /// The display asked for with [`Action::StartDisplay`] is up (watcher and typist on it).
    DisplayReady,
    /// The display could not be started.
    DisplayFailed {
        /// Why.
        reason: String,
    },
    /// SIGHUP: the configuration was re-read and validated; apply it.
    Reconfigure(Box<CoreConfig>),
    /// SIGHUP: the configuration file has errors; the running configuration stays.
    ReloadRefused,
    /// An [`Action::SaveState`] could not be made durable.
    StateNotSaved {
        /// Why (an IO error; never a secret).
        reason: String,
    },
    /// A person connected to the display (VNC takeover): type nothing until they leave.
    HumanConnected,
    /// The person disconnected.
    HumanLeft,
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Start the JVM (with `-Drestart=` if `use_restart_token` and a token exists).
    Launch {
        /// Use the gateway's auto-restart token if there is one.
        use_restart_token: bool,
    },
    /// Focus `window` (WM_TAKE_FOCUS, verified) and type `steps`; answer with
    /// [`Input::Typed`].
    Type {
        /// Correlates the answer.
        ticket: u64,
        /// The top-level to type into.
        window: u32,
        /// What to type.
        steps: Vec<KeyStep>,
    },
    /// Look at a filled form (focus and raise the window, capture it once it stopped
    /// changing, build the screen model) and compare it with what was typed; answer with
    /// [`Input::FormChecked`]. Runs after the typing before it, never beside it.
    CheckForm {
        /// Correlates the answer.
        ticket: u64,
        /// The window holding the form.
        window: u32,
        /// The form and what it must hold.
        form: FormCheck,
    },
    /// Read the window's text; answer with [`Input::WindowText`].
    ReadText {
        /// The window.
        window: u32,
        /// Its title as last seen (the AT-SPI reader finds windows by title).
        title: String,
    },
    /// Start the display (Xvfb, or connect to the configured one) with its window watcher
    /// and typist; answer with [`Input::DisplayReady`] or [`Input::DisplayFailed`].
    StartDisplay,
    /// Save a screenshot (PNG in the state dir) of a window, or the whole display.
    Screenshot {
        /// The window, or `None` for the whole display.
        window: Option<u32>,
        /// Short reason, used in the file name.
        reason: &'static str,
    },
    /// Run one API probe; answer with [`Input::Probe`].
    Probe,
    /// Ask the gateway to close the way a user would (WM_DELETE_WINDOW to its main window).
    /// The core escalates on its own deadlines: [`Action::TerminateGateway`], then
    /// [`Action::KillGateway`]; the exit arrives as [`Input::Exited`].
    CloseGateway {
        /// The main window to send WM_DELETE_WINDOW to.
        main_window: u32,
    },
    /// SIGTERM (and SIGCONT, in case it is stopped) to the JVM's process group.
    TerminateGateway,
    /// SIGKILL to the JVM's process group (it hangs, its display is gone, or the stop
    /// deadline passed).
    KillGateway,
    /// Persist this state atomically before the next action.
    SaveState(Persisted),
    /// Tell a person.
    Notify {
        /// What kind of event (for deduplication).
        kind: NoticeKind,
        /// How urgent.
        severity: Severity,
        /// What happened and what to do.
        message: String,
    },
    /// The state changed: log it and send `STATUS=` (with `READY=1` when `sd_ready`).
    Status {
        /// True only after a passing API probe.
        ready: bool,
        /// One line for people.
        text: String,
        /// Send systemd `READY=1`: the first time the API probe passes, and at the end of a
        /// reload while it passes (fail closed: never otherwise).
        sd_ready: bool,
    },
    /// Give up and exit the process with this code.
    Exit(i32),
}
