//! `include = ["bots.d/*.toml"]`: which files a pattern names. A pattern is
//! a path relative to the config's folder (or absolute) whose last part may
//! hold `*` (any run of characters), `?` (one character) and `[…]` (one of
//! them), matched by the `glob` crate, as nginx's and
//! systemd's conf.d folders are named; the folders above it are plain. A
//! `*` does not match a leading `.`, so editors' hidden backups stay out.

use std::path::{Path, PathBuf};

/// The files `pattern` names, sorted by name.
///
/// # Errors
/// A sentence for the operator: wildcards in a folder's name, a folder
/// that does not exist, a plain path that is no file.
pub fn expand(config_path: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let pattern = pattern.trim();
    if pattern.is_empty() {
        return Err("an empty pattern names no file".to_owned());
    }
    let full = super::raw::resolve(config_path, pattern);
    let shown = crate::sanitize::excerpt(&full.display().to_string(), 200);
    let Some(name) = full.file_name().and_then(|n| n.to_str()) else {
        return Err(format!("{shown} names no file"));
    };
    let dir = full.parent().unwrap_or(Path::new("."));
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err(format!(
            "{shown}: wildcards are allowed in the file name only, not in folders"
        ));
    }
    let Ok(pattern) = glob::Pattern::new(name) else {
        return Err(format!("{shown}: not a pattern (an unclosed `[`?)"));
    };
    if !name.contains(['*', '?', '[']) {
        return if full.is_file() {
            Ok(vec![full])
        } else {
            Err(format!("{shown} is not a file"))
        };
    }
    let entries = std::fs::read_dir(dir).map_err(|err| {
        format!(
            "cannot read the folder {}: {err}",
            crate::sanitize::excerpt(&dir.display().to_string(), 200)
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink())
        })
        .filter_map(|entry| {
            let file = entry.file_name();
            let file = file.to_str()?;
            pattern.matches_with(file, OPTIONS).then(|| entry.path())
        })
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// How a file name matches: `*`, `?`, `[…]` as a shell has them; a
/// leading `.` only matched by a leading `.`.
const OPTIONS: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// Whether file `name` matches `pattern`.
#[cfg(test)]
fn matches(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches_with(name, OPTIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_a_shell_does() {
        let cases = [
            ("*.toml", "quiz.toml", true),
            ("*.toml", "quiz.toml.bak", false),
            ("*.toml", ".quiz.toml", false),
            (".*.toml", ".quiz.toml", true),
            ("bot-?.toml", "bot-1.toml", true),
            ("bot-?.toml", "bot-12.toml", false),
            ("*", "anything", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("exact.toml", "exact.toml", true),
            ("ünï*", "ünïcode", true),
            ("[0-9]*.toml", "10-quiz.toml", true),
            ("[0-9]*.toml", "quiz.toml", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn a_pattern_names_the_files_of_its_folder_in_order() {
        let dir = tempfile::tempdir().expect("a folder");
        let config = dir.path().join("supervisor.toml");
        std::fs::create_dir(dir.path().join("bots.d")).expect("a folder");
        for name in ["b.toml", "a.toml", "c.txt", ".hidden.toml"] {
            std::fs::write(dir.path().join("bots.d").join(name), "").expect("write");
        }
        let files = expand(&config, "bots.d/*.toml").expect("files");
        let names: Vec<_> = files
            .iter()
            .filter_map(|f| f.file_name()?.to_str())
            .collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
        assert!(expand(&config, "nowhere/*.toml").is_err());
        assert!(expand(&config, "bots.d/none.toml").is_err());
        assert!(expand(&config, "*/x.toml").is_err());
        assert_eq!(expand(&config, "bots.d/b.toml").map(|f| f.len()), Ok(1));
        assert_eq!(expand(&config, "bots.d/*.none").map(|f| f.len()), Ok(0));
    }
}
