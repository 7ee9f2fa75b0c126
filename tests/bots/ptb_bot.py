"""A reference bot written with python-telegram-bot 22, for botvisor's tests.

An ordinary, unmodified python-telegram-bot application: it reads only
BOT_TOKEN and BOT_API_URL (e.g. http://127.0.0.1:40123, no trailing slash)
and talks to whatever Bot API server is there. Behaviour (texts are exact,
the tests depend on them):

  /start              -> "started" with one inline button "Press" (data "pressed")
  button "pressed"    -> answerCallbackQuery "ok", then edit the text to "pressed"
  /photo              -> a 2x2 PNG uploaded from memory as dot.png, caption "dot"
  /photo_id <file_id> -> that photo by file_id, caption "again"
  /doc                -> 200 KB (bytes i % 251) uploaded as pattern.bin, caption "pattern"
  a photo or document -> getFile + download, then "got <N> bytes"
  any other text      -> the same text back

SIGTERM and SIGINT stop it cleanly (run_polling's default stop_signals).
"""

import logging
import os
import struct
import zlib

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

LIBRARY = "python-telegram-bot"
# Generous, so that a slow server (or a busy test machine) is not an error.
TIMEOUT = 120.0
# run_polling's long-poll wait (PTB's default); PTB waits for a getUpdates
# answer this long plus get_updates_read_timeout.
POLL_TIMEOUT = 10
POLL_SLACK = 30.0
# Only new messages (not edits or channel posts), like aiogram's dp.message
# and teloxide's Update::filter_message.
MESSAGE = filters.UpdateType.MESSAGE


def png_2x2() -> bytes:
    """A valid 2x2 RGB PNG (black, white / white, black), built in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    rows = b"\x00" + b"\x00\x00\x00\xff\xff\xff" + b"\x00" + b"\xff\xff\xff\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )


PNG = png_2x2()
PATTERN = bytes(i % 251 for i in range(204800))


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Press", callback_data="pressed")]])
    await update.effective_message.reply_text("started", reply_markup=keyboard, do_quote=False)


async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer("ok")
    await query.edit_message_text("pressed")


async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_photo(
        InputFile(PNG, filename="dot.png"), caption="dot", do_quote=False
    )


async def photo_id(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if not context.args:
        return
    await update.effective_message.reply_photo(context.args[0], caption="again", do_quote=False)


async def doc(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_document(
        InputFile(PATTERN, filename="pattern.bin"), caption="pattern", do_quote=False
    )


async def fetch(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    media = message.photo[-1] if message.photo else message.document
    file = await media.get_file()
    data = await file.download_as_bytearray()
    await message.reply_text(f"got {len(data)} bytes", do_quote=False)


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    await message.reply_text(message.text, do_quote=False)


async def announce(application: Application) -> None:
    # post_init: after getMe, just before polling starts.
    print(f"ready {LIBRARY}", flush=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    token = os.environ["BOT_TOKEN"]
    url = os.environ["BOT_API_URL"]
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{url}/bot")
        .base_file_url(f"{url}/file/bot")
        .concurrent_updates(True)
        .connect_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .write_timeout(TIMEOUT)
        .media_write_timeout(TIMEOUT)
        .pool_timeout(TIMEOUT)
        .get_updates_connect_timeout(TIMEOUT)
        .get_updates_read_timeout(POLL_SLACK)
        .get_updates_write_timeout(TIMEOUT)
        .get_updates_pool_timeout(TIMEOUT)
        .post_init(announce)
        .build()
    )
    application.add_handler(CommandHandler("start", start, filters=MESSAGE))
    application.add_handler(CommandHandler("photo", photo, filters=MESSAGE))
    application.add_handler(CommandHandler("photo_id", photo_id, filters=MESSAGE))
    application.add_handler(CommandHandler("doc", doc, filters=MESSAGE))
    application.add_handler(CallbackQueryHandler(pressed, pattern="^pressed$"))
    application.add_handler(
        MessageHandler(MESSAGE & (filters.PHOTO | filters.Document.ALL), fetch)
    )
    application.add_handler(MessageHandler(MESSAGE & filters.TEXT & ~filters.COMMAND, echo))
    application.run_polling(timeout=POLL_TIMEOUT)


if __name__ == "__main__":
    main()
