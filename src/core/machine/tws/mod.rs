//! Trader Workstation: the second factor inside the `Login` frame, TWS's own dialogs and exit.
//!
//! Since TWS 10.16 a live login opens no second-factor window: the `Login` frame's content
//! turns into `SECOND FACTOR AUTHENTICATION` (device chooser or code entry) under the same
//! title (as IBC found; IBC polls the frame's labels every
//! 200 ms). X11 reports nothing for that, so after the credentials of a live `Log In` are in,
//! the machine watches the frame ([`TwsWatch`], timer [`Timer::TwsWatch`]):
//!
//! - **With a content reader** (OCR): the frame's text is read again every
//!   [`READ_INTERVAL`] until [`classify_frame_text`] sees the device chooser (choose the
//!   configured device) or the code entry (type the code: select-all, code, Enter, as into the
//!   gateway's dialog). A frame that cannot be read [`MAX_UNREADABLE`] times in a row hands
//!   over to the fallback.
//! - **Titles only** (no reader, or it cannot read): once the frame has been the JVM's only
//!   window for [`FALLBACK_SETTLE`] after the `Log In` keys, the code is typed with
//!   [`fallback_code_keys`], a sequence that can submit the code entry but never the login
//!   panel (the guarantee is spelled out there). At most [`FALLBACK_MAX_CODES`] codes, each
//!   [`FALLBACK_RETRY`] apart, per login; after that the login deadline restarts TWS.
//!
//! TWS also differs after the login: the login frame is destroyed and a separate main window
//! (`<account> Interactive Brokers`) appears; closing it asks `Are you sure you want to exit?`
//! (answered `Yes` only while ibwarden itself stops or restarts TWS, IBC's source), then
//! `Shutdown progress`; `Re-login is required` brings back a new login frame (a full login).
//!
//! This file is a child module of `machine` so its glue can use the machine's private state;
//! the decisions are the pure functions at the top.

use std::time::Duration;

use super::dialog::{self, Answer, DialogKind};
use super::{
    Action, NoticeKind, Now, Phase, Program, Severity, Supervisor, Timer, TradingMode, TypeResult,
    Window,
};
use crate::core::types::{KeyStep, NamedKey, SecretRef, WindowInfo};
use crate::totp;

/// Reader: time between two reads of the frame while the second factor is awaited.
pub(crate) const READ_INTERVAL: Duration = Duration::from_millis(700);
/// Reader: the first read after the `Log In` keys (authentication takes longer anyway).
const READ_FIRST: Duration = Duration::from_millis(300);
/// Reader: after a code's keys the frame may still show the old code entry this long; a code
/// entry seen later means the code was rejected.
pub(crate) const CODE_SETTLE: Duration = Duration::from_secs(3);
/// Reader: frames that gave no text in a row before the titles-only fallback takes over.
pub(crate) const MAX_UNREADABLE: u32 = 3;
/// Fallback: how long the frame must have been the JVM's only window (after the `Log In`
/// keys, or after the last dialog went away) before a code is typed. IBKR answers a login in
/// 1-5 s; IBKR drops a silent login only after 20 s (`AuthTimeoutMonitor-CCP`).
pub(crate) const FALLBACK_SETTLE: Duration = Duration::from_secs(4);
/// Fallback: how often the windows are looked at.
const FALLBACK_TICK: Duration = Duration::from_millis(250);
/// Fallback: a further code after this long without the main window (the first one may have
/// arrived before the code entry).
pub(crate) const FALLBACK_RETRY: Duration = Duration::from_secs(25);
/// Fallback: codes per login attempt.
pub(crate) const FALLBACK_MAX_CODES: u32 = 2;

/// Focus stops of the in-frame code entry: code field → `OK` → `Cancel` (wrapping).
pub(crate) const CODE_ENTRY_STOPS: u32 = 3;
/// Focus stops of the login panel: `IB API` → `FIX CTCI` → `Live Trading` → `Paper Trading`
/// → username → password → `Log In` (wrapping).
pub(crate) const LOGIN_PANEL_STOPS: u32 = 7;
/// Tabs in [`fallback_code_keys`]: the smallest n with n ≡ 1 (mod [`CODE_ENTRY_STOPS`]) and
/// n ≡ 0 (mod [`LOGIN_PANEL_STOPS`]).
pub(crate) const FALLBACK_TABS: u32 = fallback_tabs();

const fn fallback_tabs() -> u32 {
    let mut n = 1;
    while !(n % CODE_ENTRY_STOPS == 1 && n % LOGIN_PANEL_STOPS == 0) {
        n += 1;
    }
    n
}

/// What the `Login` frame shows, from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameContent {
    /// The login panel (fields, `Log In`, a progress line).
    Login,
    /// `Select second factor device` with a list.
    DeviceChooser,
    /// `Enter Mobile Authenticator app code` with a code field.
    CodeEntry,
    /// An IB Key push is waiting for the phone: nothing to type.
    IbKeyPush,
    /// `SECOND FACTOR AUTHENTICATION`, the rest not readable.
    SecondFactor,
    /// Anything else.
    Other,
}

/// Classifies the frame's text (OCR: case-insensitive, short distinctive phrases).
pub(crate) fn classify_frame_text(text: &str) -> FrameContent {
    let t = text.to_lowercase();
    let second =
        t.contains("second factor") || t.contains("authenticator") || t.contains("security code");
    if t.contains("select second factor device") || (second && t.contains("select")) {
        FrameContent::DeviceChooser
    } else if second && (t.contains("notification") || t.contains("approve")) {
        // Before the code entry: the push has no code field (`Cancel` is its only button).
        FrameContent::IbKeyPush
    } else if second && t.contains("enter") && t.contains("code") {
        FrameContent::CodeEntry
    } else if second {
        FrameContent::SecondFactor
    } else if t.contains("log in") || t.contains("username") || t.contains("password") {
        FrameContent::Login
    } else {
        FrameContent::Other
    }
}

/// The keys that type the code of `step` into the frame when its content cannot be read.
///
/// **Guarantee: these keys can submit the code entry, but never the login panel**, so a code
/// can never become a login attempt (a code in the password field plus `Log In` would be a
/// wrong-password attempt, which counts toward IBKR's lockout). Why, with keys only:
///
/// - No `Enter`: in the login panel `Enter` presses the default button `Log In` from any
///   field. The only key that presses anything is the final `Space`, which presses the
///   focused button only.
/// - Between the code and `Space` come [`FALLBACK_TABS`] Tabs (7). In the code entry (focus
///   starts in the code field; stops: code, `OK`, `Cancel`) 7 ≡ 1 (mod 3): `Space` lands on
///   `OK`. In the login panel (7 stops) 7 ≡ 0 (mod 7): focus comes back to the field it
///   started in, so `Space` types a space into the username or password field instead of
///   pressing `Log In`. With the login panel disabled (authentication in progress) nothing
///   has the focus and every key is dropped.
/// - Select-all first makes a retry idempotent in the code field; in a login field it only
///   replaces text that the next submission replaces anyway (it selects all and retypes).
/// - The keys go to the frame only: the typist focuses it (`WM_TAKE_FOCUS`) and checks the
///   focus before every key, so nothing lands in a dialog; the caller types only while the
///   frame is the JVM's only window, and never retries these keys after a focus loss.
///
/// The stop counts are those of the simulator (`tests/simulator/README.md`), taken from
/// IBC's component dumps; a real TWS with other stops makes the fallback fail safe (the code
/// entry is not submitted, the login deadline restarts TWS), never unsafe as long as `Tab`
/// from the username or password field cycles back to it after 7 stops. The content reader
/// removes the assumption.
pub(crate) fn fallback_code_keys(step: u64) -> Vec<KeyStep> {
    let mut keys = vec![
        KeyStep::PauseMs(100),
        KeyStep::Key(NamedKey::SelectAll),
        KeyStep::Secret(SecretRef::TotpCode { step }),
    ];
    for _ in 0..FALLBACK_TABS {
        // Java moves the focus asynchronously: keys right after a Tab can land in the
        // previous component (`tests/simulator/README.md`, "Tab race").
        keys.push(KeyStep::Key(NamedKey::Tab));
        keys.push(KeyStep::PauseMs(80));
    }
    keys.push(KeyStep::PauseMs(150));
    keys.push(KeyStep::Key(NamedKey::Space));
    keys
}

/// Keys that pick the device starting with `prefix` in the in-frame chooser's list (JList
/// type-ahead), then press `OK` (Enter, the default button).
///
/// The prefix is typed twice, [`TYPE_AHEAD_GAP`] apart. Measured on the simulator (5 of 19
/// runs): right after the frame's content turns into the chooser, the list can ignore a
/// whole typed prefix although it has the focus; the second round then selects. Typing
/// the full prefix again after more than Swing's type-ahead window (1 s) finds the first
/// entry starting with it from the current one, so a round that did work is not undone.
pub(crate) fn device_keys(prefix: &str) -> Vec<KeyStep> {
    vec![
        KeyStep::Text(prefix.to_string()),
        KeyStep::PauseMs(TYPE_AHEAD_GAP),
        KeyStep::Text(prefix.to_string()),
        KeyStep::PauseMs(200),
        KeyStep::Key(NamedKey::Enter),
    ]
}

/// Milliseconds between the two rounds of [`device_keys`]: over Swing's `List.timeFactor`.
const TYPE_AHEAD_GAP: u32 = 1_100;

/// What the machine remembers about the in-frame second factor of the current login.
#[derive(Clone, Debug, Default)]
pub(crate) struct TwsWatch {
    /// The ticket of a live login's credential keys: the watch starts when they are in.
    creds_ticket: Option<u64>,
    /// Watching the frame.
    active: bool,
    /// The frame being watched.
    frame: Option<u32>,
    /// A read of the frame is out.
    reading: bool,
    /// Reads in a row that gave no text.
    unreadable: u32,
    /// The other windows of the JVM at the last look (fallback).
    others: Vec<u32>,
    /// Since when `others` has not changed (fallback).
    quiet_since: Option<std::time::Instant>,
    /// `Login::codes_typed` as last seen, to notice a code sent through the normal path.
    codes_seen: u32,
    /// When the last code's keys were sent.
    code_sent_at: Option<std::time::Instant>,
    /// The fallback's code keys in flight.
    code_ticket: Option<u64>,
    /// Codes typed by the fallback in this login.
    fallback_codes: u32,
    /// The wait for a fresh TOTP step was logged (and added to the login deadline).
    totp_wait_noted: bool,
}

impl TwsWatch {
    /// True if a read of `window` by the watch is out (the machine hands its text here).
    pub(crate) fn reads(&self, window: u32) -> bool {
        self.active && self.reading && self.frame == Some(window)
    }
}

impl Supervisor {
    /// After [`Supervisor::submit_credentials`] typed into a TWS frame: remember the keys'
    /// ticket, so the watch starts once they are in (live only: paper has no second factor).
    pub(super) fn tws_submitted(&mut self) {
        if self.cfg.program != Program::Tws {
            return;
        }
        self.timers.stop(Timer::TwsWatch);
        self.login.tws = TwsWatch {
            creds_ticket: (self.cfg.trading_mode == TradingMode::Live)
                .then(|| self.next_ticket - 1),
            ..TwsWatch::default()
        };
    }

    /// A keyboard action finished. Returns true when it was the fallback's code keys, which
    /// are never retried (the next tick decides again, with every condition re-checked).
    pub(super) fn tws_typed(&mut self, now: Now, ticket: u64, result: &TypeResult) -> bool {
        if self.login.tws.creds_ticket == Some(ticket) {
            if *result == TypeResult::Done {
                self.login.tws.creds_ticket = None;
                self.tws_start_watch(now);
            }
            return false;
        }
        if self.login.tws.code_ticket == Some(ticket) {
            self.login.tws.code_ticket = None;
            if *result != TypeResult::Done {
                tracing::warn!(?result, "TWS: the code keys did not all go in");
            }
            return true;
        }
        false
    }

    fn tws_start_watch(&mut self, now: Now) {
        let Some(frame) = self.login.frame else {
            return;
        };
        let w = &mut self.login.tws;
        w.active = true;
        w.frame = Some(frame);
        w.quiet_since = Some(now.mono);
        w.others = self
            .windows
            .keys()
            .copied()
            .filter(|&id| id != frame)
            .collect();
        w.others.sort_unstable();
        w.codes_seen = self.login.codes_typed;
        tracing::info!(
            reader = self.cfg.content_reader,
            "TWS: watching the login frame for the second factor"
        );
        let first = if self.cfg.content_reader {
            READ_FIRST
        } else {
            FALLBACK_TICK
        };
        self.timers.set(Timer::TwsWatch, now.mono + first);
    }

    fn tws_stop_watch(&mut self) {
        self.login.tws.active = false;
        self.timers.stop(Timer::TwsWatch);
    }

    /// [`Timer::TwsWatch`]: read the frame again, or (titles only) decide on the code.
    pub(super) fn tws_watch_tick(&mut self, now: Now) {
        if !self.login.tws.active {
            return;
        }
        let frame = match self.login.frame {
            Some(f) if Some(f) == self.login.tws.frame => f,
            _ => return self.tws_stop_watch(),
        };
        if self.phase != Phase::LoggingIn || self.pid.is_none() {
            return self.tws_stop_watch();
        }
        if self.login.codes_typed > self.login.tws.codes_seen {
            self.login.tws.codes_seen = self.login.codes_typed;
            self.login.tws.code_sent_at = Some(now.mono);
        }
        if self.cfg.content_reader && self.login.tws.unreadable < MAX_UNREADABLE {
            if !self.login.tws.reading {
                if let Some(w) = self.windows.get_mut(&frame) {
                    w.reading = true;
                    self.login.tws.reading = true;
                    self.read_text(frame);
                }
            }
            // The next tick is armed when the text arrives.
            return;
        }
        self.tws_fallback_tick(now, frame);
    }

    /// The frame's text arrived (content reader).
    pub(super) fn tws_frame_text(&mut self, now: Now, frame: u32, text: Option<String>) {
        self.login.tws.reading = false;
        if self.phase != Phase::LoggingIn {
            return self.tws_stop_watch();
        }
        let Some(text) = text else {
            self.login.tws.unreadable += 1;
            if self.login.tws.unreadable == MAX_UNREADABLE {
                tracing::warn!("TWS: the login frame cannot be read; typing by titles only");
                self.login.tws.quiet_since = Some(now.mono);
            }
            self.timers
                .set(Timer::TwsWatch, now.mono + Duration::from_millis(200));
            return;
        };
        self.login.tws.unreadable = 0;
        let content = classify_frame_text(&text);
        tracing::debug!(?content, "TWS: login frame read");
        match content {
            FrameContent::CodeEntry => {
                let stale = self
                    .login
                    .tws
                    .code_sent_at
                    .is_some_and(|t| now.mono.duration_since(t) < CODE_SETTLE);
                if self.login.code_dialog.is_none() && !stale {
                    tracing::info!("TWS: the login frame asks for the second factor code");
                    // A code entry after a code was sent means it was rejected: type_code
                    // counts that and stops after `max_code_rejections`.
                    self.type_code(now, frame);
                    self.tws_note_code(now);
                }
            }
            FrameContent::DeviceChooser if !self.login.chose_device => {
                self.login.chose_device = true;
                let prefix = self
                    .cfg
                    .second_factor
                    .label()
                    .split_whitespace()
                    .next()
                    .unwrap_or("M")
                    .to_string();
                tracing::info!("TWS: choosing the second factor device");
                self.type_into(frame, device_keys(&prefix));
            }
            FrameContent::IbKeyPush => self.ib_key_wait(now),
            _ => {}
        }
        if self.login.tws.active && self.phase == Phase::LoggingIn {
            self.timers.set(Timer::TwsWatch, now.mono + READ_INTERVAL);
        }
    }

    fn tws_note_code(&mut self, now: Now) {
        if self.login.codes_typed > self.login.tws.codes_seen {
            self.login.tws.codes_seen = self.login.codes_typed;
            self.login.tws.code_sent_at = Some(now.mono);
        }
    }

    /// Titles only: type the code once the frame has been alone long enough.
    fn tws_fallback_tick(&mut self, now: Now, frame: u32) {
        let again = now.mono + FALLBACK_TICK;
        let mut others: Vec<u32> = self
            .windows
            .keys()
            .copied()
            .filter(|&id| id != frame)
            .collect();
        others.sort_unstable();
        // The frame must still be titled as the login frame (`Login`): a progress title
        // means TWS is busy with something the fallback cannot see into.
        let login_title = self.windows.get(&frame).is_some_and(|w| {
            dialog::classify(&w.info.title, w.info.transient_for.is_some()).0
                == DialogKind::TwsLoginFrame
        });
        if !login_title {
            // Counts as a change: the quiet period starts again once the title is back.
            others.push(frame);
        }
        let w = &mut self.login.tws;
        if others != w.others {
            // A dialog came or went (an existing session answered, an error shown): the
            // frame's content may change after it; start the quiet period again.
            w.others = others;
            w.quiet_since = Some(now.mono);
        }
        let busy = !w.others.is_empty() || w.code_ticket.is_some();
        let quiet_for = w
            .quiet_since
            .map(|t| now.mono.duration_since(t))
            .unwrap_or_default();
        let retry_wait = w
            .code_sent_at
            .is_some_and(|t| now.mono.duration_since(t) < FALLBACK_RETRY);
        let spent = w.fallback_codes >= FALLBACK_MAX_CODES;
        let settled = quiet_for >= FALLBACK_SETTLE;
        if busy || retry_wait {
            self.timers.set(Timer::TwsWatch, again);
            return;
        }
        if spent {
            tracing::warn!("TWS: no main window after the codes; waiting for the login deadline");
            return self.tws_stop_watch();
        }
        if self.cfg.second_factor == crate::core::SecondFactor::IbKey {
            // Nothing to type for a push; only a person with the phone can answer it.
            self.ib_key_wait(now);
            return self.tws_stop_watch();
        }
        let plan = totp::plan(
            now.unix_ms,
            self.cfg.min_code_validity,
            self.persisted.last_totp_step,
        );
        if !plan.wait.is_zero() && !self.login.tws.totp_wait_noted {
            // The wait for a fresh step runs alongside the settle time (IBKR's second factor
            // times out; waiting for one and then the other could outlast it).
            self.login.tws.totp_wait_noted = true;
            tracing::info!(
                wait_ms = plan.wait.as_millis() as u64,
                "waiting for a fresh authenticator code"
            );
            // A deliberate wait does not count against the login deadline.
            if let Some(d) = self.timers.get(Timer::LoginDeadline) {
                self.timers.set(Timer::LoginDeadline, d + plan.wait);
            }
            self.status_line("waiting for a fresh authenticator code");
        }
        if !plan.wait.is_zero() || !settled {
            // Look at the windows again meanwhile: a dialog resets the settle time.
            self.timers.set(Timer::TwsWatch, again);
            return;
        }
        self.login.tws.totp_wait_noted = false;
        self.persisted.last_totp_step = Some(plan.step);
        self.push(Action::SaveState(self.persisted.clone()));
        self.login.codes_typed += 1;
        self.login.tws.codes_seen = self.login.codes_typed;
        self.login.tws.code_sent_at = Some(now.mono);
        self.login.tws.fallback_codes += 1;
        self.login.tws.code_ticket = Some(self.next_ticket);
        tracing::info!(
            codes = self.login.tws.fallback_codes,
            "TWS: typing the code into the login frame (titles only)"
        );
        self.type_into(frame, fallback_code_keys(plan.step));
        self.status_line("authenticator code sent");
        self.timers.set(Timer::TwsWatch, again);
    }

    /// TWS's main window appeared: the login is through; it is also the window that
    /// `File > Exit` / `WM_DELETE_WINDOW` closes TWS from.
    pub(super) fn tws_main_window(&mut self, now: Now, id: u32) {
        self.tws_stop_watch();
        self.login.frame = Some(id);
        if self.phase == Phase::LoggingIn {
            self.await_api(now);
        }
    }

    /// TWS answers `Re-login` with a new login frame (its main window is gone): it needs a
    /// full login. Not typed into: where its focus starts is not known (the simulator puts it
    /// in the password field, the username being kept), and the credential keys walk the
    /// focus order from the username field; no relative key sequence fits both starts (the
    /// trading-mode toggle they press would differ). A fresh TWS starts in the username field.
    /// Returns false when the frame is the ordinary first one.
    pub(super) fn tws_login_frame_again(&mut self, now: Now, id: u32) -> bool {
        if self.cfg.program != Program::Tws
            || self.login.frame.is_some()
            || !matches!(self.phase, Phase::AwaitApi | Phase::Ready)
        {
            return false;
        }
        tracing::warn!("TWS shows a new login window after a session drop; relaunching it");
        // Closed through its own window (TWS exits), then launched without the token.
        self.login.frame = Some(id);
        self.restart(now, "TWS needs a full login after a session drop", true);
        true
    }

    /// While stopping, windows are ignored, except the exit confirmation our own close
    /// request raised (`Yes` ends TWS; IBC answers it only during its StopTask too).
    pub(super) fn exit_confirm_while_stopping(&mut self, info: WindowInfo) {
        if !matches!(self.phase, Phase::Stopping { .. }) || self.pid.is_none() {
            return;
        }
        let (kind, _) = dialog::classify(&info.title, info.transient_for.is_some());
        if kind != DialogKind::ExitConfirm {
            return;
        }
        let id = info.id;
        self.windows.insert(
            id,
            Window {
                info,
                kind,
                reading: false,
                handled: false,
            },
        );
        self.answer(id, Answer::Default);
    }

    /// TWS-only dialogs with a fixed policy.
    pub(super) fn tws_dialog(&mut self, now: Now, id: u32, kind: DialogKind) {
        match kind {
            // `I understand - display market data` only acknowledges how sizes are shown
            // (IBC's `defer`); the notice comes back next time, which is harmless.
            DialogKind::BidAskNotice => self.answer(id, Answer::Default),
            // `Yes` would let an API client trade: a person decides, never ibwarden.
            DialogKind::ApiWriteAccess => {
                self.leave_alone(now, id, "API write access is a person's decision");
                self.push(Action::Screenshot {
                    window: Some(id),
                    reason: "api-write-access",
                });
                self.push(Action::Notify {
                    kind: NoticeKind::UnknownDialog,
                    severity: Severity::Warning,
                    message: "TWS asks whether an API client may place or modify orders (`API \
                              client needs write access action confirmation`). ibwarden never \
                              grants that; answer it on TWS's display, or allow writes in TWS's \
                              API settings."
                        .into(),
                });
            }
            _ => self.unknown(now, id, None),
        }
    }
}

#[cfg(test)]
mod tests;
