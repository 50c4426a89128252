//! The Prometheus files in deploy/prometheus: promtool accepts the scrape config and the rules,
//! the rules fire on the series that should trip them (promtool's rule unit tests), and every
//! metric they name is one a real master exports.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `promtool ARGS`; None when promtool is missing (the test then skips, or fails under
/// scripts/test.sh).
fn promtool(args: &[&str]) -> Option<String> {
    let Ok(out) = Command::new("promtool").args(args).output() else {
        crate::support::skip_without("promtool is not installed (Debian package prometheus)");
        return None;
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    Some(said)
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_rules_and_the_rules_fire_as_meant() {
    let config = repo("deploy/prometheus/prometheus.yml");
    let rules = repo("deploy/prometheus/gridwatch-rules.yml");
    let tests = repo("tests/fixtures/prometheus/rules_test.yml");
    let Some(said) = promtool(&["check", "config", config.to_str().expect("utf-8")]) else {
        return;
    };
    assert!(said.contains("1 rule files found"), "{said}");
    let said = promtool(&["check", "rules", rules.to_str().expect("utf-8")]).expect("promtool");
    assert!(said.contains("5 rules found"), "{said}");
    let said = promtool(&["test", "rules", tests.to_str().expect("utf-8")]).expect("promtool");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn every_metric_the_rules_name_is_exported_by_a_master() {
    let rules = std::fs::read_to_string(repo("deploy/prometheus/gridwatch-rules.yml"))
        .expect("read the rules");
    let named: std::collections::BTreeSet<String> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .flat_map(|expr| {
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("gridwatch_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(named.len() >= 5, "{named:?}");
    let grid = crate::support::grid::Grid::start(&[]);
    let reply = crate::support::http::request_with(&grid.http_addr(), "GET", "/metrics", &[], "");
    let text = reply.text();
    for name in &named {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "the rules use {name}, which /metrics does not export"
        );
    }
}
