//! The programs some tests start (a browser, promtool, a Python with the
//! SDKs). `scripts/test.sh`, the README's test command, installs every one
//! of them; a test whose program is missing fails and names that command,
//! so no test passes by not running.

use std::path::{Path, PathBuf};

/// The one command that installs what the tests need.
pub const SETUP: &str = "scripts/test.sh";

/// A program: the path in the environment variable `env` if set, else the
/// first of `candidates` that exists (absolute paths as they are, bare
/// names looked up on PATH). Panics naming `SETUP` and the Debian package
/// `package` when there is none.
pub fn program(env: &str, candidates: &[&str], package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{env}={} is not a file: unset it, or run `{SETUP}`, which installs Debian's `{package}`",
            p.display()
        );
        return p;
    }
    candidates.iter().find_map(|c| find(c)).unwrap_or_else(|| {
        panic!(
            "{} not found: run `{SETUP}`, which installs Debian's `{package}` \
                 (or set {env} to the program)",
            candidates.join(" or ")
        )
    })
}

fn find(candidate: &str) -> Option<PathBuf> {
    let p = Path::new(candidate);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(candidate))
        .find(|f| f.is_file())
}

/// Each Debian package the tests need, with the program `scripts/test.sh`
/// looks for to tell whether it is installed (a test holds the script to
/// this list).
const PACKAGES: [(&str, &str); 6] = [
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    ("promtool", "prometheus"),
    ("script", "bsdutils"),
    ("docker-compose", "docker-compose"),
    ("systemd-analyze", "systemd"),
];

pub fn chromium() -> PathBuf {
    program(
        "ONEFLOW_CHROMIUM",
        &[PACKAGES[0].0, "chromium"],
        PACKAGES[0].1,
    )
}

pub fn chromedriver() -> PathBuf {
    program(
        "ONEFLOW_CHROMEDRIVER",
        &[PACKAGES[1].0, "chromedriver"],
        PACKAGES[1].1,
    )
}

pub fn promtool() -> PathBuf {
    program("ONEFLOW_PROMTOOL", &[PACKAGES[2].0], PACKAGES[2].1)
}

pub fn script() -> PathBuf {
    program("ONEFLOW_SCRIPT", &[PACKAGES[3].0], PACKAGES[3].1)
}

/// Compose, to validate `deploy/compose.yaml`: Docker's own `docker
/// compose` where that plugin is installed, else Debian's `docker-compose`
/// (which reads the same file format); the program and its first argument.
pub fn compose() -> (PathBuf, Vec<&'static str>) {
    let plugin = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if plugin {
        return (PathBuf::from("docker"), vec!["compose"]);
    }
    (
        program("ONEFLOW_COMPOSE", &[PACKAGES[4].0], PACKAGES[4].1),
        Vec::new(),
    )
}

pub fn systemd_analyze() -> PathBuf {
    program("ONEFLOW_SYSTEMD_ANALYZE", &[PACKAGES[5].0], PACKAGES[5].1)
}

/// A Python with the SDKs of `scripts/test-requirements.txt`:
/// `ONEFLOW_PYTHON`, else the virtualenv `scripts/test.sh` makes. Checked by
/// importing them, so a bare Python is not mistaken for it.
pub fn sdk_python() -> PathBuf {
    let python = match std::env::var_os("ONEFLOW_PYTHON").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_default();
            cache.join("oneflow/test-venv/bin/python")
        }
    };
    let imports = std::process::Command::new(&python)
        .args(["-c", "import openai, anthropic"])
        .output();
    match imports {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "{} cannot import the SDKs ({}): run `{SETUP}`, which makes the virtualenv",
            python.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "no Python with the SDKs at {} ({e}): run `{SETUP}`, which makes the virtualenv \
             (or set ONEFLOW_PYTHON)",
            python.display()
        ),
    }
}

/// Runs the SDK script `tests/sdk/<script>` with the SDKs' Python and
/// `env` (`NO_PROXY` set), off the async runtime: its JSON report on
/// stdout, or a panic with what it printed on stderr.
pub async fn run_sdk(script: &str, env: Vec<(&'static str, String)>) -> serde_json::Value {
    let python = sdk_python();
    let path = format!("{}/../tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(path)
            .envs(env)
            .env("NO_PROXY", "127.0.0.1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK script {script} failed: {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The charges an SDK report's usage makes at the mocks' text rate card
/// (0.001 a prompt token, 0.003 a completion token): its `input_tokens`
/// and `output_tokens` lists, request by request; and the output tokens.
pub fn reported_charges(report: &serde_json::Value) -> (Vec<oneflow::Credits>, Vec<i64>) {
    let tokens = |k: &str| -> Vec<i64> {
        report[k]
            .as_array()
            .unwrap_or_else(|| panic!("no `{k}` in {report}"))
            .iter()
            .map(|t| t.as_i64().unwrap())
            .collect()
    };
    let output = tokens("output_tokens");
    let charges = tokens("input_tokens")
        .into_iter()
        .zip(output.iter())
        .map(|(i, o)| oneflow::Credits(i * 1_000 + o * 3_000))
        .collect();
    (charges, output)
}

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The newcomer's promise: the README's test command is the set-up script,
/// CI runs that same script, and the script installs every package a test
/// here asks for and points the tests at the virtualenv they look in.
#[test]
fn the_readme_test_command_sets_up_what_the_tests_need() {
    let readme = repo_file("README.md");
    let first_block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the README opens with a sh block");
    let commands: Vec<&str> = first_block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        ["cargo run --release -- serve", SETUP],
        "the README's two commands"
    );

    let ci = repo_file(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == SETUP),
        ".ci/run runs `{SETUP}` on a line of its own"
    );
    assert!(
        !ci.contains("apt-get") && !ci.contains("venv"),
        ".ci/run installs nothing itself: set-up belongs in {SETUP}"
    );

    let script = repo_file(SETUP);
    for (program, package) in PACKAGES {
        assert!(
            script
                .lines()
                .any(|l| l.trim() == format!("need {program} {package}")),
            "{SETUP} installs {package} when {program} is missing"
        );
    }
    assert!(script.contains("oneflow/test-venv") && script.contains("test-requirements.txt"));
    for sdk in ["openai", "anthropic"] {
        assert!(
            repo_file("scripts/test-requirements.txt")
                .lines()
                .any(|l| l.starts_with(&format!("{sdk}=="))),
            "the {sdk} SDK is pinned"
        );
    }
    assert!(
        repo_file("scripts/test-requirements.txt")
            .lines()
            .any(|l| l.starts_with("schemathesis==")),
        "schemathesis is pinned"
    );
}
