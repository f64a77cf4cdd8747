//! The driver: one loop that feeds adapter events to the core and carries out its actions.
//!
//! ```text
//!   adapter tasks (display, JVM wait, probe, typist, launcher.log, signals, control)
//!        └──────────────► mpsc<Event> ──► select! ──► Supervisor::handle / handle_timeout
//!                                                         │
//!                            World::execute ◄── poll_action
//! ```
//!
//! The loop decides nothing and blocks on nothing: every policy (stop escalation, which
//! windows are the gateway's, when systemd hears `READY=1`, what is persisted) lives in
//! [`crate::core`]; every effect lives behind [`World`], whose adapters do their IO in their
//! own tasks and answer with [`Event`]s. [`real::RealWorld`] is the product's world; tests
//! drive this same loop with a fake one under paused time.

use std::future::Future;

use tokio::sync::mpsc;

use crate::control::ControlRequest;
use crate::core::{Action, Input, Now, Supervisor};

pub(crate) mod real;
mod screen;
mod seeing;
mod upgrade;
mod wiring;

pub(crate) use real::unix_ms;
pub use upgrade::exec_if_requested;
pub use wiring::{apply_reload, core_config, exit, run, schedule, Reload, RunOptions};

/// What reaches the loop.
#[derive(Debug)]
pub enum Event<M> {
    /// For the core as it is.
    Input(Input),
    /// An adapter's result for the world (a display that came up, a JVM that exited, ...);
    /// the world takes what it needs and may hand the core an [`Input`].
    World(M),
    /// SIGHUP: re-read the configuration.
    Reload,
    /// A command from the control socket or the IBC command server.
    Control(ControlRequest),
    /// A periodic tick (watchdog ping, status heartbeat): proof that the loop turns.
    Tick,
}

/// The effects the core asks for. Implementations must not block: anything slow runs in a
/// task of theirs and comes back as an [`Event`].
pub trait World {
    /// Adapter results for [`World::absorb`].
    type Msg: Send + 'static;

    /// The current time (monotonic from tokio's clock, so paused time works in tests).
    fn now(&self) -> Now;

    /// Carries out one action (never [`Action::Exit`], which the loop handles). An input
    /// returned here reaches the core before the next action runs (a failed save).
    fn execute(&mut self, action: Action) -> impl Future<Output = Option<Input>>;

    /// Takes an adapter result in; what the core must hear of it comes back.
    fn absorb(&mut self, msg: Self::Msg) -> Option<Input>;

    /// SIGHUP: start re-reading the configuration; the outcome comes back as
    /// [`Input::Reconfigure`] or [`Input::ReloadRefused`].
    fn reload(&mut self);

    /// A control command; what the core must hear of it comes back.
    fn control(&mut self, req: ControlRequest) -> Option<Input>;

    /// Publishes the core's state (`status`, `/readyz`, `/metrics`).
    fn publish(&mut self, core: &Supervisor, now: Now);

    /// The loop turned on a [`Event::Tick`].
    fn tick(&mut self);

    /// The core asked to exit: stop every adapter and wait for their tasks.
    fn shutdown(&mut self) -> impl Future<Output = ()>;
}

/// Runs the core against `world` until the core exits; returns the exit code.
pub async fn drive<W: World>(
    core: &mut Supervisor,
    world: &mut W,
    events: &mut mpsc::UnboundedReceiver<Event<W::Msg>>,
) -> i32 {
    core.handle(world.now(), Input::Start);
    let mut open = true;
    loop {
        while let Some(action) = core.poll_action() {
            if let Action::Exit(code) = action {
                world.publish(core, world.now());
                world.shutdown().await;
                return code;
            }
            if let Some(input) = world.execute(action).await {
                core.handle(world.now(), input);
            }
        }
        world.publish(core, world.now());
        // Check the deadline before awaiting (quinn `drive_timer`): tokio's sleep may report
        // a passed deadline late under the cooperative budget.
        let deadline = core.poll_timeout();
        if deadline.is_some_and(|at| at <= world.now().mono) {
            core.handle_timeout(world.now());
            continue;
        }
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            ev = events.recv(), if open => {
                let input = match ev {
                    Some(Event::Input(input)) => Some(input),
                    Some(Event::World(msg)) => world.absorb(msg),
                    Some(Event::Reload) => {
                        world.reload();
                        None
                    }
                    Some(Event::Control(req)) => world.control(req),
                    Some(Event::Tick) => {
                        world.tick();
                        None
                    }
                    // Every sender is gone: nothing can ever wake the core again but its
                    // own deadlines, and a stop can no longer be asked for. Stop cleanly.
                    None => {
                        open = false;
                        Some(Input::Stop)
                    }
                };
                if let Some(input) = input {
                    core.handle(world.now(), input);
                }
            }
            _ = sleep => core.handle_timeout(world.now()),
        }
    }
}
