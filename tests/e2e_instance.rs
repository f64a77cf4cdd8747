//! `--instance NAME` against an instance run the way the packaged unit runs it: the unit's
//! environment (`STATE_DIRECTORY`, `RUNTIME_DIRECTORY`, `CREDENTIALS_DIRECTORY` with the
//! credentials systemd would have loaded from the credstore, `NOTIFY_SOCKET`), and then
//! `status`, `check`, `totp`, `restart` from another shell that has none of it — only the
//! name. `IBWARDEN_SYSTEM_ROOT` moves `/etc`, `/var/lib` and `/run` into a temp dir.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NAME: &str = "acct-1";
const READY: Duration = Duration::from_secs(90);

fn private(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A root with `etc/ibwarden/NAME.toml`, the password in `etc/credstore` and the activation
/// code in `etc/credstore.encrypted` (systemd-creds, host key) when systemd-creds works here,
/// else in `etc/credstore` too.
struct Root {
    dir: tempfile::TempDir,
    encrypted: bool,
}

impl Root {
    fn new(install: &SimInstall) -> Root {
        let dir = tempfile::Builder::new()
            .prefix("ibw-inst-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        // What the packaged example.toml holds, pointed at the simulator; no state dir and
        // no socket: the unit's directories are the defaults.
        let config = format!(
            "[gateway]\nprogram = \"gateway\"\ninstall_dir = \"{}\"\nsettings_dir = \"{}\"\n\
             trading_mode = \"live\"\napi_port = {}\n\n[account]\nusername = \"{}\"\n\
             password_credential = \"password\"\ntotp_credential = \"totp\"\n\n[login]\n\
             min_code_validity = \"8s\"\n\n[probe]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n",
            install.install_dir.display(),
            install.settings_dir.display(),
            install.api_port,
            install.scenario.username(),
        );
        fs::create_dir_all(root.join("etc/ibwarden")).expect("mkdir");
        fs::write(root.join(format!("etc/ibwarden/{NAME}.toml")), config).expect("config");
        private(
            &root.join(format!("etc/credstore/ibwarden-{NAME}-password")),
            &format!("{}\n", install.scenario.password()),
        );
        let enc = root.join(format!("etc/credstore.encrypted/ibwarden-{NAME}-totp"));
        fs::create_dir_all(enc.parent().expect("parent")).expect("mkdir");
        let encrypted = Command::new("systemd-creds")
            .args(["encrypt", "--with-key=host", "--name=totp", "-"])
            .arg(&enc)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(format!("{TEST_TOTP_SECRET}\n").as_bytes())?;
                c.wait()
            })
            .map(|st| st.success())
            .unwrap_or(false);
        if !encrypted {
            let _ = fs::remove_file(&enc);
            private(
                &root.join(format!("etc/credstore/ibwarden-{NAME}-totp")),
                &format!("{TEST_TOTP_SECRET}\n"),
            );
        }
        Root { dir, encrypted }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `ibwarden ARGS --instance NAME` from "another shell": PATH, HOME and the root only.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ibwarden"))
            .args(args)
            .args(["--instance", NAME])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("IBWARDEN_SYSTEM_ROOT", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("ibwarden")
    }
}

/// Prints ibwarden's log when the test fails.
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "ibwarden's log:\n{}",
                lines[lines.len().saturating_sub(120)..].join("\n")
            );
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An instance run as the unit runs it: its directories, the credentials systemd would have
/// copied, NOTIFY_SOCKET. `bin`: the ibwarden binary to run.
struct Unit {
    child: ChildGuard,
    notify: UnixDatagram,
    state: PathBuf,
    runtime: PathBuf,
    log: PathBuf,
}

impl Unit {
    fn start(root: &Root, install: &SimInstall, bin: &Path) -> Unit {
        // systemd creates the directories and copies (decrypting) the credentials into a
        // private directory of its own.
        let state = root.path(&format!("var/lib/ibwarden/{NAME}"));
        let runtime = root.path(&format!("run/ibwarden/{NAME}"));
        let creds = root.path("creds");
        for d in [&state, &runtime, &creds] {
            fs::create_dir_all(d).expect("mkdir");
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        private(
            &creds.join("password"),
            &format!("{}\n", install.scenario.password()),
        );
        private(&creds.join("totp"), &format!("{TEST_TOTP_SECRET}\n"));
        let notify_path = root.path("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let log_path = root.path("ibwarden.log");
        let log = fs::File::create(&log_path).expect("log");
        let mut cmd = Command::new(bin);
        cmd.args(["--log-format", "human", "run", "--instance", NAME])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root.dir.path())
            .env("IBWARDEN_SYSTEM_ROOT", root.dir.path())
            .env("STATE_DIRECTORY", &state)
            .env("RUNTIME_DIRECTORY", &runtime)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        Unit {
            child: ChildGuard::spawn("ibwarden", &mut cmd),
            notify,
            state,
            runtime,
            log: log_path,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the next `READY=1` datagram.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                    return;
                }
            }
            assert!(
                self.child.try_wait().is_none(),
                "ibwarden exited:\n{}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "not ready in {READY:?}:\n{}",
                self.log()
            );
        }
    }
}

#[test]
fn status_check_totp_and_restart_reach_a_unit_run_instance_by_its_name() {
    let install = SimInstall::new(&Scenario::new());
    let root = Root::new(&install);
    let mut unit = Unit::start(&root, &install, Path::new(env!("CARGO_BIN_EXE_ibwarden")));
    let _log = LogOnPanic(unit.log.clone());
    unit.wait_ready();
    let (state, runtime) = (unit.state.clone(), unit.runtime.clone());
    assert!(
        runtime.join("control.sock").exists(),
        "the socket is in RUNTIME_DIRECTORY"
    );
    assert!(
        state.join("state.json").exists(),
        "state in STATE_DIRECTORY"
    );

    // Another shell, only the name.
    let o = root.cli(&["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    assert_eq!(st["ready"], true, "{st}");
    assert!(
        st["probe_latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "the last probe's round trip while ready: {st}"
    );
    // A planned event is an object (`what`, `at_unix_ms`), or null when nothing is planned.
    let next = &st["next_scheduled"];
    assert!(
        next.is_null() || (next["what"].is_string() && next["at_unix_ms"].is_u64()),
        "{st}"
    );

    let o = root.cli(&["check"]);
    let out = text(&o);
    assert!(
        out.contains(&format!("etc/credstore/ibwarden-{NAME}-password")),
        "the password from the credstore: {out}"
    );
    assert!(
        out.contains(&state.display().to_string()),
        "the unit's state dir: {out}"
    );
    let secret_lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("password") || l.contains("activation code"))
        .collect();
    assert!(
        !secret_lines.is_empty() && secret_lines.iter().all(|l| !l.contains("FAIL")),
        "{out}"
    );
    assert!(!out.contains(install.scenario.password()), "{out}");
    assert!(!out.contains(TEST_TOTP_SECRET), "{out}");

    // The code `totp` derives from the credstore is the one the instance would type.
    let o = root.cli(&["totp"]);
    assert!(o.status.success(), "{}", text(&o));
    let secs = now_ms() / 1000;
    let shown = String::from_utf8_lossy(&o.stdout).to_string();
    let candidates = [secs - 1, secs, secs + 1].map(|t| install.scenario.totp_at(t));
    assert!(
        candidates.iter().any(|c| shown.contains(c.as_str())),
        "{shown} (encrypted credstore: {})",
        root.encrypted
    );

    // `--config /etc/ibwarden/NAME.toml`, as the unit's own command line has it, reaches the
    // same instance while its runtime directory exists.
    let o = Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["status", "--json", "--config"])
        .arg(root.path(&format!("etc/ibwarden/{NAME}.toml")))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root.dir.path())
        .env("IBWARDEN_SYSTEM_ROOT", root.dir.path())
        .output()
        .expect("status --config");
    assert!(o.status.success(), "{}", text(&o));

    let o = root.cli(&["restart"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut rec = install.record();
    rec.wait_ev("start", READY);
    rec.wait_ev("start", READY);
    let o = root.cli(&["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    let st = unit.child.wait_exit(Duration::from_secs(120));
    assert!(st.success(), "{st:?}");
}

#[test]
fn a_missing_credential_names_both_credstore_paths() {
    let install = SimInstall::new(&Scenario::new());
    let root = Root::new(&install);
    let _ = fs::remove_file(root.path(&format!("etc/credstore/ibwarden-{NAME}-password")));
    let o = root.cli(&["check"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&format!("etc/credstore/ibwarden-{NAME}-password"))
            && out.contains(&format!("etc/credstore.encrypted/ibwarden-{NAME}-password")),
        "{out}"
    );
    // `secret set` writes it where the unit loads it from.
    let mut set = Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["secret", "set", "password", "--instance", NAME])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("IBWARDEN_SYSTEM_ROOT", root.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("secret set");
    {
        use std::io::Write;
        set.stdin
            .take()
            .expect("stdin")
            .write_all(format!("{}\n", install.scenario.password()).as_bytes())
            .expect("write");
    }
    let o = set.wait_with_output().expect("secret set");
    assert!(o.status.success(), "{}", text(&o));
    let file = root.path(&format!("etc/credstore/ibwarden-{NAME}-password"));
    assert_eq!(
        fs::read_to_string(&file).expect("written"),
        format!("{}\n", install.scenario.password())
    );
    let o = root.cli(&["check"]);
    let out = text(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("password:")),
        "{out}"
    );
}

/// `/proc/PID/exe` of a process.
fn exe_of(pid: u32) -> String {
    fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[test]
fn an_upgraded_binary_takes_over_at_the_next_gateway_restart_in_the_same_pid() {
    let install = SimInstall::new(&Scenario::new());
    let root = Root::new(&install);
    let bin = root.path("usr/bin/ibwarden");
    fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
    fs::copy(env!("CARGO_BIN_EXE_ibwarden"), &bin).expect("install the binary");
    let mut unit = Unit::start(&root, &install, &bin);
    let _log = LogOnPanic(unit.log.clone());
    unit.wait_ready();
    let pid = unit.child.pid();
    // The package upgrade: the new file is renamed over the old one, as dpkg does.
    let new = root.path("usr/bin/ibwarden.dpkg-new");
    fs::copy(env!("CARGO_BIN_EXE_ibwarden"), &new).expect("copy");
    fs::rename(&new, &bin).expect("rename over");
    assert!(exe_of(pid).ends_with("(deleted)"), "{}", exe_of(pid));
    // Nothing happens until the gateway restarts anyway.
    let o = root.cli(&["restart"]);
    assert!(o.status.success(), "{}", text(&o));
    unit.wait_ready();
    assert!(
        unit.log()
            .contains("ibwarden was upgraded: starting the new binary before the gateway"),
        "{}",
        unit.log()
    );
    assert!(unit.child.try_wait().is_none(), "the same process");
    assert_eq!(exe_of(pid), bin.display().to_string(), "now the new file");
    let o = root.cli(&["status", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    assert_eq!(st["ready"], true, "{st}");
    // One gateway at a time throughout: the old one exited before the new one started.
    let rec = install.record();
    let evs = rec.events();
    let starts = evs.iter().filter(|e| is_ev(e, "start")).count();
    assert_eq!(starts, 2, "two gateway starts in all");
    let o = root.cli(&["stop"]);
    assert!(o.status.success(), "{}", text(&o));
    let st = unit.child.wait_exit(Duration::from_secs(120));
    assert!(st.success(), "{st:?}");
}
