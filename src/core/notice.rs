//! What the core tells a person: the kinds of events (deduplicated by the notifier, with a
//! "recovered" when they clear) and how urgent they are.

/// How urgent a notification is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Good news (recovered).
    Info,
    /// Something a person may want to look at.
    Warning,
    /// A person must act.
    Critical,
}

/// Why the machine wants a person told something. One variant per event kind, so the
/// notifier can deduplicate and send "recovered" when it clears.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Invalid username or password: logins stopped.
    LoginFailed,
    /// Codes rejected too often: logins stopped.
    CodeRejected,
    /// An IB Key push needs approval on the phone.
    HumanApproval,
    /// The failed-login budget is spent: waiting.
    LockoutGuard,
    /// The JVM crashed.
    Crash,
    /// Restarts keep failing.
    RestartLoop,
    /// A dialog nobody knows.
    UnknownDialog,
    /// The IBKR password expires soon.
    PasswordExpiring,
    /// A competing session keeps taking ours.
    SessionConflict,
    /// The clock is behind the last TOTP step used (it moved back): logins wait for it.
    ClockBehind,
    /// The gateway is ready again after a problem.
    Recovered,
    /// A filled form could not be seen and `login.verify_form = "required"`.
    FormUnseen,
    /// IBKR wants a passkey (or another step only a person can do): logins stopped.
    HumanStep,
    /// IBKR does not offer the API for this account: logins stopped.
    ApiUnavailable,
    /// The gateway served the other trading mode's accounts: closed, logins stopped.
    WrongTradingMode,
}
