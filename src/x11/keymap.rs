//! Pure keyboard planning: character → keysym, keysym → (keycode, shift) in the server's
//! current core keymap, and which spare keycodes to borrow for characters the keymap lacks.
//! No X calls here, so all of it is unit-tested without a server.
//!
//! Rules (measured, measured): ASCII is always typed from the existing keymap,
//! column 0 plain and column 1 with Shift, so it never needs a keymap change. Only characters
//! missing from columns 0/1 are bound to spare keycodes (every column `NoSymbol` and not a
//! modifier), once, before typing.

use std::collections::BTreeMap;

/// The X `NoSymbol` keysym.
pub(crate) const NO_SYMBOL: u32 = 0;

/// Keysyms used for named keys and modifiers (X11 keysymdef.h).
pub(crate) mod keysym {
    /// Tab.
    pub(crate) const TAB: u32 = 0xff09;
    /// Return.
    pub(crate) const RETURN: u32 = 0xff0d;
    /// Escape.
    pub(crate) const ESCAPE: u32 = 0xff1b;
    /// Home.
    pub(crate) const HOME: u32 = 0xff50;
    /// Up arrow.
    pub(crate) const UP: u32 = 0xff52;
    /// Down arrow.
    pub(crate) const DOWN: u32 = 0xff54;
    /// Left Shift.
    pub(crate) const SHIFT_L: u32 = 0xffe1;
    /// Right Shift.
    pub(crate) const SHIFT_R: u32 = 0xffe2;
    /// Left Control.
    pub(crate) const CONTROL_L: u32 = 0xffe3;
    /// Right Control.
    pub(crate) const CONTROL_R: u32 = 0xffe4;
    /// Caps Lock.
    pub(crate) const CAPS_LOCK: u32 = 0xffe5;
    /// Space.
    pub(crate) const SPACE: u32 = 0x20;
    /// Latin small a (for Ctrl+A).
    pub(crate) const A: u32 = 0x61;
}

/// The keysym that produces `c`, or `None` for characters that cannot be typed (controls).
///
/// Printable ASCII and Latin-1 (U+00A0..U+00FF) keysyms equal the code point; every other
/// character uses the Unicode keysym range `0x01000000 | codepoint`, which Xlib (and so Java)
/// translates back to the character.
pub(crate) fn char_to_keysym(c: char) -> Option<u32> {
    let cp = u32::from(c);
    match cp {
        0x20..=0x7e | 0xa0..=0xff => Some(cp),
        0..=0x1f | 0x7f..=0x9f => None,
        _ => Some(0x0100_0000 | cp),
    }
}

/// Where a keysym lives in the keymap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyPos {
    /// The keycode to press.
    pub keycode: u8,
    /// Whether Shift must be held (keysym in column 1).
    pub shift: bool,
}

/// A snapshot of the server's core keyboard mapping (`GetKeyboardMapping`) and modifier
/// keycodes (`GetModifierMapping`).
#[derive(Clone, Debug)]
pub(crate) struct Keymap {
    min_keycode: u8,
    per_keycode: usize,
    keysyms: Vec<u32>,
    modifier_keycodes: Vec<u8>,
}

impl Keymap {
    /// Builds the snapshot from the replies: `keysyms` has `per_keycode` entries for each
    /// keycode starting at `min_keycode`.
    pub(crate) fn new(
        min_keycode: u8,
        per_keycode: usize,
        keysyms: Vec<u32>,
        modifier_keycodes: Vec<u8>,
    ) -> Keymap {
        Keymap {
            min_keycode,
            per_keycode: per_keycode.max(1),
            keysyms,
            modifier_keycodes,
        }
    }

    fn rows(&self) -> impl Iterator<Item = (u8, &[u32])> {
        self.keysyms
            .chunks(self.per_keycode)
            .enumerate()
            .filter_map(|(i, row)| {
                Some((self.min_keycode.checked_add(u8::try_from(i).ok()?)?, row))
            })
    }

    /// Keysyms per keycode, as the server reported.
    pub(crate) fn per_keycode(&self) -> usize {
        self.per_keycode
    }

    /// Where `keysym` is: column 0 on any keycode first (no Shift), then column 1 (Shift).
    /// Columns 2+ (other groups, AltGr) are not used: they need modifier state we do not
    /// control reliably.
    pub(crate) fn find(&self, keysym: u32) -> Option<KeyPos> {
        if keysym == NO_SYMBOL {
            return None;
        }
        if let Some((kc, _)) = self.rows().find(|(_, row)| row.first() == Some(&keysym)) {
            return Some(KeyPos {
                keycode: kc,
                shift: false,
            });
        }
        if let Some((kc, _)) = self.rows().find(|(_, row)| row.get(1) == Some(&keysym)) {
            return Some(KeyPos {
                keycode: kc,
                shift: true,
            });
        }
        // Core protocol rule: a lowercase letter alone in column 0 implies its uppercase in
        // column 1.
        if (0x41..=0x5a).contains(&keysym) {
            let lower = keysym + 0x20;
            return self
                .rows()
                .find(|(_, row)| {
                    row.first() == Some(&lower) && row.get(1).is_none_or(|s| *s == NO_SYMBOL)
                })
                .map(|(kc, _)| KeyPos {
                    keycode: kc,
                    shift: true,
                });
        }
        None
    }

    /// Keycodes free to borrow: every column `NoSymbol` and not in the modifier map
    /// (measured: 204–207 have an empty column 0 but are modifiers). Highest first, the
    /// same end xdotool uses, away from real keys.
    pub(crate) fn spare_keycodes(&self) -> Vec<u8> {
        let mut spare: Vec<u8> = self
            .rows()
            .filter(|(kc, row)| {
                row.iter().all(|s| *s == NO_SYMBOL) && !self.modifier_keycodes.contains(kc)
            })
            .map(|(kc, _)| kc)
            .collect();
        spare.reverse();
        spare
    }

    /// Binds each keysym in `missing` (deduplicated) to a spare keycode.
    pub(crate) fn assign_spares(&self, missing: &[u32]) -> Result<Vec<(u8, u32)>, NotEnoughSpare> {
        let mut unique: Vec<u32> = Vec::new();
        for ks in missing {
            if !unique.contains(ks) {
                unique.push(*ks);
            }
        }
        let spare = self.spare_keycodes();
        if spare.len() < unique.len() {
            return Err(NotEnoughSpare {
                needed: unique.len(),
                available: spare.len(),
            });
        }
        Ok(spare.into_iter().zip(unique).collect())
    }
}

/// More distinct non-keymap characters than spare keycodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{needed} characters need spare keycodes but only {available} are free")]
pub struct NotEnoughSpare {
    /// Distinct keysyms needing a keycode.
    pub needed: usize,
    /// Spare keycodes found.
    pub available: usize,
}

/// How to type each keysym of a text: positions in the keymap, plus the temporary bindings.
#[derive(Clone, Debug, Default)]
pub(crate) struct Plan {
    /// Keysym → where to press it (after the temporary bindings are in place).
    pub positions: BTreeMap<u32, KeyPos>,
    /// Temporary bindings `(spare keycode, keysym)` to install before typing.
    pub premap: Vec<(u8, u32)>,
}

/// Plans typing of `keysyms` with `keymap`: existing positions for what the keymap has,
/// spare keycodes for the rest. A temporary binding puts the keysym in columns 0 and 1, so
/// it types the same with or without Shift.
pub(crate) fn plan(keymap: &Keymap, keysyms: &[u32]) -> Result<Plan, NotEnoughSpare> {
    let mut positions = BTreeMap::new();
    let mut missing = Vec::new();
    for &ks in keysyms {
        match keymap.find(ks) {
            Some(pos) => {
                positions.insert(ks, pos);
            }
            None => missing.push(ks),
        }
    }
    let premap = keymap.assign_spares(&missing)?;
    for &(keycode, ks) in &premap {
        positions.insert(
            ks,
            KeyPos {
                keycode,
                shift: false,
            },
        );
    }
    Ok(Plan { positions, premap })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny us-like keymap: keycodes 8..=20, 3 columns.
    fn sample() -> Keymap {
        let mut syms = vec![NO_SYMBOL; 13 * 3];
        let mut set = |kc: usize, cols: &[u32]| {
            for (i, s) in cols.iter().enumerate() {
                syms[(kc - 8) * 3 + i] = *s;
            }
        };
        set(10, &[0x31, 0x21]); // 1 !
        set(11, &[0x61, 0x41]); // a A
        set(12, &[0x62]); // b (implicit B)
        set(13, &[keysym::SHIFT_L]);
        set(14, &[keysym::TAB, 0xfe20]);
        set(15, &[0x20]);
        set(16, &[NO_SYMBOL, 0xffe9]); // NoSymbol Alt_L (a modifier)
                                       // 8, 9, 17, 18, 19, 20 are empty; 18 is in the modifier map anyway.
        Keymap::new(8, 3, syms, vec![13, 16, 18])
    }

    #[test]
    fn keysyms_for_chars() {
        assert_eq!(char_to_keysym('a'), Some(0x61));
        assert_eq!(char_to_keysym('~'), Some(0x7e));
        assert_eq!(char_to_keysym('ä'), Some(0xe4));
        assert_eq!(char_to_keysym('ß'), Some(0xdf));
        assert_eq!(char_to_keysym('€'), Some(0x0100_20ac));
        assert_eq!(char_to_keysym('ж'), Some(0x0100_0436));
        assert_eq!(char_to_keysym('\n'), None);
        assert_eq!(char_to_keysym('\u{7f}'), None);
        assert_eq!(char_to_keysym('\u{85}'), None);
    }

    #[test]
    fn column_zero_plain_column_one_shifted() {
        let km = sample();
        assert_eq!(
            km.find(0x31),
            Some(KeyPos {
                keycode: 10,
                shift: false
            })
        );
        assert_eq!(
            km.find(0x21),
            Some(KeyPos {
                keycode: 10,
                shift: true
            })
        );
        assert_eq!(
            km.find(0x41),
            Some(KeyPos {
                keycode: 11,
                shift: true
            })
        );
        assert_eq!(
            km.find(0x42),
            Some(KeyPos {
                keycode: 12,
                shift: true
            }),
            "implicit uppercase"
        );
        assert_eq!(km.find(0xe4), None);
        assert_eq!(km.find(NO_SYMBOL), None);
    }

    #[test]
    fn spare_keycodes_exclude_modifiers_and_partial_rows() {
        assert_eq!(sample().spare_keycodes(), vec![20, 19, 17, 9, 8]);
    }

    #[test]
    fn plan_premaps_only_missing_keysyms_once() {
        let km = sample();
        let text: Vec<u32> = "aA!äää€".chars().filter_map(char_to_keysym).collect();
        let p = plan(&km, &text).expect("enough spares");
        assert_eq!(p.premap, vec![(20, 0xe4), (19, 0x0100_20ac)]);
        assert_eq!(
            p.positions[&0x41],
            KeyPos {
                keycode: 11,
                shift: true
            }
        );
        assert_eq!(
            p.positions[&0xe4],
            KeyPos {
                keycode: 20,
                shift: false
            }
        );
    }

    #[test]
    fn plan_for_pure_ascii_needs_no_keymap_change() {
        let p = plan(&sample(), &[0x61, 0x41, 0x21, 0x20]).expect("plan");
        assert!(p.premap.is_empty());
    }

    #[test]
    fn too_many_missing_is_an_error() {
        let text: Vec<u32> = "äöüßéж".chars().filter_map(char_to_keysym).collect();
        assert_eq!(
            plan(&sample(), &text).err(),
            Some(NotEnoughSpare {
                needed: 6,
                available: 5
            })
        );
    }
}
