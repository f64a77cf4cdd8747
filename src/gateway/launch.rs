//! The JVM command line, built the way IB's install4j launcher and IBC build it.
//!
//! Split in two so the interesting part is pure and unit-tested: [`read_inputs`] reads the
//! install (jar list, VM options file, install4j parameters), and [`build_command`] turns
//! that plus the per-launch parameters into a [`JvmCommand`] (program, argv, environment,
//! working directory) without touching the system.
//!
//! Two rules are enforced here because nothing downstream can fix them:
//! - the environment is *cleared* and only a fixed list of variables is set, so no secret
//!   in ibwarden's own environment can reach the JVM (`/proc/<pid>/environ`);
//! - credentials never appear in the command: the gateway gets them typed into its window.
//!
//! The autorestart token (IBC's source) is found here too, because it becomes
//! the `-Drestart=` argument.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::install::Install;

/// Module-access flags for Java 9+, as `ibcstart.sh` passes them (IBC's source).
/// The javafx ones name modules most JREs lack; Java 17 then only prints
/// "WARNING: Unknown module" and starts normally (checked with OpenJDK 17), so the list is
/// kept whole to match what real gateway builds with JavaFX expect.
pub const MODULE_ACCESS_FLAGS: &[&str] = &[
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-exports=java.base/sun.util=ALL-UNNAMED",
    "--add-exports=java.desktop/com.sun.java.swing.plaf.motif=ALL-UNNAMED",
    "--add-opens=java.desktop/java.awt=ALL-UNNAMED",
    "--add-opens=java.desktop/java.awt.dnd=ALL-UNNAMED",
    "--add-opens=java.desktop/javax.swing=ALL-UNNAMED",
    "--add-opens=java.desktop/javax.swing.event=ALL-UNNAMED",
    "--add-opens=java.desktop/javax.swing.plaf.basic=ALL-UNNAMED",
    "--add-opens=java.desktop/javax.swing.table=ALL-UNNAMED",
    "--add-opens=java.desktop/sun.awt=ALL-UNNAMED",
    "--add-exports=java.desktop/sun.awt.X11=ALL-UNNAMED",
    "--add-exports=java.desktop/sun.swing=ALL-UNNAMED",
    "--add-opens=javafx.graphics/com.sun.javafx.application=ALL-UNNAMED",
    "--add-exports=javafx.media/com.sun.media.jfxmedia=ALL-UNNAMED",
    "--add-exports=javafx.media/com.sun.media.jfxmedia.events=ALL-UNNAMED",
    "--add-exports=javafx.media/com.sun.media.jfxmedia.locator=ALL-UNNAMED",
    "--add-exports=javafx.media/com.sun.media.jfxmediaimpl=ALL-UNNAMED",
    "--add-exports=javafx.web/com.sun.javafx.webkit=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
];

/// The only environment variables the JVM ever gets.
pub const ALLOWED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "DISPLAY",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
];

/// `PATH` for the JVM when the caller has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What [`read_inputs`] found in the install.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LaunchInputs {
    /// Every `jars/*.jar`, sorted by file name.
    pub jars: Vec<PathBuf>,
    /// `.install4j/i4jruntime.jar`, if present.
    pub i4j_runtime: Option<PathBuf>,
    /// The VM options file's options, in order (blank lines and `#` comments removed).
    pub vm_options: Vec<String>,
    /// `-classpath/p` entries of the VM options file (prepended).
    pub classpath_prepend: Vec<String>,
    /// `-classpath/a` entries of the VM options file (appended).
    pub classpath_append: Vec<String>,
    /// `-DjxBrowserKey=` value from `.install4j/i4jparams.conf` (embedded browser licence
    /// the launcher passes; needed for passkey logins). Not a user secret.
    pub jxbrowser_key: Option<String>,
}

/// Per-launch parameters.
#[derive(Clone, Debug, Default)]
pub struct LaunchParams {
    /// The gateway's settings directory (`-DjtsConfigDir=`); also where `autorestart`
    /// tokens live.
    pub settings_dir: PathBuf,
    /// Working directory in our state dir; `hs_err_pid*.log` crash reports land here.
    pub work_dir: PathBuf,
    /// `-Drestart=<name>`: the settings subdirectory holding the autorestart token
    /// ([`AutorestartScan::restart_arg`]).
    pub restart: Option<OsString>,
    /// Extra JVM options from the configuration, added after the install's own.
    pub extra_jvm_args: Vec<String>,
    /// `DISPLAY` for the JVM (our Xvfb).
    pub display: String,
    /// `XAUTHORITY` for the JVM (our private cookie file).
    pub xauthority: Option<PathBuf>,
    /// `DBUS_SESSION_BUS_ADDRESS`, only when accessibility needs a bus.
    pub dbus_session_bus_address: Option<OsString>,
    /// `PATH` to pass on (usually ours); a fixed default when `None`.
    pub path_env: Option<OsString>,
    /// `HOME` to pass on.
    pub home: Option<OsString>,
}

/// Everything needed to spawn the JVM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JvmCommand {
    /// The java executable.
    pub program: PathBuf,
    /// Arguments after the program name.
    pub args: Vec<OsString>,
    /// The complete environment (the spawner clears everything else).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory.
    pub cwd: PathBuf,
}

/// Why the command cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Reading a file or directory of the install failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A VM options line is not valid UTF-8.
    #[error("{path}:{line}: not valid UTF-8")]
    NotUtf8 {
        /// The VM options file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// `jars/` contains no jar.
    #[error("{dir} contains no .jar files")]
    NoJars {
        /// The `jars/` directory.
        dir: PathBuf,
    },
    /// A configured extra JVM argument does not start with `-`; the JVM would take it for
    /// the main class.
    #[error("extra jvm argument {index} does not start with '-'")]
    BadJvmArg {
        /// 0-based index in the configured list (the value is not echoed).
        index: usize,
    },
}

/// The largest VM options file read (IBKR's are under 1 KiB).
pub const MAX_VMOPTIONS: u64 = 64 * 1024;
/// The largest install4j parameters file read (IBKR's are a few KiB).
const MAX_I4J_PARAMS: u64 = 1024 * 1024;

/// Reads the jar list, the VM options file and the install4j parameters of `install`.
///
/// Call it before every launch: an install updated in place then takes effect.
pub fn read_inputs(install: &Install) -> Result<LaunchInputs, LaunchError> {
    let jars_dir = install.dir.join("jars");
    let entries = fs::read_dir(&jars_dir).map_err(|source| LaunchError::Io {
        path: jars_dir.clone(),
        source,
    })?;
    let mut jars: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension() == Some(OsStr::new("jar")) && p.is_file())
        .collect();
    jars.sort();
    if jars.is_empty() {
        return Err(LaunchError::NoJars { dir: jars_dir });
    }
    let i4j = install.dir.join(".install4j");
    let runtime = i4j.join("i4jruntime.jar");
    let bytes =
        crate::state::read_file_capped(&install.vmoptions, MAX_VMOPTIONS).map_err(|source| {
            LaunchError::Io {
                path: install.vmoptions.clone(),
                source,
            }
        })?;
    let mut inputs = parse_vmoptions(&bytes, &install.vmoptions)?;
    inputs.jars = jars;
    inputs.i4j_runtime = runtime.is_file().then_some(runtime);
    inputs.jxbrowser_key =
        crate::state::read_file_capped(&i4j.join("i4jparams.conf"), MAX_I4J_PARAMS)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| find_jxbrowser_key(&t));
    Ok(inputs)
}

/// Parses an install4j VM options file: one option per line (spaces inside a line belong
/// to the option), `#` comments, `-classpath/a` / `-classpath/p` classpath edits.
///
/// Unlike IBC, `-D` lines are kept: install4j's own launcher passes them, and the gateway
/// (and our simulator) read settings from them.
pub fn parse_vmoptions(bytes: &[u8], path: &Path) -> Result<LaunchInputs, LaunchError> {
    let mut inputs = LaunchInputs::default();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = std::str::from_utf8(raw)
            .map_err(|_| LaunchError::NotUtf8 {
                path: path.to_path_buf(),
                line: i + 1,
            })?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("-classpath/a ") {
            inputs.classpath_append.push(rest.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("-classpath/p ") {
            inputs.classpath_prepend.push(rest.trim().to_owned());
        } else if line.starts_with("-include-options") || line.starts_with("-classpath") {
            // Launcher directives the JVM would reject; IB's files do not use them.
            warn!(file = %path.display(), line = i + 1, "ignoring unsupported install4j directive");
        } else {
            inputs.vm_options.push(line.to_owned());
        }
    }
    Ok(inputs)
}

/// `ibcstart.sh` greps `DjxBrowserKey=[^" ]+` from `i4jparams.conf`.
fn find_jxbrowser_key(text: &str) -> Option<String> {
    let start = text.find("DjxBrowserKey=")? + "DjxBrowserKey=".len();
    let key: String = text[start..]
        .chars()
        .take_while(|c| *c != '"' && !c.is_whitespace())
        .collect();
    (!key.is_empty()).then_some(key)
}

/// Builds the JVM command. Pure: reads nothing, so it is unit-tested exhaustively.
///
/// Order: module-access flags, `-cp`, the install's VM options, the launcher's system
/// properties, `-Drestart`, the crash-report location, the configured extras (last, so
/// they win), the main class.
pub fn build_command(
    install: &Install,
    inputs: &LaunchInputs,
    params: &LaunchParams,
) -> Result<JvmCommand, LaunchError> {
    if let Some(index) = params
        .extra_jvm_args
        .iter()
        .position(|a| !a.starts_with('-'))
    {
        return Err(LaunchError::BadJvmArg { index });
    }
    let mut args: Vec<OsString> = Vec::new();
    if install.java_major != Some(8) {
        args.extend(MODULE_ACCESS_FLAGS.iter().map(OsString::from));
    }

    let mut classpath: Vec<OsString> = Vec::new();
    classpath.extend(inputs.classpath_prepend.iter().map(OsString::from));
    classpath.extend(inputs.jars.iter().map(|j| j.clone().into_os_string()));
    if let Some(rt) = &inputs.i4j_runtime {
        classpath.push(rt.clone().into_os_string());
    }
    classpath.extend(inputs.classpath_append.iter().map(OsString::from));
    args.push("-cp".into());
    args.push(join_os(&classpath, ":"));

    args.extend(inputs.vm_options.iter().map(OsString::from));
    for fixed in [
        "-Dtwslaunch.autoupdate.serviceImpl=com.ib.tws.twslaunch.install4j.Install4jAutoUpdateService",
        "-Dchannel=latest",
        "-Dexe4j.isInstall4j=true",
        "-Dinstall4jType=standalone",
    ] {
        args.push(fixed.into());
    }
    args.push(prefixed("-DjtsConfigDir=", params.settings_dir.as_os_str()));
    if let Some(key) = &inputs.jxbrowser_key {
        args.push(format!("-DjxBrowserKey={key}").into());
    }
    if let Some(restart) = &params.restart {
        args.push(prefixed("-Drestart=", restart));
    }
    // Pin the crash report to our work dir (the default is the cwd, which is the same
    // today, but a vmoptions line could move it where we would not look).
    let mut error_file = params.work_dir.join("hs_err_pid%p.log").into_os_string();
    error_file = prefixed("-XX:ErrorFile=", &error_file);
    args.push(error_file);
    args.extend(params.extra_jvm_args.iter().map(OsString::from));
    args.push(install.program.main_class().into());

    let mut env: Vec<(OsString, OsString)> = vec![
        (
            "PATH".into(),
            params
                .path_env
                .clone()
                .unwrap_or_else(|| DEFAULT_PATH.into()),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        ("DISPLAY".into(), params.display.clone().into()),
    ];
    if let Some(home) = &params.home {
        env.push(("HOME".into(), home.clone()));
    }
    if let Some(xauth) = &params.xauthority {
        env.push(("XAUTHORITY".into(), xauth.clone().into_os_string()));
    }
    if let Some(bus) = &params.dbus_session_bus_address {
        env.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.clone()));
    }
    debug_assert!(env
        .iter()
        .all(|(k, _)| ALLOWED_ENV.iter().any(|a| OsStr::new(a) == k)));

    Ok(JvmCommand {
        program: install.java.clone(),
        args,
        env,
        cwd: params.work_dir.clone(),
    })
}

fn prefixed(prefix: &str, value: &OsStr) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(value);
    s
}

fn join_os(parts: &[OsString], sep: &str) -> OsString {
    let mut out = OsString::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.push(p);
    }
    out
}

/// Result of looking for the gateway's own autorestart token (IBC's source).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutorestartScan {
    /// No token: the next start needs a full login.
    None,
    /// Exactly one token: relaunch with `-Drestart=<its directory name>`, no login needed.
    Found(PathBuf),
    /// Several tokens: we cannot tell which is right. IBC deletes them all and does a full
    /// login; the caller should do the same (and say so in the log).
    Several(Vec<PathBuf>),
}

impl AutorestartScan {
    /// The token file, if exactly one was found.
    pub fn token(&self) -> Option<&Path> {
        match self {
            AutorestartScan::Found(p) => Some(p),
            _ => None,
        }
    }

    /// The `-Drestart=` value: the name of the settings subdirectory holding the token.
    pub fn restart_arg(&self) -> Option<OsString> {
        self.token()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map(OsStr::to_os_string)
    }
}

/// Looks for files named exactly `autorestart` exactly one level below `settings_dir`
/// (`<settings>/<encoded-user-dir>/autorestart`). A missing settings dir means none.
pub fn find_autorestart_token(settings_dir: &Path) -> AutorestartScan {
    let Ok(entries) = fs::read_dir(settings_dir) else {
        return AutorestartScan::None;
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path().join("autorestart"))
        .filter(|p| p.symlink_metadata().map(|m| m.is_file()).unwrap_or(false))
        .collect();
    found.sort();
    match found.len() {
        0 => AutorestartScan::None,
        1 => AutorestartScan::Found(found.remove(0)),
        _ => AutorestartScan::Several(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::install::{JavaSource, Program};

    fn install(program: Program, java_major: Option<u32>) -> Install {
        Install {
            program,
            dir: "/opt/ibgateway".into(),
            vmoptions: "/opt/ibgateway/ibgateway.vmoptions".into(),
            java: "/opt/ibgateway/jre/bin/java".into(),
            java_source: JavaSource::Bundled,
            java_major,
        }
    }

    fn inputs() -> LaunchInputs {
        let vmoptions = b"# comment\n\n-Xmx768m\n  -XX:+UseG1GC  \n-Dsim.scenario=/tmp/s.toml\n-Dspaced=a b\n-classpath/a /extra.jar\n";
        let mut i = parse_vmoptions(vmoptions, Path::new("x.vmoptions")).expect("parses");
        i.jars = vec![
            "/opt/ibgateway/jars/a.jar".into(),
            "/opt/ibgateway/jars/b.jar".into(),
        ];
        i.i4j_runtime = Some("/opt/ibgateway/.install4j/i4jruntime.jar".into());
        i
    }

    fn params() -> LaunchParams {
        LaunchParams {
            settings_dir: "/var/lib/ibwarden/main/jts".into(),
            work_dir: "/var/lib/ibwarden/main/work".into(),
            restart: Some("abcdef".into()),
            extra_jvm_args: vec!["-Xmx1g".into()],
            display: ":77".into(),
            xauthority: Some("/var/lib/ibwarden/main/Xauthority".into()),
            dbus_session_bus_address: None,
            path_env: Some("/usr/bin:/bin".into()),
            home: Some("/var/lib/ibwarden".into()),
        }
    }

    fn strs(cmd: &JvmCommand) -> Vec<String> {
        cmd.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn vmoptions_keep_d_lines_and_drop_comments() {
        let i = inputs();
        assert_eq!(
            i.vm_options,
            [
                "-Xmx768m",
                "-XX:+UseG1GC",
                "-Dsim.scenario=/tmp/s.toml",
                "-Dspaced=a b"
            ]
        );
        assert_eq!(i.classpath_append, ["/extra.jar"]);
    }

    #[test]
    fn vmoptions_bad_utf8_names_the_line() {
        let err = parse_vmoptions(b"-Xmx1g\n-Dx=\xff\n", Path::new("/i/g.vmoptions"))
            .expect_err("invalid");
        assert_eq!(err.to_string(), "/i/g.vmoptions:2: not valid UTF-8");
    }

    #[test]
    fn command_has_everything_in_order() {
        let cmd = build_command(&install(Program::Gateway, Some(17)), &inputs(), &params())
            .expect("builds");
        let args = strs(&cmd);
        assert_eq!(cmd.program, Path::new("/opt/ibgateway/jre/bin/java"));
        assert_eq!(cmd.cwd, Path::new("/var/lib/ibwarden/main/work"));
        assert_eq!(args[..MODULE_ACCESS_FLAGS.len()], *MODULE_ACCESS_FLAGS);
        let pos = |s: &str| {
            args.iter()
                .position(|a| a == s)
                .unwrap_or_else(|| panic!("{s} missing from {args:?}"))
        };
        let cp = pos("-cp");
        assert_eq!(
            args[cp + 1],
            "/opt/ibgateway/jars/a.jar:/opt/ibgateway/jars/b.jar:/opt/ibgateway/.install4j/i4jruntime.jar:/extra.jar"
        );
        assert!(pos("-Xmx768m") > cp);
        assert!(pos("-Dsim.scenario=/tmp/s.toml") > cp);
        pos("-Dspaced=a b");
        pos("-Dinstall4jType=standalone");
        pos("-Dexe4j.isInstall4j=true");
        pos("-Dchannel=latest");
        pos("-DjtsConfigDir=/var/lib/ibwarden/main/jts");
        pos("-Drestart=abcdef");
        pos("-XX:ErrorFile=/var/lib/ibwarden/main/work/hs_err_pid%p.log");
        // Configured extras come after the install's own options, so they win.
        assert!(pos("-Xmx1g") > pos("-Xmx768m"));
        assert_eq!(args.last().map(String::as_str), Some("ibgateway.GWClient"));
    }

    #[test]
    fn tws_main_class_and_java8_skips_module_flags() {
        let mut p = params();
        p.restart = None;
        let cmd = build_command(&install(Program::Tws, Some(8)), &inputs(), &p).expect("builds");
        let args = strs(&cmd);
        assert_eq!(args[0], "-cp");
        assert_eq!(args.last().map(String::as_str), Some("jclient.LoginFrame"));
        assert!(!args.iter().any(|a| a.starts_with("-Drestart")));
    }

    #[test]
    fn env_is_only_the_allowed_keys() {
        let mut p = params();
        p.dbus_session_bus_address = Some("unix:path=/run/x".into());
        let cmd = build_command(&install(Program::Gateway, None), &inputs(), &p).expect("builds");
        let keys: Vec<&OsStr> = cmd.env.iter().map(|(k, _)| k.as_os_str()).collect();
        assert_eq!(
            keys,
            [
                "PATH",
                "LANG",
                "DISPLAY",
                "HOME",
                "XAUTHORITY",
                "DBUS_SESSION_BUS_ADDRESS"
            ]
        );
        let get = |k: &str| {
            cmd.env
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("DISPLAY").as_deref(), Some(":77"));
        assert_eq!(get("LANG").as_deref(), Some("C.UTF-8"));
        let mut bare = params();
        bare.path_env = None;
        bare.home = None;
        bare.xauthority = None;
        let cmd =
            build_command(&install(Program::Gateway, None), &inputs(), &bare).expect("builds");
        let keys: Vec<&OsStr> = cmd.env.iter().map(|(k, _)| k.as_os_str()).collect();
        assert_eq!(keys, ["PATH", "LANG", "DISPLAY"]);
        assert_eq!(cmd.env[0].1, DEFAULT_PATH);
    }

    #[test]
    fn extra_arg_without_dash_is_refused_without_echoing_it() {
        let mut p = params();
        p.extra_jvm_args = vec!["-Xmx1g".into(), "hunter2".into()];
        let err =
            build_command(&install(Program::Gateway, None), &inputs(), &p).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "extra jvm argument 1 does not start with '-'"
        );
    }

    #[test]
    fn jxbrowser_key_is_grepped_like_ibcstart() {
        let conf = r#"<x value="-DjxBrowserKey=AB12.cd-34 -Dother" />"#;
        assert_eq!(find_jxbrowser_key(conf).as_deref(), Some("AB12.cd-34"));
        assert_eq!(find_jxbrowser_key("nothing"), None);
        assert_eq!(find_jxbrowser_key("-DjxBrowserKey=\""), None);
    }
}
