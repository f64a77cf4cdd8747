//! Windows: which are the gateway's, what each one is (the catalogue in `core::dialog`), and the
//! policy table that says what each kind gets.

use super::*;
use crate::core::domain::VerifyForm;

impl Supervisor {
    /// The gateway's windows the core tracks, with the kind the catalogue gave each (for
    /// `ibwarden inspect`), by id.
    pub fn windows_seen(&self) -> Vec<(WindowInfo, DialogKind)> {
        let mut v: Vec<(WindowInfo, DialogKind)> = self
            .windows
            .values()
            .map(|w| (w.info.clone(), w.kind))
            .collect();
        v.sort_by_key(|(i, _)| i.id);
        v
    }

    pub(super) fn on_mapped(&mut self, now: Now, info: WindowInfo) {
        // Only the JVM's windows (its pid or a descendant's: a launcher may fork it).
        let Some(jvm) = self.pid else {
            return;
        };
        if info.pid != Some(jvm) && !info.ancestry.contains(&jvm) {
            tracing::debug!(window = info.id, title = %info.title, pid = ?info.pid,
                "ignoring a window that is not the gateway's");
            return;
        }
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
            self.exit_confirm_while_stopping(info);
            return;
        }
        if info.width <= dialog::STUB_MAX_SIDE || info.height <= dialog::STUB_MAX_SIDE {
            // AWT maps 1x1 helper windows of the same process: not dialogs, never reported.
            tracing::debug!(window = info.id, title = %info.title, "stub window ignored");
            return;
        }
        // A check of a filled form that saw the screen before this window came is stale.
        self.void_check();
        let (kind, needs_text) = dialog::classify(&info.title, info.transient_for.is_some());
        tracing::debug!(window = info.id, title = %info.title, ?kind, "window mapped");
        let id = info.id;
        let reading = needs_text && self.cfg.content_reader;
        self.windows.insert(
            id,
            Window {
                info,
                kind,
                reading,
                handled: false,
            },
        );
        if reading {
            self.read_text(id);
        } else {
            self.on_window(now, id, kind, None);
        }
    }

    pub(super) fn on_text(&mut self, now: Now, window: u32, text: Option<String>) {
        let Some(w) = self.windows.get_mut(&window) else {
            return;
        };
        if !w.reading {
            return;
        }
        w.reading = false;
        if self.login.tws.reads(window) {
            self.tws_frame_text(now, window, text);
            return;
        }
        let kind = match &text {
            Some(t) => dialog::refine(w.kind, t),
            None => w.kind,
        };
        w.kind = kind;
        tracing::debug!(window, ?kind, "window text read");
        self.on_window(now, window, kind, text.as_deref());
    }

    pub(super) fn on_gone(&mut self, id: u32) {
        if self.windows.remove(&id).is_some() && self.login.code_dialog == Some(id) {
            self.login.code_dialog = None;
            self.timers.stop(Timer::TotpDue);
        }
        if self.login.frame == Some(id) {
            self.login.frame = None;
        }
    }

    pub(super) fn on_title(&mut self, now: Now, id: u32, title: String) {
        let Some(w) = self.windows.get_mut(&id) else {
            return;
        };
        let (kind, _) = dialog::classify(&title, w.info.transient_for.is_some());
        w.info.title = title;
        if Some(id) != self.login.frame {
            return;
        }
        match kind {
            DialogKind::Progress => {
                self.login.saw_progress = true;
                self.login.last_progress = Some(w.info.title.clone());
                let line = format!("gateway: {}", w.info.title);
                self.status_line(&line);
            }
            DialogKind::GatewayFrame | DialogKind::TwsMainWindow
                if self.login.saw_progress && self.phase == Phase::LoggingIn =>
            {
                // The frame becomes the main window after `Starting application...` (IBC's
                // login-complete signal); from an earlier progress title it went back to the
                // login window: the attempt ended without an error dialog. The title can
                // change faster than the watcher reads it, so `Starting application...` may
                // never be seen: after `Initializing environment...` (IBKR accepted the login)
                // nothing but success follows without a dialog; the API probe confirms it and
                // the login deadline covers the rest.
                let done = matches!(
                    self.login.last_progress.as_deref(),
                    Some("Starting application...") | Some("Initializing environment...")
                );
                if done {
                    self.await_api(now);
                } else {
                    self.login_reset(now);
                }
            }
            _ => {}
        }
    }

    /// A window of known kind: its policy from [`policy`], carried out.
    pub(super) fn on_window(&mut self, now: Now, id: u32, kind: DialogKind, text: Option<&str>) {
        match policy(kind) {
            Policy::Press(answer) => self.answer(id, answer),
            Policy::LeaveAlone(why) => self.leave_alone(now, id, why),
            Policy::Watch => {}
            Policy::Run(handler) => handler(self, now, id, text),
        }
    }

    fn on_login_frame(&mut self, now: Now, id: u32, _text: Option<&str>) {
        if self.login.frame.is_some() || self.phase != Phase::LoggingIn {
            return;
        }
        self.login.frame = Some(id);
        self.timers.stop(Timer::LaunchDeadline);
        self.timers
            .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
        if self.login.submitted {
            return;
        }
        if self.login.token_login {
            // The gateway logs itself in with its auto-restart token; type nothing unless it
            // stays on the login frame.
            self.timers.set(Timer::TokenGrace, now.mono + TOKEN_GRACE);
            self.status_line("auto-restart: the gateway logs in with its token");
            return;
        }
        self.submit_credentials(now);
    }

    fn on_tws_login_frame(&mut self, now: Now, id: u32, text: Option<&str>) {
        if !self.tws_login_frame_again(now, id) {
            self.on_login_frame(now, id, text);
        }
    }

    fn on_ib_key_prompt(&mut self, now: Now, id: u32, _text: Option<&str>) {
        if self.cfg.trading_mode == TradingMode::Paper {
            self.leave_alone(now, id, "a second-factor dialog in paper mode");
            return;
        }
        // IBKR chose (or the person configured) a push to the phone: no code to type.
        self.leave_alone(now, id, "IB Key push: waiting for the person");
        self.ib_key_wait(now);
    }

    fn on_second_factor(&mut self, now: Now, id: u32, _text: Option<&str>) {
        if self.cfg.trading_mode == TradingMode::Paper {
            self.leave_alone(now, id, "a second-factor dialog in paper mode");
            return;
        }
        if self.cfg.second_factor == SecondFactor::IbKey {
            self.ib_key_wait(now);
        } else {
            self.type_code(now, id);
        }
    }

    fn on_device_chooser(&mut self, now: Now, id: u32, _text: Option<&str>) {
        if self.login.chose_device {
            // Swing has not repainted the dialog yet, or the choice did not take.
            if self.login.rereads < 5 {
                self.login.rereads += 1;
                if let Some(w) = self.windows.get_mut(&id) {
                    w.reading = true;
                    w.kind = DialogKind::SecondFactor;
                }
                self.read_text(id);
            } else {
                self.leave_alone(now, id, "the device chooser came back");
            }
            return;
        }
        if self.login.check.is_some_and(|c| c.window == id) {
            return;
        }
        // OK spends the login's second factor: see that the configured device is the selected
        // row first (a click on it if not), unless seeing is off.
        if self.cfg.verify_form == VerifyForm::Off {
            self.choose_device_blind(now, id);
        } else {
            self.check_form(now, id, FormCheck::Device, false);
        }
    }

    /// The device row is seen selected: press OK; the dialog then shows the code entry in
    /// place (read again once the key is in).
    pub(super) fn confirm_device(&mut self, now: Now, id: u32) {
        self.login.chose_device = true;
        self.type_into_then_reread(
            id,
            vec![KeyStep::PauseMs(200), KeyStep::Key(NamedKey::Enter)],
        );
        if self.cfg.second_factor == SecondFactor::IbKey {
            self.ib_key_wait(now);
        }
    }

    /// The list cannot be seen: select by type-ahead and press OK (the path before seeing).
    pub(super) fn choose_device_blind(&mut self, now: Now, id: u32) {
        self.login.chose_device = true;
        // JList type-ahead selects the first entry starting with the typed prefix; keys must
        // be ≥5 ms apart and a pause must follow the selection before Enter presses OK.
        let prefix: String = self
            .cfg
            .second_factor
            .label()
            .split_whitespace()
            .next()
            .unwrap_or("M")
            .to_string();
        // The dialog then shows the code entry in place (no new window): read it again once
        // the keys are in.
        self.type_into_then_reread(
            id,
            vec![
                KeyStep::Text(prefix),
                KeyStep::PauseMs(200),
                KeyStep::Key(NamedKey::Enter),
            ],
        );
        if self.cfg.second_factor == SecondFactor::IbKey {
            self.ib_key_wait(now);
        }
    }

    fn on_warning(&mut self, now: Now, id: u32, text: Option<&str>) {
        if self.cfg.trading_mode == TradingMode::Paper && !self.cfg.content_reader {
            // Titles only: in paper mode the `Warning` dialog is the paper notice.
            self.answer(id, Answer::Default);
        } else {
            self.unknown(now, id, text);
        }
    }

    fn on_login_handoff(&mut self, now: Now, id: u32, _text: Option<&str>) {
        match self.cfg.existing_session {
            SessionPolicy::Primary => self.answer(id, Answer::Default),
            // The handoff confirms the choice made at `Existing session detected`. IBC exits
            // 1110 here for primaryoverride although it chose to continue (its comment
            // assumes only primary continues): confirming is what that choice meant.
            SessionPolicy::PrimaryOverride if self.login.continued => {
                self.answer(id, Answer::Default)
            }
            SessionPolicy::Manual => self.manual_session(now, id),
            SessionPolicy::PrimaryOverride | SessionPolicy::Secondary => {
                // IBC exits here (1110); we let the other session have it and wait.
                self.answer(id, Answer::Second);
                self.halt(
                    "another session holds the account",
                    NoticeKind::SessionConflict,
                    "Another session holds the IBKR account and the session policy lets it \
                     keep it. Run `ibwarden restart` when the gateway should take over."
                        .into(),
                );
            }
        }
    }

    fn on_relogin_required(&mut self, now: Now, id: u32, _text: Option<&str>) {
        // Another session took ours: a takeover for the ping-pong guard.
        if self.login.was_ready && self.takeover_storm(now) {
            self.defer(now, id, Answer::Default, Phase::AwaitApi);
            return;
        }
        self.answer(id, Answer::Default);
        if matches!(self.phase, Phase::Ready | Phase::AwaitApi) {
            self.relogin_pressed(now);
        }
    }

    fn on_login_failed(&mut self, now: Now, id: u32, _text: Option<&str>) {
        // The halt is made durable before anything else happens: a crash of ibwarden any
        // time after this save can no longer lead to the same password being typed again.
        self.persisted.credentials_rejected = Some(now.unix_ms / 1000);
        self.push(Action::SaveState(self.persisted.clone()));
        self.answer(id, Answer::Default);
        self.halt(
            "invalid username or password",
            NoticeKind::LoginFailed,
            "IBKR rejected the username or password. ibwarden stopped logging in so the \
             account is not locked. Fix the secret (`ibwarden secret set password`) and \
             run `ibwarden restart`."
                .into(),
        );
    }

    fn on_too_many_attempts(&mut self, now: Now, id: u32, text: Option<&str>) {
        let wait = text.and_then(dialog::parse_lockout_wait).unwrap_or(300) + 3;
        self.answer(id, Answer::Default);
        self.push(Action::Notify {
            kind: NoticeKind::LockoutGuard,
            severity: Severity::Warning,
            message: format!(
                "IBKR reports too many failed login attempts; waiting {wait} s before the \
                 next one."
            ),
        });
        self.timers
            .set(Timer::BackoffEnd, now.mono + Duration::from_secs(wait));
        self.timers.stop(Timer::LoginDeadline);
        self.set_phase(
            Phase::Backoff {
                then: Next::Relogin,
            },
            &format!("IBKR rate limit: waiting {wait} s"),
        );
    }

    fn on_login_error(&mut self, now: Now, id: u32, _text: Option<&str>) {
        // IBC cold-restarts here: the JVM's state after a login error is unknown.
        self.answer(id, Answer::Default);
        self.restart(now, "login error", false);
    }

    fn on_connection_failed(&mut self, now: Now, id: u32, _text: Option<&str>) {
        // OK brings the login window back: log in again in the same JVM after an exponential
        // back-off (a new JVM re-arms IBKR's limiter and costs a minute).
        self.answer(id, Answer::Default);
        self.timers.stop(Timer::LoginDeadline);
        self.timers.stop(Timer::TotpDue);
        self.login.code_dialog = None;
        self.login.submitted = false;
        self.backoff(now, "connection to the IBKR server failed", Next::Relogin);
    }

    fn on_token_expired(&mut self, now: Now, id: u32, _text: Option<&str>) {
        self.answer(id, Answer::Default);
        self.timers.stop(Timer::TokenGrace);
        self.login.token_login = false;
        if self.phase == Phase::LoggingIn && self.login.frame.is_some() && !self.login.submitted {
            // The login window waits behind the dialog: a full login, second factor
            // included, in this JVM.
            tracing::warn!("the auto-restart token expired; logging in fully");
            self.submit_credentials(now);
        } else {
            self.restart(now, "security token expired", true);
        }
    }

    fn on_password_notice(&mut self, _now: Now, id: u32, text: Option<&str>) {
        // Expired during a login: IBKR will not log in with it again; retrying only spends
        // attempts. (Shown after a completed login, it is a warning like the others.)
        let expired = text.is_some_and(|t| t.to_lowercase().contains("has expired"));
        if expired && self.phase == Phase::LoggingIn {
            self.answer(id, Answer::Default);
            self.halt(
                "the IBKR password has expired",
                NoticeKind::PasswordExpiring,
                "The IBKR password has expired. Change it in the Client Portal, then \
                 `ibwarden secret set password` and `ibwarden restart`."
                    .into(),
            );
            return;
        }
        let msg = match text.and_then(dialog::parse_password_days) {
            Some(d) => format!(
                "The IBKR password expires in {d} days. Change it in the Client Portal, then \
                 `ibwarden secret set password`."
            ),
            None => "IBKR shows a password notice. Change the password in the Client Portal, \
                     then `ibwarden secret set password`."
                .to_string(),
        };
        self.push(Action::Notify {
            kind: NoticeKind::PasswordExpiring,
            severity: Severity::Warning,
            message: msg,
        });
        self.answer(id, Answer::Default);
    }

    /// `Login Messages` after the code: `Resume login` continues (no attempt is spent). The
    /// same dialog again in this JVM means IBKR wants a task done first (an agreement to
    /// sign in the Client Portal): a person's job.
    fn on_login_messages(&mut self, now: Now, id: u32, _text: Option<&str>) {
        self.login.login_messages += 1;
        if self.login.login_messages == 1 {
            self.answer(id, Answer::Default);
            self.status_line("resuming the login after IBKR's login messages");
            return;
        }
        self.leave_alone(now, id, "login messages came back: a task for a person");
        self.push(Action::Notify {
            kind: NoticeKind::HumanStep,
            severity: Severity::Critical,
            message: "IBKR shows Login Messages again after `Resume login`: it wants something \
                      done first (read them with `ibwarden vnc`, or do the task in the Client \
                      Portal), then `ibwarden restart`."
                .into(),
        });
    }

    /// A passkey this gateway cannot do: only a person with a passkey-capable gateway can log
    /// in. Retrying would loop; stop and say how.
    fn on_passkey_unsupported(&mut self, _now: Now, id: u32, _text: Option<&str>) {
        self.answer(id, Answer::Default);
        self.halt(
            "IBKR requires a passkey",
            NoticeKind::HumanStep,
            "IBKR requires a passkey for this login, which this gateway version does not \
             support. Install a gateway version with passkey support and log in once by hand \
             (`ibwarden vnc`), or enrol the Mobile Authenticator app as the second factor; then \
             `ibwarden restart`. ibwarden will not retry on its own."
                .into(),
        );
    }

    /// The account has no API (IBKR Lite / free trading): the gateway will never serve.
    fn on_api_unsupported(&mut self, _now: Now, id: u32, _text: Option<&str>) {
        self.answer(id, Answer::Default);
        self.halt(
            "this account has no API",
            NoticeKind::ApiUnavailable,
            "IBKR says API support is not available for accounts that support free trading \
             (IBKR Lite): the gateway will never serve the API for this account. Switch the \
             account to IBKR Pro, then `ibwarden restart`."
                .into(),
        );
    }

    fn on_exit_confirm(&mut self, now: Now, id: u32, _text: Option<&str>) {
        if matches!(
            self.phase,
            Phase::Stopping { .. } | Phase::Restarting { .. }
        ) {
            self.answer(id, Answer::Default);
        } else {
            self.leave_alone(now, id, "exit confirmation we did not ask for");
        }
    }

    fn on_tws_notice(&mut self, now: Now, id: u32, _text: Option<&str>) {
        if let Some(kind) = self.windows.get(&id).map(|w| w.kind) {
            self.tws_dialog(now, id, kind);
        }
    }

    pub(super) fn unknown(&mut self, now: Now, id: u32, text: Option<&str>) {
        let Some(w) = self.windows.get(&id) else {
            return;
        };
        let msg = format!(
            "The gateway shows a dialog ibwarden does not know: title {:?}, {}x{}{}. It was left \
             alone; a screenshot is in the state directory.",
            w.info.title,
            w.info.width,
            w.info.height,
            text.map(|t| format!(", text {:?}", t.trim()))
                .unwrap_or_default()
        );
        self.push(Action::Screenshot {
            window: Some(id),
            reason: "unknown-dialog",
        });
        self.push(Action::Notify {
            kind: NoticeKind::UnknownDialog,
            severity: Severity::Warning,
            message: msg,
        });
        self.leave_alone(now, id, "unknown dialog");
    }

    pub(super) fn leave_alone(&mut self, _now: Now, id: u32, why: &str) {
        if let Some(w) = self.windows.get_mut(&id) {
            w.handled = true;
            tracing::info!(window = id, title = %w.info.title, why, "dialog left alone");
        }
    }

    pub(super) fn answer(&mut self, id: u32, answer: Answer) {
        if let Some(w) = self.windows.get_mut(&id) {
            w.handled = true;
            tracing::info!(window = id, title = %w.info.title, ?answer, "answering dialog");
        }
        self.type_into(id, answer.keys());
    }

    /// Asks for a window's text (the reader gets its title too).
    pub(super) fn read_text(&mut self, window: u32) {
        let title = self
            .windows
            .get(&window)
            .map(|w| w.info.title.clone())
            .unwrap_or_default();
        self.push(Action::ReadText { window, title });
    }
}

/// What a kind of window gets.
#[derive(Clone, Copy)]
enum Policy {
    /// Press this answer.
    Press(Answer),
    /// Never touch it (the reason is logged).
    LeaveAlone(&'static str),
    /// Nothing to do: it goes away by itself (progress windows).
    Watch,
    /// It depends on the machine's state: this handler decides.
    Run(fn(&mut Supervisor, Now, u32, Option<&str>)),
}

/// The dialog policy table: one row per [`DialogKind`] (what each kind *is* is in
/// `core::dialog`'s catalogue; this is what ibwarden does about it).
fn policy(kind: DialogKind) -> Policy {
    use DialogKind as K;
    use Policy::*;
    match kind {
        K::GatewayFrame => Run(Supervisor::on_login_frame),
        K::TwsLoginFrame => Run(Supervisor::on_tws_login_frame),
        K::TwsMainWindow => Run(|sv, now, id, _| sv.tws_main_window(now, id)),
        K::Progress | K::ShutdownProgress => Watch,
        K::IbKeyPrompt => Run(Supervisor::on_ib_key_prompt),
        K::SecondFactor | K::CodeEntry => Run(Supervisor::on_second_factor),
        K::DeviceChooser => Run(Supervisor::on_device_chooser),
        K::PaperWarning | K::TipOfTheDay | K::NewerVersion => Press(Answer::Default),
        K::Warning => Run(Supervisor::on_warning),
        K::ExistingSession => Run(|sv, now, id, _| sv.existing_session(now, id)),
        K::LoginHandoff => Run(Supervisor::on_login_handoff),
        K::ReloginRequired => Run(Supervisor::on_relogin_required),
        K::LoginFailed => Run(Supervisor::on_login_failed),
        K::TooManyAttempts => Run(Supervisor::on_too_many_attempts),
        K::LoginError => Run(Supervisor::on_login_error),
        K::ConnectionFailed => Run(Supervisor::on_connection_failed),
        K::TokenExpired => Run(Supervisor::on_token_expired),
        // Its OK cancels the login: never press it.
        K::GatewayMessage | K::ProgressModal => LeaveAlone("a `Gateway` progress dialog"),
        K::PasswordNotice => Run(Supervisor::on_password_notice),
        K::AcceptIncoming => LeaveAlone("incoming API connection prompt (manual)"),
        K::ExitConfirm => Run(Supervisor::on_exit_confirm),
        K::BidAskNotice | K::ApiWriteAccess => Run(Supervisor::on_tws_notice),
        K::LoginMessages => Run(Supervisor::on_login_messages),
        // Notices that block nothing and ask for nothing: their default button closes them.
        K::NseCompliance | K::ExitSessionSetting | K::FinancialAdvisorWarning => {
            Press(Answer::Default)
        }
        K::PasskeyUnsupported => Run(Supervisor::on_passkey_unsupported),
        K::ApiUnsupported => Run(Supervisor::on_api_unsupported),
        K::Unknown => Run(|sv, now, id, text| sv.unknown(now, id, text)),
    }
}
