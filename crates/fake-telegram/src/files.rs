//! The file store of one fake: every file a bot uploaded (or sent by URL)
//! and every file a test injected, with a `file_id`, a `file_unique_id`, a
//! `file_path` for getFile and downloads, its bytes, name and MIME type;
//! and the Bot API objects describing a file in a message (PhotoSize,
//! Document, Audio, Video, Animation, Voice, VideoNote, Sticker).

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The kinds of file a message can carry, one per `send…` method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `sendPhoto`; a message's `photo` (an array of PhotoSize).
    Photo,
    /// `sendDocument`; a message's `document`.
    Document,
    /// `sendAudio`; a message's `audio`.
    Audio,
    /// `sendVideo`; a message's `video`.
    Video,
    /// `sendAnimation`; a message's `animation` (and `document`, as Telegram
    /// sends both).
    Animation,
    /// `sendVoice`; a message's `voice`.
    Voice,
    /// `sendVideoNote`; a message's `video_note`.
    VideoNote,
    /// `sendSticker`; a message's `sticker`.
    Sticker,
}

impl MediaKind {
    /// Every kind.
    pub const ALL: [MediaKind; 8] = [
        MediaKind::Photo,
        MediaKind::Document,
        MediaKind::Audio,
        MediaKind::Video,
        MediaKind::Animation,
        MediaKind::Voice,
        MediaKind::VideoNote,
        MediaKind::Sticker,
    ];

    /// The Bot API's name: the parameter of the `send…` method and the
    /// field of a Message (`photo`, `video_note`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Photo => "photo",
            MediaKind::Document => "document",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Animation => "animation",
            MediaKind::Voice => "voice",
            MediaKind::VideoNote => "video_note",
            MediaKind::Sticker => "sticker",
        }
    }

    /// The lowercased method that sends this kind (`sendphoto`, …).
    pub(crate) fn method(self) -> &'static str {
        match self {
            MediaKind::Photo => "sendphoto",
            MediaKind::Document => "senddocument",
            MediaKind::Audio => "sendaudio",
            MediaKind::Video => "sendvideo",
            MediaKind::Animation => "sendanimation",
            MediaKind::Voice => "sendvoice",
            MediaKind::VideoNote => "sendvideonote",
            MediaKind::Sticker => "sendsticker",
        }
    }

    /// The kind a lowercased `send…` method sends.
    pub(crate) fn from_method(method: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.method() == method)
    }

    /// The noun in `there is no … in the request`.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            MediaKind::VideoNote => "video note",
            other => other.as_str(),
        }
    }

    /// The folder of its `file_path`, as Telegram names them.
    fn folder(self) -> &'static str {
        match self {
            MediaKind::Photo => "photos",
            MediaKind::Document => "documents",
            MediaKind::Audio => "music",
            MediaKind::Video => "videos",
            MediaKind::Animation => "animations",
            MediaKind::Voice => "voice",
            MediaKind::VideoNote => "video_notes",
            MediaKind::Sticker => "stickers",
        }
    }

    /// The extension a `file_path` gets when the name gives none.
    fn default_extension(self) -> Option<&'static str> {
        match self {
            MediaKind::Photo => Some("jpg"),
            MediaKind::Document => None,
            MediaKind::Audio => Some("mp3"),
            MediaKind::Video | MediaKind::Animation | MediaKind::VideoNote => Some("mp4"),
            MediaKind::Voice => Some("oga"),
            MediaKind::Sticker => Some("webp"),
        }
    }

    /// The MIME type when neither the upload nor the name tells.
    fn default_mime(self) -> &'static str {
        match self {
            MediaKind::Photo => "image/jpeg",
            MediaKind::Document => "application/octet-stream",
            MediaKind::Audio => "audio/mpeg",
            MediaKind::Video | MediaKind::Animation | MediaKind::VideoNote => "video/mp4",
            MediaKind::Voice => "audio/ogg",
            MediaKind::Sticker => "image/webp",
        }
    }

    /// The prefix of its `file_id` (the one Telegram's ids of this type
    /// start with).
    fn id_prefix(self) -> &'static str {
        match self {
            MediaKind::Photo => "AgAC",
            MediaKind::Document => "BQAC",
            MediaKind::Audio => "CQAC",
            MediaKind::Video => "BAAC",
            MediaKind::Animation => "CgAC",
            MediaKind::Voice => "AwAC",
            MediaKind::VideoNote => "DQAC",
            MediaKind::Sticker => "CAAC",
        }
    }
}

/// A file the fake holds: uploaded by a bot, sent by URL, or injected by a
/// test. Cloning is cheap (the bytes are shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// The id bots use to send it again or to getFile it.
    pub file_id: String,
    /// The id that stays the same for the same file.
    pub file_unique_id: String,
    /// What it was first stored as.
    pub kind: MediaKind,
    /// The upload's file name, if it had one (for a URL, its last segment).
    pub file_name: Option<String>,
    /// The MIME type: the upload's `Content-Type`, else guessed from the
    /// name or the kind. `None` for photos and video notes, which have none
    /// in the Bot API.
    pub mime_type: Option<String>,
    /// Its size in bytes (0 for a file sent by URL).
    pub size: u64,
    /// Its content, exactly as uploaded (empty for a file sent by URL).
    pub bytes: Bytes,
    /// The `http(s)` URL it was sent by, if it was.
    pub url: Option<String>,
    /// Its path for getFile and `/file/bot<TOKEN>/<file_path>`, such as
    /// `photos/file_3.jpg` or `documents/file_4.pdf`.
    pub file_path: String,
    /// Width and height, read from a PNG, GIF or JPEG header when the bytes
    /// are one.
    pub dimensions: Option<(u32, u32)>,
}

impl StoredFile {
    /// The SHA-256 of its bytes, in lowercase hex.
    pub fn sha256_hex(&self) -> String {
        Sha256::digest(&self.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The `Content-Type` a download answers with.
    pub(crate) fn content_type(&self) -> String {
        if let Some(m) = &self.mime_type {
            return m.clone();
        }
        match sniff_image(&self.bytes) {
            Some((mime, _)) => mime.to_owned(),
            None => self.kind.default_mime().to_owned(),
        }
    }
}

/// Width and height of a photo whose bytes are not a recognized image.
const FALLBACK_SIDE: u32 = 320;

/// Every file of one fake, by id and by path.
#[derive(Default)]
pub(crate) struct FileStore {
    files: Vec<StoredFile>,
    by_id: HashMap<String, usize>,
    by_path: HashMap<String, usize>,
}

/// A new file's content and what is known about it.
pub(crate) struct NewFile<'a> {
    pub kind: MediaKind,
    pub bytes: Bytes,
    pub file_name: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub url: Option<String>,
}

impl FileStore {
    /// Stores a new file and returns it.
    pub fn add(&mut self, new: NewFile<'_>) -> StoredFile {
        let serial = self.files.len() + 1;
        let kind = new.kind;
        let file_name = new
            .file_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .or_else(|| new.url.as_deref().and_then(url_file_name));
        let path_extension = file_name
            .as_deref()
            .and_then(extension)
            .filter(|_| kind != MediaKind::Photo)
            .or(kind.default_extension().map(str::to_owned));
        let file_path = match path_extension {
            Some(ext) => format!("{}/file_{serial}.{ext}", kind.folder()),
            None => format!("{}/file_{serial}", kind.folder()),
        };
        let sniffed = sniff_image(&new.bytes);
        let mime_type = match kind {
            MediaKind::Photo | MediaKind::VideoNote => None,
            _ => Some(
                new.content_type
                    .map(|ct| {
                        ct.split(';')
                            .next()
                            .unwrap_or(ct)
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .filter(|ct| ct.contains('/') && ct != "application/octet-stream")
                    .or_else(|| {
                        file_name
                            .as_deref()
                            .and_then(extension)
                            .and_then(|e| mime_of_extension(&e))
                            .map(str::to_owned)
                    })
                    .or_else(|| sniffed.map(|(m, _)| m.to_owned()))
                    .unwrap_or_else(|| kind.default_mime().to_owned()),
            ),
        };
        let file = StoredFile {
            file_id: format!("{}Fake{serial:08}", kind.id_prefix()),
            file_unique_id: format!("AQADFake{serial:08}"),
            kind,
            file_name,
            mime_type,
            size: u64::try_from(new.bytes.len()).unwrap_or(u64::MAX),
            bytes: new.bytes,
            url: new.url,
            file_path,
            dimensions: sniffed.map(|(_, d)| d),
        };
        let index = self.files.len();
        self.by_id.insert(file.file_id.clone(), index);
        self.by_path.insert(file.file_path.clone(), index);
        self.files.push(file.clone());
        file
    }

    /// The file with this `file_id`.
    pub fn get(&self, file_id: &str) -> Option<&StoredFile> {
        self.by_id.get(file_id).and_then(|i| self.files.get(*i))
    }

    /// The file with this `file_path`.
    pub fn by_path(&self, path: &str) -> Option<&StoredFile> {
        self.by_path.get(path).and_then(|i| self.files.get(*i))
    }

    /// Every file, oldest first.
    pub fn all(&self) -> &[StoredFile] {
        &self.files
    }
}

/// The last path segment of a URL, if it looks like a file name.
fn url_file_name(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let last = parsed.path_segments()?.next_back()?;
    (!last.is_empty()).then(|| crate::params::percent_decode(last))
}

/// A file name's extension, lowercased, if it is short and alphanumeric.
fn extension(name: &str) -> Option<String> {
    let (_, ext) = name.rsplit_once('.')?;
    (!ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| ext.to_ascii_lowercase())
}

/// The MIME type of a few common extensions.
fn mime_of_extension(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "bin" => "application/octet-stream",
        _ => return None,
    })
}

/// The MIME type and dimensions of a PNG, GIF or JPEG. Never panics on
/// short or corrupt input.
fn sniff_image(b: &[u8]) -> Option<(&'static str, (u32, u32))> {
    let be16 = |i: usize| Some(u32::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])));
    let le16 = |i: usize| Some(u32::from(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?])));
    let be32 = |i: usize| {
        Some(u32::from_be_bytes([
            *b.get(i)?,
            *b.get(i + 1)?,
            *b.get(i + 2)?,
            *b.get(i + 3)?,
        ]))
    };
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(("image/png", (be32(16)?, be32(20)?)));
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Some(("image/gif", (le16(6)?, le16(8)?)));
    }
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    // JPEG: walk the segments to the first start-of-frame.
    let mut i = 2;
    while i + 3 < b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        match marker {
            0xFF => i += 1,
            0x01 | 0xD0..=0xD9 => i += 2,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return Some(("image/jpeg", (be16(i + 7)?, be16(i + 5)?)));
            }
            _ => i += 2 + usize::try_from(be16(i + 2)?).ok()?,
        }
    }
    None
}

/// Optional details of a sent file from the method's parameters
/// (`duration`, `width`, `height`, `length`, `performer`, `title`, `emoji`).
#[derive(Clone, Debug, Default)]
pub(crate) struct MediaDetails {
    pub duration: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub length: Option<u32>,
    pub performer: Option<String>,
    pub title: Option<String>,
    pub emoji: Option<String>,
}

/// The Bot API object for `file` as `kind` in a Message: an array with one
/// PhotoSize for a photo, else a Document, Audio, Video, … object.
pub(crate) fn media_json(file: &StoredFile, kind: MediaKind, d: &MediaDetails) -> Value {
    let mut m = Map::new();
    m.insert("file_id".into(), json!(file.file_id));
    m.insert("file_unique_id".into(), json!(file.file_unique_id));
    let (w, h) = match (d.width, d.height, file.dimensions) {
        (Some(w), Some(h), _) => (w, h),
        (_, _, Some(dims)) => dims,
        _ => (FALLBACK_SIDE, FALLBACK_SIDE),
    };
    let duration = d.duration.unwrap_or(0);
    let named = |m: &mut Map<String, Value>| {
        if let Some(n) = &file.file_name {
            m.insert("file_name".into(), json!(n));
        }
        if let Some(t) = &file.mime_type {
            m.insert("mime_type".into(), json!(t));
        }
    };
    match kind {
        MediaKind::Photo => {
            m.insert("width".into(), json!(w));
            m.insert("height".into(), json!(h));
        }
        MediaKind::Document => named(&mut m),
        MediaKind::Audio => {
            m.insert("duration".into(), json!(duration));
            if let Some(p) = &d.performer {
                m.insert("performer".into(), json!(p));
            }
            if let Some(t) = &d.title {
                m.insert("title".into(), json!(t));
            }
            named(&mut m);
        }
        MediaKind::Video | MediaKind::Animation => {
            m.insert("width".into(), json!(w));
            m.insert("height".into(), json!(h));
            m.insert("duration".into(), json!(duration));
            named(&mut m);
        }
        MediaKind::Voice => {
            m.insert("duration".into(), json!(duration));
            if let Some(t) = &file.mime_type {
                m.insert("mime_type".into(), json!(t));
            }
        }
        MediaKind::VideoNote => {
            m.insert("length".into(), json!(d.length.unwrap_or(w.min(h))));
            m.insert("duration".into(), json!(duration));
        }
        MediaKind::Sticker => {
            m.insert("type".into(), json!("regular"));
            m.insert("width".into(), json!(d.width.unwrap_or(512)));
            m.insert("height".into(), json!(d.height.unwrap_or(512)));
            m.insert("is_animated".into(), json!(false));
            m.insert("is_video".into(), json!(false));
            if let Some(e) = &d.emoji {
                m.insert("emoji".into(), json!(e));
            }
        }
    }
    m.insert("file_size".into(), json!(file.size));
    if kind == MediaKind::Photo {
        Value::Array(vec![Value::Object(m)])
    } else {
        Value::Object(m)
    }
}

/// The `File` object getFile answers.
pub(crate) fn file_json(file: &StoredFile) -> Value {
    json!({
        "file_id": file.file_id,
        "file_unique_id": file.file_unique_id,
        "file_size": file.size,
        "file_path": file.file_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(
        store: &mut FileStore,
        kind: MediaKind,
        bytes: &'static [u8],
        name: Option<&str>,
    ) -> StoredFile {
        store.add(NewFile {
            kind,
            bytes: Bytes::from_static(bytes),
            file_name: name,
            content_type: None,
            url: None,
        })
    }

    #[test]
    fn ids_paths_and_types() {
        let mut s = FileStore::default();
        let photo = add(&mut s, MediaKind::Photo, b"x", Some("cat.png"));
        assert_eq!(photo.file_path, "photos/file_1.jpg");
        assert_eq!(photo.mime_type, None);
        let doc = add(&mut s, MediaKind::Document, b"%PDF", Some("report.PDF"));
        assert_eq!(doc.file_path, "documents/file_2.pdf");
        assert_eq!(doc.mime_type.as_deref(), Some("application/pdf"));
        let blob = add(&mut s, MediaKind::Document, b"?", None);
        assert_eq!(blob.file_path, "documents/file_3");
        assert_eq!(blob.mime_type.as_deref(), Some("application/octet-stream"));
        assert_ne!(photo.file_id, doc.file_id);
        assert_eq!(s.get(&doc.file_id), Some(&doc));
        assert_eq!(s.by_path("documents/file_2.pdf"), Some(&doc));
        let url = s.add(NewFile {
            kind: MediaKind::Video,
            bytes: Bytes::new(),
            file_name: None,
            content_type: None,
            url: Some("https://example.com/v/clip%201.webm?x=1".into()),
        });
        assert_eq!(url.file_name.as_deref(), Some("clip 1.webm"));
        assert_eq!(url.file_path, "videos/file_4.webm");
        assert_eq!(url.size, 0);
        assert_eq!(
            photo.sha256_hex(),
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }

    #[test]
    fn image_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&[0, 0, 2, 0, 0, 0, 1, 0]);
        assert_eq!(sniff_image(&png), Some(("image/png", (512, 256))));
        assert_eq!(
            sniff_image(b"GIF89a\x10\x00\x08\x00"),
            Some(("image/gif", (16, 8)))
        );
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, 0xC0, 0, 11, 8, 0, 30, 0, 40, 3,
        ];
        assert_eq!(sniff_image(&jpeg), Some(("image/jpeg", (40, 30))));
        for cut in 0..jpeg.len() {
            let _ = sniff_image(&jpeg[..cut]);
            let _ = sniff_image(&png[..cut.min(png.len())]);
        }
        assert_eq!(sniff_image(b"hello"), None);
    }
}
