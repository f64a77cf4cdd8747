//! Install discovery, the JVM command line and the process lifecycle, against a fake install
//! in a temp dir whose `java` is a shell script that records its argv, environment and cwd.
//! Real processes, real signals; every wait is on an event (exit, pidfd, fifo) with a
//! deadline. The last tests run the real gateway simulator JVM (`tests/simulator`) on a
//! private Xvfb through the same discovery, command line and spawn code ibwarden uses.

mod common;

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ibwarden::gateway::install::{
    discover, find_java, InstallError, InstallQuery, JavaSource, Program,
};
use ibwarden::gateway::launch::{
    build_command, find_autorestart_token, read_inputs, AutorestartScan, JvmCommand, LaunchParams,
    ALLOWED_ENV,
};
use ibwarden::gateway::process::{
    classify_exit, find_adoptable, find_hs_err, spawn, terminate, write_pidfile, ExitKind,
    GatewayProcess, JvmIdentity, PidFd, SpawnOptions, Termination,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

const DEADLINE: Duration = Duration::from_secs(10);

fn write_exec(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
    fs::write(path, text).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A fake Gateway install: two jars, a vmoptions file with `-D` lines, and a bundled
/// `jre/bin/java` script that records what it got into `record/` and then acts out the
/// `-Dfake.mode=` given to it.
struct FakeInstall {
    _tmp: TempDir,
    dir: PathBuf,
    record: PathBuf,
    settings: PathBuf,
    work: PathBuf,
    root: PathBuf,
}

fn fake_install(mode: &str) -> FakeInstall {
    let tmp = TempDir::new().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let dir = root.join("ibgateway/1030");
    let record = root.join("record");
    let settings = root.join("settings");
    let work = root.join("work");
    for d in [
        &record,
        &settings,
        &work,
        &dir.join("jars"),
        &dir.join(".install4j"),
    ] {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::write(dir.join("jars/b.jar"), b"").expect("jar");
    fs::write(dir.join("jars/a.jar"), b"").expect("jar");
    fs::write(dir.join("jars/notes.txt"), b"").expect("not a jar");
    fs::write(dir.join(".install4j/i4jruntime.jar"), b"").expect("jar");
    fs::write(
        dir.join("ibgateway.vmoptions"),
        format!(
            "# fake\n-Xmx768m\n\n-Dsim.scenario={}/scenario.toml\n-Dfake.mode={mode}\n-Dfake.fifo={}/fifo\n",
            root.display(),
            root.display()
        ),
    )
    .expect("vmoptions");
    let script = format!(
        r#"#!/bin/sh
rec='{rec}'
for a in "$@"; do printf '%s\n' "$a"; done > "$rec/argv.tmp"
tr '\0' '\n' < /proc/$$/environ > "$rec/env"
pwd > "$rec/cwd"
mv "$rec/argv.tmp" "$rec/argv"
mode=; fifo=
for a in "$@"; do
  case "$a" in
    -Dfake.mode=*) mode="${{a#-Dfake.mode=}}";;
    -Dfake.fifo=*) fifo="${{a#-Dfake.fifo=}}";;
  esac
done
case "$mode" in
  exit0) exit 0;;
  hold) echo ready > "$fifo"; sleep 1000 & wait;;
  *) exit 3;;
esac
"#,
        rec = record.display()
    );
    write_exec(&dir.join("jre/bin/java"), &script);
    FakeInstall {
        _tmp: tmp,
        dir,
        record,
        settings,
        work,
        root,
    }
}

fn params(f: &FakeInstall) -> LaunchParams {
    LaunchParams {
        settings_dir: f.settings.clone(),
        work_dir: f.work.clone(),
        restart: None,
        extra_jvm_args: vec!["-Dextra=1".into()],
        display: ":99".into(),
        xauthority: Some(f.root.join("Xauthority")),
        dbus_session_bus_address: None,
        path_env: std::env::var_os("PATH"),
        home: Some(f.root.clone().into_os_string()),
    }
}

fn command_for(f: &FakeInstall) -> JvmCommand {
    let install = discover(&InstallQuery {
        program: Some(Program::Gateway),
        install_dir: Some(f.dir.clone()),
        ..Default::default()
    })
    .expect("fake install found");
    assert_eq!(install.java_source, JavaSource::Bundled);
    let inputs = read_inputs(&install).expect("inputs");
    build_command(&install, &inputs, &params(f)).expect("command")
}

async fn wait_exit(p: &mut GatewayProcess) -> std::process::ExitStatus {
    tokio::time::timeout(DEADLINE, p.wait())
        .await
        .expect("exited within the deadline")
        .expect("wait")
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("record file")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Opens a fifo for reading that never reports EOF before a writer came.
async fn fifo(path: &Path) -> tokio::net::unix::pipe::Receiver {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .expect("open fifo")
}

/// Reads one line from the fifo (the child's report), with a deadline.
async fn read_line(rx: &mut tokio::net::unix::pipe::Receiver) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        tokio::time::timeout(DEADLINE, rx.read_exact(&mut byte))
            .await
            .expect("child wrote to the fifo in time")
            .expect("read fifo");
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("utf-8").trim().to_owned()
}

async fn wait_ready(rx: &mut tokio::net::unix::pipe::Receiver) {
    let mut buf = [0u8; 6];
    tokio::time::timeout(DEADLINE, rx.read_exact(&mut buf))
        .await
        .expect("child signalled readiness in time")
        .expect("read fifo");
    assert_eq!(&buf, b"ready\n");
}

// ---- launch: argv, env, cwd -------------------------------------------------------------

#[tokio::test]
async fn jvm_gets_vmoptions_settings_dir_main_class_and_cwd() {
    let f = fake_install("exit0");
    let cmd = command_for(&f);
    let mut p = spawn(&cmd, &SpawnOptions::new(f.work.join("jvm.log"))).expect("spawn");
    let status = wait_exit(&mut p).await;
    assert_eq!(classify_exit(status, None), ExitKind::Clean);

    let argv = lines(&f.record.join("argv"));
    let has = |s: &str| argv.iter().any(|a| a == s);
    assert!(has("-Xmx768m"), "{argv:?}");
    assert!(has(&format!(
        "-Dsim.scenario={}/scenario.toml",
        f.root.display()
    )));
    assert!(has(&format!("-DjtsConfigDir={}", f.settings.display())));
    assert!(has("-Dinstall4jType=standalone"));
    assert!(has("-Dexe4j.isInstall4j=true"));
    assert!(has("-Dextra=1"));
    assert!(has(&format!(
        "-XX:ErrorFile={}/hs_err_pid%p.log",
        f.work.display()
    )));
    let cp = argv.iter().position(|a| a == "-cp").expect("-cp");
    assert_eq!(
        argv[cp + 1],
        format!(
            "{d}/jars/a.jar:{d}/jars/b.jar:{d}/.install4j/i4jruntime.jar",
            d = f.dir.display()
        )
    );
    assert_eq!(argv.last().map(String::as_str), Some("ibgateway.GWClient"));
    assert_eq!(lines(&f.record.join("cwd")), [f.work.display().to_string()]);
    // The JVM's output went to its own log, after our separator line.
    let log = fs::read_to_string(f.work.join("jvm.log")).expect("log");
    assert!(log.starts_with("--- ibwarden: launching"), "{log}");
}

/// The parent's environment holds a secret; the JVM must see none of it. Runs in a child
/// copy of this test binary so the secret is in the real process environment without
/// mutating the environment of the (multi-threaded) test harness.
#[tokio::test]
async fn jvm_environment_is_only_the_allowed_keys() {
    const MARK: &str = "IBWARDEN_GATEWAY_TEST_CHILD";
    const SECRET: &str = "hunter2-Sup3rSecret";
    if std::env::var_os(MARK).is_none() {
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "jvm_environment_is_only_the_allowed_keys",
                "--nocapture",
            ])
            .env(MARK, "1")
            .env("IBWARDEN_TEST_SECRET", SECRET)
            .env("TWSPASSWORD", SECRET)
            .output()
            .expect("run child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("env-check-done"),
            "child did not run the check:\n{stdout}"
        );
        return;
    }
    assert_eq!(std::env::var("IBWARDEN_TEST_SECRET").as_deref(), Ok(SECRET));
    let f = fake_install("exit0");
    let cmd = command_for(&f);
    let mut p = spawn(&cmd, &SpawnOptions::new(f.work.join("jvm.log"))).expect("spawn");
    wait_exit(&mut p).await;
    let env = lines(&f.record.join("env"));
    for line in &env {
        let key = line.split('=').next().expect("key");
        assert!(
            ALLOWED_ENV.contains(&key),
            "unexpected env var {key} in {env:?}"
        );
        assert!(!line.contains(SECRET), "secret leaked: {line}");
    }
    assert!(env.contains(&"DISPLAY=:99".to_string()), "{env:?}");
    assert!(env.contains(&format!("XAUTHORITY={}/Xauthority", f.root.display())));
    assert!(!lines(&f.record.join("argv"))
        .iter()
        .any(|a| a.contains(SECRET)));
    println!("env-check-done");
}

// ---- install discovery ----------------------------------------------------------------

#[test]
fn default_search_picks_highest_valid_version() {
    let home = TempDir::new().expect("tempdir");
    let base = home.path().join("Jts/ibgateway");
    let make = |v: &str, vmoptions: bool| {
        let d = base.join(v);
        fs::create_dir_all(d.join("jars")).expect("mkdir");
        fs::write(d.join("jars/x.jar"), b"").expect("jar");
        if vmoptions {
            fs::write(d.join("ibgateway.vmoptions"), "-Xmx1g\n").expect("vmoptions");
        }
        write_exec(&d.join(".install4j/jre/bin/java"), "#!/bin/sh\n");
        write_exec(&d.join("jre/bin/java"), "#!/bin/sh\n");
        d
    };
    make("1019", true);
    let want = make("1030", true);
    make("1040", false); // newest but broken: skipped with a warning
    make("latest", true); // not a version
    let install = discover(&InstallQuery {
        program: Some(Program::Gateway),
        home: Some(home.path().to_path_buf()),
        ..Default::default()
    })
    .expect("found");
    assert_eq!(install.dir, want);
    assert_eq!(install.program.main_class(), "ibgateway.GWClient");
    // `.install4j/jre` is preferred over `jre`.
    assert_eq!(install.java, want.join(".install4j/jre/bin/java"));
    assert_eq!(install.java_source, JavaSource::Bundled);

    // Configuring the parent of the version directories works the same way.
    let install = discover(&InstallQuery {
        program: Some(Program::Gateway),
        install_dir: Some(base.clone()),
        ..Default::default()
    })
    .expect("found under the configured parent");
    assert_eq!(install.dir, want);

    // TWS looks in ~/Jts/<version> and needs tws.vmoptions.
    let err = discover(&InstallQuery {
        program: Some(Program::Tws),
        home: Some(home.path().to_path_buf()),
        ..Default::default()
    })
    .expect_err("no tws");
    assert!(matches!(err, InstallError::NotFound { .. }), "{err}");
}

#[test]
fn install_errors_name_the_dir_and_what_is_missing() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("gw");
    let q = |dir: &Path, program| InstallQuery {
        program: Some(program),
        install_dir: Some(dir.to_path_buf()),
        ..Default::default()
    };
    let err = discover(&q(&dir, Program::Gateway)).expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!("install directory {} does not exist", dir.display())
    );

    fs::create_dir_all(&dir).expect("mkdir");
    let err = discover(&q(&dir, Program::Gateway)).expect_err("no jars");
    assert!(err.to_string().contains("no jars/ directory"), "{err}");
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );

    fs::create_dir_all(dir.join("jars")).expect("mkdir");
    let err = discover(&q(&dir, Program::Gateway)).expect_err("no jar files");
    assert!(err.to_string().contains("contains no .jar files"), "{err}");

    fs::write(dir.join("jars/x.jar"), b"").expect("jar");
    let err = discover(&q(&dir, Program::Tws)).expect_err("no vmoptions");
    assert_eq!(
        err.to_string(),
        format!(
            "{}/tws.vmoptions not found (is {} a TWS install?)",
            dir.display(),
            dir.display()
        )
    );

    fs::write(dir.join("tws.vmoptions"), b"").expect("vmoptions");
    let mut query = q(&dir, Program::Tws);
    query.java = Some(dir.join("nope/java"));
    let err = discover(&query).expect_err("bad java");
    assert!(err.to_string().starts_with("configured java"), "{err}");

    query.java = None;
    query.path_env = Some(OsString::from(tmp.path().join("empty-bin")));
    let err = discover(&query).expect_err("no java");
    assert!(
        err.to_string().starts_with("no java found; looked at"),
        "{err}"
    );
}

#[test]
fn java_from_installer_record_then_path() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("gw");
    let jre = tmp.path().join("somejre");
    write_exec(&jre.join("bin/java"), "#!/bin/sh\n");
    fs::create_dir_all(dir.join(".install4j")).expect("mkdir");
    fs::write(
        dir.join(".install4j/inst_jre.cfg"),
        format!("{}\n", jre.display()),
    )
    .expect("cfg");
    let (java, source) = find_java(&dir, None, None).expect("found");
    assert_eq!(
        (java, source),
        (jre.join("bin/java"), JavaSource::InstallerRecord)
    );

    let bin = tmp.path().join("bin");
    write_exec(&bin.join("java"), "#!/bin/sh\n");
    fs::remove_file(dir.join(".install4j/inst_jre.cfg")).expect("rm");
    let path = std::env::join_paths([tmp.path().join("missing"), bin.clone()]).expect("join");
    let (java, source) = find_java(&dir, None, Some(&path)).expect("found");
    assert_eq!((java, source), (bin.join("java"), JavaSource::Path));
}

// ---- autorestart token ----------------------------------------------------------------

#[test]
fn autorestart_token_exactly_one_level_down() {
    let tmp = TempDir::new().expect("tempdir");
    let s = tmp.path();
    assert_eq!(
        find_autorestart_token(&s.join("missing")),
        AutorestartScan::None
    );
    // Zero and two levels down do not count.
    fs::write(s.join("autorestart"), b"").expect("write");
    fs::create_dir_all(s.join("a/b")).expect("mkdir");
    fs::write(s.join("a/b/autorestart"), b"").expect("write");
    fs::create_dir_all(s.join("c")).expect("mkdir");
    fs::write(s.join("c/autorestart.bak"), b"").expect("write");
    assert_eq!(find_autorestart_token(s), AutorestartScan::None);

    fs::create_dir_all(s.join("jedlhheopbnf")).expect("mkdir");
    fs::write(s.join("jedlhheopbnf/autorestart"), b"token").expect("write");
    let scan = find_autorestart_token(s);
    assert_eq!(
        scan.token(),
        Some(s.join("jedlhheopbnf/autorestart").as_path())
    );
    assert_eq!(scan.restart_arg(), Some(OsString::from("jedlhheopbnf")));

    fs::write(s.join("a/autorestart"), b"token").expect("write");
    let scan = find_autorestart_token(s);
    assert_eq!(
        scan,
        AutorestartScan::Several(vec![
            s.join("a/autorestart"),
            s.join("jedlhheopbnf/autorestart")
        ])
    );
    assert_eq!(scan.restart_arg(), None);
}

// ---- exits and classification ---------------------------------------------------------

fn sh(work: &Path, script: &str) -> JvmCommand {
    JvmCommand {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: work.to_path_buf(),
    }
}

#[tokio::test]
async fn real_exits_are_classified() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let log = SpawnOptions::new(tmp.path().join("jvm.log"));
    let run = |script: &'static str| {
        let cmd = sh(&dir, script);
        let log = log.clone();
        let dir = dir.clone();
        async move {
            let mut p = spawn(&cmd, &log).expect("spawn");
            let status = wait_exit(&mut p).await;
            let hs_err = find_hs_err(&dir, p.pid(), p.started());
            (classify_exit(status, hs_err.clone()), p.pid(), hs_err)
        }
    };
    assert_eq!(run("exit 0").await.0, ExitKind::Clean);
    assert_eq!(run("exit 1").await.0, ExitKind::XConnectionLost);
    assert_eq!(
        run("exit 87").await.0,
        ExitKind::Other {
            code: Some(87),
            signal: None
        }
    );
    assert_eq!(run("kill -KILL $$").await.0, ExitKind::Killed { signal: 9 });
    assert_eq!(
        run("kill -ABRT $$").await.0,
        ExitKind::Crash {
            signal: Some(6),
            hs_err: None
        }
    );
    // A crash that leaves a report in the working dir, like the JVM does.
    let (kind, pid, hs_err) = run("echo '# A fatal error' > hs_err_pid$$.log; kill -ABRT $$").await;
    let expected = tmp.path().join(format!("hs_err_pid{pid}.log"));
    assert_eq!(hs_err.as_deref(), Some(expected.as_path()));
    assert_eq!(
        kind,
        ExitKind::Crash {
            signal: Some(6),
            hs_err: Some(expected)
        }
    );
}

#[test]
fn old_hs_err_files_are_not_reported() {
    let tmp = TempDir::new().expect("tempdir");
    fs::write(tmp.path().join("hs_err_pid1234.log"), b"old").expect("write");
    let future = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(find_hs_err(tmp.path(), 999_999, future), None);
    assert_eq!(
        find_hs_err(tmp.path(), 999_999, SystemTime::UNIX_EPOCH),
        Some(tmp.path().join("hs_err_pid1234.log"))
    );
}

// ---- terminate ------------------------------------------------------------------------

#[tokio::test]
async fn terminate_stops_a_cooperative_process_with_sigterm() {
    let tmp = TempDir::new().expect("tempdir");
    let fifo_path = tmp.path().join("fifo");
    let mut rx = fifo(&fifo_path).await;
    // The shell reports the pid of its background child, which shares its process group.
    let cmd = sh(
        tmp.path(),
        &format!("sleep 1000 & echo $! > '{}'; wait", fifo_path.display()),
    );
    let mut p = spawn(&cmd, &SpawnOptions::new(tmp.path().join("log"))).expect("spawn");
    let helper: u32 = read_line(&mut rx).await.parse().expect("helper pid");
    let helper = PidFd::open(helper).expect("helper alive");
    let started = Instant::now();
    let outcome = terminate(p.pid(), Duration::from_secs(5))
        .await
        .expect("terminate");
    assert_eq!(outcome, Termination::Terminated);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        classify_exit(wait_exit(&mut p).await, None),
        ExitKind::Killed { signal: 15 }
    );
    // The background `sleep` in the same group is gone too.
    tokio::time::timeout(DEADLINE, helper.exited())
        .await
        .expect("group member killed")
        .expect("pidfd");
}

#[tokio::test]
async fn terminate_escalates_to_sigkill_after_the_grace() {
    let tmp = TempDir::new().expect("tempdir");
    let fifo_path = tmp.path().join("fifo");
    let mut rx = fifo(&fifo_path).await;
    let cmd = sh(
        tmp.path(),
        &format!(
            "trap '' TERM; echo ready > '{}'; exec sleep 1000",
            fifo_path.display()
        ),
    );
    let mut p = spawn(&cmd, &SpawnOptions::new(tmp.path().join("log"))).expect("spawn");
    wait_ready(&mut rx).await;
    let grace = Duration::from_millis(300);
    let started = Instant::now();
    let outcome = terminate(p.pid(), grace).await.expect("terminate");
    let elapsed = started.elapsed();
    assert_eq!(outcome, Termination::Killed);
    assert!(elapsed >= grace, "escalated early: {elapsed:?}");
    assert!(elapsed < grace + Duration::from_secs(3), "took {elapsed:?}");
    assert_eq!(
        classify_exit(wait_exit(&mut p).await, None),
        ExitKind::Killed { signal: 9 }
    );
}

#[tokio::test]
async fn terminate_wakes_a_stopped_process() {
    // A hung JVM may be SIGSTOPped (the hang test does that): SIGCONT lets SIGTERM act.
    let tmp = TempDir::new().expect("tempdir");
    let cmd = sh(tmp.path(), "exec sleep 1000");
    let mut p = spawn(&cmd, &SpawnOptions::new(tmp.path().join("log"))).expect("spawn");
    killpg(Pid::from_raw(p.pid() as i32), Signal::SIGSTOP).expect("stop");
    let outcome = terminate(p.pid(), Duration::from_secs(5))
        .await
        .expect("terminate");
    assert_eq!(outcome, Termination::Terminated);
    assert_eq!(
        classify_exit(wait_exit(&mut p).await, None),
        ExitKind::Killed { signal: 15 }
    );
}

#[tokio::test]
async fn terminate_of_a_gone_process() {
    let tmp = TempDir::new().expect("tempdir");
    let mut p = spawn(
        &sh(tmp.path(), "exit 0"),
        &SpawnOptions::new(tmp.path().join("log")),
    )
    .expect("spawn");
    let pid = p.pid();
    wait_exit(&mut p).await;
    assert_eq!(
        terminate(pid, Duration::from_secs(1)).await.expect("ok"),
        Termination::AlreadyGone
    );
}

/// A forked helper that outlives the JVM is re-parented to us (subreaper) and reaped once
/// it dies. Runs in a child copy of the test binary: being a subreaper changes how the
/// whole process inherits orphans, which other tests must not see.
#[tokio::test]
async fn orphans_of_the_group_come_to_us_and_are_reaped() {
    const MARK: &str = "IBWARDEN_SUBREAPER_TEST_CHILD";
    if std::env::var_os(MARK).is_none() {
        let out = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "orphans_of_the_group_come_to_us_and_are_reaped",
                "--nocapture",
            ])
            .env(MARK, "1")
            .output()
            .expect("run child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
        assert!(
            stdout.contains("reap-check-done"),
            "child did not run:\n{stdout}"
        );
        return;
    }
    ibwarden::gateway::become_subreaper().expect("subreaper");
    let tmp = TempDir::new().expect("tempdir");
    let fifo_path = tmp.path().join("fifo");
    let mut rx = fifo(&fifo_path).await;
    // The "JVM" starts a helper in its group, reports its pid and exits at once.
    let cmd = sh(
        tmp.path(),
        &format!("sleep 1000 & echo $! > '{}'; exit 0", fifo_path.display()),
    );
    let mut p = spawn(&cmd, &SpawnOptions::new(tmp.path().join("log"))).expect("spawn");
    let helper: u32 = read_line(&mut rx).await.parse().expect("helper pid");
    let helper_fd = PidFd::open(helper).expect("helper alive");
    assert_eq!(
        classify_exit(wait_exit(&mut p).await, None),
        ExitKind::Clean
    );
    assert_eq!(
        ibwarden::procfs::ppid(helper),
        Some(std::process::id()),
        "helper was re-parented to us"
    );
    assert!(
        ibwarden::gateway::reap_group_orphans(p.pid()).is_empty(),
        "helper still alive"
    );

    // The leftover member is killed by the group stop and then reaped by us.
    assert_eq!(
        terminate(p.pid(), Duration::from_secs(5))
            .await
            .expect("stop"),
        Termination::AlreadyGone
    );
    tokio::time::timeout(DEADLINE, helper_fd.exited())
        .await
        .expect("helper killed")
        .expect("pidfd");
    assert_eq!(ibwarden::gateway::reap_group_orphans(p.pid()), [helper]);
    assert!(
        !Path::new(&format!("/proc/{helper}")).exists(),
        "zombie gone"
    );
    println!("reap-check-done");
}

// ---- pid file and adoption ------------------------------------------------------------

#[tokio::test]
async fn pidfile_adoption_checks_identity() {
    let f = fake_install("hold");
    let mut rx = fifo(&f.root.join("fifo")).await;
    let cmd = command_for(&f);
    let mut p = spawn(&cmd, &SpawnOptions::new(f.work.join("jvm.log"))).expect("spawn");
    wait_ready(&mut rx).await;
    let pidfile = f.root.join("gateway.pid");
    let ours = JvmIdentity {
        main_class: "ibgateway.GWClient".into(),
        settings_dir: f.settings.clone(),
    };
    assert_eq!(find_adoptable(&pidfile, &ours), None, "no pid file yet");
    write_pidfile(&pidfile, p.pid()).expect("write");
    assert_eq!(
        fs::read_to_string(&pidfile).expect("read"),
        format!("{}\n", p.pid())
    );
    assert_eq!(find_adoptable(&pidfile, &ours), Some(p.pid()));

    let other_settings = JvmIdentity {
        settings_dir: f.root.join("other"),
        ..ours.clone()
    };
    assert_eq!(find_adoptable(&pidfile, &other_settings), None);
    let other_class = JvmIdentity {
        main_class: "jclient.LoginFrame".into(),
        ..ours.clone()
    };
    assert_eq!(find_adoptable(&pidfile, &other_class), None);

    // Once it is dead (even before it is reaped), the pid file is stale.
    assert_eq!(
        terminate(p.pid(), Duration::from_secs(5))
            .await
            .expect("stop"),
        Termination::Terminated
    );
    assert_eq!(find_adoptable(&pidfile, &ours), None);
    wait_exit(&mut p).await;
    assert_eq!(find_adoptable(&pidfile, &ours), None);

    fs::write(&pidfile, "garbage").expect("write");
    assert_eq!(find_adoptable(&pidfile, &ours), None);
}

#[tokio::test]
async fn dropping_a_running_handle_kills_the_group_unless_detached() {
    let tmp = TempDir::new().expect("tempdir");
    let p = spawn(
        &sh(tmp.path(), "exec sleep 1000"),
        &SpawnOptions::new(tmp.path().join("log")),
    )
    .expect("spawn");
    let pidfd = p.pidfd();
    drop(p);
    tokio::time::timeout(DEADLINE, pidfd.exited())
        .await
        .expect("killed on drop")
        .expect("pidfd");

    let p = spawn(
        &sh(tmp.path(), "exec sleep 1000"),
        &SpawnOptions::new(tmp.path().join("log")),
    )
    .expect("spawn");
    let pidfd = p.pidfd();
    let pid = p.detach();
    assert!(!pidfd.has_exited(), "detached process must keep running");
    assert_eq!(
        terminate(pid, Duration::from_secs(5)).await.expect("stop"),
        Termination::Terminated
    );
}

// ---- the real simulator JVM -------------------------------------------------------------

/// Discovers the simulator install, builds the command exactly as ibwarden does and spawns
/// it on `xvfb`. Returns the process and its work dir.
fn launch_simulator(sim: &common::SimInstall, xvfb: &common::Xvfb, work: &Path) -> GatewayProcess {
    let install = discover(&InstallQuery {
        program: Some(Program::Gateway),
        install_dir: Some(sim.install_dir.clone()),
        path_env: std::env::var_os("PATH"),
        ..Default::default()
    })
    .expect("simulator install found");
    let inputs = read_inputs(&install).expect("inputs");
    let params = LaunchParams {
        settings_dir: sim.settings_dir.clone(),
        work_dir: work.to_path_buf(),
        restart: None,
        extra_jvm_args: vec![],
        display: xvfb.display.clone(),
        xauthority: Some(xvfb.xauthority.clone()),
        dbus_session_bus_address: None,
        path_env: std::env::var_os("PATH"),
        home: Some(sim.home.clone().into_os_string()),
    };
    let cmd = build_command(&install, &inputs, &params).expect("command");
    spawn(&cmd, &SpawnOptions::new(work.join("jvm.log"))).expect("spawn simulator")
}

#[tokio::test]
async fn real_jvm_starts_with_our_command_line_and_its_crash_is_classified() {
    let xvfb = common::Xvfb::start();
    let sim = common::SimInstall::new(&common::Scenario::new());
    let work = TempDir::new().expect("tempdir");
    let mut p = launch_simulator(&sim, &xvfb, work.path());
    let mut rec = sim.record();
    let start = rec.wait_ev("start", common::START_TIMEOUT);
    assert_eq!(start["pid"].as_u64(), Some(u64::from(p.pid())), "{start}");
    assert_eq!(
        start["settings_dir"],
        sim.settings_dir.display().to_string()
    );
    assert_eq!(start["cwd"], work.path().display().to_string());
    let jvm_args: Vec<String> = start["jvm_args"]
        .as_array()
        .expect("jvm_args")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect();
    for want in [
        format!("-DjtsConfigDir={}", sim.settings_dir.display()),
        format!("-XX:ErrorFile={}/hs_err_pid%p.log", work.path().display()),
        "--add-opens=java.desktop/javax.swing=ALL-UNNAMED".to_owned(),
        "-Xmx768m".to_owned(),
    ] {
        assert!(jvm_args.contains(&want), "{want} missing from {jvm_args:?}");
    }

    // The running JVM is recognisable as ours, and its environment is the allowed set.
    let id = JvmIdentity {
        main_class: "ibgateway.GWClient".into(),
        settings_dir: sim.settings_dir.clone(),
    };
    assert!(ibwarden::gateway::process::is_our_jvm(p.pid(), &id));
    let environ = fs::read(format!("/proc/{}/environ", p.pid())).expect("environ");
    for var in environ.split(|b| *b == 0).filter(|v| !v.is_empty()) {
        let key = String::from_utf8_lossy(var.split(|b| *b == b'=').next().expect("key"));
        assert!(
            ALLOWED_ENV.contains(&key.as_ref()),
            "unexpected {key} in the JVM env"
        );
    }

    // A real JVM fault: SIGSEGV inside the JVM, hs_err written where we pinned it, abort.
    // (Not `sim.control`: the simulator faults before it can answer "ok".)
    {
        use std::io::Write;
        let mut ctl = std::net::TcpStream::connect(("127.0.0.1", sim.control_port()))
            .expect("control channel");
        writeln!(ctl, "crash").expect("send crash");
    }
    let status = tokio::time::timeout(Duration::from_secs(60), p.wait())
        .await
        .expect("crashed JVM exited")
        .expect("wait");
    let hs_err = find_hs_err(work.path(), p.pid(), p.started());
    let expected = work.path().join(format!("hs_err_pid{}.log", p.pid()));
    assert_eq!(
        classify_exit(status, hs_err),
        ExitKind::Crash {
            signal: Some(libc::SIGABRT),
            hs_err: Some(expected.clone())
        }
    );
    let report = fs::read_to_string(&expected).expect("hs_err");
    assert!(
        report.contains("A fatal error has been detected"),
        "{report}"
    );
}

#[tokio::test]
async fn real_jvm_stops_on_sigterm_within_the_grace() {
    let xvfb = common::Xvfb::start();
    let sim = common::SimInstall::new(&common::Scenario::new());
    let work = TempDir::new().expect("tempdir");
    let mut p = launch_simulator(&sim, &xvfb, work.path());
    sim.record().wait_ev("start", common::START_TIMEOUT);
    let outcome = terminate(p.pid(), Duration::from_secs(20))
        .await
        .expect("terminate");
    assert_eq!(outcome, Termination::Terminated);
    // The JVM runs its shutdown hooks on SIGTERM and exits with 143 (measured).
    let status = wait_exit(&mut p).await;
    assert_eq!(classify_exit(status, None), ExitKind::Killed { signal: 15 });
    let log = fs::read_to_string(work.path().join("jvm.log")).expect("jvm log");
    assert!(log.starts_with("--- ibwarden: launching"), "{log}");
}

#[test]
fn a_fifo_or_an_oversized_vmoptions_file_is_refused_without_blocking() {
    let f = fake_install("exit0");
    let install = discover(&InstallQuery {
        program: Some(Program::Gateway),
        install_dir: Some(f.dir.clone()),
        ..Default::default()
    })
    .expect("fake install found");
    let vmoptions = f.dir.join("ibgateway.vmoptions");
    // Swapped for a FIFO after discovery (a race, or a hostile install dir): a blocking
    // open would wait for a writer forever; the read must fail at once instead.
    fs::remove_file(&vmoptions).expect("rm");
    nix::unistd::mkfifo(&vmoptions, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("mkfifo");
    let (tx, rx) = std::sync::mpsc::channel();
    let i = install.clone();
    std::thread::spawn(move || {
        let _ = tx.send(read_inputs(&i).map(|_| ()).map_err(|e| e.to_string()));
    });
    let err = rx
        .recv_timeout(DEADLINE)
        .expect("read_inputs returned")
        .expect_err("a FIFO is refused");
    assert!(err.contains("not a regular file"), "{err}");
    fs::remove_file(&vmoptions).expect("rm");
    fs::write(&vmoptions, "-Xmx1g\n".repeat(10_000)).expect("big vmoptions");
    let err = read_inputs(&install)
        .expect_err("70 kB of options")
        .to_string();
    assert!(err.contains("more than the 65536"), "{err}");
}
