//! The `ibwarden` binary end to end: `check`, `totp`, `setup`, `secret set`, `--help`,
//! `--version`, run as a user would, each in a fresh temporary directory with a clean
//! environment. The last test runs every subcommand, including error paths, with
//! distinctive secrets and checks that none of them appears in any output.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// RFC 6238 appendix B SHA-1 key ("12345678901234567890") in base32.
const RFC_KEY: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
/// A distinctive password and activation code for the leak test.
const LEAK_PASSWORD: &str = "Pw-Zebra-7731-Kumquat";
const LEAK_CODE: &str = "QWERTYUIOPASDFGHZXCVBNMQWERTYUIO";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file with the given mode, creating parent directories.
    fn write(&self, rel: &str, content: &str, mode: u32) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, content).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    /// A live config with password and activation code files (mode 0600).
    fn live_config(&self, code: &str) -> PathBuf {
        self.write("secrets/password", &format!("{LEAK_PASSWORD}\n"), 0o600);
        self.write("secrets/totp", &format!("{code}\n"), 0o600);
        self.write(
            "config.toml",
            "[account]\nusername = \"jdoe\"\npassword_file = \"secrets/password\"\ntotp_file = \"secrets/totp\"\n",
            0o644,
        )
    }

    /// Runs the binary with a clean environment (HOME inside the temp dir).
    fn run(&self, args: &[&str], stdin: &str) -> Output {
        self.run_env(args, stdin, &[])
    }

    fn run_env(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ibwarden"));
        cmd.args(args)
            .env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ibwarden");
        // A child that has already read what it needs (or failed) may have closed its stdin:
        // a broken pipe here is not the test's verdict; the exit status and output are, and
        // every caller asserts on them.
        if let Err(e) = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
        {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
        child.wait_with_output().expect("wait")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn both(o: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", stdout(o), stderr(o))
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn totp_at_59_prints_the_rfc_code() {
    let env = Env::new();
    let cfg = env.live_config(RFC_KEY);
    let out = env.run(
        &[
            "totp",
            "--config",
            cfg.to_str().expect("utf8"),
            "--at",
            "59",
        ],
        "",
    );
    assert!(out.status.success(), "{}", both(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("287082"));
    let second = lines.next().expect("second line");
    assert!(second.starts_with("valid for 1 s"), "{second}");
    // Another RFC vector (t = 1111111109: 07081804 → 081804), and normalisation of the
    // code as people paste it.
    env.write(
        "secrets/totp",
        "gezd gnbv gy3t qojq gezd gnbv gy3t qojq\n",
        0o600,
    );
    let out = env.run(&["totp", "-c", "config.toml", "--at", "1111111109"], "");
    assert_eq!(
        stdout(&out).lines().next(),
        Some("081804"),
        "{}",
        both(&out)
    );
    assert!(stdout(&out).contains("valid for 1 s"), "{}", both(&out));
}

#[test]
fn totp_without_activation_code_explains() {
    let env = Env::new();
    env.write("pw", "x\n", 0o600);
    env.write(
        "paper.toml",
        "[gateway]\ntrading_mode = \"paper\"\n[account]\nusername = \"u\"\npassword_file = \"pw\"\n",
        0o644,
    );
    let out = env.run(&["totp", "--config", "paper.toml"], "");
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stderr(&out).contains("no activation code configured"),
        "{}",
        both(&out)
    );
}

#[test]
fn check_reports_unknown_key_with_file_and_line() {
    let env = Env::new();
    env.live_config(RFC_KEY);
    let cfg = env.write(
        "bad.toml",
        "[account]\nusername = \"jdoe\"\npassword_file = \"secrets/password\"\ntotp_file = \"secrets/totp\"\n\n[login]\nmin_code_valdity = \"8s\"\n",
        0o644,
    );
    let out = env.run(&["check", "--config", cfg.to_str().expect("utf8")], "");
    assert_eq!(out.status.code(), Some(78), "{}", both(&out));
    let expected = format!(
        "FAIL config: {}:7:1: key `login.min_code_valdity`: unknown key; did you mean `min_code_validity`?",
        cfg.display()
    );
    assert!(
        stdout(&out).lines().any(|l| l == expected),
        "{}",
        both(&out)
    );
    // Other subcommands refuse the file too, with the config exit code (EX_CONFIG).
    let out = env.run(&["totp", "--config", cfg.to_str().expect("utf8")], "");
    assert_eq!(out.status.code(), Some(78), "{}", both(&out));
    assert!(
        stderr(&out).contains(&format!("{}:7:1:", cfg.display())),
        "{}",
        both(&out)
    );
}

#[test]
fn check_refuses_group_readable_secret_and_names_the_fix() {
    let env = Env::new();
    let cfg = env.live_config(RFC_KEY);
    let pw = env.path("secrets/password");
    fs::set_permissions(&pw, fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = env.run(&["check", "--config", cfg.to_str().expect("utf8")], "");
    assert_eq!(out.status.code(), Some(78), "{}", both(&out));
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("FAIL password:"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no password line\n{}", both(&out)));
    assert!(line.contains(&pw.display().to_string()), "{line}");
    assert!(
        line.contains(&format!("chmod 600 {}", pw.display())),
        "{line}"
    );
}

/// A fake but well-formed install, java and Xvfb: every check but the clock must pass.
#[test]
fn check_passes_on_a_complete_setup() {
    let env = Env::new();
    env.live_config(RFC_KEY);
    env.write("gw/jars/jts4launch.jar", "not really a jar", 0o644);
    env.write("gw/ibgateway.vmoptions", "-Xmx768m\n", 0o644);
    env.write("bin/java", "#!/bin/sh\nexit 0\n", 0o755);
    env.write("bin/Xvfb", "#!/bin/sh\nexit 0\n", 0o755);
    let cfg = env.write(
        "full.toml",
        "[gateway]\ninstall_dir = \"gw\"\njava = \"bin/java\"\n[account]\nusername = \"jdoe\"\npassword_file = \"secrets/password\"\ntotp_file = \"secrets/totp\"\n[state]\ndir = \"state\"\n",
        0o644,
    );
    let path = format!("{}:/usr/bin:/bin", env.path("bin").display());
    let out = env.run_env(
        &["check", "--config", cfg.to_str().expect("utf8")],
        "",
        &[("PATH", &path)],
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    for name in [
        "config",
        "password",
        "activation code",
        "install",
        "java",
        "Xvfb",
        "state dir",
    ] {
        let line = lines
            .iter()
            .find(|l| l[5..].starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} line\n{}", both(&out)));
        assert!(line.starts_with("ok   "), "{line}\n{}", both(&out));
    }
    assert!(text.contains("valid base32, 160-bit key"), "{text}");
    // The memory line reads the install's -Xmx (this machine has far more than 1.1 GiB).
    let memory = lines
        .iter()
        .find(|l| l[5..].starts_with("memory:"))
        .unwrap_or_else(|| panic!("no memory line\n{text}"));
    assert!(
        memory.contains("needs about 1.1 GiB (-Xmx 768 MiB + 400 MiB native)"),
        "{memory}"
    );
    assert!(
        text.contains(&env.path("bin/Xvfb").display().to_string()),
        "{text}"
    );
    let clock = lines
        .iter()
        .find(|l| l[5..].starts_with("clock:"))
        .expect("clock line");
    // The clock may legitimately be unsynchronised in a container: ok or warn, and the exit
    // status follows the other lines.
    assert!(
        clock.starts_with("ok") || clock.starts_with("warn"),
        "{clock}"
    );
    assert!(out.status.success(), "{}", both(&out));

    // Other secret files named by the config are checked the same way.
    env.write("secrets/webhook", "https://ntfy.sh/TopicToken-991\n", 0o644);
    let mut text = fs::read_to_string(&cfg).expect("read");
    text.push_str("[notify]\nwebhook_url_file = \"secrets/webhook\"\nwebhook_preset = \"ntfy\"\n");
    let cfg2 = env.write("full2.toml", &text, 0o644);
    let out = env.run_env(
        &["check", "--config", cfg2.to_str().expect("utf8")],
        "",
        &[("PATH", &path)],
    );
    assert_eq!(out.status.code(), Some(78), "{}", both(&out));
    assert!(
        stdout(&out).contains("FAIL webhook url: secret file"),
        "{}",
        both(&out)
    );
    assert!(!both(&out).contains("TopicToken-991"), "{}", both(&out));

    // Without the install, java (configured) still passes but install fails.
    fs::remove_file(env.path("gw/ibgateway.vmoptions")).expect("rm");
    let out = env.run_env(
        &["check", "--config", cfg.to_str().expect("utf8")],
        "",
        &[("PATH", &path)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("FAIL install:"), "{}", both(&out));
    assert!(
        stdout(&out).contains("ibgateway.vmoptions"),
        "{}",
        both(&out)
    );
}

#[test]
fn check_reports_bad_activation_code_by_position() {
    let env = Env::new();
    let cfg = env.live_config("GEZDGNB0GY3TQOJQGEZDGNBVGY3TQOJQ");
    let out = env.run(&["check", "--config", cfg.to_str().expect("utf8")], "");
    assert_eq!(out.status.code(), Some(78), "{}", both(&out));
    assert!(
        stdout(&out).contains("FAIL activation code: activation code from file"),
        "{}",
        both(&out)
    );
    assert!(
        stdout(&out).contains("character 8 of the activation code is not base32"),
        "{}",
        both(&out)
    );
}

#[test]
fn setup_live_through_a_pipe() {
    let env = Env::new();
    let cfg = env.path("etc/main.toml");
    let answers = format!("live\njdoe\n{LEAK_PASSWORD}\n{LEAK_PASSWORD}\n{RFC_KEY}\n\ny\n");
    let out = env.run(
        &["setup", "--config", cfg.to_str().expect("utf8")],
        &answers,
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(stderr(&out).contains("Current code: "), "{}", both(&out));
    for f in ["etc/main.toml", "etc/main.password", "etc/main.totp"] {
        assert_eq!(mode_of(&env.path(f)), 0o600, "{f}");
    }
    assert_eq!(
        fs::read_to_string(env.path("etc/main.password")).expect("read"),
        format!("{LEAK_PASSWORD}\n")
    );
    // The written config works for the other subcommands.
    let out = env.run(
        &[
            "totp",
            "--config",
            cfg.to_str().expect("utf8"),
            "--at",
            "59",
        ],
        "",
    );
    assert_eq!(
        stdout(&out).lines().next(),
        Some("287082"),
        "{}",
        both(&out)
    );

    // An existing config is not replaced without consent.
    let before = fs::read_to_string(&cfg).expect("read");
    let out = env.run(&["setup", "--config", cfg.to_str().expect("utf8")], "n\n");
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(stderr(&out).contains("Nothing written"), "{}", both(&out));
    assert_eq!(fs::read_to_string(&cfg).expect("read"), before);
}

#[test]
fn setup_code_not_confirmed_fails_with_advice() {
    let env = Env::new();
    let answers =
        format!("live\njdoe\n{LEAK_PASSWORD}\n{LEAK_PASSWORD}\n{RFC_KEY}\n/opt/nowhere\nn\n");
    let out = env.run(&["setup", "--config", "c.toml"], &answers);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stderr(&out).contains("ibwarden secret set totp"),
        "{}",
        both(&out)
    );
    let text = fs::read_to_string(env.path("c.toml")).expect("config written");
    assert!(text.contains("install_dir = \"/opt/nowhere\""), "{text}");
}

#[test]
fn setup_answers_are_case_blind_a_pipe_answers_password_again_and_paper_drops_the_old_code() {
    let env = Env::new();
    let answers = format!("LIVE\njdoe\n{LEAK_PASSWORD}\n{LEAK_PASSWORD}\n{RFC_KEY}\n\ny\n");
    let out = env.run(&["setup", "--config", "acct.toml"], &answers);
    assert!(out.status.success(), "{}", both(&out));
    assert!(stderr(&out).contains("Password again"), "{}", both(&out));
    assert!(env.path("acct.totp").exists());
    // The install was looked for: not found here, said, not refused.
    assert!(stderr(&out).contains("Note: "), "{}", both(&out));
    // Two different passwords from a pipe are refused, as at a terminal.
    let out = env.run(
        &["setup", "--config", "other.toml"],
        "paper\nu\none\ntwo\n\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(stderr(&out).contains("differ"), "{}", both(&out));
    // live → Paper: the activation code file goes.
    let out = env.run(
        &["setup", "--config", "acct.toml", "--force"],
        "Paper\npaperuser\npw\npw\n\n",
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(!env.path("acct.totp").exists(), "{}", both(&out));
    let text = fs::read_to_string(env.path("acct.toml")).expect("read");
    assert!(text.contains("trading_mode = \"paper\""), "{text}");
}

#[test]
fn setup_paper_needs_no_activation_code() {
    let env = Env::new();
    let out = env.run(
        &["setup", "--config", "paper.toml"],
        "paper\npaperuser\npw\npw\n\n",
    );
    assert!(out.status.success(), "{}", both(&out));
    assert!(!env.path("paper.totp").exists());
    assert!(!stderr(&out).contains("Activation code"), "{}", both(&out));
    let text = fs::read_to_string(env.path("paper.toml")).expect("read");
    assert!(text.contains("trading_mode = \"paper\""), "{text}");
    assert!(!text.contains("totp_file"), "{text}");
}

#[test]
fn setup_rejects_a_bad_activation_code_from_a_pipe() {
    let env = Env::new();
    let out = env.run(&["setup", "--config", "c.toml"], "live\nu\npw\npw\nGEZ0\n");
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(stderr(&out).contains("not base32"), "{}", both(&out));
    assert!(
        !env.path("c.toml").exists(),
        "nothing is written on a bad answer"
    );
    // The 6-digit code from the app instead of the activation code is named as such.
    let out = env.run(
        &["setup", "--config", "c.toml"],
        "live\nu\npw\npw\n123456\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stderr(&out).contains("6-digit one-time code, not the activation code"),
        "{}",
        both(&out)
    );
    assert!(
        !env.path("c.toml").exists(),
        "nothing is written on a bad answer"
    );
}

#[test]
fn secret_set_replaces_files_atomically() {
    let env = Env::new();
    let cfg = env.live_config("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    let c = cfg.to_str().expect("utf8");
    let out = env.run(
        &["secret", "set", "totp", "--config", c],
        &format!("{}\n", RFC_KEY.to_lowercase()),
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(mode_of(&env.path("secrets/totp")), 0o600);
    assert_eq!(
        fs::read_to_string(env.path("secrets/totp")).expect("read"),
        format!("{RFC_KEY}\n")
    );
    let out = env.run(&["totp", "--config", c, "--at", "59"], "");
    assert_eq!(
        stdout(&out).lines().next(),
        Some("287082"),
        "{}",
        both(&out)
    );

    let out = env.run(
        &["secret", "set", "password", "--config", c],
        "n3w-passw0rd\n",
    );
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(
        fs::read_to_string(env.path("secrets/password")).expect("read"),
        "n3w-passw0rd\n"
    );
    assert_eq!(mode_of(&env.path("secrets/password")), 0o600);

    // A bad code leaves the file alone.
    let out = env.run(&["secret", "set", "totp", "--config", c], "not-a-code!\n");
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(stderr(&out).contains("nothing written"), "{}", both(&out));
    assert_eq!(
        fs::read_to_string(env.path("secrets/totp")).expect("read"),
        format!("{RFC_KEY}\n")
    );

    // A secret from the environment cannot be written by ibwarden.
    env.write(
        "envcfg.toml",
        "[account]\nusername = \"u\"\npassword_env = \"IBKR_PW\"\ntotp_file = \"secrets/totp\"\n",
        0o644,
    );
    let out = env.run(
        &["secret", "set", "password", "--config", "envcfg.toml"],
        "x\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stderr(&out).contains("environment variable IBKR_PW"),
        "{}",
        both(&out)
    );
}

#[test]
fn help_and_version() {
    let env = Env::new();
    let out = env.run(&["--version"], "");
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("ibwarden {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        &["--help"][..],
        &["check", "--help"],
        &["totp", "--help"],
        &["setup", "--help"],
        &["secret", "--help"],
        &["secret", "set", "--help"],
    ] {
        let out = env.run(args, "");
        assert!(out.status.success(), "{args:?}: {}", both(&out));
        assert!(
            stdout(&out).contains("Usage: ibwarden"),
            "{args:?}: {}",
            both(&out)
        );
    }
    let out = env.run(&["check", "--bogus"], "");
    assert_eq!(out.status.code(), Some(2));
}

/// Every subcommand, on success and error paths, at the most verbose log level and in every
/// log format: neither the password nor the activation code (in any 8-character piece,
/// any case) appears in stdout or stderr.
#[test]
fn no_secret_value_in_any_output() {
    let env = Env::new();
    let cfg = env.live_config(LEAK_CODE);
    let c = cfg.to_str().expect("utf8").to_string();
    let spaced_code = LEAK_CODE
        .as_bytes()
        .chunks(4)
        .map(|ch| std::str::from_utf8(ch).expect("ascii"))
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    // Configs that go wrong in the ways people get them wrong.
    env.write(
        "inline.toml",
        &format!(
            "[account]\nusername = \"u\"\npassword = \"{LEAK_PASSWORD}\"\ntotp = \"{LEAK_CODE}\"\n"
        ),
        0o644,
    );
    env.write(
        "env-as-value.toml",
        &format!("[account]\nusername = \"u\"\npassword_env = \"{LEAK_PASSWORD}\"\ntotp_env = \"{LEAK_CODE}\"\n"),
        0o644,
    );
    env.write(
        "envsrc.toml",
        "[account]\nusername = \"u\"\npassword_env = \"IBKR_PW\"\ntotp_env = \"IBKR_TOTP\"\n",
        0o644,
    );
    // The activation code with a typo (a '1', not base32) and the password group-readable.
    env.write("bad/totp", &format!("{}1\n", &LEAK_CODE[..31]), 0o600);
    env.write("bad/password", LEAK_PASSWORD, 0o644);
    env.write(
        "bad.toml",
        "[account]\nusername = \"u\"\npassword_file = \"bad/password\"\ntotp_file = \"bad/totp\"\n",
        0o644,
    );
    let secret_env = [("IBKR_PW", LEAK_PASSWORD), ("IBKR_TOTP", LEAK_CODE)];

    let runs: Vec<(Vec<String>, String, i32)> = vec![
        // `check` fails on all of these: there is no gateway install in the temp dir (1),
        // and a config or secret is unusable (78, as `run`).
        (
            vec!["check".into(), "-c".into(), c.clone()],
            String::new(),
            1,
        ),
        (
            vec!["check".into(), "-c".into(), "inline.toml".into()],
            String::new(),
            78,
        ),
        (
            vec!["check".into(), "-c".into(), "env-as-value.toml".into()],
            String::new(),
            78,
        ),
        (
            vec!["check".into(), "-c".into(), "envsrc.toml".into()],
            String::new(),
            1,
        ),
        (
            vec!["check".into(), "-c".into(), "bad.toml".into()],
            String::new(),
            78,
        ),
        (
            vec!["totp".into(), "-c".into(), c.clone()],
            String::new(),
            0,
        ),
        (
            vec!["totp".into(), "-c".into(), "bad.toml".into()],
            String::new(),
            78,
        ),
        (
            vec!["totp".into(), "-c".into(), "envsrc.toml".into()],
            String::new(),
            0,
        ),
        (
            vec!["totp".into(), "-c".into(), "inline.toml".into()],
            String::new(),
            78,
        ),
        (
            vec!["setup".into(), "-c".into(), "new.toml".into()],
            format!("live\nu\n{LEAK_PASSWORD}\n{LEAK_PASSWORD}\n{spaced_code}\n\ny\n"),
            0,
        ),
        (
            vec!["setup".into(), "-c".into(), "new2.toml".into()],
            format!(
                "live\nu\n{LEAK_PASSWORD}\n{LEAK_PASSWORD}\n{}1\n",
                &LEAK_CODE[..31]
            ),
            1,
        ),
        (
            vec!["setup".into(), "-c".into(), "new3.toml".into()],
            format!("live\nu\n{LEAK_PASSWORD}\n"),
            1,
        ),
        (
            vec![
                "secret".into(),
                "set".into(),
                "totp".into(),
                "-c".into(),
                c.clone(),
            ],
            format!("{spaced_code}\n"),
            0,
        ),
        (
            vec![
                "secret".into(),
                "set".into(),
                "totp".into(),
                "-c".into(),
                c.clone(),
            ],
            format!("{}8\n", &LEAK_CODE[..31]),
            1,
        ),
        (
            vec![
                "secret".into(),
                "set".into(),
                "password".into(),
                "-c".into(),
                c.clone(),
            ],
            format!("{LEAK_PASSWORD}\n"),
            0,
        ),
        (
            vec![
                "secret".into(),
                "set".into(),
                "password".into(),
                "-c".into(),
                "envsrc.toml".into(),
            ],
            format!("{LEAK_PASSWORD}\n"),
            1,
        ),
    ];
    let needles: Vec<String> = {
        let mut n = vec![LEAK_PASSWORD.to_lowercase()];
        // Every 8-character window of the activation code.
        for i in 0..=LEAK_CODE.len() - 8 {
            n.push(LEAK_CODE[i..i + 8].to_lowercase());
        }
        n.push(spaced_code[..9].to_string());
        n
    };
    let mut ran = 0;
    for format in ["human", "journald", "json"] {
        for (args, stdin, code) in &runs {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.extend(["-vv", "--log-format", format]);
            let out = env.run_env(
                &a,
                stdin,
                &[("RUST_LOG", "trace"), secret_env[0], secret_env[1]],
            );
            // The run took the path it was meant to (success, failed check, bad config...).
            assert_eq!(out.status.code(), Some(*code), "{a:?}\n{}", both(&out));
            let all = both(&out).to_lowercase();
            for needle in &needles {
                assert!(
                    !all.contains(needle.as_str()),
                    "{a:?} leaked {needle:?}:\n{}",
                    both(&out)
                );
            }
            ran += 1;
            // setup writes new.toml; remove it so the next format asks the same questions.
            let _ = fs::remove_file(env.path("new.toml"));
        }
    }
    assert_eq!(ran, runs.len() * 3);
}

#[test]
fn systemd_credentials_are_read_from_credentials_directory() {
    let env = Env::new();
    env.write("creds/ibkr-totp", &format!("{RFC_KEY}\n"), 0o400);
    env.write("creds/ibkr-password", "pw\n", 0o400);
    env.write(
        "cred.toml",
        "[account]\nusername = \"u\"\npassword_credential = \"ibkr-password\"\ntotp_credential = \"ibkr-totp\"\n",
        0o644,
    );
    let creds = env.path("creds");
    let out = env.run_env(
        &["totp", "-c", "cred.toml", "--at", "59"],
        "",
        &[("CREDENTIALS_DIRECTORY", creds.to_str().expect("utf8"))],
    );
    assert_eq!(
        stdout(&out).lines().next(),
        Some("287082"),
        "{}",
        both(&out)
    );
    // Outside systemd the error says what is missing.
    let out = env.run(&["totp", "-c", "cred.toml"], "");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("$CREDENTIALS_DIRECTORY is not set"),
        "{}",
        both(&out)
    );
}

#[test]
fn check_warns_about_a_configured_settings_dir_that_does_not_exist() {
    let env = Env::new();
    env.live_config(RFC_KEY);
    let cfg = env.write(
        "s.toml",
        "[gateway]\nsettings_dir = \"/nonexistent/jts\"\n\n[account]\nusername = \"jdoe\"\npassword_file = \"secrets/password\"\ntotp_file = \"secrets/totp\"\n",
        0o644,
    );
    let out = env.run(&["check", "--config", cfg.to_str().expect("utf8")], "");
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("warn settings dir: /nonexistent/jts does not exist")),
        "{}",
        both(&out)
    );
    // The default one, inside the state dir, is simply created on the first run.
    let out = env.run(
        &[
            "check",
            "--config",
            env.path("config.toml").to_str().expect("utf8"),
        ],
        "",
    );
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("ok   settings dir:")),
        "{}",
        both(&out)
    );
}
