//! End-to-end: `program = "clientportal"`. The real binary against the Client Portal gateway
//! simulator (tests/clientportal-sim: HTTPS, a self-signed certificate, the login pages and
//! the API), logging in through the page in real headless Chromium. Every assertion about
//! what happened is on the simulator's record; ibwarden never reads it.

#[path = "common/clientportal.rs"]
mod clientportal;
mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clientportal::{CpInstall, CpScenario};
use common::{
    free_port, is_ev, now_ms, processes_with, ChildGuard, Record, TEST_PASSWORD, TEST_TOTP_SECRET,
    TEST_USER,
};
use serde_json::Value;

const USER: &str = TEST_USER;
const PASSWORD: &str = TEST_PASSWORD;
const TOTP: &str = TEST_TOTP_SECRET;
const READY: Duration = Duration::from_secs(120);

/// One account's gateway install (a [`CpInstall`]: the simulator with its scenario and
/// record), ibwarden's config, secrets and state beside it, and ibwarden running them.
struct Portal {
    cp: CpInstall,
    record: PathBuf,
    health: SocketAddr,
    state: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<ChildGuard>,
    /// Chromium command lines seen while ibwarden ran (sampled from /proc).
    argv_seen: Arc<Mutex<Vec<String>>>,
    sampling: Arc<AtomicBool>,
}

impl Portal {
    fn new(scenario: &[(&str, &str)], mode: &str, extra: &str) -> Portal {
        let sc = scenario
            .iter()
            .fold(CpScenario::new(), |sc, (k, v)| sc.set(k, v));
        let cp = CpInstall::new(&sc);
        let dir = cp.root().to_path_buf();
        let install = cp.install_dir.clone();
        let record = cp.record_path.clone();
        let secret = |name: &str, value: &str| {
            let p = dir.join(name);
            fs::write(&p, format!("{value}\n")).expect("secret");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
        };
        secret("password", PASSWORD);
        secret("totp", TOTP);
        let health = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let state = dir.join("state");
        let config = dir.join("portal.toml");
        fs::write(
            &config,
            format!(
                "[gateway]\nprogram = \"clientportal\"\ninstall_dir = \"{}\"\ntrading_mode = \
                 \"{mode}\"\n\n[account]\nusername = \"{USER}\"\npassword_file = \
                 \"password\"\ntotp_file = \"totp\"\n\n[login]\nmin_code_validity = \"8s\"\n\
                 {extra}\n[probe]\ninterval = \"2s\"\ntimeout = \"1s\"\n\n[state]\ndir = \"{}\"\n\n[health]\n\
                 listen = \"{health}\"\n",
                install.display(),
                state.display()
            ),
        )
        .expect("config");
        let log = dir.join("ibwarden.log");
        Portal {
            cp,
            record,
            health,
            state,
            config,
            log,
            child: None,
            argv_seen: Arc::new(Mutex::new(Vec::new())),
            sampling: Arc::new(AtomicBool::new(false)),
        }
    }

    fn start(&mut self) {
        self.start_as(None)
    }

    /// Starts ibwarden; with `confined`, as that binary, run by `nobody` the way the systemd
    /// unit's sandbox runs it ([`confine`]).
    fn start_as(&mut self, confined: Option<&std::path::Path>) {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let mut cmd = Command::new(confined.unwrap_or(env!("CARGO_BIN_EXE_ibwarden").as_ref()));
        if confined.is_some() {
            confine(&mut cmd);
        }
        cmd.args(["--log-format", "human", "-v", "run", "--config"])
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.cp.root().join("home"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("dup")))
            .stderr(Stdio::from(out));
        self.child = Some(ChildGuard::spawn("ibwarden (clientportal)", &mut cmd));
        // Sample every Chromium command line while ibwarden runs: a secret in argv would
        // show in /proc/PID/cmdline to every user of the machine.
        if !self.sampling.swap(true, Ordering::SeqCst) {
            let seen = self.argv_seen.clone();
            let on = self.sampling.clone();
            let profile = self.state.join("browser").display().to_string();
            std::thread::spawn(move || {
                while on.load(Ordering::SeqCst) {
                    for pid in processes_with(&profile) {
                        if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline")) {
                            let line = String::from_utf8_lossy(&c).replace('\0', " ");
                            let mut s = seen.lock().expect("lock");
                            if !s.contains(&line) {
                                s.push(line);
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
    }

    /// Runs `ibwarden ARGS --config CONFIG` (the control socket is found from the config).
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ibwarden"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .output()
            .expect("run ibwarden")
    }

    /// `ibwarden status --json`.
    fn status(&self) -> Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn rec(&self) -> Record {
        Record::new(&self.record)
    }

    fn events(&self, ev: &str) -> Vec<Value> {
        self.rec()
            .events()
            .into_iter()
            .filter(|e| is_ev(e, ev))
            .collect()
    }

    fn readyz(&self) -> Option<u16> {
        let mut s = TcpStream::connect_timeout(&self.health, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        write!(s, "GET /readyz HTTP/1.0\r\n\r\n").ok()?;
        let mut t = String::new();
        s.read_to_string(&mut t).ok()?;
        t.split_whitespace().nth(1)?.parse().ok()
    }

    /// Waits for `/readyz` 200; panics with both sides' stories.
    fn wait_ready(&mut self, timeout: Duration) {
        self.wait_until("ready", timeout, |p| p.readyz() == Some(200));
    }

    fn wait_until(&mut self, what: &str, timeout: Duration, f: impl Fn(&Portal) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if f(self) {
                return;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait()) {
                panic!("ibwarden exited ({st}) before {what}:\n{}", self.story());
            }
            assert!(
                Instant::now() < deadline,
                "not {what} in {timeout:?}:\n{}",
                self.story()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_log(&mut self, needle: &str, timeout: Duration) {
        self.wait_until(needle, timeout, |p| p.log_text().contains(needle));
    }

    fn story(&self) -> String {
        let log: Vec<String> = self
            .log_text()
            .lines()
            .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
            .map(String::from)
            .collect();
        format!(
            "--- ibwarden (INFO+, last 80) ---\n{}\n--- simulator record (last 30) ---\n{}",
            log[log.len().saturating_sub(80)..].join("\n"),
            self.rec().tail_text(30)
        )
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let c = self.child.as_mut().expect("running");
        c.signal_group(nix::sys::signal::Signal::SIGTERM);
        let st = c.wait_exit(Duration::from_secs(60));
        self.sampling.store(false, Ordering::SeqCst);
        st
    }

    /// No secret in the log, in any Chromium argv seen, or left in the profile dir.
    fn assert_secrets_stayed_home(&self) {
        let log = self.log_text();
        assert!(!log.contains(PASSWORD), "the password is in ibwarden's log");
        let argv = self.argv_seen.lock().expect("lock").clone();
        assert!(
            !argv.is_empty(),
            "Chromium was never seen running (sampling broken?)"
        );
        for line in &argv {
            assert!(
                !line.contains(PASSWORD),
                "password in Chromium's argv: {line}"
            );
            assert!(!line.contains(USER), "username in Chromium's argv: {line}");
            assert!(!line.contains(TOTP), "activation code in Chromium's argv");
        }
        for code in self.events("code") {
            if let Some(c) = code["code"].as_str() {
                assert!(
                    !log.contains(&format!("{c}\n")) && !log.contains(&format!("code={c}")),
                    "a code in the log"
                );
            }
        }
        assert!(
            !self.state.join("browser").exists(),
            "the browser profile is wiped after the login"
        );
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.sampling.store(false, Ordering::SeqCst);
        if std::thread::panicking() {
            eprintln!("{}", self.story());
        }
    }
}

fn chromium_left(p: &Portal) -> Vec<u32> {
    processes_with(&p.state.join("browser").display().to_string())
}

#[test]
fn a_live_login_is_ready_with_one_attempt_one_code_and_no_browser_left() {
    let mut p = Portal::new(&[], "live", "");
    let started = now_ms();
    p.start();
    p.wait_ready(READY);
    let attempts = p.events("login_attempt");
    assert_eq!(attempts.len(), 1, "one login attempt: {attempts:?}");
    assert_eq!(attempts[0]["username"], USER);
    assert_eq!(attempts[0]["password_ok"], true);
    let devices = p.events("device");
    assert_eq!(devices.len(), 1);
    assert_eq!(
        devices[0]["device"], "4",
        "the authenticator app was chosen"
    );
    let codes = p.events("code");
    assert_eq!(codes.len(), 1, "one code: {codes:?}");
    assert_eq!(codes[0]["accepted"], true);
    // The session is kept: tickles arrive (probe.interval = 1s).
    p.wait_until("tickles", Duration::from_secs(20), |p| {
        p.events("tickle").len() >= 2
    });
    assert!(
        chromium_left(&p).is_empty(),
        "Chromium is closed after the login"
    );
    let state: Value =
        serde_json::from_str(&fs::read_to_string(p.state.join("state.json")).expect("state"))
            .expect("json");
    assert_eq!(
        state["last_totp_step"].as_u64(),
        codes[0]["step"].as_u64(),
        "the used step is persisted"
    );
    eprintln!("ready in {} ms", now_ms() - started);
    // What `status` tells a person: the session as the API last said, the last tickle, the
    // gateway's pid (the simulator's own), one login, the browser closed.
    let status = p.status();
    let cp = &status["client_portal"];
    assert_eq!(cp["authenticated"], true, "{status}");
    assert_eq!(cp["connected"], true, "{status}");
    assert_eq!(cp["competing"], false, "{status}");
    assert_eq!(cp["browser_open"], false, "{status}");
    let tickled = cp["last_tickle_unix_ms"]
        .as_u64()
        .expect("a tickle answered");
    let last_tickle = p.events("tickle").last().cloned().expect("tickles");
    assert!(
        tickled + 5_000 >= last_tickle["t"].as_u64().expect("t"),
        "the last tickle is recent: {status}"
    );
    assert_eq!(status["logins"], 1, "{status}");
    assert_eq!(status["jvm_pid"], p.events("start")[0]["pid"], "{status}");
    let people = p.cli(&["status"]);
    let text = String::from_utf8_lossy(&people.stdout);
    eprintln!("ibwarden status:\n{text}");
    assert!(
        text.contains("session:       authenticated, connected") && text.contains("last tickle:"),
        "{text}"
    );
    // The display's tools have nothing to show here, and say so.
    for args in [&["screenshot", "--out", "x.png"][..], &["vnc"][..]] {
        let out = p.cli(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not available for the Client Portal gateway"),
            "{args:?}: {err}"
        );
    }
    let st = p.stop();
    assert!(st.success(), "{st}");
    assert!(
        !p.events("logout").is_empty(),
        "a clean stop logs out at IBKR"
    );
    p.assert_secrets_stayed_home();
}

#[test]
fn changed_element_ids_still_log_in_because_lookup_is_by_label() {
    let mut p = Portal::new(&[("ids_changed", "true")], "live", "");
    p.start();
    p.wait_ready(READY);
    assert_eq!(p.events("login_attempt").len(), 1);
    assert_eq!(p.events("code").len(), 1);
    p.stop();
}

#[test]
fn a_wrong_password_halts_and_the_halt_survives_a_restart_of_ibwarden() {
    let mut p = Portal::new(&[("password", "not-what-ibwarden-has")], "live", "");
    p.start();
    p.wait_log("notify kind=LoginFailed", READY);
    assert_eq!(p.readyz(), Some(503));
    let state: Value =
        serde_json::from_str(&fs::read_to_string(p.state.join("state.json")).expect("state"))
            .expect("json");
    assert!(state["credentials_rejected"].is_u64(), "{state}");
    // ibwarden dies hard and comes back: it types nothing.
    p.child
        .as_ref()
        .expect("child")
        .signal_group(nix::sys::signal::Signal::SIGKILL);
    p.child
        .as_mut()
        .expect("child")
        .wait_exit(Duration::from_secs(10));
    p.start();
    p.wait_log("rejected the username or password earlier", READY);
    assert_eq!(
        p.events("login_attempt").len(),
        1,
        "the wrong password was typed once, ever"
    );
    assert!(p.events("code").is_empty(), "no code spent");
    p.stop();
}

#[test]
fn a_rejected_code_waits_for_the_next_step() {
    let mut p = Portal::new(&[("reject_codes", "1")], "live", "");
    p.start();
    p.wait_ready(READY);
    let codes = p.events("code");
    assert_eq!(codes.len(), 2, "{codes:?}");
    assert_eq!(codes[0]["accepted"], false);
    assert_eq!(codes[1]["accepted"], true);
    let (a, b) = (codes[0]["step"].as_u64(), codes[1]["step"].as_u64());
    assert!(b > a, "a new step, never the same code: {a:?} {b:?}");
    p.stop();
}

#[test]
fn an_expired_session_is_reauthenticated_and_a_failed_reauth_leads_to_a_full_login() {
    let mut p = Portal::new(&[("session_expiry_s", "4")], "live", "");
    p.start();
    p.wait_ready(READY);
    p.wait_until("a reauthenticate", Duration::from_secs(30), |p| {
        !p.events("reauthenticate").is_empty()
    });
    p.wait_ready(READY);
    assert_eq!(
        p.events("login_attempt").len(),
        1,
        "reauthenticate, not a new login"
    );
    p.stop();

    let mut p = Portal::new(
        &[
            ("session_expiry_s", "4"),
            ("reauth_fails", "true"),
            ("reauth_fail_after_s", "2"),
        ],
        "live",
        "",
    );
    p.start();
    p.wait_ready(READY);
    p.wait_until("a second login", Duration::from_secs(90), |p| {
        p.events("login_attempt").len() >= 2
    });
    p.wait_ready(READY);
    let codes = p.events("code");
    assert!(
        codes.len() >= 2 && codes.iter().all(|c| c["accepted"] == true),
        "{codes:?}"
    );
    p.stop();
}

#[test]
fn a_competing_session_follows_the_policy() {
    // primary: takes the session back with a new login.
    let mut p = Portal::new(
        &[("competing_after_s", "3")],
        "live",
        "existing_session = \"primary\"\n",
    );
    p.start();
    p.wait_ready(READY);
    p.wait_until("a takeover login", Duration::from_secs(90), |p| {
        p.events("login_attempt").len() >= 2
    });
    p.wait_ready(READY);
    p.stop();

    // secondary: leaves it, says so, and is not ready.
    let mut p = Portal::new(
        &[("competing_after_s", "3")],
        "live",
        "existing_session = \"secondary\"\n",
    );
    p.start();
    p.wait_ready(READY);
    p.wait_log("notify kind=SessionConflict", Duration::from_secs(60));
    assert_eq!(p.readyz(), Some(503));
    assert_eq!(p.events("login_attempt").len(), 1, "no fight");
    p.stop();
}

#[test]
fn a_crash_of_the_gateway_jvm_is_restarted() {
    let mut p = Portal::new(&[], "live", "");
    p.start();
    p.wait_ready(READY);
    // The gateway's JVM dies (kill -9, as the OOM killer would).
    let pid = p.events("start")[0]["pid"]
        .as_i64()
        .expect("the simulator's pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the JVM");
    p.wait_log("notify kind=Crash", Duration::from_secs(30));
    p.wait_until("a second start", Duration::from_secs(60), |p| {
        p.events("start").len() >= 2
    });
    p.wait_ready(READY);
    let codes = p.events("code");
    assert_eq!(codes.len(), 2, "one login per JVM: {codes:?}");
    assert!(
        codes[1]["step"].as_u64() > codes[0]["step"].as_u64(),
        "a fresh code"
    );
    p.stop();
}

#[test]
fn a_push_only_account_halts_with_a_notice_and_chooses_no_device() {
    let mut p = Portal::new(&[("push_only", "true")], "live", "");
    p.start();
    p.wait_log("notify kind=HumanStep", READY);
    let status = p.status();
    assert_eq!(status["phase"], "Halted", "{status}");
    assert_eq!(p.readyz(), Some(503));
    assert_eq!(p.events("login_attempt").len(), 1, "the credentials, once");
    assert!(
        p.events("device").is_empty(),
        "IB Key (a push to the phone) is never chosen"
    );
    assert!(p.events("code").is_empty(), "no code typed");
    p.wait_until("the browser closed", Duration::from_secs(10), |p| {
        chromium_left(p).is_empty()
    });
    p.stop();
}

#[test]
fn unauthorized_answers_right_after_the_login_do_not_spend_another_login() {
    let mut p = Portal::new(&[("api_401_count", "3")], "live", "");
    p.start();
    p.wait_ready(READY);
    let after_login: Vec<Value> = p
        .rec()
        .events()
        .into_iter()
        .skip_while(|e| !(is_ev(e, "code") && e["accepted"] == true))
        .filter(|e| is_ev(e, "api") && e["status"] == 401)
        .collect();
    assert_eq!(
        after_login.len(),
        3,
        "the gateway answered 401 three times after the login: {after_login:?}"
    );
    assert_eq!(
        p.events("login_attempt").len(),
        1,
        "waited out, not logged in again"
    );
    assert_eq!(p.events("code").len(), 1);
    p.stop();
}

#[test]
fn a_slow_login_page_still_logs_in_with_one_attempt() {
    let mut p = Portal::new(&[("slow_page_ms", "2500")], "live", "");
    p.start();
    p.wait_ready(READY);
    assert_eq!(p.events("login_attempt").len(), 1);
    assert_eq!(p.events("device").len(), 1);
    assert_eq!(p.events("code").len(), 1);
    // The delay was real: the login's pages (login, second factor, code) came one after the
    // other, each at least the scenario's delay after the one before.
    let ev = p.rec().events();
    let t: Vec<u64> = ev
        .iter()
        .filter(|e| is_ev(e, "page") && e["page"] != "not_found" && e["page"] != "redirect")
        .filter_map(|e| e["t"].as_u64())
        .collect();
    assert!(t.len() >= 3, "{ev:?}");
    assert!(t.windows(2).all(|w| w[1] - w[0] >= 2_400), "{t:?}");
    p.stop();
}

/// Every file under `dir` that holds `needle` (as UTF-8 or UTF-16LE, the two ways Chromium
/// stores text).
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<PathBuf> {
    let utf16: Vec<u8> = needle.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() => {
                    let bytes = fs::read(&path).unwrap_or_default();
                    let has = |n: &[u8]| bytes.windows(n.len()).any(|w| w == n);
                    if has(needle.as_bytes()) || has(&utf16) {
                        hits.push(path);
                    }
                }
                _ => {}
            }
        }
    }
    hits
}

/// The login in a profile directory that is kept (the driver's wipe is not part of
/// `login_in`), so what Chromium wrote there by the time it closed can be read: neither the
/// password nor the activation code may be in it.
#[test]
fn chromium_keeps_no_secret_in_its_profile() {
    use ibwarden::clientportal::browser::{find_chromium, login_in, LoginRequest};
    use ibwarden::clientportal::machine::LoginOutcome;
    use ibwarden::secret::Secret;
    let gw = clientportal::CpGateway::start(&CpScenario::new());
    let profile = gw.install.root().join("profile");
    fs::create_dir(&profile).expect("mkdir");
    fs::set_permissions(&profile, fs::Permissions::from_mode(0o700)).expect("chmod");
    let step = clientportal::usable_step(&[]);
    let code = gw.scenario().code_at_step(step);
    let chromium = find_chromium(std::env::var_os("PATH").as_deref()).expect("chromium on PATH");
    let req = LoginRequest {
        url: format!("https://127.0.0.1:{}/", gw.install.port),
        chromium: chromium.clone(),
        profile_dir: profile.clone(),
        username: USER.into(),
        password: Secret::new(PASSWORD.into()),
        code: Some((Secret::new(code.clone()), Duration::ZERO)),
        timeout: Duration::from_secs(90),
        no_sandbox: ibwarden::clientportal::browser::sandbox_blocker(&chromium).is_some(),
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let outcome = rt.block_on(login_in(&req, tokio_util::sync::CancellationToken::new()));
    assert_eq!(outcome, LoginOutcome::LoggedIn, "{}", gw.rec.tail_text(20));
    gw.wait_authenticated();
    assert!(
        processes_with(&profile.display().to_string()).is_empty(),
        "Chromium closed"
    );
    let files = fs::read_dir(profile.join("Default")).map_or(0, |d| d.count());
    assert!(
        files > 1,
        "Chromium wrote its profile here ({files} entries)"
    );
    assert_eq!(
        files_holding(&profile, PASSWORD),
        Vec::<PathBuf>::new(),
        "the password"
    );
    assert_eq!(
        files_holding(&profile, TOTP),
        Vec::<PathBuf>::new(),
        "the activation code"
    );
    // The page's form state may be kept for a restored tab: the code, spent anyway, may be
    // there. It is reported, not forbidden.
    let code_files = files_holding(&profile, &code);
    eprintln!("files holding the spent code: {code_files:?}");
}

/// Runs `cmd` as `nobody` with no new privileges and new namespaces refused by a seccomp
/// filter: what the systemd unit's `User=`, `NoNewPrivileges=yes` and
/// `RestrictNamespaces=yes` do (systemd's filter also answers clone3 with ENOSYS, so the C
/// library falls back to clone, whose flags can be checked).
#[cfg(target_arch = "x86_64")]
fn confine(cmd: &mut Command) {
    as_nobody(cmd, true)
}

/// Runs `cmd` as `nobody`; with `restrict`, also confined as [`confine`] says.
#[cfg(target_arch = "x86_64")]
fn as_nobody(cmd: &mut Command, restrict: bool) {
    use std::os::unix::process::CommandExt;
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("a nobody user");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    const NAMESPACES: u32 = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP) as u32;
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let (ld, jeq, jset, ret) = (
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    let filter = [
        /* 0 */ stmt(ld, 4), // seccomp_data.arch
        /* 1 */ jump(jeq, 0xc000_003e, 0, 7), // AUDIT_ARCH_X86_64, else allow
        /* 2 */ stmt(ld, 0), // seccomp_data.nr
        /* 3 */ jump(jeq, libc::SYS_clone3 as u32, 7, 0),
        /* 4 */ jump(jeq, libc::SYS_unshare as u32, 2, 0),
        /* 5 */ jump(jeq, libc::SYS_clone as u32, 1, 0),
        /* 6 */ stmt(ret, ALLOW),
        /* 7 */ stmt(ld, 16), // args[0], low half
        /* 8 */ jump(jset, NAMESPACES, 1, 0),
        /* 9 */ stmt(ret, ALLOW),
        /* 10 */ stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        /* 11 */ stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    // SAFETY: only raw system calls run between fork and exec; `filter` outlives the
    // closure's use of it (it is moved in).
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if !restrict {
                return Ok(());
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Under the systemd unit's sandbox (run by a plain user, no new namespaces, no new
/// privileges) Chromium's own sandbox cannot start: ibwarden sees that and starts it with
/// `--no-sandbox`, and the login works. The confinement is checked first: Chromium started
/// plainly under it must fail the way it does under systemd.
#[cfg(target_arch = "x86_64")]
#[test]
fn under_the_units_sandbox_chromium_runs_unsandboxed_and_logs_in() {
    use std::os::unix::fs::{chown, MetadataExt};
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "running as nobody needs root (CI containers are)"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("nobody");
    let mut p = Portal::new(&[], "live", "");
    // Everything the service may touch belongs to its user, as StateDirectory= would make it.
    let root = p.cp.root().to_path_buf();
    let bin_dir = root.join("bin");
    fs::create_dir(&bin_dir).expect("mkdir");
    let bin = bin_dir.join("ibwarden");
    fs::copy(env!("CARGO_BIN_EXE_ibwarden"), &bin).expect("copy the binary");
    let mut todo = vec![root.clone()];
    while let Some(path) = todo.pop() {
        chown(&path, Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw())).expect("chown");
        if path.is_dir() {
            todo.extend(
                fs::read_dir(&path)
                    .expect("dir")
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(fs::metadata(&bin).expect("meta").uid(), nobody.uid.as_raw());

    let chromium =
        ibwarden::clientportal::browser::find_chromium(std::env::var_os("PATH").as_deref())
            .expect("chromium");
    let mut plain = Command::new(&chromium);
    plain
        .args([
            "--headless=new",
            "--disable-gpu",
            "--dump-dom",
            "about:blank",
        ])
        .arg(format!(
            "--user-data-dir={}",
            root.join("home/plain").display()
        ))
        .env("HOME", root.join("home"))
        .stdin(Stdio::null());
    confine(&mut plain);
    let out = plain.output().expect("chromium");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("No usable sandbox"),
        "the confinement is what systemd's is: plain Chromium must fail under it ({}): {err}",
        out.status
    );

    // `ibwarden check` tells which it is: as a plain user with namespaces it is available.
    let check = |restrict: bool| {
        let mut cmd = Command::new(&bin);
        cmd.args(["check", "--config"])
            .arg(&p.config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root.join("home"))
            .stdin(Stdio::null());
        as_nobody(&mut cmd, restrict);
        let out = cmd.output().expect("check");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.contains("chromium sandbox"))
            .unwrap_or_else(|| panic!("no sandbox line in check: {text}"))
            .to_string()
    };
    let free = check(false);
    assert!(free.contains("available"), "{free}");
    let confined = check(true);
    assert!(
        confined.contains("off (--no-sandbox)") && confined.contains("no-new-privileges"),
        "{confined}"
    );

    p.start_as(Some(&bin));
    p.wait_ready(READY);
    assert_eq!(p.events("login_attempt").len(), 1);
    assert_eq!(p.events("code").len(), 1);
    assert!(
        p.log_text().contains("Chromium runs with --no-sandbox"),
        "said why in the log"
    );
    let argv = p.argv_seen.lock().expect("lock").clone();
    assert!(
        argv.iter().any(|l| l.contains("--no-sandbox")),
        "Chromium was started with --no-sandbox: {argv:?}"
    );
    let st = p.stop();
    assert!(st.success(), "{st}");
    p.assert_secrets_stayed_home();
}

/// Kills a pid on drop (a JVM that outlived its ibwarden must not outlive the test).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `run.sh` runs `java` as the shell's child (IBKR's does; so does the simulator's): a
/// SIGKILLed ibwarden takes the shell with it, not the JVM, which keeps the port and its
/// session. The next ibwarden stops it before launching its own.
#[test]
fn a_gateway_orphaned_by_a_killed_ibwarden_is_stopped_before_the_next_launch() {
    let mut p = Portal::new(&[], "live", "");
    p.start();
    p.wait_ready(READY);
    let jvm = p.events("start")[0]["pid"].as_u64().expect("pid") as u32;
    let _guard = KillOnDrop(jvm);
    let child = p.child.as_mut().expect("running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill ibwarden");
    child.wait_exit(Duration::from_secs(10));
    // The orphan still serves its session: what the next ibwarden would otherwise talk to.
    let client = clientportal::CpClient::new(p.cp.port);
    let (st, v) = client.api("GET", "/v1/api/iserver/auth/status");
    assert_eq!(
        (st, v["authenticated"].clone()),
        (200, Value::Bool(true)),
        "{v}"
    );
    assert!(ibwarden::procfs::is_alive(jvm), "the JVM outlived ibwarden");

    p.start();
    p.wait_log(
        "a Client Portal gateway of an earlier run is still running",
        READY,
    );
    p.wait_until("the second gateway", READY, |p| {
        p.events("start").len() >= 2
    });
    p.wait_ready(READY);
    let exits = p.events("exit");
    assert!(
        exits.iter().any(|e| e["reason"] == "shutdown"),
        "the orphan was stopped through its own exit (SIGTERM): {exits:?}"
    );
    assert!(!ibwarden::procfs::is_alive(jvm), "the orphan is gone");
    let starts = p.events("start");
    assert_ne!(starts[1]["pid"], starts[0]["pid"]);
    assert_eq!(
        p.events("login_attempt").len(),
        2,
        "the new gateway logged in once"
    );
    let st = p.stop();
    assert!(st.success(), "{st}");
}
