//! The window watcher: a dedicated OS thread with its own X connection that turns root-window
//! notifications into [`WindowEvent`]s on a tokio channel.
//!
//! It selects `SubstructureNotify | PropertyChange` on the root and `PropertyChange` on every
//! top-level, then blocks in `wait_for_event`: no polling. Windows are reported on
//! `MapNotify`, when Java has set every property (measured; `CreateNotify` comes at
//! `pack()`, before `_NET_WM_PID` and the class may exist). Only *mapped* top-levels are
//! reported, which leaves out Java's helper windows (the client leader and
//! `sun-awt-X11-XIconWindow` are never mapped; `FocusProxy` and `Content window` are
//! children, not top-levels). Override-redirect windows (popup menus, tooltips, combo
//! popups) are not reported either: they are never dialogs, and reporting them would make
//! every popup look like an unknown dialog.
//!
//! On start the tree is rescanned with `QueryTree` (after the event selection, so nothing
//! falls in between) and every viewable top-level is reported as `Mapped`. PID filtering is
//! the core's job: every top-level is reported with its `_NET_WM_PID`.
//!
//! With a reparenting window manager (an existing desktop display) the root only sees the
//! WM's untitled frames (measured). A mapped frame without title and pid is
//! searched (3 levels) for the client (`WM_STATE` or `_NET_WM_PID`), which is then reported
//! in its place, with root coordinates, and its own unmap/destroy/title events are selected.
//!
//! Shutdown: dropping the [`Watcher`] sets a flag and sends a `ClientMessage` to the
//! watcher's own small window through the same (thread-safe) connection, which wakes
//! `wait_for_event`; then the thread is joined (bounded: it is left to exit by itself if
//! it is blocked handing an event to a receiver nobody reads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use xcb::x;
use xcb::Xid;

use super::{connect, root_of, ConnectError, DisplayTarget};
use crate::core::types::WindowInfo;

/// Channel capacity; the watcher blocks (and the X server buffers) if the consumer lags.
const CHANNEL_CAPACITY: usize = 1024;

/// What happened to a top-level window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowEvent {
    /// A top-level became visible (also sent for windows already visible at start).
    Mapped(WindowInfo),
    /// A mapped top-level was hidden (`setVisible(false)`, `dispose()`).
    Unmapped {
        /// Window id.
        id: u32,
    },
    /// A top-level we had seen mapped was destroyed.
    Destroyed {
        /// Window id.
        id: u32,
    },
    /// A mapped top-level's title changed.
    TitleChanged {
        /// Window id.
        id: u32,
        /// The new title.
        title: String,
    },
    /// The X connection is gone (Xvfb died or the server closed us). No more events follow.
    ConnectionLost {
        /// What xcb reported.
        reason: String,
    },
}

/// Failure to start the watcher.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Could not connect.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The initial setup requests failed.
    #[error("window watcher setup: {request} failed: {detail}")]
    Setup {
        /// The request.
        request: &'static str,
        /// The X error.
        detail: String,
    },
    /// The thread could not be spawned.
    #[error("window watcher thread: {0}")]
    Thread(std::io::Error),
}

fn setup_err(request: &'static str) -> impl FnOnce(xcb::Error) -> WatchError {
    move |e| WatchError::Setup {
        request,
        detail: format!("{e:?}"),
    }
}

struct Atoms {
    net_wm_name: x::Atom,
    utf8_string: x::Atom,
    net_wm_pid: x::Atom,
    wm_state: x::Atom,
    wake: x::Atom,
}

/// Handle to the watcher thread. Drop it to stop the thread.
pub struct Watcher {
    conn: Arc<xcb::Connection>,
    display: String,
    stop: Arc<AtomicBool>,
    wake_window: x::Window,
    wake_atom: x::Atom,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Connects to `target`, selects the events, and starts the thread. The initial scan's
    /// `Mapped` events are the first ones on the returned channel.
    ///
    /// Blocks for the connection and a few round trips per existing window (milliseconds on
    /// a local display); fine to call from async code at startup.
    pub fn spawn(
        target: &DisplayTarget,
    ) -> Result<(Watcher, mpsc::Receiver<WindowEvent>), WatchError> {
        let (conn, screen) = connect(target, &[])?;
        let root = root_of(&conn, screen).ok_or(WatchError::Setup {
            request: "setup",
            detail: format!("no screen {screen}"),
        })?;
        let intern = |name: &[u8]| {
            conn.send_request(&x::InternAtom {
                only_if_exists: false,
                name,
            })
        };
        let cookies = [
            intern(b"_NET_WM_NAME"),
            intern(b"UTF8_STRING"),
            intern(b"_NET_WM_PID"),
            intern(b"WM_STATE"),
            intern(b"_IBWARDEN_WATCHER_WAKE"),
        ];
        let mut a = Vec::with_capacity(cookies.len());
        for c in cookies {
            a.push(
                conn.wait_for_reply(c)
                    .map_err(setup_err("InternAtom"))?
                    .atom(),
            );
        }
        let atoms = Atoms {
            net_wm_name: a[0],
            utf8_string: a[1],
            net_wm_pid: a[2],
            wm_state: a[3],
            wake: a[4],
        };

        // An unmapped InputOnly window of our own, only as the target of the wake-up message.
        // It is a child of the root, so it shows up as a (never mapped, hence ignored)
        // top-level in our own CreateNotify stream.
        let wake_window: x::Window = conn.generate_id();
        conn.send_and_check_request(&x::CreateWindow {
            depth: 0,
            wid: wake_window,
            parent: root,
            x: -1,
            y: -1,
            width: 1,
            height: 1,
            border_width: 0,
            class: x::WindowClass::InputOnly,
            visual: x::COPY_FROM_PARENT,
            value_list: &[x::Cw::OverrideRedirect(true)],
        })
        .map_err(|e| WatchError::Setup {
            request: "CreateWindow",
            detail: format!("{e:?}"),
        })?;
        conn.send_and_check_request(&x::ChangeWindowAttributes {
            window: root,
            value_list: &[x::Cw::EventMask(
                x::EventMask::SUBSTRUCTURE_NOTIFY | x::EventMask::PROPERTY_CHANGE,
            )],
        })
        .map_err(|e| WatchError::Setup {
            request: "ChangeWindowAttributes(root)",
            detail: format!("{e:?}"),
        })?;

        let conn = Arc::new(conn);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let mut state = State {
            conn: conn.clone(),
            root,
            atoms,
            windows: HashMap::new(),
            frames: HashMap::new(),
            tx,
            stop: stop.clone(),
            display: target.name.clone(),
            pending: Some(Vec::new()),
        };
        // The initial scan runs here, before the thread, so setup errors surface to the caller
        // and the events are queued before anything else.
        state.scan().map_err(setup_err("QueryTree"))?;
        let wake_atom = state.atoms.wake;
        let thread = std::thread::Builder::new()
            .name("x11-watcher".into())
            .spawn(move || state.run())
            .map_err(WatchError::Thread)?;
        Ok((
            Watcher {
                conn,
                display: target.name.clone(),
                stop,
                wake_window,
                wake_atom,
                thread: Some(thread),
            },
            rx,
        ))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let event = x::ClientMessageEvent::new(
            self.wake_window,
            self.wake_atom,
            x::ClientMessageData::Data32([0; 5]),
        );
        // With an empty mask a ClientMessage goes to the window's creator: our thread.
        self.conn.send_request(&x::SendEvent {
            propagate: false,
            destination: x::SendEventDest::Window(self.wake_window),
            event_mask: x::EventMask::NO_EVENT,
            event: &event,
        });
        let _ = self.conn.flush();
        // Join, but never hang a caller: the thread could be blocked handing an event to a
        // receiver that is alive but no longer read. It exits by itself once unblocked.
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(display = %self.display, "window watcher thread left running");
            }
        }
    }
}

/// What we remember per top-level.
#[derive(Default)]
struct Tracked {
    mapped: bool,
    /// Mapped at least once: its destruction is reported (never-mapped helpers' is noise).
    seen: bool,
    title: String,
}

struct State {
    conn: Arc<xcb::Connection>,
    root: x::Window,
    atoms: Atoms,
    windows: HashMap<u32, Tracked>,
    /// Window-manager frame → the client window inside it (empty without a WM).
    frames: HashMap<u32, u32>,
    tx: mpsc::Sender<WindowEvent>,
    stop: Arc<AtomicBool>,
    display: String,
    /// Events of the initial scan, sent first by the thread.
    pending: Option<Vec<WindowEvent>>,
}

impl State {
    /// Sends an event; false if the receiver is gone (then the thread stops).
    fn emit(&mut self, event: WindowEvent) -> bool {
        tracing::debug!(display = %self.display, event = ?event, "window event");
        // During the initial scan we run on the caller's thread, possibly inside the tokio
        // runtime, where `blocking_send` would panic: queue, and let the thread send.
        if let Some(pending) = self.pending.as_mut() {
            pending.push(event);
            return true;
        }
        self.tx.blocking_send(event).is_ok()
    }

    fn select_property_change(&self, window: x::Window) {
        // Unchecked: the window may already be gone; the error then arrives as an event and
        // is ignored in `run`.
        self.conn.send_request(&x::ChangeWindowAttributes {
            window,
            value_list: &[x::Cw::EventMask(x::EventMask::PROPERTY_CHANGE)],
        });
    }

    /// Tracks every current top-level and reports the viewable ones.
    fn scan(&mut self) -> Result<(), xcb::Error> {
        let tree = self
            .conn
            .wait_for_reply(self.conn.send_request(&x::QueryTree { window: self.root }))?;
        let children: Vec<x::Window> = tree.children().to_vec();
        for w in children {
            self.select_property_change(w);
            let attrs = self
                .conn
                .send_request(&x::GetWindowAttributes { window: w });
            let attrs = match self.conn.wait_for_reply(attrs) {
                Ok(a) => a,
                Err(xcb::Error::Protocol(_)) => continue, // destroyed meanwhile
                Err(e) => return Err(e),
            };
            let viewable = attrs.map_state() == x::MapState::Viewable;
            self.windows.insert(w.resource_id(), Tracked::default());
            if viewable && !attrs.override_redirect() {
                self.on_map(w)?;
            }
        }
        Ok(())
    }

    fn run(mut self) {
        for event in self.pending.take().unwrap_or_default() {
            if !self.emit(event) {
                return;
            }
        }
        tracing::debug!(display = %self.display, tracked = self.windows.len(), "window watcher running");
        let reason = loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            // Event selections on new windows are sent unchecked and without a reply, so
            // they may still sit in libxcb's output buffer; wait_for_event does not flush.
            if let Err(e) = self.conn.flush() {
                break format!("{e:?}");
            }
            let event = match self.conn.wait_for_event() {
                Ok(ev) => ev,
                // A request on a window that vanished: expected, harmless.
                Err(xcb::Error::Protocol(e)) => {
                    tracing::trace!(error = ?e, "x11 protocol error ignored");
                    continue;
                }
                Err(xcb::Error::Connection(e)) => break format!("{e:?}"),
            };
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match self.handle(event) {
                Ok(true) => {}
                Ok(false) => return, // receiver dropped
                Err(xcb::Error::Connection(e)) => break format!("{e:?}"),
                Err(xcb::Error::Protocol(e)) => {
                    tracing::trace!(error = ?e, "x11 protocol error ignored");
                }
            }
        };
        tracing::debug!(display = %self.display, reason = %reason, "x11 connection lost");
        self.emit(WindowEvent::ConnectionLost { reason });
    }

    /// Handles one event; `Ok(false)` when the receiver is gone.
    fn handle(&mut self, event: xcb::Event) -> Result<bool, xcb::Error> {
        tracing::trace!(event = ?event, "x11 event");
        let xcb::Event::X(event) = event else {
            return Ok(true);
        };
        match event {
            x::Event::CreateNotify(ev) if ev.parent() == self.root => {
                self.select_property_change(ev.window());
                self.windows
                    .insert(ev.window().resource_id(), Tracked::default());
                Ok(true)
            }
            x::Event::MapNotify(ev) if ev.event() == self.root => {
                if ev.override_redirect() {
                    return Ok(true);
                }
                self.on_map(ev.window())
            }
            x::Event::UnmapNotify(ev)
                if ev.event() == self.root || self.is_framed_client(ev.event()) =>
            {
                // A frame's unmap stands for its client's.
                let w = ev.window().resource_id();
                let id = self.frames.get(&w).copied().unwrap_or(w);
                // ICCCM withdrawal also sends a synthetic UnmapNotify to the root; report once.
                match self.windows.get_mut(&id) {
                    Some(t) if t.mapped => {
                        t.mapped = false;
                        Ok(self.emit(WindowEvent::Unmapped { id }))
                    }
                    _ => Ok(true),
                }
            }
            x::Event::DestroyNotify(ev)
                if ev.event() == self.root || self.is_framed_client(ev.event()) =>
            {
                let id = ev.window().resource_id();
                self.frames.remove(&id);
                self.frames.retain(|_, client| *client != id);
                // The server unmaps a mapped window before destroying it, so `Unmapped`
                // normally came already; it is sent here only if that was missed.
                match self.windows.remove(&id) {
                    Some(t) if t.mapped => Ok(self.emit(WindowEvent::Unmapped { id })
                        && self.emit(WindowEvent::Destroyed { id })),
                    Some(t) if t.seen => Ok(self.emit(WindowEvent::Destroyed { id })),
                    _ => Ok(true),
                }
            }
            x::Event::ReparentNotify(ev) if ev.event() == self.root => {
                // A window manager took a top-level into its frame (or gave it back).
                let id = ev.window().resource_id();
                if ev.parent() == self.root {
                    self.select_property_change(ev.window());
                    self.windows.entry(id).or_default();
                } else if let Some(t) = self.windows.remove(&id) {
                    if t.mapped {
                        return Ok(self.emit(WindowEvent::Unmapped { id }));
                    }
                }
                Ok(true)
            }
            x::Event::PropertyNotify(ev)
                if ev.atom() == self.atoms.net_wm_name || ev.atom() == x::ATOM_WM_NAME =>
            {
                let id = ev.window().resource_id();
                if !self.windows.contains_key(&id) {
                    return Ok(true);
                }
                let title = self.title(ev.window())?;
                match self.windows.get_mut(&id) {
                    Some(t) if t.title != title => {
                        t.title = title.clone();
                        if t.mapped {
                            return Ok(self.emit(WindowEvent::TitleChanged { id, title }));
                        }
                        Ok(true)
                    }
                    _ => Ok(true),
                }
            }
            _ => Ok(true),
        }
    }

    fn on_map(&mut self, window: x::Window) -> Result<bool, xcb::Error> {
        let info = match self.read_info(window) {
            Ok(info) => info,
            // Gone between MapNotify and our requests: it will be reported as destroyed.
            Err(xcb::Error::Protocol(_)) => return Ok(true),
            Err(e) => return Err(e),
        };
        // No WM: the mapped top-level is the client itself. With a reparenting WM it is an
        // untitled, pid-less frame; the client is the descendant carrying WM_STATE (the
        // XmuClientWindow rule, measured).
        let info = if info.pid.is_none() && info.title.is_empty() {
            match self.client_in_frame(window) {
                Ok(Some(client)) => match self.read_info(client) {
                    Ok(info) => {
                        self.frames
                            .insert(window.resource_id(), client.resource_id());
                        // StructureNotify: the client's own DestroyNotify, which the root no
                        // longer sees while it sits in a frame.
                        self.conn.send_request(&x::ChangeWindowAttributes {
                            window: client,
                            value_list: &[x::Cw::EventMask(
                                x::EventMask::PROPERTY_CHANGE | x::EventMask::STRUCTURE_NOTIFY,
                            )],
                        });
                        info
                    }
                    Err(xcb::Error::Protocol(_)) => return Ok(true),
                    Err(e) => return Err(e),
                },
                Ok(None) => info,
                Err(xcb::Error::Protocol(_)) => return Ok(true),
                Err(e) => return Err(e),
            }
        } else {
            info
        };
        let t = self.windows.entry(info.id).or_default();
        if t.mapped {
            return Ok(true);
        }
        t.mapped = true;
        t.seen = true;
        t.title = info.title.clone();
        Ok(self.emit(WindowEvent::Mapped(info)))
    }

    /// Whether `window` is a client we found inside a WM frame (its own structure events
    /// are selected because the root no longer sees them).
    fn is_framed_client(&self, window: x::Window) -> bool {
        let id = window.resource_id();
        self.frames.values().any(|c| *c == id)
    }

    /// The client window inside a WM frame: the first descendant (breadth-first, at most 3
    /// levels) with a `WM_STATE` or `_NET_WM_PID` property. `WM_STATE` is the ICCCM marker,
    /// but a WM may set it after mapping the frame; Java sets `_NET_WM_PID` before it even
    /// asks for the map, so either identifies the client at the frame's MapNotify.
    fn client_in_frame(&self, frame: x::Window) -> Result<Option<x::Window>, xcb::Error> {
        let has = |window, property| {
            self.conn.send_request(&x::GetProperty {
                delete: false,
                window,
                property,
                r#type: x::ATOM_ANY,
                long_offset: 0,
                long_length: 0,
            })
        };
        let mut level = vec![frame];
        for _ in 0..3 {
            let mut next = Vec::new();
            for w in level {
                let tree = self
                    .conn
                    .wait_for_reply(self.conn.send_request(&x::QueryTree { window: w }))?;
                for &child in tree.children() {
                    let state = has(child, self.atoms.wm_state);
                    let pid = has(child, self.atoms.net_wm_pid);
                    let state = self.conn.wait_for_reply(state)?;
                    let pid = self.conn.wait_for_reply(pid)?;
                    if state.r#type() != x::ATOM_NONE || pid.r#type() != x::ATOM_NONE {
                        return Ok(Some(child));
                    }
                    next.push(child);
                }
            }
            level = next;
        }
        Ok(None)
    }

    /// Reads title, pid, transient-for and geometry, pipelining the requests.
    fn read_info(&self, window: x::Window) -> Result<WindowInfo, xcb::Error> {
        let prop = |property, r#type, long_length| {
            self.conn.send_request(&x::GetProperty {
                delete: false,
                window,
                property,
                r#type,
                long_offset: 0,
                long_length,
            })
        };
        let net_name = prop(self.atoms.net_wm_name, self.atoms.utf8_string, 1024);
        let wm_name = prop(x::ATOM_WM_NAME, x::ATOM_ANY, 1024);
        let pid = prop(self.atoms.net_wm_pid, x::ATOM_CARDINAL, 1);
        let transient = prop(x::ATOM_WM_TRANSIENT_FOR, x::ATOM_WINDOW, 1);
        let geom = self.conn.send_request(&x::GetGeometry {
            drawable: x::Drawable::Window(window),
        });
        let origin = self.conn.send_request(&x::TranslateCoordinates {
            src_window: window,
            dst_window: self.root,
            src_x: 0,
            src_y: 0,
        });

        let net_name = self.conn.wait_for_reply(net_name)?;
        let wm_name = self.conn.wait_for_reply(wm_name)?;
        let pid = self.conn.wait_for_reply(pid)?;
        let transient = self.conn.wait_for_reply(transient)?;
        let geom = self.conn.wait_for_reply(geom)?;
        // Root coordinates: the same as the geometry without a WM, inside the frame with one.
        let origin = self.conn.wait_for_reply(origin)?;
        Ok(WindowInfo {
            ancestry: Vec::new(),
            id: window.resource_id(),
            pid: first_u32(&pid),
            title: title_from(&net_name, &wm_name),
            transient_for: first_u32(&transient).filter(|w| *w != 0),
            x: origin.dst_x(),
            y: origin.dst_y(),
            width: geom.width(),
            height: geom.height(),
        })
    }

    fn title(&self, window: x::Window) -> Result<String, xcb::Error> {
        let prop = |property, r#type| {
            self.conn.send_request(&x::GetProperty {
                delete: false,
                window,
                property,
                r#type,
                long_offset: 0,
                long_length: 1024,
            })
        };
        let net = prop(self.atoms.net_wm_name, self.atoms.utf8_string);
        let wm = prop(x::ATOM_WM_NAME, x::ATOM_ANY);
        let net = self.conn.wait_for_reply(net)?;
        let wm = self.conn.wait_for_reply(wm)?;
        Ok(title_from(&net, &wm))
    }
}

/// The first 32-bit item of a format-32 property, if any. (`value()` panics on a format
/// mismatch, so the format is checked first.)
fn first_u32(reply: &x::GetPropertyReply) -> Option<u32> {
    if reply.format() != 32 {
        return None;
    }
    reply.value::<u32>().first().copied()
}

/// `_NET_WM_NAME` (UTF-8) if set, else `WM_NAME` (STRING is Latin-1), else empty.
fn title_from(net_wm_name: &x::GetPropertyReply, wm_name: &x::GetPropertyReply) -> String {
    if net_wm_name.format() == 8 && !net_wm_name.value::<u8>().is_empty() {
        return String::from_utf8_lossy(net_wm_name.value::<u8>()).into_owned();
    }
    if wm_name.format() == 8 {
        // Latin-1 → Unicode is the identity on code points. COMPOUND_TEXT titles (rare) come
        // out approximated; Java sets _NET_WM_NAME anyway.
        return wm_name
            .value::<u8>()
            .iter()
            .map(|b| char::from(*b))
            .collect();
    }
    String::new()
}
