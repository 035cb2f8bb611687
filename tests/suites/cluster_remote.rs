//! Worktree agents through a git remote: nodes that share no filesystem (each has a
//! root of its own: work directory, data, worktrees) and one bare repository on this
//! machine's disk as the remote. Real flotilla processes on one throwaway PostgreSQL
//! database, driven by rmcp clients over Streamable HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::common::cluster::{create_first_writer, node, until_nodes};
use crate::common::git::git;
use crate::common::*;
use serde_json::json;

const LONG: Duration = Duration::from_secs(90);

/// `git --git-dir=<bare> ARGS`.
fn in_remote(bare: &Path, args: &[&str]) -> String {
    let dir = format!("--git-dir={}", bare.display());
    let mut all = vec![dir.as_str()];
    all.extend_from_slice(args);
    git(bare, &all)
}

/// A bare repository with one commit on `main` (README.md), and its path.
fn remote_with_a_commit(dir: &Path) -> std::path::PathBuf {
    let bare = dir.join("project.git");
    git(dir, &["init", "-q", "--bare", "-b", "main", "project.git"]);
    let seed = dir.join("seed");
    git(dir, &["clone", "-q", "project.git", "seed"]);
    std::fs::write(seed.join("README.md"), "project\n").unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "init"]);
    git(&seed, &["push", "-q", "origin", "HEAD:main"]);
    bare
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worktree_agents_on_nodes_without_a_shared_filesystem_meet_through_the_remote() {
    let db = postgres::database();
    let remote = tempfile::tempdir().unwrap();
    let bare = remote_with_a_commit(remote.path());
    // a: the user's checkout of the project, whose own remote (`origin`) is the bare
    // repository. b: no checkout at all, only `[cluster] remote` naming its URL.
    let root_a = Arc::new(tempfile::tempdir().unwrap());
    let root_b = Arc::new(tempfile::tempdir().unwrap());
    let url = bare.display().to_string();
    git(
        root_a.path(),
        &[
            "clone",
            "-q",
            &url,
            &root_a.path().join("work").display().to_string(),
        ],
    );
    let mock = MockModel::start().await;
    let a = node(&db, "a", &root_a, &mock, &[], "").await;
    let b = node(&db, "b", &root_b, &mock, &[], &format!("remote = {url:?}")).await;
    let on_a = a.client().await;
    let on_b = b.client().await;
    until_nodes(&on_a, &["a", "b"]).await;
    until_nodes(&on_b, &["a", "b"]).await;
    // a read its checkout's remote when it started: what the checkout's config says
    // later (an agent working there can write it) redirects nothing.
    let elsewhere = remote.path().join("elsewhere.git");
    git(remote.path(), &["init", "-q", "--bare", "elsewhere.git"]);
    git(
        &root_a.path().join("work"),
        &[
            "remote",
            "set-url",
            "origin",
            &elsewhere.display().to_string(),
        ],
    );

    // `first` runs on a and writes a file, which goes to the remote when it is done.
    create_first_writer(&mock, &on_a).await;
    assert_eq!(on_a.status("first").await["node"], "a");
    on_a.wait_all(&["first"]).await;
    assert_eq!(
        in_remote(&bare, &["show", "flotilla/first:feature.txt"]),
        "from a\n"
    );
    assert_eq!(in_remote(&elsewhere, &["for-each-ref"]), "");
    // The user's checkout is left alone: the branch is in the remote, not in it.
    assert_eq!(
        git(
            &root_a.path().join("work"),
            &["branch", "--list", "flotilla/*"]
        ),
        ""
    );

    // `second` starts on b from first's work, which b has only through the remote.
    mock.script(
        "[second]",
        vec![
            Step::tool("read_file", json!({"path": "feature.txt"})),
            Step::tool(
                "write_file",
                json!({"path": "second.txt", "content": "from b\n"}),
            ),
            // git works in the worktree, sandboxed: its clone is visible to it.
            Step::tool(
                "run_command",
                json!({"command": "git log --format=%s -1 && git status --short"}),
            ),
            Step::text("read and wrote"),
        ],
    );
    let second = on_b
        .call(
            "create_agent",
            json!({"name": "second", "task": "[second] go on", "isolation": "worktree", "base": "first"}),
        )
        .await;
    assert_eq!(second["branch"], "flotilla/second", "{second}");
    assert_eq!(on_b.status("second").await["node"], "b");
    let on_b_dir = second["workdir"].as_str().unwrap().to_string();
    assert!(
        Path::new(&on_b_dir).starts_with(root_b.path().canonicalize().unwrap()),
        "{on_b_dir}"
    );
    on_b.wait_all(&["second"]).await;
    let read = &mock.requests_for("[second]")[1];
    assert!(
        format!("{:?}", read.tool_results()).contains("from a"),
        "{:?}",
        read.tool_results()
    );
    let git_said = format!("{:?}", mock.requests_for("[second]")[3].tool_results());
    assert!(
        git_said.contains("flotilla: agent first, command 1") && git_said.contains("?? second.txt"),
        "{git_said}"
    );
    let files = in_remote(&bare, &["ls-tree", "--name-only", "flotilla/second"]);
    assert_eq!(files, "README.md\nfeature.txt\nsecond.txt\n");
    assert_eq!(
        on_a.event_kinds("second", &["pushed"]).await,
        ["pushed"],
        "pushed at the end of its command"
    );
    assert!(!root_a.path().join("data/worktrees/second").exists());

    // b dies in the middle of second's next command: a takes it over and makes its
    // worktree from the branch in the remote (what its last command left).
    mock.script(
        "[second]",
        vec![
            Step::tool("run_command", json!({"command": "echo more > more.txt"})),
            // b dies waiting for this answer.
            Step::text("never delivered").delay(Duration::from_secs(60)),
            Step::tool(
                "write_file",
                json!({"path": "after.txt", "content": "written on a\n"}),
            ),
            Step::text("finished on a"),
        ],
    );
    on_a.command("second", "carry on").await;
    mock.wait_requests("[second]", 6, LONG).await;
    b.kill().await;
    // b's disk goes with b: on one machine a could still reach b's worktree (and would
    // rightly keep working in it, as on a shared filesystem).
    std::fs::remove_dir_all(root_b.path().join("data")).unwrap();
    let waited = on_a.wait_all(&["second"]).await;
    assert_eq!(row_of(&waited, "second")["status"], "idle", "{waited}");
    let status = on_a.status("second").await;
    assert_eq!(status["node"], "a", "{status}");
    assert!(
        a.logged("took over the agent from node b"),
        "{}",
        a.log_tail(40)
    );
    let moved = on_a.event_kinds("second", &["relocated"]).await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    let here = root_a.path().join("data/worktrees/second");
    assert_eq!(
        std::fs::read_to_string(here.join("second.txt")).unwrap(),
        "from b\n",
        "the worktree made on a holds what b pushed"
    );
    // What b's command did before it died was pushed in progress, after the tool ran
    // and before its result was journaled: a finds it.
    assert_eq!(
        std::fs::read_to_string(here.join("more.txt")).unwrap(),
        "more\n"
    );
    assert_eq!(on_a.output("second").await["text"], "finished on a");
    // What a pushed after the resumed command, on top of what b pushed.
    let files = in_remote(&bare, &["ls-tree", "--name-only", "flotilla/second"]);
    assert_eq!(
        files,
        "README.md\nafter.txt\nfeature.txt\nmore.txt\nsecond.txt\n"
    );
    let log = in_remote(&bare, &["log", "--format=%s", "flotilla/second"]);
    assert!(
        log.contains("flotilla: agent second, command 2")
            && log.contains("flotilla: agent second, command 1"),
        "{log}"
    );

    // A delete (here through a, which runs both now) keeps the branch in the remote.
    assert!(!in_remote(&bare, &["for-each-ref", "refs/flotilla-wip/second"]).is_empty());
    let deleted = on_a.call("delete_agent", json!({"agent": "first"})).await;
    assert!(
        deleted.to_string().contains(&format!("pushed to {url}")),
        "{deleted}"
    );
    assert_eq!(
        in_remote(&bare, &["show", "flotilla/first:feature.txt"]),
        "from a\n"
    );
    let deleted = on_a.call("delete_agent", json!({"agent": "second"})).await;
    assert!(deleted.to_string().contains("pushed to"), "{deleted}");
    assert_eq!(
        in_remote(&bare, &["for-each-ref", "refs/flotilla-wip/"]),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_the_remote_has_already_is_refused_with_how_to_free_it() {
    let db = postgres::database();
    let remote = tempfile::tempdir().unwrap();
    let bare = remote_with_a_commit(remote.path());
    let url = bare.display().to_string();
    in_remote(&bare, &["branch", "flotilla/taken", "main"]);
    let root = Arc::new(tempfile::tempdir().unwrap());
    let mock = MockModel::start().await;
    let a = node(&db, "a", &root, &mock, &[], &format!("remote = {url:?}")).await;
    let on_a = a.client().await;
    until_nodes(&on_a, &["a"]).await;
    let e = on_a
        .call_err(
            "create_agent",
            json!({"name": "taken", "isolation": "worktree"}),
        )
        .await;
    assert!(
        e.contains("already exists in the remote") && e.contains("--delete flotilla/taken"),
        "{e}"
    );
    let e = on_a
        .call_err(
            "create_agent",
            json!({"name": "x", "isolation": "worktree", "base": "no-such-branch"}),
        )
        .await;
    assert!(e.contains("of the remote"), "{e}");
    // `_remote` is for the nodes, not for clients, in a plan too.
    let e = on_a
        .call_err(
            "create_agent",
            json!({"name": "y", "_remote": {"url": url}}),
        )
        .await;
    assert!(e.contains("_remote"), "{e}");
    let e = on_a
        .call_err(
            "create_agents",
            json!({"agents": [{"name": "z", "isolation": "worktree", "_remote": {"url": url, "prefix": "../../x"}}]}),
        )
        .await;
    assert!(e.contains("_remote"), "{e}");
}

/// A node that cannot make a moved agent's worktree (its branch is gone from the
/// remote) does not run it blind: the agent waits, and its status says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_branch_is_gone_waits_and_says_why() {
    let db = postgres::database();
    let remote = tempfile::tempdir().unwrap();
    let bare = remote_with_a_commit(remote.path());
    let url = bare.display().to_string();
    let config = format!("remote = {url:?}");
    let (root_a, root_b) = (
        Arc::new(tempfile::tempdir().unwrap()),
        Arc::new(tempfile::tempdir().unwrap()),
    );
    let mock = MockModel::start().await;
    let a = node(&db, "a", &root_a, &mock, &["--max-running", "2"], &config).await;
    let b = node(&db, "b", &root_b, &mock, &["--max-running", "16"], &config).await;
    let on_a = a.client().await;
    until_nodes(&on_a, &["a", "b"]).await;
    mock.script(
        "[lost]",
        vec![Step::text("never delivered").delay(Duration::from_secs(60))],
    );
    // b has more free run slots: the agent goes there.
    on_a.call(
        "create_agent",
        json!({"name": "lost", "task": "[lost] go", "isolation": "worktree"}),
    )
    .await;
    assert_eq!(on_a.status("lost").await["node"], "b");
    mock.wait_requests("[lost]", 1, LONG).await;
    in_remote(&bare, &["branch", "-D", "flotilla/lost"]);
    b.kill().await;
    std::fs::remove_dir_all(root_b.path().join("data")).unwrap();
    let said = eventually("a says why it cannot take the agent over", async || {
        let s = on_a.status("lost").await;
        let activity = s.to_string();
        activity
            .contains("could not make its worktree")
            .then_some(s)
    })
    .await;
    assert!(
        said.to_string().contains("has no branch flotilla/lost"),
        "{said}"
    );
    assert_eq!(said["node"], "b", "{said}");
    // It tries again a lease later, and says so all along: heartbeats in between do
    // not replace it with a promise that another node takes the agent over.
    let mut reads = 0;
    while a
        .log_tail(400)
        .matches("cannot take the agent over")
        .count()
        < 2
    {
        let now = on_a.status("lost").await.to_string();
        assert!(
            now.contains("could not make its worktree"),
            "read {reads}: {now}"
        );
        reads += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reads > 5,
        "the second try came too soon to tell: {reads} reads"
    );
}
