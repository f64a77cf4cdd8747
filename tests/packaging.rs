//! Packaging: the systemd unit (`systemd-analyze verify`, the settings the issue requires),
//! the example config it ships, the man page and completions generated from the clap
//! definition, and the Debian package built by `scripts/build-deb`, installed on this
//! machine with `dpkg -i`, used (`ibwarden --version`, `man ibwarden`, the installed unit
//! verified with its man page), then purged.
//!
//! The .deb also passes lintian (no error; each accepted warning named below with why), and
//! the maintainer scripts run with a fake `systemctl` show that an upgrade restarts nothing.
//!
//! Needs (CI): systemd (systemd-analyze), dpkg-deb, man-db, python3 (scripts/build-deb),
//! binutils (strip), lintian, root for `dpkg -i`. The install test holds an exclusive lock on
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

mod common;

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

/// Builds the .deb with `scripts/build-deb` from the debug binary under test (stripped in
/// the package), into `work`; returns its path.
fn build_deb(work: &Path) -> String {
    common::require_tool("dpkg-deb", "dpkg");
    common::require_tool("python3", "python3");
    common::require_tool("strip", "binutils");
    let started = Instant::now();
    let out = run(Command::new(root().join("scripts/build-deb"))
        .args(["--fast", "--binary", BIN, "--gen-dir"])
        .arg(work.join("gen"))
        .arg("--out")
        .arg(work.join("out")));
    assert!(out.status.success(), "build-deb: {}", text(&out.stderr));
    let deb = text(&out.stdout)
        .lines()
        .last()
        .expect("deb path")
        .to_string();
    eprintln!("built {deb} in {:?}", started.elapsed());
    assert!(deb.ends_with(".deb") && Path::new(&deb).is_file());
    deb
}

#[test]
fn deb_builds_installs_and_works() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test installs the package with dpkg -i: run the tests as root"
    );
    let _lock = lock("/tmp/ibwarden-packaging-test.lock");
    let work = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(work.path());

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
        ("/usr/share/doc/ibwarden/copyright", 0o644),
        ("/usr/share/doc/ibwarden/changelog.Debian.gz", 0o644),
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

/// Warnings lintian may give the package, each with why it stays. Errors: none accepted.
const LINTIAN_ACCEPTED: &[(&str, &str)] = &[(
    "initial-upload-closes-no-bugs",
    "not uploaded to Debian: there is no ITP bug for the first changelog entry to close",
)];

/// What lintian said about the package before it was fixed; none of it may come back.
const LINTIAN_FIXED: &[&str] = &[
    "no-copyright-file",
    "no-changelog",
    "unstripped-binary-or-object",
    "synopsis-too-long",
    "maintainer-script-calls-systemctl",
];

#[test]
fn deb_passes_lintian() {
    let lintian = common::require_tool("lintian", "lintian");
    let work = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(work.path());
    // --no-cfg: no ~/.lintianrc or /etc/lintianrc changes what is reported.
    let out = run(Command::new(lintian)
        .args(["--no-cfg", "--display-info", "--fail-on", "none"])
        .arg(&deb));
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "lintian did not run: {}{report}",
        text(&out.stderr)
    );
    // "W: ibwarden: tag-name [context]"
    let tags: Vec<(&str, &str)> = report
        .lines()
        .filter_map(|l| {
            let (level, rest) = l.split_once(": ")?;
            let (_package, rest) = rest.split_once(": ")?;
            Some((level, rest.split_whitespace().next()?))
        })
        .collect();
    eprintln!("lintian:\n{report}");
    let errors: Vec<_> = tags.iter().filter(|(l, _)| *l == "E").collect();
    assert!(errors.is_empty(), "lintian errors:\n{report}");
    let unaccepted: Vec<_> = tags
        .iter()
        .filter(|(l, t)| *l == "W" && !LINTIAN_ACCEPTED.iter().any(|(a, _)| a == t))
        .collect();
    assert!(
        unaccepted.is_empty(),
        "lintian warnings not in LINTIAN_ACCEPTED (fix them, or add one with its reason): \
         {unaccepted:?}\n{report}"
    );
    for fixed in LINTIAN_FIXED {
        assert!(
            !tags.iter().any(|(_, t)| t == fixed),
            "{fixed} is back:\n{report}"
        );
    }

    // The scripts the other tests run are the ones in the package, and the doc files are
    // the ones in packaging/debian.
    for script in ["postinst", "prerm", "postrm"] {
        let out = run(Command::new("dpkg-deb").args(["--info", &deb, script]));
        assert!(out.status.success(), "{script} not in the package");
        let ours = fs::read(root().join("packaging/debian").join(script)).expect("script");
        assert_eq!(
            out.stdout, ours,
            "{script} differs from packaging/debian/{script}"
        );
    }
    let unpacked = work.path().join("unpacked");
    let out = run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    assert!(out.status.success(), "dpkg-deb -x: {}", text(&out.stderr));
    let doc = unpacked.join("usr/share/doc/ibwarden");
    assert_eq!(
        fs::read(doc.join("copyright")).expect("copyright"),
        fs::read(root().join("packaging/debian/copyright")).expect("copyright source")
    );
    let out = run(Command::new("gzip")
        .arg("-dc")
        .arg(doc.join("changelog.Debian.gz")));
    assert_eq!(
        out.stdout,
        fs::read(root().join("packaging/debian/changelog")).expect("changelog source")
    );
    // The changelog's first entry is the package's version (build-deb refuses otherwise).
    let first = text(&out.stdout).lines().next().unwrap_or("").to_string();
    assert!(
        first.starts_with(&format!("ibwarden ({}-1) ", env!("CARGO_PKG_VERSION"))),
        "{first}"
    );
    // The binary in the package is stripped; the one under test is not touched.
    let readelf = common::require_tool("readelf", "binutils");
    let symtab = |path: &Path| {
        let out = run(Command::new(&readelf).arg("-S").arg(path));
        assert!(out.status.success(), "readelf: {}", text(&out.stderr));
        text(&out.stdout).contains(".symtab")
    };
    assert!(!symtab(&unpacked.join("usr/bin/ibwarden")), "not stripped");
    assert!(symtab(Path::new(BIN)), "build-deb stripped its input");
}

/// A package maintainer script run by `sh` the way dpkg runs it, with fakes first on PATH
/// (`systemctl`, `deb-systemd-invoke`, `getent`, `adduser`, `chmod`) that log their
/// arguments, and the script's systemd test (`[ -d /run/systemd/system ]`) pointed at a
/// directory of the test's.
struct Maint {
    dir: tempfile::TempDir,
}

/// What a [`Maint`] run did.
struct MaintRun {
    out: Output,
    /// One line per faked command: `name args...`.
    calls: Vec<String>,
}

impl MaintRun {
    fn stdout(&self) -> String {
        text(&self.out.stdout)
    }

    fn systemctl(&self) -> Vec<&str> {
        self.calls
            .iter()
            .filter_map(|c| c.strip_prefix("systemctl "))
            .collect()
    }
}

impl Maint {
    fn new() -> Maint {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("mkdir");
        let fake = "#!/bin/sh\n\
            name=$(basename \"$0\")\n\
            printf '%s %s\\n' \"$name\" \"$*\" >> \"$FAKE_LOG\"\n\
            case \"$name\" in\n\
            systemctl|deb-systemd-invoke)\n\
                [ -z \"$FAKE_SYSTEMCTL_FAILS\" ] || exit 1\n\
                [ \"$1\" != list-units ] || cat \"$FAKE_UNITS\" ;;\n\
            getent) [ -z \"$FAKE_NO_USER\" ] || exit 2 ;;\n\
            esac\n\
            exit 0\n";
        for name in [
            "systemctl",
            "deb-systemd-invoke",
            "getent",
            "adduser",
            "chmod",
        ] {
            let p = bin.join(name);
            fs::write(&p, fake).expect("write fake");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Maint { dir }
    }

    fn systemd_dir(&self) -> PathBuf {
        self.dir.path().join("run-systemd-system")
    }

    /// Runs `packaging/debian/<script> args...`; `systemd`: whether systemd is PID 1;
    /// `units`: what `systemctl list-units` prints.
    fn run(&self, script: &str, args: &[&str], systemd: bool, units: &str) -> MaintRun {
        self.run_with(script, args, systemd, units, &[])
    }

    fn run_with(
        &self,
        script: &str,
        args: &[&str],
        systemd: bool,
        units: &str,
        env: &[(&str, &str)],
    ) -> MaintRun {
        let source = fs::read_to_string(root().join("packaging/debian").join(script))
            .expect("maintainer script");
        assert!(
            source.starts_with("#!/bin/sh\n"),
            "{script} is not a sh script"
        );
        assert!(source.contains("[ -d /run/systemd/system ]"), "{script}");
        let copy = self.dir.path().join(script);
        let dir = self.systemd_dir();
        fs::write(
            &copy,
            source.replace("/run/systemd/system", &dir.display().to_string()),
        )
        .expect("write script");
        let _ = fs::remove_dir(&dir);
        if systemd {
            fs::create_dir(&dir).expect("mkdir");
        }
        let log = self.dir.path().join("calls.log");
        let _ = fs::remove_file(&log);
        let units_file = self.dir.path().join("units");
        fs::write(&units_file, units).expect("write units");
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.dir.path().join("bin").display()
        );
        let out = run(Command::new("sh")
            .arg(&copy)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("FAKE_LOG", &log)
            .env("FAKE_UNITS", &units_file)
            .envs(env.iter().copied()));
        let calls = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        MaintRun { out, calls }
    }
}

/// `systemctl list-units --no-legend --plain` lines for two instances.
const TWO_RUNNING: &str = "ibwarden@main.service loaded active running ibwarden: IB Gateway kept logged in (main)\n\
     ibwarden@paper-2.service loaded activating start ibwarden: IB Gateway kept logged in (paper-2)\n";

#[test]
fn an_upgrade_restarts_no_gateway_and_names_the_instances_on_the_old_binary() {
    let m = Maint::new();
    let upgrade = m.run("postinst", &["configure", "0.0.9"], true, TWO_RUNNING);
    assert!(
        upgrade.out.status.success(),
        "postinst failed: {}",
        text(&upgrade.out.stderr)
    );
    // Nothing is started, stopped or restarted: systemd reloads units and is asked a list.
    let systemctl = upgrade.systemctl();
    assert!(systemctl.contains(&"daemon-reload"), "{systemctl:?}");
    for call in &systemctl {
        let verb = call.split_whitespace().next().unwrap_or("");
        assert!(
            ["daemon-reload", "list-units"].contains(&verb),
            "postinst ran `systemctl {call}` on upgrade"
        );
        assert!(!call.contains("restart"), "{call}");
    }
    let list = systemctl
        .iter()
        .find(|c| c.starts_with("list-units"))
        .expect("postinst did not list the running instances");
    assert!(list.contains("ibwarden@*.service"), "{list}");
    assert!(
        !upgrade
            .calls
            .iter()
            .any(|c| c.starts_with("deb-systemd-invoke")),
        "{:?}",
        upgrade.calls
    );
    // It names them, and how to load the new binary.
    let said = upgrade.stdout();
    for name in ["ibwarden@main", "ibwarden@paper-2"] {
        assert!(said.contains(name), "{name} not named:\n{said}");
    }
    assert!(said.contains("systemctl restart ibwarden@NAME"), "{said}");

    // Nothing running: nothing to say.
    let idle = m.run("postinst", &["configure", "0.0.9"], true, "");
    assert!(idle.out.status.success());
    assert_eq!(idle.stdout(), "");

    // systemctl failing (a broken or busy systemd) never fails the upgrade.
    let broken = m.run_with(
        "postinst",
        &["configure", "0.0.9"],
        true,
        TWO_RUNNING,
        &[("FAKE_SYSTEMCTL_FAILS", "1")],
    );
    assert!(
        broken.out.status.success(),
        "postinst failed with systemctl failing: {}",
        text(&broken.out.stderr)
    );
    assert!(!broken.stdout().contains("ibwarden@main"));

    // Without systemd as PID 1 (a container, a chroot), systemctl is not called at all.
    let chroot = m.run("postinst", &["configure", "0.0.9"], false, TWO_RUNNING);
    assert!(chroot.out.status.success());
    assert!(chroot.systemctl().is_empty(), "{:?}", chroot.calls);
}

#[test]
fn a_first_install_creates_the_user_and_lists_nothing() {
    let m = Maint::new();
    let install = m.run_with(
        "postinst",
        &["configure"],
        true,
        TWO_RUNNING,
        &[("FAKE_NO_USER", "1")],
    );
    assert!(
        install.out.status.success(),
        "postinst failed: {}",
        text(&install.out.stderr)
    );
    assert_eq!(install.systemctl(), ["daemon-reload"]);
    let adduser = install
        .calls
        .iter()
        .find(|c| c.starts_with("adduser "))
        .expect("no adduser");
    for arg in [
        "--system",
        "--no-create-home",
        "/usr/sbin/nologin",
        " ibwarden",
    ] {
        assert!(adduser.contains(arg), "{adduser}");
    }
    assert!(install
        .calls
        .contains(&"chmod 0755 /etc/ibwarden".to_string()));
    assert_eq!(install.stdout(), "");
}

#[test]
fn prerm_stops_the_gateways_on_removal_only() {
    let m = Maint::new();
    let upgrade = m.run("prerm", &["upgrade", "0.2.0-1"], true, TWO_RUNNING);
    assert!(upgrade.out.status.success());
    assert!(
        upgrade.calls.is_empty(),
        "prerm upgrade ran {:?}",
        upgrade.calls
    );

    let remove = m.run("prerm", &["remove"], true, TWO_RUNNING);
    assert!(remove.out.status.success());
    assert_eq!(
        remove.calls,
        ["deb-systemd-invoke stop ibwarden@*.service"],
        "prerm remove"
    );
    let chroot = m.run("prerm", &["remove"], false, TWO_RUNNING);
    assert!(chroot.out.status.success());
    assert!(chroot.calls.is_empty(), "{:?}", chroot.calls);
    let failing = m.run_with(
        "prerm",
        &["remove"],
        true,
        "",
        &[("FAKE_SYSTEMCTL_FAILS", "1")],
    );
    assert!(failing.out.status.success());
}
