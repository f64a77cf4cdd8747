//! Desktop notifications: org.freedesktop.Notifications on the session bus, also another user's.

use super::*;

/// `org.freedesktop.Notifications` on a session bus.
///
/// Why not `notify-rust`'s `show_async()`: it always connects with
/// `zbus::Connection::session()`, which reads `$DBUS_SESSION_BUS_ADDRESS` (or
/// `$XDG_RUNTIME_DIR/bus`) of *this* process. A system service has neither, and setting the
/// variable at run time is racy in a multi-threaded process. Nor can it connect as another
/// user: a session bus accepts only its owner's uid (root included is refused), so root must
/// connect the socket with the user's effective uid. zbus (the crate notify-rust uses) takes
/// a pre-connected stream and an explicit uid for the EXTERNAL handshake, so we make the same
/// `Notify` call notify-rust makes, on a connection we set up.
pub(super) struct DesktopChannel {
    /// `desktop_user`: a name or a uid.
    pub(super) user: Option<String>,
    /// An explicit bus address (tests, unusual set-ups).
    pub(super) address: Option<String>,
    pub(super) timeout: Duration,
}

/// Which bus, as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusTarget {
    /// A D-Bus address (`unix:path=/run/user/1000/bus`).
    pub address: String,
    /// The socket path, when the address is a plain `unix:path=`.
    pub path: Option<PathBuf>,
    /// The bus owner's uid and gid (to connect as, when we are root).
    pub owner: Option<(u32, u32)>,
}

/// Finds the session bus of `user` (a name or uid), or of the current user: an explicit
/// address, then `$DBUS_SESSION_BUS_ADDRESS` (only for the current user), then
/// `/run/user/<uid>/bus`.
pub fn find_session_bus(user: Option<&str>, address: Option<&str>) -> Result<BusTarget, SendError> {
    let owner = match user {
        Some(u) => Some(lookup_user(u)?),
        None => None,
    };
    if let Some(a) = address {
        return Ok(BusTarget {
            address: a.to_string(),
            path: unix_path(a),
            owner,
        });
    }
    let (uid, gid) = match owner {
        Some(o) => o,
        None => {
            if let Some(a) = std::env::var("DBUS_SESSION_BUS_ADDRESS")
                .ok()
                .filter(|a| !a.is_empty())
            {
                return Ok(BusTarget {
                    path: unix_path(&a),
                    address: a,
                    owner: None,
                });
            }
            (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            )
        }
    };
    let path = PathBuf::from(format!("/run/user/{uid}/bus"));
    if !path.exists() {
        return Err(SendError::NoBus(format!(
            "{} does not exist (is uid {uid} logged in to a desktop?)",
            path.display()
        )));
    }
    Ok(BusTarget {
        address: format!("unix:path={}", path.display()),
        path: Some(path),
        owner: Some((uid, gid)),
    })
}

pub(super) fn lookup_user(user: &str) -> Result<(u32, u32), SendError> {
    if let Ok(uid) = user.parse::<u32>() {
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw())
            .unwrap_or(uid);
        return Ok((uid, gid));
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(SendError::NoBus(format!(
            "desktop_user {user:?} does not exist"
        ))),
        Err(e) => Err(SendError::NoBus(format!(
            "cannot look up desktop_user {user:?}: {e}"
        ))),
    }
}

/// The socket path of a single `unix:path=...` address.
pub(super) fn unix_path(address: &str) -> Option<PathBuf> {
    let rest = address.strip_prefix("unix:")?;
    if address.contains(';') {
        return None;
    }
    rest.split(',')
        .find_map(|kv| kv.strip_prefix("path="))
        .map(PathBuf::from)
}

/// Connects to a unix socket with `uid`/`gid` as the effective ids, so that the peer (the
/// bus) sees that user in `SO_PEERCRED`. Only root can do this.
pub(super) fn connect_as(path: &Path, uid: u32, gid: u32) -> std::io::Result<UnixStream> {
    let path = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("ibwarden-bus-connect".into())
        .spawn(move || {
            set_thread_ids(uid, gid)?;
            UnixStream::connect(&path)
        })?;
    handle
        .join()
        .map_err(|_| std::io::Error::other("connect thread panicked"))?
}

/// Sets the effective uid/gid of the calling thread only.
///
/// Raw syscalls on purpose: glibc's setresuid() changes the ids of EVERY thread (it signals
/// them all); the raw syscall changes only the caller. Call it only on a thread that ends
/// right after its work, so the changed ids end with it.
pub(super) fn set_thread_ids(uid: u32, gid: u32) -> std::io::Result<()> {
    // 32-bit x86 and ARM keep 16-bit ids in the plain calls; the *32 variants take full ids.
    #[cfg(any(target_arch = "x86", target_arch = "arm"))]
    let (setresgid, setresuid) = (libc::SYS_setresgid32, libc::SYS_setresuid32);
    #[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
    let (setresgid, setresuid) = (libc::SYS_setresgid, libc::SYS_setresuid);
    let keep = -1 as libc::c_int;
    // SAFETY: plain syscalls with integer arguments, affecting only this thread.
    if unsafe { libc::syscall(setresgid, keep, gid as libc::c_uint, keep) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::syscall(setresuid, keep, uid as libc::c_uint, keep) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl DesktopChannel {
    pub(super) async fn send(&self, ev: &Event) -> Result<(), SendError> {
        let target = find_session_bus(self.user.as_deref(), self.address.as_deref())?;
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, send_desktop(target, ev)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(timeout)),
        }
    }
}

async fn send_desktop(target: BusTarget, ev: &Event) -> Result<(), SendError> {
    // ibwarden runs in the desktop user's own session (the bus is this process's
    // `$DBUS_SESSION_BUS_ADDRESS`): notify-rust does exactly this job, so it is used. For any
    // other bus (a system service reaching a user's desktop) it cannot, see above.
    if std::env::var("DBUS_SESSION_BUS_ADDRESS").ok().as_deref() == Some(target.address.as_str()) {
        let urgency = match ev.severity {
            Severity::Info => notify_rust::Urgency::Low,
            Severity::Warning => notify_rust::Urgency::Normal,
            Severity::Critical => notify_rust::Urgency::Critical,
        };
        return notify_rust::Notification::new()
            .appname("ibwarden")
            .summary(&ev.title)
            .body(&ev.message)
            .urgency(urgency)
            .hint(notify_rust::Hint::Category("ibwarden".into()))
            .show_async()
            .await
            .map(|_| ())
            .map_err(|e| SendError::NoBus(format!("{}: {e}", target.address)));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if let Some((uid, _)) = target.owner {
        if euid != 0 && uid != euid {
            return Err(SendError::NoBus(format!(
                "{} belongs to uid {uid}, and a session bus admits only its owner: run \
                 ibwarden as that user, or as root",
                target.address
            )));
        }
    }
    let builder = match (&target.path, target.owner) {
        (Some(path), Some((uid, gid))) if euid == 0 && uid != 0 => {
            let path = path.clone();
            let stream = tokio::task::spawn_blocking(move || connect_as(&path, uid, gid))
                .await
                .map_err(|e| SendError::NoBus(e.to_string()))?
                .map_err(|e| SendError::NoBus(format!("{}: {e}", target.address)))?;
            zbus::connection::Builder::unix_stream(stream).user_id(uid)
        }
        _ => zbus::connection::Builder::address(target.address.as_str()),
    };
    let conn = builder
        .build()
        .await
        .map_err(|e| SendError::NoBus(format!("{}: {e}", target.address)))?;
    let (urgency, icon): (u8, &str) = match ev.severity {
        Severity::Info => (0, "dialog-information"),
        Severity::Warning => (1, "dialog-warning"),
        Severity::Critical => (2, "dialog-error"),
    };
    let mut hints: std::collections::HashMap<&str, zbus::Variant<'_>> =
        std::collections::HashMap::new();
    hints.insert("urgency", zbus::Variant::U8(urgency));
    hints.insert("category", zbus::Variant::from("ibwarden"));
    let actions: Vec<&str> = Vec::new();
    let reply = conn
        .call_method(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            Some("org.freedesktop.Notifications"),
            "Notify",
            &(
                "ibwarden",
                0u32,
                icon,
                ev.title.as_str(),
                ev.message.as_str(),
                actions,
                hints,
                -1i32,
            ),
        )
        .await
        .map_err(|e| SendError::Dbus(e.to_string()))?;
    let id: u32 = reply
        .body()
        .deserialize()
        .map_err(|e| SendError::Dbus(e.to_string()))?;
    debug!(instance = %ev.instance, id, "desktop notification shown");
    Ok(())
}
