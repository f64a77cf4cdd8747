//! IBKR's Client Portal gateway (`clientportal.gw`, `program = "clientportal"`): the
//! session behind the Client Portal Web API, kept authenticated with the same guarantees as
//! the IB Gateway path.
//!
//! - [`machine`]: the session as a sans-IO state machine (login, ready, tickle,
//!   reauthenticate, full login, budget, halts, competing sessions).
//! - [`selectors`]: how the login page's elements are found, as data (labels and roles, not
//!   IDs).
//! - [`api`]: the gateway's HTTPS API (`auth/status`, `tickle`, `reauthenticate`, `logout`).
//! - [`browser`]: the login through the gateway's page in headless Chromium over the
//!   DevTools protocol.
//! - [`install`]: finding `bin/run.sh` and the port in `root/conf.yaml`.
//! - [`driver`]: the loop that runs the machine against the real adapters.

pub mod api;
pub mod browser;
pub mod driver;
pub mod events;
pub mod install;
pub mod machine;
pub mod selectors;
pub mod stray;
