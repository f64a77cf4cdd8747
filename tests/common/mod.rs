//! Shared integration-test harness: the gateway simulator, a private Xvfb, per-test install
//! dirs, the simulator's record file and control channel, and process cleanup.
//!
//! Every integration test that needs a gateway uses this module (`mod common;`). The pieces:
//!
//! - [`simulator_template`]: builds `tests/simulator` once per test process (the build script
//!   itself is a cheap no-op when nothing changed and is serialised by `flock`, so parallel
//!   test processes under cargo-nextest are safe). Returns `target/simulator/ibgateway`.
//! - [`Xvfb::start`]: a private X server (`-displayfd`, `-nolisten tcp`, `-auth` with a fresh
//!   MIT-MAGIC-COOKIE-1), killed on drop. Gives `display` (`":N"`) and `xauthority` (path).
//! - [`Scenario`]: the simulator's scenario keys (see `tests/simulator/README.md`), with test
//!   defaults (fast `time_factor`, known credentials and TOTP secret). [`Scenario::totp_at`]
//!   computes the code the simulator accepts.
//! - [`SimInstall::new`] / [`SimInstall::new_tws`]: a per-test temp dir laid out like a real
//!   install: `<root>/ibgateway/jars/*.jar`, `<root>/ibgateway/ibgateway.vmoptions` (or
//!   `tws.vmoptions`; realistic heap flags plus `-Dsim.scenario=` and `-Dsim.record=`), the
//!   settings dir `<root>/Jts`, the scenario file, the record path, a free API port and a
//!   HOME. Point ibwarden at `install.install_dir` and `install.settings_dir`. The JVM's
//!   working dir is `install_dir` (hs_err files land there). `IBW_TEST_KEEP=1` keeps the dir.
//! - [`Record`]: tails the simulator's JSON-lines record with a cursor; `wait_for` waits (with a
//!   deadline, polling every 20 ms) for the next matching event and panics with the record's
//!   tail when it does not come; `wait_from(index, ..)` waits without moving the cursor.
//! - [`SimInstall::control`]: sends one command to the running simulator's control channel.
//! - [`launch_sim_directly`]: runs the JVM the way ibwarden does (all non-comment vmoptions
//!   lines, `-DjtsConfigDir`, optional `-Drestart`, clean environment), without ibwarden.
//! - [`ChildGuard`]: owns a child started in its own process group; kills the group on drop,
//!   also when the test panics.
//! - [`processes_with`]: live processes whose command line holds a string (JVM census).
//! - [`x11::X`] (in `x11.rs`): a tiny X client for tests: list the simulator's top-levels,
//!   give a window the keyboard with `WM_TAKE_FOCUS` (FocusProxy fallback), type with XTest.
//! - [`Session`]: all of the above for one direct simulator test (no ibwarden): `start` /
//!   `start_tws`, `focus(title)`, `type_login`, `move_focus("Tab", "password")` (waits for the
//!   focus event: keys sent right after Tab can land in the previous field), `type_code`,
//!   `type_code_after(step)`, `login_live`, `login_paper`, `press(title, key)`, `wait_exit`.
//!
//! Missing tools (Xvfb, java, xauth...) make tests fail with a message naming the package;
//! they never skip silently.
#![allow(dead_code)]

pub mod vnc;
pub mod x11;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target dir (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        }
        None => repo_root().join("target"),
    }
}

/// Finds `tool` on PATH or fails the test naming the Debian package that provides it.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("required test tool `{tool}` not found on PATH: install the Debian package `{package}`");
}

/// Builds the simulator (once per process) and returns the template install dir
/// `target/simulator/ibgateway` (contains `jars/` and `ibgateway.vmoptions`).
pub fn simulator_template() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_tool("javac", "openjdk-17-jdk");
        require_tool("flock", "util-linux");
        let out = target_dir().join("simulator");
        let status = Command::new(repo_root().join("scripts/build-simulator"))
            .arg(&out)
            .status()
            .expect("run scripts/build-simulator");
        assert!(status.success(), "scripts/build-simulator failed: {status}");
        out.join("ibgateway")
    })
}

/// The test venv's python (`scripts/test-deps-python`: ib_async, helm-python-sdk,
/// kubernetes-validate, PyYAML), created or updated first.
pub fn test_python() -> PathBuf {
    let venv = target_dir().join("pyvenv");
    let st = Command::new(repo_root().join("scripts/test-deps-python"))
        .arg(&venv)
        .status()
        .expect("run scripts/test-deps-python");
    assert!(
        st.success(),
        "scripts/test-deps-python failed (needs python3-venv and PyPI access)"
    );
    venv.join("bin/python")
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Milliseconds since the epoch (the record's `t` unit).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

// ------------------------------------------------------------------------------ processes

/// A child process in its own process group; the whole group is SIGKILLed on drop.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd` as the leader of a new process group.
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        ChildGuard {
            child: Some(child),
            name: name.to_string(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("child").id()
    }

    /// Non-blocking exit check.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .expect("child")
            .try_wait()
            .expect("try_wait")
    }

    /// Waits for the exit (polling every 20 ms) or panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "{} (pid {}) did not exit within {timeout:?}",
                self.name,
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` to the whole process group.
    pub fn signal_group(&self, sig: nix::sys::signal::Signal) {
        let pgid = nix::unistd::Pid::from_raw(self.pid() as i32);
        let _ = nix::sys::signal::killpg(pgid, sig);
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Live (not exited) processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(needle))
                && ibwarden::procfs::is_alive(pid)
        })
        .collect()
}

/// The exit status as a shell shows it: the code, or 128 + signal (a JVM crash is 134).
pub fn shell_exit_code(st: ExitStatus) -> i32 {
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

// ------------------------------------------------------------------------------ Xvfb

/// A private X server for one test. Killed (with its process group) on drop.
pub struct Xvfb {
    /// Display name, e.g. `":3"`.
    pub display: String,
    /// The Xauthority file clients must use (`XAUTHORITY`).
    pub xauthority: PathBuf,
    /// The MIT-MAGIC-COOKIE-1 value (printable ASCII, so `xcb::AuthInfo` can carry it).
    pub cookie: String,
    _dir: tempfile::TempDir,
    guard: ChildGuard,
}

/// Appends one Xauthority entry: FamilyWild (any host), display `number` ("" = any).
fn xauth_entry(out: &mut Vec<u8>, number: &str, cookie: &[u8]) {
    out.extend_from_slice(&0xffffu16.to_be_bytes());
    for b in [&b""[..], number.as_bytes(), b"MIT-MAGIC-COOKIE-1", cookie] {
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    }
}

fn random_cookie() -> String {
    let mut buf = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    buf.iter()
        .map(|b| ALNUM[*b as usize % ALNUM.len()] as char)
        .collect()
}

impl Xvfb {
    /// Starts `Xvfb -displayfd <fd> -nolisten tcp -auth <file> -noreset -screen 0 1280x1024x24`
    /// and waits (10 s deadline) until it reports its display number.
    pub fn start() -> Xvfb {
        require_tool("Xvfb", "xvfb");
        let dir = tempfile::Builder::new()
            .prefix("ibw-xvfb-")
            .tempdir()
            .expect("tempdir");
        let xauthority = dir.path().join("Xauthority");
        let cookie = random_cookie();
        let mut auth = Vec::new();
        xauth_entry(&mut auth, "", cookie.as_bytes());
        fs::write(&xauthority, &auth).expect("write Xauthority");

        let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
        let wr_fd = wr.as_raw_fd();
        let mut cmd = Command::new("Xvfb");
        cmd.arg("-displayfd")
            .arg(wr_fd.to_string())
            .args([
                "-nolisten",
                "tcp",
                "-noreset",
                "-screen",
                "0",
                "1280x1024x24",
            ])
            .arg("-auth")
            .arg(&xauthority)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe fcntl between fork and exec, to let the child
        // inherit the pipe's write end (everything else keeps O_CLOEXEC).
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(wr_fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let guard = ChildGuard::spawn("Xvfb", &mut cmd);
        drop(wr);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let f = fs::File::from(rd);
            let mut line = String::new();
            let _ = BufReader::new(f).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("Xvfb did not report its display within 10 s");
        let n = line.trim();
        assert!(
            !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()),
            "Xvfb -displayfd wrote {line:?}"
        );
        xauth_entry(&mut auth, n, cookie.as_bytes());
        fs::write(&xauthority, &auth).expect("write Xauthority");
        Xvfb {
            display: format!(":{n}"),
            xauthority,
            cookie,
            _dir: dir,
            guard,
        }
    }

    /// Sets DISPLAY and XAUTHORITY on a command (for xprop, xdotool, java...).
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("DISPLAY", &self.display)
            .env("XAUTHORITY", &self.xauthority);
    }

    /// Runs an X client tool (e.g. `xprop`) against this display and returns its stdout.
    pub fn run_tool(&self, tool: &str, package: &str, args: &[&str]) -> String {
        require_tool(tool, package);
        let mut cmd = Command::new(tool);
        cmd.args(args);
        self.env(&mut cmd);
        let out = cmd.output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

// ------------------------------------------------------------------------------ scenario

/// Default test credentials and TOTP secret (test data only).
pub const TEST_USER: &str = "testuser";
pub const TEST_PASSWORD: &str = "Secret-Pass_1!";
pub const TEST_TOTP_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// Scenario keys for the simulator (see tests/simulator/README.md for every key).
#[derive(Clone, Debug)]
pub struct Scenario {
    entries: BTreeMap<String, String>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self::new()
    }
}

impl Scenario {
    /// Test defaults: known user/password/secret, live account U1234567, paper account DU1234567, `time_factor=0.05`, and
    /// a 2FA timeout of 60 s real (`twofa_timeout_s=1200` scaled): the gateway's own 180 s
    /// scaled by 0.05 would be 9 s, shorter than a TOTP wait (up to 8 s) plus the form checks
    /// on a loaded 2-core box, which no real login ever faces. Tests of the timeout set their
    /// own.
    pub fn new() -> Scenario {
        let mut s = Scenario {
            entries: BTreeMap::new(),
        };
        s.entries.insert("username".into(), TEST_USER.into());
        s.entries.insert("password".into(), TEST_PASSWORD.into());
        s.entries
            .insert("totp_secret".into(), TEST_TOTP_SECRET.into());
        s.entries.insert("accounts".into(), "U1234567".into());
        s.entries
            .insert("paper_accounts".into(), "DU1234567".into());
        s.entries.insert("time_factor".into(), "0.05".into());
        s.entries.insert("twofa_timeout_s".into(), "1200".into());
        s
    }

    /// Sets a key (builder style).
    pub fn set(mut self, key: &str, value: impl ToString) -> Scenario {
        self.entries.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    pub fn username(&self) -> &str {
        self.get("username").unwrap_or(TEST_USER)
    }

    pub fn password(&self) -> &str {
        self.get("password").unwrap_or("")
    }

    /// The properties-file text (values escaped for java.util.Properties).
    pub fn to_properties(&self) -> String {
        properties_text("gateway simulator scenario", &self.entries)
    }

    /// The TOTP code the simulator expects at `unix_seconds` (its clock offset not applied).
    pub fn totp_at(&self, unix_seconds: u64) -> String {
        totp_code(
            self.get("totp_secret").unwrap_or(TEST_TOTP_SECRET),
            unix_seconds,
        )
    }

    /// A code valid now with at least 8 s of margin (the next step's code when the current
    /// step has under 8 s left), plus its step number.
    pub fn fresh_totp(&self) -> (String, u64) {
        let secs = now_ms() / 1000;
        let left = 30 - secs % 30;
        // With under 8 s left, use the next step's code: the simulator accepts ±1 step.
        let t = if left < 8 { secs + left } else { secs };
        (self.totp_at(t), t / 30)
    }
}

// ------------------------------------------------------------------------------ install

/// Which program the simulator plays: IB Gateway (`ibgateway.GWClient`,
/// `ibgateway.vmoptions`) or TWS (`jclient.LoginFrame`, `tws.vmoptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimProgram {
    Gateway,
    Tws,
}

impl SimProgram {
    pub fn main_class(self) -> &'static str {
        match self {
            SimProgram::Gateway => "ibgateway.GWClient",
            SimProgram::Tws => "jclient.LoginFrame",
        }
    }

    pub fn vmoptions_file(self) -> &'static str {
        match self {
            SimProgram::Gateway => "ibgateway.vmoptions",
            SimProgram::Tws => "tws.vmoptions",
        }
    }

    /// The login frame's default title.
    pub fn login_title(self) -> &'static str {
        match self {
            SimProgram::Gateway => "IBKR Gateway",
            SimProgram::Tws => "Login",
        }
    }
}

/// A per-test simulator install: temp dir with `ibgateway/` (jars + vmoptions), settings
/// dir, scenario file, record path and a free API port. Removed on drop.
pub struct SimInstall {
    pub dir: tempfile::TempDir,
    /// `<root>/ibgateway`: what ibwarden's `install_dir` should point at.
    pub install_dir: PathBuf,
    /// `<root>/Jts`: the gateway settings dir (`-DjtsConfigDir`).
    pub settings_dir: PathBuf,
    /// `<root>/home`: HOME for the JVM.
    pub home: PathBuf,
    pub scenario_path: PathBuf,
    pub record_path: PathBuf,
    pub api_port: u16,
    pub scenario: Scenario,
    pub program: SimProgram,
}

/// Realistic heap/GC flags written into each per-test vmoptions file.
pub const VMOPTIONS_HEAD: &str = "\
# Enter one VM parameter per line
# For example, to adjust the maximum memory usage to 512 MB, uncomment the following line:
# -Xmx512m
-Xmx768m
-XX:+UseG1GC
-XX:MaxGCPauseMillis=200
-Dsun.awt.nopixfmt=true
-Dsun.java2d.noddraw=true
-Dswing.boldMetal=false
";

impl SimInstall {
    /// Creates a Gateway install for `scenario`. If the scenario has no `api_port`, a free
    /// port is chosen and written into it.
    pub fn new(scenario: &Scenario) -> SimInstall {
        SimInstall::with_program(scenario, SimProgram::Gateway)
    }

    /// Creates a TWS-mode install (`tws.vmoptions`, main class `jclient.LoginFrame`).
    pub fn new_tws(scenario: &Scenario) -> SimInstall {
        SimInstall::with_program(scenario, SimProgram::Tws)
    }

    pub fn with_program(scenario: &Scenario, program: SimProgram) -> SimInstall {
        let template = simulator_template();
        let mut dir = tempfile::Builder::new()
            .prefix("ibw-sim-")
            .tempdir()
            .expect("tempdir");
        // IBW_TEST_KEEP=1 keeps the install (record, launcher.log, JVM output) for debugging.
        if std::env::var_os("IBW_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping simulator install {}", dir.path().display());
        }
        let root = dir.path().to_path_buf();
        let install_dir = root.join("ibgateway");
        let jars = install_dir.join("jars");
        fs::create_dir_all(&jars).expect("mkdir jars");
        for e in fs::read_dir(template.join("jars")).expect("read template jars") {
            let e = e.expect("dir entry");
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".jar") {
                fs::copy(e.path(), jars.join(&name)).expect("copy jar");
            }
        }
        let settings_dir = root.join("Jts");
        let home = root.join("home");
        fs::create_dir_all(&settings_dir).expect("mkdir Jts");
        fs::create_dir_all(&home).expect("mkdir home");
        let mut scenario = scenario.clone();
        let api_port = match scenario.get("api_port") {
            Some(p) => p.parse().expect("api_port in scenario must be a number"),
            None => {
                let p = free_port();
                scenario = scenario.set("api_port", p);
                p
            }
        };
        let scenario_path = root.join("scenario.properties");
        fs::write(&scenario_path, scenario.to_properties()).expect("write scenario");
        let record_path = root.join("record.jsonl");
        let vmoptions = format!(
            "{VMOPTIONS_HEAD}-Dsim.scenario={}\n-Dsim.record={}\n",
            scenario_path.display(),
            record_path.display()
        );
        fs::write(install_dir.join(program.vmoptions_file()), vmoptions).expect("write vmoptions");
        SimInstall {
            dir,
            install_dir,
            settings_dir,
            home,
            scenario_path,
            record_path,
            api_port,
            scenario,
            program,
        }
    }

    /// The login frame's title (scenario `title`, else the program's default).
    pub fn login_title(&self) -> String {
        self.scenario
            .get("title")
            .unwrap_or(self.program.login_title())
            .to_string()
    }

    /// The window holding the second factor: the `Second Factor Authentication` dialog
    /// (Gateway) or the login frame itself (TWS).
    pub fn twofa_title(&self) -> String {
        match self.program {
            SimProgram::Gateway => "Second Factor Authentication".to_string(),
            SimProgram::Tws => self.login_title(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A reader of the record file, cursor at the start.
    pub fn record(&self) -> Record {
        Record::new(&self.record_path)
    }

    /// Reads the simulator's control port from `<record>.ctl` (waits up to 20 s for it).
    pub fn control_port(&self) -> u16 {
        let ctl = PathBuf::from(format!("{}.ctl", self.record_path.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = fs::read_to_string(&ctl) {
                if let Ok(p) = s.trim().parse() {
                    return p;
                }
            }
            assert!(
                Instant::now() < deadline,
                "simulator control file {} did not appear",
                ctl.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one control command (e.g. `"nightly_restart"`) and asserts the reply is `ok`.
    pub fn control(&self, command: &str) {
        let port = self.control_port();
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect control channel");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        writeln!(s, "{command}").expect("write control");
        let mut line = String::new();
        BufReader::new(&s)
            .read_line(&mut line)
            .expect("read control reply");
        assert_eq!(line.trim(), "ok", "control command {command:?} failed");
    }

    /// The settings dir's `launcher.log` content (empty if absent).
    pub fn launcher_log(&self) -> String {
        fs::read_to_string(self.settings_dir.join("launcher.log")).unwrap_or_default()
    }

    /// `hs_err_pid*.log` files in the JVM working dir (`install_dir`).
    pub fn hs_err_files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.install_dir)
            .expect("read install dir")
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("hs_err_pid") && n.ends_with(".log") {
                v.push(e.path());
            }
        }
        v
    }

    /// `<settings>/<dir>/autorestart` tokens: the `<dir>` names found (what `-Drestart=` takes).
    pub fn autorestart_dirs(&self) -> Vec<String> {
        let mut v = Vec::new();
        for e in fs::read_dir(&self.settings_dir)
            .expect("read settings")
            .flatten()
        {
            if e.path().join("autorestart").is_file() {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        v
    }

    /// The JVM command line exactly as ibwarden builds it (vmoptions lines, then
    /// `-DjtsConfigDir`, `-Drestart`, classpath `jars/*`, main class) with a clean env.
    pub fn jvm_command(&self, xvfb: &Xvfb, restart: Option<&str>) -> Command {
        require_tool("java", "openjdk-17-jdk");
        let vm = fs::read_to_string(self.install_dir.join(self.program.vmoptions_file()))
            .expect("vmoptions");
        let mut cmd = Command::new("java");
        for line in vm.lines() {
            let l = line.trim();
            if !l.is_empty() && !l.starts_with('#') {
                cmd.arg(l);
            }
        }
        cmd.arg(format!("-DjtsConfigDir={}", self.settings_dir.display()));
        if let Some(r) = restart {
            cmd.arg(format!("-Drestart={r}"));
        }
        cmd.arg("-cp")
            .arg(format!("{}/jars/*", self.install_dir.display()))
            .arg(self.program.main_class());
        cmd.env_clear()
            .env("DISPLAY", &xvfb.display)
            .env("XAUTHORITY", &xvfb.xauthority)
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .current_dir(&self.install_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                fs::File::create(self.root().join("jvm.stdout")).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                fs::File::create(self.root().join("jvm.stderr")).expect("stderr file"),
            ));
        cmd
    }
}

/// A simulator JVM started without ibwarden.
pub struct SimProcess {
    pub child: ChildGuard,
}

impl SimProcess {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// Starts the simulator JVM directly (no ibwarden), as ibwarden would start it.
pub fn launch_sim_directly(install: &SimInstall, xvfb: &Xvfb, restart: Option<&str>) -> SimProcess {
    let mut cmd = install.jvm_command(xvfb, restart);
    SimProcess {
        child: ChildGuard::spawn("simulator JVM", &mut cmd),
    }
}

// ------------------------------------------------------------------------------ record

/// Reader of the simulator's JSON-lines record file, with a cursor for "next event" waits.
pub struct Record {
    path: PathBuf,
    cursor: usize,
}

/// True when `v.ev == name`.
pub fn is_ev(v: &Value, name: &str) -> bool {
    v["ev"] == name
}

impl Record {
    pub fn new(path: &Path) -> Record {
        Record {
            path: path.to_path_buf(),
            cursor: 0,
        }
    }

    /// Every complete event written so far. The simulator may be in the middle of writing
    /// a line: only lines ended by a newline are complete.
    pub fn events(&self) -> Vec<Value> {
        let text = fs::read_to_string(&self.path).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record line {l:?}: {e}"))
            })
            .collect()
    }

    /// Index of the cursor (events before it have been consumed by `wait_for`).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn set_cursor(&mut self, i: usize) {
        self.cursor = i;
    }

    /// Moves the cursor to the end (only events written after this call will match).
    pub fn skip_to_end(&mut self) {
        self.cursor = self.events().len();
    }

    /// The first event at or after the cursor matching `pred`, if it is already there;
    /// advances the cursor past it.
    pub fn next(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let evs = self.events();
        for (i, e) in evs.iter().enumerate().skip(self.cursor) {
            if pred(e) {
                self.cursor = i + 1;
                return Some(e.clone());
            }
        }
        None
    }

    /// Waits (polling every 20 ms) for the next event matching `pred`; panics after
    /// `timeout` with `what` and the last events of the record.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.next(&pred) {
                return e;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; record since cursor {}:\n{}",
                    self.cursor,
                    self.tail_text(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for an event matching `pred` at index `from` or later, without moving the
    /// cursor (pair it with `events().len()` taken before acting).
    pub fn wait_from(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().skip(from).find(|e| pred(e)) {
                return e;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} (from event {from}):\n{}",
                    self.tail_text(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the next event named `ev`.
    pub fn wait_ev(&mut self, ev: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("event {ev:?}"), timeout, |v| is_ev(v, ev))
    }

    /// Waits until a window with `title` is shown, or the frame's title changes to it.
    pub fn wait_window(&mut self, title: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("window {title:?}"), timeout, |v| {
            (is_ev(v, "window_shown") || is_ev(v, "title")) && v["title"] == title
        })
    }

    /// The last `n` events as text (for failure messages).
    pub fn tail_text(&self, n: usize) -> String {
        let evs = self.events();
        let start = evs.len().saturating_sub(n);
        evs[start..]
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Titles shown, in order: `window_shown` titles and frame `title` changes.
    pub fn window_sequence(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| is_ev(e, "window_shown") || is_ev(e, "title"))
            .map(|e| e["title"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

// ------------------------------------------------------------------------------ session

/// Everything one simulator test needs: Xvfb, an X client, the install, the JVM and a record
/// cursor. Fields drop in order: JVM first, then the X connection, Xvfb, and the temp dir.
pub struct Session {
    pub sim: Option<SimProcess>,
    pub x: x11::X,
    pub xvfb: Xvfb,
    pub rec: Record,
    pub install: SimInstall,
}

/// Generous deadline for a JVM to start and show its first window on a loaded 2-core box.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one step of a scaled-down flow.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

impl Session {
    /// Starts Xvfb and the simulator (no ibwarden) for `scenario`; waits for the login frame.
    pub fn start(scenario: &Scenario) -> Session {
        Session::start_program(scenario, SimProgram::Gateway)
    }

    /// Like [`Session::start`], in TWS mode.
    pub fn start_tws(scenario: &Scenario) -> Session {
        Session::start_program(scenario, SimProgram::Tws)
    }

    pub fn start_program(scenario: &Scenario, program: SimProgram) -> Session {
        let install = SimInstall::with_program(scenario, program);
        let xvfb = Xvfb::start();
        let x = x11::X::connect(&xvfb);
        let rec = install.record();
        let mut s = Session {
            sim: None,
            x,
            xvfb,
            rec,
            install,
        };
        s.launch(None);
        s
    }

    /// (Re)starts the JVM, optionally with `-Drestart=<dir>`, and waits for its first window;
    /// the record cursor is left just after the new JVM's `start` event, so callers can
    /// still wait for anything it recorded before its first window.
    pub fn launch(&mut self, restart: Option<&str>) {
        self.sim = Some(launch_sim_directly(&self.install, &self.xvfb, restart));
        self.rec.wait_ev("start", START_TIMEOUT);
        let after_start = self.rec.cursor();
        let title = self.install.login_title();
        self.rec.wait_window(&title, START_TIMEOUT);
        self.rec.set_cursor(after_start);
    }

    pub fn pid(&self) -> u32 {
        self.sim.as_ref().expect("simulator running").pid()
    }

    /// Waits for the viewable window `title` of the simulator and gives it the keyboard.
    pub fn focus(&self, title: &str) -> x11::Win {
        let w = self.x.wait_window(self.pid(), title, STEP_TIMEOUT);
        self.x.take_focus(&w);
        w
    }

    /// Presses `key` (e.g. `Tab`, `shift+Tab`) and waits until Java reports the focus on
    /// `field`. Needed before typing on: keys sent right after a Tab can still reach the
    /// previous field (measured: the first password character landed in the username).
    pub fn move_focus(&mut self, key: &str, field: &str) {
        let mark = self.rec.events().len();
        self.x.key(key);
        self.rec.wait_from(
            mark,
            &format!("focus on {field:?} after {key}"),
            STEP_TIMEOUT,
            |v| is_ev(v, "focus") && v["field"] == field,
        );
    }

    /// Waits until the most recent `focus` event in the record is on `field`.
    pub fn wait_focus_is(&self, field: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let evs = self.rec.events();
            if evs
                .iter()
                .rev()
                .find(|e| is_ev(e, "focus"))
                .is_some_and(|e| e["field"] == field)
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "focus never settled on {field:?}:\n{}",
                    self.rec.tail_text(20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types username Tab password Return into the login frame (focus starts in username).
    pub fn type_login(&mut self, user: &str, password: &str) {
        let title = self.install.login_title();
        self.focus(&title);
        self.x.type_text(user);
        self.move_focus("Tab", "password");
        self.x.type_text(password);
        self.x.key("Return");
        self.rec.wait_for("Log In pressed", STEP_TIMEOUT, |v| {
            is_ev(v, "button") && v["button"].as_str().is_some_and(|b| b.ends_with("Log In"))
        });
    }

    /// Enters a fresh TOTP code into the `Second Factor Authentication` code field.
    pub fn type_code(&mut self) -> (String, u64) {
        let (code, step) = self.install.scenario.fresh_totp();
        self.type_code_str(&code);
        (code, step)
    }

    /// Enters the code of TOTP `step` (the simulator accepts the current step ±1).
    pub fn type_code_for_step(&mut self, step: u64) -> String {
        let code = self.install.scenario.totp_at(step * 30);
        self.type_code_str(&code);
        code
    }

    /// Enters a code from the earliest step after `used_step` that the simulator accepts
    /// now (current step ±1). If that step is still two steps ahead, waits for the clock to
    /// reach the next step boundary first (what a supervisor must do too). Returns the step.
    pub fn type_code_after(&mut self, used_step: u64) -> u64 {
        loop {
            let now_ms = now_ms();
            let current = now_ms / 1000 / 30;
            let step = (used_step + 1).max(current);
            if step <= current + 1 {
                self.type_code_for_step(step);
                return step;
            }
            // Wait for the next 30 s boundary (a known time, not a guess).
            let boundary_ms = (current + 1) * 30_000;
            std::thread::sleep(Duration::from_millis(boundary_ms - now_ms + 10));
        }
    }

    fn type_code_str(&mut self, code: &str) {
        let title = self.install.twofa_title();
        self.focus(&title);
        // TWS changes the login frame's content in place: type only once the code field has
        // the focus (measured: a digit typed earlier landed in the password field).
        self.wait_focus_is("code");
        self.x.type_text(code);
        self.x.key("Return");
    }

    /// Waits for the simulator to exit and returns the shell-style exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let st = self
            .sim
            .as_mut()
            .expect("simulator running")
            .child
            .wait_exit(timeout);
        shell_exit_code(st)
    }
}

impl Session {
    /// Focuses window `title`, presses `key` (e.g. `Return`, `space`) and waits for the
    /// resulting button event in that window; returns it.
    pub fn press(&mut self, title: &str, key: &str) -> Value {
        self.focus(title);
        self.x.key(key);
        self.rec.wait_for(
            &format!("a button pressed in {title:?}"),
            STEP_TIMEOUT,
            |v| is_ev(v, "button") && v["window"] == title,
        )
    }

    /// Full live login: credentials, fresh TOTP code, until `logged_in`. Returns the TOTP
    /// step used (a step is accepted only once: the next login needs a later one).
    pub fn login_live(&mut self) -> u64 {
        let (u, p) = (
            self.install.scenario.username().to_string(),
            self.install.scenario.password().to_string(),
        );
        self.type_login(&u, &p);
        self.rec.wait_ev("twofa_prompt", STEP_TIMEOUT);
        let (_, step) = self.type_code();
        self.rec.wait_ev("logged_in", STEP_TIMEOUT);
        step
    }

    /// Full paper login: [`Session::login_paper_credentials_only`], then accept the
    /// `Warning` dialog; until `logged_in`.
    pub fn login_paper(&mut self) {
        self.login_paper_credentials_only();
        self.rec.wait_window("Warning", STEP_TIMEOUT);
        self.press("Warning", "Return");
        self.rec.wait_ev("logged_in", STEP_TIMEOUT);
    }

    /// Paper mode by keyboard: Shift+Tab to `Paper Trading`, Space, Tab back to the
    /// username, then credentials and Enter (until `Paper Log In` is pressed).
    pub fn login_paper_credentials_only(&mut self) {
        let title = self.install.login_title();
        self.focus(&title);
        self.x.key("shift+Tab");
        self.rec
            .wait_for("focus on Paper Trading", STEP_TIMEOUT, |v| {
                is_ev(v, "focus") && v["field"] == "Paper Trading"
            });
        self.x.key("space");
        self.rec
            .wait_for("Paper Trading selected", STEP_TIMEOUT, |v| {
                is_ev(v, "toggle") && v["name"] == "Paper Trading"
            });
        self.x.key("Tab");
        self.rec
            .wait_for("focus back on username", STEP_TIMEOUT, |v| {
                is_ev(v, "focus") && v["field"] == "username"
            });
        let (u, p) = (
            self.install.scenario.username().to_string(),
            self.install.scenario.password().to_string(),
        );
        self.type_login(&u, &p);
    }
}

// ------------------------------------------------------------------------------ benchmarks

/// A shell command's trimmed stdout (empty when it fails): for benchmark reports.
pub fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The machine a benchmark ran on, for its report (callers add their own tools).
pub fn bench_machine() -> serde_json::Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let mem_kb: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "ram_gib": (mem_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": sh("uname -r"),
        "os": sh(". /etc/os-release 2>/dev/null && echo \"$PRETTY_NAME\""),
        "java": sh("java -version 2>&1 | head -1"),
        "rustc": sh("rustc --version"),
        "git": sh(&format!("git -C {} rev-parse --short HEAD", repo_root().display())),
        "date_utc": sh("date -u +%Y-%m-%dT%H:%MZ"),
        "loadavg_at_start": sh("cat /proc/loadavg"),
    })
}

// ------------------------------------------------------------------------------ simulators

/// A simulator's scenario file: `# HEADER (written by tests/common)`, then `key=value`
/// lines with the values escaped for java.util.Properties.
pub fn properties_text(header: &str, entries: &BTreeMap<String, String>) -> String {
    let mut s = format!("# {header} (written by tests/common)\n");
    for (k, v) in entries {
        let mut esc = String::new();
        for (i, c) in v.chars().enumerate() {
            match c {
                '\\' => esc.push_str("\\\\"),
                '\n' => esc.push_str("\\n"),
                ' ' if i == 0 => esc.push_str("\\ "),
                '#' | '!' | '=' | ':' => {
                    esc.push('\\');
                    esc.push(c)
                }
                c if (c as u32) > 0x7e => esc.push_str(&format!("\\u{:04x}", c as u32)),
                c => esc.push(c),
            }
        }
        s.push_str(&format!("{k}={esc}\n"));
    }
    s
}

/// The RFC 6238 code (SHA-1, 6 digits, 30 s) of base32 `secret` at `unix_seconds`.
pub fn totp_code(secret: &str, unix_seconds: u64) -> String {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(secret).expect("base32 secret"))
        .build()
        .expect("totp")
        .generate(unix_seconds)
        .to_string()
}

/// (min, median, p99) of benchmark samples; p99 is the nearest rank (the maximum with
/// fewer than 100 samples). `None` for no samples.
pub fn min_median_p99(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    let rank = ((0.99 * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some((s[0], median, s[rank - 1]))
}
