//! The screen model: what a window shows, read from its pixels, so that nothing that
//! spends a login attempt or a code is pressed before ibwarden has seen the form hold what
//! it should.
//!
//! Pure where it can be: [`Model::build`] turns a window's RGB pixels into elements found
//! from geometry alone (text fields: a light interior inside a thin darker border; the ink
//! inside them; password masks counted as glyphs), and [`ocr`] adds the words tesseract
//! reads with their boxes. [`form`] compares a model with what a form must hold.
//!
//! These are heuristics for how Swing draws, not coordinates of one gateway: no position,
//! size or colour of a particular window is assumed. The rules hold for Swing's Metal and
//! Nimbus looks and a flat theme (`tests/screen.rs` runs them against the simulator in each):
//! - a text field's interior is near-white and at least 40 px wide and 10-60 px tall, with
//!   a border that differs from it on all four sides, and padding columns that text does not
//!   reach;
//! - a password mask is a row of identical glyphs (dots, bullets or asterisks) at a fixed
//!   pitch; the caret is a thin vertical bar;
//! - a selected toggle is drawn darker than its unselected twin.

pub mod form;
pub mod inspect;
pub mod ocr;

use crate::x11::screenshot::Image;

/// A rectangle in window pixels (`x`, `y` of the top-left corner; exclusive of `x + w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// The centre (for clicks).
    pub fn centre(&self) -> (u32, u32) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }

    /// True if `other`'s centre lies in this rectangle's rows.
    pub fn same_row(&self, other: &Rect) -> bool {
        let c = other.y + other.h / 2;
        c >= self.y && c < self.y + self.h
    }
}

/// A text field found on screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its interior (inside the border).
    pub rect: Rect,
    /// Ink glyphs inside (connected dark shapes, the caret excluded).
    pub glyphs: Vec<Rect>,
    /// The field's glyphs read as a password mask: how many mask characters it shows, when
    /// they look like one (same size, fixed pitch).
    pub mask_count: Option<usize>,
    /// Columns (window x) of the text caret, if it is drawn: blanked before OCR, which would
    /// read it as `|` or `1`.
    pub caret: Vec<u32>,
}

impl Field {
    /// True if nothing is drawn in it (the caret aside).
    pub fn is_empty(&self) -> bool {
        self.glyphs.is_empty()
    }

    /// True if the glyphs run to an edge of the interior: the text is wider than the field
    /// and Swing scrolled it, so only part of it is on screen (a long password's mask).
    pub fn overflows(&self) -> bool {
        let (Some(first), Some(last)) = (self.glyphs.first(), self.glyphs.last()) else {
            return false;
        };
        let pitch = self
            .glyphs
            .windows(2)
            .map(|p| p[1].x - p[0].x)
            .min()
            .unwrap_or(first.w + 2);
        let right = self.rect.x + self.rect.w;
        first.x <= self.rect.x + 1 || last.x + last.w + pitch >= right
    }
}

/// What one window shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// Text fields, top to bottom, then left to right.
    pub fields: Vec<Field>,
    /// Words read by OCR (empty when no OCR ran).
    pub words: Vec<ocr::Word>,
    /// A hash of the pixels the model was built from (models are cached by it).
    pub hash: u64,
}

/// Luma (ITU-R BT.601), 0-255.
fn luma(img: &Image, x: u32, y: u32) -> u8 {
    let i = ((y * img.width + x) * 3) as usize;
    img.rgb.get(i..i + 3).map_or(0, luma_rgb)
}

/// Luma of one RGB pixel.
pub(crate) fn luma_rgb(p: &[u8]) -> u8 {
    ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) / 1000) as u8
}

/// A field interior's background: near white.
const LIGHT: u8 = 248;
/// Ink: this much darker than the interior.
const INK_DELTA: u8 = 90;
const MIN_FIELD_W: u32 = 40;
const MIN_FIELD_H: u32 = 10;
const MAX_FIELD_H: u32 = 60;

fn light(img: &Image, x: u32, y: u32) -> bool {
    luma(img, x, y) >= LIGHT
}

/// Share of `x0..=x1` on row `y` that is not light.
fn dark_share(img: &Image, y: u32, x0: u32, x1: u32) -> f32 {
    let n = (x0..=x1).filter(|&x| !light(img, x, y)).count();
    n as f32 / (x1 - x0 + 1) as f32
}

/// FNV-1a over the pixels and the size.
pub fn pixel_hash(img: &Image) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in img
        .width
        .to_le_bytes()
        .iter()
        .chain(img.height.to_le_bytes().iter())
        .chain(img.rgb.iter())
    {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Model {
    /// The elements found in `img` from geometry and pixels alone (no OCR).
    pub fn build(img: &Image) -> Model {
        let mut fields: Vec<Field> = find_field_rects(img)
            .into_iter()
            .map(|rect| {
                let (glyphs, caret) = glyphs(img, rect);
                let mask_count = mask_count(&glyphs);
                Field {
                    rect,
                    glyphs,
                    mask_count,
                    caret,
                }
            })
            .collect();
        fields.sort_by_key(|f| (f.rect.y, f.rect.x));
        Model {
            fields,
            words: Vec::new(),
            hash: pixel_hash(img),
        }
    }

    /// Words on the same row as `rect` and left of it, joined: a field's label.
    pub fn label_of(&self, rect: &Rect) -> String {
        let mut words: Vec<&ocr::Word> = self
            .words
            .iter()
            .filter(|w| rect.same_row(&w.rect) && w.rect.x + w.rect.w <= rect.x)
            .collect();
        words.sort_by_key(|w| w.rect.x);
        words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The field labelled `label` (case-insensitive, OCR'd words left of the field).
    pub fn field_labelled(&self, label: &str) -> Option<&Field> {
        let want = form::normalise(label);
        self.fields
            .iter()
            .find(|f| form::normalise(&self.label_of(&f.rect)).ends_with(&want))
    }
}

/// Interiors of text fields: a light rectangle whose top and bottom rows are bounded by a
/// darker line, and whose left and right columns stay light from top to bottom.
fn find_field_rects(img: &Image) -> Vec<Rect> {
    let mut found: Vec<Rect> = Vec::new();
    if img.width < MIN_FIELD_W + 2 || img.height < MIN_FIELD_H + 2 {
        return found;
    }
    for y in 1..img.height - 1 {
        let mut x = 1;
        while x < img.width - 1 {
            if !light(img, x, y) {
                x += 1;
                continue;
            }
            let x0 = x;
            while x < img.width - 1 && light(img, x, y) {
                x += 1;
            }
            let x1 = x - 1;
            if x1 - x0 + 1 < MIN_FIELD_W || found.iter().any(|r| r.x == x0 && y < r.y + r.h) {
                continue;
            }
            // The top of an interior: a border line right above it.
            if dark_share(img, y - 1, x0, x1) < 0.9 {
                continue;
            }
            if let Some(h) = interior_height(img, x0, x1, y) {
                found.push(Rect {
                    x: x0,
                    y,
                    w: x1 - x0 + 1,
                    h,
                });
            }
        }
    }
    found
}

/// From the top row `y` of a candidate interior `x0..=x1`: its height, if a border line
/// closes it within the allowed height while both side columns stay light.
fn interior_height(img: &Image, x0: u32, x1: u32, y: u32) -> Option<u32> {
    let limit = (y + MAX_FIELD_H + 1).min(img.height - 1);
    for yy in y + 1..=limit {
        if !light(img, x0, yy) || !light(img, x1, yy) {
            // The side columns end: is this the bottom border?
            let h = yy - y;
            return (dark_share(img, yy, x0, x1) >= 0.9
                && closed_sides(img, x0, x1, y, h)
                && h >= MIN_FIELD_H)
                .then_some(h);
        }
    }
    None
}

/// The columns just outside the interior are darker (a border), at mid-height.
fn closed_sides(img: &Image, x0: u32, x1: u32, y: u32, h: u32) -> bool {
    let mid = y + h / 2;
    x0 >= 1 && x1 + 1 < img.width && !light(img, x0 - 1, mid) && !light(img, x1 + 1, mid)
}

/// Connected shapes of ink (8-connected) inside `rect`, left to right, and the caret's
/// columns. The caret is a bar at most 2 px wide, at least half the interior tall, and
/// taller than any other stroke (it spans ascent and descent); it is removed first, since it
/// often touches the last glyph.
fn glyphs(img: &Image, rect: Rect) -> (Vec<Rect>, Vec<u32>) {
    let (w, h) = (rect.w as usize, rect.h as usize);
    let threshold = LIGHT.saturating_sub(INK_DELTA);
    let mut ink: Vec<bool> = (0..h)
        .flat_map(|yy| (0..w).map(move |xx| (rect.x + xx as u32, rect.y + yy as u32)))
        .map(|(x, y)| luma(img, x, y) < threshold)
        .collect();
    // Per column: the longest vertical run of ink, as (length, top, bottom).
    let runs: Vec<(usize, usize, usize)> = (0..w)
        .map(|x| {
            let (mut best, mut run) = ((0, 0, 0), 0);
            for y in 0..h {
                run = if ink[y * w + x] { run + 1 } else { 0 };
                if run > best.0 {
                    best = (run, y + 1 - run, y);
                }
            }
            best
        })
        .collect();
    let tall: Vec<bool> = runs.iter().map(|r| r.0 * 2 >= h).collect();
    let mut caret = Vec::new();
    let mut x = 0;
    while x < w {
        if !tall[x] {
            x += 1;
            continue;
        }
        let start = x;
        while x < w && tall[x] {
            x += 1;
        }
        // Taller than every other stroke by 2 px: the caret spans ascent and descent, a
        // letter's or digit's stem only the ascent.
        let bar = (start..x).map(|cx| runs[cx].0).max().unwrap_or(0);
        let others = (0..w)
            .filter(|cx| !(start..x).contains(cx))
            .map(|cx| runs[cx].0)
            .max()
            .unwrap_or(0);
        if x - start <= 2 && bar >= others + 2 {
            for cx in start..x {
                caret.push(rect.x + cx as u32);
                for y in 0..h {
                    ink[y * w + cx] = false;
                }
            }
        }
    }
    let mut seen = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !ink[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut minx, mut maxx, mut miny, mut maxy) = (w, 0, h, 0);
        while let Some(i) = stack.pop() {
            let (cx, cy) = (i % w, i / w);
            minx = minx.min(cx);
            maxx = maxx.max(cx);
            miny = miny.min(cy);
            maxy = maxy.max(cy);
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (cx as i64 + dx, cy as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= h as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if ink[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let (gw, gh) = ((maxx - minx + 1) as u32, (maxy - miny + 1) as u32);
        out.push(Rect {
            x: rect.x + minx as u32,
            y: rect.y + miny as u32,
            w: gw,
            h: gh,
        });
    }
    out.sort_by_key(|r| (r.x, r.y));
    (out, caret)
}

/// How many mask characters `glyphs` show, if they look like a password mask: shapes of
/// one size on one baseline at a fixed pitch (touching glyphs merge into a wider shape that
/// is a whole number of pitches wide). `Some(0)` for an empty field.
pub fn mask_count(glyphs: &[Rect]) -> Option<usize> {
    if glyphs.is_empty() {
        return Some(0);
    }
    let first = glyphs[0];
    // One row, same height, same top (±1 px).
    if glyphs
        .iter()
        .any(|g| g.h.abs_diff(first.h) > 1 || g.y.abs_diff(first.y) > 1)
    {
        return None;
    }
    // A mask glyph is small and squat; letters are taller than wide or vary.
    let unit = glyphs.iter().map(|g| g.w).min().unwrap_or(1).max(1);
    if first.h > unit * 3 {
        return None;
    }
    if glyphs.len() == 1 {
        return (first.w <= unit).then_some(1);
    }
    // Pitch: the smallest gap between left edges of neighbours of unit width.
    let pitches: Vec<u32> = glyphs.windows(2).map(|p| p[1].x - p[0].x).collect();
    let pitch = *pitches.iter().min().unwrap_or(&unit);
    if pitch == 0 {
        return None;
    }
    let mut count = 0usize;
    for (i, g) in glyphs.iter().enumerate() {
        // A merged shape spans k glyphs: (k - 1) pitches plus one glyph.
        let k = (g.w.saturating_sub(unit) + pitch / 2) / pitch + 1;
        count += k as usize;
        if let Some(next) = glyphs.get(i + 1) {
            // Neighbours sit a whole number of pitches apart.
            let step = next.x - g.x;
            let whole = (step + pitch / 2) / pitch;
            if whole == 0 || step.abs_diff(whole * pitch) > 1 + whole / 4 {
                return None;
            }
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests;
