//! The deployment files under `deploy/`, checked offline: the systemd units pass `systemd-analyze
//! verify` and stay hardened; the Kubernetes manifests validate against the Kubernetes 1.30 API
//! schemas (kubernetes-validate, strict), and so does what kustomize makes of them; the compose
//! file validates against the Compose schema, and everything it mounts or builds from exists;
//! and every command line in them uses flags the built binary has.
//!
//! The Python tools live in a virtual environment, `target/deploy-venv`, made on first use
//! (python3 -m venv, pip from PyPI). Needs: systemd-analyze (Debian package systemd),
//! python3 with venv (python3-venv); `docker compose` and kubectl are used when present.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The Kubernetes version the manifests are checked against.
const KUBERNETES: &str = "1.30.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory of this test's own (unique per process and name).
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("larder-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Whether `program` runs at all (`args` such as `--version`).
fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The Python tools.

/// Imports that make a usable environment; also prints where the Compose schema is.
const VENV_CHECK: &str = "import kubernetes_validate, yaml, jsonschema, sysconfig, pathlib
p = pathlib.Path(sysconfig.get_paths()['purelib']) / 'compose/config/compose_spec.json'
assert p.is_file(), p
print(p)";

/// `target/deploy-venv`, made once (per process; processes racing each other build their own
/// and the first rename wins).
fn venv() -> &'static Path {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(make_venv) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

fn venv_ready(venv: &Path) -> bool {
    Command::new(venv_python(venv))
        .args(["-c", VENV_CHECK])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn make_venv() -> Result<PathBuf, String> {
    let target = repo().join("target");
    let venv = target.join("deploy-venv");
    if venv_ready(&venv) {
        return Ok(venv);
    }
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let tmp = target.join(format!("deploy-venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let step = |what: &str, cmd: &mut Command| -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{what} failed ({cmd:?}):\n{}", text(&out)))
        }
    };
    step(
        "creating the virtual environment (Debian: apt-get install python3-venv)",
        Command::new("python3").args(["-m", "venv"]).arg(&tmp),
    )?;
    let py = venv_python(&tmp);
    let pip_install = |what: &str, packages: &[&str]| {
        step(
            what,
            Command::new(&py)
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(packages),
        )
    };
    pip_install(
        "installing kubernetes-validate, PyYAML and jsonschema from PyPI",
        &["kubernetes-validate==1.37.0", "pyyaml", "jsonschema"],
    )?;
    // Only for the Compose specification's JSON schema that it ships
    // (compose/config/compose_spec.json); none of its code runs, so none of its dependencies.
    pip_install(
        "installing docker-compose 1.29.2 (for its Compose schema) from PyPI",
        &["--no-deps", "docker-compose==1.29.2"],
    )?;
    if !venv_ready(&tmp) {
        return Err(format!("{} is incomplete after installing", tmp.display()));
    }
    // A broken leftover goes; a ready one made meanwhile by another process stays.
    if venv.exists() && !venv_ready(&venv) {
        let _ = std::fs::remove_dir_all(&venv);
    }
    if std::fs::rename(&tmp, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if venv_ready(&venv) {
        Ok(venv)
    } else {
        Err(format!("{} is not usable", venv.display()))
    }
}

/// Runs the Python `script` of the venv on `file` and parses the JSON it prints; `what` names
/// the check in the failure message.
fn python_json<T: serde::de::DeserializeOwned>(script: &str, file: &Path, what: &str) -> T {
    let out = run(Command::new(venv_python(venv()))
        .arg("-c")
        .arg(script)
        .arg(file));
    assert!(
        out.status.success(),
        "{} {what}:\n{}",
        file.display(),
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every YAML document of `file` as JSON (one array), by PyYAML.
fn yaml_documents(file: &Path) -> Vec<Value> {
    python_json(
        "import sys, json, yaml
print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        file,
        "is not valid YAML",
    )
}

// ---------------------------------------------------------------------------------------------
// systemd.

const UNITS: [&str; 2] = ["larder-node@.service", "larder-dealer-worker@.service"];
const INSTALLED: &str = "ExecStart=/usr/local/bin/larder ";

#[test]
fn systemd_units_verify_and_stay_hardened() {
    if !have("systemd-analyze", &["--version"]) {
        eprintln!("SKIPPED: systemd-analyze is not installed (Debian package systemd)");
        return;
    }
    let dir = temp_dir("systemd");
    let bin = env!("CARGO_BIN_EXE_larder");
    let mut templates = Vec::new();
    let mut instances = Vec::new();
    for unit in UNITS {
        let body = read(&repo().join("deploy/systemd").join(unit));
        assert!(
            body.contains(INSTALLED),
            "{unit} should run /usr/local/bin/larder"
        );
        for want in [
            "User=larder",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "CapabilityBoundingSet=\n",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "Restart=on-failure",
            "TimeoutStopSec=60",
            "LimitNOFILE=65536",
            "Environment=LARDER_LOG_FORMAT=json",
        ] {
            assert!(body.contains(want), "{unit} lacks {want:?}");
        }
        // systemd-analyze checks that the command exists: run the copies on the built binary.
        let body = body.replace(INSTALLED, &format!("ExecStart={bin} "));
        let template = dir.join(unit);
        std::fs::write(&template, &body).unwrap();
        let instance = dir.join(unit.replace("@.", "@party-0."));
        std::fs::write(&instance, &body).unwrap();
        templates.push(template);
        instances.push(instance);
    }
    let node = read(&repo().join("deploy/systemd/larder-node@.service"));
    for want in [
        "ExecStart=/usr/local/bin/larder serve --node /etc/larder/%i/node.toml",
        "StateDirectory=larder/%i",
        "StateDirectoryMode=0700",
        "Environment=LARDER__DATA_DIR=/var/lib/larder/%i/store",
    ] {
        assert!(node.contains(want), "larder-node@.service lacks {want:?}");
    }

    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .args(&templates)
        .args(&instances));
    let said = text(&out);
    // verify exits 0 on unknown keys and bad values, warning only: any word on our units fails.
    assert!(
        out.status.success() && !said.contains("larder"),
        "systemd-analyze verify:\n{said}"
    );
    for unit in &instances {
        // Exposure 2.0 at most ("OK" in systemd's words; the units score 1.6 with systemd 252).
        let out = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(unit));
        assert!(
            out.status.success(),
            "systemd-analyze security {}:\n{}",
            unit.display(),
            text(&out)
        );
    }
    let sysusers = read(&repo().join("deploy/systemd/larder.sysusers.conf"));
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", "larder"])),
        "larder.sysusers.conf should create the user larder"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Kubernetes.

fn k8s_dir() -> PathBuf {
    repo().join("deploy/k8s")
}

/// The manifests of plain Kubernetes kinds: every YAML file but the kustomization and the
/// Prometheus Operator's kinds.
fn k8s_manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name != "kustomization.yaml" && name != "servicemonitor.yaml"
        })
        .collect();
    files.sort();
    files
}

fn kubernetes_validate(files: &[PathBuf]) {
    let out = run(Command::new(venv_python(venv()))
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
        ])
        .arg(KUBERNETES)
        .args(files));
    let said = text(&out);
    assert!(
        out.status.success()
            && !said
                .lines()
                .any(|l| l.starts_with("ERROR") || l.starts_with("WARN")),
        "kubernetes-validate --strict --kubernetes-version {KUBERNETES} {files:?}:\n{said}"
    );
    for f in files {
        assert!(
            said.contains(&format!("{} passed", f.display())),
            "kubernetes-validate checked nothing in {}:\n{said}",
            f.display()
        );
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let files = k8s_manifests();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "namespace.yaml",
        "party-0.yaml",
        "party-1.yaml",
        "party-2.yaml",
        "dealer-worker.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "deploy/k8s lacks {want}");
    }
    kubernetes_validate(&files);

    // The kustomization lists every plain manifest, and only files that exist.
    let kust = &yaml_documents(&k8s_dir().join("kustomization.yaml"))[0];
    let listed: Vec<&str> = kust["resources"]
        .as_array()
        .expect("kustomization.yaml: resources")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort();
    assert_eq!(
        listed_sorted, names,
        "kustomization.yaml's resources should be exactly the plain manifests"
    );

    // What the StatefulSets and the Deployment promise.
    for file in &files {
        for doc in yaml_documents(file) {
            let kind = doc["kind"].as_str().unwrap_or_default();
            if kind == "Service" {
                assert_eq!(
                    doc["spec"]["publishNotReadyAddresses"],
                    Value::Bool(true),
                    "{}: peers must reach a node before it is ready",
                    file.display()
                );
            }
            if kind != "StatefulSet" && kind != "Deployment" {
                continue;
            }
            let pod = &doc["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsUser"], 10001);
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", file.display());
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", file.display());
                assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{}", file.display());
                assert!(c["resources"]["limits"].is_object(), "{}", file.display());
                if kind == "StatefulSet" {
                    let port = |probe: &str| c[probe]["httpGet"]["port"].clone();
                    assert_eq!(port("livenessProbe"), "metrics");
                    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/v1/ready");
                    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/v1/health");
                    assert!(c["startupProbe"].is_object());
                    let metrics = c["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["name"] == "metrics")
                        .expect("a port named metrics");
                    assert_eq!(metrics["containerPort"], 9464);
                }
            }
        }
    }

    // What kustomize makes of it, with stand-ins for `larder provision`'s files.
    if !have("kubectl", &["version", "--client"]) {
        eprintln!("note: kubectl is not installed; the kustomization was not rendered");
        return;
    }
    let dir = temp_dir("kustomize");
    let copy = dir.join("k8s");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(k8s_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
    }
    for gen in ["configMapGenerator", "secretGenerator"] {
        for g in kust[gen].as_array().into_iter().flatten() {
            for f in g["files"].as_array().unwrap() {
                let src = f.as_str().unwrap();
                let src = src.split_once('=').map_or(src, |(_, s)| s);
                let at = copy.join(src);
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::write(&at, "stand-in\n").unwrap();
            }
        }
    }
    let out = run(Command::new("kubectl").arg("kustomize").arg(&copy));
    assert!(out.status.success(), "kubectl kustomize:\n{}", text(&out));
    let rendered = dir.join("rendered.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    kubernetes_validate(std::slice::from_ref(&rendered));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Docker and Compose.

fn compose_dir() -> PathBuf {
    repo().join("deploy/compose")
}

/// The compose file as JSON, checked against the Compose specification's schema.
fn compose_file() -> Value {
    python_json(
        "import sys, json, yaml, jsonschema, sysconfig, pathlib
schema_file = pathlib.Path(sysconfig.get_paths()['purelib']) / 'compose/config/compose_spec.json'
schema = json.load(open(schema_file))
doc = yaml.safe_load(open(sys.argv[1]))
errors = list(jsonschema.Draft201909Validator(schema).iter_errors(doc))
for e in errors:
    print('/'.join(map(str, e.absolute_path)) + ': ' + e.message, file=sys.stderr)
if errors:
    sys.exit(1)
print(json.dumps(doc))",
        &compose_dir().join("compose.yaml"),
        "against the Compose schema",
    )
}

/// A bind mount's source in a short `volumes` entry (`./a:/b:ro`), or `None` for a named
/// volume.
fn bind_source(entry: &Value) -> Option<String> {
    let src = match entry {
        Value::String(s) => s.split(':').next().unwrap().to_string(),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("bind") => {
            o["source"].as_str()?.to_string()
        }
        _ => return None,
    };
    (src.starts_with('.') || src.starts_with('/')).then_some(src)
}

#[test]
fn compose_file_validates_and_mounts_what_the_repository_has() {
    let compose = compose_file();
    let dir = compose_dir();
    let services = compose["services"].as_object().expect("services");
    for want in [
        "party-0",
        "party-1",
        "party-2",
        "dealer-worker",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(want), "compose.yaml lacks {want}");
    }
    let volumes = compose["volumes"].as_object().cloned().unwrap_or_default();
    let mut mounted = Vec::new();
    for (name, svc) in services {
        if let Some(build) = svc.get("build") {
            let context = dir.join(build["context"].as_str().unwrap());
            assert!(
                context.join("Cargo.toml").is_file(),
                "{name}: build context"
            );
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
            assert!(dockerfile.is_file(), "{name}: {}", dockerfile.display());
        }
        for v in svc["volumes"].as_array().into_iter().flatten() {
            match bind_source(v) {
                // Made by the init service (`larder provision`), not in the repository.
                Some(src) if src == "./consortium" || src.starts_with("./consortium/") => {}
                Some(src) => {
                    let at = dir.join(&src);
                    assert!(
                        at.exists(),
                        "{name} mounts {src}: {} is missing",
                        at.display()
                    );
                    mounted.push(src);
                }
                None => {
                    let vol = v.as_str().unwrap().split(':').next().unwrap();
                    assert!(
                        volumes.contains_key(vol),
                        "{name} mounts the volume {vol}, which compose.yaml does not declare"
                    );
                }
            }
        }
    }
    for want in [
        "../prometheus/prometheus.yml",
        "../prometheus/rules",
        "./prometheus-targets",
        "../../grafana/provisioning",
        "../../grafana/dashboards",
    ] {
        assert!(mounted.iter().any(|m| m == want), "nothing mounts {want}");
    }
    for p in 0..3 {
        let env = &services[&format!("party-{p}")]["environment"];
        assert_eq!(
            env["LARDER_NODE"],
            format!("/etc/larder/party-{p}/node.toml")
        );
        assert_eq!(env["LARDER__DATA_DIR"], "/var/lib/larder/store");
    }

    // Prometheus's targets are the compose services' metrics listeners.
    let nodes: Value =
        serde_json::from_str(&read(&dir.join("prometheus-targets/nodes.json"))).unwrap();
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for (p, group) in nodes.iter().enumerate() {
        assert_eq!(group["targets"][0], format!("party-{p}:9464"));
        assert_eq!(group["labels"]["party"], p.to_string());
    }
    let workers: Value =
        serde_json::from_str(&read(&dir.join("prometheus-targets/workers.json"))).unwrap();
    for t in workers[0]["targets"].as_array().unwrap() {
        let host = t.as_str().unwrap().split(':').next().unwrap();
        assert!(services.contains_key(host), "workers.json names {host}");
    }

    // The Dockerfile copies only what the repository has.
    let dockerfile = read(&repo().join("deploy/docker/Dockerfile"));
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "Dockerfile: {line}: {src} is missing"
            );
        }
    }

    if have("docker", &["compose", "version"]) {
        let out = run(Command::new("docker")
            .args(["compose", "-f"])
            .arg(dir.join("compose.yaml"))
            .args(["config", "--quiet"]));
        assert!(
            out.status.success(),
            "docker compose config:\n{}",
            text(&out)
        );
    } else {
        eprintln!("note: docker compose is not installed; checked against the schema only");
    }
}

// ---------------------------------------------------------------------------------------------
// The command lines in the deployment files against the built binary.

fn help(args: &[&str]) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_larder"))
        .args(args)
        .arg("--help"));
    assert!(
        out.status.success(),
        "larder {args:?} --help:\n{}",
        text(&out)
    );
    text(&out)
}

#[test]
fn deployment_command_lines_use_flags_the_binary_has() {
    let cases: [(&[&str], &[&str]); 4] = [
        (&[], &["--log-format"]),
        (&["serve"], &["--node"]),
        (
            &["dealer"],
            &[
                "--worker",
                "--consortium",
                "--token-file",
                "--name",
                "--nice",
                "--metrics-listen",
            ],
        ),
        (
            &["provision"],
            &[
                "--dir",
                "--name",
                "--party",
                "--listen",
                "--metrics-listen",
                "--data-dir",
            ],
        ),
    ];
    for (command, flags) in cases {
        let h = help(command);
        for f in flags {
            assert!(
                h.contains(f),
                "larder {command:?} --help does not mention {f}:\n{h}"
            );
        }
    }
    // The image runs `larder serve` with its node file in LARDER_NODE.
    let node = std::env::temp_dir().join(format!(
        "larder-deploy-none-{}/node.toml",
        std::process::id()
    ));
    let out = run(Command::new(env!("CARGO_BIN_EXE_larder"))
        .arg("serve")
        .env("LARDER_NODE", &node)
        .env("LARDER_LOG_FORMAT", "json"));
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains(&*node.to_string_lossy()),
        "larder serve should read its node file from LARDER_NODE ({}):\n{said}",
        node.display()
    );
}
