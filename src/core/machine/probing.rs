//! Probing: the TWS API handshake outcome decides ready, hang and IB link loss.

use super::*;

impl Supervisor {
    pub(super) fn on_probe(&mut self, now: Now, outcome: ProbeOutcome) {
        self.probe_in_flight = false;
        match (&self.phase, outcome) {
            (
                Phase::LoggingIn | Phase::AwaitApi,
                ProbeOutcome::Up {
                    link_lost: true, ..
                },
            ) => {
                // The API still listens after a session drop, but the gateway is not logged
                // in to IBKR until the link is back (a re-login in progress).
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
            }
            (
                Phase::LoggingIn | Phase::AwaitApi,
                ProbeOutcome::Up {
                    server_version,
                    accounts,
                    ..
                },
            ) => {
                if let Some(mode) = mode_of_accounts(&accounts) {
                    if mode != self.cfg.trading_mode {
                        self.wrong_trading_mode(now, mode, &accounts);
                        return;
                    }
                }
                self.timers.stop(Timer::LoginDeadline);
                self.timers.stop(Timer::LaunchDeadline);
                self.timers.stop(Timer::IbKeyDeadline);
                // The login succeeded: it is not a failed one.
                if self.login.submitted {
                    self.persisted.failed_logins.pop();
                    self.push(Action::SaveState(self.persisted.clone()));
                }
                let recovered = self.ready_once && self.consecutive_restarts > 0;
                self.consecutive_restarts = 0;
                self.probe_failures = 0;
                self.ready_once = true;
                self.login.was_ready = true;
                self.stats.readies += 1;
                self.stats.last_ready_unix_ms = Some(now.unix_ms);
                self.phase = Phase::Ready;
                self.reason.clear();
                self.push(Action::Status {
                    ready: true,
                    text: format!(
                        "ready: API up (server version {server_version}, accounts {})",
                        accounts.join(",")
                    ),
                    sd_ready: false,
                });
                if recovered {
                    self.push(Action::Notify {
                        kind: NoticeKind::Recovered,
                        severity: Severity::Info,
                        message: "The gateway is logged in and its API answers again.".into(),
                    });
                }
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_interval);
            }
            (Phase::LoggingIn | Phase::AwaitApi, ProbeOutcome::Down { .. }) => {
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
            }
            (Phase::Ready, ProbeOutcome::Up { link_lost, .. }) => {
                self.probe_failures = 0;
                if link_lost {
                    if self.link_lost_since.is_none() {
                        let line = format!(
                            "ready, but the gateway's link to IBKR is down (1100); restart if it \
                             lasts {} s",
                            self.cfg.link_lost_grace.as_secs()
                        );
                        tracing::warn!("IB link lost (1100)");
                        self.status_line(&line);
                    }
                    let since = *self.link_lost_since.get_or_insert(now.mono);
                    if now.mono.duration_since(since) >= self.cfg.link_lost_grace {
                        self.restart(now, "IB link lost too long", false);
                        return;
                    }
                    // Probe again soon: the link's return is what clients wait for.
                    self.timers.set(
                        Timer::ProbeDue,
                        now.mono + self.cfg.probe_interval.min(Duration::from_secs(10)),
                    );
                    return;
                } else if self.link_lost_since.take().is_some() {
                    tracing::info!("IB link restored");
                    self.reason.clear();
                    self.push(Action::Status {
                        ready: true,
                        text: "ready: the gateway's link to IBKR is back".into(),
                        sd_ready: false,
                    });
                }
                self.timers
                    .set(Timer::ProbeDue, now.mono + self.cfg.probe_interval);
            }
            (Phase::Ready, ProbeOutcome::Down { reason }) => {
                self.probe_failures += 1;
                tracing::warn!(failures = self.probe_failures, %reason, "API probe failed");
                if self.probe_failures >= self.cfg.failures_before_restart {
                    self.push(Action::Status {
                        ready: false,
                        text: format!("API not answering: {reason}"),
                        sd_ready: false,
                    });
                    self.restart(now, "API stopped answering", false);
                } else {
                    self.timers
                        .set(Timer::ProbeDue, now.mono + self.cfg.probe_retry);
                }
            }
            _ => {}
        }
    }
}

/// The trading mode the managed accounts belong to: IBKR numbers paper accounts with a `D`
/// (`DU…`, `DF…` for an advisor's), live ones without (`U…`, `F…`, `I…`). `None` for a
/// mix or an empty list: nothing is concluded.
pub(crate) fn mode_of_accounts(accounts: &[String]) -> Option<TradingMode> {
    let paper = |a: &String| a.trim_start().starts_with(['D', 'd']);
    if accounts.is_empty() {
        None
    } else if accounts.iter().all(paper) {
        Some(TradingMode::Paper)
    } else if !accounts.iter().any(paper) {
        Some(TradingMode::Live)
    } else {
        None
    }
}

impl Supervisor {
    /// The gateway serves the other mode's accounts (a mode toggle that did not take, a
    /// gateway version whose form ibwarden misread): never ready. Trading code connected to
    /// it would trade the wrong account — real money where paper was meant, or paper where
    /// real orders were meant — so the gateway is closed and ibwarden waits for a person.
    fn wrong_trading_mode(&mut self, now: Now, mode: TradingMode, accounts: &[String]) {
        tracing::error!(
            configured = self.cfg.trading_mode.as_str(),
            served = mode.as_str(),
            accounts = %accounts.join(","),
            "the gateway logged in to the other trading mode"
        );
        self.halt(
            "logged in to the wrong trading mode",
            NoticeKind::WrongTradingMode,
            format!(
                "The gateway logged in to {} account(s) {} although gateway.trading_mode is \
                 \"{}\". ibwarden closed it so that nothing trades on the wrong account. Check \
                 the trading mode and the username in the config (`ibwarden check`), then run \
                 `ibwarden restart`.",
                mode.as_str(),
                accounts.join(","),
                self.cfg.trading_mode.as_str()
            ),
        );
        self.push(Action::TerminateGateway);
        self.timers.set(Timer::TermGrace, now.mono + TERM_GRACE);
    }
}
