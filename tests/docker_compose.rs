//! The docker compose deployment, checked without pulling images: the file is valid for
//! `docker compose config`, every service has a healthcheck and starts only once what it needs
//! is healthy, the workers' healthcheck command really tells a live worker from a dead one (run
//! against a real grid), and the README's secrets recipe makes files the image's user can read.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::procs::wait_for;
use crate::support::watchman_grid::WatchedGrid;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `docker compose` (v2) or `docker-compose` (v1), whichever runs here.
fn compose_command() -> Option<Command> {
    let v2 = Command::new("docker").args(["compose", "version"]).output();
    if v2.is_ok_and(|out| out.status.success()) {
        let mut command = Command::new("docker");
        command.arg("compose");
        return Some(command);
    }
    let v1 = Command::new("docker-compose").arg("version").output();
    v1.is_ok_and(|out| out.status.success())
        .then(|| Command::new("docker-compose"))
}

/// YAML text as JSON, through python3's yaml module (the test crate has no YAML parser).
fn yaml_to_json(yaml: &str) -> Option<serde_json::Value> {
    use std::io::Write;
    let mut python = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .ok()?;
    let out = python.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The compose file as the tool resolves it (anchors merged), or as python reads it when no
/// compose tool is installed; None when neither can read it here.
fn resolved_compose(scratch: &Path) -> Option<serde_json::Value> {
    std::fs::copy(
        Path::new(REPO).join("docker-compose.yml"),
        scratch.join("docker-compose.yml"),
    )
    .expect("copy the compose file");
    std::fs::create_dir_all(scratch.join("secrets")).expect("secrets dir");
    for secret in ["gridwatch_token", "redis_password"] {
        std::fs::write(scratch.join("secrets").join(secret), "not-a-real-secret\n")
            .expect("write a stand-in secret");
    }
    let yaml = match compose_command() {
        Some(mut compose) => {
            let out = compose
                .arg("config")
                .current_dir(scratch)
                .output()
                .expect("run compose config");
            assert!(
                out.status.success(),
                "compose config refuses the file: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).expect("UTF-8")
        }
        None => {
            crate::support::skip_without(
                "docker compose is not installed: the file is read with python3's yaml only",
            );
            std::fs::read_to_string(scratch.join("docker-compose.yml")).expect("read")
        }
    };
    let parsed = yaml_to_json(&yaml);
    if parsed.is_none() {
        crate::support::skip_without("python3 with its yaml module is not installed");
    }
    parsed
}

/// A healthcheck's command as the shell line the container runs (`$$` is compose's `$`).
fn shell_line(test: &serde_json::Value) -> String {
    let words: Vec<&str> = test
        .as_array()
        .expect("healthcheck test is a list")
        .iter()
        .map(|word| word.as_str().expect("a word"))
        .collect();
    let line = match words.first() {
        Some(&"CMD-SHELL") => words[1..].join(" "),
        Some(&"CMD") => words[1..].join(" "),
        _ => panic!("unexpected healthcheck form: {words:?}"),
    };
    line.replace("$$", "$")
}

#[test]
fn every_service_has_a_healthcheck_and_waits_for_healthy_dependencies() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let Some(compose) = resolved_compose(scratch.path()) else {
        return;
    };
    let services = compose["services"].as_object().expect("a services map");
    let names: Vec<&String> = services.keys().collect();
    for expected in [
        "redis",
        "master",
        "collector",
        "agent1",
        "worker1",
        "worker3",
    ] {
        assert!(services.contains_key(expected), "{expected} in {names:?}");
    }
    for (name, service) in services {
        let test = &service["healthcheck"]["test"];
        assert!(test.is_array(), "{name} has a healthcheck: {service}");
        if name.starts_with("worker") {
            assert!(
                shell_line(test).contains("gridwatch health --worker \"$WORKER_ID\""),
                "{name}'s check asks about its own worker: {test}"
            );
        }
        if name == "redis" {
            continue;
        }
        let needs = service["depends_on"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} names what it waits for: {service}"));
        for (dependency, how) in needs {
            assert_eq!(
                how["condition"], "service_healthy",
                "{name} waits until {dependency} is healthy"
            );
            assert!(
                services[dependency]["healthcheck"]["test"].is_array(),
                "{dependency}, which {name} waits for, has a healthcheck"
            );
        }
    }
}

/// Runs a healthcheck's shell line against the test grid's master; true when it exits 0.
fn healthcheck_passes(line: &str, worker_id: &str, master: &str) -> bool {
    let (host, port) = master.rsplit_once(':').expect("HOST:PORT");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gridwatch"))
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .args(["-c", line])
        .env("PATH", path)
        .env("WORKER_ID", worker_id)
        .env("MASTER_HOST", host)
        .env("MASTER_PORT", port)
        .env_remove("GRIDWATCH_MASTER")
        .output()
        .expect("run the healthcheck")
        .status
        .success()
}

#[test]
fn the_worker_healthcheck_passes_for_a_live_worker_and_fails_once_it_is_killed() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let Some(compose) = resolved_compose(scratch.path()) else {
        return;
    };
    let line = shell_line(&compose["services"]["worker1"]["healthcheck"]["test"]);
    let mut grid = WatchedGrid::start(&["w1", "w2"], "3s");
    grid.wait_alive(2);
    assert!(
        healthcheck_passes(&line, "w1", &grid.addr),
        "`{line}` passes for a live worker"
    );
    assert!(
        !healthcheck_passes(&line, "no-such-worker", &grid.addr),
        "`{line}` fails for a worker nobody reports"
    );
    grid.worker("w1").kill9();
    wait_for(
        "the healthcheck to fail for the killed worker",
        Duration::from_secs(60),
        || (!healthcheck_passes(&line, "w1", &grid.addr)).then_some(()),
    );
    assert!(
        healthcheck_passes(&line, "w2", &grid.addr),
        "the other worker stays healthy"
    );
}

/// The uid the image's user gets (`useradd --uid N`).
fn image_uid() -> u32 {
    let dockerfile =
        std::fs::read_to_string(Path::new(REPO).join("Dockerfile")).expect("read Dockerfile");
    let after = dockerfile
        .split("--uid ")
        .nth(1)
        .expect("the Dockerfile fixes the user's uid");
    after
        .split_whitespace()
        .next()
        .and_then(|uid| uid.parse().ok())
        .expect("a numeric uid")
}

/// The README's compose secrets recipe: the shell block after the line naming it.
fn readme_recipe() -> String {
    let readme =
        std::fs::read_to_string(Path::new(REPO).join("README.md")).expect("read README.md");
    let start = readme
        .find("# the compose secrets")
        .expect("the README has the compose secrets recipe");
    let block = &readme[start..];
    let end = block.find("```").expect("the recipe's block ends");
    block[..end].to_string()
}

#[test]
fn the_readme_recipe_makes_secrets_the_image_user_can_read() {
    let uid = image_uid();
    let recipe = readme_recipe();
    assert!(
        recipe.contains(&format!("chown {uid} ")),
        "the recipe gives the files to the image's uid {uid}: {recipe}"
    );
    if !nix::unistd::geteuid().is_root() {
        crate::support::skip_without("not root: the recipe's chown was checked, not run");
        return;
    }
    let scratch = tempfile::tempdir().expect("temp dir");
    // The recipe as a user types it, minus `sudo` (the test already runs as root) and the start.
    let script: String = recipe
        .lines()
        .filter(|line| !line.trim_start().starts_with("docker compose"))
        .map(|line| line.replace("sudo ", ""))
        .collect::<Vec<_>>()
        .join("\n");
    let out = Command::new("sh")
        .args(["-ec", &script])
        .current_dir(scratch.path())
        .output()
        .expect("run the recipe");
    assert!(
        out.status.success(),
        "the recipe runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["gridwatch_token", "redis_password"] {
        let path = scratch.path().join("secrets").join(secret);
        let meta = std::fs::metadata(&path).expect("the recipe made the secret");
        assert_eq!(meta.uid(), uid, "{secret} belongs to the image's user");
        assert_ne!(meta.mode() & 0o400, 0, "{secret} is readable by its owner");
        assert_eq!(
            meta.mode() & 0o077,
            0,
            "{secret} is readable by no one else"
        );
        let text = std::fs::read_to_string(&path).expect("read the secret");
        assert!(text.trim().len() >= 32, "{secret} holds a real secret");
    }
}
