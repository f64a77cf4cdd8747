//! The Client Portal gateway simulator (tests/clientportal-sim) driven directly over HTTPS,
//! without ibwarden: the browser login by form posts, second-factor checks, the API's session
//! states, timeouts and scenario faults.
#[path = "common/clientportal.rs"]
mod clientportal;
mod common;

use std::time::{Duration, Instant};

use clientportal::{
    current_step, html, usable_step, CpGateway, CpInstall, CpScenario, ALERT_CODE, ALERT_INVALID,
    ALERT_LOCKED, ALERT_PUSH_TIMEOUT, CP_START_TIMEOUT, CP_STEP_TIMEOUT, LABEL_CODE, LABEL_DEVICE,
    LABEL_PASSWORD, LABEL_USERNAME, LOGIN_URL, SUCCESS_TEXT,
};
use common::is_ev;

const STATUS: &str = "/v1/api/iserver/auth/status";

#[test]
fn login_by_form_posts_authenticates_and_logout_ends_it() {
    let mut gw = CpGateway::start(&CpScenario::new().set("auth_delay_ms", 300));
    let out = gw.install.stdout();
    assert!(
        out.contains(&format!(
            "Open https://localhost:{} to login",
            gw.install.port
        )),
        "startup lines: {out}"
    );

    // No session yet: every API call is 401.
    for (m, p) in [
        ("GET", STATUS),
        ("POST", STATUS),
        ("POST", "/v1/api/tickle"),
    ] {
        let (st, v) = gw.client.api(m, p);
        assert_eq!(st, 401, "{m} {p}: {v}");
        assert_eq!(v["statusCode"], 401);
    }
    assert_eq!(gw.client.get("/nothing/here").status, 404);
    assert_eq!(gw.client.api("GET", "/v1/api/portfolio/accounts").0, 404);

    // GET / redirects to the login page.
    let root = gw.client.get("/");
    assert_eq!(root.status, 302);
    assert_eq!(root.location.as_deref(), Some(LOGIN_URL));

    // The login page: labelled fields, the real page's ids/names and button classes.
    let page = gw.client.get(LOGIN_URL);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let user = html::by_label(&page.body, LABEL_USERNAME).expect("username field");
    assert_eq!(user.attr("id"), Some("xyz-field-username"));
    assert_eq!(user.attr("type"), Some("text"));
    assert_eq!(user.attr("aria-label"), Some(LABEL_USERNAME));
    let pw = html::by_label(&page.body, LABEL_PASSWORD).expect("password field");
    assert_eq!(pw.attr("id"), Some("xyz-field-password"));
    assert_eq!(pw.attr("type"), Some("password"));
    let els = html::elements(&page.body);
    let button = els
        .iter()
        .find(|e| e.tag == "button")
        .expect("login button");
    assert_eq!(button.text, "Login");
    assert_eq!(button.attr("class"), Some("btn btn-lg btn-primary"));
    let form = els.iter().find(|e| e.tag == "form").expect("form");
    assert_eq!(form.attr("method"), Some("post"));
    assert_eq!(form.attr("action"), Some("/sso/Login"));
    assert_eq!(html::alert(&page.body), None);

    // Credentials → device page (IB Key first, as IBKR lists it).
    let dev = gw.client.submit(
        &page.body,
        &[
            (LABEL_USERNAME, common::TEST_USER),
            (LABEL_PASSWORD, common::TEST_PASSWORD),
        ],
    );
    assert_eq!(dev.status, 200);
    assert_eq!(
        html::options(&dev.body, LABEL_DEVICE),
        [
            ("5".to_string(), "IB Key".to_string()),
            ("4".to_string(), "Mobile Authenticator app".to_string()),
            ("1".to_string(), "Security code card".to_string()),
        ]
    );
    assert_eq!(html::buttons(&dev.body), ["Continue"]);

    // Mobile Authenticator → code page.
    let code_page = gw.choose_device(&dev.body, "4");
    let field = html::by_label(&code_page.body, LABEL_CODE).expect("code field");
    assert_eq!(field.attr("inputmode"), Some("numeric"));
    assert_eq!(field.attr("maxlength"), Some("6"));
    assert_eq!(field.attr("type"), Some("text"));
    assert_eq!(html::buttons(&code_page.body), ["Verify"]);

    // The SSO session opens at once; the brokerage session follows after auth_delay_ms.
    let step = usable_step(&[]);
    let done = gw.submit_code(&code_page.body, &gw.scenario().code_at_step(step));
    assert!(done.body.contains(SUCCESS_TEXT), "{}", done.body);
    let (st, first) = gw.auth_status();
    assert_eq!(st, 200);
    assert_eq!(first["authenticated"], false, "{first}");
    let v = gw.wait_authenticated();
    assert_eq!(v["competing"], false);
    assert_eq!(v["message"], "");
    assert_eq!(v["fail"], "");
    assert!(v["MAC"].is_string());
    assert!(v["serverInfo"]["serverVersion"]
        .as_str()
        .unwrap()
        .starts_with("Build 10."));

    let (st, t) = gw.client.api("POST", "/v1/api/tickle");
    assert_eq!(st, 200, "{t}");
    assert!(t["session"].as_str().unwrap().len() >= 16);
    assert!(t["ssoExpires"].as_u64().unwrap() > 0);
    assert_eq!(t["collission"], false);
    assert_eq!(t["iserver"]["authStatus"]["authenticated"], true);

    // The record: pages, the attempt, the device, the code, session changes.
    let evs = gw.rec.events();
    let find = |ev: &str| {
        evs.iter()
            .find(|e| is_ev(e, ev))
            .unwrap_or_else(|| panic!("no {ev} in record"))
            .clone()
    };
    let attempt = find("login_attempt");
    assert_eq!(attempt["username"], common::TEST_USER);
    assert_eq!(attempt["password_ok"], true);
    assert_eq!(find("device")["device"], "4");
    let code = find("code");
    assert_eq!(code["accepted"], true);
    assert_eq!(code["step"], step);
    let pages: Vec<&str> = evs
        .iter()
        .filter(|e| is_ev(e, "page"))
        .map(|e| e["page"].as_str().unwrap())
        .collect();
    assert_eq!(
        pages,
        [
            "not_found",
            "redirect",
            "login",
            "device",
            "code",
            "success"
        ]
    );
    assert!(evs
        .iter()
        .any(|e| is_ev(e, "session") && e["authenticated"] == true && e["connected"] == true));
    assert!(evs
        .iter()
        .any(|e| is_ev(e, "api") && e["path"] == STATUS && e["status"] == 401));

    // Logout ends it for every client.
    let (st, v) = gw.client.api("POST", "/v1/api/logout");
    assert_eq!((st, v["status"].clone()), (200, serde_json::json!(true)));
    assert_eq!(gw.auth_status().0, 401);

    // SIGTERM: the JVM's 143, with an exit record.
    gw.proc
        .as_ref()
        .unwrap()
        .child
        .signal_group(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(gw.wait_exit(CP_STEP_TIMEOUT), 143);
    gw.rec.wait_ev("exit", CP_STEP_TIMEOUT);
}

#[test]
fn wrong_password_alert_then_lockout() {
    let gw = CpGateway::start(
        &CpScenario::new()
            .set("max_failures", 2)
            .set("slow_page_ms", 300),
    );
    // slow_page_ms delays every page (not the API).
    let t0 = Instant::now();
    gw.client.get(LOGIN_URL);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let r = gw.submit_credentials(common::TEST_USER, "wrong");
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_INVALID));
    // Still the login form, fields labelled as before.
    assert!(html::by_label(&r.body, LABEL_PASSWORD).is_some());
    let mut rec = gw.install.record();
    let a = rec.wait_ev("login_attempt", CP_STEP_TIMEOUT);
    assert_eq!(a["username"], common::TEST_USER);
    assert_eq!(a["password_ok"], false);
    assert!(a.get("password").is_none(), "the record holds no password");

    let r = gw.submit_credentials(common::TEST_USER, "wrong again");
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_LOCKED));
    // Locked: even the right password is refused.
    let r = gw.submit_credentials(common::TEST_USER, common::TEST_PASSWORD);
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_LOCKED));
    assert!(html::by_label(&r.body, LABEL_DEVICE).is_none());
    let a = rec.wait_for("locked attempt", CP_STEP_TIMEOUT, |v| {
        is_ev(v, "login_attempt") && v["password_ok"] == true
    });
    assert_eq!(a["locked"], true);
}

#[test]
fn rejected_codes_and_code_reuse() {
    let gw = CpGateway::start(&CpScenario::new().set("reject_codes", 1));
    let mut rec = gw.install.record();
    let mut used = Vec::new();

    // A wrong code.
    let page = gw.code_page();
    let step = usable_step(&[]);
    let wrong = gw.scenario().code_at_step(step + 5);
    let r = gw.submit_code(&page, &wrong);
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_CODE));
    let c = rec.wait_ev("code", CP_STEP_TIMEOUT);
    assert_eq!(
        (c["accepted"].clone(), c["reason"].clone()),
        (false.into(), "wrong".into())
    );

    // reject_codes=1: a valid code is rejected once (and its step is burnt).
    let r = gw.submit_code(&r.body, &gw.scenario().code_at_step(step));
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_CODE));
    let c = rec.wait_ev("code", CP_STEP_TIMEOUT);
    assert_eq!(c["accepted"], false);
    assert_eq!(c["step"], step);
    assert_eq!(c["reason"], "reject_codes");
    used.push(step);

    // Reusing it is rejected too; another step's code is accepted.
    let r = gw.submit_code(&r.body, &gw.scenario().code_at_step(step));
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_CODE));
    assert_eq!(rec.wait_ev("code", CP_STEP_TIMEOUT)["reason"], "reused");
    let next = usable_step(&used);
    let r = gw.submit_code(&r.body, &gw.scenario().code_at_step(next));
    assert!(r.body.contains(SUCCESS_TEXT), "{}", r.body);
    assert_eq!(rec.wait_ev("code", CP_STEP_TIMEOUT)["accepted"], true);
    used.push(next);
    gw.wait_authenticated();

    // A new login cannot reuse the accepted code either.
    assert_eq!(gw.client.api("POST", "/v1/api/logout").0, 200);
    let page = gw.code_page();
    let r = gw.submit_code(&page, &gw.scenario().code_at_step(next));
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_CODE));
    let c = rec.wait_ev("code", CP_STEP_TIMEOUT);
    assert_eq!(
        (c["step"].clone(), c["reason"].clone()),
        (next.into(), "reused".into())
    );
    assert_eq!(gw.auth_status().0, 401);
    let third = usable_step(&used);
    let r = gw.submit_code(&r.body, &gw.scenario().code_at_step(third));
    assert!(
        r.body.contains(SUCCESS_TEXT),
        "step {third}, now {}",
        current_step()
    );
}

#[test]
fn strict_code_accepts_only_the_current_step() {
    let gw = CpGateway::start(&CpScenario::new().set("strict_code", true));
    let page = gw.code_page();
    // The previous step is never the current one.
    let prev = current_step() - 1;
    let r = gw.submit_code(&page, &gw.scenario().code_at_step(prev));
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_CODE));
    // The current one (with margin to the boundary).
    let ms = common::now_ms();
    if 30_000 - ms % 30_000 < 2_000 {
        std::thread::sleep(Duration::from_millis(30_000 - ms % 30_000 + 20));
    }
    let r = gw.submit_code(&r.body, &gw.scenario().code_at_step(current_step()));
    assert!(r.body.contains(SUCCESS_TEXT), "{}", r.body);
}

#[test]
fn tickle_keeps_the_session_and_idle_timeout_ends_it() {
    let gw = CpGateway::start(&CpScenario::new().set("idle_timeout_s", 1.5));
    gw.login(&[]);
    gw.wait_authenticated();
    // Tickles every 0.5 s for 3 s: twice the idle timeout, still alive.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (st, t) = gw.client.api("POST", "/v1/api/tickle");
        assert_eq!(st, 200, "tickle: {t}");
        assert!(t["ssoExpires"].as_u64().unwrap() <= 1500);
        std::thread::sleep(Duration::from_millis(500));
    }
    // Silence: the SSO session ends.
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(gw.client.api("POST", "/v1/api/tickle").0, 401);
    assert_eq!(gw.auth_status().0, 401);
    let evs = gw.rec.events();
    assert!(evs.iter().filter(|e| is_ev(e, "tickle")).count() >= 5);
    assert!(evs
        .iter()
        .any(|e| is_ev(e, "session") && e["reason"] == "idle_timeout" && e["sso"] == false));
}

#[test]
fn reauthenticate_restores_an_expired_brokerage_session() {
    let gw = CpGateway::start(&CpScenario::new().set("session_expiry_s", 1.5));
    gw.login(&[]);
    gw.wait_authenticated();
    let (_, v) = gw.wait_status("daily reset", CP_STEP_TIMEOUT, |st, v| {
        st == 200 && v["authenticated"] == false
    });
    assert_eq!(v["connected"], true, "{v}");
    let (st, r) = gw.client.api("POST", "/v1/api/iserver/reauthenticate");
    assert_eq!((st, r["message"].clone()), (200, "triggered".into()));
    gw.wait_authenticated();
    let mut rec = gw.install.record();
    assert_eq!(
        rec.wait_ev("reauthenticate", CP_STEP_TIMEOUT)["outcome"],
        "triggered"
    );
}

#[test]
fn failing_reauthenticate_ends_the_sso_session() {
    let gw = CpGateway::start(
        &CpScenario::new()
            .set("session_expiry_s", 1)
            .set("reauth_fails", true)
            .set("reauth_fail_after_s", 1),
    );
    gw.login(&[]);
    gw.wait_status("daily reset", CP_STEP_TIMEOUT, |st, v| {
        st == 200 && v["authenticated"] == false && v["connected"] == true
    });
    let (st, r) = gw.client.api("POST", "/v1/api/iserver/reauthenticate");
    assert_eq!((st, r["message"].clone()), (200, "triggered".into()));
    let (st, _) = gw.wait_status(
        "401 after the failed reauthentication",
        CP_STEP_TIMEOUT,
        |st, v| st == 401 || v["authenticated"] == true,
    );
    assert_eq!(st, 401, "reauthenticate must not succeed");
    let evs = gw.rec.events();
    assert!(evs
        .iter()
        .any(|e| is_ev(e, "reauthenticate") && e["outcome"] == "fails"));
    assert!(evs
        .iter()
        .any(|e| is_ev(e, "session") && e["reason"] == "reauthenticate_failed"));
}

#[test]
fn ids_changed_randomises_ids_but_labels_stay() {
    let gw = CpGateway::start(&CpScenario::new().set("ids_changed", true));
    let a = gw.client.get(LOGIN_URL).body;
    let b = gw.client.get(LOGIN_URL).body;
    // Every id, name and class of the page's elements (not `<meta name>`).
    let attrs = |page: &str, name: &str| -> Vec<String> {
        html::elements(page)
            .iter()
            .filter(|e| e.tag != "meta")
            .filter_map(|e| e.attr(name).map(str::to_string))
            .collect()
    };
    let (ida, idb) = (attrs(&a, "id"), attrs(&b, "id"));
    assert!(!ida.is_empty());
    assert!(ida.iter().all(|i| !idb.contains(i)), "{ida:?} vs {idb:?}");
    assert!(attrs(&a, "name")
        .iter()
        .all(|n| !attrs(&b, "name").contains(n)));
    assert!(!a.contains("xyz-field-username") && !a.contains("btn-primary"));
    assert_eq!(html::labels(&a), [LABEL_USERNAME, LABEL_PASSWORD]);
    assert_eq!(html::labels(&a), html::labels(&b));
    assert_eq!(html::buttons(&b), ["Login"]);
    let ua = html::by_label(&a, LABEL_USERNAME).unwrap();
    let ub = html::by_label(&b, LABEL_USERNAME).unwrap();
    assert_ne!(ua.attr("id"), ub.attr("id"));
    assert_eq!(ua.attr("aria-label"), Some(LABEL_USERNAME));
    // A client that goes by labels still logs in.
    gw.login(&[]);
    gw.wait_authenticated();
}

#[test]
fn push_only_offers_ib_key_which_times_out() {
    let gw = CpGateway::start(
        &CpScenario::new()
            .set("push_only", true)
            .set("push_timeout_s", 1),
    );
    let dev = gw.submit_credentials(common::TEST_USER, common::TEST_PASSWORD);
    let opts = html::options(&dev.body, LABEL_DEVICE);
    assert_eq!(opts, [("5".to_string(), "IB Key".to_string())]);
    // Posting value 4 anyway is refused.
    let again = gw.choose_device(&dev.body, "4");
    assert!(html::alert(&again.body).is_some());
    assert!(html::by_label(&again.body, LABEL_CODE).is_none());
    let push = gw.choose_device(&again.body, "5");
    assert!(push.body.contains("Check your IB Key app"), "{}", push.body);
    // The page refreshes itself to a poll URL.
    let meta = html::elements(&push.body)
        .into_iter()
        .find(|e| e.tag == "meta" && e.attr("http-equiv") == Some("refresh"))
        .expect("meta refresh");
    let url = meta
        .attr("content")
        .unwrap()
        .split_once("url=")
        .unwrap()
        .1
        .to_string();
    assert!(gw.client.get(&url).body.contains("Check your IB Key app"));
    std::thread::sleep(Duration::from_millis(1_300));
    let r = gw.client.get(&url);
    assert_eq!(html::alert(&r.body).as_deref(), Some(ALERT_PUSH_TIMEOUT));
    assert!(html::by_label(&r.body, LABEL_USERNAME).is_some());
    assert_eq!(gw.auth_status().0, 401);
    let mut rec = gw.install.record();
    rec.wait_ev("push_timeout", CP_STEP_TIMEOUT);
}

#[test]
fn competing_session_and_api_401_count() {
    let gw = CpGateway::start(
        &CpScenario::new()
            .set("api_401_count", 2)
            .set("competing_after_s", 1.5),
    );
    gw.login(&[]);
    assert_eq!(gw.auth_status().0, 401);
    assert_eq!(gw.client.api("POST", "/v1/api/tickle").0, 401);
    gw.wait_authenticated();
    let (_, v) = gw.wait_status("competing", CP_STEP_TIMEOUT, |_, v| v["competing"] == true);
    assert_eq!(v["authenticated"], false);
    // Reauthenticate does not clear it; a new full login does.
    gw.client.api("POST", "/v1/api/iserver/reauthenticate");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(gw.auth_status().1["competing"], true);
    let used = gw
        .rec
        .events()
        .iter()
        .filter(|e| is_ev(e, "code") && e["accepted"] == true)
        .map(|e| e["step"].as_u64().unwrap())
        .collect::<Vec<_>>();
    gw.login(&used);
    let v = gw.wait_authenticated();
    assert_eq!(v["competing"], false);
}

#[test]
fn crash_after_s_exits_with_1() {
    let mut gw = CpGateway::start(&CpScenario::new().set("crash_after_s", 1));
    assert_eq!(gw.wait_exit(CP_START_TIMEOUT), 1);
    let mut rec = gw.install.record();
    let e = rec.wait_ev("exit", CP_STEP_TIMEOUT);
    assert_eq!(e["code"], 1);
    assert_eq!(e["reason"], "crash_after_s");
}

#[test]
fn unknown_scenario_key_is_an_error() {
    let install = CpInstall::new(&CpScenario::new().set("no_such_key", 1));
    let mut p = install.spawn();
    assert_eq!(p.wait_exit(CP_START_TIMEOUT), 2);
    assert!(
        install
            .stderr()
            .contains("unknown scenario key 'no_such_key'"),
        "{}",
        install.stderr()
    );
}

#[test]
fn clients_outside_the_allow_list_are_refused() {
    let install = CpInstall::with_allow(&CpScenario::new(), &["10.1.*"]);
    let gw = CpGateway::start_install(install);
    let conf = std::fs::read_to_string(&gw.install.conf_path).unwrap();
    assert!(conf.contains(&format!("listenPort: {}", gw.install.port)));
    assert_eq!(gw.client.get(LOGIN_URL).status, 403);
    assert_eq!(gw.client.get(STATUS).status, 403);
    let mut rec = gw.install.record();
    assert_eq!(rec.wait_ev("refused", CP_STEP_TIMEOUT)["ip"], "127.0.0.1");
}
