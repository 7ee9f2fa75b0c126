//! What a Bot API method answers: a `result` (already serialized) or an
//! error in Telegram's shape, `{"ok":false,"error_code":N,"description":...,
//! "parameters":{...}}`, whose HTTP status is `error_code`.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

/// `parameters` of an error response: what teloxide turns into
/// `RequestError::RetryAfter` or `RequestError::MigrateToChatId`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseParameters {
    /// Seconds to wait before retrying (429 responses).
    pub retry_after: Option<u32>,
    /// The supergroup a group was upgraded to (400 responses).
    pub migrate_to_chat_id: Option<i64>,
}

impl ResponseParameters {
    fn is_empty(&self) -> bool {
        self.retry_after.is_none() && self.migrate_to_chat_id.is_none()
    }

    fn to_json(self) -> Value {
        let mut m = Map::new();
        if let Some(r) = self.retry_after {
            m.insert("retry_after".into(), json!(r));
        }
        if let Some(c) = self.migrate_to_chat_id {
            m.insert("migrate_to_chat_id".into(), json!(c));
        }
        Value::Object(m)
    }
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub description: Cow<'static, str>,
    pub parameters: ResponseParameters,
}

impl ApiError {
    pub fn new(code: u16, description: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            code,
            description: description.into(),
            parameters: ResponseParameters::default(),
        }
    }

    /// 400 `Bad Request: <what>`.
    pub fn bad_request(what: impl AsRef<str>) -> Self {
        Self::new(400, format!("Bad Request: {}", what.as_ref()))
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }

    pub fn method_not_found() -> Self {
        Self::new(404, "Not Found: method not found")
    }

    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    pub fn too_many_requests(retry_after: u32) -> Self {
        ApiError {
            code: 429,
            description: format!("Too Many Requests: retry after {retry_after}").into(),
            parameters: ResponseParameters {
                retry_after: Some(retry_after),
                migrate_to_chat_id: None,
            },
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> String {
        let mut m = Map::new();
        m.insert("ok".into(), Value::Bool(false));
        m.insert("error_code".into(), json!(self.code));
        m.insert("description".into(), json!(self.description));
        if !self.parameters.is_empty() {
            m.insert("parameters".into(), self.parameters.to_json());
        }
        Value::Object(m).to_string()
    }
}

/// A successful answer: the serialized `result`, plus the optional
/// `description` Telegram adds to some (e.g. "Webhook was set").
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Success {
    pub result: String,
    pub description: Option<&'static str>,
}

impl Success {
    pub fn json(v: &Value) -> Self {
        Success {
            result: v.to_string(),
            description: None,
        }
    }

    pub fn raw(result: String) -> Self {
        Success {
            result,
            description: None,
        }
    }

    pub fn r#true() -> Self {
        Self::raw("true".to_owned())
    }

    pub fn with_description(mut self, d: &'static str) -> Self {
        self.description = Some(d);
        self
    }

    /// The JSON body of this answer.
    pub fn body(&self) -> String {
        let mut s = String::with_capacity(self.result.len() + 64);
        s.push_str("{\"ok\":true,\"result\":");
        s.push_str(&self.result);
        if let Some(d) = self.description {
            s.push_str(",\"description\":");
            s.push_str(&Value::from(d).to_string());
        }
        s.push('}');
        s
    }
}

/// What a method handler returns.
pub(crate) type MethodResult = Result<Success, ApiError>;
