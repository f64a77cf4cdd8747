//! Unit tests of the parent module.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn request_wire_format() {
    assert_eq!(
        serde_json::to_string(&Request::Status).expect("json"),
        r#"{"cmd":"status"}"#
    );
    assert_eq!(
        serde_json::to_string(&Request::TotpNow).expect("json"),
        r#"{"cmd":"totp-now"}"#
    );
    let s: Request =
        serde_json::from_str(r#"{"cmd":"screenshot","out":"/tmp/x.png"}"#).expect("parse");
    assert_eq!(
        s,
        Request::Screenshot {
            out: "/tmp/x.png".into()
        }
    );
    assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
}

#[test]
fn totp_reply_debug_hides_the_code() {
    let r = ControlReply::Totp {
        code: "123456".into(),
        valid_secs: 12,
    };
    let dbg = format!("{r:?}");
    assert!(!dbg.contains("123456"), "{dbg}");
    assert!(dbg.contains("12"));
}

#[test]
fn only_our_uid_and_root_are_allowed() {
    assert!(uid_allowed(1000, 1000));
    assert!(uid_allowed(0, 1000));
    assert!(uid_allowed(0, 0));
    assert!(!uid_allowed(65534, 1000));
    assert!(!uid_allowed(1001, 1000));
    assert!(!uid_allowed(65534, 0));
}

#[test]
fn ibc_commands_without_auth() {
    let stopping = AtomicBool::new(false);
    let step = |l: &str| ibc_step(l, false, None, &stopping);
    assert_eq!(step("exit\n"), IbcStep::Close("OK Goodbye".into()));
    assert_eq!(step("  \r\n"), IbcStep::Nothing);
    assert_eq!(step("FOO"), IbcStep::Reply("ERROR Command invalid".into()));
    assert_eq!(
        step("AUTH x"),
        IbcStep::Reply("ERROR Command invalid".into())
    );
    // HTTP is hung up on, whatever it carries.
    for http in [
        "POST / HTTP/1.1\r\n",
        "GET /restart HTTP/1.0",
        "Host: 127.0.0.1:7462",
        "Content-Type: text/plain",
        "RESTART HTTP/1.1",
    ] {
        assert_eq!(step(http), IbcStep::Hangup("an HTTP request"), "{http}");
    }
    assert_eq!(
        step("Restart\r\n"),
        IbcStep::Forward {
            cmd: ControlCommand::Restart,
            ok: "OK RESTART in progress"
        }
    );
    assert_eq!(
        step("ENABLEAPI"),
        IbcStep::Reply("ERROR ENABLEAPI is not valid for the IB Gateway".into())
    );
    assert!(
        matches!(step("RECONNECTDATA"), IbcStep::Reply(t) if t.starts_with("ERROR RECONNECTDATA"))
    );
    assert_eq!(
        step("STOP"),
        IbcStep::Forward {
            cmd: ControlCommand::Stop,
            ok: "OK Shutting down: STOP command"
        }
    );
    assert_eq!(
        step("stop"),
        IbcStep::Reply("ERROR STOP already in progress".into())
    );
}

#[test]
fn ibc_auth() {
    let stopping = AtomicBool::new(false);
    let token = Secret::new("s3cret".into());
    assert_eq!(
        ibc_step("STOP", false, Some(&token), &stopping),
        IbcStep::Reply("ERROR Not authenticated: send AUTH <token> first".into())
    );
    assert!(!stopping.load(Ordering::SeqCst));
    assert_eq!(
        ibc_step("AUTH wrong", false, Some(&token), &stopping),
        IbcStep::Auth { matches: false }
    );
    assert_eq!(
        ibc_step("auth s3cret\n", false, Some(&token), &stopping),
        IbcStep::Auth { matches: true }
    );
    assert!(matches!(
        ibc_step("RESTART", true, Some(&token), &stopping),
        IbcStep::Forward { .. }
    ));
}

#[test]
fn totp_reply_uses_the_current_step() {
    // RFC 6238 appendix B: at t = 59 the SHA-1 code ends in 287082; 1 s left in its step.
    let code =
        crate::totp::ActivationCode::parse("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").expect("rfc key");
    assert_eq!(
        totp_reply(Some(&code), 59),
        ControlReply::Totp {
            code: "287082".into(),
            valid_secs: 1
        }
    );
    assert!(matches!(totp_reply(None, 59), ControlReply::Error { .. }));
}

#[test]
fn screenshot_reply_writes_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("s.png");
    let r = screenshot_reply(&out, Ok(b"png".to_vec()));
    assert_eq!(
        r,
        ControlReply::Screenshot {
            path: out.clone(),
            bytes: 3
        }
    );
    assert_eq!(std::fs::read(&out).expect("written"), b"png");
    assert_eq!(
        std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert!(matches!(
        screenshot_reply(Path::new("rel.png"), Ok(vec![1])),
        ControlReply::Error { .. }
    ));
    assert!(matches!(
        screenshot_reply(&out, Err("no display".into())),
        ControlReply::Error { message } if message.contains("no display")
    ));
}

#[test]
fn constant_time_eq_works() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
