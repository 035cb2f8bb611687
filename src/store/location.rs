//! Where a fleet's store lives: one fleet per project. By default a directory under
//! the user's data directory named after the server's working directory, so two
//! projects never share a fleet; `--data-dir` / `FLOTILLA_DATA_DIR` override it.

use std::path::{Path, PathBuf};

/// `<data dir>/flotilla/fleets/<last path component>-<hash of the full path>`.
pub fn default_dir(workdir: &Path) -> Option<PathBuf> {
    let base = dirs::data_dir()?.join("flotilla").join("fleets");
    Some(base.join(fleet_key(workdir)))
}

/// A readable, stable directory name for a work directory: its last component
/// (sanitised) and a 64-bit FNV-1a hash of the whole path.
pub fn fleet_key(workdir: &Path) -> String {
    let full = workdir.to_string_lossy();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in full.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let last: String = workdir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{last}-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_project_and_are_stable() {
        let a = fleet_key(Path::new("/home/me/work/app"));
        let b = fleet_key(Path::new("/home/me/other/app"));
        assert_ne!(a, b);
        assert!(a.starts_with("app-"), "{a}");
        assert_eq!(a, fleet_key(Path::new("/home/me/work/app")));
        // FNV-1a of the empty string is the offset basis: the hash is not std's
        // unstable DefaultHasher.
        assert_eq!(fleet_key(Path::new("")), "root-cbf29ce484222325");
        assert!(fleet_key(Path::new("/x/my app!")).starts_with("my_app_-"));
    }
}
