//! The Helm chart (`packaging/helm/ibwarden`): rendered offline by Helm's own Go SDK
//! (PyPI `helm-python-sdk`, through `packaging/helm/render.py`; no helm binary, no cluster),
//! every manifest validated against the Kubernetes 1.30 JSON schemas in strict mode
//! (`kubernetes-validate`: unknown fields are errors; the ServiceMonitor CRD is checked
//! structurally by render.py), then the chart's promises asserted on the rendered objects:
//! one single-replica `OnDelete` StatefulSet, one PDB and one relay Service per account,
//! selectors that never reach another account's pod, the probes, the grace period, the
//! secret as a credentials volume (never in the environment), the state PVC, the resources.
//! Bad values must fail the render with the chart's own message.
//!
//! The Python packages come from `scripts/test-deps-python` (pinned, in `target/pyvenv`).
//! A failing assertion prints the rendered manifests.

mod common;

use std::process::Command;

use serde_json::{json, Value};

use common::{repo_root, test_python};

const KUBE_VERSION: &str = "1.30";
const RELEASE: &str = "prod";
const NAMESPACE: &str = "trading";

/// A successful render: the objects and their YAML (shown when an assertion fails).
struct Rendered {
    chart: Value,
    objects: Vec<Value>,
    notes: String,
    yaml: String,
}

impl Drop for Rendered {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---------- the rendered manifests:\n{}", self.yaml);
        }
    }
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }
}

/// Runs render.py on `values`: Ok(rendered and valid) or Err(the chart's message). Panics
/// when the manifests render but are invalid, or render.py itself breaks.
fn try_render(values: &Value) -> Result<Rendered, String> {
    let dir = tempfile::Builder::new()
        .prefix("ibw-helm-")
        .tempdir()
        .expect("tempdir");
    let file = dir.path().join("values.yaml"); // JSON is YAML
    std::fs::write(&file, serde_json::to_vec_pretty(values).unwrap()).expect("write values");
    let out = Command::new(test_python())
        .arg(repo_root().join("packaging/helm/render.py"))
        .args(["--json", "--lint", "--validate", KUBE_VERSION])
        .args(["--release", RELEASE, "--namespace", NAMESPACE])
        .arg(&file)
        .output()
        .expect("run packaging/helm/render.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(1) => {
            assert!(
                stdout.trim().is_empty(),
                "a refused render printed manifests: {stdout}"
            );
            return Err(stderr);
        }
        Some(0) | Some(2) => {}
        _ => panic!("render.py failed ({}):\n{stderr}\n{stdout}", out.status),
    }
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("render.py --json printed no JSON ({e}):\n{stdout}\n{stderr}"));
    let r = Rendered {
        chart: v["chart"].clone(),
        objects: v["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| m["object"].clone())
            .collect(),
        notes: v["notes"].as_str().unwrap_or("").to_string(),
        yaml: v["yaml"].as_str().unwrap_or("").to_string(),
    };
    let problems = v["problems"].as_array().expect("problems");
    assert!(
        problems.is_empty() && out.status.success(),
        "the manifests are not valid Kubernetes {KUBE_VERSION} objects:\n{}\n{stderr}",
        problems
            .iter()
            .map(|p| p.as_str().unwrap_or("?"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(r)
}

fn render(values: &Value) -> Rendered {
    try_render(values).unwrap_or_else(|e| panic!("the chart refused the values:\n{e}"))
}

/// Three accounts: two live (one with every optional field), one paper with its own
/// resources; the ServiceMonitor on.
fn three_accounts() -> Value {
    json!({
        "accounts": [
            {"name": "acct1", "username": "u-acct1", "tradingMode": "live",
             "existingSecret": "ibkr-acct1"},
            {"name": "acct2", "username": "u-acct2", "tradingMode": "live",
             "existingSecret": "ibkr-acct2", "existingSession": "secondary",
             "timeZone": "Europe/Zurich", "relayAllow": ["10.244.0.0/16", "fd00:10::/64"],
             "extraEnv": [{"name": "IBWARDEN_API_PORT", "value": "4101"}]},
            {"name": "paper1", "username": "u-paper1", "tradingMode": "paper",
             "existingSecret": "ibkr-paper1",
             "resources": {"requests": {"cpu": "500m", "memory": "1500Mi"},
                           "limits": {"memory": "3Gi"}}}
        ],
        "metrics": {"serviceMonitor": {"enabled": true,
                                       "labels": {"release": "kube-prometheus-stack"}}}
    })
}

// ------------------------------------------------------------------------- selectors

/// Whether a label selector (`{matchLabels, matchExpressions}`) selects `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let ml = selector["matchLabels"].as_object();
    let me = selector["matchExpressions"].as_array();
    assert!(
        ml.is_some_and(|m| !m.is_empty()) || me.is_some_and(|m| !m.is_empty()),
        "an empty selector selects everything: {selector}"
    );
    ml.into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str())
        && me.into_iter().flatten().all(|e| {
            let key = e["key"].as_str().expect("key");
            let vals: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e["operator"].as_str().expect("operator") {
                "In" => label(key).is_some_and(|l| vals.contains(&l)),
                "NotIn" => !label(key).is_some_and(|l| vals.contains(&l)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                op => panic!("unknown operator {op}"),
            }
        })
}

/// A Service's selector is a plain map.
fn service_selects(svc: &Value, labels: &Value) -> bool {
    selects(&json!({"matchLabels": svc["spec"]["selector"]}), labels)
}

fn env_of(container: &Value) -> Vec<(String, &Value)> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("env name").to_string(), e))
        .collect()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?
        .get("value")?
        .as_str()
}

/// The container port a probe or Service targets (a number or a port name).
fn resolve_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("port name or number");
    container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
        .as_u64()
        .expect("containerPort")
}

// ------------------------------------------------------------------------- the tests

#[test]
fn three_accounts_render_to_valid_manifests_that_keep_each_account_to_one_pod() {
    let values = three_accounts();
    let r = render(&values);
    let accounts = values["accounts"].as_array().unwrap();

    assert_eq!(r.chart["apiVersion"], "v2");
    assert_eq!(r.chart["name"], "ibwarden");
    assert_eq!(r.chart["version"], "0.1.0");
    assert_eq!(r.chart["appVersion"], "0.1.0");

    // Nothing but these kinds; above all no Secret: the chart holds no secret values.
    let mut kinds: Vec<&str> = r
        .objects
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "PodDisruptionBudget",
            "Service",
            "ServiceMonitor",
            "StatefulSet"
        ]
    );
    for o in &r.objects {
        let labels = &o["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "ibwarden", "{o}");
        assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{o}");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{o}");
        assert_eq!(o["metadata"]["namespace"], NAMESPACE, "{o}");
    }

    let sets = r.of_kind("StatefulSet");
    let pdbs = r.of_kind("PodDisruptionBudget");
    let services = r.of_kind("Service");
    assert_eq!(sets.len(), accounts.len(), "one StatefulSet per account");
    assert_eq!(pdbs.len(), accounts.len(), "one PDB per account");
    let pod_labels: Vec<&Value> = sets
        .iter()
        .map(|s| &s["spec"]["template"]["metadata"]["labels"])
        .collect();

    for a in accounts {
        let name = a["name"].as_str().unwrap();
        let live = a["tradingMode"] == "live";
        let relay_port = if live { 4003 } else { 4004 };
        // The account's pod is the one logging in with its username.
        let mine: Vec<usize> = (0..sets.len())
            .filter(|&i| {
                let c = &sets[i]["spec"]["template"]["spec"]["containers"][0];
                env_value(c, "TWS_USERID") == a["username"].as_str()
            })
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{name}: exactly one StatefulSet logs in as it"
        );
        let (idx, sts) = (mine[0], sets[mine[0]]);
        let labels = pod_labels[idx];
        let spec = &sts["spec"];
        assert_eq!(
            sts["metadata"]["name"],
            format!("{RELEASE}-ibwarden-{name}")
        );

        // One pod, never two: replicas 1, OnDelete, OrderedReady.
        assert_eq!(spec["replicas"], 1, "{name}: replicas");
        assert_eq!(spec["updateStrategy"]["type"], "OnDelete", "{name}");
        assert!(
            spec["updateStrategy"].get("rollingUpdate").is_none(),
            "{name}"
        );
        assert_eq!(spec["podManagementPolicy"], "OrderedReady", "{name}");

        // Selectors: its own StatefulSet, PDB and Services select its pod and no other.
        for (j, other) in pod_labels.iter().enumerate() {
            assert_eq!(
                selects(&spec["selector"], other),
                j == idx,
                "{name}: StatefulSet selector vs pod {j}"
            );
        }
        let my_pdbs: Vec<&&Value> = pdbs
            .iter()
            .filter(|p| selects(&p["spec"]["selector"], labels))
            .collect();
        assert_eq!(my_pdbs.len(), 1, "{name}: exactly one PDB selects its pod");
        let pdb = my_pdbs[0];
        assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{name}");
        assert!(pdb["spec"].get("minAvailable").is_none(), "{name}");
        for (j, other) in pod_labels.iter().enumerate() {
            assert_eq!(
                selects(&pdb["spec"]["selector"], other),
                j == idx,
                "{name}: PDB vs pod {j}"
            );
        }
        let my_services: Vec<&&Value> = services
            .iter()
            .filter(|s| service_selects(s, labels))
            .collect();
        for s in &my_services {
            for (j, other) in pod_labels.iter().enumerate() {
                assert!(
                    j == idx || !service_selects(s, other),
                    "{name}: Service {} also selects pod {j}",
                    s["metadata"]["name"]
                );
            }
        }

        // The pod.
        let pod = &spec["template"]["spec"];
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{name}");
        let c = &containers[0];
        assert_eq!(c["image"], "ghcr.io/ibwarden/ibwarden:0.1.0", "{name}");
        assert!(
            c.get("command").is_none() && c.get("args").is_none(),
            "{name}: the image's entrypoint runs"
        );

        // The relay Service: the port of the account's mode, to the container's relay port.
        let api: Vec<&&&Value> = my_services
            .iter()
            .filter(|s| {
                s["spec"]["ports"].as_array().unwrap().iter().any(|p| {
                    p["port"] == relay_port && resolve_port(c, &p["targetPort"]) == relay_port
                })
            })
            .collect();
        assert_eq!(
            api.len(),
            1,
            "{name}: one Service exposes the relay on {relay_port}"
        );
        assert_eq!(api[0]["spec"]["type"], "ClusterIP", "{name}");
        for s in &my_services {
            for p in s["spec"]["ports"].as_array().unwrap() {
                assert!(
                    p["port"] != (if live { 4004 } else { 4003 }),
                    "{name}: a Service exposes the other mode's port"
                );
            }
        }
        assert!(
            env_value(c, "IBWARDEN_RELAY_LISTEN")
                .is_some_and(|v| v.ends_with(&format!(":{relay_port}"))),
            "{name}: relay listen"
        );
        let allow = a["relayAllow"].as_array().map_or(
            "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,fc00::/7,::1/128".to_string(),
            |l| {
                l.iter()
                    .map(|b| b.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            },
        );
        assert_eq!(
            env_value(c, "IBWARDEN_RELAY_ALLOW"),
            Some(allow.as_str()),
            "{name}"
        );

        // The governing headless Service exists and selects this pod.
        let governing = services
            .iter()
            .find(|s| s["metadata"]["name"] == spec["serviceName"])
            .unwrap_or_else(|| panic!("{name}: no Service {}", spec["serviceName"]));
        assert_eq!(governing["spec"]["clusterIP"], "None", "{name}");
        assert!(service_selects(governing, labels), "{name}");

        // Probes on the health port: startup and liveness /livez, readiness /readyz.
        for (probe, path) in [
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{name}: {probe}");
            assert_eq!(resolve_port(c, &get["port"]), 9187, "{name}: {probe}");
        }
        let startup = &c["startupProbe"];
        let startup_s = startup["periodSeconds"].as_u64().unwrap_or(10)
            * startup["failureThreshold"].as_u64().unwrap_or(3);
        assert!(startup_s >= 120, "{name}: startup window {startup_s} s");
        assert!(
            env_value(c, "IBWARDEN_HEALTH_LISTEN").is_some_and(|v| v.ends_with(":9187")),
            "{name}"
        );

        // A clean logout fits in the grace period (stop_grace 90 s).
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace");
        assert!(
            grace >= 100,
            "{name}: terminationGracePeriodSeconds {grace}"
        );
        assert_eq!(grace, 120, "{name}: the default");

        // The environment ibwarden container reads.
        assert_eq!(
            env_value(c, "TRADING_MODE"),
            a["tradingMode"].as_str(),
            "{name}"
        );
        assert_eq!(
            env_value(c, "STATE_DIRECTORY"),
            Some("/var/lib/ibwarden"),
            "{name}"
        );
        assert_eq!(
            env_value(c, "RUNTIME_DIRECTORY"),
            Some("/run/ibwarden"),
            "{name}"
        );
        assert_eq!(
            env_value(c, "EXISTING_SESSION_DETECTED_ACTION"),
            Some(a["existingSession"].as_str().unwrap_or("primary")),
            "{name}"
        );
        assert_eq!(env_value(c, "TIME_ZONE"), a["timeZone"].as_str(), "{name}");
        for extra in a["extraEnv"].as_array().into_iter().flatten() {
            assert_eq!(
                env_value(c, extra["name"].as_str().unwrap()),
                extra["value"].as_str(),
                "{name}: extraEnv"
            );
        }

        // Secrets: a Secret volume mounted as the credentials directory; nothing secret in
        // the environment.
        let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
        let mount_of = |path: &str| {
            mounts
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("{name}: nothing mounted at {path}"))
        };
        let volume_of = |vol: &Value| {
            pod["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == *vol)
                .cloned()
        };
        let cred_mount = mount_of("/run/credentials/ibwarden");
        assert_eq!(cred_mount["readOnly"], true, "{name}");
        let cred = volume_of(&cred_mount["name"]).expect("the credentials volume");
        assert_eq!(cred["secret"]["secretName"], a["existingSecret"], "{name}");
        assert_eq!(cred["secret"]["defaultMode"], 0o400, "{name}");
        let keys: Vec<&str> = cred["secret"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                assert_eq!(i["key"], i["path"], "{name}: file named as the credential");
                i["key"].as_str().unwrap()
            })
            .collect();
        assert_eq!(
            keys,
            if live {
                vec!["password", "totp"]
            } else {
                vec!["password"]
            },
            "{name}: credentials"
        );
        assert_eq!(
            env_value(c, "CREDENTIALS_DIRECTORY"),
            cred_mount["mountPath"].as_str(),
            "{name}"
        );
        assert!(c.get("envFrom").is_none(), "{name}: envFrom");
        for (var, e) in env_of(c) {
            assert!(
                e["valueFrom"].get("secretKeyRef").is_none(),
                "{name}: {var} comes from a Secret"
            );
            let upper = var.to_uppercase();
            assert!(
                !["PASSWORD", "TOTP", "SECRET", "TOKEN"]
                    .iter()
                    .any(|w| upper.contains(w)),
                "{name}: {var} looks like a secret in the environment"
            );
        }
        assert!(!r.yaml.contains("secretKeyRef"), "no secretKeyRef anywhere");

        // State: the PVC of the volumeClaimTemplate at /var/lib/ibwarden (not shadowed by a
        // pod volume of the same name).
        let state_mount = mount_of("/var/lib/ibwarden");
        let claims = spec["volumeClaimTemplates"].as_array().expect("claims");
        let claim = claims
            .iter()
            .find(|t| t["metadata"]["name"] == state_mount["name"])
            .unwrap_or_else(|| panic!("{name}: /var/lib/ibwarden is not a claim template"));
        assert!(volume_of(&state_mount["name"]).is_none(), "{name}");
        assert_eq!(
            claim["spec"]["resources"]["requests"]["storage"], "1Gi",
            "{name}"
        );
        // Scratch: /run/ibwarden in memory, /tmp and HOME writable emptyDirs.
        for (path, medium) in [
            ("/run/ibwarden", Some("Memory")),
            ("/tmp", None),
            ("/home/ibwarden", None),
        ] {
            let v = volume_of(&mount_of(path)["name"]).expect("volume");
            assert!(v["emptyDir"].is_object(), "{name}: {path} is an emptyDir");
            assert_eq!(v["emptyDir"]["medium"].as_str(), medium, "{name}: {path}");
        }

        // Resources: requests present; the account's override wins; no CPU limit.
        let res = &c["resources"];
        let want = a.get("resources").unwrap_or(&Value::Null);
        assert!(res["requests"]["cpu"].is_string(), "{name}: cpu request");
        assert!(res["requests"]["memory"].is_string(), "{name}");
        assert!(res["limits"]["memory"].is_string(), "{name}");
        assert!(res["limits"].get("cpu").is_none(), "{name}: no CPU limit");
        if want.is_object() {
            assert_eq!(res, want, "{name}: the account's resources");
        } else {
            assert_eq!(
                res,
                &json!({"requests": {"cpu": "250m", "memory": "1280Mi"},
                        "limits": {"memory": "2Gi"}}),
                "{name}"
            );
        }

        // Security context.
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{name}");
        assert_eq!(psc["runAsUser"], 1000, "{name}");
        assert_eq!(psc["fsGroup"], 1000, "{name}");
        let csc = &c["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(csc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(csc["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        assert_eq!(
            pod["enableServiceLinks"], false,
            "{name}: no IBWARDEN_*_PORT variables from the chart's Services"
        );
        assert!(
            r.notes.contains(&format!(
                "{RELEASE}-ibwarden-{name}.{NAMESPACE}.svc:{relay_port}"
            )),
            "{name}: NOTES.txt names the relay address"
        );
    }

    // Every Service and PDB belongs to exactly one account's pod; each Service port reaches
    // a port of that pod's container.
    for o in services.iter().chain(pdbs.iter()) {
        let hits: Vec<usize> = (0..sets.len())
            .filter(|&i| {
                if o["kind"] == "Service" {
                    service_selects(o, pod_labels[i])
                } else {
                    selects(&o["spec"]["selector"], pod_labels[i])
                }
            })
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "{} {} selects pods {hits:?}",
            o["kind"],
            o["metadata"]["name"]
        );
        let c = &sets[hits[0]]["spec"]["template"]["spec"]["containers"][0];
        for p in o["spec"]["ports"].as_array().into_iter().flatten() {
            resolve_port(c, &p["targetPort"]);
        }
    }
    assert_eq!(services.len(), 2 * accounts.len(), "relay + headless each");

    // The ServiceMonitor scrapes /metrics on 9187 of every account's pod.
    let monitors = r.of_kind("ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let sm = monitors[0];
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let scraped: Vec<&&Value> = services
        .iter()
        .filter(|s| selects(&sm["spec"]["selector"], &s["metadata"]["labels"]))
        .collect();
    assert_eq!(
        scraped.len(),
        accounts.len(),
        "one scraped Service per account"
    );
    let eps = sm["spec"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["path"], "/metrics");
    for (i, labels) in pod_labels.iter().enumerate() {
        let svc = scraped
            .iter()
            .find(|s| service_selects(s, labels))
            .unwrap_or_else(|| panic!("pod {i} is not scraped"));
        let port = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == eps[0]["port"])
            .expect("the endpoint's port on the Service");
        let c = &sets[i]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(resolve_port(c, &port["targetPort"]), 9187, "pod {i}");
    }
}

#[test]
fn the_service_monitor_is_rendered_only_when_enabled() {
    let mut values = three_accounts();
    values["metrics"]["serviceMonitor"]["enabled"] = json!(false);
    let r = render(&values);
    assert!(r.of_kind("ServiceMonitor").is_empty(), "disabled");
    assert_eq!(r.of_kind("StatefulSet").len(), 3);
    values.as_object_mut().unwrap().remove("metrics");
    let r = render(&values);
    assert!(r.of_kind("ServiceMonitor").is_empty(), "off by default");
    values["metrics"] = json!({"serviceMonitor": {"enabled": true}});
    let r = render(&values);
    assert_eq!(r.of_kind("ServiceMonitor").len(), 1, "enabled");
}

#[test]
fn bad_values_fail_the_render_with_the_charts_message() {
    type Edit = fn(&mut Value);
    let cases: &[(&str, Edit, &str)] = &[
        (
            "an account without existingSecret",
            |v| {
                v["accounts"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("existingSecret");
            },
            "accounts[1] (acct2): existingSecret is missing",
        ),
        (
            "an invalid account name",
            |v| v["accounts"][0]["name"] = json!("Acct_1"),
            "the name \"Acct_1\" is not a DNS-1123 label",
        ),
        (
            "tradingMode both",
            |v| v["accounts"][2]["tradingMode"] = json!("both"),
            "accounts[2] (paper1): tradingMode is \"both\", it must be live or paper",
        ),
        (
            "a grace period too short for a clean logout",
            |v| v["terminationGracePeriodSeconds"] = json!(30),
            "terminationGracePeriodSeconds is 30, it must be at least 100",
        ),
        (
            "replicas on an account",
            |v| v["accounts"][0]["replicas"] = json!(2),
            "accounts[0] (acct1): replicas is not configurable",
        ),
        (
            "replicas for the release",
            |v| v["replicas"] = json!(2),
            "replicas is not configurable",
        ),
        (
            "a secret through extraEnv",
            |v| {
                v["accounts"][0]["extraEnv"] = json!([{"name": "PW",
                    "valueFrom": {"secretKeyRef": {"name": "ibkr-acct1", "key": "password"}}}])
            },
            "extraEnv PW takes a secretKeyRef",
        ),
        (
            "a password variable",
            |v| v["accounts"][0]["extraEnv"] = json!([{"name": "TWS_PASSWORD", "value": "x"}]),
            "a password never goes into the environment",
        ),
        (
            "two accounts of one name",
            |v| v["accounts"][2]["name"] = json!("acct1"),
            "the name \"acct1\" is used by two accounts",
        ),
        (
            "a misspelt key",
            |v| v["accounts"][0]["existingsecret"] = json!("x"),
            "unknown key \"existingsecret\"",
        ),
        (
            "a name too long for a StatefulSet",
            |v| v["accounts"][0]["name"] = json!("a".repeat(50)),
            "a StatefulSet's name may have at most 52",
        ),
        (
            "no accounts",
            |v| v["accounts"] = json!([]),
            "accounts is empty",
        ),
    ];
    // The unchanged values render: each failure below is the edit's.
    drop(render(&three_accounts()));
    let mut wrong = Vec::new();
    for (what, edit, message) in cases {
        let mut values = three_accounts();
        edit(&mut values);
        match try_render(&values) {
            Ok(r) => wrong.push(format!("{what}: rendered\n{}", r.yaml)),
            Err(e) if !e.contains(message) => {
                wrong.push(format!("{what}: expected {message:?} in:\n{e}"))
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
