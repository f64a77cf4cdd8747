//! `ibwarden import-ibc`, run as a user would, on our fixtures in `tests/fixtures/ibc`: a
//! `config.ini` with every setting IBC documents and the env file of an IBC-based IB
//! Gateway Docker image. The generated TOML must load with the real config loader,
//! the report must account for every setting read, and the password must reach only its
//! chmod 600 file: never the TOML, stdout or stderr.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ibwarden::config::{Config, Env, SessionPolicy, TradingMode};
use ibwarden::ibc_import::{self, Options, Outcome};
use ibwarden::secret::SecretSource;

const BIN: &str = env!("CARGO_BIN_EXE_ibwarden");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ibc")
        .join(name)
}

fn sample_ini() -> PathBuf {
    fixture("config.ini")
}

fn docker_env() -> PathBuf {
    fixture("docker.env")
}

fn import(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .arg("import-ibc")
        .args(args)
        .env_remove("IBWARDEN_CONFIG")
        .env("TZ", "UTC")
        .output()
        .expect("run ibwarden")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn load(path: &Path) -> Config {
    let text = fs::read_to_string(path).expect("read toml");
    let env = Env {
        state_directory: Some("/var/lib/ibwarden/t".into()),
        ..Env::default()
    };
    Config::from_str_with_env(&text, path, &env)
        .unwrap_or_else(|e| panic!("generated config does not load:\n{e}\n---\n{text}"))
}

/// Every setting IBC documents: the fixture lists each one once (our own list, kept with
/// the fixture, so a setting added to IBC is added there and then must be known).
fn documented_settings() -> BTreeSet<String> {
    let ini = fs::read_to_string(fixture("config.ini")).expect("fixture");
    ini.lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
        .filter_map(|l| l.split('=').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_documented_setting_is_known() {
    let documented = documented_settings();
    assert!(documented.len() > 50, "parsed only {documented:?}");
    for name in &documented {
        assert!(
            ibc_import::IBC_KEYS.contains(&name.as_str()),
            "{name} is not in IBC_KEYS"
        );
    }
}

#[test]
fn ibc_config_ini_converts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("main.toml");
    let o = import(&[sample_ini().as_os_str(), "--out".as_ref(), out.as_os_str()]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");

    // The password (the fixture's: Fixture-Pass-7) is only in its private file.
    let toml = fs::read_to_string(&out).expect("toml written");
    for t in [&toml, &stdout, &stderr] {
        assert!(!t.contains("Fixture-Pass-7"), "password leaked:\n{t}");
    }
    let pw = dir.path().join("main.password");
    assert_eq!(
        fs::read_to_string(&pw).expect("password file"),
        "Fixture-Pass-7\n"
    );
    assert_eq!(
        fs::metadata(&pw).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&out).expect("meta").permissions().mode() & 0o777,
        0o644
    );

    let config = load(&out);
    assert_eq!(config.account.username, "fixtureuser");
    assert_eq!(config.account.password, SecretSource::File(pw));
    assert_eq!(config.gateway.trading_mode, TradingMode::Live);
    // IBC's manual is kept, not silently turned into ibwarden's default.
    assert_eq!(config.login.existing_session, SessionPolicy::Manual);
    assert_eq!(config.login.ib_key_wait.as_secs(), 150);
    // Live + Mobile Authenticator: the activation code IBC never had is a to-do.
    assert_eq!(
        config.account.totp,
        Some(SecretSource::File(dir.path().join("main.totp")))
    );
    assert!(
        stderr.contains("Enrol IBKR's Mobile Authenticator app"),
        "{stderr}"
    );

    // Every setting of the sample is in the report, by line, and none is "unknown";
    // together they cover every documented setting the sample has.
    let ini = fs::read_to_string(sample_ini()).expect("ini");
    let props = ibc_import::parse_properties(&ini, "config.ini").expect("parses");
    let documented = documented_settings();
    let mut covered = BTreeSet::new();
    for p in &props {
        let needle = format!("config.ini:{}: {}", p.line, p.key);
        assert!(stderr.contains(&needle), "report lacks {needle}");
        assert!(
            documented.contains(&p.key),
            "{} is not in the fixture's list",
            p.key
        );
        covered.insert(p.key.clone());
    }
    assert!(covered.len() >= 50, "{covered:?}");
    assert!(!stderr.contains("Unknown"), "{stderr}");
    assert!(stderr.contains("NOT mapped"));
    assert!(stderr.contains("DismissNSEComplianceNotice"));

    // The same through the library, outcome by outcome.
    let opts = Options {
        password_file: "p".into(),
        totp_file: "t".into(),
        token_file: "tok".into(),
        credentials: false,
        today: jiff::civil::Date::constant(2026, 11, 24),
        ini_name: "config.ini".into(),
        env_name: "env".into(),
    };
    let c = ibc_import::convert(Some(&ini), &[], &opts).expect("converts");
    assert_eq!(c.report.entries.len(), props.len());
    let outcome = |k: &str| c.report.entry(k).expect(k).outcome.clone();
    assert!(
        matches!(outcome("TradingMode"), Outcome::Mapped { to, .. } if to == "gateway.trading_mode = \"live\"")
    );
    assert!(matches!(outcome("IbLoginId"), Outcome::Mapped { .. }));
    assert!(matches!(outcome("FIX"), Outcome::Builtin { .. }));
    assert!(matches!(
        outcome("DismissNSEComplianceNotice"),
        Outcome::NotMapped { .. }
    ));
    assert_eq!(
        c.password
            .as_ref()
            .map(|p| p.expose().to_string())
            .as_deref(),
        Some("Fixture-Pass-7")
    );
    assert!(c
        .report
        .entry("IbPassword")
        .expect("pw")
        .shown_value
        .is_none());
}

#[test]
fn docker_env_file_converts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("paper.toml");
    let env = docker_env();
    let o = import(&[
        "--env-file".as_ref(),
        env.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    let toml = fs::read_to_string(&out).expect("toml");
    for secret in ["fixtureDockerPass", "fixtureVncPass"] {
        for t in [&toml, &stdout, &stderr] {
            assert!(!t.contains(secret), "{secret} leaked:\n{t}");
        }
    }
    assert_eq!(
        fs::read_to_string(dir.path().join("paper.password")).expect("pw"),
        "fixtureDockerPass\n"
    );

    let config = load(&out);
    assert_eq!(config.account.username, "fixtureDockerUser");
    assert_eq!(config.gateway.trading_mode, TradingMode::Paper);
    assert_eq!(
        config.account.totp, None,
        "paper accounts need no activation code"
    );
    assert_eq!(config.login.existing_session, SessionPolicy::Primary);
    // AUTO_RESTART_TIME=10:30 PM in TIME_ZONE=Asia/Tokyo, in New York time today.
    let today = jiff::Zoned::now().date();
    let tokyo = today
        .at(22, 30, 0, 0)
        .in_tz("Asia/Tokyo")
        .expect("tokyo")
        .in_tz("America/New_York")
        .expect("ny")
        .time();
    assert_eq!(config.schedule.daily_restart, Some(tokyo));
    assert!(stderr.contains("converted from Asia/Tokyo"));

    // Every variable of the file is accounted for, by line.
    let vars = ibc_import::parse_env_file(
        &fs::read_to_string(&env).expect("env"),
        &env.display().to_string(),
    )
    .expect("parses");
    assert_eq!(vars.len(), 30, "every NAME= line of the env file");
    for v in &vars {
        let needle = format!("{}:{}: {}", env.display(), v.line, v.name);
        assert!(stderr.contains(&needle), "report lacks {needle}");
    }
    assert!(stderr.contains("TWOFA_TIMEOUT_ACTION"));
    assert!(stderr.contains("VNC_SERVER_PASSWORD = (secret, not shown)"));
}

#[test]
fn env_overrides_ini_and_stdout_mode_writes_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = dir.path().join(".env");
    fs::write(
        &env,
        "TWS_USERID=envuser\nTWS_PASSWORD=Env-Secret-9\nTRADING_MODE=paper\nFOO_BAR=1\n",
    )
    .expect("write");
    let o = import(&[
        sample_ini().as_os_str(),
        "--env-file".as_ref(),
        env.as_os_str(),
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    for t in [&stdout, &stderr] {
        assert!(
            !t.contains("Env-Secret-9") && !t.contains("Fixture-Pass-7"),
            "leak:\n{t}"
        );
    }
    // Without --out: nothing written next to anything, and the user is told how to store it.
    assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    assert!(stderr.contains("NOT written anywhere"), "{stderr}");
    assert!(stderr.contains("ibwarden secret set password"));
    assert!(stderr.contains("overridden by"), "{stderr}");
    assert!(stderr.contains("FOO_BAR"), "unknown variable not listed");

    let toml_path = dir.path().join("x.toml");
    fs::write(&toml_path, &stdout).expect("write");
    let config = load(&toml_path);
    assert_eq!(config.account.username, "envuser");
    assert_eq!(config.gateway.trading_mode, TradingMode::Paper);
}

#[test]
fn refuses_to_overwrite_and_reports_bad_input_without_echoing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("main.toml");
    fs::write(&out, "keep me").expect("write");
    let o = import(&[sample_ini().as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("exists; use --force"));
    assert_eq!(fs::read_to_string(&out).expect("read"), "keep me");
    let o = import(&[
        sample_ini().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--force".as_ref(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    // A malformed escape on the password line: file:line, not the line.
    let ini = dir.path().join("bad.ini");
    fs::write(&ini, "IbLoginId=u\nIbPassword=Sekret\\u12Zq\n").expect("write");
    let o = import(&[ini.as_os_str()]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bad.ini:2: malformed \\uXXXX escape"),
        "{stderr}"
    );
    assert!(!stderr.contains("Sekret") && o.stdout.is_empty());

    let o = import(&[dir.path().join("missing.ini").as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("missing.ini"));

    let env = dir.path().join("bad.env");
    fs::write(&env, "A=1\nTWS_PASSWORD\n").expect("write");
    let o = import(&["--env-file".as_ref(), env.as_os_str()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("bad.env:2: expected NAME=VALUE"));

    // Neither input: a usage error.
    let o = import(&[]);
    assert_eq!(o.status.code(), Some(2));
}

/// Whatever the values, the generated config loads: every IBC key and every image variable,
/// one at a time, with valid, odd and hostile values (and the port conflict the config
/// rejects).
#[test]
fn any_input_gives_a_config_that_loads() {
    let values = [
        "",
        " ",
        "yes",
        "no",
        "TRUE",
        "garbage",
        "0",
        "1",
        "-1",
        "4001",
        "4002",
        "7462",
        "65535",
        "99999",
        "~/x",
        "/abs/dir",
        "rel/dir",
        "12:00",
        "11:59 PM",
        "12:00 AM",
        "13:00 PM",
        "Friday 22:00",
        "Sun 01:30",
        "Samedi 12:00",
        "manual",
        "primary",
        "primaryoverride",
        "secondary",
        "both",
        "paper",
        "live",
        "IB Key",
        "Europe/Zurich",
        "Not/AZone",
        "accept",
        "a\"b\\c",
        "é字",
        "x\ty",
    ];
    let env_names = [
        "TWS_USERID",
        "TWS_PASSWORD",
        "TWS_PASSWORD_FILE",
        "TRADING_MODE",
        "READ_ONLY_API",
        "TWOFA_TIMEOUT_ACTION",
        "TWOFA_DEVICE",
        "TWOFA_EXIT_INTERVAL",
        "RELOGIN_AFTER_TWOFA_TIMEOUT",
        "BYPASS_WARNING",
        "AUTO_RESTART_TIME",
        "AUTO_LOGOFF_TIME",
        "TWS_COLD_RESTART",
        "SAVE_TWS_SETTINGS",
        "EXISTING_SESSION_DETECTED_ACTION",
        "ALLOW_BLIND_TRADING",
        "TIME_ZONE",
        "TZ",
        "TWS_SETTINGS_PATH",
        "TWS_ACCEPT_INCOMING",
        "TWS_MASTER_CLIENT_ID",
        "CUSTOM_CONFIG",
        "JAVA_HEAP_SIZE",
        "GATEWAY_OR_TWS",
        "TWS_PATH",
        "JAVA_PATH",
        "HEALTHCHECK_CLIENT_ID",
        "IBC_TradingMode",
        "IBC_Nope",
        "USERNAME",
    ];
    let opts = Options {
        password_file: "p".into(),
        totp_file: "t".into(),
        token_file: "tok".into(),
        credentials: false,
        today: jiff::civil::Date::constant(2026, 3, 10),
        ini_name: "config.ini".into(),
        env_name: "env".into(),
    };
    let env = Env {
        home: Some("/home/u".into()),
        state_directory: Some("/var/lib/ibwarden/t".into()),
        ..Env::default()
    };
    let path = Path::new("/etc/ibwarden/t.toml");
    let check = |ini: Option<&str>, vars: &[ibc_import::EnvVar], what: &str| {
        // Both ways of referencing secrets: files and systemd credentials.
        let with_credentials = Options {
            credentials: true,
            ..opts.clone()
        };
        for opts in [&opts, &with_credentials] {
            let c = ibc_import::convert(ini, vars, opts).unwrap_or_else(|e| panic!("{what}: {e}"));
            if let Err(e) = Config::from_str_with_env(&c.toml, path, &env) {
                panic!("{what}: the config does not load:\n{e}\n---\n{}", c.toml);
            }
        }
    };
    let mut n = 0;
    for key in ibc_import::IBC_KEYS {
        for v in values {
            // Java properties: escape what the format would otherwise eat.
            let escaped = v.replace('\\', "\\\\").replace('\t', "\\t");
            check(
                Some(&format!("{key}={escaped}\n")),
                &[],
                &format!("{key}={v:?}"),
            );
            n += 1;
        }
    }
    for name in env_names {
        for v in values {
            let var = ibc_import::EnvVar {
                name: name.into(),
                value: v.into(),
                line: 1,
            };
            check(None, &[var], &format!("{name}={v:?}"));
            n += 1;
        }
    }
    check(
        Some("OverrideTwsApiPort=7462\nCommandServerPort=7462\n"),
        &[],
        "port conflict",
    );
    check(
        Some("TradingMode=paper\nCommandServerPort=4002\n"),
        &[],
        "default port conflict",
    );
    assert!(n > 3000);
}

/// `--systemd`: the config references the credentials ibwarden@.service loads, and the
/// password lands in the credential store under the name the unit's LoadCredential= line
/// looks up. Proven by doing what systemd does (copy each credstore file to
/// $CREDENTIALS_DIRECTORY/ID) and running `ibwarden check`.
#[test]
fn systemd_mode_writes_credentials_the_unit_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("etc/main.toml");
    fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
    let credstore = dir.path().join("credstore");
    let o = import(&[
        sample_ini().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--systemd".as_ref(),
        "--credstore".as_ref(),
        credstore.as_os_str(),
    ]);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(!stderr.contains("Fixture-Pass-7") && o.stdout.is_empty());
    let toml = fs::read_to_string(&out).expect("toml");
    assert!(!toml.contains("Fixture-Pass-7"));
    let config = load(&out);
    assert_eq!(
        config.account.password,
        SecretSource::Credential("password".into())
    );
    assert_eq!(
        config.account.totp,
        Some(SecretSource::Credential("totp".into()))
    );
    let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&credstore), 0o700);
    // The activation code is a to-do, with the exact file the unit reads.
    assert!(
        stderr.contains(&format!("{}/ibwarden-main-totp", credstore.display())),
        "{stderr}"
    );

    // What systemd does for ibwarden@main with the unit's LoadCredential= lines.
    let unit = fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packaging/systemd/ibwarden@.service"),
    )
    .expect("unit");
    let creds = dir.path().join("run-credentials");
    fs::create_dir_all(&creds).expect("mkdir");
    let mut loaded = Vec::new();
    for line in unit
        .lines()
        .filter_map(|l| l.strip_prefix("LoadCredential="))
    {
        let (id, name) = line.split_once(':').expect("ID:NAME");
        let src = credstore.join(name.replace("%i", "main"));
        if src.exists() {
            assert_eq!(mode(&src), 0o600, "{}", src.display());
            fs::copy(&src, creds.join(id)).expect("copy");
            loaded.push(id.to_string());
        }
    }
    assert_eq!(loaded, vec!["password".to_string()]);
    assert_eq!(
        fs::read_to_string(creds.join("password")).expect("cred"),
        "Fixture-Pass-7\n"
    );
    let o = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&out)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env("STATE_DIRECTORY", dir.path().join("state"))
        .output()
        .expect("check");
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("ok   password: systemd credential password"),
        "{stdout}{}",
        text(&o.stderr)
    );
    assert!(stdout.contains("FAIL activation code"), "{stdout}");
    assert!(!stdout.contains("Fixture-Pass-7"));
}

/// IBC's command server had no token; ibwarden's requires one, so the import writes a
/// random one (private, next to the config) and references it.
#[test]
fn a_mapped_command_server_gets_a_random_private_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ini = dir.path().join("config.ini");
    fs::write(
        &ini,
        "IbLoginId=someone\nTradingMode=paper\nCommandServerPort=7462\n",
    )
    .expect("write ini");
    let out = dir.path().join("desk.toml");
    let o = import(&[ini.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let token_path = dir.path().join("desk.ibc-token");
    let token = fs::read_to_string(&token_path).expect("token written");
    let token = token.strip_suffix('\n').expect("one line");
    assert_eq!(token.len(), 32, "128 bits as hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(
        fs::metadata(&token_path)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!stderr.contains(token), "the token is not printed");
    assert!(stderr.contains("AUTH <token>"), "{stderr}");
    let config = load(&out);
    assert_eq!(config.control.ibc_command_port, Some(7462));
    assert_eq!(config.control.ibc_command_auth_file, Some(token_path));
    assert!(!config.control.ibc_command_open);
    // A second import does not overwrite it silently.
    let o = import(&[ini.as_os_str(), "--out".as_ref(), out.as_os_str()]);
    assert!(!o.status.success());
}

#[test]
fn the_ibc_settings_table_in_docs_is_what_the_converter_does() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["import-ibc", "--settings-table"])
        .output()
        .expect("ibwarden");
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).expect("utf8");
    assert!(
        table.lines().count() > 50,
        "one row per IBC setting: {table}"
    );
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ibc-settings.md"),
    )
    .expect("docs/ibc-settings.md");
    assert!(
        doc.contains(&table),
        "docs/ibc-settings.md is out of date: regenerate its table with \
         `ibwarden import-ibc --settings-table`"
    );
}
