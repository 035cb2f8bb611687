//! The one spec → settings path: an agent created and the same agent restored from
//! its stored spec get the same settings, and old stores still load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::{CreateSpec, Registry};
use crate::config::Config;
use crate::config::Models;
use crate::fleet::{Fleet, FleetOptions};
use crate::prompts::Prompts;
use crate::sandbox::SandboxMode;
use crate::store::Store;
use crate::store::event::StoredSettings;
use crate::tools::Tool;

fn registry(dir: &Path) -> Registry {
    let (store, _) = Store::open(&dir.join("store")).unwrap();
    let env = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk-test".to_string());
    let models = Models::new(&Config::default(), &env).unwrap();
    let fleet = Fleet::new(std::sync::Arc::new(store), FleetOptions::default());
    Registry::new(
        models,
        Prompts::load(None).unwrap(),
        dir.to_path_buf(),
        fleet,
    )
}

fn spec() -> CreateSpec {
    CreateSpec {
        name: "scout-1".into(),
        role: Some("scout".into()),
        system_prompt: Some("Answer in French.".into()),
        tools: Some(vec![Tool::ReadFile, Tool::RunCommand]),
        max_steps: Some(7),
        max_cost_usd: Some(0.5),
        max_tokens: Some(9000),
        retries: Some(2),
        sandbox: Some(SandboxMode::ReadOnly),
        network: Some(true),
        ..CreateSpec::default()
    }
}

#[tokio::test]
async fn a_created_agent_and_its_restored_spec_resolve_to_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let registry = registry(&dir);
    let created = registry.prepare(spec(), dir.clone()).unwrap().settings;
    assert_eq!(created.sandbox.mode, SandboxMode::ReadOnly);
    assert!(created.system_prompt.contains("Answer in French."));
    let mut stored = created.stored();
    // What the store keeps survives its JSON, and resolves back to the same agent.
    stored = serde_json::from_str(&serde_json::to_string(&stored).unwrap()).unwrap();
    let restored = registry.resolve(stored, created.model.clone());
    assert_eq!(restored.stored(), created.stored());
    assert_eq!(restored.system_prompt, created.system_prompt);
    assert_eq!(restored.tool_specs.len(), created.tool_specs.len());
    assert_eq!(restored.max_output_tokens, created.max_output_tokens);
}

#[tokio::test]
async fn a_spec_with_a_worktree_names_it_in_the_prompt_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let registry = registry(&dir);
    let created = registry.prepare(spec(), dir.clone()).unwrap().settings;
    let mut spec = created.stored();
    spec.worktree = Some(crate::worktree::Worktree {
        path: dir.join("wt"),
        branch: "flotilla/scout-1".into(),
        admin_dir: dir.join(".git/worktrees/scout-1"),
        base_commit: "0".repeat(40),
        base: "HEAD".into(),
        remote: None,
        prefix: std::path::PathBuf::new(),
        stamp: None,
    });
    let with_worktree = registry.resolve(spec.clone(), created.model.clone());
    assert!(with_worktree.system_prompt.contains("flotilla/scout-1"));
    let again = registry.resolve(with_worktree.stored(), created.model.clone());
    assert_eq!(again.system_prompt, with_worktree.system_prompt);
}

#[tokio::test]
async fn a_spec_stored_before_sandboxes_restores_unconfined() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    // A `created` record's settings as stores before sandboxes, caps and plans kept them.
    let old: StoredSettings = serde_json::from_value(serde_json::json!({
        "name": "old",
        "role": null,
        "model": "anthropic:claude-sonnet-4-5",
        "extra_prompt": null,
        "tools": ["read_file", "run_command"],
        "workdir": dir.path(),
        "max_steps": 50,
    }))
    .unwrap();
    let model = registry.models().resolve(Some(&old.model)).unwrap();
    let settings = registry.resolve(old, model);
    assert_eq!(settings.sandbox.mode, SandboxMode::Off);
    assert!(settings.sandbox.network);
    assert_eq!(settings.retries, 0);
    assert!(settings.depends_on.is_empty());
    assert_eq!(settings.caps.max_cost_usd, None);
}
