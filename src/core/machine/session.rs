//! Session policy: IBC's `ExistingSessionDetectedAction` semantics and the ping-pong guard.

use super::*;

impl Supervisor {
    /// IBC's `ExistingSessionDetectedDialogHandler` (IBC's source): `logged_in` is
    /// IBC's `LOGGED_IN`, i.e. this JVM has completed a login (the dialog then answers a
    /// re-login after another session displaced ours); `existing_seen` counts per JVM like
    /// IBC's per-run flag.
    pub(super) fn existing_session(&mut self, now: Now, id: u32) {
        self.login.existing_seen += 1;
        let logged_in = self.login.was_ready;
        let answer = match self.cfg.existing_session {
            SessionPolicy::Manual => None,
            SessionPolicy::Secondary => Some(Answer::Second),
            SessionPolicy::Primary | SessionPolicy::PrimaryOverride if !logged_in => {
                if self.login.existing_seen == 1 {
                    Some(Answer::Default)
                } else {
                    Some(Answer::Second)
                }
            }
            SessionPolicy::Primary => Some(Answer::Default),
            SessionPolicy::PrimaryOverride => Some(Answer::Second),
        };
        match answer {
            Some(Answer::Default) if self.takeover_storm(now) => {
                self.login.continued = true;
                let then = if matches!(self.phase, Phase::AwaitApi | Phase::Ready) {
                    Phase::AwaitApi
                } else {
                    Phase::LoggingIn
                };
                self.defer(now, id, Answer::Default, then);
            }
            Some(a) => {
                tracing::info!(policy = ?self.cfg.existing_session, answer = ?a, "existing session");
                self.answer(id, a);
                if a == Answer::Default {
                    self.login.continued = true;
                }
                if a == Answer::Second {
                    self.halt(
                        "another session holds the account",
                        NoticeKind::SessionConflict,
                        "Another IBKR session holds the account and the session policy yields \
                         to it. Run `ibwarden restart` when the gateway should take over."
                            .into(),
                    );
                }
            }
            None => self.manual_session(now, id),
        }
    }

    /// `manual`: a person answers the session dialog on the gateway's display. The login
    /// deadline stops (a relaunch would only bring the dialog back and spend the failed-login
    /// budget); whatever the person chooses, the machine follows the windows from there.
    pub(super) fn manual_session(&mut self, now: Now, id: u32) {
        self.leave_alone(now, id, "session dialog: manual policy");
        self.timers.stop(Timer::LoginDeadline);
        let title = self
            .windows
            .get(&id)
            .map(|w| w.info.title.clone())
            .unwrap_or_default();
        self.push(Action::Notify {
            kind: NoticeKind::SessionConflict,
            severity: Severity::Critical,
            message: format!(
                "The gateway shows {title:?}: another IBKR session uses the account. The session \
                 policy is manual: answer the dialog on the gateway's display, or set \
                 [login] existing_session."
            ),
        });
        self.status_line("another session uses the account: waiting for a person (manual policy)");
    }

    /// Records a session takeover and says whether the ping-pong guard trips: `pingpong_max`
    /// takeovers within `pingpong_window`.
    pub(super) fn takeover_storm(&mut self, now: Now) -> bool {
        let window = self.cfg.pingpong_window;
        while let Some(&t) = self.takeovers.front() {
            if now.mono.duration_since(t) >= window {
                self.takeovers.pop_front();
            } else {
                break;
            }
        }
        if self.takeovers.is_empty() {
            self.pingpong_notified = false;
        }
        self.takeovers.push_back(now.mono);
        self.takeovers.len() as u32 >= self.cfg.pingpong_max.max(1)
    }

    /// Holds a session dialog back for `pingpong_backoff`, telling the person once.
    pub(super) fn defer(&mut self, now: Now, id: u32, answer: Answer, then: Phase) {
        let wait = self.cfg.pingpong_backoff;
        if !self.pingpong_notified {
            self.pingpong_notified = true;
            self.push(Action::Notify {
                kind: NoticeKind::SessionConflict,
                severity: Severity::Warning,
                message: format!(
                    "Another IBKR session keeps taking the account ({} takeovers within {} s). \
                     ibwarden waits {} s before taking it back. Log out the other session \
                     (IBKR Mobile, Client Portal, another gateway) or set [login] \
                     existing_session = \"secondary\".",
                    self.takeovers.len(),
                    self.cfg.pingpong_window.as_secs(),
                    wait.as_secs()
                ),
            });
        }
        if let Some(w) = self.windows.get_mut(&id) {
            w.handled = true;
        }
        tracing::warn!(
            window = id,
            wait_s = wait.as_secs(),
            "session ping-pong: holding back"
        );
        self.deferred = Some(Deferred {
            window: id,
            answer,
            then,
        });
        self.timers.stop(Timer::LoginDeadline);
        self.timers.set(Timer::DeferredAnswer, now.mono + wait);
        self.set_phase(
            Phase::Backoff {
                then: Next::Relogin,
            },
            &format!(
                "another session keeps taking the account; answering in {} s",
                wait.as_secs()
            ),
        );
    }

    /// `Re-login` was pressed after a session drop: the gateway logs in again by itself.
    pub(super) fn relogin_pressed(&mut self, now: Now) {
        self.login.saw_progress = false;
        self.set_phase(Phase::AwaitApi, "re-login after a session drop");
        self.timers
            .set(Timer::LoginDeadline, now.mono + self.cfg.login_timeout);
        // Probing may have lapsed (a held-back answer): the API decides when it is ready.
        if !self.probe_in_flight {
            self.timers
                .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
        }
    }
}
