//! The IBC settings table of `docs/ibc-settings.md`: every key of [`IBC_KEYS`] converted on
//! its own, with an example value, by [`convert`] itself. The table is the rules' output, so
//! it cannot drift from what `ibwarden import-ibc` does (a test compares the committed file).

use super::*;

/// An example value for an IBC key: one that shows what the rule does with a set value.
fn example(key: &str) -> &'static str {
    match key {
        "FIX" => "no",
        "IbLoginId" | "FIXLoginId" => "jdoe",
        "IbPassword" | "FIXPassword" => "(a password)",
        "TradingMode" => "paper",
        "IbDir" => "/opt/ibgateway",
        "AutoRestartTime" | "AutoLogoffTime" => "11:45 PM",
        "ColdRestartTime" => "07:05",
        "ClosedownAt" => "Friday 22:00",
        "SaveTwsSettingsAt" => "Every 1 hour",
        "ExistingSessionDetectedAction" => "primary",
        "SecondFactorDevice" => "Mobile Authenticator app",
        "OverrideTwsApiPort" => "4002",
        "OverrideTwsMasterClientID" => "1",
        "TrustedTwsApiClientIPs" | "ControlFrom" | "BindAddress" => "127.0.0.1",
        "CommandServerPort" => "7462",
        "CommandPrompt" => "ibc>",
        "LoginDialogDisplayTimeout" | "SecondFactorAuthenticationExitInterval" => "60",
        "SecondFactorAuthenticationTimeout" => "180",
        "AcceptIncomingConnectionAction" => "accept",
        "LogStructureScope" => "known",
        "LogStructureWhen" | "LogComponents" => "never",
        _ => "yes",
    }
}

/// One line of a table cell: `|` escaped, newlines folded.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The markdown table: IBC key, example value, what `import-ibc` does with it.
pub fn settings_table() -> String {
    let opts = Options {
        password_file: "NAME.password".into(),
        totp_file: "NAME.totp".into(),
        token_file: "NAME.ibc-token".into(),
        credentials: false,
        // A fixed winter date: IBC's local times convert at a known UTC offset.
        today: Date::constant(2026, 1, 15),
        ini_name: "config.ini".into(),
        env_name: ".env".into(),
    };
    let mut out = String::from(
        "| IBC setting | example | what `ibwarden import-ibc` does |\n|---|---|---|\n",
    );
    for key in IBC_KEYS {
        let value = example(key);
        let ini = format!("{key}={value}\n");
        let what = match convert(Some(&ini), &[], &opts) {
            Ok(c) => match c.report.entry(key).map(|e| &e.outcome) {
                Some(Outcome::Mapped { to, note }) => match note {
                    Some(n) => format!("`{to}` ({n})"),
                    None => format!("`{to}`"),
                },
                Some(Outcome::Builtin { why }) => format!("nothing to write: {why}"),
                Some(Outcome::NotMapped { why }) => format!("not carried over: {why}"),
                Some(Outcome::Unknown { .. }) => "unknown to the converter".into(),
                Some(Outcome::Overridden { by }) => format!("overridden by {by}"),
                None => "not reported".into(),
            },
            Err(e) => format!("refused: {e}"),
        };
        let shown = if is_secret_name(key) {
            "(secret)"
        } else {
            value
        };
        out.push_str(&format!(
            "| `{key}` | `{}` | {} |\n",
            cell(shown),
            cell(&what)
        ));
    }
    out
}
