//! An incremental Server-Sent Events parser (the WHATWG event-stream format) for the HTTP
//! client side: bytes in, complete events out, whatever the chunk boundaries.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// Feeds chunks with [`SseParser::push`]; a line, or the data of one event, longer than
/// `max_line` is an error, so a hostile server cannot grow the buffers without bound (not with one
/// endless line, nor with endless `data:` lines and no blank line).
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    cur: SseEvent,
    has_data: bool,
    max_line: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("SSE line or event longer than {0} bytes")]
pub struct LineTooLong(pub usize);

impl SseParser {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            cur: SseEvent::default(),
            has_data: false,
            max_line,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, LineTooLong> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(rel) = self.buf[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = start + rel;
            let mut next = end + 1;
            if self.buf[end] == b'\r' {
                if next == self.buf.len() {
                    // A CR at the end of the chunk may be half of CRLF; wait for more.
                    break;
                }
                if self.buf[next] == b'\n' {
                    next += 1;
                }
            }
            let line = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
            self.line(&line, &mut out);
            start = next;
        }
        self.buf.drain(..start);
        if self.buf.len() > self.max_line || self.cur.data.len() > self.max_line {
            return Err(LineTooLong(self.max_line));
        }
        Ok(out)
    }

    /// Bytes held between calls: never more than twice `max_line` after an `Ok`.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.cur.data.len()
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            let ev = std::mem::take(&mut self.cur);
            if self.has_data {
                out.push(ev);
            } else if ev.id.is_some() || ev.retry.is_some() {
                // Keep id/retry of a data-less event (a priming event) visible to the caller.
                out.push(ev);
            }
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "data" => {
                if self.has_data {
                    self.cur.data.push('\n');
                }
                self.cur.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.cur.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.cur.id = Some(value.to_owned()),
            "retry" => self.cur.retry = value.parse().ok(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunk_boundaries() {
        let text = b"id: 1\ndata: {\"a\":1}\n\n: comment\nevent: message\ndata: x\ndata: y\r\n\r\nid: 2\ndata:\n\nretry: 500\n\n";
        for split in 0..text.len() {
            let mut p = SseParser::new(1024);
            let mut evs = p.push(&text[..split]).unwrap();
            evs.extend(p.push(&text[split..]).unwrap());
            assert_eq!(evs.len(), 4, "split at {split}: {evs:?}");
            assert_eq!(
                evs[0],
                SseEvent {
                    id: Some("1".into()),
                    data: "{\"a\":1}".into(),
                    ..Default::default()
                }
            );
            assert_eq!(evs[1].data, "x\ny");
            assert_eq!(evs[1].event.as_deref(), Some("message"));
            assert_eq!(
                (evs[2].id.as_deref(), evs[2].data.as_str()),
                (Some("2"), "")
            );
            assert_eq!(evs[3].retry, Some(500));
        }
    }

    #[test]
    fn long_lines_are_refused() {
        let mut p = SseParser::new(8);
        assert!(p.push(b"data: 0123456789").is_err());
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut p = SseParser::new(64);
        let refused = (0..100).any(|_| p.push(b"data: 0123456789\n").is_err());
        assert!(
            refused,
            "data lines without a blank line must not grow without bound"
        );
    }
}
