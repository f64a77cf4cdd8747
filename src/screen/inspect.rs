//! `ibwarden inspect`: for every window of the running gateway, what ibwarden knows and sees
//! — title, class, pid, geometry, the kind the catalogue recognised, the screen model (fields,
//! password masks, OCR words with boxes) and a PNG. This is what a bug report about a gateway
//! version we have never seen needs.
//!
//! Secrets are masked: an OCR word that reads as the password, or any six-digit number (a
//! code), is written as `<masked>`. The password itself only ever shows as its mask.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::form::ocr_fold;
use super::ocr::{lines, Ocr};
use super::Model;
use crate::core::WindowInfo;
use crate::x11::DisplayTarget;

/// One window to inspect: what the core knows of it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// X11 facts.
    pub info: WindowInfo,
    /// The kind the dialog catalogue gave it (`Debug` name).
    pub kind: String,
}

/// True if `word` must not be written: it reads as `password` or as a code.
fn masked(word: &str, password_fold: &str) -> bool {
    let digits = word.chars().filter(char::is_ascii_digit).count();
    (digits == 6 && word.trim().chars().all(|c| c.is_ascii_digit()))
        || (!password_fold.is_empty() && ocr_fold(word) == password_fold)
}

/// The report of one window (without the PNG), as JSON.
pub fn window_report(seen: &Seen, class: Option<&str>, model: &Model, password: &str) -> Value {
    let fold = ocr_fold(password);
    let words: Vec<Value> = model
        .words
        .iter()
        .map(|w| {
            let text = if masked(&w.text, &fold) {
                "<masked>".to_string()
            } else {
                w.text.clone()
            };
            json!({
                "text": text,
                "box": [w.rect.x, w.rect.y, w.rect.w, w.rect.h],
                "confidence": w.confidence,
            })
        })
        .collect();
    let text: Vec<String> = lines(&model.words)
        .into_iter()
        .map(|l| {
            l.split(' ')
                .map(|w| if masked(w, &fold) { "<masked>" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let fields: Vec<Value> = model
        .fields
        .iter()
        .map(|f| {
            json!({
                "box": [f.rect.x, f.rect.y, f.rect.w, f.rect.h],
                "label": model.label_of(&f.rect),
                "glyphs": f.glyphs.len(),
                "mask_count": f.mask_count,
                "caret": !f.caret.is_empty(),
            })
        })
        .collect();
    let i = &seen.info;
    json!({
        "id": format!("0x{:x}", i.id),
        "title": i.title,
        "class": class,
        "pid": i.pid,
        "transient_for": i.transient_for.map(|t| format!("0x{t:x}")),
        "geometry": [i.x, i.y, i.width, i.height],
        "kind": seen.kind,
        "model": {
            "hash": format!("{:016x}", model.hash),
            "fields": fields,
            "words": words,
            "text": text,
        },
    })
}

/// Captures, models and writes every window of `windows` into `dir` (created, mode 0700):
/// `window-N.png` and one `inspect.json`. Blocking. Returns the files written.
pub fn write(
    dir: &Path,
    target: &DisplayTarget,
    windows: &[Seen],
    ocr: Option<&Ocr>,
    password: &str,
) -> Result<Vec<PathBuf>, String> {
    crate::state::create_private_dir(dir).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for (n, seen) in windows.iter().enumerate() {
        let id = seen.info.id;
        let class = crate::x11::window_class(target, id);
        let img =
            match crate::x11::screenshot::capture_painted(target, Some(id), Duration::from_secs(1))
            {
                Ok(img) => img,
                Err(e) => {
                    reports.push(json!({"id": format!("0x{id:x}"), "title": seen.info.title,
                    "error": e.to_string()}));
                    continue;
                }
            };
        let mut model = Model::build(&img);
        if let Some(words) = ocr.and_then(|o| o.words(&img)) {
            model.words = words;
        }
        let png = img.to_png().map_err(|e| e.to_string())?;
        let path = dir.join(format!("window-{n}.png"));
        crate::state::write_atomic(&path, &png).map_err(|e| e.to_string())?;
        files.push(path);
        let mut report = window_report(seen, class.as_deref(), &model, password);
        report["png"] = json!(format!("window-{n}.png"));
        reports.push(report);
    }
    let summary = json!({
        "ibwarden": env!("CARGO_PKG_VERSION"),
        "ocr": ocr.is_some(),
        "windows": reports,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    let path = dir.join("inspect.json");
    crate::state::write_atomic(&path, text.as_bytes()).map_err(|e| e.to_string())?;
    files.push(path);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::screen::ocr::Word;
    use crate::screen::Rect;

    #[test]
    fn passwords_and_codes_are_masked_and_the_rest_is_kept() {
        let word = |text: &str, x| Word {
            text: text.into(),
            rect: Rect {
                x,
                y: 5,
                w: 30,
                h: 10,
            },
            confidence: 90,
            line: (1, 1, 1),
        };
        let model = Model {
            fields: Vec::new(),
            words: vec![
                word("Password", 0),
                word("Hunter2-x", 40),
                word("123456", 80),
                word("OK", 120),
            ],
            hash: 7,
        };
        let seen = Seen {
            info: WindowInfo {
                id: 0x400007,
                pid: Some(42),
                ancestry: Vec::new(),
                title: "Login Messages".into(),
                transient_for: None,
                x: 1,
                y: 2,
                width: 300,
                height: 200,
            },
            kind: "Unknown".into(),
        };
        let r = window_report(&seen, Some("ibgateway-GWClient"), &model, "Hunter2-x");
        let text = r.to_string();
        assert!(!text.contains("Hunter2"), "{text}");
        assert!(!text.contains("123456"), "{text}");
        assert!(
            text.contains("Password") && text.contains("\"OK\""),
            "{text}"
        );
        assert_eq!(r["model"]["text"][0], "Password <masked> <masked> OK");
        assert_eq!(r["title"], "Login Messages");
        assert_eq!(r["class"], "ibgateway-GWClient");
        assert_eq!(r["id"], "0x400007");
    }
}
