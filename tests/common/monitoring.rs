//! The operators' monitoring files as the tests read them: the Grafana dashboard's panels,
//! the alert rules (with a line-based reader for the layout of the repository's rules file),
//! and the metric names in a PromQL expression.

use serde_json::Value;
use std::path::PathBuf;

/// Installs the Debian package `prometheus` (promtool and the server) if either is missing,
/// as root or through sudo; `.ci/run` installs it up front, so this matters for a plain
/// `cargo test` on a fresh Debian machine.
///
/// # Panics
/// The package cannot be installed (no apt-get, no root, no network).
pub fn ensure_prometheus() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let have = |tool: &str| {
            std::process::Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if have("promtool") && have("prometheus") {
            return;
        }
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        let apt = |args: &[&str]| {
            let mut c = std::process::Command::new(if root { "apt-get" } else { "sudo" });
            if !root {
                c.arg("apt-get");
            }
            c.args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        let installed = apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "prometheus"]);
        assert!(
            installed && have("promtool") && have("prometheus"),
            "the Debian package prometheus is needed (promtool and the server) and could not be \
             installed: apt-get install prometheus"
        );
    });
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `larder_*` metric names in a PromQL expression.
pub fn metric_names(expr: &str) -> Vec<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(off) = expr[from..].find("larder_") {
        let start = from + off;
        let len = expr[start..]
            .find(|c: char| !is_name_char(c))
            .unwrap_or(expr.len() - start);
        let at_boundary = !expr[..start].ends_with(is_name_char);
        if at_boundary {
            names.push(expr[start..start + len].to_string());
        }
        from = start + len;
    }
    names
}

/// One alerting rule of the rules file, read as text.
pub struct Alert {
    pub name: String,
    pub expr: String,
    /// The rule's lines, for its labels and annotations.
    pub text: String,
}

/// The alerting rules of a Prometheus rules file, with a line-based reader good enough for
/// the layout of `deploy/prometheus/rules/larder.rules.yml`: `- alert: Name` starts a rule,
/// `expr:` is a one-line (optionally quoted) scalar or a `|`/`>` block.
pub fn alerts(yaml: &str) -> Vec<Alert> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out: Vec<Alert> = Vec::new();
    // The indentation of the current alert's `- alert:` item; None outside alerts.
    let mut item: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert:") {
            out.push(Alert {
                name: unquote(name.trim()),
                expr: String::new(),
                text: String::new(),
            });
            item = Some(indent(line));
        } else if t.starts_with("- ") && item.is_some_and(|own| indent(line) <= own) {
            // The next list item (a recording rule, a group) ends the alert.
            item = None;
        }
        if let (Some(_), Some(a)) = (item, out.last_mut()) {
            a.text.push_str(line);
            a.text.push('\n');
            if let Some(rest) = t.strip_prefix("expr:") {
                let rest = rest.trim();
                if rest.starts_with('|') || rest.starts_with('>') {
                    let own = indent(line);
                    let mut body = Vec::new();
                    while i + 1 < lines.len()
                        && (lines[i + 1].trim().is_empty() || indent(lines[i + 1]) > own)
                    {
                        i += 1;
                        body.push(lines[i].trim());
                        a.text.push_str(lines[i]);
                        a.text.push('\n');
                    }
                    a.expr = body.join(" ").trim().to_string();
                } else {
                    a.expr = unquote(rest);
                }
            }
        }
        i += 1;
    }
    out
}

pub fn unquote(s: &str) -> String {
    if let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else if let Some(inner) = s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        s.to_string()
    }
}

/// Every panel of the dashboard, rows and the panels nested in (collapsed) rows included.
pub fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p);
            if let Some(nested) = p.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

pub fn dashboard() -> Value {
    serde_json::from_str(&read("grafana/dashboards/larder.json")).expect("larder.json is JSON")
}

/// `promtool check metrics` on a scraped page passes.
pub fn promtool_check_metrics(page: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    ensure_prometheus();
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    c.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
