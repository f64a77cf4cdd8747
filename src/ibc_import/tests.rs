//! Unit tests of the parent module.

use super::*;

fn opts() -> Options {
    Options {
        password_file: "main.password".into(),
        totp_file: "main.totp".into(),
        token_file: "main.ibc-token".into(),
        credentials: false,
        today: Date::constant(2026, 11, 24),
        ini_name: "config.ini".into(),
        env_name: ".env".into(),
    }
}

#[test]
fn properties_syntax() {
    let text = "# c\n! c\n  a = 1 \nb:2\nc 3\nd\\\n   e=4\nf=\\u0041\\tx\\\n  y\ng\n";
    let p = parse_properties(text, "x").expect("parses");
    let kv: Vec<(&str, &str, usize)> = p
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str(), p.line))
        .collect();
    assert_eq!(
        kv,
        vec![
            ("a", "1 ", 3),
            ("b", "2", 4),
            ("c", "3", 5),
            ("de", "4", 6),
            ("f", "A\txy", 8),
            ("g", "", 10),
        ]
    );
    let err = parse_properties("ok=1\nbad=\\u12G4\n", "c.ini").expect_err("bad escape");
    assert_eq!(err.to_string(), "c.ini:2: malformed \\uXXXX escape");
}

#[test]
fn env_file_syntax() {
    let text = "# c\nA=1\nexport B=\"x y\"\nC='z' \nD=v # comment\nE=\n";
    let v = parse_env_file(text, "e").expect("parses");
    let kv: Vec<(&str, &str)> = v
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(
        kv,
        vec![("A", "1"), ("B", "x y"), ("C", "z"), ("D", "v"), ("E", "")]
    );
    let err = parse_env_file("A=1\nNOPE\n", "e").expect_err("no =");
    assert_eq!(err.to_string(), "e:2: expected NAME=VALUE");
    assert!(parse_env_file("1A=x\n", "e").is_err());
}

#[test]
fn ampm_times() {
    assert_eq!(parse_ampm("11:59 PM"), Some(Time::constant(23, 59, 0, 0)));
    assert_eq!(parse_ampm("12:00 AM"), Some(Time::constant(0, 0, 0, 0)));
    assert_eq!(parse_ampm("12:00 PM"), Some(Time::constant(12, 0, 0, 0)));
    assert_eq!(parse_ampm("08:05 am"), Some(Time::constant(8, 5, 0, 0)));
    assert_eq!(parse_ampm("23:10"), Some(Time::constant(23, 10, 0, 0)));
    assert_eq!(parse_ampm("13:00 PM"), None);
    assert_eq!(parse_ampm("noon"), None);
}

#[test]
fn times_convert_into_new_york() {
    let ini = "AutoRestartTime=11:59 PM\nColdRestartTime=07:05\nClosedownAt=Friday 22:00\n";
    let env = parse_env_file("TIME_ZONE=Europe/Zurich\n", ".env").expect("env");
    let c = convert(Some(ini), &env, &opts()).expect("converts");
    // 2026-11-24: Zurich is UTC+1, New York UTC-5: 6 hours behind.
    assert!(c.toml.contains("daily_restart = \"17:59\""), "{}", c.toml);
    assert!(
        c.toml.contains("weekly_cold_restart = \"Sun 01:05\""),
        "{}",
        c.toml
    );
    assert!(c.toml.contains("closedown = \"Fri 16:00\""), "{}", c.toml);
    // Asia/Tokyo: Sunday 07:05 is Saturday 17:05 in New York.
    let env = parse_env_file("TZ=Asia/Tokyo\n", ".env").expect("env");
    let c = convert(Some("ColdRestartTime=07:05\n"), &env, &opts()).expect("converts");
    assert!(
        c.toml.contains("weekly_cold_restart = \"Sat 17:05\""),
        "{}",
        c.toml
    );
    // Without a zone: kept, with a note.
    let c = convert(Some("AutoRestartTime=11:59 PM\n"), &[], &opts()).expect("converts");
    assert!(c.toml.contains("daily_restart = \"23:59\""));
    let Outcome::Mapped { note, .. } = &c.report.entry("AutoRestartTime").expect("e").outcome
    else {
        panic!("not mapped");
    };
    assert!(note
        .as_deref()
        .unwrap_or("")
        .contains("assumed America/New_York"));
}

#[test]
fn later_lines_and_env_override() {
    let ini = "TradingMode=live\nTradingMode=paper\n";
    let env = parse_env_file("TRADING_MODE=live\nREAD_ONLY_API=\n", ".env").expect("env");
    let c = convert(Some(ini), &env, &opts()).expect("converts");
    let over: Vec<_> = c
        .report
        .entries
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Overridden { .. }))
        .map(|e| e.origin.line)
        .collect();
    assert_eq!(over, vec![1, 2]);
    assert!(c.toml.contains("trading_mode = \"live\""));
    assert!(c.toml.contains("totp_file = \"main.totp\""));
}

#[test]
fn unknown_keys_are_listed_with_hints() {
    let c = convert(Some("tradingmode=paper\nFoo=1\n"), &[], &opts()).expect("converts");
    let e = c.report.entry("tradingmode").expect("listed");
    assert!(matches!(&e.outcome, Outcome::Unknown { hint: Some(h) } if h.contains("TradingMode")));
    assert!(matches!(
        c.report.entry("Foo").expect("listed").outcome,
        Outcome::Unknown { .. }
    ));
}

#[test]
fn secret_values_are_never_shown() {
    let ini = "IbPassword=Hunter2-Sekret\nMyApiToken=tok-Sekret\n";
    let env = parse_env_file(
        "SSH_PASSPHRASE=pp-Sekret\nVNC_SERVER_PASSWORD=vnc-Sekret\n",
        ".env",
    )
    .expect("env");
    let c = convert(Some(ini), &env, &opts()).expect("converts");
    let report = c.report.to_string();
    let debug = format!("{:?}", c.report);
    for text in [&c.toml, &report, &debug] {
        assert!(!text.contains("Sekret"), "leak in:\n{text}");
    }
    assert_eq!(
        c.password.as_ref().map(Secret::expose),
        Some("Hunter2-Sekret")
    );
    assert!(format!("{c:?}").find("Sekret").is_none());
}
