//! Does a form hold what it must before it is submitted? A [`Model`] of the window against
//! what ibwarden meant to type. Any [`Verdict::Differs`] forbids the press; a
//! [`Verdict::Unseen`] means the model could not tell (no OCR, an unknown look), which the
//! core treats as the blind path it had before seeing.
//!
//! Verdicts never carry the secret or its length: "the password field does not hold as many
//! characters as the password" is as precise as a log line may be.

use super::{Field, Model, Rect};
use crate::core::TradingMode;
use crate::x11::screenshot::Image;

/// Whether a form may be submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Matches,
    /// Something is wrong: do not submit. Why, without secrets.
    Differs(String),
    /// The model could not check something (and nothing it checked was wrong). Why.
    Unseen(String),
}

/// Case-folded, trimmed, whitespace collapsed, `-` and `_` equal to a space: how labels,
/// titles and list rows are compared.
/// The same rule the dialog catalogue matches titles with.
pub fn normalise(text: &str) -> String {
    crate::core::dialog::normalise_title(text)
}

/// `text` with the characters OCR confuses folded together, spaces and underscores dropped
/// (OCR reads `_` as a space or not at all): how a field's OCR'd content is compared with
/// what was typed. `rn` reads as `m`, `vv` as `w`.
pub fn ocr_fold(text: &str) -> String {
    let lower = text.to_lowercase().replace("rn", "m").replace("vv", "w");
    lower
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .map(|c| match c {
            '0' | 'o' => 'o',
            '1' | 'l' | 'i' | '|' | '!' => 'l',
            '5' | 's' => 's',
            '8' | 'b' => 'b',
            c => c,
        })
        .collect()
}

/// What the login form must hold.
#[derive(Clone, Copy, Debug)]
pub struct LoginForm<'a> {
    /// The username, exactly.
    pub username: &'a str,
    /// The password's length in characters (the mask shows one glyph per character).
    pub password_chars: usize,
    /// The trading mode toggle.
    pub mode: TradingMode,
}

/// Reads a field's text (OCR of its interior); `None` when it cannot.
pub trait FieldReader {
    /// The text inside `field` of `img`; `digits`: only digits are expected.
    fn read(&self, img: &Image, field: &Field, digits: bool) -> Option<String>;

    /// A second, differently prepared reading of the same field, for when the first one
    /// does not match what was typed; `None` when the reader has no other way to look.
    fn read_closer(&self, _img: &Image, _field: &Field, _digits: bool) -> Option<String> {
        None
    }
}

impl FieldReader for super::ocr::Ocr {
    fn read(&self, img: &Image, field: &Field, digits: bool) -> Option<String> {
        self.line_in(img, field.rect, &field.caret, digits)
    }

    fn read_closer(&self, img: &Image, field: &Field, digits: bool) -> Option<String> {
        self.line_in_at(img, field.rect, &field.caret, digits, 4, 4)
    }
}

/// No OCR: reads nothing.
pub struct NoReader;

impl FieldReader for NoReader {
    fn read(&self, _: &Image, _: &Field, _: bool) -> Option<String> {
        None
    }
}

/// Collects the outcome of several checks: any difference wins over anything unseen.
#[derive(Default)]
struct Tally {
    differs: Vec<String>,
    unseen: Vec<String>,
}

impl Tally {
    fn verdict(self) -> Verdict {
        if !self.differs.is_empty() {
            Verdict::Differs(self.differs.join("; "))
        } else if !self.unseen.is_empty() {
            Verdict::Unseen(self.unseen.join("; "))
        } else {
            Verdict::Matches
        }
    }
}

/// The login frame's username and password fields: by their labels when OCR read them,
/// else the first two fields from the top (the order every gateway version has shown).
fn login_fields(model: &Model) -> Option<(&super::Field, &super::Field)> {
    if let (Some(u), Some(p)) = (
        model.field_labelled("username"),
        model.field_labelled("password"),
    ) {
        return Some((u, p));
    }
    match model.fields.as_slice() {
        [u, p, ..] => Some((u, p)),
        _ => None,
    }
}

/// Checks the login form of `img` (modelled as `model`) against `want`.
pub fn check_login(
    img: &Image,
    model: &Model,
    reader: &dyn FieldReader,
    want: &LoginForm,
) -> Verdict {
    let mut t = Tally::default();
    let Some((user, pass)) = login_fields(model) else {
        return Verdict::Unseen(format!(
            "no username and password fields found ({} text fields)",
            model.fields.len()
        ));
    };
    match pass.mask_count {
        Some(n) if n == want.password_chars => {}
        // Wider than the field: what shows is a window onto the mask, not all of it.
        Some(n) if pass.overflows() && n < want.password_chars => t
            .unseen
            .push("the password is longer than its field shows".into()),
        Some(_) => t
            .differs
            .push("the password field does not hold as many characters as the password".into()),
        None => t
            .unseen
            .push("the password field's mask could not be counted".into()),
    }
    if user.is_empty() {
        t.differs.push("the username field is empty".into());
    } else {
        match reader.read(img, user, false) {
            Some(text) if ocr_fold(&text) == ocr_fold(want.username) => {}
            Some(_) => t
                .differs
                .push("the username field holds something other than the username".into()),
            None => t.unseen.push("the username field could not be read".into()),
        }
    }
    match selected_mode(img, model) {
        Some(m) if m == want.mode => {}
        Some(m) => t
            .differs
            .push(format!("the trading mode toggle shows {}", m.as_str())),
        None => t
            .unseen
            .push("the trading mode toggle could not be read".into()),
    }
    t.verdict()
}

/// Checks that the second-factor dialog's code field holds `code` (and nothing else).
pub fn check_code(img: &Image, model: &Model, reader: &dyn FieldReader, code: &str) -> Verdict {
    let field = match model.fields.as_slice() {
        [f] => f,
        [] => return Verdict::Unseen("no code field found".into()),
        many => match many.iter().find(|f| !f.is_empty()) {
            Some(f) => f,
            None => return Verdict::Differs("every field is empty".into()),
        },
    };
    if field.is_empty() {
        return Verdict::Differs("the code field is empty".into());
    }
    let matches = |t: &str| t.replace(' ', "") == code;
    match reader.read(img, field, true) {
        Some(text) if matches(&text) => Verdict::Matches,
        // One OCR pass can misread a digit the field holds correctly (measured: tesseract
        // read 479778 as 479773 at 2x with a 12 px margin, and right at 4x with 4 px; but
        // 4x alone misreads others that 2x reads right). A second
        // reading, prepared differently, may decide, and only when the field shows as many
        // glyphs as the code has digits: a field holding more or fewer characters never
        // passes on a lucky second reading.
        Some(_) => match reader.read_closer(img, field, true) {
            Some(text) if matches(&text) && field.glyphs.len() == code.chars().count() => {
                Verdict::Matches
            }
            _ => Verdict::Differs("the code field holds something other than the code".into()),
        },
        None => Verdict::Unseen("the code field could not be read".into()),
    }
}

/// Other names IBKR's device list has used for the same device (normalised).
const DEVICE_ALIASES: &[(&str, &[&str])] = &[
    (
        "mobile authenticator app",
        &[
            "authenticator app",
            "mobile authenticator",
            "ibkr mobile authenticator app",
        ],
    ),
    ("ib key", &["ibkey", "ibkr mobile", "ib key (ibkr mobile)"]),
];

/// True if a list row's text names the device `want` (normalised, OCR confusions folded,
/// known aliases).
pub fn device_matches(row: &str, want: &str) -> bool {
    let (row, want) = (normalise(row), normalise(want));
    let same = |a: &str, b: &str| a == b || ocr_fold(a) == ocr_fold(b);
    if same(&row, &want) {
        return true;
    }
    DEVICE_ALIASES
        .iter()
        .filter(|(name, aliases)| same(name, &want) || aliases.iter().any(|a| same(a, &want)))
        .any(|(name, aliases)| same(name, &row) || aliases.iter().any(|a| same(a, &row)))
}

/// A line of words: its text and the box around them.
fn line_boxes(model: &Model) -> Vec<(String, Rect)> {
    let mut out: Vec<((u32, u32, u32), String, Rect)> = Vec::new();
    for w in &model.words {
        match out.iter_mut().find(|(k, _, _)| *k == w.line) {
            Some((_, text, r)) => {
                text.push(' ');
                text.push_str(&w.text);
                let (x1, y1) = (
                    (r.x + r.w).max(w.rect.x + w.rect.w),
                    (r.y + r.h).max(w.rect.y + w.rect.h),
                );
                r.x = r.x.min(w.rect.x);
                r.y = r.y.min(w.rect.y);
                r.w = x1 - r.x;
                r.h = y1 - r.y;
            }
            None => out.push((w.line, w.text.clone(), w.rect)),
        }
    }
    out.into_iter().map(|(_, t, r)| (t, r)).collect()
}

/// Checks that the device chooser's selected row is the device `want`: the row that reads
/// as it is drawn darker than the other rows of the list (a selection highlight). Returns
/// the row's box too (a click on it selects it).
pub fn check_device(img: &Image, model: &Model, want: &str) -> (Verdict, Option<Rect>) {
    let lines = line_boxes(model);
    let Some((_, row)) = lines.iter().find(|(t, _)| device_matches(t, want)) else {
        return (
            Verdict::Unseen("no row of the list reads as the configured device".into()),
            None,
        );
    };
    let Some(mine) = face_inside(img, *row) else {
        return (
            Verdict::Unseen("the row's background could not be read".into()),
            Some(*row),
        );
    };
    // The other rows: lines that overlap the row's column (the list), not the prompt above.
    let others: Vec<u8> = lines
        .iter()
        .filter(|(_, r)| r != row && r.x < row.x + row.w && row.x < r.x + r.w)
        .filter(|(t, _)| {
            !normalise(t).contains("second factor")
                && !matches!(normalise(t).as_str(), "ok" | "cancel" | "ok cancel")
        })
        .filter_map(|(_, r)| face_inside(img, *r))
        .collect();
    let lightest_other = others.iter().copied().max().unwrap_or(255);
    if u16::from(mine) + 8 <= u16::from(lightest_other) {
        (Verdict::Matches, Some(*row))
    } else {
        (
            Verdict::Differs("the configured device is not the selected row".into()),
            Some(*row),
        )
    }
}

/// The mode a pair of `Live …`/`Paper …` toggles shows: the selected one is drawn darker
/// than its twin (Metal, Nimbus and flat looks alike). `None` if the words were not read or
/// the two look the same.
pub fn selected_mode(img: &Image, model: &Model) -> Option<TradingMode> {
    let (live, paper) = toggle_words(model);
    let (live, paper) = (live?, paper?);
    let (l, p) = (background(img, live)?, background(img, paper)?);
    // A clear difference only: two unselected toggles differ by antialiasing noise.
    if l.abs_diff(p) < 8 {
        return None;
    }
    Some(if l < p {
        TradingMode::Live
    } else {
        TradingMode::Paper
    })
}

/// The boxes of the `Live …` and `Paper …` toggles' first words. OCR often loses the first
/// letters of light text on a dark face (`Live` reads `ive` or `ve`), so the live toggle is
/// the short word ending in "ve" on the paper toggle's row.
pub fn toggle_words(model: &Model) -> (Option<Rect>, Option<Rect>) {
    // The first word of what OCR read (`Paper-Trading` reads as one word in 10.37.1q).
    let clean = |t: &str| {
        normalise(t)
            .split(' ')
            .next()
            .unwrap_or("")
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_string()
    };
    let Some(paper) = model
        .words
        .iter()
        .find(|w| clean(&w.text) == "paper")
        .map(|w| w.rect)
    else {
        return (None, None);
    };
    let live = model
        .words
        .iter()
        .find(|w| {
            let t = clean(&w.text);
            t.len() <= 4 && t.ends_with("ve") && paper.same_row(&w.rect)
        })
        .map(|w| w.rect);
    (live, Some(paper))
}

/// The median luma of the pixels in a band just around a word's box (the face it is drawn
/// on, not its ink): a toggle's face extends well beyond its label.
fn background(img: &Image, r: Rect) -> Option<u8> {
    let mut v: Vec<u8> = Vec::new();
    let (x0, x1) = (r.x.saturating_sub(3), (r.x + r.w + 3).min(img.width - 1));
    for y in [r.y.saturating_sub(3), (r.y + r.h + 2).min(img.height - 1)] {
        for x in x0..=x1 {
            v.push(super::luma(img, x, y));
        }
    }
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The face a list row's words are drawn on: the median luma inside their box (strokes are
/// thin, the face fills most of it; a band around it would reach into the next row).
fn face_inside(img: &Image, r: Rect) -> Option<u8> {
    let mut v: Vec<u8> = Vec::new();
    let (x1, y1) = ((r.x + r.w).min(img.width), (r.y + r.h).min(img.height));
    for y in r.y..y1 {
        for x in r.x..x1 {
            v.push(super::luma(img, x, y));
        }
    }
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rows_match_by_normalised_text_and_aliases() {
        assert!(device_matches(
            " Mobile  Authenticator APP ",
            "Mobile Authenticator app"
        ));
        assert!(device_matches(
            "Mobile-Authenticator app",
            "Mobile Authenticator app"
        ));
        assert!(device_matches("IBKR Mobile", "IB Key"));
        assert!(device_matches("IB Key", "ibkey"));
        assert!(!device_matches("IB Key", "Mobile Authenticator app"));
        assert!(!device_matches("Security Code Card", "IB Key"));
    }

    #[test]
    fn normalising_ignores_case_spacing_and_dashes() {
        assert_eq!(normalise("  IB   Key "), "ib key");
        assert_eq!(
            normalise("Mobile-Authenticator  App"),
            "mobile authenticator app"
        );
        assert_eq!(normalise("IBKR-Gateway"), normalise("IBKR Gateway"));
    }

    #[test]
    fn ocr_folding_forgives_confusions_but_not_missing_characters() {
        assert_eq!(ocr_fold("dem0_trader"), ocr_fold("demo_trader"));
        assert_eq!(ocr_fold("fixtureuser"), ocr_fold("flxtureuser"));
        assert_eq!(ocr_fold("demo trader"), ocr_fold("demo_trader"));
        assert_ne!(ocr_fold("demo_trade"), ocr_fold("demo_trader"));
        assert_ne!(ocr_fold("demodemo_trader"), ocr_fold("demo_trader"));
        assert_ne!(ocr_fold(""), ocr_fold("x"));
    }
}
