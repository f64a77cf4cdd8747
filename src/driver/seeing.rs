//! The driver's side of "see before you press": [`Action::CheckForm`] on the typist thread
//! (after the typing it checks, never beside it). Focus and raise the window, capture it
//! once it stopped changing, build the screen model, read it with OCR when tesseract is
//! installed, and compare it with what was typed; the secrets are read from the slot here
//! and never leave this function (the verdict names no secret and no length).
//!
//! [`Action::CheckForm`]: crate::core::Action::CheckForm

use std::time::{Duration, Instant};

use tracing::debug;

use crate::core::{FormCheck, FormTargets, FormVerdict};
use crate::screen::form::{self, FieldReader, LoginForm, NoReader, Verdict};
use crate::screen::ocr::Ocr;
use crate::screen::Model;
use crate::secret::Secrets;
use crate::x11::input::Typist;
use crate::x11::screenshot::{capture_settled, Image};
use crate::x11::DisplayTarget;

/// How long a window may keep changing before it is captured anyway.
const SETTLE: Duration = Duration::from_millis(1500);

/// How long a form that looked wrong is watched for a late repaint before it is judged again.
const LATE_PAINT: Duration = Duration::from_millis(600);
/// How long, in all, a form that looks wrong is looked at again before it counts as wrong.
const LATE_PAINT_TOTAL: Duration = Duration::from_secs(3);

/// A form check for the typist thread.
pub(super) struct CheckJob {
    pub(super) ticket: u64,
    pub(super) window: u32,
    pub(super) form: FormCheck,
    /// The configured second-factor device's label (for [`FormCheck::Device`]).
    pub(super) device: String,
}

/// Looks at the form; never fails (a failure to see is a [`FormVerdict::Unseen`]).
pub(super) fn check(
    typist: &Typist,
    target: &DisplayTarget,
    ocr: Option<&Ocr>,
    secrets: &Secrets,
    job: &CheckJob,
) -> (FormVerdict, FormTargets) {
    let started = Instant::now();
    // The window in front, with the focus: a dialog that took the focus may cover it.
    if let Err(e) = typist
        .focus(job.window)
        .and_then(|()| typist.raise(job.window))
    {
        return (
            FormVerdict::Unseen(format!("the window could not be brought forward: {e}")),
            FormTargets::default(),
        );
    }
    let img = match capture_settled(target, Some(job.window), SETTLE) {
        Ok(img) => img,
        Err(e) => {
            return (
                FormVerdict::Unseen(format!("the window could not be captured: {e}")),
                FormTargets::default(),
            )
        }
    };
    let (mut verdict, mut targets) = judge(&img, ocr, secrets, job.form, &job.device);
    // Swing may not have painted the last keys yet: on a loaded machine the gateway's event
    // thread can lag the X server by more than a "settled" capture waits, and the field then
    // shows part of what was typed. A difference is only believed after the picture has had
    // [`LATE_PAINT_TOTAL`] to change: each further look waits for a change (or
    // [`LATE_PAINT`]). A refill (and the relaunch after two) costs far more than this wait.
    let mut last = img;
    let looking_since = Instant::now();
    while matches!(verdict, FormVerdict::Differs(_)) && looking_since.elapsed() < LATE_PAINT_TOTAL {
        let deadline = Instant::now() + LATE_PAINT;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(40));
            match crate::x11::screenshot::capture(target, Some(job.window)) {
                Ok(now) if now != last => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let Ok(again) = capture_settled(target, Some(job.window), SETTLE) else {
            break;
        };
        let first = verdict;
        (verdict, targets) = judge(&again, ocr, secrets, job.form, &job.device);
        debug!(
            ticket = job.ticket,
            ?first,
            ?verdict,
            "form looked at again"
        );
        last = again;
    }
    debug!(
        ticket = job.ticket,
        ?verdict,
        ms = started.elapsed().as_millis() as u64,
        "form checked"
    );
    (verdict, targets)
}

/// The pure part: the model of `img` against the form.
pub(crate) fn judge(
    img: &Image,
    ocr: Option<&Ocr>,
    secrets: &Secrets,
    form: FormCheck,
    device: &str,
) -> (FormVerdict, FormTargets) {
    let mut model = Model::build(img);
    let reader: &dyn FieldReader = match ocr {
        Some(o) => o,
        None => &NoReader,
    };
    let verdict = match form {
        FormCheck::Login { mode } => {
            if let Some(words) = ocr.and_then(|o| o.words(img)) {
                model.words = words;
            }
            let want = LoginForm {
                username: &secrets.username,
                password_chars: secrets.password.expose().chars().count(),
                mode,
            };
            form::check_login(img, &model, reader, &want)
        }
        FormCheck::Device => {
            let Some(words) = ocr.and_then(|o| o.words_smooth(img)) else {
                return (
                    FormVerdict::Unseen("no OCR to read the device list".into()),
                    FormTargets::default(),
                );
            };
            model.words = words;
            let (verdict, row) = form::check_device(img, &model, device);
            let targets = FormTargets {
                device: row.map(|r| r.centre()),
                ..FormTargets::default()
            };
            return (convert(verdict), targets);
        }
        FormCheck::Code { step } => match &secrets.totp {
            Some(code) => {
                let code = code.code_at_step(step);
                form::check_code(img, &model, reader, code.expose())
            }
            None => Verdict::Unseen("no activation code loaded".into()),
        },
    };
    (convert(verdict), targets(&model, form))
}

fn convert(v: Verdict) -> FormVerdict {
    match v {
        Verdict::Matches => FormVerdict::Matches,
        Verdict::Differs(w) => FormVerdict::Differs(w),
        Verdict::Unseen(w) => FormVerdict::Unseen(w),
    }
}

/// Where to click for a refill: the fields' centres, the toggles' words.
fn targets(model: &Model, form: FormCheck) -> FormTargets {
    let centre = |f: &crate::screen::Field| f.rect.centre();
    match form {
        FormCheck::Login { .. } => {
            let (user, pass) = match (
                model.field_labelled("username"),
                model.field_labelled("password"),
            ) {
                (Some(u), Some(p)) => (Some(u), Some(p)),
                _ => (model.fields.first(), model.fields.get(1)),
            };
            let (live, paper) = form::toggle_words(model);
            FormTargets {
                username: user.map(centre),
                password: pass.map(centre),
                live: live.map(|r| r.centre()),
                paper: paper.map(|r| r.centre()),
                code: None,
                device: None,
            }
        }
        FormCheck::Code { .. } => FormTargets {
            code: model.fields.first().map(centre),
            ..FormTargets::default()
        },
        FormCheck::Device => FormTargets::default(),
    }
}
