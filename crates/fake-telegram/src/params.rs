//! Request parameters: parsing a body (JSON, `x-www-form-urlencoded`) and a
//! query string into one JSON object, and typed getters that accept both
//! JSON values and the strings a form sends (`"123"`, `"true"`, a JSON text
//! for `reply_markup`). A malformed parameter is a 400, never a panic.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::reply::ApiError;

/// A `chat_id` parameter: a numeric id or a public `@username`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChatRef {
    Id(i64),
    Username(String),
}

/// The parameters of one request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Params(Map<String, Value>);

/// The outcome of parsing a request: what to record as its body, and the
/// parameters (or the 400 to answer).
pub(crate) struct Parsed {
    pub recorded: Value,
    pub params: Result<Params, ApiError>,
}

impl Params {
    /// Parses the query string and body of a request. Body fields override
    /// query fields of the same name.
    pub fn parse(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Parsed {
        let mut map = Map::new();
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
                Some(fields) => map.extend(fields),
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
            params: Ok(Params(map)),
        }
    }

    /// The raw value of a parameter; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// All parameters as a JSON object.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
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
        match self.get("chat_id") {
            None => Err(ApiError::bad_request("chat_id is empty")),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(ChatRef::Id)
                .ok_or_else(|| ApiError::bad_request("chat not found")),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    Err(ApiError::bad_request("chat_id is empty"))
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

/// The fields of a `multipart/form-data` body (what teloxide sends for
/// methods that may carry a file, e.g. setWebhook). Text fields become
/// strings; a file field becomes `{"file_name": ..., "size": ...}`.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Map<String, Value>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut fields = Map::new();
    let mut rest = &body[find(body, delimiter)? + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(fields);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, delimiter)?;
        // The part ends with CRLF before the next delimiter.
        let part = rest[..end].strip_suffix(b"\r\n")?;
        let header_end = find(part, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&part[..header_end]).ok()?;
        let content = &part[header_end + 4..];
        let disposition = headers
            .split("\r\n")
            .find(|h| h.to_ascii_lowercase().starts_with("content-disposition:"))?;
        let attr = |name: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let name = attr("name")?;
        let value = match attr("filename") {
            Some(file_name) => serde_json::json!({ "file_name": file_name, "size": content.len() }),
            None => Value::String(String::from_utf8_lossy(content).into_owned()),
        };
        fields.insert(name, value);
        rest = &rest[end + delimiter.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
            b"text=hello+world&reply_markup=%7B%22inline_keyboard%22%3A%5B%5D%7D",
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
        let p = Params::parse(None, Some("multipart/form-data; boundary=XyZ"), body)
            .params
            .expect("parses");
        assert_eq!(p.str("url").as_deref(), Some("https://a.b/c"));
        assert_eq!(p.get("certificate").expect("file")["size"], 3);
        assert!(
            Params::parse(None, Some("multipart/form-data; boundary=Q"), b"junk")
                .params
                .is_err()
        );
    }

    #[test]
    fn malformed_json_is_an_error() {
        let parsed = Params::parse(None, Some("application/json"), b"{\"a\":");
        assert!(parsed.params.is_err());
        assert!(parsed.recorded.is_string());
    }

    #[test]
    fn numbers_accept_strings() {
        let p = Params::parse(
            None,
            Some("application/json"),
            br#"{"a":"12","b":7,"c":"x"}"#,
        )
        .params
        .expect("parses");
        assert_eq!(p.i64("a").expect("a"), Some(12));
        assert_eq!(p.i64("b").expect("b"), Some(7));
        assert!(p.i64("c").is_err());
        assert_eq!(p.i64("missing").expect("missing"), None);
    }
}
