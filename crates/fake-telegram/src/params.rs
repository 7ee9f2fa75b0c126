//! Request parameters: parsing a body (JSON, `x-www-form-urlencoded`,
//! `multipart/form-data`) and a query string into one JSON object plus the
//! uploaded file parts, and typed getters that accept both JSON values and
//! the strings a form sends (`"123"`, `"true"`, a JSON text for
//! `reply_markup`). A malformed parameter is a 400, never a panic.
//!
//! The multipart parser makes one pass over the body with a `memchr::memmem`
//! finder for the delimiter, and a file part's bytes are a slice of the
//! request body (no copy), so a 50 MB upload parses in milliseconds.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use memchr::memmem;
use serde_json::{Map, Value};

use crate::reply::ApiError;

/// A `chat_id` parameter: a numeric id or a public `@username`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChatRef {
    Id(i64),
    Username(String),
}

/// A file part of a `multipart/form-data` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FilePart {
    /// The part's `filename`, if it had one.
    pub file_name: Option<String>,
    /// The part's `Content-Type`, if it had one.
    pub content_type: Option<String>,
    /// The part's content (a slice of the request body).
    pub bytes: Bytes,
}

/// The parameters of one request: the fields (a file part appears here as
/// `{"file_name": ..., "size": ...}`, as it is recorded) and the file parts
/// by name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params {
    fields: Map<String, Value>,
    files: HashMap<String, FilePart>,
}

/// The outcome of parsing a request: what to record as its body, and the
/// parameters (or the 400 to answer).
pub(crate) struct Parsed {
    pub recorded: Value,
    pub params: Result<Params, ApiError>,
}

impl Params {
    /// Parses the query string and body of a request. Body fields override
    /// query fields of the same name.
    pub fn parse(query: Option<&str>, content_type: Option<&str>, body: &Bytes) -> Parsed {
        let mut map = Map::new();
        let mut files = HashMap::new();
        if let Some(q) = query {
            add_form_fields(&mut map, q.as_bytes());
        }
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        let trimmed = body.trim_ascii();
        let looks_like_json = trimmed.first().is_some_and(|b| *b == b'{' || *b == b'[');
        if trimmed.is_empty() {
            // Nothing more.
        } else if ct.starts_with("multipart/form-data") {
            let boundary = content_type.and_then(multipart_boundary);
            match boundary.and_then(|b| parse_multipart(body, &b)) {
                Some(parts) => {
                    for (name, part) in parts {
                        match part {
                            Part::Text(text) => {
                                files.remove(&name);
                                map.insert(name, Value::String(text));
                            }
                            Part::File(file) => {
                                map.insert(
                                    name.clone(),
                                    serde_json::json!({
                                        "file_name": file.file_name,
                                        "size": file.bytes.len(),
                                    }),
                                );
                                files.insert(name, file);
                            }
                        }
                    }
                }
                None => {
                    return Parsed {
                        recorded: Value::Object(map),
                        params: Err(ApiError::bad_request(
                            "can't parse multipart/form-data body",
                        )),
                    };
                }
            }
        } else if ct.contains("json") || (!ct.contains("urlencoded") && looks_like_json) {
            match serde_json::from_slice::<Value>(trimmed) {
                Ok(Value::Object(obj)) => map.extend(obj),
                Ok(_) => {
                    return Parsed {
                        recorded: Value::String(String::from_utf8_lossy(body).into_owned()),
                        params: Err(ApiError::bad_request(
                            "can't parse parameters: JSON body is not an object",
                        )),
                    };
                }
                Err(e) => {
                    return Parsed {
                        recorded: Value::String(String::from_utf8_lossy(body).into_owned()),
                        params: Err(ApiError::bad_request(format!(
                            "can't parse JSON object: {e}"
                        ))),
                    };
                }
            }
        } else {
            add_form_fields(&mut map, trimmed);
        }
        Parsed {
            recorded: Value::Object(map.clone()),
            params: Ok(Params { fields: map, files }),
        }
    }

    /// The raw value of a parameter; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key).filter(|v| !v.is_null())
    }

    /// The file part called `name`, if the body was multipart and had one.
    pub fn file(&self, name: &str) -> Option<&FilePart> {
        self.files.get(name)
    }

    /// All parameters as a JSON object (file parts as their summary).
    pub fn to_value(&self) -> Value {
        Value::Object(self.fields.clone())
    }

    /// An integer parameter (a JSON number or a numeric string).
    pub fn i64(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| wrong(key)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| wrong(key)),
            Some(_) => Err(wrong(key)),
        }
    }

    /// A number parameter that may have a fraction (used for `timeout`).
    pub fn f64(&self, key: &str) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| wrong(key)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| wrong(key)),
            Some(_) => Err(wrong(key)),
        }
    }

    /// A string parameter; numbers and booleans are given as their text.
    pub fn str(&self, key: &str) -> Option<Cow<'_, str>> {
        match self.get(key)? {
            Value::String(s) => Some(Cow::Borrowed(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            _ => None,
        }
    }

    /// A boolean parameter (`true`, `"true"`, `1`, `"1"`); absent is `false`.
    pub fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64().is_some_and(|i| i != 0),
            Some(Value::String(s)) => matches!(s.trim(), "true" | "True" | "1"),
            _ => false,
        }
    }

    /// A parameter that is a JSON object or array: given as such in a JSON
    /// body, or as JSON text in a form.
    pub fn json(&self, key: &str) -> Result<Option<Value>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("can't parse {key} JSON object"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// The `chat_id` parameter: a number, a numeric string or `@username`.
    pub fn chat_id(&self) -> Result<ChatRef, ApiError> {
        self.chat_ref("chat_id")
    }

    /// A chat parameter (`chat_id`, `from_chat_id`): a number, a numeric
    /// string or `@username`.
    pub fn chat_ref(&self, key: &str) -> Result<ChatRef, ApiError> {
        match self.get(key) {
            None => Err(ApiError::bad_request(format!("{key} is empty"))),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(ChatRef::Id)
                .ok_or_else(|| ApiError::bad_request("chat not found")),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    Err(ApiError::bad_request(format!("{key} is empty")))
                } else if let Ok(id) = s.parse::<i64>() {
                    Ok(ChatRef::Id(id))
                } else if let Some(name) = s.strip_prefix('@') {
                    Ok(ChatRef::Username(name.to_owned()))
                } else {
                    Err(ApiError::bad_request("chat not found"))
                }
            }
            Some(_) => Err(ApiError::bad_request("chat not found")),
        }
    }
}

fn wrong(key: &str) -> ApiError {
    ApiError::bad_request(format!("wrong parameter {key} in request"))
}

/// The `boundary` of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// One part of a `multipart/form-data` body.
enum Part {
    Text(String),
    File(FilePart),
}

/// Most bytes of part headers looked at (a part whose headers do not end
/// within them is malformed).
const MAX_PART_HEADERS: usize = 64 * 1024;

/// The parts of a `multipart/form-data` body, in order (RFC 7578). A part
/// with a `filename` (or a `Content-Type` other than text or JSON) is a
/// file; the others are text fields. `None` when the body is malformed.
fn parse_multipart(body: &Bytes, boundary: &str) -> Option<Vec<(String, Part)>> {
    if boundary.is_empty() || boundary.len() > 256 {
        return None;
    }
    let delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    // The first delimiter opens the body or follows a preamble and CRLF.
    let mut pos = if body.starts_with(&delimiter.as_bytes()[2..]) {
        delimiter.len() - 2
    } else {
        finder.find(body)? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = body.get(pos..)?;
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        // Transport padding (spaces, tabs) may precede the CRLF.
        let padding = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let start = pos + padding + 2;
        if rest.get(padding..padding + 2)? != b"\r\n" {
            return None;
        }
        let end = start + finder.find(body.get(start..)?)?;
        let part = body.get(start..end)?;
        let (headers, content_start) = if part.starts_with(b"\r\n") {
            ("".into(), 2)
        } else {
            let head = &part[..part.len().min(MAX_PART_HEADERS)];
            let header_end = memmem::find(head, b"\r\n\r\n")?;
            (String::from_utf8_lossy(&part[..header_end]), header_end + 4)
        };
        parts.push(parse_part(
            &headers,
            body.slice(start + content_start..end),
        )?);
        pos = end + delimiter.len();
    }
}

/// A part from its headers and content; `None` without a
/// `Content-Disposition` naming it.
fn parse_part(headers: &str, content: Bytes) -> Option<(String, Part)> {
    let mut disposition = None;
    let mut content_type = None;
    for line in headers.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(value.trim());
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        }
    }
    let attrs = header_params(disposition?);
    let attr = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let name = attr("name")?.clone();
    let file_name = match attr("filename*") {
        Some(v) => Some(extended_value(v)),
        None => attr("filename").cloned(),
    };
    let binary = content_type.as_deref().is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        !ct.starts_with("text/") && !ct.starts_with("application/json")
    });
    let part = if file_name.is_some() || binary {
        Part::File(FilePart {
            file_name,
            content_type,
            bytes: content,
        })
    } else {
        Part::Text(String::from_utf8_lossy(&content).into_owned())
    };
    Some((name, part))
}

/// The `key=value` parameters after the first `;` of a header value, keys
/// lowercased; a quoted value may contain `;` and backslash escapes.
fn header_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some((_, mut rest)) = value.split_once(';') else {
        return out;
    };
    loop {
        rest = rest.trim_start_matches(|c: char| c == ';' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return out;
        }
        let key_end = rest.find(['=', ';']).unwrap_or(rest.len());
        let key = rest[..key_end].trim().to_ascii_lowercase();
        rest = &rest[key_end..];
        let Some(after_eq) = rest.strip_prefix('=') else {
            continue;
        };
        let after_eq = after_eq.trim_start();
        let (val, tail) = match after_eq.strip_prefix('"') {
            Some(quoted) => {
                let mut val = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                val.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => val.push(c),
                    }
                }
                (val, &quoted[end..])
            }
            None => {
                let end = after_eq.find(';').unwrap_or(after_eq.len());
                (after_eq[..end].trim().to_owned(), &after_eq[end..])
            }
        };
        out.push((key, val));
        rest = tail;
    }
}

/// An RFC 8187 extended value (`UTF-8''na%C3%AFve.txt`) decoded.
fn extended_value(v: &str) -> String {
    let encoded = v.splitn(3, '\'').nth(2).unwrap_or(v);
    percent_decode(encoded)
}

/// `%XX` escapes decoded (an invalid escape is kept as is); invalid UTF-8
/// becomes U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            // Two hex digits: at most 255.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn add_form_fields(map: &mut Map<String, Value>, bytes: &[u8]) {
    for (k, v) in url::form_urlencoded::parse(bytes) {
        map.insert(k.into_owned(), Value::String(v.into_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_query_merge() {
        let p = Params::parse(
            Some("chat_id=5&text=q"),
            Some("application/x-www-form-urlencoded"),
            &Bytes::from_static(
                b"text=hello+world&reply_markup=%7B%22inline_keyboard%22%3A%5B%5D%7D",
            ),
        )
        .params
        .expect("parses");
        assert_eq!(p.chat_id().expect("chat"), ChatRef::Id(5));
        assert_eq!(p.str("text").as_deref(), Some("hello world"));
        assert!(p.json("reply_markup").expect("json").is_some());
    }

    #[test]
    fn multipart_fields() {
        let body =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\nhttps://a.b/c\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"certificate\"; filename=\"cert.pem\"\r\n\
Content-Type: application/octet-stream\r\n\r\nPEM\r\n--XyZ--\r\n";
        let p = multipart("XyZ", body).expect("parses");
        assert_eq!(p.str("url").as_deref(), Some("https://a.b/c"));
        assert_eq!(p.get("certificate").expect("file")["size"], 3);
        let file = p.file("certificate").expect("file part");
        assert_eq!(file.file_name.as_deref(), Some("cert.pem"));
        assert_eq!(&file.bytes[..], b"PEM");
        assert!(multipart("Q", b"junk").is_none());
        // A part cut short, a missing final delimiter, a part without a name.
        assert!(multipart("XyZ", &body[..60]).is_none());
        assert!(
            multipart(
                "XyZ",
                b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--"
            )
            .is_none()
        );
        assert!(multipart("XyZ", b"--XyZ\r\n\r\nx\r\n--XyZ--").is_none());
    }

    fn multipart(boundary: &str, body: &[u8]) -> Option<Params> {
        Params::parse(
            None,
            Some(&format!("multipart/form-data; boundary=\"{boundary}\"")),
            &Bytes::copy_from_slice(body),
        )
        .params
        .ok()
    }

    #[test]
    fn multipart_names_files_and_padding() {
        let body = "preamble\r\n--b\t \r\n\
Content-Disposition: form-data; name=\"photo\"; filename=\"a;b \\\"c\\\".jpg\"\r\n\r\nJPEG\r\n\
--b\r\ncontent-disposition: form-data; NAME=doc; filename*=UTF-8''na%C3%AFve.txt\r\n\r\n\
\r\n--\r\n--b\r\nContent-Disposition: form-data; name=\"blob\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\x01\r\n\
--b\r\nContent-Disposition: form-data; name=\"media\"\r\nContent-Type: application/json\r\n\r\n\
[1]\r\n--b--";
        let p = multipart("b", body.as_bytes()).expect("parses");
        let photo = p.file("photo").expect("photo");
        assert_eq!(photo.file_name.as_deref(), Some("a;b \"c\".jpg"));
        assert_eq!(&photo.bytes[..], b"JPEG");
        let doc = p.file("doc").expect("doc");
        assert_eq!(doc.file_name.as_deref(), Some("naïve.txt"));
        assert_eq!(&doc.bytes[..], b"\r\n--");
        assert_eq!(p.file("blob").expect("blob").file_name, None);
        assert_eq!(p.str("media").as_deref(), Some("[1]"));
        assert!(p.file("media").is_none());
    }

    #[test]
    fn large_multipart_parses_in_one_pass() {
        let payload = vec![b'x'; 50 * 1024 * 1024];
        let mut body = Vec::with_capacity(payload.len() + 512);
        body.extend_from_slice(
            b"--B0undary\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n5\r\n\
--B0undary\r\nContent-Disposition: form-data; name=\"document\"; filename=\"big.bin\"\r\n\r\n",
        );
        body.extend_from_slice(&payload);
        body.extend_from_slice(b"\r\n--B0undary--\r\n");
        let body = Bytes::from(body);
        let started = std::time::Instant::now();
        let p = Params::parse(None, Some("multipart/form-data; boundary=B0undary"), &body)
            .params
            .expect("parses");
        let took = started.elapsed();
        assert_eq!(p.file("document").expect("file").bytes.len(), payload.len());
        assert_eq!(p.str("chat_id").as_deref(), Some("5"));
        // Generous for an unoptimized build on a busy machine.
        assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("photos%2Ffile_1.jpg"), "photos/file_1.jpg");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    #[test]
    fn malformed_json_is_an_error() {
        let parsed = Params::parse(
            None,
            Some("application/json"),
            &Bytes::from_static(b"{\"a\":"),
        );
        assert!(parsed.params.is_err());
        assert!(parsed.recorded.is_string());
    }

    #[test]
    fn numbers_accept_strings() {
        let p = Params::parse(
            None,
            Some("application/json"),
            &Bytes::from_static(br#"{"a":"12","b":7,"c":"x"}"#),
        )
        .params
        .expect("parses");
        assert_eq!(p.i64("a").expect("a"), Some(12));
        assert_eq!(p.i64("b").expect("b"), Some(7));
        assert!(p.i64("c").is_err());
        assert_eq!(p.i64("missing").expect("missing"), None);
    }
}
