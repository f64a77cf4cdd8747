//! Keyboard input into the gateway's windows: focus with ICCCM `WM_TAKE_FOCUS`, verify with
//! `GetInputFocus`, type with XTest, and close windows with `WM_DELETE_WINDOW`.
//!
//! The API is blocking (X round trips and the deliberate inter-key pauses): the driver calls
//! it from `tokio::task::spawn_blocking` (a [`Typist`] is `Send + Sync`; share it in an
//! `Arc`). Calls are serialised internally so two callers cannot interleave keys.
//!
//! Safety rule: before every step, and every [`CHECK_EVERY`] characters inside a text, the
//! focus must still be inside the target window (the top-level or a descendant: Java moves it
//! to its `FocusProxy` child). If not, typing stops with [`InputError::FocusLost`] and no
//! further key is sent, so a secret never goes into a window that stole the focus.
//!
//! # Why XTest and not enigo on the typing path
//!
//! The design card names `enigo`. It is kept as an opt-in `InputBackend::Enigo`, compiled
//! only with the cargo feature `enigo` (off by default), and the default is our own XTest code, because of what was measured:
//! - enigo's keysym lookup searches keymap column 0 only (`enigo/src/linux/keymap.rs`), so
//!   every uppercase letter and shifted symbol (`@`, `!`, `"`, ...) is bound to a spare keycode
//!   with `ChangeKeyboardMapping` per character and unbound again. Java reads the new
//!   mapping asynchronously (MappingNotify), which is exactly the race that lost and doubled
//!   non-ASCII characters with xdotool at ≤4 ms per key (§3.2).
//! - Each keymap change costs a window manager 40–90 ms of CPU; under openbox, enigo typing
//!   scored 1/5 at 12 ms and 0/5 at 0 ms, with text landing in the wrong field (§3.4).
//! - enigo has no hook to wait for the client between remap and keypress, and no focus
//!   check between characters.
//!
//! Re-measured here (`tests/x11.rs`, 2026-11-24, 2 cores, Xvfb 21.1.7, OpenJDK 17, Swing
//! fixture; each run = username, Tab, the 36-character password
//! `p@ss w0rd!#$%^&*()_+{}|:"<>?~äöüßé€ж`, Enter; 8 ms key delay for both):
//!
//! | backend | no WM | no WM, 2 busy-loop CPU hogs | openbox |
//! |---|---|---|---|
//! | xtest (ours) | 20/20 in every suite run (≈0.93 s/run) | 20/20 (≈1.01 s/run) | 20/20, 20/20 (≈0.95 s/run) |
//! | enigo | 20/20 alone; 18/20, 16/20 beside another test (≈0.42 s/run) | 19/20 | 14/20, 17/20 (≈0.43 s/run) |
//!
//! enigo's failures were dropped shifted symbols (`_`, `>`, `$`, `:`, `{`, `#$`), dropped
//! non-ASCII letters, and once `!#$%^` arriving as `!%%^` (a reused spare keycode read
//! with a stale mapping) — exactly the remap race. For the ASCII text
//! `Alice_Smith-01!@#`, an idle client saw 0 single-keycode MappingNotify events from our
//! backend and 6 from enigo (`xtest_types_ascii_without_keymap_changes` and, with the feature,
//! `enigo_remaps_the_keyboard_per_shifted_character`).
//! So enigo stays opt-in and off every default path: it measurably loses characters under
//! load and under a WM, and for named keys alone it would add nothing over the two XTest
//! events we send anyway.
//!
//! The enigo backend needs the display to admit our uid without a cookie (enigo connects
//! through x11rb, which reads the cookie from `$XAUTHORITY`, and we must not mutate the
//! environment); [`Typist::connect`] grants `+si:localuser:<our user>` for it, which admits
//! nothing that could not already read the private cookie file.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use xcb::x;
use xcb::Xid;

use super::keymap::{self, char_to_keysym, keysym, KeyPos, Keymap};
use super::{connect, root_of, window_from_id, DisplayTarget};
use crate::core::types::{KeyStep, NamedKey, SecretRef};
use crate::secret::Secret;

/// XTest `FakeInput` event types (core protocol event codes).
const XTEST_KEY_PRESS: u8 = 2;
const XTEST_KEY_RELEASE: u8 = 3;
const XTEST_BUTTON_PRESS: u8 = 4;
const XTEST_BUTTON_RELEASE: u8 = 5;
const XTEST_MOTION: u8 = 6;

/// Characters typed between two focus checks inside one text.
pub(crate) const CHECK_EVERY: usize = 8;

/// Which mechanism sends the key events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputBackend {
    /// Our own XTest code: existing keymap with Shift, spare keycodes premapped once.
    #[default]
    Xtest,
    /// The `enigo` crate (XTest through x11rb). Only with the cargo feature `enigo`, off by
    /// default, and never on the product's typing path: measured here, it dropped shifted
    /// symbols and non-ASCII letters when run next to other X clients (18/20 and 16/20 exact
    /// beside another test, 14/20 under openbox, against 20/20 for XTest), because it
    /// remaps the keyboard (`ChangeKeyboardMapping`) for every shifted character and the
    /// client reads the new mapping late. Details and numbers in the module doc.
    #[cfg(feature = "enigo")]
    Enigo,
}

/// Timing and behaviour of a [`Typist`].
#[derive(Clone, Debug)]
pub struct TypingOptions {
    /// Pause after each character or key (measured: ≥5 ms avoids Swing races, §3.3).
    pub key_delay: Duration,
    /// Pause after Tab/Shift+Tab/select-all and before Enter, and after gaining focus.
    pub settle_delay: Duration,
    /// Pause after binding spare keycodes, so Java has re-read the keymap (§3.2: 150 ms).
    pub remap_settle: Duration,
    /// How long a window may take to accept the focus.
    pub focus_timeout: Duration,
    /// Which mechanism types.
    pub backend: InputBackend,
}

impl Default for TypingOptions {
    fn default() -> Self {
        TypingOptions {
            key_delay: Duration::from_millis(8),
            settle_delay: Duration::from_millis(100),
            remap_settle: Duration::from_millis(150),
            focus_timeout: Duration::from_secs(1),
            backend: InputBackend::Xtest,
        }
    }
}

mod error;
pub use error::InputError;
use error::{conn_err, proto_err, request_err};

/// The opt-in enigo typist. Without the `enigo` feature there is none: an empty enum, so a
/// [`Typist`] can only hold `None` and the XTest path is the only one compiled.
#[cfg(feature = "enigo")]
type EnigoTypist = enigo::Enigo;
#[cfg(not(feature = "enigo"))]
enum EnigoTypist {}

struct Atoms {
    wm_protocols: x::Atom,
    wm_take_focus: x::Atom,
    wm_delete_window: x::Atom,
}

/// Types into windows of one display. One X connection with XTest, separate from the
/// watcher's.
pub struct Typist {
    conn: xcb::Connection,
    root: x::Window,
    atoms: Atoms,
    opts: TypingOptions,
    /// Serialises focus/typing so keys from two callers never interleave. Never held across
    /// an `.await` (this API is blocking).
    busy: Mutex<Option<EnigoTypist>>,
}

impl std::fmt::Debug for Typist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typist")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Typist {
    /// Connects to `target` (requires XTEST). Blocks for the connection and three round
    /// trips. With `InputBackend::Enigo` (feature `enigo`) it also admits our uid to the
    /// display (module doc).
    pub fn connect(target: &DisplayTarget, opts: TypingOptions) -> Result<Typist, InputError> {
        let (conn, screen) = connect(target, &[xcb::Extension::Test])?;
        let root = root_of(&conn, screen).ok_or(InputError::Request {
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
            intern(b"WM_PROTOCOLS"),
            intern(b"WM_TAKE_FOCUS"),
            intern(b"WM_DELETE_WINDOW"),
        ];
        let mut atoms = Vec::with_capacity(3);
        for c in cookies {
            atoms.push(
                conn.wait_for_reply(c)
                    .map_err(request_err("InternAtom"))?
                    .atom(),
            );
        }
        let atoms = Atoms {
            wm_protocols: atoms[0],
            wm_take_focus: atoms[1],
            wm_delete_window: atoms[2],
        };
        let enigo = match opts.backend {
            InputBackend::Xtest => None,
            #[cfg(feature = "enigo")]
            InputBackend::Enigo => {
                enigo_backend::grant_local_user(&conn)?;
                let settings = enigo::Settings {
                    x11_display: Some(target.name.clone()),
                    linux_delay: u32::try_from(opts.key_delay.as_millis()).unwrap_or(12),
                    ..Default::default()
                };
                Some(enigo::Enigo::new(&settings).map_err(|e| InputError::Enigo(e.to_string()))?)
            }
        };
        Ok(Typist {
            conn,
            root,
            atoms,
            opts,
            busy: Mutex::new(enigo),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &TypingOptions {
        &self.opts
    }

    /// Where the keyboard focus is (0 = none, 1 = pointer root).
    pub fn focused_window(&self) -> Result<u32, InputError> {
        let reply = self
            .conn
            .wait_for_reply(self.conn.send_request(&x::GetInputFocus {}))
            .map_err(request_err("GetInputFocus"))?;
        Ok(reply.focus().resource_id())
    }

    /// Whether the focus is `window` or one of its descendants; returns the focus too.
    fn focus_inside(&self, window: u32) -> Result<(bool, u32), InputError> {
        let focus = self.focused_window()?;
        if focus == window {
            return Ok((true, focus));
        }
        // 0 = None, 1 = PointerRoot: keys go nowhere useful.
        if focus <= 1 {
            return Ok((false, focus));
        }
        let mut current = focus;
        // Java's focus proxy is a direct child; a WM frame adds a level or two.
        for _ in 0..8 {
            let reply = self
                .conn
                .wait_for_reply(self.conn.send_request(&x::QueryTree {
                    window: window_from_id(current),
                }));
            let parent = match reply {
                Ok(r) => r.parent().resource_id(),
                // The focus window vanished between the two requests: not inside.
                Err(xcb::Error::Protocol(_)) => return Ok((false, focus)),
                Err(e) => return Err(request_err("QueryTree")(e)),
            };
            if parent == window {
                return Ok((true, focus));
            }
            if parent == 0 || parent == self.root.resource_id() {
                break;
            }
            current = parent;
        }
        Ok((false, focus))
    }

    /// Gives `window` (a top-level) the keyboard focus with ICCCM `WM_TAKE_FOCUS` and waits
    /// until `GetInputFocus` confirms it (measured: `SetInputFocus` on a Java
    /// top-level does not work, `WM_TAKE_FOCUS` does). When the focus had to move, waits
    /// `settle_delay` more so Java has processed the activation before keys arrive.
    /// Raises `window` above its siblings (a dialog that took the focus may cover the form
    /// that is about to be captured). Without a window manager the server does it; with one
    /// the request is a hint it usually follows.
    pub fn raise(&self, window: u32) -> Result<(), InputError> {
        self.conn
            .send_and_check_request(&x::ConfigureWindow {
                window: window_from_id(window),
                value_list: &[x::ConfigWindow::StackMode(x::StackMode::Above)],
            })
            .map_err(proto_err("ConfigureWindow(raise)"))
    }

    pub fn focus(&self, window: u32) -> Result<(), InputError> {
        let _busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        self.focus_locked(window)
    }

    fn focus_locked(&self, window: u32) -> Result<(), InputError> {
        let (inside, _) = self.focus_inside(window)?;
        if inside {
            return Ok(());
        }
        let start = Instant::now();
        if self.supports_take_focus(window)? {
            let event = x::ClientMessageEvent::new(
                window_from_id(window),
                self.atoms.wm_protocols,
                x::ClientMessageData::Data32([self.atoms.wm_take_focus.resource_id(), 0, 0, 0, 0]),
            );
            self.conn
                .send_and_check_request(&x::SendEvent {
                    propagate: false,
                    destination: x::SendEventDest::Window(window_from_id(window)),
                    event_mask: x::EventMask::NO_EVENT,
                    event: &event,
                })
                .map_err(proto_err("SendEvent(WM_TAKE_FOCUS)"))?;
        } else {
            // Not a Java window (Java always lists WM_TAKE_FOCUS): plain SetInputFocus works
            // for ordinary clients.
            self.conn
                .send_and_check_request(&x::SetInputFocus {
                    revert_to: x::InputFocus::Parent,
                    focus: window_from_id(window),
                    time: x::CURRENT_TIME,
                })
                .map_err(proto_err("SetInputFocus"))?;
        }
        // Java answers asynchronously with SetInputFocus on its proxy; a short bounded
        // poll of GetInputFocus is the simplest exact check (no event selection needed).
        let mut proxy_tried = false;
        loop {
            let (inside, focus) = self.focus_inside(window)?;
            if inside {
                tracing::debug!(
                    window,
                    elapsed_ms = start.elapsed().as_millis() as u64,
                    "focus taken"
                );
                std::thread::sleep(self.opts.settle_delay);
                return Ok(());
            }
            // Java sometimes ignores WM_TAKE_FOCUS when two of its windows map at once
            // (activation bounces between them). Setting the focus on the window's
            // `FocusProxy` child works then (measured); it relies on an
            // AWT implementation detail, so it is only the fallback.
            if !proxy_tried && start.elapsed() >= Duration::from_millis(300) {
                proxy_tried = true;
                if let Some(proxy) = self.focus_proxy_of(window) {
                    tracing::debug!(
                        window,
                        proxy,
                        "WM_TAKE_FOCUS ignored; focusing the FocusProxy"
                    );
                    let _ = self.conn.send_and_check_request(&x::SetInputFocus {
                        revert_to: x::InputFocus::Parent,
                        focus: window_from_id(proxy),
                        time: x::CURRENT_TIME,
                    });
                }
            }
            if start.elapsed() >= self.opts.focus_timeout {
                return Err(InputError::FocusNotTaken {
                    window,
                    focus,
                    waited: start.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The direct child of `window` named `FocusProxy` (AWT's focus proxy), if any.
    fn focus_proxy_of(&self, window: u32) -> Option<u32> {
        let tree = self
            .conn
            .wait_for_reply(self.conn.send_request(&x::QueryTree {
                window: window_from_id(window),
            }))
            .ok()?;
        tree.children().iter().find_map(|child| {
            let reply = self
                .conn
                .wait_for_reply(self.conn.send_request(&x::GetProperty {
                    delete: false,
                    window: *child,
                    property: x::ATOM_WM_NAME,
                    r#type: x::ATOM_ANY,
                    long_offset: 0,
                    long_length: 16,
                }))
                .ok()?;
            (reply.format() == 8 && reply.value::<u8>() == b"FocusProxy")
                .then(|| child.resource_id())
        })
    }

    /// Whether `window`'s `WM_PROTOCOLS` lists `WM_TAKE_FOCUS`.
    fn supports_take_focus(&self, window: u32) -> Result<bool, InputError> {
        let reply = self
            .conn
            .wait_for_reply(self.conn.send_request(&x::GetProperty {
                delete: false,
                window: window_from_id(window),
                property: self.atoms.wm_protocols,
                r#type: x::ATOM_ATOM,
                long_offset: 0,
                long_length: 32,
            }))
            .map_err(request_err("GetProperty(WM_PROTOCOLS)"))?;
        // `value()` panics on a format mismatch; check first.
        Ok(reply.format() == 32 && reply.value::<x::Atom>().contains(&self.atoms.wm_take_focus))
    }

    /// Types `steps` into `window`, which must already have the focus (see [`Typist::focus`]).
    ///
    /// Secrets are resolved through `resolve` when this call starts, held zeroising, and
    /// never logged (only step kinds and lengths are). Characters missing from the keymap
    /// are bound to spare keycodes once before the first key and unbound afterwards.
    pub fn type_steps(
        &self,
        window: u32,
        steps: &[KeyStep],
        resolve: &dyn Fn(SecretRef) -> Option<Secret>,
    ) -> Result<(), InputError> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        // Resolve everything up front: a missing secret must fail before the first key.
        let mut secrets: Vec<Option<Secret>> = Vec::with_capacity(steps.len());
        for step in steps {
            secrets.push(match step {
                KeyStep::Secret(r) => Some(resolve(*r).ok_or(InputError::SecretUnavailable(*r))?),
                _ => None,
            });
        }
        let texts: Vec<&str> = steps
            .iter()
            .zip(&secrets)
            .map(|(step, secret)| match step {
                KeyStep::Text(t) => t.as_str(),
                KeyStep::Secret(_) => secret.as_ref().map(Secret::expose).unwrap_or(""),
                _ => "",
            })
            .collect();
        let mut needed: Vec<u32> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            for c in text.chars() {
                needed.push(char_to_keysym(c).ok_or(InputError::Untypable { step: i })?);
            }
        }
        // Named keys may be premapped like characters if missing; modifiers may not (a spare
        // keycode is not in the modifier map), so they are looked up separately.
        needed.extend([
            keysym::TAB,
            keysym::RETURN,
            keysym::SPACE,
            keysym::ESCAPE,
            keysym::UP,
            keysym::DOWN,
            keysym::HOME,
            keysym::A,
        ]);
        self.drain_events();

        // Nothing is sent, not even a keymap change, if the focus is already wrong.
        let (inside, focus) = self.focus_inside(window)?;
        if !inside {
            return Err(InputError::FocusLost {
                window,
                step: 0,
                focus,
            });
        }

        let result = match busy.as_mut() {
            None => {
                let keymap = self.read_keymap()?;
                let modifier = |l, r, name| {
                    keymap
                        .find(l)
                        .or_else(|| keymap.find(r))
                        .filter(|p| !p.shift)
                        .ok_or(InputError::MissingModifier(name))
                };
                let shift = modifier(keysym::SHIFT_L, keysym::SHIFT_R, "Shift")?;
                let ctrl = modifier(keysym::CONTROL_L, keysym::CONTROL_R, "Control")?;
                // Caps Lock on (a desktop session) would invert every letter; switch it off
                // for the duration and restore it afterwards.
                let caps = if self.caps_lock_on()? {
                    let key = keymap
                        .find(keysym::CAPS_LOCK)
                        .filter(|p| !p.shift)
                        .ok_or(InputError::MissingModifier("Caps_Lock"))?;
                    self.tap(key, None, shift)?;
                    if self.caps_lock_on()? {
                        return Err(InputError::CapsLockStuck);
                    }
                    tracing::info!(window, "caps lock switched off for typing");
                    Some(key)
                } else {
                    None
                };
                let r = self.type_planned(window, steps, &texts, &needed, &keymap, (shift, ctrl));
                if let Some(key) = caps {
                    if let Err(e) = self.tap(key, None, shift) {
                        tracing::warn!(error = %e, "failed to restore caps lock");
                    }
                }
                r
            }
            #[cfg(feature = "enigo")]
            Some(enigo) => self.type_enigo(enigo, window, steps, &texts),
            #[cfg(not(feature = "enigo"))]
            Some(none) => match *none {},
        };
        tracing::debug!(
            window,
            steps = steps.len(),
            ok = result.is_ok(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "typing done"
        );
        result
    }

    /// Whether the Lock modifier (Caps Lock) is active.
    fn caps_lock_on(&self) -> Result<bool, InputError> {
        let reply = self
            .conn
            .wait_for_reply(
                self.conn
                    .send_request(&x::QueryPointer { window: self.root }),
            )
            .map_err(request_err("QueryPointer"))?;
        Ok(reply.mask().contains(x::KeyButMask::LOCK))
    }

    /// Binds the spare keycodes the plan needs, types, and unbinds them.
    fn type_planned(
        &self,
        window: u32,
        steps: &[KeyStep],
        texts: &[&str],
        needed: &[u32],
        km: &Keymap,
        modifiers: (KeyPos, KeyPos),
    ) -> Result<(), InputError> {
        let plan = keymap::plan(km, needed)?;
        let unbind: Vec<(u8, u32)> = plan
            .premap
            .iter()
            .map(|(kc, _)| (*kc, keymap::NO_SYMBOL))
            .collect();
        if let Err(e) = self.bind(&plan.premap, km) {
            // Some may be bound already; leave no borrowed keycode behind.
            let _ = self.bind(&unbind, km);
            return Err(e);
        }
        if plan.premap.is_empty() {
            return self.type_xtest(window, steps, texts, &plan.positions, modifiers);
        }
        tracing::debug!(keysyms = plan.premap.len(), "spare keycodes bound");
        std::thread::sleep(self.opts.remap_settle);
        let r = self.type_xtest(window, steps, texts, &plan.positions, modifiers);
        // Let Java translate the last keys before their keycodes go blank.
        std::thread::sleep(self.opts.remap_settle);
        if let Err(e) = self.bind(&unbind, km) {
            tracing::warn!(error = %e, "failed to unbind spare keycodes");
        }
        r
    }

    /// Closes `window` the way a user would: ICCCM `WM_DELETE_WINDOW` (Java then runs the
    /// window's close operation; for the gateway's main frame that is a clean exit 0).
    pub fn close_window(&self, window: u32) -> Result<(), InputError> {
        let event = x::ClientMessageEvent::new(
            window_from_id(window),
            self.atoms.wm_protocols,
            x::ClientMessageData::Data32([self.atoms.wm_delete_window.resource_id(), 0, 0, 0, 0]),
        );
        self.conn
            .send_and_check_request(&x::SendEvent {
                propagate: false,
                destination: x::SendEventDest::Window(window_from_id(window)),
                event_mask: x::EventMask::NO_EVENT,
                event: &event,
            })
            .map_err(proto_err("SendEvent(WM_DELETE_WINDOW)"))
    }

    /// Discards queued events (MappingNotify etc.): this connection never reads events, and
    /// libxcb would otherwise queue them forever.
    fn drain_events(&self) {
        while let Ok(Some(_)) = self.conn.poll_for_event() {}
    }

    fn read_keymap(&self) -> Result<Keymap, InputError> {
        let setup = self.conn.get_setup();
        let (min, max) = (setup.min_keycode(), setup.max_keycode());
        let km = self.conn.send_request(&x::GetKeyboardMapping {
            first_keycode: min,
            count: max - min + 1,
        });
        let mm = self.conn.send_request(&x::GetModifierMapping {});
        let km = self
            .conn
            .wait_for_reply(km)
            .map_err(request_err("GetKeyboardMapping"))?;
        let mm = self
            .conn
            .wait_for_reply(mm)
            .map_err(request_err("GetModifierMapping"))?;
        Ok(Keymap::new(
            min,
            usize::from(km.keysyms_per_keycode()),
            km.keysyms().to_vec(),
            mm.keycodes().iter().copied().filter(|k| *k != 0).collect(),
        ))
    }

    /// Binds (or, with `NO_SYMBOL`, unbinds) each keycode, one request per keycode (spare
    /// keycodes are scattered; rewriting a whole range would also rewrite real keys), then
    /// one round trip so the server has applied them all.
    fn bind(&self, bindings: &[(u8, u32)], keymap: &Keymap) -> Result<(), InputError> {
        if bindings.is_empty() {
            return Ok(());
        }
        let per = keymap.per_keycode();
        for &(keycode, ks) in bindings {
            let mut row = vec![keymap::NO_SYMBOL; per];
            row[0] = ks;
            if per > 1 {
                row[1] = ks;
            }
            self.conn
                .send_and_check_request(&x::ChangeKeyboardMapping {
                    keycode_count: 1,
                    first_keycode: keycode,
                    keysyms_per_keycode: per as u8,
                    keysyms: &row,
                })
                .map_err(proto_err("ChangeKeyboardMapping"))?;
        }
        Ok(())
    }

    /// Moves the pointer to `(x, y)` of `window` and clicks button 1 (XTest). The point is
    /// translated to root coordinates by the server, so a window manager's frame or a moved
    /// window changes nothing.
    fn click(&self, window: u32, x: u32, y: u32) -> Result<(), InputError> {
        let root = self.root;
        let at = self
            .conn
            .wait_for_reply(self.conn.send_request(&x::TranslateCoordinates {
                src_window: window_from_id(window),
                dst_window: root,
                src_x: i16::try_from(x).unwrap_or(i16::MAX),
                src_y: i16::try_from(y).unwrap_or(i16::MAX),
            }))
            .map_err(request_err("TranslateCoordinates"))?;
        self.conn.send_request(&xcb::xtest::FakeInput {
            r#type: XTEST_MOTION,
            detail: 0,
            time: x::CURRENT_TIME,
            root,
            root_x: at.dst_x(),
            root_y: at.dst_y(),
            deviceid: 0,
        });
        for kind in [XTEST_BUTTON_PRESS, XTEST_BUTTON_RELEASE] {
            self.conn.send_request(&xcb::xtest::FakeInput {
                r#type: kind,
                detail: 1,
                time: x::CURRENT_TIME,
                root: x::Window::none(),
                root_x: 0,
                root_y: 0,
                deviceid: 0,
            });
        }
        self.conn.flush().map_err(conn_err("FakeInput"))
    }

    fn fake(&self, press: bool, keycode: u8) {
        self.conn.send_request(&xcb::xtest::FakeInput {
            r#type: if press {
                XTEST_KEY_PRESS
            } else {
                XTEST_KEY_RELEASE
            },
            detail: keycode,
            time: x::CURRENT_TIME,
            root: x::Window::none(),
            root_x: 0,
            root_y: 0,
            deviceid: 0,
        });
    }

    /// Presses and releases one key, with Shift and/or Control held around it.
    fn tap(&self, pos: KeyPos, ctrl: Option<KeyPos>, shift: KeyPos) -> Result<(), InputError> {
        let mods: Vec<u8> = [ctrl, pos.shift.then_some(shift)]
            .into_iter()
            .flatten()
            .map(|m| m.keycode)
            .collect();
        for m in &mods {
            self.fake(true, *m);
        }
        self.fake(true, pos.keycode);
        self.fake(false, pos.keycode);
        for m in mods.iter().rev() {
            self.fake(false, *m);
        }
        self.conn.flush().map_err(conn_err("FakeInput"))?;
        std::thread::sleep(self.opts.key_delay);
        Ok(())
    }

    fn check(&self, window: u32, step: usize) -> Result<(), InputError> {
        let (inside, focus) = self.focus_inside(window)?;
        if inside {
            Ok(())
        } else {
            tracing::warn!(window, step, focus, "focus lost, typing stopped");
            Err(InputError::FocusLost {
                window,
                step,
                focus,
            })
        }
    }

    fn type_xtest(
        &self,
        window: u32,
        steps: &[KeyStep],
        texts: &[&str],
        positions: &std::collections::BTreeMap<u32, KeyPos>,
        (shift, ctrl): (KeyPos, KeyPos),
    ) -> Result<(), InputError> {
        // Every keysym was planned; a miss is a bug. The keysym is not in the message: for a
        // secret it would be a character of it.
        let pos = |ks: u32| -> Result<KeyPos, InputError> {
            positions.get(&ks).copied().ok_or(InputError::Request {
                request: "keymap",
                detail: "a planned keysym has no keycode".into(),
            })
        };
        for (i, step) in steps.iter().enumerate() {
            self.check(window, i)?;
            match step {
                KeyStep::Text(_) | KeyStep::Secret(_) => {
                    let text = texts[i];
                    tracing::debug!(
                        window,
                        step = i,
                        kind = if matches!(step, KeyStep::Secret(_)) {
                            "secret"
                        } else {
                            "text"
                        },
                        len = text.chars().count(),
                        "typing step"
                    );
                    for (n, c) in text.chars().enumerate() {
                        if n > 0 && n % CHECK_EVERY == 0 {
                            self.check(window, i)?;
                        }
                        let ks = char_to_keysym(c).ok_or(InputError::Untypable { step: i })?;
                        self.tap(pos(ks)?, None, shift)?;
                    }
                }
                KeyStep::Key(key) => {
                    tracing::debug!(window, step = i, key = ?key, "key");
                    let (ks, with_shift, with_ctrl) = match key {
                        NamedKey::Tab => (keysym::TAB, false, false),
                        NamedKey::ShiftTab => (keysym::TAB, true, false),
                        NamedKey::Enter => (keysym::RETURN, false, false),
                        NamedKey::Space => (keysym::SPACE, false, false),
                        NamedKey::Escape => (keysym::ESCAPE, false, false),
                        NamedKey::Up => (keysym::UP, false, false),
                        NamedKey::Down => (keysym::DOWN, false, false),
                        NamedKey::Home => (keysym::HOME, false, false),
                        NamedKey::SelectAll => (keysym::A, false, true),
                    };
                    if *key == NamedKey::Enter {
                        std::thread::sleep(self.opts.settle_delay);
                        // The pause is long enough for focus to move; check again.
                        self.check(window, i)?;
                    }
                    let mut p = pos(ks)?;
                    p.shift |= with_shift;
                    self.tap(p, with_ctrl.then_some(ctrl), shift)?;
                    if matches!(
                        key,
                        NamedKey::Tab | NamedKey::ShiftTab | NamedKey::SelectAll
                    ) {
                        std::thread::sleep(self.opts.settle_delay);
                    }
                }
                KeyStep::PauseMs(ms) => std::thread::sleep(Duration::from_millis(u64::from(*ms))),
                KeyStep::Click { x, y } => {
                    tracing::debug!(window, step = i, x, y, "click");
                    self.click(window, *x, *y)?;
                    std::thread::sleep(self.opts.settle_delay);
                }
            }
        }
        // One round trip: every fake event has reached the server when we return.
        self.focused_window()?;
        Ok(())
    }
}

#[cfg(feature = "enigo")]
mod enigo_backend;
