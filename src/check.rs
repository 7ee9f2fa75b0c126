//! `botvisor check`: validates a config and reports each bot's token
//! variable without ever showing a token.

use std::fmt::Write as _;

use crate::config::{Config, Environment, Problem, render_problems};

/// What `check` found: one line per bot, and the problems.
pub struct Report {
    pub lines: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Checks each bot's token variable in `env`. A missing token of an enabled
/// bot is a problem; a disabled bot's is not.
pub fn check(config: &Config, env: &Environment) -> Report {
    let width = config.bots.iter().map(|b| b.name.len()).max().unwrap_or(0);
    let kind_width = config
        .bots
        .iter()
        .map(|b| b.kind.name().len())
        .max()
        .unwrap_or(0);
    let env_width = config
        .bots
        .iter()
        .map(|b| b.token_env.len())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for bot in &config.bots {
        let set = env.token(&bot.token_env).is_some();
        let state = match (bot.enabled, set) {
            (true, true) => "token set",
            (true, false) => "token NOT SET",
            (false, true) => "token set (disabled)",
            (false, false) => "token not set (disabled)",
        };
        let mut line = String::new();
        let _ = write!(
            line,
            "{:width$}  {:kind_width$}  {:env_width$}  {state}",
            bot.name,
            bot.kind.name(),
            bot.token_env
        );
        lines.push(line.trim_end().to_owned());
        if bot.enabled && !set {
            problems.push(Problem {
                at: bot.token_env_at,
                file: None,
                key: format!("bot.{}.token_env", bot.name),
                message: format!("the environment variable {} is not set", bot.token_env),
            });
        }
    }
    Report { lines, problems }
}

impl Report {
    /// The problems as `file:line:column: key: message` lines.
    pub fn render_problems(&self, config: &Config) -> String {
        render_problems(&config.path, &self.problems)
    }
}
