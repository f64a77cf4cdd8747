//! The login: credentials, the second factor (TOTP under `totp::plan`, IB Key), keyboard
//! actions and their retries, re-logins, and what `launcher.log` says about the login.

use super::*;

impl Supervisor {
    pub(super) fn submit_credentials(&mut self, now: Now) {
        let Some(frame) = self.login.frame else {
            return;
        };
        if self.persisted.credentials_rejected.is_some() {
            // Rejected before (maybe by an earlier run): never retry a wrong password.
            self.halt(
                "invalid username or password (rejected earlier)",
                NoticeKind::LoginFailed,
                "IBKR rejected the username or password earlier, so ibwarden does not type it \
                 again. Fix the secret (`ibwarden secret set password`), then run \
                 `ibwarden restart`."
                    .into(),
            );
            return;
        }
        // Never a full login inside IBKR's nightly maintenance (+ delay): peers saw a login
        // 8 s after the reset cascade into a 35-60 minute lockout (users' reports).
        if let Some(until) = self.cfg.schedule.as_ref().and_then(|s| {
            s.full_login_blocked_until(super::schedule::timestamp_from_unix_ms(now.unix_ms))
        }) {
            let wait_ms = (until.as_millisecond() - now.unix_ms as i64).max(1000) as u64;
            let at = self
                .cfg
                .schedule
                .as_ref()
                .map(|s| s.format_local(until))
                .unwrap_or_default();
            self.timers.stop(Timer::LoginDeadline);
            self.timers
                .set(Timer::BackoffEnd, now.mono + Duration::from_millis(wait_ms));
            self.set_phase(
                Phase::Backoff {
                    then: Next::Relogin,
                },
                &format!("inside IBKR's nightly maintenance; full login at {at}"),
            );
            return;
        }
        if self.clock_behind(now) {
            return;
        }
        // The failed-login budget, across restarts of everything.
        let now_s = now.unix_ms / 1000;
        self.persisted.failed_logins.retain(|&t| t + 3600 > now_s);
        if self.persisted.failed_logins.len() as u32 >= self.cfg.max_failed_logins_per_hour {
            let oldest = self
                .persisted
                .failed_logins
                .iter()
                .min()
                .copied()
                .unwrap_or(now_s);
            let wait = (oldest + 3600).saturating_sub(now_s).max(1);
            self.push(Action::Notify {
                kind: NoticeKind::LockoutGuard,
                severity: Severity::Warning,
                message: format!(
                    "{} logins failed in the last hour; ibwarden waits {wait} s before the next \
                     one so IBKR does not lock the account.",
                    self.persisted.failed_logins.len()
                ),
            });
            self.timers.stop(Timer::LoginDeadline);
            self.timers
                .set(Timer::BackoffEnd, now.mono + Duration::from_secs(wait));
            self.set_phase(
                Phase::Backoff {
                    then: Next::Relogin,
                },
                &format!("failed-login budget spent; next login in {wait} s"),
            );
            return;
        }
        self.login.submitted = true;
        self.login.saw_progress = false;
        self.login.codes_typed = 0;
        self.login.pushed = false;
        self.login.chose_device = false;
        // The state must be durable before anything is typed (a failed save stops here,
        // before the fill); the fill first; `Log In` only once every key of it went in
        // (`commit_login`).
        self.push(Action::SaveState(self.persisted.clone()));
        let steps = self.credential_steps();
        self.type_form(
            frame,
            steps,
            FormCheck::Login {
                mode: self.cfg.trading_mode,
            },
        );
        self.set_phase(Phase::LoggingIn, "typing the credentials");
    }

    /// A live login ends at a TOTP code, and the next usable code is that of a step after
    /// the last one typed. A last step ahead of the clock means the clock moved back since:
    /// typing the credentials now would spend a login attempt on a code that may not be typed
    /// for a long time. Checked before anything is typed; the wait is bounded (the check runs
    /// again at its end) and a person is told when it is longer than [`CLOCK_WAIT_TELL`].
    fn clock_behind(&mut self, now: Now) -> bool {
        if self.cfg.trading_mode != TradingMode::Live || !self.cfg.second_factor.is_totp() {
            return false;
        }
        let plan = totp::plan(
            now.unix_ms,
            self.cfg.min_code_validity,
            self.persisted.last_totp_step,
        );
        // One step plus the freshness margin is the longest wait of a sane clock.
        if plan.wait <= Duration::from_secs(totp::STEP_SECS) + self.cfg.min_code_validity {
            return false;
        }
        if plan.wait > CLOCK_WAIT_TELL {
            self.push(Action::Notify {
                kind: NoticeKind::ClockBehind,
                severity: Severity::Warning,
                message: format!(
                    "The clock is {} s behind the last authenticator code ibwarden typed (it \
                     moved back). Logins wait until it catches up; check NTP (`ibwarden check`).",
                    plan.wait.as_secs()
                ),
            });
        }
        let wait = plan.wait.min(CLOCK_WAIT_MAX);
        self.timers.stop(Timer::LoginDeadline);
        self.timers.set(Timer::BackoffEnd, now.mono + wait);
        self.set_phase(
            Phase::Backoff {
                then: Next::Relogin,
            },
            &format!(
                "the clock moved back: the next authenticator code is {} s away",
                plan.wait.as_secs()
            ),
        );
        true
    }

    /// The form is filled: press `Log In`. This is what spends a login attempt, so it is
    /// counted (and saved) first: a crash between the two still counts it.
    pub(super) fn commit_login(&mut self, now: Now, frame: u32) {
        self.persisted.failed_logins.push(now.unix_ms / 1000);
        self.push(Action::SaveState(self.persisted.clone()));
        self.stats.logins += 1;
        self.type_into(
            frame,
            vec![KeyStep::PauseMs(150), KeyStep::Key(NamedKey::Enter)],
        );
        self.tws_submitted();
        self.status_line("credentials submitted");
    }

    /// The fill did not go in whole: nothing was submitted, nothing is counted. The form's
    /// state is unknown, so it is never completed blind: a fresh JVM gets a fresh form.
    pub(super) fn fill_failed(&mut self, now: Now, why: &str) {
        self.push(Action::Screenshot {
            window: None,
            reason: "input-failed",
        });
        tracing::warn!(why, "the login form was not filled; not pressing Log In");
        self.restart(now, &format!("login form not filled ({why})"), false);
    }

    fn login_form(&self) -> FormCheck {
        FormCheck::Login {
            mode: self.cfg.trading_mode,
        }
    }

    /// Keys for the login frame, from its focus order (`tests/simulator/README.md`): focus
    /// starts in the username field; Shift+Tab walks back over `Paper Trading` and `Live
    /// Trading` (toggles in a group: Space selects the focused one). Select-all before each
    /// field makes a retry after lost focus idempotent.
    pub(super) fn credential_steps(&self) -> Vec<KeyStep> {
        use KeyStep::*;
        use NamedKey::*;
        let mut steps = Vec::new();
        match self.cfg.trading_mode {
            TradingMode::Live => steps.extend([
                Key(ShiftTab),
                Key(ShiftTab),
                PauseMs(50),
                Key(Space),
                Key(Tab),
                Key(Tab),
            ]),
            TradingMode::Paper => steps.extend([Key(ShiftTab), PauseMs(50), Key(Space), Key(Tab)]),
        }
        steps.extend([
            PauseMs(100),
            Key(SelectAll),
            Secret(SecretRef::Username),
            Key(Tab),
            PauseMs(100),
            Key(SelectAll),
            Secret(SecretRef::Password),
        ]);
        steps
    }

    pub(super) fn type_code(&mut self, now: Now, dialog: u32) {
        if self.login.codes_typed > 0 {
            // The code dialog came back: the last code was rejected.
            if self.login.codes_typed > self.cfg.max_code_rejections {
                self.halt(
                    "codes rejected",
                    NoticeKind::CodeRejected,
                    format!(
                        "IBKR rejected {} authenticator codes in a row. Check the clock \
                         (`ibwarden check`) and the activation code (`ibwarden totp` against the \
                         phone), then run `ibwarden restart`.",
                        self.login.codes_typed
                    ),
                );
                return;
            }
            tracing::warn!(
                rejected = self.login.codes_typed,
                "authenticator code rejected; waiting for the next step"
            );
        }
        self.login.code_dialog = Some(dialog);
        let plan = totp::plan(
            now.unix_ms,
            self.cfg.min_code_validity,
            self.persisted.last_totp_step,
        );
        if plan.wait.is_zero() {
            self.send_code(now, dialog, plan.step);
        } else {
            tracing::info!(
                wait_ms = plan.wait.as_millis() as u64,
                "waiting for a fresh authenticator code"
            );
            self.timers.set(Timer::TotpDue, now.mono + plan.wait);
            // A deliberate wait does not count against the login deadline.
            if let Some(d) = self.timers.get(Timer::LoginDeadline) {
                self.timers.set(Timer::LoginDeadline, d + plan.wait);
            }
            self.status_line("waiting for a fresh authenticator code");
        }
    }

    pub(super) fn send_code(&mut self, now: Now, dialog: u32, step: u64) {
        let plan = totp::plan(
            now.unix_ms,
            self.cfg.min_code_validity,
            self.persisted.last_totp_step,
        );
        if plan.step != step || !plan.wait.is_zero() {
            // Woken early or late: re-plan.
            self.timers.set(Timer::TotpDue, now.mono + plan.wait);
            return;
        }
        self.persisted.last_totp_step = Some(step);
        self.push(Action::SaveState(self.persisted.clone()));
        self.login.codes_typed += 1;
        self.login.code_dialog = None;
        // The code first; its OK once the field was seen to hold it (`seeing`).
        self.type_form(
            dialog,
            vec![
                KeyStep::Key(NamedKey::SelectAll),
                KeyStep::Secret(SecretRef::TotpCode { step }),
            ],
            FormCheck::Code { step },
        );
        self.status_line("authenticator code typed");
    }

    pub(super) fn ib_key_wait(&mut self, now: Now) {
        self.login.pushed = true;
        if self.timers.get(Timer::IbKeyDeadline).is_some() {
            return;
        }
        self.push(Action::Notify {
            kind: NoticeKind::HumanApproval,
            severity: Severity::Critical,
            message: format!(
                "IBKR sent an IB Key push: approve the login on your phone within {} s.",
                self.cfg.ib_key_wait.as_secs()
            ),
        });
        self.timers
            .set(Timer::IbKeyDeadline, now.mono + self.cfg.ib_key_wait);
        if let Some(d) = self.timers.get(Timer::LoginDeadline) {
            self.timers
                .set(Timer::LoginDeadline, d.max(now.mono + self.cfg.ib_key_wait));
        }
        self.status_line("waiting for IB Key approval on the phone");
    }

    pub(super) fn await_api(&mut self, now: Now) {
        self.set_phase(Phase::AwaitApi, "logged in; waiting for the API");
        if !self.probe_in_flight {
            self.timers.set(Timer::ProbeDue, now.mono);
        }
    }

    /// The gateway went back to its login window without saying why (2FA timed out, IB Key
    /// not approved, a login silently dropped by IBKR). Log in again in the same JVM after a
    /// growing wait: a new JVM re-arms IBKR's limiter, and quick retries get punished.
    pub(super) fn login_reset(&mut self, now: Now) {
        self.login.resets += 1;
        self.login.submitted = false;
        self.login.saw_progress = false;
        self.login.last_progress = None;
        self.login.code_dialog = None;
        for t in [Timer::LoginDeadline, Timer::TotpDue, Timer::IbKeyDeadline] {
            self.timers.stop(t);
        }
        // IBKR never rejected the credentials (no error dialog: a silent drop), so this
        // attempt is not a failed login for the budget. An IB Key push nobody approved
        // stays counted: each attempt is a prompt on the person's phone, and the budget is
        // what caps them per hour (no prompt storm).
        if !self.login.pushed && self.persisted.failed_logins.pop().is_some() {
            self.push(Action::SaveState(self.persisted.clone()));
        }
        if self.login.resets > MAX_LOGIN_RESETS {
            self.halt(
                "IBKR keeps dropping the login",
                NoticeKind::RestartLoop,
                format!(
                    "IBKR dropped {} logins in a row without an error. Another session probably \
                     holds the account's login slot: open IBKR Mobile once to free it, then run \
                     `ibwarden restart`.",
                    self.login.resets - 1
                ),
            );
            return;
        }
        let exp = (self.login.resets - 1).min(4);
        let wait = self
            .cfg
            .relogin_backoff
            .saturating_mul(1 << exp)
            .min(Duration::from_secs(600));
        tracing::warn!(
            resets = self.login.resets,
            wait_s = wait.as_secs(),
            "back at the login window without an error; logging in again later"
        );
        if self.login.resets == 3 {
            self.push(Action::Notify {
                kind: NoticeKind::RestartLoop,
                severity: Severity::Warning,
                message: "IBKR keeps dropping the login without an error. If another session \
                          (IBKR Mobile, Client Portal) is stuck, open IBKR Mobile once to free \
                          it; ibwarden keeps retrying with growing waits."
                    .into(),
            });
        }
        self.timers.set(Timer::BackoffEnd, now.mono + wait);
        self.set_phase(
            Phase::Backoff {
                then: Next::Relogin,
            },
            &format!(
                "login went back to the login window; next login in {} s",
                wait.as_secs()
            ),
        );
    }

    pub(super) fn relogin(&mut self, now: Now) {
        // Re-drive Log In on the same login frame (a new JVM re-arms IBKR's limiter).
        if self.pid.is_none() {
            self.launch(now, false);
            return;
        }
        match self.login.frame {
            Some(_) => {
                self.set_phase(Phase::LoggingIn, "logging in again");
                self.login.submitted = false;
                self.timers
                    .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
                self.submit_credentials(now);
            }
            None => self.restart(now, "login window gone", false),
        }
    }

    pub(super) fn type_into(&mut self, window: u32, steps: Vec<KeyStep>) {
        self.type_with(window, steps, false);
    }

    pub(super) fn type_into_then_reread(&mut self, window: u32, steps: Vec<KeyStep>) {
        self.type_with(window, steps, true);
    }

    pub(super) fn type_with(&mut self, window: u32, steps: Vec<KeyStep>, reread: bool) {
        self.type_job(window, steps, reread, None);
    }

    /// Keys that fill `form` (no submit): a check of the form follows them.
    pub(super) fn type_form(&mut self, window: u32, steps: Vec<KeyStep>, form: FormCheck) {
        self.type_job(window, steps, false, Some(form));
    }

    fn type_job(
        &mut self,
        window: u32,
        steps: Vec<KeyStep>,
        reread: bool,
        form: Option<FormCheck>,
    ) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            PendingType {
                window,
                steps: steps.clone(),
                tries: 1,
                reread,
                fill: matches!(form, Some(FormCheck::Login { .. })),
                form: form.filter(|f| !matches!(f, FormCheck::Login { .. })),
            },
        );
        if self.human {
            self.held.push(ticket);
            return;
        }
        self.push(Action::Type {
            ticket,
            window,
            steps,
        });
    }

    /// A line of `launcher.log`: IBKR's side of the login, which titles cannot show.
    pub(super) fn on_gateway_log(&mut self, now: Now, ev: LauncherEvent) {
        use LauncherEvent as L;
        match ev {
            // `AuthTimeoutMonitor-CCP: Timeout!` with no `NS_AUTH_START`: IBKR dropped the
            // login without a word (a concurrent session holds the slot). Log in again in
            // the same JVM on the growing ladder.
            L::SilentDrop if self.phase == Phase::LoggingIn && self.login.submitted => {
                tracing::warn!("IBKR dropped the login silently (launcher.log)");
                self.login_reset(now);
            }
            // `Login has completed`: the gateway's own word, independent of title timing.
            L::LoginCompleted if self.phase == Phase::LoggingIn => {
                tracing::info!("the gateway reports the login completed (launcher.log)");
                self.await_api(now);
            }
            // Logged by the follower when read (`launcher log`).
            _ => {}
        }
    }

    pub(super) fn on_typed(&mut self, now: Now, ticket: u64, result: TypeResult) {
        let Some(mut p) = self.pending.remove(&ticket) else {
            return;
        };
        if self.tws_typed(now, ticket, &result) {
            return;
        }
        if p.fill {
            match result {
                TypeResult::Done => self.check_form(now, p.window, self.login_form(), false),
                TypeResult::FocusLost if p.tries < 6 && self.windows.contains_key(&p.window) => {
                    // Nothing of the fill was sent: the same keys are still right.
                    tracing::warn!(window = p.window, tries = p.tries, "focus lost; retrying");
                    p.tries += 1;
                    self.pending.insert(ticket, p);
                    if !self.retry_tickets.contains(&ticket) {
                        self.retry_tickets.push(ticket);
                    }
                    self.timers
                        .set(Timer::RetryInput, now.mono + Duration::from_millis(300));
                }
                TypeResult::FocusLost => self.fill_failed(now, "the window never had the focus"),
                // Some keys went in, the focus moved: the form is unknown. Look at it (once
                // the window is back in front): a refill by target or a relaunch follows,
                // never Log In with partial content.
                TypeResult::Interrupted if self.windows.contains_key(&p.window) => {
                    tracing::warn!(window = p.window, "typing interrupted; looking at the form");
                    self.check_form(now, p.window, self.login_form(), true)
                }
                TypeResult::Interrupted => {
                    self.fill_failed(now, "another window took the focus while typing")
                }
                TypeResult::Failed(e) => self.fill_failed(now, &e),
            }
            return;
        }
        match result {
            TypeResult::Done if p.form.is_some() => {
                if let Some(form) = p.form {
                    self.check_form(now, p.window, form, false);
                }
            }
            TypeResult::Done => {
                if p.reread {
                    if let Some(w) = self.windows.get_mut(&p.window) {
                        w.reading = true;
                        w.kind = DialogKind::SecondFactor;
                        self.read_text(p.window);
                    }
                }
            }
            TypeResult::FocusLost | TypeResult::Interrupted
                if p.tries < 6 && self.windows.contains_key(&p.window) =>
            {
                tracing::warn!(window = p.window, tries = p.tries, "focus lost; retrying");
                p.tries += 1;
                self.pending.insert(ticket, p);
                if !self.retry_tickets.contains(&ticket) {
                    self.retry_tickets.push(ticket);
                }
                self.timers
                    .set(Timer::RetryInput, now.mono + Duration::from_millis(300));
            }
            TypeResult::FocusLost | TypeResult::Interrupted | TypeResult::Failed(_) => {
                tracing::warn!(window = p.window, ?result, "keyboard input failed");
                if self.windows.contains_key(&p.window) {
                    self.push(Action::Screenshot {
                        window: None,
                        reason: "input-failed",
                    });
                }
            }
        }
    }
}
