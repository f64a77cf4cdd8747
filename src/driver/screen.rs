//! The display adapter: the X server (our Xvfb or a configured display), the window
//! watcher feeding [`Input`]s, the typist thread, dialog text and screenshots.
//!
//! Everything here that blocks (X requests, OCR, PNG encoding) runs on the typist thread or
//! the blocking pool, never on the loop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::real::Msg;
use super::Event;
use crate::config::{self, Config};
use crate::core::{Input, KeyStep, SecretRef, TypeResult};
use crate::dialog_text::ContentReader;
use crate::secret::{Secret, Secrets};
use crate::state;
use crate::x11::display::Xvfb;
use crate::x11::input::{InputError, TypingOptions, Typist};
use crate::x11::{DisplayTarget, Watcher, WindowEvent};

/// Shared, replaceable secrets. Re-read on `restart` and SIGHUP, so a rotated password or
/// activation code is used without restarting ibwarden; the typist reads the slot at each
/// job. A std lock: held for a clone of the `Arc`, never across an await.
pub(super) type SecretSlot = Arc<std::sync::RwLock<Arc<Secrets>>>;

pub(super) fn current_secrets(slot: &SecretSlot) -> Arc<Secrets> {
    match slot.read() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Work for the typist thread, in order: typing, and looking at what was typed.
pub(super) enum Job {
    /// Keys.
    Type(TypeJob),
    /// A form check (after the keys before it).
    Check(super::seeing::CheckJob),
}

/// A keyboard job for the typist thread.
pub(super) struct TypeJob {
    pub(super) ticket: u64,
    pub(super) window: u32,
    pub(super) steps: Vec<KeyStep>,
}

/// The display and the two X clients on it; recreated when the display dies.
pub(crate) struct Screen {
    pub(super) target: DisplayTarget,
    pub(super) xvfb: Option<Xvfb>,
    _watcher: Watcher,
    pub(super) typist: Arc<Typist>,
    pub(super) jobs: std::sync::mpsc::Sender<Job>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("display", &self.target.name)
            .finish()
    }
}

/// Starts Xvfb (or connects to the configured display), the watcher and the typist.
pub(super) async fn start(
    cfg: &Config,
    state_dir: &Path,
    secrets: SecretSlot,
    human: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Event<Msg>>,
    tasks: &TaskTracker,
) -> anyhow::Result<Screen> {
    let (target, xvfb) = match cfg.display.mode {
        config::DisplayMode::Xvfb => {
            let dir = state_dir.join("display");
            state::create_private_dir(&dir)?;
            let geometry = cfg.display.geometry.to_string();
            let xvfb = Xvfb::start(&dir, &geometry)
                .await
                .context("cannot start Xvfb")?;
            info!(display = xvfb.display(), pid = xvfb.pid(), "Xvfb started");
            (xvfb.target().clone(), Some(xvfb))
        }
        config::DisplayMode::Existing => {
            let name = cfg
                .display
                .display
                .clone()
                .context("display.mode = \"existing\" needs display.display")?;
            (
                DisplayTarget::existing(name, cfg.display.xauthority.clone()),
                None,
            )
        }
    };
    let (watcher, mut events) = Watcher::spawn(&target).context("cannot watch windows")?;
    let typist =
        Arc::new(Typist::connect(&target, TypingOptions::default()).context("cannot open XTest")?);
    let forward = tx.clone();
    tasks.spawn(async move {
        while let Some(ev) = events.recv().await {
            let event = match ev {
                WindowEvent::Mapped(mut info) => {
                    info.ancestry = info.pid.map(ancestry).unwrap_or_default();
                    Event::Input(Input::Mapped(info))
                }
                WindowEvent::Unmapped { id } => Event::Input(Input::Unmapped(id)),
                WindowEvent::Destroyed { id } => Event::Input(Input::Destroyed(id)),
                WindowEvent::TitleChanged { id, title } => {
                    Event::Input(Input::TitleChanged { id, title })
                }
                WindowEvent::ConnectionLost { reason } => {
                    warn!(%reason, "X connection lost");
                    Event::World(Msg::DisplayLost)
                }
            };
            if forward.send(event).is_err() {
                break;
            }
        }
    });
    let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
    let t = typist.clone();
    let display = target.clone();
    std::thread::Builder::new()
        .name("typist".into())
        .spawn(move || typist_thread(t, display, secrets, job_rx, tx, human))
        .context("cannot start the typist thread")?;
    Ok(Screen {
        target,
        xvfb,
        _watcher: watcher,
        typist,
        jobs,
    })
}

/// The parents of `pid`, nearest first, without pid 1 (a launcher script may fork the JVM).
fn ancestry(pid: u32) -> Vec<u32> {
    crate::procfs::ancestry(pid)
        .into_iter()
        .skip(1)
        .filter(|&p| p > 1)
        .collect()
}

/// One job at a time, focus verified before every key; a form check sees the keys before it.
fn typist_thread(
    typist: Arc<Typist>,
    target: DisplayTarget,
    slot: SecretSlot,
    jobs: std::sync::mpsc::Receiver<Job>,
    tx: mpsc::UnboundedSender<Event<Msg>>,
    human: Arc<AtomicBool>,
) {
    // tesseract reads the text of forms; without it only the pixels are judged.
    let ocr = crate::screen::ocr::Ocr::find();
    while let Ok(job) = jobs.recv() {
        let secrets = current_secrets(&slot);
        let job = match job {
            Job::Type(j) => j,
            Job::Check(c) => {
                // A bug in the screen model must not take the keyboard down with it (this
                // thread types everything): it is a form that cannot be seen.
                let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    super::seeing::check(&typist, &target, ocr.as_ref(), &secrets, &c)
                }));
                let (verdict, targets) = seen.unwrap_or_else(|_| {
                    warn!(ticket = c.ticket, "the screen model failed");
                    (
                        crate::core::FormVerdict::Unseen("the screen model failed".into()),
                        crate::core::FormTargets::default(),
                    )
                });
                let checked = Input::FormChecked {
                    ticket: c.ticket,
                    verdict,
                    targets,
                };
                if tx.send(Event::Input(checked)).is_err() {
                    break;
                }
                continue;
            }
        };
        let resolve = |r: SecretRef| -> Option<Secret> {
            match r {
                SecretRef::Username => Some(Secret::new(secrets.username.clone())),
                SecretRef::Password => Some(Secret::new(secrets.password.expose().to_string())),
                SecretRef::TotpCode { step } => secrets.totp.as_ref().map(|c| c.code_at_step(step)),
            }
        };
        // A person on the display owns the keyboard: send nothing (the core holds the
        // action and retries once they leave).
        let result = if human.load(Ordering::SeqCst) {
            TypeResult::FocusLost
        } else {
            match typist
                .focus(job.window)
                .and_then(|()| typist.type_steps(job.window, &job.steps, &resolve))
            {
                Ok(()) => TypeResult::Done,
                // Lost before the first step: nothing was sent, the job may be sent again.
                Err(InputError::FocusLost { step: 0, .. })
                | Err(InputError::FocusNotTaken { .. }) => TypeResult::FocusLost,
                Err(InputError::FocusLost { .. }) => TypeResult::Interrupted,
                Err(e) => TypeResult::Failed(e.to_string()),
            }
        };
        debug!(ticket = job.ticket, ?result, "typed");
        let typed = Input::Typed {
            ticket: job.ticket,
            result,
        };
        if tx.send(Event::Input(typed)).is_err() {
            break;
        }
    }
}

/// Reads a dialog's text with the configured reader (blocking: run on the blocking pool).
pub(super) fn read_text(
    reader: &ContentReader,
    target: &DisplayTarget,
    window: u32,
    pid: u32,
    title: &str,
) -> Option<String> {
    match reader {
        ContentReader::Atspi(_) => read_accessible_text(reader, pid, title),
        _ => read_window_text(target, window, reader),
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

/// Saves a PNG of a window (or the display) in `dir`, keeping the newest 20.
pub(super) fn save_screenshot(
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
