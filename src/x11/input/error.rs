//! What can go wrong while typing, and the xcb error adapters.

use std::time::Duration;

use crate::core::types::SecretRef;
use crate::x11::keymap::NotEnoughSpare;
use crate::x11::ConnectError;

/// Failures while focusing or typing. Messages never contain typed text.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Could not open the connection.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An X request failed (e.g. the window is gone).
    #[error("x11 {request} failed: {detail}")]
    Request {
        /// The request.
        request: &'static str,
        /// The X error, as xcb reports it.
        detail: String,
    },
    /// The window did not take the focus in time.
    #[error(
        "window {window:#x} did not take the focus within {waited:?} (focus is on {focus:#x})"
    )]
    FocusNotTaken {
        /// Target window.
        window: u32,
        /// Where the focus was at the deadline (0 = none, 1 = pointer root).
        focus: u32,
        /// How long we waited.
        waited: Duration,
    },
    /// The focus left the window before or during typing; nothing more was sent.
    #[error(
        "focus left window {window:#x} before step {step} (focus is on {focus:#x}); typing stopped"
    )]
    FocusLost {
        /// Target window.
        window: u32,
        /// Index of the step that was not (fully) typed.
        step: usize,
        /// Where the focus was (0 = none, 1 = pointer root).
        focus: u32,
    },
    /// The driver could not provide a referenced secret.
    #[error("secret {0:?} is not available")]
    SecretUnavailable(SecretRef),
    /// A step contains a character that has no keysym (a control character).
    #[error("step {step} contains a control character, which cannot be typed")]
    Untypable {
        /// Index of the step.
        step: usize,
    },
    /// The keymap has no plain (column 0) key for a modifier we need.
    #[error("the keymap has no {0} key")]
    MissingModifier(&'static str),
    /// Caps Lock is on and could not be switched off (letters would be inverted).
    #[error("caps lock is on and could not be switched off")]
    CapsLockStuck,
    /// Too many distinct characters missing from the keymap.
    #[error(transparent)]
    NotEnoughSpare(#[from] NotEnoughSpare),
    /// The enigo backend failed.
    #[cfg(feature = "enigo")]
    #[error("enigo: {0}")]
    Enigo(String),
}

pub(super) fn request_err(request: &'static str) -> impl FnOnce(xcb::Error) -> InputError {
    move |e| InputError::Request {
        request,
        detail: format!("{e:?}"),
    }
}

pub(super) fn proto_err(request: &'static str) -> impl FnOnce(xcb::ProtocolError) -> InputError {
    move |e| InputError::Request {
        request,
        detail: format!("{e:?}"),
    }
}

pub(super) fn conn_err(request: &'static str) -> impl FnOnce(xcb::ConnError) -> InputError {
    move |e| InputError::Request {
        request,
        detail: format!("{e:?}"),
    }
}
