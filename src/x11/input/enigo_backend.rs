//! The opt-in enigo typing backend (cargo feature `enigo`): kept for comparison and for
//! users who ask for it; the module doc of `x11::input` says why XTest is the default.

use std::time::Duration;

use super::*;

impl Typist {
    pub(super) fn type_enigo(
        &self,
        enigo: &mut enigo::Enigo,
        window: u32,
        steps: &[KeyStep],
        texts: &[&str],
    ) -> Result<(), InputError> {
        use enigo::{Direction, Key, Keyboard};
        let e = |r: enigo::InputResult<()>| r.map_err(|e| InputError::Enigo(e.to_string()));
        for (i, step) in steps.iter().enumerate() {
            self.check(window, i)?;
            match step {
                KeyStep::Text(_) | KeyStep::Secret(_) => {
                    let text = texts[i];
                    let chars: Vec<char> = text.chars().collect();
                    for (n, chunk) in chars.chunks(CHECK_EVERY).enumerate() {
                        if n > 0 {
                            self.check(window, i)?;
                        }
                        let s: zeroize::Zeroizing<String> =
                            zeroize::Zeroizing::new(chunk.iter().collect());
                        e(enigo.text(&s))?;
                    }
                }
                KeyStep::Key(key) => {
                    if *key == NamedKey::Enter {
                        std::thread::sleep(self.opts.settle_delay);
                        self.check(window, i)?;
                    }
                    match key {
                        NamedKey::Tab => e(enigo.key(Key::Tab, Direction::Click))?,
                        NamedKey::ShiftTab => {
                            e(enigo.key(Key::Shift, Direction::Press))?;
                            e(enigo.key(Key::Tab, Direction::Click))?;
                            e(enigo.key(Key::Shift, Direction::Release))?;
                        }
                        NamedKey::Enter => e(enigo.key(Key::Return, Direction::Click))?,
                        NamedKey::Space => e(enigo.key(Key::Space, Direction::Click))?,
                        NamedKey::Escape => e(enigo.key(Key::Escape, Direction::Click))?,
                        NamedKey::Up => e(enigo.key(Key::UpArrow, Direction::Click))?,
                        NamedKey::Down => e(enigo.key(Key::DownArrow, Direction::Click))?,
                        NamedKey::Home => e(enigo.key(Key::Home, Direction::Click))?,
                        NamedKey::SelectAll => {
                            e(enigo.key(Key::Control, Direction::Press))?;
                            e(enigo.key(Key::Unicode('a'), Direction::Click))?;
                            e(enigo.key(Key::Control, Direction::Release))?;
                        }
                    }
                    if matches!(
                        key,
                        NamedKey::Tab | NamedKey::ShiftTab | NamedKey::SelectAll
                    ) {
                        std::thread::sleep(self.opts.settle_delay);
                    }
                }
                KeyStep::PauseMs(ms) => std::thread::sleep(Duration::from_millis(u64::from(*ms))),
                // Clicks go through our own XTest path whatever the key backend.
                KeyStep::Click { x, y } => {
                    self.click(window, *x, *y)?;
                    std::thread::sleep(self.opts.settle_delay);
                }
            }
        }
        self.focused_window()?;
        Ok(())
    }
}

/// Admits local connections of our own uid without a cookie (`xhost +si:localuser:NAME`),
/// for the enigo backend only (see the module doc).
pub(super) fn grant_local_user(conn: &xcb::Connection) -> Result<(), InputError> {
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or(InputError::Enigo(format!("no user name for uid {uid}")))?;
    let mut address = b"localuser\0".to_vec();
    address.extend_from_slice(user.as_bytes());
    conn.send_and_check_request(&x::ChangeHosts {
        mode: x::HostMode::Insert,
        family: x::Family::ServerInterpreted,
        address: &address,
    })
    .map_err(proto_err("ChangeHosts"))
}
