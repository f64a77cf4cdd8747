//! The mapping rules: one IBC setting at a time into ibwarden's keys (or why not).

use super::*;

impl Converter<'_> {
    #[allow(clippy::too_many_lines)]
    pub(super) fn ibc_setting(&mut self, key: &'static str, s: &Setting, tz: &SourceTz) {
        let v = s.value.trim();
        let blank = v.is_empty();
        const API_SETTING: &str = "ibwarden does not change the gateway's API settings: they \
            persist in its settings dir. Set it once in the gateway (Configure > Settings > API), \
            e.g. over x11vnc";
        const ORDER_DIALOG: &str = "order-time dialogs are not a login matter: ibwarden leaves \
            them to whoever trades (answer them over x11vnc, or change the setting in the gateway)";
        const IBC_LOGGING: &str = "IBC's in-JVM diagnostics; ibwarden logs every window it sees \
            at debug level (-v) and screenshots unknown dialogs";
        match key {
            "IbLoginId" => {
                if blank {
                    self.builtin(s, "blank (see the to-do list)");
                } else {
                    self.mapped(s, "account", "username", toml_str(v));
                }
            }
            "IbPassword" => {} // account()
            "FIX" => match ibc_bool(&s.value) {
                Some(true) => self.not_mapped(
                    s,
                    "ibwarden runs IB API sessions only; the FIX CTCI gateway login is not supported",
                ),
                _ => self.builtin(s, "IB API session (the only kind ibwarden runs)"),
            },
            "FIXLoginId" | "FIXPassword" => {
                if blank {
                    self.builtin(s, "blank");
                } else {
                    self.not_mapped(s, "FIX CTCI is not supported");
                }
            }
            "TradingMode" => match v.to_ascii_lowercase().as_str() {
                "" => self.builtin(s, "blank: live (ibwarden's default)"),
                m @ ("live" | "paper") => {
                    self.mapped(s, "gateway", "trading_mode", toml_str(m));
                }
                "both" => {
                    self.mapped_note(
                        s,
                        "gateway",
                        "trading_mode",
                        toml_str("live"),
                        Some("one account per ibwarden instance: this file is the live one".into()),
                    );
                    self.report.todo.push(
                        "TRADING_MODE=both: ibwarden runs one account per instance. Convert again \
                         with TRADING_MODE=paper and TWS_USERID/TWS_PASSWORD set to the paper \
                         account's, and run it as a second unit (e.g. ibwarden@paper)."
                            .into(),
                    );
                }
                _ => self.not_mapped(s, "not live or paper (IBC exits 1104 on it)"),
            },
            "IbDir" => {
                if blank {
                    self.builtin(
                        s,
                        "blank: the gateway settings live under ibwarden's state dir (<state dir>/jts)",
                    );
                } else {
                    self.mapped_note(
                        s,
                        "gateway",
                        "settings_dir",
                        toml_str(v),
                        Some(
                            "keeps the existing settings (API settings, autorestart token); the \
                             ibwarden user must own it, and under the systemd unit a dir outside \
                             /var/lib/ibwarden needs ReadWritePaths= in a drop-in"
                                .into(),
                        ),
                    );
                }
            }
            "StoreSettingsOnServer" if blank => self.builtin(s, "blank: left as it is"),
            "StoreSettingsOnServer" => self.not_mapped(
                s,
                "a TWS checkbox; ibwarden does not change gateway settings: set it once in TWS",
            ),
            "MinimizeMainWindow" => self.builtin(
                s,
                "the gateway runs on ibwarden's private Xvfb, where no one sees its window",
            ),
            "LoginDialogDisplayTimeout" => self.builtin(
                s,
                "ibwarden waits for the login window with its own deadline and relaunches the \
                 JVM when it passes",
            ),
            "ShowAllTrades" => self.not_mapped(s, "undocumented legacy IBC option; not carried over"),
            "SecondFactorDevice" => {
                if blank {
                    self.builtin(
                        s,
                        "blank: ibwarden picks \"Mobile Authenticator app\" and types its TOTP code",
                    );
                } else if v == crate::core::SecondFactor::AUTHENTICATOR_APP {
                    self.builtin(s, "ibwarden's default");
                } else {
                    self.mapped_note(
                        s,
                        "login",
                        "second_factor_device",
                        toml_str(v),
                        Some(
                            "a person still approves each login on the phone; with the Mobile \
                             Authenticator app (TOTP) ibwarden logs in unattended"
                                .into(),
                        ),
                    );
                }
            }
            "ReloginAfterSecondFactorAuthenticationTimeout"
            | "ExitAfterSecondFactorAuthenticationTimeout"
            | "SecondFactorAuthenticationExitInterval" => self.builtin(
                s,
                "ibwarden retries a timed-out second factor itself, within \
                 login.max_failed_logins_per_hour",
            ),
            "SecondFactorAuthenticationTimeout" => {
                if blank {
                    self.builtin(s, "blank");
                    return;
                }
                match v.parse::<u64>() {
                    Ok(n) if (10..=600).contains(&n) => {
                        self.mapped(s, "login", "ib_key_wait", toml_str(&format!("{n}s")));
                    }
                    _ => self.not_mapped(s, "not a number of seconds between 10 and 600"),
                }
            }
            "ReadOnlyLogin" => match ibc_bool(&s.value) {
                Some(true) => self.not_mapped(
                    s,
                    "read-only login (TWS only) is not supported: ibwarden always completes the \
                     second factor",
                ),
                _ => self.builtin(s, "full login (ibwarden's only mode)"),
            },
            "ExistingSessionDetectedAction" => match v.to_ascii_lowercase().as_str() {
                "" => self.mapped_note(
                    s,
                    "login",
                    "existing_session",
                    toml_str("manual"),
                    Some(
                        "blank is IBC's default, manual (ibwarden's own default is primary); \
                         manual means a person is notified and decides"
                            .into(),
                    ),
                ),
                m @ ("primary" | "primaryoverride" | "secondary" | "manual") => {
                    self.mapped(s, "login", "existing_session", toml_str(m));
                }
                _ => self.not_mapped(
                    s,
                    "not primary, primaryoverride, secondary or manual; ibwarden's default \
                     (primary) applies",
                ),
            },
            "AcceptNonBrokerageAccountWarning" => self.builtin(
                s,
                "ibwarden always accepts the paper-account warning (API connections fail until \
                 it is accepted)",
            ),
            "AutoRestartTime" => self.daily_time(s, tz, true),
            "AutoLogoffTime" => self.daily_time(s, tz, false),
            "ColdRestartTime" => {
                if blank {
                    self.builtin(
                        s,
                        "blank: ibwarden's weekly cold restart (Sun 01:30 America/New_York) applies",
                    );
                    return;
                }
                match units::parse_time_of_day(v) {
                    Ok(t) => {
                        let w = WeekdayTime {
                            weekday: Weekday::Sunday,
                            time: t,
                        };
                        self.weekly(s, tz, "weekly_cold_restart", w);
                    }
                    Err(e) => self.not_mapped(s, format!("{e} (IBC exits 1105 on it)")),
                }
            }
            "ClosedownAt" => {
                if blank {
                    self.builtin(s, "blank: no closedown");
                    return;
                }
                if units::parse_time_of_day(v).is_ok() {
                    self.not_mapped(
                        s,
                        "a daily closedown: ibwarden's closedown is weekly; use a systemd timer \
                         running `systemctl stop ibwarden@NAME` instead",
                    );
                    return;
                }
                match units::parse_weekday_time(v) {
                    Ok(w) => self.weekly(s, tz, "closedown", w),
                    Err(e) => self.not_mapped(
                        s,
                        format!("{e}; only English day names are understood"),
                    ),
                }
            }
            "SaveTwsSettingsAt" if blank => self.builtin(s, "blank"),
            "SaveTwsSettingsAt" => self.not_mapped(
                s,
                "ibwarden does not drive the gateway's menus; the gateway saves its settings when \
                 it exits cleanly (ibwarden always stops it cleanly)",
            ),
            "OverrideTwsApiPort" => match v.parse::<u32>() {
                _ if blank => self.builtin(s, "blank: the gateway's default port"),
                Ok(0) => self.builtin(s, "0: the gateway's default port"),
                Ok(p) if p <= 65535 => {
                    self.mapped_note(
                        s,
                        "gateway",
                        "api_port",
                        p.to_string(),
                        Some(
                            "the port the probe connects to; it must match the gateway's API \
                             Socket port setting (kept in its settings dir)"
                                .into(),
                        ),
                    );
                }
                _ => self.not_mapped(s, "not a port number"),
            },
            "OverrideTwsMasterClientID" | "ReadOnlyApi" | "SendMarketDataInLotsForUSstocks"
            | "ResetOrderIdsAtStart"
            | "BypassOrderPrecautions"
            | "BypassBondWarning"
            | "BypassNegativeYieldToWorstConfirmation"
            | "BypassCalledBondWarning"
            | "BypassSameActionPairTradeWarning"
            | "BypassPriceBasedVolatilityRiskWarning"
            | "BypassUSStocksMarketDataInSharesWarning"
            | "BypassRedirectOrderWarning"
            | "BypassNoOverfillProtectionPrecaution" => {
                if blank || (key == "ResetOrderIdsAtStart" && ibc_bool(&s.value) == Some(false)) {
                    self.builtin(s, "blank: the gateway's setting is left as it is");
                } else {
                    self.not_mapped(s, API_SETTING);
                }
            }
            "TrustedTwsApiClientIPs" if blank => self.builtin(s, "blank"),
            "TrustedTwsApiClientIPs" => self.not_mapped(
                s,
                "add the addresses to TrustedIPs in the [IBGateway] section of jts.ini in the \
                 gateway's settings dir",
            ),
            "AcceptIncomingConnectionAction" => match v.to_ascii_lowercase().as_str() {
                "" | "manual" => self.builtin(
                    s,
                    "ibwarden leaves the incoming-connection prompt to a person, as IBC's manual",
                ),
                _ => self.not_mapped(
                    s,
                    "ibwarden never accepts or rejects API clients for you; list trusted client \
                     addresses in jts.ini TrustedIPs so the gateway does not ask",
                ),
            },
            "AcceptBidAskLastSizeDisplayUpdateNotification" | "ConfirmOrderIdReset" => {
                if blank {
                    self.builtin(s, "blank");
                } else {
                    self.not_mapped(
                        s,
                        "ibwarden does not answer this dialog (it screenshots and reports \
                         unknown dialogs); answer it once over x11vnc",
                    );
                }
            }
            "AllowBlindTrading" | "ConfirmCryptoCurrencyOrders" => {
                let off = blank
                    || ibc_bool(&s.value) == Some(false)
                    || v.eq_ignore_ascii_case("manual");
                if off {
                    self.builtin(s, "left to a person, as IBC's default");
                } else {
                    self.not_mapped(s, ORDER_DIALOG);
                }
            }
            "DismissPasswordExpiryWarning" => self.builtin(
                s,
                "ibwarden dismisses the password notice and notifies a person (password expiring)",
            ),
            "DismissNSEComplianceNotice" => self.not_mapped(
                s,
                "the Indian TWS NSE compliance notice is not in ibwarden's dialog catalogue; if it \
                 appears it is reported as an unknown dialog",
            ),
            "CommandServerPort" => match v.parse::<u32>() {
                _ if blank => self.builtin(s, "blank: no command server"),
                Ok(0) => self.builtin(s, "0: no command server"),
                Ok(p) if p == u32::from(self.api_port) => self.not_mapped(
                    s,
                    format!("the gateway's API port is {p} too; pick another port"),
                ),
                Ok(p) if p <= 65535 => {
                    self.token_needed = true;
                    let file = self.opts.token_file.clone();
                    self.toml
                        .set("control", "ibc_command_auth_file", toml_str(&file), &s.origin);
                    self.mapped_note(
                        s,
                        "control",
                        "ibc_command_port",
                        p.to_string(),
                        Some(format!(
                            "ibwarden's IBC-compatible command server listens on 127.0.0.1 only \
                             and requires a token (IBC had none): scripts must send `AUTH \
                             <token>` first, the token being in {file}; \
                             `ibwarden status|restart|stop` use the control socket"
                        )),
                    )
                }
                _ => self.not_mapped(s, "not a port number"),
            },
            "BindAddress" => {
                if blank || v == "127.0.0.1" || v == "localhost" {
                    self.builtin(s, "ibwarden's command server binds 127.0.0.1");
                } else {
                    self.not_mapped(
                        s,
                        "ibwarden's command server listens on 127.0.0.1 only; reach it over ssh",
                    );
                }
            }
            "ControlFrom" if blank => self.builtin(s, "blank: loopback only, as ibwarden"),
            "ControlFrom" => self.not_mapped(
                s,
                "ibwarden's command server accepts loopback clients only; use an ssh tunnel and \
                 control.ibc_command_auth_file",
            ),
            "CommandPrompt" if blank => self.builtin(s, "blank"),
            "CommandPrompt" => self.not_mapped(s, "ibwarden's command server sends no prompt"),
            "SuppressInfoMessages" => self.builtin(s, "the command server's replies are fixed"),
            "LogStructureScope" | "LogStructureWhen" | "LogComponents"
            | "IncludeStackTraceForExceptions" => self.builtin(s, IBC_LOGGING),
            _ => self.not_mapped(s, "no ibwarden equivalent"),
        }
    }

    /// `AutoRestartTime` (restart) or `AutoLogoffTime` (logoff): `hh:mm AM/PM`.
    pub(super) fn daily_time(&mut self, s: &Setting, tz: &SourceTz, restart: bool) {
        let v = s.value.trim();
        if v.is_empty() {
            self.builtin(
                s,
                "blank: the time set in the gateway (Lock and Exit) or IBKR's nightly restart \
                 applies",
            );
            return;
        }
        if !restart {
            self.not_mapped(
                s,
                "a daily logoff without restart: ibwarden keeps the gateway up; stop it with a \
                 systemd timer (`systemctl stop ibwarden@NAME`) or use schedule.closedown (weekly)",
            );
            return;
        }
        let Some(t) = parse_ampm(v) else {
            self.not_mapped(s, "not a time like \"11:59 PM\"");
            return;
        };
        let (t, note) = match tz {
            SourceTz::Known(name, zone) => match to_schedule_tz(self.opts.today, t, zone) {
                Some(ny) => (
                    ny.time(),
                    Some(format!(
                        "converted from {name} at today's offset; re-check after a daylight-saving \
                         change that only one of the two zones makes"
                    )),
                ),
                None => (t, None),
            },
            SourceTz::Unknown => (
                t,
                Some(format!(
                    "IBC used the machine's local time zone; assumed {SCHEDULE_TZ} (set TIME_ZONE \
                     in the env file to convert)"
                )),
            ),
        };
        let text = format!("{:02}:{:02}", t.hour(), t.minute());
        self.mapped_note(s, "schedule", "daily_restart", toml_str(&text), note);
    }

    pub(super) fn weekly(&mut self, s: &Setting, tz: &SourceTz, key: &str, w: WeekdayTime) {
        let (w, note) = match tz {
            SourceTz::Known(name, zone) => {
                // The next such weekday from today, converted.
                let date = next_weekday(self.opts.today, w.weekday);
                match to_schedule_tz(date, w.time, zone) {
                    Some(ny) => (
                        WeekdayTime {
                            weekday: ny.weekday(),
                            time: ny.time(),
                        },
                        Some(format!(
                            "converted from {name} at this week's offset; re-check after a \
                             daylight-saving change that only one of the two zones makes"
                        )),
                    ),
                    None => (w, None),
                }
            }
            SourceTz::Unknown => (
                w,
                Some(format!(
                    "IBC used the machine's local time zone; assumed {SCHEDULE_TZ} (set TIME_ZONE \
                     in the env file to convert)"
                )),
            ),
        };
        self.mapped_note(s, "schedule", key, toml_str(&w.to_string()), note);
    }
}
