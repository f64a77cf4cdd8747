//! ibwarden keeps an Interactive Brokers IB Gateway (or TWS) logged in, unattended.
//!
//! # Layout
//!
//! - [`clientportal`]: the Client Portal gateway's web session (`program = "clientportal"`):
//!   its sans-IO machine, the login in headless Chromium over CDP, tickle and reauthenticate.
//! - [`config`]: the TOML schema, defaults and validation with `file:line:col` errors.
//! - [`secret`]: secrets read from files, systemd credentials or the environment; redacted.
//! - [`totp`]: IBKR Mobile Authenticator codes (RFC 6238) and the freshness/no-reuse policy.
//! - [`state`]: small pieces of state that must survive a crash, written atomically.
//! - [`core`]: the sans-IO state machine: login flow, dialog catalogue, policies. No IO, no
//!   clocks: `now` is a parameter.
//! - [`x11`]: adapters for the display (Xvfb), the window watcher and XTest typing.
//! - [`gateway`]: install discovery, the JVM command line, process lifecycle.
//! - [`ibc_import`]: converting an IBC `config.ini` / Docker env into an ibwarden config.
//! - [`probe`]: the TWS API handshake used as the only readiness signal.
//! - [`procfs`]: `/proc/<pid>/stat` parsed once: parent, state, start time, ancestry.
//! - [`screen`]: the screen model: text fields, password masks, toggles and OCR words read
//!   from a window's pixels, and the check of a form before it is submitted.
//! - [`sdnotify`]: systemd's notify protocol.
//! - [`control`]: the control socket (`status`, `restart`, `stop`, ...) and the IBC-compatible
//!   command server.
//! - [`status`]: the published snapshot read by `status`, `/readyz` and `/metrics`.
//! - [`health`]: the HTTP health endpoint (`/livez`, `/readyz`, `/metrics`).
//! - [`relay`]: the API relay for clients on other hosts, open only while the gateway serves.
//! - [`notify`]: telling a person (desktop, command hook, webhook), deduplicated.
//! - [`dialog_text`]: dialog text (OCR, AT-SPI) for dialogs titles cannot tell apart.
//! - [`launcher_log`]: the gateway's `launcher.log` followed with inotify, turned into events
//!   (IBKR silently dropping a login, restart in progress, token expired).
//! - [`takeover`]: human takeover: x11vnc on the gateway's display, loopback only, one-time
//!   password, connect/disconnect events.
//! - [`logging`]: tracing set-up (human, journald, json).
//! - [`driver`]: the one loop that feeds adapter events to the core and executes its actions.
//!
//! # Theory of operation
//!
//! Adapters turn the world into [`core::Input`]s; the core answers with [`core::Action`]s and
//! a wake-up deadline; the driver executes actions through the adapters. Every decision lives
//! in the core and is unit-tested with virtual time; adapters are tested against the real
//! thing (Xvfb, a JVM, sockets).
#![warn(clippy::unwrap_used)]
#![warn(unreachable_pub)]

pub mod clientportal;
pub mod config;
pub mod control;
pub mod core;
pub mod dialog_text;
pub mod driver;
pub mod gateway;
pub mod health;
pub mod ibc_import;
pub mod instance;
pub mod launcher_log;
pub mod logging;
pub mod notify;
pub mod probe;
pub mod procfs;
pub mod relay;
pub mod screen;
pub mod sdnotify;
pub mod secret;
pub mod state;
pub mod status;
pub mod takeover;
pub mod totp;
pub mod x11;
