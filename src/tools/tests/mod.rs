//! Tool tests through the real seam, [`Tool::run`]: each tool's happy path, caps, the
//! jail, gitignore handling, and process-group cleanup for `run_command`.

mod api;
mod command;
mod fs;
mod search_list;

use std::path::Path;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Tool, ToolContext, ToolOutcome};

/// A temporary work directory (canonical) and a context for it.
pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub ctx: ToolContext,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        Self {
            _dir: dir,
            ctx: ToolContext {
                root,
                cancel: CancellationToken::new(),
                sandbox: Default::default(),
                agent: "test".into(),
                visible: Vec::new(),
            },
        }
    }

    pub fn root(&self) -> &Path {
        &self.ctx.root
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel)).unwrap()
    }

    /// Run the tool named `name`, as the worker does: parsed once, then run; a name
    /// that is no tool is an error outcome.
    pub async fn run(&self, name: &str, input: Value) -> ToolOutcome {
        match name.parse::<Tool>() {
            Ok(tool) => tool.run(input, &self.ctx).await,
            Err(unknown) => ToolOutcome::error(unknown.to_string()),
        }
    }

    /// Run and assert success.
    pub async fn ok(&self, name: &str, input: Value) -> ToolOutcome {
        let out = self.run(name, input).await;
        assert!(!out.is_error, "{name} failed: {}", out.content);
        out
    }

    /// Run and assert an error.
    pub async fn err(&self, name: &str, input: Value) -> ToolOutcome {
        let out = self.run(name, input).await;
        assert!(out.is_error, "{name} should have failed: {}", out.content);
        out
    }
}
