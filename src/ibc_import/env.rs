//! The Docker images' variables, the account and its secrets, and time-zone helpers.

use super::*;

impl Converter<'_> {
    /// Docker-image variables that are not IBC settings.
    pub(super) fn env_settings(&mut self, program: &str) {
        let vars: Vec<Setting> = self.env_only.clone();
        for s in vars {
            let v = s.value.trim().to_string();
            let name = s.origin.name.as_str();
            let elsewhere = ["TWS_PASSWORD_FILE", "TIME_ZONE", "TZ", "GATEWAY_OR_TWS"];
            if v.is_empty() && !elsewhere.contains(&name) {
                let why = if !is_known_env(name) {
                    Outcome::Unknown {
                        hint: Some("blank, and not a variable of the common IBC images".into()),
                    }
                } else {
                    Outcome::Builtin {
                        why: "blank: nothing to carry over".into(),
                    }
                };
                self.set_outcome(&s, why);
                continue;
            }
            match name {
                "TWS_PASSWORD_FILE" | "TIME_ZONE" | "TZ" | "GATEWAY_OR_TWS" => {} // elsewhere
                "TWS_USERID_PAPER" | "TWS_PASSWORD_PAPER" | "TWS_PASSWORD_PAPER_FILE" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank");
                    } else {
                        self.not_mapped(
                            &s,
                            "the paper account of TRADING_MODE=both: convert again for a second \
                             instance (one account per ibwarden instance)",
                        );
                    }
                }
                "TWOFA_TIMEOUT_ACTION" => self.builtin(
                    &s,
                    "ibwarden retries a timed-out second factor itself (no script restart needed)",
                ),
                "JAVA_HEAP_SIZE" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank: the heap from the install's .vmoptions");
                    } else {
                        match v.trim_end_matches(['m', 'M']).parse::<u32>() {
                            Ok(mb) if mb >= 256 => self.mapped(
                                &s,
                                "gateway",
                                "jvm_args",
                                format!("[{}]", toml_str(&format!("-Xmx{mb}m"))),
                            ),
                            _ => self.not_mapped(&s, "not a heap size in MB (at least 256)"),
                        }
                    }
                }
                "TWS_PATH" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank: the install is found automatically");
                    } else {
                        let dir = if program == "tws" {
                            v.clone()
                        } else {
                            format!("{}/ibgateway", v.trim_end_matches('/'))
                        };
                        self.mapped_note(
                            &s,
                            "gateway",
                            "install_dir",
                            toml_str(&dir),
                            Some("the newest version directory under it is used".into()),
                        );
                    }
                }
                "JAVA_PATH" => {
                    if v.is_empty() {
                        self.builtin(&s, "blank: the install's bundled JRE, else java on PATH");
                    } else {
                        let java = format!("{}/java", v.trim_end_matches('/'));
                        self.mapped(&s, "gateway", "java", toml_str(&java));
                    }
                }
                "HEALTHCHECK_CLIENT_ID" => match v.parse::<i32>() {
                    Ok(id) if id >= 0 => self.mapped(&s, "probe", "client_id", id.to_string()),
                    _ if v.is_empty() => self.builtin(&s, "blank: client id 999"),
                    _ => self.not_mapped(&s, "not a client id"),
                },
                "HEALTHCHECK_API_ENABLE" => self.not_mapped(
                    &s,
                    "ibwarden's HTTP health endpoint is [health] listen (e.g. \"127.0.0.1:9187\"); \
                     it answers /readyz only after a passing API handshake",
                ),
                "CUSTOM_CONFIG" if v.is_empty() => self.builtin(&s, "blank"),
                "CUSTOM_CONFIG" => self.not_mapped(
                    &s,
                    "a custom config.ini: convert it too (`ibwarden import-ibc THAT_FILE --env-file ...`)",
                ),
                "TWS_MAJOR_VRSN" => {
                    self.builtin(&s, "ibwarden runs the newest installed version (or install_dir)")
                }
                "IBC_INI" | "IBC_PATH" => {
                    self.builtin(&s, "IBC itself is not needed any more")
                }
                "LOG_PATH" => self.builtin(
                    &s,
                    "ibwarden logs to journald under systemd (--log-format), the gateway to its \
                     settings dir",
                ),
                "HIDE" => self.builtin(&s, "no xterm: ibwarden runs headless"),
                "VNC_SERVER_PASSWORD" | "VNC_SERVER_PASSWORD_FILE" | "PASSWD" | "PASSWD_FILE"
                | "PUID" | "PGID" => self.not_mapped(
                    &s,
                    "remote desktop of the image: ibwarden has none built in; for a human \
                     takeover run x11vnc on ibwarden's Xvfb display (over ssh, not exposed)",
                ),
                "START_SCRIPTS" | "X_SCRIPTS" | "IBC_SCRIPTS" => self.not_mapped(
                    &s,
                    "start hooks of the image: use ExecStartPre= in a systemd drop-in, and \
                     [notify] command for events",
                ),
                n if n.starts_with("SSH_") => self.not_mapped(
                    &s,
                    "the image's ssh tunnel: run autossh or a systemd unit of its own",
                ),
                n if n.starts_with("IBC_") => {
                    let k = &n[4..];
                    let hint = IBC_KEYS
                        .iter()
                        .find(|known| known.eq_ignore_ascii_case(k))
                        .map(|known| format!("did you mean IBC_{known}? (IBC keys are case-sensitive)"))
                        .unwrap_or_else(|| "IBC_<Key> with a Key IBC does not have".into());
                    self.set_outcome(&s, Outcome::Unknown { hint: Some(hint) });
                }
                _ => {} // stays Unknown
            }
        }
    }

    /// The `[account]` key and value that say where a secret (`password` or `totp`) is.
    pub(super) fn secret_ref(&self, which: &str) -> (&'static str, String) {
        match (which, self.opts.credentials) {
            ("password", true) => ("password_credential", toml_str("password")),
            ("password", false) => ("password_file", toml_str(&self.opts.password_file)),
            (_, true) => ("totp_credential", toml_str("totp")),
            (_, false) => ("totp_file", toml_str(&self.opts.totp_file)),
        }
    }

    /// How a person stores a secret where the config expects it.
    pub(super) fn store_hint(&self, which: &str, prompt: &str, file: &str) -> String {
        if self.opts.credentials {
            format!(
                "`(umask 077; systemd-ask-password -n \"{prompt}:\" > {file})` (read by \
                 systemd as the credential {which}; chmod 600, root only)"
            )
        } else {
            format!("`ibwarden secret set {which} --config THIS_FILE` (writes {file}, chmod 600)")
        }
    }

    /// `[account]`: username placeholder, password reference, activation code.
    pub(super) fn account(&mut self, needs_totp: bool) {
        let user = self
            .get("IbLoginId")
            .map(|s| s.value.trim().to_string())
            .unwrap_or_default();
        if user.is_empty() {
            let none = Origin {
                file: "(none)".into(),
                line: 0,
                name: "IbLoginId".into(),
            };
            self.toml.set(
                "account",
                "username",
                toml_str("CHANGE-ME"),
                &Origin {
                    name: "nothing: no IbLoginId / TWS_USERID was set".into(),
                    ..none
                },
            );
            self.report.todo.push(
                "No username (IbLoginId / TWS_USERID) was set: replace CHANGE-ME with the IBKR \
                 username in [account] username."
                    .into(),
            );
        }

        let file_var = self
            .env("TWS_PASSWORD_FILE")
            .filter(|s| !s.value.trim().is_empty());
        let password = self.get("IbPassword").cloned();
        if let Some(f) = &file_var {
            let path = f.value.trim().to_string();
            self.mapped_note(
                f,
                "account",
                "password_file",
                toml_str(&path),
                Some(
                    "the file must exist on this machine, owned by the ibwarden user, chmod 600 \
                     (group- or world-readable files are refused)"
                        .into(),
                ),
            );
            if let Some(p) = &password {
                self.not_mapped(
                    p,
                    "TWS_PASSWORD_FILE is used instead; the value was not copied anywhere",
                );
            }
        } else if let Some(p) = password.clone().filter(|p| !p.value.is_empty()) {
            // IBC's getString trims; keep the exact value IBC would have typed.
            self.password = Some(Secret::new(p.value.trim().to_string()));
            let file = self.opts.password_file.clone();
            let (key, value) = self.secret_ref("password");
            let to = format!(
                "account.{key} = {value} (the password goes to the chmod 600 file {file}, never \
                 into the TOML)"
            );
            self.toml.set("account", key, value, &p.origin);
            let note = if self.opts.credentials {
                "for no clear text on disk at all, encrypt it: systemd-creds (see the comments \
                 in ibwarden@.service)"
            } else {
                "under systemd, prefer a credential: password_credential with \
                 LoadCredentialEncrypted= (see the comments in ibwarden@.service)"
            };
            self.set_outcome(
                &p,
                Outcome::Mapped {
                    to,
                    note: Some(note.into()),
                },
            );
            self.report.todo.push(format!(
                "Once ibwarden logs in with the password in {file}, delete the clear-text \
                 password from the IBC files (config.ini / env file)."
            ));
        } else {
            if let Some(p) = &password {
                self.builtin(p, "blank (see the to-do list)");
            }
            let file = self.opts.password_file.clone();
            let (key, value) = self.secret_ref("password");
            self.toml.set(
                "account",
                key,
                value,
                &Origin {
                    file: String::new(),
                    line: 0,
                    name: "nothing: no password was set".into(),
                },
            );
            let how = self.store_hint("password", "IBKR password", &file);
            self.report
                .todo
                .push(format!("No password was set: store it with {how}."));
        }

        if needs_totp {
            let file = self.opts.totp_file.clone();
            let (key, value) = self.secret_ref("totp");
            let how = self.store_hint("totp", "Activation code", &file);
            self.toml.set(
                "account",
                key,
                value,
                &Origin {
                    file: String::new(),
                    line: 0,
                    name: "ibwarden: live logins type the Mobile Authenticator code".into(),
                },
            );
            self.report.todo.push(format!(
                "IBC never had the second factor's secret. Enrol IBKR's Mobile Authenticator app \
                 (Client Portal > Settings > Secure Login System), keep the activation code shown \
                 under the QR code, and store it with {how}. Check with `ibwarden totp` \
                 against the app."
            ));
        }
    }
}

/// The zone IBC's local times are in.
pub(super) enum SourceTz {
    Known(String, TimeZone),
    Unknown,
}

/// `hh:mm AM/PM` (IBC) or `hh:mm` (24-hour).
pub(super) fn parse_ampm(v: &str) -> Option<Time> {
    let mut parts = v.split_whitespace();
    let hm = parts.next()?;
    let suffix = parts.next().map(|s| s.to_ascii_uppercase());
    if parts.next().is_some() {
        return None;
    }
    let t = units::parse_time_of_day(hm).ok()?;
    let hour = match suffix.as_deref() {
        None => t.hour(),
        Some(ap @ ("AM" | "PM")) => {
            if !(1..=12).contains(&t.hour()) {
                return None;
            }
            let h = t.hour() % 12;
            if ap == "PM" {
                h + 12
            } else {
                h
            }
        }
        Some(_) => return None,
    };
    Time::new(hour, t.minute(), 0, 0).ok()
}

/// The first `weekday` on or after `from`.
pub(super) fn next_weekday(from: Date, weekday: Weekday) -> Date {
    let mut d = from;
    for _ in 0..7 {
        if d.weekday() == weekday {
            return d;
        }
        d = d.tomorrow().unwrap_or(d);
    }
    d
}

/// `date time` in `zone`, as civil time in the schedule zone.
pub(super) fn to_schedule_tz(
    date: Date,
    time: Time,
    zone: &TimeZone,
) -> Option<jiff::civil::DateTime> {
    let target = TimeZone::get(SCHEDULE_TZ).ok()?;
    let zoned = date.to_datetime(time).to_zoned(zone.clone()).ok()?;
    Some(zoned.with_time_zone(target).datetime())
}
