//! The screen model against what the simulator really draws under Xvfb, in each of the three
//! looks (Metal, Nimbus, flat): the login form is read as typed, and every way it can be
//! wrong (short password, missing or extra username characters, the other mode) is seen.
//!
//! `IBWARDEN_WRITE_FIXTURES=DIR` also writes the captures as PNGs (how the fixtures of
//! `src/screen/tests.rs` were made).
mod common;

use std::time::Duration;

use common::{is_ev, Scenario, Session, STEP_TIMEOUT};
use ibwarden::core::TradingMode;
use ibwarden::screen::form::{check_code, check_login, selected_mode, LoginForm, Verdict};
use ibwarden::screen::ocr::Ocr;
use ibwarden::screen::Model;
use ibwarden::x11::screenshot::{capture, capture_settled, Image};
use ibwarden::x11::DisplayTarget;

const LOOKS: [&str; 3] = ["metal", "nimbus", "flat"];
const USER: &str = "fixtureuser";
const PASSWORD: &str = "Secret-pw!";

fn ocr() -> Ocr {
    common::require_tool("tesseract", "tesseract-ocr");
    Ocr::find().expect("tesseract on PATH")
}

fn target(s: &Session) -> DisplayTarget {
    DisplayTarget {
        name: s.xvfb.display.clone(),
        xauthority: Some(s.xvfb.xauthority.clone()),
    }
}

/// The login frame of a simulator in `look`, after `fill` typed into it.
fn login_after(
    name: &str,
    look: &str,
    extra: &[(&str, &str)],
    fill: impl FnOnce(&mut Session),
) -> Image {
    let mut sc = Scenario::new().set("look", look);
    for (k, v) in extra {
        sc = sc.set(k, v);
    }
    let mut s = Session::start(&sc);
    s.rec.wait_for("initial focus", STEP_TIMEOUT, |v| {
        is_ev(v, "focus") && v["field"] == "username"
    });
    let win = s.focus(&s.install.login_title());
    fill(&mut s);
    let img = capture_settled(&target(&s), Some(win.id), Duration::from_secs(2)).expect("capture");
    if let Some(dir) = std::env::var_os("IBWARDEN_WRITE_FIXTURES") {
        let name = format!("{name}-{look}.png");
        std::fs::write(
            std::path::Path::new(&dir).join(name),
            img.to_png().expect("png"),
        )
        .expect("write fixture");
    }
    img
}

/// Types `text` and waits until the simulator received its last character.
fn type_and_wait(s: &mut Session, text: &str) {
    s.x.type_text(text);
    let last = text.chars().last().expect("text").to_string();
    s.rec.wait_for("typed", STEP_TIMEOUT, |v| {
        is_ev(v, "key") && v["char"] == last.as_str()
    });
}

fn fill(user: &'static str, password: &'static str) -> impl FnOnce(&mut Session) {
    move |s| {
        if !user.is_empty() {
            type_and_wait(s, user);
        }
        s.move_focus("Tab", "password");
        if !password.is_empty() {
            type_and_wait(s, password);
        }
    }
}

fn verdict(img: &Image, mode: TradingMode) -> Verdict {
    let ocr = ocr();
    let mut model = Model::build(img);
    model.words = ocr.words(img).expect("ocr words");
    let want = LoginForm {
        username: USER,
        password_chars: PASSWORD.chars().count(),
        mode,
    };
    check_login(img, &model, &ocr, &want)
}

#[test]
fn every_look_reads_the_login_form_as_typed() {
    for look in LOOKS {
        let img = login_after("login", look, &[], fill(USER, PASSWORD));
        assert_eq!(verdict(&img, TradingMode::Live), Verdict::Matches, "{look}");
        // The same pixels against the other mode: the toggle is seen.
        assert!(
            matches!(verdict(&img, TradingMode::Paper), Verdict::Differs(w) if w.contains("mode")),
            "{look}"
        );
    }
}

#[test]
fn a_short_password_is_seen_in_every_look() {
    for look in LOOKS {
        let img = login_after("short-password", look, &[], fill(USER, "Secr"));
        match verdict(&img, TradingMode::Live) {
            Verdict::Differs(why) => {
                assert!(why.contains("password field"), "{look}: {why}");
                // Neither the password nor its length is in the verdict.
                assert!(!why.contains("Secr") && !why.contains('4') && !why.contains("10"));
            }
            other => panic!("{look}: {other:?}"),
        }
    }
}

#[test]
fn an_empty_or_wrong_username_is_seen() {
    for look in LOOKS {
        let empty = login_after("empty-user", look, &[], fill("", PASSWORD));
        assert!(
            matches!(verdict(&empty, TradingMode::Live), Verdict::Differs(w) if w.contains("username field is empty")),
            "{look}"
        );
        let short = login_after("short-user", look, &[], fill("fixtureuse", PASSWORD));
        assert!(
            matches!(verdict(&short, TradingMode::Live), Verdict::Differs(w) if w.contains("username")),
            "{look}"
        );
    }
}

#[test]
fn a_prefilled_username_with_ours_appended_is_seen() {
    let img = login_after(
        "prefilled",
        "metal",
        &[("prefill_username", "olduser")],
        fill(USER, PASSWORD),
    );
    assert!(matches!(
        verdict(&img, TradingMode::Live),
        Verdict::Differs(w) if w.contains("username")
    ));
}

#[test]
fn the_paper_toggle_is_seen_in_every_look() {
    for look in LOOKS {
        let img = login_after("paper", look, &[], |s| {
            s.move_focus("shift+Tab", "Paper Trading");
            s.x.key("space");
            s.rec.wait_for("paper selected", STEP_TIMEOUT, |v| {
                is_ev(v, "toggle") && v["name"] == "Paper Trading"
            });
        });
        let ocr = ocr();
        let mut model = Model::build(&img);
        model.words = ocr.words(&img).expect("ocr");
        assert_eq!(
            selected_mode(&img, &model),
            Some(TradingMode::Paper),
            "{look}"
        );
    }
}

/// Codes read exactly, leading zeros and look-alike digits (3/5/8/9) included: a misread
/// here is a refill, and a refill costs a second.
#[test]
fn the_code_field_is_read_in_every_look() {
    let codes = [
        "000013", "093719", "583229", "374837", "723788", "979033", "140572", "555888", "479778",
        "888888", "383838",
    ];
    for look in LOOKS {
        let sc = Scenario::new()
            .set("look", look)
            .set("twofa_timeout_s", 100000);
        let mut s = Session::start(&sc);
        s.type_login(common::TEST_USER, common::TEST_PASSWORD);
        let title = s.install.twofa_title();
        s.rec.wait_window(&title, STEP_TIMEOUT);
        let win = s.focus(&title);
        let ocr = ocr();
        for code in codes {
            s.x.key("ctrl+a");
            let mark = s.rec.events().len();
            s.x.type_text(code);
            let last = code[5..].to_string();
            s.rec.wait_from(mark, "code typed", STEP_TIMEOUT, |v| {
                is_ev(v, "key") && v["char"] == last.as_str()
            });
            let img = capture_settled(&target(&s), Some(win.id), Duration::from_secs(2))
                .expect("capture");
            let model = Model::build(&img);
            assert_eq!(
                check_code(&img, &model, &ocr, code),
                Verdict::Matches,
                "{look} {code}"
            );
            let other = format!(
                "{:06}",
                (code.parse::<u32>().expect("digits") + 1) % 1_000_000
            );
            assert!(
                matches!(check_code(&img, &model, &ocr, &other), Verdict::Differs(_)),
                "{look} {code} vs {other}"
            );
        }
    }
}

/// The device chooser: rows read even on the selection's colour; the configured row is told
/// apart from the selected one, and seen selected once it is.
#[test]
fn the_device_chooser_shows_which_row_is_selected() {
    for look in ["metal", "nimbus", "flat"] {
        let sc = Scenario::new()
            .set("look", look)
            .set(
                "devices",
                "IB Key,mobile  authenticator APP,Security Code Card",
            )
            .set("twofa_timeout_s", 100000);
        let mut s = Session::start(&sc);
        s.type_login(common::TEST_USER, common::TEST_PASSWORD);
        let title = s.install.twofa_title();
        s.rec.wait_window(&title, STEP_TIMEOUT);
        let win = s.focus(&title);
        let ocr = ocr();
        let look_at = |s: &Session| {
            let img =
                capture_settled(&target(s), Some(win.id), Duration::from_secs(2)).expect("capture");
            let mut model = Model::build(&img);
            model.words = ocr.words_smooth(&img).expect("ocr");
            ibwarden::screen::form::check_device(&img, &model, "Mobile Authenticator app")
        };
        // IB Key is preselected: the authenticator row is found, and not selected.
        let (v, row) = look_at(&s);
        assert!(matches!(v, Verdict::Differs(_)), "{look}: {v:?}");
        let row = row.expect("the row's box");
        // Down selects the next row, the authenticator app: now it is seen selected.
        let before =
            capture_settled(&target(&s), Some(win.id), Duration::from_secs(2)).expect("capture");
        s.x.key("Down");
        s.rec.wait_for("selection moved", STEP_TIMEOUT, |e| {
            is_ev(e, "list_selection") && e["value"] == "mobile  authenticator APP"
        });
        // The model changes before Swing repaints; on a loaded machine the repaint can come
        // after a "settled" capture of the old picture. Wait for the picture to change.
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        while capture(&target(&s), Some(win.id)).expect("capture") == before {
            assert!(
                std::time::Instant::now() < deadline,
                "{look}: the list was never repainted after Down"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (v, _) = look_at(&s);
        // Nimbus draws the selection dark with light text, which OCR does not read: unseen,
        // never a false match.
        if look == "nimbus" {
            assert!(!matches!(v, Verdict::Differs(_)), "{look}: {v:?}");
        } else {
            assert_eq!(v, Verdict::Matches, "{look}: row {row:?}");
        }
    }
}

/// A code field the simulator drew in a CI run (the code dialog, 479778 typed). One OCR
/// pass read it as 479773, so a correctly filled form was refused three times and the login
/// started over. On a mismatch the check now looks again, at 4x.
#[test]
fn a_code_with_an_eight_is_read_as_typed_and_a_wrong_code_still_differs() {
    let path = common::repo_root().join("tests/fixtures/screen/code-479778.png");
    let img = Image::from_png(&std::fs::read(&path).expect("fixture")).expect("png");
    let model = Model::build(&img);
    let ocr = ocr();
    assert_eq!(check_code(&img, &model, &ocr, "479778"), Verdict::Matches);
    // (Not 479773: that is what the first pass reads here, so for a code typed as 479773
    // this picture is exactly what a correct field would look like to it.)
    for wrong in ["479788", "47977", "4797788", "179778", "000000"] {
        assert!(
            matches!(check_code(&img, &model, &ocr, wrong), Verdict::Differs(_)),
            "{wrong} must not pass for a field holding 479778"
        );
    }
}
