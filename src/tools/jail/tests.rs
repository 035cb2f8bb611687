//! The jail on its own: lexical refusals, symlinks in and out, dangling and looping
//! links, creation, and a swap race that must never lead outside.

use std::os::unix::fs::symlink;
use std::path::PathBuf;

use super::*;

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap().join("root");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    (dir, root)
}

fn open(root: &Path, path: &str, access: Access) -> Result<Opened, JailError> {
    Jail::new(root).unwrap().open(path, access)
}

#[test]
fn plain_relative_paths_resolve_inside() {
    let (_d, root) = setup();
    let o = open(&root, "src/main.rs", Access::Read).unwrap();
    assert_eq!(o.rel, "src/main.rs");
    assert_eq!(read_all(&o.fd).unwrap(), b"fn main() {}\n");
    assert_eq!(o.parents.len(), 2);
    assert_eq!(open(&root, ".", Access::Read).unwrap().rel, ".");
    assert!(open(&root, "", Access::Read).unwrap().is_dir());
    assert_eq!(
        open(&root, "./src/../src/main.rs", Access::Read)
            .unwrap()
            .rel,
        "src/main.rs"
    );
    let abs = root.join("src/main.rs");
    assert_eq!(
        open(&root, abs.to_str().unwrap(), Access::Read)
            .unwrap()
            .rel,
        "src/main.rs"
    );
    let e = open(&root, "src/nope.rs", Access::Read).unwrap_err();
    assert!(
        matches!(&e, JailError::Missing { rel, .. } if rel == "src/nope.rs"),
        "{e}"
    );
}

#[test]
fn create_makes_parents_and_says_so() {
    let (_d, root) = setup();
    let o = open(&root, "new/dir/file.txt", Access::Create).unwrap();
    assert!(o.created);
    assert_eq!(o.rel, "new/dir/file.txt");
    write_all(&o.fd, b"hello").unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("new/dir/file.txt")).unwrap(),
        "hello"
    );
    let again = open(&root, "new/dir/file.txt", Access::Create).unwrap();
    assert!(!again.created);
    let e = open(&root, "new", Access::Create).unwrap_err();
    assert!(matches!(e, JailError::IsADirectory { .. }), "{e}");
    let e = open(&root, "src/main.rs/x", Access::Create).unwrap_err();
    assert!(matches!(e, JailError::NotADirectory { .. }), "{e}");
}

#[test]
fn dot_dot_escapes_are_refused() {
    let (_d, root) = setup();
    for p in ["../x", "..", "src/../../x", "a/b/../../../etc/passwd"] {
        let e = open(&root, p, Access::Read).unwrap_err();
        assert!(matches!(e, JailError::Escapes { .. }), "{p}: {e}");
        assert!(e.to_string().contains("relative to the work directory"));
    }
    let e = open(&root, "/etc/passwd", Access::Read).unwrap_err();
    assert!(matches!(e, JailError::AbsoluteOutside { .. }), "{e}");
    let sneaky = format!("{}/../etc", root.display());
    assert!(open(&root, &sneaky, Access::Read).is_err());
}

#[test]
fn symlinks_out_of_root_are_refused_without_revealing_the_target() {
    let (d, root) = setup();
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), "s").unwrap();
    symlink(outside.join("secret"), root.join("file_link")).unwrap();
    symlink(&outside, root.join("dir_link")).unwrap();
    symlink("../outside/secret", root.join("rel_link")).unwrap();
    symlink("/nonexistent/elsewhere", root.join("missing_outside")).unwrap();
    for p in [
        "file_link",
        "dir_link",
        "dir_link/secret",
        "dir_link/new/file",
        "rel_link",
        "missing_outside",
    ] {
        for access in [Access::Read, Access::ReadWrite, Access::Create] {
            let e = open(&root, p, access).unwrap_err();
            assert!(matches!(e, JailError::SymlinkOutside { .. }), "{p}: {e}");
            let text = e.to_string();
            assert!(
                !text.contains("outside/") && !text.contains("nonexistent"),
                "{text}"
            );
        }
    }
    assert!(!outside.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("secret")).unwrap(),
        "s"
    );
}

#[test]
fn symlinks_inside_root_resolve_to_their_target() {
    let (_d, root) = setup();
    symlink(root.join("src"), root.join("code")).unwrap();
    symlink("src/main.rs", root.join("main")).unwrap();
    symlink(".", root.join("here")).unwrap();
    let o = open(&root, "code/main.rs", Access::Read).unwrap();
    assert_eq!(o.rel, "src/main.rs");
    assert_eq!(
        open(&root, "main", Access::Read).unwrap().rel,
        "src/main.rs"
    );
    assert_eq!(open(&root, "here/src", Access::Read).unwrap().rel, "src");
    assert_eq!(open(&root, "here", Access::Read).unwrap().rel, ".");
    assert_eq!(
        Jail::new(&root).unwrap().target_of("main").unwrap(),
        "src/main.rs"
    );
}

#[test]
fn dangling_and_looping_symlinks_are_refused() {
    let (_d, root) = setup();
    symlink("nothing-here", root.join("dangling")).unwrap();
    symlink("loop_b", root.join("loop_a")).unwrap();
    symlink("loop_a", root.join("loop_b")).unwrap();
    for p in ["dangling", "dangling/x", "loop_a"] {
        for access in [Access::Read, Access::Create] {
            let e = open(&root, p, access).unwrap_err();
            assert!(matches!(e, JailError::Unresolvable { .. }), "{p}: {e}");
        }
    }
    assert!(
        !root.join("nothing-here").exists(),
        "followed a dangling link"
    );
}

#[test]
fn fifos_are_refused_without_blocking() {
    let (_d, root) = setup();
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let o = open(&root, "pipe", Access::Read).unwrap();
    let e = o.require_regular().unwrap_err();
    assert!(e.to_string().contains("FIFO"), "{e}");
    // With a reader (`o`) the FIFO opens for writing, but it is still not a file.
    let w = open(&root, "pipe", Access::Create).unwrap();
    assert!(w.require_regular().is_err());
    drop((o, w));
    let e = open(&root, "pipe", Access::Create).unwrap_err();
    assert!(matches!(e, JailError::NotRegular { .. }), "{e}");
}

/// Another thread swaps `dir` between a real directory and a symlink to the outside
/// while the jail reads and writes through it: nothing outside is ever touched.
#[test]
fn a_symlink_swap_race_never_leads_outside() {
    let (d, root) = setup();
    let outside = d.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("f.txt"), "SECRET").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (root, outside, stop) = (root.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let (real, link, tmp) = (root.join("real"), root.join("dir"), root.join("tmp"));
            std::fs::create_dir_all(&real).unwrap();
            std::fs::write(real.join("f.txt"), "inside").unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::fs::remove_file(&tmp);
                let _ = symlink(&outside, &tmp);
                let _ = std::fs::rename(&tmp, &link);
                let _ = std::fs::remove_file(&tmp);
                let _ = symlink("real", &tmp);
                let _ = std::fs::rename(&tmp, &link);
            }
        })
    };
    let jail = Jail::new(&root).unwrap();
    let (mut ok, mut refused) = (0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        match jail.open("dir/f.txt", Access::Read) {
            Ok(o) => {
                assert_eq!(read_all(&o.fd).unwrap(), b"inside");
                ok += 1;
            }
            Err(_) => refused += 1,
        }
        if let Ok(o) = jail.open("dir/f.txt", Access::Create) {
            write_all(&o.fd, b"inside").unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.join("f.txt")).unwrap(),
        "SECRET"
    );
    assert!(
        ok + refused > 10,
        "the loop barely ran: {ok} ok, {refused} refused"
    );
}
