//! Files and media: uploads in each client library's multipart style
//! (python-telegram-bot's part named after the parameter, aiogram's and
//! grammY's `attach://`, teloxide's `attach://` and its `file_id` text
//! field), JSON with a `file_id`, chunked bodies, large bodies and the 413,
//! sendMediaGroup, getFile and downloads, injected photos and documents,
//! forward/copy/delete, caption and markup edits, and the rate limits.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Raw, TOKEN, WAIT, alice, alice_chat, bounded, fake, post_json, send, teloxide_bot};
use fake_telegram::{Chat, FakeTelegram, MediaKind, MemberStatus, RateLimits};
use serde_json::{Value, json};
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{
    FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia, InputMediaDocument,
    InputMediaPhoto, MessageId, MessageKind, MessageOrigin, UpdateKind,
};
use teloxide::{ApiError, RequestError};

/// A tiny but real PNG header: 2×3 pixels.
fn png() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3, 8, 6, 0, 0, 0]);
    b.extend_from_slice(b"rest of the image");
    b
}

/// `n` bytes of a repeating, position-dependent pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
}

/// A multipart body written byte for byte the way a client library does.
struct Multipart {
    boundary: String,
    body: Vec<u8>,
    first: bool,
}

impl Multipart {
    fn new(boundary: &str) -> Self {
        Multipart {
            boundary: boundary.to_owned(),
            body: Vec::new(),
            first: true,
        }
    }

    /// A part with these header lines and content.
    fn part(mut self, headers: &[&str], content: &[u8]) -> Self {
        if self.first {
            self.body
                .extend_from_slice(format!("--{}\r\n", self.boundary).as_bytes());
            self.first = false;
        } else {
            self.body
                .extend_from_slice(format!("\r\n--{}\r\n", self.boundary).as_bytes());
        }
        for h in headers {
            self.body.extend_from_slice(h.as_bytes());
            self.body.extend_from_slice(b"\r\n");
        }
        self.body.extend_from_slice(b"\r\n");
        self.body.extend_from_slice(content);
        self
    }

    /// A text field as python-telegram-bot (httpx) writes it.
    fn text(self, name: &str, value: &str) -> Self {
        self.part(
            &[&format!("Content-Disposition: form-data; name=\"{name}\"")],
            value.as_bytes(),
        )
    }

    fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("\r\n--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

fn method_url(tg: &FakeTelegram, method: &str) -> String {
    format!("{}/bot{TOKEN}/{method}", tg.url())
}

/// POSTs a multipart body with a Content-Length.
async fn post_multipart(tg: &FakeTelegram, method: &str, form: Multipart) -> Raw {
    let (content_type, body) = form.finish();
    send(
        reqwest::Client::new()
            .post(method_url(tg, method))
            .header("content-type", content_type)
            .body(body),
    )
    .await
}

/// POSTs a multipart body with chunked transfer encoding, in 64 KiB chunks.
async fn post_chunked(tg: &FakeTelegram, method: &str, form: Multipart) -> Raw {
    let (content_type, body) = form.finish();
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    send(
        reqwest::Client::new()
            .post(method_url(tg, method))
            .header("content-type", content_type)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            ))),
    )
    .await
}

fn ok(raw: &Raw) -> Value {
    assert_eq!(raw.status, 200, "{}", raw.text);
    raw.json()["result"].clone()
}

fn description(raw: &Raw) -> String {
    raw.json()["description"]
        .as_str()
        .expect("description")
        .to_owned()
}

#[tokio::test]
async fn python_telegram_bot_style_file_part_named_after_the_parameter() {
    bounded(async {
        let tg = fake().await;
        let image = png();
        let form = Multipart::new("ptb-boundary-1234")
            .text("chat_id", "1001")
            .text("caption", "a cat")
            .part(
                &[
                    "Content-Disposition: form-data; name=\"photo\"; filename=\"cat.png\"",
                    "Content-Type: image/png",
                ],
                &image,
            );
        let msg = ok(&post_multipart(&tg, "sendPhoto", form).await);
        assert_eq!(msg["caption"], "a cat");
        let size = &msg["photo"][0];
        assert_eq!(
            (size["width"].clone(), size["height"].clone()),
            (json!(2), json!(3))
        );
        assert_eq!(size["file_size"], image.len());
        let file_id = size["file_id"].as_str().expect("file_id");
        assert!(size["file_unique_id"].is_string());

        let sent = tg.wait_for_sent(TOKEN, 1, WAIT).await.expect("sent");
        let m = &sent[0];
        assert_eq!((m.chat_id, m.method.as_str()), (1001, "sendphoto"));
        assert!(m.is(MediaKind::Photo));
        assert_eq!(m.caption.as_deref(), Some("a cat"));
        assert_eq!(m.text, "a cat");
        let file = m.media.as_ref().expect("media");
        assert_eq!(file.bytes, image);
        assert_eq!(file.file_id, file_id);
        assert_eq!(file.file_name.as_deref(), Some("cat.png"));
        assert_eq!(tg.file(file_id).expect("stored").size, image.len() as u64);
        // The request is recorded with the file summarized, not its bytes.
        let req = tg
            .wait_for_request(TOKEN, "sendPhoto", 1, WAIT)
            .await
            .expect("req");
        assert_eq!(req.body["photo"]["size"], image.len());
        assert_eq!(req.body["photo"]["file_name"], "cat.png");
    })
    .await;
}

#[tokio::test]
async fn aiogram_style_attach_with_text_plain_fields() {
    bounded(async {
        let tg = fake().await;
        let data = b"%PDF-1.4 fake report".to_vec();
        let form = Multipart::new("a1b2c3d4")
            .part(
                &[
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Disposition: form-data; name=\"chat_id\"",
                ],
                b"1001",
            )
            .part(
                &[
                    "Content-Type: text/plain; charset=utf-8",
                    "Content-Disposition: form-data; name=\"document\"",
                ],
                b"attach://Zm9v_-bA2",
            )
            .part(
                &[
                    "Content-Type: application/octet-stream",
                    "Content-Disposition: form-data; name=\"Zm9v_-bA2\"; filename=\"report.pdf\"",
                ],
                &data,
            );
        let msg = ok(&post_chunked(&tg, "sendDocument", form).await);
        let doc = &msg["document"];
        assert_eq!(doc["file_name"], "report.pdf");
        assert_eq!(doc["mime_type"], "application/pdf");
        assert_eq!(doc["file_size"], data.len());
        let sent = tg.sent_messages(TOKEN);
        assert!(sent[0].is(MediaKind::Document));
        assert_eq!(sent[0].media.as_ref().expect("media").bytes, data);
        assert_eq!(sent[0].caption, None);
    })
    .await;
}

#[tokio::test]
async fn grammy_style_chunked_attach_with_bare_filename() {
    bounded(async {
        let tg = fake().await;
        let clip = pattern(300_000);
        let boundary = "----------abcdefghijklmnopqrstuvwxyz012345";
        // grammY: no space after the colons, an unquoted file name, no
        // Content-Type on the file, no CRLF after the closing delimiter; the
        // body streamed with chunked transfer encoding.
        let mut body = format!(
            "--{boundary}\r\ncontent-disposition:form-data;name=\"chat_id\"\r\n\r\n1001\
             \r\n--{boundary}\r\ncontent-disposition:form-data;name=\"caption\"\r\n\r\nclip\
             \r\n--{boundary}\r\ncontent-disposition:form-data;name=\"video\"\r\n\r\nattach://k3j4h5\
             \r\n--{boundary}\r\ncontent-disposition:form-data;name=\"k3j4h5\";filename=my clip.mp4\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&clip);
        body.extend_from_slice(format!("\r\n--{boundary}--").as_bytes());
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            body.chunks(7_777).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let raw = send(
            reqwest::Client::new()
                .post(method_url(&tg, "sendVideo"))
                .header("content-type", format!("multipart/form-data; boundary={boundary}"))
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))),
        )
        .await;
        let msg = ok(&raw);
        assert_eq!(msg["video"]["file_name"], "my clip.mp4");
        assert_eq!(msg["video"]["mime_type"], "video/mp4");
        assert_eq!(msg["caption"], "clip");
        let sent = tg.sent_messages(TOKEN);
        assert_eq!(sent[0].media.as_ref().expect("media").bytes, clip);
    })
    .await;
}

#[tokio::test]
async fn teloxide_uploads_resends_by_file_id_and_downloads() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let image = png();
        // An upload: teloxide sends `photo=attach://<id>` and a part <id>.
        let msg = bot
            .send_photo(
                ChatId(1001),
                InputFile::memory(image.clone()).file_name("p.png"),
            )
            .caption("first")
            .await
            .expect("sendPhoto");
        let photo = msg.photo().expect("a photo message");
        assert_eq!((photo[0].width, photo[0].height), (2, 3));
        assert_eq!(msg.caption(), Some("first"));
        let file_id = photo[0].file.id.clone();
        // Again by file_id: multipart with `photo` as a text field.
        let again = bot
            .send_photo(ChatId(1002), InputFile::file_id(file_id.clone()))
            .await
            .expect("by file_id");
        assert_eq!(again.photo().expect("photo")[0].file.id, file_id);
        let req = tg
            .wait_for_request(TOKEN, "sendPhoto", 2, WAIT)
            .await
            .expect("req");
        assert_eq!(req.body["photo"], file_id.0.as_str());
        // An unknown file_id.
        let err = bot
            .send_photo(ChatId(1002), InputFile::file_id(FileId("AgACnope".into())))
            .await
            .expect_err("unknown file_id");
        assert!(
            matches!(&err, RequestError::Api(ApiError::WrongFileIdOrUrl)),
            "{err:?}"
        );
        // getFile and the download (teloxide escapes the path's `/` as %2F).
        let file = bot.get_file(file_id.clone()).await.expect("getFile");
        assert_eq!(file.path, "photos/file_1.jpg");
        assert_eq!(file.meta.size as usize, image.len());
        let mut out = Vec::new();
        bot.download_file(&file.path, &mut out)
            .await
            .expect("download");
        assert_eq!(out, image);
        let dl = tg
            .wait_for_request(TOKEN, "file", 1, WAIT)
            .await
            .expect("recorded");
        assert_eq!(dl.body["file_path"], "photos/file_1.jpg");
        assert_eq!(dl.status(), Some(200));
        assert_eq!(tg.sent_messages(TOKEN).len(), 2);
    })
    .await;
}

#[tokio::test]
async fn every_media_method_parses_with_teloxide() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let chat = ChatId(1001);
        let file = |name: &'static str| InputFile::memory(pattern(1000)).file_name(name);
        let doc = bot
            .send_document(chat, file("a.txt"))
            .await
            .expect("document");
        let d = doc.document().expect("document");
        assert_eq!(d.file_name.as_deref(), Some("a.txt"));
        assert_eq!(
            d.mime_type.as_ref().map(|m| m.essence_str()),
            Some("text/plain")
        );
        let audio = bot
            .send_audio(chat, file("song.mp3"))
            .performer("Band")
            .duration(61)
            .await
            .expect("audio");
        let a = audio.audio().expect("audio");
        assert_eq!(
            (a.performer.as_deref(), a.duration.seconds()),
            (Some("Band"), 61)
        );
        let video = bot
            .send_video(chat, file("v.mp4"))
            .width(640)
            .height(480)
            .await
            .expect("video");
        assert_eq!(video.video().expect("video").width, 640);
        let anim = bot
            .send_animation(chat, file("a.gif"))
            .await
            .expect("animation");
        assert!(anim.animation().is_some());
        let voice = bot.send_voice(chat, file("v.ogg")).await.expect("voice");
        assert!(voice.voice().is_some());
        let note = bot
            .send_video_note(chat, file("n.mp4"))
            .await
            .expect("video note");
        assert!(note.video_note().is_some());
        let sticker = bot
            .send_sticker(chat, file("s.webp"))
            .await
            .expect("sticker");
        assert!(sticker.sticker().expect("sticker").is_regular());
        let sent = tg.sent_messages(TOKEN);
        let kinds: Vec<_> = sent.iter().map(|m| m.media_kind.expect("media")).collect();
        assert_eq!(
            kinds,
            [
                MediaKind::Document,
                MediaKind::Audio,
                MediaKind::Video,
                MediaKind::Animation,
                MediaKind::Voice,
                MediaKind::VideoNote,
                MediaKind::Sticker,
            ]
        );
        assert!(
            sent.iter()
                .all(|m| m.media.as_ref().expect("file").size == 1000)
        );
    })
    .await;
}

#[tokio::test]
async fn json_and_form_bodies_with_a_file_id_or_a_url() {
    bounded(async {
        let tg = fake().await;
        let stored = tg.add_file(MediaKind::Document, b"hello".to_vec(), Some("hi.txt"));
        let msg = ok(&post_json(
            &tg,
            TOKEN,
            "sendDocument",
            json!({"chat_id": 1001, "document": stored.file_id, "caption": "again"}),
        )
        .await);
        assert_eq!(msg["document"]["file_id"], stored.file_id.as_str());
        assert_eq!(msg["document"]["file_name"], "hi.txt");
        let form = send(
            reqwest::Client::new()
                .post(method_url(&tg, "senddocument"))
                .form(&[("chat_id", "1001"), ("document", stored.file_id.as_str())]),
        )
        .await;
        assert_eq!(ok(&form)["document"]["file_size"], 5);
        let url = ok(&post_json(
            &tg,
            TOKEN,
            "sendPhoto",
            json!({"chat_id": 1001, "photo": "https://example.com/pics/cat.jpg"}),
        )
        .await);
        let url_id = url["photo"][0]["file_id"].as_str().expect("id").to_owned();
        let url_file = tg.file(&url_id).expect("stored");
        assert_eq!(
            url_file.url.as_deref(),
            Some("https://example.com/pics/cat.jpg")
        );
        assert!(url_file.bytes.is_empty());
        let sent = tg.sent_messages(TOKEN);
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].media.as_ref().expect("file").bytes, &b"hello"[..]);

        // The errors.
        let missing = post_json(&tg, TOKEN, "sendVideoNote", json!({"chat_id": 1001})).await;
        assert_eq!(missing.status, 400);
        assert_eq!(
            description(&missing),
            "Bad Request: there is no video note in the request"
        );
        let unknown = post_json(
            &tg,
            TOKEN,
            "sendDocument",
            json!({"chat_id": 1001, "document": "BQACnothing"}),
        )
        .await;
        assert_eq!(
            description(&unknown),
            "Bad Request: wrong file identifier/HTTP URL specified"
        );
        let long = post_json(
            &tg,
            TOKEN,
            "sendDocument",
            json!({"chat_id": 1001, "document": stored.file_id, "caption": "x".repeat(1025)}),
        )
        .await;
        assert_eq!(
            description(&long),
            "Bad Request: message caption is too long"
        );
        let no_chat = post_json(
            &tg,
            TOKEN,
            "sendDocument",
            json!({"chat_id": "@nobody", "document": stored.file_id}),
        )
        .await;
        assert_eq!(description(&no_chat), "Bad Request: chat not found");
        let bad_body = send(
            reqwest::Client::new()
                .post(method_url(&tg, "sendDocument"))
                .header("content-type", "multipart/form-data; boundary=zz")
                .body("--zz\r\nno end"),
        )
        .await;
        assert_eq!(bad_body.status, 400);
        assert_eq!(tg.sent_messages(TOKEN).len(), 3);
    })
    .await;
}

#[tokio::test]
async fn send_media_group_in_each_style() {
    bounded(async {
        let tg = fake().await;
        let first = png();
        let second = pattern(2048);
        let stored = tg.add_file(MediaKind::Photo, png(), None);
        // python-telegram-bot / aiogram / grammY: `media` is JSON text naming
        // attached parts.
        let media = json!([
            {"type": "photo", "media": "attach://one", "caption": "first"},
            {"type": "photo", "media": "attach://two", "parse_mode": "HTML"},
            {"type": "photo", "media": stored.file_id},
        ]);
        let form = Multipart::new("group")
            .text("chat_id", "-1001234567890")
            .text("media", &media.to_string())
            .part(
                &["Content-Disposition: form-data; name=\"one\"; filename=\"1.png\""],
                &first,
            )
            .part(
                &["Content-Disposition: form-data; name=\"two\"; filename=\"2.jpg\""],
                &second,
            );
        let result = ok(&post_multipart(&tg, "sendMediaGroup", form).await);
        let messages = result.as_array().expect("an array");
        assert_eq!(messages.len(), 3);
        let group = messages[0]["media_group_id"].as_str().expect("group id");
        assert!(messages.iter().all(|m| m["media_group_id"] == group));
        assert_eq!(messages[0]["caption"], "first");
        assert!(messages[1].get("caption").is_none());
        assert_eq!(messages[2]["photo"][0]["file_id"], stored.file_id.as_str());
        let sent = tg.wait_for_sent(TOKEN, 3, WAIT).await.expect("three sent");
        assert_eq!(sent[0].media.as_ref().expect("file").bytes, first);
        assert_eq!(sent[1].media.as_ref().expect("file").bytes, second);
        assert_eq!(sent[1].parse_mode.as_deref(), Some("HTML"));
        assert!(
            sent.iter()
                .all(|m| m.media_group_id.as_deref() == Some(group)
                    && m.method == "sendmediagroup"
                    && m.chat_id == -1_001_234_567_890)
        );

        // teloxide: a real Vec<Message> back.
        let bot = teloxide_bot(&tg, TOKEN);
        let docs = bot
            .send_media_group(
                ChatId(1001),
                [
                    InputMedia::Document(InputMediaDocument::new(InputFile::memory(
                        b"one".to_vec(),
                    ))),
                    InputMedia::Document(
                        InputMediaDocument::new(InputFile::memory(b"two".to_vec())).caption("both"),
                    ),
                ],
            )
            .await
            .expect("a document album");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].media_group_id(), docs[1].media_group_id());
        assert_ne!(
            docs[0].media_group_id().map(|g| g.0.clone()),
            Some(group.to_owned())
        );

        // Wrong sizes and types.
        let one = post_json(
            &tg,
            TOKEN,
            "sendMediaGroup",
            json!({"chat_id": 1001, "media": [{"type": "photo", "media": stored.file_id}]}),
        )
        .await;
        assert_eq!(
            description(&one),
            "Bad Request: wrong number of media in the group"
        );
        let eleven: Vec<Value> = (0..11)
            .map(|_| json!({"type": "photo", "media": stored.file_id}))
            .collect();
        let many = post_json(
            &tg,
            TOKEN,
            "sendMediaGroup",
            json!({"chat_id": 1001, "media": eleven}),
        )
        .await;
        assert_eq!(
            description(&many),
            "Bad Request: too many messages to send as an album"
        );
        let mixed = bot
            .send_media_group(
                ChatId(1001),
                [
                    InputMedia::Photo(InputMediaPhoto::new(InputFile::file_id(
                        stored.file_id.clone().into(),
                    ))),
                    InputMedia::Document(InputMediaDocument::new(InputFile::memory(b"x".to_vec()))),
                ],
            )
            .await
            .expect_err("documents only with documents");
        assert!(
            format!("{mixed:?}").contains("document can't be mixed with other media types"),
            "{mixed:?}"
        );
        let missing = post_json(
            &tg,
            TOKEN,
            "sendMediaGroup",
            json!({"chat_id": 1001, "media": [
                {"type": "photo", "media": "attach://gone"},
                {"type": "photo", "media": stored.file_id},
            ]}),
        )
        .await;
        assert_eq!(
            description(&missing),
            "Bad Request: can't parse InputMedia: media not found"
        );
        assert_eq!(tg.sent_messages(TOKEN).len(), 5);
    })
    .await;
}

#[tokio::test]
async fn get_file_and_raw_downloads() {
    bounded(async {
        let tg = fake().await;
        let (_, file_id) = tg.inject_document(
            TOKEN,
            &alice_chat(),
            &alice(),
            b"{\"a\":1}".to_vec(),
            "data.json",
            None,
        );
        let file = ok(&post_json(&tg, TOKEN, "getFile", json!({"file_id": file_id})).await);
        assert_eq!(file["file_id"], file_id.as_str());
        assert_eq!(file["file_size"], 7);
        let path = file["file_path"].as_str().expect("path").to_owned();
        assert_eq!(path, "documents/file_1.json");
        let client = reqwest::Client::new();
        for url in [
            format!("{}/file/bot{TOKEN}/{path}", tg.url()),
            format!("{}/file/bot{TOKEN}/{}", tg.url(), path.replace('/', "%2F")),
        ] {
            let raw = send(client.get(&url)).await;
            assert_eq!(raw.status, 200);
            assert_eq!(raw.content_type, "application/json");
            assert_eq!(raw.text, "{\"a\":1}");
        }
        let wrong_token = send(client.get(format!("{}/file/bot1:nope/{path}", tg.url()))).await;
        assert_eq!(wrong_token.status, 401);
        assert_eq!(
            wrong_token.json(),
            json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
        );
        let unknown =
            send(client.get(format!("{}/file/bot{TOKEN}/documents/nope", tg.url()))).await;
        assert_eq!(unknown.status, 404);
        assert_eq!(
            unknown.json(),
            json!({"ok": false, "error_code": 404, "description": "Not Found"})
        );
        let bad_id = post_json(&tg, TOKEN, "getFile", json!({"file_id": "nope"})).await;
        assert_eq!(description(&bad_id), "Bad Request: invalid file_id");
        let downloads = tg.requests_of(TOKEN, "file");
        assert_eq!(downloads.len(), 3);
        assert_eq!(
            downloads.iter().map(|r| r.status()).collect::<Vec<_>>(),
            [Some(200), Some(200), Some(404)]
        );
    })
    .await;
}

#[tokio::test]
async fn injected_photo_and_document_parse_with_teloxide() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let image = png();
        let (photo_update, photo_id) =
            tg.inject_photo(TOKEN, &alice_chat(), &alice(), image.clone(), Some("look"));
        let (_, doc_id) = tg.inject_document(
            TOKEN,
            &alice_chat(),
            &alice(),
            b"%PDF".to_vec(),
            "cv.pdf",
            Some("/apply now"),
        );
        let updates = bot.get_updates().await.expect("getUpdates");
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].id.0, photo_update);
        let UpdateKind::Message(first) = &updates[0].kind else {
            panic!("a message update");
        };
        let photo = first.photo().expect("a photo");
        assert_eq!(photo[0].file.id.0, photo_id);
        assert_eq!((photo[0].width, photo[0].height), (2, 3));
        assert_eq!(photo[0].file.size as usize, image.len());
        assert_eq!(first.caption(), Some("look"));
        let UpdateKind::Message(second) = &updates[1].kind else {
            panic!("a message update");
        };
        let doc = second.document().expect("a document");
        assert_eq!(doc.file.id.0, doc_id);
        assert_eq!(doc.file_name.as_deref(), Some("cv.pdf"));
        assert_eq!(
            doc.mime_type.as_ref().map(|m| m.essence_str()),
            Some("application/pdf")
        );
        assert_eq!(second.caption(), Some("/apply now"));
        let stored = tg.file(&doc_id).expect("stored");
        assert_eq!(
            (&stored.bytes[..], stored.kind),
            (&b"%PDF"[..], MediaKind::Document)
        );
        // The bot can fetch what the user sent.
        let file = bot.get_file(FileId(photo_id)).await.expect("getFile");
        let mut out = Vec::new();
        bot.download_file(&file.path, &mut out)
            .await
            .expect("download");
        assert_eq!(out, image);
    })
    .await;
}

#[tokio::test]
async fn twenty_megabyte_upload_and_download() {
    bounded(async {
        let tg = fake().await;
        let data = pattern(20 * 1024 * 1024);
        let form = Multipart::new("big").text("chat_id", "1001").part(
            &[
                "Content-Disposition: form-data; name=\"document\"; filename=\"big.bin\"",
                "Content-Type: application/octet-stream",
            ],
            &data,
        );
        let msg = ok(&post_multipart(&tg, "sendDocument", form).await);
        assert_eq!(msg["document"]["file_size"], data.len());
        let file_id = msg["document"]["file_id"].as_str().expect("id");
        let stored = tg.file(file_id).expect("stored");
        assert_eq!(stored.size, data.len() as u64);
        assert!(stored.bytes == data, "the bytes arrive intact");
        assert_eq!(stored.sha256_hex().len(), 64);
        let file = ok(&post_json(&tg, TOKEN, "getFile", json!({"file_id": file_id})).await);
        let resp = reqwest::get(format!(
            "{}/file/bot{TOKEN}/{}",
            tg.url(),
            file["file_path"].as_str().expect("path")
        ))
        .await
        .expect("download");
        assert_eq!(resp.status(), 200);
        assert!(resp.bytes().await.expect("body") == data);
        // Over 20 MB, getFile refuses, as Telegram does.
        let over = tg.add_file(MediaKind::Document, pattern(20 * 1024 * 1024 + 1), None);
        let raw = post_json(&tg, TOKEN, "getFile", json!({"file_id": over.file_id})).await;
        assert_eq!(description(&raw), "Bad Request: file is too big");
    })
    .await;
}

#[tokio::test]
async fn bodies_over_the_cap_get_413() {
    bounded(async {
        let tg = fake().await;
        let expected =
            json!({"ok": false, "error_code": 413, "description": "Request Entity Too Large"});
        // With a Content-Length.
        let big = vec![b'x'; 53 * 1024 * 1024];
        let raw = send(
            reqwest::Client::new()
                .post(method_url(&tg, "sendDocument"))
                .header("content-type", "multipart/form-data; boundary=b")
                .body(big),
        )
        .await;
        assert_eq!((raw.status, raw.json()), (413, expected.clone()));
        // Chunked.
        let chunk = Bytes::from(vec![b'y'; 1024 * 1024]);
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..53).map(|_| Ok(chunk.clone())).collect();
        let raw = send(
            reqwest::Client::new()
                .post(method_url(&tg, "sendDocument"))
                .header("content-type", "multipart/form-data; boundary=b")
                .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                    chunks,
                ))),
        )
        .await;
        assert_eq!((raw.status, raw.json()), (413, expected));
        let recorded = tg.requests_of(TOKEN, "sendDocument");
        assert_eq!(recorded.len(), 2);
        assert!(recorded.iter().all(|r| r.status() == Some(413)));
        assert!(tg.sent_messages(TOKEN).is_empty());
        // The fake is fine afterwards.
        assert_eq!(post_json(&tg, TOKEN, "getMe", json!({})).await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn forward_copy_and_delete() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let chat = alice_chat();
        let group = Chat::supergroup(-1_001_000_000_001, "Team");
        tg.add_chat(&group);
        let (_, file_id) = tg.inject_photo(TOKEN, &chat, &alice(), png(), Some("from alice"));
        bot.get_updates().await.expect("getUpdates");
        // The user's photo is message 1 in Alice's chat.
        let fwd = bot
            .forward_message(ChatId(group.id), ChatId(chat.id), MessageId(1))
            .await
            .expect("forward");
        assert_eq!(fwd.photo().expect("photo")[0].file.id.0, file_id);
        assert_eq!(fwd.caption(), Some("from alice"));
        match fwd.forward_origin() {
            Some(MessageOrigin::User { sender_user, .. }) => assert_eq!(sender_user.id.0, 1001),
            other => panic!("forward origin {other:?}"),
        }
        let copy = bot
            .copy_message(ChatId(group.id), ChatId(chat.id), MessageId(1))
            .caption("copied")
            .await
            .expect("copy");
        assert_eq!(copy, MessageId(fwd.id.0 + 1));
        let sent = tg.sent_messages(TOKEN);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[0].method.as_str(), sent[0].from_message),
            ("forwardmessage", Some((chat.id, 1)))
        );
        assert_eq!(
            (sent[1].method.as_str(), sent[1].caption.as_deref()),
            ("copymessage", Some("copied"))
        );
        assert_eq!(sent[1].media.as_ref().expect("file").file_id, file_id);
        // A forward of a text message the bot sent.
        let text = bot
            .send_message(ChatId(chat.id), "hello")
            .await
            .expect("send");
        let fwd_text = bot
            .forward_message(ChatId(group.id), ChatId(chat.id), text.id)
            .await
            .expect("forward text");
        assert_eq!(fwd_text.text(), Some("hello"));
        assert!(matches!(fwd_text.kind, MessageKind::Common(_)));
        let err = bot
            .forward_message(ChatId(group.id), ChatId(chat.id), MessageId(99))
            .await
            .expect_err("unknown");
        assert!(
            matches!(err, RequestError::Api(ApiError::MessageToForwardNotFound)),
            "{err:?}"
        );
        let raw = post_json(
            &tg,
            TOKEN,
            "copyMessage",
            json!({"chat_id": group.id, "from_chat_id": chat.id, "message_id": 99}),
        )
        .await;
        assert_eq!(description(&raw), "Bad Request: message to copy not found");

        // Delete.
        bot.delete_message(ChatId(group.id), fwd.id)
            .await
            .expect("delete");
        let err = bot
            .delete_message(ChatId(group.id), fwd.id)
            .await
            .expect_err("already deleted");
        assert!(
            matches!(err, RequestError::Api(ApiError::MessageToDeleteNotFound)),
            "{err:?}"
        );
        bot.delete_messages(
            ChatId(group.id),
            [MessageId(2), MessageId(3), MessageId(77)],
        )
        .await
        .expect("deleteMessages");
        assert_eq!(
            tg.deleted_messages(TOKEN),
            [(group.id, 1), (group.id, 2), (group.id, 3)]
        );
        let raw = post_json(
            &tg,
            TOKEN,
            "deleteMessages",
            json!({"chat_id": group.id, "message_ids": []}),
        )
        .await;
        assert_eq!(
            description(&raw),
            "Bad Request: message identifiers are not specified"
        );
    })
    .await;
}

#[tokio::test]
async fn edit_caption_and_reply_markup() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        let photo = bot
            .send_photo(ChatId(1001), InputFile::memory(png()))
            .caption("before")
            .await
            .expect("photo");
        let edited = bot
            .edit_message_caption(ChatId(1001), photo.id)
            .caption("after")
            .await
            .expect("editMessageCaption");
        assert_eq!(edited.caption(), Some("after"));
        assert!(edited.edit_date().is_some());
        assert!(edited.photo().is_some());
        let err = bot
            .edit_message_caption(ChatId(1001), photo.id)
            .caption("after")
            .await
            .expect_err("same caption");
        assert!(
            matches!(err, RequestError::Api(ApiError::MessageNotModified)),
            "{err:?}"
        );
        let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Go", "go")]]);
        let marked = bot
            .edit_message_reply_markup(ChatId(1001), photo.id)
            .reply_markup(keyboard.clone())
            .await
            .expect("editMessageReplyMarkup");
        assert_eq!(marked.reply_markup(), Some(&keyboard));
        assert_eq!(marked.caption(), Some("after"));
        let text = bot.send_message(ChatId(1001), "plain").await.expect("text");
        let raw = post_json(
            &tg,
            TOKEN,
            "editMessageCaption",
            json!({"chat_id": 1001, "message_id": text.id.0, "caption": "x"}),
        )
        .await;
        assert_eq!(
            description(&raw),
            "Bad Request: there is no caption in the message to edit"
        );
        let raw = post_json(
            &tg,
            TOKEN,
            "editMessageText",
            json!({"chat_id": 1001, "message_id": photo.id.0, "text": "x"}),
        )
        .await;
        assert_eq!(
            description(&raw),
            "Bad Request: there is no text in the message to edit"
        );
        let edits = tg.edited_messages(TOKEN);
        assert_eq!(
            edits.iter().map(|e| e.method.as_str()).collect::<Vec<_>>(),
            ["editmessagecaption", "editmessagereplymarkup"]
        );
        assert_eq!(edits[0].caption.as_deref(), Some("after"));
        assert_eq!(
            edits[1].reply_markup,
            Some(serde_json::to_value(&keyboard).expect("json"))
        );
    })
    .await;
}

#[tokio::test]
async fn media_sends_go_through_the_chat_checks_and_faults() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_member_status(1001, 123_456_789, MemberStatus::Kicked);
        let err = bot
            .send_photo(ChatId(1001), InputFile::memory(png()))
            .await
            .expect_err("blocked");
        assert!(
            matches!(err, RequestError::Api(ApiError::BotBlocked)),
            "{err:?}"
        );
        tg.add_fault(TOKEN, "sendDocument", fake_telegram::Fault::retry_after(3));
        let err = bot
            .send_document(ChatId(1002), InputFile::memory(b"x".to_vec()))
            .await
            .expect_err("scripted 429");
        assert!(matches!(err, RequestError::RetryAfter(_)), "{err:?}");
        assert!(tg.sent_messages(TOKEN).is_empty());
        // Nothing was stored for the refused uploads.
        assert!(tg.files().is_empty());
    })
    .await;
}

#[tokio::test]
async fn rate_limits_count_media_sends() {
    bounded(async {
        let tg = fake().await;
        let bot = teloxide_bot(&tg, TOKEN);
        tg.set_rate_limits(RateLimits {
            per_chat_per_second: Some(2),
            ..RateLimits::disabled()
        });
        bot.send_photo(ChatId(1001), InputFile::memory(png()))
            .await
            .expect("1st");
        // A group of two does not fit in the one remaining slot: all or none.
        let stored = tg.add_file(MediaKind::Photo, png(), None);
        let group = json!({"chat_id": 1001, "media": [
            {"type": "photo", "media": stored.file_id},
            {"type": "photo", "media": stored.file_id},
        ]});
        let raw = post_json(&tg, TOKEN, "sendMediaGroup", group.clone()).await;
        assert_eq!(raw.status, 429, "{}", raw.text);
        bot.send_document(ChatId(1001), InputFile::memory(b"doc".to_vec()))
            .await
            .expect("2nd");
        let err = bot
            .send_voice(ChatId(1001), InputFile::memory(b"ogg".to_vec()))
            .await
            .expect_err("3rd in a second");
        assert!(matches!(err, RequestError::RetryAfter(_)), "{err:?}");
        assert_eq!(tg.too_many_requests_count(TOKEN), 2);
        assert_eq!(tg.sent_messages(TOKEN).len(), 2);
        // Once the window has passed, the group goes out and counts as two.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let sent = ok(&post_json(&tg, TOKEN, "sendMediaGroup", group).await);
        assert_eq!(sent.as_array().map(Vec::len), Some(2));
        let err = bot
            .send_message(ChatId(1001), "one more")
            .await
            .expect_err("the group filled the window");
        assert!(matches!(err, RequestError::RetryAfter(_)), "{err:?}");
        // Other chats are not affected; the 429 left nothing behind.
        bot.send_photo(
            ChatId(1002),
            InputFile::file_id(stored.file_id.clone().into()),
        )
        .await
        .expect("another chat");
        assert_eq!(tg.sent_messages(TOKEN).len(), 5);
        let media = tg
            .sent_messages(TOKEN)
            .iter()
            .filter(|m| m.media.is_some())
            .count();
        assert_eq!(media, 5);
    })
    .await;
}
