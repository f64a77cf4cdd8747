//! End-to-end in TWS mode (`[gateway] program = "tws"`, issue 8): the real `ibwarden run`,
//! its own Xvfb, the simulator started as Trader Workstation (`jclient.LoginFrame`,
//! `tws.vmoptions`). TWS's second factor opens no window (the `Login` frame's content
//! changes), so these tests check, from the simulator's record, that the code went into the
//! code field and nowhere else, with the content reader (OCR) and with titles only.

mod common;
mod warden;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use common::*;
use warden::Warden;

const LOGIN: Duration = Duration::from_secs(60);
/// A relaunch in live mode may wait up to a TOTP step (30 s) for an unused code.
const RELOGIN: Duration = Duration::from_secs(120);

/// A live scenario: IBKR's 180 s second-factor timeout scaled by the test time factor (0.05)
/// would be 9 s, shorter than a wait for a fresh TOTP step; 600 s scaled gives 30 s.
fn live() -> Scenario {
    Scenario::new().set("twofa_timeout_s", 600)
}

fn events(rec: &Record, ev: &str) -> Vec<Value> {
    rec.events().into_iter().filter(|e| is_ev(e, ev)).collect()
}

/// The characters typed into each field of each window, in order: `(window, field) → text`.
fn typed_chars(evs: &[Value]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for e in evs.iter().filter(|e| is_ev(e, "key")) {
        let Some(c) = e["char"].as_str() else {
            continue;
        };
        let w = e["window"].as_str().unwrap_or("").to_string();
        let f = e["field"].as_str().unwrap_or("").to_string();
        match out.iter_mut().find(|(ow, of, _)| *ow == w && *of == f) {
            Some(entry) => entry.2.push_str(c),
            None => out.push((w, f, c.to_string())),
        }
    }
    out
}

/// One live login in the `Login` frame: credentials in their fields, the second factor inside
/// the frame (no new window), the accepted code typed into the code field and nowhere else,
/// and the API probe answered on the TWS port.
fn assert_live_tws_login(install: &SimInstall) {
    let rec = install.record();
    let evs = rec.events();
    let attempts = events(&rec, "login_attempt");
    assert_eq!(attempts.len(), 1, "one login attempt: {attempts:?}");
    assert_eq!(attempts[0]["verdict"], "ok");
    assert_eq!(attempts[0]["mode"], "live");
    let codes = events(&rec, "code");
    assert_eq!(codes.len(), 1, "one code: {codes:?}");
    assert_eq!(codes[0]["verdict"], "accepted");
    let code = codes[0]["code"].as_str().expect("code").to_string();

    // The second factor happened inside the frame: its content changed, no window appeared.
    let content = evs
        .iter()
        .position(|e| is_ev(e, "content") && e["what"] == "code_entry" && e["window"] == "Login")
        .expect("the Login frame showed the code entry");
    assert!(
        !evs.iter().any(|e| is_ev(e, "window_shown")
            && e["title"]
                .as_str()
                .is_some_and(|t| t.contains("Second Factor"))),
        "no second-factor window in TWS mode"
    );

    // Every typed character went where it belongs: the code only into the code field, and
    // nothing typed into the password field after the code entry appeared.
    let typed = typed_chars(&evs);
    let field = |f: &str| {
        typed
            .iter()
            .filter(|(w, ff, _)| w == "Login" && ff == f)
            .map(|(_, _, t)| t.clone())
            .collect::<String>()
    };
    assert_eq!(field("code"), code, "typed: {typed:?}");
    assert_eq!(field("password"), TEST_PASSWORD, "typed: {typed:?}");
    assert_eq!(field("username"), TEST_USER, "typed: {typed:?}");
    for (w, f, t) in &typed {
        // Space on a focused toggle or button presses it (and is recorded as a typed " ");
        // letters typed into the device list select an entry (type-ahead).
        let text_field = ["code", "password", "username"].contains(&f.as_str());
        let harmless = t.chars().all(|c| c == ' ')
            || (f == "devices" && t.chars().all(|c| c.is_ascii_alphabetic()));
        assert!(
            w == "Login" && (text_field || harmless),
            "characters {t:?} typed into {w:?}/{f:?}"
        );
    }
    let first_code_key = evs
        .iter()
        .position(|e| is_ev(e, "key") && e["field"] == "code")
        .expect("keys in the code field");
    assert!(
        first_code_key > content,
        "the code came after the code entry"
    );
    assert!(
        !evs[content..]
            .iter()
            .any(|e| is_ev(e, "key") && e["field"] == "password"),
        "no key into the password field once the second factor showed"
    );
    // OK of the code entry was pressed from the keyboard with exactly the code in the field.
    let ok = evs
        .iter()
        .rev()
        .find(|e| is_ev(e, "button") && e["window"] == "Login" && e["button"] == "OK")
        .expect("OK pressed");
    assert_eq!(ok["how"], "keyboard");
    assert_eq!(ok["fields"]["code"], code.as_str(), "{ok}");

    // Ready came from the API handshake on the TWS port, after the main window.
    assert!(evs.iter().any(|e| is_ev(e, "window_shown")
        && e["title"] == "U1234567 Interactive Brokers"
        && e["kind"] == "frame"));
    let listen = events(&rec, "api_listen");
    assert_eq!(listen[0]["port"], install.api_port as u64);
    assert!(
        !events(&rec, "api_start").is_empty(),
        "the probe started the API"
    );
}

#[test]
fn tws_live_with_totp_reads_the_frame_and_types_the_code_into_the_code_field() {
    require_tool("tesseract", "tesseract-ocr");
    let install = SimInstall::new_tws(&live());
    let mut w = Warden::start(&install, "live", "");
    let ready = w.wait_ready(LOGIN);
    assert!(ready.contains("STATUS=ready"), "{ready}");
    assert_live_tws_login(&install);
    let log = w.log();
    assert!(
        log.contains("TWS: the login frame asks for the second factor code"),
        "the content reader saw the code entry:\n{}",
        w.log_tail(60)
    );
    assert!(!log.contains("titles only"), "{}", w.log_tail(60));
    w.assert_no_secret_in_logs(&install);
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_live_with_titles_only_types_the_code_into_the_code_field() {
    let install = SimInstall::new_tws(&live());
    let mut w = Warden::start_with(&install, "live", "content_reader = \"none\"", "");
    w.wait_ready(LOGIN);
    assert_live_tws_login(&install);
    assert!(
        w.log()
            .contains("TWS: typing the code into the login frame (titles only)"),
        "{}",
        w.log_tail(60)
    );
    w.assert_no_secret_in_logs(&install);
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_paper_reaches_ready_and_handles_the_tws_dialogs() {
    let install = SimInstall::new_tws(&Scenario::new().set("bid_ask_notice", true));
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let rec = install.record();
    let attempts = events(&rec, "login_attempt");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["mode"], "paper");
    assert!(events(&rec, "code").is_empty(), "no code in paper mode");
    assert!(events(&rec, "window_shown")
        .iter()
        .any(|e| e["title"] == "DU1234567 Interactive Brokers (Simulated Trading)"));
    assert_eq!(
        events(&rec, "api_listen")[0]["port"],
        install.api_port as u64
    );
    // The market-data notice is acknowledged (it only changes how sizes are shown).
    let mut rec = install.record();
    rec.wait_for(
        "Bid/Ask notice acknowledged",
        Duration::from_secs(20),
        |e| {
            is_ev(e, "button")
                && e["window"] == "Bid, Ask and Last Size Display Update"
                && e["button"] == "I understand - display market data"
        },
    );
    // An API write-access request is never granted: left for a person, who is told.
    install.control("api_write_access");
    rec.wait_window(
        "API client needs write access action confirmation",
        Duration::from_secs(10),
    );
    w.wait_log("API client needs write access", Duration::from_secs(10));
    // Give ibwarden the time a wrong answer would take (it answers dialogs within ~0.5 s),
    // checked against a later event rather than a bare sleep: a Tip of the Day shown after
    // it gets answered, so ibwarden has looked at the windows since.
    install.control("tip");
    rec.wait_for("Tip answered", Duration::from_secs(10), |e| {
        is_ev(e, "button") && e["window"] == "Tip of the Day"
    });
    assert!(
        !rec.events().iter().any(|e| is_ev(e, "button")
            && e["window"] == "API client needs write access action confirmation"),
        "write access was answered"
    );
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_sigterm_exits_through_the_exit_confirmation() {
    let install = SimInstall::new_tws(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let status = w.stop_and_wait(Duration::from_secs(60));
    assert!(status.success(), "ibwarden exits 0 on SIGTERM: {status:?}");
    let rec = install.record();
    let evs = rec.events();
    let close = evs
        .iter()
        .position(|e| is_ev(e, "window_close_request"))
        .expect("WM_DELETE_WINDOW sent");
    assert_eq!(
        evs[close]["title"],
        "DU1234567 Interactive Brokers (Simulated Trading)"
    );
    let yes = evs
        .iter()
        .position(|e| {
            is_ev(e, "button")
                && e["window"] == "Are you sure you want to exit?"
                && e["button"] == "Yes"
        })
        .expect("the exit confirmation was answered Yes");
    assert!(yes > close);
    assert!(evs[yes..]
        .iter()
        .any(|e| is_ev(e, "window_shown") && e["title"] == "Shutdown progress"));
    let exit = evs
        .iter()
        .rev()
        .find(|e| is_ev(e, "exit"))
        .expect("TWS exited by itself");
    assert_eq!(exit["reason"], "window_closed", "{exit}");
    assert_eq!(exit["code"], 0);
}

#[test]
fn tws_crash_is_recovered() {
    let install = SimInstall::new_tws(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let port = install.control_port();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("control connect");
    s.write_all(b"crash\n").expect("control write");
    w.wait_ready_again(LOGIN);
    let rec = install.record();
    assert_eq!(events(&rec, "start").len(), 2, "one relaunch");
    assert!(events(&rec, "start").iter().all(|e| e["program"] == "tws"));
    assert!(w.log().contains("jvm crashed"), "{}", w.log_tail(30));
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_nightly_restart_relaunches_with_the_token_and_types_nothing() {
    // 60 s scaled by the test time factor (0.05): TWS restarts itself 3 s after the login.
    let install = SimInstall::new_tws(&live().set("nightly_restart_after_s", 60));
    let mut w = Warden::start_with(&install, "live", "content_reader = \"none\"", "");
    w.wait_ready(LOGIN);
    w.wait_ready_again(RELOGIN);
    let rec = install.record();
    let starts = events(&rec, "start");
    assert!(starts.len() >= 2);
    assert!(starts[1]["restart"].is_string(), "{:?}", starts[1]);
    let logins = events(&rec, "logged_in");
    assert_eq!(logins[1]["via"], "token", "{logins:?}");
    assert_eq!(events(&rec, "code").len(), 1, "no code for the token login");
    let creds = events(&rec, "login_attempt")
        .iter()
        .filter(|e| e["verdict"] == "ok")
        .count();
    assert_eq!(creds, 1, "credentials typed once");
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_relogin_required_relaunches_tws_for_a_full_login() {
    let install = SimInstall::new_tws(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    install.control("relogin_required");
    w.wait_ready_again(LOGIN);
    let rec = install.record();
    let attempts = events(&rec, "login_attempt");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts.iter().all(|a| a["verdict"] == "ok"),
        "{attempts:?}"
    );
    let starts = events(&rec, "start");
    assert_eq!(starts.len(), 2, "TWS relaunched");
    assert!(
        starts[1]["restart"].is_null(),
        "a full login: {:?}",
        starts[1]
    );
    // The first TWS was closed through its new login window, not killed.
    let exits = events(&rec, "exit");
    assert_eq!(exits[0]["reason"], "window_closed", "{exits:?}");
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_titles_only_code_too_late_for_the_code_entry_is_never_a_login_attempt() {
    // The second factor gives up after 1 s (20 s scaled), before the titles-only fallback
    // types (4 s after the credentials): its keys land in the login panel, where they must
    // not press `Log In`.
    let install = SimInstall::new_tws(&Scenario::new().set("twofa_timeout_s", 20));
    let mut w = Warden::start_with(&install, "live", "content_reader = \"none\"", "");
    let mut rec = install.record();
    rec.wait_for("the second factor timed out", LOGIN, |e| {
        is_ev(e, "login_reset") && e["reason"] == "twofa_timeout"
    });
    // The fallback's keys end with a Space; in the login panel it lands in a text field.
    let space = rec.wait_for("the fallback's Space", LOGIN, |e| {
        is_ev(e, "key") && e["char"] == " " && e["window"] == "Login"
    });
    assert!(
        ["username", "password"].contains(&space["field"].as_str().unwrap_or("")),
        "the Space went into a text field: {space}"
    );
    // Sync with the simulator's event thread: a dialog opened now is recorded after every
    // effect of the keys before it.
    install.control("tip");
    rec.wait_window("Tip of the Day", Duration::from_secs(10));
    let evs = rec.events();
    let reset = evs
        .iter()
        .position(|e| is_ev(e, "login_reset"))
        .expect("reset");
    assert!(
        !evs[reset..]
            .iter()
            .any(|e| is_ev(e, "button") && e["window"] == "Login"),
        "a button of the login panel was pressed by the code keys"
    );
    let attempts = events(&rec, "login_attempt");
    assert_eq!(
        attempts.len(),
        1,
        "no login attempt from the code: {attempts:?}"
    );
    assert!(w
        .log()
        .contains("TWS: typing the code into the login frame (titles only)"));
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_reader_chooses_the_device_inside_the_frame() {
    require_tool("tesseract", "tesseract-ocr");
    let install = SimInstall::new_tws(&live().set("devices", "IB Key,Mobile Authenticator app"));
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(LOGIN);
    let rec = install.record();
    let dev = events(&rec, "device");
    assert_eq!(dev.len(), 1, "{dev:?}");
    assert_eq!(dev[0]["device"], "Mobile Authenticator app");
    assert!(events(&rec, "content")
        .iter()
        .any(|e| e["what"] == "device_chooser" && e["window"] == "Login"));
    assert_live_tws_login(&install);
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_reader_sees_a_rejected_code_come_back_and_types_the_next_step() {
    require_tool("tesseract", "tesseract-ocr");
    // 1200 s scaled = 60 s: the next step's code may be up to 30 s away.
    let install = SimInstall::new_tws(
        &Scenario::new()
            .set("twofa_timeout_s", 1200)
            .set("reject_codes", 1),
    );
    let mut w = Warden::start(&install, "live", "");
    w.wait_ready(RELOGIN);
    let rec = install.record();
    let codes = events(&rec, "code");
    assert_eq!(codes.len(), 2, "{codes:?}");
    assert_eq!(codes[0]["verdict"], "forced_reject");
    assert_eq!(codes[1]["verdict"], "accepted");
    assert!(
        codes[1]["step"].as_u64() > codes[0]["step"].as_u64(),
        "a new step: {codes:?}"
    );
    assert_eq!(events(&rec, "login_attempt").len(), 1);
    // Both codes went into the code field, nothing else did.
    let typed: String = rec
        .events()
        .iter()
        .filter(|e| is_ev(e, "key") && e["field"] == "code")
        .filter_map(|e| e["char"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        typed,
        format!(
            "{}{}",
            codes[0]["code"].as_str().expect("code"),
            codes[1]["code"].as_str().expect("code")
        )
    );
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}

#[test]
fn tws_restart_command_closes_tws_through_the_exit_confirmation() {
    let install = SimInstall::new_tws(&Scenario::new());
    let mut w = Warden::start(&install, "paper", "");
    w.wait_ready(LOGIN);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["restart", "--config"])
        .arg(&w.config)
        .env("HOME", w.dir.path())
        .output()
        .expect("run ibwarden restart");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.wait_ready_again(LOGIN);
    let rec = install.record();
    let evs = rec.events();
    assert!(evs.iter().any(|e| is_ev(e, "button")
        && e["window"] == "Are you sure you want to exit?"
        && e["button"] == "Yes"));
    let exits = events(&rec, "exit");
    assert_eq!(exits[0]["reason"], "window_closed", "{exits:?}");
    assert_eq!(events(&rec, "start").len(), 2);
    assert!(w.stop_and_wait(Duration::from_secs(60)).success());
}
