"""A reference bot written with aiogram 3, for botvisor's tests.

An ordinary, unmodified aiogram bot: it reads only BOT_TOKEN and BOT_API_URL
(e.g. http://127.0.0.1:40123, no trailing slash) and talks to whatever Bot
API server is there. Behaviour (texts are exact, the tests depend on them):

  /start              -> "started" with one inline button "Press" (data "pressed")
  button "pressed"    -> answerCallbackQuery "ok", then edit the text to "pressed"
  /photo              -> a 2x2 PNG uploaded from memory as dot.png, caption "dot"
  /photo_id <file_id> -> that photo by file_id, caption "again"
  /doc                -> 200 KB (bytes i % 251) uploaded as pattern.bin, caption "pattern"
  a photo or document -> getFile + download, then "got <N> bytes"
  any other text      -> the same text back

start_polling stops cleanly on SIGTERM and SIGINT.
"""

import asyncio
import logging
import os
import struct
import zlib

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import Command, CommandObject
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

LIBRARY = "aiogram"
# Generous, so that a slow server (or a busy test machine) is not an error.
TIMEOUT = 120


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

dp = Dispatcher()


def is_command(message: Message) -> bool:
    """Whether a message starts with a bot command (python-telegram-bot's
    filters.COMMAND)."""
    entities = message.entities or []
    return bool(entities) and entities[0].type == "bot_command" and entities[0].offset == 0


@dp.message(Command("start"))
async def start(message: Message) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Press", callback_data="pressed")]]
    )
    await message.answer("started", reply_markup=keyboard)


@dp.callback_query(F.data == "pressed")
async def pressed(query: CallbackQuery, bot: Bot) -> None:
    await query.answer("ok")
    if query.message is not None:
        await bot.edit_message_text(
            text="pressed", chat_id=query.message.chat.id, message_id=query.message.message_id
        )
    elif query.inline_message_id is not None:
        await bot.edit_message_text(text="pressed", inline_message_id=query.inline_message_id)


@dp.message(Command("photo"))
async def photo(message: Message) -> None:
    await message.answer_photo(BufferedInputFile(PNG, filename="dot.png"), caption="dot")


@dp.message(Command("photo_id"))
async def photo_id(message: Message, command: CommandObject) -> None:
    args = (command.args or "").split()
    if not args:
        return
    await message.answer_photo(args[0], caption="again")


@dp.message(Command("doc"))
async def doc(message: Message) -> None:
    await message.answer_document(
        BufferedInputFile(PATTERN, filename="pattern.bin"), caption="pattern"
    )


@dp.message(F.photo | F.document)
async def fetch(message: Message, bot: Bot) -> None:
    media = message.photo[-1] if message.photo else message.document
    data = await bot.download(media, timeout=TIMEOUT)
    await message.answer(f"got {len(data.getvalue())} bytes")


@dp.message(F.text, lambda message: not is_command(message))
async def echo(message: Message) -> None:
    await message.answer(message.text)


@dp.startup()
async def announce() -> None:
    # Runs inside start_polling, just before the first getUpdates.
    print(f"ready {LIBRARY}", flush=True)


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    token = os.environ["BOT_TOKEN"]
    url = os.environ["BOT_API_URL"]
    session = AiohttpSession(api=TelegramAPIServer.from_base(url), timeout=TIMEOUT)
    bot = Bot(token, session=session)
    await dp.start_polling(bot)


if __name__ == "__main__":
    asyncio.run(main())
