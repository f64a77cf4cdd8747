//! Webhooks: ntfy, Telegram, Slack and a generic JSON body; timeouts and retries.

use super::*;

pub(super) struct WebhookChannel {
    pub(super) url: Secret,
    /// `https://host` (what logs may show).
    pub(super) origin: String,
    pub(super) preset: WebhookPreset,
    pub(super) chat_id: Option<String>,
    pub(super) agent: ureq::Agent,
    pub(super) backoff: Vec<Duration>,
    pub(super) total_timeout: Duration,
}

/// Why a webhook cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL file could not be read.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    /// The file does not hold a usable URL (the URL itself is never shown).
    #[error("the file does not hold an http(s) URL with a host")]
    BadUrl,
    /// `http://` to a non-loopback host.
    #[error("{0}: plain http is allowed only to loopback addresses; use https")]
    Insecure(String),
}

/// Scheme and host of a URL, and whether the host is a loopback address.
pub(super) fn origin_of(url: &str) -> Result<(String, bool, bool), WebhookError> {
    let uri: ureq::http::Uri = url.trim().parse().map_err(|_| WebhookError::BadUrl)?;
    let scheme = uri
        .scheme_str()
        .ok_or(WebhookError::BadUrl)?
        .to_ascii_lowercase();
    let host = uri.host().ok_or(WebhookError::BadUrl)?.to_string();
    if host.is_empty() || !(scheme == "https" || scheme == "http") {
        return Err(WebhookError::BadUrl);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    Ok((format!("{scheme}://{host}"), scheme == "https", loopback))
}

impl WebhookChannel {
    pub(super) fn new(
        file: &Path,
        cfg: &NotifyConfig,
        tuning: &Tuning,
    ) -> Result<Self, WebhookError> {
        let raw = SecretSource::File(file.to_path_buf()).load()?;
        let mut url = raw.expose().trim().to_string();
        let (origin, https, loopback) = origin_of(&url)?;
        if !https && !loopback {
            return Err(WebhookError::Insecure(origin));
        }
        if cfg.webhook_preset == WebhookPreset::Telegram && !url.ends_with("/sendMessage") {
            // Accept the bot's base URL (`https://api.telegram.org/bot<token>`) too.
            url = format!("{}/sendMessage", url.trim_end_matches('/'));
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_connect(Some(tuning.webhook_connect_timeout))
            .timeout_global(Some(tuning.webhook_total_timeout))
            .http_status_as_error(false)
            // A redirect would re-send the body (and maybe the token) somewhere else.
            .max_redirects(0)
            .user_agent(concat!("ibwarden/", env!("CARGO_PKG_VERSION")));
        if loopback {
            config = config.proxy(None);
        }
        Ok(WebhookChannel {
            url: Secret::new(url),
            origin,
            preset: cfg.webhook_preset,
            chat_id: cfg.telegram_chat_id.clone(),
            agent: config.build().into(),
            backoff: tuning.webhook_backoff.clone(),
            total_timeout: tuning.webhook_total_timeout,
        })
    }

    pub(super) async fn send(&self, ev: &Event) -> Result<(), SendError> {
        let request = build_request(self.preset, self.chat_id.as_deref(), ev);
        let mut attempt = 0usize;
        loop {
            let agent = self.agent.clone();
            let url = self.url.clone();
            let req = request.clone();
            let total = self.total_timeout;
            // ureq is blocking; its own timeouts bound the call, the outer one is a backstop.
            let call = tokio::task::spawn_blocking(move || post(&agent, url.expose(), &req));
            let result = match tokio::time::timeout(total + Duration::from_secs(2), call).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => Err(SendError::Http(format!("request task failed: {e}"))),
                Err(_) => Err(SendError::Timeout(total)),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable() && attempt < self.backoff.len() => {
                    debug!(instance = %ev.instance, origin = %self.origin, attempt = attempt + 1, error = %e, "webhook failed; retrying");
                    tokio::time::sleep(self.backoff[attempt]).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A webhook request: headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Extra headers (name, value).
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// Header values must be visible ASCII; ntfy shows them as the title.
pub(super) fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Formats an event for a preset.
pub fn build_request(preset: WebhookPreset, chat_id: Option<&str>, ev: &Event) -> WebhookRequest {
    let text = format!("{}\n{}", ev.title, ev.message);
    match preset {
        WebhookPreset::Ntfy => {
            let (priority, tag) = match ev.severity {
                Severity::Info => ("3", "white_check_mark"),
                Severity::Warning => ("4", "warning"),
                Severity::Critical => ("5", "rotating_light"),
            };
            WebhookRequest {
                headers: vec![
                    ("Title", header_safe(&ev.title)),
                    ("Priority", priority.into()),
                    ("Tags", format!("{tag},ibwarden,{}", kind_name(ev.kind))),
                ],
                content_type: "text/plain; charset=utf-8",
                body: ev.message.clone(),
            }
        }
        WebhookPreset::Telegram => {
            let chat = chat_id.unwrap_or_default();
            let chat_id = match chat.parse::<i64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => serde_json::Value::from(chat),
            };
            WebhookRequest {
                headers: Vec::new(),
                content_type: "application/json",
                body: serde_json::json!({ "chat_id": chat_id, "text": text }).to_string(),
            }
        }
        WebhookPreset::Slack => WebhookRequest {
            headers: Vec::new(),
            content_type: "application/json",
            body: serde_json::json!({ "text": text }).to_string(),
        },
        WebhookPreset::Generic => WebhookRequest {
            headers: Vec::new(),
            content_type: "application/json",
            body: serde_json::json!({
                "instance": ev.instance,
                "kind": kind_name(ev.kind),
                "severity": severity_name(ev.severity),
                "title": ev.title,
                "message": ev.message,
            })
            .to_string(),
        },
    }
}

/// One POST. Errors are described without the URL (ureq's own messages may contain it).
pub(super) fn post(agent: &ureq::Agent, url: &str, req: &WebhookRequest) -> Result<(), SendError> {
    let mut r = agent.post(url).header("Content-Type", req.content_type);
    for (name, value) in &req.headers {
        r = r.header(*name, value.as_str());
    }
    match r.send(req.body.as_str()) {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(SendError::Status(status))
            }
        }
        Err(e) => Err(describe_ureq(&e)),
    }
}

pub(super) fn describe_ureq(e: &ureq::Error) -> SendError {
    use ureq::Error as E;
    match e {
        E::StatusCode(code) => SendError::Status(*code),
        E::Timeout(t) => SendError::Http(format!("cannot connect: timeout ({t})")),
        E::HostNotFound => SendError::Http("cannot connect: host not found".into()),
        E::ConnectionFailed => SendError::Http("cannot connect: connection failed".into()),
        E::Io(io) => SendError::Http(format!("cannot connect: {}", io.kind())),
        E::Tls(msg) => SendError::Http(format!("tls: {msg}")),
        E::Rustls(err) => SendError::Http(format!("tls: {err}")),
        E::TooManyRedirects | E::RedirectFailed => {
            SendError::Http("the server redirected (not followed)".into())
        }
        E::BadUri(_) | E::Http(_) => SendError::Http("invalid URL".into()),
        E::Protocol(_) => SendError::Http("http protocol error".into()),
        _ => SendError::Http("request failed".into()),
    }
}
