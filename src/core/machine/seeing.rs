//! See before you press: the commit that spends a login attempt (`Log In`) or a code (the
//! code's `OK`) follows only a screen model that shows the form as intended.
//!
//! A fill that went in whole is checked ([`Action::CheckForm`]). On a difference the form is
//! filled again *by target* (click into each field the model found, select all, type), at
//! most [`MAX_REFILLS`] times, then the JVM is relaunched: never submitted, never counted
//! as a failed login. A window that appears while a check runs voids it (the check runs
//! again). When no model can be built (`Unseen`: no OCR, an unknown look), `auto` submits
//! an uninterrupted fill as typed, `required` relaunches; an interrupted fill is never
//! submitted unseen.

use super::*;
use crate::core::domain::VerifyForm;
use crate::core::types::{FormCheck, FormTargets, FormVerdict};

/// Refills by target after a difference, before a relaunch.
pub(super) const MAX_REFILLS: u32 = 2;

/// A check in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Checking {
    pub(super) ticket: u64,
    pub(super) window: u32,
    pub(super) form: FormCheck,
    /// A window appeared meanwhile: the answer is stale.
    pub(super) void: bool,
    /// The fill before it was interrupted (focus lost after some keys).
    pub(super) interrupted: bool,
}

impl Supervisor {
    /// The fill of `form` in `window` is in (or was interrupted): look before pressing.
    /// With `verify_form = "off"` an uninterrupted fill is committed at once.
    pub(super) fn check_form(&mut self, now: Now, window: u32, form: FormCheck, interrupted: bool) {
        if self.cfg.verify_form == VerifyForm::Off {
            if interrupted {
                self.fill_failed(now, "another window took the focus while typing");
            } else {
                self.commit_form(now, window, form);
            }
            return;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.login.check = Some(Checking {
            ticket,
            window,
            form,
            void: false,
            interrupted,
        });
        self.push(Action::CheckForm {
            ticket,
            window,
            form,
        });
    }

    /// A window was mapped: a check in flight may have seen the form covered or unfocused.
    pub(super) fn void_check(&mut self) {
        if let Some(c) = &mut self.login.check {
            c.void = true;
        }
    }

    pub(super) fn on_form_checked(
        &mut self,
        now: Now,
        ticket: u64,
        verdict: FormVerdict,
        targets: FormTargets,
    ) {
        let Some(c) = self.login.check.filter(|c| c.ticket == ticket) else {
            return;
        };
        self.login.check = None;
        if !self.windows.contains_key(&c.window) || self.phase != Phase::LoggingIn {
            return;
        }
        if c.void {
            tracing::info!("a window appeared while the form was checked; checking again");
            self.check_form(now, c.window, c.form, c.interrupted);
            return;
        }
        match verdict {
            FormVerdict::Matches => {
                tracing::info!(form = form_name(c.form), "the form holds what was typed");
                self.login.refills = 0;
                self.commit_form(now, c.window, c.form);
            }
            FormVerdict::Unseen(why)
                if c.form == FormCheck::Device && self.cfg.verify_form == VerifyForm::Auto =>
            {
                tracing::warn!(
                    why,
                    "the device list cannot be read; choosing by type-ahead"
                );
                self.choose_device_blind(now, c.window);
            }
            FormVerdict::Unseen(why) => {
                if c.interrupted {
                    self.fill_failed(
                        now,
                        &format!("typing was interrupted and the form cannot be seen ({why})"),
                    );
                } else if self.cfg.verify_form == VerifyForm::Required {
                    self.push(Action::Notify {
                        kind: NoticeKind::FormUnseen,
                        severity: Severity::Warning,
                        message: format!(
                            "ibwarden cannot read the gateway's {} ({why}) and login.verify_form \
                             is \"required\": it relaunches instead of pressing unseen. Run \
                             `ibwarden inspect` and report what it shows.",
                            form_name(c.form)
                        ),
                    });
                    self.fill_failed(now, &format!("the form cannot be seen ({why})"));
                } else {
                    tracing::warn!(
                        form = form_name(c.form),
                        why,
                        "the form cannot be seen; pressing as typed"
                    );
                    self.commit_form(now, c.window, c.form);
                }
            }
            FormVerdict::Differs(why) => {
                let steps = refill_steps(c.form, &targets, self.cfg.trading_mode);
                match steps {
                    Some(steps) if self.login.refills < MAX_REFILLS => {
                        self.login.refills += 1;
                        tracing::warn!(
                            form = form_name(c.form),
                            why,
                            refill = self.login.refills,
                            "the form does not hold what was typed; filling it again by target"
                        );
                        self.push(Action::Screenshot {
                            window: Some(c.window),
                            reason: "form-differs",
                        });
                        self.type_form(c.window, steps, c.form);
                    }
                    _ => {
                        self.login.refills = 0;
                        self.fill_failed(
                            now,
                            &format!("the form does not hold what was typed ({why})"),
                        );
                    }
                }
            }
        }
    }

    /// The press the check allowed.
    fn commit_form(&mut self, now: Now, window: u32, form: FormCheck) {
        match form {
            FormCheck::Login { .. } => self.commit_login(now, window),
            FormCheck::Code { .. } => {
                self.type_into(
                    window,
                    vec![KeyStep::PauseMs(150), KeyStep::Key(NamedKey::Enter)],
                );
                self.status_line("authenticator code sent");
            }
            FormCheck::Device => self.confirm_device(now, window),
        }
    }
}

fn form_name(form: FormCheck) -> &'static str {
    match form {
        FormCheck::Login { .. } => "login form",
        FormCheck::Code { .. } => "code field",
        FormCheck::Device => "device list",
    }
}

/// Keys that fill `form` again by clicking into each part the model found. `None` if a part
/// needed was not found (then only a relaunch gives a known form).
pub(super) fn refill_steps(
    form: FormCheck,
    t: &FormTargets,
    mode: TradingMode,
) -> Option<Vec<KeyStep>> {
    use KeyStep::*;
    let click = |p: Option<(u32, u32)>| p.map(|(x, y)| Click { x, y });
    match form {
        FormCheck::Login { .. } => {
            let toggle = match mode {
                TradingMode::Live => t.live,
                TradingMode::Paper => t.paper,
            };
            let mut steps = Vec::new();
            // A toggle that was not found is left alone: the next check says if it is wrong.
            if let Some(c) = click(toggle) {
                steps.extend([c, PauseMs(50)]);
            }
            steps.extend([
                click(t.username)?,
                Key(NamedKey::SelectAll),
                Secret(SecretRef::Username),
                click(t.password)?,
                Key(NamedKey::SelectAll),
                Secret(SecretRef::Password),
            ]);
            Some(steps)
        }
        FormCheck::Code { step } => Some(vec![
            click(t.code)?,
            Key(NamedKey::SelectAll),
            Secret(SecretRef::TotpCode { step }),
        ]),
        // A click on the row selects it in every look; OK follows the next check.
        FormCheck::Device => Some(vec![click(t.device)?, PauseMs(100)]),
    }
}
