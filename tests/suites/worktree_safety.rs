//! flotilla's own git around isolated agents (issue 16): programs an agent writes into
//! the repository's config or attributes never run; delete keeps what a commit leaves
//! out (ignored files, big files, nested repositories) and says so; status is bounded
//! on big files; a rewritten `.git` file does not stop delete.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use serde_json::{Value, json};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn init_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("tracked.txt"), "original\n").unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "init"]);
}

fn isolated(name: &str, task: &str) -> Value {
    json!({"name": name, "task": task, "isolation": "worktree"})
}

/// What an agent working in the checkout (not isolated) can write into `.git`: every
/// program git may start from config or attributes, each leaving a marker in `marks`.
fn plant_programs(repo: &Path, marks: &Path) {
    let m = |name: &str| format!("touch {}/{name}; cat", marks.display());
    let touch = |name: &str| format!("touch {}/{name}", marks.display());
    let dotgit = repo.join(".git");
    let included = dotgit.join("included.cfg");
    std::fs::write(
        &included,
        format!("[filter \"inc\"]\n\tclean = {}\n", m("included-clean")),
    )
    .unwrap();
    let hooks = dotgit.join("evil-hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in ["post-checkout", "reference-transaction", "pre-commit"] {
        let file = hooks.join(hook);
        std::fs::write(&file, format!("#!/bin/sh\n{}\n", touch(hook))).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = [
        ("filter.evil.smudge", m("smudge")),
        ("filter.evil.clean", m("clean")),
        ("filter.proc.process", touch("process")),
        ("filter.proc.required", "true".into()),
        ("core.fsmonitor", format!("{}; false", touch("fsmonitor"))),
        ("diff.external", touch("diff-external")),
        ("diff.evil.textconv", m("textconv")),
        ("diff.evil.command", touch("diff-command")),
        ("merge.evil.driver", touch("merge-driver")),
        ("core.pager", touch("pager")),
        ("gpg.program", touch("gpg")),
        ("commit.gpgSign", "true".into()),
        ("core.sshCommand", touch("ssh")),
        ("core.hooksPath", hooks.display().to_string()),
        ("include.path", included.display().to_string()),
    ];
    for (key, value) in config {
        git(repo, &["config", key, &value]);
    }
    std::fs::create_dir_all(dotgit.join("info")).unwrap();
    std::fs::write(
        dotgit.join("info/attributes"),
        "*.txt filter=evil diff=evil merge=evil\n*.proc filter=proc\n*.inc filter=inc\n",
    )
    .unwrap();
    // A checked-in file the smudge filter would see on checkout.
    std::fs::write(repo.join("b.txt"), "smudge me\n").unwrap();
    std::fs::write(repo.join("c.proc"), "process me\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_an_agent_writes_into_git_config_never_run() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    let marks = fl.root().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // Checked in before the programs are planted (the test's own git must not run them).
    std::fs::write(fl.work().join("b.txt"), "smudge me\n").unwrap();
    std::fs::write(fl.work().join("c.proc"), "process me\n").unwrap();
    git(fl.work(), &["add", "-A"]);
    git(fl.work(), &["commit", "-q", "-m", "more"]);
    plant_programs(fl.work(), &marks);

    fl.mock.script(
        "[w]",
        vec![
            Step::tool(
                "write_file",
                json!({"path": "tracked.txt", "content": "changed\n"}),
            ),
            Step::tool("write_file", json!({"path": "new.txt", "content": "new\n"})),
            Step::tool("write_file", json!({"path": "d.proc", "content": "p\n"})),
            Step::tool("write_file", json!({"path": "e.inc", "content": "i\n"})),
            Step::text("done"),
        ],
    );
    // Checkout (smudge, process, post-checkout), status and output (clean, process,
    // fsmonitor, textconv, external diff), delete (commit: gpg, hooks).
    let created = fl.call("create_agent", isolated("w", "[w] write")).await;
    let dir = fl.agent_dir(&created);
    fl.wait_all(&["w"]).await;
    assert_eq!(
        std::fs::read_to_string(dir.join("b.txt")).unwrap(),
        "smudge me\n"
    );
    let status = fl.status("w").await;
    assert_eq!(status["diff_stat"]["files"], 4, "{status}");
    fl.output("w").await;
    let deleted = fl.call("delete_agent", json!({"agent": "w"})).await;
    assert_mentions(deleted["note"].as_str().unwrap(), &["committed"]);
    assert!(!dir.exists(), "{}", dir.display());
    assert_eq!(git(fl.work(), &["cat-file", "-p", "flotilla/w:new.txt"]), "new\n");
    let ran: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(ran.is_empty(), "flotilla's git ran agent-written programs: {ran:?}");
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
            Step::tool("write_file", json!({"path": ".gitignore", "content": "*\n"})),
            Step::tool("write_file", json!({"path": "work2.txt", "content": "precious\n"})),
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
    assert!(!dir.exists(), "the worktree is left behind: {}", dir.display());
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
    assert!(!files.contains("big.bin") && !files.contains("nested"), "{files}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_files_a_gitignore_star_hides() {
    let fl = Flotilla::start().await;
    init_repo(fl.work());
    fl.mock.script(
        "[s]",
        vec![
            Step::tool("write_file", json!({"path": ".gitignore", "content": "*\n"})),
            Step::tool("write_file", json!({"path": "work2.txt", "content": "precious\n"})),
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
    let kept_dir = std::fs::read_dir(&kept).unwrap().next().unwrap().unwrap().path();
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
            Step::tool("write_file", json!({"path": "mine.txt", "content": "mine\n"})),
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
