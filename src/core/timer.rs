//! Named timers of the core (as in quinn's `TimerTable`): one deadline per purpose.

use std::time::Instant;

/// Every deadline the core may ask to be woken for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The JVM must map its login frame by then.
    LaunchDeadline,
    /// The whole login (frame shown → API ready) must finish by then.
    LoginDeadline,
    /// A fresh TOTP step starts: type the code.
    TotpDue,
    /// Time for the next API probe.
    ProbeDue,
    /// The end of a back-off: launch or log in again.
    BackoffEnd,
    /// Retry a keyboard action whose window did not have the focus.
    RetryInput,
    /// An IB Key push has had its time: give up on it.
    IbKeyDeadline,
    /// A graceful stop must have ended by then.
    StopDeadline,
    /// A token relaunch that stays on the login frame this long gets a full login.
    TokenGrace,
    /// The end of a ping-pong back-off: answer the session dialog that was held back.
    DeferredAnswer,
    /// TWS: look at the `Login` frame again for the in-frame second factor (`core::tws`).
    TwsWatch,
    /// The gateway was asked to close through its window: SIGTERM if it has not exited.
    CloseGrace,
    /// SIGTERM was sent: SIGKILL if the JVM has not exited.
    TermGrace,
    /// Look at the wall clock for IBKR's calendar (planned restarts, DST, clock jumps).
    Calendar,
}

impl Timer {
    const ALL: [Timer; 14] = [
        Timer::LaunchDeadline,
        Timer::LoginDeadline,
        Timer::TotpDue,
        Timer::ProbeDue,
        Timer::BackoffEnd,
        Timer::RetryInput,
        Timer::IbKeyDeadline,
        Timer::StopDeadline,
        Timer::TokenGrace,
        Timer::DeferredAnswer,
        Timer::TwsWatch,
        Timer::CloseGrace,
        Timer::TermGrace,
        Timer::Calendar,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// One optional deadline per [`Timer`].
#[derive(Debug, Default, Clone)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; 14],
}

impl TimerTable {
    /// Arm (or re-arm) a timer.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer.index()] = Some(at);
    }

    /// Disarm a timer.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer.index()] = None;
    }

    /// The deadline of a timer, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.index()]
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Disarm and return every timer that has expired at `now`, in declaration order.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Vec<Timer> {
        let mut out = Vec::new();
        for t in Timer::ALL {
            if let Some(at) = self.slots[t.index()] {
                if at <= now {
                    self.slots[t.index()] = None;
                    out.push(t);
                }
            }
        }
        out
    }

    /// Disarm everything.
    pub(crate) fn clear(&mut self) {
        self.slots = Default::default();
    }
}
