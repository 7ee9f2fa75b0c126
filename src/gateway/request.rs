//! A request to the gateway read into a [`Call`]: the route
//! (`/bot<token>/<method>` or `/file/bot<token>/<path>`), and the
//! parameters from the query string and the body, whatever way the bot's
//! library sends them: a query (GET), a form, a JSON object, or multipart,
//! plain or chunked, with its files streamed into the spool folder (never
//! held in memory). Every value becomes the text Telegram's server reads:
//! a JSON string as itself, any other JSON value as its JSON text.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{self, HeaderMap};
use tokio::io::AsyncWriteExt;

use crate::telegram::call::{Call, Upload};

/// The largest body without files: Telegram's own requests are a few KB
/// (a 4096-character text, a media group's captions, fifty inline
/// results).
pub const BODY_CAP: usize = 4 << 20;
/// The largest multipart body: Telegram's 50 MB upload limit, and room for
/// the other fields.
pub const UPLOAD_CAP: u64 = 52 << 20;
/// The largest text field in a multipart body.
const FIELD_CAP: usize = 1 << 20;
/// Files in one request at most (a media group has ten, each with a
/// thumbnail).
const MAX_FILES: usize = 32;

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/bot<token>/<method>`.
    Method { token: String, method: String },
    /// `/file/bot<token>/<path>`, the path decoded (teloxide writes `/` as
    /// `%2F`).
    File { token: String, path: String },
    /// Anything else.
    Unknown,
}

/// The route of a request's path.
pub fn route(path: &str) -> Route {
    if let Some(rest) = path.strip_prefix("/file/bot") {
        let Some((token, file)) = rest.split_once('/') else {
            return Route::Unknown;
        };
        let decoded = percent_encoding::percent_decode_str(file).decode_utf8_lossy();
        if token.is_empty() || !safe_file_path(&decoded) {
            return Route::Unknown;
        }
        return Route::File {
            token: decode(token),
            path: decoded.into_owned(),
        };
    }
    let Some(rest) = path.strip_prefix("/bot") else {
        return Route::Unknown;
    };
    match rest.split_once('/') {
        Some((token, method)) if !token.is_empty() && !method.is_empty() => Route::Method {
            token: decode(token),
            method: method.trim_end_matches('/').to_owned(),
        },
        _ => Route::Unknown,
    }
}

/// A token as a library may write it in a path: python-telegram-bot quotes
/// a download's path, its colon included (`%3A`).
fn decode(token: &str) -> String {
    percent_encoding::percent_decode_str(token)
        .decode_utf8_lossy()
        .into_owned()
}

/// A file path `getFile` could have given: relative, without `.` or `..`
/// segments, a query, a fragment or a control character, so that it
/// cannot lead anywhere but a file of this bot.
fn safe_file_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && !path.contains(['?', '#', '\\'])
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Over [`BODY_CAP`] or [`UPLOAD_CAP`] (413).
    TooLarge,
    /// Not a body Telegram could read (400), with Telegram's kind of words.
    Bad(String),
    /// The spool folder failed (500).
    Spool(String),
}

/// Reads the query and body of a request to `method` into a call. Files of
/// a multipart body go into `spool`.
///
/// # Errors
/// [`Rejected`] when the body is too large or unreadable; files spooled
/// for it are removed.
pub async fn read_call(
    method: String,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
    spool: &Path,
) -> Result<Call, Rejected> {
    let mut call = Call {
        method,
        params: Vec::new(),
        files: Vec::new(),
    };
    if let Some(query) = query {
        call.params.extend(form_pairs(query.as_bytes()));
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("multipart/form-data") {
        let Ok(boundary) = multer::parse_boundary(content_type) else {
            return Err(Rejected::Bad(
                "Bad Request: can't parse multipart/form-data: no boundary".to_owned(),
            ));
        };
        if let Err(rejected) = read_multipart(&mut call, body, boundary, spool).await {
            remove_spooled(&call);
            return Err(rejected);
        }
        return Ok(call);
    }
    let bytes = axum::body::to_bytes(body, BODY_CAP)
        .await
        .map_err(|_| Rejected::TooLarge)?;
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Ok(call);
    }
    let looks_like_json = trimmed.first() == Some(&b'{') || trimmed == b"null";
    if lower.contains("json") || (!lower.contains("urlencoded") && looks_like_json) {
        match serde_json::from_slice::<serde_json::Value>(trimmed) {
            Ok(serde_json::Value::Object(object)) => {
                for (key, value) in object {
                    match value {
                        serde_json::Value::Null => {}
                        serde_json::Value::String(text) => call.params.push((key, text)),
                        other => call.params.push((key, other.to_string())),
                    }
                }
            }
            Ok(serde_json::Value::Null) => {}
            Ok(_) => {
                return Err(Rejected::Bad(
                    "Bad Request: can't parse parameters: the JSON body is not an object"
                        .to_owned(),
                ));
            }
            Err(_) => {
                return Err(Rejected::Bad(
                    "Bad Request: can't parse JSON object".to_owned(),
                ));
            }
        }
    } else {
        call.params.extend(form_pairs(trimmed));
    }
    Ok(call)
}

/// The pairs of a query string or form.
fn form_pairs(bytes: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

async fn read_multipart(
    call: &mut Call,
    body: Body,
    boundary: String,
    spool: &Path,
) -> Result<(), Rejected> {
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(UPLOAD_CAP));
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(()),
            Err(err) => return Err(multipart_error(&err)),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field
            .file_name()
            .map(|parsed| unquoted_file_name(field.headers()).unwrap_or_else(|| parsed.to_owned()));
        match file_name {
            Some(file_name) => {
                if call.files.len() >= MAX_FILES {
                    return Err(Rejected::Bad(format!(
                        "Bad Request: more than {MAX_FILES} files in one request"
                    )));
                }
                let content_type = field.content_type().map(ToString::to_string);
                let path = spool_path(spool).await?;
                // Recorded before writing, so a failure removes it too.
                call.files.push(Upload {
                    part: name,
                    file_name,
                    content_type,
                    path: path.clone(),
                    size: 0,
                });
                let size = write_field(field, &path).await?;
                if let Some(upload) = call.files.last_mut() {
                    upload.size = size;
                }
            }
            None => {
                let mut field = field;
                let mut text = Vec::new();
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if text.len() + chunk.len() > FIELD_CAP {
                                return Err(Rejected::TooLarge);
                            }
                            text.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(err) => return Err(multipart_error(&err)),
                    }
                }
                call.params
                    .push((name, String::from_utf8_lossy(&text).into_owned()));
            }
        }
    }
}

/// A file name written without quotes (grammY writes
/// `filename=my clip.mp4`), read to the next `;` rather than to the first
/// space as multer reads it.
fn unquoted_file_name(headers: &HeaderMap) -> Option<String> {
    let disposition = headers
        .get(http::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    let start = disposition.to_ascii_lowercase().find("filename=")? + "filename=".len();
    let rest = disposition.get(start..)?;
    if rest.starts_with('"') {
        return None;
    }
    let value = rest.split(';').next()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// Streams one file field into `path`; its size.
async fn write_field(mut field: multer::Field<'_>, path: &Path) -> Result<u64, Rejected> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|err| Rejected::Spool(err.to_string()))?;
    let mut size = 0u64;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|err| Rejected::Spool(err.to_string()))?;
            }
            Ok(None) => break,
            Err(err) => return Err(multipart_error(&err)),
        }
    }
    file.flush()
        .await
        .map_err(|err| Rejected::Spool(err.to_string()))?;
    Ok(size)
}

fn multipart_error(err: &multer::Error) -> Rejected {
    match err {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            Rejected::TooLarge
        }
        _ => Rejected::Bad("Bad Request: can't parse multipart/form-data body".to_owned()),
    }
}

/// A new file name in `spool` (created if missing).
async fn spool_path(spool: &Path) -> Result<PathBuf, Rejected> {
    tokio::fs::create_dir_all(spool)
        .await
        .map_err(|err| Rejected::Spool(err.to_string()))?;
    let name: String = (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)]))
        .collect();
    Ok(spool.join(name))
}

/// The files a request spooled, removed when this is dropped unless they
/// were [kept](Spooled::keep) (by the outbox, which removes them once the
/// message is gone). A request whose caller goes away mid-way (its future
/// dropped) leaves nothing in the spool.
pub struct Spooled(Vec<PathBuf>);

impl Spooled {
    pub fn of(call: &Call) -> Spooled {
        Spooled(call.files.iter().map(|f| f.path.clone()).collect())
    }

    /// Someone else owns the files now.
    pub fn keep(mut self) {
        self.0.clear();
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes the files spooled for `call`.
fn remove_spooled(call: &Call) {
    for upload in &call.files {
        let _ = std::fs::remove_file(&upload.path);
    }
}

/// A stream of a body's chunks, for tests.
#[cfg(test)]
fn chunked(parts: Vec<&'static [u8]>) -> Body {
    use futures::StreamExt;
    let stream = futures::stream::iter(parts)
        .map(|part| Ok::<_, std::io::Error>(axum::body::Bytes::from_static(part)));
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = content_type.parse() {
            headers.insert(http::header::CONTENT_TYPE, value);
        }
        headers
    }

    #[test]
    fn spooled_files_go_unless_kept() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("upload");
        let call = |path: &std::path::Path| Call {
            method: "sendDocument".into(),
            params: Vec::new(),
            files: vec![Upload {
                part: "document".into(),
                file_name: "a".into(),
                content_type: None,
                path: path.to_path_buf(),
                size: 1,
            }],
        };
        std::fs::write(&path, "x").expect("write");
        drop(Spooled::of(&call(&path)));
        assert!(!path.exists(), "a dropped request leaves its upload");
        std::fs::write(&path, "x").expect("write");
        Spooled::of(&call(&path)).keep();
        assert!(path.exists(), "a kept upload was removed");
    }

    #[test]
    fn routes() {
        let cases: &[(&str, Route)] = &[
            (
                "/bot1:abc/sendMessage",
                Route::Method {
                    token: "1:abc".into(),
                    method: "sendMessage".into(),
                },
            ),
            (
                "/bot1:abc/SendMessage/",
                Route::Method {
                    token: "1:abc".into(),
                    method: "SendMessage".into(),
                },
            ),
            (
                "/file/bot1:abc/photos%2Ffile_1.jpg",
                Route::File {
                    token: "1:abc".into(),
                    path: "photos/file_1.jpg".into(),
                },
            ),
            (
                "/file/bot1:abc/photos/file_1.jpg",
                Route::File {
                    token: "1:abc".into(),
                    path: "photos/file_1.jpg".into(),
                },
            ),
            (
                "/file/bot1%3Aabc/photos/file_1.jpg",
                Route::File {
                    token: "1:abc".into(),
                    path: "photos/file_1.jpg".into(),
                },
            ),
            ("/file/bot1:abc/../../bot1:abc/getMe", Route::Unknown),
            ("/file/bot1:abc/photos%2F..%2F..%2Fx", Route::Unknown),
            ("/file/bot1:abc/a%3Fb", Route::Unknown),
            ("/file/bot1:abc/", Route::Unknown),
            ("/bot/getMe", Route::Unknown),
            ("/bot1:abc/", Route::Unknown),
            ("/", Route::Unknown),
            ("/status", Route::Unknown),
        ];
        for (path, expected) in cases {
            assert_eq!(route(path), *expected, "{path}");
        }
    }

    #[tokio::test]
    async fn every_library_style_reads_into_the_same_parameters() {
        let spool = tempfile::tempdir().expect("a folder");
        // (content type, query, body) → parameters.
        type Case = (
            &'static str,
            Option<&'static str>,
            Body,
            Vec<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            // python-telegram-bot: a form whose values are JSON text.
            (
                "application/x-www-form-urlencoded",
                None,
                Body::from("chat_id=5&text=hi+there&reply_markup=%7B%22a%22%3A1%7D"),
                vec![
                    ("chat_id", "5"),
                    ("text", "hi there"),
                    ("reply_markup", "{\"a\":1}"),
                ],
            ),
            // grammY and teloxide: JSON, numbers and objects as JSON text.
            (
                "application/json",
                None,
                Body::from(
                    r#"{"chat_id":-100,"text":"é","reply_markup":{"a":[1]},"x":null,"b":true}"#,
                ),
                vec![
                    ("chat_id", "-100"),
                    ("text", "é"),
                    ("reply_markup", "{\"a\":[1]}"),
                    ("b", "true"),
                ],
            ),
            // A GET with a query, and a query beside a body.
            (
                "",
                Some("offset=5&timeout=10"),
                Body::empty(),
                vec![("offset", "5"), ("timeout", "10")],
            ),
            (
                "application/json",
                Some("chat_id=1"),
                Body::from(r#"{"text":"a"}"#),
                vec![("chat_id", "1"), ("text", "a")],
            ),
            // No content type: JSON when it looks like it, a form otherwise.
            ("", None, Body::from(r#"{"a":"b"}"#), vec![("a", "b")]),
            ("", None, Body::from("a=b"), vec![("a", "b")]),
        ];
        for (content_type, query, body, expected) in cases {
            let call = read_call(
                "m".into(),
                query,
                &headers(content_type),
                body,
                spool.path(),
            )
            .await
            .expect("readable");
            let mut got: Vec<(String, String)> = call.params;
            got.sort();
            let mut want: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            want.sort();
            assert_eq!(got, want, "{content_type} {query:?}");
        }
        for (content_type, body) in [("application/json", "[1]"), ("application/json", "{\"a\":")] {
            assert!(matches!(
                read_call(
                    "m".into(),
                    None,
                    &headers(content_type),
                    Body::from(body),
                    spool.path()
                )
                .await,
                Err(Rejected::Bad(_))
            ));
        }
        let large = "a=".to_owned() + &"x".repeat(BODY_CAP);
        assert_eq!(
            read_call(
                "m".into(),
                None,
                &headers("application/x-www-form-urlencoded"),
                Body::from(large),
                spool.path()
            )
            .await
            .err(),
            Some(Rejected::TooLarge)
        );
    }

    #[tokio::test]
    async fn multipart_files_are_spooled_in_each_librarys_style() {
        let spool = tempfile::tempdir().expect("a folder");
        // python-telegram-bot: the file in a part named after the parameter.
        let ptb: &'static [u8] =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n5\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"dot.png\"\r\n\
Content-Type: image/png\r\n\r\nPNGDATA\r\n--XyZ--\r\n";
        // aiogram: `attach://` and a part of that name, sent in pieces.
        let aiogram: Vec<&'static [u8]> = vec![
            b"--B\r\nContent-Disposition: form-data; name=\"photo\"\r\n\r\nattach://f1\r\n--B\r\nContent-Dispo",
            b"sition: form-data; name=\"f1\"; filename=\"dot.png\"\r\n\r\nPNG",
            b"DATA\r\n--B--\r\n",
        ];
        // grammY: lowercase headers without a space, an unquoted file name
        // with a space, no file content type, no CRLF after the end, chunked.
        let grammy: Vec<&'static [u8]> = vec![
            b"--G\r\ncontent-disposition:form-data;name=\"document\"\r\n\r\nattach://x9",
            b"\r\n--G\r\ncontent-disposition:form-data;name=\"x9\";filename=my clip.png\r\n\r\nPNG",
            b"DATA\r\n--G--",
        ];
        // teloxide: multipart with a file_id only.
        let teloxide: &'static [u8] =
            b"--T\r\nContent-Disposition: form-data; name=\"photo\"\r\n\r\nAgAD123\r\n--T--\r\n";
        type Pairs = Vec<(&'static str, &'static str)>;
        let cases: Vec<(&str, Body, Pairs, Pairs)> = vec![
            (
                "multipart/form-data; boundary=XyZ",
                Body::from(ptb),
                vec![("chat_id", "5")],
                vec![("photo", "dot.png")],
            ),
            (
                "multipart/form-data; boundary=\"B\"",
                chunked(aiogram),
                vec![("photo", "attach://f1")],
                vec![("f1", "dot.png")],
            ),
            (
                "multipart/form-data; boundary=G",
                chunked(grammy),
                vec![("document", "attach://x9")],
                vec![("x9", "my clip.png")],
            ),
            (
                "multipart/form-data; boundary=T",
                Body::from(teloxide),
                vec![("photo", "AgAD123")],
                vec![],
            ),
        ];
        for (content_type, body, params, files) in cases {
            let call = read_call(
                "sendPhoto".into(),
                None,
                &headers(content_type),
                body,
                spool.path(),
            )
            .await
            .expect("readable");
            let got: Vec<(&str, &str)> = call
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(got, params, "{content_type}");
            let got: Vec<(&str, &str)> = call
                .files
                .iter()
                .map(|f| (f.part.as_str(), f.file_name.as_str()))
                .collect();
            assert_eq!(got, files, "{content_type}");
            for upload in &call.files {
                assert_eq!(std::fs::read(&upload.path).expect("spooled"), b"PNGDATA");
                assert_eq!(upload.size, 7);
            }
            drop(Spooled::of(&call));
            assert!(call.files.iter().all(|f| !f.path.exists()));
        }
        // A broken body leaves no file behind.
        let broken: &'static [u8] =
            b"--Q\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\nabc";
        let result = read_call(
            "sendDocument".into(),
            None,
            &headers("multipart/form-data; boundary=Q"),
            Body::from(broken),
            spool.path(),
        )
        .await;
        assert!(matches!(result, Err(Rejected::Bad(_))), "{result:?}");
        assert_eq!(
            std::fs::read_dir(spool.path()).expect("listable").count(),
            0
        );
    }
}
