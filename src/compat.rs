//! Conversions that belong in [`crate::config`], kept here while that module is being
//! rewritten in another branch. Move the `impl` below into `config/mod.rs` and delete this
//! module; nothing else changes.
//!
//! It lives outside [`crate::secret`] on purpose: `config` depends on `secret` (for
//! [`SecretSource`](crate::secret::SecretSource)), so `secret` must not depend on `config`.

use crate::config::Config;
use crate::secret::SecretSources;

impl<'a> From<&'a Config> for SecretSources<'a> {
    fn from(config: &'a Config) -> Self {
        SecretSources {
            username: &config.account.username,
            password: &config.account.password,
            totp: config.account.totp.as_ref(),
            trading_mode: config.gateway.trading_mode,
            second_factor: &config.login.second_factor,
        }
    }
}
