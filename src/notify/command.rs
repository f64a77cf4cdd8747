//! The command hook: argv, no shell, an allow-listed environment.

use super::*;

/// Environment variables a hook may keep; everything else (secrets included) is dropped.
pub(super) const COMMAND_ENV_KEEP: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
];

pub(super) struct CommandChannel {
    pub(super) argv: Vec<String>,
    pub(super) instance: String,
    pub(super) timeout: Duration,
}

impl CommandChannel {
    /// Runs `argv... <kind> <severity> <message>` with `IBWARDEN_*` set, stdin null, in its
    /// own process group (killed whole on timeout).
    pub(super) async fn send(&self, ev: &Event) -> Result<(), SendError> {
        let program = self.argv[0].clone();
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&self.argv[1..])
            .arg(kind_name(ev.kind))
            .arg(severity_name(ev.severity))
            .arg(&ev.message)
            .env_clear()
            .envs(
                COMMAND_ENV_KEEP
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
            )
            .env("IBWARDEN_EVENT", kind_name(ev.kind))
            .env("IBWARDEN_SEVERITY", severity_name(ev.severity))
            .env("IBWARDEN_TITLE", &ev.title)
            .env("IBWARDEN_MESSAGE", &ev.message)
            .env("IBWARDEN_INSTANCE", &self.instance)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|error| SendError::Spawn {
            program: program.clone(),
            error,
        })?;
        let pid = child.id();
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(&out.stderr);
                let first: String = text.trim().chars().take(200).collect();
                Err(SendError::Exit {
                    program,
                    status: out.status.to_string(),
                    stderr: if first.is_empty() {
                        String::new()
                    } else {
                        format!(": {first}")
                    },
                })
            }
            Ok(Err(error)) => Err(SendError::Spawn { program, error }),
            Err(_) => {
                if let Some(pid) = pid {
                    // The group too: a shell script's children would outlive it otherwise.
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(SendError::Timeout(self.timeout))
            }
        }
    }
}
