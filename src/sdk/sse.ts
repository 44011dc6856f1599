/**
 * A Server-Sent Events reader, per the HTML Living Standard §9.2.6 ("Interpreting an
 * event stream"): lines end in CRLF, LF or CR; `event:` and `data:` fields (a single
 * space after the colon is dropped, several `data:` lines join with LF); a blank line
 * dispatches; `:` lines are comments; an event without data is not dispatched; `id:` sets
 * the last event ID (unless it holds a NUL), which a reconnecting client sends back.
 */
export interface SseMessage {
  /** `message` when the stream named none. */
  event: string;
  data: string;
  /** The stream's last event ID when the message was dispatched (§9.2.6: it carries over to later messages); absent while none was set. */
  id?: string;
}

/** The messages of an event stream, as its bytes arrive. */
export async function* readSse(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<SseMessage> {
  const parser = new SseParser();
  const decoder = new TextDecoder(); // UTF-8; drops a leading BOM as the standard asks
  for await (const chunk of body) {
    yield* parser.feed(typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
  }
}

export class SseParser {
  private partial = '';
  /** The last chunk ended in CR: an LF starting the next one belongs to it. */
  private skipLf = false;
  private event = '';
  private data: string[] = [];
  private lastId = '';

  /** Feed decoded text; returns the messages it completed. */
  feed(text: string): SseMessage[] {
    const out: SseMessage[] = [];
    let i = 0;
    if (this.skipLf && text.startsWith('\n')) i = 1;
    this.skipLf = false;
    const eol = /[\r\n]/g;
    eol.lastIndex = i;
    for (let m = eol.exec(text); m; m = eol.exec(text)) {
      const line = this.partial + text.slice(i, m.index);
      this.partial = '';
      let next = m.index + 1;
      if (m[0] === '\r') {
        if (next === text.length) this.skipLf = true;
        else if (text[next] === '\n') next++;
      }
      i = eol.lastIndex = next;
      const msg = this.line(line);
      if (msg) out.push(msg);
    }
    this.partial += text.slice(i);
    return out;
  }

  private line(line: string): SseMessage | undefined {
    if (line === '') {
      const msg = this.data.length
        ? { event: this.event || 'message', data: this.data.join('\n'), ...(this.lastId ? { id: this.lastId } : {}) }
        : undefined;
      this.event = '';
      this.data = [];
      return msg;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.lastId = value;
    // `retry` steers a browser's reconnection; the daemon sends none.
    return undefined;
  }
}
