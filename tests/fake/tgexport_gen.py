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


if __name__ == "__main__":
    import sys
    big_export(sys.stdout.buffer, int(sys.argv[1]), int(sys.argv[2]))
