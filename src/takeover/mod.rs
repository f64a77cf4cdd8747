//! Human takeover: `x11vnc` on the gateway's display, for a person to finish what automation
//! cannot (a new dialog, a passkey, a question only they can answer).
//!
//! ```text
//!  viewer ──ssh -L──► 127.0.0.1:PORT (this module's proxy) ──► x11vnc on a Unix socket
//!                      parses the RFB handshake:                in a 0700 directory,
//!                      SecurityResult OK → Connected            no TCP listener at all
//!                      close             → Disconnected
//! ```
//!
//! Whoever connects can trade on the account, so the server is locked down:
//!
//! - **loopback only**: x11vnc listens on a Unix socket in `state_dir/takeover/` (0700) and
//!   on no TCP port (`-rfbport 0 -rfbportv6 -1 -noipv6`); the only TCP listener is this
//!   module's, on 127.0.0.1, reached through `ssh -L`;
//! - **a one-time password**: 8 random characters (VNC authentication uses 8 at most),
//!   handed to the caller as a [`Secret`] and given to x11vnc through a 0600 file that
//!   x11vnc deletes once read (`-passwdfile rm:FILE`), never through argv (world-readable
//!   in `/proc`) or the environment; it dies with the server;
//! - **VNC authentication only**: a connection offered anything else is cut;
//! - **one viewer at a time**: while a connection is open, new ones are closed at once;
//! - **bounded guessing**: the server stops after [`TakeoverOptions::max_failed_auth`]
//!   wrong passwords; a handshake must finish within [`TakeoverOptions::handshake_within`];
//! - **a deadline to connect** (x11vnc `-timeout`); no `~/.x11vncrc`, no remote control
//!   over X properties, no DNS look-ups.
//!
//! Stopping is SIGTERM, then SIGKILL after 3 s. Measured: x11vnc's clean-up in its signal
//! handler sometimes hangs (about one stop in three right after a viewer left), and
//! `x11vnc -remote stop` was not picked up within 3 s either, so the SIGKILL is a normal
//! path; it leaves nothing that matters behind (x11vnc's shared memory is already marked
//! for removal; its Unix socket and password file are removed here).
//!
//! Events come from the proxy reading the handshake itself, so they are exact and
//! immediate: [`TakeoverEvent::Connected`] the moment x11vnc accepts the password,
//! [`TakeoverEvent::Disconnected`] when that connection closes. (x11vnc's own
//! `-afteraccept` hook was measured 4–5 s late, and it misses a reconnect made within one
//! iteration of x11vnc's main loop: it compares client counts, not events.)
//!
//! The driver pauses its typing between `Connected` and `Disconnected` and says so in
//! `status`; stopping the server after the person leaves keeps the password one-time.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::secret::Secret;
use crate::x11::DisplayTarget;

/// Characters of the one-time password: letters and digits a person cannot misread
/// (no `0/O`, `1/l/I`). 56 symbols, 8 characters: about 46 bits.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// VNC authentication (RFB security type 2) uses the first 8 bytes of the password only.
const PASSWORD_LEN: usize = 8;
/// x11vnc must be listening within this.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// After SIGTERM, x11vnc gets this long before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// RFB security type "VNC authentication".
const SEC_VNC_AUTH: u8 = 2;
/// Longest failure reason forwarded from x11vnc to a viewer.
const MAX_REASON: u32 = 4096;

/// Failure to start a takeover server.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// `x11vnc` is not on PATH.
    #[error("x11vnc not found on PATH: install the Debian package x11vnc")]
    NotInstalled,
    /// A file or socket operation failed.
    #[error("{about} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        about: &'static str,
        /// The path (or address).
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// x11vnc exited or did not start listening in time.
    #[error("x11vnc did not start on display {display}: {detail}")]
    NotListening {
        /// The X display.
        display: String,
        /// What its log says (last lines; never contains the password).
        detail: String,
    },
}

fn io_err<'a>(about: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> TakeoverError + 'a {
    move |source| TakeoverError::Io {
        about,
        path: path.to_path_buf(),
        source,
    }
}

/// What happened on the takeover server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeoverEvent {
    /// A person connected and x11vnc accepted the password: stop typing.
    Connected,
    /// That person disconnected: typing may resume.
    Disconnected,
    /// The server is gone (stopped, nobody connected in time, too many wrong passwords,
    /// or it died). A `Disconnected` comes first if someone was connected. Last event.
    Ended {
        /// Why, for people.
        reason: String,
    },
}

/// Knobs of a takeover server.
#[derive(Clone, Debug)]
pub struct TakeoverOptions {
    /// x11vnc exits if nobody connects within this (`-timeout`).
    pub connect_within: Duration,
    /// Wrong passwords before the server is stopped.
    pub max_failed_auth: u32,
    /// A connection must pass (or fail) authentication within this (the viewer shows a
    /// password prompt in the middle of the handshake, so it includes a person typing).
    pub handshake_within: Duration,
}

impl Default for TakeoverOptions {
    fn default() -> Self {
        TakeoverOptions {
            connect_within: Duration::from_secs(600),
            max_failed_auth: 5,
            handshake_within: Duration::from_secs(120),
        }
    }
}

/// A running takeover server. Dropping it stops the server; [`Takeover::stop`] stops it
/// and waits until it is gone.
#[derive(Debug)]
pub struct Takeover {
    port: u16,
    pid: u32,
    events: Option<mpsc::UnboundedReceiver<TakeoverEvent>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Takeover {
    /// Starts a takeover server on `display` with the default options; see
    /// [`Takeover::start_with`].
    pub async fn start(
        display: &DisplayTarget,
        state_dir: &Path,
    ) -> Result<(Takeover, u16, Secret), TakeoverError> {
        Takeover::start_with(display, state_dir, &TakeoverOptions::default()).await
    }

    /// Starts x11vnc on `display` (files in `state_dir/takeover/`, 0700) and the loopback
    /// listener in front of it. Returns once both listen, with the port and the one-time
    /// password (give it to the person who asked; never log it).
    pub async fn start_with(
        display: &DisplayTarget,
        state_dir: &Path,
        opts: &TakeoverOptions,
    ) -> Result<(Takeover, u16, Secret), TakeoverError> {
        let bin = crate::dialog_text::find_on_path("x11vnc").ok_or(TakeoverError::NotInstalled)?;
        let dir = state_dir.join("takeover");
        prepare_dir(&dir)?;
        let password =
            one_time_password().map_err(io_err("cannot read", Path::new("/dev/urandom")))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io_err("cannot listen on", Path::new("127.0.0.1")))?;
        let port = listener
            .local_addr()
            .map_err(io_err("cannot listen on", Path::new("127.0.0.1")))?
            .port();
        let socket = dir.join("vnc.sock");
        let child = match spawn_x11vnc(&bin, display, &dir, &socket, &password, opts).await {
            Ok(c) => c,
            Err(e) => {
                cleanup(&dir);
                return Err(e);
            }
        };
        let pid = child.id().unwrap_or(0);
        let x_display = display.name.as_str();
        info!(
            port,
            pid, x_display, "takeover server listening on loopback"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(supervise(Supervised {
            child,
            listener,
            socket,
            stop: stop_rx,
            tx,
            dir,
            opts: opts.clone(),
        }));
        let t = Takeover {
            port,
            pid,
            events: Some(rx),
            stop: Some(stop_tx),
            task: Some(task),
        };
        Ok((t, port, password))
    }

    /// The loopback port viewers connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// x11vnc's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The event stream (once; `None` after the first call).
    pub fn events(&mut self) -> Option<mpsc::UnboundedReceiver<TakeoverEvent>> {
        self.events.take()
    }

    /// Stops the server (closes any viewer, SIGTERM, SIGKILL after 3 s), waits until
    /// x11vnc is gone and its files are removed. The event stream ends with
    /// [`TakeoverEvent::Ended`].
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Takeover {
    fn drop(&mut self) {
        // The supervising task stops the server when it hears this (or when the runtime
        // shuts down: x11vnc is `kill_on_drop`).
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Creates `dir` 0700 (tightening an existing one) and removes files of an earlier run.
fn prepare_dir(dir: &Path) -> Result<(), TakeoverError> {
    crate::state::create_private_dir(dir).map_err(|e| TakeoverError::Io {
        about: "cannot create",
        path: dir.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot restrict", dir))?;
    for name in ["vnc.sock", "passwd", "x11vnc.log"] {
        let p = dir.join(name);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot remove", &p)(e)),
        }
    }
    Ok(())
}

/// Removes what a takeover leaves (the log stays, for diagnosis).
fn cleanup(dir: &Path) {
    for name in ["vnc.sock", "passwd"] {
        let _ = fs::remove_file(dir.join(name));
    }
}

/// Eight characters from [`ALPHABET`], uniformly (rejection sampling over random bytes).
fn one_time_password() -> io::Result<Secret> {
    let mut urandom = fs::File::open("/dev/urandom")?;
    let limit = 256 / ALPHABET.len() * ALPHABET.len();
    let mut out = String::with_capacity(PASSWORD_LEN);
    let mut buf = [0u8; 32];
    while out.len() < PASSWORD_LEN {
        urandom.read_exact(&mut buf)?;
        for b in buf {
            if (b as usize) < limit && out.len() < PASSWORD_LEN {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    buf.fill(0);
    Ok(Secret::new(out))
}

/// The x11vnc command line (no secret in it: the password travels in a file).
fn x11vnc_args(
    display: &DisplayTarget,
    socket: &Path,
    pwfile: &Path,
    opts: &TakeoverOptions,
) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = vec!["-display".into(), display.name.clone().into()];
    if let Some(auth) = &display.xauthority {
        a.push("-auth".into());
        a.push(auth.into());
    }
    a.push("-unixsock".into());
    a.push(socket.into());
    // No TCP listener of x11vnc's own, IPv4 or IPv6 (measured: without `-rfbportv6 -1`
    // Debian's build still listens on [::]:5900). Not `-localhost`: it means "-allow
    // 127.0.0.1", which refuses Unix-socket peers (they have no address).
    for s in ["-rfbport", "0", "-rfbportv6", "-1", "-noipv6"] {
        a.push(s.into());
    }
    a.push("-passwdfile".into());
    let mut rm = std::ffi::OsString::from("rm:");
    rm.push(pwfile);
    a.push(rm);
    for s in [
        "-forever",
        "-nevershared",
        "-dontdisconnect",
        "-norc",
        "-noremote",
        "-nolookup",
        "-desktop",
        "ibwarden",
        "-timeout",
    ] {
        a.push(s.into());
    }
    a.push(opts.connect_within.as_secs().max(1).to_string().into());
    a
}

/// Starts x11vnc and waits until it says it listens on the Unix socket.
async fn spawn_x11vnc(
    bin: &Path,
    display: &DisplayTarget,
    dir: &Path,
    socket: &Path,
    password: &Secret,
    opts: &TakeoverOptions,
) -> Result<Child, TakeoverError> {
    let pwfile = dir.join("passwd");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pwfile)
            .map_err(io_err("cannot create", &pwfile))?;
        f.write_all(format!("{}\n", password.expose()).as_bytes())
            .map_err(io_err("cannot write", &pwfile))?;
    }
    let log_path = dir.join("x11vnc.log");
    let mut log = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io_err("cannot create", &log_path))?;

    // x11vnc runs with a clean environment: give it the cookie file the caller's X
    // clients would use when the target names none.
    let mut display = display.clone();
    if display.xauthority.is_none() {
        display.xauthority = default_xauthority();
    }
    let mut cmd = Command::new(bin);
    cmd.args(x11vnc_args(&display, socket, &pwfile, opts))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C")
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(io_err("cannot start", bin))?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.start_kill();
        return Err(not_listening(&display, "no stderr".into()));
    };
    // x11vnc's log goes to a file (for diagnosis); the line saying it listens is the
    // readiness signal. The reader keeps draining so x11vnc never blocks on a full pipe.
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let want = format!("listening on unix socket: {}", socket.display());
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut ready = Some(ready_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&want) {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            let _ = writeln!(log, "{line}");
        }
    });
    match tokio::time::timeout(START_TIMEOUT, ready_rx).await {
        Ok(Ok(())) => Ok(child),
        res => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            let _ = fs::remove_file(&pwfile);
            let detail = match res {
                Err(_) => format!("it did not listen within {} s", START_TIMEOUT.as_secs()),
                Ok(_) => log_tail(&log_path),
            };
            Err(not_listening(&display, detail))
        }
    }
}

/// `$XAUTHORITY`, else `~/.Xauthority`, if the file exists (what Xlib would use).
fn default_xauthority() -> Option<PathBuf> {
    let from_env = std::env::var_os("XAUTHORITY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let from_home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".Xauthority"));
    from_env.or(from_home).filter(|p| p.is_file())
}

fn not_listening(display: &DisplayTarget, detail: String) -> TakeoverError {
    TakeoverError::NotListening {
        display: display.name.clone(),
        detail,
    }
}

/// The last few lines of x11vnc's log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        "it exited without a message".into()
    } else {
        format!("it exited: {tail}")
    }
}

/// How a proxied connection's handshake ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// x11vnc accepted the password.
    Authenticated,
    /// x11vnc refused the password.
    WrongPassword,
    /// The connection ended another way (closed early, a non-VNC-auth security type, a
    /// failure before authentication).
    Other(&'static str),
}

async fn pass<R, W>(from: &mut R, to: &mut W, n: usize) -> io::Result<Vec<u8>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; n];
    from.read_exact(&mut buf).await?;
    to.write_all(&buf).await?;
    Ok(buf)
}

/// Forwards a failure reason (u32 length + text), bounded.
async fn pass_reason<R, W>(from: &mut R, to: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let len = pass(from, to, 4).await?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
    if len > MAX_REASON {
        return Err(io::Error::other("failure reason too long"));
    }
    pass(from, to, len as usize).await?;
    Ok(())
}

/// Relays the RFB handshake between a viewer and the server byte for byte, reading it on
/// the way (RFB 6.1–6.2: versions 3.3, 3.7, 3.8), up to the SecurityResult.
pub(crate) async fn relay_handshake<C, S>(client: &mut C, server: &mut S) -> io::Result<Handshake>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    pass(server, client, 12).await?;
    let version = pass(client, server, 12).await?;
    // "RFB 003.00N\n"; anything unknown is treated as 3.3, as servers do.
    let minor = std::str::from_utf8(&version[8..11])
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(3);
    let minor = if version.starts_with(b"RFB 003.") {
        minor
    } else {
        3
    };
    let chosen = if minor >= 7 {
        let n = pass(server, client, 1).await?[0];
        if n == 0 {
            pass_reason(server, client).await?;
            return Ok(Handshake::Other("the server refused the connection"));
        }
        let types = pass(server, client, n as usize).await?;
        let chosen = pass(client, server, 1).await?[0];
        if !types.contains(&chosen) {
            return Ok(Handshake::Other("the viewer chose a type not offered"));
        }
        chosen
    } else {
        let t = pass(server, client, 4).await?;
        let t = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
        if t == 0 {
            pass_reason(server, client).await?;
            return Ok(Handshake::Other("the server refused the connection"));
        }
        u8::try_from(t).unwrap_or(0)
    };
    if chosen != SEC_VNC_AUTH {
        // x11vnc is started with a password, so it offers only VNC authentication; any
        // other type means something is wrong: never pass such a viewer through.
        return Ok(Handshake::Other("not VNC authentication"));
    }
    pass(server, client, 16).await?;
    pass(client, server, 16).await?;
    let result = pass(server, client, 4).await?;
    if result == [0, 0, 0, 0] {
        return Ok(Handshake::Authenticated);
    }
    if minor >= 8 {
        pass_reason(server, client).await?;
    }
    Ok(Handshake::WrongPassword)
}

/// What a connection task tells the supervisor.
#[derive(Debug)]
enum ConnMsg {
    Authenticated,
    WrongPassword,
    /// Viewer `id`'s connection is over.
    Closed {
        id: u64,
        authenticated: bool,
    },
}

/// How long a new viewer waits for the previous connection to finish closing (a wrong
/// password and an immediate retry; measured: the retry can arrive before the proxy task of
/// the failed one has ended, on a loaded machine).
const PREVIOUS_CLOSE: Duration = Duration::from_secs(2);

/// One viewer: connect to x11vnc, relay the handshake (bounded), then bytes both ways.
async fn serve_viewer(
    id: u64,
    mut client: TcpStream,
    socket: PathBuf,
    handshake_within: Duration,
    tx: mpsc::UnboundedSender<ConnMsg>,
) {
    let mut authenticated = false;
    let result: io::Result<()> = async {
        let mut server = UnixStream::connect(&socket).await?;
        let hs = tokio::time::timeout(handshake_within, relay_handshake(&mut client, &mut server))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake took too long"))??;
        match hs {
            Handshake::Authenticated => {
                authenticated = true;
                let _ = tx.send(ConnMsg::Authenticated);
                tokio::io::copy_bidirectional(&mut client, &mut server).await?;
            }
            Handshake::WrongPassword => {
                let _ = tx.send(ConnMsg::WrongPassword);
                // Let the viewer read the reason before the close.
                let _ = client.shutdown().await;
            }
            Handshake::Other(why) => debug!(why, "takeover connection ended in the handshake"),
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        debug!(error = %e, "takeover connection ended");
    }
    let _ = tx.send(ConnMsg::Closed { id, authenticated });
}

struct Supervised {
    child: Child,
    listener: TcpListener,
    socket: PathBuf,
    stop: oneshot::Receiver<()>,
    tx: mpsc::UnboundedSender<TakeoverEvent>,
    dir: PathBuf,
    opts: TakeoverOptions,
}

/// Owns x11vnc and the listener: one viewer at a time, events, the end.
async fn supervise(s: Supervised) {
    let Supervised {
        mut child,
        listener,
        socket,
        mut stop,
        tx,
        dir,
        opts,
    } = s;
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel();
    let mut active: Option<(u64, JoinHandle<()>)> = None;
    let mut next_id: u64 = 0;
    let mut connected = false;
    let mut ever_connected = false;
    let mut failed = 0u32;
    let started = std::time::Instant::now();
    let reason = loop {
        tokio::select! {
            _ = &mut stop => {
                close_viewer(&mut active).await;
                terminate(&mut child).await;
                break "stopped".to_string();
            }
            status = child.wait() => {
                break match status {
                    // Its `-timeout`: nobody ever connected.
                    Ok(_) if !ever_connected && started.elapsed() >= opts.connect_within => {
                        format!("nobody connected within {} s", opts.connect_within.as_secs())
                    }
                    Ok(st) => format!("x11vnc exited ({st})"),
                    Err(e) => format!("x11vnc could not be waited for: {e}"),
                };
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and the like: do not spin; the next viewer retries.
                        debug!(error = %e, "takeover: accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                if let Some((_, handle)) = active.as_mut() {
                    // The previous connection may be closing (a wrong password, then a retry
                    // at once): wait for it a little before turning the new one away.
                    if !handle.is_finished() {
                        let _ = tokio::time::timeout(PREVIOUS_CLOSE, &mut *handle).await;
                    }
                    if !handle.is_finished() {
                        debug!(%peer, "takeover: a viewer is already connected; closing the new one");
                        drop(stream);
                        continue;
                    }
                }
                debug!(%peer, "takeover: viewer connecting");
                next_id += 1;
                active = Some((next_id, tokio::spawn(serve_viewer(
                    next_id,
                    stream,
                    socket.clone(),
                    opts.handshake_within,
                    conn_tx.clone(),
                ))));
            }
            Some(msg) = conn_rx.recv() => match msg {
                ConnMsg::Authenticated => {
                    connected = true;
                    ever_connected = true;
                    info!("a person connected to the takeover server");
                    let _ = tx.send(TakeoverEvent::Connected);
                }
                ConnMsg::WrongPassword => {
                    failed += 1;
                    warn!(failed, "wrong VNC password on the takeover server");
                    if failed >= opts.max_failed_auth {
                        close_viewer(&mut active).await;
                        terminate(&mut child).await;
                        break format!("stopped after {failed} wrong VNC passwords");
                    }
                }
                ConnMsg::Closed { id, authenticated } => {
                    if active.as_ref().is_some_and(|(a, _)| *a == id) {
                        active = None;
                    }
                    if authenticated && connected {
                        connected = false;
                        info!("the person disconnected from the takeover server");
                        let _ = tx.send(TakeoverEvent::Disconnected);
                    }
                }
            },
        }
    };
    drop(listener);
    close_viewer(&mut active).await;
    if connected {
        let _ = tx.send(TakeoverEvent::Disconnected);
    }
    info!(reason = %reason, "takeover server ended");
    cleanup(&dir);
    let _ = tx.send(TakeoverEvent::Ended { reason });
}

/// Closes the proxied connection, if any (both sockets). Done before signalling x11vnc:
/// measured, x11vnc signalled while a client socket is still open can hang in its clean-up
/// until the SIGKILL.
async fn close_viewer(active: &mut Option<(u64, JoinHandle<()>)>) {
    if let Some((_, a)) = active.take() {
        a.abort();
        let _ = a.await;
    }
}

/// SIGTERM, a grace period, then SIGKILL; always reaps.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
        debug!(pid, "x11vnc did not finish its clean-up; killing it");
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests;
