//! The container files, checked statically (fast; the image itself is built and run by
//! `scripts/test-image`, which needs minutes and root):
//!
//! - `packaging/container/Containerfile`: the stages and build arguments (IBWARDEN_FROM
//!   source|prebuilt, IBG_SOURCE download|local, IBG_CHANNEL, the IBG_SHA256 check before the
//!   installer runs), USER 1000, the exec-form `ibwarden container` entrypoint, no secret in
//!   an ENV or ARG, only documented build-context paths, and its ignore file.
//! - `packaging/compose/compose.yaml`, read by a small YAML-subset reader here (and by
//!   PyYAML as well when python3 has it: both must agree): per service a stop grace of at
//!   least 100 s, a /readyz healthcheck (run here with bash against a stub server), secrets
//!   as files, a named state volume, loopback-only ports and no VNC, and every environment
//!   variable understood by the real entrypoint (`ibwarden container --print-config`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{free_port, repo_root};

const CONTAINERFILE: &str = "packaging/container/Containerfile";
const IGNOREFILE: &str = "packaging/container/Containerfile.dockerignore";
const COMPOSE: &str = "packaging/compose/compose.yaml";

fn read(rel: &str) -> String {
    fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn cargo_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

// ------------------------------------------------------------------------ Containerfile

/// One instruction: keyword (upper case), its arguments (continuations joined), its line.
#[derive(Clone, Debug)]
struct Instr {
    kw: String,
    args: String,
    line: usize,
}

#[derive(Debug)]
struct Stage {
    from: String,
    name: String,
    body: Vec<Instr>,
}

struct Containerfile {
    /// ARGs before the first FROM: name → default.
    global_args: BTreeMap<String, String>,
    stages: Vec<Stage>,
    /// The comment lines (the header documents the build context).
    comments: String,
}

fn parse_containerfile(text: &str) -> Containerfile {
    let mut instrs = Vec::new();
    let mut comments = String::new();
    let mut cur: Option<Instr> = None;
    for (i, raw) in text.lines().enumerate() {
        let t = raw.trim();
        if t.starts_with('#') {
            comments.push_str(t);
            comments.push('\n');
            continue; // also inside a continuation, as the builders do
        }
        if t.is_empty() && cur.is_none() {
            continue;
        }
        let (body, cont) = match t.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (t, false),
        };
        match &mut cur {
            Some(c) => {
                c.args.push(' ');
                c.args.push_str(body);
            }
            None => {
                let (kw, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                cur = Some(Instr {
                    kw: kw.to_ascii_uppercase(),
                    args: rest.trim().to_string(),
                    line: i + 1,
                });
            }
        }
        if !cont {
            instrs.push(cur.take().expect("instruction"));
        }
    }
    assert!(cur.is_none(), "{CONTAINERFILE} ends inside a continuation");
    let mut global_args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instrs {
        if ins.kw == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().collect();
            let (from, name) = match words.as_slice() {
                [from] => (from.to_string(), String::new()),
                [from, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    (from.to_string(), name.to_string())
                }
                _ => panic!("line {}: FROM {}", ins.line, ins.args),
            };
            stages.push(Stage {
                from,
                name,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(ins);
        } else {
            assert_eq!(ins.kw, "ARG", "line {}: only ARG before FROM", ins.line);
            let (k, v) = ins.args.split_once('=').unwrap_or((&ins.args, ""));
            global_args.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Containerfile {
        global_args,
        stages,
        comments,
    }
}

impl Containerfile {
    fn stage(&self, name: &str) -> &Stage {
        self.stages
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no stage {name:?} in {CONTAINERFILE}"))
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().expect("a stage")
    }
}

impl Stage {
    fn all(&self, kw: &str) -> Vec<&Instr> {
        self.body.iter().filter(|i| i.kw == kw).collect()
    }

    fn run_text(&self) -> String {
        self.all("RUN")
            .iter()
            .map(|i| i.args.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn declares_arg(&self, name: &str) -> bool {
        self.all("ARG")
            .iter()
            .any(|i| i.args.split('=').next().map(str::trim) == Some(name))
    }
}

#[test]
fn the_containerfile_selects_its_binary_and_gateway_by_build_argument() {
    let cf = parse_containerfile(&read(CONTAINERFILE));
    let args = &cf.global_args;
    for (name, default) in [
        ("IBWARDEN_FROM", "source"),
        ("IBG_SOURCE", "download"),
        ("IBG_CHANNEL", "stable"),
        ("IBG_SHA256", ""),
        ("IBWARDEN_BINARY", "target/release/ibwarden"),
        ("IBG_LOCAL", "ibgateway"),
        ("EXTRA_PACKAGES", ""),
        ("RUST_IMAGE", "docker.io/library/rust:1-bookworm"),
        ("BASE_IMAGE", "docker.io/library/debian:bookworm-slim"),
    ] {
        assert_eq!(
            args.get(name).map(String::as_str),
            Some(default),
            "global ARG {name} with default {default:?}: {args:?}"
        );
    }
    assert!(args.contains_key("IBG_VERSION"), "{args:?}");
    assert_eq!(
        args.get("IBWARDEN_VERSION"),
        Some(&cargo_version()),
        "the image's version label is Cargo.toml's version"
    );

    // `FROM stage-${ARG}`: every value of each selector has its stage.
    for (selector, prefix, values) in [
        ("IBWARDEN_FROM", "ibwarden-", ["source", "prebuilt"]),
        ("IBG_SOURCE", "ibgateway-", ["download", "local"]),
    ] {
        let pick = cf
            .stages
            .iter()
            .find(|s| s.from == format!("{prefix}${{{selector}}}"))
            .unwrap_or_else(|| panic!("no `FROM {prefix}${{{selector}}}` stage"));
        assert!(!pick.name.is_empty(), "the selected stage is named");
        for v in values {
            cf.stage(&format!("{prefix}{v}"));
        }
        // The runtime copies from the selected stage, not from one of the choices.
        let copies: Vec<&Instr> = cf.runtime().all("COPY");
        assert!(
            copies
                .iter()
                .any(|c| c.args.starts_with(&format!("--from={} ", pick.name))),
            "the runtime copies from {}: {copies:?}",
            pick.name
        );
        for v in values {
            assert!(
                !copies
                    .iter()
                    .any(|c| c.args.starts_with(&format!("--from={prefix}{v} "))),
                "the runtime must copy from the selected stage, not {prefix}{v}"
            );
        }
    }

    let build = cf.stage("build");
    assert_eq!(build.from, "${RUST_IMAGE}");
    let run = build.run_text();
    assert!(run.contains("cargo build --release --locked"), "{run}");
    assert!(run.contains("libxcb1-dev"), "{run}");
    assert!(run.contains("target/release/ibwarden"), "{run}");
    let prebuilt = cf.stage("ibwarden-prebuilt");
    assert!(prebuilt.declares_arg("IBWARDEN_BINARY"));
    assert!(
        prebuilt
            .all("COPY")
            .iter()
            .any(|c| c.args.starts_with("${IBWARDEN_BINARY} ")),
        "{prebuilt:?}"
    );
    let local = cf.stage("ibgateway-local");
    assert!(local.declares_arg("IBG_LOCAL"));
    assert!(
        local
            .all("COPY")
            .iter()
            .any(|c| c.args == "${IBG_LOCAL} /opt/ibgateway"),
        "{local:?}"
    );
}

#[test]
fn the_gateway_download_is_verified_before_it_runs() {
    let cf = parse_containerfile(&read(CONTAINERFILE));
    let dl = cf.stage("ibgateway-download");
    assert!(dl.declares_arg("IBG_CHANNEL") && dl.declares_arg("IBG_SHA256"));
    let run = dl.run_text();
    let url = "https://download2.interactivebrokers.com/installers/ibgateway/${IBG_CHANNEL}-standalone/ibgateway-${IBG_CHANNEL}-standalone-linux-x64.sh";
    assert!(run.contains(url), "the official installer URL: {run}");
    assert!(run.contains("stable|latest)"), "IBG_CHANNEL is checked");
    // An empty hash stops the build with a message, before anything is downloaded.
    let empty = run
        .find("-z \"${IBG_SHA256}\"")
        .expect("a check for an empty IBG_SHA256");
    let download = run.find("curl ").expect("a download");
    assert!(empty < download, "the empty-hash check comes first");
    assert!(
        run[empty..download].contains("exit 1"),
        "an empty IBG_SHA256 fails the build"
    );
    let check = run.find("sha256sum -c").expect("sha256sum -c");
    let install = run
        .find("sh /tmp/ibgateway-installer.sh -q -dir /opt/ibgateway")
        .expect("the unattended install4j install into /opt/ibgateway");
    assert!(
        download < check && check < install,
        "download, verify, then install"
    );
    assert!(
        run[check..install].contains("exit 1"),
        "a mismatching hash fails the build"
    );
    assert!(
        run.contains("a+rX"),
        "the install is readable by the runtime user"
    );
}

#[test]
fn the_runtime_runs_ibwarden_as_pid_1_as_uid_1000_without_secrets_in_its_config() {
    let text = read(CONTAINERFILE);
    let cf = parse_containerfile(&text);
    let rt = cf.runtime();
    assert_eq!(rt.from, "${BASE_IMAGE}");
    let users = rt.all("USER");
    assert_eq!(
        users.last().map(|u| u.args.as_str()),
        Some("1000:1000"),
        "the last USER is 1000:1000"
    );
    let entry = rt.all("ENTRYPOINT");
    assert_eq!(entry.len(), 1, "{entry:?}");
    let exec: Vec<String> = serde_json::from_str(&entry[0].args)
        .unwrap_or_else(|e| panic!("ENTRYPOINT is not exec form (a JSON array): {e}"));
    assert_eq!(exec, ["/usr/bin/ibwarden", "container"]);
    assert!(
        rt.all("CMD").is_empty(),
        "no CMD: arguments go to `ibwarden container`"
    );
    assert_eq!(
        rt.all("STOPSIGNAL").last().map(|s| s.args.as_str()),
        Some("SIGTERM")
    );
    let exposed: Vec<&str> = rt
        .all("EXPOSE")
        .iter()
        .flat_map(|e| e.args.split_whitespace())
        .collect();
    for port in ["4003", "4004", "9187"] {
        assert!(exposed.contains(&port), "EXPOSE {port}: {exposed:?}");
    }
    assert!(!exposed.iter().any(|p| p.starts_with("59")), "no VNC port");
    let volumes = rt.all("VOLUME");
    assert!(
        volumes.iter().any(|v| v.args.contains("/var/lib/ibwarden")),
        "{volumes:?}"
    );
    let env: String = rt
        .all("ENV")
        .iter()
        .map(|e| e.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(env.contains("STATE_DIRECTORY=/var/lib/ibwarden"), "{env}");
    assert!(env.contains("RUNTIME_DIRECTORY=/run/ibwarden"), "{env}");

    // Packages: no recommends, the lists cleaned, what ibwarden needs at run time.
    let run = rt.run_text();
    assert!(
        run.contains("apt-get install -y --no-install-recommends"),
        "{run}"
    );
    for pkg in [
        "xvfb",
        "xauth",
        "tesseract-ocr",
        "tesseract-ocr-eng",
        "fonts-dejavu-core",
        "ca-certificates",
        "${EXTRA_PACKAGES}",
    ] {
        assert!(
            run.split_whitespace()
                .any(|w| w.trim_end_matches(';') == pkg),
            "installs {pkg}"
        );
    }
    assert!(run.contains("rm -rf /var/lib/apt/lists/*"), "{run}");
    assert!(rt.declares_arg("EXTRA_PACKAGES"));
    // The user and its directories.
    assert!(
        run.contains("--uid 1000") && run.contains("--gid 1000"),
        "{run}"
    );
    assert!(run.contains("/home/ibwarden"), "{run}");
    for dir in ["/var/lib/ibwarden", "/run/ibwarden"] {
        assert!(
            run.contains(&format!("-o 1000 -g 1000 -m 0750 {dir}"))
                || run.contains(&format!("-o 1000 -g 1000 -m 0700 {dir}")),
            "{dir} owned by 1000: {run}"
        );
    }

    // No secret travels in the image config: no ENV or ARG about a password, a code or a
    // secret, in any stage (ARGs land in the image history).
    for stage in &cf.stages {
        for ins in stage.all("ENV").into_iter().chain(stage.all("ARG")) {
            let up = ins.args.to_ascii_uppercase();
            for word in ["PASSWORD", "TOTP", "SECRET", "TOKEN"] {
                assert!(
                    !up.contains(word),
                    "line {}: {} {} mentions {word}",
                    ins.line,
                    ins.kw,
                    ins.args
                );
            }
        }
    }
    for k in cf.global_args.keys() {
        let up = k.to_ascii_uppercase();
        assert!(
            !["PASSWORD", "TOTP", "SECRET", "TOKEN"]
                .iter()
                .any(|w| up.contains(w)),
            "ARG {k}"
        );
    }
    // Labels: OCI's and the gateway's version and channel.
    let labels: String = rt
        .all("LABEL")
        .iter()
        .map(|l| l.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for key in [
        "org.opencontainers.image.title=",
        "org.opencontainers.image.version=\"${IBWARDEN_VERSION}\"",
        "org.opencontainers.image.licenses=",
        "io.ibwarden.ibgateway.version=\"${IBG_VERSION}\"",
        "io.ibwarden.ibgateway.channel=\"${IBG_CHANNEL}\"",
    ] {
        assert!(labels.contains(key), "LABEL {key}: {labels}");
    }
}

#[test]
fn the_build_context_paths_are_documented_and_the_ignore_file_keeps_secrets_out() {
    let cf = parse_containerfile(&read(CONTAINERFILE));
    assert!(
        cf.comments.contains("build context is the")
            && cf.comments.to_ascii_lowercase().contains("repository root"),
        "the header says the build context is the repository root"
    );
    // Every path a COPY takes from the context is named in the header.
    let mut sources = Vec::new();
    for stage in &cf.stages {
        for c in stage.all("COPY").into_iter().chain(stage.all("ADD")) {
            if c.args.starts_with("--from=") {
                continue;
            }
            let words: Vec<&str> = c
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            sources.extend(words[..words.len() - 1].iter().map(|w| w.to_string()));
        }
    }
    assert!(sources.len() >= 5, "{sources:?}");
    for s in &sources {
        let s = s.trim_start_matches("./");
        assert!(
            cf.comments.contains(s),
            "the build-context path {s} is not documented in the header"
        );
    }
    let ignore = read(IGNOREFILE);
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for rule in ["target", "!target/release/ibwarden", "**/secrets", ".git"] {
        assert!(rules.contains(&rule), "{IGNOREFILE} has {rule}: {rules:?}");
    }
    assert!(
        cf.comments.contains(IGNOREFILE),
        "the header names the ignore file"
    );
}

// ------------------------------------------------------------------------ compose.yaml

/// Reads the YAML subset compose.yaml uses: block mappings and sequences by indentation,
/// plain, single- and double-quoted scalars, flow sequences of double-quoted strings
/// (which are JSON), `{}`, comments. Anything else (anchors, aliases, merge keys,
/// multi-line scalars) is refused, so the file stays readable by this and by every tool.
/// Scalars stay strings; an empty value is null.
fn parse_yaml(text: &str) -> Value {
    let lines: Vec<(usize, usize, String)> = text
        .lines()
        .enumerate()
        .filter_map(|(n, raw)| {
            assert!(!raw.contains('\t'), "line {}: a tab", n + 1);
            let l = strip_comment(raw);
            let content = l.trim_end();
            if content.trim().is_empty() {
                return None;
            }
            let indent = content.len() - content.trim_start().len();
            Some((n + 1, indent, content.trim_start().to_string()))
        })
        .collect();
    let mut pos = 0;
    let v = parse_block(&lines, &mut pos, 0);
    assert_eq!(
        pos,
        lines.len(),
        "line {}: unexpected indentation",
        lines.get(pos).map_or(0, |l| l.0)
    );
    v
}

/// The line without its comment (a `#` at the start or after a space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        if double {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                double = false;
            }
        } else if single {
            if c == '\'' {
                single = false;
            }
        } else if c == '"' {
            double = true;
        } else if c == '\'' {
            single = true;
        } else if c == '#' && prev.is_whitespace() {
            return &line[..i];
        }
        prev = c;
    }
    line
}

fn parse_block(lines: &[(usize, usize, String)], pos: &mut usize, indent: usize) -> Value {
    let Some((_, first_indent, first)) = lines.get(*pos) else {
        return Value::Null;
    };
    assert_eq!(*first_indent, indent);
    if first == "-" || first.starts_with("- ") {
        let mut items = Vec::new();
        while let Some((n, i, l)) = lines.get(*pos) {
            if *i != indent || !(l == "-" || l.starts_with("- ")) {
                break;
            }
            let item = l[1..].trim();
            assert!(
                !item.is_empty() && split_key(item).is_none(),
                "line {n}: only scalar sequence items are read here"
            );
            items.push(scalar(item, *n));
            *pos += 1;
        }
        return Value::Array(items);
    }
    let mut map = serde_json::Map::new();
    while let Some((n, i, l)) = lines.get(*pos) {
        if *i < indent {
            break;
        }
        assert_eq!(*i, indent, "line {n}: unexpected indentation");
        let (key, rest) = split_key(l).unwrap_or_else(|| panic!("line {n}: not `key: value`"));
        assert!(
            !key.starts_with('<') && !key.starts_with('&') && !key.starts_with('*'),
            "line {n}: anchors, aliases and merge keys are not read here"
        );
        *pos += 1;
        let value = if rest.is_empty() {
            match lines.get(*pos) {
                Some((_, ci, _)) if *ci > indent => {
                    let ci = *ci;
                    parse_block(lines, pos, ci)
                }
                Some((_, ci, cl)) if *ci == indent && (cl == "-" || cl.starts_with("- ")) => {
                    parse_block(lines, pos, indent)
                }
                _ => Value::Null,
            }
        } else {
            scalar(rest, *n)
        };
        assert!(
            map.insert(unquote(key, *n), value).is_none(),
            "line {n}: duplicate key {key}"
        );
    }
    Value::Object(map)
}

/// `key: rest` (the colon followed by a space or the end), the key possibly quoted.
fn split_key(l: &str) -> Option<(&str, &str)> {
    let end = if l.starts_with('"') || l.starts_with('\'') {
        let q = l.chars().next()?;
        l[1..].find(q)? + 2
    } else {
        0
    };
    let idx = l[end..]
        .match_indices(':')
        .map(|(i, _)| i + end)
        .find(|&i| l[i + 1..].is_empty() || l[i + 1..].starts_with(' '))?;
    if end == 0 && (l.starts_with('[') || l.starts_with('{')) {
        return None;
    }
    Some((l[..idx].trim(), l[idx + 1..].trim()))
}

fn unquote(s: &str, n: usize) -> String {
    match scalar(s, n) {
        Value::String(s) => s,
        other => panic!("line {n}: key {other}"),
    }
}

fn scalar(s: &str, n: usize) -> Value {
    let s = s.trim();
    assert!(
        !["|", ">", "|-", ">-"].contains(&s) && !s.starts_with('&') && !s.starts_with('*'),
        "line {n}: block scalars, anchors and aliases are not read here"
    );
    if s.starts_with('"') {
        let v: String = serde_json::from_str(s)
            .unwrap_or_else(|e| panic!("line {n}: double-quoted scalar {s}: {e}"));
        Value::String(v)
    } else if let Some(inner) = s.strip_prefix('\'') {
        let inner = inner
            .strip_suffix('\'')
            .unwrap_or_else(|| panic!("line {n}: unterminated '"));
        Value::String(inner.replace("''", "'"))
    } else if s.starts_with('[') {
        serde_json::from_str(s).unwrap_or_else(|e| {
            panic!("line {n}: flow sequences must be double-quoted strings: {s}: {e}")
        })
    } else if s == "{}" {
        Value::Object(serde_json::Map::new())
    } else if s == "~" || s == "null" {
        Value::Null
    } else {
        assert!(
            !s.starts_with('{'),
            "line {n}: flow mappings are not read here"
        );
        Value::String(s.to_string())
    }
}

/// PyYAML's reading of the file, scalars as strings like ours, when python3 has yaml.
fn pyyaml(path: &std::path::Path) -> Option<Value> {
    const SCRIPT: &str = r#"
import json, sys, yaml
def norm(v):
    if isinstance(v, dict):
        return {str(k): norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
print(json.dumps(norm(yaml.safe_load(open(sys.argv[1])))))
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(path)
        .stderr(Stdio::piped())
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("No module named 'yaml'"),
            "PyYAML cannot read {COMPOSE}: {err}"
        );
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("json"))
}

fn compose() -> Value {
    let v = parse_yaml(&read(COMPOSE));
    match pyyaml(&repo_root().join(COMPOSE)) {
        Some(py) => assert_eq!(v, py, "this reader and PyYAML read {COMPOSE} differently"),
        None => eprintln!("python3 has no yaml module: {COMPOSE} read by this test only"),
    }
    v
}

fn services(c: &Value) -> Vec<(String, &serde_json::Map<String, Value>)> {
    c["services"]
        .as_object()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_object().expect("a service is a mapping")))
        .collect()
}

fn env_of(svc: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    svc.get("environment")
        .and_then(Value::as_object)
        .expect("environment as a mapping")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string value").to_string()))
        .collect()
}

/// A compose duration ("120s", "2m", "1m30s", "1h") in seconds.
fn duration_s(s: &str) -> f64 {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push(chars.next().expect("s"));
        }
        let n: f64 = num.parse().unwrap_or_else(|_| panic!("duration {s:?}"));
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => panic!("duration {s:?}: unit {unit}"),
        };
        num.clear();
    }
    assert!(num.is_empty(), "duration {s:?} needs a unit");
    total
}

#[test]
fn compose_services_stop_slowly_probe_readyz_and_keep_their_state() {
    let c = compose();
    let svcs = services(&c);
    assert_eq!(svcs.len(), 2, "a live and a paper service");
    let mut modes = Vec::new();
    let volumes = c["volumes"].as_object().expect("top-level volumes");
    let mut state_volumes = Vec::new();
    for (name, svc) in &svcs {
        assert_eq!(
            svc["image"],
            format!("ghcr.io/ibwarden/ibwarden:{}", cargo_version()),
            "{name}: the image of this version"
        );
        let grace = duration_s(
            svc["stop_grace_period"]
                .as_str()
                .expect("stop_grace_period"),
        );
        assert!(grace >= 100.0, "{name}: stop_grace_period {grace}s < 100s");
        let hc = svc["healthcheck"].as_object().expect("healthcheck");
        let test: Vec<&str> = hc["test"]
            .as_array()
            .expect("healthcheck test as a list")
            .iter()
            .map(|v| v.as_str().expect("string"))
            .collect();
        assert_eq!(
            test.first(),
            Some(&"CMD"),
            "{name}: exec form, no shell needed"
        );
        assert!(
            test.iter().any(|a| a.contains("/readyz")),
            "{name}: {test:?}"
        );
        let start = duration_s(hc["start_period"].as_str().expect("start_period"));
        assert!(
            start >= 120.0,
            "{name}: start_period {start}s is short for a login"
        );
        modes.push(
            env_of(svc)
                .into_iter()
                .find(|(k, _)| k == "TRADING_MODE")
                .map(|(_, v)| v)
                .expect("TRADING_MODE"),
        );
        let mounts: Vec<&str> = svc["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .map(|v| v.as_str().expect("short syntax"))
            .collect();
        let state = mounts
            .iter()
            .find_map(|m| m.strip_suffix(":/var/lib/ibwarden"))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at /var/lib/ibwarden"));
        assert!(
            !state.contains('/') && !state.starts_with('.') && volumes.contains_key(state),
            "{name}: /var/lib/ibwarden is a named volume declared at the top: {state}"
        );
        state_volumes.push(state.to_string());
    }
    modes.sort();
    assert_eq!(modes, ["live", "paper"]);
    state_volumes.dedup();
    assert_eq!(state_volumes.len(), 2, "one state volume per account");
}

#[test]
fn compose_secrets_are_files_and_ports_stay_on_loopback_without_vnc() {
    let c = compose();
    let top_secrets = c["secrets"].as_object().expect("top-level secrets");
    for (name, svc) in services(&c) {
        let env = env_of(svc);
        let used: Vec<&str> = svc["secrets"]
            .as_array()
            .expect("secrets")
            .iter()
            .map(|s| s.as_str().expect("short syntax"))
            .collect();
        let mut files = 0;
        for (k, v) in &env {
            let up = k.to_ascii_uppercase();
            assert!(
                !up.starts_with("VNC_") && !up.starts_with("PASSWD"),
                "{name}: {k}: there is no VNC server to configure"
            );
            if ["PASSWORD", "TOTP", "SECRET", "TOKEN"]
                .iter()
                .any(|w| up.contains(w))
            {
                assert!(k.ends_with("_FILE"), "{name}: {k} carries a secret value");
                let secret = v
                    .strip_prefix("/run/secrets/")
                    .unwrap_or_else(|| panic!("{name}: {k}={v} is not under /run/secrets"));
                assert!(
                    used.contains(&secret),
                    "{name}: {k}: secret {secret} not given"
                );
                let file = top_secrets[secret]["file"].as_str().expect("secret file");
                assert!(file.starts_with("./secrets/"), "{secret}: {file}");
                files += 1;
            }
        }
        assert!(
            env.iter().any(|(k, _)| k == "TWS_PASSWORD_FILE"),
            "{name}: TWS_PASSWORD_FILE"
        );
        let live = env.iter().any(|(k, v)| k == "TRADING_MODE" && v == "live");
        assert_eq!(
            env.iter().any(|(k, _)| k == "IBWARDEN_TOTP_FILE"),
            live,
            "{name}: the activation code for live only"
        );
        assert_eq!(files, if live { 2 } else { 1 }, "{name}");

        let ports: Vec<&str> = svc["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| p.as_str().expect("short syntax"))
            .collect();
        let relay = if live { "4003" } else { "4004" };
        assert_eq!(
            ports,
            [format!("127.0.0.1:{relay}:{relay}")],
            "{name}: only the relay, on the host's loopback"
        );
        for p in &ports {
            let container_port = p.rsplit(':').next().expect("port");
            assert!(
                container_port != "9187" && !container_port.starts_with("59"),
                "{name}: {p}: no health or VNC port published"
            );
        }
    }
}

#[test]
fn compose_healthcheck_passes_on_200_and_fails_on_503() {
    let c = compose();
    let bash = common::require_tool("bash", "bash");
    for (name, svc) in services(&c) {
        let test: Vec<String> = svc["healthcheck"]["test"]
            .as_array()
            .expect("test")
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect();
        assert_eq!(test[1], "bash", "{name}: the image has bash, not curl");
        let script = &test[3];
        let target = "/dev/tcp/127.0.0.1/9187";
        assert!(
            script.contains(target),
            "{name}: probes 127.0.0.1:9187: {script}"
        );
        for (status, want) in [(200, true), (503, false)] {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                s.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                let mut req = Vec::new();
                let mut buf = [0u8; 512];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let reason = if status == 200 {
                    "OK"
                } else {
                    "Service Unavailable"
                };
                let body = "ready\n";
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                String::from_utf8_lossy(&req).into_owned()
            });
            let script = script.replace(target, &format!("/dev/tcp/127.0.0.1/{port}"));
            let started = Instant::now();
            let st = Command::new(&bash)
                .args(&test[2..3])
                .arg(&script)
                .stdin(Stdio::null())
                .status()
                .expect("bash");
            assert!(started.elapsed() < Duration::from_secs(10));
            let req = server.join().expect("server");
            assert!(
                req.starts_with("GET /readyz HTTP/1."),
                "{name}: sent {req:?}"
            );
            assert_eq!(st.success(), want, "{name}: /readyz {status} -> {st}");
        }
    }
    // Nothing listening: unhealthy, not a hang.
    let script = services(&c)[0].1["healthcheck"]["test"][3]
        .as_str()
        .expect("script")
        .replace("127.0.0.1/9187", &format!("127.0.0.1/{}", free_port()));
    let st = Command::new(&bash)
        .args(["-c", &script])
        .stderr(Stdio::null())
        .status()
        .expect("bash");
    assert!(!st.success());
}

/// `ibwarden container --print-config` with `env` (and the image's directories in `dir`):
/// (exit ok, the TOML on stdout, the report on stderr).
fn print_config(dir: &std::path::Path, env: &[(String, String)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ibwarden"))
        .args(["container", "--print-config"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("STATE_DIRECTORY", dir.join("state"))
        .env("RUNTIME_DIRECTORY", dir.join("run"))
        .env("IBWARDEN_CONFIG", dir.join("no-mounted-config.toml"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("ibwarden container --print-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Variables shown commented out in compose.yaml (`# NAME: value`), as options to set.
fn commented_variables(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start().strip_prefix("# ")?;
            let (k, v) = l.split_once(": ")?;
            let ok = k.len() > 3
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && k.contains('_');
            ok.then(|| (k.to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

#[test]
fn every_compose_variable_is_understood_by_the_entrypoint() {
    let c = compose();
    let commented = commented_variables(&read(COMPOSE));
    assert!(
        commented.iter().any(|(k, _)| k == "IBWARDEN_RELAY_ALLOW"),
        "{commented:?}"
    );
    for (name, svc) in services(&c) {
        let dir = tempfile::Builder::new()
            .prefix("ibw-compose-")
            .tempdir()
            .expect("tempdir");
        let mut env = env_of(svc);
        let mut files = BTreeMap::new();
        for (k, v) in env.iter_mut() {
            if k.ends_with("_FILE") {
                let p: PathBuf = dir.path().join(v.trim_start_matches('/').replace('/', "_"));
                let content = if k.contains("TOTP") {
                    "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n"
                } else {
                    "not-the-password\n"
                };
                fs::write(&p, content).expect("write");
                fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
                files.insert(k.clone(), p.display().to_string());
                *v = p.display().to_string();
            }
        }
        let (ok, toml, report) = print_config(dir.path(), &env);
        assert!(ok, "{name}: --print-config failed\n{report}\n{toml}");
        assert!(
            !report.contains("Unknown"),
            "{name}: variables the entrypoint does not know:\n{report}"
        );
        assert!(!report.contains("NOT mapped"), "{name}:\n{report}");
        // Each variable, and each commented-out one set on top, is read: the IBC images'
        // are in the report, ibwarden's own (not in that report) change the config.
        let mut all = env.clone();
        all.extend(commented.iter().cloned());
        let (ok, toml_all, report_all) = print_config(dir.path(), &all);
        assert!(ok, "{name}: with the commented variables\n{report_all}");
        assert!(!report_all.contains("Unknown"), "{name}:\n{report_all}");
        for (k, v) in &all {
            if k.starts_with("IBWARDEN_") {
                let without: Vec<(String, String)> =
                    all.iter().filter(|(n, _)| n != k).cloned().collect();
                let (ok, toml_without, _) = print_config(dir.path(), &without);
                assert!(ok);
                assert_ne!(
                    toml_all, toml_without,
                    "{name}: {k}={v} changes nothing: unknown to the entrypoint, or its default"
                );
            } else {
                assert!(
                    report_all.contains(&format!(": {k} ")),
                    "{name}: {k} not in the report:\n{report_all}"
                );
            }
        }
        let user = env
            .iter()
            .find(|(k, _)| k == "TWS_USERID")
            .map(|(_, v)| v.clone())
            .expect("TWS_USERID");
        assert!(toml.contains(&format!("username = \"{user}\"")), "{toml}");
        assert!(
            toml.contains(&format!(
                "password_file = \"{}\"",
                files["TWS_PASSWORD_FILE"]
            )),
            "{toml}"
        );
        let live = env.iter().any(|(k, v)| k == "TRADING_MODE" && v == "live");
        let (mode, relay) = if live {
            ("live", "0.0.0.0:4003")
        } else {
            ("paper", "0.0.0.0:4004")
        };
        // A live config may leave trading_mode at its default ("live").
        assert!(
            toml.contains(&format!("trading_mode = \"{mode}\""))
                || (live && !toml.contains("trading_mode = \"paper\"")),
            "{name}: {toml}"
        );
        assert!(
            toml.contains(&format!("[relay]\nlisten = \"{relay}\"")),
            "{name}: {toml}"
        );
        assert!(
            toml.contains("[health]\nlisten = \"0.0.0.0:9187\""),
            "{name}: {toml}"
        );
        if live {
            assert!(
                toml.contains(&format!("totp_file = \"{}\"", files["IBWARDEN_TOTP_FILE"])),
                "{toml}"
            );
        }
        for secret in ["not-the-password", "JBSWY3DP"] {
            assert!(!toml.contains(secret) && !report.contains(secret));
        }
    }
}
