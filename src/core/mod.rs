//! The sans-IO core: every decision ibwarden makes, as a pure state machine.
//!
//! No IO, no clocks, no randomness is read here: `now` is a parameter and the driver
//! executes the actions the core asks for (see [`machine`] for the call contract).
//!
//! - [`domain`]: values shared with the config and the adapters (program, mode, policies).
//! - [`types`]: data shared with the adapters (windows, keys, probe outcomes).
//! - [`dialog`]: the dialog catalogue (title → kind, text refinement, answers) as data.
//! - [`timer`]: named deadlines.
//! - [`machine`]: the [`Supervisor`] state machine.
//! - [`schedule`]: IBKR's calendar (planned restarts, the nightly maintenance window).

pub mod dialog;
pub mod domain;
pub(crate) mod machine;
pub(crate) mod messages;
pub(crate) mod notice;
pub mod schedule;
pub(crate) mod settings;
pub(crate) mod timer;
pub mod types;

pub use domain::*;
pub use machine::*;
pub use messages::*;
pub use notice::*;
pub use settings::*;
pub use types::*;

#[cfg(test)]
mod tests;
