//! Packaging: the systemd unit (`systemd-analyze verify`, the settings the issue requires),
//! the example config it ships, the man page and completions generated from the clap
//! definition, and the Debian package built by `scripts/build-deb`, installed on this
//! machine with `dpkg -i`, used (`ibwarden --version`, `man ibwarden`, the installed unit
//! verified with its man page), then purged.
//!
//! Needs (CI): systemd (systemd-analyze), dpkg-deb, man-db, python3 (scripts/build-deb), root
//! for `dpkg -i`. The install test holds an exclusive lock on
//! /tmp/ibwarden-packaging-test.lock, so parallel runs of it (several checkouts on one
//! machine) take turns over /usr/bin/ibwarden. It purges the package at the end, including a
//! previously installed one.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ibwarden::config::{Config, Env};
use ibwarden::secret::SecretSource;

const UNIT: &str = "packaging/systemd/ibwarden@.service";
const EXAMPLE: &str = "packaging/systemd/example.toml";
const BIN: &str = env!("CARGO_BIN_EXE_ibwarden");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `[Service]`-style `Key=Value` lines of a unit file, every value of every key.
fn unit_settings(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        let (k, v) = line.split_once('=').expect("Key=Value");
        map.entry(k.to_string()).or_default().push(v.to_string());
    }
    map
}

/// Runs `systemd-analyze verify` on `unit`; returns (success, lines about our unit).
fn verify(unit: &Path, check_man: bool) -> (bool, Vec<String>) {
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify");
    if !check_man {
        cmd.arg("--man=no");
    }
    let out = run(cmd.arg(unit));
    let stderr = text(&out.stderr);
    // Unknown keys and bad values are warnings on stderr with exit 0: count them as failures.
    let ours: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("ibwarden"))
        .map(str::to_string)
        .collect();
    (out.status.success(), ours)
}

/// A copy of the unit in `dir` with ExecStart pointing at the binary under test (verify
/// checks that the executable exists; /usr/bin/ibwarden does not before the package is
/// installed).
fn unit_copy(dir: &Path, extra: &str) -> PathBuf {
    let unit = fs::read_to_string(root().join(UNIT)).expect("unit");
    assert!(unit.contains("ExecStart=/usr/bin/ibwarden "));
    let unit = unit.replace("ExecStart=/usr/bin/ibwarden ", &format!("ExecStart={BIN} "));
    let unit = unit.replace("[Service]\n", &format!("[Service]\n{extra}"));
    let path = dir.join("ibwarden@.service");
    fs::write(&path, unit).expect("write unit");
    path
}

#[test]
fn systemd_unit_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, lines) = verify(&unit_copy(dir.path(), ""), false);
    assert!(ok && lines.is_empty(), "systemd-analyze verify: {lines:#?}");

    // The check can fail: a misspelt key is reported.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let (_, lines) = verify(&unit_copy(dir2.path(), "ProtectSistem=strict\n"), false);
    assert!(
        lines.iter().any(|l| l.contains("ProtectSistem")),
        "a misspelt key went unnoticed: {lines:?}"
    );
}

/// `systemd-analyze security --offline` scores the sandbox (0 best, 10 worst); 3.6 today.
/// The threshold keeps hardening from being dropped unnoticed.
#[test]
fn systemd_unit_exposure_stays_low() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_copy(dir.path(), "");
    let score = |unit: &Path| {
        let out = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager", "--threshold=40"])
            .arg(unit));
        (out.status.success(), text(&out.stdout))
    };
    let (ok, report) = score(&unit);
    assert!(ok, "exposure above 4.0:\n{report}");
    // The threshold bites: the same unit without its sandbox fails it.
    let bare: String = fs::read_to_string(&unit)
        .expect("unit")
        .lines()
        .filter(|l| {
            !l.starts_with("Protect") && !l.starts_with("Restrict") && !l.starts_with("Capability")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&unit, bare).expect("write");
    assert!(!score(&unit).0, "an unsandboxed unit passed the threshold");
}

#[test]
fn systemd_unit_has_the_required_settings() {
    let unit = fs::read_to_string(root().join(UNIT)).expect("unit");
    let s = unit_settings(&unit);
    let one = |k: &str| -> &str {
        let v = s.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(v.len(), 1, "{k} set {} times", v.len());
        &v[0]
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/ibwarden run --config /etc/ibwarden/%i.toml"
    );
    for (k, v) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "78"),
        ("StateDirectory", "ibwarden/%i"),
        ("RuntimeDirectory", "ibwarden/%i"),
        ("User", "ibwarden"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "read-only"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("KillMode", "mixed"),
        ("LimitNOFILE", "10000"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    // The JIT needs W+X pages: this must never be switched on.
    assert!(!s.contains_key("MemoryDenyWriteExecute"));
    assert!(!s.contains_key("DynamicUser"));
    // Instances share the user: RemoveIPC would delete the others' Xvfb shared memory.
    assert!(!s.contains_key("RemoveIPC"));
    let secs = |v: &str| -> u64 {
        v.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{v} is not N s"))
    };
    assert!(secs(one("TimeoutStopSec")) >= 90);
    // ibwarden pings at half the interval; probes and a login step fit in 30 s.
    assert!((30..=300).contains(&secs(one("WatchdogSec"))));
    // The credential IDs are what the example config asks for.
    let creds = &s["LoadCredential"];
    assert!(creds.contains(&"password:ibwarden-%i-password".to_string()));
    assert!(creds.contains(&"totp:ibwarden-%i-totp".to_string()));
    assert!(unit.contains("systemd-creds encrypt --name=password"));
    assert!(unit.contains("LoadCredentialEncrypted=password:"));
}

#[test]
fn example_config_loads_with_the_units_credentials() {
    let path = root().join(EXAMPLE);
    let text = fs::read_to_string(&path).expect("example");
    // As under the unit: $STATE_DIRECTORY and $RUNTIME_DIRECTORY set, no HOME.
    let env = Env {
        state_directory: Some("/var/lib/ibwarden/example".into()),
        runtime_directory: Some("/run/ibwarden/example".into()),
        ..Env::default()
    };
    let config = Config::from_str_with_env(&text, Path::new("/etc/ibwarden/example.toml"), &env)
        .unwrap_or_else(|e| panic!("example.toml does not load:\n{e}"));
    assert_eq!(
        config.account.password,
        SecretSource::Credential("password".into())
    );
    assert_eq!(
        config.account.totp,
        Some(SecretSource::Credential("totp".into()))
    );
    assert_eq!(
        config.control.socket,
        PathBuf::from("/run/ibwarden/example/control.sock")
    );
    assert_eq!(
        config.gateway.settings_dir,
        PathBuf::from("/var/lib/ibwarden/example/jts")
    );
}

#[test]
fn man_page_and_completions_come_from_the_cli() {
    let out = run(Command::new(BIN).args(["generate", "man"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let man = text(&out.stdout);
    assert!(man.contains(".TH ibwarden 1"), "{man}");
    for sub in ["run", "check", "totp", "setup", "secret", "import-ibc"] {
        // roff escapes hyphens.
        let entry = format!("ibwarden-{sub}(1)").replace('-', "\\-");
        assert!(man.contains(&entry), "man page lacks {entry}");
    }
    // generate is for packagers: hidden from the man page and --help.
    assert!(
        !man.contains("generate"),
        "hidden subcommand in the man page"
    );
    let help = run(Command::new(BIN).arg("--help"));
    assert!(!text(&help.stdout).contains("generate"));

    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(Command::new(BIN)
        .args(["generate", "man", "--out"])
        .arg(dir.path()));
    assert!(out.status.success());
    for page in ["ibwarden.1", "ibwarden-run.1", "ibwarden-import-ibc.1"] {
        assert!(dir.path().join(page).is_file(), "{page} not generated");
    }

    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(Command::new(BIN).args(["generate", "completions", shell]));
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("import-ibc"),
            "{shell} completion lacks import-ibc"
        );
    }
    // The bash script loads and registers the completion.
    let out = run(Command::new(BIN)
        .args(["generate", "completions", "bash", "--out"])
        .arg(dir.path()));
    assert!(out.status.success());
    let script = dir.path().join("ibwarden.bash");
    let out = run(Command::new("bash").arg("-c").arg(format!(
        "source {} && complete -p ibwarden",
        script.display()
    )));
    assert!(
        text(&out.stdout).contains("ibwarden"),
        "bash: {}",
        text(&out.stderr)
    );
}

/// Holds an exclusive flock for the lifetime of the value.
struct Lock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

fn lock(path: &str) -> Lock {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .expect("lock file");
    Lock(
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("flock"),
    )
}

/// Runs a dpkg command, retrying while another dpkg/apt holds dpkg's lock (up to 3 min).
fn dpkg(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = run(Command::new("dpkg").args(args));
        let locked = text(&out.stderr).contains("lock");
        if out.status.success() || !locked || Instant::now() > deadline {
            return out;
        }
        // Polling dpkg's lock: there is no event to wait on.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Purges the package when dropped, so a failed assertion leaves no install behind.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let out = dpkg(&["--purge", "ibwarden"]);
        if !out.status.success() {
            eprintln!("dpkg --purge ibwarden failed: {}", text(&out.stderr));
        }
    }
}

#[test]
fn deb_builds_installs_and_works() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test installs the package with dpkg -i: run the tests as root"
    );
    let _lock = lock("/tmp/ibwarden-packaging-test.lock");
    let work = tempfile::tempdir().expect("tempdir");
    let out_dir = work.path().join("out");
    let started = Instant::now();
    let out = run(Command::new(root().join("scripts/build-deb"))
        .args(["--fast", "--binary", BIN, "--gen-dir"])
        .arg(work.path().join("gen"))
        .arg("--out")
        .arg(&out_dir));
    assert!(out.status.success(), "build-deb: {}", text(&out.stderr));
    let deb = text(&out.stdout)
        .lines()
        .last()
        .expect("deb path")
        .to_string();
    eprintln!("built {deb} in {:?}", started.elapsed());
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file());

    let field = |name: &str| {
        let out = run(Command::new("dpkg-deb").args(["-f", &deb, name]));
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(field("Package"), "ibwarden");
    assert_eq!(field("Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    let depends = field("Depends");
    for dep in ["xvfb", "libxcb1", "libc6", "adduser"] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }
    assert!(field("Recommends").contains("tesseract-ocr"));

    let _purge = Purge;
    let out = dpkg(&["-i", &deb]);
    assert!(
        out.status.success(),
        "dpkg -i: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let out = run(Command::new("/usr/bin/ibwarden").arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("ibwarden {}", env!("CARGO_PKG_VERSION"))
    );

    let out = run(Command::new("man")
        .args(["-P", "cat", "ibwarden"])
        .env("MANWIDTH", "100"));
    let page = text(&out.stdout);
    assert!(out.status.success(), "man: {}", text(&out.stderr));
    assert!(
        page.contains("NAME") && page.contains("import-ibc"),
        "{page}"
    );
    // The config file's page: every key, generated from the key table.
    let out = run(Command::new("man").args(["-P", "cat", "5", "ibwarden.toml"]));
    assert!(
        out.status.success(),
        "man 5 ibwarden.toml: {}",
        text(&out.stderr)
    );
    let page = text(&out.stdout);
    for key in ["trading_mode", "stop_grace", "max_failed_logins", "probe"] {
        assert!(page.contains(key), "man 5 ibwarden.toml lacks {key}");
    }
    let out = run(Command::new("man").args(["-P", "cat", "ibwarden-import-ibc"]));
    assert!(
        out.status.success(),
        "man ibwarden-import-ibc: {}",
        text(&out.stderr)
    );

    // The installed unit verifies as is, Documentation=man:ibwarden(1) included.
    let (ok, lines) = verify(Path::new("/lib/systemd/system/ibwarden@.service"), true);
    assert!(ok && lines.is_empty(), "installed unit: {lines:#?}");

    for (path, mode) in [
        ("/usr/share/doc/ibwarden/config.toml.example", 0o644),
        ("/etc/ibwarden/example.toml", 0o644),
        ("/usr/share/bash-completion/completions/ibwarden", 0o644),
        ("/usr/share/zsh/vendor-completions/_ibwarden", 0o644),
        ("/usr/share/fish/vendor_completions.d/ibwarden.fish", 0o644),
        ("/usr/share/man/man1/ibwarden.1.gz", 0o644),
        ("/usr/share/man/man5/ibwarden.toml.5.gz", 0o644),
        ("/usr/bin/ibwarden", 0o755),
    ] {
        let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{path}");
    }
    // The conffile is registered, so local edits survive upgrades.
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "ibwarden"]));
    assert!(text(&out.stdout).contains("/etc/ibwarden/example.toml"));
    // postinst created the service user, without a login shell.
    let out = run(Command::new("getent").args(["passwd", "ibwarden"]));
    let pw = text(&out.stdout);
    assert!(
        pw.contains(":/var/lib/ibwarden:/usr/sbin/nologin"),
        "{pw:?}"
    );

    drop(_purge);
    assert!(
        !Path::new("/usr/bin/ibwarden").exists(),
        "purge left the binary"
    );
    assert!(!Path::new("/lib/systemd/system/ibwarden@.service").exists());
}

/// `ibwarden check` with the example config in the environment the unit gives it:
/// credentials under $CREDENTIALS_DIRECTORY named as LoadCredential= names them,
/// $STATE_DIRECTORY, $RUNTIME_DIRECTORY. The secrets are read (and not printed); a missing
/// credential (systemd skips a missing credstore file) is a clear failure.
#[test]
fn example_config_reads_the_units_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("credentials");
    let state = dir.path().join("state");
    fs::create_dir_all(&creds).expect("mkdir");
    fs::create_dir_all(&state).expect("mkdir");
    let password = "Unit-Cred-Pw-4471";
    let code = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    for (name, value) in [("password", password), ("totp", code)] {
        let p = creds.join(name);
        fs::write(&p, format!("{value}\n")).expect("write");
        // systemd makes credentials read-only to the service user.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o400)).expect("chmod");
    }
    let check = || {
        run(Command::new(BIN)
            .args(["check", "--config"])
            .arg(root().join(EXAMPLE))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("STATE_DIRECTORY", &state)
            .env("RUNTIME_DIRECTORY", dir.path()))
    };
    let out = check();
    let stdout = text(&out.stdout);
    let all = format!("{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ok   password: systemd credential password"),
        "{all}"
    );
    assert!(
        stdout.contains("ok   activation code: systemd credential totp"),
        "{all}"
    );
    assert!(
        stdout.contains(&format!("ok   state dir: {}", state.display())),
        "{all}"
    );
    assert!(
        !all.contains(password) && !all.contains(code),
        "secret printed:\n{all}"
    );

    fs::remove_file(creds.join("password")).expect("rm");
    let out = check();
    let stdout = text(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("FAIL password") && stdout.contains("credentials/password"),
        "{stdout}"
    );
}
