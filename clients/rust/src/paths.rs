//! Where the daemon listens: the same rules as tokend's CLI and SDK (`resolvePaths` in
//! the repository's src/protocol/paths.ts), and the check that the socket is the user's
//! own before anything is sent to it (`untrustedSocket` in src/protocol/local-trust.ts).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The platform rules that differ: macOS keeps data under `~/Library`, everything else
/// follows the XDG base directories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Platform {
    Darwin,
    Xdg,
}

impl Platform {
    pub(crate) fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Darwin
        } else {
            Platform::Xdg
        }
    }
}

/// The daemon's socket as the CLI finds it, from this process's environment:
/// `TOKEND_SOCKET`; else `$TOKEND_HOME/run/tokend.sock`; else
/// `$XDG_RUNTIME_DIR/tokend/tokend.sock`; else `DATA/run/tokend.sock`, where DATA is
/// `TOKEND_DATA_DIR`, or `$XDG_DATA_HOME/tokend` (default `~/.local/share/tokend`; on macOS
/// `~/Library/Application Support/tokend`). An empty variable counts as unset; a relative
/// path is taken from the current directory.
pub fn default_socket_path() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    resolve_socket(&|k| std::env::var_os(k), &cwd, Platform::current(), &home_dir)
}

/// `os.homedir()`: `$HOME`, else the user's entry in the password database.
fn home_dir() -> PathBuf {
    #[allow(deprecated)] // its Unix behaviour is exactly os.homedir()'s
    std::env::home_dir().unwrap_or_else(|| PathBuf::from("/"))
}

/// [`default_socket_path`] over an explicit environment (tests run every rule through it).
pub(crate) fn resolve_socket(
    env: &dyn Fn(&str) -> Option<OsString>,
    cwd: &Path,
    platform: Platform,
    homedir: &dyn Fn() -> PathBuf,
) -> PathBuf {
    // JavaScript's `env.X || …`: an empty value is no value.
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(socket) = var("TOKEND_SOCKET") {
        return resolve(cwd, &socket);
    }
    if let Some(home) = var("TOKEND_HOME") {
        return resolve(cwd, &resolve(cwd, &home).join("run").join("tokend.sock"));
    }
    if let Some(runtime) = var("XDG_RUNTIME_DIR") {
        return resolve(cwd, &runtime.join("tokend").join("tokend.sock"));
    }
    let data = match var("TOKEND_DATA_DIR") {
        Some(d) => d,
        None => {
            let home = var("HOME").unwrap_or_else(homedir);
            match platform {
                Platform::Darwin => home.join("Library").join("Application Support").join("tokend"),
                Platform::Xdg => var("XDG_DATA_HOME").unwrap_or_else(|| home.join(".local").join("share")).join("tokend"),
            }
        }
    };
    resolve(cwd, &resolve(cwd, &data).join("run").join("tokend.sock"))
}

/// node's `path.resolve(cwd, p)`: absolute, `.` and `..` taken out lexically (not through
/// symbolic links), no trailing slash.
fn resolve(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out
}

extern "C" {
    // In the C library std links anyway: no dependency for one call. uid_t is 32 bits on
    // Linux and macOS.
    fn getuid() -> u32;
}

fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail (POSIX).
    unsafe { getuid() }
}

/// Why `socket` must not be talked to (it or its folder belongs to another user, or the
/// folder is writable by others: another user may be the one listening), or `None` when it
/// looks right or is not there (connecting then fails as "not running").
pub(crate) fn untrusted_socket(socket: &Path) -> Option<String> {
    untrusted_socket_for(socket, my_uid())
}

fn untrusted_socket_for(socket: &Path, uid: u32) -> Option<String> {
    let parent = |p: &Path| p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let mut st = fs::symlink_metadata(socket).ok()?;
    let mut real = socket.to_path_buf();
    if st.file_type().is_symlink() {
        let dir = parent(socket);
        if let Some(why) = untrusted_folder(&dir, &fs::metadata(&dir).ok()?, uid) {
            return Some(why);
        }
        real = fs::canonicalize(socket).ok()?;
        st = fs::metadata(&real).ok()?;
    }
    let dir = parent(&real);
    if let Some(why) = untrusted_folder(&dir, &fs::metadata(&dir).ok()?, uid) {
        return Some(why);
    }
    if st.uid() != uid {
        return Some(format!(
            "the socket {} belongs to uid {}, not to you (uid {}): another user is listening there; nothing was sent to it",
            real.display(),
            st.uid(),
            uid
        ));
    }
    None
}

fn untrusted_folder(dir: &Path, st: &fs::Metadata, uid: u32) -> Option<String> {
    if st.uid() != uid {
        return Some(format!(
            "the socket's folder {} belongs to uid {}, not to you (uid {}): another user may be listening there; nothing was sent to it",
            dir.display(),
            st.uid(),
            uid
        ));
    }
    let mode = st.mode();
    if mode & 0o022 != 0 {
        return Some(format!(
            "the socket's folder {} can be written by others (mode {:03o}): another user may be listening there; nothing was sent to it (fix: chmod 700 '{}', then restart tokend)",
            dir.display(),
            mode & 0o7777,
            dir.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CWD: &str = "/work/here";

    fn socket_with(platform: Platform, pairs: &[(&str, &str)]) -> String {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.get(k).map(OsString::from);
        let p = resolve_socket(&lookup, Path::new(CWD), platform, &|| PathBuf::from("/home/fromdb"));
        p.to_string_lossy().into_owned()
    }

    fn socket(pairs: &[(&str, &str)]) -> String {
        socket_with(Platform::Xdg, pairs)
    }

    const ALL: &[(&str, &str)] = &[
        ("HOME", "/home/u"),
        ("TOKEND_HOME", "/th"),
        ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ("TOKEND_DATA_DIR", "/data"),
        ("XDG_DATA_HOME", "/xdg-data"),
    ];

    #[test]
    fn tokend_socket_wins_over_every_other_rule() {
        let mut env = ALL.to_vec();
        env.push(("TOKEND_SOCKET", "/s/t.sock"));
        assert_eq!(socket(&env), "/s/t.sock");
    }

    #[test]
    fn a_relative_tokend_socket_is_taken_from_the_current_directory() {
        assert_eq!(socket(&[("HOME", "/home/u"), ("TOKEND_SOCKET", "rel/./t.sock")]), "/work/here/rel/t.sock");
        assert_eq!(socket(&[("TOKEND_SOCKET", "../up/t.sock")]), "/work/up/t.sock");
    }

    #[test]
    fn tokend_home_puts_the_socket_in_its_run_folder() {
        assert_eq!(socket(ALL), "/th/run/tokend.sock");
        assert_eq!(socket(&[("TOKEND_HOME", "h/")]), "/work/here/h/run/tokend.sock");
    }

    #[test]
    fn xdg_runtime_dir_comes_next() {
        assert_eq!(socket(&ALL[2..]), "/run/user/1000/tokend/tokend.sock");
        assert_eq!(socket(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/7")]), "/run/user/7/tokend/tokend.sock");
    }

    #[test]
    fn then_tokend_data_dir() {
        assert_eq!(socket(&ALL[3..]), "/data/run/tokend.sock");
        assert_eq!(socket(&[("TOKEND_DATA_DIR", "d")]), "/work/here/d/run/tokend.sock");
    }

    #[test]
    fn then_xdg_data_home_then_home_local_share() {
        assert_eq!(socket(&ALL[4..]), "/xdg-data/tokend/run/tokend.sock");
        assert_eq!(socket(&[("HOME", "/home/u"), ("XDG_DATA_HOME", "/xdg-data")]), "/xdg-data/tokend/run/tokend.sock");
        assert_eq!(socket(&[("HOME", "/home/u")]), "/home/u/.local/share/tokend/run/tokend.sock");
    }

    #[test]
    fn without_home_the_password_database_home_is_used() {
        assert_eq!(socket(&[]), "/home/fromdb/.local/share/tokend/run/tokend.sock");
    }

    #[test]
    fn macos_keeps_it_in_application_support_and_ignores_xdg_data_home() {
        let env = [("HOME", "/Users/u"), ("XDG_DATA_HOME", "/xdg-data")];
        assert_eq!(socket_with(Platform::Darwin, &env), "/Users/u/Library/Application Support/tokend/run/tokend.sock");
        // XDG_RUNTIME_DIR still applies before the data folder, on every platform.
        let env = [("HOME", "/Users/u"), ("XDG_RUNTIME_DIR", "/r")];
        assert_eq!(socket_with(Platform::Darwin, &env), "/r/tokend/tokend.sock");
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let env = [
            ("HOME", "/home/u"),
            ("TOKEND_SOCKET", ""),
            ("TOKEND_HOME", ""),
            ("XDG_RUNTIME_DIR", ""),
            ("TOKEND_DATA_DIR", ""),
            ("XDG_DATA_HOME", ""),
        ];
        assert_eq!(socket(&env), "/home/u/.local/share/tokend/run/tokend.sock");
    }

    #[test]
    fn a_folder_writable_by_others_is_not_trusted() {
        let dir = std::env::temp_dir().join(format!("tokend-client-trust-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("tokend.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(untrusted_socket(&sock), None);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let why = untrusted_socket(&sock).expect("a world-writable folder is refused");
        assert!(why.contains("can be written by others (mode 777)"), "{}", why);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        // Another uid (as if another user owned both): refused, naming the folder first.
        let why = untrusted_socket_for(&sock, my_uid() + 1).expect("another user's folder is refused");
        assert!(why.contains("belongs to uid"), "{}", why);
        fs::remove_dir_all(&dir).unwrap();
    }
}
