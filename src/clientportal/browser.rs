//! The Client Portal login through the gateway's own web page, in headless Chromium (Debian's
//! `chromium`) driven over the DevTools protocol.
//!
//! Why `chromiumoxide`: it speaks CDP from Rust on tokio (the runtime ibwarden already has),
//! with the protocol's types generated from Chromium's own protocol definition, so a call
//! that does not exist does not compile; no WebDriver server (chromedriver, Selenium) and no
//! Node are needed, which is what IBeam's users fight with. Measured here: it drives
//! Debian's Chromium 156 headless (launch to first evaluate about 0.5 s).
//!
//! The rules of the desktop login hold: each element is found by role and label
//! ([`super::selectors`]), each value is read back from the page and compared before the
//! button that spends a login attempt or a code is pressed, and every wait has a deadline.
//! Secrets never reach Chromium's argv (only `https://127.0.0.1:PORT/` does), its profile
//! (a fresh private directory, wiped before and after) or its logs (none are enabled); they
//! are typed with `Input.insertText`, as an input method would. The browser is closed when
//! the login ends: it costs nothing while the session lasts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::Page;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::machine::LoginOutcome;
use super::selectors::{self as sel, Target};
use crate::secret::Secret;

/// What a login needs.
pub struct LoginRequest {
    /// The gateway's login page (`https://127.0.0.1:PORT/`).
    pub url: String,
    /// The Chromium binary.
    pub chromium: PathBuf,
    /// A directory for the browser profile: wiped before and after, mode 0700.
    pub profile_dir: PathBuf,
    /// IBKR username.
    pub username: String,
    /// IBKR password.
    pub password: Secret,
    /// The code to type, and how long to wait before it is valid; `None` for a paper
    /// account or an account without the app (then no code is typed).
    pub code: Option<(Secret, Duration)>,
    /// The whole login's deadline.
    pub timeout: Duration,
    /// Start Chromium with `--no-sandbox`: its own sandbox cannot start here
    /// ([`sandbox_blocker`] says why).
    pub no_sandbox: bool,
}

/// Why Chromium's own sandbox cannot start in this process, if it cannot.
///
/// Its sandbox needs a user namespace, or else its setuid helper (`chrome-sandbox`, Debian's
/// `chromium-sandbox`). Measured here: as a non-root user with new namespaces refused by
/// seccomp and no-new-privileges set (what the systemd unit's `RestrictNamespaces=yes` and
/// `NoNewPrivileges=yes` do), Chromium exits at once with "No usable sandbox!". Then it is
/// started with `--no-sandbox`: the page it shows is the local gateway's login page only, and
/// the service's own sandbox still holds it.
pub fn sandbox_blocker(chromium: &Path) -> Option<String> {
    if nix::unistd::Uid::effective().is_root() {
        return Some("ibwarden runs as root, and Chromium refuses its sandbox as root".into());
    }
    if user_namespaces_work() {
        return None;
    }
    if no_new_privs() {
        return Some(
            "new user namespaces are refused (systemd RestrictNamespaces=, a container's \
             seccomp profile) and no-new-privileges forbids the setuid sandbox"
                .into(),
        );
    }
    if setuid_helper(chromium) {
        return None;
    }
    Some(
        "new user namespaces are refused and Chromium's setuid sandbox (Debian: \
         chromium-sandbox) is not installed"
            .into(),
    )
}

/// A child can enter a new user namespace (tried in a child, on its way to exec).
fn user_namespaces_work() -> bool {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only unshare(2), a raw system call, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).map_err(std::io::Error::from)
        });
    }
    cmd.status().is_ok_and(|s| s.success())
}

fn no_new_privs() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().any(|l| {
            l.strip_prefix("NoNewPrivs:")
                .is_some_and(|v| v.trim() == "1")
        })
    })
}

/// `chrome-sandbox` beside the real Chromium binary, setuid root.
fn setuid_helper(chromium: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(chromium).unwrap_or_else(|_| chromium.to_path_buf());
    // Debian's /usr/bin/chromium is a shell script that runs /usr/lib/chromium/chromium.
    let dirs = [
        real.parent().map(Path::to_path_buf),
        Some(PathBuf::from("/usr/lib/chromium")),
    ];
    dirs.iter().flatten().any(|d| {
        std::fs::metadata(d.join("chrome-sandbox"))
            .is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0)
    })
}

/// Finds Chromium on `PATH` (Debian: `chromium`).
pub fn find_chromium(path_env: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let path = path_env?;
    for dir in std::env::split_paths(path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Logs in; the outcome as the machine understands it. The browser is gone when it returns,
/// also when `cancel` fires first (the machine gave the login up): the login is dropped,
/// which kills Chromium, and the profile is wiped all the same.
pub async fn login(req: LoginRequest, cancel: CancellationToken) -> LoginOutcome {
    let started = Instant::now();
    if let Err(e) = fresh_dir(&req.profile_dir) {
        return LoginOutcome::NotSubmitted(format!("cannot prepare the browser profile: {e}"));
    }
    let outcome = login_in(&req, cancel).await;
    let _ = std::fs::remove_dir_all(&req.profile_dir);
    info!(outcome = ?outcome, took_ms = started.elapsed().as_millis() as u64, "browser login finished");
    outcome
}

/// [`login`] in the profile directory as it is (it must exist): the caller wipes it. The
/// profile's preferences are written first: no password manager, no autofill, so Chromium
/// keeps nothing that was typed (the `Login Data` store would hold the password, only
/// obfuscated, with `--password-store=basic`).
pub async fn login_in(req: &LoginRequest, cancel: CancellationToken) -> LoginOutcome {
    if let Err(e) = write_preferences(&req.profile_dir) {
        return LoginOutcome::NotSubmitted(format!("cannot prepare the browser profile: {e}"));
    }
    let submitted = std::sync::atomic::AtomicBool::new(false);
    let ended = |why: String| {
        if submitted.load(std::sync::atomic::Ordering::SeqCst) {
            LoginOutcome::Failed(why)
        } else {
            LoginOutcome::NotSubmitted(why)
        }
    };
    let outcome = tokio::select! {
        r = tokio::time::timeout(req.timeout, run(req, &submitted)) => match r {
            Ok(o) => o,
            Err(_) => ended(format!("the login did not finish within {}s", req.timeout.as_secs())),
        },
        _ = cancel.cancelled() => ended("abandoned".into()),
    };
    outcome
}

/// `Default/Preferences` of a fresh profile: nothing typed is remembered.
const PREFERENCES: &str = r#"{"credentials_enable_service":false,"credentials_enable_autosignin":false,"profile":{"password_manager_enabled":false},"autofill":{"enabled":false,"profile_enabled":false,"credit_card_enabled":false},"savefile":{"default_directory":"/nonexistent"}}"#;

fn write_preferences(profile: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = profile.join("Default");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    std::fs::write(dir.join("Preferences"), PREFERENCES)
}

fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

async fn run(req: &LoginRequest, submitted: &std::sync::atomic::AtomicBool) -> LoginOutcome {
    let mut builder = BrowserConfig::builder()
        .chrome_executable(&req.chromium)
        .user_data_dir(&req.profile_dir)
        .new_headless_mode()
        .launch_timeout(Duration::from_secs(30))
        .request_timeout(Duration::from_secs(15))
        .args([
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--password-store=basic",
            "--ignore-certificate-errors",
        ]);
    if req.no_sandbox {
        builder = builder.no_sandbox();
    }
    let config = match builder.build() {
        Ok(c) => c,
        Err(e) => return LoginOutcome::NotSubmitted(format!("browser config: {e}")),
    };
    let (mut browser, mut handler) = match Browser::launch(config).await {
        Ok(b) => b,
        Err(e) => return LoginOutcome::NotSubmitted(format!("cannot start Chromium: {e}")),
    };
    let events = tokio::spawn(async move {
        while let Some(ev) = handler.next().await {
            if let Err(e) = ev {
                debug!(error = %e, "browser event");
            }
        }
    });
    let outcome = match browser.new_page("about:blank").await {
        Ok(page) => steps(&page, req, submitted).await,
        Err(e) => LoginOutcome::NotSubmitted(format!("cannot open a browser tab: {e}")),
    };
    let _ = browser.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), browser.wait()).await;
    let _ = browser.kill().await;
    events.abort();
    outcome
}

/// What the page shows now.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    LoggedIn,
    Wrong,
    CodeRejected,
    Locked,
    Has(&'static str),
    Nothing,
}

async fn eval_string(page: &Page, js: &str) -> Option<String> {
    page.evaluate_expression(js)
        .await
        .ok()?
        .into_value::<String>()
        .ok()
}

async fn page_text(page: &Page) -> String {
    eval_string(
        page,
        "document.body ? document.body.innerText.toLowerCase() : ''",
    )
    .await
    .unwrap_or_default()
}

/// Finds `t` and marks it `data-ibw=mark`; `Err(labels seen)` when absent.
async fn find(page: &Page, t: &Target, mark: &str) -> Result<(), String> {
    let names = serde_json::to_string(t.names).unwrap_or_else(|_| "[]".into());
    let js = format!(
        "{}({:?}, {names}, {:?})",
        sel::FINDER_JS.trim(),
        t.role.js(),
        mark
    );
    let reply = eval_string(page, &js)
        .await
        .ok_or("the page did not answer")?;
    let v: serde_json::Value = serde_json::from_str(&reply).map_err(|_| "no answer")?;
    if v["found"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err(v["seen"].to_string())
    }
}

/// Waits (at most `within`) until the page shows one of `targets` or an outcome text.
async fn wait_for(page: &Page, targets: &[&'static Target], within: Duration) -> Seen {
    let deadline = Instant::now() + within;
    loop {
        let text = page_text(page).await;
        let any = |list: &[&str]| list.iter().any(|t| text.contains(t));
        if any(sel::LOGGED_IN) {
            return Seen::LoggedIn;
        }
        if any(sel::WRONG_CREDENTIALS) {
            return Seen::Wrong;
        }
        if any(sel::CODE_REJECTED) {
            return Seen::CodeRejected;
        }
        if any(sel::LOCKED) {
            return Seen::Locked;
        }
        for t in targets {
            if find(page, t, "probe").await.is_ok() {
                return Seen::Has(t.what);
            }
        }
        if Instant::now() >= deadline {
            return Seen::Nothing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Types `text` into `t` (replacing what it held) and reads it back: true when the field
/// holds exactly `text`.
async fn fill(page: &Page, t: &Target, text: &str) -> Result<bool, String> {
    find(page, t, "fill")
        .await
        .map_err(|seen| format!("{} was not found (fields seen: {seen})", t.what))?;
    let clear = "(function(){const el=document.querySelector(\"[data-ibw='fill']\");\
                 el.focus(); el.select && el.select(); el.value='';\
                 el.dispatchEvent(new Event('input',{bubbles:true})); return 'ok';})()";
    eval_string(page, clear)
        .await
        .ok_or("the page did not answer")?;
    page.execute(InsertTextParams::new(text.to_string()))
        .await
        .map_err(|e| format!("typing into {}: {e}", t.what))?;
    let read = "(function(){const el=document.querySelector(\"[data-ibw='fill']\");\
                return el ? el.value : '';})()";
    let mut got = eval_string(page, read).await.unwrap_or_default();
    let same = got == text;
    zeroize::Zeroize::zeroize(&mut got);
    Ok(same)
}

async fn click(page: &Page, t: &Target) -> Result<(), String> {
    find(page, t, "click")
        .await
        .map_err(|seen| format!("{} was not found (buttons seen: {seen})", t.what))?;
    eval_string(
        page,
        "(function(){const el=document.querySelector(\"[data-ibw='click']\");\
         el.click(); return 'ok';})()",
    )
    .await
    .map(|_| ())
    .ok_or_else(|| format!("{} could not be pressed", t.what))
}

/// Fills `t`, once more if the first reading differs; never presses on a mismatch.
async fn fill_checked(page: &Page, t: &Target, text: &str) -> Result<(), LoginOutcome> {
    for attempt in 0..2 {
        match fill(page, t, text).await {
            Ok(true) => return Ok(()),
            Ok(false) => warn!(
                field = t.what,
                attempt, "the field does not hold what was typed"
            ),
            Err(e) => return Err(LoginOutcome::Failed(e)),
        }
    }
    Err(LoginOutcome::Failed(format!(
        "{} does not hold what was typed; nothing was submitted",
        t.what
    )))
}

/// Picks the authenticator app in the device list: Ok(false) when the list has no such
/// option.
async fn choose_authenticator(page: &Page) -> Result<bool, String> {
    find(page, &sel::DEVICE_LIST, "device")
        .await
        .map_err(|seen| format!("the second-factor list was not found (seen: {seen})"))?;
    let (texts, value) = sel::AUTHENTICATOR_OPTION;
    let texts = serde_json::to_string(texts).unwrap_or_else(|_| "[]".into());
    let js = format!(
        "(function(texts, value){{const s=document.querySelector(\"[data-ibw='device']\");\
         const norm=x=>(x||'').replace(/\\s+/g,' ').trim().toLowerCase();\
         const o=Array.from(s.options).find(o=>texts.some(t=>norm(o.textContent).includes(t)))\
         || Array.from(s.options).find(o=>o.value===value);\
         if(!o) return 'none'; s.value=o.value;\
         s.dispatchEvent(new Event('input',{{bubbles:true}}));\
         s.dispatchEvent(new Event('change',{{bubbles:true}}));\
         return s.value===o.value ? 'chosen' : 'not-chosen';}})({texts}, {value:?})"
    );
    match eval_string(page, &js).await.as_deref() {
        Some("chosen") => Ok(true),
        Some("none") => Ok(false),
        other => Err(format!(
            "the authenticator option could not be chosen ({other:?})"
        )),
    }
}

async fn steps(
    page: &Page,
    req: &LoginRequest,
    submitted: &std::sync::atomic::AtomicBool,
) -> LoginOutcome {
    let step_wait = Duration::from_secs(30);
    // Measured: a tab opened directly on the URL (`new_page(url)`) now and then never
    // navigated (the gateway saw no request at all; 1 of 3 runs). A blank tab then `goto`
    // did not fail in 6 runs; the page is still asked for again, at most 4 times with 8 s
    // each, as a bound. Nothing was typed yet, so asking again is safe.
    let mut form = Seen::Nothing;
    for attempt in 0..4 {
        if let Err(e) = page.goto(req.url.as_str()).await {
            debug!(attempt, error = %e, "opening the login page");
        }
        form = wait_for(page, &[&sel::USERNAME], Duration::from_secs(8)).await;
        if form != Seen::Nothing {
            break;
        }
        warn!(
            attempt,
            "the login page did not show its form; asking for it again"
        );
    }
    match form {
        Seen::LoggedIn => return LoginOutcome::LoggedIn,
        Seen::Has(_) => {}
        other => {
            return LoginOutcome::NotSubmitted(format!("no login form on the page ({other:?})"))
        }
    }
    let unsent = |o: LoginOutcome| match o {
        LoginOutcome::Failed(why) => LoginOutcome::NotSubmitted(why),
        other => other,
    };
    if let Err(o) = fill_checked(page, &sel::USERNAME, &req.username).await {
        return unsent(o);
    }
    if let Err(o) = fill_checked(page, &sel::PASSWORD, req.password.expose()).await {
        return unsent(o);
    }
    // Both fields were read back: only now the attempt is spent.
    if let Err(e) = click(page, &sel::LOGIN).await {
        return LoginOutcome::NotSubmitted(e);
    }
    submitted.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = wait_for(page, &[&sel::DEVICE_LIST, &sel::CODE], step_wait).await;
    if seen == Seen::Has(sel::DEVICE_LIST.what) {
        match choose_authenticator(page).await {
            Ok(true) => {}
            Ok(false) => return LoginOutcome::NoAuthenticator,
            Err(e) => return LoginOutcome::Failed(e),
        }
        if let Err(e) = click(page, &sel::DEVICE_CONTINUE).await {
            return LoginOutcome::Failed(e);
        }
        seen = wait_for(page, &[&sel::CODE], step_wait).await;
    }
    match seen {
        Seen::LoggedIn => return LoginOutcome::LoggedIn,
        Seen::Wrong => return LoginOutcome::WrongCredentials,
        Seen::Locked => return LoginOutcome::Locked,
        Seen::CodeRejected => return LoginOutcome::CodeRejected,
        Seen::Has(_) => {}
        Seen::Nothing => {
            return LoginOutcome::Failed("after the login button: no page ibwarden knows".into())
        }
    }
    let Some((code, wait)) = &req.code else {
        return LoginOutcome::Failed(
            "the page asks for a code, but no activation code is configured".into(),
        );
    };
    if !wait.is_zero() {
        debug!(
            wait_ms = wait.as_millis() as u64,
            "waiting for the code's step"
        );
        tokio::time::sleep(*wait).await;
    }
    if let Err(o) = fill_checked(page, &sel::CODE, code.expose()).await {
        return o;
    }
    if let Err(e) = click(page, &sel::CODE_SUBMIT).await {
        return LoginOutcome::Failed(e);
    }
    match wait_for(page, &[], step_wait).await {
        Seen::LoggedIn => LoginOutcome::LoggedIn,
        Seen::CodeRejected => LoginOutcome::CodeRejected,
        Seen::Wrong => LoginOutcome::WrongCredentials,
        Seen::Locked => LoginOutcome::Locked,
        _ => LoginOutcome::Failed("after the code: no page ibwarden knows".into()),
    }
}
