//! X11 adapters: the display the gateway runs on, the window watcher, keyboard input and
//! screenshots. Everything here talks to an *explicit* display ([`DisplayTarget`]); nothing
//! reads `$DISPLAY`, and our own connections authenticate with a cookie read from the target's
//! Xauthority file rather than from `$XAUTHORITY`.
//!
//! - [`display`]: start and own one `Xvfb` (`-displayfd`, `-nolisten tcp`, private cookie).
//! - [`watcher`]: a dedicated thread turning root-window notifications into [`WindowEvent`]s.
//! - [`input`]: focus with `WM_TAKE_FOCUS`, type with XTest ([`Typist`]); close windows.
//! - [`keymap`]: pure keysym/keycode planning used by [`input`].
//! - [`screenshot`]: `GetImage` → PNG.
//!
//! Every adapter opens its own connection: the watcher blocks in `wait_for_event`, so it
//! cannot share one with request/reply users, and separate connections keep a typing burst
//! from delaying window events. The measured behaviour each adapter follows is written in
//! its module, next to the code it shapes.

pub(crate) mod auth;
pub(crate) mod display;
pub(crate) mod input;
pub(crate) mod keymap;
pub mod screenshot;
pub(crate) mod watcher;

use std::ffi::{c_char, c_int, CString};
use std::path::PathBuf;

pub use display::{DisplayError, Xvfb};
pub use input::{InputBackend, InputError, TypingOptions, Typist};
pub use screenshot::{screenshot, screenshot_painted, ScreenshotError};
pub use watcher::{WatchError, Watcher, WindowEvent};

/// Which X display to use and how to authenticate to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayTarget {
    /// Display name as given to clients, e.g. `":3"`. Must be a local display.
    pub name: String,
    /// Xauthority file holding the display's cookie. `None` means the server needs no cookie
    /// (or libxcb's default lookup through `$XAUTHORITY`/`~/.Xauthority` applies).
    pub xauthority: Option<PathBuf>,
}

impl DisplayTarget {
    /// An existing display, e.g. a desktop session (`":0"` with `~/.Xauthority`).
    pub fn existing(name: impl Into<String>, xauthority: Option<PathBuf>) -> Self {
        DisplayTarget {
            name: name.into(),
            xauthority,
        }
    }

    /// The display number part of the name (`":3.0"` → `"3"`), as used in Xauthority files.
    pub fn number(&self) -> Option<&str> {
        let after = &self.name[self.name.rfind(':')? + 1..];
        let number = after.split('.').next()?;
        (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then_some(number)
    }
}

/// Failure to open an X connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The display name is not of the form `[unix]:N[.S]`.
    #[error("display name {name:?} is not of the form :N")]
    BadName {
        /// The name given.
        name: String,
    },
    /// The Xauthority file could not be used.
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    /// libxcb could not connect or the server refused us.
    #[error("cannot connect to display {display}: {reason:?}")]
    Refused {
        /// The display name.
        display: String,
        /// libxcb's error class.
        reason: xcb::ConnError,
    },
    /// A required extension is missing on the server.
    #[error("display {display} lacks the {extension} extension")]
    MissingExtension {
        /// The display name.
        display: String,
        /// The extension, e.g. `XTEST`.
        extension: &'static str,
    },
}

// libxcb itself, for the one call the `xcb` crate wraps unsoundly for our purpose: its
// `AuthInfo` takes the cookie as `&str` and converts it with `CString::new(..).unwrap()`, so a
// random binary cookie (not UTF-8, may contain NUL) would panic. The crate links libxcb
// already; these are libxcb's stable C ABI (xcb.h).
#[repr(C)]
struct XcbAuthInfo {
    namelen: c_int,
    name: *mut c_char,
    datalen: c_int,
    data: *mut c_char,
}

#[link(name = "xcb")]
extern "C" {
    fn xcb_connect_to_display_with_auth_info(
        display: *const c_char,
        auth: *mut XcbAuthInfo,
        screen: *mut c_int,
    ) -> *mut xcb::ffi::xcb_connection_t;
    fn xcb_connection_has_error(c: *mut xcb::ffi::xcb_connection_t) -> c_int;
    fn xcb_disconnect(c: *mut xcb::ffi::xcb_connection_t);
}

fn conn_error_from_code(code: c_int) -> xcb::ConnError {
    // Values from xcb.h (XCB_CONN_ERROR = 1 ... XCB_CONN_CLOSED_FDPASSING_FAILED = 7).
    match code {
        2 => xcb::ConnError::ClosedExtNotSupported,
        3 => xcb::ConnError::ClosedMemInsufficient,
        4 => xcb::ConnError::ClosedReqLenExceed,
        5 => xcb::ConnError::ClosedParseErr,
        6 => xcb::ConnError::ClosedInvalidScreen,
        7 => xcb::ConnError::ClosedFdPassingFailed,
        _ => xcb::ConnError::Connection,
    }
}

/// Opens a connection to `target` with the given extensions (all required).
///
/// Returns the connection and the default screen number. With an Xauthority file the cookie
/// is read here and handed to libxcb directly; `$DISPLAY` and `$XAUTHORITY` are never read.
pub fn connect(
    target: &DisplayTarget,
    extensions: &[xcb::Extension],
) -> Result<(xcb::Connection, i32), ConnectError> {
    let refused = |reason| ConnectError::Refused {
        display: target.name.clone(),
        reason,
    };
    let Some(number) = target.number() else {
        return Err(ConnectError::BadName {
            name: target.name.clone(),
        });
    };
    let c_name = CString::new(target.name.as_str()).map_err(|_| ConnectError::BadName {
        name: target.name.clone(),
    })?;
    // Extensions are requested as optional and checked below: the crate panics when a
    // "mandatory" one is missing.
    let (conn, screen) = match &target.xauthority {
        None => xcb::Connection::connect_with_extensions(Some(&target.name), &[], extensions)
            .map_err(refused)?,
        Some(path) => {
            let cookie = auth::read_cookie(path, number)?;
            let mut name = auth::MIT_MAGIC_COOKIE.as_bytes().to_vec();
            let mut data = cookie.0.clone();
            let mut info = XcbAuthInfo {
                namelen: name.len() as c_int,
                name: name.as_mut_ptr().cast(),
                datalen: data.len() as c_int,
                data: data.as_mut_ptr().cast(),
            };
            let mut screen: c_int = 0;
            // SAFETY: all pointers are valid for the duration of the call; libxcb copies the
            // auth data during the handshake and keeps no reference to it. The returned
            // pointer is never null (libxcb returns a static error connection instead); we
            // check its error state before handing it to `Connection`, whose constructor
            // asserts on a failed connection, and disconnect it ourselves on failure.
            unsafe {
                let raw =
                    xcb_connect_to_display_with_auth_info(c_name.as_ptr(), &mut info, &mut screen);
                if raw.is_null() {
                    return Err(refused(xcb::ConnError::Connection));
                }
                let code = xcb_connection_has_error(raw);
                if code != 0 {
                    xcb_disconnect(raw);
                    return Err(refused(conn_error_from_code(code)));
                }
                (
                    xcb::Connection::from_raw_conn_and_extensions(raw, &[], extensions),
                    screen,
                )
            }
        }
    };
    for ext in extensions {
        if !conn.active_extensions().any(|e| e == *ext) {
            return Err(ConnectError::MissingExtension {
                display: target.name.clone(),
                extension: extension_name(*ext),
            });
        }
    }
    Ok((conn, screen))
}

fn extension_name(ext: xcb::Extension) -> &'static str {
    match ext {
        xcb::Extension::Test => "XTEST",
        xcb::Extension::BigRequests => "BIG-REQUESTS",
        _ => "requested",
    }
}

/// The root window of `screen` on `conn`.
pub(crate) fn root_of(conn: &xcb::Connection, screen: i32) -> Option<xcb::x::Window> {
    conn.get_setup()
        .roots()
        .nth(usize::try_from(screen).ok()?)
        .map(|s| s.root())
}

/// Builds an `xcb` window handle from a raw id received from elsewhere (events, the core).
/// `WM_CLASS` of a window as `instance.class` (Java: `ibgateway-GWClient` from the main
/// class), or `None` if unset or unreadable. Opens its own connection (for `inspect`).
pub fn window_class(target: &DisplayTarget, id: u32) -> Option<String> {
    let (conn, _) = connect(target, &[]).ok()?;
    let reply = conn
        .wait_for_reply(conn.send_request(&xcb::x::GetProperty {
            delete: false,
            window: window_from_id(id),
            property: xcb::x::ATOM_WM_CLASS,
            r#type: xcb::x::ATOM_STRING,
            long_offset: 0,
            long_length: 256,
        }))
        .ok()?;
    if reply.format() != 8 {
        return None;
    }
    let parts: Vec<String> = reply
        .value::<u8>()
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("."))
}

pub(crate) fn window_from_id(id: u32) -> xcb::x::Window {
    // `XidNew::new` is the crate's only way to wrap a foreign id; it performs no checks and
    // the server validates the id on use.
    <xcb::x::Window as xcb::XidNew>::new(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_numbers() {
        let n = |s: &str| DisplayTarget::existing(s, None).number().map(str::to_owned);
        assert_eq!(n(":3"), Some("3".into()));
        assert_eq!(n(":12.0"), Some("12".into()));
        assert_eq!(n("unix:0"), Some("0".into()));
        assert_eq!(n("3"), None);
        assert_eq!(n(":"), None);
        assert_eq!(n(":x"), None);
    }
}
