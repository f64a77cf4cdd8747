//! The IBC-compatible command server: plain TCP on 127.0.0.1, one command per line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::{
    forward, ControlCommand, ControlError, ControlReply, ControlRequest, IBC_IDLE_TIMEOUT,
    MAX_CONNECTIONS,
};
use crate::secret::Secret;

/// Binds the IBC-compatible command server on `127.0.0.1:port` (loopback only: the
/// protocol has no encryption and at most a shared secret).
pub async fn bind_ibc(port: u16) -> Result<TcpListener, ControlError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Io {
            about: "cannot listen for IBC commands on",
            path: PathBuf::from(addr.to_string()),
            source,
        })
}

/// Serves IBC commands on `listener` until the task is dropped. `auth`: the token the first
/// command must present as `AUTH <token>`, if set.
pub async fn serve_ibc(
    listener: TcpListener,
    auth: Option<Secret>,
    tx: mpsc::Sender<ControlRequest>,
) {
    let auth = auth.map(Arc::new);
    let stopping = Arc::new(AtomicBool::new(false));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !peer.ip().is_loopback() {
                        warn!(%peer, "IBC command server: refused a non-loopback client");
                        continue;
                    }
                    if conns.len() >= MAX_CONNECTIONS {
                        warn!("IBC command server: too many connections; refusing one");
                        continue;
                    }
                    conns.spawn(handle_ibc(stream, auth.clone(), stopping.clone(), tx.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "IBC command server: accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// What one IBC command line does.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IbcStep {
    /// Write this line and keep reading.
    Reply(String),
    /// Write this line and close the connection.
    Close(String),
    /// Forward a command to the driver; on success write `ok` and close.
    Forward {
        cmd: ControlCommand,
        ok: &'static str,
    },
    /// Nothing (blank line).
    Nothing,
}

/// Decides what an IBC command line means (pure; the replies are IBC's own text).
pub(super) fn ibc_step(
    line: &str,
    authed: &mut bool,
    auth: Option<&Secret>,
    stopping: &AtomicBool,
) -> IbcStep {
    let line = line.trim();
    if line.is_empty() {
        return IbcStep::Nothing;
    }
    let (verb, rest) = match line.split_once(char::is_whitespace) {
        Some((v, r)) => (v.to_ascii_uppercase(), r.trim()),
        None => (line.to_ascii_uppercase(), ""),
    };
    if let Some(token) = auth {
        if verb == "AUTH" {
            if constant_time_eq(rest.as_bytes(), token.expose().as_bytes()) {
                *authed = true;
                return IbcStep::Reply("OK Authenticated".into());
            }
            return IbcStep::Close("ERROR Authentication failed".into());
        }
        if !*authed && verb != "EXIT" {
            return IbcStep::Reply("ERROR Not authenticated: send AUTH <token> first".into());
        }
    }
    match verb.as_str() {
        "EXIT" => IbcStep::Close("OK Goodbye".into()),
        "STOP" => {
            if stopping.swap(true, Ordering::SeqCst) {
                IbcStep::Reply("ERROR STOP already in progress".into())
            } else {
                IbcStep::Forward {
                    cmd: ControlCommand::Stop,
                    ok: "OK Shutting down: STOP command",
                }
            }
        }
        "RESTART" => IbcStep::Forward {
            cmd: ControlCommand::Restart,
            ok: "OK RESTART in progress",
        },
        "ENABLEAPI" => IbcStep::Reply("ERROR ENABLEAPI is not valid for the IB Gateway".into()),
        "RECONNECTDATA" | "RECONNECTACCOUNT" | "PAUSE" => IbcStep::Reply(format!(
            "ERROR {verb} is not supported by ibwarden; use RESTART"
        )),
        _ => IbcStep::Reply("ERROR Command invalid".into()),
    }
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle_ibc(
    stream: tokio::net::TcpStream,
    auth: Option<Arc<Secret>>,
    stopping: Arc<AtomicBool>,
    tx: mpsc::Sender<ControlRequest>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read);
    let mut authed = false;
    loop {
        let mut line = String::new();
        let n = match tokio::time::timeout(
            IBC_IDLE_TIMEOUT,
            (&mut lines).take(4096).read_line(&mut line),
        )
        .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let step = ibc_step(&line, &mut authed, auth.as_deref(), &stopping);
        if let IbcStep::Forward { cmd, .. } = &step {
            info!(command = ?cmd, "IBC command server: command received");
        }
        let (text, close) = match step {
            IbcStep::Nothing => continue,
            IbcStep::Reply(t) => (t, false),
            IbcStep::Close(t) => (t, true),
            IbcStep::Forward { cmd, ok } => {
                let was_stop = cmd == ControlCommand::Stop;
                match forward(cmd, &tx).await {
                    ControlReply::Error { message } => {
                        if was_stop {
                            stopping.store(false, Ordering::SeqCst);
                        }
                        (format!("ERROR {message}"), false)
                    }
                    _ => (ok.to_string(), true),
                }
            }
        };
        let out = format!("{text}\n");
        if write.write_all(out.as_bytes()).await.is_err() || close {
            let _ = write.shutdown().await;
            return;
        }
    }
}
