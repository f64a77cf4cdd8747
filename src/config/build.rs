//! Turns the values [`reader`](super::reader) read into the typed sections, with the
//! defaults and ranges of the key table ([`super::keys`]), and checks what involves several
//! keys.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use toml::de::DeTable;
use toml::Spanned;

use super::reader::{self, Ctx, Section};
use super::*;
use crate::secret::SecretSource;

/// The table's entry for a key the builder reads (every such key is in the table: the
/// tests read each one).
fn key_def(sec: &Section<'_, '_>, key: &str) -> &'static keys::Key {
    keys::get(sec.name, key).unwrap_or_else(|| panic!("{}.{key} is not in the key table", sec.name))
}

/// A duration key, with the default and range from the key table.
fn dur_key(ctx: &mut Ctx<'_>, sec: &Section<'_, '_>, key: &str) -> Duration {
    let def = key_def(sec, key);
    let keys::Kind::Dur { min_ms, max_ms } = def.kind else {
        panic!("{} is not a duration in the key table", def.dotted());
    };
    let default = def
        .default
        .and_then(|d| units::parse_duration(d.trim_matches('"')).ok())
        .unwrap_or(Duration::ZERO);
    dur_in(
        ctx,
        sec,
        key,
        default,
        Duration::from_millis(min_ms),
        Duration::from_millis(max_ms),
    )
}

/// An integer key within the table's range; `None` when absent (or invalid, reported).
fn int_key(ctx: &mut Ctx<'_>, sec: &Section<'_, '_>, key: &str) -> Option<i64> {
    let def = key_def(sec, key);
    let keys::Kind::Int { min, max } = def.kind else {
        panic!("{} is not an integer in the key table", def.dotted());
    };
    ctx.integer(sec, key, min, max)
}

/// An integer key, or the table's default.
fn int_key_or_default(ctx: &mut Ctx<'_>, sec: &Section<'_, '_>, key: &str) -> i64 {
    let default = key_def(sec, key)
        .default
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    int_key(ctx, sec, key).unwrap_or(default)
}

/// How a time of day is described in type errors.
const TIME: &str = "a time like \"23:45\"";

fn dur(s: &str) -> Result<Duration, String> {
    units::parse_duration(s)
}

/// Checks a duration is within `min..=max` and reports it at the key otherwise.
fn dur_in(
    ctx: &mut Ctx<'_>,
    sec: &Section<'_, '_>,
    key: &str,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    let Some(d) = ctx.parsed(sec, key, "a duration like \"8s\" or \"5m\"", dur) else {
        return default;
    };
    if d < min || d > max {
        ctx.error(
            sec.span_of(key),
            Some(sec.key(key)),
            format!(
                "must be between {} and {}",
                units::format_duration(min),
                units::format_duration(max)
            ),
        );
        return default;
    }
    d
}

/// Reads one secret source from `<prefix>_file`, `<prefix>_credential` or `<prefix>_env`
/// (at most one). Never looks at or prints a value.
fn secret_source(ctx: &mut Ctx<'_>, sec: &Section<'_, '_>, prefix: &str) -> Option<SecretSource> {
    let file_key = format!("{prefix}_file");
    let cred_key = format!("{prefix}_credential");
    let env_key = format!("{prefix}_env");
    let present: Vec<&String> = [&file_key, &cred_key, &env_key]
        .into_iter()
        .filter(|k| sec.has(k))
        .collect();
    if present.len() > 1 {
        let names: Vec<&str> = present.iter().map(|s| s.as_str()).collect();
        ctx.error(
            sec.span_of(present[1]),
            Some(sec.key(present[1])),
            format!("set only one of {}", names.join(", ")),
        );
        return None;
    }
    if sec.has(&file_key) {
        return ctx
            .path(sec, &file_key)
            .map(|p| SecretSource::File(p.into_inner()));
    }
    if sec.has(&cred_key) {
        let name = ctx.string(sec, &cred_key)?;
        let valid = !name.get_ref().is_empty()
            && !name.get_ref().contains('/')
            && name.get_ref() != "."
            && name.get_ref() != "..";
        if !valid {
            ctx.error(
                name.span(),
                Some(sec.key(&cred_key)),
                "a credential name must be a plain file name (as in LoadCredential=NAME:...)"
                    .into(),
            );
            return None;
        }
        return Some(SecretSource::Credential(name.into_inner()));
    }
    if sec.has(&env_key) {
        let var = ctx.string(sec, &env_key)?;
        let v = var.get_ref();
        let valid = v
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            // Do not echo: a person may have pasted the secret itself here by mistake.
            ctx.error(
                var.span(),
                Some(sec.key(&env_key)),
                "must be the NAME of an environment variable (letters, digits, _), not the secret \
                 itself"
                    .into(),
            );
            return None;
        }
        ctx.warn(
            var.span(),
            Some(sec.key(&env_key)),
            "secret read from an environment variable: the weakest option (visible in \
             /proc/PID/environ, inherited by children); prefer a *_credential or *_file"
                .into(),
        );
        return Some(SecretSource::Env(var.into_inner()));
    }
    None
}

/// Builds the typed config; returns `None` if a required value is missing or invalid (the
/// problem is recorded in `ctx`).
pub(super) fn build(
    ctx: &mut Ctx<'_>,
    root: &DeTable<'_>,
    path: &Path,
    env: &Env,
) -> Option<Config> {
    ctx.check_top_level(root);
    let g = ctx.section(root, "gateway");
    let a = ctx.section(root, "account");
    let l = ctx.section(root, "login");
    let s = ctx.section(root, "schedule");
    let d = ctx.section(root, "display");
    let p = ctx.section(root, "probe");
    let st = ctx.section(root, "state");
    let c = ctx.section(root, "control");
    let h = ctx.section(root, "health");
    let r = ctx.section(root, "relay");
    let n = ctx.section(root, "notify");

    // [state] first: other defaults live under it.
    let state_dir = match ctx.path(&st, "dir") {
        Some(p) => Some(p.into_inner()),
        None if st.has("dir") => None,
        None => {
            let d = env.default_state_dir();
            if d.is_none() {
                ctx.missing(
                    &st,
                    "dir",
                    " and cannot be derived ($STATE_DIRECTORY, $XDG_STATE_HOME and $HOME are unset)",
                );
            }
            d
        }
    };

    // [gateway]
    // `clientportal` is not a desktop program: no display, no windows (src/clientportal).
    let (program, client_portal) = ctx
        .choice(
            &g,
            "program",
            &[
                ("gateway", (Program::Gateway, false)),
                ("tws", (Program::Tws, false)),
                ("clientportal", (Program::Gateway, true)),
            ],
        )
        .unwrap_or((Program::Gateway, false));
    let trading_mode_read = ctx.choice(
        &g,
        "trading_mode",
        &[("live", TradingMode::Live), ("paper", TradingMode::Paper)],
    );
    // An invalid mode was reported; do not add errors that only follow from guessing it.
    let trading_mode_known = trading_mode_read.is_some() || !g.has("trading_mode");
    let trading_mode = trading_mode_read.unwrap_or(TradingMode::Live);
    let install_dir = ctx.path(&g, "install_dir").map(Spanned::into_inner);
    let settings_dir = ctx
        .path(&g, "settings_dir")
        .map(Spanned::into_inner)
        .or_else(|| state_dir.as_ref().map(|d| d.join("jts")));
    let api_port = int_key(ctx, &g, "api_port")
        .map(|n| n as u16)
        .unwrap_or_else(|| default_api_port(program, trading_mode));
    let java = match ctx.string(&g, "java") {
        Some(j) if j.get_ref() == "auto" => Java::Auto,
        Some(j) => match reader::resolve_path(j.get_ref(), &ctx.base_dir, ctx.home.as_deref()) {
            Ok(p) if !j.get_ref().is_empty() => Java::Path(p),
            Ok(_) => {
                ctx.error(
                    j.span(),
                    Some(g.key("java")),
                    "use \"auto\" or a path".into(),
                );
                Java::Auto
            }
            Err(msg) => {
                ctx.error(j.span(), Some(g.key("java")), msg);
                Java::Auto
            }
        },
        None => Java::Auto,
    };
    let jvm_args = ctx.string_list(&g, "jvm_args").unwrap_or_default();
    for (i, arg) in jvm_args.iter().enumerate() {
        // The gateway's own class path and main class are set by ibwarden; a user-supplied
        // one would silently break the launch.
        if arg == "-cp" || arg == "-classpath" || arg == "-jar" {
            ctx.error(
                g.span_of("jvm_args"),
                Some(g.key("jvm_args")),
                format!(
                    "argument {} ({arg}) is set by ibwarden and cannot be overridden",
                    i + 1
                ),
            );
        }
    }

    let stop_grace = dur_key(ctx, &g, "stop_grace");

    // [account]
    let username = match ctx.string(&a, "username") {
        Some(u) if u.get_ref().trim().is_empty() => {
            ctx.error(u.span(), Some(a.key("username")), "is empty".into());
            None
        }
        Some(u) => Some(u.into_inner()),
        None => {
            if !a.has("username") {
                ctx.missing(&a, "username", "");
            }
            None
        }
    };
    let password = secret_source(ctx, &a, "password");
    if password.is_none()
        && !(a.has("password_file") || a.has("password_credential") || a.has("password_env"))
    {
        ctx.missing(
            &a,
            "password_file",
            " (set one of password_file, password_credential, password_env)",
        );
    }
    let totp = secret_source(ctx, &a, "totp");

    // [login]
    let second_factor = ctx
        .string(&l, "second_factor_device")
        .map(|s| SecondFactor::from_label(s.get_ref()))
        .unwrap_or(SecondFactor::AuthenticatorApp);
    let login = LoginConfig {
        existing_session: ctx
            .choice(
                &l,
                "existing_session",
                &[
                    ("primary", SessionPolicy::Primary),
                    ("primaryoverride", SessionPolicy::PrimaryOverride),
                    ("secondary", SessionPolicy::Secondary),
                    ("manual", SessionPolicy::Manual),
                ],
            )
            .unwrap_or(SessionPolicy::Primary),
        verify_form: ctx
            .choice(
                &l,
                "verify_form",
                &[
                    ("auto", VerifyForm::Auto),
                    ("required", VerifyForm::Required),
                    ("off", VerifyForm::Off),
                ],
            )
            .unwrap_or(VerifyForm::Auto),
        max_failed_logins_per_hour: (int_key_or_default(ctx, &l, "max_failed_logins_per_hour")
            as u32),
        min_code_validity: dur_key(ctx, &l, "min_code_validity"),
        max_code_rejections: (int_key_or_default(ctx, &l, "max_code_rejections") as u32),
        ib_key_wait: dur_key(ctx, &l, "ib_key_wait"),
        relogin_backoff: dur_key(ctx, &l, "relogin_backoff"),
        login_timeout: dur_key(ctx, &l, "login_timeout"),
        content_reader: ctx
            .choice(
                &l,
                "content_reader",
                &[
                    ("auto", ContentReader::Auto),
                    ("ocr", ContentReader::Ocr),
                    ("atspi", ContentReader::Atspi),
                    ("none", ContentReader::None),
                ],
            )
            .unwrap_or(ContentReader::Auto),
        second_factor,
    };
    if trading_mode_known
        && trading_mode == TradingMode::Live
        && login.uses_authenticator_app()
        && totp.is_none()
    {
        let has_any = a.has("totp_file") || a.has("totp_credential") || a.has("totp_env");
        if !has_any {
            ctx.missing(
                &a,
                "totp_file",
                " (live mode with the Mobile Authenticator app needs the activation code: set \
                 one of totp_file, totp_credential, totp_env; or trading_mode = \"paper\")",
            );
        }
    }

    // [schedule]
    let timezone_name = ctx
        .string(&s, "timezone")
        .map(Spanned::into_inner)
        .unwrap_or_else(|| "America/New_York".to_string());
    let timezone = match TimeZone::get(&timezone_name) {
        Ok(tz) => {
            if is_fixed_offset_name(&timezone_name) {
                ctx.warn(
                    s.span_of("timezone"),
                    Some(s.key("timezone")),
                    format!(
                        "{timezone_name:?} is a fixed UTC offset without daylight saving time, \
                         so for half the year the schedule is an hour off the clocks of any \
                         place; use the city's name, e.g. \"America/New_York\""
                    ),
                );
            }
            Some(tz)
        }
        Err(_) => {
            ctx.error(
                s.span_of("timezone"),
                Some(s.key("timezone")),
                format!(
                    "unknown time zone {timezone_name:?}; use an IANA name like \
                     \"America/New_York\" or \"Europe/London\""
                ),
            );
            None
        }
    };
    let optional_weekday_time =
        |ctx: &mut Ctx<'_>, key: &str, default: Option<WeekdayTime>| -> Option<WeekdayTime> {
            match ctx.string(&s, key) {
                Some(v) if v.get_ref() == "off" => None,
                Some(v) => match units::parse_weekday_time(v.get_ref()) {
                    Ok(w) => Some(w),
                    Err(msg) => {
                        ctx.error(v.span(), Some(s.key(key)), format!("{msg}, or \"off\""));
                        default
                    }
                },
                None => default,
            }
        };
    let weekly_cold_restart = optional_weekday_time(
        ctx,
        "weekly_cold_restart",
        Some(WeekdayTime {
            weekday: jiff::civil::Weekday::Sunday,
            time: Time::constant(1, 30, 0, 0),
        }),
    );
    let closedown = optional_weekday_time(ctx, "closedown", None);
    let daily_restart = ctx.parsed(&s, "daily_restart", TIME, units::parse_time_of_day);
    let maintenance_start = ctx
        .parsed(&s, "maintenance_start", TIME, units::parse_time_of_day)
        .unwrap_or(Time::constant(23, 45, 0, 0));
    let maintenance_delay = dur_key(ctx, &s, "maintenance_delay");
    let schedule = timezone.map(|timezone| ScheduleConfig {
        timezone,
        timezone_name,
        daily_restart,
        weekly_cold_restart,
        maintenance_start,
        maintenance_delay,
        closedown,
    });

    // [display]
    let mode = ctx
        .choice(
            &d,
            "mode",
            &[
                ("xvfb", DisplayMode::Xvfb),
                ("existing", DisplayMode::Existing),
            ],
        )
        .unwrap_or(DisplayMode::Xvfb);
    let display_name = ctx.string(&d, "display").map(Spanned::into_inner);
    if let Some(name) = &display_name {
        if !looks_like_display(name) {
            ctx.error(
                d.span_of("display"),
                Some(d.key("display")),
                format!("{name:?} is not an X display name like \":0\" or \"host:1\""),
            );
        }
    }
    if mode == DisplayMode::Existing && display_name.is_none() && !d.has("display") {
        ctx.missing(
            &d,
            "display",
            " (mode = \"existing\" needs the display, e.g. \":0\")",
        );
    }
    if mode == DisplayMode::Xvfb && display_name.is_some() {
        ctx.warn(
            d.span_of("display"),
            Some(d.key("display")),
            "ignored with mode = \"xvfb\" (ibwarden picks a free display number)".into(),
        );
    }
    let display = DisplayConfig {
        mode,
        display: display_name,
        xauthority: ctx.path(&d, "xauthority").map(Spanned::into_inner),
        geometry: ctx
            .parsed(
                &d,
                "geometry",
                "a geometry like \"1280x1024x24\"",
                units::parse_geometry,
            )
            .unwrap_or(Geometry {
                width: 1280,
                height: 1024,
                depth: 24,
            }),
    };

    // [probe]
    let probe = ProbeConfig {
        interval: dur_key(ctx, &p, "interval"),
        timeout: dur_key(ctx, &p, "timeout"),
        client_id: (int_key_or_default(ctx, &p, "client_id") as i32),
        failures_before_restart: (int_key_or_default(ctx, &p, "failures_before_restart") as u32),
        link_lost_grace: dur_key(ctx, &p, "link_lost_grace"),
    };
    if probe.timeout >= probe.interval {
        ctx.error(
            p.span_of("timeout"),
            Some(p.key("timeout")),
            format!(
                "must be shorter than probe.interval ({})",
                units::format_duration(probe.interval)
            ),
        );
    }

    // [control]
    let socket = ctx.path(&c, "socket").map(Spanned::into_inner).or_else(|| {
        env.runtime_directory
            .as_ref()
            .map(|r| r.join("control.sock"))
            .or_else(|| state_dir.as_ref().map(|d| d.join("control.sock")))
    });
    let control_port = int_key(ctx, &c, "ibc_command_port").map(|n| n as u16);
    if let Some(port) = control_port {
        if port == api_port {
            ctx.error(
                c.span_of("ibc_command_port"),
                Some(c.key("ibc_command_port")),
                format!("must differ from gateway.api_port ({api_port})"),
            );
        }
    }
    let control_auth = ctx
        .path(&c, "ibc_command_auth_file")
        .map(Spanned::into_inner);
    // No token is a choice the config must state, never a default.
    let no_token = match ctx.string(&c, "ibc_command_token") {
        Some(v) if v.get_ref() == "none" => {
            if control_auth.is_some() {
                ctx.warn(
                    v.span(),
                    Some(c.key("ibc_command_token")),
                    "ignored: ibc_command_auth_file is set, so a token is required".into(),
                );
            }
            control_auth.is_none()
        }
        Some(v) => {
            ctx.error(
                v.span(),
                Some(c.key("ibc_command_token")),
                "only \"none\" is accepted here; a token is never written in the config: put it \
                 in a file (chmod 600) and name it in ibc_command_auth_file"
                    .into(),
            );
            false
        }
        None => false,
    };
    if control_port.is_some() && control_auth.is_none() && !no_token {
        ctx.error(
            c.span_of("ibc_command_port"),
            Some(c.key("ibc_command_port")),
            "the IBC command server needs a token: set ibc_command_auth_file to a file holding \
             one (e.g. `head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE; chmod 600 \
             FILE`), or ibc_command_token = \"none\" to let any local process restart or stop \
             the gateway"
                .into(),
        );
    }

    // [health]
    let listen = match ctx.string(&h, "listen") {
        Some(v) => match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => {
                if !a.ip().is_loopback() {
                    ctx.warn(
                        v.span(),
                        Some(h.key("listen")),
                        format!(
                            "{a} is reachable from other machines and /metrics, /readyz and \
                             /livez answer anyone; use 127.0.0.1 unless a firewall or a \
                             container network decides who reaches it"
                        ),
                    );
                }
                Some(a)
            }
            Err(_) => {
                ctx.error(
                    v.span(),
                    Some(h.key("listen")),
                    format!(
                        "{:?} is not an address:port like \"127.0.0.1:9187\"",
                        v.get_ref()
                    ),
                );
                None
            }
        },
        None => None,
    };

    // [relay]
    let relay_listen = match ctx.string(&r, "listen") {
        Some(v) => match v.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                ctx.error(
                    v.span(),
                    Some(r.key("listen")),
                    format!(
                        "{:?} is not an address:port like \"0.0.0.0:4003\"",
                        v.get_ref()
                    ),
                );
                None
            }
        },
        None => None,
    };
    let relay_allow = match ctx.string_list(&r, "allow") {
        Some(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.parse::<crate::relay::Cidr>() {
                    Ok(c) => out.push(c),
                    Err(e) => ctx.error(
                        r.span_of("allow"),
                        Some(r.key("allow")),
                        format!("item {}: {e}", i + 1),
                    ),
                }
            }
            out
        }
        None => ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
    };
    let relay_max = int_key_or_default(ctx, &r, "max_connections") as u32;
    if relay_listen.is_some() && client_portal {
        ctx.error(
            r.span_of("listen"),
            Some(r.key("listen")),
            "the API relay carries the TWS API, and program = \"clientportal\" has none: its \
             Web API is the gateway's own HTTPS port (root/conf.yaml listenPort); remove \
             [relay] listen"
                .into(),
        );
    }
    if let (Some(a), false) = (relay_listen, r.has("allow")) {
        if !a.ip().is_loopback() {
            ctx.warn(
                r.span_of("listen"),
                Some(r.key("listen")),
                "relay.allow is not set, so only loopback clients are relayed; list the \
                 address blocks of the API clients (e.g. allow = [\"172.16.0.0/12\"])"
                    .into(),
            );
        }
    }
    if let Some(a) = relay_listen {
        if a.ip().is_loopback() && a.port() == api_port {
            ctx.error(
                r.span_of("listen"),
                Some(r.key("listen")),
                format!("{a} is the gateway's own API port (gateway.api_port)"),
            );
        }
    }

    // [notify]
    let webhook_preset = ctx
        .choice(
            &n,
            "webhook_preset",
            &[
                ("ntfy", WebhookPreset::Ntfy),
                ("telegram", WebhookPreset::Telegram),
                ("slack", WebhookPreset::Slack),
                ("generic", WebhookPreset::Generic),
            ],
        )
        .unwrap_or(WebhookPreset::Generic);
    let webhook_url_file = ctx.path(&n, "webhook_url_file").map(Spanned::into_inner);
    let telegram_chat_id = match n.raw("telegram_chat_id").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Integer(i)) => Some(i.as_str().to_string()),
        Some(_) => ctx.string(&n, "telegram_chat_id").map(Spanned::into_inner),
        None => None,
    };
    if n.has("webhook_preset") && webhook_url_file.is_none() && !n.has("webhook_url_file") {
        ctx.error(
            n.span_of("webhook_preset"),
            Some(n.key("webhook_preset")),
            "set webhook_url_file too (the preset formats the webhook's body)".into(),
        );
    }
    if webhook_preset == WebhookPreset::Telegram && telegram_chat_id.is_none() {
        ctx.missing(
            &n,
            "telegram_chat_id",
            " (webhook_preset = \"telegram\" needs it)",
        );
    }
    let command = match ctx.string_list(&n, "command") {
        Some(argv) if argv.is_empty() => {
            ctx.error(
                n.span_of("command"),
                Some(n.key("command")),
                "is empty; remove the key or give a program and its arguments".into(),
            );
            None
        }
        other => other,
    };
    let notify = NotifyConfig {
        desktop: ctx.boolean(&n, "desktop").unwrap_or(true),
        desktop_user: ctx.string(&n, "desktop_user").map(Spanned::into_inner),
        command,
        webhook_url_file,
        webhook_preset,
        telegram_chat_id,
    };

    // Anything still missing was reported above.
    let settings_dir = settings_dir?;
    let state_dir = state_dir?;
    let socket = socket?;
    let username = username?;
    let password = password?;
    let schedule = schedule?;
    Some(Config {
        path: path.to_path_buf(),
        gateway: GatewayConfig {
            program,
            client_portal,
            install_dir,
            settings_dir,
            trading_mode,
            api_port,
            java,
            jvm_args,
            stop_grace,
        },
        account: AccountConfig {
            username,
            password,
            totp,
        },
        login,
        schedule,
        display,
        probe,
        state: StateConfig { dir: state_dir },
        control: ControlConfig {
            socket,
            ibc_command_port: control_port,
            ibc_command_auth_file: control_auth,
            ibc_command_open: no_token,
        },
        health: HealthConfig { listen },
        relay: RelayConfig {
            listen: relay_listen,
            allow: relay_allow,
            max_connections: relay_max,
        },
        notify,
        warnings: Vec::new(),
    })
}

/// `:N`, `:N.S`, `host:N` (not validated further: Xlib decides).
fn looks_like_display(name: &str) -> bool {
    match name.rsplit_once(':') {
        Some((_, num)) => {
            let n = num.split('.').next().unwrap_or("");
            !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Time zone names that are a fixed offset although people mean a place with daylight
/// saving time: `EST`, `MST`, `HST` and `Etc/GMT+5`-style names (`UTC` is meant as such).
fn is_fixed_offset_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    matches!(upper.as_str(), "EST" | "MST" | "HST")
        || ((upper.starts_with("ETC/GMT") || upper.starts_with("GMT"))
            && upper
                .trim_start_matches("ETC/")
                .trim_start_matches("GMT")
                .len()
                > 1)
}
