//! The reference bots of other libraries, for tests that run them as child
//! processes: a Python virtual environment with python-telegram-bot and
//! aiogram (pinned in `tests/bots/requirements.txt`), the bots' scripts, and
//! the built `teloxide_bot` example.
//!
//! The venv lives in `CARGO_TARGET_TMPDIR/python-venvs/<hash of
//! requirements.txt>`, so a changed pin makes a new one. It is made once:
//! test binaries and threads that ask at the same time wait on an exclusive
//! lock on a file beside it, and a venv counts as made only once its marker
//! file, written last, exists; a half-made one (a killed run) is removed and
//! made again. Without python3 (with venv and pip) the tests fail, saying
//! what to install: they never skip.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// What to install when Python is missing.
const INSTALL_HINT: &str = "install python3 with venv and pip \
     (Debian: apt-get install python3 python3-venv python3-pip)";

/// Written into the venv last: its presence means the venv is complete.
const MARKER: &str = "botvisor-venv-complete";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/bots/requirements.txt`.
pub fn requirements() -> PathBuf {
    manifest_dir().join("tests/bots/requirements.txt")
}

/// `tests/bots/<name>`, e.g. `bot_script("ptb_bot.py")`.
pub fn bot_script(name: &str) -> PathBuf {
    let path = manifest_dir().join("tests/bots").join(name);
    assert!(path.is_file(), "no bot script {}", path.display());
    path
}

/// The venv's Python interpreter, making the venv on first use (which
/// downloads from PyPI and takes a minute or so). Blocking: from async code
/// call it through `tokio::task::spawn_blocking`.
///
/// # Panics
/// If python3, its venv module or pip is missing, or the install fails.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(make_venv).clone()
}

fn make_venv() -> PathBuf {
    let requirements_path = requirements();
    let requirements = fs::read(&requirements_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", requirements_path.display()));
    let hash = Sha256::digest(&requirements);
    let name: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-venvs");
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
    let venv = base.join(&name);
    let python = venv.join("bin/python");
    let marker = venv.join(MARKER);
    if marker.is_file() {
        return python;
    }

    // One maker at a time, across test binaries too; the lock goes with
    // the process, so a killed maker does not leave it held.
    let lock_path = base.join(format!("{name}.lock"));
    let lock =
        File::create(&lock_path).unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
    if marker.is_file() {
        return python;
    }
    if venv.exists() {
        // Half-made by a run that was killed.
        fs::remove_dir_all(&venv).unwrap_or_else(|e| panic!("remove {}: {e}", venv.display()));
    }

    let version = Command::new("python3").arg("--version").output();
    match version {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`python3 --version` failed: {}; {INSTALL_HINT}",
            describe(&out)
        ),
        Err(e) => panic!("cannot run python3 ({e}); {INSTALL_HINT}"),
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        "python3 -m venv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(&requirements_path),
        "pip install -r tests/bots/requirements.txt",
    );
    fs::write(&marker, &requirements).unwrap_or_else(|e| panic!("write {}: {e}", marker.display()));
    python
}

/// Runs `command` to the end; panics with its output if it fails.
fn run(command: &mut Command, what: &str) {
    match command.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("{what} failed: {}\n({INSTALL_HINT})", describe(&out)),
        Err(e) => panic!("cannot run {what} ({e}); {INSTALL_HINT}"),
    }
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The built `teloxide_bot` example, `target/<profile>/examples/teloxide_bot`
/// beside the test binary's `target/<profile>/deps/`. A plain `cargo test`
/// builds the examples but `cargo test --test NAME` does not (and a copy
/// left by an earlier build may be stale), so the first call in a process
/// runs `cargo build --example teloxide_bot` for the same profile and target
/// folder: a no-op when it is up to date.
///
/// # Panics
/// If it cannot be built.
pub fn teloxide_example() -> PathBuf {
    static EXAMPLE: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLE.get_or_init(build_example).clone()
}

fn build_example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("no target/<profile> above {}", exe.display()));
    let target_dir = profile_dir
        .parent()
        .unwrap_or_else(|| panic!("no target folder above {}", profile_dir.display()));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("a strange profile folder {}", profile_dir.display()),
    };
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "--example",
            "teloxide_bot",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(manifest_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    // The variables cargo set for this test process only: build scripts
    // watch some (ring: CARGO_MANIFEST_DIR, CARGO_PKG_NAME), so passing them
    // on would make the next plain cargo rebuild half the tree, and back.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_tests = matches!(
            key,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        ) || [
            "CARGO_PKG_",
            "CARGO_BIN_EXE_",
            "CARGO_CFG_",
            "CARGO_FEATURE_",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix));
        if set_for_tests {
            cargo.env_remove(key);
        }
    }
    match cargo.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`cargo build --example teloxide_bot` failed: {}",
            describe(&out)
        ),
        Err(e) => panic!("cannot run cargo to build the teloxide_bot example: {e}"),
    }
    let example = profile_dir.join("examples/teloxide_bot");
    assert!(
        example.is_file(),
        "the teloxide_bot example is not at {} after `cargo build --examples`",
        example.display()
    );
    example
}
