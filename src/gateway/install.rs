//! Finding an installed IB Gateway or TWS, and the `java` to run it with.
//!
//! An offline install (the only kind that can be driven, IBC's source) is a
//! directory with `jars/` and `ibgateway.vmoptions` (Gateway) or `tws.vmoptions` (TWS).
//! Without a configured directory we look where IB's installer puts it:
//! `~/Jts/ibgateway/<version>` (highest numeric version) or `/opt/ibgateway` for the
//! Gateway, `~/Jts/<version>` for TWS.
//!
//! Java is chosen as the install4j launcher and IBC do: a configured path first, then the
//! JRE bundled with the install, then the JRE the installer recorded in
//! `.install4j/pref_jre.cfg` / `inst_jre.cfg`, then `java` on `PATH`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

pub use crate::core::domain::Program;

/// A usable install: the directory, its VM options file and the java to run it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    /// Gateway or TWS.
    pub program: Program,
    /// The install directory (contains `jars/`).
    pub dir: PathBuf,
    /// `<dir>/ibgateway.vmoptions` or `<dir>/tws.vmoptions`.
    pub vmoptions: PathBuf,
    /// The java executable.
    pub java: PathBuf,
    /// Where [`Install::java`] came from, for the log.
    pub java_source: JavaSource,
    /// Major Java version read from the JRE's `release` file, if it could be read.
    /// `Some(8)` means the Java 9+ module-access flags must not be passed.
    pub java_major: Option<u32>,
}

/// Where the java executable was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JavaSource {
    /// The configuration named it.
    Configured,
    /// The JRE shipped inside the install (`.install4j/jre` or `jre`).
    Bundled,
    /// The JRE recorded by the installer in `.install4j/pref_jre.cfg` or `inst_jre.cfg`.
    InstallerRecord,
    /// `java` found on `PATH`.
    Path,
}

/// What discovery needs; the caller maps its configuration onto this.
#[derive(Clone, Debug, Default)]
pub struct InstallQuery {
    /// Gateway or TWS (`None` means Gateway).
    pub program: Option<Program>,
    /// The configured install directory; `None` searches the default places.
    pub install_dir: Option<PathBuf>,
    /// The configured java executable.
    pub java: Option<PathBuf>,
    /// The home directory for the default search (`~/Jts`); usually `$HOME`.
    pub home: Option<PathBuf>,
    /// The `PATH` to search for `java` as a last resort; usually `$PATH`.
    pub path_env: Option<std::ffi::OsString>,
}

/// Why no usable install or java was found. Each names the place and what was missing.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The configured directory does not exist.
    #[error("install directory {dir} does not exist")]
    NoSuchDir {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory is not an offline install: no `jars/`.
    #[error("{dir} is not an offline {program} install: no jars/ directory (the auto-updating installer is not supported)")]
    NoJars {
        /// The directory.
        dir: PathBuf,
        /// "IB Gateway" or "TWS".
        program: &'static str,
    },
    /// `jars/` exists but holds no `.jar`.
    #[error("{dir} contains no .jar files")]
    EmptyJars {
        /// The `jars/` directory.
        dir: PathBuf,
    },
    /// The VM options file is missing.
    #[error("{path} not found (is {dir} a {program} install?)")]
    NoVmoptions {
        /// The expected file.
        path: PathBuf,
        /// The install directory.
        dir: PathBuf,
        /// "IB Gateway" or "TWS".
        program: &'static str,
    },
    /// No install in any of the default places.
    #[error(
        "no {program} install found; looked in {}; set the install directory in the configuration",
        join(searched)
    )]
    NotFound {
        /// "IB Gateway" or "TWS".
        program: &'static str,
        /// Every directory looked at.
        searched: Vec<PathBuf>,
    },
    /// The configured java is missing or not executable.
    #[error("configured java {path} is not an executable file")]
    BadJava {
        /// The configured path.
        path: PathBuf,
    },
    /// No java anywhere.
    #[error("no java found; looked at {}; install a Java 17 runtime or set the java path in the configuration", join(searched))]
    NoJava {
        /// Every candidate looked at.
        searched: Vec<PathBuf>,
    },
    /// Reading a directory failed for another reason (permissions, ...).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn join(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nowhere".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds the install and its java. Reads the file system only.
pub fn discover(query: &InstallQuery) -> Result<Install, InstallError> {
    let program = query.program.unwrap_or(Program::Gateway);
    let dir = match &query.install_dir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(InstallError::NoSuchDir { dir: dir.clone() });
            }
            match check_install_dir(dir, program) {
                Ok(()) => dir.clone(),
                // A common slip: naming the parent of the versioned directories
                // (`~/Jts/ibgateway`). Take its highest valid version, else report the
                // error for the directory as configured.
                Err(e) => numbered_dirs(dir)
                    .into_iter()
                    .find(|d| check_install_dir(d, program).is_ok())
                    .ok_or(e)?,
            }
        }
        None => search_default(program, query.home.as_deref())?,
    };
    let (java, java_source) = find_java(&dir, query.java.as_deref(), query.path_env.as_deref())?;
    let java_major = java_major_version(&java);
    debug!(
        dir = %dir.display(),
        java = %java.display(),
        ?java_source,
        ?java_major,
        "gateway install found"
    );
    Ok(Install {
        program,
        vmoptions: dir.join(program.vmoptions_file()),
        dir,
        java,
        java_source,
        java_major,
    })
}

/// Checks that `dir` holds an offline install of `program`.
pub fn check_install_dir(dir: &Path, program: Program) -> Result<(), InstallError> {
    let jars = dir.join("jars");
    if !jars.is_dir() {
        return Err(InstallError::NoJars {
            dir: dir.to_path_buf(),
            program: program.display_name(),
        });
    }
    let entries = fs::read_dir(&jars).map_err(|source| InstallError::Io {
        path: jars.clone(),
        source,
    })?;
    let has_jar = entries
        .filter_map(Result::ok)
        .any(|e| e.path().extension() == Some(OsStr::new("jar")));
    if !has_jar {
        return Err(InstallError::EmptyJars { dir: jars });
    }
    let vmoptions = dir.join(program.vmoptions_file());
    if !vmoptions.is_file() {
        return Err(InstallError::NoVmoptions {
            path: vmoptions,
            dir: dir.to_path_buf(),
            program: program.display_name(),
        });
    }
    Ok(())
}

/// The default places, best first: numbered versions under `~/Jts` (highest first), then
/// `/opt/ibgateway` for the Gateway. The first valid one wins; broken ones are logged.
fn search_default(program: Program, home: Option<&Path>) -> Result<PathBuf, InstallError> {
    let mut candidates = Vec::new();
    if let Some(home) = home {
        let base = match program {
            Program::Gateway => home.join("Jts").join("ibgateway"),
            Program::Tws => home.join("Jts"),
        };
        candidates.extend(numbered_dirs(&base));
    }
    if program == Program::Gateway {
        candidates.push(PathBuf::from("/opt/ibgateway"));
    }
    for dir in &candidates {
        match check_install_dir(dir, program) {
            Ok(()) => return Ok(dir.clone()),
            Err(e) if dir.exists() => {
                warn!(dir = %dir.display(), error = %e, "skipping unusable install")
            }
            Err(_) => {}
        }
    }
    Err(InstallError::NotFound {
        program: program.display_name(),
        searched: candidates,
    })
}

/// Subdirectories of `base` whose names are versions (`1030`, `10.30.1`), highest first.
fn numbered_dirs(base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name();
            let version = parse_version(name.to_str()?)?;
            Some((version, e.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// `"1030"` → `[1030]`, `"10.30.1"` → `[10, 30, 1]`; anything else is not a version.
fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// Chooses the java executable (see the module doc for the order).
pub fn find_java(
    install_dir: &Path,
    configured: Option<&Path>,
    path_env: Option<&OsStr>,
) -> Result<(PathBuf, JavaSource), InstallError> {
    if let Some(path) = configured {
        return if is_executable(path) {
            Ok((path.to_path_buf(), JavaSource::Configured))
        } else {
            Err(InstallError::BadJava {
                path: path.to_path_buf(),
            })
        };
    }
    let mut searched = Vec::new();
    for bundled in [
        install_dir.join(".install4j/jre/bin/java"),
        install_dir.join("jre/bin/java"),
    ] {
        if is_executable(&bundled) {
            return Ok((bundled, JavaSource::Bundled));
        }
        searched.push(bundled);
    }
    for cfg in ["pref_jre.cfg", "inst_jre.cfg"] {
        let cfg = install_dir.join(".install4j").join(cfg);
        // The file holds a JRE home on its first line (ibcstart.sh `read_from_config`).
        let text = crate::state::read_file_capped(&cfg, 4096)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some(text) = text {
            if let Some(home) = text.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
                let java = Path::new(home).join("bin/java");
                if is_executable(&java) {
                    return Ok((java, JavaSource::InstallerRecord));
                }
                searched.push(java);
            }
        }
    }
    if let Some(path_env) = path_env {
        for dir in std::env::split_paths(path_env) {
            // Relative PATH entries would depend on our cwd: ignore them.
            if dir.is_absolute() {
                let java = dir.join("java");
                if is_executable(&java) {
                    return Ok((java, JavaSource::Path));
                }
            }
        }
        searched.push(PathBuf::from("java on PATH"));
    }
    Err(InstallError::NoJava { searched })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Reads `JAVA_VERSION="17.0.15"` (or `"1.8.0_402"`) from `<jre>/release`, following
/// symlinks such as `/usr/bin/java` → `/usr/lib/jvm/…/bin/java`. Best effort: `None` when
/// the file is missing, in which case a modern Java is assumed.
pub fn java_major_version(java: &Path) -> Option<u32> {
    let real = fs::canonicalize(java).ok()?;
    let home = real.parent()?.parent()?;
    let release = crate::state::read_file_capped(&home.join("release"), 64 * 1024).ok()?;
    let release = String::from_utf8(release).ok()?;
    let line = release
        .lines()
        .find_map(|l| l.strip_prefix("JAVA_VERSION="))?;
    parse_java_major(line.trim().trim_matches('"'))
}

/// `"17.0.15"` → 17, `"1.8.0_402"` → 8, `"21"` → 21.
fn parse_java_major(version: &str) -> Option<u32> {
    let mut parts = version.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(parse_version("1030"), Some(vec![1030]));
        assert_eq!(parse_version("10.30.1"), Some(vec![10, 30, 1]));
        assert_eq!(parse_version("latest"), None);
        assert_eq!(parse_version("10.x"), None);
        assert_eq!(parse_java_major("17.0.15"), Some(17));
        assert_eq!(parse_java_major("1.8.0_402"), Some(8));
        assert_eq!(parse_java_major("21"), Some(21));
        assert_eq!(parse_java_major(""), None);
    }

    #[test]
    fn system_java_version_is_read_from_release() {
        // The build machine has Java 17 on PATH (TEAM.md); its release file says so.
        let path = std::env::var_os("PATH").expect("PATH set");
        let (java, source) =
            find_java(Path::new("/nonexistent"), None, Some(&path)).expect("java on PATH");
        assert_eq!(source, JavaSource::Path);
        assert_eq!(java_major_version(&java), Some(17));
    }
}
