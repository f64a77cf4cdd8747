//! Words and their boxes, read by tesseract (`tsv` output), and the crops fed to it.
//!
//! A whole window is read once per model (`--psm 11`: sparse text, as a dialog's labels and
//! buttons are); a field's content is read from a crop of its interior scaled ×2 (bilinear) with a white
//! margin (`--psm 7`: one line), where tesseract is far more accurate than on 12 px text.

use std::path::Path;

use super::Rect;
use crate::x11::screenshot::Image;

/// One word tesseract read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The text.
    pub text: String,
    /// Its box, in the pixels of the image read.
    pub rect: Rect,
    /// tesseract's confidence, 0-100.
    pub confidence: u8,
    /// Words of one line share this (block, paragraph, line).
    pub line: (u32, u32, u32),
}

/// Parses tesseract's TSV: level 5 rows are words (`level page_num block_num par_num
/// line_num word_num left top width height conf text`). Rows that do not parse are skipped.
pub fn parse_tsv(tsv: &str) -> Vec<Word> {
    let mut words = Vec::new();
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < 12 || cols[0] != "5" {
            continue;
        }
        let num = |i: usize| cols[i].trim().parse::<u32>().ok();
        let (Some(block), Some(par), Some(line)) = (num(2), num(3), num(4)) else {
            continue;
        };
        let (Some(x), Some(y), Some(w), Some(h)) = (num(6), num(7), num(8), num(9)) else {
            continue;
        };
        let confidence = cols[10].trim().parse::<f32>().unwrap_or(-1.0);
        let text = cols[11].trim();
        if text.is_empty() || confidence < 0.0 {
            continue;
        }
        words.push(Word {
            text: text.to_string(),
            rect: Rect { x, y, w, h },
            confidence: confidence.clamp(0.0, 100.0) as u8,
            line: (block, par, line),
        });
    }
    words
}

/// Words of one line joined by spaces, lines in reading order.
pub fn lines(words: &[Word]) -> Vec<String> {
    let mut out: Vec<((u32, u32, u32), String)> = Vec::new();
    for w in words {
        match out.iter_mut().find(|(k, _)| *k == w.line) {
            Some((_, text)) => {
                text.push(' ');
                text.push_str(&w.text);
            }
            None => out.push((w.line, w.text.clone())),
        }
    }
    out.into_iter().map(|(_, t)| t).collect()
}

/// `rect` of `img`, scaled by `scale` (bilinear: tesseract misreads the blocky digits a
/// nearest-neighbour upscale makes of antialiased text) inside a white margin, with the
/// columns in `blank` left white.
pub fn crop_scaled(img: &Image, rect: Rect, scale: u32, margin: u32, blank: &[u32]) -> Image {
    scaled(img, rect, scale, margin, blank, true)
}

/// Like [`crop_scaled`], nearest neighbour when `smooth` is false (better for a whole
/// window's labels and buttons, measured on the three looks).
fn scaled(img: &Image, rect: Rect, scale: u32, margin: u32, blank: &[u32], smooth: bool) -> Image {
    let (w, h) = (rect.w * scale + 2 * margin, rect.h * scale + 2 * margin);
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    let px = |x: u32, y: u32, c: usize| -> f32 {
        let (x, y) = (x.min(img.width - 1), y.min(img.height - 1));
        if blank.contains(&x) {
            return 255.0;
        }
        img.rgb
            .get(((y * img.width + x) * 3) as usize + c)
            .map_or(255.0, |v| f32::from(*v))
    };
    for y in 0..rect.h * scale {
        for x in 0..rect.w * scale {
            // The source point of this pixel's centre, between four source pixels.
            let (fx, fy) = if smooth {
                (
                    ((x as f32 + 0.5) / scale as f32 - 0.5).max(0.0),
                    ((y as f32 + 0.5) / scale as f32 - 0.5).max(0.0),
                )
            } else {
                ((x / scale) as f32, (y / scale) as f32)
            };
            let (x0, y0) = (fx as u32, fy as u32);
            let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
            let (sx, sy) = (rect.x + x0, rect.y + y0);
            let x1 = (sx + 1).min(rect.x + rect.w - 1);
            let y1 = (sy + 1).min(rect.y + rect.h - 1);
            let dst = (((y + margin) * w + x + margin) * 3) as usize;
            for c in 0..3 {
                let top = px(sx, sy, c) * (1.0 - ax) + px(x1, sy, c) * ax;
                let bottom = px(sx, y1, c) * (1.0 - ax) + px(x1, y1, c) * ax;
                if let Some(d) = rgb.get_mut(dst + c) {
                    *d = (top * (1.0 - ay) + bottom * ay).round() as u8;
                }
            }
        }
    }
    Image {
        width: w,
        height: h,
        rgb,
    }
}

/// How many windows' words are remembered (by a hash of their pixels).
const CACHED: usize = 8;

/// Words already read, by (pixel hash, smooth).
type WordCache =
    std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<(u64, bool, Vec<Word>)>>>;

/// tesseract at a path, with the words of the last few windows it read cached by a hash of
/// their pixels: a check that runs again on an unchanged window (a voided check, a refill
/// that changed nothing) costs no second OCR.
#[derive(Clone, Debug)]
pub struct Ocr {
    bin: std::path::PathBuf,
    cache: WordCache,
}

impl Ocr {
    /// tesseract from PATH, if installed.
    pub fn find() -> Option<Ocr> {
        crate::dialog_text::find_on_path("tesseract").map(|bin| Ocr {
            bin,
            cache: WordCache::default(),
        })
    }

    /// tesseract at `bin`.
    pub fn at(bin: &Path) -> Ocr {
        Ocr {
            bin: bin.to_path_buf(),
            cache: WordCache::default(),
        }
    }

    /// Every word of `img` with its box. `None` if tesseract failed. The window is read
    /// at twice its size: at 1:1 tesseract loses light text on a selected (dark) toggle.
    pub fn words(&self, img: &Image) -> Option<Vec<Word>> {
        self.cached(img, false, || self.words_scaled(img, false))
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, bool, Vec<Word>)>> {
        match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The words of `img` from the cache, or read by `read` and remembered.
    fn cached(
        &self,
        img: &Image,
        smooth: bool,
        read: impl FnOnce() -> Option<Vec<Word>>,
    ) -> Option<Vec<Word>> {
        let hash = super::pixel_hash(img);
        let hit = self
            .lock()
            .iter()
            .find(|(h, s, _)| *h == hash && *s == smooth)
            .map(|(_, _, w)| w.clone());
        if hit.is_some() {
            return hit;
        }
        let words = read()?;
        let mut cache = self.lock();
        if cache.len() >= CACHED {
            cache.pop_front();
        }
        cache.push_back((hash, smooth, words.clone()));
        Some(words)
    }

    /// Like [`Ocr::words`], for a list: the window scaled bilinearly and reduced to black ink
    /// on white (dark text on a coloured selection, which tesseract skips, becomes plain
    /// text; light text on a dark selection becomes a white gap, and its row is unread).
    pub fn words_smooth(&self, img: &Image) -> Option<Vec<Word>> {
        self.cached(img, true, || self.words_binarized(img))
    }

    fn words_binarized(&self, img: &Image) -> Option<Vec<Word>> {
        let mut bw = img.clone();
        for p in bw.rgb.chunks_mut(3) {
            let v = if super::luma_rgb(p) < 140 { 0 } else { 255 };
            p.copy_from_slice(&[v, v, v]);
        }
        self.words_scaled(&bw, true)
    }

    fn words_scaled(&self, img: &Image, smooth: bool) -> Option<Vec<Word>> {
        let whole = Rect {
            x: 0,
            y: 0,
            w: img.width,
            h: img.height,
        };
        let png = scaled(img, whole, 2, 0, &[], smooth).to_png().ok()?;
        let tsv = crate::dialog_text::run_tesseract(&self.bin, &png, &["--psm", "11", "tsv"])?;
        let mut words = parse_tsv(&tsv);
        for w in &mut words {
            w.rect = Rect {
                x: w.rect.x / 2,
                y: w.rect.y / 2,
                w: w.rect.w.div_ceil(2),
                h: w.rect.h.div_ceil(2),
            };
        }
        Some(words)
    }

    /// The one line of text inside `rect` (a field's interior; `blank`: caret columns),
    /// or `None`.
    pub fn line_in(
        &self,
        img: &Image,
        rect: Rect,
        blank: &[u32],
        digits_only: bool,
    ) -> Option<String> {
        self.line_in_at(img, rect, blank, digits_only, 2, 12)
    }

    /// [`Ocr::line_in`] with the crop's scale and margin chosen by the caller.
    pub fn line_in_at(
        &self,
        img: &Image,
        rect: Rect,
        blank: &[u32],
        digits_only: bool,
        scale: u32,
        margin: u32,
    ) -> Option<String> {
        let crop = crop_scaled(img, rect, scale, margin, blank);
        let png = crop.to_png().ok()?;
        let mut args = vec!["--psm", "7"];
        if digits_only {
            args.extend(["-c", "tessedit_char_whitelist=0123456789"]);
        }
        let text = crate::dialog_text::run_tesseract(&self.bin, &png, &args)?;
        Some(text.trim().to_string())
    }
}
