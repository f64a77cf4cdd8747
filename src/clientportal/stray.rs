//! A Client Portal gateway left running by an earlier ibwarden.
//!
//! IBKR's `bin/run.sh` runs `java` as a child of the shell, not with `exec`. ibwarden's
//! child is the shell: its parent-death signal reaches the shell only, so when ibwarden is
//! killed outright (SIGKILL, a crash; not under systemd, whose stop takes the whole cgroup)
//! the JVM is orphaned and keeps the port and its session. The next gateway cannot bind,
//! and the old one would answer its API. So before launching, such a JVM is found (this
//! user's `java` whose working directory is the install and whose arguments name its
//! `conf.yaml`, with no running ibwarden above it) and stopped.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::warn;

use crate::gateway::process::PidFd;
use crate::procfs;

/// The pids of gateway JVMs of `install_dir` that no running ibwarden owns.
pub fn find(install_dir: &Path) -> Vec<u32> {
    let Ok(install) = std::fs::canonicalize(install_dir) else {
        return Vec::new();
    };
    let me = std::process::id();
    let uid = nix::unistd::Uid::effective().as_raw();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid)
                && is_gateway_of(pid, &install)
                && !owned_by_a_running_ibwarden(pid)
        })
        .collect()
}

fn is_gateway_of(pid: u32, install: &Path) -> bool {
    let in_install = std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == install);
    if !in_install {
        return false;
    }
    let Some(args) = procfs::cmdline(pid) else {
        return false;
    };
    is_java(pid)
        && args
            .iter()
            .any(|a| a.to_str().is_some_and(|s| s.ends_with("conf.yaml")))
}

fn owned_by_a_running_ibwarden(pid: u32) -> bool {
    procfs::ancestry(pid).iter().skip(1).any(|&p| {
        std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "ibwarden")
    })
}

/// SIGTERM (and SIGCONT) to each, up to `grace` for it to exit, then SIGKILL.
pub async fn stop(install_dir: &Path, pids: &[u32], grace: Duration) {
    for &pid in pids {
        // Opened before any signal: a pid reused meanwhile is never signalled.
        let Ok(fd) = PidFd::open(pid) else { continue };
        // Still that JVM (and not a pid reused between the scan and the open)?
        let still = std::fs::canonicalize(install_dir)
            .is_ok_and(|i| is_gateway_of(pid, &i) && !owned_by_a_running_ibwarden(pid));
        if !still {
            continue;
        }
        let target = Pid::from_raw(pid as i32);
        let _ = kill(target, Signal::SIGTERM);
        let _ = kill(target, Signal::SIGCONT);
        if tokio::time::timeout(grace, fd.exited()).await.is_err() {
            warn!(
                pid,
                "the earlier Client Portal gateway ignored SIGTERM; SIGKILL"
            );
            let _ = kill(target, Signal::SIGKILL);
            let _ = tokio::time::timeout(Duration::from_secs(10), fd.exited()).await;
        }
    }
}

/// `pid` if it is a `java`, else its first child that is (the JVM `run.sh` started), else
/// `pid`.
pub fn java_of(pid: u32) -> u32 {
    if is_java(pid) {
        return pid;
    }
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .find(|&c| is_java(c))
        .unwrap_or(pid)
}

fn is_java(pid: u32) -> bool {
    procfs::cmdline(pid).is_some_and(|args| {
        args.first().is_some_and(|a| {
            Path::new(a)
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("java"))
        })
    })
}
