//! The screen model on PNG fixtures the simulator rendered (`tests/screen.rs` writes them
//! with `IBWARDEN_WRITE_FIXTURES=DIR`): the login frame in the Metal, Nimbus and flat looks,
//! filled as `fixtureuser` / a 10-character password, with a 4-character password, with an
//! empty username, and with Paper Trading selected.

use super::form::{check_login, selected_mode, LoginForm, NoReader, Verdict};
use super::ocr::{lines, parse_tsv, Ocr};
use super::*;
use crate::core::TradingMode;

const LOOKS: [&str; 3] = ["metal", "nimbus", "flat"];

fn fixture(name: &str) -> Image {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/screen")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Image::from_png(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn two_fields_are_found_in_every_look_and_the_mask_is_counted() {
    for look in LOOKS {
        let m = Model::build(&fixture(&format!("login-{look}.png")));
        assert_eq!(m.fields.len(), 2, "{look}: {:?}", m.fields);
        let (user, pass) = (&m.fields[0], &m.fields[1]);
        assert!(user.rect.y < pass.rect.y, "{look}");
        assert!(
            user.rect.w >= 150 && (12..=30).contains(&user.rect.h),
            "{look}: {user:?}"
        );
        assert_eq!(user.glyphs.len(), "fixtureuser".len(), "{look}");
        assert_eq!(user.mask_count, None, "{look}: letters are no mask");
        assert_eq!(pass.mask_count, Some(10), "{look}: {:?}", pass.glyphs);

        let short = Model::build(&fixture(&format!("short-password-{look}.png")));
        assert_eq!(short.fields[1].mask_count, Some(4), "{look}");
        let empty = Model::build(&fixture(&format!("empty-user-{look}.png")));
        assert!(empty.fields[0].is_empty(), "{look}: {:?}", empty.fields[0]);
        assert_eq!(empty.fields[1].mask_count, Some(10), "{look}");
    }
}

#[test]
fn the_caret_is_not_a_glyph() {
    // Nimbus draws the caret touching the last asterisk: it must not merge into a wider glyph.
    let m = Model::build(&fixture("login-nimbus.png"));
    let pass = &m.fields[1];
    assert!(!pass.caret.is_empty(), "{pass:?}");
    let widths: Vec<u32> = pass.glyphs.iter().map(|g| g.w).collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "{widths:?}");
}

#[test]
fn models_hash_their_pixels() {
    let a = fixture("login-metal.png");
    let b = fixture("short-password-metal.png");
    assert_eq!(Model::build(&a).hash, pixel_hash(&a));
    assert_ne!(pixel_hash(&a), pixel_hash(&b));
}

#[test]
fn without_ocr_a_short_password_still_differs_and_a_full_one_is_unseen() {
    let want = LoginForm {
        username: "fixtureuser",
        password_chars: 10,
        mode: TradingMode::Live,
    };
    for look in LOOKS {
        let img = fixture(&format!("short-password-{look}.png"));
        let v = check_login(&img, &Model::build(&img), &NoReader, &want);
        assert!(matches!(v, Verdict::Differs(_)), "{look}: {v:?}");
        let img = fixture(&format!("login-{look}.png"));
        let v = check_login(&img, &Model::build(&img), &NoReader, &want);
        assert!(matches!(v, Verdict::Unseen(_)), "{look}: {v:?}");
    }
}

#[test]
fn masks_are_counted_from_shapes() {
    let dot = |x| Rect {
        x,
        y: 10,
        w: 3,
        h: 3,
    };
    assert_eq!(mask_count(&[]), Some(0));
    assert_eq!(mask_count(&[dot(0)]), Some(1));
    assert_eq!(mask_count(&[dot(0), dot(7), dot(14)]), Some(3));
    // Two touching glyphs: one shape a pitch plus a glyph wide.
    let merged = Rect {
        x: 14,
        y: 10,
        w: 10,
        h: 3,
    };
    assert_eq!(mask_count(&[dot(0), dot(7), merged]), Some(4));
    // A gap of two pitches is a missing glyph's place: still counted by shapes.
    assert_eq!(mask_count(&[dot(0), dot(14)]), Some(2));
    // Letters: taller than wide, uneven.
    let letter = |x, h| Rect { x, y: 5, w: 4, h };
    assert_eq!(mask_count(&[letter(0, 9), letter(6, 12)]), None);
}

#[test]
fn tsv_rows_become_words_and_lines() {
    let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
               1\t1\t0\t0\t0\t0\t0\t0\t540\t360\t-1\t\n\
               5\t1\t1\t1\t1\t1\t104\t85\t36\t11\t96.5\tLOGIN\n\
               5\t1\t2\t1\t1\t1\t104\t176\t64\t11\t91\tUsername\n\
               5\t1\t2\t1\t1\t2\t200\t176\t70\t11\t88\tfixtureuser\n\
               5\t1\t3\t1\t1\t1\tx\t1\t1\t1\t50\tbroken\n";
    let words = parse_tsv(tsv);
    assert_eq!(words.len(), 3);
    assert_eq!(
        words[1].rect,
        Rect {
            x: 104,
            y: 176,
            w: 64,
            h: 11
        }
    );
    assert_eq!(words[0].confidence, 96);
    assert_eq!(lines(&words), ["LOGIN", "Username fixtureuser"]);
}

/// With tesseract (installed by `scripts/install-deps`): labels, mode and the whole verdict.
#[test]
fn with_ocr_the_login_form_is_read_in_every_look() {
    let Some(ocr) = Ocr::find() else {
        panic!("tesseract is not installed: run scripts/install-deps");
    };
    let want = LoginForm {
        username: "fixtureuser",
        password_chars: 10,
        mode: TradingMode::Live,
    };
    for look in LOOKS {
        let img = fixture(&format!("login-{look}.png"));
        let mut m = Model::build(&img);
        m.words = ocr.words(&img).expect("ocr");
        assert_eq!(m.field_labelled("Username"), Some(&m.fields[0]), "{look}");
        assert_eq!(m.field_labelled("password"), Some(&m.fields[1]), "{look}");
        assert_eq!(
            check_login(&img, &m, &ocr, &want),
            Verdict::Matches,
            "{look}"
        );

        let paper = fixture(&format!("paper-{look}.png"));
        let mut m = Model::build(&paper);
        m.words = ocr.words(&paper).expect("ocr");
        assert_eq!(
            selected_mode(&paper, &m),
            Some(TradingMode::Paper),
            "{look}: {:?}",
            lines(&m.words)
        );
    }
}

#[test]
fn a_mask_wider_than_its_field_is_seen_as_overflowing_not_short() {
    let dot = |x| Rect {
        x,
        y: 10,
        w: 3,
        h: 3,
    };
    let field = |glyphs: Vec<Rect>| Field {
        rect: Rect {
            x: 100,
            y: 5,
            w: 100,
            h: 16,
        },
        mask_count: mask_count(&glyphs),
        glyphs,
        caret: Vec::new(),
    };
    // Ten dots from the left padding: fits.
    let fits = field((0..10).map(|i| dot(103 + 7 * i)).collect());
    assert!(!fits.overflows());
    // Scrolled: dots up to the right edge.
    let full = field((0..14).map(|i| dot(102 + 7 * i)).collect());
    assert_eq!(full.mask_count, Some(14));
    assert!(full.overflows());
    let want = LoginForm {
        username: "u",
        password_chars: 37,
        mode: TradingMode::Live,
    };
    let model = Model {
        fields: vec![field(vec![dot(103)]), full],
        words: Vec::new(),
        hash: 0,
    };
    let img = fixture("login-metal.png");
    match check_login(&img, &model, &NoReader, &want) {
        Verdict::Unseen(why) => assert!(why.contains("longer than its field"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn words_are_read_once_per_distinct_picture() {
    // A stand-in tesseract that counts its runs and prints one word.
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("tesseract");
    let count = dir.path().join("runs");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\ncat >/dev/null\necho x >> {}\nprintf 'level\\tpage_num\\tblock_num\\tpar_num\\tline_num\\tword_num\\tleft\\ttop\\twidth\\theight\\tconf\\ttext\\n5\\t1\\t1\\t1\\t1\\t1\\t2\\t2\\t8\\t8\\t90\\tOK\\n'\n",
            count.display()
        ),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ocr = Ocr::at(&bin);
    let a = fixture("login-metal.png");
    let b = fixture("short-password-metal.png");
    let runs = || {
        std::fs::read_to_string(&count)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(ocr.words(&a).expect("words")[0].text, "OK");
    assert_eq!(ocr.words(&a).expect("words").len(), 1);
    assert_eq!(runs(), 1, "the same pixels are read once");
    ocr.words(&b).expect("words");
    assert_eq!(runs(), 2, "other pixels are read again");
}
