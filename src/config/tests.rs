//! Unit tests of the schema: defaults, each key's checks, and the error text.

use super::*;

fn env() -> Env {
    Env {
        home: Some(PathBuf::from("/home/u")),
        state_directory: None,
        runtime_directory: None,
        xdg_state_home: None,
    }
}

const MINIMAL: &str = r#"
[account]
username = "jdoe"
password_file = "secrets/password"
totp_file = "/etc/ibwarden/totp"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_with_env(text, Path::new("/etc/ibwarden/config.toml"), &env())
}

fn errors(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).expect("valid");
    assert_eq!(c.gateway.program, Program::Gateway);
    assert_eq!(c.gateway.trading_mode, TradingMode::Live);
    assert_eq!(c.gateway.api_port, 4001);
    assert_eq!(c.gateway.install_dir, None);
    assert_eq!(c.gateway.java, Java::Auto);
    assert_eq!(c.state.dir, PathBuf::from("/home/u/.local/state/ibwarden"));
    assert_eq!(
        c.gateway.settings_dir,
        PathBuf::from("/home/u/.local/state/ibwarden/jts")
    );
    assert_eq!(
        c.control.socket,
        PathBuf::from("/home/u/.local/state/ibwarden/control.sock")
    );
    assert_eq!(c.account.username, "jdoe");
    // Relative to the config file's directory.
    assert_eq!(
        c.account.password,
        SecretSource::File(PathBuf::from("/etc/ibwarden/secrets/password"))
    );
    assert_eq!(c.login.min_code_validity, Duration::from_secs(8));
    assert_eq!(c.login.max_failed_logins_per_hour, 3);
    assert_eq!(c.login.max_code_rejections, 2);
    assert_eq!(c.login.existing_session, SessionPolicy::Primary);
    assert!(c.login.uses_authenticator_app());
    assert_eq!(c.schedule.timezone_name, "America/New_York");
    assert_eq!(c.schedule.maintenance_start, Time::constant(23, 45, 0, 0));
    assert_eq!(c.schedule.maintenance_delay, Duration::from_secs(480));
    assert_eq!(
        c.schedule.weekly_cold_restart.map(|w| w.to_string()),
        Some("Sun 01:30".into())
    );
    assert_eq!(c.schedule.daily_restart, None);
    assert_eq!(c.display.mode, DisplayMode::Xvfb);
    assert_eq!(c.display.geometry.to_string(), "1280x1024x24");
    assert_eq!(c.probe.interval, Duration::from_secs(30));
    assert_eq!(c.probe.timeout, Duration::from_secs(5));
    assert_eq!(c.probe.client_id, 999);
    assert_eq!(c.probe.failures_before_restart, 3);
    assert_eq!(c.probe.link_lost_grace, Duration::from_secs(300));
    assert!(c.notify.desktop);
    assert_eq!(c.notify.webhook_preset, WebhookPreset::Generic);
    assert!(c.warnings.is_empty());
}

#[test]
fn systemd_directories_are_used() {
    let env = Env {
        home: None,
        state_directory: Some("/var/lib/ibwarden/main".into()),
        runtime_directory: Some("/run/ibwarden/main".into()),
        xdg_state_home: None,
    };
    let c = Config::from_str_with_env(MINIMAL, Path::new("/etc/ibwarden/main.toml"), &env)
        .expect("valid");
    assert_eq!(c.state.dir, PathBuf::from("/var/lib/ibwarden/main"));
    assert_eq!(
        c.control.socket,
        PathBuf::from("/run/ibwarden/main/control.sock")
    );
}

#[test]
fn api_port_defaults_by_program_and_mode() {
    let paper =
        "[gateway]\ntrading_mode = \"paper\"\n[account]\nusername = \"u\"\npassword_env = \"PW\"\n";
    let c = parse(paper).expect("paper needs no totp");
    assert_eq!(c.gateway.api_port, 4002);
    assert!(c.account.totp.is_none());
    assert_eq!(c.warnings.len(), 1, "env secret warns");
    assert!(c.warnings[0].message.contains("weakest"));
    let tws = format!("[gateway]\nprogram = \"tws\"\n{MINIMAL}");
    assert_eq!(parse(&tws).expect("tws").gateway.api_port, 7496);
    let tws_paper = "[gateway]\nprogram = \"tws\"\ntrading_mode = \"paper\"\n[account]\nusername = \"u\"\npassword_credential = \"pw\"\n";
    assert_eq!(parse(tws_paper).expect("tws paper").gateway.api_port, 7497);
    let explicit = format!("[gateway]\napi_port = 4100\n{MINIMAL}");
    assert_eq!(parse(&explicit).expect("port").gateway.api_port, 4100);
}

#[test]
fn unknown_key_has_position_and_suggestion() {
    let text = format!("{MINIMAL}\n[login]\nmin_code_valdity = \"8s\"\n");
    let msg = errors(&text);
    assert_eq!(
        msg,
        "/etc/ibwarden/config.toml:8:1: key `login.min_code_valdity`: unknown key; did you mean \
         `min_code_validity`?"
    );
}

#[test]
fn unknown_section_and_misplaced_key() {
    let text = format!("{MINIMAL}\n[gatway]\nprogram = \"tws\"\n[login]\ninterval = \"5s\"\n");
    let msg = errors(&text);
    assert!(
        msg.contains(":7:2: key `gatway`: unknown section; did you mean `gateway`?"),
        "{msg}"
    );
    assert!(
        msg.contains(":10:1: key `login.interval`: unknown key; `interval` belongs in [probe]"),
        "{msg}"
    );
}

#[test]
fn all_errors_are_reported_in_file_order() {
    let text = r#"
[gateway]
program = "ibgateway"
api_port = 70000
[account]
username = "u"
password_file = "pw"
[login]
min_code_validity = "5x"
max_failed_logins_per_hour = "three"
[schedule]
timezone = "America/New_Yrok"
daily_restart = "25:00"
[probe]
timeout = "1m"
"#;
    let msg = errors(text);
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines.len(), 8, "{msg}");
    assert!(lines[0].starts_with("/etc/ibwarden/config.toml:3:11: key `gateway.program`: \"ibgateway\" is not one of \"gateway\", \"tws\""), "{msg}");
    assert!(
        lines[1].contains(":4:12: key `gateway.api_port`: must be between 1 and 65535"),
        "{msg}"
    );
    assert!(
        lines[2].contains(":5:2: key `account.totp_file`: required key is missing"),
        "{msg}"
    );
    assert!(
        lines[3].contains(":9:21: key `login.min_code_validity`: unknown unit \"x\""),
        "{msg}"
    );
    assert!(
        lines[4].contains(
            ":10:30: key `login.max_failed_logins_per_hour`: expected an integer, found string"
        ),
        "{msg}"
    );
    assert!(
        lines[5].contains(":12:12: key `schedule.timezone`: unknown time zone"),
        "{msg}"
    );
    assert!(
        lines[6].contains(":13:17: key `schedule.daily_restart`: hour 25 out of range"),
        "{msg}"
    );
    assert!(
        lines[7].contains(":15:11: key `probe.timeout`: must be shorter than probe.interval (30s)"),
        "{msg}"
    );
}

#[test]
fn syntax_errors_have_positions() {
    let msg = errors("[account]\nusername = \"u\npassword_file = \"x\"\n");
    assert!(msg.starts_with("/etc/ibwarden/config.toml:2:"), "{msg}");
    assert!(msg.contains("invalid TOML"), "{msg}");
}

#[test]
fn missing_account() {
    let msg = errors("");
    assert!(
        msg.contains(
            "key `account.username`: required key is missing (section [account] is missing)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("key `account.password_file`: required key is missing"),
        "{msg}"
    );
}

#[test]
fn secret_sources_exclusive_and_never_echoed() {
    let text = "[account]\nusername = \"u\"\npassword_file = \"a\"\npassword_env = \"B\"\ntotp_env = \"Sup3r Secret!\"\n";
    let msg = errors(text);
    assert!(
        msg.contains("set only one of password_file, password_env"),
        "{msg}"
    );
    assert!(
        msg.contains("key `account.totp_env`: must be the NAME of an environment variable"),
        "{msg}"
    );
    assert!(!msg.contains("Sup3r"), "{msg}");
    // Someone writing the password inline gets pointed to the right keys, without an echo.
    let text = "[account]\nusername = \"u\"\npassword = \"Hunter2Value\"\n";
    let msg = errors(text);
    assert!(
        msg.contains("key `account.password`: unknown key; secrets are never written"),
        "{msg}"
    );
    assert!(!msg.contains("Hunter2Value"), "{msg}");
    let msg =
        errors("[account]\nusername = \"u\"\npassword_credential = \"../x\"\ntotp_file = \"t\"\n");
    assert!(msg.contains("plain file name"), "{msg}");
}

#[test]
fn paper_without_totp_live_with_ib_key() {
    let text = "[account]\nusername = \"u\"\npassword_file = \"p\"\n[login]\nsecond_factor_device = \"IB Key\"\n";
    let c = parse(text).expect("IB Key needs no activation code");
    assert!(!c.login.uses_authenticator_app());
}

#[test]
fn schedule_values() {
    let text = format!(
        "{MINIMAL}[schedule]\ntimezone = \"Europe/London\"\ndaily_restart = \"23:50\"\nweekly_cold_restart = \"off\"\nclosedown = \"Fri 17:00\"\nmaintenance_delay = \"10m\"\n"
    );
    let c = parse(&text).expect("valid");
    assert_eq!(c.schedule.timezone_name, "Europe/London");
    assert_eq!(c.schedule.daily_restart, Some(Time::constant(23, 50, 0, 0)));
    assert_eq!(c.schedule.weekly_cold_restart, None);
    assert_eq!(
        c.schedule.closedown.map(|w| w.to_string()),
        Some("Fri 17:00".into())
    );
    assert_eq!(c.schedule.maintenance_delay, Duration::from_secs(600));
    let msg = errors(&format!(
        "{MINIMAL}[schedule]\nweekly_cold_restart = \"Sunday\"\n"
    ));
    assert!(msg.contains("key `schedule.weekly_cold_restart`"), "{msg}");
}

#[test]
fn display_checks() {
    let msg = errors(&format!("{MINIMAL}[display]\nmode = \"existing\"\n"));
    assert!(
        msg.contains("key `display.display`: required key is missing"),
        "{msg}"
    );
    let msg = errors(&format!(
        "{MINIMAL}[display]\nmode = \"existing\"\ndisplay = \"zero\"\n"
    ));
    assert!(msg.contains("is not an X display name"), "{msg}");
    let c = parse(&format!("{MINIMAL}[display]\nmode = \"existing\"\ndisplay = \":0\"\nxauthority = \"~/.Xauthority\"\ngeometry = \"1920x1080x24\"\n")).expect("valid");
    assert_eq!(c.display.display.as_deref(), Some(":0"));
    assert_eq!(
        c.display.xauthority,
        Some(PathBuf::from("/home/u/.Xauthority"))
    );
    assert_eq!(c.display.geometry.width, 1920);
    let msg = errors(&format!("{MINIMAL}[display]\nmod = \"xvfb\"\n"));
    assert!(msg.contains("did you mean `mode`?"), "{msg}");
}

#[test]
fn choice_suggests_value() {
    let msg = errors(&format!(
        "{MINIMAL}[login]\nexisting_session = \"primary_override\"\n"
    ));
    assert!(msg.contains("did you mean \"primaryoverride\"?"), "{msg}");
}

#[test]
fn notify_and_health_and_control() {
    let text = format!(
        "{MINIMAL}[notify]\ndesktop = false\ncommand = [\"/usr/bin/logger\", \"-t\", \"ibwarden\"]\nwebhook_url_file = \"hook\"\nwebhook_preset = \"telegram\"\ntelegram_chat_id = -100123\n[health]\nlisten = \"127.0.0.1:9187\"\n[control]\nibc_command_port = 7462\nibc_command_auth_file = \"token\"\n"
    );
    let c = parse(&text).expect("valid");
    assert!(!c.notify.desktop);
    assert_eq!(c.notify.command.as_ref().map(Vec::len), Some(3));
    assert_eq!(c.notify.telegram_chat_id.as_deref(), Some("-100123"));
    assert_eq!(
        c.notify.webhook_url_file,
        Some(PathBuf::from("/etc/ibwarden/hook"))
    );
    assert_eq!(c.health.listen.map(|a| a.port()), Some(9187));
    assert_eq!(c.control.ibc_command_port, Some(7462));
    let msg = errors(&format!(
        "{MINIMAL}[notify]\nwebhook_preset = \"telegram\"\n"
    ));
    assert!(msg.contains("set webhook_url_file too"), "{msg}");
    assert!(
        msg.contains("key `notify.telegram_chat_id`: required key is missing"),
        "{msg}"
    );
    let msg = errors(&format!("{MINIMAL}[health]\nlisten = \"localhost\"\n"));
    assert!(msg.contains("is not an address:port"), "{msg}");
    let msg = errors(&format!("{MINIMAL}[notify]\ncommand = []\n"));
    assert!(msg.contains("key `notify.command`: is empty"), "{msg}");
}

#[test]
fn wrong_types() {
    let msg = errors(&format!(
        "{MINIMAL}[gateway]\njvm_args = \"-Xmx1g\"\n[notify]\ndesktop = \"yes\"\n"
    ));
    assert!(
        msg.contains("key `gateway.jvm_args`: expected a list of strings, found string"),
        "{msg}"
    );
    assert!(
        msg.contains("key `notify.desktop`: expected true or false, found string"),
        "{msg}"
    );
    let msg = errors(&format!("gateway = 5\n{MINIMAL}"));
    assert!(
        msg.contains("key `gateway`: must be a section ([gateway])"),
        "{msg}"
    );
    let msg = errors(&format!(
        "{MINIMAL}[gateway]\njvm_args = [\"-jar\", \"x\"]\n"
    ));
    assert!(msg.contains("cannot be overridden"), "{msg}");
}

#[test]
fn durations_out_of_range() {
    let msg = errors(&format!("{MINIMAL}[login]\nmin_code_validity = \"29s\"\n"));
    assert!(
        msg.contains("key `login.min_code_validity`: must be between 1s and 25s"),
        "{msg}"
    );
    let msg = errors(&format!("{MINIMAL}[login]\nmin_code_validity = 8\n"));
    assert!(
        msg.contains("expected a duration like \"8s\" or \"5m\", found integer"),
        "{msg}"
    );
}

const EXAMPLE: &str = include_str!("../../config.toml.example");

#[test]
fn example_parses_as_shipped() {
    let c = parse(EXAMPLE).expect("config.toml.example must parse");
    assert_eq!(
        c.account.password,
        SecretSource::File(PathBuf::from("/etc/ibwarden/secrets/password"))
    );
}

/// Uncomments every `# key = value` line (except the alternative secret sources, which
/// exclude each other) so that each documented default and example is checked too.
#[test]
fn example_with_every_key_uncommented_parses_to_the_defaults() {
    let alternatives = [
        "password_credential",
        "password_env",
        "totp_credential",
        "totp_env",
    ];
    let mut uncommented = 0;
    let text: String = EXAMPLE
        .lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("# ") {
                if let Some((key, _)) = rest.split_once(" = ") {
                    let is_key =
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                    if is_key && !alternatives.contains(&key) {
                        uncommented += 1;
                        return format!("{rest}\n");
                    }
                }
            }
            format!("{line}\n")
        })
        .collect();
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    assert!(uncommented >= 40, "only {uncommented} keys uncommented");
    // The documented defaults are the real ones.
    let d = parse(EXAMPLE).expect("valid");
    assert_eq!(c.gateway.program, d.gateway.program);
    assert_eq!(c.gateway.trading_mode, d.gateway.trading_mode);
    assert_eq!(c.gateway.api_port, d.gateway.api_port);
    assert_eq!(c.gateway.java, d.gateway.java);
    assert_eq!(c.login.second_factor, d.login.second_factor);
    assert_eq!(c.login.existing_session, d.login.existing_session);
    assert_eq!(
        c.login.max_failed_logins_per_hour,
        d.login.max_failed_logins_per_hour
    );
    assert_eq!(c.login.min_code_validity, d.login.min_code_validity);
    assert_eq!(c.login.max_code_rejections, d.login.max_code_rejections);
    assert_eq!(c.login.ib_key_wait, d.login.ib_key_wait);
    assert_eq!(c.login.login_timeout, d.login.login_timeout);
    assert_eq!(c.login.content_reader, d.login.content_reader);
    assert_eq!(c.schedule.timezone_name, d.schedule.timezone_name);
    assert_eq!(
        c.schedule.weekly_cold_restart,
        d.schedule.weekly_cold_restart
    );
    assert_eq!(c.schedule.maintenance_start, d.schedule.maintenance_start);
    assert_eq!(c.schedule.maintenance_delay, d.schedule.maintenance_delay);
    assert_eq!(c.display.mode, d.display.mode);
    assert_eq!(c.display.geometry, d.display.geometry);
    assert_eq!(c.probe.interval, d.probe.interval);
    assert_eq!(c.probe.timeout, d.probe.timeout);
    assert_eq!(c.probe.client_id, d.probe.client_id);
    assert_eq!(
        c.probe.failures_before_restart,
        d.probe.failures_before_restart
    );
    assert_eq!(c.probe.link_lost_grace, d.probe.link_lost_grace);
    assert_eq!(c.notify.desktop, d.notify.desktop);
    assert_eq!(c.notify.webhook_preset, d.notify.webhook_preset);
}

/// The example's `key = value` lines, by section: (section, key, value, commented).
fn example_lines() -> Vec<(String, String, String, bool)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in EXAMPLE.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (commented, rest) = match line.strip_prefix("# ") {
            Some(r) => (true, r),
            None => (false, line),
        };
        if let Some((key, value)) = rest.split_once(" = ") {
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                out.push((
                    section.clone(),
                    key.to_string(),
                    value.to_string(),
                    commented,
                ));
            }
        }
    }
    out
}

#[test]
fn example_documents_every_key_with_the_tables_default() {
    let lines = example_lines();
    for k in keys::KEYS {
        let found: Vec<_> = lines
            .iter()
            .filter(|(s, n, _, _)| s == k.section && n == k.name)
            .collect();
        assert!(
            !found.is_empty(),
            "{} missing from config.toml.example",
            k.dotted()
        );
        if let Some(default) = k.default {
            for (_, _, value, commented) in found {
                if *commented {
                    assert_eq!(
                        value,
                        default,
                        "{}: the example shows another default",
                        k.dotted()
                    );
                }
            }
        }
    }
    for (s, n, _, _) in &lines {
        assert!(
            keys::get(s, n).is_some(),
            "the example has {s}.{n}, the key table does not"
        );
    }
}

/// A paper config with a password (no activation code needed), what the key needs beside it, and `section.name = value` when given.
fn with_key(k: &keys::Key, value: Option<&str>) -> String {
    let mut sections: Vec<(String, Vec<String>)> = keys::SECTIONS
        .iter()
        .map(|s| (s.to_string(), Vec::new()))
        .collect();
    let mut set = |section: &str, line: String| {
        if let Some((_, lines)) = sections.iter_mut().find(|(s, _)| s == section) {
            lines.retain(|l| l.split(" = ").next() != line.split(" = ").next());
            lines.push(line);
        }
    };
    if k.dotted() == "gateway.trading_mode" {
        set("account", "totp_file = \"t\"".into());
    } else {
        set("gateway", "trading_mode = \"paper\"".into());
    }
    if k.dotted() == "display.mode" {
        set("display", "display = \":7\"".into());
    }
    set("account", "username = \"u\"".into());
    if !k.name.starts_with("password_") || value.is_none() {
        set("account", "password_file = \"p\"".into());
    }
    if k.dotted() == "control.ibc_command_port" {
        set("control", "ibc_command_token = \"none\"".into());
    }
    if k.dotted() == "notify.webhook_preset" {
        set("notify", "webhook_url_file = \"hook\"".into());
        set("notify", "telegram_chat_id = \"1\"".into());
    }
    if let Some(value) = value {
        set(k.section, format!("{} = {value}", k.name));
    }
    sections
        .into_iter()
        .map(|(s, lines)| format!("[{s}]\n{}\n", lines.join("\n")))
        .collect()
}

/// The config as compared: everything but where it was read from.
fn fingerprint(c: &Config) -> String {
    format!("{c:?}")
}

#[test]
fn each_default_in_the_table_is_what_leaving_the_key_out_gives() {
    let mut checked = 0;
    for k in keys::KEYS {
        let Some(default) = k.default else { continue };
        let base = fingerprint(&parse(&with_key(k, None)).expect("base"));
        let text = with_key(k, Some(default));
        let c = parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", k.dotted()));
        assert_eq!(
            fingerprint(&c),
            base,
            "{} = {default} is not the default",
            k.dotted()
        );
        checked += 1;
    }
    assert!(checked >= 25, "{checked}");
}

#[test]
fn each_key_is_read_its_sample_changes_the_config() {
    for k in keys::KEYS {
        let base = fingerprint(&parse(&with_key(k, None)).expect("base"));
        let text = with_key(k, Some(k.sample));
        let c = parse(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", k.dotted()));
        assert_ne!(
            fingerprint(&c),
            base,
            "{} = {} changed nothing",
            k.dotted(),
            k.sample
        );
    }
}

#[test]
fn each_range_in_the_table_is_enforced_at_the_key() {
    for k in keys::KEYS {
        let outside = match k.kind {
            keys::Kind::Int { max, .. } => format!("{}", max + 1),
            keys::Kind::Dur { max_ms, .. } => format!("\"{}ms\"", max_ms + 1),
            _ => continue,
        };
        let text = with_key(k, Some(&outside));
        let msg = match parse(&text) {
            Ok(_) => panic!("{} = {outside} accepted", k.dotted()),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.contains(&format!("`{}`", k.dotted())),
            "{}: {msg}",
            k.dotted()
        );
        assert!(
            msg.contains("must be between") || msg.contains("between"),
            "{msg}"
        );
    }
}

/// A SIGHUP names exactly the restart-only keys, from the table.
#[test]
fn a_reload_names_exactly_the_restart_only_keys() {
    for k in keys::KEYS {
        let base = parse(&with_key(k, None)).expect("base");
        let text = with_key(k, Some(k.sample));
        let new = parse(&text).expect("sample parses");
        let reload = crate::driver::apply_reload(&base, new, false);
        let named = reload
            .restart_needed
            .iter()
            .any(|n| *n == k.dotted() || *n == k.section);
        match k.reload {
            keys::Reload::Restart => {
                assert!(
                    named,
                    "{} is restart-only; the reload said {:?}",
                    k.dotted(),
                    reload.restart_needed
                )
            }
            keys::Reload::Live => assert!(
                reload.restart_needed.is_empty(),
                "{} is applied live; the reload said {:?}",
                k.dotted(),
                reload.restart_needed
            ),
        }
    }
}

#[test]
fn invalid_mode_does_not_cascade() {
    let msg = errors(
        "[gateway]\ntrading_mode = \"Paper\"\n[account]\nusername = \"u\"\npassword_file = \"p\"\n",
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(msg.contains("did you mean \"paper\"?"), "{msg}");
}

#[test]
fn a_duplicate_key_is_named() {
    let msg = errors(&format!(
        "{MINIMAL}\n[probe]\ninterval = \"2s\"\ninterval = \"3s\"\n"
    ));
    assert!(msg.contains("duplicate key `interval`"), "{msg}");
    assert!(msg.contains("set twice"), "{msg}");
}

#[test]
fn a_misspelt_section_is_reported_before_the_keys_it_hides() {
    let msg = errors(
        "[gateway]\ntrading_mode = \"paper\"\n[acount]\nusername = \"u\"\npassword_file = \"p\"\n",
    );
    let first = msg.lines().next().unwrap_or_default();
    assert!(
        first.contains("unknown section; did you mean `account`?"),
        "{msg}"
    );
    assert!(msg.contains("required key is missing"), "{msg}");
}

#[test]
fn silent_acceptances_warn_a_fixed_offset_zone_and_a_public_health_port() {
    for (tz, warns) in [
        ("EST", true),
        ("Etc/GMT+5", true),
        ("America/New_York", false),
        ("UTC", false),
        ("Etc/GMT", false),
    ] {
        let c = parse(&format!("{MINIMAL}\n[schedule]\ntimezone = \"{tz}\"\n")).expect(tz);
        assert_eq!(
            c.warnings
                .iter()
                .any(|w| w.message.contains("without daylight saving")),
            warns,
            "{tz}: {:?}",
            c.warnings
        );
    }
    for (listen, warns) in [
        ("0.0.0.0:9187", true),
        ("127.0.0.1:9187", false),
        ("[::1]:9187", false),
    ] {
        let c = parse(&format!("{MINIMAL}\n[health]\nlisten = \"{listen}\"\n")).expect(listen);
        assert_eq!(
            c.warnings
                .iter()
                .any(|w| w.message.contains("reachable from other machines")),
            warns,
            "{listen}"
        );
    }
}

#[test]
fn the_relay_is_refused_for_the_client_portal_gateway() {
    let text = format!(
        "[gateway]\nprogram = \"clientportal\"\n{MINIMAL}\n[relay]\nlisten = \"0.0.0.0:4003\"\n"
    );
    let e = errors(&text);
    assert!(
        e.contains("config.toml:10:10: key `relay.listen`") && e.contains("clientportal"),
        "{e}"
    );
    let tws = format!("{MINIMAL}\n[relay]\nlisten = \"127.0.0.1:4003\"\n");
    assert!(parse(&tws).is_ok());
}
