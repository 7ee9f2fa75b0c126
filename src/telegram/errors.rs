//! Telegram's errors sorted into the classes the supervisor acts on, decided
//! in one function, [`classify`], from the exact texts Telegram sends.

use std::fmt;
use std::time::Duration;

use teloxide::ApiError;
use teloxide::RequestError;
use teloxide::types::ChatId;

/// What a failed request means for the bot that sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// 409: another process polls with this token.
    ConflictOtherPoller,
    /// 409: a webhook is set, so getUpdates cannot be used.
    ConflictWebhook,
    /// 429: wait exactly this long before the next request.
    RateLimited(Duration),
    /// 401, or 404 on the bot path: the token is wrong or revoked.
    Unauthorized,
    /// 400 with `migrate_to_chat_id`: the group is now this supergroup.
    Migrated(ChatId),
    /// 403: this chat blocked, kicked or never had the bot.
    Forbidden,
    /// Another 4xx: the request itself is wrong; retrying will not help.
    BadRequest,
    /// A network error, a timeout, a 5xx, or a body that is not JSON.
    Transient,
}

impl ErrorClass {
    /// A short name for logs and status output.
    pub fn name(&self) -> &'static str {
        match self {
            ErrorClass::ConflictOtherPoller => "conflict",
            ErrorClass::ConflictWebhook => "webhook_conflict",
            ErrorClass::RateLimited(_) => "rate_limited",
            ErrorClass::Unauthorized => "unauthorized",
            ErrorClass::Migrated(_) => "migrated",
            ErrorClass::Forbidden => "forbidden",
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::Transient => "transient",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Sorts a teloxide error into its class.
pub fn classify(err: &RequestError) -> ErrorClass {
    match err {
        RequestError::RetryAfter(secs) => ErrorClass::RateLimited(secs.duration()),
        RequestError::MigrateToChatId(chat) => ErrorClass::Migrated(*chat),
        RequestError::Api(ApiError::InvalidToken) => ErrorClass::Unauthorized,
        RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => ErrorClass::ConflictOtherPoller,
        RequestError::Api(ApiError::CantGetUpdates) => ErrorClass::ConflictWebhook,
        RequestError::Api(api) => classify_description(&description(api)),
        RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
            ErrorClass::Transient
        }
    }
}

/// Sorts an error by the description Telegram sent with it.
pub fn classify_description(text: &str) -> ErrorClass {
    if text.starts_with("Conflict") {
        if text.contains("webhook") || text.contains("setWebhook") {
            ErrorClass::ConflictWebhook
        } else {
            ErrorClass::ConflictOtherPoller
        }
    } else if text.starts_with("Forbidden") || text.starts_with("Unauthorized: bot was kicked") {
        ErrorClass::Forbidden
    } else if text.starts_with("Unauthorized") || text == "Not Found" {
        // "Unauthorized", and a self-hosted Bot API server's
        // "Unauthorized: invalid token specified".
        ErrorClass::Unauthorized
    } else if text.starts_with("Too Many Requests") {
        // teloxide turns a 429 with `retry_after` into `RetryAfter`; one
        // without the parameter still must not be retried at once.
        ErrorClass::RateLimited(Duration::from_secs(1))
    } else if text.starts_with("Internal Server Error")
        || text.starts_with("Bad Gateway")
        || text.starts_with("Gateway")
        || text.starts_with("Service Unavailable")
    {
        ErrorClass::Transient
    } else {
        ErrorClass::BadRequest
    }
}

/// The description Telegram sent, as teloxide kept it.
pub fn description(err: &ApiError) -> String {
    match err {
        ApiError::Unknown(text) => text.clone(),
        known => known.to_string(),
    }
}

/// An error's text, safe to show anywhere: no token, however the error was
/// built, control characters escaped, a few hundred characters at most.
pub fn describe(err: &RequestError) -> String {
    let text = match err {
        RequestError::Api(api) => description(api),
        other => other.to_string(),
    };
    super::excerpt(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_texts_telegram_sends() {
        let cases = [
            (
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                ErrorClass::ConflictOtherPoller,
            ),
            (
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                ErrorClass::ConflictWebhook,
            ),
            (
                "Conflict: terminated by setWebhook request",
                ErrorClass::ConflictWebhook,
            ),
            ("Unauthorized", ErrorClass::Unauthorized),
            ("Not Found", ErrorClass::Unauthorized),
            (
                "Forbidden: bot was blocked by the user",
                ErrorClass::Forbidden,
            ),
            (
                "Forbidden: bot was kicked from the group chat",
                ErrorClass::Forbidden,
            ),
            (
                "Forbidden: bot is not a member of the group chat",
                ErrorClass::Forbidden,
            ),
            ("Forbidden: user is deactivated", ErrorClass::Forbidden),
            ("Internal Server Error: restart", ErrorClass::Transient),
            ("Bad Request: message text is empty", ErrorClass::BadRequest),
            (
                "Too Many Requests: retry after 3",
                ErrorClass::RateLimited(Duration::from_secs(1)),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(classify_description(text), expected, "text: {text}");
        }
    }

    #[test]
    fn classifies_teloxide_errors_through_their_parsed_form() {
        let parsed: ApiError = serde_json::from_value(serde_json::json!(
            "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
        ))
        .expect("teloxide parses a description string");
        assert_eq!(
            classify(&RequestError::Api(parsed)),
            ErrorClass::ConflictOtherPoller
        );
        let webhook: ApiError = serde_json::from_value(serde_json::json!(
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
        ))
        .expect("teloxide parses a description string");
        assert_eq!(
            classify(&RequestError::Api(webhook)),
            ErrorClass::ConflictWebhook
        );
        assert_eq!(
            classify(&RequestError::RetryAfter(
                teloxide::types::Seconds::from_seconds(3)
            )),
            ErrorClass::RateLimited(Duration::from_secs(3))
        );
        assert_eq!(
            classify(&RequestError::MigrateToChatId(ChatId(-1001234))),
            ErrorClass::Migrated(ChatId(-1001234))
        );
    }
}
