//! The sans-IO core: every decision ibwarden makes, as a pure state machine.
//!
//! No IO, no clocks, no randomness is read here: `now` is a parameter and the driver
//! executes the actions the core asks for. (In progress: the state machine lands next.)

pub mod types;

pub use types::*;
