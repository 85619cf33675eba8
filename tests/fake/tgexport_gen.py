"""A generated Telegram Desktop export (a whole account, result.json), for
the import test under a memory bound and for make bench: written as it is
generated, so that it can be streamed through a pipe of any size."""

ME = 5123456789
ANN = 6987654321


def big_export(out, chats=4, per_chat=30000, me=ME, peer=ANN):
    """Writes an export of chats * per_chat messages to the binary file out;
    returns the number of bytes written."""
    n = 0

    def w(b):
        nonlocal n
        out.write(b)
        n += len(b)
    w(b'{"about":"generated","personal_information":{"user_id":%d,'
      b'"first_name":"Me","last_name":"","phone_number":"+1 555 000 1234"},'
      b'"chats":{"about":"","list":[' % me)
    for c in range(chats):
        w(b'%s{"name":"Chat %d","type":"private_supergroup","id":%d,'
          b'"messages":[' % (b"," if c else b"", c, 5000 + c))
        buf = []
        for i in range(per_chat):
            buf.append(b'%s{"id":%d,"type":"message","date":"2024-01-01T00:00:00",'
                       b'"date_unixtime":"%d","from":"Ann","from_id":"user%d",'
                       b'"text":"message %d of chat %d with some words in it",'
                       b'"text_entities":[{"type":"plain","text":"message %d"}]}'
                       % (b"," if i else b"", i + 1, 1700000000 + i, peer, i, c, i))
            if len(buf) == 1000:
                w(b"".join(buf))
                buf = []
        w(b"".join(buf) + b"]}")
    w(b"]}}")
    return n


def file_bytes(name, size):
    """The deterministic bytes of an export's file."""
    return bytes((i * 13 + len(name)) % 256 for i in range(size))


def media_export(dirpath, me=ME, peer=ANN, chat_id=ANN):
    """Writes a one-chat export (a personal chat with peer) with files into
    dirpath: result.json, a photo under photos/ and a document under files/
    (their bytes file_bytes()), and a voice message that was not exported.
    Returns (the export's dict, {relative path: bytes})."""
    import json
    import os
    files = {"photos/photo_1@01-01-2024_00-00-00.jpg": file_bytes("photo", 5000),
             "files/report.pdf": file_bytes("report.pdf", 12345)}
    for rel, data in files.items():
        os.makedirs(os.path.join(dirpath, os.path.dirname(rel)), exist_ok=True)
        with open(os.path.join(dirpath, rel), "wb") as f:
            f.write(data)
    base = {"type": "message", "date": "2024-01-01T00:00:00", "from": "Ann",
            "from_id": "user%d" % peer, "text": "", "text_entities": []}
    msgs = [dict(base, id=1, date_unixtime="1704067200", photo=list(files)[0],
                 photo_file_size=5000, width=640, height=480),
            dict(base, id=2, date_unixtime="1704067260", file=list(files)[1],
                 file_name="report.pdf", file_size=12345, mime_type="application/pdf"),
            dict(base, id=3, date_unixtime="1704067320",
                 file="(File not included. Change data exporting settings to download.)",
                 file_size=4000, media_type="voice_message", mime_type="audio/ogg",
                 duration_seconds=4)]
    d = {"name": "Ann", "type": "personal_chat", "id": chat_id, "messages": msgs}
    with open(os.path.join(dirpath, "result.json"), "w") as f:
        json.dump(d, f)
    return d, files


if __name__ == "__main__":
    import sys
    big_export(sys.stdout.buffer, int(sys.argv[1]), int(sys.argv[2]))
