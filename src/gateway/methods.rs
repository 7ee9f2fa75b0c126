//! The methods of the Telegram Bot API, and what the local gateway does with
//! each.
//!
//! Bots run by botvisor call `http://127.0.0.1:<port>/bot<token>/<method>`
//! as if it were `api.telegram.org`. The gateway looks the method up here
//! (names are case-insensitive: teloxide sends `SendMessage`, the other
//! libraries `sendMessage`) and sorts it into a [`Class`]. A name that is not
//! here gets 404 `Not Found`, as Telegram's own server answers, so a typo in
//! a bot fails the same way behind the gateway as without it.
//!
//! # Which methods are sends
//!
//! A send is a method that creates, changes or removes a *message* in a
//! chat, and to which Telegram's flood limits apply (about one message a
//! second per chat, 20 a minute per group, 30 a second per bot). Sends go
//! through botvisor's paced, durable outbox. Edits and deletions are sends
//! too, not only because Telegram counts them, but because they must not
//! overtake the queued send that creates the message they change.
//!
//! Everything else that touches a chat is forwarded unpaced: chat actions,
//! reactions, pins and other administrative actions, answers to callback,
//! inline, web app, guest and join-request queries (they have deadlines of
//! seconds and are not messages the bot sends under its own limits),
//! streamed drafts (`sendMessageDraft`, `sendRichMessageDraft`: previews
//! that are worthless once late), stories, gifts and payments (a durable
//! outbox could replay a paid transfer after a crash). The entries of the
//! table say why for each borderline method.
//!
//! # Source
//!
//! The list is Bot API 10.2 (July 14, 2026): the method table of Telegram's
//! own server, `methods_` in `telegram-bot-api/Client.cpp` of
//! `tdlib/telegram-bot-api` (version 10.0), plus the methods of 10.1 and
//! 10.2 (`sendRichMessage`, `sendRichMessageDraft`,
//! `answerChatJoinRequestQuery`, `sendChatJoinRequestWebApp`,
//! `editEphemeralMessage*`, `deleteEphemeralMessage`), cross-checked
//! against the schema of aiogram 3.30.0 (Bot API 10.2) and grammY's
//! `@grammyjs/types` 4.0.0 (Bot API 10.2), which list the same 185
//! documented methods. Bot API 10.3 (August 24, 2026) added no methods (a
//! published 10.3 schema counts the same 185).
//! Besides the documented methods, the table keeps what the server also
//! answers: three deprecated aliases (`kickChatMember`,
//! `getChatMembersCount`, `setStickerSetThumb`) and two undocumented methods
//! (`sendCustomRequest`, `answerCustomQuery`), 190 names in all. `close`
//! and `logOut` are not in the server's table (it handles them before the
//! look-up) but are documented methods.

use std::cmp::Ordering;

/// What the gateway does with a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Creates, changes or removes a message in a chat: goes through the
    /// paced, durable outbox.
    Send,
    /// `getUpdates`: served from botvisor's own inbox, since botvisor is the
    /// one that polls Telegram.
    Updates,
    /// Answered by botvisor itself (`getMe`, `getWebhookInfo`,
    /// `deleteWebhook`), without a request to Telegram.
    Local,
    /// Refused (`setWebhook`, `logOut`, `close`): each would take the bot
    /// away from botvisor.
    Refused,
    /// Forwarded unchanged to Telegram.
    Forward,
}

/// One Bot API method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method {
    /// The canonical name, in camelCase as the Bot API documents it.
    pub name: &'static str,
    /// What the gateway does with it.
    pub class: Class,
}

/// The method called `name`, in any case (`SendMessage`, `sendmessage`);
/// `None` when the Bot API has no such method.
///
/// It allocates nothing: a name that is empty, longer than the longest
/// method or not all ASCII letters is refused before the binary search.
#[must_use]
pub fn lookup(name: &str) -> Option<Method> {
    let name = name.as_bytes();
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    METHODS
        .binary_search_by(|method| cmp_ignore_case(method.name.as_bytes(), name))
        .ok()
        .and_then(|index| METHODS.get(index).copied())
}

/// Every method, sorted by its lowercase name, which stays stable as
/// methods are added (for metrics labels and docs).
#[must_use]
pub fn all() -> &'static [Method] {
    &METHODS
}

/// Compares two names as their ASCII lowercase forms; the order `METHODS`
/// is sorted in and `lookup` searches by. `const` so that the order can be
/// checked when the crate compiles.
const fn cmp_ignore_case(left: &[u8], right: &[u8]) -> Ordering {
    let mut index = 0;
    while index < left.len() && index < right.len() {
        let l = left[index].to_ascii_lowercase();
        let r = right[index].to_ascii_lowercase();
        if l < r {
            return Ordering::Less;
        }
        if l > r {
            return Ordering::Greater;
        }
        index += 1;
    }
    if left.len() < right.len() {
        Ordering::Less
    } else if left.len() > right.len() {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// The length of the longest method name, so that `lookup` refuses a longer
/// name (say, a 10,000-character one) without searching.
const MAX_NAME_LEN: usize = {
    let mut max = 0;
    let mut i = 0;
    while i < METHODS.len() {
        if METHODS[i].name.len() > max {
            max = METHODS[i].name.len();
        }
        i += 1;
    }
    max
};

// The table must be strictly sorted (which also rules out duplicates, in
// any case) and hold only ASCII letters, or `lookup` would miss names; a
// mistake in an edit fails the build instead of a request.
const _: () = {
    let mut i = 0;
    while i < METHODS.len() {
        let name = METHODS[i].name.as_bytes();
        assert!(!name.is_empty(), "empty method name");
        let mut j = 0;
        while j < name.len() {
            assert!(
                name[j].is_ascii_alphabetic(),
                "method names are ASCII letters"
            );
            j += 1;
        }
        if i > 0 {
            assert!(
                matches!(
                    cmp_ignore_case(METHODS[i - 1].name.as_bytes(), name),
                    Ordering::Less
                ),
                "METHODS must be sorted by lowercase name, without duplicates"
            );
        }
        i += 1;
    }
};

/// Shorthand for the table's entries.
const fn m(name: &'static str, class: Class) -> Method {
    Method { name, class }
}

/// Every method, sorted by lowercase name for the binary search in
/// [`lookup`].
static METHODS: [Method; 190] = [
    m("addStickerToSet", Class::Forward),
    // Answers to queries are not messages, and Telegram drops them after a
    // deadline of seconds, which a paced answer could miss.
    m("answerCallbackQuery", Class::Forward),
    m("answerChatJoinRequestQuery", Class::Forward),
    // Not in the Bot API documentation, but in the server's method table (it
    // answers a TDLib custom query), so Telegram does not answer 404 for it.
    m("answerCustomQuery", Class::Forward),
    // Answers a guest query, which has a deadline; the message it posts is
    // the answer to the user's query, not one the bot sends on its own.
    m("answerGuestQuery", Class::Forward),
    m("answerInlineQuery", Class::Forward),
    m("answerPreCheckoutQuery", Class::Forward),
    m("answerShippingQuery", Class::Forward),
    // The resulting message is sent on behalf of the user, not the bot.
    m("answerWebAppQuery", Class::Forward),
    m("approveChatJoinRequest", Class::Forward),
    // An administrator's decision on a post someone else wrote; the
    // publication is scheduled by Telegram, not sent by the bot.
    m("approveSuggestedPost", Class::Forward),
    m("banChatMember", Class::Forward),
    m("banChatSenderChat", Class::Forward),
    m("close", Class::Refused),
    m("closeForumTopic", Class::Forward),
    m("closeGeneralForumTopic", Class::Forward),
    m("convertGiftToStars", Class::Forward),
    m("copyMessage", Class::Send),
    m("copyMessages", Class::Send),
    m("createChatInviteLink", Class::Forward),
    m("createChatSubscriptionInviteLink", Class::Forward),
    m("createForumTopic", Class::Forward),
    m("createInvoiceLink", Class::Forward),
    m("createNewStickerSet", Class::Forward),
    m("declineChatJoinRequest", Class::Forward),
    m("declineSuggestedPost", Class::Forward),
    // Reactions are not messages.
    m("deleteAllMessageReactions", Class::Forward),
    // Removes messages like deleteMessages, on behalf of a business
    // account; paced so it cannot overtake the queued send that created them.
    m("deleteBusinessMessages", Class::Send),
    m("deleteChatPhoto", Class::Forward),
    m("deleteChatStickerSet", Class::Forward),
    // Ephemeral messages (Bot API 10.2) are created by the paced send
    // methods, so their edits and deletions go the same way, in order.
    m("deleteEphemeralMessage", Class::Send),
    m("deleteForumTopic", Class::Forward),
    m("deleteMessage", Class::Send),
    m("deleteMessageReaction", Class::Forward),
    m("deleteMessages", Class::Send),
    m("deleteMyCommands", Class::Forward),
    m("deleteStickerFromSet", Class::Forward),
    m("deleteStickerSet", Class::Forward),
    m("deleteStory", Class::Forward),
    m("deleteWebhook", Class::Local),
    m("editChatInviteLink", Class::Forward),
    m("editChatSubscriptionInviteLink", Class::Forward),
    m("editEphemeralMessageCaption", Class::Send),
    m("editEphemeralMessageMedia", Class::Send),
    m("editEphemeralMessageReplyMarkup", Class::Send),
    m("editEphemeralMessageText", Class::Send),
    m("editForumTopic", Class::Forward),
    m("editGeneralForumTopic", Class::Forward),
    m("editMessageCaption", Class::Send),
    m("editMessageChecklist", Class::Send),
    m("editMessageLiveLocation", Class::Send),
    m("editMessageMedia", Class::Send),
    m("editMessageReplyMarkup", Class::Send),
    m("editMessageText", Class::Send),
    m("editStory", Class::Forward),
    m("editUserStarSubscription", Class::Forward),
    m("exportChatInviteLink", Class::Forward),
    m("forwardMessage", Class::Send),
    m("forwardMessages", Class::Send),
    m("getAvailableGifts", Class::Forward),
    m("getBusinessAccountGifts", Class::Forward),
    m("getBusinessAccountStarBalance", Class::Forward),
    m("getBusinessConnection", Class::Forward),
    m("getChat", Class::Forward),
    m("getChatAdministrators", Class::Forward),
    m("getChatGifts", Class::Forward),
    m("getChatMember", Class::Forward),
    m("getChatMemberCount", Class::Forward),
    // Deprecated alias of getChatMemberCount, still served by Telegram.
    m("getChatMembersCount", Class::Forward),
    m("getChatMenuButton", Class::Forward),
    m("getCustomEmojiStickers", Class::Forward),
    m("getFile", Class::Forward),
    m("getForumTopicIconStickers", Class::Forward),
    m("getGameHighScores", Class::Forward),
    m("getManagedBotAccessSettings", Class::Forward),
    m("getManagedBotToken", Class::Forward),
    m("getMe", Class::Local),
    m("getMyCommands", Class::Forward),
    m("getMyDefaultAdministratorRights", Class::Forward),
    m("getMyDescription", Class::Forward),
    m("getMyName", Class::Forward),
    m("getMyShortDescription", Class::Forward),
    m("getMyStarBalance", Class::Forward),
    m("getStarTransactions", Class::Forward),
    m("getStickerSet", Class::Forward),
    m("getUpdates", Class::Updates),
    m("getUserChatBoosts", Class::Forward),
    m("getUserGifts", Class::Forward),
    m("getUserPersonalChatMessages", Class::Forward),
    m("getUserProfileAudios", Class::Forward),
    m("getUserProfilePhotos", Class::Forward),
    m("getWebhookInfo", Class::Local),
    m("giftPremiumSubscription", Class::Forward),
    m("hideGeneralForumTopic", Class::Forward),
    // Deprecated alias of banChatMember, still served by Telegram.
    m("kickChatMember", Class::Forward),
    m("leaveChat", Class::Forward),
    m("logOut", Class::Refused),
    // An administrative action on an existing message, not a new one.
    m("pinChatMessage", Class::Forward),
    m("postStory", Class::Forward),
    m("promoteChatMember", Class::Forward),
    m("readBusinessMessage", Class::Forward),
    m("refundStarPayment", Class::Forward),
    m("removeBusinessAccountProfilePhoto", Class::Forward),
    m("removeChatVerification", Class::Forward),
    m("removeMyProfilePhoto", Class::Forward),
    m("removeUserVerification", Class::Forward),
    m("reopenForumTopic", Class::Forward),
    m("reopenGeneralForumTopic", Class::Forward),
    m("replaceManagedBotToken", Class::Forward),
    m("replaceStickerInSet", Class::Forward),
    m("repostStory", Class::Forward),
    m("restrictChatMember", Class::Forward),
    m("revokeChatInviteLink", Class::Forward),
    m("savePreparedInlineMessage", Class::Forward),
    m("savePreparedKeyboardButton", Class::Forward),
    m("sendAnimation", Class::Send),
    m("sendAudio", Class::Send),
    // A typing indicator, not a message; a stale one is worthless, so it must
    // not wait in the outbox.
    m("sendChatAction", Class::Forward),
    // Opens a Mini App for the user who asked to join; no message.
    m("sendChatJoinRequestWebApp", Class::Forward),
    m("sendChecklist", Class::Send),
    m("sendContact", Class::Send),
    // Not in the Bot API documentation, but in the server's method table, so
    // Telegram does not answer 404 for it.
    m("sendCustomRequest", Class::Forward),
    m("sendDice", Class::Send),
    m("sendDocument", Class::Send),
    m("sendGame", Class::Send),
    // A paid transfer of a gift, not a message the bot writes; replaying it from
    // a durable outbox after a crash could pay twice.
    m("sendGift", Class::Forward),
    m("sendInvoice", Class::Send),
    m("sendLivePhoto", Class::Send),
    m("sendLocation", Class::Send),
    m("sendMediaGroup", Class::Send),
    m("sendMessage", Class::Send),
    // A 30-second preview, sent again and again while a reply is generated,
    // not a message; pacing it to one a second would defeat its purpose.
    m("sendMessageDraft", Class::Forward),
    m("sendPaidMedia", Class::Send),
    m("sendPhoto", Class::Send),
    m("sendPoll", Class::Send),
    m("sendRichMessage", Class::Send),
    // Like sendMessageDraft: a streamed preview, not a message.
    m("sendRichMessageDraft", Class::Forward),
    m("sendSticker", Class::Send),
    m("sendVenue", Class::Send),
    m("sendVideo", Class::Send),
    m("sendVideoNote", Class::Send),
    m("sendVoice", Class::Send),
    m("setBusinessAccountBio", Class::Forward),
    m("setBusinessAccountGiftSettings", Class::Forward),
    m("setBusinessAccountName", Class::Forward),
    m("setBusinessAccountProfilePhoto", Class::Forward),
    m("setBusinessAccountUsername", Class::Forward),
    m("setChatAdministratorCustomTitle", Class::Forward),
    m("setChatDescription", Class::Forward),
    m("setChatMemberTag", Class::Forward),
    m("setChatMenuButton", Class::Forward),
    m("setChatPermissions", Class::Forward),
    m("setChatPhoto", Class::Forward),
    m("setChatStickerSet", Class::Forward),
    m("setChatTitle", Class::Forward),
    m("setCustomEmojiStickerSetThumbnail", Class::Forward),
    // Sets a score; the scoreboard edit it may trigger is Telegram's own.
    m("setGameScore", Class::Forward),
    m("setManagedBotAccessSettings", Class::Forward),
    // Reactions are not messages and have their own limits.
    m("setMessageReaction", Class::Forward),
    m("setMyCommands", Class::Forward),
    m("setMyDefaultAdministratorRights", Class::Forward),
    m("setMyDescription", Class::Forward),
    m("setMyName", Class::Forward),
    m("setMyProfilePhoto", Class::Forward),
    m("setMyShortDescription", Class::Forward),
    m("setPassportDataErrors", Class::Forward),
    m("setStickerEmojiList", Class::Forward),
    m("setStickerKeywords", Class::Forward),
    m("setStickerMaskPosition", Class::Forward),
    m("setStickerPositionInSet", Class::Forward),
    // Deprecated alias of setStickerSetThumbnail, still served by Telegram.
    m("setStickerSetThumb", Class::Forward),
    m("setStickerSetThumbnail", Class::Forward),
    m("setStickerSetTitle", Class::Forward),
    m("setUserEmojiStatus", Class::Forward),
    m("setWebhook", Class::Refused),
    // Changes the live location message, like editMessageLiveLocation.
    m("stopMessageLiveLocation", Class::Send),
    // Changes the poll message (it shows as closed), like an edit.
    m("stopPoll", Class::Send),
    m("transferBusinessAccountStars", Class::Forward),
    m("transferGift", Class::Forward),
    m("unbanChatMember", Class::Forward),
    m("unbanChatSenderChat", Class::Forward),
    m("unhideGeneralForumTopic", Class::Forward),
    m("unpinAllChatMessages", Class::Forward),
    m("unpinAllForumTopicMessages", Class::Forward),
    m("unpinAllGeneralForumTopicMessages", Class::Forward),
    m("unpinChatMessage", Class::Forward),
    m("upgradeGift", Class::Forward),
    m("uploadStickerFile", Class::Forward),
    m("verifyChat", Class::Forward),
    m("verifyUser", Class::Forward),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `name` with its first letter in upper case, as teloxide sends it.
    fn pascal(name: &str) -> String {
        let mut chars = name.chars();
        match chars.next() {
            Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
            None => String::new(),
        }
    }

    #[test]
    fn every_method_is_found_in_any_case() {
        for method in all() {
            let forms = [
                method.name.to_string(),
                method.name.to_ascii_lowercase(),
                method.name.to_ascii_uppercase(),
                pascal(method.name),
            ];
            for form in forms {
                assert_eq!(lookup(&form), Some(*method), "{form}");
            }
        }
    }

    #[test]
    fn table_is_sorted_without_duplicates() {
        for pair in all().windows(2) {
            let (a, b) = (pair[0].name, pair[1].name);
            assert!(
                a.to_ascii_lowercase() < b.to_ascii_lowercase(),
                "{a} before {b}"
            );
        }
        assert_eq!(all().len(), 190);
    }

    #[test]
    fn max_name_len_is_the_longest_name() {
        let longest = all().iter().map(|m| m.name.len()).max();
        assert_eq!(longest, Some(MAX_NAME_LEN));
        assert_eq!(MAX_NAME_LEN, "unpinAllGeneralForumTopicMessages".len());
    }

    #[test]
    fn known_classes() {
        let cases = [
            ("sendMessage", Class::Send),
            ("SendPhoto", Class::Send),
            ("editMessageText", Class::Send),
            ("deleteMessages", Class::Send),
            ("getUpdates", Class::Updates),
            ("getWebhookInfo", Class::Local),
            ("deleteWebhook", Class::Local),
            ("getMe", Class::Local),
            ("setWebhook", Class::Refused),
            ("logOut", Class::Refused),
            ("close", Class::Refused),
            ("answerCallbackQuery", Class::Forward),
            ("getChat", Class::Forward),
            ("sendChatAction", Class::Forward),
            ("setMyCommands", Class::Forward),
            ("getFile", Class::Forward),
            ("sendMessageDraft", Class::Forward),
            ("kickChatMember", Class::Forward),
        ];
        for (name, class) in cases {
            assert_eq!(lookup(name).map(|m| m.class), Some(class), "{name}");
        }
    }

    #[test]
    fn canonical_name_is_returned() {
        assert_eq!(lookup("SENDMESSAGE").map(|m| m.name), Some("sendMessage"));
        assert_eq!(lookup("logout").map(|m| m.name), Some("logOut"));
    }

    /// The exact sets of the classes other than `Forward`, so that a change
    /// of class is a deliberate edit of this test too.
    #[test]
    fn exact_class_sets() {
        let names = |class: Class| -> Vec<&str> {
            all()
                .iter()
                .filter(|m| m.class == class)
                .map(|m| m.name)
                .collect()
        };
        let mut send = vec![
            "sendMessage",
            "forwardMessage",
            "forwardMessages",
            "copyMessage",
            "copyMessages",
            "sendPhoto",
            "sendLivePhoto",
            "sendAudio",
            "sendDocument",
            "sendVideo",
            "sendAnimation",
            "sendVoice",
            "sendVideoNote",
            "sendPaidMedia",
            "sendMediaGroup",
            "sendLocation",
            "sendVenue",
            "sendContact",
            "sendPoll",
            "sendChecklist",
            "sendDice",
            "sendSticker",
            "sendInvoice",
            "sendGame",
            "sendRichMessage",
            "editMessageText",
            "editMessageCaption",
            "editMessageMedia",
            "editMessageLiveLocation",
            "stopMessageLiveLocation",
            "editMessageChecklist",
            "editMessageReplyMarkup",
            "stopPoll",
            "deleteMessage",
            "deleteMessages",
            "deleteBusinessMessages",
            "editEphemeralMessageText",
            "editEphemeralMessageMedia",
            "editEphemeralMessageCaption",
            "editEphemeralMessageReplyMarkup",
            "deleteEphemeralMessage",
        ];
        send.sort_by_key(|name| name.to_ascii_lowercase());
        assert_eq!(names(Class::Send), send);
        assert_eq!(names(Class::Updates), ["getUpdates"]);
        assert_eq!(
            names(Class::Local),
            ["deleteWebhook", "getMe", "getWebhookInfo"]
        );
        assert_eq!(names(Class::Refused), ["close", "logOut", "setWebhook"]);
    }

    #[test]
    fn unknown_names_are_not_found() {
        let long = "a".repeat(10_000);
        let long_method = "sendMessage".repeat(1_000);
        let cases = [
            "sendMessages",
            "sendMessag",
            "foo",
            "",
            "send message",
            "sendMessage ",
            "send_message",
            "sendMessage/",
            "sendMessage2",
            long.as_str(),
            long_method.as_str(),
            "sendMessagé",
            "ѕendMessage",
            "sendMessage\u{0}",
            "setwebhookk",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "zzzz",
        ];
        for name in cases {
            assert_eq!(lookup(name), None, "{name:?}");
        }
    }

    #[test]
    fn non_ascii_that_lowercases_to_ascii_is_refused() {
        // The Kelvin sign lowercases to `k` in Unicode; names are ASCII only.
        assert_eq!(lookup("\u{212A}ickChatMember"), None);
    }
}
