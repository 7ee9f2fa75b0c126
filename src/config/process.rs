//! The `process` kind's settings (a bot that is a program of its own,
//! run as a child process talking to botvisor's gateway) and the
//! `[supervisor.gateway]` table.
//!
//! The program is checked where the config is: its folder exists, and the
//! program is found (a bare name on `PATH`, a path relative to the folder
//! it runs in) and executable, each problem at its key's line and column.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::raw::{Checker, ENV_NAME, resolve};

/// Variables botvisor sets in every child's environment itself.
pub const RESERVED_ENV: &[&str] = &["BOT_TOKEN", "BOT_API_URL"];

/// Settings of a `process` bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSettings {
    /// The program and its arguments, run without a shell.
    pub command: Vec<String>,
    /// The folder it runs in: `workdir` against the config's folder, or
    /// that folder.
    pub workdir: PathBuf,
    /// Variables added to its environment.
    pub env: BTreeMap<String, String>,
}

/// The `[supervisor.gateway]` table: where process bots reach botvisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    /// A loopback address; port 0 lets the system pick one.
    pub listen: SocketAddr,
    /// Where uploads wait until they are sent; by default beside a SQLite
    /// store, or in the system's temporary folder.
    pub spool_dir: Option<PathBuf>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            spool_dir: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    command: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    env: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawGateway {
    listen: Option<Spanned<String>>,
    spool_dir: Option<Spanned<String>>,
}

/// Validates a `process` bot's own keys.
pub(super) fn validate(
    check: &mut Checker<'_>,
    prefix: &str,
    raw: RawProcess,
    config_path: &Path,
) -> Option<ProcessSettings> {
    let problems = check.problems.len();
    let workdir = match &raw.workdir {
        Some(dir) if dir.get_ref().trim().is_empty() => {
            check.report(
                dir.span(),
                &format!("{prefix}.workdir"),
                "must not be empty",
            );
            None
        }
        Some(dir) => {
            let path = resolve(config_path, dir.get_ref());
            if path.is_dir() {
                Some(path)
            } else {
                check.report(
                    dir.span(),
                    &format!("{prefix}.workdir"),
                    format!(
                        "the folder {} does not exist",
                        crate::sanitize::excerpt(&path.display().to_string(), 200)
                    ),
                );
                None
            }
        }
        None => Some(super::config_dir(config_path).to_path_buf()),
    };
    let mut env = BTreeMap::new();
    for (name, value) in raw.env.iter().flatten() {
        let key = format!("{prefix}.env.{name}");
        if !ENV_NAME.is_match(name) {
            check.report(
                value.span(),
                &format!("{prefix}.env"),
                format!(
                    "`{}` is not a variable name (letters, digits and `_`)",
                    crate::sanitize::excerpt(name, 40)
                ),
            );
        } else if RESERVED_ENV.contains(&name.as_str()) {
            check.report(
                value.span(),
                &key,
                "botvisor sets this variable itself (the gateway's local token and address)",
            );
        } else if value.get_ref().contains('\0') {
            check.report(value.span(), &key, "must not contain a NUL character");
        } else {
            env.insert(name.clone(), value.get_ref().clone());
        }
    }
    let command_key = format!("{prefix}.command");
    let args = raw.command.get_ref();
    match args.first() {
        None => check.report(
            raw.command.span(),
            &command_key,
            "names no program; write e.g. [\"python3\", \"bot.py\"]",
        ),
        Some(program) => {
            for arg in args {
                if arg.get_ref().contains('\0') {
                    check.report(arg.span(), &command_key, "must not contain a NUL character");
                }
            }
            if let Some(workdir) = &workdir {
                let path_var = env
                    .get("PATH")
                    .cloned()
                    .or_else(|| std::env::var("PATH").ok());
                if let Err(problem) = find_program(program.get_ref(), workdir, path_var.as_deref())
                {
                    check.report(program.span(), &command_key, problem);
                }
            }
        }
    }
    if check.problems.len() > problems {
        return None;
    }
    Some(ProcessSettings {
        command: args.iter().map(|arg| arg.get_ref().clone()).collect(),
        workdir: workdir?,
        env,
    })
}

/// Where `program` is: a path (with a `/`) against `workdir`, or a bare
/// name on `path_var`; it must be an executable file.
///
/// # Errors
/// What is wrong, in a sentence for the operator.
pub fn find_program(
    program: &str,
    workdir: &Path,
    path_var: Option<&str>,
) -> Result<PathBuf, String> {
    let shown = crate::sanitize::excerpt(program, 80);
    if program.trim().is_empty() {
        return Err("names no program".to_owned());
    }
    if program.contains('/') {
        let path = workdir.join(program);
        return match executable(&path) {
            Ok(()) => Ok(path),
            Err(why) => Err(format!("`{shown}` {why} (looked in the folder it runs in)")),
        };
    }
    for dir in path_var.unwrap_or_default().split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let path = Path::new(dir).join(program);
        if executable(&path).is_ok() {
            return Ok(path);
        }
    }
    Err(format!(
        "`{shown}` is not found on PATH; give its full path or install it"
    ))
}

/// Whether `path` is a file that may be executed; why not otherwise.
fn executable(path: &Path) -> Result<(), &'static str> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err("is not a file"),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => {
            Err("is not executable (chmod +x, or run it through its interpreter)")
        }
        Ok(_) => Ok(()),
        Err(_) => Err("does not exist"),
    }
}

/// Validates `[supervisor.gateway]`.
pub(super) fn gateway(
    check: &mut Checker<'_>,
    raw: &RawGateway,
    config_path: &Path,
) -> GatewaySettings {
    let mut settings = GatewaySettings::default();
    if let Some(listen) = &raw.listen {
        match listen.get_ref().trim().parse::<SocketAddr>() {
            Ok(addr) if addr.ip().is_loopback() => settings.listen = addr,
            Ok(_) => check.report(
                listen.span(),
                "supervisor.gateway.listen",
                "must be a loopback address such as \"127.0.0.1:8081\": process bots reach \
                 their bots' tokens through it, and nothing else may",
            ),
            Err(_) => check.report(
                listen.span(),
                "supervisor.gateway.listen",
                "must be an address and port such as \"127.0.0.1:8081\" (port 0: any free port)",
            ),
        }
    }
    if let Some(dir) = &raw.spool_dir {
        if dir.get_ref().trim().is_empty() {
            check.report(
                dir.span(),
                "supervisor.gateway.spool_dir",
                "must not be empty",
            );
        } else {
            settings.spool_dir = Some(resolve(config_path, dir.get_ref()));
        }
    }
    settings
}
