//! Bounded fuzz tests of the config and content parsers, and (last) of the
//! update parser. The shipped `supervisor.toml` and `content/tanitim.toml`,
//! mutated at random (bytes
//! inserted, deleted and replaced with fragments that have broken things
//! before: quotes, brackets, CRLF, a byte-order mark, invalid UTF-8, huge
//! names, wrong types), must never panic, and every problem they produce
//! must carry a line and column inside the file that holds it.
//!
//! It runs with `cargo test` for a fixed number of cases, so it stays found
//! without a separate fuzzing setup; raise `CASES` locally to search longer.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

use super::{Config, ConfigError};

/// Cases per parser in a normal test run (about a second each).
const CASES: u32 = 256;

/// Fragments inserted into the files: each has broken a parser somewhere.
const FRAGMENTS: &[&[u8]] = &[
    b"\"",
    b"'''",
    b"\"\"\"",
    b"[",
    b"]",
    b"[[",
    b"=",
    b"\n",
    b"\r\n",
    b"\r",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\0",
    b"#",
    b"\\",
    b"\\u",
    b"25",
    b"-1",
    b"1e999",
    b"true",
    b"\"1ms\"",
    b"{ }",
    b"[bot.x]\n",
    b"kind = \"faq\"\n",
    b"[[command]]\nname = \"staj\"\n",
    b"\xc4\xb1\xc5\x9f",
];

/// One edit: at a position (a fraction of the length), delete some bytes
/// and insert a fragment, possibly repeated.
fn edits() -> impl Strategy<Value = Vec<(f64, usize, usize, usize)>> {
    prop::collection::vec(
        (0.0..1.0f64, 0usize..8, 0..FRAGMENTS.len(), 1usize..4),
        1..6,
    )
}

fn mutate(original: &[u8], edits: &[(f64, usize, usize, usize)]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for &(at, delete, fragment, times) in edits {
        // The float is in 0..1, so this is a position inside the text.
        let at = ((bytes.len() as f64) * at) as usize;
        let at = at.min(bytes.len());
        let end = (at + delete).min(bytes.len());
        let insert = FRAGMENTS[fragment].repeat(times);
        bytes.splice(at..end, insert);
    }
    bytes
}

/// Asserts every problem of a failed load has a position inside its file.
fn positioned(result: Result<Config, ConfigError>, files: &[(&Path, &[u8])]) {
    let Err(err) = result else { return };
    let ConfigError::Invalid { path, problems } = &err else {
        panic!("not a positioned error: {err}");
    };
    assert!(!problems.is_empty(), "an error without problems");
    for problem in problems {
        let file = problem.file.as_deref().unwrap_or(path);
        let text = files
            .iter()
            .find(|(p, _)| *p == file)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("a problem in an unknown file: {err}"));
        let lines = text.split(|&b| b == b'\n').count();
        assert!(
            problem.at.line >= 1 && problem.at.line <= lines && problem.at.column >= 1,
            "{} is not a position in {} ({lines} lines): {err}",
            problem.at,
            file.display()
        );
    }
    for line in err.to_string().lines() {
        let rest = line
            .strip_prefix(&format!("{}:", path.display()))
            .or_else(|| line.split_once(".toml:").map(|(_, rest)| rest));
        let rest = rest.unwrap_or_else(|| panic!("a line without its file: {line}"));
        let mut parts = rest.splitn(3, ':');
        let numbers = (parts.next(), parts.next());
        assert!(
            matches!(numbers, (Some(l), Some(c)) if l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok()),
            "a line without line:column: {line}"
        );
    }
}

fn runner() -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases: CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

fn shipped(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).expect("a shipped file")
}

#[test]
fn mutated_configs_never_panic_and_always_say_where() {
    let original = shipped("supervisor.toml");
    let dir = tempfile::tempdir().expect("a temporary folder");
    // The config's content file, unmutated, beside it.
    std::fs::create_dir(dir.path().join("content")).expect("a content folder");
    std::fs::write(
        dir.path().join("content/tanitim.toml"),
        shipped("content/tanitim.toml"),
    )
    .expect("write the content");
    let path = dir.path().join("supervisor.toml");
    runner()
        .run(&edits(), |edits| {
            let bytes = mutate(&original, &edits);
            std::fs::write(&path, &bytes).expect("write the config");
            positioned(Config::load(&path), &[(&path, &bytes)]);
            Ok(())
        })
        .expect("no mutated config panics or loses its position");
}

#[test]
fn mutated_content_never_panics_and_always_says_where() {
    let original = shipped("content/tanitim.toml");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("supervisor.toml");
    std::fs::write(
        &path,
        "[bot.tanitim]\nkind = \"faq\"\ntoken_env = \"T\"\ncontent_file = \"c.toml\"\n",
    )
    .expect("write the config");
    let content = dir.path().join("c.toml");
    let config_text = std::fs::read(&path).expect("read the config");
    runner()
        .run(&edits(), |edits| {
            let bytes = mutate(&original, &edits);
            std::fs::write(&content, &bytes).expect("write the content");
            positioned(
                Config::load(&path),
                &[(&path, &config_text), (&content, &bytes)],
            );
            Ok(())
        })
        .expect("no mutated content panics or loses its position");
}

/// Fragments for a `getUpdates` answer: JSON's own punctuation and the
/// ids that broke the parser before.
const JSON_FRAGMENTS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"-1",
    b"4294967296",
    b"7.5",
    b"\"7\"",
    b"null",
    b"\\u0000",
    b"\xff",
    b"{\"update_id\":",
    b"\"message\":",
    b"1e999",
];

fn mutate_json(original: &[u8], edits: &[(f64, usize, usize, usize)]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for &(at, delete, fragment, times) in edits {
        let at = (((bytes.len() as f64) * at) as usize).min(bytes.len());
        let end = (at + delete).min(bytes.len());
        bytes.splice(
            at..end,
            JSON_FRAGMENTS[fragment % JSON_FRAGMENTS.len()].repeat(times),
        );
    }
    bytes
}

/// The update parser (`getUpdates` answers, and what a webhook posts): a
/// mutated answer never panics, every update it hands on has a usable id,
/// and what it says about the ones it rejects never quotes their content.
#[test]
fn mutated_update_batches_never_panic_or_show_content() {
    let message = |id: u32, text: &str| {
        format!(
            r#"{{"update_id":{id},"message":{{"message_id":{id},"date":0,"chat":{{"id":5,"type":"private","first_name":"A"}},"from":{{"id":5,"is_bot":false,"first_name":"A"}},"text":"{text}"}}}}"#
        )
    };
    let original = format!(
        "[{},{},{}]",
        message(10, "gizli mesaj"),
        message(11, "gizli ikinci"),
        message(12, "gizli üçüncü")
    );
    runner()
        .run(&edits(), |edits| {
            let bytes = mutate_json(original.as_bytes(), &edits);
            match crate::telegram::polling::parse_batch(
                &bytes,
                |_| false,
                crate::telegram::polling::Reading::Whole,
            ) {
                Ok(batch) => {
                    for delivered in &batch.updates {
                        assert!(i32::try_from(delivered.id()).is_ok());
                        assert!(
                            crate::telegram::polling::Delivered::parse(&delivered.raw).is_some()
                        );
                    }
                    for rejected in &batch.rejected {
                        assert!(rejected.why.len() <= 200, "{}", rejected.why);
                        assert!(!rejected.why.contains("gizli"), "{}", rejected.why);
                    }
                }
                Err(err) => assert!(!err.detail.contains("gizli"), "{}", err.detail),
            }
            Ok(())
        })
        .expect("the update parser holds");
}
