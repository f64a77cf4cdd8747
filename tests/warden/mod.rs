//! Runs the real `ibwarden run` binary against a simulator install, with a config file,
//! secret files, a private state dir and a test `NOTIFY_SOCKET` that records what ibwarden
//! tells systemd.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ChildGuard, SimInstall, SimProgram, TEST_PASSWORD, TEST_TOTP_SECRET};

/// A running ibwarden.
pub struct Warden {
    pub child: ChildGuard,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    notify: UnixDatagram,
    /// The simulator's record (shown when a wait fails).
    record_path: PathBuf,
    /// Extra environment for ibwarden.
    env: Vec<(String, String)>,
    /// Every datagram received on NOTIFY_SOCKET, in order.
    pub notifications: Vec<String>,
}

/// Writes a secret file with mode 0600.
pub fn write_secret(path: &Path, value: &str) {
    fs::write(path, format!("{value}\n")).expect("write secret");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod secret");
}

impl Warden {
    /// Config text for `install` in `mode` (live|paper), plus `extra` TOML appended.
    pub fn config_text(install: &SimInstall, mode: &str, state_dir: &Path, extra: &str) -> String {
        Warden::config_text_with(install, mode, state_dir, "", extra)
    }

    /// Like [`Warden::config_text`], with `login` (keys only, one per line) added to the
    /// `[login]` table, which the base config already opens.
    pub fn config_text_with(
        install: &SimInstall,
        mode: &str,
        state_dir: &Path,
        login: &str,
        extra: &str,
    ) -> String {
        format!(
            r#"# written by tests/warden
[gateway]
program = "{program}"
install_dir = "{install}"
settings_dir = "{settings}"
trading_mode = "{mode}"
api_port = {port}

[account]
username = "{user}"
password_file = "password"
totp_file = "totp"

[login]
min_code_validity = "8s"
{login}

[state]
dir = "{state}"

[probe]
interval = "2s"
timeout = "1500ms"

{extra}
"#,
            program = match install.program {
                SimProgram::Gateway => "gateway",
                SimProgram::Tws => "tws",
            },
            install = install.install_dir.display(),
            settings = install.settings_dir.display(),
            port = install.api_port,
            user = install.scenario.username(),
            state = state_dir.display(),
        )
    }

    /// Starts `ibwarden run` for `install` with `login` keys in `[login]` and `extra` TOML.
    pub fn start_with(install: &SimInstall, mode: &str, login: &str, extra: &str) -> Warden {
        Warden::start_config(install, |state_dir| {
            Warden::config_text_with(install, mode, state_dir, login, extra)
        })
    }

    /// Starts `ibwarden run` for `install`.
    pub fn start(install: &SimInstall, mode: &str, extra: &str) -> Warden {
        Warden::start_config(install, |state_dir| {
            Warden::config_text(install, mode, state_dir, extra)
        })
    }

    /// Starts `ibwarden run` with extra environment variables (e.g. systemd's
    /// `WATCHDOG_USEC`).
    pub fn start_env(
        install: &SimInstall,
        mode: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Warden {
        let mut w = Warden::start_config(install, |state_dir| {
            Warden::config_text(install, mode, state_dir, extra)
        });
        w.child.signal_group(nix::sys::signal::Signal::SIGKILL);
        w.child.wait_exit(Duration::from_secs(10));
        w.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        w.restart_process();
        w
    }

    /// Starts `ibwarden run` with `password` in its secret file instead of the scenario's.
    pub fn start_password(install: &SimInstall, mode: &str, password: &str) -> Warden {
        Warden::start_config_password(
            install,
            |state_dir| Warden::config_text(install, mode, state_dir, ""),
            password,
        )
    }

    /// Starts `ibwarden run` with the config `config_text` makes for a state dir.
    pub fn start_config(install: &SimInstall, config_text: impl Fn(&Path) -> String) -> Warden {
        Warden::start_config_password(install, config_text, install.scenario.password())
    }

    fn start_config_password(
        install: &SimInstall,
        config_text: impl Fn(&Path) -> String,
        password: &str,
    ) -> Warden {
        let dir = tempfile::Builder::new()
            .prefix("ibw-run-")
            .tempdir()
            .expect("tempdir");
        let state_dir = dir.path().join("state");
        let config = dir.path().join("config.toml");
        fs::write(&config, config_text(&state_dir)).expect("write config");
        write_secret(&dir.path().join("password"), password);
        write_secret(
            &dir.path().join("totp"),
            install
                .scenario
                .get("totp_secret")
                .unwrap_or(TEST_TOTP_SECRET),
        );
        let sock_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&sock_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let log_path = dir.path().join("ibwarden.log");
        let child = spawn_ibwarden(&config, &log_path, dir.path(), &sock_path, &[]);
        Warden {
            child,
            dir,
            config,
            state_dir,
            log_path,
            notify,
            record_path: install.record_path.clone(),
            notifications: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Starts ibwarden again with the same config and state (after a crash of ours).
    pub fn restart_process(&mut self) {
        let sock_path = self.dir.path().join("notify.sock");
        self.child = spawn_ibwarden(
            &self.config,
            &self.log_path,
            self.dir.path(),
            &sock_path,
            &self.env,
        );
    }

    /// Collects notify datagrams until `pred` holds for one; panics after `timeout` with
    /// ibwarden's log tail.
    pub fn wait_notify(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self.notifications.iter().find(|m| pred(m)) {
                return m.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; notifications: {:?}\nibwarden log tail:\n{}\nsimulator record tail:\n{}",
                    self.notifications,
                    self.log_tail(60),
                    crate::common::Record::new(&self.record_path).tail_text(60)
                );
            }
            if let Some(st) = self.child.try_wait() {
                panic!(
                    "ibwarden exited ({st:?}) while waiting for {what}\nlog tail:\n{}",
                    self.log_tail(80)
                );
            }
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.notifications
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// Waits until ibwarden reports ready once more than it has so far (after a restart of
    /// the gateway, or of ibwarden itself). Returns that datagram.
    pub fn wait_ready_again(&mut self, timeout: Duration) -> String {
        self.drain_notifications();
        let is_ready = |m: &String| m.lines().any(|l| l.starts_with("STATUS=ready"));
        let seen = self.notifications.iter().filter(|m| is_ready(m)).count();
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self.notifications.iter().filter(|m| is_ready(m)).nth(seen) {
                return m.clone();
            }
            if Instant::now() >= deadline {
                panic!(
                    "ibwarden did not become ready again within {timeout:?}; notifications: {:?}\nlog tail:\n{}\nsimulator record tail:\n{}",
                    &self.notifications[self.notifications.len().saturating_sub(10)..],
                    self.log_tail(60),
                    crate::common::Record::new(&self.record_path).tail_text(30)
                );
            }
            if let Some(st) = self.child.try_wait() {
                panic!("ibwarden exited ({st:?})\nlog tail:\n{}", self.log_tail(80));
            }
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.notifications
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// True once a `READY=1` datagram has arrived (call [`Warden::drain_notifications`]
    /// first to see the latest).
    pub fn sent_ready(&self) -> bool {
        self.notifications
            .iter()
            .any(|m| m.lines().any(|l| l == "READY=1"))
    }

    /// Reads every notify datagram that has arrived so far (non-blocking beyond 200 ms).
    pub fn drain_notifications(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            self.notifications
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// Waits for a log line containing `needle`; returns the line.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no log line with {needle:?} within {timeout:?}:\n{}\n{}",
                    self.log_tail(40),
                    self.stacks()
                );
            }
            if let Some(st) = self.child.try_wait() {
                panic!(
                    "ibwarden exited ({st:?}) while waiting for {needle:?}\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `READY=1`, or for ibwarden to stop logging in with a reason (a phase change
    /// to `Halted`): `Ok` with which; `Err` at the timeout.
    pub fn wait_ready_or_log(&mut self, _halt: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if self.sent_ready() {
                return Ok("ready".into());
            }
            if let Some(line) = self.log().lines().find(|l| l.contains("to=Halted")) {
                return Ok(line.to_string());
            }
            if Instant::now() >= deadline {
                return Err(format!("neither ready nor halted after {timeout:?}"));
            }
            if let Some(st) = self.child.try_wait() {
                return Err(format!("ibwarden exited ({st:?})"));
            }
            if let Ok(n) = self.notify.recv(&mut buf) {
                self.notifications
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    }

    /// Waits for `READY=1`; returns that datagram (with its STATUS line).
    pub fn wait_ready(&mut self, timeout: Duration) -> String {
        self.wait_notify("READY=1", timeout, |m| m.lines().any(|l| l == "READY=1"))
    }

    /// Everything ibwarden logged.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Where ibwarden's threads are, for a timeout's panic message: each thread's kernel
    /// wait channel, and every thread's backtrace when gdb is installed.
    pub fn stacks(&self) -> String {
        let pid = self.child.pid();
        let mut out = format!("threads of ibwarden (pid {pid}):\n");
        if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
            for t in rd.flatten() {
                let dir = t.path();
                let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
                out.push_str(&format!(
                    "  {} {} wchan={}\n",
                    t.file_name().to_string_lossy(),
                    read("comm").trim(),
                    read("wchan").trim()
                ));
            }
        }
        if let Ok(o) = Command::new("gdb")
            .args(["-batch", "-nx", "-p", &pid.to_string()])
            .args(["-ex", "thread apply all bt 30"])
            .stdin(Stdio::null())
            .output()
        {
            out.push_str(&String::from_utf8_lossy(&o.stdout));
        }
        out
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// No log line, no notification and no state file holds the password or activation code.
    pub fn assert_no_secret_in_logs(&self, install: &SimInstall) {
        let secrets = [
            install.scenario.password().to_string(),
            TEST_PASSWORD.to_string(),
            install
                .scenario
                .get("totp_secret")
                .unwrap_or(TEST_TOTP_SECRET)
                .to_string(),
        ];
        let mut hay = vec![("log".to_string(), self.log())];
        for n in &self.notifications {
            hay.push(("notify".into(), n.clone()));
        }
        for entry in walk(&self.state_dir) {
            if let Ok(t) = fs::read(&entry) {
                hay.push((
                    entry.display().to_string(),
                    String::from_utf8_lossy(&t).into_owned(),
                ));
            }
        }
        for (name, text) in hay {
            for s in &secrets {
                assert!(
                    !s.is_empty() && !text.contains(s.as_str()),
                    "a secret leaked into {name}"
                );
            }
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop_and_wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.child.signal_group(nix::sys::signal::Signal::SIGTERM);
        self.child.wait_exit(timeout)
    }
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn spawn_ibwarden(
    config: &Path,
    log_path: &Path,
    home: &Path,
    sock_path: &Path,
    env: &[(String, String)],
) -> ChildGuard {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ibwarden"));
    cmd.args(["--log-format", "human", "-v", "run", "--config"])
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NOTIFY_SOCKET", sock_path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().expect("dup log")))
        .stderr(Stdio::from(log));
    ChildGuard::spawn("ibwarden", &mut cmd)
}

impl Drop for Warden {
    /// A test that fails on an assertion about the record gets ibwarden's side of the story:
    /// its log without the DEBUG lines (the last 150 of them).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = self.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains(" DEBUG ")).collect();
        eprintln!(
            "ibwarden's log at the failure (INFO and up, last 150 lines):\n{}",
            lines[lines.len().saturating_sub(150)..].join("\n")
        );
        // The screenshots ibwarden took (a form that differed, input that failed) outlive the
        // temp dir, for a look at what it saw.
        let shots = self.state_dir.join("screenshots");
        if let Ok(rd) = fs::read_dir(&shots) {
            let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
                "failed-{}",
                self.dir.path().display().to_string().replace('/', "_")
            ));
            if fs::create_dir_all(&keep).is_ok() {
                for e in rd.flatten() {
                    let _ = fs::copy(e.path(), keep.join(e.file_name()));
                }
                let _ = fs::copy(&self.log_path, keep.join("ibwarden.log"));
                eprintln!("ibwarden's screenshots and full log: {}", keep.display());
            }
        }
    }
}
