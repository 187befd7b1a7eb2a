//! The guides under `docs/` show configs users copy: every ```toml block in them must pass
//! `gatehouse check` as printed, and every Kubernetes manifest (```yaml block) must be valid
//! for Kubernetes' own schemas (kubernetes-validate from `.venv-ci`, installed by `.ci/setup`).

// Test code: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::require_component;

const GUIDES: &[&str] = &["docs/aspnetcore.md"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced blocks of `lang` in a Markdown text, with their line numbers; a block inside a
/// list item loses the indentation of its fence.
fn blocks(markdown: &str, lang: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut open: Option<(usize, usize, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None if trimmed.strip_prefix("```") == Some(lang) => {
                open = Some((n + 1, indent, String::new()));
            }
            Some((start, _, text)) if trimmed == "```" => {
                found.push((*start, std::mem::take(text)));
                open = None;
            }
            Some((_, indent, text)) => {
                let cut = line.len().min(*indent);
                text.push_str(line.get(cut..).unwrap_or(line));
                text.push('\n');
            }
            None => {}
        }
    }
    assert!(open.is_none(), "an unclosed ```{lang} block");
    found
}

fn guide(name: &str) -> String {
    std::fs::read_to_string(root().join(name)).unwrap()
}

#[test]
fn every_gatehouse_config_in_the_guides_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in GUIDES {
        let text = guide(name);
        assert!(
            !text.contains("AFFINITY_STATUS"),
            "{name}: a placeholder is left"
        );
        for (line, toml) in blocks(&text, "toml") {
            let path: PathBuf = dir.path().join(format!("block-{line}.toml"));
            std::fs::write(&path, &toml).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
                .args(["check", "--config"])
                .arg(&path)
                .env_remove("GATEHOUSE_CONFIG")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}:{line}: gatehouse check refused the block:\n{}\n{toml}",
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} toml blocks found");
}

#[test]
fn every_kubernetes_manifest_in_the_guides_is_valid() {
    let validator = root().join(".venv-ci/bin/kubernetes-validate");
    if !require_component(validator.exists(), "kubernetes-validate (.venv-ci)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in GUIDES {
        for (line, yaml) in blocks(&guide(name), "yaml") {
            let path = dir.path().join(format!("block-{line}.yaml"));
            std::fs::write(&path, &yaml).unwrap();
            let out = Command::new(&validator)
                .args(["--strict", "--kubernetes-version", "1.33.0"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}:{line}: not a valid manifest:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no yaml block found");
}

#[test]
fn blocks_are_found_also_inside_list_items() {
    let text = "x\n```toml\na = 1\n```\n- item\n\n  ```toml\n  b = 2\n  ```\n```yaml\nc: 3\n```\n";
    assert_eq!(
        blocks(text, "toml"),
        [(2, "a = 1\n".to_string()), (7, "b = 2\n".to_string())]
    );
    assert_eq!(blocks(text, "yaml"), [(10, "c: 3\n".to_string())]);
}
