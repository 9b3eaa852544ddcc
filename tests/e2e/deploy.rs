//! The deployment files, checked by the tools that read them: compose
//! validates `deploy/compose.yaml` (and refuses a broken copy, so the check
//! can fail), promtool the Prometheus configuration and its rules,
//! systemd-analyze the unit and its exposure, and the Dockerfile's final
//! stage is read for what the image must be. Where a Docker daemon runs,
//! `.ci/run` also builds the image and waits for it to be healthy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn compose(file: &Path, args: &[&str]) -> Output {
    let (program, first) = crate::tools::compose();
    Command::new(program)
        .args(first)
        .arg("-f")
        .arg(file)
        .args(args)
        // The file's defaults, not this machine's, decide what it resolves to.
        .env_remove("POSTGRES_PASSWORD")
        .env_remove("ONEFLOW_ADMIN_KEY")
        .env_remove("GRAFANA_ADMIN_PASSWORD")
        .output()
        .unwrap()
}

#[test]
fn the_compose_file_validates_with_two_nodes_on_postgres_and_redis() {
    let file = repo("deploy/compose.yaml");
    let o = compose(&file, &["config", "-q"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = compose(&file, &["config", "--services"]);
    assert!(o.status.success(), "{}", text(&o));
    let services: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = [
        "postgres",
        "redis",
        "migrate",
        "oneflow-1",
        "oneflow-2",
        "lb",
        "prometheus",
        "grafana",
    ]
    .map(String::from)
    .into();
    assert_eq!(services, want);
    // Both nodes on the shared store and Redis, each with its own id.
    let o = compose(&file, &["config"]);
    assert!(o.status.success(), "{}", text(&o));
    let resolved = String::from_utf8_lossy(&o.stdout);
    // Lines of the resolved file holding both words (compose versions
    // quote scalars differently).
    let lines_with = |a: &str, b: &str| {
        resolved
            .lines()
            .filter(|l| l.contains(a) && l.contains(b))
            .count()
    };
    assert_eq!(
        lines_with("ONEFLOW__STORAGE__NODE_ID", "oneflow-1"),
        1,
        "{resolved}"
    );
    assert_eq!(
        lines_with("ONEFLOW__STORAGE__NODE_ID", "oneflow-2"),
        1,
        "{resolved}"
    );
    assert_eq!(
        lines_with("ONEFLOW__COORDINATION__REDIS_URL", "redis://redis:6379/0"),
        2,
        "{resolved}"
    );
    assert_eq!(
        lines_with("ONEFLOW__COORDINATION__REQUIRED", "true"),
        2,
        "{resolved}"
    );
    assert_eq!(
        lines_with("ONEFLOW__STORAGE__BACKEND", "postgres"),
        3,
        "two nodes and the migration on PostgreSQL:\n{resolved}"
    );

    // A broken copy (a misspelt key, in the same directory so relative
    // paths resolve) is refused: the check above could have failed.
    let original = std::fs::read_to_string(&file).unwrap();
    let broken = original.replacen("    depends_on:\n", "    depends_onn:\n", 1);
    assert_ne!(broken, original);
    let copy = repo("deploy/.compose-broken-test.yaml");
    std::fs::write(&copy, broken).unwrap();
    let o = compose(&copy, &["config", "-q"]);
    std::fs::remove_file(&copy).unwrap();
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn promtool_accepts_the_prometheus_configuration_and_its_rules() {
    let o = Command::new(crate::tools::promtool())
        .args(["check", "config"])
        .arg(repo("deploy/prometheus/prometheus.yml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let scraped = std::fs::read_to_string(repo("deploy/prometheus/prometheus.yml")).unwrap();
    assert!(scraped.contains("\"oneflow-1:8080\", \"oneflow-2:8080\""));
}

/// The unit, with its binary path pointed at the real binary (verify
/// checks that the command exists), must draw no warning at all, and its
/// exposure must stay at most 2.0 of 10 (systemd counts the threshold in
/// tenths).
#[test]
fn systemd_accepts_the_hardened_unit() {
    let unit = std::fs::read_to_string(repo("deploy/systemd/oneflow.service")).unwrap();
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=oneflow",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == setting), "{setting} missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oneflow.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/oneflow", env!("CARGO_BIN_EXE_oneflow")),
    )
    .unwrap();
    let analyze = crate::tools::systemd_analyze();
    let o = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{}", text(&o));
    let o = Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // The same check finds a misspelt setting.
    std::fs::write(
        &path,
        format!(
            "{}\n[Service]\nProtectSystem=maybe\n",
            std::fs::read_to_string(&path).unwrap()
        ),
    )
    .unwrap();
    let o = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!o.stderr.is_empty(), "{}", text(&o));
}

/// What the image must be, read from the Dockerfile's last stage: built in
/// a stage of its own, no root, a health check run by the binary itself,
/// and nothing copied in but the binary and its data directory.
#[test]
fn the_dockerfile_builds_a_small_non_root_image_with_a_health_check() {
    let file = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    // Instructions, with continuation lines joined.
    let joined = file.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let stages: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "a build stage and a final one");
    let last = &lines[*stages.last().unwrap()..];
    assert!(
        last[0].contains("distroless"),
        "no shell in the image: {}",
        last[0]
    );
    let user = last
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the final stage");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    let health = last
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    assert!(
        health.contains("\"health\"") && health.contains(":8080"),
        "{health}"
    );
    for copy in last.iter().filter(|l| l.starts_with("COPY ")) {
        assert!(copy.contains("--from=build"), "only built files: {copy}");
    }
    assert!(
        last.iter()
            .any(|l| l.starts_with("ENTRYPOINT [\"/usr/local/bin/oneflow\"]"))
    );
    let ignored = std::fs::read_to_string(repo(".dockerignore")).unwrap();
    for dir in ["target/", ".git/", "data/"] {
        assert!(ignored.lines().any(|l| l == dir), "{dir} in .dockerignore");
    }
}
