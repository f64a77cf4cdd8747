//! Unit tests of the parent module.

use super::*;

#[test]
fn once_until_recovered() {
    let mut d = Dedup::default();
    let t0 = Instant::now();
    assert!(
        d.admit(NoticeKind::Recovered, "ok", t0).is_none(),
        "nothing active"
    );
    assert!(d
        .admit(NoticeKind::LoginFailed, "bad password", t0)
        .is_some());
    let later = t0 + Duration::from_secs(86_400 * 30);
    assert!(d
        .admit(NoticeKind::LoginFailed, "bad password again", later)
        .is_none());
    let r = d
        .admit(NoticeKind::Recovered, "ok", later)
        .expect("recovered sent");
    assert!(r.contains("cleared: login failed"), "{r}");
    assert!(!d.any_active());
    assert!(d.admit(NoticeKind::Recovered, "ok", later).is_none());
    assert!(d
        .admit(NoticeKind::LoginFailed, "bad password", later)
        .is_some());
}

#[test]
fn an_expiring_password_outlives_a_recovery() {
    let mut d = Dedup::default();
    let t0 = Instant::now();
    assert!(d
        .admit(NoticeKind::PasswordExpiring, "in 5 days", t0)
        .is_some());
    assert!(
        d.admit(NoticeKind::Recovered, "ok", t0).is_none(),
        "nothing to clear"
    );
    assert!(d.admit(NoticeKind::Crash, "crash", t0).is_some());
    let r = d.admit(NoticeKind::Recovered, "ok", t0).expect("sent");
    assert!(r.ends_with("(cleared: gateway crashed)"), "{r}");
    assert!(d
        .admit(NoticeKind::PasswordExpiring, "in 5 days", t0)
        .is_none());
}

#[test]
fn repeating_kinds_respect_their_interval() {
    let mut d = Dedup::default();
    let t0 = Instant::now();
    let every = repeat_after(NoticeKind::LockoutGuard).expect("repeats");
    assert!(d
        .admit(NoticeKind::LockoutGuard, "wait 600 s", t0)
        .is_some());
    assert!(d
        .admit(
            NoticeKind::LockoutGuard,
            "wait 500 s",
            t0 + every - Duration::from_secs(1)
        )
        .is_none());
    assert!(d
        .admit(NoticeKind::LockoutGuard, "wait 400 s", t0 + every)
        .is_some());
    // The interval restarts from the last send.
    assert!(d
        .admit(
            NoticeKind::LockoutGuard,
            "x",
            t0 + every + Duration::from_secs(1)
        )
        .is_none());
    // Other kinds are independent.
    assert!(d.admit(NoticeKind::Crash, "crash", t0 + every).is_some());
}

#[test]
fn unknown_dialogs_are_told_apart_by_message() {
    let mut d = Dedup::default();
    let t0 = Instant::now();
    assert!(d.admit(NoticeKind::UnknownDialog, "dialog A", t0).is_some());
    assert!(d.admit(NoticeKind::UnknownDialog, "dialog B", t0).is_some());
    assert!(d.admit(NoticeKind::UnknownDialog, "dialog A", t0).is_none());
    let r = d.admit(NoticeKind::Recovered, "ok", t0).expect("sent");
    assert_eq!(r.matches("unknown dialog").count(), 1, "{r}");
}

#[test]
fn origin_hides_path_and_rejects_remote_http() {
    let (o, https, lo) =
        origin_of("https://api.telegram.org/bot123:SECRET/sendMessage").expect("valid");
    assert_eq!(o, "https://api.telegram.org");
    assert!(https && !lo);
    let (_, https, lo) = origin_of("http://127.0.0.1:8080/hook").expect("valid");
    assert!(!https && lo);
    assert!(origin_of("http://[::1]:9/x").expect("valid").2);
    assert!(!origin_of("http://10.0.0.1/x").expect("valid").2);
    assert!(origin_of("ftp://example.com/x").is_err());
    assert!(origin_of("not a url").is_err());
}

#[test]
fn unix_path_of_address() {
    assert_eq!(
        unix_path("unix:path=/run/user/1000/bus,guid=abc"),
        Some(PathBuf::from("/run/user/1000/bus"))
    );
    assert_eq!(unix_path("unix:abstract=/tmp/x"), None);
    assert_eq!(unix_path("tcp:host=localhost,port=1"), None);
}

#[test]
fn presets() {
    let ev = Event {
        instance: "live".into(),
        kind: NoticeKind::LoginFailed,
        severity: Severity::Critical,
        title: "ibwarden live: login failed".into(),
        message: "Fix the password.".into(),
    };
    let n = build_request(WebhookPreset::Ntfy, None, &ev);
    assert_eq!(n.body, "Fix the password.");
    assert!(n.headers.contains(&("Priority", "5".into())));
    let t = build_request(WebhookPreset::Telegram, Some("-100123"), &ev);
    let v: serde_json::Value = serde_json::from_str(&t.body).expect("json");
    assert_eq!(v["chat_id"], serde_json::json!(-100123));
    let t = build_request(WebhookPreset::Telegram, Some("@chan"), &ev);
    let v: serde_json::Value = serde_json::from_str(&t.body).expect("json");
    assert_eq!(v["chat_id"], serde_json::json!("@chan"));
    let g = build_request(WebhookPreset::Generic, None, &ev);
    let v: serde_json::Value = serde_json::from_str(&g.body).expect("json");
    assert_eq!(v["kind"], "login_failed");
    assert_eq!(v["severity"], "critical");
}
