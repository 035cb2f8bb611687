//! flotilla's own git around isolated agents (issue 16): programs an agent writes into
//! the repository's config or attributes never run; delete keeps what a commit leaves
//! out (ignored files, big files, nested repositories) and says so; status is bounded
//! on big files; a rewritten `.git` file does not stop delete.

use std::path::Path;

use crate::common::*;
use serde_json::{Value, json};

fn init_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("tracked.txt"), "original\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "init"]);
}

fn isolated(name: &str, task: &str) -> Value {
    json!({"name": name, "task": task, "isolation": "worktree"})
}

/// Everything git may start from config that an agent working in the checkout (not
/// isolated) can write into `.git`, one vector at a time: its name and config entries.
/// Each program leaves a marker named after it in `marks`.
fn vectors(repo: &Path, marks: &Path) -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let touch = |name: &str| format!("touch {}/{name}", marks.display());
    let filter = |name: &str| format!("touch {}/{name}; cat", marks.display());
    let dotgit = repo.join(".git");
    let included = dotgit.join("included.cfg");
    std::fs::write(
        &included,
        format!("[filter \"evil\"]\n\tclean = {}\n", filter("included")),
    )
    .unwrap();
    let hooks = dotgit.join("evil-hooks");
    for dir in [hooks.clone(), dotgit.join("hooks")] {
        std::fs::create_dir_all(&dir).unwrap();
        for hook in ["post-checkout", "reference-transaction", "pre-commit"] {
            let file = dir.join(hook);
            std::fs::write(&file, format!("#!/bin/sh\n{}\n", touch("hook"))).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    vec![
        ("smudge", vec![("filter.evil.smudge", filter("smudge"))]),
        ("clean", vec![("filter.evil.clean", filter("clean"))]),
        (
            "process",
            vec![
                ("filter.evil.process", touch("process")),
                ("filter.evil.required", "true".into()),
            ],
        ),
        (
            "fsmonitor",
            vec![("core.fsmonitor", format!("{}; false", touch("fsmonitor")))],
        ),
        (
            "diff.external",
            vec![("diff.external", touch("diff.external"))],
        ),
        ("textconv", vec![("diff.evil.textconv", filter("textconv"))]),
        (
            "diff.command",
            vec![("diff.evil.command", touch("diff.command"))],
        ),
        (
            "merge.driver",
            vec![("merge.evil.driver", touch("merge.driver"))],
        ),
        ("pager", vec![("core.pager", touch("pager"))]),
        (
            "gpg",
            vec![
                ("gpg.program", touch("gpg")),
                ("commit.gpgSign", "true".into()),
            ],
        ),
        ("ssh", vec![("core.sshCommand", touch("ssh"))]),
        (
            "hooksPath",
            vec![("core.hooksPath", hooks.display().to_string())],
        ),
        // Hooks in .git/hooks are always there; this vector adds no config.
        ("hooks", vec![]),
        (
            "include",
            vec![("include.path", included.display().to_string())],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_an_agent_writes_into_git_config_never_run() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    let marks = fl.root().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // Checked in before anything is planted (the test's own git must not run them).
    std::fs::write(fl.work().join("b.txt"), "smudge me\n").unwrap();
    git(fl.work(), &["add", "-A"]);
    git(fl.work(), &["commit", "-q", "-m", "more"]);
    let dotgit = fl.work().join(".git");
    std::fs::create_dir_all(dotgit.join("info")).unwrap();
    std::fs::write(
        dotgit.join("info/attributes"),
        "* filter=evil diff=evil merge=evil\n",
    )
    .unwrap();
    let mut ran = Vec::new();
    for (n, (vector, config)) in vectors(fl.work(), &marks).into_iter().enumerate() {
        for (key, value) in &config {
            git(fl.work(), &["config", key, value]);
        }
        let key = format!("[v{n}]");
        fl.mock.script(
            &key,
            vec![
                Step::tool(
                    "write_file",
                    json!({"path": "tracked.txt", "content": "changed\n"}),
                ),
                Step::tool("write_file", json!({"path": "new.txt", "content": "new\n"})),
                Step::text("done"),
            ],
        );
        // Checkout (smudge, process, post-checkout), status and output (clean,
        // fsmonitor, textconv, external diff), delete (commit: gpg, hooks).
        let name = format!("v{n}");
        let created = fl
            .call("create_agent", isolated(&name, &format!("{key} write")))
            .await;
        let dir = fl.agent_dir(&created);
        fl.wait_all(&[&name]).await;
        assert_eq!(
            std::fs::read_to_string(dir.join("b.txt")).unwrap(),
            "smudge me\n"
        );
        let status = fl.status(&name).await;
        assert_eq!(status["diff_stat"]["files"], 2, "{vector}: {status}");
        fl.output(&name).await;
        let deleted = fl.call("delete_agent", json!({"agent": name})).await;
        assert_mentions(deleted["note"].as_str().unwrap(), &["committed"]);
        let branch = format!("flotilla/{name}:new.txt");
        assert_eq!(git(fl.work(), &["cat-file", "-p", &branch]), "new\n");
        for (key, _) in &config {
            git(fl.work(), &["config", "--unset-all", key]);
        }
        for e in std::fs::read_dir(&marks).unwrap() {
            let e = e.unwrap();
            ran.push(format!("{vector}: {}", e.file_name().to_string_lossy()));
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    assert!(
        ran.is_empty(),
        "flotilla's git ran agent-written programs: {ran:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_ignored_big_and_nested_work_and_says_where() {
    let fl = Flotilla::builder()
        .config(&format!("{DEFAULT_CONFIG}[worktrees]\nmax_file_mib = 1\n"))
        .start()
        .await;
    init_repo(fl.work());
    fl.mock.script(
        "[k]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": ".gitignore", "content": "*\n"}),
            ),
            Step::tool(
                "write_file",
                json!({"path": "work2.txt", "content": "precious\n"}),
            ),
            Step::tool(
                "run_command",
                json!({"command": "mkdir nested && cd nested && git init -q && echo n > n.txt"}),
            ),
            Step::text("done"),
        ],
    );
    let created = fl.call("create_agent", isolated("k", "[k] write")).await;
    let dir = fl.agent_dir(&created);
    fl.wait_all(&["k"]).await;
    // Not ignored, over the 1 MiB limit: neither counted nor committed.
    std::fs::write(dir.join(".gitignore"), "ignored/\n").unwrap();
    std::fs::create_dir_all(dir.join("ignored")).unwrap();
    std::fs::write(dir.join("ignored/build.out"), "built\n").unwrap();
    let big = std::fs::File::create(dir.join("big.bin")).unwrap();
    big.set_len(3 << 20).unwrap();
    drop(big);
    let status = fl.status("k").await;
    // .gitignore and work2.txt; not big.bin, not the nested repository.
    assert_eq!(status["diff_stat"]["files"], 2, "{status}");

    let deleted = fl.call("delete_agent", json!({"agent": "k"})).await;
    let note = deleted["note"].as_str().unwrap();
    assert_mentions(note, &["committed", "moved to", "big.bin", "max_file_mib"]);
    assert!(
        !dir.exists(),
        "the worktree is left behind: {}",
        dir.display()
    );
    let kept = fl.root().join("data").join("worktrees").join("kept");
    let kept_dir = std::fs::read_dir(&kept)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(note.contains(&kept_dir.display().to_string()), "{note}");
    assert_eq!(
        std::fs::read_to_string(kept_dir.join("ignored/build.out")).unwrap(),
        "built\n"
    );
    assert_eq!(
        std::fs::read_to_string(kept_dir.join("nested/n.txt")).unwrap(),
        "n\n"
    );
    assert_eq!(
        std::fs::metadata(kept_dir.join("big.bin")).unwrap().len(),
        3 << 20
    );
    let files = git(fl.work(), &["ls-tree", "-r", "--name-only", "flotilla/k"]);
    assert!(files.contains("work2.txt"), "{files}");
    assert!(
        !files.contains("big.bin") && !files.contains("nested"),
        "{files}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_files_a_gitignore_star_hides() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    fl.mock.script(
        "[s]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": ".gitignore", "content": "*\n"}),
            ),
            Step::tool(
                "write_file",
                json!({"path": "work2.txt", "content": "precious\n"}),
            ),
            Step::text("done"),
        ],
    );
    let created = fl.call("create_agent", isolated("s", "[s] write")).await;
    let dir = fl.agent_dir(&created);
    fl.wait_all(&["s"]).await;
    let deleted = fl.call("delete_agent", json!({"agent": "s"})).await;
    let note = deleted["note"].as_str().unwrap();
    assert_mentions(note, &["moved to", "work2.txt"]);
    assert!(!dir.exists());
    let kept = fl.root().join("data").join("worktrees").join("kept");
    let kept_dir = std::fs::read_dir(&kept)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(kept_dir.join("work2.txt")).unwrap(),
        "precious\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_git_file_does_not_stop_delete() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    fl.mock.script(
        "[g]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "mine.txt", "content": "mine\n"}),
            ),
            Step::tool(
                "write_file",
                json!({"path": ".git", "content": "gitdir: /nowhere/at/all\n"}),
            ),
            Step::text("done"),
        ],
    );
    let created = fl.call("create_agent", isolated("g", "[g] write")).await;
    let dir = fl.agent_dir(&created);
    fl.wait_all(&["g"]).await;
    assert_eq!(
        std::fs::read_to_string(dir.join(".git")).unwrap(),
        "gitdir: /nowhere/at/all\n",
        "the agent could not rewrite its .git file"
    );
    let deleted = fl.call("delete_agent", json!({"agent": "g"})).await;
    let note = deleted["note"].as_str().unwrap();
    assert!(!note.contains("could not be removed"), "{note}");
    assert!(!dir.exists(), "the worktree is left behind: {note}");
    assert_eq!(git(fl.work(), &["show", "flotilla/g:mine.txt"]), "mine\n");
    assert_eq!(git(fl.work(), &["worktree", "list"]).lines().count(), 1);
}
