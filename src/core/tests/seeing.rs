//! See before you press: the checks of filled forms, refills by target, voided checks and
//! `login.verify_form`.

use super::login_and_lifecycle::fill_ticket;
use super::*;

/// `Log In` pressed so far (a keyboard action ending in Enter into the login frame).
fn log_in_presses(h: &H) -> usize {
    h.typed()
        .iter()
        .filter(|(w, s)| *w == FRAME && s.last() == Some(&KeyStep::Key(NamedKey::Enter)))
        .count()
}

#[test]
fn an_interrupted_fill_that_cannot_be_seen_is_never_submitted_nor_counted() {
    let mut h = H::live();
    h.sees = Some(FormVerdict::Unseen("no OCR".into()));
    let a = h.open_login_frame();
    let ticket = fill_ticket(&a);
    let b = h.input(Input::Typed {
        ticket,
        result: TypeResult::Interrupted,
    });
    // Some keys went in, then another window took the focus: the form was looked at...
    assert!(
        b.iter()
            .any(|x| matches!(x, Action::CheckForm { window: FRAME, .. })),
        "{b:?}"
    );
    // ...and could not be seen: never pressed, never counted, a fresh JVM.
    assert_eq!(log_in_presses(&h), 0, "{:?}", h.typed());
    assert!(h.sv.persisted().failed_logins.is_empty());
    assert_eq!(h.sv.stats.logins, 0);
    assert!(
        b.iter().any(|x| matches!(x, Action::CloseGateway { .. })),
        "a fresh JVM gets a fresh form: {b:?}"
    );
    assert!(matches!(h.sv.phase(), Phase::Restarting { .. }));
}

#[test]
fn an_interrupted_fill_is_refilled_by_target_and_pressed_once_it_is_seen_right() {
    let mut h = H::live();
    h.sees = Some(FormVerdict::Differs("the password field is short".into()));
    let a = h.open_login_frame();
    let b = h.input(Input::Typed {
        ticket: fill_ticket(&a),
        result: TypeResult::Interrupted,
    });
    // The refill clicks into each part the model found: the live toggle, then each field.
    let Some(Action::Type { ticket, steps, .. }) =
        b.iter().find(|x| matches!(x, Action::Type { .. }))
    else {
        panic!("a refill: {b:?}");
    };
    assert_eq!(
        steps,
        &vec![
            KeyStep::Click { x: 250, y: 150 },
            KeyStep::PauseMs(50),
            KeyStep::Click { x: 300, y: 180 },
            KeyStep::Key(NamedKey::SelectAll),
            KeyStep::Secret(SecretRef::Username),
            KeyStep::Click { x: 300, y: 210 },
            KeyStep::Key(NamedKey::SelectAll),
            KeyStep::Secret(SecretRef::Password),
        ]
    );
    assert_eq!(log_in_presses(&h), 0);
    // The refill went in and the form is right now: Log In, counted once.
    h.sees = Some(FormVerdict::Matches);
    let c = h.input(Input::Typed {
        ticket: *ticket,
        result: TypeResult::Done,
    });
    assert!(c.iter().any(|x| matches!(x, Action::CheckForm { .. })));
    assert_eq!(log_in_presses(&h), 1);
    assert_eq!(h.sv.persisted().failed_logins.len(), 1);
}

#[test]
fn a_form_that_stays_wrong_is_refilled_twice_then_relaunched_never_pressed() {
    let mut h = H::live();
    h.sees = Some(FormVerdict::Differs(
        "the username field holds something else".into(),
    ));
    let a = h.open_login_frame();
    let mut next = h.input(Input::Typed {
        ticket: fill_ticket(&a),
        result: TypeResult::Done,
    });
    let mut refills = 0;
    while let Some(Action::Type { ticket, .. }) = next
        .iter()
        .find(|x| matches!(x, Action::Type { .. }))
        .cloned()
    {
        refills += 1;
        assert!(refills <= 2, "at most two refills");
        next = h.input(Input::Typed {
            ticket,
            result: TypeResult::Done,
        });
    }
    assert_eq!(refills, 2);
    assert_eq!(log_in_presses(&h), 0);
    assert!(h.sv.persisted().failed_logins.is_empty(), "never counted");
    assert!(
        next.iter()
            .any(|x| matches!(x, Action::CloseGateway { .. })),
        "{next:?}"
    );
}

#[test]
fn a_window_that_appears_during_a_check_voids_it() {
    let mut h = H::live();
    h.sees = None;
    let a = h.open_login_frame();
    let b = h.input(Input::Typed {
        ticket: fill_ticket(&a),
        result: TypeResult::Done,
    });
    let Some(Action::CheckForm { ticket, .. }) = b
        .iter()
        .find(|x| matches!(x, Action::CheckForm { .. }))
        .cloned()
    else {
        panic!("a check: {b:?}");
    };
    // A dialog maps while the model is built; the answer that comes back is stale.
    h.map(DIALOG, "Tip of the Day");
    let c = h.input(Input::FormChecked {
        ticket,
        verdict: FormVerdict::Matches,
        targets: FormTargets::default(),
    });
    assert_eq!(log_in_presses(&h), 0);
    let Some(Action::CheckForm { ticket: again, .. }) = c
        .iter()
        .find(|x| matches!(x, Action::CheckForm { .. }))
        .cloned()
    else {
        panic!("checked again: {c:?}");
    };
    h.input(Input::FormChecked {
        ticket: again,
        verdict: FormVerdict::Matches,
        targets: FormTargets::default(),
    });
    assert_eq!(log_in_presses(&h), 1);
}

#[test]
fn unseen_forms_are_pressed_as_typed_on_auto_and_relaunched_on_required() {
    for (verify, pressed) in [
        (VerifyForm::Auto, 1),
        (VerifyForm::Required, 0),
        (VerifyForm::Off, 1),
    ] {
        let cfg = CoreConfig {
            verify_form: verify,
            ..CoreConfig::default()
        };
        let mut h = H::new(cfg, Persisted::default());
        h.sees = Some(FormVerdict::Unseen("no OCR".into()));
        let a = h.open_login_frame();
        let b = h.input(Input::Typed {
            ticket: fill_ticket(&a),
            result: TypeResult::Done,
        });
        assert_eq!(log_in_presses(&h), pressed, "{verify:?}");
        let checked = h.log.iter().any(|x| matches!(x, Action::CheckForm { .. }));
        assert_eq!(checked, verify != VerifyForm::Off, "{verify:?}");
        if verify == VerifyForm::Required {
            assert!(b.iter().any(|x| matches!(
                x,
                Action::Notify {
                    kind: NoticeKind::FormUnseen,
                    ..
                }
            )));
            assert!(h.sv.persisted().failed_logins.is_empty());
        }
    }
}

#[test]
fn the_codes_ok_follows_a_check_of_the_code_field() {
    let mut h = H::live();
    let a = h.open_login_frame();
    h.complete_typing(&a);
    h.input(Input::TitleChanged {
        id: FRAME,
        title: "Authenticating...".into(),
    });
    h.sees = None;
    let a = h.map(DIALOG, "Second Factor Authentication");
    let Some(Action::Type { ticket, steps, .. }) = a
        .iter()
        .find(|x| matches!(x, Action::Type { window: DIALOG, .. }))
        .cloned()
    else {
        panic!("the code is typed: {a:?}");
    };
    assert!(!steps.contains(&KeyStep::Key(NamedKey::Enter)), "{steps:?}");
    let b = h.input(Input::Typed {
        ticket,
        result: TypeResult::Done,
    });
    let Some(Action::CheckForm { ticket, form, .. }) = b
        .iter()
        .find(|x| matches!(x, Action::CheckForm { .. }))
        .cloned()
    else {
        panic!("the code field is looked at: {b:?}");
    };
    assert_eq!(
        form,
        FormCheck::Code {
            step: 1_795_507_205 / 30
        }
    );
    let oks = |h: &H| {
        h.typed()
            .iter()
            .filter(|(w, s)| *w == DIALOG && s.contains(&KeyStep::Key(NamedKey::Enter)))
            .count()
    };
    assert_eq!(oks(&h), 0);
    // The field holds another code: typed again into the field the model found, no OK.
    let c = h.input(Input::FormChecked {
        ticket,
        verdict: FormVerdict::Differs("the code field holds something else".into()),
        targets: FormTargets {
            code: Some((200, 120)),
            ..FormTargets::default()
        },
    });
    assert_eq!(oks(&h), 0);
    let Some(Action::Type { ticket, steps, .. }) =
        c.iter().find(|x| matches!(x, Action::Type { .. })).cloned()
    else {
        panic!("refilled: {c:?}");
    };
    assert_eq!(steps[0], KeyStep::Click { x: 200, y: 120 });
    let d = h.input(Input::Typed {
        ticket,
        result: TypeResult::Done,
    });
    let Some(Action::CheckForm { ticket, .. }) = d
        .iter()
        .find(|x| matches!(x, Action::CheckForm { .. }))
        .cloned()
    else {
        panic!("checked again: {d:?}");
    };
    h.input(Input::FormChecked {
        ticket,
        verdict: FormVerdict::Matches,
        targets: FormTargets::default(),
    });
    assert_eq!(oks(&h), 1);
}
