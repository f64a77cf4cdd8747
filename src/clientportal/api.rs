//! The Client Portal gateway's HTTPS API, the calls ibwarden needs: `auth/status`,
//! `tickle`, `reauthenticate` and `logout`, on loopback only.
//!
//! The gateway serves a self-signed certificate (its `root/vertx.jks`), so the certificate
//! is not verified: the connection never leaves 127.0.0.1, and no secret travels over it
//! (the login happens in the browser). Blocking calls: run them off the async runtime.

use std::time::Duration;

use super::machine::{ApiReply, AuthStatus};

/// One call's deadline.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a status is a few hundred bytes).
const MAX_BODY: u64 = 64 * 1024;

/// A client of one gateway.
#[derive(Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("base", &self.base).finish()
    }
}

impl Api {
    /// A client of `https://127.0.0.1:port` (or `http://` when the gateway has no TLS).
    pub fn new(port: u16, ssl: bool) -> Api {
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(true)
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("ibwarden/", env!("CARGO_PKG_VERSION")))
            .build();
        let scheme = if ssl { "https" } else { "http" };
        Api {
            agent: config.into(),
            base: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    /// The login page's address (what the browser opens).
    pub fn login_url(&self) -> String {
        format!("{}/", self.base)
    }

    /// `GET /v1/api/iserver/auth/status`.
    pub fn status(&self) -> ApiReply {
        self.call("GET", "/v1/api/iserver/auth/status")
    }

    /// `POST /v1/api/tickle`: keeps the session; its `iserver.authStatus` is the status.
    pub fn tickle(&self) -> ApiReply {
        self.call("POST", "/v1/api/tickle")
    }

    /// `POST /v1/api/iserver/reauthenticate`, then the status.
    pub fn reauthenticate(&self) -> ApiReply {
        match self.call("POST", "/v1/api/iserver/reauthenticate") {
            ApiReply::Status(_) => self.status(),
            other => other,
        }
    }

    /// `POST /v1/api/logout` (at a clean stop); errors are ignored.
    pub fn logout(&self) {
        let _ = self.call("POST", "/v1/api/logout");
    }

    fn call(&self, method: &str, path: &str) -> ApiReply {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send("{}"),
            _ => self.agent.get(&url).call(),
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return ApiReply::Down(describe(&e)),
        };
        let code = resp.status().as_u16();
        if code == 401 {
            return ApiReply::Unauthorized;
        }
        if !(200..300).contains(&code) {
            return ApiReply::Down(format!("{path} answered HTTP {code}"));
        }
        let body = match resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
        {
            Ok(b) => b,
            Err(e) => return ApiReply::Down(describe(&e)),
        };
        parse_status(&body).map_or_else(
            || {
                // reauthenticate answers {"message":"triggered"}: not a status, but a yes.
                if path.ends_with("/reauthenticate") {
                    ApiReply::Status(AuthStatus {
                        authenticated: false,
                        connected: false,
                        competing: false,
                    })
                } else {
                    ApiReply::Down(format!("{path}: an answer without a status"))
                }
            },
            ApiReply::Status,
        )
    }
}

/// The status in an `auth/status` answer or in a tickle's `iserver.authStatus`.
pub fn parse_status(body: &str) -> Option<AuthStatus> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let s = v
        .get("iserver")
        .and_then(|i| i.get("authStatus"))
        .unwrap_or(&v);
    let flag = |k: &str| s.get(k).and_then(serde_json::Value::as_bool);
    Some(AuthStatus {
        authenticated: flag("authenticated")?,
        connected: flag("connected").unwrap_or(false),
        competing: flag("competing").unwrap_or(false),
    })
}

fn describe(e: &ureq::Error) -> String {
    use ureq::Error as E;
    match e {
        E::Io(io) => format!("cannot connect: {}", io.kind()),
        E::Timeout(_) => "no answer in time".into(),
        E::Tls(_) | E::Rustls(_) => "TLS failed".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_from_auth_status_and_tickle() {
        let s = parse_status(
            r#"{"authenticated":true,"competing":false,"connected":true,"message":"","MAC":"x"}"#,
        );
        assert_eq!(
            s,
            Some(AuthStatus {
                authenticated: true,
                connected: true,
                competing: false
            })
        );
        let t = parse_status(
            r#"{"session":"ab","ssoExpires":1,"iserver":{"authStatus":{"authenticated":false,"competing":true,"connected":true}}}"#,
        );
        assert_eq!(
            t,
            Some(AuthStatus {
                authenticated: false,
                connected: true,
                competing: true
            })
        );
        assert_eq!(parse_status(r#"{"message":"triggered"}"#), None);
        assert_eq!(parse_status("<html>"), None);
    }
}
