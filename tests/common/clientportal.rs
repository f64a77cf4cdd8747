//! Test harness for the Client Portal gateway simulator (`tests/clientportal-sim`, see its
//! README): the template build, per-test installs, starting `bin/run.sh root/conf.yaml`, an
//! HTTPS client that accepts the install's self-signed certificate, a tiny HTML form reader
//! that finds fields by their `<label>` (so it works with `ids_changed=true`), and the login
//! flow a browser would do.
//!
//! - [`clientportal_template`]: runs `scripts/build-clientportal-sim` once per test process
//!   (a no-op when nothing changed, `flock`-serialised); returns
//!   `target/clientportal-sim/clientportal.gw`.
//! - [`CpScenario`]: the simulator's scenario keys with test defaults (known credentials and
//!   TOTP secret, `auth_delay_ms=200`); [`CpScenario::code_at_step`] gives the code the
//!   simulator accepts for a TOTP step; [`usable_step`] picks a step the simulator accepts now
//!   that is not in a list of used ones.
//! - [`CpInstall::new`] / [`CpInstall::with_allow`]: a temp copy of the template with its own
//!   `root/conf.yaml` (a free `listenPort`, the `ips: allow:` list), `bin/sim.env` (scenario,
//!   record and server-state paths), removed on drop (`IBW_TEST_KEEP=1` keeps it).
//!   [`CpInstall::command`] is the gateway's start command (`bin/run.sh root/conf.yaml` in the
//!   install dir, clean environment); [`CpInstall::start`] spawns it as a [`ChildGuard`] and
//!   waits for the record's `start` event.
//! - [`CpClient`]: blocking HTTPS client (ureq + rustls, certificate verification off, no
//!   redirects followed, no cookies: the real gateway needs none for `/v1/api`).
//! - [`html`]: element scanner, `by_label`, `alert`, `options`, `fill` (hidden fields plus
//!   labelled values: what a browser would post).
//! - [`CpGateway`]: install + process + record + client for one test; `login` (the whole
//!   browser flow with Mobile Authenticator), `wait_status` (poll `auth/status`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    free_port, is_ev, now_ms, properties_text, repo_root, require_tool, shell_exit_code,
    target_dir, totp_code, ChildGuard, Record, TEST_PASSWORD, TEST_TOTP_SECRET, TEST_USER,
};

/// Deadline for the JVM to start and listen on a loaded 2-core box.
pub const CP_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline for one HTTP step or state change.
pub const CP_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The texts the simulator's pages use (labels, buttons, alerts).
pub const LABEL_USERNAME: &str = "Username";
pub const LABEL_PASSWORD: &str = "Password";
pub const LABEL_DEVICE: &str = "Select second factor device";
pub const LABEL_CODE: &str = "Enter the 6-digit code from your authenticator app";
pub const ALERT_INVALID: &str = "Invalid username password combination";
pub const ALERT_LOCKED: &str = "Too many failed attempts. Try again in 15 minutes.";
pub const ALERT_CODE: &str = "Invalid security code";
pub const ALERT_PUSH_TIMEOUT: &str = "Second factor authentication timed out. Please log in again.";
pub const SUCCESS_TEXT: &str = "Client login succeeds";
/// Where `GET /` redirects.
pub const LOGIN_URL: &str = "/sso/Login?forwardTo=22&RL=1&ip2loc=on";

/// Builds the simulator (once per process) and returns the template install
/// `target/clientportal-sim/clientportal.gw`.
pub fn clientportal_template() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_tool("javac", "openjdk-17-jdk");
        require_tool("keytool", "openjdk-17-jre-headless");
        require_tool("flock", "util-linux");
        let out = target_dir().join("clientportal-sim");
        let status = Command::new(repo_root().join("scripts/build-clientportal-sim"))
            .arg(&out)
            .status()
            .expect("run scripts/build-clientportal-sim");
        assert!(
            status.success(),
            "scripts/build-clientportal-sim failed: {status}"
        );
        out.join("clientportal.gw")
    })
}

// ------------------------------------------------------------------------------ scenario

/// Scenario keys for the Client Portal simulator (tests/clientportal-sim/README.md).
#[derive(Clone, Debug)]
pub struct CpScenario {
    entries: BTreeMap<String, String>,
}

impl Default for CpScenario {
    fn default() -> Self {
        Self::new()
    }
}

impl CpScenario {
    /// Test defaults: the common test credentials and TOTP secret, `auth_delay_ms=200`.
    pub fn new() -> CpScenario {
        let mut entries = BTreeMap::new();
        entries.insert("username".to_string(), TEST_USER.to_string());
        entries.insert("password".to_string(), TEST_PASSWORD.to_string());
        entries.insert("totp_secret".to_string(), TEST_TOTP_SECRET.to_string());
        entries.insert("auth_delay_ms".to_string(), "200".to_string());
        CpScenario { entries }
    }

    /// Sets a key (builder style).
    pub fn set(mut self, key: &str, value: impl ToString) -> CpScenario {
        self.entries.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    pub fn username(&self) -> &str {
        self.get("username").unwrap_or("testuser")
    }

    pub fn password(&self) -> &str {
        self.get("password").unwrap_or("Secret-Pass_1!")
    }

    /// The properties-file text (values escaped for java.util.Properties).
    pub fn to_properties(&self) -> String {
        properties_text("clientportal simulator scenario", &self.entries)
    }

    /// The code of TOTP step `step` (RFC 6238, SHA-1, 6 digits, 30 s).
    pub fn code_at_step(&self, step: u64) -> String {
        totp_code(
            self.get("totp_secret").unwrap_or(TEST_TOTP_SECRET),
            step * 30,
        )
    }
}

/// The current TOTP step.
pub fn current_step() -> u64 {
    now_ms() / 1000 / 30
}

/// A TOTP step the simulator accepts now (current ±1) that is not in `used`: the current or
/// next step when free, the previous one only with 3 s left before it falls out of the
/// window; otherwise waits for the next step boundary.
pub fn usable_step(used: &[u64]) -> u64 {
    loop {
        let ms = now_ms();
        let cur = ms / 1000 / 30;
        let left_ms = (cur + 1) * 30_000 - ms;
        for s in [cur, cur + 1] {
            if !used.contains(&s) {
                return s;
            }
        }
        if left_ms > 3_000 && !used.contains(&(cur - 1)) {
            return cur - 1;
        }
        std::thread::sleep(Duration::from_millis(left_ms + 10));
    }
}

// ------------------------------------------------------------------------------ install

/// A per-test copy of the template install. Removed on drop.
pub struct CpInstall {
    pub dir: tempfile::TempDir,
    /// `<root>/clientportal.gw`: the install dir (the gateway is started from here).
    pub install_dir: PathBuf,
    /// `<install>/root/conf.yaml`.
    pub conf_path: PathBuf,
    pub scenario_path: PathBuf,
    pub record_path: PathBuf,
    /// What IBKR's servers remember (used TOTP steps, failures, lockout) across restarts.
    pub state_path: PathBuf,
    /// conf.yaml `listenPort` (a free port).
    pub port: u16,
    pub scenario: CpScenario,
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for e in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let e = e.expect("dir entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
}

/// The template's conf.yaml with `listenPort` and the `ips: allow:` list replaced.
pub fn conf_yaml(template: &str, port: u16, allow: &[&str]) -> String {
    let mut out = String::new();
    let mut in_allow = false;
    for line in template.lines() {
        let t = line.trim();
        if in_allow {
            if t.starts_with("- ") {
                continue;
            }
            in_allow = false;
        }
        if line.starts_with("listenPort:") {
            out.push_str(&format!("listenPort: {port}\n"));
        } else if t == "allow:" {
            out.push_str(line);
            out.push('\n');
            for a in allow {
                out.push_str(&format!("    - {a}\n"));
            }
            in_allow = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

impl CpInstall {
    /// An install whose conf.yaml allows 127.0.0.1 (and the template's other patterns).
    pub fn new(scenario: &CpScenario) -> CpInstall {
        CpInstall::with_allow(scenario, &["127.0.0.1", "192.*", "131.216.*"])
    }

    /// An install whose conf.yaml `ips: allow:` list is `allow`.
    pub fn with_allow(scenario: &CpScenario, allow: &[&str]) -> CpInstall {
        let template = clientportal_template();
        let mut dir = tempfile::Builder::new()
            .prefix("ibw-cp-")
            .tempdir()
            .expect("tempdir");
        if std::env::var_os("IBW_TEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping clientportal install {}", dir.path().display());
        }
        let root = dir.path().to_path_buf();
        let install_dir = root.join("clientportal.gw");
        copy_tree(template, &install_dir);
        fs::create_dir_all(root.join("home")).expect("mkdir home");
        let port = free_port();
        let conf_path = install_dir.join("root/conf.yaml");
        let conf = fs::read_to_string(&conf_path).expect("template conf.yaml");
        fs::write(&conf_path, conf_yaml(&conf, port, allow)).expect("write conf.yaml");
        let scenario_path = root.join("scenario.properties");
        fs::write(&scenario_path, scenario.to_properties()).expect("write scenario");
        let record_path = root.join("record.jsonl");
        let state_path = root.join("server-state.properties");
        fs::write(
            install_dir.join("bin/sim.env"),
            format!(
                "SIM_SCENARIO='{}'\nSIM_RECORD='{}'\nSIM_STATE='{}'\n",
                scenario_path.display(),
                record_path.display(),
                state_path.display()
            ),
        )
        .expect("write sim.env");
        CpInstall {
            dir,
            install_dir,
            conf_path,
            scenario_path,
            record_path,
            state_path,
            port,
            scenario: scenario.clone(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A reader of the record file, cursor at the start.
    pub fn record(&self) -> Record {
        Record::new(&self.record_path)
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// The gateway's start command as an operator runs it: `bin/run.sh root/conf.yaml` in the
    /// install dir, environment PATH/HOME/LANG plus `JAVA_OPTS` for a fast test JVM; output
    /// to `<root>/gw.stdout` and `<root>/gw.stderr`.
    pub fn command(&self) -> Command {
        require_tool("java", "openjdk-17-jdk");
        let mut cmd = Command::new(self.install_dir.join("bin/run.sh"));
        cmd.arg("root/conf.yaml")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root().join("home"))
            .env("LANG", "C.UTF-8")
            .env(
                "JAVA_OPTS",
                "-Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto",
            )
            .current_dir(&self.install_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                fs::File::create(self.root().join("gw.stdout")).expect("stdout file"),
            ))
            .stderr(Stdio::from(
                fs::File::create(self.root().join("gw.stderr")).expect("stderr file"),
            ));
        cmd
    }

    /// Spawns the gateway without waiting.
    pub fn spawn(&self) -> CpProcess {
        CpProcess {
            child: ChildGuard::spawn("clientportal simulator", &mut self.command()),
        }
    }

    /// Spawns the gateway and waits for the record's `start` event (the port is listening);
    /// panics with its stderr if it exits first.
    pub fn start(&self) -> CpProcess {
        let mark = self.record().events().len();
        let mut p = self.spawn();
        let deadline = Instant::now() + CP_START_TIMEOUT;
        loop {
            if self
                .record()
                .events()
                .iter()
                .skip(mark)
                .any(|e| is_ev(e, "start"))
            {
                return p;
            }
            if let Some(st) = p.child.try_wait() {
                panic!(
                    "clientportal simulator exited ({st}) before listening:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "clientportal simulator did not start within {CP_START_TIMEOUT:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(self.root().join("gw.stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.root().join("gw.stderr")).unwrap_or_default()
    }
}

/// A running simulator (its process group is killed on drop).
pub struct CpProcess {
    pub child: ChildGuard,
}

impl CpProcess {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Waits for the exit; the shell-style code (143 for SIGTERM).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        shell_exit_code(self.child.wait_exit(timeout))
    }
}

// ------------------------------------------------------------------------------ HTTP

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResp {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: String,
    pub body: String,
}

impl HttpResp {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Blocking HTTPS client for the simulator: accepts its self-signed certificate, follows no
/// redirects, keeps no cookies, no connection reuse.
pub struct CpClient {
    agent: ureq::Agent,
    base: String,
}

impl CpClient {
    pub fn new(port: u16) -> CpClient {
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(true)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .timeout_global(Some(CP_STEP_TIMEOUT))
            .build()
            .into();
        CpClient {
            agent,
            base: format!("https://127.0.0.1:{port}"),
        }
    }

    fn finish(what: &str, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> HttpResp {
        let mut r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let content_type = header("content-type").unwrap_or_default();
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("{what}: body: {e}"));
        HttpResp {
            status,
            location,
            content_type,
            body,
        }
    }

    pub fn get(&self, path: &str) -> HttpResp {
        let url = format!("{}{path}", self.base);
        Self::finish(&format!("GET {url}"), self.agent.get(&url).call())
    }

    /// POST without a body.
    pub fn post(&self, path: &str) -> HttpResp {
        let url = format!("{}{path}", self.base);
        Self::finish(&format!("POST {url}"), self.agent.post(&url).send_empty())
    }

    /// POST `application/x-www-form-urlencoded`.
    pub fn post_form(&self, path: &str, fields: &[(String, String)]) -> HttpResp {
        let url = format!("{}{path}", self.base);
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Self::finish(
            &format!("POST {url}"),
            self.agent.post(&url).send_form(pairs),
        )
    }

    /// `GET` or `POST` an API path; status and JSON body.
    pub fn api(&self, method: &str, path: &str) -> (u16, Value) {
        let r = match method {
            "GET" => self.get(path),
            "POST" => self.post(path),
            m => panic!("unsupported method {m}"),
        };
        assert!(
            r.content_type.starts_with("application/json"),
            "{method} {path}: content type {:?}",
            r.content_type
        );
        (r.status, r.json())
    }

    /// Fills the form of `page` (hidden fields + values by label) and submits it to the
    /// form's action, as a browser would.
    pub fn submit(&self, page: &str, values: &[(&str, &str)]) -> HttpResp {
        let (action, fields) = html::fill(page, values);
        self.post_form(&action, &fields)
    }
}

// ------------------------------------------------------------------------------ HTML

/// A minimal HTML reader for the simulator's pages (well-formed, quoted attributes).
pub mod html {
    /// One start tag: name, attributes, and its text up to the matching close tag (tags
    /// stripped, entities decoded; empty for void elements such as `input`).
    #[derive(Debug, Clone)]
    pub struct Element {
        pub tag: String,
        pub attrs: Vec<(String, String)>,
        pub text: String,
    }

    impl Element {
        pub fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    pub fn decode(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    fn strip_tags(s: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in s.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        decode(out.trim())
    }

    /// Every start tag in document order.
    pub fn elements(html: &str) -> Vec<Element> {
        let b = html.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(off) = html[i..].find('<') {
            let start = i + off;
            i = start + 1;
            if i >= b.len() || !b[i].is_ascii_alphabetic() {
                continue;
            }
            let mut j = i;
            while j < b.len() && b[j].is_ascii_alphanumeric() {
                j += 1;
            }
            let tag = html[i..j].to_ascii_lowercase();
            let mut attrs = Vec::new();
            loop {
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j >= b.len() || b[j] == b'>' || b[j] == b'/' {
                    break;
                }
                let ns = j;
                while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'=' && b[j] != b'>' {
                    j += 1;
                }
                let name = html[ns..j].to_ascii_lowercase();
                let mut value = String::new();
                if j < b.len() && b[j] == b'=' {
                    j += 1;
                    if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                        let q = b[j];
                        let vs = j + 1;
                        j = vs;
                        while j < b.len() && b[j] != q {
                            j += 1;
                        }
                        value = decode(&html[vs..j]);
                        j += 1;
                    } else {
                        let vs = j;
                        while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                            j += 1;
                        }
                        value = decode(&html[vs..j]);
                    }
                }
                attrs.push((name, value));
            }
            let end_of_tag = html[j..].find('>').map(|k| j + k + 1).unwrap_or(b.len());
            let text = match html[end_of_tag..].find(&format!("</{tag}>")) {
                Some(k)
                    if !matches!(
                        tag.as_str(),
                        "input" | "meta" | "br" | "img" | "link" | "hr"
                    ) =>
                {
                    strip_tags(&html[end_of_tag..end_of_tag + k])
                }
                _ => String::new(),
            };
            out.push(Element { tag, attrs, text });
            i = end_of_tag;
        }
        out
    }

    /// The element labelled `label` (`<label for=ID>label</label>` → the element `id=ID`).
    pub fn by_label(html: &str, label: &str) -> Option<Element> {
        let els = elements(html);
        let id = els
            .iter()
            .find(|e| e.tag == "label" && e.text == label)?
            .attr("for")?
            .to_string();
        els.into_iter().find(|e| e.attr("id") == Some(id.as_str()))
    }

    /// The texts of every `<label>`.
    pub fn labels(html: &str) -> Vec<String> {
        elements(html)
            .into_iter()
            .filter(|e| e.tag == "label")
            .map(|e| e.text)
            .collect()
    }

    /// The text of the `role="alert"` element, if any.
    pub fn alert(html: &str) -> Option<String> {
        elements(html)
            .into_iter()
            .find(|e| e.attr("role") == Some("alert"))
            .map(|e| e.text)
    }

    /// `(value, text)` of the options of the `<select>` labelled `label`.
    pub fn options(html: &str, label: &str) -> Vec<(String, String)> {
        let Some(sel) = by_label(html, label) else {
            return Vec::new();
        };
        let id = sel.attr("id").unwrap_or_default().to_string();
        let start = html.find(&format!("id=\"{id}\"")).expect("select in page");
        let end = start + html[start..].find("</select>").expect("</select>");
        elements(&html[start..end])
            .into_iter()
            .filter(|e| e.tag == "option")
            .map(|e| (e.attr("value").unwrap_or_default().to_string(), e.text))
            .collect()
    }

    /// Texts of the submit buttons.
    pub fn buttons(html: &str) -> Vec<String> {
        elements(html)
            .into_iter()
            .filter(|e| e.tag == "button")
            .map(|e| e.text)
            .collect()
    }

    /// What a browser posts for the page's form: its action and its hidden fields plus
    /// `values` (each given by its field's label). Panics when a label is missing.
    pub fn fill(html: &str, values: &[(&str, &str)]) -> (String, Vec<(String, String)>) {
        let els = elements(html);
        let form = els
            .iter()
            .find(|e| e.tag == "form")
            .unwrap_or_else(|| panic!("no form in page:\n{html}"));
        let action = form.attr("action").unwrap_or("/").to_string();
        let mut fields: Vec<(String, String)> = els
            .iter()
            .filter(|e| e.tag == "input" && e.attr("type") == Some("hidden"))
            .map(|e| {
                (
                    e.attr("name").unwrap_or_default().to_string(),
                    e.attr("value").unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (label, value) in values {
            let el = by_label(html, label)
                .unwrap_or_else(|| panic!("no field labelled {label:?} in page:\n{html}"));
            let name = el
                .attr("name")
                .unwrap_or_else(|| panic!("field {label:?} has no name"));
            fields.push((name.to_string(), value.to_string()));
        }
        (action, fields)
    }
}

// ------------------------------------------------------------------------------ gateway

/// One test's simulator: install, process, record and client. Drops the process first.
pub struct CpGateway {
    pub proc: Option<CpProcess>,
    pub rec: Record,
    pub client: CpClient,
    pub install: CpInstall,
}

impl CpGateway {
    /// Creates an install for `scenario` and starts the gateway.
    pub fn start(scenario: &CpScenario) -> CpGateway {
        CpGateway::start_install(CpInstall::new(scenario))
    }

    pub fn start_install(install: CpInstall) -> CpGateway {
        let proc = install.start();
        CpGateway {
            proc: Some(proc),
            rec: install.record(),
            client: CpClient::new(install.port),
            install,
        }
    }

    pub fn scenario(&self) -> &CpScenario {
        &self.install.scenario
    }

    /// Loads the login page and submits `user` / `password`; the answer (the device page
    /// on success, the login page with an alert otherwise).
    pub fn submit_credentials(&self, user: &str, password: &str) -> HttpResp {
        let page = self.client.get(LOGIN_URL);
        assert_eq!(page.status, 200, "login page: {page:?}");
        self.client.submit(
            &page.body,
            &[(LABEL_USERNAME, user), (LABEL_PASSWORD, password)],
        )
    }

    /// Chooses device `value` (5 IB Key, 4 Mobile Authenticator app, 1 Security code card)
    /// on the device page.
    pub fn choose_device(&self, device_page: &str, value: &str) -> HttpResp {
        self.client.submit(device_page, &[(LABEL_DEVICE, value)])
    }

    /// Submits `code` on the code page.
    pub fn submit_code(&self, code_page: &str, code: &str) -> HttpResp {
        self.client.submit(code_page, &[(LABEL_CODE, code)])
    }

    /// Credentials, then Mobile Authenticator: the code page's HTML.
    pub fn code_page(&self) -> String {
        let (u, p) = (
            self.scenario().username().to_string(),
            self.scenario().password().to_string(),
        );
        let dev = self.submit_credentials(&u, &p);
        assert!(
            html::by_label(&dev.body, LABEL_DEVICE).is_some(),
            "no device page after the credentials:\n{}",
            dev.body
        );
        let code = self.choose_device(&dev.body, "4");
        assert!(
            html::by_label(&code.body, LABEL_CODE).is_some(),
            "no code page after choosing device 4:\n{}",
            code.body
        );
        code.body
    }

    /// The whole browser login with a code of a step not in `used`; asserts "Client login
    /// succeeds" and returns the step used.
    pub fn login(&self, used: &[u64]) -> u64 {
        let page = self.code_page();
        let step = usable_step(used);
        let done = self.submit_code(&page, &self.scenario().code_at_step(step));
        assert!(
            done.body.contains(SUCCESS_TEXT),
            "login with step {step} (now {}) did not succeed:\n{}",
            current_step(),
            done.body
        );
        step
    }

    /// `GET /v1/api/iserver/auth/status`.
    pub fn auth_status(&self) -> (u16, Value) {
        self.client.api("GET", "/v1/api/iserver/auth/status")
    }

    /// Polls `auth/status` (every 50 ms) until `pred(status, body)`; returns the body.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(u16, &Value) -> bool,
    ) -> (u16, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let (st, v) = self.auth_status();
            if pred(st, &v) {
                return (st, v);
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last auth/status {st} {v}\nrecord:\n{}",
                self.rec.tail_text(20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `authenticated:true, connected:true`.
    pub fn wait_authenticated(&self) -> Value {
        self.wait_status("authenticated", CP_STEP_TIMEOUT, |st, v| {
            st == 200 && v["authenticated"] == true && v["connected"] == true
        })
        .1
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        self.proc
            .as_mut()
            .expect("gateway running")
            .wait_exit(timeout)
    }
}
