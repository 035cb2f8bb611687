//! `isolation: "worktree"` through the real binary: parallel builders on their own
//! branches, diff stats, a reviewer started from a builder's work, delete keeping the
//! branch, worktrees across a restart and after they vanish, the clear errors, and the
//! warning for writers sharing a directory.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

/// A repository in `dir` with one commit holding `shared.txt`.
fn init_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("shared.txt"), "original\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "init"]);
}

fn isolated(name: &str, task: &str) -> Value {
    json!({"name": name, "task": task, "isolation": "worktree"})
}

fn diff(files: u64, insertions: u64, deletions: u64) -> Value {
    json!({"files": files, "insertions": insertions, "deletions": deletions})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_builders_keep_their_own_branches_and_the_checkout_is_untouched() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    let head = git(fl.work(), &["rev-parse", "HEAD"]);
    fl.mock.script(
        "[a]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "shared.txt", "content": "from a\nline 2\n"}),
            ),
            // Untracked files count; ignored ones do not.
            Step::tool(
                "run_command",
                json!({"command": "echo extra > a-only.txt && mkdir -p target && echo x > target/junk"}),
            ),
            Step::text("built a"),
        ],
    );
    fl.mock.script(
        "[b]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "shared.txt", "content": "from b\n"}),
            ),
            Step::text("built b"),
        ],
    );
    let a = fl
        .call("create_agent", isolated("builder-a", "[a] build"))
        .await;
    let b = fl
        .call("create_agent", isolated("builder-b", "[b] build"))
        .await;
    assert_eq!(a["branch"], "flotilla/builder-a", "{a}");
    assert_eq!(b["branch"], "flotilla/builder-b", "{b}");
    let (dir_a, dir_b) = (fl.agent_dir(&a), fl.agent_dir(&b));
    assert_ne!(dir_a, dir_b);
    for dir in [&dir_a, &dir_b] {
        assert!(
            !dir.starts_with(fl.work()),
            "a worktree inside the user's checkout: {}",
            dir.display()
        );
        assert!(dir.starts_with(fl.root().join("data")), "{}", dir.display());
    }
    assert!(a.get("warning").is_none(), "{a}");
    fl.wait_all(&["builder-a", "builder-b"]).await;

    // The user's checkout is as it was.
    assert_eq!(
        std::fs::read_to_string(fl.work().join("shared.txt")).unwrap(),
        "original\n"
    );
    assert!(!fl.work().join("a-only.txt").exists());
    assert_eq!(git(fl.work(), &["status", "--porcelain"]), "");
    assert_eq!(git(fl.work(), &["rev-parse", "HEAD"]), head);
    // Each worktree holds its own version.
    assert_eq!(
        std::fs::read_to_string(dir_a.join("shared.txt")).unwrap(),
        "from a\nline 2\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir_b.join("shared.txt")).unwrap(),
        "from b\n"
    );

    // The agent is told where it works.
    let system = fl.mock.requests_for("[a]")[0].system_text();
    assert!(
        system.contains("git worktree of your own on branch flotilla/builder-a"),
        "{system}"
    );
    let status_a = fl.status("builder-a").await;
    assert_eq!(status_a["branch"], "flotilla/builder-a", "{status_a}");
    assert_eq!(status_a["worktree"], a["workdir"], "{status_a}");
    // shared.txt: 1 line out, 2 in; a-only.txt: 1 in; target/ is ignored.
    assert_eq!(status_a["diff_stat"], diff(2, 3, 1), "{status_a}");
    let status_b = fl.status("builder-b").await;
    assert_eq!(status_b["diff_stat"], diff(1, 1, 1), "{status_b}");
    let output_a = fl.output("builder-a").await;
    assert_eq!(output_a["text"], "built a");
    assert_eq!(output_a["branch"], "flotilla/builder-a", "{output_a}");
    assert_eq!(output_a["diff_stat"], diff(2, 3, 1), "{output_a}");

    // A reviewer started from builder-a's work (uncommitted) sees it.
    fl.mock.script(
        "[r]",
        vec![
            Step::tool("read_file", json!({"path": "shared.txt"})),
            Step::text("reviewed"),
        ],
    );
    let r = fl
        .call(
            "create_agent",
            json!({"name": "reviewer", "role": "reviewer", "task": "[r] review",
                   "isolation": "worktree", "base": "builder-a"}),
        )
        .await;
    fl.wait_all(&["reviewer"]).await;
    let seen = &fl.mock.requests_for("[r]")[1].tool_results()[0].content;
    assert!(seen.contains("from a"), "the reviewer read: {seen}");
    let dir_r = fl.agent_dir(&r);
    assert!(dir_r.join("a-only.txt").exists());
    // Nothing of its own yet: its base is builder-a's work.
    assert_eq!(fl.status("reviewer").await["diff_stat"], diff(0, 0, 0));
    // builder-a's own branch and index were not touched by that.
    assert_eq!(git(fl.work(), &["rev-parse", "flotilla/builder-a"]), head);

    // Delete: uncommitted work is committed to the branch, the worktree goes.
    for (name, dir) in [("builder-a", &dir_a), ("builder-b", &dir_b)] {
        let deleted = fl.call("delete_agent", json!({"agent": name})).await;
        assert_eq!(deleted["branch"], format!("flotilla/{name}"), "{deleted}");
        assert!(
            deleted["note"].as_str().unwrap().contains("committed"),
            "{deleted}"
        );
        assert!(!dir.exists(), "{} is still there", dir.display());
    }
    let show = |rev: &str| git(fl.work(), &["show", rev]);
    assert_eq!(show("flotilla/builder-a:shared.txt"), "from a\nline 2\n");
    assert_eq!(show("flotilla/builder-a:a-only.txt"), "extra\n");
    assert_eq!(show("flotilla/builder-b:shared.txt"), "from b\n");
    assert!(
        git(
            fl.work(),
            &["ls-tree", "-r", "--name-only", "flotilla/builder-a"]
        )
        .lines()
        .all(|f| !f.starts_with("target/"))
    );
    let stat = git(
        fl.work(),
        &["diff", "--shortstat", "main...flotilla/builder-a"],
    );
    assert!(
        stat.contains("2 files changed, 3 insertions(+), 1 deletion(-)"),
        "{stat}"
    );
    let worktrees = git(fl.work(), &["worktree", "list"]);
    assert!(
        !worktrees.contains("builder-a") && worktrees.contains("reviewer"),
        "{worktrees}"
    );
    // The user's checkout is still untouched.
    assert_eq!(git(fl.work(), &["status", "--porcelain"]), "");
    assert_eq!(git(fl.work(), &["rev-parse", "HEAD"]), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_repository_base_or_branch_are_clear_errors() {
    let fl = Flotilla::start().await;
    // Not a git repository (the server's directory is a plain one for now).
    let e = fl
        .call_err(
            "create_agent",
            json!({"name": "x", "isolation": "worktree"}),
        )
        .await;
    assert_mentions(&e, &["not in one", "git init", "isolation"]);
    init_repo(fl.work());
    let e = fl
        .call_err(
            "create_agent",
            json!({"name": "x", "isolation": "worktree", "base": "no-such-branch"}),
        )
        .await;
    assert_mentions(&e, &["no-such-branch", "neither an agent nor a git ref"]);
    git(fl.work(), &["branch", "flotilla/taken"]);
    let e = fl
        .call_err(
            "create_agent",
            json!({"name": "taken", "isolation": "worktree"}),
        )
        .await;
    assert_mentions(&e, &["flotilla/taken", "already exists", "git branch -D"]);
    let e = fl
        .call_err("create_agent", json!({"name": "x", "isolation": "branch"}))
        .await;
    assert_mentions(&e, &["isolation", "worktree", "branch"]);
    let e = fl
        .call_err("create_agent", json!({"name": "x", "base": "main"}))
        .await;
    assert_mentions(&e, &["base", "isolation"]);
    // An agent without a worktree is no base; an agent of the same plan neither.
    fl.call("create_agent", json!({"name": "plain"})).await;
    let e = fl
        .call_err(
            "create_agent",
            json!({"name": "x", "isolation": "worktree", "base": "plain"}),
        )
        .await;
    assert_mentions(&e, &["plain", "without a worktree"]);
    let e = fl
        .call_err(
            "create_agents",
            json!({"agents": [
                {"name": "p1", "isolation": "worktree"},
                {"name": "p2", "isolation": "worktree", "base": "p1"}]}),
        )
        .await;
    assert_mentions(&e, &["p1", "same call", "nothing was created"]);
    // All or nothing: p1's worktree and branch were undone.
    assert!(!git(fl.work(), &["branch", "--list"]).contains("flotilla/p1"));
    // None of the refusals left a branch or a worktree behind.
    let branches = git(fl.work(), &["branch", "--list"]);
    assert!(!branches.contains("flotilla/x"), "{branches}");
    assert_eq!(git(fl.work(), &["worktree", "list"]).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_sharing_a_directory_are_warned() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    let first = fl.call("create_agent", json!({"name": "w1"})).await;
    assert!(first.get("warning").is_none(), "{first}");
    // A read-only scout does not count.
    let scout = fl
        .call("create_agent", json!({"name": "s", "role": "scout"}))
        .await;
    assert!(scout.get("warning").is_none(), "{scout}");
    let second = fl
        .call("create_agent", json!({"name": "w2", "workdir": "sub"}))
        .await;
    let warning = second["warning"].as_str().unwrap_or_default();
    assert_mentions(warning, &["`w1`", "overwrite", "isolation: \"worktree\""]);
    // Isolated writers are not warned.
    let iso = fl
        .call(
            "create_agent",
            json!({"name": "w3", "isolation": "worktree"}),
        )
        .await;
    assert!(iso.get("warning").is_none(), "{iso}");
    // Nor after the other writer is gone.
    fl.call("delete_agent", json!({"agent": "w1"})).await;
    fl.call("delete_agent", json!({"agent": "w2"})).await;
    let again = fl.call("create_agent", json!({"name": "w4"})).await;
    assert!(again.get("warning").is_none(), "{again}");
    // In a plan, two writers in one directory are both warned.
    let plan = fl
        .call(
            "create_agents",
            json!({"agents": [{"name": "p1", "workdir": "other"}, {"name": "p2", "workdir": "other"}]}),
        )
        .await;
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("p1:") && warnings.contains("p2:"),
        "{plan}"
    );
    let isolated_plan = fl
        .call(
            "create_agents",
            json!({"agents": [{"name": "q1", "isolation": "worktree"}, {"name": "q2"}]}),
        )
        .await;
    assert_eq!(
        isolated_plan["agents"][0]["branch"], "flotilla/q1",
        "{isolated_plan}"
    );
    assert!(isolated_plan["agents"][1].get("branch").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worktrees_survive_a_restart_and_a_vanished_one_is_a_clear_error() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    fl.mock.script(
        "[keep]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "new.txt", "content": "kept\n"}),
            ),
            Step::text("wrote it"),
        ],
    );
    let created = fl
        .call("create_agent", isolated("keeper", "[keep] write"))
        .await;
    let dir = fl.agent_dir(&created);
    fl.wait_all(&["keeper"]).await;
    let fl = fl.restart().await;
    let status = fl.status("keeper").await;
    assert_eq!(status["branch"], "flotilla/keeper", "{status}");
    assert_eq!(status["diff_stat"], diff(1, 1, 0), "{status}");
    assert_eq!(
        std::fs::read_to_string(dir.join("new.txt")).unwrap(),
        "kept\n"
    );

    // Removed behind flotilla's back: its commands fail and say why.
    std::fs::remove_dir_all(&dir).unwrap();
    fl.command("keeper", "[gone] go on").await;
    let status = fl
        .status_until("keeper", "the command fails", |s| s["status"] == "failed")
        .await;
    assert_mentions(
        status["last_error"].as_str().unwrap(),
        &["worktree", "no longer exists", "flotilla/keeper"],
    );
    assert!(status["diff_stat"].is_null(), "{status}");
    assert_mentions(
        status["worktree_error"].as_str().unwrap(),
        &["no longer exists"],
    );
    assert!(
        fl.mock.requests_for("[gone]").is_empty(),
        "the model was called"
    );
    // Deleting it still works (and keeps the branch).
    let deleted = fl.call("delete_agent", json!({"agent": "keeper"})).await;
    assert_eq!(deleted["branch"], "flotilla/keeper", "{deleted}");
    assert!(git(fl.work(), &["branch", "--list"]).contains("flotilla/keeper"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_fleet_removes_its_worktrees_at_exit_and_keeps_the_branches() {
    let fl = Flotilla::builder().arg("--ephemeral").start().await;
    init_repo(fl.work());
    let work = fl.work().to_path_buf();
    let _keep = fl.root_handle();
    fl.mock.script(
        "[eph]",
        vec![
            Step::tool("write_file", json!({"path": "e.txt", "content": "e\n"})),
            Step::text("done"),
        ],
    );
    let created = fl
        .call("create_agent", isolated("eph", "[eph] write"))
        .await;
    let dir = fl.agent_dir(&created);
    assert!(
        !dir.starts_with(fl.root().join("data")),
        "{}",
        dir.display()
    );
    fl.wait_all(&["eph"]).await;
    assert!(
        fl.shutdown(Duration::from_secs(30)).await,
        "the server did not exit"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
    // Nor is the temp directory that held it.
    let tmp_root = dir.parent().and_then(Path::parent).unwrap();
    assert!(!tmp_root.exists(), "{} is still there", tmp_root.display());
    assert_eq!(git(&work, &["show", "flotilla/eph:e.txt"]), "e\n");
    assert_eq!(git(&work, &["worktree", "list"]).lines().count(), 1);
}

/// With 1,000 writers in one work directory, the shared-directory warning names at most
/// three of them and counts the rest, so `create_agent`'s result stays small (it once
/// named every other writer: O(n) bytes per create, O(n²) per fleet). A plan's own
/// writers are counted the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_directory_warning_stays_small_in_a_big_fleet() {
    let fl = Flotilla::start().await;
    let agents: Vec<Value> = (0..1000)
        .map(|i| json!({"name": format!("w{i:04}"), "tools": ["write_file"]}))
        .collect();
    let plan = fl.call("create_agents", json!({"agents": agents})).await;
    let last = plan["warnings"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .to_string();
    assert!(
        last.contains("`, 996 other agents can also write"),
        "{last}"
    );
    assert!(last.len() < 1024, "a plan warning of {} bytes", last.len());

    let one = fl_create_writer(&fl, "late").await;
    let bytes = one.to_string().len();
    assert!(
        bytes <= 1024,
        "create_agent's result is {bytes} bytes: {one}"
    );
    let warning = one["warning"].as_str().unwrap();
    let named = warning.matches('`').count() / 2;
    assert_eq!(named, 3, "names three co-writers: {warning}");
    assert!(
        warning.contains("and 997 other agents") || warning.contains("997 other agents"),
        "{warning}"
    );
    assert!(warning.contains("isolation: \"worktree\""), "{warning}");
}

async fn fl_create_writer(fl: &Flotilla, name: &str) -> Value {
    fl.call(
        "create_agent",
        json!({"name": name, "tools": ["write_file", "read_file"]}),
    )
    .await
}
