//! The dialog catalogue: how every gateway window is recognised, as data.
//!
//! A new gateway version that renames a dialog means editing [`CATALOGUE`], not code paths.
//! Recognition happens in two stages, because X11 shows titles but not contents
//! (IBC's source):
//!
//! 1. [`classify`] uses what the window watcher sees at `MapNotify`: title, whether the window
//!    is transient for another (a dialog), and geometry.
//! 2. [`refine`] uses the window's text when a content reader (OCR, AT-SPI) could read it. Kinds
//!    that cannot be told apart by title alone carry `needs_text = true`; without text the core
//!    applies the safest policy for them (usually: leave the dialog alone and tell a person).
//!
//! Without text (`content_reader = "none"`, or OCR failed), the machine answers:
//!
//! | title | safest answer |
//! |---|---|
//! | `Gateway` (connection failed / token expired / progress modal) | left alone: the progress modal's OK cancels the login |
//! | `Warning` | accepted in paper mode (the paper notice); otherwise unknown (screenshot, notice, left alone) |
//! | `Login failed` | bad credentials: stop logging in, tell the person |
//! | `Second Factor Authentication` | the configured device decides: a code for the authenticator app, a wait for IB Key |
//! | `Login Error`, `Password Notice` | as with text (restart; notice without the days left) |
//!
//! Windows of at most [`STUB_MAX_SIDE`] pixels on a side are AWT helper stubs and ignored.
//!
//! Which keys answer a dialog lives here too ([`Answer::keys`]), because it depends on each
//! dialog's button layout (default button, focus order), not on policy.

use super::types::{KeyStep, NamedKey};

/// What a top-level window is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DialogKind {
    /// The gateway's login frame, which later becomes its main window (same window).
    GatewayFrame,
    /// TWS's `Login` frame.
    TwsLoginFrame,
    /// TWS's main window (`<account> Interactive Brokers`).
    TwsMainWindow,
    /// A progress title on the login frame (`Authenticating...`, `Starting application...`).
    Progress,
    /// `Second Factor Authentication`, content not known yet.
    SecondFactor,
    /// The second-factor device chooser (`Select second factor device`).
    DeviceChooser,
    /// The code entry (`Enter Mobile Authenticator app code`).
    CodeEntry,
    /// The IB Key push wait (`A notification has been sent to your IB Key device`): only a
    /// person with the phone can answer it.
    IbKeyPrompt,
    /// `Existing session detected`.
    ExistingSession,
    /// `Trading Login Handoff` (after 2FA, with a competing session).
    LoginHandoff,
    /// `Re-login is required`.
    ReloginRequired,
    /// `Login failed` / `Unrecognized Username or Password`: bad credentials.
    LoginFailed,
    /// `Login Error`.
    LoginError,
    /// `Too many failed login attempts. Please wait ...`.
    TooManyAttempts,
    /// A dialog titled `Gateway`, content not known yet.
    GatewayMessage,
    /// `Gateway`: `Connection to server failed: ...`.
    ConnectionFailed,
    /// `Gateway`: the security tokens have expired (weekly, Sunday).
    TokenExpired,
    /// `Gateway`: the connecting-progress modal whose `OK` cancels the login.
    ProgressModal,
    /// `Password Notice`.
    PasswordNotice,
    /// `Tip of the Day`.
    TipOfTheDay,
    /// `Warning`, content not known yet (paper-account notice, mostly).
    Warning,
    /// `Warning`: `This is not a brokerage account` (paper trading).
    PaperWarning,
    /// `Accept incoming connection`.
    AcceptIncoming,
    /// `Newer Version`.
    NewerVersion,
    /// `Shutdown progress`.
    ShutdownProgress,
    /// `Are you sure you want to exit?` (TWS exit confirmation).
    ExitConfirm,
    /// TWS: `Bid, Ask and Last Size Display Update` (a market-data display notice).
    BidAskNotice,
    /// TWS: `API client needs write access action confirmation` (`Yes` grants an API client
    /// the right to trade): never answered by ibwarden.
    ApiWriteAccess,
    /// `Login Messages` after the second factor (`Resume login` continues the login).
    LoginMessages,
    /// `NSE Compliance` (Indian accounts' notice frame).
    NseCompliance,
    /// `Exit Session Setting` (older gateways' auto-logoff settings frame).
    ExitSessionSetting,
    /// `Financial Advisor Warning` (FA accounts' notice).
    FinancialAdvisorWarning,
    /// `Gateway`: `Required PassKey is not supported, please upgrade ...`: this login needs
    /// a passkey ceremony only a person (and a newer gateway) can do.
    PasskeyUnsupported,
    /// `API support is not available for accounts that support free trading.`: the gateway
    /// will never serve the API for this account.
    ApiUnsupported,
    /// Anything else: never answered blindly.
    Unknown,
}

/// How a title is matched.
#[derive(Clone, Copy, Debug)]
pub enum TitleMatch {
    /// The whole title (after [`normalise_title`]).
    Exact(&'static str),
    /// A substring of the title (after [`normalise_title`]).
    Contains(&'static str),
}

impl TitleMatch {
    fn matches(self, title: &str) -> bool {
        let title = normalise_title(title);
        match self {
            TitleMatch::Exact(t) => title == normalise_title(t),
            TitleMatch::Contains(t) => title.contains(&normalise_title(t)),
        }
    }
}

/// Titles (and labels, list rows) as versions differ in them: case-folded, trimmed, runs of
/// whitespace as one space, `-`, `_` and the Unicode dashes as a space (10.37.1q renamed
/// `IBKR Gateway` to `IBKR-Gateway`). Dots are kept: `Authenticating...` stays itself.
pub fn normalise_title(title: &str) -> String {
    title
        .chars()
        .map(|c| match c {
            '-' | '_' | '\u{2010}'..='\u{2015}' => ' ',
            c => c,
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether an entry applies to frames, dialogs (transient for another window) or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Any top-level.
    Any,
    /// A top-level that is not transient for another window.
    Frame,
}

/// One catalogue row.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Title pattern.
    pub title: TitleMatch,
    /// Frame or any window.
    pub shape: Shape,
    /// The kind recognised.
    pub kind: DialogKind,
    /// True when the title alone is ambiguous and the text decides ([`refine`]).
    pub needs_text: bool,
}

const fn row(title: TitleMatch, shape: Shape, kind: DialogKind, needs_text: bool) -> Entry {
    Entry {
        title,
        shape,
        kind,
        needs_text,
    }
}

use DialogKind as K;
use TitleMatch::{Contains, Exact};

/// The catalogue, first match wins. Sources: IBC's source, users' reports
pub const CATALOGUE: &[Entry] = &[
    // Progress titles of the login frame (the same window changes its title).
    row(Exact("Authenticating..."), Shape::Any, K::Progress, false),
    row(
        Exact("Connecting to server..."),
        Shape::Any,
        K::Progress,
        false,
    ),
    row(
        Exact("Initializing environment..."),
        Shape::Any,
        K::Progress,
        false,
    ),
    row(
        Exact("Starting application..."),
        Shape::Any,
        K::Progress,
        false,
    ),
    row(Exact("Loading..."), Shape::Any, K::Progress, false),
    // Login and session dialogs.
    row(
        Contains("Second Factor Authentication"),
        Shape::Any,
        K::SecondFactor,
        true,
    ),
    row(
        Contains("Security Code Card Authentication"),
        Shape::Any,
        K::SecondFactor,
        true,
    ),
    row(
        Contains("Existing session detected"),
        Shape::Any,
        K::ExistingSession,
        false,
    ),
    row(
        Contains("Trading Login Handoff"),
        Shape::Any,
        K::LoginHandoff,
        false,
    ),
    row(
        Contains("Re-login is required"),
        Shape::Any,
        K::ReloginRequired,
        false,
    ),
    row(Contains("Login failed"), Shape::Any, K::LoginFailed, true),
    row(
        Contains("Unrecognized Username or Password"),
        Shape::Any,
        K::LoginFailed,
        false,
    ),
    row(Contains("Login Error"), Shape::Any, K::LoginError, true),
    row(
        Contains("Password Notice"),
        Shape::Any,
        K::PasswordNotice,
        true,
    ),
    row(
        Contains("Tip of the Day"),
        Shape::Any,
        K::TipOfTheDay,
        false,
    ),
    row(
        Contains("Accept incoming connection"),
        Shape::Any,
        K::AcceptIncoming,
        false,
    ),
    row(
        Contains("Newer Version"),
        Shape::Any,
        K::NewerVersion,
        false,
    ),
    row(
        Contains("Shutdown progress"),
        Shape::Any,
        K::ShutdownProgress,
        false,
    ),
    row(
        Contains("Login Messages"),
        Shape::Any,
        K::LoginMessages,
        false,
    ),
    row(
        Contains("Resume login"),
        Shape::Any,
        K::LoginMessages,
        false,
    ),
    row(
        Contains("NSE Compliance"),
        Shape::Any,
        K::NseCompliance,
        false,
    ),
    row(
        Contains("Exit Session Setting"),
        Shape::Any,
        K::ExitSessionSetting,
        false,
    ),
    row(
        Contains("Financial Advisor Warning"),
        Shape::Any,
        K::FinancialAdvisorWarning,
        false,
    ),
    row(Exact("Warning"), Shape::Any, K::Warning, true),
    // Gateway frames (login frame, then main window). Older titles too.
    row(Exact("IBKR Gateway"), Shape::Frame, K::GatewayFrame, false),
    row(Exact("IB Gateway"), Shape::Frame, K::GatewayFrame, false),
    row(
        Exact("Interactive Brokers Gateway"),
        Shape::Frame,
        K::GatewayFrame,
        false,
    ),
    row(Exact("IBKR-Gateway"), Shape::Frame, K::GatewayFrame, false),
    // A dialog titled exactly `Gateway`: connection failed, token expired, or the progress
    // modal whose OK cancels the login. Only the text tells them apart.
    row(Exact("Gateway"), Shape::Any, K::GatewayMessage, true),
    // TWS.
    row(Exact("Login"), Shape::Frame, K::TwsLoginFrame, false),
    row(Exact("New Login"), Shape::Frame, K::TwsLoginFrame, false),
    row(
        Contains("Interactive Brokers"),
        Shape::Frame,
        K::TwsMainWindow,
        false,
    ),
    row(
        Contains("Are you sure you want to exit"),
        Shape::Any,
        K::ExitConfirm,
        false,
    ),
    row(
        Contains("Bid, Ask and Last Size Display Update"),
        Shape::Any,
        K::BidAskNotice,
        false,
    ),
    row(
        Contains("API client needs write access"),
        Shape::Any,
        K::ApiWriteAccess,
        false,
    ),
];

/// Windows this small (either side, in pixels) are AWT helper stubs that share the
/// gateway's process and class (users' reports): ignored, never "unknown".
pub const STUB_MAX_SIDE: u16 = 2;

/// Classify a window by title and shape (stage 1).
pub fn classify(title: &str, is_transient: bool) -> (DialogKind, bool) {
    let title = title.trim();
    for entry in CATALOGUE {
        if entry.shape == Shape::Frame && is_transient {
            continue;
        }
        if entry.title.matches(title) {
            return (entry.kind, entry.needs_text);
        }
    }
    (DialogKind::Unknown, false)
}

/// Refine a kind with the window's text (stage 2). Text comes from OCR or AT-SPI and may be
/// noisy, so matching is case-insensitive on short, distinctive phrases.
pub fn refine(kind: DialogKind, text: &str) -> DialogKind {
    let t = text.to_lowercase();
    // Rate limiting can show up in any error dialog.
    if t.contains("too many failed login") {
        return K::TooManyAttempts;
    }
    // Whatever the title: a passkey this gateway cannot do, or an account without the API.
    // (`Required PassKey is not supported, please upgrade ...`; a narrow dialog clips it after
    // "not", so the word alone decides.)
    if t.contains("passkey") {
        return K::PasskeyUnsupported;
    }
    if t.contains("api support is not available") || t.contains("support free trading") {
        return K::ApiUnsupported;
    }
    match kind {
        K::SecondFactor => {
            if t.contains("select second factor device") || t.contains("second factor device") {
                K::DeviceChooser
            } else if t.contains("notification") || t.contains("ib key") || t.contains("approve") {
                // Checked before the code entry: the push text has no code field, and typing
                // a code plus Enter there would press its only button (Cancel).
                K::IbKeyPrompt
            } else if t.contains("authenticator") || t.contains("enter") || t.contains("code") {
                K::CodeEntry
            } else {
                K::SecondFactor
            }
        }
        K::GatewayMessage => {
            if t.contains("security token") || t.contains("expired") {
                K::TokenExpired
            } else if t.contains("connection to server failed") || t.contains("server disconnected")
            {
                K::ConnectionFailed
            } else {
                // Anything else titled `Gateway` may be the progress modal: never press it.
                K::ProgressModal
            }
        }
        K::LoginFailed => {
            // Bad credentials stop all logins, so only a text that is clearly about something
            // else (a server problem) is treated as a retryable login error; anything unclear
            // stays the safe "stop and tell a person".
            let about_credentials =
                t.contains("password") || t.contains("username") || t.contains("unrecognized");
            let about_server = t.contains("server")
                || t.contains("not currently available")
                || t.contains("try again later");
            if about_server && !about_credentials {
                K::LoginError
            } else {
                K::LoginFailed
            }
        }
        K::Warning => {
            if t.contains("not a brokerage account") || t.contains("understand and accept") {
                K::PaperWarning
            } else {
                K::Warning
            }
        }
        other => other,
    }
}

/// A number as OCR reads small digits: `5` as `S`, `0` as `O`, `1` as `l` or `I`, `8` as `B`
/// (measured: a lone "5 seconds" read as "S seconds"). Only a word of digits and such
/// letters with at least one digit, or a single such letter, counts.
fn ocr_number(word: &str) -> Option<u64> {
    if let Ok(n) = word.parse::<u64>() {
        return Some(n);
    }
    let mapped: String = word
        .chars()
        .map(|c| match c {
            's' | 'S' => '5',
            'o' | 'O' => '0',
            'l' | 'I' | 'i' | '|' => '1',
            'b' | 'B' => '8',
            'z' | 'Z' => '2',
            c => c,
        })
        .collect();
    let letters = word.chars().filter(|c| !c.is_ascii_digit()).count();
    if letters == word.chars().count() && word.chars().count() > 1 {
        return None;
    }
    mapped.parse().ok()
}

/// Parse the wait out of `Too many failed login attempts. Please wait 53 seconds ...` or
/// `... 4 minutes & 47 seconds ...` (IBC's regex). Returns seconds.
pub fn parse_lockout_wait(text: &str) -> Option<u64> {
    let t = text.to_lowercase();
    let idx = t.find("please wait")?;
    let rest = &t[idx + "please wait".len()..];
    let mut total = 0u64;
    let mut found = false;
    let mut number: Option<u64> = None;
    for word in rest.split(|c: char| c.is_whitespace() || c == '&' || c == ',') {
        if word.is_empty() {
            continue;
        }
        if let Some(n) = ocr_number(word) {
            number = Some(n);
            continue;
        }
        match (number.take(), word) {
            (Some(n), w) if w.starts_with("minute") => {
                total += n * 60;
                found = true;
            }
            (Some(n), w) if w.starts_with("second") => {
                total += n;
                found = true;
            }
            (Some(n), w) if w.starts_with("hour") => {
                total += n * 3600;
                found = true;
            }
            _ => {
                if found {
                    break;
                }
            }
        }
    }
    // A clipped or badly read dialog may end right after the seconds' number
    // (`... 2 minutes & 29`): after minutes, a bare number can only be the seconds.
    if let Some(n) = number {
        if found && n < 60 {
            total += n;
        }
    }
    found.then_some(total)
}

/// Parse the days left from a `Password Notice` (`Your password will expire in N days`).
pub fn parse_password_days(text: &str) -> Option<u64> {
    let t = text.to_lowercase();
    let idx = t.find("expire in")?;
    t[idx + "expire in".len()..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
}

/// A way of answering a dialog. The key sequences follow each dialog's button layout: the
/// default button answers Enter, and the focus starts on the first button.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Press the default button (OK, Close, Re-login, I understand and accept, ...).
    Default,
    /// Press the second button (Cancel / Exit Application): Tab from the first, then Space.
    Second,
}

impl Answer {
    /// The keys that give this answer.
    pub fn keys(self) -> Vec<KeyStep> {
        match self {
            Answer::Default => vec![KeyStep::PauseMs(100), KeyStep::Key(NamedKey::Enter)],
            Answer::Second => vec![
                KeyStep::Key(NamedKey::Tab),
                KeyStep::PauseMs(100),
                KeyStep::Key(NamedKey::Space),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_match_across_spelling_changes() {
        for (title, kind) in [
            ("IBKR-Gateway", K::GatewayFrame),
            ("ibkr gateway", K::GatewayFrame),
            ("  IBKR   Gateway ", K::GatewayFrame),
            ("Second-Factor Authentication", K::SecondFactor),
            ("Login Messages", K::LoginMessages),
            ("Resume Login", K::LoginMessages),
            ("NSE Compliance", K::NseCompliance),
            ("Exit Session Setting", K::ExitSessionSetting),
            ("Financial Advisor Warning", K::FinancialAdvisorWarning),
        ] {
            assert_eq!(classify(title, false).0, kind, "{title}");
        }
        assert_eq!(
            refine(
                K::GatewayMessage,
                "Connection to server failed: Required PassKey is not supported, please upgrade \
                 to latest version GATEWAY"
            ),
            K::PasskeyUnsupported
        );
        assert_eq!(
            refine(
                K::Warning,
                "API support is not available for accounts that support free trading."
            ),
            K::ApiUnsupported
        );
        // A plain connection failure is still one.
        assert_eq!(
            refine(
                K::GatewayMessage,
                "Connection to server failed: Server disconnected"
            ),
            K::ConnectionFailed
        );
    }

    #[test]
    fn titles_classify() {
        assert_eq!(classify("IBKR Gateway", false).0, K::GatewayFrame);
        assert_eq!(classify("IB Gateway", false).0, K::GatewayFrame);
        assert_eq!(
            classify("Interactive Brokers Gateway", false).0,
            K::GatewayFrame
        );
        // A dialog titled like the gateway is not the frame.
        assert_eq!(classify("IBKR Gateway", true).0, K::Unknown);
        assert_eq!(classify("Gateway", true), (K::GatewayMessage, true));
        assert_eq!(
            classify("Second Factor Authentication", true),
            (K::SecondFactor, true)
        );
        assert_eq!(classify("Authenticating...", false).0, K::Progress);
        assert_eq!(
            classify("Existing session detected", true).0,
            K::ExistingSession
        );
        assert_eq!(classify("Re-login is required", true).0, K::ReloginRequired);
        assert_eq!(classify("Login failed", true).0, K::LoginFailed);
        assert_eq!(classify("Warning", true), (K::Warning, true));
        assert_eq!(classify("Something new", true).0, K::Unknown);
        assert_eq!(
            classify("DU1234567 Interactive Brokers (Simulated Trading)", false).0,
            K::TwsMainWindow
        );
    }

    #[test]
    fn gateway_dialog_refines_by_text() {
        assert_eq!(
            refine(
                K::GatewayMessage,
                "Connection to server failed: Server disconnected, please try again"
            ),
            K::ConnectionFailed
        );
        assert_eq!(
            refine(K::GatewayMessage, "Your security tokens have expired"),
            K::TokenExpired
        );
        assert_eq!(
            refine(K::GatewayMessage, "Attempt 1: connecting to server"),
            K::ProgressModal
        );
        assert_eq!(
            refine(K::SecondFactor, "Select second factor device\nIB Key"),
            K::DeviceChooser
        );
        assert_eq!(
            refine(K::SecondFactor, "Enter Mobile Authenticator app code"),
            K::CodeEntry
        );
        assert_eq!(
            refine(
                K::LoginFailed,
                "Too many failed login attempts. Please wait 53 seconds"
            ),
            K::TooManyAttempts
        );
        assert_eq!(
            refine(K::LoginFailed, "Invalid username or password.\nOK"),
            K::LoginFailed
        );
        assert_eq!(refine(K::LoginFailed, "0K"), K::LoginFailed);
        assert_eq!(
            refine(K::LoginFailed, "The server is not currently available."),
            K::LoginError
        );
        assert_eq!(
            refine(
                K::SecondFactor,
                "A notification has been sent to your IB Key device. Please approve it to \
                 complete the login.\nCancel"
            ),
            K::IbKeyPrompt
        );
    }

    #[test]
    fn lockout_wait_parses_both_forms() {
        assert_eq!(
            parse_lockout_wait(
                "Too many failed login attempts. Please wait 53 seconds before attempting to re-login again."
            ),
            Some(53)
        );
        assert_eq!(
            parse_lockout_wait(
                "Too many failed login attempts. Please wait 4 minutes & 47 seconds before"
            ),
            Some(287)
        );
        assert_eq!(parse_lockout_wait("Too many failed login attempts."), None);
        // OCR of a clipped dialog (the second line cut off).
        assert_eq!(
            parse_lockout_wait("Too many failed login attempts. Please wait 2 minutes & 29\n"),
            Some(149)
        );
        assert_eq!(
            parse_lockout_wait("Too many failed login attempts. Please wait 53\n"),
            None
        );
        // OCR reads a lone small 5 as S, 0 as O.
        assert_eq!(
            parse_lockout_wait("Too many failed login attempts. Please wait S seconds\n"),
            Some(5)
        );
        assert_eq!(
            parse_lockout_wait(
                "Too many failed login attempts. Please wait 1 minutes & 3O seconds"
            ),
            Some(90)
        );
        // Words are not numbers.
        assert_eq!(
            parse_lockout_wait("Too many failed login attempts. Please wait some seconds"),
            None
        );
    }

    #[test]
    fn password_days_parse() {
        assert_eq!(
            parse_password_days("Your password will expire in 5 days. Change it."),
            Some(5)
        );
        assert_eq!(parse_password_days("Your password has expired"), None);
    }
}
