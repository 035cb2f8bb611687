//! read_file, write_file, edit_file, and the jail as the tools apply it.

use std::os::unix::fs::symlink;

use serde_json::json;

use super::Fixture;

#[tokio::test]
async fn read_file_numbers_lines_and_records_the_read() {
    let f = Fixture::new();
    f.write("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n");
    let out = f.ok("read_file", json!({"path": "src/main.rs"})).await;
    assert_eq!(
        out.content,
        "     1\tfn main() {\n     2\t    println!(\"hi\");\n     3\t}\n"
    );
    assert_eq!(out.files_read, ["src/main.rs"]);
    assert!(out.files_written.is_empty());
}

#[tokio::test]
async fn read_file_offset_limit_and_next_offset() {
    let f = Fixture::new();
    let body: String = (1..=50).map(|i| format!("line {i}\n")).collect();
    f.write("f.txt", &body);
    let out = f
        .ok(
            "read_file",
            json!({"path": "f.txt", "offset": 10, "limit": 5}),
        )
        .await;
    assert!(
        out.content.starts_with("    10\tline 10\n"),
        "{}",
        out.content
    );
    assert!(out.content.contains("    14\tline 14\n"));
    assert!(!out.content.contains("line 15\n"));
    assert!(
        out.content.contains("Showing lines 10-14 of 50"),
        "{}",
        out.content
    );
    assert!(
        out.content.contains("use offset=15 to continue"),
        "{}",
        out.content
    );

    let out = f
        .ok("read_file", json!({"path": "f.txt", "offset": 48}))
        .await;
    assert!(out.content.contains("    50\tline 50\n"));
    assert!(out.content.contains("end of file"), "{}", out.content);

    let out = f
        .err("read_file", json!({"path": "f.txt", "offset": 51}))
        .await;
    assert!(out.content.contains("past the end"), "{}", out.content);
    assert!(out.content.contains("50 lines"), "{}", out.content);
}

#[tokio::test]
async fn read_file_caps_lines_and_characters() {
    let f = Fixture::new();
    // 3000 short lines: default limit of 2000 lines applies.
    let body: String = (1..=3000).map(|i| format!("{i}\n")).collect();
    f.write("many.txt", &body);
    let out = f.ok("read_file", json!({"path": "many.txt"})).await;
    assert!(out.content.contains("  2000\t2000\n"));
    assert!(!out.content.contains("  2001\t"));
    assert!(
        out.content.contains("use offset=2001"),
        "{}",
        &out.content[out.content.len() - 200..]
    );

    // Long lines are cut at 2000 chars, with a note.
    f.write("long.txt", &format!("{}\nshort\n", "x".repeat(5000)));
    let out = f.ok("read_file", json!({"path": "long.txt"})).await;
    assert!(out.content.contains(&format!(
        "{}… [line cut: 3,000 more chars]",
        "x".repeat(2000)
    )));
    assert!(out.content.contains("     2\tshort"));

    // 100 lines of 1000 chars: the ~30,000-char budget stops early and says where to go on.
    let body: String = (0..100)
        .map(|_| format!("{}\n", "y".repeat(1000)))
        .collect();
    f.write("wide.txt", &body);
    let out = f.ok("read_file", json!({"path": "wide.txt"})).await;
    assert!(
        out.content.chars().count() <= 30_000,
        "{}",
        out.content.len()
    );
    assert!(
        out.content.contains("of 100"),
        "{}",
        &out.content[out.content.len() - 200..]
    );
    assert!(out.content.contains("use offset="));
}

#[tokio::test]
async fn read_file_refuses_binary_dirs_and_missing_files() {
    let f = Fixture::new();
    std::fs::write(f.root().join("bin.dat"), b"abc\0def").unwrap();
    let out = f.err("read_file", json!({"path": "bin.dat"})).await;
    assert!(out.content.contains("binary"), "{}", out.content);
    assert!(out.files_read.is_empty());

    std::fs::create_dir(f.root().join("dir")).unwrap();
    let out = f.err("read_file", json!({"path": "dir"})).await;
    assert!(out.content.contains("is a directory"), "{}", out.content);

    let out = f.err("read_file", json!({"path": "nope.txt"})).await;
    assert!(out.content.contains("does not exist"), "{}", out.content);

    f.write("empty.txt", "");
    let out = f.ok("read_file", json!({"path": "empty.txt"})).await;
    assert!(out.content.contains("empty"), "{}", out.content);
}

#[tokio::test]
async fn write_file_creates_parents_and_reports() {
    let f = Fixture::new();
    let out = f
        .ok(
            "write_file",
            json!({"path": "a/b/c.txt", "content": "one\ntwo\n"}),
        )
        .await;
    assert_eq!(out.content, "Created `a/b/c.txt` (8 bytes, 2 lines).");
    assert_eq!(out.files_written, ["a/b/c.txt"]);
    assert_eq!(f.read("a/b/c.txt"), "one\ntwo\n");

    let out = f
        .ok("write_file", json!({"path": "./a/b/c.txt", "content": "x"}))
        .await;
    assert_eq!(out.content, "Overwrote `a/b/c.txt` (1 byte, 1 line).");
    assert_eq!(f.read("a/b/c.txt"), "x");

    let out = f
        .err("write_file", json!({"path": "a", "content": "x"}))
        .await;
    assert!(out.content.contains("is a directory"), "{}", out.content);
    assert!(out.files_written.is_empty());
}

#[tokio::test]
async fn edit_file_replaces_exactly_one_match() {
    let f = Fixture::new();
    f.write("m.rs", "fn a() {}\nfn b() {}\nfn c() {}\n");
    let out = f
        .ok(
            "edit_file",
            json!({"path": "m.rs", "old_text": "fn b() {}", "new_text": "fn b() { todo!() }"}),
        )
        .await;
    assert_eq!(f.read("m.rs"), "fn a() {}\nfn b() { todo!() }\nfn c() {}\n");
    assert!(out.content.starts_with("Edited `m.rs`"), "{}", out.content);
    assert!(out.content.contains("at line 2"), "{}", out.content);
    assert!(
        out.content.contains("     2\tfn b() { todo!() }"),
        "{}",
        out.content
    );
    assert_eq!(out.files_written, ["m.rs"]);
    assert_eq!(out.files_read, ["m.rs"]);
}

#[tokio::test]
async fn edit_file_zero_matches_says_so_and_changes_nothing() {
    let f = Fixture::new();
    f.write("m.rs", "fn a() {}\n");
    let out = f
        .err(
            "edit_file",
            json!({"path": "m.rs", "old_text": "fn  a()", "new_text": "x"}),
        )
        .await;
    assert!(out.content.contains("not found"), "{}", out.content);
    assert!(out.content.contains("whitespace"), "{}", out.content);
    assert!(out.files_written.is_empty());
    assert_eq!(f.read("m.rs"), "fn a() {}\n");
}

#[tokio::test]
async fn edit_file_multiple_matches_says_how_many() {
    let f = Fixture::new();
    f.write("m.rs", "x = 1;\ny = 2;\nx = 1;\n");
    let out = f
        .err(
            "edit_file",
            json!({"path": "m.rs", "old_text": "x = 1;", "new_text": "x = 3;"}),
        )
        .await;
    assert!(out.content.contains("matches 2 places"), "{}", out.content);
    assert!(out.content.contains("lines 1, 3"), "{}", out.content);
    assert!(
        out.content.contains("more surrounding lines"),
        "{}",
        out.content
    );
    assert_eq!(f.read("m.rs"), "x = 1;\ny = 2;\nx = 1;\n");

    // Overlapping occurrences count as ambiguous too.
    f.write("o.txt", "aaa");
    let out = f
        .err(
            "edit_file",
            json!({"path": "o.txt", "old_text": "aa", "new_text": "b"}),
        )
        .await;
    assert!(out.content.contains("matches 2 places"), "{}", out.content);
}

#[tokio::test]
async fn edit_file_edge_cases() {
    let f = Fixture::new();
    f.write("crlf.txt", "one\r\ntwo\r\nthree\r\n");
    f.ok(
        "edit_file",
        json!({"path": "crlf.txt", "old_text": "one\ntwo", "new_text": "1\n2"}),
    )
    .await;
    assert_eq!(f.read("crlf.txt"), "1\r\n2\r\nthree\r\n");

    let out = f
        .err(
            "edit_file",
            json!({"path": "crlf.txt", "old_text": "", "new_text": "x"}),
        )
        .await;
    assert!(out.content.contains("empty"), "{}", out.content);
    let out = f
        .err(
            "edit_file",
            json!({"path": "crlf.txt", "old_text": "1", "new_text": "1"}),
        )
        .await;
    assert!(out.content.contains("identical"), "{}", out.content);
    let out = f
        .err(
            "edit_file",
            json!({"path": "missing.txt", "old_text": "a", "new_text": "b"}),
        )
        .await;
    assert!(out.content.contains("does not exist"), "{}", out.content);

    // Invalid UTF-8: read shows it lossily with a note; edit refuses rather than corrupt it.
    std::fs::write(f.root().join("latin1.txt"), b"caf\xe9\nline two\n").unwrap();
    let out = f.ok("read_file", json!({"path": "latin1.txt"})).await;
    assert!(out.content.contains("caf\u{FFFD}"), "{}", out.content);
    assert!(out.content.contains("not valid UTF-8"), "{}", out.content);
    let out = f
        .err(
            "edit_file",
            json!({"path": "latin1.txt", "old_text": "two", "new_text": "2"}),
        )
        .await;
    assert!(out.content.contains("not valid UTF-8"), "{}", out.content);
    assert_eq!(
        std::fs::read(f.root().join("latin1.txt")).unwrap(),
        b"caf\xe9\nline two\n"
    );

    // Deleting text with an empty new_text is allowed.
    f.write("d.txt", "keep\ndrop\nkeep2\n");
    f.ok(
        "edit_file",
        json!({"path": "d.txt", "old_text": "drop\n", "new_text": ""}),
    )
    .await;
    assert_eq!(f.read("d.txt"), "keep\nkeep2\n");
}

#[tokio::test]
async fn jail_refuses_escapes_for_every_file_tool() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "top secret\n").unwrap();
    symlink(&secret, f.root().join("link_to_secret")).unwrap();
    symlink(outside.path(), f.root().join("outdir")).unwrap();
    // A file next to the work dir, reachable with `..`.
    let sibling = f.root().parent().unwrap().join(format!(
        "{}-sibling.txt",
        f.root().file_name().unwrap().to_string_lossy()
    ));
    let sibling_rel = format!("../{}", sibling.file_name().unwrap().to_string_lossy());

    let reads = [
        json!({"path": "../x"}),
        json!({"path": "/etc/passwd"}),
        json!({"path": "link_to_secret"}),
        json!({"path": "outdir/secret.txt"}),
        json!({"path": secret.to_str().unwrap()}),
    ];
    for input in reads {
        let out = f.err("read_file", input.clone()).await;
        assert!(
            !out.content.contains("top secret"),
            "{input}: {}",
            out.content
        );
        assert!(
            out.content.contains("outside the work directory"),
            "{input}: {}",
            out.content
        );
        assert!(out.files_read.is_empty());
    }

    let writes = [
        json!({"path": sibling_rel, "content": "pwned"}),
        json!({"path": "outdir/new.txt", "content": "pwned"}),
        json!({"path": "outdir/deep/new.txt", "content": "pwned"}),
        json!({"path": "link_to_secret", "content": "pwned"}),
        json!({"path": "/tmp/flotilla-jail-test.txt", "content": "pwned"}),
    ];
    for input in writes {
        let out = f.err("write_file", input.clone()).await;
        assert!(
            out.content.contains("outside the work directory"),
            "{input}: {}",
            out.content
        );
        assert!(out.files_written.is_empty());
    }
    assert!(!sibling.exists());
    assert!(!outside.path().join("new.txt").exists());
    assert!(!outside.path().join("deep").exists());
    assert!(!std::path::Path::new("/tmp/flotilla-jail-test.txt").exists());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret\n");

    let out = f
        .err(
            "edit_file",
            json!({"path": "outdir/secret.txt", "old_text": "top", "new_text": "no"}),
        )
        .await;
    assert!(
        out.content.contains("outside the work directory"),
        "{}",
        out.content
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret\n");

    // Absolute paths inside the work directory are fine.
    let inside = f.root().join("in.txt");
    let out = f
        .ok(
            "write_file",
            json!({"path": inside.to_str().unwrap(), "content": "ok"}),
        )
        .await;
    assert_eq!(out.files_written, ["in.txt"]);
}
