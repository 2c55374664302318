//! The README is the users' contract: its Metrics reference must say what the code emits.

use acceptq::metric::{Kind, SCHEMA};

use crate::support::{conf, repo, tests};

tests![
    metrics_reference_matches_the_schema,
    readme_quotes_every_conf_snippet_verbatim,
    layout_names_every_module
];

/// Every source file of the crate and of the end-to-end tests is named in the README's Layout
/// paragraph (`name.rs`), so a reader finds where each thing lives.
fn layout_names_every_module() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("\nLayout:").expect("a Layout paragraph");
    let layout = &readme[start..];
    let layout = &layout[..layout.find("\n\n").unwrap_or(layout.len())];
    let mut missing = Vec::new();
    for dir in [
        "src",
        "src/source",
        "src/encode",
        "tests/integration",
        "tests/integration/agents",
    ] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let plumbing = ["mod.rs", "lib.rs", "main.rs"].contains(&name.as_str());
            let named = layout.contains(&format!("`{name}`"))
                || layout.contains(&format!("`{dir}/{name}`"));
            if name.ends_with(".rs") && !plumbing && !named {
                missing.push(format!("{dir}/{name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the README's Layout paragraph does not name {missing:?}"
    );
}

/// The backticked first cells of table rows in the README's section for `measurement`.
fn rows_of(readme: &str, measurement: &str) -> Vec<(String, String)> {
    let start = readme
        .find(&format!("### `{measurement}`"))
        .unwrap_or_else(|| panic!("no section for {measurement}"));
    let section = &readme[start + 1..];
    let end = section.find("\n### ").unwrap_or(section.len());
    section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |"))
        .map(|(name, rest)| {
            (
                name.to_string(),
                rest.split('|').next().unwrap_or("").trim().to_string(),
            )
        })
        .collect()
}

fn metrics_reference_matches_the_schema() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for m in &SCHEMA {
        let rows = rows_of(&readme, m.name);
        let mut documented: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        for t in m.tags {
            assert!(
                documented.contains(&t.name),
                "tag {}.{} not in README",
                m.name,
                t.name
            );
        }
        for f in m.fields {
            let kind = match f.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
                Kind::Delta => "delta",
            };
            let want = format!("{}, {kind}", if f.float { "float" } else { "int" });
            let row = rows.iter().find(|(n, _)| n == f.name);
            assert_eq!(
                row.map(|(_, t)| t.as_str()),
                Some(want.as_str()),
                "field {}.{} in README",
                m.name,
                f.name
            );
        }
        // Nothing documented that the code does not emit.
        documented.retain(|n| {
            !m.tags.iter().any(|t| t.name == *n) && !m.fields.iter().any(|f| f.name == *n)
        });
        assert!(
            documented.is_empty(),
            "README documents {documented:?} under {}, the code has no such name",
            m.name
        );
    }
}

/// The bodies of the README's fenced blocks.
fn fenced_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(body) => blocks.push(body),
                None => current = Some(String::new()),
            }
        } else if let Some(body) = &mut current {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks
}

fn readme_quotes_every_conf_snippet_verbatim() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let has_quick_start = readme.lines().any(|l| {
        l.starts_with('#')
            && l.trim_start_matches('#')
                .trim()
                .eq_ignore_ascii_case("quick start")
    });
    assert!(has_quick_start, "README.md has no \"Quick start\" heading");
    let blocks = fenced_blocks(&readme);
    for name in ["telegraf.conf", "telegraf-exec.conf", "collectd.conf"] {
        let content = conf(name);
        assert!(
            blocks.contains(&content),
            "README.md must quote conf/{name} whole, as the body of a fenced block:\n{content}"
        );
    }
    // Dashboards and rules are too long to quote: named, and present.
    for name in [
        "grafana/acceptq-prometheus.json",
        "grafana/acceptq-influxdb.json",
        "prometheus/acceptq.rules.yml",
        "prometheus/acceptq.rules.test.yml",
        "collectd-threshold.conf",
    ] {
        assert!(!conf(name).is_empty(), "conf/{name} is empty");
        assert!(
            readme.contains(&format!("`conf/{name}`")),
            "README.md must name conf/{name}"
        );
    }
}
