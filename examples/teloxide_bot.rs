//! A reference bot written with teloxide 0.17, for botvisor's tests: the
//! same behaviour as `tests/bots/ptb_bot.py` and `tests/bots/aiogram_bot.py`.
//!
//! An ordinary teloxide bot: it reads only `BOT_TOKEN` and `BOT_API_URL`
//! (e.g. `http://127.0.0.1:40123`, no trailing slash) and talks to whatever
//! Bot API server is there. Behaviour (texts are exact, the tests depend on
//! them):
//!
//! - `/start` → `started` with one inline button `Press` (data `pressed`);
//! - the button `pressed` → answerCallbackQuery `ok`, then the message's
//!   text edited to `pressed`;
//! - `/photo` → a 2×2 PNG uploaded from memory as `dot.png`, caption `dot`;
//! - `/photo_id <file_id>` → that photo by file_id, caption `again`;
//! - `/doc` → 200 KB (bytes `i % 251`) uploaded as `pattern.bin`, caption
//!   `pattern`;
//! - a photo or a document → getFile and a download, then `got <N> bytes`;
//! - any other text (not a command) → the same text back.
//!
//! Updates of one chat are handled in order, chats concurrently (the
//! dispatcher's default distribution). SIGTERM and SIGINT stop it cleanly.
//!
//! ```text
//! cargo build --example teloxide_bot
//! BOT_TOKEN=… BOT_API_URL=http://127.0.0.1:40123 target/debug/examples/teloxide_bot
//! ```

use std::io::Write as _;
use std::time::Duration;

use teloxide::dispatching::UpdateHandler;
use teloxide::net::Download as _;
use teloxide::prelude::*;
use teloxide::types::{
    FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Me, MessageEntityKind,
};
use teloxide::update_listeners::Polling;
use tokio::signal::unix::{SignalKind, signal};

const LIBRARY: &str = "teloxide";
/// Generous, so that a slow server (or a busy test machine) is not an error.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The long-poll wait (the libraries' usual 10 s). Without one, teloxide's
/// `Polling` polls short in a tight loop.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

type Error = Box<dyn std::error::Error + Send + Sync>;
type HandlerResult = Result<(), Error>;

/// The commands this bot knows.
#[derive(Clone, Debug)]
enum Command {
    Start,
    Photo,
    PhotoId(String),
    Doc,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();

    let token = std::env::var("BOT_TOKEN").map_err(|_| "BOT_TOKEN is not set")?;
    let api_url = std::env::var("BOT_API_URL").map_err(|_| "BOT_API_URL is not set")?;
    let api_url = reqwest::Url::parse(&api_url)?;
    let client = teloxide::net::default_reqwest_settings()
        .timeout(TIMEOUT)
        .build()?;
    let bot = Bot::with_client(token, client).set_api_url(api_url);

    let listener = Polling::builder(bot.clone()).timeout(POLL_TIMEOUT).build();
    let mut dispatcher = Dispatcher::builder(bot, schema())
        // Quiet, like the Python bots: updates no handler wants are dropped.
        .default_handler(|_| async {})
        .build();

    // `enable_ctrlc_handler` needs teloxide's default features and only
    // handles SIGINT; this handles SIGTERM too.
    let shutdown = dispatcher.shutdown_token();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
        match shutdown.shutdown() {
            Ok(stopped) => stopped.await,
            // Not dispatching yet (still in getMe): nothing to wind down.
            Err(_) => std::process::exit(0),
        }
    });

    println!("ready {LIBRARY}");
    std::io::stdout().flush()?;
    dispatcher
        .try_dispatch_with_listener(
            listener,
            LoggingErrorHandler::with_custom_text("An error from the update listener"),
        )
        .await?;
    Ok(())
}

/// The handlers: commands, files, echo, and the button.
fn schema() -> UpdateHandler<Error> {
    let messages = Update::filter_message()
        .branch(dptree::filter_map(|msg: Message, me: Me| command(&msg, &me)).endpoint(on_command))
        .branch(
            dptree::filter(|msg: Message| msg.photo().is_some() || msg.document().is_some())
                .endpoint(on_file),
        )
        .branch(
            dptree::filter(|msg: Message| msg.text().is_some() && !is_command(&msg)).endpoint(echo),
        );
    let buttons = Update::filter_callback_query()
        .filter(|query: CallbackQuery| query.data.as_deref() == Some("pressed"))
        .endpoint(on_pressed);
    dptree::entry().branch(messages).branch(buttons)
}

/// Whether a message starts with a bot command entity (python-telegram-bot's
/// `filters.COMMAND`).
fn is_command(msg: &Message) -> bool {
    msg.entities()
        .and_then(|entities| entities.first())
        .is_some_and(|e| e.offset == 0 && e.kind == MessageEntityKind::BotCommand)
}

/// The command in a message's text: `/name` or `/name@this_bot`, then
/// arguments after whitespace.
fn command(msg: &Message, me: &Me) -> Option<Command> {
    let mut words = msg.text()?.split_whitespace();
    let first = words.next()?.strip_prefix('/')?;
    let (name, mention) = match first.split_once('@') {
        Some((name, mention)) => (name, Some(mention)),
        None => (first, None),
    };
    if mention.is_some_and(|m| !m.eq_ignore_ascii_case(me.username())) {
        return None;
    }
    match name {
        "start" => Some(Command::Start),
        "photo" => Some(Command::Photo),
        "photo_id" => words.next().map(|id| Command::PhotoId(id.to_owned())),
        "doc" => Some(Command::Doc),
        _ => None,
    }
}

async fn on_command(bot: Bot, msg: Message, command: Command) -> HandlerResult {
    let chat = msg.chat.id;
    match command {
        Command::Start => {
            let keyboard =
                InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("Press", "pressed")]]);
            bot.send_message(chat, "started")
                .reply_markup(keyboard)
                .await?;
        }
        Command::Photo => {
            let photo = InputFile::memory(png_2x2()).file_name("dot.png");
            bot.send_photo(chat, photo).caption("dot").await?;
        }
        Command::PhotoId(id) => {
            bot.send_photo(chat, InputFile::file_id(FileId(id)))
                .caption("again")
                .await?;
        }
        Command::Doc => {
            let document = InputFile::memory(pattern()).file_name("pattern.bin");
            bot.send_document(chat, document).caption("pattern").await?;
        }
    }
    Ok(())
}

/// A user sent a photo or a document: download it and say how big it was.
async fn on_file(bot: Bot, msg: Message) -> HandlerResult {
    let file_id = match (msg.photo(), msg.document()) {
        // The sizes come smallest first; take the largest.
        (Some(sizes), _) => match sizes.last() {
            Some(size) => size.file.id.clone(),
            None => return Ok(()),
        },
        (None, Some(document)) => document.file.id.clone(),
        (None, None) => return Ok(()),
    };
    let file = bot.get_file(file_id).await?;
    let mut data = Vec::new();
    bot.download_file(&file.path, &mut data).await?;
    bot.send_message(msg.chat.id, format!("got {} bytes", data.len()))
        .await?;
    Ok(())
}

async fn echo(bot: Bot, msg: Message) -> HandlerResult {
    if let Some(text) = msg.text() {
        bot.send_message(msg.chat.id, text).await?;
    }
    Ok(())
}

async fn on_pressed(bot: Bot, query: CallbackQuery) -> HandlerResult {
    bot.answer_callback_query(query.id.clone())
        .text("ok")
        .await?;
    if let Some(message) = &query.message {
        bot.edit_message_text(message.chat().id, message.id(), "pressed")
            .await?;
    } else if let Some(id) = &query.inline_message_id {
        bot.edit_message_text_inline(id.clone(), "pressed").await?;
    }
    Ok(())
}

/// A valid 2×2 RGB PNG (black, white / white, black), built in memory.
fn png_2x2() -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        let len = u32::try_from(data.len()).expect("a small chunk");
        out.extend_from_slice(&len.to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut header = Vec::new();
    header.extend_from_slice(&2u32.to_be_bytes());
    header.extend_from_slice(&2u32.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    // Two scanlines, each a filter byte (none) and two RGB pixels.
    let rows: [u8; 14] = [
        0, 0, 0, 0, 255, 255, 255, //
        0, 255, 255, 255, 0, 0, 0,
    ];
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib_stored(&rows));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `data` as a zlib stream of one uncompressed ("stored") deflate block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).expect("a small block");
    let mut out = vec![0x78, 0x01, 0x01];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// The CRC-32 PNG uses (ISO 3309, reflected, polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// 200 KB of a fixed pattern: byte `i` is `i % 251`.
fn pattern() -> Vec<u8> {
    (0..204_800u32)
        .map(|i| u8::try_from(i % 251).expect("below 251"))
        .collect()
}
