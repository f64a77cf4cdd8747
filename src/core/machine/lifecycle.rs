//! The JVM's life: launch (display first), exits and their causes, back-off, restarts, the
//! stop and its escalation, halts, IBKR's calendar and reloads.

use super::*;

impl Supervisor {
    pub(super) fn launch(&mut self, now: Now, use_restart_token: bool) {
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
            return;
        }
        self.windows.clear();
        self.pending.clear();
        self.retry_tickets.clear();
        self.login = Login::default();
        self.deferred = None;
        self.probe_failures = 0;
        self.link_lost_since = None;
        self.timers.clear();
        if self.display_up {
            self.push(Action::Launch { use_restart_token });
        } else {
            self.launch_after_display = true;
            self.push(Action::StartDisplay);
        }
        self.timers
            .set(Timer::LaunchDeadline, now.mono + self.cfg.launch_timeout);
        self.poll_schedule(now);
        self.set_phase(
            Phase::Launching { use_restart_token },
            "launching the gateway",
        );
    }

    pub(super) fn on_spawned(&mut self, now: Now, pid: u32, with_token: bool) {
        self.pid = Some(pid);
        self.login.token_login = with_token;
        self.set_phase(Phase::LoggingIn, "waiting for the login window");
        // After an auto-restart the gateway logs itself in: watch the API from the start.
        // In a normal launch, probing early costs a refused connection per second and
        // catches a gateway that needs no login.
        self.timers
            .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
    }

    pub(super) fn on_exited(
        &mut self,
        now: Now,
        code: Option<i32>,
        signal: Option<i32>,
        hs: Option<String>,
    ) {
        self.pid = None;
        self.windows.clear();
        self.pending.clear();
        self.probe_in_flight = false;
        for t in [
            Timer::LaunchDeadline,
            Timer::LoginDeadline,
            Timer::ProbeDue,
            Timer::TotpDue,
            Timer::RetryInput,
            Timer::IbKeyDeadline,
            Timer::StopDeadline,
            Timer::CloseGrace,
            Timer::TermGrace,
        ] {
            self.timers.stop(t);
        }
        let how = match (code, signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            (None, None) => "unknown status".to_string(),
        };
        match self.phase {
            Phase::Stopping { .. } | Phase::Stopped => {
                self.set_phase(Phase::Stopped, "stopped");
                self.push(Action::Exit(0));
                return;
            }
            Phase::Halted { .. } => {
                // Stay halted; a person restarts us.
                return;
            }
            Phase::Restarting { then } => {
                // We stopped it on purpose; relaunch after the back-off.
                self.backoff(now, "relaunching", then);
                return;
            }
            _ => {}
        }
        let crashed = code == Some(134) || signal == Some(6) || signal == Some(11) || hs.is_some();
        let reason = if crashed {
            let report = hs.clone().unwrap_or_else(|| "no crash report".into());
            self.push(Action::Notify {
                kind: NoticeKind::Crash,
                severity: Severity::Warning,
                message: format!(
                    "The gateway JVM crashed ({how}); crash report kept at {report}. Restarting it."
                ),
            });
            "jvm crashed"
        } else if code == Some(0) {
            // The nightly auto-restart exits 0 after writing its token: relaunch quickly.
            let nightly = self.cfg.schedule.as_ref().is_some_and(|s| {
                s.is_nightly_reset_exit(super::schedule::timestamp_from_unix_ms(now.unix_ms))
            });
            if nightly {
                self.consecutive_restarts = 0;
                "nightly auto-restart"
            } else {
                "jvm exited cleanly (auto-restart)"
            }
        } else if code == Some(1) {
            "jvm lost its X connection"
        } else if signal.is_some() || matches!(code, Some(137) | Some(143)) {
            "jvm was killed"
        } else {
            "jvm exited"
        };
        self.stats.count_restart(reason);
        tracing::warn!(reason, status = %how, "gateway exited");
        self.backoff(
            now,
            reason,
            Next::Launch {
                use_restart_token: true,
            },
        );
    }

    /// Stop the JVM (if any) and launch again after a back-off.
    pub(super) fn restart(&mut self, now: Now, reason: &str, full_login: bool) {
        self.stats.count_restart(reason);
        let next = Next::Launch {
            use_restart_token: !full_login,
        };
        if self.pid.is_some() {
            // A gateway that answers gets its time to log out; a hung one cannot log out
            // anyway and only delays the recovery.
            let grace = if self.is_ready() {
                self.cfg.stop_grace
            } else {
                CLOSE_GRACE
            };
            self.close_gateway(now, grace);
            self.set_phase(Phase::Restarting { then: next }, reason);
        } else {
            self.backoff(now, reason, next);
        }
    }

    /// What a failed launch retries: the same kind of launch.
    pub(super) fn relaunch(&self) -> Next {
        match self.phase {
            Phase::Launching { use_restart_token } => Next::Launch { use_restart_token },
            Phase::Backoff { then } | Phase::Restarting { then } => then,
            _ => Next::Launch {
                use_restart_token: true,
            },
        }
    }

    pub(super) fn backoff(&mut self, now: Now, reason: &str, then: Next) {
        let delay = self.next_backoff();
        self.consecutive_restarts += 1;
        if self.consecutive_restarts == 5 {
            self.push(Action::Notify {
                kind: NoticeKind::RestartLoop,
                severity: Severity::Warning,
                message: format!(
                    "The gateway has failed to come up {} times in a row (last: {reason}). \
                     ibwarden keeps retrying with back-off; check `ibwarden status` and the logs.",
                    self.consecutive_restarts
                ),
            });
        }
        self.timers.set(Timer::BackoffEnd, now.mono + delay);
        self.set_phase(
            Phase::Backoff { then },
            &format!("{reason}; next attempt in {}s", delay.as_secs()),
        );
    }

    pub(super) fn next_backoff(&mut self) -> Duration {
        let exp = self.consecutive_restarts.min(16);
        let base = self
            .cfg
            .backoff_initial
            .saturating_mul(1u32 << exp.min(16))
            .min(self.cfg.backoff_max);
        // ±20 % jitter from a seeded xorshift: spreads several instances apart.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 401) as f64 / 1000.0 - 0.2;
        base.mul_f64(1.0 + frac).min(self.cfg.backoff_max)
    }

    /// Stop for good; `requests` counts this one if a person or systemd asked.
    pub(super) fn stop(&mut self, now: Now, requests: u32) {
        if matches!(self.phase, Phase::Stopping { .. } | Phase::Stopped) {
            return;
        }
        self.timers.clear();
        if self.pid.is_some() {
            self.close_gateway(now, self.cfg.stop_grace);
            let deadline = STOP_DEADLINE.max(self.cfg.stop_grace + TERM_GRACE + STOP_MARGIN);
            self.timers.set(Timer::StopDeadline, now.mono + deadline);
            self.set_phase(Phase::Stopping { requests }, "stopping the gateway");
        } else {
            self.set_phase(Phase::Stopped, "stopped");
            self.push(Action::Exit(0));
        }
    }

    /// Close the gateway the way a user would: a hard-killed JVM can strand IBKR's
    /// server-side session for a long time. Escalates on [`Timer::CloseGrace`] (after
    /// `grace`) and [`Timer::TermGrace`].
    pub(super) fn close_gateway(&mut self, now: Now, grace: Duration) {
        match self.login.frame {
            Some(main_window) => {
                self.push(Action::CloseGateway { main_window });
                self.timers.set(Timer::CloseGrace, now.mono + grace);
            }
            None => {
                self.push(Action::TerminateGateway);
                self.timers.set(Timer::TermGrace, now.mono + TERM_GRACE);
            }
        }
    }

    pub(super) fn halt(&mut self, reason: &str, kind: NoticeKind, message: String) {
        self.timers.clear();
        self.push(Action::Notify {
            kind,
            severity: Severity::Critical,
            message,
        });
        self.set_phase(Phase::Halted { why: kind }, reason);
    }

    /// A planned event is due (daily restart, weekly cold restart, closedown).
    pub(super) fn on_scheduled(&mut self, now: Now, ev: ScheduledEvent) {
        use ScheduledEvent as E;
        if matches!(
            self.phase,
            Phase::Stopping { .. } | Phase::Stopped | Phase::Halted { .. }
        ) {
            return;
        }
        self.consecutive_restarts = 0;
        match ev {
            E::DailyRestart => self.restart(now, "daily restart", false),
            // Sunday's token expiry: a full login with the second factor.
            E::WeeklyColdRestart => self.restart(now, "weekly cold restart", true),
            E::Closedown => self.stop(now, 0),
        }
    }

    /// Fires due calendar events from wall time (DST and clock jumps are the scheduler's
    /// business) and re-arms [`Timer::Calendar`] for the next look at the clock.
    pub(super) fn poll_schedule(&mut self, now: Now) {
        let Some(sched) = self.scheduler.as_mut() else {
            if let Some(s) = self.cfg.schedule.clone() {
                self.scheduler = Some(Scheduler::new(
                    s,
                    schedule::timestamp_from_unix_ms(now.unix_ms),
                ));
                self.poll_schedule(now);
            }
            return;
        };
        let wall = schedule::timestamp_from_unix_ms(now.unix_ms);
        let polled = sched.poll(wall);
        let next = now.mono + sched.next_check(wall);
        self.timers.set(Timer::Calendar, next);
        for m in &polled.missed {
            tracing::warn!(event = %m.event, "scheduled event missed (clock jump or suspend)");
        }
        if let Some(f) = polled.fired {
            tracing::info!(event = %f.event, "scheduled event");
            self.on_scheduled(now, f.event);
        }
    }

    /// SIGHUP with a valid file: every value takes effect where the core uses it (the
    /// maintenance guard and the calendar, probe cadence, login policy), now.
    pub(super) fn reconfigure(&mut self, now: Now, mut cfg: CoreConfig) {
        // The jitter stream is the process's, not the file's.
        cfg.seed = self.cfg.seed;
        let probe_changed = cfg.probe_interval != self.cfg.probe_interval;
        if let (Some(sched), Some(s)) = (self.scheduler.as_mut(), cfg.schedule.clone()) {
            sched.set_schedule(s);
        } else {
            self.scheduler = None;
        }
        self.cfg = cfg;
        if probe_changed && self.phase == Phase::Ready && !self.probe_in_flight {
            self.timers
                .set(Timer::ProbeDue, now.mono + self.cfg.probe_interval);
        }
        self.poll_schedule(now);
        self.end_reload("configuration reloaded");
    }

    /// The end of a reload: systemd expects `READY=1`, which is only ever sent while the API
    /// probe passes (fail closed); otherwise the status says what the machine waits for.
    pub(super) fn end_reload(&mut self, outcome: &str) {
        if self.is_ready() {
            self.push(Action::Status {
                ready: true,
                text: format!("ready ({outcome})"),
                sd_ready: true,
            });
        } else {
            let text = self.reason.clone();
            self.push(Action::Status {
                ready: false,
                text,
                sd_ready: false,
            });
        }
    }
}
