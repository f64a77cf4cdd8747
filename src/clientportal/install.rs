//! Finding the Client Portal gateway: an install directory holding `bin/run.sh` and
//! `root/conf.yaml` (IBKR's `clientportal.gw.zip`, unpacked), and the port and scheme its
//! `conf.yaml` gives (`listenPort`, `listenSsl`).

use std::path::{Path, PathBuf};

/// Largest `conf.yaml` read (IBKR's is about 1 KiB).
const MAX_CONF: u64 = 64 * 1024;

/// A Client Portal gateway install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpInstall {
    /// The install directory.
    pub dir: PathBuf,
    /// `bin/run.sh`.
    pub run_sh: PathBuf,
    /// `root/conf.yaml`, passed to `run.sh` as IBKR documents.
    pub conf: PathBuf,
    /// `listenPort`.
    pub port: u16,
    /// `listenSsl` (true unless the file says false).
    pub ssl: bool,
}

/// Where to look when `gateway.install_dir` is not set.
pub fn candidates(home: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(h) = home {
        out.push(h.join("clientportal.gw"));
    }
    out.push(PathBuf::from("/opt/clientportal.gw"));
    out
}

/// The install at `dir`, or what is missing there.
pub fn at(dir: &Path) -> Result<CpInstall, String> {
    let run_sh = dir.join("bin/run.sh");
    let conf = dir.join("root/conf.yaml");
    if !run_sh.is_file() {
        return Err(format!(
            "{} has no bin/run.sh: not a Client Portal gateway install (unpack IBKR's \
             clientportal.gw.zip there)",
            dir.display()
        ));
    }
    let bytes = crate::state::read_regular_file_following(&conf, MAX_CONF)
        .map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let (port, ssl) = parse_conf(&text).map_err(|e| format!("{}: {e}", conf.display()))?;
    Ok(CpInstall {
        dir: dir.to_path_buf(),
        run_sh,
        conf,
        port,
        ssl,
    })
}

/// The install: `install_dir` if given, else the first candidate that is one.
pub fn discover(install_dir: Option<&Path>, home: Option<&Path>) -> Result<CpInstall, String> {
    if let Some(d) = install_dir {
        return at(d);
    }
    let tried = candidates(home);
    for d in &tried {
        if let Ok(i) = at(d) {
            return Ok(i);
        }
    }
    Err(format!(
        "no Client Portal gateway found in {}; set gateway.install_dir",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `listenPort` (required) and `listenSsl` (default true) from the top level of
/// `conf.yaml`; the rest of the file is the gateway's business.
pub fn parse_conf(text: &str) -> Result<(u16, bool), String> {
    let mut port = None;
    let mut ssl = true;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with([' ', '\t', '#']) {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.split('#').next().unwrap_or("").trim().trim_matches('"');
        match k.trim() {
            "listenPort" => {
                port = Some(v.parse::<u16>().map_err(|_| {
                    format!("line {}: listenPort {v:?} is not a port number", n + 1)
                })?)
            }
            "listenSsl" => ssl = !v.eq_ignore_ascii_case("false"),
            _ => {}
        }
    }
    let port = port.ok_or("no listenPort")?;
    Ok((port, ssl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_yaml_port_and_ssl() {
        let conf = "ip2loc: \"US\"\nproxyRemoteSsl: true\nlistenPort: 5000\nlistenSsl: true\n\
                    ips:\n  allow:\n    - 127.0.0.1\n    - 192.*\n";
        assert_eq!(parse_conf(conf), Ok((5000, true)));
        assert_eq!(
            parse_conf("listenPort: 5001 # mine\nlistenSsl: false\n"),
            Ok((5001, false))
        );
        assert!(parse_conf("listenPort: http\n")
            .expect_err("bad")
            .contains("line 1"));
        assert!(
            parse_conf("ips:\n  listenPort: 1\n").is_err(),
            "only the top level counts"
        );
    }
}
