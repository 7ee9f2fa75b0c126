//! Where tokens come from: the process environment, filled in by a `.env`
//! file beside the config for variables the environment does not set.
//!
//! The `.env` values are kept in this struct rather than written into the
//! process environment: setting variables in a running multi-threaded
//! process is unsound, and a reload must be able to read a changed file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::secret::Token;

/// A view of the environment variables bots may name with `token_env`.
#[derive(Clone, Default)]
pub struct Environment {
    dotenv: HashMap<String, String>,
    dotenv_path: Option<PathBuf>,
    /// Ignore the process environment (the sandbox: an operator's real
    /// tokens and `DATABASE_URL` must not leak in).
    isolated: bool,
}

/// Why a `.env` file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct DotenvError {
    pub path: PathBuf,
    pub message: String,
}

impl Environment {
    /// The process environment only.
    pub fn process() -> Environment {
        Environment::default()
    }

    /// The process environment, filled in from `.env` in `config_dir` when
    /// that file exists.
    ///
    /// # Errors
    /// When `.env` exists but cannot be read or parsed. The message names the
    /// file and line but never repeats a value, which may be a token.
    pub fn with_dotenv(config_dir: &Path) -> Result<Environment, DotenvError> {
        let path = config_dir.join(".env");
        if !path.exists() {
            return Ok(Environment::default());
        }
        let iter = dotenvy::from_path_iter(&path).map_err(|err| DotenvError {
            path: path.clone(),
            message: describe(&err),
        })?;
        let mut dotenv = HashMap::new();
        for item in iter {
            let (key, value) = item.map_err(|err| DotenvError {
                path: path.clone(),
                message: describe(&err),
            })?;
            dotenv.insert(key, value);
        }
        Ok(Environment {
            dotenv,
            dotenv_path: Some(path),
            isolated: false,
        })
    }

    /// An environment made of the given variables only (for tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Environment
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            dotenv: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            dotenv_path: None,
            isolated: false,
        }
    }

    /// Only the given variables; the process environment is not read at all.
    pub fn isolated<I, K, V>(pairs: I) -> Environment
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            isolated: true,
            ..Environment::from_pairs(pairs)
        }
    }

    /// The `.env` file that was read, if any.
    pub fn dotenv_path(&self) -> Option<&Path> {
        self.dotenv_path.as_deref()
    }

    /// The variable `name`: the process environment first, then `.env`.
    /// An empty or blank value counts as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        let process = if self.isolated {
            None
        } else {
            std::env::var(name).ok()
        };
        let value = process.filter(|v| !v.trim().is_empty()).or_else(|| {
            self.dotenv
                .get(name)
                .filter(|v| !v.trim().is_empty())
                .cloned()
        })?;
        Some(value.trim().to_owned())
    }

    /// The token in variable `name`, as [`Environment::var`] finds it.
    pub fn token(&self, name: &str) -> Option<Token> {
        self.var(name).map(Token::new)
    }

    /// Bot `bot`'s token: from its `token_file` when it has one, else from
    /// its `token_env` variable.
    ///
    /// # Errors
    /// Why there is none, in a sentence naming the variable or the file.
    pub fn token_of(&self, bot: &super::BotConfig) -> Result<Token, String> {
        let Some(path) = &bot.token_file else {
            return self
                .token(&bot.token_env)
                .ok_or_else(|| format!("{} is not set", bot.token_env));
        };
        let source = bot.token_source();
        let text = read_token_file(path).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => format!("{source} does not exist"),
            _ => format!("cannot read {source}: {err}"),
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("{source} is empty"));
        }
        Ok(Token::new(token))
    }
}

/// A token file's text: at most 4 KB (a token is under 100 bytes; a wrong
/// path such as `/dev/zero` must not be read without end).
fn read_token_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    // A regular file only: opening a FIFO would block the supervisor.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(4096)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// dotenvy's parse errors quote the offending line, which may hold a token;
/// keep only the position.
fn describe(err: &dotenvy::Error) -> String {
    match err {
        dotenvy::Error::LineParse(_, index) => {
            format!("cannot parse the file near character {index}")
        }
        dotenvy::Error::Io(io) => format!("cannot read the file: {io}"),
        dotenvy::Error::EnvVar(_) => "a variable is not valid unicode".to_owned(),
        _ => "cannot read the file".to_owned(),
    }
}
