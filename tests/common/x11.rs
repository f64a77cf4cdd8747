//! A tiny X client for tests: find the simulator's top-level windows by title and
//! `_NET_WM_PID`, give one the keyboard with ICCCM `WM_TAKE_FOCUS` (the only way Java accepts
//! without a window manager, measured), and type with XTest.
//! ASCII only, from the existing keymap (Shift for column 1): no keymap changes.

use std::time::{Duration, Instant};

use xcb::{x, Xid};

use super::Xvfb;

/// A top-level window as seen over X11.
#[derive(Clone, Debug)]
pub struct Win {
    pub window: x::Window,
    pub id: u32,
    pub title: String,
    pub pid: Option<u32>,
    pub transient_for: Option<u32>,
    pub viewable: bool,
}

pub struct X {
    conn: xcb::Connection,
    root: x::Window,
    net_wm_name: x::Atom,
    net_wm_pid: x::Atom,
    utf8: x::Atom,
    wm_protocols: x::Atom,
    wm_take_focus: x::Atom,
    min_keycode: u8,
    per_keycode: usize,
    keysyms: Vec<u32>,
    shift: u8,
    control: u8,
}

/// Pause between XTest key events (measured ≥5 ms per key).
const KEY_GAP: Duration = Duration::from_millis(8);

impl X {
    /// Connects to the test's Xvfb with its cookie (no environment variables involved).
    pub fn connect(xvfb: &Xvfb) -> X {
        let (conn, screen) = xcb::Connection::connect_to_display_with_auth_info_and_extensions(
            Some(&xvfb.display),
            xcb::AuthInfo {
                name: "MIT-MAGIC-COOKIE-1",
                data: &xvfb.cookie,
            },
            &[xcb::Extension::Test],
            &[],
        )
        .unwrap_or_else(|e| panic!("connect to {}: {e:?}", xvfb.display));
        let setup = conn.get_setup();
        let root = setup.roots().nth(screen as usize).expect("screen").root();
        let min = setup.min_keycode();
        let max = setup.max_keycode();
        let atom = |name: &[u8]| -> x::Atom {
            let c = conn.send_request(&x::InternAtom {
                only_if_exists: false,
                name,
            });
            conn.wait_for_reply(c).expect("InternAtom").atom()
        };
        let net_wm_name = atom(b"_NET_WM_NAME");
        let net_wm_pid = atom(b"_NET_WM_PID");
        let utf8 = atom(b"UTF8_STRING");
        let wm_protocols = atom(b"WM_PROTOCOLS");
        let wm_take_focus = atom(b"WM_TAKE_FOCUS");
        let c = conn.send_request(&x::GetKeyboardMapping {
            first_keycode: min,
            count: max - min + 1,
        });
        let km = conn.wait_for_reply(c).expect("GetKeyboardMapping");
        let per_keycode = km.keysyms_per_keycode() as usize;
        let keysyms: Vec<u32> = km.keysyms().to_vec();
        let mut me = X {
            conn,
            root,
            net_wm_name,
            net_wm_pid,
            utf8,
            wm_protocols,
            wm_take_focus,
            min_keycode: min,
            per_keycode,
            keysyms,
            shift: 0,
            control: 0,
        };
        me.shift = me.keycode_for(0xffe1).expect("Shift_L in keymap").0;
        me.control = me.keycode_for(0xffe3).expect("Control_L in keymap").0;
        me
    }

    fn prop(&self, w: x::Window, prop: x::Atom, ty: x::Atom) -> Option<x::GetPropertyReply> {
        let c = self.conn.send_request(&x::GetProperty {
            delete: false,
            window: w,
            property: prop,
            r#type: ty,
            long_offset: 0,
            long_length: 1024,
        });
        self.conn.wait_for_reply(c).ok()
    }

    fn title_of(&self, w: x::Window) -> String {
        if let Some(r) = self.prop(w, self.net_wm_name, self.utf8) {
            if !r.value::<u8>().is_empty() {
                return String::from_utf8_lossy(r.value::<u8>()).into_owned();
            }
        }
        self.prop(w, x::ATOM_WM_NAME, x::ATOM_STRING)
            .map(|r| String::from_utf8_lossy(r.value::<u8>()).into_owned())
            .unwrap_or_default()
    }

    fn info(&self, w: x::Window) -> Win {
        let pid = self
            .prop(w, self.net_wm_pid, x::ATOM_CARDINAL)
            .and_then(|r| r.value::<u32>().first().copied());
        let transient_for = self
            .prop(w, x::ATOM_WM_TRANSIENT_FOR, x::ATOM_WINDOW)
            .and_then(|r| r.value::<u32>().first().copied());
        let c = self
            .conn
            .send_request(&x::GetWindowAttributes { window: w });
        let viewable = self
            .conn
            .wait_for_reply(c)
            .map(|a| a.map_state() == x::MapState::Viewable)
            .unwrap_or(false);
        Win {
            window: w,
            id: w.resource_id(),
            title: self.title_of(w),
            pid,
            transient_for,
            viewable,
        }
    }

    /// All children of the root window with their properties.
    pub fn top_levels(&self) -> Vec<Win> {
        let c = self.conn.send_request(&x::QueryTree { window: self.root });
        let tree = self.conn.wait_for_reply(c).expect("QueryTree");
        tree.children().iter().map(|w| self.info(*w)).collect()
    }

    /// Viewable top-levels of process `pid`.
    pub fn windows_of(&self, pid: u32) -> Vec<Win> {
        self.top_levels()
            .into_iter()
            .filter(|w| w.viewable && w.pid == Some(pid))
            .collect()
    }

    /// Waits (polling every 20 ms) for a viewable top-level of `pid` titled `title`.
    pub fn wait_window(&self, pid: u32, title: &str, timeout: Duration) -> Win {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(w) = self.windows_of(pid).into_iter().find(|w| w.title == title) {
                return w;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .top_levels()
                    .iter()
                    .filter(|w| w.viewable)
                    .map(|w| format!("{:?} pid={:?}", w.title, w.pid))
                    .collect();
                panic!("no window {title:?} of pid {pid} within {timeout:?}; viewable: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until no viewable top-level of `pid` is titled `title`.
    pub fn wait_window_gone(&self, pid: u32, title: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.windows_of(pid).iter().any(|w| w.title == title) {
            assert!(
                Instant::now() < deadline,
                "window {title:?} still shown after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn focus_is_in(&self, target: x::Window) -> bool {
        let c = self.conn.send_request(&x::GetInputFocus {});
        let mut w = match self.conn.wait_for_reply(c) {
            Ok(r) => r.focus(),
            Err(_) => return false,
        };
        for _ in 0..8 {
            if w == target {
                return true;
            }
            if w.resource_id() <= 1 || w == self.root {
                return false;
            }
            let c = self.conn.send_request(&x::QueryTree { window: w });
            match self.conn.wait_for_reply(c) {
                Ok(t) => w = t.parent(),
                Err(_) => return false,
            }
        }
        false
    }

    /// Gives `win` the keyboard: sends `WM_TAKE_FOCUS` and waits until the X focus is inside
    /// it (Java moves it to the window's FocusProxy child). Java ignores WM_TAKE_FOCUS for a
    /// window it already believes active (measured: two windows mapped at once ping-pong
    /// activation, and the loser never takes the focus again); after 300 ms it falls back
    /// to `XSetInputFocus` on the FocusProxy child, which was measured to work.
    pub fn take_focus(&self, win: &Win) {
        if self.focus_is_in(win.window) {
            return;
        }
        let ev = x::ClientMessageEvent::new(
            win.window,
            self.wm_protocols,
            x::ClientMessageData::Data32([
                self.wm_take_focus.resource_id(),
                x::CURRENT_TIME,
                0,
                0,
                0,
            ]),
        );
        self.conn
            .send_and_check_request(&x::SendEvent {
                propagate: false,
                destination: x::SendEventDest::Window(win.window),
                event_mask: x::EventMask::NO_EVENT,
                event: &ev,
            })
            .expect("SendEvent WM_TAKE_FOCUS");
        let start = Instant::now();
        let mut fell_back = false;
        while !self.focus_is_in(win.window) {
            let waited = start.elapsed();
            if !fell_back && waited > Duration::from_millis(300) {
                fell_back = true;
                if let Some(proxy) = self.focus_proxy(win.window) {
                    self.conn
                        .send_and_check_request(&x::SetInputFocus {
                            revert_to: x::InputFocus::Parent,
                            focus: proxy,
                            time: x::CURRENT_TIME,
                        })
                        .expect("SetInputFocus on FocusProxy");
                }
            }
            assert!(
                waited < Duration::from_secs(3),
                "window {:?} did not take the focus (WM_TAKE_FOCUS, then FocusProxy)",
                win.title
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Java's `FocusProxy` child of a top-level.
    fn focus_proxy(&self, w: x::Window) -> Option<x::Window> {
        let c = self.conn.send_request(&x::QueryTree { window: w });
        let tree = self.conn.wait_for_reply(c).ok()?;
        tree.children()
            .iter()
            .copied()
            .find(|c| self.title_of(*c) == "FocusProxy")
    }

    /// (keycode, needs shift) for a keysym, from keymap columns 0 and 1.
    fn keycode_for(&self, keysym: u32) -> Option<(u8, bool)> {
        let per = self.per_keycode.max(1);
        for (i, chunk) in self.keysyms.chunks(per).enumerate() {
            for (col, s) in chunk.iter().take(2).enumerate() {
                if *s == keysym {
                    return Some((self.min_keycode + i as u8, col == 1));
                }
            }
        }
        None
    }

    fn fake(&self, press: bool, keycode: u8) {
        self.conn
            .send_and_check_request(&xcb::xtest::FakeInput {
                r#type: if press { 2 } else { 3 },
                detail: keycode,
                time: x::CURRENT_TIME,
                root: self.root,
                root_x: 0,
                root_y: 0,
                deviceid: 0,
            })
            .expect("XTest FakeInput");
    }

    fn tap(&self, keysym: u32, shift: bool) {
        self.tap_mods(keysym, shift, false);
    }

    fn tap_mods(&self, keysym: u32, shift: bool, control: bool) {
        let (kc, col1) = self
            .keycode_for(keysym)
            .unwrap_or_else(|| panic!("keysym {keysym:#x} not in the keymap (ASCII only)"));
        let shift = shift || col1;
        if control {
            self.fake(true, self.control);
        }
        if shift {
            self.fake(true, self.shift);
        }
        self.fake(true, kc);
        self.fake(false, kc);
        if shift {
            self.fake(false, self.shift);
        }
        if control {
            self.fake(false, self.control);
        }
        self.conn.flush().expect("flush");
        std::thread::sleep(KEY_GAP);
    }

    /// Presses one key: a name (`Tab`, `Return`, `space`, `BackSpace`, `Escape`, `Up`,
    /// `Down`) or a single ASCII character, optionally prefixed `ctrl+` and/or `shift+`
    /// (in that order, e.g. `ctrl+a`, `shift+Tab`).
    pub fn key(&self, spec: &str) {
        let (control, spec) = match spec.strip_prefix("ctrl+") {
            Some(n) => (true, n),
            None => (false, spec),
        };
        let (shift, name) = match spec.strip_prefix("shift+") {
            Some(n) => (true, n),
            None => (false, spec),
        };
        let sym = match name {
            "Tab" => 0xff09,
            "Return" | "Enter" => 0xff0d,
            "space" => 0x20,
            "BackSpace" => 0xff08,
            "Escape" => 0xff1b,
            "Up" => 0xff52,
            "Down" => 0xff54,
            s if s.chars().count() == 1 => s.chars().next().expect("char") as u32,
            other => panic!("unknown key name {other:?}"),
        };
        self.tap_mods(sym, shift, control);
    }

    /// Types ASCII text with XTest (printable characters only).
    pub fn type_text(&self, text: &str) {
        for c in text.chars() {
            assert!(
                (' '..='~').contains(&c),
                "type_text supports printable ASCII only, got {c:?}"
            );
            self.tap(c as u32, false);
        }
    }
}
