//! list_files and search_files: gitignore, globs, caps, symlinks.

use std::os::unix::fs::symlink;

use serde_json::json;

use super::Fixture;

fn tree() -> Fixture {
    let f = Fixture::new();
    f.write("src/main.rs", "fn main() {\n    helper();\n}\n");
    f.write("src/lib/util.rs", "pub fn helper() {}\n// TODO: tidy\n");
    f.write("README.md", "# Title\nfn in docs\n");
    f.write(".gitignore", "target/\n*.log\n");
    f.write(".ignore", "secret_notes.txt\n");
    f.write("target/debug/out.rs", "fn main() {} // built\n");
    f.write("build.log", "fn main log\n");
    f.write("secret_notes.txt", "fn hidden\n");
    f.write(".git/config", "fn git internals\n");
    f.write(".github/ci.yml", "fn: yaml\n");
    f
}

#[tokio::test]
async fn list_files_is_sorted_gitignore_aware_and_marks_dirs() {
    let f = tree();
    let out = f.ok("list_files", json!({})).await;
    let lines: Vec<&str> = out.content.lines().collect();
    assert_eq!(
        lines,
        [
            ".github/",
            ".github/ci.yml",
            ".gitignore",
            ".ignore",
            "README.md",
            "src/",
            "src/lib/",
            "src/lib/util.rs",
            "src/main.rs",
        ],
        "{}",
        out.content
    );
    assert!(out.files_read.is_empty());

    let out = f.ok("list_files", json!({"path": "src"})).await;
    assert_eq!(out.content, "src/lib/\nsrc/lib/util.rs\nsrc/main.rs");
}

#[tokio::test]
async fn list_files_patterns() {
    let f = tree();
    let out = f.ok("list_files", json!({"pattern": "*.rs"})).await;
    assert_eq!(out.content, "src/lib/util.rs\nsrc/main.rs");
    let out = f.ok("list_files", json!({"pattern": "**/*.rs"})).await;
    assert_eq!(out.content, "src/lib/util.rs\nsrc/main.rs");
    let out = f.ok("list_files", json!({"pattern": "src/*.rs"})).await;
    assert_eq!(out.content, "src/main.rs");
    let out = f
        .ok("list_files", json!({"path": "src", "pattern": "lib/*"}))
        .await;
    assert_eq!(out.content, "src/lib/util.rs");
    let out = f.ok("list_files", json!({"pattern": "*.{md,yml}"})).await;
    assert_eq!(out.content, ".github/ci.yml\nREADME.md");
    let out = f.ok("list_files", json!({"pattern": "*.py"})).await;
    assert!(
        out.content.contains("No entries match `*.py`"),
        "{}",
        out.content
    );
    let out = f.err("list_files", json!({"pattern": "a[b"})).await;
    assert!(out.content.contains("invalid glob"), "{}", out.content);
}

#[tokio::test]
async fn list_files_caps_entries_with_a_note() {
    let f = Fixture::new();
    for i in 0..1100 {
        f.write(&format!("d/f{i:04}.txt"), "");
    }
    let out = f.ok("list_files", json!({"path": "d"})).await;
    assert_eq!(
        out.content.lines().filter(|l| l.starts_with("d/")).count(),
        1000
    );
    assert!(
        out.content.contains("Showing 1,000 of 1,100 entries"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn list_files_errors_and_symlinks() {
    let f = tree();
    let out = f.err("list_files", json!({"path": "src/main.rs"})).await;
    assert!(out.content.contains("is a file"), "{}", out.content);
    let out = f.err("list_files", json!({"path": "nope"})).await;
    assert!(out.content.contains("does not exist"), "{}", out.content);
    let out = f.err("list_files", json!({"path": ".."})).await;
    assert!(
        out.content.contains("outside the work directory"),
        "{}",
        out.content
    );

    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("outside_file.txt"), "fn outside\n").unwrap();
    symlink(outside.path(), f.root().join("src/out_link")).unwrap();
    let out = f.ok("list_files", json!({"path": "src"})).await;
    assert!(out.content.contains("src/out_link -> "), "{}", out.content);
    assert!(!out.content.contains("outside_file"), "{}", out.content);
    let out = f.err("list_files", json!({"path": "src/out_link"})).await;
    assert!(
        out.content.contains("outside the work directory"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn search_files_finds_lines_gitignore_aware() {
    let f = tree();
    let out = f.ok("search_files", json!({"pattern": "fn \\w+\\("})).await;
    assert_eq!(
        out.content,
        "src/lib/util.rs:1: pub fn helper() {}\nsrc/main.rs:1: fn main() {"
    );
    assert_eq!(out.files_read, ["src/lib/util.rs", "src/main.rs"]);

    // Hidden files are searched, .git is not; ignored files are not.
    let out = f.ok("search_files", json!({"pattern": "^fn"})).await;
    assert!(
        out.content.contains(".github/ci.yml:1: fn: yaml"),
        "{}",
        out.content
    );
    assert!(
        out.content.contains("README.md:2: fn in docs"),
        "{}",
        out.content
    );
    for hidden in ["git internals", "built", "main log", "fn hidden"] {
        assert!(!out.content.contains(hidden), "{hidden}: {}", out.content);
    }
}

#[tokio::test]
async fn search_files_path_glob_and_no_match() {
    let f = tree();
    let out = f
        .ok(
            "search_files",
            json!({"pattern": "TODO", "path": "src/lib/util.rs"}),
        )
        .await;
    assert_eq!(out.content, "src/lib/util.rs:2: // TODO: tidy");
    let out = f
        .ok("search_files", json!({"pattern": "fn", "glob": "*.md"}))
        .await;
    assert_eq!(out.content, "README.md:2: fn in docs");
    let out = f
        .ok(
            "search_files",
            json!({"pattern": "fn", "path": "src", "glob": "lib/*.rs"}),
        )
        .await;
    assert_eq!(out.content, "src/lib/util.rs:1: pub fn helper() {}");
    let out = f.ok("search_files", json!({"pattern": "(?i)TITLE"})).await;
    assert_eq!(out.content, "README.md:1: # Title");
    let out = f
        .ok("search_files", json!({"pattern": "zzz_nothing"}))
        .await;
    assert!(
        out.content.starts_with("No matches for `zzz_nothing`"),
        "{}",
        out.content
    );
    assert!(!out.is_error);
    assert!(out.files_read.is_empty());
}

#[tokio::test]
async fn search_files_invalid_regex_reports_the_error() {
    let f = tree();
    let out = f.err("search_files", json!({"pattern": "fn main("})).await;
    assert!(
        out.content.contains("invalid regex `fn main(`"),
        "{}",
        out.content
    );
    assert!(out.content.contains("unclosed group"), "{}", out.content);
}

#[tokio::test]
async fn search_files_skips_binary_and_symlinks_out() {
    let f = tree();
    std::fs::write(f.root().join("blob.bin"), b"needle\0\x01\x02").unwrap();
    f.write("plain.txt", "needle here\n");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("o.txt"), "needle outside\n").unwrap();
    symlink(outside.path().join("o.txt"), f.root().join("file_link.txt")).unwrap();
    symlink(outside.path(), f.root().join("dir_link")).unwrap();
    let out = f.ok("search_files", json!({"pattern": "needle"})).await;
    assert_eq!(out.content, "plain.txt:1: needle here");
    let out = f
        .err(
            "search_files",
            json!({"pattern": "needle", "path": "dir_link"}),
        )
        .await;
    assert!(
        out.content.contains("outside the work directory"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn search_files_caps_matches_and_lines() {
    let f = Fixture::new();
    let body: String = (0..500).map(|i| format!("match {i}\n")).collect();
    f.write("many.txt", &body);
    f.write("wide.txt", &format!("match {}\n", "w".repeat(1000)));
    let out = f.ok("search_files", json!({"pattern": "match"})).await;
    let shown = out
        .content
        .lines()
        .filter(|l| l.contains(": match"))
        .count();
    assert_eq!(shown, 200, "{}", out.content);
    assert!(
        out.content
            .contains("Showing 200 of 501 matching lines in 2 files"),
        "{}",
        out.content
    );

    let out = f
        .ok(
            "search_files",
            json!({"pattern": "match", "glob": "wide.txt"}),
        )
        .await;
    assert!(
        out.content.contains("[line cut: 706 more chars]"),
        "{}",
        out.content
    );
}
