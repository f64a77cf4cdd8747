//! Secrets typed at a real terminal (a pseudo-terminal) are not echoed, and a terminal user
//! is asked to repeat the password.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "TtyPw-Secret-Walrus-58";

/// The terminal side of a child running on a pseudo-terminal.
struct Terminal {
    master: fs::File,
    chunks: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    /// Waits (up to 10 s) until the output contains `text`.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&self.seen).contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!(
                    "no {text:?} within 10 s; output so far:\n{}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        self.master
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to terminal");
    }

    /// Everything the terminal showed, once the child has closed it.
    fn finish(mut self) -> String {
        while let Ok(chunk) = self.chunks.recv_timeout(Duration::from_secs(10)) {
            self.seen.extend(chunk);
        }
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

fn spawn_on_pty(args: &[&str], dir: &std::path::Path) -> (std::process::Child, Terminal) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = fs::File::from(pty.slave);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ibwarden"));
    cmd.args(args)
        .env_clear()
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().expect("spawn");
    // The Command holds copies of the slave; drop them so the master sees EOF/EIO when the
    // child exits.
    drop(cmd);
    let master = fs::File::from(pty.master);
    let mut reader = master.try_clone().expect("dup master");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO once every slave descriptor is closed.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    (
        child,
        Terminal {
            master,
            chunks: rx,
            seen: Vec::new(),
        },
    )
}

fn config(dir: &std::path::Path) {
    fs::write(dir.join("pw"), "old\n").expect("write");
    fs::set_permissions(dir.join("pw"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(
        dir.join("c.toml"),
        "[gateway]\ntrading_mode = \"paper\"\n[account]\nusername = \"u\"\npassword_file = \"pw\"\n",
    )
    .expect("write");
}

#[test]
fn password_is_not_echoed_and_asked_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path());
    let (mut child, mut term) =
        spawn_on_pty(&["secret", "set", "password", "-c", "c.toml"], dir.path());
    term.wait_for("(not shown): ");
    term.type_line(PASSWORD);
    term.wait_for("Again: ");
    term.type_line(PASSWORD);
    let status = child.wait().expect("wait");
    let shown = term.finish();
    assert!(status.success(), "{shown}");
    assert!(!shown.contains(PASSWORD), "echoed:\n{shown}");
    assert!(shown.contains("Replaced"), "{shown}");
    assert_eq!(
        fs::read_to_string(dir.path().join("pw")).expect("read"),
        format!("{PASSWORD}\n")
    );
}

#[test]
fn mismatched_repeat_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    config(dir.path());
    let (mut child, mut term) =
        spawn_on_pty(&["secret", "set", "password", "-c", "c.toml"], dir.path());
    term.wait_for("(not shown): ");
    term.type_line(PASSWORD);
    term.wait_for("Again: ");
    term.type_line("something-else");
    let status = child.wait().expect("wait");
    let shown = term.finish();
    assert_eq!(status.code(), Some(1), "{shown}");
    assert!(shown.contains("differ"), "{shown}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains("something-else"),
        "{shown}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("pw")).expect("read"),
        "old\n"
    );
}
